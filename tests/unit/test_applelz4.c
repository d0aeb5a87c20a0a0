/* Apple's LZ4 stream: framing, linked blocks, stored blocks, and hostile input. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <lz4.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "registry/oci/applelz4.h"

static void put32(unsigned char *p, uint32_t v)
{
	p[0] = (unsigned char)v;
	p[1] = (unsigned char)(v >> 8);
	p[2] = (unsigned char)(v >> 16);
	p[3] = (unsigned char)(v >> 24);
}

static uint32_t get32(const unsigned char *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* Deterministic mixed content: text-like runs, random bytes and zeros. */
static unsigned char *mixed(size_t n, unsigned seed)
{
	unsigned char *p = malloc(n ? n : 1);
	uint32_t x = seed * 2654435761u + 1;
	static const char words[] = "the quick brown fox jumps over the lazy dog 0123456789 ";
	for (size_t i = 0; i < n; i++) {
		x = x * 1103515245u + 12345u;
		size_t region = (i / 20000) % 3;
		if (region == 0)
			p[i] = (unsigned char)words[(i + (x >> 28)) % (sizeof(words) - 1)];
		else if (region == 1)
			p[i] = (unsigned char)(x >> 16);
		else
			p[i] = 0;
	}
	return p;
}

static void roundtrip(const unsigned char *in, size_t n)
{
	unsigned char *enc = NULL, *dec = NULL;
	size_t elen = 0, dlen = 0;
	vmm_applelz4_compress(in, n, &enc, &elen);
	/* framing: never an LZ4 frame, always ends with bv4$ */
	assert_true(elen >= 4);
	assert_memory_not_equal(enc, "\x04\x22\x4d\x18", 4);
	assert_memory_equal(enc + elen - 4, "bv4$", 4);
	vmm_error *err = NULL;
	assert_int_equal(vmm_applelz4_decompress(enc, elen, n, &dec, &dlen, &err), 0);
	assert_int_equal(dlen, n);
	if (n)
		assert_memory_equal(dec, in, n);
	/* walk the blocks: each decodes to at most 64 KiB */
	size_t off = 0, sum = 0;
	while (memcmp(enc + off, "bv4$", 4) != 0) {
		if (memcmp(enc + off, "bv41", 4) == 0) {
			assert_true(get32(enc + off + 4) <= 65536);
			sum += get32(enc + off + 4);
			off += 12 + get32(enc + off + 8);
		} else {
			assert_memory_equal(enc + off, "bv4-", 4);
			assert_true(get32(enc + off + 4) <= 65536);
			sum += get32(enc + off + 4);
			off += 8 + get32(enc + off + 4);
		}
	}
	assert_int_equal(off + 4, elen);
	assert_int_equal(sum, n);
	free(enc);
	free(dec);
}

static void test_applelz4_roundtrip__sizes(void **state)
{
	(void)state;
	const size_t sizes[] = {0, 1, 13, 65535, 65536, 65537, 131072, 1000003, 3 << 20};
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		unsigned char *p = mixed(sizes[i], (unsigned)i);
		roundtrip(p, sizes[i]);
		free(p);
	}
}

/* vetu's fixture hello-world.txt.lz4, as Apple's encoder wrote it. */
static void test_applelz4_decode__apple_stored_fixture(void **state)
{
	(void)state;
	static const unsigned char fx[] = {'b', 'v', '4', '-',	0x0e, 0,   0,	0,   'H',
					   'e', 'l', 'l', 'o',	',',  ' ', 'W', 'o', 'r',
					   'l', 'd', '!', '\n', 'b',  'v', '4', '$'};
	unsigned char *out = NULL;
	size_t n = 0;
	vmm_error *err = NULL;
	assert_int_equal(vmm_applelz4_decompress(fx, sizeof(fx), 0, &out, &n, &err), 0);
	assert_int_equal(n, 14);
	assert_memory_equal(out, "Hello, World!\n", 14);
	free(out);
}

static void test_applelz4_encode__incompressible_is_stored(void **state)
{
	(void)state;
	unsigned char buf[5000];
	vmm_random_bytes(buf, sizeof(buf));
	unsigned char *enc = NULL;
	size_t elen = 0;
	vmm_applelz4_compress(buf, sizeof(buf), &enc, &elen);
	assert_memory_equal(enc, "bv4-", 4);
	assert_int_equal(get32(enc + 4), sizeof(buf));
	assert_int_equal(elen, 8 + sizeof(buf) + 4);
	free(enc);
}

