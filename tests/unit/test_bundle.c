/* Bundles: Tart's "initialized" rule, the POSIX running lock, states, sizes, access dates. */
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
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>

#include "common/util.h"
#include "vm/bundle.h"
#include "vm/home.h"
#include "tests/unit/helpers.h"

typedef struct fixture {
	char *root;
	vmm_home *home;
} fixture;

static int setup(void **state)
{
	fixture *f = xcalloc(1, sizeof(*f));
	f->root = test_home_new("/tmp/vmm-bundle-", &f->home);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	fixture *f = *state;
	test_home_free(f->root, f->home);
	free(f);
	return 0;
}

static void write_file(const char *dir, const char *name, const char *content)
{
	char *p = path_join(dir, name);
	assert_int_equal(vmm_write_file_atomic(p, content, strlen(content), 0644, NULL), 0);
	free(p);
}

/* A bundle as Tart leaves it: pretty config, sparse disk, an nvram placeholder. */
static char *make_vm(fixture *f, const char *name, const char *mac)
{
	char *dir = vmm_home_vm_dir(f->home, name);
	assert_int_equal(vmm_mkdir_p(dir, NULL), 0);
	char *cfg =
	    xasprintf("{\n  \"version\" : 1,\n  \"os\" : \"linux\",\n  \"arch\" : \"arm64\",\n"
		      "  \"cpuCountMin\" : 4,\n  \"cpuCount\" : 4,\n  \"memorySizeMin\" : "
		      "4294967296,\n  \"memorySize\" : 4294967296,\n  \"macAddress\" : \"%s\"\n}",
		      mac);
	write_file(dir, "config.json", cfg);
	free(cfg);
	write_file(dir, "nvram.bin", "NVRAM");
	char *disk = path_join(dir, "disk.img");
	int fd = open(disk, O_WRONLY | O_CREAT, 0644);
	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, 3000000000LL), 0);
	assert_int_equal(vmm_pwrite_all(fd, "data", 4, 1 << 20), 0);
	close(fd);
	free(disk);
	return dir;
}

/*
 * A child that takes the running lock on <dir>/config.json the way `vmm
 * run` does (classic POSIX F_SETLK, whole file) and holds it until
 * test_child_release().  Returns its pid.
 */
static pid_t hold_running_lock(const char *dir, int *release_fd)
{
	char *cfg = path_join(dir, "config.json");
	pid_t pid = test_child_lock(cfg, TEST_LOCK_POSIX, release_fd);
	free(cfg);
	return pid;
}

static void test_bundle_initialized__needs_config_disk_and_nvram(void **state)
{
	fixture *f = *state;
	char *dir = make_vm(f, "a", "02:00:00:00:00:01");
	assert_true(vmm_bundle_dir_is_vm(dir));
	static const char *const files[] = {"config.json", "disk.img", "nvram.bin"};
	for (size_t i = 0; i < ARRAY_SIZE(files); i++) {
		char *p = path_join(dir, files[i]);
		char *q = xasprintf("%s.away", p);
		assert_int_equal(rename(p, q), 0);
		assert_false(vmm_bundle_dir_is_vm(dir));
		/* open says what is missing, exit 1 as Tart's VMMissingFiles */
		vmm_bundle *b = NULL;
		vmm_error *err = NULL;
		assert_int_equal(vmm_bundle_open(&b, f->home, "a", &err), -1);
		assert_non_null(strstr(err->msg, "is missing some of its files (config.json, "
						 "disk.img or nvram.bin)"));
		assert_int_equal(vmm_error_exit_code(err), 1);
		vmm_error_free(err);
		assert_int_equal(rename(q, p), 0);
		free(p);
		free(q);
	}
	free(dir);
}

static void test_bundle_open__missing_and_bad_names_are_tarts_not_found(void **state)
{
	fixture *f = *state;
	static const char *const names[] = {"nope", "", ".", "..", "a/b", "../vms"};
	for (size_t i = 0; i < ARRAY_SIZE(names); i++) {
		vmm_bundle *b = NULL;
		vmm_error *err = NULL;
		assert_int_equal(vmm_bundle_open(&b, f->home, names[i], &err), -1);
		char *want = xasprintf("the specified VM \"%s\" does not exist", names[i]);
		assert_string_equal(err->msg, want);
		assert_int_equal(vmm_error_exit_code(err), 2);
		free(want);
		vmm_error_free(err);
	}
}

