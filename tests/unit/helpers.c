#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>
#include <sys/file.h>
#include <sys/wait.h>

#include "common/util.h"
#include "tests/unit/helpers.h"
#include "vm/bundle.h"

char *test_tmpdir(const char *prefix)
{
	char *dir = xasprintf("%sXXXXXX", prefix);
	if (!mkdtemp(dir))
		fail_msg("mkdtemp `%s` failed", dir);
	return dir;
}

void test_tmpdir_free(char *dir)
{
	if (!dir)
		return;
	vmm_error *err = NULL;
	if (vmm_rm_rf(dir, &err) < 0)
		fail_msg("%s", err->msg);
	free(dir);
}

char *test_home_new(const char *prefix, vmm_home **home)
{
	char *root = test_tmpdir(prefix);
	unsetenv("TART_HOME");
	setenv("VMM_HOME", root, 1);
	vmm_error *err = NULL;
	if (home && vmm_home_open(home, &err) < 0)
		fail_msg("%s", err->msg);
	return root;
}

void test_home_free(char *root, vmm_home *home)
{
	vmm_home_free(home);
	test_tmpdir_free(root);
}

char *test_path_push(const char *dir, bool alone)
{
	const char *p = getenv("PATH");
	char *old = xstrdup(p ? p : "/usr/bin:/bin");
	char *v = alone ? xstrdup(dir) : xasprintf("%s:%s", dir, old);
	setenv("PATH", v, 1);
	free(v);
	return old;
}

void test_path_restore(char *old)
{
	setenv("PATH", old, 1);
	free(old);
}

pid_t test_child_lock(const char *path, test_lock_kind kind, int *release_fd)
{
	int ready[2], release[2];
	assert_int_equal(pipe(ready), 0);
	assert_int_equal(pipe(release), 0);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		close(ready[0]);
		close(release[1]);
		struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET};
		if (kind == TEST_LOCK_BUSY_READ || kind == TEST_LOCK_BUSY_WRITE) {
			fl.l_start = VMM_BUSY_BYTE;
			fl.l_len = 1;
			fl.l_type = kind == TEST_LOCK_BUSY_READ ? F_RDLCK : F_WRLCK;
		}
		int fd = open(path, kind == TEST_LOCK_FLOCK ? O_RDONLY : O_RDWR);
		bool locked = fd >= 0 && (kind != TEST_LOCK_FLOCK ? fcntl(fd, F_SETLK, &fl) == 0
								  : flock(fd, LOCK_EX) == 0);
		char ok = locked ? 'y' : 'n';
		if (write(ready[1], &ok, 1) != 1)
			_exit(2);
		char c;
		while (read(release[0], &c, 1) < 0 && errno == EINTR)
			;
		_exit(0);
	}
	close(ready[1]);
	close(release[0]);
	char ok = 0;
	assert_int_equal(read(ready[0], &ok, 1), 1);
	assert_int_equal(ok, 'y');
	close(ready[0]);
	*release_fd = release[1];
	return pid;
}

void test_child_release(pid_t pid, int release_fd)
{
	close(release_fd);
	int status;
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}
