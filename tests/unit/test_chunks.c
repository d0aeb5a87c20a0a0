/* Format-2 state bodies: memory and stream round trips, re-encoding, and corrupt files. */
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
#include <poll.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "common/util.h"
#include "vm/chunks.h"

#define RAM (24u << 20) /* 12 chunks, not all of them touched */

typedef struct fixture {
	char dir[64];
	char *path;
	int ram;	       /* memfd: the "guest memory" */
	unsigned char *device; /* the "device state" stream */
	size_t device_len;
} fixture;

/* Memory-like pages: text, binary-ish, random, and pages that were touched but are zero. */
static void fill_page(unsigned char *p, size_t n)
{
	static const char text[] = "ffffffff81000000 T _text\nffffffff81000040 t startup_64\n";
	for (size_t i = 0; i < 4096; i++) {
		switch (n % 4) {
		case 0:
			p[i] = (unsigned char)text[(i + n) % (sizeof(text) - 1)];
			break;
		case 1:
			p[i] = (unsigned char)(i * 7 + n);
			break;
		case 2:
			p[i] = (unsigned char)rand();
			break;
		default:
			p[i] = 0;
			break;
		}
	}
}

static int setup(void **state)
{
	fixture *f = xcalloc(1, sizeof(*f));
	strcpy(f->dir, "/tmp/vmm-chunks.XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	f->path = path_join(f->dir, "state.vmmsave");
	f->ram = memfd_create("test-ram", MFD_CLOEXEC);
	assert_true(f->ram >= 0);
	assert_int_equal(ftruncate(f->ram, RAM), 0);
	/* pages in the first 3 MiB, a stretch at 10 MiB, the very last page */
	unsigned char page[4096];
	for (size_t n = 0; n < 768; n++) {
		fill_page(page, n);
		assert_int_equal(vmm_pwrite_all(f->ram, page, 4096, (off_t)n * 4096), 0);
	}
	for (size_t n = 0; n < 100; n++) {
		fill_page(page, n + 1);
		assert_int_equal(vmm_pwrite_all(f->ram, page, 4096, (10 << 20) + (off_t)n * 8192),
				 0);
	}
	fill_page(page, 5);
	assert_int_equal(vmm_pwrite_all(f->ram, page, 4096, RAM - 4096), 0);
	f->device_len = 5u << 20 | 12345; /* more than two chunks, the last one short */
	f->device = xmalloc(f->device_len + 4096);
	for (size_t i = 0; i < f->device_len; i += 4096)
		fill_page(f->device + i, i / 4096 + 1);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	fixture *f = *state;
	vmm_rm_rf(f->dir, NULL);
	close(f->ram);
	free(f->path);
	free(f->device);
	free(f);
	return 0;
}

static vmm_savefile_header *sample_header(void)
{
	vmm_savefile_header *h = vmm_savefile_header_new();
	h->qemu_version = xstrdup("7.2.22");
	h->qemu_package = xstrdup("");
	h->machine = xstrdup("pc-q35-7.2");
	h->arch = xstrdup("x86_64");
	h->accel = xstrdup("tcg");
	h->fingerprint =
	    xstrdup("sha256:0000000000000000000000000000000000000000000000000000000000000000");
	h->model = json_pack("[s]", "qemu-system-x86_64");
	h->cpus = 2;
	h->memory = RAM;
	h->created = xstrdup("2026-01-01T00:00:00Z");
	return h;
}

/* Write a state: the device stream through a pipe and, if with_ram, the memory. */
static void write_state_base(fixture *f, int ram, const vmm_chunk_base *base, vmm_codec codec,
			     int threads, uint64_t *compressed, uint64_t *reused)
{
	bool with_ram = ram >= 0;
	char *tmp = xasprintf("%s.tmp", f->path);
	int fd = open(tmp, O_RDWR | O_CREAT | O_TRUNC, 0600);
	assert_true(fd >= 0);
	vmm_chunk_writer *w = NULL;
	vmm_error *err = NULL;
	assert_int_equal(vmm_chunk_writer_open(&w, fd, "test state", codec, 0, threads, &err), 0);
	vmm_chunk_writer_set_base(w, base);
	struct stat before;
	if (with_ram) {
		assert_int_equal(fstat(ram, &before), 0);
		assert_int_equal(vmm_chunk_writer_add_memory(w, ram, RAM, &err), 0);
	}
	int p[2];
	assert_int_equal(pipe(p), 0);
	pid_t pid = fork();
	if (pid == 0) {
		close(p[0]);
		_exit(vmm_write_all(p[1], f->device, f->device_len) == 0 ? 0 : 1);
	}
	close(p[1]);
	assert_int_equal(vmm_chunk_writer_pump(w, p[0], &err), 0);
	close(p[0]);
	int st;
	waitpid(pid, &st, 0);
	vmm_savefile_header *h = sample_header();
	if (vmm_chunk_writer_finish(w, h, &err) < 0)
		fail_msg("%s", err->msg);
	uint64_t c = 0, r = 0;
	vmm_chunk_writer_counts(w, &c, &r);
	if (compressed)
		*compressed = c;
	if (reused)
		*reused = r;
	vmm_chunk_writer_free(w);
	if (with_ram) { /* reading the memory gave none of its holes pages */
		struct stat after;
		assert_int_equal(fstat(ram, &after), 0);
		assert_int_equal(after.st_blocks, before.st_blocks);
	}
	assert_int_equal(vmm_savefile_publish(fd, tmp, f->path, h, &err), 0);
	close(fd);
	vmm_savefile_header_free(h);
	free(tmp);
}

static void write_state(fixture *f, bool with_ram, vmm_codec codec, int threads)
{
	write_state_base(f, with_ram ? f->ram : -1, NULL, codec, threads, NULL, NULL);
}

/* Load the state back: memory into a fresh memfd (returned), the stream into *dev. */
static int load_state_base(fixture *f, int *ram_out, unsigned char **dev, size_t *dev_len,
			   vmm_chunk_base **base, vmm_error **err)
{
	vmm_savefile_header *h = NULL;
	if (vmm_savefile_read_header(&h, f->path, err) < 0)
		return -1;
	int fd = open(f->path, O_RDONLY);
	assert_true(fd >= 0);
	vmm_chunk_index *x = NULL;
	int rc = vmm_chunk_index_load(&x, fd, h, "test state", err);
	int ram = memfd_create("loaded", MFD_CLOEXEC);
	assert_int_equal(ftruncate(ram, (off_t)h->memory), 0);
	if (rc == 0 && h->kind == VMM_SAVEFILE_KIND_MEMORY) {
		vmm_chunk_fill *fill = NULL;
		assert_int_equal(vmm_chunk_fill_start(&fill, fd, h, x, ram, 3, "test state", err),
				 0);
		rc = vmm_chunk_fill_wait(fill, base, err);
	}
	char *out = path_join(f->dir, "stream.out");
	if (rc == 0) {
		int o = open(out, O_RDWR | O_CREAT | O_TRUNC, 0600);
		rc = vmm_chunk_stream_out(fd, h, x, o, 2, "test state", err);
		close(o);
	}
	if (rc == 0) {
		char *buf = NULL;
		assert_int_equal(vmm_read_file(out, 64u << 20, &buf, dev_len, NULL), 0);
		*dev = (unsigned char *)buf;
	}
	free(out);
	vmm_chunk_index_free(x);
	vmm_savefile_header_free(h);
	close(fd);
	if (rc < 0) {
		close(ram);
		return -1;
	}
	*ram_out = ram;
	return 0;
}

static int load_state(fixture *f, int *ram_out, unsigned char **dev, size_t *dev_len,
		      vmm_error **err)
{
	return load_state_base(f, ram_out, dev, dev_len, NULL, err);
}

static void assert_same_ram(int a, int b)
{
	unsigned char *x = mmap(NULL, RAM, PROT_READ, MAP_SHARED, a, 0);
	unsigned char *y = mmap(NULL, RAM, PROT_READ, MAP_SHARED, b, 0);
	assert_true(x != MAP_FAILED && y != MAP_FAILED);
	assert_memory_equal(x, y, RAM);
	munmap(x, RAM);
	munmap(y, RAM);
}

static void roundtrip(fixture *f, vmm_codec codec, int threads)
{
	write_state(f, true, codec, threads);
	int ram = -1;
	unsigned char *dev = NULL;
	size_t len = 0;
	vmm_error *err = NULL;
	if (load_state(f, &ram, &dev, &len, &err) < 0)
		fail_msg("%s", err->msg);
	assert_int_equal(len, f->device_len);
	assert_memory_equal(dev, f->device, len);
	/* untouched and zero pages stay holes: only what was stored is allocated */
	struct stat st;
	assert_int_equal(fstat(ram, &st), 0);
	if ((uint64_t)st.st_blocks * 512 > 652 * 4096ull)
		fail_msg("%llu bytes allocated for 652 pages",
			 (unsigned long long)st.st_blocks * 512);
	assert_same_ram(f->ram, ram);
	close(ram);
	free(dev);
	vmm_savefile_header *h = NULL;
	assert_int_equal(vmm_savefile_read_header(&h, f->path, NULL), 0);
	assert_int_equal(h->format, 2);
	assert_int_equal(h->kind, VMM_SAVEFILE_KIND_MEMORY);
	assert_int_equal(h->codec, codec);
	assert_int_equal(h->device_size, f->device_len);
	/* 3/4 of the 768 + 100 + 1 written pages are non-zero */
	assert_int_equal(h->raw_size - h->device_size, (576 + 75 + 1) * 4096ull);
	assert_null(h->raw_sha256);
	vmm_savefile_header_free(h);
}

static void test_chunks_roundtrip__lz4(void **state)
{
	roundtrip(*state, VMM_CODEC_LZ4, 2);
}

/* the frames through the page cache, as on a file system without direct I/O */
static void test_chunks_roundtrip__buffered(void **state)
{
	setenv("VMM_STATE_DIRECT", "0", 1);
	roundtrip(*state, VMM_CODEC_LZ4, 2);
	unsetenv("VMM_STATE_DIRECT");
}

static void test_chunks_roundtrip__zstd_one_thread(void **state)
{
	roundtrip(*state, VMM_CODEC_ZSTD, 1);
}

static void test_chunks_roundtrip__stream_only(void **state)
{
	fixture *f = *state;
	write_state(f, false, VMM_CODEC_LZ4, 4);
	int ram = -1;
	unsigned char *dev = NULL;
	size_t len = 0;
	assert_int_equal(load_state(f, &ram, &dev, &len, NULL), 0);
	assert_int_equal(len, f->device_len);
	assert_memory_equal(dev, f->device, len);
	vmm_savefile_header *h = NULL;
	assert_int_equal(vmm_savefile_read_header(&h, f->path, NULL), 0);
	assert_int_equal(h->kind, VMM_SAVEFILE_KIND_STREAM);
	assert_int_equal(h->raw_size, f->device_len);
	vmm_savefile_header_free(h);
	close(ram);
	free(dev);
}

static void test_chunks_reencode__zstd(void **state)
{
	fixture *f = *state;
	write_state(f, true, VMM_CODEC_LZ4, 2);
	char *z = path_join(f->dir, "z.vmmsave");
	vmm_error *err = NULL;
	if (vmm_chunk_reencode(f->path, z, VMM_CODEC_ZSTD, 3, 2, &err) < 0)
		fail_msg("%s", err->msg);
	struct stat a, b;
	assert_int_equal(stat(f->path, &a), 0);
	assert_int_equal(stat(z, &b), 0);
	assert_true(b.st_size < a.st_size);
	assert_int_equal(rename(z, f->path), 0);
	int ram = -1;
	unsigned char *dev = NULL;
	size_t len = 0;
	if (load_state(f, &ram, &dev, &len, &err) < 0)
		fail_msg("%s", err->msg);
	assert_memory_equal(dev, f->device, f->device_len);
	assert_same_ram(f->ram, ram);
	vmm_savefile_header *h = NULL;
	assert_int_equal(vmm_savefile_read_header(&h, f->path, NULL), 0);
	assert_int_equal(h->codec, VMM_CODEC_ZSTD);
	vmm_savefile_header_free(h);
	close(ram);
	free(dev);
	free(z);
}

/* A state of the fixture written and loaded back, as for a resume: the RAM it loaded into. */
static int resumed(fixture *f, vmm_chunk_base **base)
{
	write_state(f, true, VMM_CODEC_LZ4, 2);
	int ram = -1;
	unsigned char *dev = NULL;
	size_t len = 0;
	vmm_error *err = NULL;
	if (load_state_base(f, &ram, &dev, &len, base, &err) < 0)
		fail_msg("%s", err->msg);
	free(dev);
	return ram;
}

/* Suspend after resume: the stretches the guest did not touch are copied, not compressed. */
static void test_chunks_reuse__unchanged_stretches(void **state)
{
	fixture *f = *state;
	vmm_chunk_base *base = NULL;
	int ram = resumed(f, &base);
	unsigned char *dev = NULL;
	size_t len = 0;
	vmm_error *err = NULL;
	assert_non_null(base);
	/* the "guest" changes one page at 1 MiB and zeroes another at 10 MiB */
	unsigned char page[4096];
	fill_page(page, 99);
	assert_int_equal(vmm_pwrite_all(ram, page, 4096, 1 << 20), 0);
	memset(page, 0, sizeof(page));
	assert_int_equal(vmm_pwrite_all(ram, page, 4096, 10 << 20), 0);
	/* the state it was loaded from goes away, as after a resume */
	assert_int_equal(unlink(f->path), 0);
	uint64_t compressed = 0, reused = 0;
	write_state_base(f, ram, base, VMM_CODEC_LZ4, 2, &compressed, &reused);
	vmm_chunk_base_free(base);
	/* 4 stretches hold data (0, 2, 10 and 22 MiB); the two touched ones are new */
	assert_int_equal(compressed, 2);
	assert_int_equal(reused, 2);
	int again = -1;
	if (load_state(f, &again, &dev, &len, &err) < 0)
		fail_msg("%s", err->msg);
	assert_same_ram(ram, again);
	close(ram);
	close(again);
	free(dev);
}

/* A save of ram into base's own file fd (at path), with 4 KiB of device state. */
static void write_in_place(fixture *f, int fd, const char *path, const vmm_chunk_base *base,
			   int ram, uint64_t *compressed, uint64_t *reused)
{
	vmm_chunk_writer *w = NULL;
	vmm_error *err = NULL;
	assert_int_equal(vmm_chunk_writer_open_in_place(&w, fd, base, "aside", 0, 2, &err), 0);
	assert_int_equal(vmm_chunk_writer_add_memory(w, ram, RAM, &err), 0);
	int p[2];
	assert_int_equal(pipe(p), 0);
	assert_int_equal(vmm_write_all(p[1], f->device, 4096), 0);
	close(p[1]);
	assert_int_equal(vmm_chunk_writer_pump(w, p[0], &err), 0);
	close(p[0]);
	vmm_savefile_header *h = sample_header();
	if (vmm_chunk_writer_finish(w, h, &err) < 0)
		fail_msg("%s", err->msg);
	vmm_chunk_writer_counts(w, compressed, reused);
	vmm_chunk_writer_free(w);
	assert_int_equal(vmm_savefile_publish(fd, path, f->path, h, &err), 0);
	vmm_savefile_header_free(h);
}

/* The state at f->path loads as ram, with that 4 KiB of device state. */
static void assert_loads_as(fixture *f, int ram)
{
	int again = -1;
	unsigned char *dev = NULL;
	size_t len = 0;
	vmm_error *err = NULL;
	if (load_state(f, &again, &dev, &len, &err) < 0)
		fail_msg("%s", err->msg);
	assert_int_equal(len, 4096);
	assert_memory_equal(dev, f->device, 4096);
	assert_same_ram(ram, again);
	close(again);
	free(dev);
}

/* ... and into the very file resumed from: only the changed stretches are written. */
static void test_chunks_reuse__in_place(void **state)
{
	fixture *f = *state;
	vmm_chunk_base *base = NULL;
	int ram = resumed(f, &base);
	assert_true(vmm_chunk_base_in_place_ok(base, VMM_CODEC_LZ4));
	unsigned char page[4096];
	fill_page(page, 77);
	assert_int_equal(vmm_pwrite_all(ram, page, 4096, 2 << 20), 0);
	/* the file is renamed aside, as after a resume, and written into */
	char *aside = path_join(f->dir, "aside");
	assert_int_equal(rename(f->path, aside), 0);
	struct stat before;
	assert_int_equal(stat(aside, &before), 0);
	int fd = open(aside, O_RDWR);
	uint64_t compressed = 0, reused = 0;
	write_in_place(f, fd, aside, base, ram, &compressed, &reused);
	assert_int_equal(compressed, 1);
	assert_int_equal(reused, 3);
	close(fd);
	vmm_chunk_base_free(base);
	/* the old stream and index are freed: fewer blocks than before, whatever the size */
	struct stat after;
	assert_int_equal(stat(f->path, &after), 0);
	assert_true(after.st_blocks < before.st_blocks);
	assert_loads_as(f, ram);
	close(ram);
	free(aside);
}

/* Wait for the saving ahead to catch up; how many chunks it holds then. */
static size_t ahead_caught_up(vmm_chunk_ahead *a, size_t *changing)
{
	for (;;) {
		struct pollfd p = {.fd = vmm_chunk_ahead_fd(a), .events = POLLIN};
		assert_int_equal(poll(&p, 1, 20000), 1);
		uint64_t bytes = 0;
		size_t stored = 0;
		vmm_error *err = NULL;
		int rc = vmm_chunk_ahead_news(a, &bytes, &stored, changing, &err);
		if (rc < 0)
			fail_msg("%s", err->msg);
		if (rc > 0)
			return stored;
	}
}

/*
 * Saving ahead from base (NULL: a boot) into fd (at path): once it has
 * caught up, a page changes at 2 MiB and the last page goes (saved again,
 * and dropped); then a change it has not seen, at 0, which the save
 * compresses; the save into the file keeps the rest, and the state loads
 * as ram is.
 */
static void ahead_then_in_place(fixture *f, int ram, vmm_chunk_base *base, int fd, const char *path)
{
	vmm_chunk_ahead *a = NULL;
	vmm_error *err = NULL;
	if (vmm_chunk_ahead_start(&a, ram, RAM, fd, &base, VMM_CODEC_LZ4, 0.1, &err) < 0)
		fail_msg("%s", err->msg);
	assert_null(base);
	size_t changing = 9;
	/* 4 stretches hold data (0, 2, 10 and 22 MiB) */
	assert_int_equal(ahead_caught_up(a, &changing), 4);
	assert_int_equal(changing, 0);
	unsigned char page[4096];
	fill_page(page, 41);
	assert_int_equal(vmm_pwrite_all(ram, page, 4096, 2 << 20), 0);
	assert_int_equal(
	    fallocate(ram, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, RAM - 4096, 4096), 0);
	assert_int_equal(ahead_caught_up(a, &changing), 3);
	fill_page(page, 42);
	assert_int_equal(vmm_pwrite_all(ram, page, 4096, 4096), 0);
	base = vmm_chunk_ahead_stop(a);
	assert_non_null(base);
	assert_true(vmm_chunk_base_in_place_ok(base, VMM_CODEC_LZ4));
	uint64_t compressed = 0, reused = 0;
	write_in_place(f, fd, path, base, ram, &compressed, &reused);
	assert_int_equal(compressed, 1);
	assert_int_equal(reused, 2);
	vmm_chunk_base_free(base);
	assert_loads_as(f, ram);
}

/* Saving ahead after a boot: a new file. */
static void test_chunks_ahead__boot(void **state)
{
	fixture *f = *state;
	char *aside = path_join(f->dir, "aside");
	int fd = open(aside, O_RDWR | O_CREAT | O_TRUNC, 0600);
	assert_true(fd >= 0);
	ahead_then_in_place(f, f->ram, NULL, fd, aside);
	close(fd);
	free(aside);
}

/* ... and after a resume: the state resumed from (its descriptor read-only) is the base. */
static void test_chunks_ahead__resumed(void **state)
{
	fixture *f = *state;
	vmm_chunk_base *base = NULL;
	int ram = resumed(f, &base);
	char *aside = path_join(f->dir, "aside");
	assert_int_equal(rename(f->path, aside), 0);
	int fd = open(aside, O_RDWR);
	assert_true(fd >= 0);
	ahead_then_in_place(f, ram, base, fd, aside);
	close(fd);
	close(ram);
	free(aside);
}

/*
 * A stretch whose frame grows each time it settles (k incompressible pages,
 * at 6 MiB where there were none): the room of the frames it left behind,
 * merged, takes the later ones, so the file grows by much less than their
 * sum; and the state saved into it then loads as the RAM is.
 */
static void test_chunks_ahead__growing(void **state)
{
	fixture *f = *state;
	char *aside = path_join(f->dir, "aside");
	int fd = open(aside, O_RDWR | O_CREAT | O_TRUNC, 0600);
	assert_true(fd >= 0);
	vmm_chunk_ahead *a = NULL;
	vmm_chunk_base *base = NULL;
	vmm_error *err = NULL;
	if (vmm_chunk_ahead_start(&a, f->ram, RAM, fd, &base, VMM_CODEC_LZ4, 0.05, &err) < 0)
		fail_msg("%s", err->msg);
	size_t changing = 0;
	assert_int_equal(ahead_caught_up(a, &changing), 4);
	struct stat st;
	assert_int_equal(fstat(fd, &st), 0);
	off_t before = st.st_size;
	uint64_t sum = 0; /* what the frames take, one after the other */
	unsigned char page[4096];
	for (size_t k = 1; k <= 12; k++) {
		for (size_t i = 0; i < k; i++) {
			fill_page(page, 2); /* (random bytes) */
			assert_int_equal(vmm_pwrite_all(f->ram, page, 4096, (6 << 20) + i * 4096),
					 0);
		}
		assert_int_equal(ahead_caught_up(a, &changing), 5);
		sum += (k + 1) * 4096;
	}
	assert_int_equal(fstat(fd, &st), 0);
	if ((uint64_t)(st.st_size - before) * 2 > sum)
		fail_msg("the file grew by %lld bytes for frames of %llu",
			 (long long)(st.st_size - before), (unsigned long long)sum);
	base = vmm_chunk_ahead_stop(a);
	assert_true(vmm_chunk_base_in_place_ok(base, VMM_CODEC_LZ4));
	uint64_t compressed = 0, reused = 0;
	write_in_place(f, fd, aside, base, f->ram, &compressed, &reused);
	assert_int_equal(compressed, 0);
	assert_int_equal(reused, 5);
	vmm_chunk_base_free(base);
	assert_loads_as(f, f->ram);
	close(fd);
	free(aside);
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

static void expect_error(fixture *f, const char *needle)
{
	int ram = -1;
	unsigned char *dev = NULL;
	size_t len = 0;
	vmm_error *err = NULL;
	assert_int_equal(load_state(f, &ram, &dev, &len, &err), -1);
	assert_non_null(err);
	if (!strstr(err->msg, needle))
		fail_msg("\"%s\" not in \"%s\"", needle, err->msg);
	assert_int_equal(err->code, VMM_EFORMAT);
	assert_null(strchr(err->msg, '\n'));
	vmm_error_free(err);
}

static void test_chunks_bad__corrupt_chunk(void **state)
{
	fixture *f = *state;
	for (int codec = 0; codec < 2; codec++) {
		write_state(f, true, (vmm_codec)codec, 2);
		vmm_savefile_header *h = NULL;
		assert_int_equal(vmm_savefile_read_header(&h, f->path, NULL), 0);
		/* the middle of the chunks, whichever chunk that is */
		flip_byte(f->path, (off_t)(VMM_SAVEFILE_HEADER_SIZE + h->index_offset) / 2);
		vmm_savefile_header_free(h);
		expect_error(f, "is corrupt: chunk at");
	}
}

static void test_chunks_bad__index(void **state)
{
	fixture *f = *state;
	write_state(f, true, VMM_CODEC_LZ4, 2);
	vmm_savefile_header *h = NULL;
	assert_int_equal(vmm_savefile_read_header(&h, f->path, NULL), 0);
	flip_byte(f->path, (off_t)h->index_offset + 30);
	expect_error(f, "index SHA-256 mismatch");
	flip_byte(f->path, (off_t)h->index_offset + 30);
	/* a record that points elsewhere, with a digest that matches it */
	int fd = open(f->path, O_RDWR);
	size_t len = h->index_count * VMM_SAVEFILE_RECORD_SIZE;
	unsigned char *idx = xmalloc(len);
	assert_int_equal(vmm_pread_all(fd, idx, len, (off_t)h->index_offset), 0);
	idx[VMM_SAVEFILE_RECORD_SIZE + 16 + 7] = 0x40; /* record 1's offset: far away */
	assert_int_equal(vmm_pwrite_all(fd, idx, len, (off_t)h->index_offset), 0);
	char digest[72];
	vmm_sha256_digest(idx, len, digest);
	free(h->index_sha256);
	h->index_sha256 = xstrdup(digest);
	unsigned char *hdr = vmm_savefile_header_encode(h);
	assert_int_equal(vmm_pwrite_all(fd, hdr, VMM_SAVEFILE_HEADER_SIZE, 0), 0);
	close(fd);
	free(hdr);
	free(idx);
	vmm_savefile_header_free(h);
	expect_error(f, "points outside the chunks");
}

static void test_chunks_bad__truncated(void **state)
{
	fixture *f = *state;
	write_state(f, true, VMM_CODEC_LZ4, 2);
	struct stat st;
	assert_int_equal(stat(f->path, &st), 0);
	assert_int_equal(truncate(f->path, st.st_size - 100), 0);
	expect_error(f, "is truncated");
}

/* Bytes [off, off+len) of two memfds agree. */
static void assert_same_range(int a, int b, off_t off, size_t len)
{
	unsigned char *x = xmalloc(len), *y = xmalloc(len);
	assert_int_equal(vmm_pread_all(a, x, len, off), 0);
	assert_int_equal(vmm_pread_all(b, y, len, off), 0);
	assert_memory_equal(x, y, len);
	free(x);
	free(y);
}

/*
 * A lazy resume (vm/lazy.h): with the fill's threads held, a page comes in
 * with its whole chunk on demand; a save meanwhile reads the chunks that
 * are in (the guest may have changed them) and keeps the frames of those
 * that are not; the state it writes holds what the guest had.
 */
static void test_chunks_fill__lazy(void **state)
{
	fixture *f = *state;
	write_state(f, true, VMM_CODEC_LZ4, 2);
	vmm_savefile_header *h = NULL;
	vmm_error *err = NULL;
	assert_int_equal(vmm_savefile_read_header(&h, f->path, &err), 0);
	int fd = open(f->path, O_RDONLY);
	assert_true(fd >= 0);
	vmm_chunk_index *x = NULL;
	assert_int_equal(vmm_chunk_index_load(&x, fd, h, "test state", &err), 0);
	int ram = memfd_create("lazy", MFD_CLOEXEC);
	assert_int_equal(ftruncate(ram, RAM), 0);
	setenv("VMM_TEST_PAUSE", "resume-fill", 1);
	setenv("VMM_TEST_PAUSE_DIR", f->dir, 1);
	vmm_chunk_fill *fill = NULL;
	assert_int_equal(vmm_chunk_fill_start(&fill, fd, h, x, ram, 2, "test state", &err), 0);

	/* a page the state holds: its chunk, 2 to 4 MiB, comes in whole */
	bool data = false;
	assert_int_equal(vmm_chunk_fill_page(fill, (2u << 20) + 5 * 4096, &data), 0);
	assert_true(data);
	assert_same_range(f->ram, ram, 2 << 20, 2u << 20);
	/* a zero page of a chunk the state holds (its chunk comes in), and a stretch it lacks */
	assert_int_equal(vmm_chunk_fill_page(fill, (10u << 20) + 4096, &data), 0);
	assert_false(data);
	assert_same_range(f->ram, ram, 10 << 20, 2u << 20);
	assert_int_equal(vmm_chunk_fill_page(fill, 16u << 20, &data), 0);
	assert_false(data);
	/* the threads are held: the first stretch is not in */
	assert_true(lseek(ram, 0, SEEK_DATA) >= (off_t)(2u << 20));

	/* the "guest" changes both chunks that are in */
	unsigned char b = 0xab;
	for (off_t at = (2 << 20) + 7; at <= (10 << 20) + 4096; at += (8 << 20) + 4089) {
		assert_int_equal(vmm_pwrite_all(ram, &b, 1, at), 0);
		assert_int_equal(vmm_pwrite_all(f->ram, &b, 1, at), 0);
	}
	/* a save in another codec could reuse no frame: it must wait for the fill */
	assert_null(vmm_chunk_fill_base(fill, VMM_CODEC_ZSTD));
	vmm_chunk_base *base = vmm_chunk_fill_base(fill, VMM_CODEC_LZ4);
	assert_non_null(base);
	uint64_t compressed = 0, reused = 0;
	write_state_base(f, ram, base, VMM_CODEC_LZ4, 2, &compressed, &reused);
	assert_int_equal(compressed, 2); /* read: the two chunks in */
	assert_int_equal(reused, 2);	 /* kept: 0 to 2 MiB and the last page, never in */
	vmm_chunk_base_free(base);

	char *go = path_join(f->dir, "resume-fill.go");
	int g = open(go, O_WRONLY | O_CREAT, 0600);
	assert_true(g >= 0);
	close(g);
	free(go);
	assert_int_equal(vmm_chunk_fill_wait(fill, NULL, &err), 0);
	unsetenv("VMM_TEST_PAUSE");
	unsetenv("VMM_TEST_PAUSE_DIR");
	vmm_chunk_index_free(x);
	vmm_savefile_header_free(h);
	close(fd);

	/* the new state holds what the "guest" had, the changes and the chunks never in */
	int back = -1;
	unsigned char *dev = NULL;
	size_t len = 0;
	if (load_state(f, &back, &dev, &len, &err) < 0)
		fail_msg("%s", err->msg);
	assert_same_ram(f->ram, back);
	close(back);
	close(ram);
	free(dev);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_chunks_roundtrip__lz4, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_chunks_roundtrip__buffered, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_chunks_roundtrip__zstd_one_thread, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_chunks_roundtrip__stream_only, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_chunks_reencode__zstd, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_chunks_reuse__unchanged_stretches, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_chunks_reuse__in_place, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_chunks_ahead__boot, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_chunks_ahead__resumed, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_chunks_ahead__growing, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_chunks_fill__lazy, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_chunks_bad__corrupt_chunk, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_chunks_bad__index, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_chunks_bad__truncated, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
