#include "registry/pull.h"
#include "common/format.h"
#include "common/util.h"
#include "registry/cache.h"
#include "registry/image.h"
#include "registry/oci/client.h"
#include "registry/oci/layers.h"
#include "registry/oci/manifest.h"
#include "registry/prune.h"
#include "vm/bundle.h"
#include "vm/config.h"
#include "vm/ops.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <string.h>
#include <unistd.h>
#include <linux/falloc.h>
#include <sys/file.h>
#include <sys/stat.h>

/* Disk layers verified and synced in the staging directory, one per line. */
#define RECORD_FILE ".vmm-verified-layers"

enum { JOB_FETCH, JOB_LOCAL, JOB_ZERO, JOB_RESUMED };

typedef struct job {
	size_t layer; /* index into the manifest */
	int kind;
	const char *src_disk; /* JOB_LOCAL: borrowed from pull_ctx.local */
	uint64_t src_offset;
} job;

typedef struct pull_ctx {
	const vmm_pull_opts *o;
	vmm_registry *reg;
	vmm_manifest *m;
	const char *name;
	int disk_fd;
	int rec_fd;
	job *jobs;
	size_t njobs;
	pthread_mutex_t lock; /* guards stats and the record file */
	void *meter;
	vmm_pull_stats stats;
} pull_ctx;

#define say(o, ...) vmm_transfer_say(&(o)->ui, __VA_ARGS__)

static char *layer_name(const vmm_manifest *m, size_t i)
{
	return xasprintf("layer %zu `%s`", i, m->layers[i].digest);
}

/* --- resume records ------------------------------------------------------ */

typedef struct record {
	uint64_t offset, size;
	char digest[72];
} record;

static record *load_records(const char *path, size_t *n)
{
	*n = 0;
	cleanup_file FILE *f = fopen(path, "re");
	if (!f)
		return NULL;
	record *v = NULL;
	char line[256];
	while (fgets(line, sizeof(line), f)) {
		record r;
		unsigned long long off, size;
		char dg[80];
		if (sscanf(line, "%llu %llu %79s", &off, &size, dg) != 3 ||
		    !vmm_digest_is_valid(dg))
			continue;
		r.offset = off;
		r.size = size;
		memcpy(r.digest, dg, 72); /* valid: exactly 71 characters */
		v = xrealloc(v, (*n + 1) * sizeof(*v));
		v[(*n)++] = r;
	}
	return v;
}

static bool recorded(const record *v, size_t n, const vmm_descriptor *d)
{
	for (size_t i = 0; i < n; i++)
		if (v[i].offset == d->offset && v[i].size == d->uncompressed_size &&
		    strcmp(v[i].digest, d->uncompressed_digest) == 0)
			return true;
	return false;
}

/* Called with the lock held, after the layer's bytes are on disk. */
static int append_record(pull_ctx *c, const vmm_descriptor *d, vmm_error **err)
{
	if (fdatasync(c->disk_fd) < 0)
		return vmm_error_errno(err, errno, "sync the disk");
	char line[160];
	int n = snprintf(line, sizeof(line), "%llu %llu %s\n", (unsigned long long)d->offset,
			 (unsigned long long)d->uncompressed_size, d->uncompressed_digest);
	if (vmm_write_all(c->rec_fd, line, (size_t)n) < 0 || fdatasync(c->rec_fd) < 0)
		return vmm_error_errno(err, errno, "record a verified layer");
	return 0;
}

/* --- fetching disk layers ------------------------------------------------ */

typedef struct sink_ctx {
	pull_ctx *c;
	vmm_transfer_pool *pool;
	vmm_layer_writer *w;
	vmm_error *err;
} sink_ctx;

static int layer_sink(void *ctx, const void *data, size_t len)
{
	sink_ctx *s = ctx;
	if (vmm_transfer_failed(s->pool)) /* another layer failed: stop this one too */
		return vmm_error_set(&s->err, VMM_EGENERIC, "aborted");
	if (vmm_layer_writer_feed(s->w, data, len, &s->err) < 0)
		return -1;
	if (s->c->meter && s->c->o->ui.progress_add)
		s->c->o->ui.progress_add(s->c->meter, len);
	return 0;
}

