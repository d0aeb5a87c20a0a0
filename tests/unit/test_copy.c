/*
 * The copy ladder's fallbacks on whatever file system /tmp is (the reflink
 * path itself is tested on loop-mounted btrfs and XFS by
 * tests/integration/test_clone_fs.sh): holes kept, data equal, offsets past
 * 4 GiB, files ending in a hole or in data, zero blocks left as holes, dense
 * files, and errors.
 */
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
#include <sys/stat.h>

#include "common/util.h"
#include "storage/copy.h"
#include "tests/unit/helpers.h"

#define GiB (1ULL << 30)
#define MiB (1ULL << 20)
#define R (-1)

static char *dir;

static int setup(void **state)
{
	(void)state;
	dir = test_tmpdir("/tmp/vmm-copy-");
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	test_tmpdir_free(dir);
	return 0;
}

typedef struct extent {
	uint64_t off, len;
	int fill; /* R: random bytes; else this byte value */
} extent;

/* Make a sparse file of `size` with data only in the given extents. */
static char *make_file(const char *name, uint64_t size, const extent *ex, size_t n)
{
	char *p = path_join(dir, name);
	int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0640);
	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, (off_t)size), 0);
	for (size_t i = 0; i < n; i++) {
		unsigned char *buf = xmalloc(ex[i].len);
		if (ex[i].fill == R)
			vmm_random_bytes(buf, ex[i].len);
		else
			memset(buf, ex[i].fill, ex[i].len);
		assert_int_equal(vmm_pwrite_all(fd, buf, ex[i].len, (off_t)ex[i].off), 0);
		free(buf);
	}
	assert_int_equal(fsync(fd), 0); /* so SEEK_DATA sees allocated extents */
	close(fd);
	return p;
}

static uint64_t allocated(const char *p)
{
	struct stat st;
	assert_int_equal(stat(p, &st), 0);
	return (uint64_t)st.st_blocks * 512;
}

/* dst holds no more data than src. The file system may spend a few blocks
 * more on dst's extent tree: a copy written in pieces (write-back mode, or a
 * disk busy with other writers) can land in more extents than the source's,
 * and ext4 keeps only four in the inode. Holes filled would cost MiBs. */
#define METADATA_SLACK (64 * 1024)
static void assert_not_more_allocated(const char *src, const char *dst)
{
	uint64_t s = allocated(src), d = allocated(dst);
	if (d > s + METADATA_SLACK)
		fail_msg("%s allocates %llu bytes, %s only %llu", dst, (unsigned long long)d, src,
			 (unsigned long long)s);
}

/* Same size, same bytes (compared only where either file has data, and
 * hole ranges checked to read as zeros through the data map of the other). */
static void assert_same_content(const char *a, const char *b)
{
	int fa = open(a, O_RDONLY), fb = open(b, O_RDONLY);
	assert_true(fa >= 0 && fb >= 0);
	struct stat sa, sb;
	assert_int_equal(fstat(fa, &sa), 0);
	assert_int_equal(fstat(fb, &sb), 0);
	assert_int_equal(sa.st_size, sb.st_size);
	unsigned char *x = xmalloc(MiB), *y = xmalloc(MiB);
	int fds[2] = {fa, fb};
	for (int w = 0; w < 2; w++) {
		off_t pos = 0;
		for (;;) {
			off_t d = lseek(fds[w], pos, SEEK_DATA);
			if (d < 0)
				break;
			off_t h = lseek(fds[w], d, SEEK_HOLE);
			for (off_t o = d; o < h; o += (off_t)MiB) {
				size_t n = (size_t)(h - o < (off_t)MiB ? h - o : (off_t)MiB);
				assert_int_equal(vmm_pread_all(fa, x, n, o), 0);
				assert_int_equal(vmm_pread_all(fb, y, n, o), 0);
				if (memcmp(x, y, n) != 0)
					fail_msg("%s and %s differ in [%lld, +%zu)", a, b,
						 (long long)o, n);
			}
			pos = h;
		}
	}
	free(x);
	free(y);
	close(fa);
	close(fb);
}

/* Is [off, off+len) of the file a hole (SEEK_DATA from off lands at or past off+len)? */
static bool is_hole(const char *p, uint64_t off, uint64_t len)
{
	int fd = open(p, O_RDONLY);
	assert_true(fd >= 0);
	off_t d = lseek(fd, (off_t)off, SEEK_DATA);
	close(fd);
	return d < 0 || (uint64_t)d >= off + len;
}

