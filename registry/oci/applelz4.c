#include "registry/oci/applelz4.h"
#include "common/util.h"

#include <lz4.h>
#include <pthread.h>
#include <string.h>

#define HIST (64 * 1024)

static const char MAGIC_LZ4[4] = {'b', 'v', '4', '1'};
static const char MAGIC_RAW[4] = {'b', 'v', '4', '-'};
static const char MAGIC_END[4] = {'b', 'v', '4', '$'};

static void put_u32le(unsigned char *p, uint32_t v)
{
	p[0] = (unsigned char)v;
	p[1] = (unsigned char)(v >> 8);
	p[2] = (unsigned char)(v >> 16);
	p[3] = (unsigned char)(v >> 24);
}

static uint32_t get_u32le(const unsigned char *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* --- encoder ------------------------------------------------------------- */

struct vmm_applelz4_enc {
	LZ4_stream_t stream;
	/* double buffer: the block before stays in place as LZ4's dictionary */
	unsigned char slot[2][VMM_APPLELZ4_BLOCK];
	int cur;
	size_t fill;
	unsigned char dst[12 + LZ4_COMPRESSBOUND(VMM_APPLELZ4_BLOCK)];
	/* history kept when blocks were compressed straight from the caller's buffer */
	char dict[VMM_APPLELZ4_BLOCK];
};

/* One 64 KiB zero block, encoded once per process. */
static unsigned char zero_block[12 + LZ4_COMPRESSBOUND(VMM_APPLELZ4_BLOCK)];
static size_t zero_block_len;
static pthread_once_t zero_once = PTHREAD_ONCE_INIT;

static void zero_block_init(void)
{
	static unsigned char zeros[VMM_APPLELZ4_BLOCK];
	int n = LZ4_compress_default((const char *)zeros, (char *)zero_block + 12,
				     VMM_APPLELZ4_BLOCK, LZ4_COMPRESSBOUND(VMM_APPLELZ4_BLOCK));
	memcpy(zero_block, MAGIC_LZ4, 4);
	put_u32le(zero_block + 4, VMM_APPLELZ4_BLOCK);
	put_u32le(zero_block + 8, (uint32_t)n);
	zero_block_len = 12 + (size_t)n;
}

vmm_applelz4_enc *vmm_applelz4_enc_new(void)
{
	vmm_applelz4_enc *e = xmalloc(sizeof(*e));
	LZ4_initStream(&e->stream, sizeof(e->stream));
	e->cur = 0;
	e->fill = 0;
	return e;
}

void vmm_applelz4_enc_free(vmm_applelz4_enc *e)
{
	free(e);
}

void vmm_applelz4_enc_reset(vmm_applelz4_enc *e)
{
	LZ4_resetStream_fast(&e->stream);
	e->fill = 0;
}

/* Compress one block at src (the slot or the caller's memory) and hand it out. */
static int emit_block(vmm_applelz4_enc *e, const unsigned char *src, size_t n, vmm_applelz4_out out,
		      void *ctx)
{
	int c = LZ4_compress_fast_continue(&e->stream, (const char *)src, (char *)e->dst + 12,
					   (int)n, LZ4_COMPRESSBOUND(VMM_APPLELZ4_BLOCK), 1);
	if (c > 0 && (size_t)c < n) {
		memcpy(e->dst, MAGIC_LZ4, 4);
		put_u32le(e->dst + 4, (uint32_t)n);
		put_u32le(e->dst + 8, (uint32_t)c);
		return out(ctx, e->dst, 12 + (size_t)c);
	}
	/*
	 * Stored block.  Whether Apple's decoder keeps a stored block as
	 * history is not documented, so the next block links to nothing.
	 */
	unsigned char hdr[8];
	memcpy(hdr, MAGIC_RAW, 4);
	put_u32le(hdr + 4, (uint32_t)n);
	int rc = out(ctx, hdr, 8);
	if (rc == 0)
		rc = out(ctx, src, n);
	LZ4_resetStream_fast(&e->stream);
	return rc;
}

/* Compress the current slot into one block; the other slot takes the next. */
static int flush_block(vmm_applelz4_enc *e, vmm_applelz4_out out, void *ctx)
{
	if (e->fill == 0)
		return 0;
	int rc = emit_block(e, e->slot[e->cur], e->fill, out, ctx);
	e->cur ^= 1;
	e->fill = 0;
	return rc;
}

int vmm_applelz4_enc_update(vmm_applelz4_enc *e, const void *data, size_t len, vmm_applelz4_out out,
			    void *ctx)
{
	const unsigned char *p = data;
	/* complete a block in progress */
	if (e->fill) {
		size_t take = VMM_APPLELZ4_BLOCK - e->fill;
		if (take > len)
			take = len;
		memcpy(e->slot[e->cur] + e->fill, p, take);
		e->fill += take;
		p += take;
		len -= take;
		if (e->fill < VMM_APPLELZ4_BLOCK)
			return 0;
		int rc = flush_block(e, out, ctx);
		if (rc < 0)
			return rc;
	}
	/*
	 * Whole blocks straight from the caller's memory (no copy; consecutive
	 * blocks are contiguous, LZ4's fastest case), then the history is saved
	 * before that memory goes back to the caller.
	 */
	bool direct = false;
	while (len >= VMM_APPLELZ4_BLOCK) {
		int rc = emit_block(e, p, VMM_APPLELZ4_BLOCK, out, ctx);
		if (rc < 0)
			return rc;
		p += VMM_APPLELZ4_BLOCK;
		len -= VMM_APPLELZ4_BLOCK;
		direct = true;
	}
	if (direct)
		LZ4_saveDict(&e->stream, e->dict, VMM_APPLELZ4_BLOCK);
	if (len) {
		memcpy(e->slot[e->cur], p, len);
		e->fill = len;
	}
	return 0;
}

int vmm_applelz4_enc_zeros(vmm_applelz4_enc *e, uint64_t len, vmm_applelz4_out out, void *ctx)
{
	pthread_once(&zero_once, zero_block_init);
	/* complete the block in progress with real zeros */
	if (e->fill) {
		size_t take = VMM_APPLELZ4_BLOCK - e->fill;
		if (take > len)
			take = (size_t)len;
		memset(e->slot[e->cur] + e->fill, 0, take);
		e->fill += take;
		len -= take;
		if (e->fill < VMM_APPLELZ4_BLOCK)
			return 0;
		int rc = flush_block(e, out, ctx);
		if (rc < 0)
			return rc;
	}
	if (len >= VMM_APPLELZ4_BLOCK) {
		while (len >= VMM_APPLELZ4_BLOCK) {
			int rc = out(ctx, zero_block, zero_block_len);
			if (rc < 0)
				return rc;
			len -= VMM_APPLELZ4_BLOCK;
		}
		/* the precomputed blocks stand alone: what follows starts afresh */
		LZ4_resetStream_fast(&e->stream);
	}
	if (len) {
		memset(e->slot[e->cur], 0, (size_t)len);
		e->fill = (size_t)len;
	}
	return 0;
}

int vmm_applelz4_enc_finish(vmm_applelz4_enc *e, vmm_applelz4_out out, void *ctx)
{
	int rc = flush_block(e, out, ctx);
	if (rc == 0)
		rc = out(ctx, MAGIC_END, 4);
	vmm_applelz4_enc_reset(e);
	return rc;
}

typedef struct membuf {
	unsigned char *p;
	size_t len, cap;
} membuf;

static int membuf_put(void *ctx, const void *data, size_t len)
{
	membuf *b = ctx;
	if (b->len + len > b->cap) {
		b->cap = (b->len + len) * 2;
		b->p = xrealloc(b->p, b->cap);
	}
	memcpy(b->p + b->len, data, len);
	b->len += len;
	return 0;
}

void vmm_applelz4_compress(const void *buf, size_t len, unsigned char **out, size_t *out_len)
{
	vmm_applelz4_enc *e = vmm_applelz4_enc_new();
	membuf b = {0};
	vmm_applelz4_enc_update(e, buf, len, membuf_put, &b);
	vmm_applelz4_enc_finish(e, membuf_put, &b);
	vmm_applelz4_enc_free(e);
	*out = b.p ? b.p : xmalloc(1);
	*out_len = b.len;
}

/* --- decoder ------------------------------------------------------------- */

enum { ST_HEADER, ST_LZ4, ST_RAW, ST_DONE };

struct vmm_applelz4_dec {
	int state;
	unsigned char hdr[12];
	size_t hdr_have, hdr_need;
	uint32_t dsize, esize; /* of the block being read */
	unsigned char *in;     /* encoded block being gathered */
	size_t in_have, in_cap;
	unsigned char *win; /* history + the block being decoded */
	size_t win_pos, win_cap;
	uint64_t total, max_output;
	uint64_t offset;       /* stream bytes consumed */
	uint64_t block_offset; /* where the current block began */
};

vmm_applelz4_dec *vmm_applelz4_dec_new(uint64_t max_output)
{
	vmm_applelz4_dec *d = xcalloc(1, sizeof(*d));
	d->state = ST_HEADER;
	d->hdr_need = 4;
	d->max_output = max_output;
	return d;
}

void vmm_applelz4_dec_free(vmm_applelz4_dec *d)
{
	if (!d)
		return;
	free(d->in);
	free(d->win);
	free(d);
}

uint64_t vmm_applelz4_dec_total(const vmm_applelz4_dec *d)
{
	return d->total;
}

bool vmm_applelz4_dec_done(const vmm_applelz4_dec *d)
{
	return d->state == ST_DONE;
}

static int bad(vmm_applelz4_dec *d, vmm_error **err, const char *why)
{
	return vmm_error_set(err, VMM_EFORMAT, "corrupt Apple LZ4 stream at byte %llu: %s",
			     (unsigned long long)d->block_offset, why);
}

/* Room for `n` more bytes in the window after the last 64 KiB of history. */
static void win_reserve(vmm_applelz4_dec *d, size_t n)
{
	if (d->win_pos + n <= d->win_cap)
		return;
	size_t keep = d->win_pos < HIST ? d->win_pos : HIST;
	size_t need = keep + n;
	if (need > d->win_cap) {
		size_t cap = HIST + 2 * 1024 * 1024;
		if (cap < need)
			cap = need;
		unsigned char *w = xmalloc(cap);
		if (keep)
			memcpy(w, d->win + d->win_pos - keep, keep);
		free(d->win);
		d->win = w;
		d->win_cap = cap;
	} else if (keep) {
		memmove(d->win, d->win + d->win_pos - keep, keep);
	}
	d->win_pos = keep;
}

static int check_total(vmm_applelz4_dec *d, uint64_t n, vmm_error **err)
{
	if (d->max_output && d->total + n > d->max_output) {
		char why[96];
		snprintf(why, sizeof(why), "the stream yields more than the %llu bytes announced",
			 (unsigned long long)d->max_output);
		return bad(d, err, why);
	}
	return 0;
}

static void next_header(vmm_applelz4_dec *d);

/* Parse a complete header; sets the state for the block body. */
static int header_done(vmm_applelz4_dec *d, vmm_error **err)
{
	if (d->hdr_have == 4) {
		if (memcmp(d->hdr, MAGIC_END, 4) == 0) {
			d->state = ST_DONE;
			return 0;
		}
		if (memcmp(d->hdr, MAGIC_LZ4, 4) == 0) {
			d->hdr_need = 12;
			return 0;
		}
		if (memcmp(d->hdr, MAGIC_RAW, 4) == 0) {
			d->hdr_need = 8;
			return 0;
		}
		char why[80];
		snprintf(why, sizeof(why), "unknown block magic %02x %02x %02x %02x", d->hdr[0],
			 d->hdr[1], d->hdr[2], d->hdr[3]);
		return bad(d, err, why);
	}
	if (d->hdr_need == 8) { /* bv4- */
		d->dsize = get_u32le(d->hdr + 4);
		if (d->dsize > VMM_APPLELZ4_MAX_BLOCK)
			return bad(d, err, "stored block larger than 4 MiB");
		if (check_total(d, d->dsize, err) < 0)
			return -1;
		if (d->dsize == 0) { /* an empty stored block: nothing to gather */
			next_header(d);
			return 0;
		}
		win_reserve(d, d->dsize);
		d->in_have = 0;
		d->state = ST_RAW;
		return 0;
	}
	d->dsize = get_u32le(d->hdr + 4);
	d->esize = get_u32le(d->hdr + 8);
	if (d->dsize == 0 || d->dsize > VMM_APPLELZ4_MAX_BLOCK)
		return bad(d, err, "compressed block with a decoded size of 0 or over 4 MiB");
	if (d->esize == 0 || d->esize > (uint32_t)LZ4_compressBound((int)d->dsize))
		return bad(d, err, "compressed block larger than its decoded size allows");
	if (check_total(d, d->dsize, err) < 0)
		return -1;
	d->in_have = 0;
	d->state = ST_LZ4;
	return 0;
}

static int decode_block(vmm_applelz4_dec *d, const unsigned char *src, vmm_applelz4_out out,
			void *ctx, vmm_error **err)
{
	win_reserve(d, d->dsize);
	size_t dict = d->win_pos < HIST ? d->win_pos : HIST;
	unsigned char *dst = d->win + d->win_pos;
	int n = LZ4_decompress_safe_usingDict((const char *)src, (char *)dst, (int)d->esize,
					      (int)d->dsize, (const char *)dst - dict, (int)dict);
	if (n < 0)
		return bad(d, err, "LZ4 block does not decode");
	if ((uint32_t)n != d->dsize)
		return bad(d, err, "LZ4 block decodes to fewer bytes than its header says");
	d->win_pos += d->dsize;
	d->total += d->dsize;
	return out(ctx, dst, d->dsize);
}

static void next_header(vmm_applelz4_dec *d)
{
	d->state = ST_HEADER;
	d->hdr_have = 0;
	d->hdr_need = 4;
	d->block_offset = d->offset;
}

int vmm_applelz4_dec_update(vmm_applelz4_dec *d, const void *data, size_t len, vmm_applelz4_out out,
			    void *ctx, vmm_error **err)
{
	const unsigned char *p = data;
	while (len) {
		switch (d->state) {
		case ST_DONE:
			return bad(d, err, "data after the end marker");
		case ST_HEADER: {
			if (d->hdr_have == 0)
				d->block_offset = d->offset;
			size_t take = d->hdr_need - d->hdr_have;
			if (take > len)
				take = len;
			memcpy(d->hdr + d->hdr_have, p, take);
			d->hdr_have += take;
			p += take;
			len -= take;
			d->offset += take;
			if (d->hdr_have == d->hdr_need && header_done(d, err) < 0)
				return -1;
			break;
		}
		case ST_RAW: {
			size_t take = d->dsize - d->in_have;
			if (take > len)
				take = len;
			memcpy(d->win + d->win_pos + d->in_have, p, take);
			d->in_have += take;
			p += take;
			len -= take;
			d->offset += take;
			if (d->in_have == d->dsize) {
				unsigned char *blk = d->win + d->win_pos;
				d->win_pos += d->dsize;
				d->total += d->dsize;
				next_header(d);
				int rc = out(ctx, blk, d->dsize);
				if (rc < 0)
					return rc;
			}
			break;
		}
		case ST_LZ4: {
			/* the whole block in this slice: decode in place, no copy */
			if (d->in_have == 0 && len >= d->esize) {
				const unsigned char *src = p;
				p += d->esize;
				len -= d->esize;
				d->offset += d->esize;
				int rc = decode_block(d, src, out, ctx, err);
				next_header(d);
				if (rc < 0)
					return rc;
				break;
			}
			if (d->in_cap < d->esize) {
				free(d->in);
				d->in_cap = d->esize;
				d->in = xmalloc(d->in_cap);
			}
			size_t take = d->esize - d->in_have;
			if (take > len)
				take = len;
			memcpy(d->in + d->in_have, p, take);
			d->in_have += take;
			p += take;
			len -= take;
			d->offset += take;
			if (d->in_have == d->esize) {
				int rc = decode_block(d, d->in, out, ctx, err);
				next_header(d);
				if (rc < 0)
					return rc;
			}
			break;
		}
		}
	}
	return 0;
}

int vmm_applelz4_dec_finish(vmm_applelz4_dec *d, vmm_error **err)
{
	if (d->state == ST_DONE)
		return 0;
	d->block_offset = d->offset;
	return bad(d, err, "the stream ends before its end marker (truncated)");
}

static int dec_collect(void *ctx, const void *data, size_t len)
{
	return membuf_put(ctx, data, len);
}

int vmm_applelz4_decompress(const void *buf, size_t len, uint64_t max_output, unsigned char **out,
			    size_t *out_len, vmm_error **err)
{
	vmm_applelz4_dec *d = vmm_applelz4_dec_new(max_output);
	membuf b = {0};
	int rc = vmm_applelz4_dec_update(d, buf, len, dec_collect, &b, err);
	if (rc == 0)
		rc = vmm_applelz4_dec_finish(d, err);
	vmm_applelz4_dec_free(d);
	if (rc < 0) {
		free(b.p);
		return -1;
	}
	*out = b.p ? b.p : xmalloc(1);
	*out_len = b.len;
	return 0;
}
