#include "vm/savefile.h"
#include "common/json.h"
#include "common/util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <pthread.h>
#include <sys/stat.h>

#include <openssl/evp.h>
#include <zstd.h>

#define IO_CHUNK (1u << 20)
/* start writeback this often so the final fsync has little left to do */
#define WRITEBACK_EVERY (32ull << 20)

vmm_savefile_header *vmm_savefile_header_new(void)
{
	vmm_savefile_header *h = xcalloc(1, sizeof(*h));
	h->format = VMM_SAVEFILE_FORMAT;
	return h;
}

void vmm_savefile_header_free(vmm_savefile_header *h)
{
	if (!h)
		return;
	free(h->qemu_version);
	free(h->qemu_package);
	free(h->machine);
	free(h->arch);
	free(h->accel);
	free(h->fingerprint);
	json_decref(h->model);
	free(h->raw_sha256);
	free(h->created);
	free(h->index_sha256);
	free(h);
}

const char *vmm_codec_name(vmm_codec c)
{
	return c == VMM_CODEC_LZ4 ? "lz4" : "zstd";
}

static const char *or_empty(const char *s)
{
	return s ? s : "";
}

unsigned char *vmm_savefile_header_encode(const vmm_savefile_header *h)
{
	json_t *o = json_object();
	json_object_set_new(o, "format", json_integer(h->format));
	json_object_set_new(o, "qemuVersion", json_string(or_empty(h->qemu_version)));
	json_object_set_new(o, "qemuPackage", json_string(or_empty(h->qemu_package)));
	json_object_set_new(o, "machine", json_string(or_empty(h->machine)));
	json_object_set_new(o, "arch", json_string(or_empty(h->arch)));
	json_object_set_new(o, "accel", json_string(or_empty(h->accel)));
	json_object_set_new(o, "fingerprint", json_string(or_empty(h->fingerprint)));
	json_object_set_new(o, "model", h->model ? json_incref(h->model) : json_array());
	json_object_set_new(o, "cpus", json_integer(h->cpus));
	json_object_set_new(o, "memory", json_integer((json_int_t)h->memory));
	json_object_set_new(o, "rawSize", json_integer((json_int_t)h->raw_size));
	if (h->format == VMM_SAVEFILE_FORMAT_STREAM)
		json_object_set_new(o, "rawSha256", json_string(or_empty(h->raw_sha256)));
	json_object_set_new(o, "compressedSize", json_integer((json_int_t)h->compressed_size));
	json_object_set_new(o, "created", json_string(or_empty(h->created)));
	if (h->format != VMM_SAVEFILE_FORMAT_STREAM) {
		json_object_set_new(
		    o, "kind",
		    json_string(h->kind == VMM_SAVEFILE_KIND_MEMORY ? "memory" : "stream"));
		json_object_set_new(o, "codec", json_string(vmm_codec_name(h->codec)));
		json_object_set_new(o, "deviceSize", json_integer((json_int_t)h->device_size));
		json_object_set_new(o, "chunkSize", json_integer((json_int_t)h->chunk_size));
		json_object_set_new(o, "indexOffset", json_integer((json_int_t)h->index_offset));
		json_object_set_new(o, "indexCount", json_integer((json_int_t)h->index_count));
		json_object_set_new(o, "indexSha256", json_string(or_empty(h->index_sha256)));
	}
	char *text = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
	json_decref(o);
	if (!text)
		abort();
	size_t l = strlen(text);
	if (12 + l > VMM_SAVEFILE_HEADER_SIZE) {
		free(text);
		return NULL;
	}
	unsigned char *buf = xcalloc(1, VMM_SAVEFILE_HEADER_SIZE);
	memcpy(buf, VMM_SAVEFILE_MAGIC, 8);
	for (int i = 0; i < 4; i++)
		buf[8 + i] = (unsigned char)(l >> (8 * i));
	memcpy(buf + 12, text, l);
	free(text);
	return buf;
}

static int get_str(json_t *o, const char *key, char **out, const char *what, vmm_error **err)
{
	json_t *v = json_object_get(o, key);
	if (!json_is_string(v))
		return vmm_error_set(err, VMM_EFORMAT, "%s: header has no `%s`", what, key);
	*out = xstrdup(json_string_value(v));
	return 0;
}