static char *copy_with(const char *src, const char *name, const vmm_copy_opts *o,
		       vmm_copy_stats *st)
{
	char *dst = path_join(dir, name);
	vmm_error *err = NULL;
	if (vmm_copy_file(src, dst, o, st, &err) < 0)
		fail_msg("%s", err->msg);
	return dst;
}

static const extent scattered[] = {
    {0, 64 * 1024, R},			  /* at the start */
    {300 * MiB, 3 * MiB, R},		  /* middle */
    {4 * GiB - 64 * 1024, 128 * 1024, R}, /* straddling 4 GiB */
    {4 * GiB + MiB + 4096, 8192, R},	  /* past 4 GiB, small, unaligned to 64 KiB */
};

static void check_sparse_copy(const vmm_copy_opts *o, vmm_copy_method want)
{
	uint64_t size = 4 * GiB + 3 * MiB; /* ends in a hole */
	char *src = make_file("src", size, scattered, ARRAY_SIZE(scattered));
	vmm_copy_stats st = {0};
	char *dst = copy_with(src, "dst", o, &st);
	assert_int_equal(st.method, want);
	assert_int_equal(st.files, 1);
	assert_same_content(src, dst);
	assert_not_more_allocated(src, dst);
	assert_true(allocated(dst) < 16 * MiB);
	/* the holes are holes */
	assert_true(is_hole(dst, 64 * 1024, 300 * MiB - 64 * 1024));
	assert_true(is_hole(dst, 303 * MiB, 3 * GiB));
	assert_true(is_hole(dst, 4 * GiB + 64 * 1024, MiB - 64 * 1024 + 4096));
	assert_true(is_hole(dst, 4 * GiB + MiB + 12288, size - 4 * GiB - MiB - 12288));
	assert_false(is_hole(dst, 4 * GiB + MiB + 4096, 8192));
	struct stat s1, s2;
	assert_int_equal(stat(src, &s1), 0);
	assert_int_equal(stat(dst, &s2), 0);
	assert_int_equal(s2.st_mode & 0777, 0640); /* the source's permission bits */
	assert_int_equal(unlink(dst), 0);
	free(dst);
	free(src);
}

static void test_copy_sparse__holes_kept_past_4gib(void **state)
{
	(void)state;
	vmm_copy_opts o = {.no_reflink = true};
	check_sparse_copy(&o, VMM_COPY_SPARSE);
}

static void test_copy_sparse__write_back_mode_same_result(void **state)
{
	(void)state;
	vmm_copy_opts o = {.no_reflink = true, .write_back = true};
	check_sparse_copy(&o, VMM_COPY_SPARSE);
}

static void test_copy_zeroskip__holes_kept_past_4gib(void **state)
{
	(void)state;
	vmm_copy_opts o = {.no_reflink = true, .no_seek_data = true};
	check_sparse_copy(&o, VMM_COPY_ZEROSKIP);
}

static void test_copy_default__best_method_of_this_fs(void **state)
{
	(void)state;
	char *src = make_file("src", 2 * GiB, scattered, 2);
	vmm_copy_stats st = {0};
	vmm_copy_opts o = {.fsync = true};
	char *dst = copy_with(src, "dst", &o, &st);
	/* /tmp reflinks (btrfs, XFS) or falls back to the sparse copy (ext4, tmpfs) */
	assert_true(st.method == VMM_COPY_REFLINK || st.method == VMM_COPY_SPARSE);
	assert_same_content(src, dst);
	assert_not_more_allocated(src, dst);
	free(dst);
	free(src);
}

static void test_copy_sparse__ends_in_data_unaligned(void **state)
{
	(void)state;
	const extent ex[] = {{256 * MiB, 5000, R}};
	char *src = make_file("src", 256 * MiB + 5000, ex, 1); /* ends in data, size unaligned */
	for (int zs = 0; zs < 2; zs++) {
		vmm_copy_opts o = {.no_reflink = true, .no_seek_data = zs};
		char *dst = copy_with(src, zs ? "dst-zs" : "dst", &o, NULL);
		assert_same_content(src, dst);
		assert_not_more_allocated(src, dst);
		assert_true(is_hole(dst, 0, 256 * MiB));
		free(dst);
	}
	free(src);
}

