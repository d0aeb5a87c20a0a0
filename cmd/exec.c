/*
 * exec.c — `vmm exec [-i] [-t] NAME COMMAND [ARGS...]`: run a command in a
 * running VM through Tart's guest agent (vm/agent.h) and exit with its exit
 * code, printing nothing of its own.
 */
#include "cmd/cmd.h"
#include "common/util.h"
#include "vm/agent.h"

#include <signal.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

typedef struct exec_args {
	bool interactive, tty;
} exec_args;

static const vmm_opt opts[] = {
    {VMM_FLAG(exec_args, interactive, "interactive",
	      "Attach host's standard input to a remote command"),
     .short_name = 'i'},
    {VMM_FLAG(exec_args, tty, "tty", "Allocate a remote pseudo-terminal (PTY)"), .short_name = 't'},
    {0},
};

static const vmm_cmd_spec spec = {
    "exec", "NAME COMMAND... [-i] [-t]",
    "Execute a command in a running VM (needs Tart's guest agent in the guest)", opts};

int cmd_exec(int argc, char **argv)
{
	exec_args o = {0};
	cleanup_vmm_args vmm_args a;
	int prc = vmm_args_parse_passthrough(&a, &spec, argc, argv, &o);
	if (prc != 0)
		return prc < 0 ? 0 : prc;
	char **cmd = a.pos + 1;
	size_t n = a.npos - 1;
	if (n && strcmp(cmd[0], "--") == 0) {
		cmd++;
		n--;
	}
	if (!n)
		return vmm_usage_error(&spec, "missing argument");
	vmm_agent_exec_opts eo = {
	    .argv = (const char *const *)cmd,
	    .argc = n,
	    .interactive = o.interactive,
	    .tty = o.tty,
	    .in_fd = STDIN_FILENO,
	    .out_fd = STDOUT_FILENO,
	    .err_fd = STDERR_FILENO,
	    .term_fd = isatty(STDOUT_FILENO)  ? STDOUT_FILENO
		       : isatty(STDIN_FILENO) ? STDIN_FILENO
					      : -1,
	};
	/* -t on a terminal: raw mode, so keys (Ctrl-C too) go to the remote command */
	struct termios saved;
	bool raw = o.tty && isatty(STDIN_FILENO) && tcgetattr(STDIN_FILENO, &saved) == 0;
	if (raw) {
		struct termios t = saved;
		cfmakeraw(&t);
		tcsetattr(STDIN_FILENO, TCSANOW, &t);
	}
	cleanup_vmm_error vmm_error *err = NULL;
	int code = 0;
	int rc = vmm_agent_exec(cmd_home(), a.pos[0], &eo, &code, &err);
	if (raw)
		tcsetattr(STDIN_FILENO, TCSANOW, &saved);
	if (rc < 0)
		return vmm_fail(err);
	return code & 0xff;
}
