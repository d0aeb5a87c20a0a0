/*
 * login.c — `vmm login HOST [--username U --password-stdin] [--insecure]
 * [--no-validate]` (tart-spec §4 login, §6).
 *
 * Credentials are checked with `GET /v2/` (Basic, or a Bearer token fetched
 * with them) unless --no-validate, then filed in the store of
 * registry/oci/credentials.h (0600, atomic replace).  Like Tart, login prints
 * nothing on success.  The password never reaches stdout, stderr or argv.
 */
#include "cmd/cmd.h"
#include "common/util.h"
#include "registry/oci/client.h"
#include "registry/oci/credentials.h"

#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <termios.h>
#include <unistd.h>

#define CREDENTIAL_MAX 8192

typedef struct login_args {
	const char *username;
	bool password_stdin, insecure, no_validate;
} login_args;

static const vmm_opt login_opts[] = {
    {VMM_STRING(login_args, username, "username", "USER",
		"User name (the password then comes from standard input)")},
    {VMM_FLAG(login_args, password_stdin, "password-stdin",
	      "Read the password from standard input")},
    {VMM_FLAG(login_args, insecure, "insecure", "Connect to the registry over plain HTTP")},
    {VMM_FLAG(login_args, no_validate, "no-validate",
	      "Store the credentials without checking them with the registry")},
    {0},
};

static const vmm_cmd_spec login_spec = {
    "login", "HOST [--username USER --password-stdin] [--insecure] [--no-validate]",
    "Log in to a registry", login_opts};

/* --- reading secrets -------------------------------------------------------- */

/* Print "vmm: <msg>" and return -1. */
__attribute__((format(printf, 1, 2))) static int complain(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vmm_error_vprint(fmt, ap);
	va_end(ap);
	return -1;
}

static int tty_fd = -1;
static struct termios saved_tio;
static volatile sig_atomic_t echo_off;

static void restore_echo(void)
{
	if (echo_off) {
		tcsetattr(tty_fd, TCSAFLUSH, &saved_tio);
		echo_off = 0;
	}
}

/* A signal while echo is off: put the terminal back, then die of it. */
static void on_signal(int sig)
{
	restore_echo();
	signal(sig, SIG_DFL);
	raise(sig);
}

static void trim_newlines(char *s, size_t *len)
{
	while (*len && (s[*len - 1] == '\n' || s[*len - 1] == '\r'))
		s[--*len] = '\0';
}

/*
 * Read one line (without its newline) of at most CREDENTIAL_MAX characters
 * from fd.  Returns 0, or -1 with a message printed.
 */
static int read_line(int fd, const char *name, char *buf)
{
	size_t n = 0;
	for (;;) {
		char c;
		ssize_t r = read(fd, &c, 1);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return complain("read the %s: %s", name, strerror(errno));
		if (r == 0 && n == 0)
			return complain("no %s given", name);
		if (r == 0 || c == '\n')
			break;
		if (n == CREDENTIAL_MAX) {
			explicit_bzero(buf, n);
			return complain("the %s should contain no more than %d characters", name,
					CREDENTIAL_MAX);
		}
		buf[n++] = c;
	}
	buf[n] = '\0';
	trim_newlines(buf, &n);
	return 0;
}

/*
 * Prompt for a value as readpassphrase(3) does: on the controlling terminal
 * when there is one (echo off for secrets), else on stderr reading stdin.
 */
static int prompt(const char *text, const char *name, bool secret, char *buf)
{
	int fd = open("/dev/tty", O_RDWR | O_CLOEXEC | O_NOCTTY);
	int in = fd >= 0 ? fd : STDIN_FILENO, out = fd >= 0 ? fd : STDERR_FILENO;
	vmm_write_all(out, text, strlen(text));
	if (secret && fd >= 0 && tcgetattr(fd, &saved_tio) == 0) {
		struct termios t = saved_tio;
		t.c_lflag &= ~(tcflag_t)(ECHO | ECHONL);
		tty_fd = fd;
		signal(SIGINT, on_signal);
		signal(SIGTERM, on_signal);
		signal(SIGHUP, on_signal);
		signal(SIGQUIT, on_signal);
		if (tcsetattr(fd, TCSAFLUSH, &t) == 0)
			echo_off = 1;
	}
	int rc = read_line(in, name, buf);
	if (echo_off) {
		restore_echo();
		vmm_write_all(out, "\n", 1);
	}
	if (fd >= 0)
		close(fd);
	tty_fd = -1;
	return rc;
}

/* --password-stdin: all of stdin, trailing newlines trimmed. */
static int read_stdin_password(char *buf)
{
	size_t n = 0;
	for (;;) {
		if (n > CREDENTIAL_MAX) {
			explicit_bzero(buf, n);
			return complain("the password should contain no more than %d characters",
					CREDENTIAL_MAX);
		}
		ssize_t r = read(STDIN_FILENO, buf + n, CREDENTIAL_MAX + 1 - n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return complain("read the password from standard input: %s",
					strerror(errno));
		if (r == 0)
			break;
		n += (size_t)r;
	}
	buf[n] = '\0';
	trim_newlines(buf, &n);
	if (memchr(buf, '\0', n))
		return complain("the password contains a NUL byte");
	return 0;
}

/* --- the commands ------------------------------------------------------------ */

static int login(const vmm_args *a, const login_args *o, char *user, char *pass)
{
	const char *host_arg = a->pos[0];
	cleanup_vmm_error vmm_error *err = NULL;
	if (vmm_credentials_check_host(host_arg, &err) < 0)
		return vmm_fail(err);
	if (o->username) {
		snprintf(user, CREDENTIAL_MAX + 1, "%s", o->username);
		if (read_stdin_password(pass) < 0)
			return 1;
	} else if (prompt("User: ", "user name", false, user) < 0 ||
		   prompt("Password: ", "password", true, pass) < 0) {
		return 1;
	}
	if (!*user || strchr(user, ':'))
		return vmm_fail_msg("the user name must be non-empty and must not contain ':'");
	cleanup_free char *host = vmm_credentials_host_key(host_arg);
	if (!o->no_validate &&
	    vmm_registry_check_credentials(host, o->insecure, user, pass, &err) < 0) {
		if (vmm_error_code(err) == VMM_EAUTH && !strstr(err->msg, "invalid credentials"))
			vmm_error_wrap(&err, "invalid credentials");
		else if (vmm_error_code(err) != VMM_EAUTH)
			vmm_error_wrap(&err, "login `%s`", host);
		return vmm_fail(err);
	}
	if (vmm_credentials_store(host, user, pass, &err) < 0)
		return vmm_fail(err);
	return 0;
}

int cmd_login(int argc, char **argv)
{
	login_args o = {0};
	VMM_ARGS(a, login_spec, argc, argv, &o);
	if ((o.username != NULL) != o.password_stdin)
		return vmm_usage_error(&login_spec,
				       "both --username and --password-stdin are required");
	char *user = xcalloc(1, CREDENTIAL_MAX + 2), *pass = xcalloc(1, CREDENTIAL_MAX + 2);
	int rc = login(&a, &o, user, pass);
	explicit_bzero(user, CREDENTIAL_MAX + 2);
	explicit_bzero(pass, CREDENTIAL_MAX + 2);
	free(user);
	free(pass);
	return rc;
}
