/* state.vmmsave in format 1 (vmm 0.1's, still read): round trips, and every way it can be wrong. */
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
#include <sys/wait.h>

#include "common/util.h"
#include "vm/savefile.h"
#include "tests/unit/helpers.h"

typedef struct fixture {
	char *dir;
	char *path;
	unsigned char *data;
	size_t len;
} fixture;

/* Memory-like content: text, repeated binary-ish runs, some random, zeros. */
static unsigned char *make_data(size_t len)
{
	unsigned char *d = xmalloc(len);
	static const char text[] = "ffffffff81000000 T _text\nffffffff81000040 t startup_64\n";
	for (size_t i = 0; i < len; i++) {
		size_t block = i / 4096;
		if (block % 4 == 0)
			d[i] = (unsigned char)text[i % (sizeof(text) - 1)];
		else if (block % 4 == 1)
			d[i] = (unsigned char)(i * 7 + block);
		else if (block % 4 == 2)
			d[i] = 0;
		else
			d[i] = (unsigned char)rand();
	}
	return d;
}

static int setup(void **state)
{
	fixture *f = xcalloc(1, sizeof(*f));
	f->dir = test_tmpdir("/tmp/vmm-savefile.");
	f->path = path_join(f->dir, "state.vmmsave");
	f->len = 3u << 20;
	f->data = make_data(f->len);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	fixture *f = *state;
	test_tmpdir_free(f->dir);
	free(f->path);
	free(f->data);
	free(f);
	return 0;
}

static vmm_savefile_header *sample_header(void)
{
	vmm_savefile_header *h = vmm_savefile_header_new();
	h->qemu_version = xstrdup("7.2.22");
	h->qemu_package = xstrdup("Debian 1:7.2+dfsg-7");
	h->machine = xstrdup("pc-q35-7.2");
	h->arch = xstrdup("x86_64");
	h->accel = xstrdup("tcg");
	h->fingerprint =
	    xstrdup("sha256:0000000000000000000000000000000000000000000000000000000000000000");
	h->model = json_pack("[s,s,s]", "qemu-system-x86_64", "-m", "256M");
	h->cpus = 2;
	h->memory = 256u << 20;
	h->created = xstrdup("2026-01-01T00:00:00Z");
	return h;
}

/* Write f->data as a state file through a pipe, as QEMU would. */
static void write_state(fixture *f, int workers)
{
	vmm_savefile_writer *w = NULL;
	vmm_error *err = NULL;
	assert_int_equal(vmm_savefile_writer_open(&w, f->path, 1, workers, &err), 0);
	int p[2];
	assert_int_equal(pipe(p), 0);
	pid_t pid = fork();
	if (pid == 0) {
		close(p[0]);
		_exit(vmm_write_all(p[1], f->data, f->len) == 0 ? 0 : 1);
	}
	close(p[1]);
	assert_int_equal(vmm_savefile_writer_pump(w, p[0], &err), 0);
	close(p[0]);
	int st;
	waitpid(pid, &st, 0);
	vmm_savefile_header *h = sample_header();
	vmm_savefile_stats stats = {0};
	if (vmm_savefile_writer_commit(w, h, &stats, &err) < 0)
		fail_msg("%s", err->msg);
	assert_int_equal(stats.raw_bytes, f->len);
	assert_true(stats.compressed_bytes < f->len);
	vmm_savefile_header_free(h);
	vmm_savefile_writer_free(w);
}

/* Restore into a temp file and return its bytes (len in *n). */
static int restore(fixture *f, unsigned char **out, size_t *n, vmm_error **err)
{
	vmm_savefile_header *h = NULL;
	if (vmm_savefile_read_header(&h, f->path, err) < 0)
		return -1;
	char *tmp = path_join(f->dir, "restored");
	int fd = open(tmp, O_RDWR | O_CREAT | O_TRUNC, 0600);
	assert_true(fd >= 0);
	int rc = vmm_savefile_restore(f->path, h, fd, NULL, err);
	vmm_savefile_header_free(h);
	if (rc == 0) {
		char *buf = NULL;
		assert_int_equal(vmm_read_file(tmp, 64u << 20, &buf, n, NULL), 0);
		*out = (unsigned char *)buf;
	}
	close(fd);
	free(tmp);
	return rc;
}

