#include "registry/cache.h"
#include "common/util.h"
#include "vm/bundle.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <openssl/evp.h>

static char *encode_host(const char *host)
{
	size_t n = 0;
	for (const char *p = host; *p; p++)
		n += *p == ':' ? 3 : 1;
	char *out = xmalloc(n + 1), *o = out;
	for (const char *p = host; *p; p++) {
		if (*p == ':') {
			memcpy(o, "%3A", 3);
			o += 3;
		} else {
			*o++ = *p;
		}
	}
	*o = '\0';
	return out;
}

static char *decode_percent(const char *s)
{
	char *out = xmalloc(strlen(s) + 1), *o = out;
	for (const char *p = s; *p; p++) {
		unsigned v;
		if (p[0] == '%' && p[1] && p[2] && sscanf(p + 1, "%2x", &v) == 1) {
			*o++ = (char)v;
			p += 2;
		} else {
			*o++ = *p;
		}
	}
	*o = '\0';
	return out;
}

char *vmm_cache_repo_dir(const vmm_home *h, const vmm_reference *r)
{
	cleanup_free char *host = encode_host(r->host);
	return xasprintf("%s/%s/%s", h->ocis, host, r->namespace);
}

char *vmm_cache_path(const vmm_home *h, const vmm_reference *r)
{
	cleanup_free char *repo = vmm_cache_repo_dir(h, r);
	return path_join(repo, vmm_reference_value(r));
}

int vmm_cache_resolve(const vmm_home *h, const vmm_reference *r, char **dir, char **digest,
		      vmm_error **err)
{
	cleanup_free char *p = vmm_cache_path(h, r);
	cleanup_free char *real = realpath(p, NULL);
	cleanup_free char *name = vmm_reference_string(r);
	if (!real || !vmm_bundle_dir_is_vm(real))
		return vmm_error_set(err, VMM_ENOTFOUND, "the specified VM \"%s\" does not exist",
				     name);
	const char *last = strrchr(real, '/');
	last = last ? last + 1 : real;
	if (strncmp(last, "sha256:", 7) != 0)
		return vmm_error_set(err, VMM_EINVAL,
				     "OCI storage error: %s is not a digest and doesn't point to a "
				     "digest",
				     name);
	if (digest)
		*digest = xstrdup(last);
	if (dir)
		*dir = steal_ptr(real);
	return 0;
}

/* --- the one walk over OCIs/ ------------------------------------------------ */

static void walk_dir(const char *dir, const char *host, const char *ns, vmm_cache_visit visit,
		     void *ctx)
{
	cleanup_dir DIR *d = opendir(dir);
	if (!d)
		return;
	struct dirent *e;
	while ((e = readdir(d))) {
		if (e->d_name[0] == '.')
			continue;
		cleanup_free char *p = path_join(dir, e->d_name);
		struct stat st;
		if (lstat(p, &st) < 0)
			continue;
		vmm_cache_item it = {.path = p, .host = host, .namespace = ns, .name = e->d_name};
		if (S_ISLNK(st.st_mode)) {
			it.is_tag = true;
			visit(ctx, &it);
		} else if (S_ISDIR(st.st_mode) && strncmp(e->d_name, "sha256:", 7) == 0) {
			visit(ctx, &it);
		} else if (S_ISDIR(st.st_mode) && !host) {
			cleanup_free char *decoded = decode_percent(e->d_name);
			walk_dir(p, decoded, NULL, visit, ctx);
		} else if (S_ISDIR(st.st_mode)) {
			cleanup_free char *sub =
			    ns ? xasprintf("%s/%s", ns, e->d_name) : xstrdup(e->d_name);
			walk_dir(p, host, sub, visit, ctx);
		}
	}
}

void vmm_cache_walk(const vmm_home *h, vmm_cache_visit visit, void *ctx)
{
	walk_dir(h->ocis, NULL, NULL, visit, ctx);
}

int vmm_cache_read_manifest(const char *dir, vmm_manifest **m, char **raw, size_t *len,
			    vmm_error **err)
{
	cleanup_free char *path = path_join(dir, VMM_MANIFEST_FILE);
	cleanup_free char *text = NULL;
	size_t n = 0;
	if (vmm_read_file(path, 4 << 20, &text, &n, err) < 0)
		return -1;
	if (m && vmm_manifest_parse(m, text, n, err) < 0)
		return -1;
	if (raw)
		*raw = steal_ptr(text);
	if (len)
		*len = n;
	return 0;
}

/* --- listing --------------------------------------------------------------- */

typedef struct list_ctx {
	vmm_cache_entry *v;
	size_t n, cap;
} list_ctx;

