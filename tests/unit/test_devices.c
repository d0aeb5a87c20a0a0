/* Tart's --disk, --root-disk-opts and --dir values (vm/devices.h). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>

#include "common/util.h"
#include "vm/devices.h"
#include "tests/unit/helpers.h"

typedef struct fixture {
	char *base, *img, *iso, *dir, *dir2;
	char *old_cwd;
} fixture;

static int setup(void **state)
{
	fixture *f = xcalloc(1, sizeof(*f));
	f->base = test_tmpdir("/tmp/vmm-devices.");
	f->img = path_join(f->base, "data.img");
	f->iso = path_join(f->base, "Installer.ISO");
	f->dir = path_join(f->base, "src");
	f->dir2 = path_join(f->base, "out");
	assert_int_equal(vmm_write_file_atomic(f->img, "x", 1, 0644, NULL), 0);
	assert_int_equal(vmm_write_file_atomic(f->iso, "x", 1, 0644, NULL), 0);
	assert_int_equal(mkdir(f->dir, 0755), 0);
	assert_int_equal(mkdir(f->dir2, 0755), 0);
	f->old_cwd = getcwd(NULL, 0);
	assert_int_equal(chdir(f->base), 0);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	fixture *f = *state;
	assert_int_equal(chdir(f->old_cwd), 0);
	test_tmpdir_free(f->base);
	free(f->img);
	free(f->iso);
	free(f->dir);
	free(f->dir2);
	free(f->old_cwd);
	free(f);
	return 0;
}

static void test_devices_root_opts__parse(void **state)
{
	(void)state;
	vmm_disk_opts o;
	vmm_error *err = NULL;
	assert_int_equal(vmm_disk_opts_parse("", &o, &err), 0);
	assert_false(o.ro);
	assert_int_equal(o.sync, VMM_DISK_SYNC_DEFAULT);
	assert_int_equal(vmm_disk_opts_parse("ro,sync=none,caching=uncached", &o, &err), 0);
	assert_true(o.ro);
	assert_int_equal(o.sync, VMM_DISK_SYNC_NONE);
	assert_int_equal(o.caching, VMM_DISK_CACHE_UNCACHED);
	assert_int_equal(vmm_disk_opts_parse("caching=cached,sync=fsync", &o, &err), 0);
	assert_int_equal(o.sync, VMM_DISK_SYNC_FSYNC);
	assert_int_equal(o.caching, VMM_DISK_CACHE_CACHED);
	const char *bad[][2] = {
	    {"fast", "unsupported disk option \"fast\""},
	    {"ro,rw", "unsupported disk option \"rw\""},
	    {"sync=sometimes", "unsupported disk image synchronization mode: \"sometimes\""},
	    {"caching=lots", "unsupported disk image caching mode: \"lots\""},
	};
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		assert_int_equal(vmm_disk_opts_parse(bad[i][0], &o, &err), -1);
		assert_int_equal(err->code, VMM_EINVAL);
		assert_non_null(strstr(err->msg, bad[i][1]));
		vmm_error_free(err);
		err = NULL;
	}
}

static void test_devices_disk__parse(void **state)
{
	fixture *f = *state;
	vmm_disk_spec d;
	vmm_error *err = NULL;
	/* relative to the current directory, made absolute (QEMU runs elsewhere) */
	assert_int_equal(vmm_disk_spec_parse("data.img", &d, &err), 0);
	assert_string_equal(d.path, f->img);
	assert_false(d.o.ro);
	assert_false(d.cdrom);
	vmm_disk_spec_clear(&d);
	char *arg = xasprintf("%s:ro,sync=none,caching=uncached", f->img);
	assert_int_equal(vmm_disk_spec_parse(arg, &d, &err), 0);
	assert_string_equal(d.path, f->img);
	assert_true(d.o.ro);
	assert_int_equal(d.o.sync, VMM_DISK_SYNC_NONE);
	assert_int_equal(d.o.caching, VMM_DISK_CACHE_UNCACHED);
	vmm_disk_spec_clear(&d);
	free(arg);
	/* an .iso (any case) is a CD-ROM, read-only */
	assert_int_equal(vmm_disk_spec_parse("Installer.ISO", &d, &err), 0);
	assert_true(d.cdrom);
	assert_true(d.o.ro);
	assert_int_equal(vmm_disk_spec_check_arch(&d, "amd64", &err), 0);
	vmm_disk_spec_clear(&d);
	/* ~ as Tart expands it */
	char *old_home = getenv("HOME") ? xstrdup(getenv("HOME")) : NULL;
	setenv("HOME", f->base, 1);
	assert_int_equal(vmm_disk_spec_parse("~/data.img:ro", &d, &err), 0);
	assert_string_equal(d.path, f->img);
	vmm_disk_spec_clear(&d);
	if (old_home)
		setenv("HOME", old_home, 1);
	free(old_home);
	/* a last part that names no option belongs to the path (Tart's rule) */
	assert_int_equal(vmm_disk_spec_parse("data.img:foo", &d, &err), -1);
	assert_non_null(strstr(err->msg, "data.img:foo`"));
	assert_non_null(strstr(err->msg, "no such file"));
	vmm_error_free(err);
	err = NULL;
	/* ... but once it is options, all of it must be */
	assert_int_equal(vmm_disk_spec_parse("data.img:ro,foo", &d, &err), -1);
	assert_non_null(
	    strstr(err->msg, "--disk `data.img:ro,foo`: unsupported disk option \"foo\""));
	vmm_error_free(err);
	err = NULL;
	assert_int_equal(vmm_disk_spec_parse("data.img:sync=maybe", &d, &err), -1);
	assert_non_null(strstr(err->msg, "synchronization mode"));
	vmm_error_free(err);
	err = NULL;
	assert_int_equal(vmm_disk_spec_parse("src", &d, &err), -1); /* a directory */
	assert_non_null(strstr(err->msg, "not a file or a block device"));
	vmm_error_free(err);
	err = NULL;
	assert_int_equal(vmm_disk_spec_parse("nbd://localhost:10809/x", &d, &err), -1);
	vmm_error_free(err);
}

