/*
 * state.h — saving a QEMU's state to state.vmmsave and loading it back,
 * over QMP (DESIGN.md §8).
 *
 * The guest's RAM lives in a memfd that `vmm run` owns (vm/qemu.h), so a
 * suspend needs from QEMU only its device state: `stop`, the migration
 * capability x-ignore-shared, `migrate fd:` into a pipe (a few hundred KB
 * in milliseconds).  Meanwhile every CPU compresses the RAM's non-zero
 * pages straight from the memfd (vm/chunks.h).  The file is written as
 * `<path>.tmp`, fsynced and renamed; QEMU is left paused (the caller quits it).
 *
 * A resume decompresses the RAM into a fresh memfd on every CPU while QEMU
 * starts with -incoming defer, then loads the device state with the same
 * capability and leaves QEMU paused for the caller to `cont`.
 *
 * States that hold QEMU's whole stream (vmm 0.1's format 1, and snapshots
 * of running VMs, saved with background-snapshot) load through a pipe,
 * decompressed ahead of QEMU in order.
 */
#ifndef VMM_VM_STATE_H
#define VMM_VM_STATE_H

#include "common/err.h"
#include "vm/config.h"
#include "vm/qemu.h"
#include "vm/qmp.h"
#include "vm/savefile.h"

/*
 * Codec of local state files: lz4 at its default speed.  Suspend competes
 * with a raw save written at disk speed, and lz4 compresses 600-700 MB/s
 * per core and decompresses 3 GB/s; zstd's best fast levels compress as
 * fast but decompress at half the speed, for a state 8% smaller.
 */
#define VMM_STATE_CODEC VMM_CODEC_LZ4
#define VMM_STATE_LEVEL 0
/* Pushed states: the network is slower than zstd -3 (0.31 of the raw stream vs lz4's 0.45). */
#define VMM_STATE_PUSH_CODEC VMM_CODEC_ZSTD
#define VMM_STATE_PUSH_LEVEL 3

/* QEMU's RAM for `memory` bytes of config: whole MiB, as -m has it. */
uint64_t vmm_state_ram_size(uint64_t memory);

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

typedef struct vmm_state_save_opts {
	int ram_fd;	   /* the guest's RAM (memfd, ram_size bytes); -1: QEMU streams it */
	uint64_t ram_size; /* bytes */
	int format;	   /* 0: the current one; VMM_SAVEFILE_FORMAT_STREAM: vmm 0.1's (tests) */
	const struct vmm_chunk_base *base; /* the state resumed from, to reuse; may be NULL */
	int base_fd;			   /* -1, or that file open read-write: save into it */
	const char *base_path;		   /* ... and its name now */
	bool *base_spoiled; /* set when a save into it failed: it is of no use any more */
} vmm_state_save_opts;

/*
 * Save the paused-or-running QEMU's state into `path` (DESIGN §8).  h: from
 * vmm_state_header_for; its size fields are filled in.  QEMU is left paused.
 * On failure nothing is left at path and a guest that was running runs again.
 */
int vmm_state_save(vmm_qmp *q, const char *path, vmm_savefile_header *h,
		   const vmm_state_save_opts *o, vmm_savefile_stats *stats, vmm_error **err);

/* A load under way: RAM decompressing while QEMU starts; opaque. */
typedef struct vmm_state_load vmm_state_load;

/*
 * Start loading the state at path (header h, borrowed until the end): a
 * state that holds RAM starts filling ram_fd (a fresh memfd of QEMU's RAM
 * size) at once, on every CPU.
 */
int vmm_state_load_begin(vmm_state_load **out, const char *path, const vmm_savefile_header *h,
			 int ram_fd, vmm_error **err);

/*
 * Finish the load into QEMU started with -incoming defer: wait for the RAM,
 * load the device state (or the whole stream) and wait for QEMU to take it.
 * QEMU is left paused.  *base (base may be NULL) gets what a later save of
 * this guest may reuse, or NULL (caller frees).  Frees l.
 */
int vmm_state_load_finish(vmm_state_load *l, vmm_qmp *q, vmm_savefile_stats *stats,
			  struct vmm_chunk_base **base, vmm_error **err);

/*
 * For a lazy resume (vm/lazy.h): the RAM's fill, still under way, is the
 * caller's (vmm_chunk_fill_wait), and the finish does not wait for it.
 * NULL if the state holds no RAM chunks.
 */
struct vmm_chunk_fill *vmm_state_load_take_fill(vmm_state_load *l);

/* Abandon a load that was begun (waits for its threads). */
void vmm_state_load_free(vmm_state_load *l);

static inline void cleanup_vmm_state_load_fn(vmm_state_load **l)
{
	vmm_state_load_free(*l);
}
#define cleanup_vmm_state_load __attribute__((cleanup(cleanup_vmm_state_load_fn)))

/* The resolved machine type QEMU runs ("pc-q35-7.2"); caller frees. */
int vmm_qmp_machine(vmm_qmp *q, const char *requested, char **out, vmm_error **err);

#endif
