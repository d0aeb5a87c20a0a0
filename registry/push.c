#include "registry/push.h"
#include "common/format.h"
#include "common/util.h"
#include "registry/cache.h"
#include "registry/image.h"
#include "registry/oci/client.h"
#include "registry/oci/layers.h"
#include "registry/oci/manifest.h"
#include "storage/copy.h"
#include "vm/bundle.h"
#include "vm/chunks.h"
#include "vm/savefile.h"
#include "vm/state.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>

/* A blob known to sit in another repository of the same registry. */
typedef struct known_blob {
	char digest[72];
	char *namespace;
} known_blob;

/* One repository being pushed to, and the tags it gets. */
typedef struct group {
	char *host, *namespace; /* owned */
	const char **tags;	/* borrowed from the references */
	size_t ntags;
	vmm_registry *reg;    /* owned */
	pthread_mutex_t lock; /* guards known */
	known_blob *known;    /* owned */
	size_t nknown;
} group;

typedef struct push_ctx {
	const vmm_push_opts *o;
	const vmm_home *home; /* borrowed */
	group *groups;
	size_t ngroups;
	uint64_t blobs_skipped, blobs_mounted, blobs_uploaded;
	pthread_mutex_t stats_lock;
} push_ctx;

#define say(o, ...) vmm_transfer_say(&(o)->ui, __VA_ARGS__)

static void group_remember(group *g, const char *digest, const char *ns)
{
	pthread_mutex_lock(&g->lock);
	g->known = xrealloc(g->known, (g->nknown + 1) * sizeof(*g->known));
	snprintf(g->known[g->nknown].digest, 72, "%s", digest);
	g->known[g->nknown].namespace = xstrdup(ns);
	g->nknown++;
	pthread_mutex_unlock(&g->lock);
}

/* Another repository of g's registry that holds digest, or NULL (caller frees). */
static char *group_mount_source(group *g, const char *digest)
{
	char *ns = NULL;
	pthread_mutex_lock(&g->lock);
	for (size_t i = 0; i < g->nknown && !ns; i++)
		if (strcmp(g->known[i].digest, digest) == 0 &&
		    strcmp(g->known[i].namespace, g->namespace) != 0)
			ns = xstrdup(g->known[i].namespace);
	pthread_mutex_unlock(&g->lock);
	return ns;
}

/* HEAD, else mount, else upload; then tell the other repositories of the same host. */
static int send_blob(push_ctx *c, group *g, const char *digest, const void *data, size_t len,
		     vmm_error **err)
{
	bool exists = false;
	if (vmm_registry_blob_exists(g->reg, digest, &exists, err) < 0)
		return -1;
	int kind = 0; /* 0 skipped, 1 mounted, 2 uploaded */
	if (!exists) {
		cleanup_free char *from = group_mount_source(g, digest);
		bool mounted = false;
		/* a declined mount is no error: the upload follows */
		if (from && vmm_registry_blob_mount(g->reg, digest, from, &mounted, NULL) == 0 &&
		    mounted) {
			kind = 1;
		} else {
			if (vmm_registry_blob_put(g->reg, digest, data, len, c->o->chunk_size,
						  err) < 0)
				return -1;
			kind = 2;
		}
	}
	for (size_t i = 0; i < c->ngroups; i++)
		if (&c->groups[i] != g && strcmp(c->groups[i].host, g->host) == 0)
			group_remember(&c->groups[i], digest, g->namespace);
	pthread_mutex_lock(&c->stats_lock);
	if (kind == 0)
		c->blobs_skipped++;
	else if (kind == 1)
		c->blobs_mounted++;
	else
		c->blobs_uploaded++;
	pthread_mutex_unlock(&c->stats_lock);
	return 0;
}

static int send_everywhere(push_ctx *c, const char *what, const char *digest, const void *data,
			   size_t len, vmm_error **err)
{
	for (size_t i = 0; i < c->ngroups; i++) {
		if (send_blob(c, &c->groups[i], digest, data, len, err) < 0)
			return vmm_error_wrap(err, "push %s to `%s/%s`", what, c->groups[i].host,
					      c->groups[i].namespace);
	}
	return 0;
}

/* --- the disk ------------------------------------------------------------ */

typedef struct disk_job {
	push_ctx *c;
	int fd;
	uint64_t disk_size, chunk;
	vmm_disk_chunk *results; /* digests and sizes; blobs freed after upload */
	void *meter;
} disk_job;

