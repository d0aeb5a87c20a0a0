/*
 * transfer.h — a VM to and from the portable archive (storage/archive.h).
 *
 * Export holds the VM's running lock while it reads, so the VM cannot start
 * mid-export; a suspended VM is exported with its memory state.  Import
 * builds the VM in tmp/ and moves it into vms/ with one rename; a MAC that
 * another local VM uses is replaced (Tart's rule), unless the archive holds
 * a suspended VM, which keeps its MAC to resume the same machine.
 */
#ifndef VMM_VM_TRANSFER_H
#define VMM_VM_TRANSFER_H

#include <stdbool.h>

#include "common/err.h"
#include "vm/home.h"

/* Export the bundle in dir (called `name` in messages) to path; "-" is stdout. */
int vmm_vm_export(const char *dir, const char *name, const char *path, vmm_error **err);

/* Import the archive at path ("-" is stdin) as vms/<name>; `force` replaces an existing VM. */
int vmm_vm_import(const vmm_home *h, const char *path, const char *name, bool force,
		  vmm_error **err);

/*
 * Unpack the archive at path ("-" is stdin) into the existing empty
 * directory dest and check that it holds a bundle; errors name the archive.
 */
int vmm_vm_unpack(const char *path, const char *dest, vmm_error **err);

#endif