static int fetch_layer(pull_ctx *c, vmm_transfer_pool *pool, size_t i, vmm_error **err)
{
	const vmm_descriptor *d = &c->m->layers[i];
	cleanup_free char *name = layer_name(c->m, i);
	sink_ctx s = {.c = c, .pool = pool};
	if (vmm_layer_writer_new(&s.w, c->disk_fd, d, name, err) < 0)
		return -1;
	int rc = vmm_registry_blob_get(c->reg, d->digest, 0, d->size, layer_sink, &s, err);
	if (rc < 0 && s.err) {
		/* the sink's reason is the real one */
		if (err) {
			vmm_error_free(*err);
			*err = steal_ptr(s.err);
		}
	} else if (rc < 0) {
		vmm_error_wrap(err, "%s", name);
	} else {
		rc = vmm_layer_writer_finish(s.w, err);
	}
	if (rc == 0) {
		pthread_mutex_lock(&c->lock);
		c->stats.layers_fetched++;
		c->stats.bytes_fetched += d->size;
		pthread_mutex_unlock(&c->lock);
	}
	vmm_error_free(s.err);
	vmm_layer_writer_free(s.w);
	return rc;
}

/* A job of the pool: fetch or copy a disk layer; others are done already. */
static int layer_job(void *ctx, vmm_transfer_pool *pool, size_t i, vmm_error **err)
{
	pull_ctx *c = ctx;
	const job *j = &c->jobs[i];
	const vmm_descriptor *d = &c->m->layers[j->layer];
	int rc = 0;
	if (j->kind == JOB_LOCAL) {
		vmm_error *e = NULL;
		if (vmm_layer_copy_local(c->disk_fd, j->src_disk, j->src_offset, d, &e) == 0) {
			pthread_mutex_lock(&c->lock);
			c->stats.layers_local++;
			pthread_mutex_unlock(&c->lock);
		} else {
			vmm_error_free(e); /* the cached copy let us down: download it */
			rc = fetch_layer(c, pool, j->layer, err);
		}
	} else if (j->kind == JOB_FETCH) {
		rc = fetch_layer(c, pool, j->layer, err);
	} else {
		return 0;
	}
	if (rc < 0)
		return rc;
	pthread_mutex_lock(&c->lock);
	rc = append_record(c, d, err);
	pthread_mutex_unlock(&c->lock);
	return rc;
}

/* --- planning ------------------------------------------------------------ */

/* The cached image sharing the most disk layers with m, for local copies. */
typedef struct local_src {
	char *disk;	 /* owned */
	char *name;	 /* owned */
	vmm_manifest *m; /* owned */
	uint64_t bytes;
} local_src;

static bool same_layer(const vmm_descriptor *a, const vmm_descriptor *b)
{
	return strcmp(a->digest, b->digest) == 0 &&
	       strcmp(a->uncompressed_digest, b->uncompressed_digest) == 0 &&
	       a->uncompressed_size == b->uncompressed_size;
}

static void find_local_source(const vmm_home *h, const vmm_manifest *m, const job *jobs,
			      size_t njobs, const char *skip_dir, local_src *best)
{
	memset(best, 0, sizeof(*best));
	vmm_cache_image *imgs = NULL;
	size_t n = 0;
	if (vmm_cache_images(h, &imgs, &n, NULL) < 0)
		return;
	cleanup_free char *skip = skip_dir ? realpath(skip_dir, NULL) : NULL;
	for (size_t i = 0; i < n; i++) {
		cleanup_free char *real = realpath(imgs[i].dir, NULL);
		if (skip && real && strcmp(skip, real) == 0)
			continue;
		vmm_manifest *cm = NULL;
		if (vmm_cache_read_manifest(imgs[i].dir, &cm, NULL, NULL, NULL) < 0 ||
		    vmm_image_check(cm, NULL) < 0) {
			vmm_manifest_free(cm);
			continue;
		}
		uint64_t bytes = 0;
		for (size_t j = 0; j < njobs; j++) {
			if (jobs[j].kind != JOB_FETCH)
				continue;
			for (size_t k = 0; k < cm->nlayers; k++)
				if (same_layer(&m->layers[jobs[j].layer], &cm->layers[k])) {
					bytes += m->layers[jobs[j].layer].size;
					break;
				}
		}
		if (bytes > best->bytes) {
			vmm_manifest_free(best->m);
			free(best->disk);
			free(best->name);
			best->m = cm;
			best->disk = path_join(imgs[i].dir, VMM_DISK_FILE);
			best->name =
			    xasprintf("%s/%s@%s", imgs[i].host, imgs[i].namespace, imgs[i].digest);
			best->bytes = bytes;
		} else {
			vmm_manifest_free(cm);
		}
	}
	vmm_cache_images_free(imgs, n);
}

