/*
 * The QMP client: against a real QEMU (-machine none, QMP on a socketpair,
 * as `vmm run` connects) and against a scripted peer for the edge cases
 * QEMU will not produce on demand (garbage, silence, events first).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>

#include "common/util.h"
#include "vm/qemu.h"
#include "vm/qmp.h"
#include "vm/state.h"
#include "tests/unit/helpers.h"

/* --- a real QEMU ------------------------------------------------------------ */

typedef struct qemu {
	pid_t pid;
	vmm_qmp *q;
} qemu;

static int start_qemu(void **state)
{
	char *bin = vmm_find_in_path("qemu-system-x86_64");
	if (!bin) {
		*state = NULL;
		return 0;
	}
	int sv[2];
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	pid_t pid = fork();
	if (pid == 0) {
		dup2(sv[1], 3);
		int devnull = open("/dev/null", O_RDWR);
		dup2(devnull, 0);
		dup2(devnull, 1);
		execl(bin, bin, "-machine", "none", "-nodefaults", "-display", "none", "-S",
		      "-chardev", "socket,id=qmp0,fd=3", "-mon", "chardev=qmp0,mode=control",
		      (char *)NULL);
		_exit(127);
	}
	free(bin);
	close(sv[1]);
	qemu *qe = xcalloc(1, sizeof(*qe));
	qe->pid = pid;
	vmm_error *err = NULL;
	if (vmm_qmp_open_fd(&qe->q, sv[0], 10, &err) < 0)
		fail_msg("%s", err->msg);
	*state = qe;
	return 0;
}

static int stop_qemu(void **state)
{
	qemu *qe = *state;
	if (!qe)
		return 0;
	vmm_qmp_free(qe->q);
	kill(qe->pid, SIGKILL);
	waitpid(qe->pid, NULL, 0);
	free(qe);
	return 0;
}

#define NEED_QEMU(qe)                                                                              \
	do {                                                                                       \
		if (!(qe))                                                                         \
			skip();                                                                    \
	} while (0)

static void test_qmp_qemu__greeting_and_commands(void **state)
{
	qemu *qe = *state;
	NEED_QEMU(qe);
	assert_int_equal(strncmp(vmm_qmp_version(qe->q), "", 1) != 0, 1);
	assert_non_null(strchr(vmm_qmp_version(qe->q), '.'));
	json_t *r = NULL;
	assert_int_equal(vmm_qmp_execute(qe->q, "query-status", NULL, &r, NULL), 0);
	assert_string_equal(json_string_value(json_object_get(r, "status")), "prelaunch");
	json_decref(r);
	/* an unknown command is an error naming it, and the connection stays usable */
	vmm_error *err = NULL;
	assert_int_equal(vmm_qmp_execute(qe->q, "no-such-command", NULL, NULL, &err), -1);
	assert_non_null(strstr(err->msg, "no-such-command"));
	vmm_error_free(err);
	assert_int_equal(vmm_qmp_execute(qe->q, "query-name", NULL, NULL, NULL), 0);
}

static void test_qmp_qemu__getfd_passes_a_descriptor(void **state)
{
	qemu *qe = *state;
	NEED_QEMU(qe);
	int p[2];
	assert_int_equal(pipe(p), 0);
	vmm_error *err = NULL;
	if (vmm_qmp_execute_fd(qe->q, "getfd", json_pack("{s:s}", "fdname", "t"), p[1], NULL,
			       &err) < 0)
		fail_msg("%s", err->msg);
	/* QEMU knows the name now: closing it works once, then not */
	assert_int_equal(
	    vmm_qmp_execute(qe->q, "closefd", json_pack("{s:s}", "fdname", "t"), NULL, NULL), 0);
	assert_int_equal(
	    vmm_qmp_execute(qe->q, "closefd", json_pack("{s:s}", "fdname", "t"), NULL, &err), -1);
	vmm_error_free(err);
	close(p[0]);
	close(p[1]);
}