static int get_u64(json_t *o, const char *key, uint64_t *out, const char *what, vmm_error **err)
{
	json_t *v = json_object_get(o, key);
	if (!json_is_integer(v) || json_integer_value(v) < 0)
		return vmm_error_set(err, VMM_EFORMAT, "%s: header has no `%s`", what, key);
	*out = (uint64_t)json_integer_value(v);
	return 0;
}

static bool is_digest(const char *s)
{
	if (strncmp(s, "sha256:", 7) != 0 || strlen(s) != 71)
		return false;
	return strspn(s + 7, "0123456789abcdef") == 64;
}

/* The keys only format 2 has, checked for sizes a reader can trust. */
static int parse_format2(json_t *o, vmm_savefile_header *h, const char *what, vmm_error **err)
{
	cleanup_free char *kind = NULL, *codec = NULL;
	if (get_str(o, "kind", &kind, what, err) < 0 ||
	    get_str(o, "codec", &codec, what, err) < 0 ||
	    get_u64(o, "deviceSize", &h->device_size, what, err) < 0 ||
	    get_u64(o, "chunkSize", &h->chunk_size, what, err) < 0 ||
	    get_u64(o, "indexOffset", &h->index_offset, what, err) < 0 ||
	    get_u64(o, "indexCount", &h->index_count, what, err) < 0 ||
	    get_str(o, "indexSha256", &h->index_sha256, what, err) < 0)
		return -1;
	if (strcmp(kind, "memory") == 0)
		h->kind = VMM_SAVEFILE_KIND_MEMORY;
	else if (strcmp(kind, "stream") == 0)
		h->kind = VMM_SAVEFILE_KIND_STREAM;
	else
		return vmm_error_set(err, VMM_EINCOMPATIBLE, "%s: unknown kind of state \"%.32s\"",
				     what, kind);
	if (strcmp(codec, "lz4") == 0)
		h->codec = VMM_CODEC_LZ4;
	else if (strcmp(codec, "zstd") == 0)
		h->codec = VMM_CODEC_ZSTD;
	else
		return vmm_error_set(err, VMM_EINCOMPATIBLE, "%s: unknown codec \"%.32s\"", what,
				     codec);
	if (!is_digest(h->index_sha256))
		return vmm_error_set(err, VMM_EFORMAT, "%s: header digest is corrupt", what);
	/* chunks of whole 4 KiB pages */
	if (h->chunk_size == 0 || h->chunk_size % 4096 || h->chunk_size > VMM_SAVEFILE_CHUNK_MAX)
		return vmm_error_set(err, VMM_EFORMAT, "%s: header `chunkSize` is out of range",
				     what);
	if (h->index_offset < VMM_SAVEFILE_HEADER_SIZE || h->index_count > (1ull << 32) ||
	    h->index_offset - VMM_SAVEFILE_HEADER_SIZE > h->compressed_size ||
	    h->compressed_size - (h->index_offset - VMM_SAVEFILE_HEADER_SIZE) !=
		h->index_count * VMM_SAVEFILE_RECORD_SIZE)
		return vmm_error_set(err, VMM_EFORMAT, "%s: header `indexOffset` is corrupt", what);
	if (h->device_size > h->raw_size)
		return vmm_error_set(err, VMM_EFORMAT, "%s: header `deviceSize` is corrupt", what);
	return 0;
}

