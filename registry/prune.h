/*
 * prune.h — Tart's pruning (tart-spec §8): the entries that may go, their
 * access dates (directory atime) and allocated sizes, and the three rules:
 * older than a date, a space budget kept by most recent access, and the
 * automatic reclaim before a pull or clone needs room.
 *
 *   caches: OCI digest directories (not tag links) and cache/IPSWs/<digest>.ipsw
 *   vms:    local VMs that are not running
 *
 * Deleting moves an entry out of sight in one rename before removing it, so
 * a crash never leaves half an entry where it was.
 */
#ifndef VMM_REGISTRY_PRUNE_H
#define VMM_REGISTRY_PRUNE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "common/err.h"
#include "vm/home.h"

typedef enum {
	VMM_PRUNE_CACHES,
	VMM_PRUNE_VMS,
} vmm_prune_entries;

typedef struct vmm_prunable {
	char *path; /* owned: directory or file */
	char *name; /* owned: VM name (vms) or path (caches) */
	time_t accessed;
	uint64_t allocated; /* bytes */
	bool is_vm;
} vmm_prunable;

int vmm_prunables(const vmm_home *h, vmm_prune_entries which, vmm_prunable **out, size_t *n,
		  vmm_error **err);
void vmm_prunables_free(vmm_prunable *v, size_t n);

/* Delete entries accessed at or before `cutoff`.  *deleted (may be NULL) gets the count. */
int vmm_prune_older_than(const vmm_home *h, vmm_prune_entries which, time_t cutoff, size_t *deleted,
			 vmm_error **err);
/*
 * Keep the most recently accessed entries that fit in `budget` bytes
 * (an entry that does not fit is deleted, scanning goes on), Tart's rule.
 */
int vmm_prune_space_budget(const vmm_home *h, vmm_prune_entries which, uint64_t budget,
			   size_t *deleted, vmm_error **err);

/*
 * Automatic pruning before an operation that needs `required` bytes in the
 * cache's file system: unless VMM_NO_AUTO_PRUNE or TART_NO_AUTO_PRUNE is
 * set, and only when the caches could cover the shortfall, delete cache
 * entries oldest first (never `initiator`, a path that may be NULL) until
 * more than the shortfall is reclaimed.  *reclaimed may be NULL.
 */
int vmm_prune_reclaim(const vmm_home *h, uint64_t required, const char *initiator,
		      uint64_t *reclaimed, vmm_error **err);

/* The same with the file system's free bytes given (tests). */
int vmm_prune_reclaim_avail(const vmm_home *h, uint64_t required, uint64_t available,
			    const char *initiator, uint64_t *reclaimed, vmm_error **err);

/* Free bytes for unprivileged use in the file system holding path. */
int vmm_fs_available(const char *path, uint64_t *out, vmm_error **err);

#endif
