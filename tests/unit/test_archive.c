/* The portable archive: round trips keep bytes and holes; hostile archives are refused. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>

#include "common/util.h"
#include "storage/archive.h"
#include "tests/unit/helpers.h"

static void put(const char *dir, const char *name, const void *data, size_t len, off_t at,
		off_t size)
{
	char *p = path_join(dir, name);
	int fd = open(p, O_WRONLY | O_CREAT, 0644);
	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, size), 0);
	if (len)
		assert_int_equal(vmm_pwrite_all(fd, data, len, at), 0);
	close(fd);
	free(p);
}

static uint64_t allocated(const char *p)
{
	struct stat st;
	assert_int_equal(stat(p, &st), 0);
	return (uint64_t)st.st_blocks * 512;
}

static int open_in(const char *dir, const char *name)
{
	char *p = path_join(dir, name);
	int fd = open(p, O_RDONLY);
	free(p);
	assert_true(fd >= 0);
	return fd;
}

static void same_file(const char *a, const char *b)
{
	char *x = NULL, *y = NULL;
	size_t lx, ly;
	assert_int_equal(vmm_read_file(a, 1u << 30, &x, &lx, NULL), 0);
	assert_int_equal(vmm_read_file(b, 1u << 30, &y, &ly, NULL), 0);
	assert_int_equal(lx, ly);
	assert_memory_equal(x, y, lx);
	free(x);
	free(y);
}

static void test_archive_roundtrip__sparse_kept(void **state)
{
	(void)state;
	char *src = test_tmpdir("/tmp/vmm-ut-archive."), *dst = test_tmpdir("/tmp/vmm-ut-archive.");
	unsigned char blob[300000];
	vmm_random_bytes(blob, sizeof(blob));
	const char cfg[] = "{\"version\":1}";
	put(src, "config.json", cfg, sizeof(cfg) - 1, 0, sizeof(cfg) - 1);
	/* 256 MiB disk: data at the start, in the middle, and a hole at the end */
	put(src, "disk.img", blob, sizeof(blob), 0, 256 << 20);
	put(src, "disk.img", blob, sizeof(blob), 100 << 20, 256 << 20);
	put(src, "nvram.bin", NULL, 0, 0, 0);

	const char *names[] = {"config.json", "disk.img", "nvram.bin"};
	vmm_archive_file files[3];
	for (int i = 0; i < 3; i++)
		files[i] = (vmm_archive_file){names[i], open_in(src, names[i])};
	char *arc = path_join(src, "a.tar.zst");
	int out = open(arc, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	vmm_error *err = NULL;
	assert_int_equal(vmm_archive_write(out, files, 3, NULL, &err), 0);
	close(out);
	for (int i = 0; i < 3; i++)
		close(files[i].fd);
	/* compressed size reflects data, not the 256 MiB apparent size */
	struct stat st;
	assert_int_equal(stat(arc, &st), 0);
	assert_true(st.st_size < 2 * (off_t)sizeof(blob) + 65536);

	int in = open(arc, O_RDONLY);
	if (vmm_archive_read(in, dst, &err) != 0)
		fail_msg("read: %s", err->msg);
	close(in);
	for (int i = 0; i < 3; i++) {
		char *a = path_join(src, names[i]), *b = path_join(dst, names[i]);
		same_file(a, b);
		free(a);
		free(b);
	}
	char *d = path_join(dst, "disk.img");
	assert_true(allocated(d) <= 2 * sizeof(blob) + (1 << 20));
	free(d);
	test_tmpdir_free(src);
	test_tmpdir_free(dst);
	free(arc);
}

/* Build an archive by hand: entries of (name, type, data, link). */
typedef struct hand_entry {
	const char *name;
	int type;
	const char *data;
	const char *link;
	int64_t size; /* -1: strlen(data) */
} hand_entry;

static size_t make_archive(char *buf, size_t cap, const hand_entry *e, size_t n)
{
	struct archive *a = archive_write_new();
	archive_write_set_format_pax(a);
	archive_write_add_filter_zstd(a);
	size_t used = 0;
	assert_int_equal(archive_write_open_memory(a, buf, cap, &used), ARCHIVE_OK);
	for (size_t i = 0; i < n; i++) {
		struct archive_entry *ae = archive_entry_new();
		archive_entry_set_pathname(ae, e[i].name);
		archive_entry_set_filetype(ae, (unsigned)e[i].type);
		archive_entry_set_perm(ae, 0644);
		size_t len = e[i].data ? strlen(e[i].data) : 0;
		if (e[i].link)
			archive_entry_set_symlink(ae, e[i].link);
		archive_entry_set_size(
		    ae, e[i].type == AE_IFREG ? (e[i].size >= 0 ? e[i].size : (int64_t)len) : 0);
		archive_write_header(a, ae);
		if (len)
			archive_write_data(a, e[i].data, len);
		archive_entry_free(ae);
	}
	archive_write_close(a);
	archive_write_free(a);
	return used;
}

static char *index_for(const char *name, const char *data)
{
	char sum[72];
	vmm_sha256_digest(data, strlen(data), sum);
	return xasprintf("{\"format\":\"vmm-archive\",\"version\":1,\"files\":[{\"name\":\"%s\","
			 "\"size\":%zu,\"sha256\":\"%s\"}]}",
			 name, strlen(data), sum);
}

