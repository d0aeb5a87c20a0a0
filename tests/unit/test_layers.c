/* Disk layers: sparse disk -> Apple LZ4 chunks -> sparse disk, and every check on the way back. */
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
#include "registry/oci/applelz4.h"
#include "registry/oci/layers.h"
#include "tests/unit/helpers.h"

#define MiB (1024ULL * 1024)

static char *tmpdir;

static int setup(void **state)
{
	(void)state;
	tmpdir = test_tmpdir("/var/tmp/vmm-test-layers.");
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	test_tmpdir_free(tmpdir);
	return 0;
}

static char *tpath(const char *name)
{
	return path_join(tmpdir, name);
}

/* A 12 MiB sparse disk: text, random, allocated zeros, holes, a tail of data. */
static int make_disk(const char *path, uint64_t size)
{
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, (off_t)size), 0);
	unsigned char *buf = malloc(MiB);
	for (size_t i = 0; i < MiB; i++)
		buf[i] = (unsigned char)"vmm pushes tart images "[i % 23];
	assert_int_equal(vmm_pwrite_all(fd, buf, MiB, 0), 0);
	vmm_random_bytes(buf, MiB);
	assert_int_equal(vmm_pwrite_all(fd, buf, MiB, (off_t)(3 * MiB + 100)), 0);
	memset(buf, 0, MiB);
	assert_int_equal(vmm_pwrite_all(fd, buf, MiB, (off_t)(6 * MiB)), 0); /* allocated zeros */
	vmm_random_bytes(buf, 5000);
	assert_int_equal(vmm_pwrite_all(fd, buf, 5000, (off_t)(size - 5000)), 0);
	free(buf);
	return fd;
}

static uint64_t allocated(int fd)
{
	struct stat st;
	fstat(fd, &st);
	return (uint64_t)st.st_blocks * 512;
}

static void files_equal(int a, int b, uint64_t size)
{
	unsigned char *x = malloc(MiB), *y = malloc(MiB);
	for (uint64_t off = 0; off < size; off += MiB) {
		size_t n = size - off < MiB ? (size_t)(size - off) : MiB;
		assert_int_equal(vmm_pread_all(a, x, n, (off_t)off), 0);
		assert_int_equal(vmm_pread_all(b, y, n, (off_t)off), 0);
		if (memcmp(x, y, n) != 0)
			fail_msg("files differ in the MiB at %llu", (unsigned long long)off);
	}
	free(x);
	free(y);
}

static void progress_count(void *ctx, uint64_t n)
{
	*(uint64_t *)ctx += n;
}

static void test_layers_roundtrip__sparse_disk(void **state)
{
	(void)state;
	const uint64_t size = 12 * MiB + 4096 * 3;
	const uint64_t chunk = 2 * MiB + 4096; /* odd chunking: no 512 MiB assumption */
	cleanup_free char *src_path = tpath("src.img");
	cleanup_free char *dst_path = tpath("dst.img");
	int src = make_disk(src_path, size);
	int dst = open(dst_path, O_RDWR | O_CREAT | O_TRUNC, 0644);
	assert_int_equal(ftruncate(dst, (off_t)size), 0);
	uint64_t seen = 0;
	for (uint64_t off = 0, i = 0; off < size; off += chunk, i++) {
		uint64_t n = size - off < chunk ? size - off : chunk;
		vmm_disk_chunk c;
		vmm_error *err = NULL;
		assert_int_equal(
		    vmm_disk_chunk_encode(src, off, n, &c, progress_count, &seen, &err), 0);
		assert_memory_equal(c.blob, "bv4", 3);
		char d[72];
		vmm_sha256_digest(c.blob, c.blob_len, d);
		assert_string_equal(d, c.digest);
		vmm_descriptor desc = {.size = c.blob_len, .uncompressed_size = n, .offset = off};
		memcpy(desc.digest, c.digest, 72);
		memcpy(desc.uncompressed_digest, c.uncompressed_digest, 72);
		char rd[72];
		assert_int_equal(vmm_region_digest(src, off, n, rd, &err), 0);
		assert_string_equal(rd, c.uncompressed_digest);
		vmm_layer_writer *w = NULL;
		assert_int_equal(vmm_layer_writer_new(&w, dst, &desc, "layer", &err), 0);
		/* in uneven slices, as a network delivers them */
		for (size_t p = 0; p < c.blob_len;) {
			size_t take = 1 + (p * 7919 + i) % 70000;
			if (take > c.blob_len - p)
				take = c.blob_len - p;
			if (vmm_layer_writer_feed(w, c.blob + p, take, &err) < 0)
				fail_msg("%s", err->msg);
			p += take;
		}
		if (vmm_layer_writer_finish(w, &err) < 0)
			fail_msg("%s", err->msg);
		vmm_layer_writer_free(w);
		vmm_disk_chunk_clear(&c);
	}
	assert_int_equal(seen, size);
	files_equal(src, dst, size);
	/* data: 1 MiB text + 1 MiB random + 5000 bytes; zeros and holes stay holes */
	uint64_t data = 2 * MiB + 5000;
	assert_true(allocated(dst) >= data);
	assert_true(allocated(dst) <= data + 16 * 4096);
	close(src);
	close(dst);
}