static void disk_progress(void *ctx, uint64_t n)
{
	disk_job *j = ctx;
	if (j->meter && j->c->o->ui.progress_add)
		j->c->o->ui.progress_add(j->meter, n);
}

/* A job of the pool: compress chunk i, then send it everywhere. */
static int chunk_job(void *ctx, vmm_transfer_pool *pool, size_t i, vmm_error **err)
{
	UNUSED(pool);
	disk_job *j = ctx;
	uint64_t off = (uint64_t)i * j->chunk;
	uint64_t n = j->disk_size - off < j->chunk ? j->disk_size - off : j->chunk;
	vmm_disk_chunk *r = &j->results[i];
	int rc = vmm_disk_chunk_encode(j->fd, off, n, r, disk_progress, j, err);
	if (rc == 0) {
		cleanup_free char *what = xasprintf("disk layer %zu `%s`", i, r->digest);
		rc = send_everywhere(j->c, what, r->digest, r->blob, r->blob_len, err);
	} else {
		vmm_error_wrap(err, "compress disk chunk %zu", i);
	}
	size_t blob_len = r->blob_len;
	vmm_disk_chunk_clear(r);
	r->blob_len = blob_len;
	return rc;
}

/* The disk in chunks, each compressed and uploaded by a worker of the pool. */
static int push_disk(push_ctx *c, const char *disk_path, uint64_t disk_size,
		     vmm_disk_chunk **results, size_t *nresults, vmm_error **err)
{
	const vmm_push_opts *o = c->o;
	disk_job j = {
	    .c = c,
	    .disk_size = disk_size,
	    .chunk = o->disk_chunk ? o->disk_chunk : VMM_DISK_CHUNK,
	};
	j.fd = open(disk_path, O_RDONLY | O_CLOEXEC);
	if (j.fd < 0)
		return vmm_error_errno(err, errno, "open `%s`", disk_path);
	size_t nchunks = disk_size ? (size_t)((disk_size + j.chunk - 1) / j.chunk) : 0;
	j.results = xcalloc(nchunks ? nchunks : 1, sizeof(*j.results));
	if (o->ui.progress_begin)
		j.meter = o->ui.progress_begin(o->ui.ctx, "pushing disk", disk_size);
	int rc = vmm_transfer_parallel(nchunks, o->concurrency, chunk_job, &j, err);
	close(j.fd);
	if (j.meter && o->ui.progress_end)
		o->ui.progress_end(j.meter, rc == 0);
	if (rc < 0) {
		free(j.results);
		return -1;
	}
	*results = j.results;
	*nresults = nchunks;
	return 0;
}

/* Tart's disk layers, annotated with their uncompressed sizes and digests. */
static int push_disk_layers(push_ctx *c, vmm_manifest *m, const char *disk_path, vmm_error **err)
{
	struct stat st;
	if (stat(disk_path, &st) < 0)
		return vmm_error_errno(err, errno, "stat `%s`", disk_path);
	vmm_disk_chunk *chunks = NULL;
	size_t nchunks = 0;
	if (push_disk(c, disk_path, (uint64_t)st.st_size, &chunks, &nchunks, err) < 0)
		return -1;
	for (size_t i = 0; i < nchunks; i++) {
		vmm_descriptor *d = vmm_manifest_add_layer(m, VMM_MEDIA_TART_DISK_V2,
							   chunks[i].digest, chunks[i].blob_len);
		char usize[32];
		snprintf(usize, sizeof(usize), "%llu", (unsigned long long)chunks[i].size);
		vmm_descriptor_annotate(d, VMM_ANN_UNCOMPRESSED_SIZE, usize);
		vmm_descriptor_annotate(d, VMM_ANN_UNCOMPRESSED_DIGEST,
					chunks[i].uncompressed_digest);
	}
	free(chunks);
	m->disk_size = (uint64_t)st.st_size;
	return 0;
}

/* --- small layers -------------------------------------------------------- */