int vmm_savefile_header_parse(vmm_savefile_header **out, const void *buf, size_t len,
			      const char *what, vmm_error **err)
{
	const unsigned char *b = buf;
	if (len < 12 || memcmp(b, VMM_SAVEFILE_MAGIC, 8) != 0)
		return vmm_error_set(err, VMM_EFORMAT, "%s: not a vmm state file", what);
	size_t l = (size_t)b[8] | (size_t)b[9] << 8 | (size_t)b[10] << 16 | (size_t)b[11] << 24;
	if (l > VMM_SAVEFILE_HEADER_SIZE - 12 || 12 + l > len)
		return vmm_error_set(err, VMM_EFORMAT, "%s: header is corrupt", what);
	json_error_t je;
	json_auto_t *o = json_loadb((const char *)b + 12, l, JSON_REJECT_DUPLICATES, &je);
	if (!json_is_object(o))
		return vmm_error_set(err, VMM_EFORMAT, "%s: header is corrupt", what);
	json_t *f = json_object_get(o, "format");
	if (!json_is_integer(f))
		return vmm_error_set(err, VMM_EFORMAT, "%s: header has no `format`", what);
	json_int_t format = json_integer_value(f);
	if (format != VMM_SAVEFILE_FORMAT && format != VMM_SAVEFILE_FORMAT_STREAM)
		return vmm_error_set(err, VMM_EINCOMPATIBLE,
				     "%s: state format %lld, this vmm reads formats %d and %d",
				     what, (long long)format, VMM_SAVEFILE_FORMAT_STREAM,
				     VMM_SAVEFILE_FORMAT);
	vmm_savefile_header *h = vmm_savefile_header_new();
	h->format = (int)format;
	uint64_t cpus = 0;
	json_t *model = json_object_get(o, "model");
	int rc = -1;
	if (get_str(o, "qemuVersion", &h->qemu_version, what, err) < 0 ||
	    get_str(o, "qemuPackage", &h->qemu_package, what, err) < 0 ||
	    get_str(o, "machine", &h->machine, what, err) < 0 ||
	    get_str(o, "arch", &h->arch, what, err) < 0 ||
	    get_str(o, "accel", &h->accel, what, err) < 0 ||
	    get_str(o, "fingerprint", &h->fingerprint, what, err) < 0 ||
	    get_str(o, "created", &h->created, what, err) < 0 ||
	    get_u64(o, "cpus", &cpus, what, err) < 0 ||
	    get_u64(o, "memory", &h->memory, what, err) < 0 ||
	    get_u64(o, "rawSize", &h->raw_size, what, err) < 0 ||
	    get_u64(o, "compressedSize", &h->compressed_size, what, err) < 0)
		goto out;
	if (h->format == VMM_SAVEFILE_FORMAT_STREAM) {
		if (get_str(o, "rawSha256", &h->raw_sha256, what, err) < 0)
			goto out;
		if (!is_digest(h->raw_sha256)) {
			vmm_error_set(err, VMM_EFORMAT, "%s: header digest is corrupt", what);
			goto out;
		}
	} else if (parse_format2(o, h, what, err) < 0) {
		goto out;
	}
	if (!json_is_array(model)) {
		vmm_error_set(err, VMM_EFORMAT, "%s: header has no `model`", what);
		goto out;
	}
	for (size_t i = 0; i < json_array_size(model); i++) {
		if (!json_is_string(json_array_get(model, i))) {
			vmm_error_set(err, VMM_EFORMAT, "%s: header `model` is corrupt", what);
			goto out;
		}
	}
	if (!is_digest(h->fingerprint)) {
		vmm_error_set(err, VMM_EFORMAT, "%s: header digest is corrupt", what);
		goto out;
	}
	if (cpus == 0 || cpus > 4096) {
		vmm_error_set(err, VMM_EFORMAT, "%s: header `cpus` is out of range", what);
		goto out;
	}
	h->cpus = (int64_t)cpus;
	h->model = json_incref(model);
	*out = h;
	h = NULL;
	rc = 0;
out:
	vmm_savefile_header_free(h);
	return rc;
}

