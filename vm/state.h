/*
 * state.h — saving a running QEMU's memory to state.vmmsave and loading it
 * back, over QMP (DESIGN.md §8).
 *
 * Save: `stop`, raise max-bandwidth, pass one end of a pipe with `getfd`,
 * `migrate fd:`; vmm compresses what comes out of the pipe with
 * multi-threaded zstd into `state.vmmsave.tmp`, then writes the header,
 * fsyncs and renames.  QEMU is left paused (the caller quits it).
 *
 * Load: QEMU started with `-incoming defer` (and -S); pass a pipe's read
 * end with `getfd`, `migrate-incoming fd:`, decompress and verify the file
 * into the pipe, wait for QEMU to finish loading.  QEMU is left paused: the
 * caller `cont`s it once it has decided the state is good.
 */
#ifndef VMM_VM_STATE_H
#define VMM_VM_STATE_H

#include "common/err.h"
#include "vm/config.h"
#include "vm/qemu.h"
#include "vm/qmp.h"
#include "vm/savefile.h"

/*
 * zstd level for state files.  Suspend races an uncompressed write of the
 * same stream and is CPU-bound on small machines (zstd -1 manages about
 * 290 MB/s per core on the 2-core CI machines), so speed beats ratio: -3
 * measured 12% faster suspends and resumes than -1 in the same bench run
 * for a state of 0.43 of the raw stream instead of 0.39.
 */
#define VMM_STATE_ZSTD_LEVEL (-3)

/*
 * A header for a state of QEMU `cmd` running config `c`, with QEMU's
 * version from `q` and its resolved machine type.  Caller frees.
 */
int vmm_state_header_for(vmm_savefile_header **out, vmm_qmp *q, const vmm_qemu_cmd *cmd,
			 const vmm_config *c, vmm_error **err);

/*
 * Is the state with header h fit to restore with `cmd` and config `c`?  A
 * mismatch is VMM_EINCOMPATIBLE naming both sides ("memory 1024 MiB in the
 * state vs 2048 MiB now").  qemu_version may be NULL (not known yet).
 */
int vmm_state_check(const vmm_savefile_header *h, const vmm_qemu_cmd *cmd, const vmm_config *c,
		    const char *qemu_version, vmm_error **err);

/*
 * Save QEMU's state into `path` (DESIGN §8).  h: from vmm_state_header_for;
 * its raw fields are filled in.  On failure nothing is left at path and a
 * guest that was running runs again.
 */
int vmm_state_save(vmm_qmp *q, const char *path, vmm_savefile_header *h, vmm_savefile_stats *stats,
		   vmm_error **err);

/* Load the state at path (header h) into QEMU started with -incoming defer. */
int vmm_state_load(vmm_qmp *q, const char *path, const vmm_savefile_header *h,
		   vmm_savefile_stats *stats, vmm_error **err);

/* The resolved machine type QEMU runs ("pc-q35-7.2"); caller frees. */
int vmm_qmp_machine(vmm_qmp *q, const char *requested, char **out, vmm_error **err);

#endif