static void list_visit(void *ctx, const vmm_cache_item *it)
{
	list_ctx *l = ctx;
	/* a VM right under OCIs/ has no name */
	if (!it->host || !vmm_bundle_dir_is_vm(it->path))
		return;
	if (l->n == l->cap) {
		l->cap = l->cap ? l->cap * 2 : 16;
		l->v = xrealloc(l->v, l->cap * sizeof(*l->v));
	}
	char sep = it->is_tag ? ':' : '@';
	vmm_cache_entry *ce = &l->v[l->n++];
	ce->name = it->namespace ? xasprintf("%s/%s%c%s", it->host, it->namespace, sep, it->name)
				 : xasprintf("%s%c%s", it->host, sep, it->name);
	ce->path = xstrdup(it->path);
	ce->target = it->is_tag ? realpath(it->path, NULL) : NULL;
	if (!ce->target)
		ce->target = xstrdup(it->path);
	ce->is_tag = it->is_tag;
}

static int cmp_entry(const void *a, const void *b)
{
	return strcmp(((const vmm_cache_entry *)a)->name, ((const vmm_cache_entry *)b)->name);
}

int vmm_cache_list(const vmm_home *h, vmm_cache_entry **out, size_t *n, vmm_error **err)
{
	UNUSED(err);
	list_ctx ctx = {0};
	vmm_cache_walk(h, list_visit, &ctx);
	if (ctx.n)
		qsort(ctx.v, ctx.n, sizeof(*ctx.v), cmp_entry);
	*out = ctx.v;
	*n = ctx.n;
	return 0;
}

void vmm_cache_entries_free(vmm_cache_entry *e, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(e[i].name);
		free(e[i].path);
		free(e[i].target);
	}
	free(e);
}

/* --- Tart's GC ------------------------------------------------------------- */

/* Every live symlink's target and every digest directory under OCIs/. */
typedef struct gc_ctx {
	char **links;
	size_t nlinks;
	char **digests;
	size_t ndigests;
} gc_ctx;

static void gc_visit(void *ctx, const vmm_cache_item *it)
{
	gc_ctx *g = ctx;
	char *real = realpath(it->path, NULL);
	if (it->is_tag && !real) {
		unlink(it->path); /* dangling */
	} else if (it->is_tag) {
		g->links = xrealloc(g->links, (g->nlinks + 1) * sizeof(char *));
		g->links[g->nlinks++] = real;
	} else {
		g->digests = xrealloc(g->digests, (g->ndigests + 1) * sizeof(char *));
		g->digests[g->ndigests++] = real ? real : xstrdup(it->path);
	}
}

int vmm_cache_gc(const vmm_home *h, vmm_error **err)
{
	gc_ctx g = {0};
	vmm_cache_walk(h, gc_visit, &g);
	int rc = 0;
	for (size_t i = 0; i < g.ndigests && rc == 0; i++) {
		bool referenced = false;
		for (size_t j = 0; j < g.nlinks && !referenced; j++)
			referenced = strcmp(g.links[j], g.digests[i]) == 0;
		cleanup_free char *marker = path_join(g.digests[i], VMM_EXPLICITLY_PULLED_FILE);
		if (referenced || access(marker, F_OK) == 0)
			continue;
		vmm_error *e = NULL;
		rc = vmm_cache_remove_dir(h, g.digests[i], &e);
		if (rc < 0 && vmm_error_code(e) == VMM_ELOCKED) {
			rc = 0; /* being installed or copied: not garbage, or not yet */
			vmm_error_free(e);
		} else if (rc < 0 && err) {
			vmm_error_free(*err);
			*err = e;
		} else {
			vmm_error_free(e);
		}
	}
	for (size_t i = 0; i < g.nlinks; i++)
		free(g.links[i]);
	for (size_t i = 0; i < g.ndigests; i++)
		free(g.digests[i]);
	free(g.links);
	free(g.digests);
	return rc;
}

int vmm_cache_delete(const vmm_home *h, const vmm_reference *r, vmm_error **err)
{
	cleanup_free char *p = vmm_cache_path(h, r);
	struct stat st;
	if (lstat(p, &st) < 0) {
		cleanup_free char *name = vmm_reference_string(r);
		return vmm_error_set(err, VMM_ENOTFOUND, "the specified VM \"%s\" does not exist",
				     name);
	}
	if (S_ISLNK(st.st_mode)) {
		if (unlink(p) < 0)
			return vmm_error_errno(err, errno, "remove `%s`", p);
	} else if (vmm_cache_remove_dir(h, p, err) < 0) {
		cleanup_free char *name = vmm_reference_string(r);
		return vmm_error_wrap(err, "delete `%s`", name);
	}
	return vmm_cache_gc(h, err);
}