/* --- small layers -------------------------------------------------------- */

typedef struct blob_sink_ctx {
	vmm_blob_writer *w;
	vmm_error *err;
} blob_sink_ctx;

static int blob_sink(void *ctx, const void *data, size_t len)
{
	blob_sink_ctx *s = ctx;
	return vmm_blob_writer_feed(s->w, data, len, &s->err);
}

static int fetch_file(pull_ctx *c, long i, const char *path, vmm_error **err)
{
	const vmm_descriptor *d = &c->m->layers[i];
	cleanup_free char *name = layer_name(c->m, (size_t)i);
	blob_sink_ctx s = {0};
	if (vmm_blob_writer_new(&s.w, path, d, name, err) < 0)
		return -1;
	int rc = vmm_registry_blob_get(c->reg, d->digest, 0, d->size, blob_sink, &s, err);
	if (rc < 0 && s.err && err) {
		vmm_error_free(*err);
		*err = steal_ptr(s.err);
	} else if (rc < 0) {
		vmm_error_wrap(err, "%s", name);
	} else {
		rc = vmm_blob_writer_finish(s.w, err);
	}
	vmm_error_free(s.err);
	vmm_blob_writer_free(s.w);
	return rc;
}

/* --- building the image in the staging directory ------------------------- */

/* The config layer, checked to be a config.json vmm can read. */
static int fetch_config(pull_ctx *c, const vmm_image_file *f, const char *path, vmm_error **err)
{
	long i = vmm_manifest_find(c->m, f->media_type);
	if (c->m->layers[i].size > VMM_CONFIG_MAX_BYTES)
		return vmm_error_set(err, VMM_EFORMAT, "config layer of %llu bytes is absurd",
				     (unsigned long long)c->m->layers[i].size);
	if (fetch_file(c, i, path, err) < 0)
		return -1;
	cleanup_vmm_config vmm_config *vc = NULL;
	if (vmm_config_load(&vc, path, err) < 0)
		return vmm_error_wrap(err, "config layer");
	return 0;
}

/* Plan the disk layers: resumed, zeros, downloads; *compressed gets their total size. */
static int plan_disk(pull_ctx *c, const record *recs, size_t nrec, bool resuming,
		     uint64_t *compressed, vmm_error **err)
{
	vmm_manifest *m = c->m;
	*compressed = 0;
	c->jobs = xcalloc(m->nlayers, sizeof(*c->jobs));
	/*
	 * Telling a zero layer costs hashing as many zeros (but for Tart's
	 * 512 MiB, whose digest is known): a manifest of odd sizes could make
	 * that hours.  Past this many bytes, layers are fetched like any other,
	 * which costs the registry's bytes rather than ours.
	 */
	uint64_t zero_budget = 4ULL << 30;
	for (size_t i = 0; i < m->nlayers; i++) {
		vmm_descriptor *d = &m->layers[i];
		if (strcmp(d->media_type, VMM_MEDIA_TART_DISK_V2) != 0)
			continue;
		*compressed += d->size;
		job *j = &c->jobs[c->njobs++];
		j->layer = i;
		/*
		 * Zeros compress at least ~200-fold in Apple's LZ4; a layer that
		 * compressed less than 64-fold is not worth hashing zeros for.
		 */
		char z[72] = "";
		bool known = d->uncompressed_size == VMM_DISK_CHUNK;
		if (d->size <= d->uncompressed_size / 64 &&
		    (known || d->uncompressed_size <= zero_budget)) {
			vmm_zero_digest(d->uncompressed_size, z);
			zero_budget -= known ? 0 : d->uncompressed_size;
		}
		if (resuming && recorded(recs, nrec, d)) {
			j->kind = JOB_RESUMED;
			c->stats.layers_resumed++;
		} else if (strcmp(z, d->uncompressed_digest) == 0) {
			/* all zeros by its own digest: a hole, nothing to fetch */
			j->kind = JOB_ZERO;
			c->stats.layers_zero++;
			if (resuming &&
			    fallocate(c->disk_fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
				      (off_t)d->offset, (off_t)d->uncompressed_size) < 0) {
				cleanup_free char *n = layer_name(m, i);
				return vmm_error_errno(err, errno, "%s: clear region", n);
			}
		} else {
			j->kind = JOB_FETCH;
		}
	}
	return 0;
}

