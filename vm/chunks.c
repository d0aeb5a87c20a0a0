#include "vm/chunks.h"
#include "common/util.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <linux/magic.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/eventfd.h>
#include <sys/statfs.h>
#include <sys/syscall.h>

#include <lz4frame.h>
#include <zstd.h>

#define PAGE 4096u
#define PAGES_MAX (VMM_SAVEFILE_CHUNK_MAX / PAGE)
#define BITMAP_BYTES (PAGES_MAX / 8)
/* start writeback this often, so the final fsync has little left to do */
#define KICK_EVERY (32ull << 20)

enum { REC_STREAM = 0, REC_MEMORY = 1 };

typedef struct record {
	uint8_t type;
	uint32_t csize, rsize;
	uint64_t offset, position;
	uint8_t bitmap[BITMAP_BYTES];
} record;

int vmm_chunks_threads(void)
{
	long n = sysconf(_SC_NPROCESSORS_ONLN);
	return n < 1 ? 1 : n > 16 ? 16 : (int)n;
}

/* --- records ------------------------------------------------------------------- */

static void put32(unsigned char *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (unsigned char)(v >> (8 * i));
}

static void put64(unsigned char *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (unsigned char)(v >> (8 * i));
}

static uint32_t get32(const unsigned char *p)
{
	uint32_t v = 0;
	for (int i = 3; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

static uint64_t get64(const unsigned char *p)
{
	uint64_t v = 0;
	for (int i = 7; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

static void record_encode(const record *r, unsigned char *out)
{
	memset(out, 0, VMM_SAVEFILE_RECORD_SIZE);
	out[0] = r->type;
	put32(out + 4, r->csize);
	put32(out + 8, r->rsize);
	put64(out + 16, r->offset);
	put64(out + 24, r->position);
	memcpy(out + 32, r->bitmap, BITMAP_BYTES);
}

static bool bit(const uint8_t *bm, size_t i)
{
	return bm[i / 8] & (1u << (i % 8));
}

static int cmp_record(const void *a, const void *b)
{
	const record *x = a, *y = b;
	if (x->type != y->type)
		return x->type < y->type ? -1 : 1;
	return x->position < y->position ? -1 : x->position > y->position;
}

/* --- codecs ------------------------------------------------------------------------ */

typedef struct codec_ctx {
	ZSTD_CCtx *zc;
	ZSTD_DCtx *zd;
	LZ4F_dctx *ld;
} codec_ctx;

static void codec_ctx_free(codec_ctx *c)
{
	ZSTD_freeCCtx(c->zc);
	ZSTD_freeDCtx(c->zd);
	if (c->ld)
		LZ4F_freeDecompressionContext(c->ld);
	memset(c, 0, sizeof(*c));
}

static LZ4F_preferences_t lz4_prefs(size_t n, int level)
{
	LZ4F_preferences_t p;
	memset(&p, 0, sizeof(p));
	p.frameInfo.blockSizeID = LZ4F_max4MB;
	p.frameInfo.blockMode = LZ4F_blockIndependent;
	/* the checksum of each block's compressed bytes, not of the content: as
	 * sure of what was stored, over less than half the bytes (lz4 ran 16% faster
	 * on the benchmark's content); states with the content's checksum read too */
	p.frameInfo.blockChecksumFlag = LZ4F_blockChecksumEnabled;
	p.frameInfo.contentSize = n;
	p.compressionLevel = level;
	return p;
}

static size_t bound(vmm_codec codec, size_t n)
{
	if (codec == VMM_CODEC_LZ4) {
		LZ4F_preferences_t p = lz4_prefs(n, 0);
		return LZ4F_compressFrameBound(n, &p);
	}
	return ZSTD_compressBound(n);
}

/* Compress n bytes into dst (cap from bound()); *out is the frame's size. */
static int compress_chunk(codec_ctx *c, vmm_codec codec, int level, const void *src, size_t n,
			  void *dst, size_t cap, size_t *out, vmm_error **err)
{
	size_t r;
	if (codec == VMM_CODEC_LZ4) {
		LZ4F_preferences_t p = lz4_prefs(n, level);
		r = LZ4F_compressFrame(dst, cap, src, n, &p);
		if (LZ4F_isError(r))
			return vmm_error_set(err, VMM_EGENERIC, "lz4: %s", LZ4F_getErrorName(r));
	} else {
		if (!c->zc) {
			c->zc = ZSTD_createCCtx();
			if (!c->zc)
				abort();
			ZSTD_CCtx_setParameter(c->zc, ZSTD_c_compressionLevel, level);
			ZSTD_CCtx_setParameter(c->zc, ZSTD_c_checksumFlag, 1);
		}
		r = ZSTD_compress2(c->zc, dst, cap, src, n);
		if (ZSTD_isError(r))
			return vmm_error_set(err, VMM_EGENERIC, "zstd: %s", ZSTD_getErrorName(r));
	}
	*out = r;
	return 0;
}

/* Decompress one frame of n bytes that must hold exactly `want` bytes. */
static int decompress_chunk(codec_ctx *c, vmm_codec codec, const void *src, size_t n, void *dst,
			    size_t want, const char *what, uint64_t off, vmm_error **err)
{
	if (codec == VMM_CODEC_LZ4) {
		if (!c->ld && LZ4F_isError(LZ4F_createDecompressionContext(&c->ld, LZ4F_VERSION)))
			abort();
		size_t got = want, used = n;
		size_t r = LZ4F_decompress(c->ld, dst, &got, src, &used, NULL);
		if (LZ4F_isError(r)) {
			LZ4F_resetDecompressionContext(c->ld);
			return vmm_error_set(err, VMM_EFORMAT, "%s is corrupt: chunk at %llu: %s",
					     what, (unsigned long long)off, LZ4F_getErrorName(r));
		}
		if (r != 0 || used != n || got != want) {
			LZ4F_resetDecompressionContext(c->ld);
			return vmm_error_set(err, VMM_EFORMAT,
					     "%s is corrupt: chunk at %llu does not hold %zu bytes",
					     what, (unsigned long long)off, want);
		}
		return 0;
	}
	if (!c->zd) {
		c->zd = ZSTD_createDCtx();
		if (!c->zd)
			abort();
	}
	size_t r = ZSTD_decompressDCtx(c->zd, dst, want, src, n);
	if (ZSTD_isError(r))
		return vmm_error_set(err, VMM_EFORMAT, "%s is corrupt: chunk at %llu: %s", what,
				     (unsigned long long)off, ZSTD_getErrorName(r));
	if (r != want)
		return vmm_error_set(err, VMM_EFORMAT,
				     "%s is corrupt: chunk at %llu does not hold %zu bytes", what,
				     (unsigned long long)off, want);
	return 0;
}

static bool page_is_zero(const unsigned char *p)
{
	/* the first word is zero and every word equals the one before it */
	const uint64_t *q = (const uint64_t *)p;
	return q[0] == 0 && memcmp(p, p + 8, PAGE - 8) == 0;
}

/*
 * A fast 64-bit hash of whole pages: four lanes of multiply and rotate (the
 * round of XXH64) and a final mix.  Only for telling a stretch of RAM from
 * its own earlier content.
 */
#define H1 0x9E3779B185EBCA87ull
#define H2 0xC2B2AE3D27D4EB4Full

static uint64_t rotl64(uint64_t x, int r)
{
	return x << r | x >> (64 - r);
}

static uint64_t lane(uint64_t acc, uint64_t w)
{
	return rotl64(acc + w * H2, 31) * H1;
}

static uint64_t pages_hash(const unsigned char *p, size_t n)
{
	uint64_t a = H1 + H2, b = H2, c = 0, d = 0 - H1;
	for (size_t i = 0; i + 32 <= n; i += 32) {
		uint64_t w[4];
		memcpy(w, p + i, sizeof(w));
		a = lane(a, w[0]);
		b = lane(b, w[1]);
		c = lane(c, w[2]);
		d = lane(d, w[3]);
	}
	uint64_t h = rotl64(a, 1) + rotl64(b, 7) + rotl64(c, 12) + rotl64(d, 18) + n;
	h ^= h >> 33;
	h *= H2;
	h ^= h >> 29;
	h *= H1;
	return h ^ (h >> 32);
}

typedef struct base_entry {
	uint64_t position, offset, hash;
	uint32_t csize, rsize;
	uint8_t bitmap[BITMAP_BYTES];
} base_entry;

/* Room in a file: [off, off+len). */
typedef struct room {
	uint64_t off, len;
} room;

struct vmm_chunk_base {
	int fd;
	vmm_codec codec;
	uint64_t chunk_size;
	base_entry *e; /* owned: memory chunks, by position */
	size_t n, cap; /* cap: room in e (saving ahead grows it; else n) */
	/* the rest of that file, for a save into it (vmm_chunk_writer_open_in_place) */
	uint64_t file_size, index_offset, live;
	uint64_t *stream_off; /* owned: the stream frames */
	uint32_t *stream_len; /* owned */
	size_t nstream;
	/* a lazy resume's fill under way (vmm_chunk_fill_base): e[i] is its record nstream + i */
	struct vmm_chunk_fill *fill;
	/* saving ahead: dead frames' room (its blocks freed), for new frames */
	room *free;
	size_t nfree, capfree;
};

static int fill_chunk_in(struct vmm_chunk_fill *f, size_t i, uint64_t *hash, vmm_error **err);
static void fill_thaw(struct vmm_chunk_fill *f);

void vmm_chunk_base_free(vmm_chunk_base *b)
{
	if (!b)
		return;
	if (b->fill) /* the save is over: the fill's threads go on */
		fill_thaw(b->fill);
	if (b->fd >= 0)
		close(b->fd);
	free(b->e);
	free(b->free);
	free(b->stream_off);
	free(b->stream_len);
	free(b);
}

bool vmm_chunk_base_in_place_ok(const vmm_chunk_base *b, vmm_codec codec)
{
	/* past twice its live frames, a file is better written afresh */
	return b && b->codec == codec && b->chunk_size == VMM_CHUNK_SIZE &&
	       b->file_size <= 2 * b->live + (64u << 20);
}

/* Where b's entry for position pos is, or would go. */
static size_t base_slot(const vmm_chunk_base *b, uint64_t pos)
{
	size_t lo = 0, hi = b->n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (b->e[mid].position < pos)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

static const base_entry *base_find(const vmm_chunk_base *b, uint64_t pos)
{
	size_t i = base_slot(b, pos);
	return i < b->n && b->e[i].position == pos ? &b->e[i] : NULL;
}

/* Copy n bytes from in_fd at in_off to out_fd at out_off (in the kernel where it can). */
static int copy_range(int in_fd, uint64_t in_off, int out_fd, uint64_t out_off, size_t n)
{
	loff_t i = (loff_t)in_off, o = (loff_t)out_off;
	while (n) {
		ssize_t c = copy_file_range(in_fd, &i, out_fd, &o, n, 0);
		if (c < 0 && errno == EINTR)
			continue;
		if (c <= 0)
			break;
		n -= (size_t)c;
	}
	unsigned char buf[65536];
	while (n) { /* no copy_file_range between these files: by hand */
		size_t k = n < sizeof(buf) ? n : sizeof(buf);
		if (vmm_pread_all(in_fd, buf, k, (off_t)i) < 0 ||
		    vmm_pwrite_all(out_fd, buf, k, (off_t)o) < 0)
			return -1;
		i += (loff_t)k;
		o += (loff_t)k;
		n -= k;
	}
	return 0;
}

/* --- writing ---------------------------------------------------------------------- */

typedef struct sjob {
	unsigned char *buf; /* owned */
	size_t len;
	uint64_t pos;
} sjob;

struct vmm_chunk_writer {
	int fd;
	int dfd;	/* fd opened again with O_DIRECT, or -1 */
	bool no_direct; /* dfd refused a write: fd only (atomic) */
	char *what;	/* owned */
	vmm_codec codec;
	int level;
	pthread_t *th;
	int nth;
	pthread_mutex_t mu;
	pthread_cond_t work, space;
	sjob *q; /* ring of stream jobs */
	size_t qcap, qhead, qlen;
	uint64_t stream_pos;
	int ram_fd;
	uint64_t ram_size;
	const unsigned char *map; /* ram_fd mapped read-only (tmpfs), or NULL: pread */
	uint64_t map_size;
	uint8_t *map_data;	 /* owned: which pages of map held data at mapping (a bit each) */
	vmm_chunk_source source; /* reads the RAM instead of ram_fd, if set */
	void *source_ctx;
	uint64_t *mem; /* RAM offsets of the chunks to compress */
	size_t nmem, next_mem;
	bool closing, failed, joined;
	int notify_fd; /* an eventfd told when the writer fails, or -1 */
	vmm_error *error;
	uint64_t end, kicked;
	record *recs;
	size_t nrec, caprec;
	uint64_t memory_bytes;
	const vmm_chunk_base *base; /* borrowed: frames to reuse */
	uint64_t compressed, reused;
	bool in_place; /* writing into base's own file: reused frames stay where they are */
	bool *used;    /* owned: in place, which base frames the new index keeps */
};

static void writer_fail(vmm_chunk_writer *w, vmm_error **e)
{
	pthread_mutex_lock(&w->mu);
	if (!w->failed) {
		w->failed = true;
		w->error = steal_ptr(*e);
	}
	pthread_cond_broadcast(&w->work);
	pthread_cond_broadcast(&w->space);
	int fd = w->notify_fd;
	pthread_mutex_unlock(&w->mu);
	vmm_error_free(*e);
	*e = NULL;
	if (fd >= 0) {
		uint64_t one = 1;
		(void)!write(fd, &one, sizeof(one));
	}
}

#define ALIGN_UP(x) (((x) + PAGE - 1) & ~(uint64_t)(PAGE - 1))

/*
 * Room for n bytes at the end of the file.  Frames start on 4 KiB, so that
 * a later save into this file can free a dead frame's blocks exactly.
 */
static uint64_t reserve(vmm_chunk_writer *w, size_t n)
{
	pthread_mutex_lock(&w->mu);
	uint64_t off = w->end;
	w->end = ALIGN_UP(w->end + n);
	pthread_mutex_unlock(&w->mu);
	return off;
}

/* Record a chunk written at off (n bytes). */
static void record_chunk(vmm_chunk_writer *w, record *r, uint64_t off, size_t n, bool reused)
{
	r->offset = off;
	r->csize = (uint32_t)n;
	pthread_mutex_lock(&w->mu);
	if (w->nrec == w->caprec) {
		w->caprec = w->caprec ? 2 * w->caprec : 256;
		w->recs = xrealloc(w->recs, w->caprec * sizeof(record));
	}
	w->recs[w->nrec++] = *r;
	if (r->type == REC_MEMORY) {
		w->memory_bytes += r->rsize;
		if (reused)
			w->reused++;
		else
			w->compressed++;
	}
	w->kicked += n;
	bool kick = w->kicked >= KICK_EVERY;
	if (kick)
		w->kicked = 0;
	pthread_mutex_unlock(&w->mu);
	if (kick)
		sync_file_range(w->fd, 0, 0, SYNC_FILE_RANGE_WRITE);
}

/* Append a compressed chunk to the file and record it. */
static int emit(vmm_chunk_writer *w, record *r, unsigned char *data, size_t n, vmm_error **err)
{
	uint64_t off = reserve(w, n);
	int rc = -1;
	/* data (4 KiB aligned) has room to the next 4 KiB, as its frame has */
	if (w->dfd >= 0 && !__atomic_load_n(&w->no_direct, __ATOMIC_RELAXED)) {
		memset(data + n, 0, ALIGN_UP(n) - n);
		rc = vmm_pwrite_all(w->dfd, data, ALIGN_UP(n), (off_t)off);
		if (rc < 0 && errno == EINVAL) /* refused after all: not again */
			__atomic_store_n(&w->no_direct, true, __ATOMIC_RELAXED);
	}
	if (rc < 0 && vmm_pwrite_all(w->fd, data, n, (off_t)off) < 0)
		return vmm_error_errno(err, errno, "write %s", w->what);
	record_chunk(w, r, off, n, false);
	return 0;
}

/* Base frame b again for record r. */
static int reuse(vmm_chunk_writer *w, const base_entry *b, record *r, vmm_error **err)
{
	if (w->in_place) { /* already in this file */
		w->used[b - w->base->e] = true;
		record_chunk(w, r, b->offset, b->csize, true);
		return 0;
	}
	uint64_t off = reserve(w, b->csize);
	if (copy_range(w->base->fd, b->offset, w->fd, off, b->csize) < 0)
		return vmm_error_errno(err, errno, "write %s", w->what);
	record_chunk(w, r, off, b->csize, true);
	return 0;
}

/*
 * The stretch [pos, pos+len) of the mapped RAM: its pages that hold data
 * marked in r's bitmap, and *data pointing at them packed.  Compressed
 * straight from the mapping when every page holds data (the usual case: no
 * copy of the RAM at all), else the kept pages are copied into in.  tmpfs's
 * holes, from w->map_data (one SEEK_DATA pass), are never touched: a read
 * fault would give them memory.  Returns the number of pages kept.
 */
static size_t pack_mapped(vmm_chunk_writer *w, uint64_t pos, size_t len, unsigned char *in,
			  record *r, const unsigned char **data)
{
	const unsigned char *src = w->map + pos;
	size_t pages = len / PAGE, kept = 0, first = pos / PAGE;
	for (size_t p = 0; p < pages; p++)
		if (bit(w->map_data, first + p) && !page_is_zero(src + p * PAGE)) {
			r->bitmap[p / 8] |= (uint8_t)(1u << (p % 8));
			kept++;
		}
	*data = src;
	if (kept == pages || !kept)
		return kept;
	size_t k = 0;
	for (size_t p = 0; p < pages; p++)
		if (bit(r->bitmap, p))
			memcpy(in + k++ * PAGE, src + p * PAGE, PAGE);
	*data = in;
	return kept;
}

/*
 * Map the RAM in ram_fd (size bytes) for pack_mapped if it is on tmpfs (a
 * memfd), with data (owned, taken): which of its pages hold data.  Huge
 * pages keep pread, where a fault on a hole would take a page from the pool.
 * Best effort.
 */
static void map_ram(vmm_chunk_writer *w, int ram_fd, uint64_t size, uint8_t *data)
{
	struct statfs sf;
	void *m = MAP_FAILED;
	if (!w->map && !w->source && data && size && fstatfs(ram_fd, &sf) == 0 &&
	    sf.f_type == TMPFS_MAGIC)
		m = mmap(NULL, (size_t)size, PROT_READ, MAP_SHARED, ram_fd, 0);
	if (m == MAP_FAILED) {
		free(data);
		return;
	}
	w->map = m;
	w->map_size = size;
	w->map_data = data;
}

static void *unmap_main(void *arg)
{
	uint64_t *m = arg; /* address, size */
	munmap((void *)(uintptr_t)m[0], (size_t)m[1]);
	free(m);
	return NULL;
}

/*
 * Unmap the RAM on a thread of its own: dropping the page tables of GiBs
 * takes a tenth of a second per GiB here, which a suspend need not wait for.
 */
static void unmap_ram(vmm_chunk_writer *w)
{
	if (!w->map)
		return;
	uint64_t *m = xmalloc(2 * sizeof(uint64_t));
	m[0] = (uint64_t)(uintptr_t)w->map;
	m[1] = w->map_size;
	pthread_t t;
	pthread_attr_t a;
	pthread_attr_init(&a);
	pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
	if (pthread_create(&t, &a, unmap_main, m) != 0)
		unmap_main(m);
	pthread_attr_destroy(&a);
	w->map = NULL;
}

/* The non-zero pages of the len bytes in in, packed to its start and marked in bitmap; how many. */
static size_t pack_pages(unsigned char *in, size_t len, uint8_t *bitmap)
{
	size_t kept = 0;
	for (size_t p = 0; p < len / PAGE; p++) {
		unsigned char *page = in + p * PAGE;
		if (page_is_zero(page))
			continue;
		bitmap[p / 8] |= (uint8_t)(1u << (p % 8));
		if (kept != p)
			memcpy(in + kept * PAGE, page, PAGE);
		kept++;
	}
	return kept;
}

/* One stretch of RAM: its non-zero pages, packed, compressed. */
static int do_memory(vmm_chunk_writer *w, codec_ctx *c, uint64_t pos, unsigned char *in,
		     unsigned char *out, size_t cap, vmm_error **err)
{
	size_t len =
	    w->ram_size - pos < VMM_CHUNK_SIZE ? (size_t)(w->ram_size - pos) : VMM_CHUNK_SIZE;
	const base_entry *b = w->base ? base_find(w->base, pos) : NULL;
	uint64_t bhash = b ? b->hash : 0;
	if (b && w->base->fill) {
		int got = fill_chunk_in(w->base->fill, w->base->nstream + (size_t)(b - w->base->e),
					&bhash, err);
		if (got < 0)
			return -1;
		if (got == 0) { /* not in yet, so the guest never touched it: its frame as it is */
			record r = {.type = REC_MEMORY, .position = pos, .rsize = b->rsize};
			memcpy(r.bitmap, b->bitmap, BITMAP_BYTES);
			return reuse(w, b, &r, err);
		}
	}
	record r = {.type = REC_MEMORY, .position = pos};
	size_t kept = 0;
	const unsigned char *data = in; /* the kept pages, packed */
	/* the holes are known from the mapping's time, unless a lazy resume's fill
	 * has just brought the chunk in */
	if (w->map && !w->source && !(b && w->base->fill)) {
		kept = pack_mapped(w, pos, len, in, &r, &data);
	} else {
		if ((w->source ? w->source(w->source_ctx, pos, in, len)
			       : vmm_pread_all(w->ram_fd, in, len, (off_t)pos)) < 0)
			return vmm_error_errno(err, errno, "read guest memory");
		kept = pack_pages(in, len, r.bitmap);
	}
	if (!kept)
		return 0;
	r.rsize = (uint32_t)(kept * PAGE);
	/* the same pages as when the guest was resumed: that frame again */
	if (b && b->rsize == r.rsize && memcmp(b->bitmap, r.bitmap, BITMAP_BYTES) == 0 &&
	    bhash == pages_hash(data, r.rsize))
		return reuse(w, b, &r, err);
	size_t n;
	if (compress_chunk(c, w->codec, w->level, data, r.rsize, out, cap, &n, err) < 0)
		return -1;
	return emit(w, &r, out, n, err);
}

static int do_stream(vmm_chunk_writer *w, codec_ctx *c, const sjob *j, unsigned char *out,
		     size_t cap, vmm_error **err)
{
	record r = {.type = REC_STREAM, .position = j->pos, .rsize = (uint32_t)j->len};
	size_t n;
	if (compress_chunk(c, w->codec, w->level, j->buf, j->len, out, cap, &n, err) < 0)
		return -1;
	return emit(w, &r, out, n, err);
}

static void *writer_main(void *arg)
{
	vmm_chunk_writer *w = arg;
	codec_ctx c = {0};
	size_t cap = bound(w->codec, VMM_CHUNK_SIZE);
	unsigned char *in = xmalloc(VMM_CHUNK_SIZE), *out = aligned_alloc(PAGE, ALIGN_UP(cap));
	if (!out)
		abort();
	pthread_mutex_lock(&w->mu);
	for (;;) {
		while (!w->failed && !w->qlen && w->next_mem >= w->nmem && !w->closing)
			pthread_cond_wait(&w->work, &w->mu);
		if (w->failed)
			break;
		vmm_error *e = NULL;
		int rc;
		if (w->qlen) { /* the stream first: QEMU waits on it */
			sjob j = w->q[w->qhead];
			w->qhead = (w->qhead + 1) % w->qcap;
			w->qlen--;
			pthread_cond_broadcast(&w->space);
			pthread_mutex_unlock(&w->mu);
			rc = do_stream(w, &c, &j, out, cap, &e);
			free(j.buf);
		} else if (w->next_mem < w->nmem) {
			uint64_t pos = w->mem[w->next_mem++];
			pthread_mutex_unlock(&w->mu);
			rc = do_memory(w, &c, pos, in, out, cap, &e);
		} else {
			break; /* closing, and nothing is left */
		}
		if (rc < 0)
			writer_fail(w, &e);
		pthread_mutex_lock(&w->mu);
	}
	pthread_mutex_unlock(&w->mu);
	codec_ctx_free(&c);
	free(in);
	free(out);
	return NULL;
}

/*
 * fd opened again for direct I/O, or -1: VMM_STATE_DIRECT=0, or a file
 * system that does not do direct I/O on it for real (no STATX_DIOALIGN: tmpfs
 * takes O_DIRECT and copies anyway), or wants more than 4 KiB alignment.  The
 * frames go to the disk without a copy into the page cache: on a 2-core host
 * that copy took a sixth of the writer's time.  The file is then not in the
 * cache for a resume right after, which reads it from the disk (lazily: the
 * guest runs meanwhile).
 */
static int open_direct(int fd)
{
	const char *want = getenv("VMM_STATE_DIRECT");
	if (want && strcmp(want, "0") == 0)
		return -1;
	struct statx sx;
	if (statx(fd, "", AT_EMPTY_PATH, STATX_DIOALIGN, &sx) < 0 ||
	    !(sx.stx_mask & STATX_DIOALIGN) || !sx.stx_dio_mem_align || !sx.stx_dio_offset_align ||
	    PAGE % sx.stx_dio_mem_align || PAGE % sx.stx_dio_offset_align)
		return -1;
	char self[64];
	snprintf(self, sizeof(self), "/proc/self/fd/%d", fd);
	return open(self, O_WRONLY | O_DIRECT | O_CLOEXEC);
}

int vmm_chunk_writer_open(vmm_chunk_writer **out, int fd, const char *what, vmm_codec codec,
			  int level, int threads, vmm_error **err)
{
	(void)err;
	vmm_chunk_writer *w = xcalloc(1, sizeof(*w));
	w->fd = fd;
	w->what = xstrdup(what);
	w->codec = codec;
	w->level = level;
	w->ram_fd = -1;
	w->notify_fd = -1;
	w->end = VMM_SAVEFILE_HEADER_SIZE;
	w->nth = threads > 0 ? threads : 1;
	w->dfd = open_direct(fd);
	if (w->dfd >= 0) /* a thread waiting on the disk leaves its core to another */
		w->nth *= 2;
	w->qcap = 2 * (size_t)w->nth;
	w->q = xcalloc(w->qcap, sizeof(sjob));
	pthread_mutex_init(&w->mu, NULL);
	pthread_cond_init(&w->work, NULL);
	pthread_cond_init(&w->space, NULL);
	w->th = xcalloc((size_t)w->nth, sizeof(pthread_t));
	for (int i = 0; i < w->nth; i++)
		if (pthread_create(&w->th[i], NULL, writer_main, w) != 0)
			abort();
	*out = w;
	return 0;
}

int vmm_chunk_writer_open_in_place(vmm_chunk_writer **out, int fd, const vmm_chunk_base *base,
				   const char *what, int level, int threads, vmm_error **err)
{
	if (!vmm_chunk_base_in_place_ok(base, base ? base->codec : VMM_CODEC_LZ4))
		return vmm_error_set(err, VMM_EINVAL, "%s cannot be written in place", what);
	if (vmm_chunk_writer_open(out, fd, what, base->codec, level, threads, err) < 0)
		return -1;
	vmm_chunk_writer *w = *out;
	w->base = base;
	w->in_place = true;
	w->used = xcalloc(base->n ? base->n : 1, sizeof(bool));
	w->end = ALIGN_UP(base->file_size);
	return 0;
}

/* Free the blocks wholly inside [off, off+len) (best effort: space only). */
static void punch(int fd, uint64_t off, uint64_t len)
{
	uint64_t a = ALIGN_UP(off), b = (off + len) & ~(uint64_t)(PAGE - 1);
	if (b > a)
		fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)a, (off_t)(b - a));
}

/* In place: what the new index no longer names is dead. */
static void punch_dead(vmm_chunk_writer *w)
{
	const vmm_chunk_base *b = w->base;
	for (size_t i = 0; i < b->n; i++)
		if (!w->used[i])
			punch(w->fd, b->e[i].offset, b->e[i].csize);
	for (size_t i = 0; i < b->nstream; i++)
		punch(w->fd, b->stream_off[i], b->stream_len[i]);
	punch(w->fd, b->index_offset, b->file_size - b->index_offset);
}

void vmm_chunk_writer_set_base(vmm_chunk_writer *w, const vmm_chunk_base *base)
{
	if (base && base->codec == w->codec && base->chunk_size == VMM_CHUNK_SIZE)
		w->base = base;
}

void vmm_chunk_writer_set_source(vmm_chunk_writer *w, vmm_chunk_source read, void *ctx)
{
	pthread_mutex_lock(&w->mu);
	w->source = read;
	w->source_ctx = ctx;
	pthread_mutex_unlock(&w->mu);
}

void vmm_chunk_writer_counts(vmm_chunk_writer *w, uint64_t *compressed, uint64_t *reused)
{
	pthread_mutex_lock(&w->mu);
	*compressed = w->compressed;
	*reused = w->reused;
	pthread_mutex_unlock(&w->mu);
}

/* vmm_chunks_with_data, and if pages, which pages hold data (a bit each, *pages). */
static int scan_data(int ram_fd, uint64_t size, uint64_t **out, size_t *count, uint8_t **pages,
		     vmm_error **err)
{
	if (size % PAGE)
		return vmm_error_set(err, VMM_EINVAL,
				     "guest memory of %llu bytes is not whole pages",
				     (unsigned long long)size);
	/* the stretches that hold data: tmpfs knows which pages were never touched */
	uint64_t *list = xcalloc(size / VMM_CHUNK_SIZE + 1, sizeof(uint64_t));
	uint8_t *bm = pages ? xcalloc(size / PAGE / 8 + 1, 1) : NULL;
	size_t n = 0;
	uint64_t pos = 0;
	while (pos < size) {
		off_t d = lseek(ram_fd, (off_t)pos, SEEK_DATA);
		if (d < 0) {
			if (errno == ENXIO)
				break;
			int e = errno;
			free(list);
			free(bm);
			return vmm_error_errno(err, e, "find the data in guest memory");
		}
		off_t hole = lseek(ram_fd, d, SEEK_HOLE);
		if (hole < 0 || (uint64_t)hole > size)
			hole = (off_t)size;
		for (uint64_t c = (uint64_t)d / VMM_CHUNK_SIZE * VMM_CHUNK_SIZE; c < (uint64_t)hole;
		     c += VMM_CHUNK_SIZE)
			if (n == 0 || list[n - 1] != c)
				list[n++] = c;
		for (uint64_t p = (uint64_t)d / PAGE; bm && p < ((uint64_t)hole + PAGE - 1) / PAGE;
		     p++)
			bm[p / 8] |= (uint8_t)(1u << (p % 8));
		pos = (uint64_t)hole;
	}
	*out = list;
	*count = n;
	if (pages)
		*pages = bm;
	return 0;
}

int vmm_chunks_with_data(int ram_fd, uint64_t size, uint64_t **out, size_t *count, vmm_error **err)
{
	return scan_data(ram_fd, size, out, count, NULL, err);
}

static void add_list(vmm_chunk_writer *w, int ram_fd, uint64_t size, uint64_t *list, size_t n,
		     uint8_t *pages)
{
	pthread_mutex_lock(&w->mu);
	free(w->mem);
	w->mem = list;
	w->nmem = n;
	w->next_mem = 0;
	w->ram_fd = ram_fd;
	w->ram_size = size;
	map_ram(w, ram_fd, size, pages); /* tmpfs: read in place, not copied out */
	pthread_cond_broadcast(&w->work);
	pthread_mutex_unlock(&w->mu);
}

int vmm_chunk_writer_add_memory(vmm_chunk_writer *w, int ram_fd, uint64_t size, vmm_error **err)
{
	uint64_t *list;
	size_t n;
	uint8_t *pages;
	if (scan_data(ram_fd, size, &list, &n, &pages, err) < 0)
		return -1;
	/* a lazy resume's chunks not yet in are holes, or partly: their frames too */
	const vmm_chunk_base *b = w->base;
	if (b && b->fill) {
		uint64_t *all = xcalloc(n + b->n + 1, sizeof(uint64_t));
		size_t i = 0, j = 0, k = 0;
		while (i < n || j < b->n) {
			uint64_t next = j == b->n || (i < n && list[i] <= b->e[j].position)
					    ? list[i]
					    : b->e[j].position;
			if (next < size && (k == 0 || all[k - 1] != next))
				all[k++] = next;
			if (i < n && list[i] == next)
				i++;
			if (j < b->n && b->e[j].position == next)
				j++;
		}
		free(list);
		list = all;
		n = k;
	}
	add_list(w, ram_fd, size, list, n, pages);
	return 0;
}

void vmm_chunk_writer_add_chunks(vmm_chunk_writer *w, int ram_fd, uint64_t size, uint64_t *list,
				 size_t n)
{
	add_list(w, ram_fd, size, list, n, NULL);
}

static int writer_error(vmm_chunk_writer *w, vmm_error **err)
{
	pthread_mutex_lock(&w->mu);
	int rc = 0;
	if (w->failed) {
		rc = -1;
		if (err && w->error) {
			vmm_error_free(*err);
			*err = NULL;
			vmm_error_set(err, w->error->code, "%s", w->error->msg);
		} else if (err && !w->error) {
			vmm_error_set(err, VMM_EGENERIC, "writing %s was cancelled", w->what);
		}
	}
	pthread_mutex_unlock(&w->mu);
	return rc;
}

void vmm_chunk_writer_notify(vmm_chunk_writer *w, int fd)
{
	pthread_mutex_lock(&w->mu);
	w->notify_fd = fd;
	pthread_mutex_unlock(&w->mu);
}

int vmm_chunk_writer_check(vmm_chunk_writer *w, vmm_error **err)
{
	return writer_error(w, err);
}

/* Hand a full (or the last) stream chunk to the threads. */
static int submit(vmm_chunk_writer *w, unsigned char *buf, size_t len, vmm_error **err)
{
	pthread_mutex_lock(&w->mu);
	while (!w->failed && w->qlen == w->qcap)
		pthread_cond_wait(&w->space, &w->mu);
	if (w->failed) {
		pthread_mutex_unlock(&w->mu);
		free(buf);
		return writer_error(w, err);
	}
	w->q[(w->qhead + w->qlen) % w->qcap] = (sjob){buf, len, w->stream_pos};
	w->qlen++;
	w->stream_pos += len;
	pthread_cond_broadcast(&w->work);
	pthread_mutex_unlock(&w->mu);
	return 0;
}

int vmm_chunk_writer_pump(vmm_chunk_writer *w, int fd, vmm_error **err)
{
	for (;;) {
		unsigned char *buf = xmalloc(VMM_CHUNK_SIZE);
		size_t len = 0;
		while (len < VMM_CHUNK_SIZE) {
			ssize_t n = read(fd, buf + len, VMM_CHUNK_SIZE - len);
			if (n < 0 && errno == EINTR)
				continue;
			if (n < 0) {
				int e = errno;
				free(buf);
				return vmm_error_errno(err, e, "read QEMU's migration stream");
			}
			if (n == 0)
				break;
			len += (size_t)n;
		}
		if (len == 0) {
			free(buf);
			return writer_error(w, err);
		}
		bool last = len < VMM_CHUNK_SIZE;
		if (submit(w, buf, len, err) < 0)
			return -1;
		if (last)
			return writer_error(w, err);
	}
}

static void writer_join(vmm_chunk_writer *w)
{
	if (w->joined)
		return;
	pthread_mutex_lock(&w->mu);
	w->closing = true;
	pthread_cond_broadcast(&w->work);
	pthread_mutex_unlock(&w->mu);
	for (int i = 0; i < w->nth; i++)
		pthread_join(w->th[i], NULL);
	w->joined = true;
}

int vmm_chunk_writer_finish(vmm_chunk_writer *w, vmm_savefile_header *h, vmm_error **err)
{
	writer_join(w);
	if (writer_error(w, err) < 0)
		return -1;
	if (w->nrec)
		qsort(w->recs, w->nrec, sizeof(record), cmp_record);
	if (w->in_place)
		punch_dead(w);
	size_t len = w->nrec * VMM_SAVEFILE_RECORD_SIZE;
	cleanup_free unsigned char *idx = xmalloc(len ? len : 1);
	for (size_t i = 0; i < w->nrec; i++)
		record_encode(&w->recs[i], idx + i * VMM_SAVEFILE_RECORD_SIZE);
	if (vmm_pwrite_all(w->fd, idx, len, (off_t)w->end) < 0)
		return vmm_error_errno(err, errno, "write %s", w->what);
	char digest[72];
	vmm_sha256_digest(idx, len, digest);
	h->format = VMM_SAVEFILE_FORMAT;
	h->kind = w->ram_fd >= 0 ? VMM_SAVEFILE_KIND_MEMORY : VMM_SAVEFILE_KIND_STREAM;
	h->codec = w->codec;
	h->chunk_size = VMM_CHUNK_SIZE;
	h->device_size = w->stream_pos;
	h->raw_size = w->stream_pos + w->memory_bytes;
	h->index_offset = w->end;
	h->index_count = w->nrec;
	free(h->index_sha256);
	h->index_sha256 = xstrdup(digest);
	free(h->raw_sha256);
	h->raw_sha256 = NULL;
	h->compressed_size = w->end + len - VMM_SAVEFILE_HEADER_SIZE;
	return 0;
}

void vmm_chunk_writer_cancel(vmm_chunk_writer *w)
{
	pthread_mutex_lock(&w->mu);
	w->failed = true;
	pthread_cond_broadcast(&w->work);
	pthread_cond_broadcast(&w->space);
	pthread_mutex_unlock(&w->mu);
}

void vmm_chunk_writer_free(vmm_chunk_writer *w)
{
	if (!w)
		return;
	if (!w->joined) {
		vmm_chunk_writer_cancel(w);
		writer_join(w);
	}
	for (size_t i = 0; i < w->qlen; i++)
		free(w->q[(w->qhead + i) % w->qcap].buf);
	free(w->q);
	free(w->th);
	if (w->dfd >= 0)
		close(w->dfd);
	free(w->mem);
	unmap_ram(w);
	free(w->map_data);
	free(w->recs);
	free(w->used);
	free(w->what);
	vmm_error_free(w->error);
	pthread_mutex_destroy(&w->mu);
	pthread_cond_destroy(&w->work);
	pthread_cond_destroy(&w->space);
	free(w);
}

/* --- the index ------------------------------------------------------------------ */

struct vmm_chunk_index {
	record *recs; /* owned: stream records, then memory records */
	size_t n, nstream;
};

void vmm_chunk_index_free(vmm_chunk_index *x)
{
	if (!x)
		return;
	free(x->recs);
	free(x);
}

static int bad_record(vmm_error **err, const char *what, size_t i, const char *why)
{
	return vmm_error_set(err, VMM_EFORMAT, "%s is corrupt: index record %zu %s", what, i, why);
}

int vmm_chunk_index_parse(vmm_chunk_index **out, const void *buf, size_t len,
			  const vmm_savefile_header *h, const char *what, vmm_error **err)
{
	if (h->format != VMM_SAVEFILE_FORMAT || len != h->index_count * VMM_SAVEFILE_RECORD_SIZE)
		return vmm_error_set(err, VMM_EFORMAT,
				     "%s is corrupt: the index has the wrong size", what);
	char digest[72];
	vmm_sha256_digest(buf, len, digest);
	if (strcmp(digest, h->index_sha256) != 0)
		return vmm_error_set(err, VMM_EFORMAT, "%s is corrupt: index SHA-256 mismatch",
				     what);
	/* QEMU's RAM is whole MiB (-m rounds up) */
	uint64_t ram = (h->memory + (1u << 20) - 1) & ~(uint64_t)((1u << 20) - 1);
	const unsigned char *b = buf;
	vmm_chunk_index *x = xcalloc(1, sizeof(*x));
	x->recs = xcalloc(h->index_count ? h->index_count : 1, sizeof(record));
	x->n = h->index_count;
	uint64_t stream = 0, memory = 0, next_ram = 0;
	size_t max_c = bound(h->codec, h->chunk_size);
	int rc = -1;
	for (size_t i = 0; i < x->n; i++) {
		const unsigned char *p = b + i * VMM_SAVEFILE_RECORD_SIZE;
		record *r = &x->recs[i];
		r->type = p[0];
		r->csize = get32(p + 4);
		r->rsize = get32(p + 8);
		r->offset = get64(p + 16);
		r->position = get64(p + 24);
		memcpy(r->bitmap, p + 32, BITMAP_BYTES);
		if (p[1] || p[2] || p[3] || get32(p + 12)) {
			bad_record(err, what, i, "has stray bytes");
			goto out;
		}
		if (r->csize == 0 || r->csize > max_c || r->offset < VMM_SAVEFILE_HEADER_SIZE ||
		    r->offset > h->index_offset || h->index_offset - r->offset < r->csize) {
			bad_record(err, what, i, "points outside the chunks");
			goto out;
		}
		if (r->type == REC_STREAM) {
			static const uint8_t zero[BITMAP_BYTES];
			if (i != x->nstream || r->rsize == 0 || r->rsize > h->chunk_size ||
			    r->position != stream || memcmp(r->bitmap, zero, BITMAP_BYTES) != 0) {
				bad_record(err, what, i, "breaks the stream");
				goto out;
			}
			stream += r->rsize;
			x->nstream++;
		} else if (r->type == REC_MEMORY && h->kind == VMM_SAVEFILE_KIND_MEMORY) {
			if (r->position % h->chunk_size || r->position < next_ram ||
			    r->position >= ram) {
				bad_record(err, what, i, "is out of place in memory");
				goto out;
			}
			uint64_t span =
			    ram - r->position < h->chunk_size ? ram - r->position : h->chunk_size;
			size_t pages = 0;
			for (size_t k = 0; k < PAGES_MAX; k++) {
				if (!bit(r->bitmap, k))
					continue;
				if (k >= span / PAGE) {
					bad_record(err, what, i, "names pages past the memory");
					goto out;
				}
				pages++;
			}
			if (pages == 0 || r->rsize != pages * PAGE) {
				bad_record(err, what, i, "does not match its pages");
				goto out;
			}
			next_ram = r->position + h->chunk_size;
			memory += r->rsize;
		} else {
			bad_record(err, what, i, "has an unknown type");
			goto out;
		}
	}
	if (stream != h->device_size || stream + memory != h->raw_size) {
		vmm_error_set(err, VMM_EFORMAT,
			      "%s is corrupt: the index holds %llu bytes, the header says %llu",
			      what, (unsigned long long)(stream + memory),
			      (unsigned long long)h->raw_size);
		goto out;
	}
	*out = x;
	x = NULL;
	rc = 0;
out:
	vmm_chunk_index_free(x);
	return rc;
}

int vmm_chunk_index_load(vmm_chunk_index **out, int fd, const vmm_savefile_header *h,
			 const char *what, vmm_error **err)
{
	if (h->format != VMM_SAVEFILE_FORMAT)
		return vmm_error_set(err, VMM_EFORMAT, "%s has no index", what);
	size_t len = h->index_count * VMM_SAVEFILE_RECORD_SIZE;
	cleanup_free unsigned char *buf = xmalloc(len ? len : 1);
	if (vmm_pread_all(fd, buf, len, (off_t)h->index_offset) < 0)
		return errno == EIO ? vmm_error_set(err, VMM_EFORMAT, "%s is truncated", what)
				    : vmm_error_errno(err, errno, "read %s", what);
	return vmm_chunk_index_parse(out, buf, len, h, what, err);
}

/* Read and decompress record r into out (r->rsize bytes). */
static int read_chunk(codec_ctx *c, int fd, const vmm_savefile_header *h, const record *r,
		      unsigned char *in, unsigned char *out, const char *what, vmm_error **err)
{
	if (vmm_pread_all(fd, in, r->csize, (off_t)r->offset) < 0)
		return errno == EIO ? vmm_error_set(err, VMM_EFORMAT, "%s is truncated", what)
				    : vmm_error_errno(err, errno, "read %s", what);
	return decompress_chunk(c, h->codec, in, r->csize, out, r->rsize, what, r->offset, err);
}

/* --- filling guest memory --------------------------------------------------------- */

enum { CHUNK_WAITING = 0, CHUNK_FILLING = 1, CHUNK_IN = 2 };

struct vmm_chunk_fill {
	int fd, ram_fd;	    /* fd: our own descriptor of the state file */
	unsigned char *ram; /* the RAM mapped, where it cannot be written to (hugetlbfs) */
	size_t ram_len;
	vmm_savefile_header h; /* the scalar fields of the state's header */
	const vmm_chunk_index *x;
	vmm_chunk_index *owned_x; /* the same, once the fill outlives its loader */
	char *what;
	pthread_t *th;
	int nth;
	pthread_mutex_t mu;
	pthread_cond_t cv; /* a chunk is in, or the fill failed */
	size_t next;
	uint8_t *state;	 /* per record: CHUNK_* */
	size_t left;	 /* memory records not yet in */
	int done_fd;	 /* eventfd: readable once every chunk is in or the fill failed */
	bool background; /* the guest runs: the threads yield to it and to its faults */
	bool frozen;	 /* a save reads the RAM (vmm_chunk_fill_base): no chunk is begun */
	bool failed;
	vmm_error *error;
	uint64_t *hashes; /* owned: per record, of its pages */
	/* the fault server's own buffers (vmm_chunk_fill_page: one caller at a time) */
	codec_ctx page_c;
	unsigned char *page_in, *page_out;
};

/* Write the pages of a decompressed memory chunk where they belong, in runs. */
static int scatter(struct vmm_chunk_fill *f, const record *r, const unsigned char *data,
		   vmm_error **err)
{
	size_t k = 0;
	for (size_t p = 0; p < PAGES_MAX;) {
		if (!bit(r->bitmap, p)) {
			p++;
			continue;
		}
		size_t q = p;
		while (q < PAGES_MAX && bit(r->bitmap, q))
			q++;
		uint64_t at = r->position + p * PAGE, len = (q - p) * PAGE;
		if (f->ram && (at > f->ram_len || len > f->ram_len - at))
			return vmm_error_set(err, VMM_EFORMAT, "%s: memory beyond the guest's",
					     f->what);
		if (f->ram)
			memcpy(f->ram + at, data + k * PAGE, len);
		else if (vmm_pwrite_all(f->ram_fd, data + k * PAGE, len, (off_t)at) < 0)
			return vmm_error_errno(err, errno, "write guest memory");
		k += q - p;
		p = q;
	}
	return 0;
}

/* Record i is in (rc 0) or failed (e): say so to whoever waits. */
static void chunk_done(struct vmm_chunk_fill *f, size_t i, uint64_t hash, int rc, vmm_error **e)
{
	pthread_mutex_lock(&f->mu);
	f->state[i] = CHUNK_IN;
	f->hashes[i] = hash;
	if (rc < 0 && !f->failed) {
		f->failed = true;
		f->error = steal_ptr(*e);
	}
	bool done = rc < 0 || --f->left == 0;
	pthread_cond_broadcast(&f->cv);
	pthread_mutex_unlock(&f->mu);
	vmm_error_free(*e);
	*e = NULL;
	if (done) {
		uint64_t one = 1;
		(void)!write(f->done_fd, &one, sizeof(one));
	}
}

/* Decompress record i into the RAM. */
static int fill_one(struct vmm_chunk_fill *f, codec_ctx *c, size_t i, unsigned char *in,
		    unsigned char *out)
{
	const record *r = &f->x->recs[i];
	vmm_error *e = NULL;
	uint64_t hash = 0;
	if (read_chunk(c, f->fd, &f->h, r, in, out, f->what, &e) == 0) {
		hash = pages_hash(out, r->rsize);
		scatter(f, r, out, &e);
	}
	int rc = e ? -1 : 0;
	chunk_done(f, i, hash, rc, &e);
	return rc;
}

static void *fill_main(void *arg)
{
	struct vmm_chunk_fill *f = arg;
	codec_ctx c = {0};
	unsigned char *in = xmalloc(bound(f->h.codec, f->h.chunk_size));
	unsigned char *out = xmalloc(f->h.chunk_size);
	/* tests hold the threads here: a lazy resume's pages then all come through faults */
	vmm_test_pause("resume-fill");
	bool niced = false;
	for (;;) {
		pthread_mutex_lock(&f->mu);
		while (f->frozen && !f->failed)
			pthread_cond_wait(&f->cv, &f->mu);
		while (f->next < f->x->n && f->state[f->next] != CHUNK_WAITING)
			f->next++; /* the fault server took it */
		size_t i = f->next++;
		bool stop = f->failed || i >= f->x->n;
		if (!stop)
			f->state[i] = CHUNK_FILLING;
		bool nice = f->background && !niced;
		pthread_mutex_unlock(&f->mu);
		if (nice) { /* this thread only (Linux) */
			setpriority(PRIO_PROCESS, (id_t)gettid(), 10);
			niced = true;
		}
		if (stop || fill_one(f, &c, i, in, out) < 0)
			break;
	}
	codec_ctx_free(&c);
	free(in);
	free(out);
	return NULL;
}

int vmm_chunk_fill_start(vmm_chunk_fill **out, int fd, const vmm_savefile_header *h,
			 const vmm_chunk_index *x, int ram_fd, int threads, const char *what,
			 vmm_error **err)
{
	struct vmm_chunk_fill *f = xcalloc(1, sizeof(*f));
	f->ram_fd = ram_fd;
	/* huge pages (hugetlbfs) cannot be written to, only mapped */
	struct statfs sf;
	struct stat st;
	if (fstatfs(ram_fd, &sf) == 0 && sf.f_type == HUGETLBFS_MAGIC && fstat(ram_fd, &st) == 0) {
		void *m =
		    mmap(NULL, (size_t)st.st_size, PROT_READ | PROT_WRITE, MAP_SHARED, ram_fd, 0);
		if (m == MAP_FAILED) {
			free(f);
			return vmm_error_errno(err, errno, "map guest memory");
		}
		f->ram = m;
		f->ram_len = (size_t)st.st_size;
	}
	f->fd = fcntl(fd, F_DUPFD_CLOEXEC, 3);
	f->done_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (f->fd < 0 || f->done_fd < 0) {
		int e = errno;
		if (f->ram)
			munmap(f->ram, f->ram_len);
		if (f->fd >= 0)
			close(f->fd);
		if (f->done_fd >= 0)
			close(f->done_fd);
		free(f);
		return vmm_error_errno(err, e, "restore guest memory");
	}
	f->h.codec = h->codec;
	f->h.chunk_size = h->chunk_size;
	f->h.index_offset = h->index_offset;
	f->h.compressed_size = h->compressed_size;
	f->x = x;
	f->what = xstrdup(what);
	f->next = x->nstream;
	f->left = x->n - x->nstream;
	f->state = xcalloc(x->n ? x->n : 1, 1);
	f->hashes = xcalloc(x->n ? x->n : 1, sizeof(uint64_t));
	f->nth = threads > 0 ? threads : 1;
	pthread_mutex_init(&f->mu, NULL);
	pthread_cond_init(&f->cv, NULL);
	if (f->left == 0) {
		uint64_t one = 1;
		(void)!write(f->done_fd, &one, sizeof(one));
	}
	posix_fadvise(f->fd, 0, 0, POSIX_FADV_WILLNEED);
	f->th = xcalloc((size_t)f->nth, sizeof(pthread_t));
	for (int i = 0; i < f->nth; i++)
		if (pthread_create(&f->th[i], NULL, fill_main, f) != 0)
			abort();
	*out = f;
	return 0;
}

void vmm_chunk_fill_background(vmm_chunk_fill *f)
{
	pthread_mutex_lock(&f->mu);
	f->background = true;
	pthread_mutex_unlock(&f->mu);
}

void vmm_chunk_fill_adopt_index(vmm_chunk_fill *f, vmm_chunk_index *x)
{
	f->owned_x = x;
}

int vmm_chunk_fill_done_fd(const vmm_chunk_fill *f)
{
	return f->done_fd;
}

bool vmm_chunk_fill_failed(vmm_chunk_fill *f)
{
	pthread_mutex_lock(&f->mu);
	bool failed = f->failed;
	pthread_mutex_unlock(&f->mu);
	return failed;
}

void vmm_chunk_fill_cancel(vmm_chunk_fill *f)
{
	pthread_mutex_lock(&f->mu);
	if (!f->failed) {
		f->failed = true;
		vmm_error_set(&f->error, VMM_EGENERIC, "restoring %s was cancelled", f->what);
	}
	pthread_cond_broadcast(&f->cv);
	pthread_mutex_unlock(&f->mu);
}

int vmm_chunk_fill_page(vmm_chunk_fill *f, uint64_t offset, bool *data)
{
	*data = false;
	uint64_t pos = offset / f->h.chunk_size * f->h.chunk_size;
	size_t lo = f->x->nstream, hi = f->x->n;
	while (lo < hi) { /* memory records are in the order of their positions */
		size_t mid = lo + (hi - lo) / 2;
		if (f->x->recs[mid].position < pos)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (lo == f->x->n || f->x->recs[lo].position != pos)
		return 0; /* a stretch the state does not hold: zeros */
	/* a page of zeros, too, only once its chunk is in: the guest has then
	 * touched nothing of a chunk that is not (vmm_chunk_fill_untouched) */
	*data = bit(f->x->recs[lo].bitmap, (offset - pos) / PAGE);
	pthread_mutex_lock(&f->mu);
	if (!f->failed && f->state[lo] == CHUNK_WAITING) {
		f->state[lo] = CHUNK_FILLING;
		pthread_mutex_unlock(&f->mu);
		if (!f->page_in) {
			f->page_in = xmalloc(bound(f->h.codec, f->h.chunk_size));
			f->page_out = xmalloc(f->h.chunk_size);
		}
		return fill_one(f, &f->page_c, lo, f->page_in, f->page_out);
	}
	while (!f->failed && f->state[lo] != CHUNK_IN)
		pthread_cond_wait(&f->cv, &f->mu);
	bool in = f->state[lo] == CHUNK_IN && !f->failed;
	pthread_mutex_unlock(&f->mu);
	return in ? 0 : -1;
}

/* What a save may reuse of f's state (its hashes as far as the fill got). */
static vmm_chunk_base *base_of(struct vmm_chunk_fill *f)
{
	vmm_chunk_base *b = xcalloc(1, sizeof(*b));
	b->fd = fcntl(f->fd, F_DUPFD_CLOEXEC, 3);
	b->codec = f->h.codec;
	b->chunk_size = f->h.chunk_size;
	b->n = f->x->n - f->x->nstream;
	b->e = xcalloc(b->n ? b->n : 1, sizeof(base_entry));
	for (size_t i = 0; i < b->n; i++) {
		const record *r = &f->x->recs[f->x->nstream + i];
		b->e[i] = (base_entry){.position = r->position,
				       .offset = r->offset,
				       .hash = f->hashes[f->x->nstream + i],
				       .csize = r->csize,
				       .rsize = r->rsize};
		memcpy(b->e[i].bitmap, r->bitmap, BITMAP_BYTES);
		b->live += r->csize;
	}
	b->nstream = f->x->nstream;
	b->stream_off = xcalloc(b->nstream ? b->nstream : 1, sizeof(uint64_t));
	b->stream_len = xcalloc(b->nstream ? b->nstream : 1, sizeof(uint32_t));
	for (size_t i = 0; i < b->nstream; i++) {
		b->stream_off[i] = f->x->recs[i].offset;
		b->stream_len[i] = f->x->recs[i].csize;
	}
	b->index_offset = f->h.index_offset;
	b->file_size = VMM_SAVEFILE_HEADER_SIZE + f->h.compressed_size;
	if (b->fd < 0) {
		vmm_chunk_base_free(b);
		b = NULL;
	}
	return b;
}

/*
 * For a save while the guest is stopped: 1 if record i is in (*hash its
 * pages' hash), 0 if it was never claimed, so never touched.  One being
 * filled is waited for: its pages written so far could have been touched.
 * -1 once the fill has failed: what is in the RAM cannot be trusted.
 */
static int fill_chunk_in(struct vmm_chunk_fill *f, size_t i, uint64_t *hash, vmm_error **err)
{
	pthread_mutex_lock(&f->mu);
	while (!f->failed && f->state[i] == CHUNK_FILLING)
		pthread_cond_wait(&f->cv, &f->mu);
	int in = f->failed ? -1 : f->state[i] == CHUNK_IN;
	if (in > 0)
		*hash = f->hashes[i];
	pthread_mutex_unlock(&f->mu);
	if (in < 0)
		vmm_error_set(err, VMM_EGENERIC, "restoring %s failed: the memory cannot be saved",
			      f->what);
	return in;
}

static void fill_thaw(struct vmm_chunk_fill *f)
{
	pthread_mutex_lock(&f->mu);
	f->frozen = false;
	pthread_cond_broadcast(&f->cv);
	pthread_mutex_unlock(&f->mu);
}

vmm_chunk_base *vmm_chunk_fill_base(vmm_chunk_fill *f, vmm_codec codec)
{
	if (f->h.codec != codec || f->h.chunk_size != VMM_CHUNK_SIZE)
		return NULL; /* a save could not reuse its frames */
	pthread_mutex_lock(&f->mu);
	vmm_chunk_base *b = f->failed ? NULL : base_of(f);
	/*
	 * The save waits for the chunks being filled; were the threads to go
	 * on claiming the next ones (at nice 10, beside the save), it would
	 * wait chunk after chunk.  None is begun until the base is freed.
	 */
	f->frozen = b != NULL;
	pthread_mutex_unlock(&f->mu);
	if (b)
		b->fill = f;
	return b;
}

int vmm_chunk_fill_wait(vmm_chunk_fill *f, vmm_chunk_base **base, vmm_error **err)
{
	for (int i = 0; i < f->nth; i++)
		pthread_join(f->th[i], NULL);
	int rc = 0;
	if (f->failed) {
		rc = -1;
		if (err) {
			vmm_error_free(*err);
			*err = steal_ptr(f->error);
		}
	} else if (base) {
		*base = base_of(f);
	}
	free(f->hashes);
	free(f->state);
	vmm_error_free(f->error);
	if (f->ram)
		munmap(f->ram, f->ram_len);
	codec_ctx_free(&f->page_c);
	free(f->page_in);
	free(f->page_out);
	vmm_chunk_index_free(f->owned_x);
	close(f->fd);
	close(f->done_fd);
	pthread_mutex_destroy(&f->mu);
	pthread_cond_destroy(&f->cv);
	free(f->th);
	free(f->what);
	free(f);
	return rc;
}

/* --- the stream, in order ---------------------------------------------------------- */

typedef struct slot {
	unsigned char *buf; /* owned */
	bool ready;
} slot;

typedef struct streamer {
	int fd;
	const vmm_savefile_header *h;
	const vmm_chunk_index *x;
	const char *what;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	slot *slots;
	size_t nslots, next_take, next_write;
	bool failed;
	vmm_error *error;
} streamer;

static void *stream_main(void *arg)
{
	streamer *s = arg;
	codec_ctx c = {0};
	unsigned char *in = xmalloc(bound(s->h->codec, s->h->chunk_size));
	pthread_mutex_lock(&s->mu);
	for (;;) {
		while (!s->failed && s->next_take < s->x->nstream &&
		       s->next_take >= s->next_write + s->nslots)
			pthread_cond_wait(&s->cv, &s->mu);
		if (s->failed || s->next_take >= s->x->nstream)
			break;
		size_t i = s->next_take++;
		slot *sl = &s->slots[i % s->nslots];
		pthread_mutex_unlock(&s->mu);
		vmm_error *e = NULL;
		int rc = read_chunk(&c, s->fd, s->h, &s->x->recs[i], in, sl->buf, s->what, &e);
		pthread_mutex_lock(&s->mu);
		if (rc < 0 && !s->failed) {
			s->failed = true;
			s->error = steal_ptr(e);
		}
		vmm_error_free(e);
		sl->ready = true;
		pthread_cond_broadcast(&s->cv);
	}
	pthread_mutex_unlock(&s->mu);
	codec_ctx_free(&c);
	free(in);
	return NULL;
}

int vmm_chunk_stream_out(int fd, const vmm_savefile_header *h, const vmm_chunk_index *x, int out_fd,
			 int threads, const char *what, vmm_error **err)
{
	streamer s = {.fd = fd, .h = h, .x = x, .what = what};
	int nth = threads > 0 ? threads : 1;
	s.nslots = 2 * (size_t)nth;
	s.slots = xcalloc(s.nslots, sizeof(slot));
	for (size_t i = 0; i < s.nslots; i++)
		s.slots[i].buf = xmalloc(h->chunk_size);
	pthread_mutex_init(&s.mu, NULL);
	pthread_cond_init(&s.cv, NULL);
	posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
	pthread_t *th = xcalloc((size_t)nth, sizeof(pthread_t));
	for (int i = 0; i < nth; i++)
		if (pthread_create(&th[i], NULL, stream_main, &s) != 0)
			abort();
	int rc = 0;
	for (size_t i = 0; i < x->nstream; i++) {
		slot *sl = &s.slots[i % s.nslots];
		pthread_mutex_lock(&s.mu);
		while (!s.failed && !sl->ready)
			pthread_cond_wait(&s.cv, &s.mu);
		bool failed = s.failed;
		pthread_mutex_unlock(&s.mu);
		if (failed) {
			rc = -1;
			break;
		}
		if (vmm_write_all(out_fd, sl->buf, x->recs[i].rsize) < 0) {
			int e = errno;
			pthread_mutex_lock(&s.mu);
			s.failed = true;
			pthread_cond_broadcast(&s.cv);
			pthread_mutex_unlock(&s.mu);
			if (e == EPIPE)
				vmm_error_set(err, VMM_EGENERIC,
					      "QEMU stopped reading the saved state");
			else
				vmm_error_errno(err, e, "write the saved state to QEMU");
			rc = -2;
			break;
		}
		pthread_mutex_lock(&s.mu);
		sl->ready = false;
		s.next_write++;
		pthread_cond_broadcast(&s.cv);
		pthread_mutex_unlock(&s.mu);
	}
	for (int i = 0; i < nth; i++)
		pthread_join(th[i], NULL);
	if (rc == -1 && err) {
		vmm_error_free(*err);
		*err = steal_ptr(s.error);
	}
	vmm_error_free(s.error);
	for (size_t i = 0; i < s.nslots; i++)
		free(s.slots[i].buf);
	free(s.slots);
	free(th);
	pthread_mutex_destroy(&s.mu);
	pthread_cond_destroy(&s.cv);
	return rc < 0 ? -1 : 0;
}

/* --- re-encoding ----------------------------------------------------------------- */

typedef struct recoder {
	int in, out;
	const vmm_savefile_header *h;
	const vmm_chunk_index *x;
	record *recs; /* owned: the new records, same order */
	vmm_codec codec;
	int level;
	const char *what, *tmp;
	pthread_mutex_t mu;
	size_t next;
	uint64_t end;
	bool failed;
	vmm_error *error;
} recoder;

static void *recode_main(void *arg)
{
	recoder *rc = arg;
	codec_ctx dec = {0}, enc = {0};
	size_t cap = bound(rc->codec, rc->h->chunk_size);
	unsigned char *in = xmalloc(bound(rc->h->codec, rc->h->chunk_size));
	unsigned char *raw = xmalloc(rc->h->chunk_size), *out = xmalloc(cap);
	for (;;) {
		pthread_mutex_lock(&rc->mu);
		size_t i = rc->next++;
		bool stop = rc->failed || i >= rc->x->n;
		pthread_mutex_unlock(&rc->mu);
		if (stop)
			break;
		record r = rc->x->recs[i];
		vmm_error *e = NULL;
		size_t n = 0;
		int ok = read_chunk(&dec, rc->in, rc->h, &r, in, raw, rc->what, &e);
		if (ok == 0)
			ok = compress_chunk(&enc, rc->codec, rc->level, raw, r.rsize, out, cap, &n,
					    &e);
		if (ok == 0) {
			pthread_mutex_lock(&rc->mu);
			r.offset = rc->end;
			r.csize = (uint32_t)n;
			rc->end = (rc->end + n + PAGE - 1) & ~(uint64_t)(PAGE - 1);
			pthread_mutex_unlock(&rc->mu);
			if (vmm_pwrite_all(rc->out, out, n, (off_t)r.offset) < 0)
				ok = vmm_error_errno(&e, errno, "write `%s`", rc->tmp);
			rc->recs[i] = r;
		}
		if (ok < 0) {
			pthread_mutex_lock(&rc->mu);
			if (!rc->failed) {
				rc->failed = true;
				rc->error = steal_ptr(e);
			}
			pthread_mutex_unlock(&rc->mu);
			vmm_error_free(e);
			break;
		}
	}
	codec_ctx_free(&dec);
	codec_ctx_free(&enc);
	free(in);
	free(raw);
	free(out);
	return NULL;
}

int vmm_chunk_reencode(const char *src, const char *dst, vmm_codec codec, int level, int threads,
		       vmm_error **err)
{
	cleanup_vmm_savefile_header vmm_savefile_header *h = NULL;
	if (vmm_savefile_read_header(&h, src, err) < 0)
		return -1;
	cleanup_free char *what = xasprintf("state `%s`", src);
	if (h->format != VMM_SAVEFILE_FORMAT)
		return vmm_error_set(err, VMM_EINVAL, "%s is in format %d, not chunks", what,
				     h->format);
	cleanup_close int in = open(src, O_RDONLY | O_CLOEXEC);
	if (in < 0)
		return vmm_error_errno(err, errno, "open `%s`", src);
	vmm_chunk_index *x = NULL;
	if (vmm_chunk_index_load(&x, in, h, what, err) < 0)
		return -1;
	cleanup_free char *tmp = xasprintf("%s.tmp", dst);
	unlink(tmp);
	int out = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (out < 0) {
		vmm_chunk_index_free(x);
		return vmm_error_errno(err, errno, "create `%s`", tmp);
	}
	recoder r = {.in = in,
		     .out = out,
		     .h = h,
		     .x = x,
		     .codec = codec,
		     .level = level,
		     .what = what,
		     .tmp = tmp,
		     .end = VMM_SAVEFILE_HEADER_SIZE};
	r.recs = xcalloc(x->n ? x->n : 1, sizeof(record));
	pthread_mutex_init(&r.mu, NULL);
	posix_fadvise(in, 0, 0, POSIX_FADV_SEQUENTIAL);
	int nth = threads > 0 ? threads : 1;
	pthread_t *th = xcalloc((size_t)nth, sizeof(pthread_t));
	for (int i = 0; i < nth; i++)
		if (pthread_create(&th[i], NULL, recode_main, &r) != 0)
			abort();
	for (int i = 0; i < nth; i++)
		pthread_join(th[i], NULL);
	free(th);
	pthread_mutex_destroy(&r.mu);
	int rc = -1;
	size_t len = x->n * VMM_SAVEFILE_RECORD_SIZE;
	unsigned char *idx = xmalloc(len ? len : 1);
	unsigned char *hdr = NULL;
	if (r.failed) {
		if (err) {
			vmm_error_free(*err);
			*err = steal_ptr(r.error);
		}
		goto out;
	}
	for (size_t i = 0; i < x->n; i++)
		record_encode(&r.recs[i], idx + i * VMM_SAVEFILE_RECORD_SIZE);
	if (vmm_pwrite_all(out, idx, len, (off_t)r.end) < 0) {
		vmm_error_errno(err, errno, "write `%s`", tmp);
		goto out;
	}
	char digest[72];
	vmm_sha256_digest(idx, len, digest);
	h->codec = codec;
	h->index_offset = r.end;
	free(h->index_sha256);
	h->index_sha256 = xstrdup(digest);
	h->compressed_size = r.end + len - VMM_SAVEFILE_HEADER_SIZE;
	hdr = vmm_savefile_header_encode(h);
	if (!hdr) {
		vmm_error_set(err, VMM_EINVAL, "state header for `%s` is too large", dst);
		goto out;
	}
	if (vmm_pwrite_all(out, hdr, VMM_SAVEFILE_HEADER_SIZE, 0) < 0 || fsync(out) < 0) {
		vmm_error_errno(err, errno, "write `%s`", tmp);
		goto out;
	}
	if (rename(tmp, dst) < 0) {
		vmm_error_errno(err, errno, "rename `%s` to `%s`", tmp, dst);
		goto out;
	}
	rc = vmm_fsync_dir(dst, false, err);
out:
	if (rc < 0)
		unlink(tmp);
	close(out);
	vmm_error_free(r.error);
	free(r.recs);
	free(idx);
	free(hdr);
	vmm_chunk_index_free(x);
	return rc;
}

/* --- saving ahead ----------------------------------------------------------------- */

struct vmm_chunk_ahead {
	pthread_mutex_t mu; /* held for moments: the thread runs at the lowest priority */
	pthread_cond_t cv;
	int refs;		  /* the owner's and the thread's */
	bool stop, failed, saved; /* saved: caught up (a pass found nothing more to compress) */
	int passes;		  /* done */
	size_t changing, stored;  /* at the last pass: chunks changing, and with frames */
	int ram_fd, fd;		  /* the thread's own descriptors */
	uint64_t ram_size;
	double interval;
	vmm_codec codec;
	vmm_chunk_base *base; /* owned until stopped (then NULL); read and changed under mu */
	uint64_t *seen;	      /* owned: per chunk, its hash at the last pass (0: not seen) */
	int event;	      /* eventfd: told when it catches up, and when it fails */
	vmm_error *error;     /* owned: why it stopped */
	uint64_t bytes;	      /* RAM compressed so far */
};

static void ahead_unref(vmm_chunk_ahead *a)
{
	pthread_mutex_lock(&a->mu);
	bool last = --a->refs == 0;
	pthread_mutex_unlock(&a->mu);
	if (!last)
		return;
	vmm_chunk_base_free(a->base);
	close(a->event);
	close(a->ram_fd);
	close(a->fd);
	vmm_error_free(a->error);
	free(a->seen);
	pthread_cond_destroy(&a->cv);
	pthread_mutex_destroy(&a->mu);
	free(a);
}

/*
 * Under mu: a frame's room is free (its blocks, at the stop), one with the
 * free room next to it on either side, so that a stretch whose frames keep
 * growing finds room in those it left behind instead of at the end.
 */
static void ahead_free(vmm_chunk_base *b, const base_entry *e)
{
	room r = {e->offset, ALIGN_UP(e->csize)};
	b->live -= e->csize;
	for (size_t i = 0; i < b->nfree;) {
		const room *o = &b->free[i];
		if (o->off + o->len != r.off && r.off + r.len != o->off) {
			i++;
			continue;
		}
		r.off = o->off < r.off ? o->off : r.off;
		r.len += o->len;
		b->free[i] = b->free[--b->nfree];
	}
	if (b->nfree == b->capfree) {
		b->capfree = b->capfree ? 2 * b->capfree : 64;
		b->free = xrealloc(b->free, b->capfree * sizeof(room));
	}
	b->free[b->nfree++] = r;
}

/* Under mu: room for a frame of n bytes, from a dead frame's if one is big enough. */
static uint64_t ahead_room(vmm_chunk_base *b, size_t n)
{
	for (size_t i = 0; i < b->nfree; i++)
		if (b->free[i].len >= ALIGN_UP(n)) {
			uint64_t off = b->free[i].off;
			b->free[i].off += ALIGN_UP(n);
			b->free[i].len -= ALIGN_UP(n);
			if (!b->free[i].len)
				b->free[i] = b->free[--b->nfree];
			return off;
		}
	uint64_t off = ALIGN_UP(b->file_size);
	/* the end is past this frame even if it is never recorded: a save appends after it */
	b->file_size = b->index_offset = off + n;
	return off;
}

/* Under mu: e in the base, in place of the entry for its position if there is one. */
static void ahead_put(vmm_chunk_base *b, const base_entry *e)
{
	size_t i = base_slot(b, e->position);
	if (i < b->n && b->e[i].position == e->position) {
		ahead_free(b, &b->e[i]);
	} else {
		if (b->n == b->cap) {
			b->cap = b->cap ? 2 * b->cap : 64;
			b->e = xrealloc(b->e, b->cap * sizeof(base_entry));
		}
		memmove(&b->e[i + 1], &b->e[i], (b->n - i) * sizeof(base_entry));
		b->n++;
	}
	b->e[i] = *e;
	b->live += e->csize;
}

/* Under mu: the entries whose positions are not in list (n, ascending) go, in one pass. */
static void ahead_keep(vmm_chunk_base *b, const uint64_t *list, size_t n)
{
	size_t j = 0, k = 0;
	for (size_t i = 0; i < b->n; i++) {
		while (j < n && list[j] < b->e[i].position)
			j++;
		if (j < n && list[j] == b->e[i].position)
			b->e[k++] = b->e[i];
		else
			ahead_free(b, &b->e[i]);
	}
	b->n = k;
}

/*
 * One chunk, read into in: a copy, since the guest writes on meanwhile, so
 * its hash and its frame come from the same bytes.  The base is the
 * caller's once stopped, so it is touched only under mu, not stopped; a
 * chunk's old frame stays named until its new one is written.  Returns 1
 * if the base has a frame of what the RAM held, 0 if not (yet), -1 on an
 * error, -2 once stopped.
 */
static int ahead_chunk(vmm_chunk_ahead *a, codec_ctx *c, uint64_t pos, unsigned char *in,
		       unsigned char *out, size_t cap, vmm_error **err)
{
	size_t len =
	    a->ram_size - pos < VMM_CHUNK_SIZE ? (size_t)(a->ram_size - pos) : VMM_CHUNK_SIZE;
	if (vmm_pread_all(a->ram_fd, in, len, (off_t)pos) < 0)
		return vmm_error_errno(err, errno, "read guest memory");
	base_entry e = {.position = pos};
	size_t kept = pack_pages(in, len, e.bitmap);
	uint64_t *seen = &a->seen[pos / VMM_CHUNK_SIZE];
	if (!kept) { /* zeros now: the pass's end drops its frame, if any */
		*seen = 0;
		return 1;
	}
	e.rsize = (uint32_t)(kept * PAGE);
	e.hash = pages_hash(in, e.rsize);
	pthread_mutex_lock(&a->mu);
	bool stop = a->stop;
	const base_entry *o = stop ? NULL : base_find(a->base, pos);
	bool same = o && o->rsize == e.rsize && o->hash == e.hash &&
		    memcmp(o->bitmap, e.bitmap, BITMAP_BYTES) == 0;
	pthread_mutex_unlock(&a->mu);
	if (stop)
		return -2;
	if (same) {
		*seen = e.hash;
		return 1;
	}
	if (*seen != e.hash) { /* changing: compressed once it holds still for a pass */
		*seen = e.hash;
		return 0;
	}
	size_t n;
	if (compress_chunk(c, a->codec, 0, in, e.rsize, out, cap, &n, err) < 0)
		return -1;
	pthread_mutex_lock(&a->mu);
	stop = a->stop;
	if (!stop)
		e.offset = ahead_room(a->base, n);
	pthread_mutex_unlock(&a->mu);
	if (stop)
		return -2;
	e.csize = (uint32_t)n;
	if (vmm_pwrite_all(a->fd, out, n, (off_t)e.offset) < 0)
		return vmm_error_errno(err, errno, "save guest memory ahead");
	pthread_mutex_lock(&a->mu);
	stop = a->stop; /* if stopped, the frame is in room no one names */
	if (!stop) {
		ahead_put(a->base, &e);
		a->bytes += e.rsize;
	}
	pthread_mutex_unlock(&a->mu);
	return stop ? -2 : 1;
}

/*
 * A pass over the RAM: the chunks that hold data now, and the base's frames
 * of stretches that no longer do.  Returns how many chunks are changing
 * (no frame of what they hold), -1 on an error, -2 once stopped.
 */
static int ahead_pass(vmm_chunk_ahead *a, codec_ctx *c, unsigned char *in, unsigned char *out,
		      size_t cap, vmm_error **err)
{
	uint64_t *list;
	size_t n;
	if (scan_data(a->ram_fd, a->ram_size, &list, &n, NULL, err) < 0)
		return -1;
	int changing = 0;
	for (size_t i = 0; i < n && changing >= 0; i++) {
		int got = ahead_chunk(a, c, list[i], in, out, cap, err);
		if (got < 0)
			changing = got;
		else if (got == 0)
			changing++;
	}
	pthread_mutex_lock(&a->mu);
	if (a->stop) {
		changing = -2;
	} else if (changing >= 0) {
		ahead_keep(a->base, list, n); /* holes now: their frames go */
		a->stored = a->base->n;
	}
	pthread_mutex_unlock(&a->mu);
	free(list);
	return changing;
}

static void *ahead_main(void *arg)
{
	vmm_chunk_ahead *a = arg;
	/* the guest first: only what the host's CPUs and disks have left over */
	struct sched_param sp = {0};
	pthread_setschedparam(pthread_self(), SCHED_IDLE, &sp);
	syscall(SYS_ioprio_set, 1 /* IOPRIO_WHO_PROCESS */, 0, 3 << 13 /* IOPRIO_CLASS_IDLE */);
	codec_ctx c = {0};
	size_t cap = bound(a->codec, VMM_CHUNK_SIZE);
	unsigned char *in = xmalloc(VMM_CHUNK_SIZE), *out = xmalloc(cap);
	for (;;) {
		pthread_mutex_lock(&a->mu);
		struct timespec t;
		clock_gettime(CLOCK_MONOTONIC, &t);
		double end = (double)t.tv_sec + (double)t.tv_nsec / 1e9 + a->interval;
		t.tv_sec = (time_t)end;
		t.tv_nsec = (long)((end - (double)t.tv_sec) * 1e9);
		while (!a->stop && pthread_cond_timedwait(&a->cv, &a->mu, &t) != ETIMEDOUT)
			;
		bool stop = a->stop;
		pthread_mutex_unlock(&a->mu);
		if (stop)
			break;
		vmm_error *e = NULL;
		uint64_t before = a->bytes; /* (only this thread changes it) */
		int rc = ahead_pass(a, &c, in, out, cap, &e);
		if (rc == -2)
			break;
		/* on the disk before a suspend needs it there */
		if (rc >= 0 && a->bytes != before && fdatasync(a->fd) < 0)
			rc = vmm_error_errno(&e, errno, "save guest memory ahead");
		pthread_mutex_lock(&a->mu);
		if (rc >= 0) {
			a->passes++;
			a->changing = (size_t)rc;
		}
		/* caught up: every chunk seen twice, and nothing more to compress */
		bool saved = rc >= 0 && a->passes >= 2 && a->bytes == before && a->stored;
		bool news = saved && !a->saved;
		a->saved = saved;
		if (rc < 0 && !a->stop) {
			a->failed = true;
			a->error = steal_ptr(e);
			news = true;
		}
		pthread_mutex_unlock(&a->mu);
		vmm_error_free(e);
		if (news) {
			uint64_t one = 1;
			(void)!write(a->event, &one, sizeof(one));
		}
		if (rc < 0)
			break;
	}
	codec_ctx_free(&c);
	free(in);
	free(out);
	ahead_unref(a);
	return NULL;
}

/* An empty base in fd, for a VM that was not resumed (or whose state cannot be reused). */
static vmm_chunk_base *empty_base(int fd, vmm_codec codec)
{
	vmm_chunk_base *b = xcalloc(1, sizeof(*b));
	b->fd = fcntl(fd, F_DUPFD_CLOEXEC, 3);
	b->codec = codec;
	b->chunk_size = VMM_CHUNK_SIZE;
	b->e = xcalloc(1, sizeof(base_entry));
	b->cap = 1;
	b->file_size = b->index_offset = VMM_SAVEFILE_HEADER_SIZE;
	if (b->fd < 0 || ftruncate(fd, VMM_SAVEFILE_HEADER_SIZE) < 0) {
		int e = errno;
		vmm_chunk_base_free(b);
		errno = e;
		return NULL;
	}
	return b;
}

/*
 * What saving ahead starts from: *base's entries if it can keep them (not
 * during a fill, in codec, and every frame on 4 KiB, as vmm writes them
 * since format 2's first months: older frames would share blocks with the
 * room of their neighbours), else an empty base in fd.
 */
static vmm_chunk_base *ahead_base(vmm_chunk_base **base, int fd, vmm_codec codec)
{
	vmm_chunk_base *b = *base;
	bool keep = b && !b->fill && b->codec == codec && b->chunk_size == VMM_CHUNK_SIZE;
	for (size_t i = 0; keep && i < b->n; i++)
		keep = b->e[i].offset % PAGE == 0;
	if (!keep)
		return empty_base(fd, codec);
	/* the resumed state's own stream and index: never read again */
	for (size_t i = 0; i < b->nstream; i++)
		punch(fd, b->stream_off[i], b->stream_len[i]);
	b->nstream = 0;
	punch(fd, b->index_offset, b->file_size - b->index_offset);
	b->index_offset = b->file_size;
	if (b->cap < b->n)
		b->cap = b->n;
	*base = NULL;
	return b;
}

int vmm_chunk_ahead_start(vmm_chunk_ahead **out, int ram_fd, uint64_t size, int fd,
			  vmm_chunk_base **base, vmm_codec codec, double interval, vmm_error **err)
{
	struct statfs sf;
	if (fstatfs(ram_fd, &sf) < 0 || sf.f_type != TMPFS_MAGIC)
		return vmm_error_set(err, VMM_EINVAL, "guest memory is not on tmpfs");
	vmm_chunk_ahead *a = xcalloc(1, sizeof(*a));
	pthread_mutex_init(&a->mu, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&a->cv, &ca);
	pthread_condattr_destroy(&ca);
	a->refs = 1;
	a->ram_fd = fcntl(ram_fd, F_DUPFD_CLOEXEC, 3);
	a->fd = fcntl(fd, F_DUPFD_CLOEXEC, 3);
	a->event = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (a->ram_fd < 0 || a->fd < 0 || a->event < 0 ||
	    !(a->base = ahead_base(base, fd, codec))) {
		int e = errno;
		ahead_unref(a);
		return vmm_error_errno(err, e, "save guest memory ahead");
	}
	a->ram_size = size;
	a->interval = interval;
	a->codec = codec;
	a->seen = xcalloc(size / VMM_CHUNK_SIZE + 1, sizeof(uint64_t));
	a->refs = 2;
	pthread_t th;
	int e = pthread_create(&th, NULL, ahead_main, a);
	if (e != 0) {
		vmm_chunk_base_free(*base);
		*base = steal_ptr(a->base); /* as good as the one given, if not that one */
		a->refs = 1;
		ahead_unref(a);
		return vmm_error_errno(err, e, "save guest memory ahead");
	}
	pthread_detach(th);
	vmm_chunk_base_free(*base); /* (not kept: ahead_base) */
	*base = NULL;
	*out = a;
	return 0;
}

int vmm_chunk_ahead_fd(const vmm_chunk_ahead *a)
{
	return a->event;
}

int vmm_chunk_ahead_news(vmm_chunk_ahead *a, uint64_t *bytes, size_t *stored, size_t *changing,
			 vmm_error **err)
{
	uint64_t v;
	(void)!read(a->event, &v, sizeof(v));
	pthread_mutex_lock(&a->mu);
	int rc = a->failed ? -1 : a->saved ? 1 : 0;
	if (rc < 0)
		vmm_error_set(err, vmm_error_code(a->error), "%s", a->error->msg);
	*bytes = a->bytes;
	*stored = a->stored;
	*changing = a->changing;
	pthread_mutex_unlock(&a->mu);
	return rc;
}

vmm_chunk_base *vmm_chunk_ahead_stop(vmm_chunk_ahead *a)
{
	if (!a)
		return NULL;
	/* no waiting for the thread, which may get no CPU while the guest is busy:
	 * from here on it changes nothing, and whatever it writes lands in room
	 * that the base does not name and a save writes after (ahead_room) */
	pthread_mutex_lock(&a->mu);
	a->stop = true;
	pthread_cond_broadcast(&a->cv);
	vmm_chunk_base *b = steal_ptr(a->base);
	pthread_mutex_unlock(&a->mu);
	/* dead frames' blocks go back (through a->fd: a resumed base's own is read-only) */
	for (size_t i = 0; i < b->nfree; i++)
		punch(a->fd, b->free[i].off, b->free[i].len);
	ahead_unref(a);
	return b;
}