static int push_file_layer(push_ctx *c, vmm_manifest *m, const char *media_type, const char *path,
			   const char *what, vmm_descriptor **out, vmm_error **err)
{
	/* mapped, not read: a suspended VM's state can be gigabytes */
	cleanup_close int fd = open(path, O_RDONLY | O_CLOEXEC);
	struct stat st;
	if (fd < 0 || fstat(fd, &st) < 0)
		return vmm_error_errno(err, errno, "open `%s`", path);
	size_t len = (size_t)st.st_size;
	void *data = len ? mmap(NULL, len, PROT_READ, MAP_PRIVATE, fd, 0) : (void *)"";
	if (data == MAP_FAILED)
		return vmm_error_errno(err, errno, "map `%s`", path);
	if (len)
		madvise(data, len, MADV_SEQUENTIAL);
	char digest[72];
	vmm_sha256_digest(data, len, digest);
	int rc = send_everywhere(c, what, digest, data, len, err);
	if (len)
		munmap(data, len);
	if (rc < 0)
		return -1;
	vmm_descriptor *d = vmm_manifest_add_layer(m, media_type, digest, len);
	if (out)
		*out = d;
	return 0;
}

/*
 * The suspended state (DESIGN §4, §8).  Locally it is lz4, chosen for
 * suspend and resume speed; over the network, where bytes cost more than
 * CPU, it goes as zstd (vm/state.h).  Its annotations come from the header.
 */
static int push_state_layer(push_ctx *c, vmm_manifest *m, const vmm_image_file *f, const char *path,
			    vmm_error **err)
{
	cleanup_vmm_savefile_header vmm_savefile_header *sh = NULL;
	if (vmm_savefile_read_header(&sh, path, err) < 0)
		return vmm_error_wrap(err, "the %s has no state header vmm can read", f->what);
	cleanup_free char *tmp = NULL, *recoded = NULL;
	cleanup_close int tmp_lock = -1;
	const char *send = path;
	if (sh->format >= 2 && sh->codec != VMM_STATE_PUSH_CODEC) {
		say(c->o, "compressing %s for the network...", f->what);
		if (vmm_home_mktemp(c->home, &tmp, &tmp_lock, err) < 0)
			return -1;
		recoded = path_join(tmp, VMM_STATE_FILE);
		if (vmm_chunk_reencode(path, recoded, VMM_STATE_PUSH_CODEC, VMM_STATE_PUSH_LEVEL,
				       vmm_chunks_threads(), err) < 0) {
			vmm_rm_rf(tmp, NULL);
			return -1;
		}
		send = recoded;
	}
	say(c->o, "pushing %s...", f->what);
	vmm_descriptor *d = NULL;
	int rc = push_file_layer(c, m, f->media_type, send, f->what, &d, err);
	if (tmp)
		vmm_rm_rf(tmp, NULL);
	if (rc < 0)
		return -1;
	char size[32];
	snprintf(size, sizeof(size), "%llu", (unsigned long long)sh->raw_size);
	vmm_descriptor_annotate(d, VMM_ANN_STATE_RAW_SIZE, size);
	if (sh->raw_sha256)
		vmm_descriptor_annotate(d, VMM_ANN_STATE_RAW_DIGEST, sh->raw_sha256);
	vmm_descriptor_annotate(d, VMM_ANN_STATE_QEMU_VERSION, sh->qemu_version);
	vmm_descriptor_annotate(d, VMM_ANN_STATE_MACHINE, sh->machine);
	return 0;
}

/* One entry of the image table: its layer(s) to every repository, and into m. */
static int push_layer(push_ctx *c, const vmm_bundle *b, const vmm_image_file *f, vmm_manifest *m,
		      const char *cfg, vmm_error **err)
{
	cleanup_free char *path = vmm_bundle_path(b, f->file);
	char digest[72];
	switch (f->kind) {
	case VMM_LAYER_CONFIG:
		say(c->o, "pushing %s...", f->what);
		vmm_sha256_digest(cfg, strlen(cfg), digest);
		if (send_everywhere(c, f->what, digest, cfg, strlen(cfg), err) < 0)
			return -1;
		vmm_manifest_add_layer(m, f->media_type, digest, strlen(cfg));
		return 0;
	case VMM_LAYER_DISK:
		say(c->o, "pushing %s... this will take a while...", f->what);
		return push_disk_layers(c, m, path, err);
	case VMM_LAYER_VMM:
		/* vmm's own layers come after Tart's, which ignores them */
		if (access(path, F_OK) < 0)
			return 0;
		if (strcmp(f->media_type, VMM_MEDIA_VMM_STATE) == 0)
			return push_state_layer(c, m, f, path, err);
		break;
	case VMM_LAYER_TART:
		break;
	}
	say(c->o, "pushing %s...", f->what);
	return push_file_layer(c, m, f->media_type, path, f->what, NULL, err);
}

/* --- the whole push ------------------------------------------------------ */

