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

#include "common/err.h"
#include "vm/home.h"

typedef struct vmm_opt {
	const char *name; /* long name, without "--" */
	int short_name;	  /* 0 if none */
	const char *arg;  /* metavar; NULL for a flag */
	const char *help;
	bool hidden;
} vmm_opt;

typedef struct vmm_cmd_spec {
	const char *name;    /* "clone" */
	const char *usage;   /* "SOURCE NEW [options]" */
	const char *summary; /* one line */
	const vmm_opt *opts; /* terminated by an entry with name == NULL */
	size_t min_pos, max_pos;
} vmm_cmd_spec;

#define VMM_MAX_OPTS 48

typedef struct vmm_args {
	const vmm_cmd_spec *spec;
	char **pos; /* borrowed from argv */
	size_t npos;
	const char *val[VMM_MAX_OPTS];	 /* last value given; "" for a flag; NULL if absent */
	const char **list[VMM_MAX_OPTS]; /* every value, in order (owned array) */
	size_t nlist[VMM_MAX_OPTS];
} vmm_args;

/*
 * Parse argv (argv[0] is the command name).  Returns 0 to go on, or an exit
 * code (>0 after printing a usage error, or -1 meaning "help was printed,
 * exit 0").  Free with vmm_args_free().
 */
int vmm_args_parse(vmm_args *a, const vmm_cmd_spec *spec, int argc, char **argv);
void vmm_args_free(vmm_args *a);
const char *vmm_args_get(const vmm_args *a, const char *name);
bool vmm_args_has(const vmm_args *a, const char *name);
/* All values of a repeatable option; *n gets the count. */
const char **vmm_args_list(const vmm_args *a, const char *name, size_t *n);

/* Parse and handle help/usage in one go: `VMM_ARGS_PARSE(a, spec, argc, argv);` */
#define VMM_ARGS_PARSE(a, spec, argc, argv)                                                        \
	do {                                                                                       \
		int r_ = vmm_args_parse(&(a), &(spec), (argc), (argv));                            \
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

/* The commands. */
int cmd_create(int argc, char **argv);
int cmd_clone(int argc, char **argv);
int cmd_run(int argc, char **argv);
int cmd_set(int argc, char **argv);
int cmd_get(int argc, char **argv);
int cmd_list(int argc, char **argv);
int cmd_login(int argc, char **argv);
int cmd_logout(int argc, char **argv);
int cmd_ip(int argc, char **argv);
int cmd_pull(int argc, char **argv);
int cmd_push(int argc, char **argv);
int cmd_import(int argc, char **argv);
int cmd_export(int argc, char **argv);
int cmd_prune(int argc, char **argv);
int cmd_rename(int argc, char **argv);
int cmd_stop(int argc, char **argv);
int cmd_suspend(int argc, char **argv);
int cmd_resume(int argc, char **argv);
int cmd_checkpoint(int argc, char **argv);
int cmd_delete(int argc, char **argv);
int cmd_fqn(int argc, char **argv);
int cmd_snapshot(int argc, char **argv);

#endif