static void expect_refused(const hand_entry *e, size_t n, const char *needle)
{
	static char buf[1 << 20];
	size_t len = make_archive(buf, sizeof(buf), e, n);
	char *dst = test_tmpdir("/tmp/vmm-ut-archive.");
	vmm_error *err = NULL;
	if (vmm_archive_read_memory(buf, len, dst, &err) == 0)
		fail_msg("accepted an archive that should be refused (%s)", needle);
	if (!strstr(err->msg, needle))
		fail_msg("error \"%s\" lacks \"%s\"", err->msg, needle);
	/* nothing was written outside dst */
	assert_false(path_exists("/tmp/vmm-evil"));
	vmm_error_free(err);
	test_tmpdir_free(dst);
}

static void test_archive_read__hostile(void **state)
{
	(void)state;
	char *idx = index_for("config.json", "{}");
	char *idx_evil = index_for("../vmm-evil", "x");
	char *idx_bad =
	    xstrdup("{\"format\":\"vmm-archive\",\"version\":1,\"files\":[{\"name\":"
		    "\"config.json\",\"size\":2,\"sha256\":\"sha256:"
		    "0000000000000000000000000000000000000000000000000000000000000000\"}]}");
	const hand_entry no_index[] = {{"config.json", AE_IFREG, "{}", NULL, -1}};
	expect_refused(no_index, 1, "first entry");
	const hand_entry traversal[] = {{VMM_ARCHIVE_INDEX, AE_IFREG, idx, NULL, -1},
					{"../vmm-evil", AE_IFREG, "x", NULL, -1}};
	expect_refused(traversal, 2, "not a plain file name");
	const hand_entry absolute[] = {{VMM_ARCHIVE_INDEX, AE_IFREG, idx, NULL, -1},
				       {"/tmp/vmm-evil", AE_IFREG, "x", NULL, -1}};
	expect_refused(absolute, 2, "not a plain file name");
	const hand_entry evil_index[] = {{VMM_ARCHIVE_INDEX, AE_IFREG, idx_evil, NULL, -1}};
	expect_refused(evil_index, 1, "refusing file name");
	const hand_entry symlink[] = {{VMM_ARCHIVE_INDEX, AE_IFREG, idx, NULL, -1},
				      {"config.json", AE_IFLNK, NULL, "/etc/passwd", -1}};
	expect_refused(symlink, 2, "only regular files");
	const hand_entry device[] = {{VMM_ARCHIVE_INDEX, AE_IFREG, idx, NULL, -1},
				     {"config.json", AE_IFCHR, NULL, NULL, -1}};
	expect_refused(device, 2, "only regular files");
	const hand_entry bad_sum[] = {{VMM_ARCHIVE_INDEX, AE_IFREG, idx_bad, NULL, -1},
				      {"config.json", AE_IFREG, "{}", NULL, -1}};
	expect_refused(bad_sum, 2, "checksum mismatch");
	const hand_entry unlisted[] = {{VMM_ARCHIVE_INDEX, AE_IFREG, idx, NULL, -1},
				       {"config.json", AE_IFREG, "{}", NULL, -1},
				       {"extra", AE_IFREG, "y", NULL, -1}};
	expect_refused(unlisted, 3, "not listed");
	const hand_entry missing[] = {{VMM_ARCHIVE_INDEX, AE_IFREG, idx, NULL, -1}};
	expect_refused(missing, 1, "missing");
	const hand_entry twice[] = {{VMM_ARCHIVE_INDEX, AE_IFREG, idx, NULL, -1},
				    {"config.json", AE_IFREG, "{}", NULL, -1},
				    {"config.json", AE_IFREG, "{}", NULL, -1}};
	expect_refused(twice, 3, "twice");
	const hand_entry wrong_size[] = {{VMM_ARCHIVE_INDEX, AE_IFREG, idx, NULL, -1},
					 {"config.json", AE_IFREG, "{}}", NULL, -1}};
	expect_refused(wrong_size, 2, "size differs");
	const hand_entry not_json[] = {{VMM_ARCHIVE_INDEX, AE_IFREG, "{nope", NULL, -1}};
	expect_refused(not_json, 1, "invalid JSON");
	free(idx);
	free(idx_evil);
	free(idx_bad);
}

static void test_archive_read__truncated_and_garbage(void **state)
{
	(void)state;
	static char buf[1 << 20];
	char *idx = index_for("config.json", "{\"a\":1}");
	const hand_entry good[] = {{VMM_ARCHIVE_INDEX, AE_IFREG, idx, NULL, -1},
				   {"config.json", AE_IFREG, "{\"a\":1}", NULL, -1}};
	size_t len = make_archive(buf, sizeof(buf), good, 2);
	char *dst = test_tmpdir("/tmp/vmm-ut-archive.");
	vmm_error *err = NULL;
	assert_int_equal(vmm_archive_read_memory(buf, len, dst, &err), 0);
	vmm_rm_rf(dst, NULL);
	/* every truncation is refused, never accepted */
	for (size_t cut = 0; cut < len; cut += len / 7 + 1) {
		assert_int_equal(mkdir(dst, 0700), 0);
		assert_int_equal(vmm_archive_read_memory(buf, cut, dst, &err), -1);
		vmm_error_free(err);
		err = NULL;
		vmm_rm_rf(dst, NULL);
	}
	assert_int_equal(mkdir(dst, 0700), 0);
	assert_int_equal(vmm_archive_read_memory("garbage!garbage!", 16, dst, &err), -1);
	vmm_error_free(err);
	test_tmpdir_free(dst);
	free(idx);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_archive_roundtrip__sparse_kept),
	    cmocka_unit_test(test_archive_read__hostile),
	    cmocka_unit_test(test_archive_read__truncated_and_garbage),
	};
	return cmocka_run_group_tests_name("archive", tests, NULL, NULL);
}
