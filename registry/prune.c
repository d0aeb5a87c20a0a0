#include "registry/prune.h"
#include "common/util.h"
#include "registry/cache.h"
#include "vm/bundle.h"
#include "vm/ops.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>
#include <sys/statvfs.h>

void vmm_prunables_free(vmm_prunable *v, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(v[i].path);
		free(v[i].name);
	}
	free(v);
}

typedef struct plist {
	vmm_prunable *v;
	size_t n;
} plist;

static void add(plist *l, const char *path, const char *name, bool is_vm)
{
	uint64_t alloc = 0;
	time_t acc;
	struct stat st;
	if (is_vm || path_is_dir(path)) {
		vmm_bundle_dir_sizes(path, NULL, &alloc, NULL);
		acc = vmm_access_date_get(path);
	} else if (stat(path, &st) == 0) {
		alloc = (uint64_t)st.st_blocks * 512;
		acc = st.st_atime;
	} else {
		return;
	}
	l->v = xrealloc(l->v, (l->n + 1) * sizeof(*l->v));
	l->v[l->n++] = (vmm_prunable){
	    .path = xstrdup(path),
	    .name = xstrdup(name),
	    .accessed = acc,
	    .allocated = alloc,
	    .is_vm = is_vm,
	};
}

/* OCI digest directories anywhere under OCIs/ (tags are links, not entries). */
static void digest_visit(void *ctx, const vmm_cache_item *it)
{
	if (!it->is_tag)
		add(ctx, it->path, it->path, false);
}

int vmm_prunables(const vmm_home *h, vmm_prune_entries which, vmm_prunable **out, size_t *n,
		  vmm_error **err)
{
	plist l = {0};
	if (which == VMM_PRUNE_CACHES) {
		vmm_cache_walk(h, digest_visit, &l);
		cleanup_free char *ipsws = path_join(h->cache, "IPSWs");
		cleanup_dir DIR *d = opendir(ipsws);
		struct dirent *e;
		while (d && (e = readdir(d))) {
			size_t len = strlen(e->d_name);
			if (len > 5 && strcmp(e->d_name + len - 5, ".ipsw") == 0) {
				cleanup_free char *p = path_join(ipsws, e->d_name);
				add(&l, p, p, false);
			}
		}
	} else {
		char **names = NULL;
		size_t cnt = 0;
		if (vmm_bundle_list_names(h, &names, &cnt, err) < 0)
			return -1;
		for (size_t i = 0; i < cnt; i++) {
			cleanup_free char *dir = vmm_home_vm_dir(h, names[i]);
			if (!vmm_bundle_dir_is_running(dir))
				add(&l, dir, names[i], true);
		}
		vmm_strv_free(names, cnt);
	}
	*out = l.v;
	*n = l.n;
	return 0;
}

/* 0 removed, 1 left alone (running, or in use by another command), -1 error. */
static int remove_entry(const vmm_home *h, const vmm_prunable *p, vmm_error **err)
{
	if (!p->is_vm && !path_is_dir(p->path)) {
		if (unlink(p->path) < 0 && errno != ENOENT)
			return vmm_error_errno(err, errno, "remove `%s`", p->path);
		return 0;
	}
	/* out of sight in one rename, then removed at leisure */
	vmm_error *e = NULL;
	int rc = p->is_vm ? vmm_vm_delete(h, p->name, &e) : vmm_cache_remove_dir(h, p->path, &e);
	int code = vmm_error_code(e);
	if (rc < 0 && (code == VMM_ELOCKED || code == VMM_ERUNNING || code == VMM_ENOTFOUND)) {
		vmm_error_free(e);
		return 1;
	}
	if (rc < 0 && err) {
		vmm_error_free(*err);
		*err = e;
		return -1;
	}
	vmm_error_free(e);
	return rc;
}

static int finish(const vmm_home *h, vmm_prune_entries which, vmm_error **err)
{
	/* deleting digest directories leaves dangling tags: tidy them now */
	return which == VMM_PRUNE_CACHES ? vmm_cache_gc(h, err) : 0;
}