static void groups_free(group *g, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(g[i].host);
		free(g[i].namespace);
		free(g[i].tags);
		vmm_registry_free(g[i].reg);
		for (size_t k = 0; k < g[i].nknown; k++)
			free(g[i].known[k].namespace);
		free(g[i].known);
		pthread_mutex_destroy(&g[i].lock);
	}
	free(g);
}

/* What the cache knows about blobs of this host in other repositories. */
static void learn_from_cache(const vmm_home *h, group *g)
{
	vmm_cache_image *imgs = NULL;
	size_t n = 0;
	if (vmm_cache_images(h, &imgs, &n, NULL) < 0)
		return;
	for (size_t i = 0; i < n; i++) {
		if (strcmp(imgs[i].host, g->host) != 0 ||
		    strcmp(imgs[i].namespace, g->namespace) == 0)
			continue;
		cleanup_vmm_manifest vmm_manifest *m = NULL;
		if (vmm_cache_read_manifest(imgs[i].dir, &m, NULL, NULL, NULL) < 0)
			continue;
		group_remember(g, m->config.digest, imgs[i].namespace);
		for (size_t k = 0; k < m->nlayers; k++)
			group_remember(g, m->layers[k].digest, imgs[i].namespace);
	}
	vmm_cache_images_free(imgs, n);
}

static int make_groups(const vmm_home *h, vmm_reference *const *refs, size_t nrefs,
		       const vmm_push_opts *o, group **out, size_t *nout, vmm_error **err)
{
	group *g = NULL;
	size_t n = 0;
	for (size_t i = 0; i < nrefs; i++) {
		if (refs[i]->digest) {
			cleanup_free char *s = vmm_reference_string(refs[i]);
			groups_free(g, n);
			return vmm_error_set(err, VMM_EUSAGE,
					     "cannot push to `%s`: push to a tag, not a digest", s);
		}
		size_t k = 0;
		while (k < n && !(strcmp(g[k].host, refs[i]->host) == 0 &&
				  strcmp(g[k].namespace, refs[i]->namespace) == 0))
			k++;
		if (k == n) {
			g = xrealloc(g, (n + 1) * sizeof(*g));
			memset(&g[n], 0, sizeof(*g));
			g[n].host = xstrdup(refs[i]->host);
			g[n].namespace = xstrdup(refs[i]->namespace);
			pthread_mutex_init(&g[n].lock, NULL);
			n++;
		}
		g[k].tags = xrealloc(g[k].tags, (g[k].ntags + 1) * sizeof(char *));
		g[k].tags[g[k].ntags++] = refs[i]->tag;
	}
	vmm_registry_opts ro = {.insecure = o->insecure};
	for (size_t k = 0; k < n; k++) {
		if (vmm_registry_open(&g[k].reg, g[k].host, g[k].namespace, &ro, err) < 0) {
			groups_free(g, n);
			return -1;
		}
		learn_from_cache(h, &g[k]);
	}
	*out = g;
	*nout = n;
	return 0;
}

/* "pushing debian to 127.0.0.1:5000/a/b:latest..." or "{:a,:b}" for several tags */
static void say_group(const vmm_push_opts *o, const char *name, const group *g)
{
	size_t cap = 64;
	for (size_t i = 0; i < g->ntags; i++)
		cap += strlen(g->tags[i]) + 2;
	cleanup_free char *tags = xmalloc(cap);
	char *p = tags;
	if (g->ntags == 1) {
		p += sprintf(p, ":%s", g->tags[0]);
	} else {
		*p++ = '{';
		for (size_t i = 0; i < g->ntags; i++)
			p += sprintf(p, "%s:%s", i ? "," : "", g->tags[i]);
		*p++ = '}';
		*p = '\0';
	}
	say(o, "pushing %s to %s/%s%s...", name, g->host, g->namespace, tags);
}

/* Leave config.json to the caller: copying it would drop our lock on the source's. */
static bool skip_for_cache(const char *name)
{
	return strcmp(name, VMM_CONFIG_FILE) == 0 || strstr(name, ".tmp") != NULL;
}

/*
 * Install the pushed VM in the cache as a pull would have made it: the
 * config layer's bytes as config.json, the manifest's bytes as manifest.json.
 */
