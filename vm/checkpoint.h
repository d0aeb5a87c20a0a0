/*
 * checkpoint.h — a snapshot of a running VM: memory and disk at one instant,
 * the guest paused only for milliseconds (DESIGN.md §8).
 *
 * vmm_ckpt_begin() prepares everything that can be prepared while the guest
 * runs (the state file and its compressing threads, a probe for reflinks,
 * otherwise a qcow2 scratch for QEMU's copy-before-write backup), then
 * pauses the guest and, in that pause, captures the disk (FICLONE, or the
 * start of `blockdev-backup`, whose point in time is its start) and starts
 * QEMU's `migrate` with background-snapshot, which saves the device state,
 * write-protects the RAM and lets the guest run on by itself.  From then on
 * QEMU writes each page's content of that instant into a pipe before the
 * guest may change it, and threads compress the stream.  Where QEMU may
 * not use userfaultfd (background-snapshot refused), the guest stays paused
 * until the migration has ended, the disk copied in that pause; the state is
 * the same.
 *
 * With QEMU's userfaultfd at hand (vm/lazy.h: vmm as root, ordinary pages),
 * vmm write-protects the RAM itself, before the pause (vm/cow.h), and QEMU's
 * background snapshot saves only the devices (x-ignore-shared): the pause
 * no longer grows with the RAM, and the state holds memory chunks, as a
 * suspend's does.  VMM_SNAPSHOT_COW=0 leaves it to QEMU.
 *
 * The rest is asynchronous so that `vmm run` keeps relaying the console:
 * poll vmm_ckpt_fd(), hand QMP events to vmm_ckpt_event(), and call
 * vmm_ckpt_step() until it returns 1.  The result, in `dest`:
 * state.vmmsave (kind "memory" or "stream"), disk.img (sparse) and, for UEFI guests,
 * efivars.fd.
 *
 * A vmm_ckpt is opaque; vm/ only.  QMP is used only from the calling thread.
 */
#ifndef VMM_VM_CHECKPOINT_H
#define VMM_VM_CHECKPOINT_H

#include <jansson.h>
#include <sys/types.h>

#include "common/err.h"
#include "vm/config.h"
#include "vm/qemu.h"
#include "vm/qmp.h"
#include "vm/savefile.h"

typedef struct vmm_ckpt vmm_ckpt;

/*
 * Begin a checkpoint of the QEMU behind q (command cmd, config c, bundle
 * vm_dir, process qemu_pid) into the existing directory dest;
 * ram_fd/ram_size: the guest's RAM; uffd: QEMU's userfaultfd (vm/lazy.h),
 * borrowed until the free, or -1, and uffd_base where QEMU maps the RAM.
 * On return the guest runs again (if it ran; without background-snapshot
 * once the migration has ended).  On failure nothing is left in dest and
 * the guest runs on.
 */
int vmm_ckpt_begin(vmm_ckpt **out, vmm_qmp *q, const vmm_qemu_cmd *cmd, const vmm_config *c,
		   const char *vm_dir, const char *dest, pid_t qemu_pid, int ram_fd,
		   uint64_t ram_size, int uffd, uint64_t uffd_base, vmm_error **err);

/* Readable when vmm_ckpt_step() has work. */
int vmm_ckpt_fd(const vmm_ckpt *k);

/* Look at a QMP event (borrowed); block-job and run-state events matter. */
void vmm_ckpt_event(vmm_ckpt *k, const json_t *ev);

/*
 * Move on: 0 while under way, 1 when done (stats filled: sizes, seconds, and
 * how long the guest was paused), -1 when it failed (dest cleaned up, the
 * guest running).  Either way, free k afterwards.
 */
int vmm_ckpt_step(vmm_ckpt *k, vmm_qmp *q, vmm_savefile_stats *stats, vmm_error **err);

/* Abandon and free; q may be NULL when QEMU is gone.  NULL is a no-op. */
void vmm_ckpt_free(vmm_ckpt *k, vmm_qmp *q);

#endif
