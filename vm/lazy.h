/*
 * A resumed guest that runs before its memory is all in (README, "Formats:
 * Guest memory").
 *
 * A resume decompresses the saved RAM into the memfd that QEMU maps; to
 * wait for all of it before `cont` makes resume as slow as the codec.
 * Instead QEMU, as it starts, makes a userfaultfd for its own memory from
 * the /dev/userfaultfd that vmm passes it (vm/shim/uffd_preload.c) and
 * sends it back, keeping nothing.  vmm registers QEMU's mapping of the RAM
 * for missing pages and serves each fault on a page not yet in: its chunk
 * is decompressed at once (vmm_chunk_fill_page), or, for a page the state
 * does not hold, a page of zeros is put there.  The fill's threads go on
 * meanwhile; once they are done vmm unregisters and QEMU's memory is
 * ordinary again.  Needs vmm as root (the device is root's) and Linux 6.1;
 * elsewhere a resume fills all of the RAM before `cont`, as it always did.
 *
 * vmm keeps QEMU's userfaultfd for the whole run: a snapshot of the running
 * guest write-protects the RAM through it (vm/cow.h).
 */
#ifndef VMM_VM_LAZY_H
#define VMM_VM_LAZY_H

#include <stdint.h>
#include <sys/types.h>

#include "common/err.h"
#include "vm/chunks.h"

typedef struct vmm_lazy vmm_lazy;

/*
 * Before QEMU starts.  *out is NULL where this cannot be (no
 * /dev/userfaultfd that vmm may open); else *child is the socket that QEMU
 * gets as VMM_QEMU_UFFD_FD (the caller closes its copy once QEMU has it).
 */
void vmm_lazy_prepare(vmm_lazy **out, int *child);

/*
 * QEMU (pid) is up: take its userfaultfd and find its mapping of ram_fd.
 * Nothing is registered yet: QEMU's memory is ordinary until a serve.
 */
int vmm_lazy_attach(vmm_lazy *l, pid_t pid, int ram_fd, uint64_t size, vmm_error **err);

/*
 * Register QEMU's mapping of the RAM for missing pages: from now on QEMU
 * waits on every page not in the memfd until vmm_lazy_serve() or the end.
 */
int vmm_lazy_register(vmm_lazy *l, vmm_error **err);

/*
 * Serve QEMU's faults from f (borrowed until the end) on a thread of its
 * own.  A fault whose chunk cannot be restored kills QEMU (pid).
 */
int vmm_lazy_serve(vmm_lazy *l, vmm_chunk_fill *f, pid_t qemu, vmm_error **err);

/* Stop serving and unregister: QEMU's memory is ordinary again.  NULL is fine. */
void vmm_lazy_end(vmm_lazy *l);

/*
 * QEMU's userfaultfd, for a snapshot that write-protects the RAM itself
 * (vm/cow.h), and where QEMU maps the RAM (*base); -1 if the kernel cannot
 * write-protect shared memory through it.  Borrowed: valid until the free.
 */
int vmm_lazy_uffd(const vmm_lazy *l, uint64_t *base);

/* Stop serving, unregister QEMU's memory, free.  NULL is fine. */
void vmm_lazy_free(vmm_lazy *l);

/*
 * Read uffd's page faults until stop is readable or uffd ends, calling on
 * with each one's page address and flags (UFFD_PAGEFAULT_FLAG_*).
 */
void vmm_uffd_faults(int uffd, int stop, void (*on)(void *ctx, uint64_t addr, uint64_t flags),
		     void *ctx);

#endif
