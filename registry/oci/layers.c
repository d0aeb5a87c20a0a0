#include "registry/oci/layers.h"
#include "common/util.h"
#include "registry/oci/applelz4.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <string.h>
#include <unistd.h>
#include <linux/falloc.h>
#include <openssl/evp.h>
#include <sys/stat.h>

#define IO_BUF (4 * 1024 * 1024)
#define ZERO_PIECE 4096

static const unsigned char zeros_1m[1024 * 1024];

static EVP_MD_CTX *sha_new(void)
{
	EVP_MD_CTX *c = EVP_MD_CTX_new();
	if (!c || !EVP_DigestInit_ex(c, EVP_sha256(), NULL))
		vmm_fatal("cannot initialise SHA-256");
	return c;
}

static void sha_final(EVP_MD_CTX *c, char out[72])
{
	unsigned char md[32];
	unsigned int n = 0;
	EVP_DigestFinal_ex(c, md, &n);
	memcpy(out, "sha256:", 7);
	vmm_hex(md, 32, out + 7);
}

static void sha_zeros(EVP_MD_CTX *c, uint64_t n)
{
	while (n) {
		size_t take = n > sizeof(zeros_1m) ? sizeof(zeros_1m) : (size_t)n;
		EVP_DigestUpdate(c, zeros_1m, take);
		n -= take;
	}
}

static bool is_zero(const unsigned char *p, size_t n)
{
	if (n < 16) {
		for (size_t i = 0; i < n; i++)
			if (p[i])
				return false;
		return true;
	}
	static const unsigned char z[16];
	return memcmp(p, z, 16) == 0 && memcmp(p, p + 16, n - 16) == 0;
}

/* --- zero digests -------------------------------------------------------- */

static pthread_mutex_t zero_lock = PTHREAD_MUTEX_INITIALIZER;
static struct {
	uint64_t size;
	char digest[72];
} zero_cache[8];
static size_t zero_cache_n;

void vmm_zero_digest(uint64_t size, char out[72])
{
	/* Tart's chunk size, the common case: known without hashing 512 MiB */
	if (size == 536870912ULL) {
		memcpy(out,
		       "sha256:9acca8e8c22201155389f65abbf6bc9723edc7384ead80503839f49dcc56d767",
		       72);
		return;
	}
	pthread_mutex_lock(&zero_lock);
	for (size_t i = 0; i < zero_cache_n; i++) {
		if (zero_cache[i].size == size) {
			memcpy(out, zero_cache[i].digest, 72);
			pthread_mutex_unlock(&zero_lock);
			return;
		}
	}
	pthread_mutex_unlock(&zero_lock);
	EVP_MD_CTX *c = sha_new();
	sha_zeros(c, size);
	sha_final(c, out);
	EVP_MD_CTX_free(c);
	pthread_mutex_lock(&zero_lock);
	size_t slot =
	    zero_cache_n < ARRAY_SIZE(zero_cache) ? zero_cache_n++ : size % ARRAY_SIZE(zero_cache);
	zero_cache[slot].size = size;
	memcpy(zero_cache[slot].digest, out, 72);
	pthread_mutex_unlock(&zero_lock);
}

/*
 * Walk [off, off+size) of fd: data regions are read in pieces and handed to
 * on_data, holes to on_hole by length alone.
 */
typedef struct walker {
	int (*on_data)(void *ctx, const unsigned char *buf, size_t len);
	int (*on_hole)(void *ctx, uint64_t len);
	void *ctx;
} walker;

