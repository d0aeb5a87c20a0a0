#include "vm/snapshot.h"
#include "common/util.h"
#include "vm/bundle.h"
#include "vm/run.h"
#include "vm/transfer.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/time.h>

#define STAGING_PREFIX ".new-"
#define TRASH_PREFIX ".del-"
#define RESTORE_PREFIX ".restore-"

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

/* fsync every regular file at the top of dir, then dir itself. */
static int sync_tree(const char *dir, vmm_error **err)
{
	cleanup_dir DIR *d = opendir(dir);
	if (!d)
		return vmm_error_errno(err, errno, "open `%s`", dir);
	struct dirent *e;
	while ((e = readdir(d))) {
		struct stat st;
		if (fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 ||
		    !S_ISREG(st.st_mode))
			continue;
		cleanup_close int fd =
		    openat(dirfd(d), e->d_name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
		if (fd < 0 || fsync(fd) < 0)
			return vmm_error_errno(err, errno, "sync `%s/%s`", dir, e->d_name);
	}
	return vmm_fsync_dir(dir, true, err);
}

/* --- staging and leftovers ------------------------------------------------------ */

/*
 * Work under way in snapshots/ happens in hidden directories, each flock()ed
 * by the process working there for as long as it does: .new-<uuid> (a
 * snapshot being made) and .del-<uuid> (one being removed).  One that nobody
 * holds was left by a killed command; whoever comes next removes it.
 */
void vmm_snapshot_collect(const char *vm_dir)
{
	cleanup_free char *root = path_join(vm_dir, VMM_SNAPSHOTS_DIR);
	cleanup_dir DIR *d = opendir(root);
	struct dirent *e;
	bool removed = false;
	while (d && (e = readdir(d))) {
		if (strncmp(e->d_name, STAGING_PREFIX, strlen(STAGING_PREFIX)) != 0 &&
		    strncmp(e->d_name, TRASH_PREFIX, strlen(TRASH_PREFIX)) != 0)
			continue;
		cleanup_free char *p = path_join(root, e->d_name);
		cleanup_close int lock = -1;
		if (vmm_flock_path(p, LOCK_EX | LOCK_NB, &lock, NULL) < 0)
			continue; /* at work, or gone meanwhile */
		if (vmm_rm_rf(p, NULL) == 0)
			removed = true;
	}
	if (removed)
		vmm_fsync_dir(root, true, NULL);
}

/*
 * A new hidden directory snapshots/<prefix><uuid>, locked (*lock) for the
 * caller.  Between mkdir and flock another process may collect it: check
 * that the locked inode is the one at the path, else start over.
 */
static char *hidden_dir(const char *vm_dir, const char *prefix, int *lock, vmm_error **err)
{
	cleanup_free char *root = path_join(vm_dir, VMM_SNAPSHOTS_DIR);
	bool made = !path_is_dir(root);
	if (vmm_mkdir_p(root, err) < 0)
		return NULL;
	/* a new snapshots/ must outlive a crash as surely as what goes in it */
	if (made && vmm_fsync_dir(vm_dir, true, err) < 0)
		return NULL;
	for (int attempt = 0; attempt < 8; attempt++) {
		char uuid[37];
		vmm_uuid(uuid);
		char *p = xasprintf("%s/%s%s", root, prefix, uuid);
		if (mkdir(p, 0755) < 0) {
			vmm_error_errno(err, errno, "create `%s`", p);
			free(p);
			return NULL;
		}
		cleanup_close int fd = -1;
		struct stat locked, now;
		if (vmm_flock_path(p, LOCK_EX | LOCK_NB, &fd, NULL) == 0 &&
		    fstat(fd, &locked) == 0 && stat(p, &now) == 0 && locked.st_ino == now.st_ino &&
		    locked.st_dev == now.st_dev) {
			*lock = steal_fd(fd);
			return p;
		}
		free(p);
	}
	vmm_error_set(err, EAGAIN, "create a directory in `%s`: removed as soon as made", root);
	return NULL;
}

static char *staging_dir(const char *vm_dir, int *lock, vmm_error **err)
{
	vmm_snapshot_collect(vm_dir);
	return hidden_dir(vm_dir, STAGING_PREFIX, lock, err);
}

/*
 * Publish a finished staging dir as snapshots/<snap>: its files and itself
 * synced first, so that the name never points at data a crash could take
 * back; renamed without replacing anything; snapshots/ synced after, so
 * that a snapshot reported made stays made.
 */
static int publish(const char *staging, const char *dest, const char *vm_name, const char *snap,
		   vmm_error **err)
{
	struct timeval now[2];
	gettimeofday(&now[0], NULL);
	now[1] = now[0];
	utimes(staging, now); /* creation time, read back by list */
	if (sync_tree(staging, err) < 0)
		return -1;
	vmm_test_pause("snapshot-publish");
	if (renameat2(AT_FDCWD, staging, AT_FDCWD, dest, RENAME_NOREPLACE) < 0) {
		if (errno == EEXIST || errno == ENOTEMPTY)
			return vmm_error_set(err, VMM_EEXISTS,
					     "VM \"%s\" already has a snapshot \"%s\"", vm_name,
					     snap);
		return vmm_error_errno(err, errno, "create snapshot `%s`", dest);
	}
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

/* Copies into staging: data on its way to the device at once, synced before publishing. */
static const vmm_copy_opts staging_copy = {.write_back = true};

/* A running VM: its `vmm run` saves memory and disk into staging; the rest is copied. */
static int create_live(const vmm_home *h, const char *vm_dir, const char *vm_name, const char *snap,
		       const char *dest, vmm_copy_stats *stats, vmm_error **err)
{
	cleanup_close int lock = -1;
	cleanup_free char *staging = staging_dir(vm_dir, &lock, err);
	if (!staging)
		return -1;
	int rc = -1;
	if (vmm_vm_checkpoint(h, vm_name, staging, NULL, err) == 0 &&
	    vmm_copy_dir(vm_dir, staging, false, not_carried_or_live, &staging_copy, stats, err) ==
		0)
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

	cleanup_close int staging_lock = -1;
	cleanup_free char *staging = staging_dir(vm_dir, &staging_lock, err);
	if (!staging)
		return -1;
	cleanup_free char *cfg_out = path_join(staging, VMM_CONFIG_FILE);
	int rc = -1;
	if (vmm_copy_dir(vm_dir, staging, false, not_carried_or_config, &staging_copy, stats, err) <
		0 ||
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

/* --- restore ---------------------------------------------------------------------- */

/*
 * A restore builds the VM's new bundle beside it and swaps the two
 * directories with one rename (RENAME_EXCHANGE), so the VM is its old self
 * or its new one, never a mix, and Tart's layout is kept: vms/<vm>/ holds
 * the files, as ever.
 *
 *   1. under the VM's write lock, a journal vms/.restore-<uuid> ("VM\n<dev>
 *      <inode of the VM's directory>\n"), written durably under the home
 *      lock;
 *   2. vms/.restore-<uuid>.d: the snapshot's files (reflinked where
 *      possible), synced;
 *   3. what the VM keeps across a restore moves in: snapshots/ (the
 *      snapshot restored from among them), cache metadata, hidden files;
 *   4. the new config.json locked too, so the VM is never free to run
 *      while half done; both directories synced;
 *   5. the exchange, then vms/ synced: done;
 *   6. the old files removed, the journal last.
 *
 * A killed restore is finished or undone by vmm_snapshot_recover() (run
 * before every command, see vmm_vm_recover): if the VM's directory is
 * still the journal's inode, nothing was swapped: what step 3 moved goes
 * back and the rest is removed; otherwise the swap happened and only the
 * removal is left.  Either way the VM's snapshots stay, out of sight at
 * most until then.
 */

/*
 * Is `name` (an entry of a VM's directory, of type mode) one of the VM's
 * own files that a restore replaces?  Everything else the VM keeps.
 */
static bool replaced(const char *name, mode_t mode)
{
	return S_ISREG(mode) && !not_carried(name);
}

/*
 * Move entries of from/ into to/ without replacing any: at the top only
 * those a restore keeps (top), below that all.  Directories present on
 * both sides are merged.  Fails, leaving the rest in place, on a file
 * present on both sides.
 */
static int move_kept(const char *from, const char *to, bool top, vmm_error **err)
{
	cleanup_dir DIR *d = opendir(from);
	if (!d)
		return errno == ENOENT ? 0 : vmm_error_errno(err, errno, "open `%s`", from);
	struct dirent *e;
	while ((e = readdir(d))) {
		struct stat st;
		if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0 ||
		    fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 ||
		    (top && replaced(e->d_name, st.st_mode)))
			continue;
		cleanup_free char *s = path_join(from, e->d_name);
		cleanup_free char *t = path_join(to, e->d_name);
		if (renameat2(AT_FDCWD, s, AT_FDCWD, t, RENAME_NOREPLACE) == 0)
			continue;
		if (errno == EEXIST && S_ISDIR(st.st_mode) && path_is_dir(t)) {
			if (move_kept(s, t, false, err) < 0)
				return -1;
			continue;
		}
		return vmm_error_errno(err, errno, "move `%s` to `%s`", s, t);
	}
	return 0;
}

static char *restore_journal_text(const char *vm_name, const struct stat *st)
{
	return xasprintf("%s\n%llu %llu\n", vm_name, (unsigned long long)st->st_dev,
			 (unsigned long long)st->st_ino);
}

/* The journal, durably, under the home lock (vmm_snapshot_recover's). */
static int write_journal(const vmm_home *h, const char *journal, const char *text, vmm_error **err)
{
	cleanup_close int home_lock = -1;
	if (vmm_home_lock(h, &home_lock, err) < 0)
		return -1;
	return vmm_write_file_atomic(journal, text, strlen(text), 0644, err);
}

/*
 * Steps 2 to 5 (see above).  *swapped tells whether the exchange was made
 * (then even a failure leaves the new VM in place).  On a failure before
 * it, the VM is put back as it was; if even that fails, staged stays for
 * recovery to finish (*undone false).
 */
static int restore_swap(const char *src, const char *vm_dir, const char *staged,
			const char *vm_name, const struct stat *vst, int *new_lock, bool *swapped,
			bool *undone, vmm_error **err)
{
	*swapped = false;
	*undone = true;
	if (mkdir(staged, vst->st_mode & 07777) < 0)
		return vmm_error_errno(err, errno, "create `%s`", staged);
	/* the VM's directory keeps its owner and mode (root restoring another user's VM) */
	(void)!chown(staged, vst->st_uid, vst->st_gid);
	chmod(staged, vst->st_mode & 07777);
	bool moved = false;
	if (vmm_copy_dir(src, staged, false, not_carried, &staging_copy, NULL, err) < 0 ||
	    sync_tree(staged, err) < 0)
		goto undo;
	moved = true;
	if (move_kept(vm_dir, staged, true, err) < 0)
		goto undo;
	vmm_test_pause("snapshot-restore-staged");
	/* the new config.json is locked before it is the VM's: `vmm run` must
	 * find the VM busy until the restore has ended */
	if (vmm_bundle_dir_lock(staged, vm_name, new_lock, err) < 0)
		goto undo;
	/* the VM's access date (the directory's times) stays the VM's */
	struct timespec times[2] = {vst->st_atim, vst->st_mtim};
	utimensat(AT_FDCWD, staged, times, 0);
	if (vmm_fsync_dir(staged, true, err) < 0 || vmm_fsync_dir(vm_dir, true, err) < 0)
		goto undo;
	if (renameat2(AT_FDCWD, staged, AT_FDCWD, vm_dir, RENAME_EXCHANGE) < 0) {
		vmm_error_errno(err, errno, "replace `%s`", vm_dir);
		goto undo;
	}
	*swapped = true;
	return vmm_fsync_dir(vm_dir, false, err);
undo:
	if (moved && move_kept(staged, vm_dir, true, NULL) < 0) {
		*undone = false; /* what the VM keeps is still in staged */
		return -1;
	}
	vmm_rm_rf(staged, NULL);
	return -1;
}

int vmm_snapshot_restore(const vmm_home *h, const char *vm_dir, const char *vm_name,
			 const char *snap, vmm_error **err)
{
	if (vmm_snapshot_check_name(snap, err) < 0)
		return -1;
	cleanup_free char *src = vmm_snapshot_dir(vm_dir, snap);
	if (!vmm_bundle_dir_is_vm(src))
		return snapshot_missing(err, vm_name, snap);
	cleanup_close int lock = -1;
	if (vmm_bundle_dir_lock(vm_dir, vm_name, &lock, err) < 0)
		return -1;
	struct stat vst;
	if (stat(vm_dir, &vst) < 0)
		return vmm_error_errno(err, errno, "stat `%s`", vm_dir);
	char uuid[37];
	vmm_uuid(uuid);
	cleanup_free char *journal = xasprintf("%s/" RESTORE_PREFIX "%s", h->vms, uuid);
	cleanup_free char *staged = xasprintf("%s.d", journal);
	cleanup_free char *text = restore_journal_text(vm_name, &vst);
	if (write_journal(h, journal, text, err) < 0)
		return -1;
	cleanup_close int new_lock = -1;
	bool swapped, undone;
	int rc =
	    restore_swap(src, vm_dir, staged, vm_name, &vst, &new_lock, &swapped, &undone, err);
	if (rc < 0 && !swapped) {
		if (undone)
			unlink(journal);
		return -1;
	}
	vmm_test_pause("snapshot-restore-swapped");
	/* the VM is the snapshot now: what is left is tidying up, which
	 * recovery redoes if this is cut short */
	vmm_rm_rf(staged, NULL);
	unlink(journal);
	vmm_fsync_dir(h->vms, true, NULL);
	return rc;
}

/* Finish or undo one killed restore (its journal at vms/<name>); see above. */
static int recover_restore(const vmm_home *h, const char *journal, vmm_error **err)
{
	cleanup_free char *staged = xasprintf("%s.d", journal);
	cleanup_free char *text = NULL;
	size_t len = 0;
	if (vmm_read_file(journal, 4096, &text, &len, NULL) < 0)
		return 0; /* finished by another process meanwhile */
	char vm_name[256];
	unsigned long long dev = 0, ino = 0;
	if (sscanf(text, "%255[^\n]\n%llu %llu", vm_name, &dev, &ino) != 3 ||
	    !vmm_name_is_valid(vm_name))
		return vmm_error_set(err, VMM_EFORMAT, "`%s` is not a restore journal", journal);
	cleanup_free char *vm_dir = vmm_home_vm_dir(h, vm_name);
	/* the restore may still be under way: it holds the VM's lock throughout */
	cleanup_close int lock = -1;
	cleanup_vmm_error vmm_error *busy = NULL;
	if (vmm_bundle_dir_is_vm(vm_dir) &&
	    vmm_bundle_dir_lock(vm_dir, vm_name, &lock, &busy) < 0) {
		int code = vmm_error_code(busy);
		if (code == VMM_ERUNNING || code == VMM_ELOCKED)
			return 0; /* under way, or the VM in use: a later command */
		if (err)
			*err = steal_ptr(busy);
		return -1;
	}
	struct stat vst, sst;
	bool swapped = !(stat(vm_dir, &vst) == 0 && vst.st_dev == dev && vst.st_ino == ino);
	if (lstat(staged, &sst) == 0 && S_ISDIR(sst.st_mode) && path_is_dir(vm_dir)) {
		/* not swapped: what the VM keeps goes back; swapped: whatever of it
		 * had not moved yet goes over (nothing: it moves before the swap) */
		if (move_kept(staged, vm_dir, true, err) < 0)
			return vmm_error_wrap(err, "%s restoring VM \"%s\" from a snapshot",
					      swapped ? "finish" : "undo", vm_name);
		if (vmm_fsync_dir(vm_dir, true, err) < 0)
			return -1;
	}
	if (vmm_rm_rf(staged, err) < 0)
		return -1;
	unlink(journal);
	return vmm_fsync_dir(h->vms, true, err);
}

int vmm_snapshot_recover(const vmm_home *h, const char *name, vmm_error **err)
{
	size_t l = strlen(name);
	if (strncmp(name, RESTORE_PREFIX, strlen(RESTORE_PREFIX)) != 0)
		return 0;
	cleanup_free char *p = path_join(h->vms, name);
	if (strstr(name, ".tmp-")) /* a journal never written whole */
		return unlink(p) < 0 && errno != ENOENT
			   ? vmm_error_errno(err, errno, "remove `%s`", p)
			   : 0;
	if (l > 2 && strcmp(name + l - 2, ".d") == 0) {
		/* a staging directory without its journal: the journal comes first,
		 * so this is a restore's tidying up that was cut short */
		cleanup_free char *j = xstrndup(p, strlen(p) - 2);
		if (path_exists(j))
			return 0;
		return vmm_rm_rf(p, err);
	}
	return recover_restore(h, p, err);
}

/* --- delete, import, and the rest ---------------------------------------------------- */

int vmm_snapshot_delete(const char *vm_dir, const char *vm_name, const char *snap, vmm_error **err)
{
	if (vmm_snapshot_check_name(snap, err) < 0)
		return -1;
	vmm_snapshot_collect(vm_dir); /* a delete that was killed is finished first */
	cleanup_free char *dir = vmm_snapshot_dir(vm_dir, snap);
	if (!path_is_dir(dir))
		return snapshot_missing(err, vm_name, snap);
	/*
	 * Out of sight in one rename, durably, then removed at leisure.  The
	 * lock goes with the directory: while it is held, no other process
	 * collects .del-<uuid>; once this one dies, the next one does.
	 */
	cleanup_close int lock = -1;
	cleanup_vmm_error vmm_error *busy = NULL;
	if (vmm_flock_path(dir, LOCK_EX | LOCK_NB, &lock, &busy) < 0) {
		if (vmm_error_code(busy) == VMM_ELOCKED)
			return vmm_error_set(err, VMM_ELOCKED,
					     "snapshot \"%s\" of VM \"%s\" is being deleted by "
					     "another vmm command",
					     snap, vm_name);
		return errno == ENOENT ? snapshot_missing(err, vm_name, snap)
				       : vmm_error_errno(err, errno, "remove `%s`", dir);
	}
	char uuid[37];
	vmm_uuid(uuid);
	cleanup_free char *trash =
	    xasprintf("%s/" VMM_SNAPSHOTS_DIR "/" TRASH_PREFIX "%s", vm_dir, uuid);
	if (rename(dir, trash) < 0)
		return errno == ENOENT ? snapshot_missing(err, vm_name, snap)
				       : vmm_error_errno(err, errno, "remove `%s`", dir);
	if (vmm_fsync_dir(trash, false, err) < 0)
		return -1;
	vmm_test_pause("snapshot-delete-hidden");
	if (vmm_rm_rf(trash, err) < 0)
		return -1;
	vmm_fsync_dir(trash, false, NULL);
	return 0;
}

int vmm_snapshot_import(const char *vm_dir, const char *vm_name, const char *snap, const char *path,
			vmm_error **err)
{
	cleanup_free char *dest = new_snapshot_dest(vm_dir, vm_name, snap, err);
	if (!dest)
		return -1;
	cleanup_close int lock = -1;
	cleanup_free char *staging = staging_dir(vm_dir, &lock, err);
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
	cleanup_close int lock = -1;
	cleanup_free char *staging = staging_dir(vm_dir, &lock, err);
	if (!staging)
		return -1;
	int rc = -1;
	if (vmm_copy_dir(src_dir, staging, false, not_carried, &staging_copy, NULL, err) == 0)
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