static void test_devices_disk__iso_arch(void **state)
{
	(void)state;
	vmm_error *err = NULL;
	struct {
		const char *path, *arch;
		int rc;
	} cases[] = {
	    {"/x/debian-12-arm64.iso", "amd64", -1}, {"/x/debian-12-aarch64.ISO", "amd64", -1},
	    {"/x/debian-12-amd64.iso", "amd64", 0},  {"/x/debian-12-amd64.iso", "arm64", -1},
	    {"/x/debian-12-arm64.iso", "arm64", 0},  {"/x/plain.iso", "arm64", 0},
	};
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		vmm_disk_spec d = {.path = (char *)cases[i].path, .cdrom = true};
		assert_int_equal(vmm_disk_spec_check_arch(&d, cases[i].arch, &err), cases[i].rc);
		if (cases[i].rc) {
			assert_int_equal(err->code, VMM_EUSAGE);
			assert_non_null(strstr(err->msg, "Seems you have a disk targeting"));
			vmm_error_free(err);
			err = NULL;
		}
	}
}

static void test_devices_dir__parse(void **state)
{
	fixture *f = *state;
	vmm_dir_spec d;
	vmm_error *err = NULL;
	assert_int_equal(vmm_dir_spec_parse("src", &d, &err), 0);
	assert_string_equal(d.path, f->dir);
	assert_null(d.name);
	assert_string_equal(d.tag, VMM_DIR_DEFAULT_TAG);
	assert_false(d.ro);
	vmm_dir_spec_clear(&d);
	assert_int_equal(vmm_dir_spec_parse("build:src:ro,tag=work", &d, &err), 0);
	assert_string_equal(d.name, "build");
	assert_string_equal(d.path, f->dir);
	assert_string_equal(d.tag, "work");
	assert_true(d.ro);
	vmm_dir_spec_clear(&d);
	assert_int_equal(vmm_dir_spec_parse("src:tag=t", &d, &err), 0);
	assert_null(d.name);
	assert_string_equal(d.tag, "t");
	vmm_dir_spec_clear(&d);
	const char *bad[][2] = {
	    {"nodir", "shared folder `"},
	    {"data.img", "a directory"},
	    {"src:ro,bogus", "unsupported option \"bogus\""},
	    {"src:tag=", "empty tag"},
	    {"https://example.com/x.tar.gz", "remote archives are not supported"},
	    {":src", "bad name"},
	    {"..:src", "bad name"},
	};
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		assert_int_equal(vmm_dir_spec_parse(bad[i][0], &d, &err), -1);
		assert_non_null(strstr(err->msg, bad[i][1]));
		vmm_error_free(err);
		err = NULL;
	}
}

static void test_devices_dir__tags(void **state)
{
	(void)state;
	vmm_error *err = NULL;
	char t1[] = VMM_DIR_DEFAULT_TAG, t2[] = "other", a[] = "a", b[] = "b", p[] = "/p";
	vmm_dir_spec ok1[] = {{NULL, p, t1, false}, {NULL, p, t2, false}};
	assert_int_equal(vmm_dir_specs_check(ok1, 2, &err), 0);
	vmm_dir_spec ok2[] = {{a, p, t1, false}, {b, p, t1, true}, {NULL, p, t2, false}};
	assert_int_equal(vmm_dir_specs_check(ok2, 3, &err), 0);
	assert_int_equal(vmm_dir_specs_count_tag(ok2, 3, t1), 2);
	vmm_dir_spec bad1[] = {{NULL, p, t1, false}, {NULL, p, t1, false}};
	vmm_dir_spec bad2[] = {{a, p, t1, false}, {NULL, p, t1, false}};
	vmm_dir_spec bad3[] = {{a, p, t1, false}, {a, p, t1, false}};
	vmm_dir_spec *bad[] = {bad1, bad2, bad3};
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		assert_int_equal(vmm_dir_specs_check(bad[i], 2, &err), -1);
		assert_int_equal(err->code, VMM_EUSAGE);
		vmm_error_free(err);
		err = NULL;
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_devices_root_opts__parse),
	    cmocka_unit_test_setup_teardown(test_devices_disk__parse, setup, teardown),
	    cmocka_unit_test(test_devices_disk__iso_arch),
	    cmocka_unit_test_setup_teardown(test_devices_dir__parse, setup, teardown),
	    cmocka_unit_test(test_devices_dir__tags),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