/*
 * A stream whose second block references the first: made with
 * LZ4_compress_fast_continue, as an encoder linking blocks does.  The block
 * does not decode alone; the decoder must supply the previous output.
 */
static void test_applelz4_decode__linked_blocks(void **state)
{
	(void)state;
	enum { B = 65536 };
	unsigned char *a = mixed(B, 7);
	static unsigned char bufs[2][B];
	vmm_random_bytes(a, B);
	memcpy(bufs[0], a, B);
	/* block 2 = block 1 shifted by one byte: every match lies 65535 bytes back */
	memcpy(bufs[1], a + 1, B - 1);
	bufs[1][B - 1] = 0x55;
	LZ4_stream_t *s = LZ4_createStream();
	int cap = LZ4_compressBound(B);
	unsigned char *stream = malloc(2 * (12 + (size_t)cap) + 4);
	size_t off = 0;
	int sizes[2];
	for (int i = 0; i < 2; i++) {
		int n = LZ4_compress_fast_continue(s, (const char *)bufs[i],
						   (char *)stream + off + 12, B, cap, 1);
		assert_true(n > 0);
		sizes[i] = n;
		memcpy(stream + off, "bv41", 4);
		put32(stream + off + 4, B);
		put32(stream + off + 8, (uint32_t)n);
		off += 12 + (size_t)n;
	}
	memcpy(stream + off, "bv4$", 4);
	off += 4;
	LZ4_freeStream(s);
	/* the second block is tiny because it refers to the first */
	assert_true(sizes[1] < B / 50);
	/* ...and cannot decode without that dictionary */
	unsigned char *alone = malloc(B);
	const unsigned char *blk2 = stream + 12 + (size_t)sizes[0] + 12;
	int r = LZ4_decompress_safe((const char *)blk2, (char *)alone, sizes[1], B);
	assert_true(r != B || memcmp(alone, bufs[1], B) != 0);
	free(alone);

	unsigned char *out = NULL;
	size_t n = 0;
	vmm_error *err = NULL;
	assert_int_equal(vmm_applelz4_decompress(stream, off, 0, &out, &n, &err), 0);
	assert_int_equal(n, 2 * B);
	assert_memory_equal(out, bufs[0], B);
	assert_memory_equal(out + B, bufs[1], B);
	free(out);

	/* our own encoder links blocks the same way (on compressible data:
	 * after a stored block it starts afresh) */
	static const char *const words[] = {"alpha ",  "beta ",	     "gamma ", "delta ",
					    "kernel ", "initramfs ", "qemu ",  "tart "};
	unsigned char *two = malloc(2 * B);
	size_t w = 0;
	uint32_t x = 99;
	while (w < B) {
		x = x * 1103515245u + 12345u;
		const char *word = words[(x >> 16) % 8];
		for (const char *c = word; *c && w < B; c++)
			two[w++] = (unsigned char)*c;
	}
	memcpy(two + B, two + 1, B - 1);
	two[2 * B - 1] = '!';
	unsigned char *enc = NULL;
	size_t elen = 0;
	vmm_applelz4_compress(two, 2 * B, &enc, &elen);
	assert_memory_equal(enc, "bv41", 4);
	size_t second = 12 + get32(enc + 8);
	assert_memory_equal(enc + second, "bv41", 4);
	assert_true(get32(enc + second + 8) < B / 50);
	unsigned char *back = NULL;
	assert_int_equal(vmm_applelz4_decompress(enc, elen, 0, &back, &n, &err), 0);
	assert_int_equal(n, 2 * B);
	assert_memory_equal(back, two, 2 * B);
	free(back);
	free(enc);
	free(two);
	free(stream);
	free(a);
}

typedef struct collect {
	unsigned char *p;
	size_t len;
} collect;

static int collect_out(void *ctx, const void *data, size_t len)
{
	collect *c = ctx;
	c->p = realloc(c->p, c->len + len + 1);
	memcpy(c->p + c->len, data, len);
	c->len += len;
	return 0;
}

static void test_applelz4_decode__byte_by_byte(void **state)
{
	(void)state;
	size_t n = 300000;
	unsigned char *in = mixed(n, 3);
	unsigned char *enc = NULL;
	size_t elen = 0;
	vmm_applelz4_compress(in, n, &enc, &elen);
	vmm_applelz4_dec *d = vmm_applelz4_dec_new(n);
	collect c = {0};
	vmm_error *err = NULL;
	for (size_t i = 0; i < elen; i++)
		assert_int_equal(vmm_applelz4_dec_update(d, enc + i, 1, collect_out, &c, &err), 0);
	assert_int_equal(vmm_applelz4_dec_finish(d, &err), 0);
	assert_int_equal(c.len, n);
	assert_memory_equal(c.p, in, n);
	vmm_applelz4_dec_free(d);
	free(c.p);
	free(enc);
	free(in);
}