static int populate_cache(const vmm_home *h, const char *vm_dir, const group *g, const char *cfg,
			  const char *manifest, const char *digest, vmm_error **err)
{
	vmm_reference r = {.host = g->host, .namespace = g->namespace, .digest = (char *)digest};
	cleanup_free char *dest = vmm_cache_digest_dir(h, &r, digest);
	/* an flock on the digest directory until its tags are linked keeps the
	 * cache GC of other commands from taking it for garbage meanwhile */
	cleanup_close int held = -1;
	if (vmm_flock_path(dest, LOCK_SH, &held, NULL) < 0 || !vmm_bundle_dir_is_vm(dest)) {
		cleanup_free char *tmp = NULL;
		if (held >= 0)
			close(held);
		held = -1;
		if (vmm_home_mktemp(h, &tmp, &held, err) < 0)
			return -1;
		cleanup_free char *mp = path_join(tmp, VMM_MANIFEST_FILE);
		cleanup_free char *cp = path_join(tmp, VMM_CONFIG_FILE);
		int rc = vmm_copy_dir(vm_dir, tmp, false, skip_for_cache, NULL, NULL, err);
		if (rc == 0)
			rc = vmm_write_file_atomic(cp, cfg, strlen(cfg), 0644, err);
		if (rc == 0)
			rc = vmm_write_file_atomic(mp, manifest, strlen(manifest), 0644, err);
		if (rc == 0)
			rc = vmm_home_install(tmp, dest, 0, err);
		if (rc < 0) {
			vmm_rm_rf(tmp, NULL);
			return -1;
		}
	}
	for (size_t i = 0; i < g->ntags; i++) {
		vmm_reference t = {
		    .host = g->host, .namespace = g->namespace, .tag = (char *)g->tags[i]};
		if (vmm_cache_link_tag(h, &t, dest, err) < 0)
			return -1;
	}
	return vmm_cache_gc(h, err);
}

int vmm_push(const vmm_home *h, const char *name, vmm_reference *const *refs, size_t nrefs,
	     const vmm_push_opts *o, char digest_out[72], vmm_error **err)
{
	cleanup_vmm_bundle vmm_bundle *b = NULL;
	if (vmm_bundle_open(&b, h, name, err) < 0)
		return -1;
	return vmm_push_dir(h, b->dir, name, refs, nrefs, o, digest_out, err);
}

int vmm_push_dir(const vmm_home *h, const char *dir, const char *name, vmm_reference *const *refs,
		 size_t nrefs, const vmm_push_opts *o, char digest_out[72], vmm_error **err)
{
	cleanup_vmm_bundle vmm_bundle *b = NULL;
	if (vmm_bundle_open_dir(&b, dir, name, err) < 0)
		return -1;
	/* a read lock: nobody runs or changes the VM meanwhile; the config
	 * pushed is the one read through it */
	cleanup_close int lock = -1;
	if (vmm_bundle_dir_lock_as(b->dir, name, VMM_LOCK_READ, &lock, err) < 0)
		return -1;
	vmm_config *locked_cfg = NULL;
	if (vmm_bundle_dir_read_config(b->dir, lock, &locked_cfg, NULL, NULL, err) < 0)
		return -1;
	vmm_config_free(b->config);
	b->config = locked_cfg;
	vmm_test_pause("push");
	push_ctx c = {.o = o, .home = h};
	pthread_mutex_init(&c.stats_lock, NULL);
	if (make_groups(h, refs, nrefs, o, &c.groups, &c.ngroups, err) < 0)
		return -1;
	for (size_t i = 0; i < c.ngroups; i++)
		say_group(o, name, &c.groups[i]);

	int rc = -1;
	cleanup_vmm_manifest vmm_manifest *m = vmm_manifest_new();
	cleanup_free char *cfg = vmm_config_compact(b->config);
	cleanup_free char *oci_cfg = NULL;
	cleanup_free char *manifest = NULL;
	cleanup_free char *now = NULL;
	char oci_digest[72], mdigest[72];
	size_t nfiles;
	const vmm_image_file *files = vmm_image_files(&nfiles);
	for (size_t i = 0; i < nfiles; i++)
		if (push_layer(&c, b, &files[i], m, cfg, err) < 0)
			goto out;

	oci_cfg = vmm_oci_config_encode(b->config->arch, b->config->os, b->config->disk_format,
					o->labels, o->nlabels);
	vmm_sha256_digest(oci_cfg, strlen(oci_cfg), oci_digest);
	if (send_everywhere(&c, "OCI config", oci_digest, oci_cfg, strlen(oci_cfg), err) < 0)
		goto out;
	m->config.media_type = xstrdup(VMM_MEDIA_OCI_CONFIG_V1);
	memcpy(m->config.digest, oci_digest, 72);
	m->config.size = strlen(oci_cfg);

	char disk_size[32];
	snprintf(disk_size, sizeof(disk_size), "%llu", (unsigned long long)m->disk_size);
	vmm_manifest_annotate(m, VMM_ANN_DISK_SIZE, disk_size);
	now = vmm_format_iso8601(time(NULL));
	vmm_manifest_annotate(m, VMM_ANN_UPLOAD_TIME, now);
	manifest = vmm_manifest_encode(m);
	vmm_sha256_digest(manifest, strlen(manifest), mdigest);
	for (size_t i = 0; i < c.ngroups; i++) {
		group *g = &c.groups[i];
		for (size_t k = 0; k < g->ntags; k++) {
			say(o, "pushing manifest for %s...", g->tags[k]);
			if (vmm_registry_manifest_put(g->reg, g->tags[k], manifest,
						      strlen(manifest), VMM_MEDIA_OCI_MANIFEST_V1,
						      err) < 0) {
				vmm_error_wrap(err, "push manifest to `%s/%s:%s`", g->host,
					       g->namespace, g->tags[k]);
				goto out;
			}
		}
	}
	if (o->populate_cache) {
		for (size_t i = 0; i < c.ngroups; i++)
			if (populate_cache(h, b->dir, &c.groups[i], cfg, manifest, mdigest, err) <
			    0)
				goto out;
	}
	if (digest_out)
		memcpy(digest_out, mdigest, 72);
	rc = 0;
out:
	groups_free(c.groups, c.ngroups);
	pthread_mutex_destroy(&c.stats_lock);
	return rc;
}

