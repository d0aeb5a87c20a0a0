#include "vm/bundle.h"
#include "vm/resumed.h"
#include "vm/snapshot.h"
#include "common/util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>
#include <sys/stat.h>
#include <sys/time.h>

bool vmm_bundle_dir_is_vm(const char *dir)
{
	static const char *const files[] = {VMM_CONFIG_FILE, VMM_DISK_FILE, VMM_NVRAM_FILE};
	for (size_t i = 0; i < ARRAY_SIZE(files); i++) {
		cleanup_free char *p = path_join(dir, files[i]);
		if (access(p, F_OK) < 0)
			return false;
	}
	return true;
}

void vmm_bundle_free(vmm_bundle *b)
{
	if (!b)
		return;
	free(b->name);
	free(b->dir);
	vmm_config_free(b->config);
	free(b);
}

char *vmm_bundle_path(const vmm_bundle *b, const char *file)
{
	return path_join(b->dir, file);
}

int vmm_bundle_open_dir(vmm_bundle **out, const char *dir, const char *name, vmm_error **err)
{
	if (!vmm_bundle_dir_is_vm(dir)) {
		if (!path_is_dir(dir))
			return vmm_error_not_found(err, name);
		/* Tart's VMMissingFiles: a runtime error (exit 1), not "does not exist" */
		return vmm_error_set(
		    err, VMM_EINVAL,
		    "VM \"%s\" is missing some of its files (config.json, disk.img "
		    "or nvram.bin)",
		    name);
	}
	vmm_bundle *b = xcalloc(1, sizeof(*b));
	b->name = xstrdup(name);
	b->dir = xstrdup(dir);
	cleanup_free char *cfg = path_join(dir, VMM_CONFIG_FILE);
	if (vmm_config_load(&b->config, cfg, err) < 0) {
		vmm_bundle_free(b);
		return -1;
	}
	*out = b;
	return 0;
}

int vmm_bundle_open(vmm_bundle **out, const vmm_home *h, const char *name, vmm_error **err)
{
	if (!vmm_name_is_valid(name))
		return vmm_error_not_found(err, name);
	cleanup_free char *dir = vmm_home_vm_dir(h, name);
	if (!path_is_dir(dir))
		return vmm_error_not_found(err, name);
	if (vmm_bundle_open_dir(out, dir, name, err) < 0)
		return -1;
	vmm_access_date_set(dir, time(NULL));
	return 0;
}

int vmm_bundle_save_config_locked(vmm_bundle *b, vmm_error **err)
{
	cleanup_free char *cfg = path_join(b->dir, VMM_CONFIG_FILE);
	return vmm_config_save(b->config, cfg, err);
}

int vmm_bundle_save_config(vmm_bundle *b, vmm_error **err)
{
	cleanup_close int lock = -1;
	if (vmm_bundle_dir_lock(b->dir, b->name, &lock, err) < 0)
		return -1;
	return vmm_bundle_save_config_locked(b, err);
}

/* Who holds a lock conflicting with a write lock on [start, start + len)? 0: nobody. */
static pid_t lock_holder(const char *dir, off_t start, off_t len)
{
	cleanup_free char *cfg = path_join(dir, VMM_CONFIG_FILE);
	/* O_RDONLY suffices for F_GETLK; closing it drops no lock of ours */
	cleanup_close int fd = open(cfg, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = start, .l_len = len};
	if (fcntl(fd, F_GETLK, &fl) < 0 || fl.l_type == F_UNLCK)
		return 0;
	/* an OFD lock or a holder in another pid namespace has no pid for us */
	return fl.l_pid > 0 ? fl.l_pid : -1;
}

pid_t vmm_bundle_dir_running_pid(const char *dir)
{
	/* only a run lock (the whole file, as Tart's) reaches below the busy byte */
	return lock_holder(dir, 0, VMM_BUSY_BYTE);
}

pid_t vmm_bundle_dir_busy_pid(const char *dir)
{
	if (vmm_bundle_dir_running_pid(dir) != 0)
		return 0;
	return lock_holder(dir, VMM_BUSY_BYTE, 1);
}

vmm_vm_state vmm_bundle_dir_state(const char *dir)
{
	if (vmm_bundle_dir_is_running(dir))
		return VMM_STATE_RUNNING;
	cleanup_free char *st = path_join(dir, VMM_STATE_FILE);
	cleanup_free char *tart_st = path_join(dir, VMM_TART_STATE_FILE);
	/* a state moved aside by a resume killed before its guest could run is
	 * still the VM's (vm/resumed.h): the next lock puts it back */
	if (access(st, F_OK) == 0 || access(tart_st, F_OK) == 0 || vmm_resumed_restorable(dir))
		return VMM_STATE_SUSPENDED;
	return VMM_STATE_STOPPED;
}

