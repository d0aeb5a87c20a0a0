/*
 * cmd.h — what the command files share: the option parser that also
 * generates --help, the home, and printing an error once.
 *
 * Each cmd/<name>.c exports `int cmd_<name>(int argc, char **argv)` that
 * returns the process exit code; cmd/main.c dispatches to it.  Commands
 * parse and print; the work is done by vm/, storage/ and registry/.
 */
#ifndef VMM_CMD_CMD_H
#define VMM_CMD_CMD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "vm/home.h"

/*
 * Options are typed: each entry of a command's option table names its type
 * and its target, a field of the command's own options struct, which the
 * parser fills in.  The VMM_FLAG ... VMM_LIST macros check at build time
 * that the field exists and has the type's C type, so a misspelt or
 * mistyped option fails to compile.  Help is generated from the table.
 *
 *   typedef struct stop_args { vmm_opt_num timeout; } stop_args;
 *   static const vmm_opt opts[] = {
 *       {VMM_INT(stop_args, timeout, "timeout", "SECONDS", 0, 86400, "..."), .short_name = 't'},
 *       {0},
 *   };
 */
typedef enum {
	VMM_OPT_FLAG,	/* bool: true when given */
	VMM_OPT_STRING, /* const char *: the last value given (borrowed from argv), else NULL */
	VMM_OPT_INT,	/* vmm_opt_num: a whole number in [min, max] */
	VMM_OPT_SIZE,	/* vmm_opt_num: a whole number of `unit` bytes in [min, max], in bytes */
	VMM_OPT_LIST,	/* vmm_opt_list: every value given, in order (repeatable) */
} vmm_opt_type;

typedef struct vmm_opt_num {
	uint64_t value; /* what was given (bytes for a size); untouched if not */
	bool given;
} vmm_opt_num;

typedef struct vmm_opt_list {
	const char **v; /* owned (vmm_args_free frees it); strings borrowed from argv */
	size_t n;
} vmm_opt_list;

typedef struct vmm_opt {
	const char *name; /* long name, without "--"; NULL ends a table */
	vmm_opt_type type;
	size_t target;	   /* offset of the field in the command's options struct */
	const char *arg;   /* metavar for --help; NULL for a flag */
	const char *help;  /* one line for --help */
	uint64_t min, max; /* INT and SIZE: the accepted range, in units */
	uint64_t unit;	   /* SIZE: bytes per unit */
	int short_name;	   /* 0 if none */
	bool hidden;	   /* accepted, left out of --help */
} vmm_opt;

/* offsetof(T, f), and a build error unless field f of T has type `type`. */
#define VMM_OPT_TARGET(T, f, type)                                                                 \
	(offsetof(T, f) +                                                                          \
	 0 * sizeof(char[__builtin_types_compatible_p(__typeof__(((T *)0)->f), type) ? 1 : -1]))

#define VMM_FLAG(T, f, name_, help_)                                                               \
	.name = name_, .type = VMM_OPT_FLAG, .target = VMM_OPT_TARGET(T, f, bool), .help = help_
#define VMM_STRING(T, f, name_, arg_, help_)                                                       \
	.name = name_, .type = VMM_OPT_STRING, .target = VMM_OPT_TARGET(T, f, const char *),       \
	.arg = arg_, .help = help_
#define VMM_INT(T, f, name_, arg_, min_, max_, help_)                                              \
	.name = name_, .type = VMM_OPT_INT, .target = VMM_OPT_TARGET(T, f, vmm_opt_num),           \
	.arg = arg_, .min = (min_), .max = (max_), .help = help_
#define VMM_SIZE(T, f, name_, arg_, unit_, min_, max_, help_)                                      \
	.name = name_, .type = VMM_OPT_SIZE, .target = VMM_OPT_TARGET(T, f, vmm_opt_num),          \
	.arg = arg_, .unit = (unit_), .min = (min_), .max = (max_), .help = help_
#define VMM_LIST(T, f, name_, arg_, help_)                                                         \
	.name = name_, .type = VMM_OPT_LIST, .target = VMM_OPT_TARGET(T, f, vmm_opt_list),         \
	.arg = arg_, .help = help_

/*
 * A command's usage line names its positional arguments first, in upper
 * case: "NAME" one, "[FILE]" an optional one, "REF..." one or more; then
 * its options ("[--force]", "(--linux | ...)", "[options]").  The parser
 * takes the number of positional arguments from it, so the two never
 * disagree.
 */
typedef struct vmm_cmd_spec {
	const char *name;    /* "clone" */
	const char *usage;   /* "SOURCE NEW [--force]" */
	const char *summary; /* one line */
	const vmm_opt *opts; /* ended by an entry with name == NULL; may be NULL */
} vmm_cmd_spec;

#define VMM_MAX_OPTS 48

typedef struct vmm_args {
	const vmm_cmd_spec *spec;
	void *target; /* borrowed: the command's options struct */
	char **pos;   /* borrowed from argv */
	size_t npos;
} vmm_args;

/*
 * Parse argv (argv[0] is the command name) into the options struct at
 * target (NULL for a command without options) and a->pos.  Returns 0 to go
 * on, or an exit code (>0 after printing a usage error, or -1 meaning
 * "help was printed, exit 0").  Free with vmm_args_free().
 */
int vmm_args_parse(vmm_args *a, const vmm_cmd_spec *spec, int argc, char **argv, void *target);
/* The same, but options end at the first positional argument (exec's NAME COMMAND...). */
int vmm_args_parse_passthrough(vmm_args *a, const vmm_cmd_spec *spec, int argc, char **argv,
			       void *target);
void vmm_args_free(vmm_args *a);

/* Parse and handle help/usage in one go: `VMM_ARGS_PARSE(a, spec, argc, argv, &o);` */
#define VMM_ARGS_PARSE(a, spec, argc, argv, target)                                                \
	do {                                                                                       \
		int r_ = vmm_args_parse(&(a), &(spec), (argc), (argv), (target));                  \
		if (r_ != 0) {                                                                     \
			vmm_args_free(&(a));                                                       \
			return r_ < 0 ? 0 : r_;                                                    \
		}                                                                                  \
	} while (0)

static inline void cleanup_vmm_args_fn(vmm_args *a)
{
	vmm_args_free(a);
}
#define cleanup_vmm_args __attribute__((cleanup(cleanup_vmm_args_fn)))

/* Declare `a` (freed on return) and parse into it: `VMM_ARGS(a, spec, argc, argv, &o);` */
#define VMM_ARGS(a, spec, argc, argv, target)                                                      \
	cleanup_vmm_args vmm_args a;                                                               \
	VMM_ARGS_PARSE(a, spec, argc, argv, target)

/* Print "vmm: <msg>", the usage line and a hint; returns 64. */
int vmm_usage_error(const vmm_cmd_spec *spec, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Print "vmm: <err->msg>" once and return the matching exit code (frees nothing). */
int vmm_fail(const vmm_error *err);
/* Print "vmm: <msg>" and return 1. */
int vmm_fail_msg(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* The home, opened once per process; prints the error and exits on failure. */
vmm_home *cmd_home(void);

/* Is stderr a terminal and progress wanted (no CI env, no --quiet)? */
bool cmd_interactive(void);

/* The commands: `int cmd_<name>(int argc, char **argv)` for each row of commands.inc. */
#define VMM_COMMAND(name, summary, gc_tmp, hidden) int cmd_##name(int argc, char **argv);
#include "cmd/commands.inc"
#undef VMM_COMMAND

#endif