static void test_qmp_qemu__machine_alias(void **state)
{
	qemu *qe = *state;
	NEED_QEMU(qe);
	char *m = NULL;
	assert_int_equal(vmm_qmp_machine(qe->q, "q35", &m, NULL), 0);
	assert_int_equal(strncmp(m, "pc-q35-", 7), 0);
	free(m);
	assert_int_equal(vmm_qmp_machine(qe->q, "q35,accel=tcg", &m, NULL), 0);
	assert_int_equal(strncmp(m, "pc-q35-", 7), 0);
	free(m);
}

static void test_qmp_qemu__events_and_eof(void **state)
{
	qemu *qe = *state;
	NEED_QEMU(qe);
	assert_int_equal(vmm_qmp_execute(qe->q, "quit", NULL, NULL, NULL), 0);
	/* QEMU closes the connection as it exits; pump reports that */
	int rc = 0;
	vmm_error *err = NULL;
	for (int i = 0; i < 200 && rc == 0; i++) {
		rc = vmm_qmp_pump(qe->q, &err);
		usleep(10000);
	}
	assert_int_equal(rc, -1);
	assert_int_equal(err->code, VMM_ENOTRUNNING);
	vmm_error_free(err);
	json_t *ev;
	bool shutdown = false;
	while ((ev = vmm_qmp_next_event(qe->q))) {
		shutdown |=
		    strcmp(json_string_value(json_object_get(ev, "event")), "SHUTDOWN") == 0;
		json_decref(ev);
	}
	assert_true(shutdown);
}

/* --- a scripted peer -------------------------------------------------------- */

/* Fork a peer that writes `script` (after reading one request if `read_first`). */
static pid_t peer(int fd, const char *greeting, const char *reply)
{
	pid_t pid = fork();
	if (pid == 0) {
		(void)!write(fd, greeting, strlen(greeting));
		if (reply) {
			char buf[4096];
			/* answer qmp_capabilities, then the test's command */
			(void)!read(fd, buf, sizeof(buf));
			static const char ok[] = "{\"return\": {}, \"id\": 1}\r\n";
			(void)!write(fd, ok, sizeof(ok) - 1);
			(void)!read(fd, buf, sizeof(buf));
			(void)!write(fd, reply, strlen(reply));
		}
		sleep(3);
		_exit(0);
	}
	return pid;
}

static const char GREETING[] =
    "{\"QMP\": {\"version\": {\"qemu\": {\"micro\": 1, \"minor\": 2, \"major\": 8}, "
    "\"package\": \"test\"}, \"capabilities\": []}}\r\n";

static void test_qmp_peer__event_before_return(void **state)
{
	(void)state;
	int sv[2];
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	pid_t pid = peer(sv[1], GREETING,
			 "{\"event\": \"STOP\", \"data\": {}}\r\n\r\n"
			 "{\"return\": {\"status\": \"paused\"}, \"id\": 2}\r\n");
	close(sv[1]);
	vmm_qmp *q = NULL;
	assert_int_equal(vmm_qmp_open_fd(&q, sv[0], 5, NULL), 0);
	assert_string_equal(vmm_qmp_version(q), "8.2.1");
	assert_string_equal(vmm_qmp_package(q), "test");
	json_t *r = NULL;
	assert_int_equal(vmm_qmp_execute(q, "query-status", NULL, &r, NULL), 0);
	assert_string_equal(json_string_value(json_object_get(r, "status")), "paused");
	json_decref(r);
	json_t *ev = vmm_qmp_next_event(q);
	assert_non_null(ev);
	assert_string_equal(json_string_value(json_object_get(ev, "event")), "STOP");
	json_decref(ev);
	assert_null(vmm_qmp_next_event(q));
	vmm_qmp_free(q);
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
}

