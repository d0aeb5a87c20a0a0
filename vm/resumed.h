/*
 * resumed.h — what the names of a state file promise while a resume uses it
 * (vm/run.c do_resume has the whole story):
 *
 *   state.vmmsave                     suspended: the disk is the one this
 *                                     memory belongs to; the next run restores it
 *   state.vmmsave.resuming-<w>.tmp    moved aside, durably, just before `cont`:
 *                                     restorable while the witness <w> holds
 *   state.vmmsave.resumed.tmp         `cont` returned, the guest ran: never
 *                                     restored (a later suspend saves into it)
 *
 * The witness is a hash of what would show that the guest has run since it
 * was taken: the boot, the mount, and the identity, size and times of the
 * files the guest writes (disk.img, efivars.fd, nvram.bin).  Any write
 * through QEMU changes their times; a power cut changes the boot (a file
 * system cut and mounted again without a reboot, the mount); a copy of the
 * bundle changes the inodes.  Whoever locks the bundle next settles it.
 */
#ifndef VMM_VM_RESUMED_H
#define VMM_VM_RESUMED_H

#include <stdbool.h>

#include "vm/bundle.h"

#define VMM_STATE_RESUMED_FILE VMM_STATE_FILE ".resumed.tmp"
#define VMM_STATE_RESUMING_PREFIX VMM_STATE_FILE ".resuming-"

/*
 * "state.vmmsave.resuming-<witness>.tmp" for the bundle at dir as it is now
 * (caller frees).  Where the witness cannot be taken (no boot id), a name
 * that never matches one: such a state is dropped rather than trusted.
 */
char *vmm_resumed_pending_name(const char *dir);

/* Does dir hold a state moved aside before a `cont` whose guest cannot have run? */
bool vmm_resumed_restorable(const char *dir);

/*
 * Settle what a killed `vmm run` left, under any lock on the bundle (no
 * `vmm run` can be at work then): a restorable state goes back to
 * state.vmmsave, durably; the other names are removed, with a half-written
 * state.vmmsave.tmp.
 */
void vmm_resumed_settle(const char *dir);

#endif