static void test_savefile_roundtrip__multithreaded(void **state)
{
	fixture *f = *state;
	write_state(f, 2);
	unsigned char *got = NULL;
	size_t n = 0;
	vmm_error *err = NULL;
	if (restore(f, &got, &n, &err) < 0)
		fail_msg("%s", err->msg);
	assert_int_equal(n, f->len);
	assert_memory_equal(got, f->data, f->len);
	free(got);
	/* the temporary is gone, the header says what was written */
	char *tmp = xasprintf("%s.tmp", f->path);
	assert_false(path_exists(tmp));
	free(tmp);
	vmm_savefile_header *h = NULL;
	assert_int_equal(vmm_savefile_read_header(&h, f->path, NULL), 0);
	assert_int_equal(h->format, VMM_SAVEFILE_FORMAT_STREAM);
	assert_string_equal(h->qemu_version, "7.2.22");
	assert_string_equal(h->machine, "pc-q35-7.2");
	assert_int_equal(h->raw_size, f->len);
	assert_int_equal(h->cpus, 2);
	assert_int_equal(h->memory, 256u << 20);
	assert_int_equal(json_array_size(h->model), 3);
	char digest[72];
	vmm_sha256_digest(f->data, f->len, digest);
	assert_string_equal(h->raw_sha256, digest);
	vmm_savefile_header_free(h);
}

static void test_savefile_roundtrip__single_thread(void **state)
{
	fixture *f = *state;
	write_state(f, 1);
	unsigned char *got = NULL;
	size_t n = 0;
	assert_int_equal(restore(f, &got, &n, NULL), 0);
	assert_int_equal(n, f->len);
	assert_memory_equal(got, f->data, f->len);
	free(got);
}

static void test_savefile_writer__abandoned_leaves_nothing(void **state)
{
	fixture *f = *state;
	vmm_savefile_writer *w = NULL;
	assert_int_equal(vmm_savefile_writer_open(&w, f->path, 1, 0, NULL), 0);
	assert_int_equal(vmm_savefile_writer_write(w, f->data, f->len, NULL), 0);
	vmm_savefile_writer_free(w);
	char *tmp = xasprintf("%s.tmp", f->path);
	assert_false(path_exists(tmp));
	assert_false(path_exists(f->path));
	free(tmp);
}

static void expect_error(fixture *f, int code, const char *needle)
{
	unsigned char *got = NULL;
	size_t n = 0;
	vmm_error *err = NULL;
	assert_int_equal(restore(f, &got, &n, &err), -1);
	assert_non_null(err);
	if (!strstr(err->msg, needle))
		fail_msg("\"%s\" not in \"%s\"", needle, err->msg);
	assert_int_equal(err->code, code);
	assert_null(strchr(err->msg, '\n'));
	vmm_error_free(err);
}

static void test_savefile_bad__truncated(void **state)
{
	fixture *f = *state;
	write_state(f, 0);
	struct stat st;
	assert_int_equal(stat(f->path, &st), 0);
	assert_int_equal(truncate(f->path, st.st_size - 1000), 0);
	expect_error(f, VMM_EFORMAT, "is truncated");
	/* shorter than a header */
	assert_int_equal(truncate(f->path, 100), 0);
	expect_error(f, VMM_EFORMAT, "is truncated");
}

static void flip_byte(const char *path, off_t off)
{
	int fd = open(path, O_RDWR);
	assert_true(fd >= 0);
	unsigned char b;
	assert_int_equal(pread(fd, &b, 1, off), 1);
	b ^= 0x5a;
	assert_int_equal(pwrite(fd, &b, 1, off), 1);
	close(fd);
}