/* Turn downloads into copies where a cached image holds the same layer. */
static void plan_local(const vmm_home *h, pull_ctx *c, local_src *src)
{
	find_local_source(h, c->m, c->jobs, c->njobs, NULL, src);
	if (!src->m)
		return;
	cleanup_free char *amount = vmm_format_decimal_bytes(src->bytes);
	say(c->o, "found an image %s that will allow us to avoid fetching %s, will try use it...",
	    src->name, amount);
	for (size_t j = 0; j < c->njobs; j++) {
		if (c->jobs[j].kind != JOB_FETCH)
			continue;
		const vmm_descriptor *d = &c->m->layers[c->jobs[j].layer];
		for (size_t k = 0; k < src->m->nlayers; k++) {
			if (strcmp(src->m->layers[k].media_type, VMM_MEDIA_TART_DISK_V2) == 0 &&
			    same_layer(d, &src->m->layers[k])) {
				c->jobs[j].kind = JOB_LOCAL;
				c->jobs[j].src_disk = src->disk;
				c->jobs[j].src_offset = src->m->layers[k].offset;
				break;
			}
		}
	}
}

/* The disk: resumed where it was left, holes for zeros, local copies, downloads. */
static int fetch_disk(const vmm_home *h, pull_ctx *c, const char *staging, vmm_error **err)
{
	const vmm_pull_opts *o = c->o;
	vmm_manifest *m = c->m;
	cleanup_free char *disk = path_join(staging, VMM_DISK_FILE);
	cleanup_free char *rec = path_join(staging, RECORD_FILE);

	/* resume only what belongs to a disk of the same size */
	struct stat st;
	bool resuming = stat(disk, &st) == 0 && (uint64_t)st.st_size == m->disk_size;
	size_t nrec = 0;
	cleanup_free record *recs = NULL;
	if (resuming) {
		recs = load_records(rec, &nrec);
	} else {
		unlink(disk);
		unlink(rec);
	}
	c->disk_fd = open(disk, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
	if (c->disk_fd < 0)
		return vmm_error_errno(err, errno, "create `%s`", disk);
	if (ftruncate(c->disk_fd, (off_t)m->disk_size) < 0)
		return vmm_error_errno(err, errno, "size `%s` to %llu bytes", disk,
				       (unsigned long long)m->disk_size);
	c->rec_fd = open(rec, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
	if (c->rec_fd < 0)
		return vmm_error_errno(err, errno, "create `%s`", rec);

	uint64_t compressed = 0, to_fetch = 0;
	if (plan_disk(c, recs, nrec, resuming, &compressed, err) < 0)
		return -1;
	local_src src;
	plan_local(h, c, &src);
	size_t busy = 0;
	for (size_t j = 0; j < c->njobs; j++) {
		if (c->jobs[j].kind == JOB_FETCH || c->jobs[j].kind == JOB_LOCAL) {
			to_fetch += m->layers[c->jobs[j].layer].size;
			busy++;
		}
	}
	say(o, "pulling disk (%.1f GB compressed)...", (double)compressed / 1e9);
	if (o->ui.progress_begin)
		c->meter = o->ui.progress_begin(o->ui.ctx, "pulling disk", to_fetch);
	int n = o->concurrency > 0 ? o->concurrency : 4;
	if ((size_t)n > busy) /* no idle threads */
		n = busy ? (int)busy : 1;
	int rc = vmm_transfer_parallel(c->njobs, n, layer_job, c, err);
	if (c->meter && o->ui.progress_end)
		o->ui.progress_end(c->meter, rc == 0);
	c->meter = NULL;
	vmm_manifest_free(src.m);
	free(src.disk);
	free(src.name);
	if (rc < 0)
		return -1;
	if (fsync(c->disk_fd) < 0)
		return vmm_error_errno(err, errno, "sync `%s`", disk);
	return 0;
}

/* Every file of the image table, in its order, into staging; manifest.json last. */
static int build_image(const vmm_home *h, pull_ctx *c, const char *staging, const char *raw,
		       size_t raw_len, const char *old_dir, vmm_error **err)
{
	/* make room: the old image behind this tag goes first (Tart's order) */
	if (old_dir)
		vmm_access_date_set(old_dir, 0);
	if (vmm_prune_reclaim(h, c->m->disk_size + (128ULL << 20), NULL, NULL, err) < 0)
		return -1;
	size_t nfiles;
	const vmm_image_file *files = vmm_image_files(&nfiles);
	for (size_t i = 0; i < nfiles; i++) {
		const vmm_image_file *f = &files[i];
		cleanup_free char *path = path_join(staging, f->file);
		long li = vmm_manifest_find(c->m, f->media_type);
		int rc = 0;
		if (f->kind == VMM_LAYER_CONFIG) {
			rc = fetch_config(c, f, path, err);
		} else if (f->kind == VMM_LAYER_DISK) {
			rc = fetch_disk(h, c, staging, err);
		} else if (li >= 0) {
			/* Tart's lines for Tart's layers; vmm's come quietly */
			if (f->kind == VMM_LAYER_TART)
				say(c->o, "pulling %s...", f->what);
			rc = fetch_file(c, li, path, err);
		}
		if (rc < 0)
			return -1;
	}
	cleanup_free char *mpath = path_join(staging, VMM_MANIFEST_FILE);
	cleanup_free char *rec = path_join(staging, RECORD_FILE);
	if (vmm_write_file_atomic(mpath, raw, raw_len, 0644, err) < 0)
		return -1;
	unlink(rec);
	return vmm_fsync_dir(staging, true, err);
}

/*
 * A staging directory left by an earlier pull of this name may hold files
 * the new manifest lacks (a kernel, a state): they would turn up in the
 * image.  Keep only what resumes (the disk and its record of verified
 * layers); everything else is fetched again.
 */
static int clean_staging(const char *staging, vmm_error **err)
{
	cleanup_dir DIR *d = opendir(staging);
	if (!d)
		return vmm_error_errno(err, errno, "open `%s`", staging);
	struct dirent *e;
	while ((e = readdir(d))) {
		if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
			continue;
		struct stat st;
		bool keep = (strcmp(e->d_name, VMM_DISK_FILE) == 0 ||
			     strcmp(e->d_name, RECORD_FILE) == 0) &&
			    fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
			    S_ISREG(st.st_mode);
		if (keep)
			continue;
		cleanup_free char *p = path_join(staging, e->d_name);
		if (vmm_rm_rf(p, err) < 0)
			return -1;
	}
	return 0;
}

/* --- the whole pull ------------------------------------------------------ */

static void say_waiting(void *ctx)
{
	say((const vmm_pull_opts *)ctx, "waiting for lock...");
}

/*
 * Build the image and install it as digest_dir.  *installed (the caller's to
 * close) keeps an flock on the new directory, which keeps the cache GC of
 * other commands away from it until the caller has linked its tag.
 */
static int pull_locked(const vmm_home *h, const vmm_reference *r, pull_ctx *c, const char *raw,
		       size_t raw_len, const char *digest, const char *digest_dir, int *installed,
		       vmm_error **err)
{
	const vmm_pull_opts *o = c->o;
	/* cached but untagged: hold it against the GC until the tag is linked */
	cleanup_close int cached = -1;
	if (vmm_flock_path(digest_dir, LOCK_SH, &cached, NULL) == 0 &&
	    vmm_bundle_dir_is_vm(digest_dir)) {
		say(o, "%s image is already cached! creating a symlink...", digest);
		*installed = steal_fd(cached);
		return 0;
	}
	cleanup_free char *staging = vmm_cache_staging_dir(h, c->name);
	if (mkdir(staging, 0755) < 0 && errno != EEXIST)
		return vmm_error_errno(err, errno, "create `%s`", staging);
	/* held until the end: keeps the tmp GC of other commands away */
	cleanup_close int staging_lock = -1;
	if (vmm_flock_path(staging, LOCK_EX, &staging_lock, err) < 0)
		return -1;
	if (clean_staging(staging, err) < 0)
		return -1;
	cleanup_free char *old_dir = NULL;
	if (r->tag)
		vmm_cache_resolve(h, r, &old_dir, NULL, NULL);
	c->disk_fd = c->rec_fd = -1;
	int rc = build_image(h, c, staging, raw, raw_len, old_dir, err);
	if (c->disk_fd >= 0)
		close(c->disk_fd);
	if (c->rec_fd >= 0)
		close(c->rec_fd);
	free(c->jobs);
	c->jobs = NULL;
	if (rc < 0)
		return -1;
	vmm_test_pause("pull");
	if (vmm_home_install(staging, digest_dir, 0, err) < 0)
		return -1;
	*installed = steal_fd(staging_lock);
	return 0;
}

int vmm_pull(const vmm_home *h, const vmm_reference *r, const vmm_pull_opts *o, char **dir,
	     vmm_pull_stats *stats, vmm_error **err)
{
	cleanup_free char *name = vmm_reference_string(r);
	pull_ctx c = {.o = o, .name = name};
	pthread_mutex_init(&c.lock, NULL);
	int rc = -1;
	cleanup_free char *raw = NULL;
	cleanup_free char *digest_dir = NULL;
	cleanup_close int host_lock = -1;
	cleanup_close int installed = -1;
	size_t raw_len = 0;
	char digest[72];

	say(o, "pulling manifest...");
	vmm_registry_opts ro = {.insecure = o->insecure};
	if (vmm_registry_open(&c.reg, r->host, r->namespace, &ro, err) < 0)
		goto out;
	if (vmm_registry_manifest_get(c.reg, vmm_reference_value(r), &raw, &raw_len, NULL, digest,
				      err) < 0)
		goto out;
	if (r->digest && strcmp(digest, r->digest) != 0) {
		vmm_error_set(err, VMM_EFORMAT, "the registry answered with manifest `%s`", digest);
		goto out;
	}
	if (vmm_manifest_parse(&c.m, raw, raw_len, err) < 0 || vmm_image_check(c.m, err) < 0)
		goto out;

	digest_dir = vmm_cache_digest_dir(h, r, digest);
	if (r->tag) {
		cleanup_free char *linked = NULL;
		cleanup_free char *want = realpath(digest_dir, NULL);
		if (vmm_cache_resolve(h, r, &linked, NULL, NULL) == 0 && want &&
		    strcmp(linked, want) == 0) {
			say(o, "%s image is already cached and linked!", digest);
			vmm_access_date_set(digest_dir, time(NULL));
			rc = 0;
			goto done;
		}
	}
	if (vmm_cache_lock_host(h, r->host, say_waiting, (void *)o, &host_lock, err) < 0 ||
	    pull_locked(h, r, &c, raw, raw_len, digest, digest_dir, &installed, err) < 0)
		goto out;
	vmm_test_pause("pull-installed");
	if (r->tag) {
		if (vmm_cache_link_tag(h, r, digest_dir, err) < 0 || vmm_cache_gc(h, err) < 0)
			goto out;
	} else if (vmm_cache_mark_explicit(digest_dir, err) < 0) {
		goto out;
	}
	vmm_access_date_set(digest_dir, time(NULL));
	rc = 0;
done:
	if (dir)
		*dir = steal_ptr(digest_dir);
out:
	if (rc < 0)
		vmm_error_wrap(err, "pull `%s`", name);
	if (stats)
		*stats = c.stats;
	vmm_manifest_free(c.m);
	vmm_registry_free(c.reg);
	pthread_mutex_destroy(&c.lock);
	return rc;
}