static int walk_region(int fd, uint64_t off, uint64_t size, const walker *w, vmm_error **err)
{
	cleanup_free unsigned char *buf = NULL;
	uint64_t end = off + size, pos = off;
	while (pos < end) {
		off_t data = lseek(fd, (off_t)pos, SEEK_DATA);
		uint64_t hole_end;
		if (data < 0) {
			if (errno == ENXIO) {
				hole_end = end; /* nothing but hole up to EOF */
			} else if (errno == EINVAL || errno == EOPNOTSUPP) {
				data = (off_t)pos; /* no hole detection: read it all */
				hole_end = pos;
			} else {
				return vmm_error_errno(err, errno, "find data in the disk");
			}
		} else {
			hole_end = (uint64_t)data < end ? (uint64_t)data : end;
		}
		if (hole_end > pos) {
			int rc = w->on_hole(w->ctx, hole_end - pos);
			if (rc < 0)
				return rc;
			pos = hole_end;
			continue;
		}
		off_t hole = lseek(fd, (off_t)pos, SEEK_HOLE);
		uint64_t data_end = hole < 0 ? end : (uint64_t)hole;
		if (data_end > end || data_end <= pos)
			data_end = end;
		if (!buf)
			buf = xmalloc(IO_BUF);
		while (pos < data_end) {
			size_t take = data_end - pos > IO_BUF ? IO_BUF : (size_t)(data_end - pos);
			if (vmm_pread_all(fd, buf, take, (off_t)pos) < 0)
				return vmm_error_errno(err, errno, "read the disk at byte %llu",
						       (unsigned long long)pos);
			int rc = w->on_data(w->ctx, buf, take);
			if (rc < 0)
				return rc;
			pos += take;
		}
	}
	return 0;
}

/* --- encoding ------------------------------------------------------------ */

typedef struct enc_ctx {
	vmm_applelz4_enc *enc;
	EVP_MD_CTX *raw, *comp;
	unsigned char *blob;
	size_t len, cap;
	vmm_progress_fn progress;
	void *pctx;
	bool hash_zeros;
} enc_ctx;

static int enc_out(void *ctx, const void *data, size_t len)
{
	enc_ctx *e = ctx;
	if (e->len + len > e->cap) {
		e->cap = (e->len + len) * 2;
		e->blob = xrealloc(e->blob, e->cap);
	}
	memcpy(e->blob + e->len, data, len);
	e->len += len;
	EVP_DigestUpdate(e->comp, data, len);
	return 0;
}

static int enc_data(void *ctx, const unsigned char *buf, size_t len)
{
	enc_ctx *e = ctx;
	EVP_DigestUpdate(e->raw, buf, len);
	vmm_applelz4_enc_update(e->enc, buf, len, enc_out, e);
	if (e->progress)
		e->progress(e->pctx, len);
	return 0;
}

static int enc_hole(void *ctx, uint64_t len)
{
	enc_ctx *e = ctx;
	while (len) {
		uint64_t take = len > (64ULL << 20) ? (64ULL << 20) : len;
		if (e->hash_zeros)
			sha_zeros(e->raw, take);
		vmm_applelz4_enc_zeros(e->enc, take, enc_out, e);
		if (e->progress)
			e->progress(e->pctx, take);
		len -= take;
	}
	return 0;
}

static bool region_is_hole(int fd, uint64_t off, uint64_t size)
{
	off_t data = lseek(fd, (off_t)off, SEEK_DATA);
	return (data < 0 && errno == ENXIO) || (data >= 0 && (uint64_t)data >= off + size);
}

int vmm_disk_chunk_encode(int fd, uint64_t offset, uint64_t size, vmm_disk_chunk *c,
			  vmm_progress_fn progress, void *pctx, vmm_error **err)
{
	memset(c, 0, sizeof(*c));
	c->offset = offset;
	c->size = size;
	enc_ctx e = {
	    .enc = vmm_applelz4_enc_new(),
	    .raw = sha_new(),
	    .comp = sha_new(),
	    .progress = progress,
	    .pctx = pctx,
	};
	/* a wholly empty chunk: its raw digest is known without hashing zeros */
	bool empty = region_is_hole(fd, offset, size);
	/* read once, front to back: ask for a large readahead */
	posix_fadvise(fd, (off_t)offset, (off_t)size, POSIX_FADV_SEQUENTIAL);
	e.hash_zeros = !empty;
	/* compressed output is rarely more than half; grow from there */
	e.cap = size / 2 + 65536;
	if (empty)
		e.cap = size / 200 + 65536;
	e.blob = xmalloc(e.cap);
	walker w = {enc_data, enc_hole, &e};
	int rc = walk_region(fd, offset, size, &w, err);
	if (rc == 0) {
		vmm_applelz4_enc_finish(e.enc, enc_out, &e);
		sha_final(e.comp, c->digest);
		if (empty)
			vmm_zero_digest(size, c->uncompressed_digest);
		else
			sha_final(e.raw, c->uncompressed_digest);
		c->blob = e.blob;
		c->blob_len = e.len;
		e.blob = NULL;
	}
	free(e.blob);
	vmm_applelz4_enc_free(e.enc);
	EVP_MD_CTX_free(e.raw);
	EVP_MD_CTX_free(e.comp);
	return rc;
}

