#include "vm/transfer.h"
#include "common/util.h"
#include "storage/archive.h"
#include "vm/bundle.h"
#include "vm/config.h"
#include "vm/ops.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>

/* The bundle's files worth carrying, in archive order; cache metadata and
 * temporaries stay behind. */
static bool exportable(const char *name)
{
	return strcmp(name, VMM_CONFIG_FILE) != 0 && strcmp(name, VMM_MANIFEST_FILE) != 0 &&
	       strcmp(name, VMM_EXPLICITLY_PULLED_FILE) != 0 && name[0] != '.' &&
	       !strstr(name, ".tmp");
}

static int cmp_name(const void *a, const void *b)
{
	const vmm_archive_file *x = a, *y = b;
	/* Tart's three first, then the rest by name */
	static const char *const order[] = {VMM_DISK_FILE, VMM_NVRAM_FILE};
	int rx = 2, ry = 2;
	for (int i = 0; i < 2; i++) {
		if (strcmp(x->name, order[i]) == 0)
			rx = i;
		if (strcmp(y->name, order[i]) == 0)
			ry = i;
	}
	return rx != ry ? rx - ry : strcmp(x->name, y->name);
}

/*
 * A new file for `path`, not yet visible: an unnamed O_TMPFILE in path's
 * directory (gone by itself if we die), else a unique name there made with
 * O_EXCL.  Nothing existing is followed, truncated or overwritten.
 * *tmp_name is NULL for an unnamed file.
 */
static int open_output(const char *path, char **tmp_name, vmm_error **err)
{
	cleanup_free char *dir = xstrdup(path);
	char *slash = strrchr(dir, '/');
	if (!slash) {
		free(dir);
		dir = xstrdup(".");
	} else {
		slash[slash == dir ? 1 : 0] = '\0';
	}
	*tmp_name = NULL;
	int fd = open(dir, O_TMPFILE | O_WRONLY | O_CLOEXEC, 0644);
	if (fd >= 0)
		return fd;
	if (errno != EOPNOTSUPP && errno != EISDIR && errno != EINVAL)
		return vmm_error_errno(err, errno, "create a file in `%s`", dir);
	char uuid[37];
	vmm_uuid(uuid);
	char *tmp = xasprintf("%s.tmp-%s", path, uuid);
	fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
	if (fd < 0) {
		int e = errno;
		free(tmp);
		return vmm_error_errno(err, e, "create `%s`", path);
	}
	*tmp_name = tmp;
	return fd;
}

/* Make the finished output fd the file at path in one rename, durably. */
static int publish_output(int fd, const char *tmp_name, const char *path, vmm_error **err)
{
	if (fsync(fd) < 0)
		return vmm_error_errno(err, errno, "write `%s`", path);
	cleanup_free char *named = NULL;
	if (!tmp_name) {
		/* give the unnamed file a unique name beside path, then rename it:
		 * linkat cannot replace, and a rename replaces a symlink itself */
		char uuid[37];
		vmm_uuid(uuid);
		named = xasprintf("%s.tmp-%s", path, uuid);
		cleanup_free char *proc = xasprintf("/proc/self/fd/%d", fd);
		if (linkat(AT_FDCWD, proc, AT_FDCWD, named, AT_SYMLINK_FOLLOW) < 0)
			return vmm_error_errno(err, errno, "create `%s`", path);
		tmp_name = named;
	}
	if (rename(tmp_name, path) < 0) {
		int e = errno;
		unlink(tmp_name);
		return vmm_error_errno(err, e, "replace `%s`", path);
	}
	return vmm_fsync_dir(path, false, err);
}

