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

typedef struct list_ctx {
	vmm_cache_entry *v;
	size_t n, cap;
} list_ctx;

static void walk(const char *root, const char *rel, list_ctx *ctx)
{
	cleanup_free char *dir = rel[0] ? path_join(root, rel) : xstrdup(root);
	cleanup_dir DIR *d = opendir(dir);
	if (!d)
		return;
	struct dirent *e;
	while ((e = readdir(d))) {
		if (e->d_name[0] == '.')
			continue;
		cleanup_free char *p = path_join(dir, e->d_name);
		cleanup_free char *sub =
		    rel[0] ? xasprintf("%s/%s", rel, e->d_name) : xstrdup(e->d_name);
		struct stat lst;
		if (lstat(p, &lst) < 0)
			continue;
		bool is_link = S_ISLNK(lst.st_mode);
		if (vmm_bundle_dir_is_vm(p)) {
			if (!rel[0])
				continue; /* a VM right under OCIs/ has no name */
			if (ctx->n == ctx->cap) {
				ctx->cap = ctx->cap ? ctx->cap * 2 : 16;
				ctx->v = xrealloc(ctx->v, ctx->cap * sizeof(*ctx->v));
			}
			cleanup_free char *raw =
			    xasprintf("%s%c%s", rel, is_link ? ':' : '@', e->d_name);
			vmm_cache_entry *ce = &ctx->v[ctx->n++];
			ce->name = decode_percent(raw);
			ce->path = xstrdup(p);
			ce->target = is_link ? realpath(p, NULL) : xstrdup(p);
			if (!ce->target)
				ce->target = xstrdup(p);
			ce->is_tag = is_link;
		} else if (!is_link && S_ISDIR(lst.st_mode)) {
			walk(root, sub, ctx);
		}
	}
}

static int cmp_entry(const void *a, const void *b)
{
	return strcmp(((const vmm_cache_entry *)a)->name, ((const vmm_cache_entry *)b)->name);
}

int vmm_cache_list(const vmm_home *h, vmm_cache_entry **out, size_t *n, vmm_error **err)
{
	UNUSED(err);
	list_ctx ctx = {0};
	walk(h->ocis, "", &ctx);
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

/* Collect every symlink target and every digest dir under OCIs/. */
typedef struct gc_ctx {
	char **links; /* resolved targets of live symlinks */
	size_t nlinks;
	char **digests; /* digest dirs */
	size_t ndigests;
} gc_ctx;

static void gc_walk(const char *dir, gc_ctx *g, vmm_error **err)
{
	cleanup_dir DIR *d = opendir(dir);
	if (!d)
		return;
	struct dirent *e;
	while ((e = readdir(d))) {
		if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
			continue;
		cleanup_free char *p = path_join(dir, e->d_name);
		struct stat lst;
		if (lstat(p, &lst) < 0)
			continue;
		if (S_ISLNK(lst.st_mode)) {
			char *t = realpath(p, NULL);
			if (!t) {
				unlink(p); /* dangling */
				continue;
			}
			g->links = xrealloc(g->links, (g->nlinks + 1) * sizeof(char *));
			g->links[g->nlinks++] = t;
		} else if (S_ISDIR(lst.st_mode)) {
			if (strncmp(e->d_name, "sha256:", 7) == 0) {
				g->digests =
				    xrealloc(g->digests, (g->ndigests + 1) * sizeof(char *));
				g->digests[g->ndigests++] = realpath(p, NULL);
				if (!g->digests[g->ndigests - 1])
					g->digests[g->ndigests - 1] = xstrdup(p);
			} else {
				gc_walk(p, g, err);
			}
		}
	}
}

int vmm_cache_gc(const vmm_home *h, vmm_error **err)
{
	gc_ctx g = {0};
	gc_walk(h->ocis, &g, err);
	int rc = 0;
	for (size_t i = 0; i < g.ndigests && rc == 0; i++) {
		bool referenced = false;
		for (size_t j = 0; j < g.nlinks && !referenced; j++)
			referenced = strcmp(g.links[j], g.digests[i]) == 0;
		cleanup_free char *marker = path_join(g.digests[i], VMM_EXPLICITLY_PULLED_FILE);
		if (!referenced && access(marker, F_OK) < 0)
			rc = vmm_rm_rf(g.digests[i], err);
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
	} else if (vmm_rm_rf(p, err) < 0) {
		return -1;
	}
	return vmm_cache_gc(h, err);
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

static void img_walk(const char *dir, const char *host, const char *ns, img_ctx *c)
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
		if (lstat(p, &st) < 0 || !S_ISDIR(st.st_mode))
			continue;
		if (strncmp(e->d_name, "sha256:", 7) == 0) {
			cleanup_free char *m = path_join(p, VMM_MANIFEST_FILE);
			cleanup_free char *disk = path_join(p, VMM_DISK_FILE);
			if (!ns || access(m, F_OK) < 0 || access(disk, F_OK) < 0)
				continue;
			c->v = xrealloc(c->v, (c->n + 1) * sizeof(*c->v));
			c->v[c->n++] = (vmm_cache_image){
			    .dir = xstrdup(p),
			    .host = xstrdup(host),
			    .namespace = xstrdup(ns),
			    .digest = xstrdup(e->d_name),
			};
		} else {
			cleanup_free char *sub =
			    ns ? xasprintf("%s/%s", ns, e->d_name) : xstrdup(e->d_name);
			img_walk(p, host, sub, c);
		}
	}
}

int vmm_cache_images(const vmm_home *h, vmm_cache_image **out, size_t *n, vmm_error **err)
{
	UNUSED(err);
	img_ctx c = {0};
	cleanup_dir DIR *d = opendir(h->ocis);
	struct dirent *e;
	while (d && (e = readdir(d))) {
		if (e->d_name[0] == '.')
			continue;
		cleanup_free char *p = path_join(h->ocis, e->d_name);
		cleanup_free char *host = decode_percent(e->d_name);
		img_walk(p, host, NULL, &c);
	}
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