void vmm_disk_chunk_clear(vmm_disk_chunk *c)
{
	free(c->blob);
	c->blob = NULL;
	c->blob_len = 0;
}

/* --- writing a disk layer ------------------------------------------------ */

struct vmm_layer_writer {
	int fd;
	char *name;
	uint64_t offset, usize, csize;
	char digest[72], udigest[72];
	EVP_MD_CTX *ch, *uh;
	vmm_applelz4_dec *dec;
	uint64_t fed, pos;
	vmm_error *out_err; /* from the output callback */
};

static int punch(int fd, uint64_t off, uint64_t len, vmm_error **err)
{
	if (len == 0)
		return 0;
	if (fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)off, (off_t)len) == 0)
		return 0;
	if (errno != EOPNOTSUPP && errno != ENOSYS)
		return vmm_error_errno(err, errno, "clear disk region at byte %llu",
				       (unsigned long long)off);
	if (region_is_hole(fd, off, len))
		return 0;
	/* no hole punching here: overwrite with zeros so nothing stale survives */
	for (uint64_t p = 0; p < len;) {
		size_t take = len - p > sizeof(zeros_1m) ? sizeof(zeros_1m) : (size_t)(len - p);
		if (vmm_pwrite_all(fd, zeros_1m, take, (off_t)(off + p)) < 0)
			return vmm_error_errno(err, errno, "clear disk region");
		p += take;
	}
	return 0;
}

/* Write buf at off, leaving all-zero 4 KiB pieces unwritten (holes). */
static int write_sparse(int fd, const unsigned char *buf, size_t len, uint64_t off)
{
	size_t i = 0;
	while (i < len) {
		size_t n = len - i < ZERO_PIECE ? len - i : ZERO_PIECE;
		if (is_zero(buf + i, n)) {
			i += n;
			continue;
		}
		size_t start = i;
		while (i < len) {
			n = len - i < ZERO_PIECE ? len - i : ZERO_PIECE;
			if (is_zero(buf + i, n))
				break;
			i += n;
		}
		if (vmm_pwrite_all(fd, buf + start, i - start, (off_t)(off + start)) < 0)
			return -1;
	}
	return 0;
}

static int writer_out(void *ctx, const void *data, size_t len)
{
	vmm_layer_writer *w = ctx;
	EVP_DigestUpdate(w->uh, data, len);
	if (write_sparse(w->fd, data, len, w->offset + w->pos) < 0)
		return vmm_error_errno(&w->out_err, errno, "%s: write disk", w->name);
	w->pos += len;
	return 0;
}

static void writer_reset(vmm_layer_writer *w)
{
	EVP_DigestInit_ex(w->ch, EVP_sha256(), NULL);
	EVP_DigestInit_ex(w->uh, EVP_sha256(), NULL);
	vmm_applelz4_dec_free(w->dec);
	w->dec = vmm_applelz4_dec_new(w->usize);
	w->fed = w->pos = 0;
}

int vmm_layer_writer_new(vmm_layer_writer **out, int fd, const vmm_descriptor *d, const char *name,
			 vmm_error **err)
{
	/* the annotated size bounds the decoder: without one it writes past the layer */
	if (d->uncompressed_size == 0)
		return vmm_error_set(err, VMM_EFORMAT, "%s: no uncompressed size to decode into",
				     name);
	if (punch(fd, d->offset, d->uncompressed_size, err) < 0)
		return vmm_error_wrap(err, "%s", name);
	vmm_layer_writer *w = xcalloc(1, sizeof(*w));
	w->fd = fd;
	w->name = xstrdup(name);
	w->offset = d->offset;
	w->usize = d->uncompressed_size;
	w->csize = d->size;
	memcpy(w->digest, d->digest, 72);
	memcpy(w->udigest, d->uncompressed_digest, 72);
	w->ch = sha_new();
	w->uh = sha_new();
	writer_reset(w);
	*out = w;
	return 0;
}