static void test_savefile_bad__corrupt_stream(void **state)
{
	fixture *f = *state;
	write_state(f, 0);
	struct stat st;
	assert_int_equal(stat(f->path, &st), 0);
	flip_byte(f->path, VMM_SAVEFILE_HEADER_SIZE + (st.st_size - VMM_SAVEFILE_HEADER_SIZE) / 2);
	expect_error(f, VMM_EFORMAT, "is corrupt");
}

static void test_savefile_bad__digest_mismatch(void **state)
{
	fixture *f = *state;
	write_state(f, 0);
	/* a valid stream whose header names another SHA-256 */
	vmm_savefile_header *h = NULL;
	assert_int_equal(vmm_savefile_read_header(&h, f->path, NULL), 0);
	h->raw_sha256[10] = h->raw_sha256[10] == 'a' ? 'b' : 'a';
	unsigned char *hdr = vmm_savefile_header_encode(h);
	int fd = open(f->path, O_WRONLY);
	assert_int_equal(pwrite(fd, hdr, VMM_SAVEFILE_HEADER_SIZE, 0), VMM_SAVEFILE_HEADER_SIZE);
	close(fd);
	free(hdr);
	vmm_savefile_header_free(h);
	expect_error(f, VMM_EFORMAT, "SHA-256 mismatch");
}

static void test_savefile_bad__headers(void **state)
{
	(void)state;
	vmm_savefile_header *good = sample_header();
	good->format = VMM_SAVEFILE_FORMAT_STREAM;
	good->raw_sha256 =
	    xstrdup("sha256:1111111111111111111111111111111111111111111111111111111111111111");
	unsigned char *buf = vmm_savefile_header_encode(good);
	vmm_savefile_header *h = NULL;
	vmm_error *err = NULL;
	assert_int_equal(vmm_savefile_header_parse(&h, buf, VMM_SAVEFILE_HEADER_SIZE, "x", &err),
			 0);
	vmm_savefile_header_free(h);

	struct {
		const char *json;
		int code;
		const char *needle;
	} cases[] = {
	    {"{\"format\":3}", VMM_EINCOMPATIBLE, "state format 3"},
	    {"{\"format\":1}", VMM_EFORMAT, "header has no"},
	    {"{\"format\":2}", VMM_EFORMAT, "header has no"},
	    {"not json", VMM_EFORMAT, "header is corrupt"},
	    {"[1,2]", VMM_EFORMAT, "header is corrupt"},
	};
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		unsigned char b[VMM_SAVEFILE_HEADER_SIZE] = {0};
		size_t l = strlen(cases[i].json);
		memcpy(b, VMM_SAVEFILE_MAGIC, 8);
		b[8] = (unsigned char)l;
		memcpy(b + 12, cases[i].json, l);
		h = NULL;
		assert_int_equal(vmm_savefile_header_parse(&h, b, sizeof(b), "x", &err), -1);
		if (!strstr(err->msg, cases[i].needle))
			fail_msg("case %zu: \"%s\" not in \"%s\"", i, cases[i].needle, err->msg);
		assert_int_equal(err->code, cases[i].code);
		assert_null(h);
	}
	/* bad magic, and a length past the buffer */
	memcpy(buf, "NOTSAVE\n", 8);
	assert_int_equal(vmm_savefile_header_parse(&h, buf, VMM_SAVEFILE_HEADER_SIZE, "x", &err),
			 -1);
	assert_non_null(strstr(err->msg, "not a vmm state file"));
	memcpy(buf, VMM_SAVEFILE_MAGIC, 8);
	buf[10] = 0x7f;
	assert_int_equal(vmm_savefile_header_parse(&h, buf, VMM_SAVEFILE_HEADER_SIZE, "x", &err),
			 -1);
	vmm_error_free(err);
	free(buf);
	vmm_savefile_header_free(good);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_savefile_roundtrip__multithreaded, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_savefile_roundtrip__single_thread, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_savefile_writer__abandoned_leaves_nothing, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_savefile_bad__truncated, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_savefile_bad__corrupt_stream, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_savefile_bad__digest_mismatch, setup, teardown),
	    cmocka_unit_test(test_savefile_bad__headers),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
