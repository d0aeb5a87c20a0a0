/*
 * The Apple LZ4 decoder on hostile input: never crash, never yield more than
 * announced, and agree with itself however the input is sliced.  Inputs
 * starting with 'R' are instead compressed and must round-trip exactly.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "registry/oci/applelz4.h"

typedef struct sum {
	uint64_t n;
	uint32_t h;
} sum;

static int out(void *ctx, const void *data, size_t len)
{
	sum *s = ctx;
	const unsigned char *p = data;
	for (size_t i = 0; i < len; i++)
		s->h = s->h * 31 + p[i];
	s->n += len;
	return 0;
}

static int decode(const uint8_t *d, size_t n, size_t slice, uint64_t max, sum *s)
{
	vmm_applelz4_dec *dec = vmm_applelz4_dec_new(max);
	vmm_error *err = NULL;
	int rc = 0;
	for (size_t i = 0; i < n && rc == 0; i += slice)
		rc = vmm_applelz4_dec_update(dec, d + i, n - i < slice ? n - i : slice, out, s,
					     &err);
	if (rc == 0)
		rc = vmm_applelz4_dec_finish(dec, &err);
	vmm_error_free(err);
	vmm_applelz4_dec_free(dec);
	return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size > 0 && data[0] == 'R') {
		unsigned char *enc = NULL, *dec = NULL;
		size_t elen = 0, dlen = 0;
		vmm_applelz4_compress(data + 1, size - 1, &enc, &elen);
		if (vmm_applelz4_decompress(enc, elen, size - 1, &dec, &dlen, NULL) != 0 ||
		    dlen != size - 1 || memcmp(dec, data + 1, dlen) != 0)
			abort();
		free(enc);
		free(dec);
		return 0;
	}
	const uint64_t max = 64 << 20;
	sum whole = {0}, sliced = {0};
	int a = decode(data, size, size ? size : 1, max, &whole);
	int b = decode(data, size, 7, max, &sliced);
	if (whole.n > max || (a == 0) != (b == 0) ||
	    (a == 0 && (whole.n != sliced.n || whole.h != sliced.h)))
		abort();
	return 0;
}
