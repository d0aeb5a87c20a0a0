/* Pruning: Tart's entries, the older-than and space-budget rules, and the automatic reclaim. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>

#include "common/util.h"
#include "registry/cache.h"
#include "registry/prune.h"
#include "vm/bundle.h"
#include "tests/unit/helpers.h"

static char *root;
static vmm_home *home;

/* A bundle with `kib` KiB of allocated disk, accessed `age` days ago. */
static char *make_entry(char *dir, unsigned kib, int age)
{
	assert_int_equal(vmm_mkdir_p(dir, NULL), 0);
	const char *files[] = {"config.json", "nvram.bin", "disk.img"};
	for (int i = 0; i < 3; i++) {
		char *p = path_join(dir, files[i]);
		int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0644);
		assert_true(fd >= 0);
		if (i == 0)
			assert_int_equal(vmm_write_all(fd, "{}", 2), 0);
		if (i == 2) {
			char *buf = calloc(1, 1024);
			memset(buf, 'x', 1024);
			for (unsigned k = 0; k < kib; k++)
				assert_int_equal(vmm_write_all(fd, buf, 1024), 0);
			free(buf);
		}
		fsync(fd);
		close(fd);
		free(p);
	}
	vmm_access_date_set(dir, time(NULL) - (time_t)age * 86400);
	return dir; /* ownership passes through */
}

static int setup(void **state)
{
	(void)state;
	unsetenv("VMM_NO_AUTO_PRUNE");
	unsetenv("TART_NO_AUTO_PRUNE");
	root = test_home_new("/var/tmp/vmm-test-prune.", &home);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	test_home_free(root, home);
	return 0;
}

static char *digest_dir(const char *repo, char c)
{
	char hex[65];
	memset(hex, c, 64);
	hex[64] = 0;
	return xasprintf("%s/cache/OCIs/127.0.0.1%%3A5000/%s/sha256:%s", root, repo, hex);
}

static void tag(const char *repo, const char *t, const char *target)
{
	char *p = xasprintf("%s/cache/OCIs/127.0.0.1%%3A5000/%s/%s", root, repo, t);
	assert_int_equal(symlink(target, p), 0);
	free(p);
}

static void test_prune_older_than__caches_and_vms(void **state)
{
	(void)state;
	char *old = make_entry(digest_dir("a/b", 'a'), 8, 30);
	char *young = make_entry(digest_dir("a/b", 'b'), 8, 1);
	tag("a/b", "old", old);
	tag("a/b", "young", young);
	char *vm_old = make_entry(xasprintf("%s/vms/old", root), 4, 40);
	char *vm_new = make_entry(xasprintf("%s/vms/new", root), 4, 0);
	size_t n = 0;
	vmm_error *err = NULL;
	assert_int_equal(
	    vmm_prune_older_than(home, VMM_PRUNE_CACHES, time(NULL) - 7 * 86400, &n, &err), 0);
	assert_int_equal(n, 1);
	assert_false(path_exists(old));
	assert_true(path_exists(young));
	/* the dangling tag went with the GC */
	char *t = xasprintf("%s/cache/OCIs/127.0.0.1%%3A5000/a/b/old", root);
	assert_false(path_exists(t));
	free(t);
	/* VMs are untouched by cache pruning, and vice versa */
	assert_true(path_exists(vm_old));
	assert_int_equal(
	    vmm_prune_older_than(home, VMM_PRUNE_VMS, time(NULL) - 7 * 86400, &n, &err), 0);
	assert_int_equal(n, 1);
	assert_false(path_exists(vm_old));
	assert_true(path_exists(vm_new));
	assert_true(path_exists(young));
	free(old);
	free(young);
	free(vm_old);
	free(vm_new);
}

/* Newest first; an entry that does not fit goes, a later smaller one may stay. */
static void test_prune_space_budget__tart_rule(void **state)
{
	(void)state;
	char *e1 = make_entry(digest_dir("c/d", '1'), 600, 1); /* newest, 600 KiB */
	char *e2 = make_entry(digest_dir("c/d", '2'), 900, 2); /* does not fit: deleted */
	char *e3 = make_entry(digest_dir("c/d", '3'), 200, 3); /* fits the rest: kept */
	char *e4 = make_entry(digest_dir("c/d", '4'), 500, 4); /* does not fit: deleted */
	const char *names[] = {"t1", "t2", "t3", "t4"};
	char *all[] = {e1, e2, e3, e4};
	for (int i = 0; i < 4; i++)
		tag("c/d", names[i], all[i]);
	size_t n = 0;
	vmm_error *err = NULL;
	/* budget 1 MiB: 600 KiB + 200 KiB (+ a few KiB of metadata per entry) fit */
	assert_int_equal(vmm_prune_space_budget(home, VMM_PRUNE_CACHES, 1 << 20, &n, &err), 0);
	assert_true(path_exists(e1));
	assert_false(path_exists(e2));
	assert_true(path_exists(e3));
	assert_false(path_exists(e4));
	for (int i = 0; i < 4; i++)
		free(all[i]);
	vmm_prune_older_than(home, VMM_PRUNE_CACHES, time(NULL), NULL, NULL);
}

static void test_prune_reclaim__rules(void **state)
{
	(void)state;
	char *a = make_entry(digest_dir("e/f", 'a'), 64, 10);
	char *b = make_entry(digest_dir("e/f", 'b'), 64, 5);
	char *c = make_entry(digest_dir("e/f", 'c'), 64, 1);
	tag("e/f", "a", a);
	tag("e/f", "b", b);
	tag("e/f", "c", c);
	/* the file system is shared and busy: give the free space explicitly */
	uint64_t avail = 1ULL << 30;
	vmm_error *err = NULL;
	uint64_t got = 0;
	/* enough room: nothing happens */
	assert_int_equal(vmm_prune_reclaim(home, 4096, NULL, &got, &err), 0);
	assert_int_equal(got, 0);
	assert_int_equal(vmm_prune_reclaim_avail(home, avail - 1, avail, NULL, &got, &err), 0);
	assert_int_equal(got, 0);
	assert_true(path_exists(a));
	/* a shortfall the caches cannot cover: nothing is deleted in vain */
	assert_int_equal(
	    vmm_prune_reclaim_avail(home, avail + (1ULL << 40), avail, NULL, &got, &err), 0);
	assert_int_equal(got, 0);
	assert_true(path_exists(a) && path_exists(b) && path_exists(c));
	/* a shortfall of ~100 KiB: the oldest go first, the initiator never */
	setenv("TART_NO_AUTO_PRUNE", "", 1);
	assert_int_equal(vmm_prune_reclaim_avail(home, avail + 100 * 1024, avail, NULL, &got, &err),
			 0);
	assert_int_equal(got, 0); /* disabled by Tart's variable */
	unsetenv("TART_NO_AUTO_PRUNE");
	assert_int_equal(vmm_prune_reclaim_avail(home, avail + 100 * 1024, avail, a, &got, &err),
			 0);
	assert_true(got > 100 * 1024);
	assert_true(path_exists(a)); /* the initiator, although oldest */
	assert_false(path_exists(b));
	assert_false(path_exists(c));
	free(a);
	free(b);
	free(c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_prune_older_than__caches_and_vms),
	    cmocka_unit_test(test_prune_space_budget__tart_rule),
	    cmocka_unit_test(test_prune_reclaim__rules),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
