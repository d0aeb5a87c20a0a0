#include "vm/home.h"
#include "common/util.h"

#include <errno.h>
#include <stdbool.h>
#include <fcntl.h>
#include <pwd.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/syscall.h>

void vmm_home_free(vmm_home *h)
{
	if (!h)
		return;
	char *paths[] = {h->root, h->vms, h->cache, h->ocis, h->tmp};
	for (size_t i = 0; i < ARRAY_SIZE(paths); i++)
		free(paths[i]);
	free(h);
}

static char *resolve_root(void)
{
	const char *env = getenv("VMM_HOME");
	if (env && *env)
		return xstrdup(env);
	env = getenv("TART_HOME");
	if (env && *env)
		return xstrdup(env);
	const char *home = getenv("HOME");
	if (!home || !*home) {
		struct passwd *pw = getpwuid(getuid());
		home = pw ? pw->pw_dir : "/";
	}
	return path_join(home, ".vmm");
}

int vmm_home_open(vmm_home **out, vmm_error **err)
{
	vmm_home *h = xcalloc(1, sizeof(*h));
	h->root = resolve_root();
	h->vms = path_join(h->root, "vms");
	h->cache = path_join(h->root, "cache");
	h->ocis = path_join(h->cache, "OCIs");
	h->tmp = path_join(h->root, "tmp");
	if (vmm_mkdir_p(h->root, err) < 0 || vmm_mkdir_p(h->cache, err) < 0 ||
	    vmm_mkdir_p(h->tmp, err) < 0) {
		vmm_error_wrap(err, "home `%s` is invalid", h->root);
		vmm_home_free(h);
		return -1;
	}
	*out = h;
	return 0;
}

char *vmm_home_vm_dir(const vmm_home *h, const char *name)
{
	return path_join(h->vms, name);
}

int vmm_flock_path(const char *path, int op, int *fd, vmm_error **err)
{
	cleanup_close int f = open(path, O_RDONLY | O_CLOEXEC);
	if (f < 0)
		return vmm_error_errno(err, errno, "open `%s` for locking", path);
	while (flock(f, op) < 0) {
		if (errno == EINTR)
			continue;
		if (errno == EWOULDBLOCK)
			return vmm_error_set(err, VMM_ELOCKED, "`%s` is locked by another process",
					     path);
		return vmm_error_errno(err, errno, "lock `%s`", path);
	}
	*fd = steal_fd(f);
	return 0;
}

void vmm_home_gc_guard(const char *path, int *fd)
{
	/* held elsewhere (a staging lock still open, another process): then
	 * the GC cannot take it either, which is all we want */
	*fd = -1;
	vmm_flock_path(path, LOCK_EX | LOCK_NB, fd, NULL);
}

int vmm_home_lock(const vmm_home *h, int *lock_fd, vmm_error **err)
{
	return vmm_flock_path(h->root, LOCK_EX, lock_fd, err);
}

/*
 * A pull stages in tmp/<md5 hex of the name> so that it can resume
 * (registry/pull.h).  Unlike Tart, the GC leaves such a directory alone for
 * three days, or a `vmm list` between an interrupted pull and its retry would
 * throw the finished layers away.
 */
static bool is_fresh_pull_staging(const char *path, const char *name)
{
	if (strlen(name) != 32 || strspn(name, "0123456789abcdef") != 32)
		return false;
	struct stat st;
	return lstat(path, &st) == 0 && S_ISDIR(st.st_mode) && time(NULL) - st.st_mtime < 3 * 86400;
}

int vmm_home_gc_tmp(const vmm_home *h, vmm_error **err)
{
	cleanup_dir DIR *d = opendir(h->tmp);
	if (!d) {
		if (errno == ENOENT)
			return 0;
		return vmm_error_errno(err, errno, "open `%s`", h->tmp);
	}
	int removed = 0;
	struct dirent *e;
	while ((e = readdir(d))) {
		if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
			continue;
		cleanup_free char *p = path_join(h->tmp, e->d_name);
		if (is_fresh_pull_staging(p, e->d_name))
			continue;
		cleanup_close int fd = -1;
		if (vmm_flock_path(p, LOCK_EX | LOCK_NB, &fd, NULL) < 0)
			continue; /* in use, or vanished meanwhile */
		if (vmm_rm_rf(p, err) < 0)
			return -1;
		removed++;
	}
	return removed;
}

int vmm_home_mktemp(const vmm_home *h, char **path, int *lock_fd, vmm_error **err)
{
	/* Between mkdir and flock another process's tmp GC can lock and remove
	 * the new directory; check that the locked inode is still the one at
	 * the path, and start over with a new name if not. */
	for (int attempt = 0; attempt < 8; attempt++) {
		char uuid[37];
		vmm_uuid(uuid);
		cleanup_free char *p = path_join(h->tmp, uuid);
		if (mkdir(p, 0755) < 0)
			return vmm_error_errno(err, errno, "create `%s`", p);
		cleanup_close int fd = -1;
		if (vmm_flock_path(p, LOCK_EX, &fd, NULL) < 0)
			continue;
		struct stat locked, now;
		if (fstat(fd, &locked) < 0 || stat(p, &now) < 0 || locked.st_ino != now.st_ino ||
		    locked.st_dev != now.st_dev)
			continue;
		*lock_fd = steal_fd(fd);
		*path = steal_ptr(p);
		return 0;
	}
	return vmm_error_set(err, EAGAIN, "create a directory in `%s`: removed as soon as made",
			     h->tmp);
}

static int install(const char *staging, const char *dest, int replace, bool durable,
		   vmm_error **err)
{
	cleanup_free char *parent = xstrdup(dest);
	char *slash = strrchr(parent, '/');
	if (slash) {
		*slash = '\0';
		if (vmm_mkdir_p(parent, err) < 0)
			return -1;
	}
	/* what is in staging must be on disk before a name in vms/ points at it */
	if (durable && vmm_fsync_dir(staging, true, err) < 0)
		return -1;
	if (!path_exists(dest)) {
		if (rename(staging, dest) < 0)
			return vmm_error_errno(err, errno, "move `%s` into place", dest);
		return durable ? vmm_fsync_dir(dest, false, err) : 0;
	}
	if (!replace)
		return vmm_error_set(err, VMM_EEXISTS, "`%s` already exists", dest);
	/* Swap atomically, then remove what was swapped out (now at the staging
	 * path in tmp/).  Lock it first so another process's tmp GC leaves it
	 * to us. */
	cleanup_close int old_lock = -1;
	vmm_home_gc_guard(dest, &old_lock);
	if (syscall(SYS_renameat2, AT_FDCWD, staging, AT_FDCWD, dest, 2 /* RENAME_EXCHANGE */) < 0)
		return vmm_error_errno(err, errno, "replace `%s`", dest);
	if (durable && vmm_fsync_dir(dest, false, err) < 0)
		return -1;
	return vmm_rm_rf(staging, err);
}

int vmm_home_install(const char *staging, const char *dest, int replace, vmm_error **err)
{
	return install(staging, dest, replace, true, err);
}

int vmm_home_install_ordered(const char *staging, const char *dest, int replace, vmm_error **err)
{
	return install(staging, dest, replace, false, err);
}