static void test_copy_sparse__written_zeros_become_holes(void **state)
{
	(void)state;
	/* 8 MiB of allocated zeros between two data extents: the copy allocates less */
	const extent ex[] = {{0, MiB, R}, {MiB, 8 * MiB, 0x00}, {9 * MiB, MiB, R}};
	char *src = make_file("src", 16 * MiB, ex, 3);
	assert_true(allocated(src) >= 10 * MiB);
	for (int zs = 0; zs < 2; zs++) {
		vmm_copy_opts o = {.no_reflink = true, .no_seek_data = zs};
		char *dst = copy_with(src, zs ? "dst-zs" : "dst", &o, NULL);
		assert_same_content(src, dst);
		assert_not_more_allocated(src, dst);
		/* the zero-skipping copy reads them and leaves holes; the sparse
		 * copy moves allocated extents as they are (never more) */
		if (zs) {
			assert_true(is_hole(dst, MiB, 8 * MiB));
			assert_true(allocated(dst) <= 2 * MiB + 64 * 1024);
		}
		free(dst);
	}
	free(src);
}

static void test_copy_dense__every_byte(void **state)
{
	(void)state;
	const extent ex[] = {{0, 24 * MiB + 123, R}};
	char *src = make_file("src", 24 * MiB + 123, ex, 1);
	for (int zs = 0; zs < 2; zs++) {
		vmm_copy_opts o = {.no_reflink = true, .no_seek_data = zs, .write_back = true};
		vmm_copy_stats st = {0};
		char *dst = copy_with(src, zs ? "dst-zs" : "dst", &o, &st);
		assert_same_content(src, dst);
		assert_true(st.data_bytes == 24 * MiB + 123);
		/* full of random data: as allocated as the source */
		assert_true(allocated(dst) >= 24 * MiB);
		free(dst);
	}
	free(src);
}

static void test_copy_empty_and_all_hole(void **state)
{
	(void)state;
	char *empty = make_file("empty", 0, NULL, 0);
	char *hole = make_file("hole", 3 * GiB + 1, NULL, 0);
	for (int zs = 0; zs < 2; zs++) {
		vmm_copy_opts o = {.no_reflink = true, .no_seek_data = zs};
		char *d1 = copy_with(empty, zs ? "e-zs" : "e", &o, NULL);
		if (zs) /* reading 3 GiB of zeros proves nothing more than 64 MiB does */
			assert_int_equal(truncate(hole, 64 * MiB), 0);
		char *d2 = copy_with(hole, zs ? "h-zs" : "h", &o, NULL);
		struct stat st;
		assert_int_equal(stat(d1, &st), 0);
		assert_int_equal(st.st_size, 0);
		assert_int_equal(stat(d2, &st), 0);
		assert_true((uint64_t)st.st_size == (zs ? 64 * MiB : 3 * GiB + 1));
		assert_int_equal(allocated(d2), 0);
		free(d1);
		free(d2);
	}
	free(empty);
	free(hole);
}

static void test_copy_fd__exposed_fallbacks(void **state)
{
	(void)state;
	const uint64_t size = 64 * MiB + 3 * 4096;
	const extent ex[] = {{64 * MiB + 8192, 4096, R}};
	char *src = make_file("src", size, ex, 1);
	for (int zs = 0; zs < 2; zs++) {
		char *dst = path_join(dir, zs ? "fd-zs" : "fd");
		int in = open(src, O_RDONLY), out = open(dst, O_RDWR | O_CREAT | O_EXCL, 0644);
		assert_true(in >= 0 && out >= 0);
		assert_int_equal(ftruncate(out, (off_t)size), 0);
		uint64_t copied = 0;
		int rc = zs ? vmm_copy_zeroskip_fd(in, out, size, &copied)
			    : vmm_copy_sparse_fd(in, out, size, &copied);
		assert_int_equal(rc, 0);
		/* the sparse copy moves only the data; the zero-skipping one reads it all */
		assert_true(zs ? copied == size : copied == 4096);
		close(in);
		close(out);
		assert_same_content(src, dst);
		assert_not_more_allocated(src, dst);
		free(dst);
	}
	free(src);
}

