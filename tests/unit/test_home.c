/* The home: resolution, layout, Tart's tmp GC, staging directories, the global lock, install. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "common/util.h"
#include "vm/home.h"
#include "tests/unit/helpers.h"

static char *root;

static int setup(void **state)
{
	(void)state;
	root = test_home_new("/tmp/vmm-home-", NULL);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	test_home_free(root, NULL);
	return 0;
}

static vmm_home *open_home(void)
{
	vmm_home *h = NULL;
	vmm_error *err = NULL;
	if (vmm_home_open(&h, &err) < 0)
		fail_msg("%s", err->msg);
	return h;
}

static void touch(const char *path)
{
	int fd = open(path, O_WRONLY | O_CREAT, 0644);
	assert_true(fd >= 0);
	close(fd);
}

static void test_home_resolve__vmm_home_then_tart_home_then_dot_vmm(void **state)
{
	(void)state;
	vmm_home *h = open_home();
	assert_string_equal(h->root, root);
	char *vms = path_join(root, "vms"), *tmp = path_join(root, "tmp"),
	     *ocis = path_join(root, "cache/OCIs");
	assert_string_equal(h->vms, vms);
	assert_string_equal(h->tmp, tmp);
	assert_string_equal(h->ocis, ocis);
	/* cache/ and tmp/ made at once, vms/ lazily (Tart) */
	assert_true(path_is_dir(tmp));
	assert_true(path_is_dir(h->cache));
	assert_false(path_exists(vms));
	vmm_home_free(h);

	char *tart = path_join(root, "tart-home");
	unsetenv("VMM_HOME");
	setenv("TART_HOME", tart, 1);
	h = open_home();
	assert_string_equal(h->root, tart);
	assert_true(path_is_dir(tart));
	vmm_home_free(h);

	unsetenv("TART_HOME");
	char *saved = getenv("HOME") ? xstrdup(getenv("HOME")) : NULL;
	setenv("HOME", root, 1);
	h = open_home();
	char *dot = path_join(root, ".vmm");
	assert_string_equal(h->root, dot);
	vmm_home_free(h);
	if (saved)
		setenv("HOME", saved, 1);
	setenv("VMM_HOME", root, 1);
	free(saved);
	free(dot);
	free(tart);
	free(vms);
	free(tmp);
	free(ocis);
}

static void test_home_open__invalid_home_is_named(void **state)
{
	(void)state;
	char *file = path_join(root, "a-file");
	touch(file);
	char *bad = path_join(file, "home");
	setenv("VMM_HOME", bad, 1);
	vmm_home *h = NULL;
	vmm_error *err = NULL;
	assert_int_equal(vmm_home_open(&h, &err), -1);
	char *want = xasprintf("home `%s` is invalid", bad);
	assert_non_null(strstr(err->msg, want));
	vmm_error_free(err);
	setenv("VMM_HOME", root, 1);
	free(want);
	free(bad);
	free(file);
}

static void test_home_gc__removes_unlocked_keeps_flocked(void **state)
{
	(void)state;
	vmm_home *h = open_home();
	char *stale_dir = path_join(h->tmp, "0F0F0F0F-STALE");
	char *stale_file = path_join(h->tmp, "set-disk-STALE");
	char *held_by_child = path_join(h->tmp, "CHILD");
	assert_int_equal(vmm_mkdir_p(stale_dir, NULL), 0);
	char *inner = path_join(stale_dir, "disk.img");
	touch(inner);
	touch(stale_file);
	assert_int_equal(vmm_mkdir_p(held_by_child, NULL), 0);
	int release;
	pid_t child = test_child_lock(held_by_child, TEST_LOCK_FLOCK, &release);
	/* and one of ours, from mktemp */
	char *mine = NULL;
	int mine_fd = -1;
	assert_int_equal(vmm_home_mktemp(h, &mine, &mine_fd, NULL), 0);
	assert_true(path_is_dir(mine));

	assert_int_equal(vmm_home_gc_tmp(h, NULL), 2);
	assert_false(path_exists(stale_dir));
	assert_false(path_exists(stale_file));
	assert_true(path_is_dir(held_by_child));
	assert_true(path_is_dir(mine));

	/* released: the next GC takes them */
	test_child_release(child, release);
	close(mine_fd);
	assert_int_equal(vmm_home_gc_tmp(h, NULL), 2);
	assert_false(path_exists(held_by_child));
	assert_false(path_exists(mine));
	assert_int_equal(vmm_home_gc_tmp(h, NULL), 0);
	free(mine);
	free(inner);
	free(stale_dir);
	free(stale_file);
	free(held_by_child);
	vmm_home_free(h);
}

