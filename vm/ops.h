/*
 * ops.h — operations that make, move and remove whole bundles in vms/.
 * Every one builds in tmp/ (or moves out to tmp/) and makes the change
 * visible with a single rename under the home lock, so vms/ never holds a
 * half-made or half-deleted VM.
 */
#ifndef VMM_VM_OPS_H
#define VMM_VM_OPS_H

#include <stdbool.h>
#include <stdint.h>

#include "common/err.h"
#include "storage/copy.h"
#include "vm/config.h"
#include "vm/home.h"

typedef struct vmm_create_opts {
	uint64_t disk_size;    /* bytes */
	const char *kernel;    /* direct boot: copied into the bundle; NULL for UEFI */
	const char *initramfs; /* optional with kernel */
	const char *cmdline;   /* optional with kernel */
	bool force;	       /* replace an existing VM */
} vmm_create_opts;

int vmm_vm_create(const vmm_home *h, const char *name, const vmm_create_opts *o, vmm_error **err);

typedef struct vmm_clone_opts {
	bool force;		   /* replace an existing VM */
	const vmm_copy_opts *copy; /* may be NULL; fsync/write_back are set from durable */
	bool durable;		   /* fsync everything: the clone survives a crash */
} vmm_clone_opts;

/*
 * Clone the bundle in src_dir (a local VM or a cache entry) into vms/<name>.
 * Tart's MAC rule: a new MAC if another local VM has the source's MAC,
 * unless the source is suspended (then MAC and state are kept: a fork).
 * Crash-consistent always (a crash never leaves a broken clone visible);
 * crash-durable only with opts.durable (costs a cache flush per file).
 * stats may be NULL.
 */
int vmm_vm_clone(const vmm_home *h, const char *src_dir, const char *src_name, const char *name,
		 const vmm_clone_opts *o, vmm_copy_stats *stats, vmm_error **err);

int vmm_vm_rename(const vmm_home *h, const char *name, const char *new_name, bool force,
		  vmm_error **err);
int vmm_vm_delete(const vmm_home *h, const char *name, vmm_error **err);

/*
 * Finish what a killed `rename --force` or `snapshot restore` left in vms/
 * (hidden .rename-* and .restore-* entries, see vm/ops.c and
 * vm/snapshot.c), under the home lock.  Run before commands.
 */
int vmm_vm_recover(const vmm_home *h, vmm_error **err);

/*
 * Move a finished staging directory into vms/<name> under the home lock,
 * re-checking there that the name is free (or, with force, that the VM it
 * replaces is not running).
 */
int vmm_vm_install(const vmm_home *h, const char *staging, const char *name, bool force,
		   vmm_error **err);

/* A name fit for vms/: refuses "", ".", "..", and anything with '/'. */
int vmm_vm_check_name(const char *name, vmm_error **err);

typedef struct vmm_set_opts {
	/* config changes, made under the lock on the config read through it
	 * (may be NULL); an error leaves the VM untouched */
	int (*edit)(vmm_config *c, void *ctx, vmm_error **err);
	void *ctx;
	bool new_mac;	    /* a new random MAC: drops a suspended state */
	const char *disk;   /* replace disk.img with a copy of this: drops a suspended state */
	uint64_t disk_size; /* grow disk.img to this many bytes (0: keep) */
} vmm_set_opts;

/*
 * `vmm set`: everything under the bundle's write lock (so a VM cannot start
 * meanwhile).  A suspended state that no longer fits (new MAC, new disk) is
 * removed first; a new disk is built beside the old one and renamed over it
 * (grown there first); then the disk is grown in place; config.json is
 * rewritten last, and only if its bytes change.
 */
int vmm_vm_set(const vmm_home *h, const char *name, const vmm_set_opts *o, vmm_error **err);

/*
 * Grow disk.img of the bundle in dir to `bytes` (sparse).  Smaller than now:
 * refused with Tart's text; equal: nothing to do.
 */
int vmm_vm_disk_resize(const char *dir, uint64_t bytes, vmm_error **err);
/* The same for the disk file at `disk` (0 bytes: no change). */
int vmm_vm_disk_resize_file(const char *disk, uint64_t bytes, vmm_error **err);
/*
 * Replace disk.img with a copy of `src`, grown to `bytes` if larger (built
 * beside it under a unique name, synced, then renamed).
 */
int vmm_vm_disk_replace(const char *dir, const char *src, uint64_t bytes, vmm_error **err);

#endif