const char *vmm_vm_state_name(vmm_vm_state s)
{
	switch (s) {
	case VMM_STATE_RUNNING:
		return "running";
	case VMM_STATE_SUSPENDED:
		return "suspended";
	default:
		return "stopped";
	}
}

/* Why a lock of ours was refused: the VM runs, or another command has the bundle. */
static int lock_refused(const char *dir, const char *name, vmm_error **err)
{
	if (vmm_bundle_dir_is_running(dir))
		return vmm_error_running(err, name);
	pid_t pid = lock_holder(dir, VMM_BUSY_BYTE, 1);
	if (pid > 0)
		return vmm_error_set(err, VMM_ELOCKED,
				     "VM \"%s\" is in use by another vmm command (pid %d)", name,
				     (int)pid);
	return vmm_error_set(err, VMM_ELOCKED, "VM \"%s\" is in use by another vmm command", name);
}

void (*vmm_bundle_lock_race_hook)(const char *config_path);

/*
 * What killed commands leave in a bundle: temporary files ("<file>.tmp-…",
 * vmm_write_file_atomic's and a new disk's) and unfinished or half-removed
 * snapshot directories (snapshots/.new-…, .del-…, which their makers lock, so
 * any command may collect those).  Only a holder of a write or run lock may
 * call this: nobody else can be writing the temporary files then.
 */
static void sweep_leftovers(const char *dir)
{
	cleanup_dir DIR *d = opendir(dir);
	struct dirent *e;
	while (d && (e = readdir(d))) {
		struct stat st;
		if (strstr(e->d_name, ".tmp-") &&
		    fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
		    S_ISREG(st.st_mode))
			unlinkat(dirfd(d), e->d_name, 0);
	}
	vmm_snapshot_collect(dir);
}

int vmm_bundle_dir_lock_as(const char *dir, const char *name, vmm_lock_kind kind, int *fd,
			   vmm_error **err)
{
	cleanup_free char *cfg = path_join(dir, VMM_CONFIG_FILE);
	struct flock fl = {.l_whence = SEEK_SET};
	if (kind == VMM_LOCK_RUN) {
		fl.l_type = F_WRLCK; /* Tart's: the whole file */
	} else {
		fl.l_type = kind == VMM_LOCK_READ ? F_RDLCK : F_WRLCK;
		fl.l_start = VMM_BUSY_BYTE;
		fl.l_len = 1;
	}
	/*
	 * config.json is replaced by rename (set, a MAC change): a lock won on
	 * the inode we opened may be on one that is no longer at the path, and
	 * would exclude nobody.  Check after locking and go again if so.
	 */
	for (int attempt = 0; attempt < 16; attempt++) {
		int flags = fl.l_type == F_RDLCK ? O_RDONLY : O_RDWR;
		cleanup_close int f = open(cfg, flags | O_CLOEXEC);
		if (f < 0) {
			if (errno == ENOENT)
				return vmm_error_not_found(err, name);
			return vmm_error_errno(err, errno, "open `%s`", cfg);
		}
		if (vmm_bundle_lock_race_hook)
			vmm_bundle_lock_race_hook(cfg);
		if (fcntl(f, F_SETLK, &fl) < 0) {
			if (errno == EAGAIN || errno == EACCES)
				return lock_refused(dir, name, err);
			return vmm_error_errno(err, errno, "lock `%s`", cfg);
		}
		struct stat locked, now;
		if (fstat(f, &locked) < 0)
			return vmm_error_errno(err, errno, "stat `%s`", cfg);
		if (stat(cfg, &now) < 0) {
			if (errno == ENOENT)
				return vmm_error_not_found(err, name);
			return vmm_error_errno(err, errno, "stat `%s`", cfg);
		}
		if (locked.st_ino == now.st_ino && locked.st_dev == now.st_dev) {
			vmm_resumed_settle(dir); /* no `vmm run` is at work: see vm/resumed.h */
			if (kind != VMM_LOCK_READ)
				sweep_leftovers(dir);
			*fd = steal_fd(f);
			return 0;
		}
	}
	return vmm_error_set(err, VMM_ELOCKED, "VM \"%s\": `%s` keeps being replaced", name, cfg);
}

int vmm_bundle_dir_lock(const char *dir, const char *name, int *fd, vmm_error **err)
{
	return vmm_bundle_dir_lock_as(dir, name, VMM_LOCK_WRITE, fd, err);
}

