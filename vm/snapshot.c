#include "vm/snapshot.h"
#include "common/util.h"
#include "vm/bundle.h"
#include "vm/run.h"
#include "vm/transfer.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>
#include <sys/time.h>

char *vmm_snapshot_dir(const char *vm_dir, const char *snap)
{
	return xasprintf("%s/" VMM_SNAPSHOTS_DIR "/%s", vm_dir, snap);
}

int vmm_snapshot_check_name(const char *snap, vmm_error **err)
{
	if (!vmm_name_is_valid(snap) || snap[0] == '.' || strchr(snap, '@'))
		return vmm_error_set(err, VMM_EUSAGE,
				     "\"%s\" is not a valid snapshot name: it must be non-empty, "
				     "not start with '.', and contain no '/' or '@'",
				     snap);
	return 0;
}

static int snapshot_missing(vmm_error **err, const char *vm_name, const char *snap)
{
	return vmm_error_set(err, VMM_ENOTFOUND, "VM \"%s\" has no snapshot \"%s\"", vm_name, snap);
}

/* What a snapshot carries: the bundle's top-level files, not cache metadata. */
static bool not_carried(const char *name)
{
	return strcmp(name, VMM_MANIFEST_FILE) == 0 ||
	       strcmp(name, VMM_EXPLICITLY_PULLED_FILE) == 0 || name[0] == '.' ||
	       strstr(name, ".tmp") != NULL;
}

static bool not_carried_or_config(const char *name)
{
	return not_carried(name) || strcmp(name, VMM_CONFIG_FILE) == 0;
}

/* A staging dir beside the snapshots: snapshots/.new-<uuid> */
static char *staging_dir(const char *vm_dir, vmm_error **err)
{
	cleanup_free char *root = path_join(vm_dir, VMM_SNAPSHOTS_DIR);
	if (vmm_mkdir_p(root, err) < 0)
		return NULL;
	char uuid[37];
	vmm_uuid(uuid);
	char *p = xasprintf("%s/.new-%s", root, uuid);
	if (mkdir(p, 0755) < 0) {
		vmm_error_errno(err, errno, "create `%s`", p);
		free(p);
		return NULL;
	}
	return p;
}

/* Rename a finished staging dir to snapshots/<snap>, refusing to replace one. */
static int publish(const char *staging, const char *dest, const char *vm_name, const char *snap,
		   vmm_error **err)
{
	if (path_exists(dest))
		return vmm_error_set(err, VMM_EEXISTS, "VM \"%s\" already has a snapshot \"%s\"",
				     vm_name, snap);
	if (vmm_fsync_dir(staging, true, err) < 0)
		return -1;
	if (rename(staging, dest) < 0)
		return vmm_error_errno(err, errno, "create snapshot `%s`", dest);
	struct timeval now[2];
	gettimeofday(&now[0], NULL);
	now[1] = now[0];
	utimes(dest, now); /* creation time, read back by list */
	return vmm_fsync_dir(dest, false, err);
}

/* The directory a new snapshot will take; NULL (with *err) if the name is bad or taken. */
static char *new_snapshot_dest(const char *vm_dir, const char *vm_name, const char *snap,
			       vmm_error **err)
{
	if (vmm_snapshot_check_name(snap, err) < 0)
		return NULL;
	char *dest = vmm_snapshot_dir(vm_dir, snap);
	if (path_exists(dest)) {
		vmm_error_set(err, VMM_EEXISTS, "VM \"%s\" already has a snapshot \"%s\"", vm_name,
			      snap);
		free(dest);
		return NULL;
	}
	return dest;
}

/* Files the checkpoint of a running VM does not write: config, nvram, kernel... */
static bool not_carried_or_live(const char *name)
{
	return not_carried(name) || strcmp(name, VMM_STATE_FILE) == 0 ||
	       strcmp(name, VMM_DISK_FILE) == 0 || strcmp(name, VMM_EFIVARS_FILE) == 0;
}

/* A running VM: its `vmm run` saves memory and disk into staging; the rest is copied. */
static int create_live(const vmm_home *h, const char *vm_dir, const char *vm_name, const char *snap,
		       const char *dest, vmm_copy_stats *stats, vmm_error **err)
{
	cleanup_free char *staging = staging_dir(vm_dir, err);
	if (!staging)
		return -1;
	int rc = -1;
	if (vmm_vm_checkpoint(h, vm_name, staging, NULL, err) == 0 &&
	    vmm_copy_dir(vm_dir, staging, false, not_carried_or_live, NULL, stats, err) == 0)
		rc = publish(staging, dest, vm_name, snap, err);
	if (rc < 0)
		vmm_rm_rf(staging, NULL);
	return rc;
}