void vmm_layer_writer_free(vmm_layer_writer *w)
{
	if (!w)
		return;
	free(w->name);
	EVP_MD_CTX_free(w->ch);
	EVP_MD_CTX_free(w->uh);
	vmm_applelz4_dec_free(w->dec);
	vmm_error_free(w->out_err);
	free(w);
}

int vmm_layer_writer_restart(vmm_layer_writer *w, vmm_error **err)
{
	if (w->pos && punch(w->fd, w->offset, w->usize, err) < 0)
		return -1;
	writer_reset(w);
	return 0;
}

uint64_t vmm_layer_writer_fed(const vmm_layer_writer *w)
{
	return w->fed;
}

int vmm_layer_writer_feed(vmm_layer_writer *w, const void *data, size_t len, vmm_error **err)
{
	if (w->fed + len > w->csize)
		return vmm_error_set(err, VMM_EFORMAT,
				     "%s: the registry sent more than the %llu bytes the manifest "
				     "announced",
				     w->name, (unsigned long long)w->csize);
	w->fed += len;
	EVP_DigestUpdate(w->ch, data, len);
	int rc = vmm_applelz4_dec_update(w->dec, data, len, writer_out, w, err);
	if (rc < 0) {
		if (w->out_err) {
			vmm_error_set(err, w->out_err->code, "%s", w->out_err->msg);
			return -1;
		}
		return vmm_error_wrap(err, "%s", w->name);
	}
	return 0;
}

int vmm_layer_writer_finish(vmm_layer_writer *w, vmm_error **err)
{
	char got[72];
	if (w->fed != w->csize)
		return vmm_error_set(err, VMM_EFORMAT, "%s: truncated: got %llu of %llu bytes",
				     w->name, (unsigned long long)w->fed,
				     (unsigned long long)w->csize);
	sha_final(w->ch, got);
	if (strcmp(got, w->digest) != 0)
		return vmm_error_set(err, VMM_EFORMAT,
				     "%s: digest mismatch: the registry sent bytes hashing to `%s`",
				     w->name, got);
	if (vmm_applelz4_dec_finish(w->dec, err) < 0)
		return vmm_error_wrap(err, "%s", w->name);
	if (w->pos != w->usize)
		return vmm_error_set(
		    err, VMM_EFORMAT, "%s: decompresses to %llu bytes, the manifest says %llu",
		    w->name, (unsigned long long)w->pos, (unsigned long long)w->usize);
	sha_final(w->uh, got);
	if (strcmp(got, w->udigest) != 0)
		return vmm_error_set(
		    err, VMM_EFORMAT,
		    "%s: uncompressed digest mismatch: got `%s`, the manifest says "
		    "`%s`",
		    w->name, got, w->udigest);
	return 0;
}

/* --- writing a plain blob ------------------------------------------------ */

struct vmm_blob_writer {
	int fd;
	char *path, *name;
	uint64_t size, fed;
	char digest[72];
	EVP_MD_CTX *h;
	bool done;
};

int vmm_blob_writer_new(vmm_blob_writer **out, const char *path, const vmm_descriptor *d,
			const char *name, vmm_error **err)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		return vmm_error_errno(err, errno, "%s: create `%s`", name, path);
	vmm_blob_writer *w = xcalloc(1, sizeof(*w));
	w->fd = fd;
	w->path = xstrdup(path);
	w->name = xstrdup(name);
	w->size = d->size;
	memcpy(w->digest, d->digest, 72);
	w->h = sha_new();
	*out = w;
	return 0;
}