static int enc_out(void *ctx, const void *data, size_t len)
{
	return collect_out(ctx, data, len);
}

static void test_applelz4_encode__zeros_fast_path(void **state)
{
	(void)state;
	/* data, a hole of odd length, data, a long hole: as a sparse disk is read */
	size_t parts[] = {1000, 200000, 70000, 5 << 20};
	size_t total = 0;
	for (size_t i = 0; i < 4; i++)
		total += parts[i];
	unsigned char *ref = calloc(1, total);
	unsigned char *data = mixed(70000, 9);
	memcpy(ref, data, 1000);
	memcpy(ref + 1000 + 200000, data, 70000);
	vmm_applelz4_enc *e = vmm_applelz4_enc_new();
	collect c = {0};
	assert_int_equal(vmm_applelz4_enc_update(e, data, 1000, enc_out, &c), 0);
	assert_int_equal(vmm_applelz4_enc_zeros(e, 200000, enc_out, &c), 0);
	assert_int_equal(vmm_applelz4_enc_update(e, data, 70000, enc_out, &c), 0);
	assert_int_equal(vmm_applelz4_enc_zeros(e, 5 << 20, enc_out, &c), 0);
	assert_int_equal(vmm_applelz4_enc_finish(e, enc_out, &c), 0);
	vmm_applelz4_enc_free(e);
	unsigned char *out = NULL;
	size_t n = 0;
	vmm_error *err = NULL;
	assert_int_equal(vmm_applelz4_decompress(c.p, c.len, total, &out, &n, &err), 0);
	assert_int_equal(n, total);
	assert_memory_equal(out, ref, total);
	/* 5 MiB of zeros cost well under 1% */
	assert_true(c.len < 70000 + 60000);
	free(out);
	free(c.p);
	free(data);
	free(ref);
}

/* Slices of every size mix the copying and the zero-copy paths; the stream stays linked and valid.
 */
static void test_applelz4_encode__uneven_slices(void **state)
{
	(void)state;
	size_t n = 2 * 1024 * 1024 + 333;
	unsigned char *in = mixed(n, 5);
	/* repeat the first MiB so later blocks have history worth referencing */
	memcpy(in + 1024 * 1024, in, 1024 * 1024);
	vmm_applelz4_enc *e = vmm_applelz4_enc_new();
	collect c = {0};
	uint32_t x = 17;
	for (size_t off = 0; off < n;) {
		x = x * 1103515245u + 12345u;
		size_t take = 1 + (x >> 8) % 200000;
		if (take > n - off)
			take = n - off;
		assert_int_equal(vmm_applelz4_enc_update(e, in + off, take, enc_out, &c), 0);
		off += take;
	}
	assert_int_equal(vmm_applelz4_enc_finish(e, enc_out, &c), 0);
	vmm_applelz4_enc_free(e);
	unsigned char *out = NULL;
	size_t m = 0;
	vmm_error *err = NULL;
	assert_int_equal(vmm_applelz4_decompress(c.p, c.len, n, &out, &m, &err), 0);
	assert_int_equal(m, n);
	assert_memory_equal(out, in, n);
	free(out);
	free(c.p);
	free(in);
}

typedef struct bad_case {
	const char *name;
	const unsigned char *data;
	size_t len;
	uint64_t max;
	const char *needle;
} bad_case;