int vmm_prune_older_than(const vmm_home *h, vmm_prune_entries which, time_t cutoff, size_t *deleted,
			 vmm_error **err)
{
	vmm_prunable *v = NULL;
	size_t n = 0, del = 0;
	if (vmm_prunables(h, which, &v, &n, err) < 0)
		return -1;
	int rc = 0;
	for (size_t i = 0; i < n && rc == 0; i++) {
		if (v[i].accessed <= cutoff) {
			rc = remove_entry(h, &v[i], err);
			del += rc == 0;
			rc = rc > 0 ? 0 : rc;
		}
	}
	vmm_prunables_free(v, n);
	if (deleted)
		*deleted = del;
	return rc < 0 ? rc : finish(h, which, err);
}

static int by_access_desc(const void *a, const void *b)
{
	time_t x = ((const vmm_prunable *)a)->accessed, y = ((const vmm_prunable *)b)->accessed;
	return x < y ? 1 : x > y ? -1 : 0;
}

static int by_access_asc(const void *a, const void *b)
{
	return -by_access_desc(a, b);
}

int vmm_prune_space_budget(const vmm_home *h, vmm_prune_entries which, uint64_t budget,
			   size_t *deleted, vmm_error **err)
{
	vmm_prunable *v = NULL;
	size_t n = 0, del = 0;
	if (vmm_prunables(h, which, &v, &n, err) < 0)
		return -1;
	if (n)
		qsort(v, n, sizeof(*v), by_access_desc);
	uint64_t left = budget;
	int rc = 0;
	for (size_t i = 0; i < n && rc == 0; i++) {
		if (v[i].allocated <= left) {
			left -= v[i].allocated;
			continue;
		}
		rc = remove_entry(h, &v[i], err);
		del += rc == 0;
		rc = rc > 0 ? 0 : rc;
	}
	vmm_prunables_free(v, n);
	if (deleted)
		*deleted = del;
	return rc < 0 ? rc : finish(h, which, err);
}

int vmm_fs_available(const char *path, uint64_t *out, vmm_error **err)
{
	struct statvfs s;
	if (statvfs(path, &s) < 0)
		return vmm_error_errno(err, errno, "statvfs `%s`", path);
	*out = (uint64_t)s.f_bavail * (uint64_t)s.f_frsize;
	return 0;
}

int vmm_prune_reclaim(const vmm_home *h, uint64_t required, const char *initiator,
		      uint64_t *reclaimed, vmm_error **err)
{
	uint64_t avail = 0;
	if (reclaimed)
		*reclaimed = 0;
	if (getenv("VMM_NO_AUTO_PRUNE") || getenv("TART_NO_AUTO_PRUNE"))
		return 0;
	if (vmm_fs_available(h->cache, &avail, err) < 0)
		return -1;
	return vmm_prune_reclaim_avail(h, required, avail, initiator, reclaimed, err);
}

int vmm_prune_reclaim_avail(const vmm_home *h, uint64_t required, uint64_t avail,
			    const char *initiator, uint64_t *reclaimed, vmm_error **err)
{
	if (reclaimed)
		*reclaimed = 0;
	if (getenv("VMM_NO_AUTO_PRUNE") || getenv("TART_NO_AUTO_PRUNE"))
		return 0;
	if (required < avail)
		return 0;
	uint64_t need = required - avail;
	vmm_prunable *v = NULL;
	size_t n = 0;
	if (vmm_prunables(h, VMM_PRUNE_CACHES, &v, &n, err) < 0)
		return -1;
	uint64_t total = 0;
	for (size_t i = 0; i < n; i++)
		total += v[i].allocated;
	int rc = 0;
	uint64_t got = 0;
	if (total >= need) {
		qsort(v, n, sizeof(*v), by_access_asc);
		cleanup_free char *init = initiator ? realpath(initiator, NULL) : NULL;
		for (size_t i = 0; i < n && got <= need && rc == 0; i++) {
			cleanup_free char *real = realpath(v[i].path, NULL);
			if (init && real && strcmp(init, real) == 0)
				continue;
			rc = remove_entry(h, &v[i], err);
			if (rc == 0)
				got += v[i].allocated;
			rc = rc > 0 ? 0 : rc;
		}
	}
	vmm_prunables_free(v, n);
	if (reclaimed)
		*reclaimed = got;
	return rc < 0 ? rc : (got ? vmm_cache_gc(h, err) : 0);
}