int vmm_savefile_read_header(vmm_savefile_header **out, const char *path, vmm_error **err)
{
	cleanup_close int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return vmm_error_errno(err, errno, "open `%s`", path);
	struct stat st;
	if (fstat(fd, &st) < 0)
		return vmm_error_errno(err, errno, "stat `%s`", path);
	cleanup_free char *what = xasprintf("state `%s`", path);
	if (st.st_size < VMM_SAVEFILE_HEADER_SIZE) {
		if (st.st_size >= 8) {
			char magic[8];
			if (vmm_pread_all(fd, magic, 8, 0) == 0 &&
			    memcmp(magic, VMM_SAVEFILE_MAGIC, 8) == 0)
				return vmm_error_set(err, VMM_EFORMAT,
						     "%s is truncated: %lld bytes, less than its "
						     "header",
						     what, (long long)st.st_size);
		}
		return vmm_error_set(err, VMM_EFORMAT, "%s: not a vmm state file", what);
	}
	cleanup_free unsigned char *buf = xmalloc(VMM_SAVEFILE_HEADER_SIZE);
	if (vmm_pread_all(fd, buf, VMM_SAVEFILE_HEADER_SIZE, 0) < 0)
		return vmm_error_errno(err, errno, "read `%s`", path);
	vmm_savefile_header *h = NULL;
	if (vmm_savefile_header_parse(&h, buf, VMM_SAVEFILE_HEADER_SIZE, what, err) < 0 || !h)
		return -1;
	uint64_t have = (uint64_t)st.st_size - VMM_SAVEFILE_HEADER_SIZE;
	if (have != h->compressed_size) {
		vmm_error_set(err, VMM_EFORMAT,
			      "%s is %s: %llu bytes of stream, the header says %llu", what,
			      have < h->compressed_size ? "truncated" : "corrupt",
			      (unsigned long long)have, (unsigned long long)h->compressed_size);
		vmm_savefile_header_free(h);
		return -1;
	}
	*out = h;
	return 0;
}

int vmm_savefile_publish(int fd, const char *tmp, const char *path, const vmm_savefile_header *h,
			 vmm_error **err)
{
	cleanup_free unsigned char *hdr = vmm_savefile_header_encode(h);
	if (!hdr)
		return vmm_error_set(err, VMM_EINVAL, "state header for `%s` is too large", path);
	if (vmm_pwrite_all(fd, hdr, VMM_SAVEFILE_HEADER_SIZE, 0) < 0)
		return vmm_error_errno(err, errno, "write `%s`", tmp);
	if (fsync(fd) < 0)
		return vmm_error_errno(err, errno, "fsync `%s`", tmp);
	if (rename(tmp, path) < 0)
		return vmm_error_errno(err, errno, "rename `%s` to `%s`", tmp, path);
	return vmm_fsync_dir(path, false, err);
}

/* --- SHA-256 on its own thread ---------------------------------------------- */

/*
 * The raw stream is hashed beside the (de)compression rather than in line
 * with it: the producer fills one of a few slots, uses it, submits it, and
 * the hashing thread works through the submitted slots in order.
 */
#define HASH_SLOTS 4

typedef struct hasher {
	pthread_t thread;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	EVP_MD_CTX *sha;
	unsigned char *slot[HASH_SLOTS]; /* owned */
	size_t len[HASH_SLOTS];
	size_t cap;
	unsigned head, count; /* slots head .. head+count-1 wait to be hashed */
	bool closing, running;
} hasher;

static void *hasher_main(void *arg)
{
	hasher *h = arg;
	pthread_mutex_lock(&h->mu);
	for (;;) {
		while (h->count == 0 && !h->closing)
			pthread_cond_wait(&h->cv, &h->mu);
		if (h->count == 0)
			break;
		unsigned i = h->head;
		size_t n = h->len[i];
		pthread_mutex_unlock(&h->mu);
		if (!EVP_DigestUpdate(h->sha, h->slot[i], n))
			abort();
		pthread_mutex_lock(&h->mu);
		h->head = (h->head + 1) % HASH_SLOTS;
		h->count--;
		pthread_cond_broadcast(&h->cv);
	}
	pthread_mutex_unlock(&h->mu);
	return NULL;
}

static void hasher_init(hasher *h, size_t cap)
{
	memset(h, 0, sizeof(*h));
	h->cap = cap;
	for (int i = 0; i < HASH_SLOTS; i++)
		h->slot[i] = xmalloc(cap);
	h->sha = EVP_MD_CTX_new();
	if (!h->sha || !EVP_DigestInit_ex(h->sha, EVP_sha256(), NULL))
		abort();
	pthread_mutex_init(&h->mu, NULL);
	pthread_cond_init(&h->cv, NULL);
	if (pthread_create(&h->thread, NULL, hasher_main, h) != 0)
		abort();
	h->running = true;
}

/* The slot to fill next (waits while every slot is queued). */
static unsigned char *hasher_slot(hasher *h)
{
	pthread_mutex_lock(&h->mu);
	while (h->count == HASH_SLOTS)
		pthread_cond_wait(&h->cv, &h->mu);
	unsigned i = (h->head + h->count) % HASH_SLOTS;
	pthread_mutex_unlock(&h->mu);
	return h->slot[i];
}

