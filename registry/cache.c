#include "registry/cache.h"
#include "common/util.h"
#include "vm/bundle.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>

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
		cleanup_free char *sub = rel[0] ? xasprintf("%s/%s", rel, e->d_name)
						: xstrdup(e->d_name);
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
				g->digests = xrealloc(g->digests, (g->ndigests + 1) * sizeof(char *));
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