static void test_home_mktemp__uuid_names_distinct(void **state)
{
	(void)state;
	vmm_home *h = open_home();
	char *a = NULL, *b = NULL;
	int fa = -1, fb = -1;
	assert_int_equal(vmm_home_mktemp(h, &a, &fa, NULL), 0);
	assert_int_equal(vmm_home_mktemp(h, &b, &fb, NULL), 0);
	assert_string_not_equal(a, b);
	const char *base = strrchr(a, '/') + 1;
	assert_int_equal(strlen(base), 36); /* Foundation's UUID().uuidString */
	for (const char *p = base; *p; p++)
		assert_true((*p >= '0' && *p <= '9') || (*p >= 'A' && *p <= 'F') || *p == '-');
	/* the lock is an flock a GC cannot take */
	int fd = -1;
	vmm_error *err = NULL;
	assert_int_equal(vmm_flock_path(a, LOCK_EX | LOCK_NB, &fd, &err), -1);
	assert_int_equal(vmm_error_code(err), VMM_ELOCKED);
	vmm_error_free(err);
	close(fa);
	close(fb);
	free(a);
	free(b);
	vmm_home_free(h);
}

static void test_home_lock__global_lock_excludes_others(void **state)
{
	(void)state;
	vmm_home *h = open_home();
	int release;
	pid_t child = test_child_lock(h->root, TEST_LOCK_FLOCK, &release);
	int fd = -1;
	vmm_error *err = NULL;
	assert_int_equal(vmm_flock_path(h->root, LOCK_EX | LOCK_NB, &fd, &err), -1);
	assert_int_equal(vmm_error_code(err), VMM_ELOCKED);
	vmm_error_free(err);
	test_child_release(child, release);
	assert_int_equal(vmm_home_lock(h, &fd, NULL), 0);
	close(fd);
	vmm_home_free(h);
}

static void test_home_install__exists_refused_replace_swaps(void **state)
{
	(void)state;
	vmm_home *h = open_home();
	char *dest = vmm_home_vm_dir(h, "x");
	char *s1 = NULL, *s2 = NULL;
	int f1 = -1, f2 = -1;
	assert_int_equal(vmm_home_mktemp(h, &s1, &f1, NULL), 0);
	char *m1 = path_join(s1, "one");
	touch(m1);
	assert_int_equal(vmm_home_install_ordered(s1, dest, 0, NULL), 0); /* makes vms/ */
	assert_false(path_exists(s1));
	char *in_dest = path_join(dest, "one");
	assert_true(path_exists(in_dest));

	assert_int_equal(vmm_home_mktemp(h, &s2, &f2, NULL), 0);
	char *m2 = path_join(s2, "two");
	touch(m2);
	vmm_error *err = NULL;
	assert_int_equal(vmm_home_install(s2, dest, 0, &err), -1);
	assert_int_equal(vmm_error_code(err), VMM_EEXISTS);
	vmm_error_free(err);
	assert_true(path_exists(in_dest)); /* untouched */
	assert_true(path_exists(m2));
	assert_int_equal(vmm_home_install(s2, dest, 1, NULL), 0);
	char *two = path_join(dest, "two");
	assert_true(path_exists(two));
	assert_false(path_exists(in_dest));
	assert_false(path_exists(s2)); /* the old one, swapped out, is gone */
	close(f1);
	close(f2);
	free(two);
	free(m1);
	free(m2);
	free(in_dest);
	free(s1);
	free(s2);
	free(dest);
	vmm_home_free(h);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_home_resolve__vmm_home_then_tart_home_then_dot_vmm,
					    setup, teardown),
	    cmocka_unit_test_setup_teardown(test_home_open__invalid_home_is_named, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_home_gc__removes_unlocked_keeps_flocked, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_home_mktemp__uuid_names_distinct, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_home_lock__global_lock_excludes_others, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_home_install__exists_refused_replace_swaps, setup,
					    teardown),
	};
	return cmocka_run_group_tests_name("home", tests, NULL, NULL);
}