static void test_copy_errors__named_and_nothing_left(void **state)
{
	(void)state;
	const extent ex[] = {{0, 4096, R}};
	char *src = make_file("src", 4096, ex, 1);
	char *dst = path_join(dir, "exists");
	int fd = open(dst, O_WRONLY | O_CREAT, 0644);
	close(fd);
	vmm_error *err = NULL;
	/* dst exists: refused, and left alone */
	assert_int_equal(vmm_copy_file(src, dst, NULL, NULL, &err), -1);
	char *want = xasprintf("create `%s`", dst);
	assert_non_null(strstr(err->msg, want));
	free(want);
	vmm_error_free(err);
	err = NULL;
	assert_true(path_exists(dst));
	/* missing source */
	char *missing = path_join(dir, "missing");
	char *d2 = path_join(dir, "d2");
	assert_int_equal(vmm_copy_file(missing, d2, NULL, NULL, &err), -1);
	assert_non_null(strstr(err->msg, "no such file or directory"));
	vmm_error_free(err);
	err = NULL;
	assert_false(path_exists(d2));
	/* not a regular file */
	assert_int_equal(vmm_copy_file(dir, d2, NULL, NULL, &err), -1);
	assert_non_null(strstr(err->msg, "is not a regular file"));
	vmm_error_free(err);
	assert_false(path_exists(d2));
	free(missing);
	free(d2);
	free(dst);
	free(src);
}

static bool skip_b(const char *name)
{
	return strcmp(name, "b") == 0;
}

static void test_copy_dir__top_level_files_with_skip(void **state)
{
	(void)state;
	const extent ex[] = {{0, 100, R}};
	free(make_file("a", 100, ex, 1));
	free(make_file("b", 100, ex, 1));
	char *sub = path_join(dir, "sub");
	assert_int_equal(mkdir(sub, 0755), 0);
	char *inner = path_join(sub, "c");
	close(open(inner, O_WRONLY | O_CREAT, 0644));
	char *out = xasprintf("%s-out", dir);
	assert_int_equal(mkdir(out, 0755), 0);
	vmm_copy_stats st = {0};
	vmm_copy_opts o = {.no_reflink = true};
	assert_int_equal(vmm_copy_dir(dir, out, false, skip_b, &o, &st, NULL), 0);
	assert_int_equal(st.files, 1);
	char *oa = path_join(out, "a"), *ob = path_join(out, "b"), *osub = path_join(out, "sub");
	assert_true(path_exists(oa));
	assert_false(path_exists(ob));
	assert_false(path_exists(osub));
	char *src_a = path_join(dir, "a");
	assert_same_content(src_a, oa);
	/* recursive copies subdirectories too */
	assert_int_equal(vmm_rm_rf(out, NULL), 0);
	assert_int_equal(mkdir(out, 0755), 0);
	assert_int_equal(vmm_copy_dir(dir, out, true, NULL, &o, NULL, NULL), 0);
	char *oc = path_join(osub, "c");
	assert_true(path_exists(oc));
	assert_int_equal(vmm_rm_rf(out, NULL), 0);
	free(oc);
	free(src_a);
	free(oa);
	free(ob);
	free(osub);
	free(out);
	free(inner);
	free(sub);
}

static void test_copy_method__names(void **state)
{
	(void)state;
	assert_string_equal(vmm_copy_method_name(VMM_COPY_REFLINK), "reflink");
	assert_string_equal(vmm_copy_method_name(VMM_COPY_SPARSE), "sparse");
	assert_string_equal(vmm_copy_method_name(VMM_COPY_ZEROSKIP), "zero-skip");
}

int main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
	const struct CMUnitTest tests[] = {
	    T(test_copy_sparse__holes_kept_past_4gib),
	    T(test_copy_sparse__write_back_mode_same_result),
	    T(test_copy_zeroskip__holes_kept_past_4gib),
	    T(test_copy_default__best_method_of_this_fs),
	    T(test_copy_sparse__ends_in_data_unaligned),
	    T(test_copy_sparse__written_zeros_become_holes),
	    T(test_copy_dense__every_byte),
	    T(test_copy_empty_and_all_hole),
	    T(test_copy_fd__exposed_fallbacks),
	    T(test_copy_errors__named_and_nothing_left),
	    T(test_copy_dir__top_level_files_with_skip),
	    T(test_copy_method__names),
	};
	return cmocka_run_group_tests_name("copy", tests, NULL, NULL);
}