int vmm_vm_export(const char *dir, const char *name, const char *path, vmm_error **err)
{
	cleanup_close int lock = -1;
	if (vmm_bundle_dir_lock_as(dir, name, VMM_LOCK_READ, &lock, err) < 0)
		return -1;
	vmm_test_pause("export");
	cleanup_dir DIR *d = opendir(dir);
	if (!d)
		return vmm_error_errno(err, errno, "open `%s`", dir);
	bool to_stdout = strcmp(path, "-") == 0;
	cleanup_free char *tmp = NULL;
	vmm_archive_file files[VMM_ARCHIVE_MAX_FILES];
	char *names[VMM_ARCHIVE_MAX_FILES];
	size_t n = 0;
	int rc = -1;
	/* config.json is read through the lock's descriptor: opening and closing
	 * it again would drop the lock (POSIX semantics, see vm/bundle.h) */
	files[n++] = (vmm_archive_file){VMM_CONFIG_FILE, lock};
	names[0] = NULL;
	struct dirent *e;
	while ((e = readdir(d))) {
		struct stat st;
		if (!exportable(e->d_name) ||
		    fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 ||
		    !S_ISREG(st.st_mode))
			continue;
		if (n == VMM_ARCHIVE_MAX_FILES) {
			vmm_error_set(err, VMM_EINVAL, "`%s` holds too many files", dir);
			goto out;
		}
		int fd = openat(dirfd(d), e->d_name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
		if (fd < 0) {
			vmm_error_errno(err, errno, "open `%s/%s`", dir, e->d_name);
			goto out;
		}
		names[n] = xstrdup(e->d_name);
		files[n] = (vmm_archive_file){names[n], fd};
		n++;
	}
	qsort(files + 1, n - 1, sizeof(files[0]), cmp_name);

	int out = to_stdout ? STDOUT_FILENO : open_output(path, &tmp, err);
	if (out < 0)
		goto out;
	if (vmm_archive_write(out, files, n, NULL, err) < 0)
		vmm_error_wrap(err, "export `%s`", name);
	else
		rc = to_stdout ? 0 : publish_output(out, tmp, path, err);
	if (!to_stdout) {
		close(out);
		if (rc < 0 && tmp)
			unlink(tmp);
	}
out:
	for (size_t i = 1; i < n; i++) {
		close(files[i].fd);
		free(names[i]);
	}
	return rc;
}

int vmm_vm_unpack(const char *path, const char *dest, vmm_error **err)
{
	if (vmm_archive_unpack(path, dest, err) < 0)
		return -1;
	if (!vmm_bundle_dir_is_vm(dest))
		return vmm_error_set(
		    err, VMM_EFORMAT,
		    "import `%s`: the archive lacks config.json, disk.img or nvram.bin", path);
	return 0;
}

int vmm_vm_import(const vmm_home *h, const char *path, const char *name, bool force,
		  vmm_error **err)
{
	if (vmm_vm_check_name(name, err) < 0)
		return -1;
	cleanup_free char *dest = vmm_home_vm_dir(h, name);
	if (path_exists(dest) && !force)
		return vmm_error_set(err, VMM_EEXISTS,
				     "VM \"%s\" already exists; delete it first or pass --force to "
				     "replace it",
				     name);
	cleanup_free char *tmp = NULL;
	cleanup_close int tmp_lock = -1;
	if (vmm_home_mktemp(h, &tmp, &tmp_lock, err) < 0)
		return -1;
	int rc = -1;
	cleanup_vmm_config vmm_config *cfg = NULL;
	cleanup_free char *cfg_path = path_join(tmp, VMM_CONFIG_FILE);
	cleanup_free char *state = path_join(tmp, VMM_STATE_FILE);
	if (vmm_vm_unpack(path, tmp, err) < 0)
		goto out;
	if (vmm_config_load(&cfg, cfg_path, err) < 0) {
		vmm_error_wrap(err, "import `%s`", path);
		goto out;
	}
	if (access(state, F_OK) < 0 && vmm_bundle_mac_in_use(h, cfg->mac, NULL, false)) {
		vmm_mac_random(cfg->mac);
		if (vmm_config_save(cfg, cfg_path, err) < 0)
			goto out;
	}
	rc = vmm_vm_install(h, tmp, name, force, err);
out:
	if (rc < 0)
		vmm_rm_rf(tmp, NULL);
	return rc;
}
