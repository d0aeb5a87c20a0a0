/*
 * bundle.h — one VM directory (a Tart bundle plus vmm's extra files), its
 * state, its locks, its sizes and its access date.
 *
 * Locks are classic POSIX locks (fcntl F_SETLK) on config.json, Tart's
 * kind, in two places of the file:
 *
 *   VMM_LOCK_RUN    a write lock on the whole file, held by the process that
 *                   runs the VM for the VM's lifetime: Tart's and vetu's
 *                   running lock exactly, so each sees the other's VMs run;
 *   VMM_LOCK_WRITE  a write lock on one byte far past any config
 *                   (VMM_BUSY_BYTE), held while a command changes the bundle
 *                   (set, delete, rename, snapshot restore, stop of a
 *                   suspended VM);
 *   VMM_LOCK_READ   a read lock on that byte, held while a command copies the
 *                   bundle out (push, export, clone, snapshot create); many
 *                   may read at once.
 *
 * The whole-file lock overlaps the byte, so a bundle is run, or changed, or
 * read, never two at once.  "Running" means a lock somewhere in
 * [0, VMM_BUSY_BYTE), which only a run lock covers: `list` shows a bundle
 * that is being pushed as stopped and `stop` leaves its pusher alone.  (Tart
 * and vetu test the whole file and see a busy bundle as running, which
 * keeps them from starting it meanwhile.)
 *
 * POSIX locks drop when the holder closes *any* descriptor of the file, so a
 * holder reads config.json through the lock's descriptor and never opens it
 * again.  A lock is taken on the inode at the path and checked to still be
 * the one there afterwards (config.json is replaced by rename).
 */
#ifndef VMM_VM_BUNDLE_H
#define VMM_VM_BUNDLE_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

#include "common/err.h"
#include "vm/config.h"
#include "vm/home.h"

#define VMM_CONFIG_FILE "config.json"
#define VMM_DISK_FILE "disk.img"
#define VMM_NVRAM_FILE "nvram.bin"
#define VMM_STATE_FILE "state.vmmsave"
#define VMM_TART_STATE_FILE "state.vzvmsave"
#define VMM_KERNEL_FILE "kernel"
#define VMM_INITRAMFS_FILE "initramfs"
#define VMM_EFIVARS_FILE "efivars.fd"
#define VMM_MANIFEST_FILE "manifest.json"
#define VMM_EXPLICITLY_PULLED_FILE ".explicitly-pulled"

typedef enum {
	VMM_STATE_STOPPED,
	VMM_STATE_RUNNING,
	VMM_STATE_SUSPENDED,
} vmm_vm_state;

typedef struct vmm_bundle {
	char *name;	    /* owned: what the user called it */
	char *dir;	    /* owned: absolute or home-relative directory */
	vmm_config *config; /* owned */
} vmm_bundle;

/* A directory is a VM iff config.json, disk.img and nvram.bin all exist (Tart's rule). */
bool vmm_bundle_dir_is_vm(const char *dir);

/*
 * Open the local VM `name`: validates the name, loads config.json and bumps
 * the access date.  A missing VM is VMM_ENOTFOUND with Tart's text
 * `the specified VM "<name>" does not exist`.
 */
int vmm_bundle_open(vmm_bundle **out, const vmm_home *h, const char *name, vmm_error **err);
/* Open a bundle at an explicit directory (cache entries, staging dirs). */
int vmm_bundle_open_dir(vmm_bundle **out, const char *dir, const char *name, vmm_error **err);
void vmm_bundle_free(vmm_bundle *b);

/* "<dir>/<file>" (caller frees). */
char *vmm_bundle_path(const vmm_bundle *b, const char *file);
/*
 * Atomically rewrite config.json from b->config.  Refuses while the VM runs
 * or the bundle is in use; takes and drops the write lock itself.
 */
int vmm_bundle_save_config(vmm_bundle *b, vmm_error **err);
/* The same for a caller that already holds a write lock on the bundle. */
int vmm_bundle_save_config_locked(vmm_bundle *b, vmm_error **err);