/* Queue the slot from hasher_slot() with its first `len` bytes. */
static void hasher_submit(hasher *h, size_t len)
{
	pthread_mutex_lock(&h->mu);
	unsigned i = (h->head + h->count) % HASH_SLOTS;
	h->len[i] = len;
	h->count++;
	pthread_cond_broadcast(&h->cv);
	pthread_mutex_unlock(&h->mu);
}

static void hasher_stop(hasher *h)
{
	if (!h->running)
		return;
	pthread_mutex_lock(&h->mu);
	h->closing = true;
	pthread_cond_broadcast(&h->cv);
	pthread_mutex_unlock(&h->mu);
	pthread_join(h->thread, NULL);
	h->running = false;
}

/* Hash what is queued and write "sha256:<hex>" into digest. */
static void hasher_finish(hasher *h, char digest[72])
{
	hasher_stop(h);
	unsigned char md[32];
	unsigned int mdlen = 0;
	if (!EVP_DigestFinal_ex(h->sha, md, &mdlen))
		abort();
	memcpy(digest, "sha256:", 7);
	vmm_hex(md, 32, digest + 7);
}

static void hasher_free(hasher *h)
{
	hasher_stop(h);
	for (int i = 0; i < HASH_SLOTS; i++)
		free(h->slot[i]);
	EVP_MD_CTX_free(h->sha);
	if (h->sha) {
		pthread_mutex_destroy(&h->mu);
		pthread_cond_destroy(&h->cv);
	}
	h->sha = NULL;
}

/* --- writing --------------------------------------------------------------- */

struct vmm_savefile_writer {
	char *path; /* owned: final name */
	char *tmp;  /* owned: <path>.tmp */
	int fd;
	ZSTD_CCtx *cctx;
	hasher hash;
	unsigned char *out; /* owned: out_cap */
	size_t out_cap, out_len;
	uint64_t raw, written, since_writeback;
	double start;
	bool committed;
};

void vmm_savefile_writer_free(vmm_savefile_writer *w)
{
	if (!w)
		return;
	if (w->fd >= 0)
		close(w->fd);
	if (!w->committed && w->tmp)
		unlink(w->tmp);
	ZSTD_freeCCtx(w->cctx);
	hasher_free(&w->hash);
	free(w->out);
	free(w->path);
	free(w->tmp);
	free(w);
}

static int cpu_count(void)
{
	long n = sysconf(_SC_NPROCESSORS_ONLN);
	return n > 0 ? (int)n : 1;
}

