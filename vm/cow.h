/*
 * cow.h — the guest's RAM as it was at one instant, saved while the guest
 * runs on: the memory of a snapshot of a running VM (vm/checkpoint.h).
 *
 * QEMU 7.2's background snapshot write-protects all of the RAM inside the
 * pause, one page-table entry at a time: about 30 ms a GiB of 4 KiB pages.
 * vmm does it itself instead, through QEMU's userfaultfd (vm/lazy.h):
 *
 *   arm      while the guest runs, every page is write-protected; a page
 *            the guest writes after that is noted and let go.
 *   capture  in the pause, only the pages noted are protected again.
 *   then     the first write into a 2 MiB chunk that the save has not read
 *            copies the chunk aside before the write goes on; the save
 *            reads each chunk from that copy, or from the RAM, and then
 *            lifts the chunk's protection.
 *
 * QEMU then saves only its devices (x-ignore-shared), and the state holds
 * the RAM as memory chunks, as a suspend's does.
 */
#ifndef VMM_VM_COW_H
#define VMM_VM_COW_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

typedef struct vmm_cow vmm_cow;

/*
 * Write-protect QEMU's mapping of the RAM (at base in QEMU, size bytes;
 * ram_fd is vmm's descriptor of the same memory) through uffd, QEMU's
 * userfaultfd (borrowed until the free), and start answering its faults.
 */
int vmm_cow_arm(vmm_cow **out, int uffd, uint64_t base, int ram_fd, uint64_t size, vmm_error **err);

/*
 * The guest is stopped: this is the instant.  The pages written since arm
 * are protected again.
 */
int vmm_cow_capture(vmm_cow *c, vmm_error **err);

/*
 * The chunk at pos (a multiple of 2 MiB; len bytes, to its end) as it was
 * at the instant, into buf; each chunk once.  0, or -1 with errno.  A
 * vmm_chunk_source (vm/chunks.h) for the save.
 */
int vmm_cow_read(void *cow, uint64_t pos, void *buf, size_t len);

/*
 * After the capture: the chunks to save (their positions, ascending, for
 * vmm_chunk_writer_add_chunks; the caller frees), how many.  The chunks
 * that were all holes at the instant are not among them.
 */
size_t vmm_cow_take_list(vmm_cow *c, uint64_t **list);

/* Lift every protection, stop answering, free.  NULL is fine. */
void vmm_cow_free(vmm_cow *c);

#endif