int vmm_snapshot_create(const vmm_home *h, const char *vm_dir, const char *vm_name,
			const char *snap, vmm_copy_stats *stats, vmm_error **err)
{
	cleanup_free char *dest = new_snapshot_dest(vm_dir, vm_name, snap, err);
	if (!dest)
		return -1;
	/* the running lock keeps the VM from starting mid-copy; config.json is
	 * read through it (closing another descriptor would drop the lock) */
	cleanup_close int lock = -1;
	if (vmm_bundle_dir_lock_as(vm_dir, vm_name, VMM_LOCK_READ, &lock, err) < 0) {
		if (vmm_error_code(*err) != VMM_ERUNNING)
			return -1;
		return create_live(h, vm_dir, vm_name, snap, dest, stats, err);
	}
	struct stat st;
	if (fstat(lock, &st) < 0 || st.st_size > (1 << 20))
		return vmm_error_set(err, VMM_EINVAL, "`%s/config.json` is unreadable", vm_dir);
	cleanup_free char *cfg = xmalloc((size_t)st.st_size + 1);
	if (vmm_pread_all(lock, cfg, (size_t)st.st_size, 0) < 0)
		return vmm_error_errno(err, errno, "read `%s/config.json`", vm_dir);

	cleanup_free char *staging = staging_dir(vm_dir, err);
	if (!staging)
		return -1;
	cleanup_free char *cfg_out = path_join(staging, VMM_CONFIG_FILE);
	int rc = -1;
	if (vmm_copy_dir(vm_dir, staging, false, not_carried_or_config, NULL, stats, err) < 0 ||
	    vmm_write_file_atomic(cfg_out, cfg, (size_t)st.st_size, 0644, err) < 0)
		goto out;
	rc = publish(staging, dest, vm_name, snap, err);
out:
	if (rc < 0)
		vmm_rm_rf(staging, NULL);
	return rc;
}

static int cmp_info(const void *a, const void *b)
{
	const vmm_snapshot_info *x = a, *y = b;
	if (x->created != y->created)
		return x->created < y->created ? -1 : 1;
	return strcmp(x->name, y->name);
}

void vmm_snapshot_infos_free(vmm_snapshot_info *v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(v[i].name);
	free(v);
}

int vmm_snapshot_list(const char *vm_dir, vmm_snapshot_info **out, size_t *n, vmm_error **err)
{
	*out = NULL;
	*n = 0;
	cleanup_free char *root = path_join(vm_dir, VMM_SNAPSHOTS_DIR);
	cleanup_dir DIR *d = opendir(root);
	if (!d)
		return errno == ENOENT ? 0 : vmm_error_errno(err, errno, "open `%s`", root);
	vmm_snapshot_info *v = NULL;
	size_t cnt = 0;
	struct dirent *e;
	while ((e = readdir(d))) {
		if (e->d_name[0] == '.')
			continue;
		cleanup_free char *p = path_join(root, e->d_name);
		struct stat st;
		if (lstat(p, &st) < 0 || !S_ISDIR(st.st_mode) || !vmm_bundle_dir_is_vm(p))
			continue;
		uint64_t alloc = 0;
		vmm_bundle_dir_sizes(p, NULL, &alloc, NULL);
		cleanup_free char *state = path_join(p, VMM_STATE_FILE);
		v = xrealloc(v, (cnt + 1) * sizeof(*v));
		v[cnt++] = (vmm_snapshot_info){
		    .name = xstrdup(e->d_name),
		    .created = st.st_mtime,
		    .allocated = alloc,
		    .has_memory = access(state, F_OK) == 0,
		};
	}
	if (cnt)
		qsort(v, cnt, sizeof(*v), cmp_info);
	*out = v;
	*n = cnt;
	return 0;
}

/* Files of the VM that a restore replaces or removes, memory state first. */
static int restore_order(const char *name)
{
	if (strcmp(name, VMM_STATE_FILE) == 0)
		return 2; /* written last */
	if (strcmp(name, VMM_CONFIG_FILE) == 0)
		return 1;
	return 0;
}