int vmm_savefile_writer_open(vmm_savefile_writer **out, const char *path, int level, int workers,
			     vmm_error **err)
{
	vmm_savefile_writer *w = xcalloc(1, sizeof(*w));
	w->fd = -1;
	w->path = xstrdup(path);
	w->tmp = xasprintf("%s.tmp", path);
	w->start = vmm_now();
	unlink(w->tmp);
	w->fd = open(w->tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (w->fd < 0) {
		vmm_error_errno(err, errno, "create `%s`", w->tmp);
		goto fail;
	}
	w->cctx = ZSTD_createCCtx();
	if (!w->cctx)
		abort();
	if (workers <= 0)
		workers = cpu_count();
	ZSTD_CCtx_setParameter(w->cctx, ZSTD_c_compressionLevel, level);
	ZSTD_CCtx_setParameter(w->cctx, ZSTD_c_checksumFlag, 1);
	/* a libzstd without threads refuses nbWorkers; it then compresses in this thread */
	if (workers > 1)
		ZSTD_CCtx_setParameter(w->cctx, ZSTD_c_nbWorkers, workers);
	hasher_init(&w->hash, IO_CHUNK);
	w->out_cap = 4 * IO_CHUNK;
	w->out = xmalloc(w->out_cap);
	/* the header goes in last; the stream starts after its room */
	if (lseek(w->fd, VMM_SAVEFILE_HEADER_SIZE, SEEK_SET) < 0) {
		vmm_error_errno(err, errno, "seek `%s`", w->tmp);
		goto fail;
	}
	*out = w;
	return 0;
fail:
	vmm_savefile_writer_free(w);
	return -1;
}

static int flush_out(vmm_savefile_writer *w, vmm_error **err)
{
	if (!w->out_len)
		return 0;
	if (vmm_write_all(w->fd, w->out, w->out_len) < 0)
		return vmm_error_errno(err, errno, "write `%s`", w->tmp);
	w->written += w->out_len;
	w->since_writeback += w->out_len;
	w->out_len = 0;
	if (w->since_writeback >= WRITEBACK_EVERY) {
		sync_file_range(w->fd, 0, 0, SYNC_FILE_RANGE_WRITE);
		w->since_writeback = 0;
	}
	return 0;
}

/* Run zstd over `in` with `op`, writing out whatever it produces. */
static int compress(vmm_savefile_writer *w, const void *buf, size_t len, ZSTD_EndDirective op,
		    vmm_error **err)
{
	ZSTD_inBuffer in = {buf, len, 0};
	for (;;) {
		ZSTD_outBuffer o = {w->out, w->out_cap, w->out_len};
		size_t r = ZSTD_compressStream2(w->cctx, &o, &in, op);
		if (ZSTD_isError(r))
			return vmm_error_set(err, VMM_EGENERIC, "compress `%s`: %s", w->tmp,
					     ZSTD_getErrorName(r));
		w->out_len = o.pos;
		if (w->out_cap - w->out_len < ZSTD_CStreamOutSize() && flush_out(w, err) < 0)
			return -1;
		bool done = op == ZSTD_e_continue ? in.pos == in.size : r == 0;
		if (done)
			return 0;
	}
}

int vmm_savefile_writer_write(vmm_savefile_writer *w, const void *buf, size_t len, vmm_error **err)
{
	const unsigned char *p = buf;
	while (len) {
		size_t n = len < IO_CHUNK ? len : IO_CHUNK;
		unsigned char *slot = hasher_slot(&w->hash);
		memcpy(slot, p, n);
		int rc = compress(w, slot, n, ZSTD_e_continue, err);
		hasher_submit(&w->hash, n);
		if (rc < 0)
			return -1;
		w->raw += n;
		p += n;
		len -= n;
	}
	return 0;
}

int vmm_savefile_writer_pump(vmm_savefile_writer *w, int in_fd, vmm_error **err)
{
	for (;;) {
		unsigned char *slot = hasher_slot(&w->hash);
		ssize_t n = read(in_fd, slot, IO_CHUNK);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return vmm_error_errno(err, errno, "read QEMU's migration stream");
		}
		if (n == 0)
			return 0;
		/* zstd copies its input, so the slot can be hashed meanwhile */
		int rc = compress(w, slot, (size_t)n, ZSTD_e_continue, err);
		hasher_submit(&w->hash, (size_t)n);
		if (rc < 0)
			return -1;
		w->raw += (uint64_t)n;
	}
}

int vmm_savefile_writer_commit(vmm_savefile_writer *w, vmm_savefile_header *h,
			       vmm_savefile_stats *stats, vmm_error **err)
{
	if (compress(w, NULL, 0, ZSTD_e_end, err) < 0 || flush_out(w, err) < 0)
		return -1;
	char digest[72];
	hasher_finish(&w->hash, digest);
	h->format = VMM_SAVEFILE_FORMAT_STREAM;
	free(h->raw_sha256);
	h->raw_sha256 = xstrdup(digest);
	h->raw_size = w->raw;
	h->compressed_size = w->written;
	cleanup_free unsigned char *hdr = vmm_savefile_header_encode(h);
	if (!hdr)
		return vmm_error_set(err, VMM_EINVAL, "state header for `%s` is too large",
				     w->path);
	if (vmm_pwrite_all(w->fd, hdr, VMM_SAVEFILE_HEADER_SIZE, 0) < 0)
		return vmm_error_errno(err, errno, "write `%s`", w->tmp);
	if (fsync(w->fd) < 0)
		return vmm_error_errno(err, errno, "fsync `%s`", w->tmp);
	if (close(w->fd) < 0) {
		w->fd = -1;
		return vmm_error_errno(err, errno, "close `%s`", w->tmp);
	}
	w->fd = -1;
	if (rename(w->tmp, w->path) < 0)
		return vmm_error_errno(err, errno, "rename `%s` to `%s`", w->tmp, w->path);
	w->committed = true;
	if (vmm_fsync_dir(w->path, false, err) < 0)
		return -1;
	if (stats) {
		stats->raw_bytes = w->raw;
		stats->compressed_bytes = w->written;
		stats->seconds = vmm_now() - w->start;
	}
	return 0;
}

