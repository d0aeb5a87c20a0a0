/*
 * home.h — the vmm home and its layout, Tart's exactly (tart-spec §1.1):
 *
 *   $VMM_HOME, else $TART_HOME, else ~/.vmm
 *     vms/<name>/                     local VMs
 *     cache/OCIs/<host%3Aport>/<ns>/  pulled images (registry/ owns this part)
 *     tmp/<UUID>/                     staging for create, clone, import, pull
 *
 * Also the locks that guard the home: an flock on the home directory around
 * moves into vms/, and flocks on tmp entries that keep them from the tmp GC.
 */
#ifndef VMM_VM_HOME_H
#define VMM_VM_HOME_H

#include "common/err.h"

typedef struct vmm_home {
	char *root;  /* owned */
	char *vms;   /* owned: root/vms */
	char *cache; /* owned: root/cache */
	char *ocis;  /* owned: root/cache/OCIs */
	char *tmp;   /* owned: root/tmp */
} vmm_home;

/* Resolve the home and create it, cache/ and tmp/ (vms/ is made on first use). */
int vmm_home_open(vmm_home **out, vmm_error **err);
void vmm_home_free(vmm_home *h);

/* Path of vms/<name> (caller frees).  Does not check the name. */
char *vmm_home_vm_dir(const vmm_home *h, const char *name);

/*
 * Delete every tmp/ entry nobody holds an flock on (Tart's GC, run before
 * most commands).  Returns the number removed, or -1.
 */
int vmm_home_gc_tmp(const vmm_home *h, vmm_error **err);

/*
 * Make a fresh staging directory tmp/<UUID> and hold an flock on it so the
 * GC leaves it alone; *path and *lock_fd are the caller's (close the fd to
 * release).
 */
int vmm_home_mktemp(const vmm_home *h, char **path, int *lock_fd, vmm_error **err);

/*
 * Keep the tmp GC of other processes away from `path` (about to be moved
 * into tmp/ and removed): try an flock without waiting; *fd is the lock or
 * -1 if someone else already holds one.  Close *fd when done.
 */
void vmm_home_gc_guard(const char *path, int *fd);

/* Take the global lock (blocking flock on the home directory). */
int vmm_home_lock(const vmm_home *h, int *lock_fd, vmm_error **err);

/*
 * flock(path, op) on an O_RDONLY fd opened here.  With LOCK_NB and the lock
 * held elsewhere: VMM_ELOCKED.  On success *fd holds the lock.
 */
int vmm_flock_path(const char *path, int op, int *fd, vmm_error **err);

/*
 * Move a finished staging directory to `dest` with one rename, after an
 * fsync of the staging directory (the files in it must already be synced).
 * With `replace`, an existing dest is swapped out atomically and then
 * removed; without, an existing dest is VMM_EEXISTS.  Call under
 * vmm_home_lock().
 */
int vmm_home_install(const char *staging, const char *dest, int replace, vmm_error **err);
/*
 * The same without any fsync: for staging whose files are already written
 * to the device (vmm_copy_opts.write_back, reflinks).  Journaling and COW
 * file systems commit the rename after those writes, so a crash never
 * shows a half-made dest - but it may lose the new dest altogether.
 */
int vmm_home_install_ordered(const char *staging, const char *dest, int replace, vmm_error **err);

#endif