static void test_qmp_peer__bad_input(void **state)
{
	(void)state;
	struct {
		const char *greeting, *reply;
		int code;
		const char *needle;
	} cases[] = {
	    {"not json\r\n", NULL, VMM_EFORMAT, "invalid JSON"},
	    {"[1]\r\n", NULL, VMM_EFORMAT, "other than an object"},
	    {"{\"hello\": 1}\r\n", NULL, VMM_EFORMAT, "does not speak QMP"},
	    {"", NULL, VMM_ETIMEOUT, "did not answer"},
	    {GREETING,
	     "{\"error\": {\"class\": \"GenericError\", \"desc\": \"nope\"}, \"id\": 2}\r\n",
	     VMM_EGENERIC, "QMP stop: nope"},
	};
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		int sv[2];
		assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
		pid_t pid = peer(sv[1], cases[i].greeting, cases[i].reply);
		close(sv[1]);
		vmm_qmp *q = NULL;
		vmm_error *err = NULL;
		int rc = vmm_qmp_open_fd(&q, sv[0], 1, &err);
		if (rc == 0)
			rc = vmm_qmp_execute(q, "stop", NULL, NULL, &err);
		assert_int_equal(rc, -1);
		if (!strstr(err->msg, cases[i].needle))
			fail_msg("case %zu: \"%s\" not in \"%s\"", i, cases[i].needle, err->msg);
		assert_int_equal(err->code, cases[i].code);
		vmm_error_free(err);
		vmm_qmp_free(q);
		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);
	}
}

static void test_qmp_connect__long_directory(void **state)
{
	(void)state;
	/* a directory whose socket path would not fit in sun_path (108 bytes) */
	char *base = test_tmpdir("/tmp/vmm-qmp.");
	char *dir = xstrdup(base);
	for (int i = 0; i < 4; i++) {
		char *d = xasprintf("%s/%s", dir, "a-rather-long-directory-name-for-a-vm-bundle");
		free(dir);
		dir = d;
		assert_int_equal(mkdir(dir, 0755), 0);
	}
	assert_true(strlen(dir) > 120);
	int l = socket(AF_UNIX, SOCK_STREAM, 0);
	int dfd = open(dir, O_PATH | O_DIRECTORY);
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	snprintf(sa.sun_path, sizeof(sa.sun_path), "/proc/self/fd/%d/q.sock", dfd);
	assert_int_equal(bind(l, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(listen(l, 1), 0);
	pid_t pid = fork();
	if (pid == 0) {
		int c = accept(l, NULL, NULL);
		(void)!write(c, GREETING, strlen(GREETING));
		char buf[512];
		(void)!read(c, buf, sizeof(buf));
		static const char ok[] = "{\"return\": {}, \"id\": 1}\r\n";
		(void)!write(c, ok, sizeof(ok) - 1);
		sleep(2);
		_exit(0);
	}
	vmm_qmp *q = NULL;
	vmm_error *err = NULL;
	if (vmm_qmp_connect(&q, dir, "q.sock", 5, &err) < 0)
		fail_msg("%s", err->msg);
	assert_string_equal(vmm_qmp_version(q), "8.2.1");
	vmm_qmp_free(q);
	/* nobody listening: a clear error */
	assert_int_equal(vmm_qmp_connect(&q, dir, "none.sock", 1, &err), -1);
	assert_int_equal(err->code, VMM_ENOTRUNNING);
	vmm_error_free(err);
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	close(l);
	close(dfd);
	test_tmpdir_free(base);
	free(dir);
}

int main(void)
{
	signal(SIGPIPE, SIG_IGN);
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_qmp_qemu__greeting_and_commands, start_qemu,
					    stop_qemu),
	    cmocka_unit_test_setup_teardown(test_qmp_qemu__getfd_passes_a_descriptor, start_qemu,
					    stop_qemu),
	    cmocka_unit_test_setup_teardown(test_qmp_qemu__machine_alias, start_qemu, stop_qemu),
	    cmocka_unit_test_setup_teardown(test_qmp_qemu__events_and_eof, start_qemu, stop_qemu),
	    cmocka_unit_test(test_qmp_peer__event_before_return),
	    cmocka_unit_test(test_qmp_peer__bad_input),
	    cmocka_unit_test(test_qmp_connect__long_directory),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
