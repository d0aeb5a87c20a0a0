/*
 * main.c — the dispatch table, global set-up, and the one place that turns
 * an error into "vmm: <message>" on stderr and an exit code.
 */
#include "cmd/cmd.h"
#include "common/util.h"
#include "vm/ops.h"

#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifndef VMM_VERSION
#define VMM_VERSION "0.1.0"
#endif

typedef struct command {
	const char *name;
	int (*fn)(int argc, char **argv);
	const char *summary;
	bool gc_tmp; /* run Tart's tmp GC first (all but pull and clone) */
	bool hidden;
} command;

static const command commands[] = {
#define VMM_COMMAND(name, summary, gc_tmp, hidden) {#name, cmd_##name, summary, gc_tmp, hidden},
#include "cmd/commands.inc"
#undef VMM_COMMAND
};

static vmm_home *home;

vmm_home *cmd_home(void)
{
	if (home)
		return home;
	cleanup_vmm_error vmm_error *err = NULL;
	if (vmm_home_open(&home, &err) < 0)
		exit(vmm_fail(err));
	return home;
}

int vmm_fail(const vmm_error *err)
{
	vmm_error_print("%s", err ? err->msg : "unknown error");
	return err ? vmm_error_exit_code(err) : 1;
}

int vmm_fail_msg(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vmm_error_vprint(fmt, ap);
	va_end(ap);
	return 1;
}

bool cmd_interactive(void)
{
	const char *ci = getenv("CI");
	return isatty(STDERR_FILENO) && !(ci && *ci);
}

static void usage(FILE *f)
{
	fprintf(f,
		"vmm %s — Tart-compatible virtual machines on Linux (QEMU)\n\n"
		"Usage: vmm <command> [options]\n\nCommands:\n",
		VMM_VERSION);
	for (size_t i = 0; i < ARRAY_SIZE(commands); i++)
		if (!commands[i].hidden)
			fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].summary);
	fprintf(f, "\nSee 'vmm <command> --help' for a command's options.\n");
}

int main(int argc, char **argv)
{
	/* a dead QMP socket or registry connection is an error, not a death */
	signal(SIGPIPE, SIG_IGN);
	setvbuf(stdout, NULL, _IOLBF, 0);

	/* Orchard's Linux worker runs `vetu`: installed under that name, vmm also
	 * honours vetu's home variable (after VMM_HOME) */
	const char *prog = strrchr(argv[0], '/') ? strrchr(argv[0], '/') + 1 : argv[0];
	const char *vetu_home = getenv("VETU_HOME");
	if (strcmp(prog, "vetu") == 0 && vetu_home && *vetu_home && !getenv("VMM_HOME"))
		setenv("VMM_HOME", vetu_home, 1);

	/* as Tart's argument parser: no command is a request for help */
	if (argc < 2) {
		usage(stdout);
		return 0;
	}
	const char *name = argv[1];
	if (strcmp(name, "--help") == 0 || strcmp(name, "-h") == 0 ||
	    (strcmp(name, "help") == 0 && argc == 2)) {
		usage(stdout);
		return 0;
	}
	/* `vmm help CMD [SUB]` is `vmm CMD [SUB] --help` */
	char *help_argv[5];
	if (strcmp(name, "help") == 0) {
		int n = 0;
		help_argv[n++] = argv[0];
		for (int i = 2; i < argc && i < 4; i++)
			help_argv[n++] = argv[i];
		help_argv[n++] = (char *)"--help";
		help_argv[n] = NULL;
		argc = n;
		argv = help_argv;
		name = argv[1];
	}
	if (strcmp(name, "--version") == 0) {
		printf("%s\n", VMM_VERSION);
		return 0;
	}
	for (size_t i = 0; i < ARRAY_SIZE(commands); i++) {
		if (strcmp(commands[i].name, name) != 0)
			continue;
		/* killed renames and snapshot restores are finished before any
		 * command looks at a VM (pull and clone too: not Tart's GC) */
		cleanup_vmm_error vmm_error *err = NULL;
		if (vmm_vm_recover(cmd_home(), &err) < 0 ||
		    (commands[i].gc_tmp && vmm_home_gc_tmp(cmd_home(), &err) < 0))
			vmm_error_print("failed to perform garbage collection: %s", err->msg);
		int rc = commands[i].fn(argc - 1, argv + 1);
		vmm_home_free(home);
		home = NULL;
		return rc;
	}
	vmm_error_print("unknown command '%s'", name);
	usage(stderr);
	return 64;
}