int vmm_bundle_dir_read_config(const char *dir, int lock_fd, vmm_config **out, char **raw,
			       size_t *len, vmm_error **err)
{
	struct stat st;
	if (fstat(lock_fd, &st) < 0)
		return vmm_error_errno(err, errno, "stat `%s/config.json`", dir);
	if (st.st_size > VMM_CONFIG_MAX_BYTES)
		return vmm_error_set(err, EFBIG, "`%s/config.json` is too large", dir);
	size_t n = (size_t)st.st_size;
	cleanup_free char *text = xmalloc(n + 1);
	if (vmm_pread_all(lock_fd, text, n, 0) < 0)
		return vmm_error_errno(err, errno, "read `%s/config.json`", dir);
	text[n] = '\0';
	cleanup_free char *what = xasprintf("`%s/config.json`", dir);
	if (vmm_config_parse(out, text, n, what, err) < 0)
		return -1;
	if (raw)
		*raw = steal_ptr(text);
	if (len)
		*len = n;
	return 0;
}

int vmm_bundle_dir_sizes(const char *dir, uint64_t *apparent, uint64_t *allocated, vmm_error **err)
{
	cleanup_dir DIR *d = vmm_opendir_noatime(dir); /* the atime is the access date */
	if (!d)
		return vmm_error_errno(err, errno, "open `%s`", dir);
	uint64_t ap = 0, al = 0;
	struct dirent *e;
	while ((e = readdir(d))) {
		struct stat st;
		if (fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 ||
		    !S_ISREG(st.st_mode))
			continue;
		ap += (uint64_t)st.st_size;
		al += (uint64_t)st.st_blocks * 512;
	}
	if (apparent)
		*apparent = ap;
	if (allocated)
		*allocated = al;
	return 0;
}

void vmm_access_date_set(const char *dir, time_t t)
{
	struct stat st;
	if (stat(dir, &st) < 0)
		return;
	struct timeval tv[2] = {
	    {.tv_sec = t, .tv_usec = 0},
	    {.tv_sec = st.st_atime, .tv_usec = 0},
	};
	utimes(dir, tv);
}

time_t vmm_access_date_get(const char *dir)
{
	struct stat st;
	if (stat(dir, &st) < 0)
		return 0;
	return st.st_atime;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

int vmm_bundle_list_names(const vmm_home *h, char ***names, size_t *n, vmm_error **err)
{
	*names = NULL;
	*n = 0;
	cleanup_dir DIR *d = opendir(h->vms);
	if (!d) {
		if (errno == ENOENT)
			return 0;
		return vmm_error_errno(err, errno, "open `%s`", h->vms);
	}
	char **v = NULL;
	size_t cnt = 0;
	struct dirent *e;
	while ((e = readdir(d))) {
		if (e->d_name[0] == '.')
			continue;
		cleanup_free char *p = path_join(h->vms, e->d_name);
		if (!vmm_bundle_dir_is_vm(p))
			continue;
		v = xrealloc(v, (cnt + 1) * sizeof(char *));
		v[cnt++] = xstrdup(e->d_name);
	}
	if (cnt)
		qsort(v, cnt, sizeof(char *), cmp_str);
	*names = v;
	*n = cnt;
	return 0;
}

bool vmm_bundle_mac_in_use(const vmm_home *h, const char *mac, const char *except_dir,
			   bool running_only)
{
	char **names = NULL;
	size_t n = 0;
	if (vmm_bundle_list_names(h, &names, &n, NULL) < 0)
		return false;
	bool used = false;
	cleanup_free char *except = except_dir ? realpath(except_dir, NULL) : NULL;
	for (size_t i = 0; i < n && !used; i++) {
		cleanup_free char *dir = vmm_home_vm_dir(h, names[i]);
		cleanup_free char *real = realpath(dir, NULL);
		if (except && real && strcmp(real, except) == 0)
			continue;
		if (running_only && !vmm_bundle_dir_is_running(dir))
			continue;
		cleanup_free char *cfg = path_join(dir, VMM_CONFIG_FILE);
		cleanup_vmm_config vmm_config *c = NULL;
		if (vmm_config_load(&c, cfg, NULL) == 0 && strcasecmp(c->mac, mac) == 0)
			used = true;
	}
	vmm_strv_free(names, n);
	return used;
}

uint64_t vmm_bundle_dir_disk_bytes(const char *dir)
{
	static const char *const files[] = {VMM_CONFIG_FILE, VMM_DISK_FILE, VMM_NVRAM_FILE};
	uint64_t total = 0;
	for (size_t i = 0; i < ARRAY_SIZE(files); i++) {
		cleanup_free char *p = path_join(dir, files[i]);
		struct stat st;
		if (stat(p, &st) == 0)
			total += (uint64_t)st.st_size;
	}
	return total;
}