/* --- reading --------------------------------------------------------------- */

int vmm_savefile_restore(const char *path, const vmm_savefile_header *h, int out_fd,
			 vmm_savefile_stats *stats, vmm_error **err)
{
	double start = vmm_now();
	cleanup_free char *what = xasprintf("state `%s`", path);
	cleanup_close int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return vmm_error_errno(err, errno, "open `%s`", path);
	if (lseek(fd, VMM_SAVEFILE_HEADER_SIZE, SEEK_SET) < 0)
		return vmm_error_errno(err, errno, "seek `%s`", path);
	posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
	ZSTD_DCtx *d = ZSTD_createDCtx();
	if (!d)
		abort();
	size_t out_cap = 2 * IO_CHUNK;
	hasher hash;
	hasher_init(&hash, out_cap);
	unsigned char *inbuf = xmalloc(IO_CHUNK);
	uint64_t raw = 0, comp = 0;
	size_t last = 1; /* ZSTD_decompressStream's hint; 0 once a frame ended */
	int rc = -1;
	for (;;) {
		ssize_t n = read(fd, inbuf, IO_CHUNK);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			vmm_error_errno(err, errno, "read `%s`", path);
			goto out;
		}
		if (n == 0)
			break;
		comp += (uint64_t)n;
		ZSTD_inBuffer in = {inbuf, (size_t)n, 0};
		while (in.pos < in.size) {
			if (last == 0) {
				vmm_error_set(err, VMM_EFORMAT,
					      "%s is corrupt: data after the end of the stream",
					      what);
				goto out;
			}
			unsigned char *outbuf = hasher_slot(&hash);
			ZSTD_outBuffer o = {outbuf, out_cap, 0};
			last = ZSTD_decompressStream(d, &o, &in);
			if (ZSTD_isError(last)) {
				vmm_error_set(err, VMM_EFORMAT, "%s is corrupt: %s", what,
					      ZSTD_getErrorName(last));
				goto out;
			}
			if (o.pos == 0)
				continue;
			raw += o.pos;
			if (raw > h->raw_size) {
				vmm_error_set(err, VMM_EFORMAT,
					      "%s is corrupt: more than the %llu bytes its header "
					      "promises",
					      what, (unsigned long long)h->raw_size);
				goto out;
			}
			int wrc = vmm_write_all(out_fd, outbuf, o.pos);
			int werr = errno;
			hasher_submit(&hash, o.pos);
			if (wrc < 0) {
				if (werr == EPIPE)
					vmm_error_set(err, VMM_EGENERIC,
						      "QEMU stopped reading the saved state");
				else
					vmm_error_errno(err, werr, "write the saved state to QEMU");
				goto out;
			}
		}
	}
	if (last != 0) {
		vmm_error_set(err, VMM_EFORMAT, "%s is truncated: the compressed stream ends early",
			      what);
		goto out;
	}
	if (raw != h->raw_size) {
		vmm_error_set(err, VMM_EFORMAT, "%s is corrupt: %llu bytes, the header says %llu",
			      what, (unsigned long long)raw, (unsigned long long)h->raw_size);
		goto out;
	}
	char digest[72];
	hasher_finish(&hash, digest);
	if (strcmp(digest, h->raw_sha256) != 0) {
		vmm_error_set(err, VMM_EFORMAT, "%s is corrupt: SHA-256 mismatch", what);
		goto out;
	}
	if (stats) {
		stats->raw_bytes = raw;
		stats->compressed_bytes = comp;
		stats->seconds = vmm_now() - start;
	}
	rc = 0;
out:
	ZSTD_freeDCtx(d);
	hasher_free(&hash);
	free(inbuf);
	return rc;
}