int vmm_snapshot_restore(const char *vm_dir, const char *vm_name, const char *snap, vmm_error **err)
{
	if (vmm_snapshot_check_name(snap, err) < 0)
		return -1;
	cleanup_free char *src = vmm_snapshot_dir(vm_dir, snap);
	if (!vmm_bundle_dir_is_vm(src))
		return snapshot_missing(err, vm_name, snap);
	cleanup_close int lock = -1;
	if (vmm_bundle_dir_lock(vm_dir, vm_name, &lock, err) < 0)
		return -1;
	/* 1. copy the snapshot beside the VM's files as <name>.restore */
	cleanup_free char *state = path_join(vm_dir, VMM_STATE_FILE);
	cleanup_free char *staging = staging_dir(vm_dir, err);
	if (!staging)
		return -1;
	int rc = -1;
	if (vmm_copy_dir(src, staging, false, not_carried, NULL, NULL, err) < 0 ||
	    vmm_fsync_dir(staging, true, err) < 0)
		goto out;
	/* 2. the VM's memory no longer matches anything: drop it first */
	if (unlink(state) < 0 && errno != ENOENT) {
		vmm_error_errno(err, errno, "remove `%s`", state);
		goto out;
	}
	/* 3. remove VM files the snapshot lacks (say efivars.fd made after it) */
	{
		cleanup_dir DIR *d = opendir(vm_dir);
		struct dirent *e;
		while (d && (e = readdir(d))) {
			struct stat st;
			if (not_carried(e->d_name) ||
			    fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 ||
			    !S_ISREG(st.st_mode))
				continue;
			cleanup_free char *in_snap = path_join(staging, e->d_name);
			if (!path_exists(in_snap) && strcmp(e->d_name, VMM_CONFIG_FILE) != 0)
				unlinkat(dirfd(d), e->d_name, 0);
		}
	}
	/* 4. move the snapshot's files in: data, then config.json, then memory */
	for (int pass = 0; pass <= 2; pass++) {
		cleanup_dir DIR *d = opendir(staging);
		if (!d) {
			vmm_error_errno(err, errno, "open `%s`", staging);
			goto out;
		}
		struct dirent *e;
		while ((e = readdir(d))) {
			if (e->d_name[0] == '.' || restore_order(e->d_name) != pass)
				continue;
			cleanup_free char *from = path_join(staging, e->d_name);
			cleanup_free char *to = path_join(vm_dir, e->d_name);
			if (rename(from, to) < 0) {
				vmm_error_errno(err, errno, "restore `%s`", to);
				goto out;
			}
		}
	}
	rc = vmm_fsync_dir(vm_dir, true, err);
out:
	vmm_rm_rf(staging, NULL);
	return rc;
}

int vmm_snapshot_delete(const char *vm_dir, const char *vm_name, const char *snap, vmm_error **err)
{
	if (vmm_snapshot_check_name(snap, err) < 0)
		return -1;
	cleanup_free char *dir = vmm_snapshot_dir(vm_dir, snap);
	if (!path_is_dir(dir))
		return snapshot_missing(err, vm_name, snap);
	/* out of sight in one rename, then removed */
	char uuid[37];
	vmm_uuid(uuid);
	cleanup_free char *trash = xasprintf("%s/" VMM_SNAPSHOTS_DIR "/.del-%s", vm_dir, uuid);
	if (rename(dir, trash) < 0)
		return vmm_error_errno(err, errno, "remove `%s`", dir);
	vmm_fsync_dir(trash, false, NULL);
	return vmm_rm_rf(trash, err);
}

int vmm_snapshot_import(const char *vm_dir, const char *vm_name, const char *snap, const char *path,
			vmm_error **err)
{
	cleanup_free char *dest = new_snapshot_dest(vm_dir, vm_name, snap, err);
	if (!dest)
		return -1;
	cleanup_free char *staging = staging_dir(vm_dir, err);
	if (!staging)
		return -1;
	int rc = -1;
	if (vmm_vm_unpack(path, staging, err) == 0)
		rc = publish(staging, dest, vm_name, snap, err);
	if (rc < 0)
		vmm_rm_rf(staging, NULL);
	return rc;
}

int vmm_snapshot_resolve(const vmm_home *h, const char *spec, char **dir, vmm_error **err)
{
	const char *at = strrchr(spec, '@');
	if (!at || at == spec || !at[1])
		return 0;
	cleanup_free char *whole = vmm_home_vm_dir(h, spec);
	if (vmm_name_is_valid(spec) && vmm_bundle_dir_is_vm(whole))
		return 0; /* a VM whose name has an '@' */
	cleanup_free char *vm = xstrndup(spec, (size_t)(at - spec));
	cleanup_free char *vm_dir = vmm_home_vm_dir(h, vm);
	if (!vmm_name_is_valid(vm) || !vmm_bundle_dir_is_vm(vm_dir))
		return 0;
	if (vmm_snapshot_check_name(at + 1, err) < 0)
		return -1;
	char *d = vmm_snapshot_dir(vm_dir, at + 1);
	if (!vmm_bundle_dir_is_vm(d)) {
		free(d);
		return snapshot_missing(err, vm, at + 1);
	}
	*dir = d;
	return 1;
}

int vmm_snapshot_from_dir(const char *vm_dir, const char *vm_name, const char *snap,
			  const char *src_dir, vmm_error **err)
{
	cleanup_free char *dest = new_snapshot_dest(vm_dir, vm_name, snap, err);
	if (!dest)
		return -1;
	cleanup_free char *staging = staging_dir(vm_dir, err);
	if (!staging)
		return -1;
	int rc = -1;
	if (vmm_copy_dir(src_dir, staging, false, not_carried, NULL, NULL, err) == 0)
		rc = publish(staging, dest, vm_name, snap, err);
	if (rc < 0)
		vmm_rm_rf(staging, NULL);
	return rc;
}

int vmm_snapshot_source_dir(const vmm_home *h, const char *spec, char **dir, vmm_error **err)
{
	int snap = vmm_snapshot_resolve(h, spec, dir, err);
	if (snap != 0)
		return snap < 0 ? -1 : 0;
	cleanup_vmm_bundle vmm_bundle *b = NULL;
	if (vmm_bundle_open(&b, h, spec, err) < 0)
		return -1;
	*dir = steal_ptr(b->dir);
	return 0;
}
