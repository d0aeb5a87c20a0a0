#include "vm/ops.h"
#include "common/format.h"
#include "common/util.h"
#include "vm/bundle.h"
#include "vm/config.h"
#include "vm/snapshot.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/syscall.h>

int vmm_vm_check_name(const char *name, vmm_error **err)
{
	if (!vmm_name_is_valid(name))
		return vmm_error_set(err, VMM_EUSAGE,
				     "\"%s\" is not a valid VM name: it must be non-empty, not "
				     "\".\" or \"..\", and contain no '/'",
				     name);
	return 0;
}

static int refuse_existing(const vmm_home *h, const char *name, bool force, vmm_error **err)
{
	cleanup_free char *dir = vmm_home_vm_dir(h, name);
	if (!path_exists(dir))
		return 0;
	if (!force)
		return vmm_error_set(err, VMM_EEXISTS,
				     "VM \"%s\" already exists; delete it first or pass --force to "
				     "replace it",
				     name);
	if (vmm_bundle_dir_is_vm(dir) && vmm_bundle_dir_is_running(dir))
		return vmm_error_running(err, name);
	return 0;
}

/*
 * Take the VM directory at `dir` out of vms/ with one rename into tmp/, then
 * remove it there.  The directory is flocked first so that another
 * process's tmp GC leaves it to us.  Call under the home lock.
 */
static int move_out_and_remove(const vmm_home *h, const char *dir, vmm_error **err)
{
	cleanup_close int gc_lock = -1;
	vmm_home_gc_guard(dir, &gc_lock);
	char uuid[37];
	vmm_uuid(uuid);
	cleanup_free char *trash = xasprintf("%s/delete-%s", h->tmp, uuid);
	if (rename(dir, trash) < 0)
		return vmm_error_errno(err, errno, "remove `%s`", dir);
	vmm_fsync_dir(dir, false, NULL);
	return vmm_rm_rf(trash, err);
}

int vmm_vm_install(const vmm_home *h, const char *staging, const char *name, bool force,
		   vmm_error **err)
{
	cleanup_close int lock = -1;
	if (vmm_home_lock(h, &lock, err) < 0)
		return -1;
	if (refuse_existing(h, name, force, err) < 0)
		return -1;
	cleanup_free char *dest = vmm_home_vm_dir(h, name);
	return vmm_home_install(staging, dest, force, err);
}