static void test_layers_encode__empty_chunk(void **state)
{
	(void)state;
	cleanup_free char *p = tpath("empty.img");
	int fd = open(p, O_RDWR | O_CREAT | O_TRUNC, 0644);
	assert_int_equal(ftruncate(fd, (off_t)(64 * MiB)), 0);
	vmm_disk_chunk c;
	vmm_error *err = NULL;
	assert_int_equal(vmm_disk_chunk_encode(fd, 0, 64 * MiB, &c, NULL, NULL, &err), 0);
	char z[72];
	vmm_zero_digest(64 * MiB, z);
	assert_string_equal(c.uncompressed_digest, z);
	assert_true(c.blob_len < 64 * MiB / 200);
	unsigned char *out = NULL;
	size_t n = 0;
	assert_int_equal(vmm_applelz4_decompress(c.blob, c.blob_len, 64 * MiB, &out, &n, &err), 0);
	assert_int_equal(n, 64 * MiB);
	char d[72];
	vmm_sha256_digest(out, n, d);
	assert_string_equal(d, z);
	free(out);
	vmm_disk_chunk_clear(&c);
	close(fd);
	/* the built-in digest for Tart's chunk size is the digest of 512 MiB of zeros */
	unsigned char *zeros = calloc(1, 512 * MiB);
	char computed[72], builtin[72];
	vmm_sha256_digest(zeros, 512 * MiB, computed);
	vmm_zero_digest(512 * MiB, builtin);
	assert_string_equal(builtin, computed);
	free(zeros);
}

/* Encode one 1 MiB layer of mixed data for the hostile cases. */
static void one_layer(vmm_disk_chunk *c, vmm_descriptor *d, int *src_fd)
{
	cleanup_free char *p = tpath("one.img");
	int fd = make_disk(p, 8 * MiB);
	vmm_error *err = NULL;
	assert_int_equal(vmm_disk_chunk_encode(fd, 3 * MiB, 2 * MiB, c, NULL, NULL, &err), 0);
	memset(d, 0, sizeof(*d));
	d->size = c->blob_len;
	d->uncompressed_size = 2 * MiB;
	d->offset = MiB;
	memcpy(d->digest, c->digest, 72);
	memcpy(d->uncompressed_digest, c->uncompressed_digest, 72);
	*src_fd = fd;
}

static int feed_all(const vmm_descriptor *d, const unsigned char *blob, size_t len, int dst,
		    vmm_error **err)
{
	vmm_layer_writer *w = NULL;
	int rc = vmm_layer_writer_new(&w, dst, d, "layer 1 `sha256:x`", err);
	if (rc == 0)
		rc = vmm_layer_writer_feed(w, blob, len, err);
	if (rc == 0)
		rc = vmm_layer_writer_finish(w, err);
	vmm_layer_writer_free(w);
	return rc;
}