static void test_bundle_open__reads_config_and_bumps_access_date(void **state)
{
	fixture *f = *state;
	char *dir = make_vm(f, "a", "02:00:00:00:00:01");
	struct timeval old[2] = {{.tv_sec = 1000}, {.tv_sec = 2000}};
	assert_int_equal(utimes(dir, old), 0);
	vmm_bundle *b = NULL;
	assert_int_equal(vmm_bundle_open(&b, f->home, "a", NULL), 0);
	assert_string_equal(b->name, "a");
	assert_string_equal(b->config->mac, "02:00:00:00:00:01");
	struct stat st;
	assert_int_equal(stat(dir, &st), 0);
	assert_true(st.st_atime >= time(NULL) - 5);
	assert_int_equal(st.st_mtime, 1000); /* Tart's quirk: mtime = previous atime */
	assert_int_equal(vmm_access_date_get(dir), st.st_atime);
	vmm_bundle_free(b);
	free(dir);
}

static void test_bundle_lock__held_by_child_reported_with_pid(void **state)
{
	fixture *f = *state;
	char *dir = make_vm(f, "a", "02:00:00:00:00:01");
	assert_int_equal(vmm_bundle_dir_running_pid(dir), 0);
	assert_int_equal(vmm_bundle_dir_state(dir), VMM_STATE_STOPPED);

	int release;
	pid_t child = hold_running_lock(dir, &release);
	assert_int_equal(vmm_bundle_dir_running_pid(dir), child);
	assert_int_equal(vmm_bundle_dir_state(dir), VMM_STATE_RUNNING);
	assert_string_equal(vmm_vm_state_name(vmm_bundle_dir_state(dir)), "running");

	/* trying to take it: Tart's text, exit 1 */
	int fd = -1;
	vmm_error *err = NULL;
	assert_int_equal(vmm_bundle_dir_lock(dir, "a", &fd, &err), -1);
	assert_string_equal(err->msg, "VM \"a\" is running");
	assert_int_equal(vmm_error_code(err), VMM_ERUNNING);
	assert_int_equal(vmm_error_exit_code(err), 1);
	vmm_error_free(err);
	err = NULL;

	/* rewriting config.json is refused while it runs, and leaves it untouched */
	vmm_bundle *b = NULL;
	assert_int_equal(vmm_bundle_open(&b, f->home, "a", NULL), 0);
	b->config->cpu_count = 1;
	assert_int_equal(vmm_bundle_save_config(b, &err), -1);
	assert_string_equal(err->msg, "VM \"a\" is running");
	vmm_error_free(err);
	err = NULL;

	test_child_release(child, release);
	assert_int_equal(vmm_bundle_dir_running_pid(dir), 0);
	assert_int_equal(vmm_bundle_dir_state(dir), VMM_STATE_STOPPED);
	assert_int_equal(vmm_bundle_dir_lock(dir, "a", &fd, &err), 0);
	assert_true(fd >= 0);
	close(fd);
	assert_int_equal(vmm_bundle_save_config(b, &err), 0);
	vmm_bundle_free(b);
	assert_int_equal(vmm_bundle_open(&b, f->home, "a", NULL), 0);
	assert_int_equal(b->config->cpu_count, 1);
	vmm_bundle_free(b);
	free(dir);
}

/* Is <dir>/config.json locked by this process?  Asked from a child, since
 * F_GETLK never reports a process's own locks to itself. */
