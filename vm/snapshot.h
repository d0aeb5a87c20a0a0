/*
 * snapshot.h — named snapshots kept inside a bundle:
 *
 *   vms/<vm>/snapshots/<snap>/   a bundle of its own: config.json, disk.img,
 *                                nvram.bin, and whatever else the VM had
 *                                (efivars.fd, kernel, initramfs, and
 *                                state.vmmsave when the VM was suspended)
 *
 * Files are reflinked where the file system allows, so a snapshot costs no
 * space until the VM writes.  Every change is one rename of a directory,
 * made durable: a snapshot is built in snapshots/.new-<uuid>, its files and
 * the directory synced, renamed into place (never over another) and
 * snapshots/ synced; a delete renames it to snapshots/.del-<uuid> first; a
 * restore builds the VM's whole new bundle beside it and swaps the two
 * directories (see vm/snapshot.c).  Hidden work directories are locked by
 * their maker; those nobody holds are collected by the next command that
 * comes by.
 */
#ifndef VMM_VM_SNAPSHOT_H
#define VMM_VM_SNAPSHOT_H

#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include "common/err.h"
#include "storage/copy.h"
#include "vm/home.h"

#define VMM_SNAPSHOTS_DIR "snapshots"

typedef struct vmm_snapshot_info {
	char *name; /* owned */
	time_t created;
	uint64_t allocated; /* bytes the snapshot holds on its own (reflinks count in full) */
	bool has_memory;    /* holds a suspended memory state */
} vmm_snapshot_info;

/* <vm_dir>/snapshots/<snap> (caller frees). */
char *vmm_snapshot_dir(const char *vm_dir, const char *snap);
/* A snapshot name: non-empty, no '/', not starting with '.'. */
int vmm_snapshot_check_name(const char *snap, vmm_error **err);

/*
 * Snapshot the local VM `vm_name` (its bundle at vm_dir).  A stopped VM
 * gives its disk, a suspended one its disk and memory state, a running one
 * its disk and memory as of now: the guest pauses only while its memory is
 * saved and its disk reflinked (vmm_vm_checkpoint), then runs on.  Exists
 * already: VMM_EEXISTS.
 */
int vmm_snapshot_create(const vmm_home *h, const char *vm_dir, const char *vm_name,
			const char *snap, vmm_copy_stats *stats, vmm_error **err);
/* Sorted by creation time, then name.  Free with vmm_snapshot_infos_free(). */
int vmm_snapshot_list(const char *vm_dir, vmm_snapshot_info **out, size_t *n, vmm_error **err);
void vmm_snapshot_infos_free(vmm_snapshot_info *v, size_t n);
/*
 * Put the VM (not running) back to the snapshot; the snapshot stays.  The
 * VM's directory is swapped for a new one with one rename: a crash leaves
 * it as it was or as the snapshot, and vmm_snapshot_recover() tidies up.
 */
int vmm_snapshot_restore(const vmm_home *h, const char *vm_dir, const char *vm_name,
			 const char *snap, vmm_error **err);
/*
 * Finish or undo what a killed restore left in vms/: `name` is an entry of
 * vms/ (others than .restore-* are ignored).  Call under the home lock.  A
 * restore still under way, or a VM in use, is left for later (returns 0).
 */
int vmm_snapshot_recover(const vmm_home *h, const char *name, vmm_error **err);
/* Remove the hidden work directories in <vm_dir>/snapshots that no process holds. */
void vmm_snapshot_collect(const char *vm_dir);
int vmm_snapshot_delete(const char *vm_dir, const char *vm_name, const char *snap, vmm_error **err);
/* Import an archive (storage/archive.h) as snapshot `snap`; "-" reads stdin. */
int vmm_snapshot_import(const char *vm_dir, const char *vm_name, const char *snap, const char *path,
			vmm_error **err);

/*
 * Resolve "VM@SNAP" to the snapshot's directory (caller frees *dir).
 * Returns 1 when spec names a snapshot of an existing VM, 0 when spec is
 * not of that form (or is itself the name of a VM), -1 when the VM exists
 * but lacks that snapshot (VMM_ENOTFOUND).
 */
int vmm_snapshot_resolve(const vmm_home *h, const char *spec, char **dir, vmm_error **err);

/*
 * The directory of a local source: a VM's bundle (its access date bumped),
 * or a snapshot's for "VM@SNAP".  A missing one is VMM_ENOTFOUND.
 */
int vmm_snapshot_source_dir(const vmm_home *h, const char *spec, char **dir, vmm_error **err);

/* Make snapshot `snap` of the VM a copy (reflinked where possible) of the bundle in src_dir. */
int vmm_snapshot_from_dir(const char *vm_dir, const char *vm_name, const char *snap,
			  const char *src_dir, vmm_error **err);

#endif
