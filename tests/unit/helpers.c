#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>

#include "common/util.h"
#include "tests/unit/helpers.h"

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