int vmm_blob_writer_feed(vmm_blob_writer *w, const void *data, size_t len, vmm_error **err)
{
	if (w->fed + len > w->size)
		return vmm_error_set(err, VMM_EFORMAT,
				     "%s: the registry sent more than the %llu bytes the manifest "
				     "announced",
				     w->name, (unsigned long long)w->size);
	EVP_DigestUpdate(w->h, data, len);
	if (vmm_write_all(w->fd, data, len) < 0)
		return vmm_error_errno(err, errno, "%s: write `%s`", w->name, w->path);
	w->fed += len;
	return 0;
}

int vmm_blob_writer_finish(vmm_blob_writer *w, vmm_error **err)
{
	if (w->fed != w->size)
		return vmm_error_set(err, VMM_EFORMAT, "%s: truncated: got %llu of %llu bytes",
				     w->name, (unsigned long long)w->fed,
				     (unsigned long long)w->size);
	char got[72];
	sha_final(w->h, got);
	if (strcmp(got, w->digest) != 0)
		return vmm_error_set(err, VMM_EFORMAT,
				     "%s: digest mismatch: the registry sent bytes hashing to `%s`",
				     w->name, got);
	if (fsync(w->fd) < 0)
		return vmm_error_errno(err, errno, "%s: write `%s`", w->name, w->path);
	w->done = true;
	return 0;
}

void vmm_blob_writer_free(vmm_blob_writer *w)
{
	if (!w)
		return;
	close(w->fd);
	if (!w->done)
		unlink(w->path);
	EVP_MD_CTX_free(w->h);
	free(w->path);
	free(w->name);
	free(w);
}

/* --- local copies and digests -------------------------------------------- */

typedef struct copy_ctx {
	int dst;
	uint64_t pos; /* in dst */
	EVP_MD_CTX *h;
	bool write;
} copy_ctx;

static int copy_data(void *ctx, const unsigned char *buf, size_t len)
{
	copy_ctx *c = ctx;
	EVP_DigestUpdate(c->h, buf, len);
	if (c->write && write_sparse(c->dst, buf, len, c->pos) < 0)
		return -1;
	c->pos += len;
	return 0;
}

static int copy_hole(void *ctx, uint64_t len)
{
	copy_ctx *c = ctx;
	sha_zeros(c->h, len);
	c->pos += len;
	return 0;
}

int vmm_layer_copy_local(int fd, const char *src_disk, uint64_t src_offset, const vmm_descriptor *d,
			 vmm_error **err)
{
	cleanup_close int src = open(src_disk, O_RDONLY | O_CLOEXEC);
	if (src < 0)
		return vmm_error_errno(err, errno, "open `%s`", src_disk);
	struct stat st;
	if (fstat(src, &st) < 0 || (uint64_t)st.st_size < src_offset + d->uncompressed_size)
		return vmm_error_set(err, VMM_EFORMAT, "`%s` is too short for the layer", src_disk);
	if (punch(fd, d->offset, d->uncompressed_size, err) < 0)
		return -1;
	copy_ctx c = {.dst = fd, .pos = d->offset, .h = sha_new(), .write = true};
	walker w = {copy_data, copy_hole, &c};
	int rc = walk_region(src, src_offset, d->uncompressed_size, &w, err);
	if (rc < 0 && !(err && *err))
		vmm_error_errno(err, errno, "copy from `%s`", src_disk);
	char got[72];
	sha_final(c.h, got);
	EVP_MD_CTX_free(c.h);
	if (rc == 0 && strcmp(got, d->uncompressed_digest) != 0) {
		punch(fd, d->offset, d->uncompressed_size, NULL);
		return vmm_error_set(err, VMM_EFORMAT, "the copy in `%s` does not match `%s`",
				     src_disk, d->uncompressed_digest);
	}
	return rc;
}

int vmm_region_digest(int fd, uint64_t offset, uint64_t size, char out[72], vmm_error **err)
{
	copy_ctx c = {.dst = -1, .pos = offset, .h = sha_new(), .write = false};
	walker w = {copy_data, copy_hole, &c};
	int rc = walk_region(fd, offset, size, &w, err);
	sha_final(c.h, out);
	EVP_MD_CTX_free(c.h);
	return rc;
}