int vmm_cache_remove_dir(const vmm_home *h, const char *dir, vmm_error **err)
{
	/* an installer holds an flock on the directory until its tag is linked */
	if (!path_is_dir(dir))
		return 0;
	cleanup_close int claim = -1;
	if (vmm_flock_path(dir, LOCK_EX | LOCK_NB, &claim, err) < 0)
		return -1;
	/* a clone reading it holds a bundle lock */
	cleanup_close int bundle_lock = -1;
	cleanup_free char *cfg = path_join(dir, VMM_CONFIG_FILE);
	if (access(cfg, F_OK) == 0 && vmm_bundle_dir_lock(dir, dir, &bundle_lock, NULL) < 0)
		return vmm_error_set(err, VMM_ELOCKED, "`%s` is in use by another vmm command",
				     dir);
	char uuid[37];
	vmm_uuid(uuid);
	cleanup_free char *trash = xasprintf("%s/delete-%s", h->tmp, uuid);
	if (rename(dir, trash) < 0)
		return errno == ENOENT ? 0 : vmm_error_errno(err, errno, "remove `%s`", dir);
	vmm_fsync_dir(dir, false, NULL);
	return vmm_rm_rf(trash, err);
}

char *vmm_cache_host_dir(const vmm_home *h, const char *host)
{
	cleanup_free char *enc = encode_host(host);
	return path_join(h->ocis, enc);
}

char *vmm_cache_digest_dir(const vmm_home *h, const vmm_reference *r, const char *digest)
{
	cleanup_free char *repo = vmm_cache_repo_dir(h, r);
	return path_join(repo, digest);
}

char *vmm_cache_staging_dir(const vmm_home *h, const char *name)
{
	unsigned char md[16];
	unsigned int n = 0;
	if (!EVP_Digest(name, strlen(name), md, &n, EVP_md5(), NULL))
		abort();
	char hex[33];
	vmm_hex(md, 16, hex);
	return path_join(h->tmp, hex);
}

int vmm_cache_lock_host(const vmm_home *h, const char *host, void (*waiting)(void *ctx), void *ctx,
			int *fd, vmm_error **err)
{
	cleanup_free char *dir = vmm_cache_host_dir(h, host);
	if (vmm_mkdir_p(dir, err) < 0)
		return -1;
	vmm_error *e = NULL;
	if (vmm_flock_path(dir, LOCK_EX | LOCK_NB, fd, &e) == 0)
		return 0;
	int code = e->code;
	vmm_error_free(e);
	if (code != VMM_ELOCKED)
		return vmm_flock_path(dir, LOCK_EX | LOCK_NB, fd, err);
	if (waiting)
		waiting(ctx);
	return vmm_flock_path(dir, LOCK_EX, fd, err);
}

int vmm_cache_link_tag(const vmm_home *h, const vmm_reference *r, const char *digest_dir,
		       vmm_error **err)
{
	cleanup_free char *link = vmm_cache_path(h, r);
	cleanup_free char *target = realpath(digest_dir, NULL);
	if (!target)
		return vmm_error_errno(err, errno, "resolve `%s`", digest_dir);
	cleanup_free char *tmp = xasprintf("%s.tmp-link", link);
	unlink(tmp);
	if (symlink(target, tmp) < 0)
		return vmm_error_errno(err, errno, "create link `%s`", tmp);
	struct stat st;
	if (lstat(link, &st) == 0 && S_ISDIR(st.st_mode)) {
		unlink(tmp);
		return vmm_error_set(err, VMM_EEXISTS, "`%s` is a directory, not a tag", link);
	}
	if (rename(tmp, link) < 0) {
		int e = errno;
		unlink(tmp);
		return vmm_error_errno(err, e, "link `%s`", link);
	}
	return vmm_fsync_dir(link, false, err);
}

int vmm_cache_mark_explicit(const char *digest_dir, vmm_error **err)
{
	cleanup_free char *p = path_join(digest_dir, VMM_EXPLICITLY_PULLED_FILE);
	int fd = open(p, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
	if (fd < 0)
		return vmm_error_errno(err, errno, "create `%s`", p);
	close(fd);
	return 0;
}

typedef struct img_ctx {
	vmm_cache_image *v;
	size_t n;
} img_ctx;

static void img_visit(void *ctx, const vmm_cache_item *it)
{
	img_ctx *c = ctx;
	cleanup_free char *m = path_join(it->path, VMM_MANIFEST_FILE);
	cleanup_free char *disk = path_join(it->path, VMM_DISK_FILE);
	if (it->is_tag || !it->namespace || access(m, F_OK) < 0 || access(disk, F_OK) < 0)
		return;
	c->v = xrealloc(c->v, (c->n + 1) * sizeof(*c->v));
	c->v[c->n++] = (vmm_cache_image){
	    .dir = xstrdup(it->path),
	    .host = xstrdup(it->host),
	    .namespace = xstrdup(it->namespace),
	    .digest = xstrdup(it->name),
	};
}

int vmm_cache_images(const vmm_home *h, vmm_cache_image **out, size_t *n, vmm_error **err)
{
	UNUSED(err);
	img_ctx c = {0};
	vmm_cache_walk(h, img_visit, &c);
	*out = c.v;
	*n = c.n;
	return 0;
}

void vmm_cache_images_free(vmm_cache_image *v, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(v[i].dir);
		free(v[i].host);
		free(v[i].namespace);
		free(v[i].digest);
	}
	free(v);
}