/*
 * Pid of the process holding the run lock: 0 if none (or no config.json),
 * -1 if one is held by a process whose pid this one cannot see (another pid
 * namespace): running, but not to be signalled.
 */
pid_t vmm_bundle_dir_running_pid(const char *dir);
static inline bool vmm_bundle_dir_is_running(const char *dir)
{
	return vmm_bundle_dir_running_pid(dir) != 0;
}
/* Pid of a process holding a read or write lock (not a run lock), 0 if none. */
pid_t vmm_bundle_dir_busy_pid(const char *dir);
vmm_vm_state vmm_bundle_dir_state(const char *dir);
static inline vmm_vm_state vmm_bundle_state(const vmm_bundle *b)
{
	return vmm_bundle_dir_state(b->dir);
}
/* "running", "suspended", "stopped" */
const char *vmm_vm_state_name(vmm_vm_state s);

/* The byte of config.json that read and write locks take (see above). */
#define VMM_BUSY_BYTE ((off_t)1 << 62)

typedef enum {
	VMM_LOCK_READ,	/* copying the bundle out */
	VMM_LOCK_WRITE, /* changing the bundle */
	VMM_LOCK_RUN,	/* running the VM (Tart's lock) */
} vmm_lock_kind;

/*
 * Take a lock on <dir>/config.json without waiting; *fd holds it until
 * closed.  Any lock first settles what a killed `vmm run` left of its state
 * (vm/resumed.h); a write or run lock also removes what killed commands left
 * in the bundle (temporary files, unfinished snapshot directories).  The VM runs: VMM_ERUNNING with
 * Tart's text `VM "<name>" is running`.  Another command reads or changes it: VMM_ELOCKED, `VM
 * "<name>" is in use by another vmm command (pid N)`.  No config.json: VMM_ENOTFOUND.
 */
int vmm_bundle_dir_lock_as(const char *dir, const char *name, vmm_lock_kind kind, int *fd,
			   vmm_error **err);
/* Tests only: called between opening config.json and locking it, when set. */
extern void (*vmm_bundle_lock_race_hook)(const char *config_path);
/* vmm_bundle_dir_lock_as(..., VMM_LOCK_WRITE, ...): the lock for changing a bundle. */
int vmm_bundle_dir_lock(const char *dir, const char *name, int *fd, vmm_error **err);

/*
 * Parse <dir>/config.json through lock_fd, the descriptor that holds the
 * running lock: opening the file again and closing it would drop the lock.
 * *raw and *len (either may be NULL) get the bytes read (caller frees).
 */
int vmm_bundle_dir_read_config(const char *dir, int lock_fd, vmm_config **out, char **raw,
			       size_t *len, vmm_error **err);

/*
 * Apparent and allocated bytes of the bundle's top-level regular files
 * (config, disk, nvram and vmm's kernel, initramfs, state...).
 */
int vmm_bundle_dir_sizes(const char *dir, uint64_t *apparent, uint64_t *allocated, vmm_error **err);

/*
 * Access date = the directory's atime.  Bumping it copies Tart's quirk:
 * utimes(dir, atime = t, mtime = previous atime), whole seconds.
 */
void vmm_access_date_set(const char *dir, time_t t);
time_t vmm_access_date_get(const char *dir);

static inline void cleanup_vmm_bundle_fn(vmm_bundle **b)
{
	vmm_bundle_free(*b);
}
#define cleanup_vmm_bundle __attribute__((cleanup(cleanup_vmm_bundle_fn)))

/*
 * Does a local VM other than `except_dir` (may be NULL) use this MAC?  With
 * running_only, only VMs that run now count (Tart's rule in `run`).
 */
bool vmm_bundle_mac_in_use(const vmm_home *h, const char *mac, const char *except_dir,
			   bool running_only);
/* Apparent bytes of config.json + disk.img + nvram.bin (Tart's `Disk`). */
uint64_t vmm_bundle_dir_disk_bytes(const char *dir);
/* The names of local VMs (initialized bundles in vms/), sorted bytewise. */
int vmm_bundle_list_names(const vmm_home *h, char ***names, size_t *n, vmm_error **err);

#endif