int vmm_vm_create(const vmm_home *h, const char *name, const vmm_create_opts *o, vmm_error **err)
{
	if (vmm_vm_check_name(name, err) < 0 || refuse_existing(h, name, o->force, err) < 0)
		return -1;
	cleanup_free char *tmp = NULL;
	cleanup_close int tmp_lock = -1;
	if (vmm_home_mktemp(h, &tmp, &tmp_lock, err) < 0)
		return -1;
	int rc = -1;
	cleanup_vmm_config vmm_config *cfg = vmm_config_new_linux();
	if (o->cmdline) {
		cfg->cmdline = xstrdup(o->cmdline);
		vmm_config_to_json(cfg);
	}
	cleanup_free char *cfg_path = path_join(tmp, VMM_CONFIG_FILE);
	cleanup_free char *disk = path_join(tmp, VMM_DISK_FILE);
	cleanup_free char *nvram = path_join(tmp, VMM_NVRAM_FILE);
	static const vmm_copy_opts durable = {.fsync = true};
	if (o->kernel) {
		cleanup_free char *k = path_join(tmp, VMM_KERNEL_FILE);
		if (vmm_copy_file(o->kernel, k, &durable, NULL, err) < 0) {
			vmm_error_wrap(err, "kernel");
			goto out;
		}
		if (o->initramfs) {
			cleanup_free char *i = path_join(tmp, VMM_INITRAMFS_FILE);
			if (vmm_copy_file(o->initramfs, i, &durable, NULL, err) < 0) {
				vmm_error_wrap(err, "initramfs");
				goto out;
			}
		}
	}
	/* a sparse raw disk with nothing on it, as `tart create --linux` makes */
	int fd = open(disk, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
	if (fd < 0 || ftruncate(fd, (off_t)o->disk_size) < 0 || fsync(fd) < 0) {
		vmm_error_errno(err, errno, "create `%s`", disk);
		if (fd >= 0)
			close(fd);
		goto out;
	}
	close(fd);
	/* Tart's nvram.bin is Apple's EFI store; vmm carries it but keeps QEMU's
	 * variables in efivars.fd, so a new VM gets an empty placeholder */
	if (vmm_write_file_atomic(nvram, "", 0, 0644, err) < 0 ||
	    vmm_config_save(cfg, cfg_path, err) < 0)
		goto out;
	rc = vmm_vm_install(h, tmp, name, o->force, err);
out:
	if (rc < 0)
		vmm_rm_rf(tmp, NULL);
	return rc;
}

/* Files that belong to a cache entry or a live process, not to a clone. */
static bool clone_skip(const char *name)
{
	return strcmp(name, VMM_CONFIG_FILE) == 0 || strcmp(name, VMM_MANIFEST_FILE) == 0 ||
	       strcmp(name, VMM_EXPLICITLY_PULLED_FILE) == 0 || strstr(name, ".tmp") != NULL;
}

/*
 * Create path with data and have it written to the device before returning
 * (no cache flush, no metadata commit: see vmm_copy_opts.write_back), or
 * fsync it when `durable`.
 */
static int write_new_file(const char *path, const char *data, size_t len, bool durable,
			  vmm_error **err)
{
	cleanup_close int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
	if (fd < 0)
		return vmm_error_errno(err, errno, "create `%s`", path);
	if (vmm_write_all(fd, data, len) < 0 ||
	    (durable ? fsync(fd)
		     : sync_file_range(fd, 0, 0,
				       SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE |
					   SYNC_FILE_RANGE_WAIT_AFTER)) < 0) {
		int e = errno;
		unlink(path);
		return vmm_error_errno(err, e, "write `%s`", path);
	}
	return 0;
}

/* Is the bundle in dir suspended (vmm's state file or Tart's)? */
static bool dir_suspended(const char *dir)
{
	cleanup_free char *st = path_join(dir, VMM_STATE_FILE);
	cleanup_free char *tart_st = path_join(dir, VMM_TART_STATE_FILE);
	return access(st, F_OK) == 0 || access(tart_st, F_OK) == 0;
}

int vmm_vm_clone(const vmm_home *h, const char *src_dir, const char *src_name, const char *name,
		 const vmm_clone_opts *o, vmm_copy_stats *stats, vmm_error **err)
{
	if (vmm_vm_check_name(name, err) < 0 || refuse_existing(h, name, o->force, err) < 0)
		return -1;
	if (!vmm_bundle_dir_is_vm(src_dir))
		return vmm_error_not_found(err, src_name);
	cleanup_free char *dst_dir = vmm_home_vm_dir(h, name);
	cleanup_free char *src_real = realpath(src_dir, NULL);
	cleanup_free char *dst_real = realpath(dst_dir, NULL);
	if (src_real && dst_real && strcmp(src_real, dst_real) == 0)
		return vmm_error_set(err, VMM_EINVAL, "cannot clone VM \"%s\" onto itself", name);
	cleanup_free char *vms_real = realpath(h->vms, NULL);
	bool src_is_local = src_real && vms_real &&
			    strncmp(src_real, vms_real, strlen(vms_real)) == 0 &&
			    src_real[strlen(vms_real)] == '/';
	/*
	 * Hold the source's running lock while copying so nobody starts it
	 * mid-copy.  config.json is read through the locked descriptor: opening
	 * and closing it again would drop our POSIX lock.
	 */
	cleanup_close int src_lock = -1;
	if (vmm_bundle_dir_lock_as(src_dir, src_name, VMM_LOCK_READ, &src_lock, err) < 0)
		return -1;
	cleanup_vmm_config vmm_config *cfg = NULL;
	cleanup_free char *raw = NULL;
	size_t raw_len = 0;
	if (vmm_bundle_dir_read_config(src_dir, src_lock, &cfg, &raw, &raw_len, err) < 0)
		return -1;
	bool suspended = dir_suspended(src_dir);
	vmm_test_pause("clone");

	cleanup_free char *tmp = NULL;
	cleanup_close int tmp_lock = -1;
	if (vmm_home_mktemp(h, &tmp, &tmp_lock, err) < 0)
		return -1;
	int rc = -1;
	cleanup_free char *cfg_path = path_join(tmp, VMM_CONFIG_FILE);
	/*
	 * Crash consistency by ordering, not flushing: every file of the clone
	 * is on the device (shared extents, or data written back) before the
	 * rename that makes it visible, and journaling/COW file systems commit
	 * that rename after those writes.  A crash may lose the new clone (as
	 * with cp), never show a broken one.  With `durable`, fsyncs make the
	 * clone survive a crash too, at the price of a cache flush per file.
	 */
	vmm_copy_opts copy = o->copy ? *o->copy : (vmm_copy_opts){0};
	copy.fsync = o->durable;
	copy.write_back = !o->durable;
	if (vmm_copy_dir(src_dir, tmp, false, clone_skip, &copy, stats, err) < 0) {
		vmm_error_wrap(err, "clone \"%s\" to \"%s\"", src_name, name);
		goto out;
	}
	{
		/* Tart decides on the MAC and moves the clone in under the global
		 * lock, so two clones of one image cannot both keep its MAC */
		cleanup_close int home_lock = -1;
		if (vmm_home_lock(h, &home_lock, err) < 0 ||
		    refuse_existing(h, name, o->force, err) < 0)
			goto out;
		/* a local source always has the MAC in use (its own); the scan must
		 * not open the source's config.json (see above) */
		bool collides = src_is_local || vmm_bundle_mac_in_use(h, cfg->mac, src_dir, false);
		cleanup_free char *text = NULL;
		const char *bytes = raw; /* the source's bytes, unchanged */
		size_t len = raw_len;
		if (!suspended && collides) {
			vmm_mac_random(cfg->mac);
			bytes = text = vmm_config_pretty(cfg);
			len = strlen(text);
		}
		if (write_new_file(cfg_path, bytes, len, o->durable, err) < 0)
			goto out;
		cleanup_free char *dest = vmm_home_vm_dir(h, name);
		rc = o->durable ? vmm_home_install(tmp, dest, o->force, err)
				: vmm_home_install_ordered(tmp, dest, o->force, err);
	}
out:
	if (rc < 0)
		vmm_rm_rf(tmp, NULL);
	return rc;
}

/*
 * rename --force cannot be one rename (NEW is a full directory), so it is
 * three, none of which shows a VM that is neither its old nor its new self:
 *
 *   1. NAME -> vms/.rename-<id>.d   (hidden: NAME is gone, NEW still old)
 *   2. exchange .rename-<id>.d and NEW   (NEW is NAME's VM; the hidden
 *      directory holds NEW's old one)
 *   3. the hidden directory out into tmp/ and removed
 *
 * A journal, vms/.rename-<id> ("NAME\nNEW\n<dev> <inode of NAME's
 * directory>\n", written durably first), tells a later command which step a
 * killed rename reached: vmm_vm_recover() finishes it.
 */
static char *rename_journal_text(const char *name, const char *new_name, const struct stat *st)
{
	return xasprintf("%s\n%s\n%llu %llu\n", name, new_name, (unsigned long long)st->st_dev,
			 (unsigned long long)st->st_ino);
}

/* Steps 2 and 3 (or only 3 when the hidden directory is NEW's old VM). */
static int rename_finish(const vmm_home *h, const char *hidden, const char *dst,
			 const char *new_name, bool exchange, vmm_error **err)
{
	if (exchange) {
		if (!path_exists(dst)) {
			if (rename(hidden, dst) < 0)
				return vmm_error_errno(err, errno, "rename to `%s`", dst);
			return vmm_fsync_dir(h->vms, true, err);
		}
		cleanup_close int dst_lock = -1;
		if (vmm_bundle_dir_is_vm(dst) &&
		    vmm_bundle_dir_lock(dst, new_name, &dst_lock, err) < 0)
			return -1;
		if (syscall(SYS_renameat2, AT_FDCWD, hidden, AT_FDCWD, dst,
			    2 /* RENAME_EXCHANGE */) < 0)
			return vmm_error_errno(err, errno, "replace `%s`", dst);
		if (vmm_fsync_dir(h->vms, true, err) < 0)
			return -1;
	}
	return move_out_and_remove(h, hidden, err);
}

int vmm_vm_rename(const vmm_home *h, const char *name, const char *new_name, bool force,
		  vmm_error **err)
{
	if (vmm_vm_check_name(new_name, err) < 0)
		return -1;
	cleanup_free char *src = vmm_home_vm_dir(h, name);
	cleanup_free char *dst = vmm_home_vm_dir(h, new_name);
	cleanup_close int lock = -1;
	if (vmm_home_lock(h, &lock, err) < 0)
		return -1;
	if (!vmm_name_is_valid(name) || !vmm_bundle_dir_is_vm(src))
		return vmm_error_set(err, VMM_ENOTFOUND,
				     "failed to rename a non-existent local VM: %s", name);
	if (strcmp(name, new_name) == 0)
		return 0;
	if (path_exists(dst) && !force)
		return vmm_error_set(err, VMM_EEXISTS,
				     "failed to rename VM %s, target VM %s already exists, delete "
				     "it first (or pass --force)!",
				     name, new_name);
	cleanup_close int run_lock = -1;
	if (vmm_bundle_dir_lock(src, name, &run_lock, err) < 0)
		return -1;
	if (!path_exists(dst)) {
		if (rename(src, dst) < 0)
			return vmm_error_errno(err, errno, "rename `%s` to `%s`", src, dst);
		return vmm_fsync_dir(h->vms, true, err);
	}
	/* the VM replaced must be neither running nor in use */
	cleanup_close int dst_lock = -1;
	if (vmm_bundle_dir_is_vm(dst) && vmm_bundle_dir_lock(dst, new_name, &dst_lock, err) < 0)
		return -1;
	struct stat st;
	if (stat(src, &st) < 0)
		return vmm_error_errno(err, errno, "stat `%s`", src);
	char uuid[37];
	vmm_uuid(uuid);
	cleanup_free char *journal = xasprintf("%s/.rename-%s", h->vms, uuid);
	cleanup_free char *hidden = xasprintf("%s.d", journal);
	cleanup_free char *text = rename_journal_text(name, new_name, &st);
	if (vmm_write_file_atomic(journal, text, strlen(text), 0644, err) < 0)
		return -1;
	if (rename(src, hidden) < 0) {
		int e = errno;
		unlink(journal);
		return vmm_error_errno(err, e, "rename `%s`", src);
	}
	if (vmm_fsync_dir(h->vms, true, err) < 0)
		return -1;
	if (rename_finish(h, hidden, dst, new_name, true, err) < 0)
		return -1;
	unlink(journal);
	return vmm_fsync_dir(h->vms, true, err);
}

int vmm_vm_recover(const vmm_home *h, vmm_error **err)
{
	cleanup_dir DIR *d = opendir(h->vms);
	if (!d)
		return 0;
	cleanup_close int lock = -1;
	int failed = 0;
	struct dirent *e;
	while ((e = readdir(d))) {
		size_t l = strlen(e->d_name);
		if (strncmp(e->d_name, ".restore-", 9) == 0) {
			if (lock < 0 && vmm_home_lock(h, &lock, err) < 0)
				return -1;
			/* one that cannot be finished must not hold up the others */
			cleanup_vmm_error vmm_error *one = NULL;
			if (vmm_snapshot_recover(h, e->d_name, &one) < 0 && err && !*err) {
				*err = steal_ptr(one);
				failed = -1;
			}
			continue;
		}
		if (strncmp(e->d_name, ".rename-", 8) != 0 ||
		    (l > 2 && strcmp(e->d_name + l - 2, ".d") == 0))
			continue;
		if (lock < 0 && vmm_home_lock(h, &lock, err) < 0)
			return -1;
		cleanup_free char *journal = path_join(h->vms, e->d_name);
		cleanup_free char *hidden = xasprintf("%s.d", journal);
		cleanup_free char *text = NULL;
		size_t len = 0;
		if (vmm_read_file(journal, 4096, &text, &len, NULL) < 0)
			continue; /* finished by another process meanwhile */
		char src_name[256], new_name[256];
		unsigned long long dev = 0, ino = 0;
		struct stat st;
		int rc = 0;
		if (sscanf(text, "%255[^\n]\n%255[^\n]\n%llu %llu", src_name, new_name, &dev,
			   &ino) == 4 &&
		    vmm_name_is_valid(new_name) && lstat(hidden, &st) == 0 && S_ISDIR(st.st_mode)) {
			/* NAME's directory still hidden: the exchange is to come; else it
			 * holds NEW's old VM, to be removed */
			bool pending = st.st_dev == dev && st.st_ino == ino;
			cleanup_free char *dst = vmm_home_vm_dir(h, new_name);
			rc = rename_finish(h, hidden, dst, new_name, pending, err);
		}
		if (rc < 0)
			return vmm_error_wrap(err, "finish renaming VM \"%s\" to \"%s\"", src_name,
					      new_name);
		unlink(journal);
		vmm_fsync_dir(h->vms, true, NULL);
	}
	return failed;
}

int vmm_vm_delete(const vmm_home *h, const char *name, vmm_error **err)
{
	cleanup_free char *dir = vmm_home_vm_dir(h, name);
	if (!vmm_name_is_valid(name) || !path_is_dir(dir))
		return vmm_error_not_found(err, name);
	cleanup_close int home_lock = -1;
	if (vmm_home_lock(h, &home_lock, err) < 0)
		return -1;
	cleanup_close int run_lock = -1;
	cleanup_free char *cfg = path_join(dir, VMM_CONFIG_FILE);
	if (access(cfg, F_OK) == 0 && vmm_bundle_dir_lock(dir, name, &run_lock, err) < 0)
		return -1;
	/* move it out of vms/ in one step, then take our time removing it */
	return move_out_and_remove(h, dir, err);
}

int vmm_vm_disk_resize(const char *dir, uint64_t bytes, vmm_error **err)
{
	cleanup_free char *disk = path_join(dir, VMM_DISK_FILE);
	return vmm_vm_disk_resize_file(disk, bytes, err);
}

int vmm_vm_disk_resize_file(const char *disk, uint64_t bytes, vmm_error **err)
{
	if (bytes == 0)
		return 0;
	cleanup_close int fd = open(disk, O_WRONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return vmm_error_errno(err, errno, "open `%s`", disk);
	struct stat st;
	if (fstat(fd, &st) < 0)
		return vmm_error_errno(err, errno, "stat `%s`", disk);
	if (bytes < (uint64_t)st.st_size) {
		cleanup_free char *want = vmm_format_decimal_bytes(bytes);
		cleanup_free char *have = vmm_format_decimal_bytes((uint64_t)st.st_size);
		return vmm_error_set(err, VMM_EINVAL,
				     "new disk size of %s should be larger than the current disk "
				     "size of %s",
				     want, have);
	}
	if (bytes == (uint64_t)st.st_size)
		return 0;
	if (ftruncate(fd, (off_t)bytes) < 0 || fsync(fd) < 0)
		return vmm_error_errno(err, errno, "resize `%s`", disk);
	return 0;
}

/* The new disk under a unique name beside disk.img, copied, grown and synced (caller frees). */
static char *prepare_disk(const char *dir, const char *src, uint64_t bytes, vmm_error **err)
{
	char uuid[37];
	vmm_uuid(uuid);
	/* a unique name (created O_EXCL by the copy): nothing is followed or truncated */
	char *tmp = xasprintf("%s/" VMM_DISK_FILE ".tmp-%s", dir, uuid);
	vmm_copy_opts co = {.fsync = true};
	if (vmm_copy_file(src, tmp, &co, NULL, err) < 0 ||
	    vmm_vm_disk_resize_file(tmp, bytes, err) < 0) {
		unlink(tmp);
		free(tmp);
		return NULL;
	}
	return tmp;
}

static int commit_disk(const char *dir, const char *tmp, vmm_error **err)
{
	cleanup_free char *disk = path_join(dir, VMM_DISK_FILE);
	if (rename(tmp, disk) < 0) {
		int e = errno;
		unlink(tmp);
		return vmm_error_errno(err, e, "replace `%s`", disk);
	}
	return vmm_fsync_dir(dir, true, err);
}

int vmm_vm_disk_replace(const char *dir, const char *src, uint64_t bytes, vmm_error **err)
{
	cleanup_free char *tmp = prepare_disk(dir, src, bytes, err);
	return tmp ? commit_disk(dir, tmp, err) : -1;
}

/* Remove vmm's and Tart's suspended states, durably. */
static int drop_state(const char *dir, vmm_error **err)
{
	static const char *const states[] = {VMM_STATE_FILE, VMM_TART_STATE_FILE};
	bool removed = false;
	for (size_t i = 0; i < ARRAY_SIZE(states); i++) {
		cleanup_free char *p = path_join(dir, states[i]);
		if (unlink(p) == 0)
			removed = true;
		else if (errno != ENOENT)
			return vmm_error_errno(err, errno, "remove `%s`", p);
	}
	return removed ? vmm_fsync_dir(dir, true, err) : 0;
}

int vmm_vm_set(const vmm_home *h, const char *name, const vmm_set_opts *o, vmm_error **err)
{
	cleanup_vmm_bundle vmm_bundle *b = NULL;
	if (vmm_bundle_open(&b, h, name, err) < 0)
		return -1;
	/* the lock first, then everything is read and decided under it */
	cleanup_close int lock = -1;
	if (vmm_bundle_dir_lock(b->dir, name, &lock, err) < 0)
		return -1;
	vmm_config *c = NULL;
	cleanup_free char *before = NULL;
	if (vmm_bundle_dir_read_config(b->dir, lock, &c, &before, NULL, err) < 0)
		return -1;
	vmm_config_free(b->config);
	b->config = c;
	vmm_test_pause("set");
	if (o->edit && o->edit(c, o->ctx, err) < 0)
		return -1;
	if (o->new_mac)
		vmm_mac_random(c->mac);
	cleanup_free char *new_disk = NULL;
	if (o->disk && !(new_disk = prepare_disk(b->dir, o->disk, o->disk_size, err)))
		return -1;
	/* growing in place keeps a state valid; refused sizes stop us here */
	if (!o->disk && o->disk_size && vmm_vm_disk_resize(b->dir, o->disk_size, err) < 0)
		return -1;
	/* a guest woken from its memory onto another disk or with another MAC
	 * would corrupt the one or lose its network: drop the state before the
	 * change, so that a crash never pairs the two */
	if ((o->new_mac || o->disk) && drop_state(b->dir, err) < 0) {
		if (new_disk)
			unlink(new_disk);
		return -1;
	}
	if (new_disk && commit_disk(b->dir, new_disk, err) < 0)
		return -1;
	cleanup_free char *after = vmm_config_pretty(c);
	if (strcmp(before, after) == 0)
		return 0; /* nothing to write: a resize stays one atomic step */
	return vmm_bundle_save_config_locked(b, err);
}