/* --- pushing a cached image to other tags ------------------------------ */

/* Make sure every blob of m is in g's repository, mounting from src_ns when missing. */
static int mount_all(group *g, const vmm_manifest *m, const char *src_ns, vmm_error **err)
{
	for (size_t i = 0; i <= m->nlayers; i++) {
		const char *digest = i < m->nlayers ? m->layers[i].digest : m->config.digest;
		bool exists = false, mounted = false;
		if (vmm_registry_blob_exists(g->reg, digest, &exists, err) < 0)
			return -1;
		if (exists)
			continue;
		if (vmm_registry_blob_mount(g->reg, digest, src_ns, &mounted, err) < 0)
			return -1;
		if (!mounted)
			return vmm_error_set(err, VMM_ENOTFOUND,
					     "`%s/%s` lacks blob `%s` and would not mount it from "
					     "`%s`",
					     g->host, g->namespace, digest, src_ns);
	}
	return 0;
}

int vmm_push_remote(const vmm_home *h, const vmm_reference *src, vmm_reference *const *refs,
		    size_t nrefs, const vmm_push_opts *o, vmm_error **err)
{
	cleanup_free char *name = vmm_reference_string(src);
	cleanup_free char *dir = NULL;
	if (vmm_cache_resolve(h, src, &dir, NULL, err) < 0)
		return -1;
	cleanup_free char *raw = NULL;
	size_t len = 0;
	cleanup_vmm_manifest vmm_manifest *m = NULL;
	if (vmm_cache_read_manifest(dir, &m, &raw, &len, err) < 0)
		return vmm_error_wrap(err, "cached image `%s`", name);
	push_ctx c = {.o = o, .home = h};
	pthread_mutex_init(&c.stats_lock, NULL);
	if (make_groups(h, refs, nrefs, o, &c.groups, &c.ngroups, err) < 0)
		return -1;
	int rc = 0;
	for (size_t i = 0; i < c.ngroups && rc == 0; i++) {
		group *g = &c.groups[i];
		say_group(o, name, g);
		if (strcmp(g->host, src->host) == 0 && strcmp(g->namespace, src->namespace) != 0)
			rc = mount_all(g, m, src->namespace, err);
		for (size_t k = 0; k < g->ntags && rc == 0; k++) {
			say(o, "pushing manifest for %s...", g->tags[k]);
			rc = vmm_registry_manifest_put(g->reg, g->tags[k], raw, len,
						       VMM_MEDIA_OCI_MANIFEST_V1, err);
			if (rc < 0)
				vmm_error_wrap(err, "push manifest to `%s/%s:%s`", g->host,
					       g->namespace, g->tags[k]);
		}
	}
	groups_free(c.groups, c.ngroups);
	pthread_mutex_destroy(&c.stats_lock);
	return rc;
}