static void test_applelz4_decode__hostile(void **state)
{
	(void)state;
	static const unsigned char unknown[] = "bvx2\0\0\0\0";
	static const unsigned char frame[] = {0x04, 0x22, 0x4d, 0x18, 0x64, 0x40, 0xa7};
	static const unsigned char truncated_hdr[] = {'b', 'v', '4', '1', 0, 0, 1};
	static const unsigned char no_end[] = {'b', 'v', '4', '-', 2, 0, 0, 0, 'h', 'i'};
	static const unsigned char after_end[] = {'b', 'v', '4', '$', 'x'};
	static const unsigned char huge_block[] = {'b', 'v', '4', '1', 0,   0,	 0,   0x10,
						   4,	0,   0,	  0,   'b', 'v', '4', '$'};
	static const unsigned char huge_enc[] = {'b', 'v', '4', '1', 0, 1, 0, 0, 0xff, 0xff, 0, 0};
	static const unsigned char huge_raw[] = {'b', 'v', '4', '-', 0, 0, 0, 0x40};
	/* the LZ4 block says 16 literals, the header claims 100 decoded bytes */
	static unsigned char lie[12 + 17 + 4];
	memcpy(lie, "bv41", 4);
	put32(lie + 4, 100);
	put32(lie + 8, 17);
	lie[12] = 0xf0; /* 15+ literals */
	lie[13] = 1;	/* 16 literals: too many bytes follow for 17 */
	memset(lie + 14, 'a', 15);
	memcpy(lie + 29, "bv4$", 4);
	/* garbage in an LZ4 block: a match offset reaching before the output */
	static const unsigned char garbage[] = {'b', 'v',  '4', '1',  8,    0,	 0,   0,   5,  0, 0,
						0,   0x14, 'x', 0xff, 0x7f, 'b', 'v', '4', '$'};
	/* valid stream, but more output than announced */
	static const unsigned char more[] = {'b', 'v', '4', '-', 4,   0,   0,	0,
					     'a', 'b', 'c', 'd', 'b', 'v', '4', '$'};
	const bad_case cases[] = {
	    {"unknown magic", unknown, 8, 0, "unknown block magic"},
	    {"an LZ4 frame", frame, sizeof(frame), 0, "unknown block magic"},
	    {"truncated header", truncated_hdr, sizeof(truncated_hdr), 0, "truncated"},
	    {"no end marker", no_end, sizeof(no_end), 0, "truncated"},
	    {"data after end", after_end, sizeof(after_end), 0, "after the end marker"},
	    {"decoded size 256 MiB", huge_block, sizeof(huge_block), 0, "over 4 MiB"},
	    {"encoded size beyond bound", huge_enc, sizeof(huge_enc), 0, "larger than"},
	    {"stored 1 GiB", huge_raw, sizeof(huge_raw), 0, "larger than 4 MiB"},
	    {"size lie", lie, sizeof(lie), 0, "LZ4 block"},
	    {"garbage block", garbage, sizeof(garbage), 0, "LZ4 block"},
	    {"more than announced", more, sizeof(more), 3, "more than the 3 bytes"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		unsigned char *out = NULL;
		size_t n = 0;
		vmm_error *err = NULL;
		int rc = vmm_applelz4_decompress(cases[i].data, cases[i].len, cases[i].max, &out,
						 &n, &err);
		if (rc == 0)
			fail_msg("%s: accepted", cases[i].name);
		assert_non_null(err);
		if (!strstr(err->msg, cases[i].needle))
			fail_msg("%s: message `%s` lacks `%s`", cases[i].name, err->msg,
				 cases[i].needle);
		assert_non_null(strstr(err->msg, "Apple LZ4"));
		vmm_error_free(err);
	}
}

/* A flipped bit anywhere in a stream is an error or a different output, never a crash. */
static void test_applelz4_decode__bit_flips(void **state)
{
	(void)state;
	size_t n = 150000;
	unsigned char *in = mixed(n, 11);
	unsigned char *enc = NULL;
	size_t elen = 0;
	vmm_applelz4_compress(in, n, &enc, &elen);
	for (size_t i = 0; i < elen; i += 97) {
		enc[i] ^= 0x10;
		unsigned char *out = NULL;
		size_t m = 0;
		vmm_error *err = NULL;
		if (vmm_applelz4_decompress(enc, elen, n, &out, &m, &err) == 0) {
			assert_true(m <= n);
			free(out);
		}
		vmm_error_free(err);
		enc[i] ^= 0x10;
	}
	free(enc);
	free(in);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_applelz4_roundtrip__sizes),
	    cmocka_unit_test(test_applelz4_decode__apple_stored_fixture),
	    cmocka_unit_test(test_applelz4_encode__incompressible_is_stored),
	    cmocka_unit_test(test_applelz4_decode__linked_blocks),
	    cmocka_unit_test(test_applelz4_decode__byte_by_byte),
	    cmocka_unit_test(test_applelz4_encode__zeros_fast_path),
	    cmocka_unit_test(test_applelz4_encode__uneven_slices),
	    cmocka_unit_test(test_applelz4_decode__hostile),
	    cmocka_unit_test(test_applelz4_decode__bit_flips),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