static void test_layers_writer__hostile(void **state)
{
	(void)state;
	vmm_disk_chunk c;
	vmm_descriptor d;
	int src;
	one_layer(&c, &d, &src);
	cleanup_free char *p = tpath("hostile.img");
	int dst = open(p, O_RDWR | O_CREAT | O_TRUNC, 0644);
	assert_int_equal(ftruncate(dst, (off_t)(4 * MiB)), 0);
	vmm_error *err = NULL;

	/* good first */
	assert_int_equal(feed_all(&d, c.blob, c.blob_len, dst, &err), 0);

	/* truncated blob */
	assert_int_equal(feed_all(&d, c.blob, c.blob_len - 10, dst, &err), -1);
	assert_non_null(strstr(err->msg, "truncated"));
	assert_non_null(strstr(err->msg, "layer 1"));
	vmm_error_free(err);
	err = NULL;

	/* more than announced */
	vmm_descriptor small = d;
	small.size = c.blob_len - 1;
	assert_int_equal(feed_all(&small, c.blob, c.blob_len, dst, &err), -1);
	assert_non_null(strstr(err->msg, "more than"));
	vmm_error_free(err);
	err = NULL;

	/* bytes that do not match the digest (a flipped bit in stored random data) */
	unsigned char *bad = malloc(c.blob_len);
	memcpy(bad, c.blob, c.blob_len);
	bad[c.blob_len / 2] ^= 1;
	int rc = feed_all(&d, bad, c.blob_len, dst, &err);
	assert_int_equal(rc, -1);
	assert_true(strstr(err->msg, "digest mismatch") || strstr(err->msg, "Apple LZ4"));
	vmm_error_free(err);
	err = NULL;

	/* a valid stream that lies: digest of the blob matches, content does not */
	vmm_descriptor liar = d;
	memcpy(liar.uncompressed_digest,
	       "sha256:0000000000000000000000000000000000000000000000000000000000000000", 72);
	assert_int_equal(feed_all(&liar, c.blob, c.blob_len, dst, &err), -1);
	assert_non_null(strstr(err->msg, "uncompressed digest mismatch"));
	vmm_error_free(err);
	err = NULL;

	/* the manifest claims more uncompressed bytes than the stream holds */
	vmm_descriptor longer = d;
	longer.uncompressed_size += 4096;
	assert_int_equal(feed_all(&longer, c.blob, c.blob_len, dst, &err), -1);
	assert_non_null(strstr(err->msg, "decompresses to"));
	vmm_error_free(err);
	err = NULL;

	/* ...or fewer */
	vmm_descriptor shorter = d;
	shorter.uncompressed_size -= 4096;
	assert_int_equal(feed_all(&shorter, c.blob, c.blob_len, dst, &err), -1);
	assert_non_null(strstr(err->msg, "more than the"));
	vmm_error_free(err);
	err = NULL;

	/* not LZ4 at all, with a matching digest (a registry serving garbage honestly) */
	unsigned char junk[100];
	memset(junk, 'x', sizeof(junk));
	vmm_descriptor jd = d;
	jd.size = sizeof(junk);
	vmm_sha256_digest(junk, sizeof(junk), jd.digest);
	assert_int_equal(feed_all(&jd, junk, sizeof(junk), dst, &err), -1);
	assert_non_null(strstr(err->msg, "unknown block magic"));
	assert_non_null(strstr(err->msg, "layer 1"));
	vmm_error_free(err);
	err = NULL;

	/* after all that, a restart leaves the right bytes */
	assert_int_equal(feed_all(&d, c.blob, c.blob_len, dst, &err), 0);
	files_equal(src, dst, 0); /* no-op; compare the region below */
	char got[72];
	assert_int_equal(vmm_region_digest(dst, MiB, 2 * MiB, got, &err), 0);
	assert_string_equal(got, d.uncompressed_digest);
	free(bad);
	vmm_disk_chunk_clear(&c);
	close(src);
	close(dst);
}

static void test_layers_copy_local__verifies(void **state)
{
	(void)state;
	vmm_disk_chunk c;
	vmm_descriptor d;
	int src;
	one_layer(&c, &d, &src);
	cleanup_free char *src_path = tpath("one.img");
	cleanup_free char *p = tpath("copy.img");
	int dst = open(p, O_RDWR | O_CREAT | O_TRUNC, 0644);
	assert_int_equal(ftruncate(dst, (off_t)(4 * MiB)), 0);
	vmm_error *err = NULL;
	assert_int_equal(vmm_layer_copy_local(dst, src_path, 3 * MiB, &d, &err), 0);
	char got[72];
	assert_int_equal(vmm_region_digest(dst, MiB, 2 * MiB, got, &err), 0);
	assert_string_equal(got, d.uncompressed_digest);
	/* the wrong region of the source does not match: refused, region cleared */
	assert_int_equal(vmm_layer_copy_local(dst, src_path, 0, &d, &err), -1);
	assert_non_null(strstr(err->msg, "does not match"));
	vmm_error_free(err);
	err = NULL;
	char z[72];
	vmm_zero_digest(2 * MiB, z);
	assert_int_equal(vmm_region_digest(dst, MiB, 2 * MiB, got, &err), 0);
	assert_string_equal(got, z);
	vmm_disk_chunk_clear(&c);
	close(src);
	close(dst);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_layers_roundtrip__sparse_disk),
	    cmocka_unit_test(test_layers_encode__empty_chunk),
	    cmocka_unit_test(test_layers_writer__hostile),
	    cmocka_unit_test(test_layers_copy_local__verifies),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