static bool locked_by_us(const char *dir)
{
	pid_t me = getpid();
	pid_t pid = fork();
	if (pid == 0)
		_exit(vmm_bundle_dir_running_pid(dir) == me || vmm_bundle_dir_busy_pid(dir) == me
			  ? 0
			  : 1);
	int status;
	assert_int_equal(waitpid(pid, &status, 0), pid);
	return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

/* clone holds the source's lock while it scans other VMs' MACs: the scan
 * must not open the source's config.json, whose close would drop the lock */
static void test_bundle_lock__mac_scan_keeps_the_callers_lock(void **state)
{
	fixture *f = *state;
	char *a = make_vm(f, "a", "02:00:00:00:00:01");
	char *b = make_vm(f, "b", "02:00:00:00:00:02");
	int fd = -1;
	assert_int_equal(vmm_bundle_dir_lock(a, "a", &fd, NULL), 0);
	assert_true(locked_by_us(a));
	assert_false(vmm_bundle_mac_in_use(f->home, "02:00:00:00:00:01", a, false));
	assert_true(vmm_bundle_mac_in_use(f->home, "02:00:00:00:00:02", a, false));
	assert_true(locked_by_us(a));
	/* the POSIX rule the header warns about: any close of the file drops it */
	vmm_config *c = NULL;
	char *cfg = path_join(a, "config.json");
	assert_int_equal(vmm_config_load(&c, cfg, NULL), 0);
	assert_false(locked_by_us(a));
	vmm_config_free(c);
	free(cfg);
	close(fd);
	free(a);
	free(b);
}

static pid_t hold_lock(const char *dir, test_lock_kind kind, int *release_fd)
{
	char *cfg = path_join(dir, "config.json");
	pid_t pid = test_child_lock(cfg, kind, release_fd);
	free(cfg);
	return pid;
}

/* Try a lock kind: 0, or the error code (the message must name the VM). */
static int try_lock(const char *dir, vmm_lock_kind kind, const char *want_msg)
{
	int fd = -1;
	vmm_error *err = NULL;
	if (vmm_bundle_dir_lock_as(dir, "a", kind, &fd, &err) == 0) {
		close(fd);
		return 0;
	}
	if (want_msg)
		assert_non_null(strstr(err->msg, want_msg));
	int code = vmm_error_code(err);
	vmm_error_free(err);
	return code;
}

/*
 * A bundle being read (push, export, clone) or changed (set, delete) is not
 * a running VM: list shows it stopped and `stop` finds nobody to signal;
 * but nobody can run it meanwhile, and readers exclude writers.
 */
static void test_bundle_lock__busy_is_not_running(void **state)
{
	fixture *f = *state;
	char *dir = make_vm(f, "a", "02:00:00:00:00:01");
	int release;
	pid_t reader = hold_lock(dir, TEST_LOCK_BUSY_READ, &release);
	assert_int_equal(vmm_bundle_dir_running_pid(dir), 0);
	assert_int_equal(vmm_bundle_dir_state(dir), VMM_STATE_STOPPED);
	assert_int_equal(vmm_bundle_dir_busy_pid(dir), reader);
	assert_int_equal(try_lock(dir, VMM_LOCK_READ, NULL), 0); /* readers share */
	char *busy = xasprintf("VM \"a\" is in use by another vmm command (pid %d)", (int)reader);
	assert_int_equal(try_lock(dir, VMM_LOCK_WRITE, busy), VMM_ELOCKED);
	assert_int_equal(try_lock(dir, VMM_LOCK_RUN, busy), VMM_ELOCKED);
	free(busy);
	test_child_release(reader, release);

	pid_t writer = hold_lock(dir, TEST_LOCK_BUSY_WRITE, &release);
	assert_int_equal(vmm_bundle_dir_state(dir), VMM_STATE_STOPPED);
	assert_int_equal(vmm_bundle_dir_busy_pid(dir), writer);
	assert_int_equal(try_lock(dir, VMM_LOCK_READ, "in use"), VMM_ELOCKED);
	assert_int_equal(try_lock(dir, VMM_LOCK_WRITE, "in use"), VMM_ELOCKED);
	assert_int_equal(try_lock(dir, VMM_LOCK_RUN, "in use"), VMM_ELOCKED);
	test_child_release(writer, release);

	/* a run lock (ours or Tart's) beats all and is what "running" means */
	pid_t runner = hold_lock(dir, TEST_LOCK_POSIX, &release);
	assert_int_equal(vmm_bundle_dir_running_pid(dir), runner);
	assert_int_equal(vmm_bundle_dir_busy_pid(dir), 0);
	assert_int_equal(try_lock(dir, VMM_LOCK_READ, "VM \"a\" is running"), VMM_ERUNNING);
	assert_int_equal(try_lock(dir, VMM_LOCK_WRITE, "VM \"a\" is running"), VMM_ERUNNING);
	assert_int_equal(try_lock(dir, VMM_LOCK_RUN, "VM \"a\" is running"), VMM_ERUNNING);
	test_child_release(runner, release);
	for (int k = VMM_LOCK_READ; k <= VMM_LOCK_RUN; k++)
		assert_int_equal(try_lock(dir, (vmm_lock_kind)k, NULL), 0);
	free(dir);
}

/*
 * config.json replaced (by `set`, a new MAC) between a runner's open and its
 * lock, and another runner locking the new file meanwhile: the first one's
 * lock would sit on an inode nobody opens any more, and two QEMUs would run
 * one disk.  The lock must be refused.
 */
static pid_t race_child;
static int race_release;
static void replace_and_run(const char *cfg)
{
	vmm_bundle_lock_race_hook = NULL; /* once */
	char *dir = xstrdup(cfg);
	*strrchr(dir, '/') = '\0';
	write_file(dir, "config.json",
		   "{\"version\":1,\"os\":\"linux\",\"arch\":\"amd64\","
		   "\"cpuCount\":2,\"memorySize\":1073741824,"
		   "\"macAddress\":\"02:00:00:00:00:01\"}");
	race_child = test_child_lock(cfg, TEST_LOCK_POSIX, &race_release);
	free(dir);
}

static void test_bundle_lock__refused_on_a_replaced_config(void **state)
{
	fixture *f = *state;
	char *dir = make_vm(f, "a", "02:00:00:00:00:01");
	vmm_bundle_lock_race_hook = replace_and_run;
	int fd = -1;
	vmm_error *err = NULL;
	int rc = vmm_bundle_dir_lock_as(dir, "a", VMM_LOCK_RUN, &fd, &err);
	vmm_bundle_lock_race_hook = NULL;
	assert_int_equal(rc, -1);
	assert_int_equal(vmm_error_code(err), VMM_ERUNNING);
	vmm_error_free(err);
	assert_int_equal(vmm_bundle_dir_running_pid(dir), race_child);
	test_child_release(race_child, race_release);
	/* and with nobody racing, it locks the file at the path */
	assert_int_equal(vmm_bundle_dir_lock_as(dir, "a", VMM_LOCK_RUN, &fd, NULL), 0);
	assert_true(locked_by_us(dir));
	close(fd);
	free(dir);
}

static void test_bundle_state__suspended_by_either_state_file(void **state)
{
	fixture *f = *state;
	char *dir = make_vm(f, "a", "02:00:00:00:00:01");
	static const char *const files[] = {"state.vmmsave", "state.vzvmsave"};
	for (size_t i = 0; i < ARRAY_SIZE(files); i++) {
		write_file(dir, files[i], "x");
		assert_int_equal(vmm_bundle_dir_state(dir), VMM_STATE_SUSPENDED);
		assert_string_equal(vmm_vm_state_name(VMM_STATE_SUSPENDED), "suspended");
		/* running wins over suspended */
		int release;
		pid_t child = hold_running_lock(dir, &release);
		assert_int_equal(vmm_bundle_dir_state(dir), VMM_STATE_RUNNING);
		test_child_release(child, release);
		char *p = path_join(dir, files[i]);
		unlink(p);
		free(p);
		assert_int_equal(vmm_bundle_dir_state(dir), VMM_STATE_STOPPED);
	}
	free(dir);
}

static void test_bundle_sizes__apparent_and_allocated(void **state)
{
	fixture *f = *state;
	char *dir = make_vm(f, "a", "02:00:00:00:00:01");
	uint64_t ap = 0, al = 0;
	assert_int_equal(vmm_bundle_dir_sizes(dir, &ap, &al, NULL), 0);
	char *cfg = path_join(dir, "config.json");
	struct stat st;
	assert_int_equal(stat(cfg, &st), 0);
	assert_true(ap == 3000000000ULL + 5 + (uint64_t)st.st_size);
	assert_true(al > 0 && al < (1 << 20)); /* sparse: a few blocks */
	assert_true(vmm_bundle_dir_disk_bytes(dir) == ap);
	/* a file vmm adds counts in sizes but not in Tart's Disk */
	write_file(dir, "efivars.fd", "0123456789");
	assert_int_equal(vmm_bundle_dir_sizes(dir, &ap, NULL, NULL), 0);
	assert_true(ap == 3000000000ULL + 5 + (uint64_t)st.st_size + 10);
	assert_true(vmm_bundle_dir_disk_bytes(dir) == ap - 10);
	/* reading sizes does not bump the access date */
	struct timeval old[2] = {{.tv_sec = 1000}, {.tv_sec = 2000}};
	assert_int_equal(utimes(dir, old), 0);
	assert_int_equal(vmm_bundle_dir_sizes(dir, &ap, &al, NULL), 0);
	assert_int_equal(vmm_access_date_get(dir), 1000);
	free(cfg);
	free(dir);
}

static void test_bundle_list__sorted_initialized_only(void **state)
{
	fixture *f = *state;
	free(make_vm(f, "zeta", "02:00:00:00:00:01"));
	free(make_vm(f, "Alpha", "02:00:00:00:00:02"));
	free(make_vm(f, "beta", "02:00:00:00:00:03"));
	char *half = vmm_home_vm_dir(f->home, "half");
	assert_int_equal(vmm_mkdir_p(half, NULL), 0);
	write_file(half, "config.json", "{}");
	char **names = NULL;
	size_t n = 0;
	assert_int_equal(vmm_bundle_list_names(f->home, &names, &n, NULL), 0);
	assert_int_equal(n, 3);
	assert_string_equal(names[0], "Alpha"); /* byte order, as Swift's < */
	assert_string_equal(names[1], "beta");
	assert_string_equal(names[2], "zeta");
	vmm_strv_free(names, n);
	free(half);
}

static void test_bundle_mac__in_use_by_others_and_running_only(void **state)
{
	fixture *f = *state;
	char *a = make_vm(f, "a", "02:00:00:00:00:01");
	char *b = make_vm(f, "b", "02:00:00:00:00:02");
	assert_true(vmm_bundle_mac_in_use(f->home, "02:00:00:00:00:01", NULL, false));
	assert_true(vmm_bundle_mac_in_use(f->home, "02:00:00:00:00:0A", NULL, false) == false);
	assert_false(vmm_bundle_mac_in_use(f->home, "02:00:00:00:00:01", a, false));
	assert_false(vmm_bundle_mac_in_use(f->home, "02:00:00:00:00:02", NULL, true));
	int release;
	pid_t child = hold_running_lock(b, &release);
	assert_true(vmm_bundle_mac_in_use(f->home, "02:00:00:00:00:02", NULL, true));
	test_child_release(child, release);
	free(a);
	free(b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_bundle_initialized__needs_config_disk_and_nvram,
					    setup, teardown),
	    cmocka_unit_test_setup_teardown(
		test_bundle_open__missing_and_bad_names_are_tarts_not_found, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_bundle_open__reads_config_and_bumps_access_date,
					    setup, teardown),
	    cmocka_unit_test_setup_teardown(test_bundle_lock__held_by_child_reported_with_pid,
					    setup, teardown),
	    cmocka_unit_test_setup_teardown(test_bundle_lock__busy_is_not_running, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_bundle_lock__refused_on_a_replaced_config, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_bundle_lock__mac_scan_keeps_the_callers_lock,
					    setup, teardown),
	    cmocka_unit_test_setup_teardown(test_bundle_state__suspended_by_either_state_file,
					    setup, teardown),
	    cmocka_unit_test_setup_teardown(test_bundle_sizes__apparent_and_allocated, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_bundle_list__sorted_initialized_only, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_bundle_mac__in_use_by_others_and_running_only,
					    setup, teardown),
	};
	return cmocka_run_group_tests_name("bundle", tests, NULL, NULL);
}
