/*
 * chunks.h — the body of a format-2 state file (vm/savefile.h): chunks
 * compressed and decompressed on every CPU at once, and their index.
 *
 * A chunk is one lz4 or zstd frame with its codec's content checksum.
 * Stream chunks hold consecutive pieces (chunk_size bytes, the last one
 * shorter) of QEMU's migration stream; memory chunks hold the non-zero
 * 4 KiB pages of one chunk_size stretch of guest RAM, which an index record
 * names with a page bitmap.  The index follows the chunks: one
 * VMM_SAVEFILE_RECORD_SIZE record each, little-endian:
 *
 *   0   u8   type (0 stream, 1 memory)      1  3 bytes zero
 *   4   u32  compressed size                8  u32 raw size
 *   12  u32  zero                           16 u64 offset of the frame in the file
 *   24  u64  position: in the stream, or in RAM
 *   32  64 bytes: memory chunks, which pages are stored (bit i = page i); else zero
 *
 * Stream records come first, in stream order; memory records follow in RAM
 * order.  Readers check every record against the header before use.
 *
 * Writers lay chunks out in the order they finish (the index says where),
 * append the index and leave the header to the caller.
 */
#ifndef VMM_VM_CHUNKS_H
#define VMM_VM_CHUNKS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "vm/savefile.h"

/* RAM (and stream) per chunk in what vmm writes: one x86 huge page. */
#define VMM_CHUNK_SIZE (2u << 20)

/* The threads that (de)compress: one per CPU, at most 16. */
int vmm_chunks_threads(void);

/* --- writing ------------------------------------------------------------------ */

typedef struct vmm_chunk_writer vmm_chunk_writer;

/*
 * The memory chunks of the state a guest was resumed from, with a hash of
 * each one's pages as they were loaded (and a descriptor of that file, which
 * stays readable after it is removed).  A later save of the same guest copies
 * the frames of stretches whose pages have not changed instead of compressing
 * them again: suspend after resume costs what changed.  Opaque.
 */
typedef struct vmm_chunk_base vmm_chunk_base;
void vmm_chunk_base_free(vmm_chunk_base *b);
/*
 * May a save of `codec` go into base's own file?  Not in another codec, and
 * not once the file is more than twice its live frames (then a fresh file).
 */
bool vmm_chunk_base_in_place_ok(const vmm_chunk_base *b, vmm_codec codec);

/*
 * Start a body in fd (open for writing; chunks go from
 * VMM_SAVEFILE_HEADER_SIZE on), compressed with codec at level (lz4: 0 is
 * its default, below 0 faster; zstd: its levels) by `threads` threads.
 * `what` names the file in errors.
 */
int vmm_chunk_writer_open(vmm_chunk_writer **out, int fd, const char *what, vmm_codec codec,
			  int level, int threads, vmm_error **err);

/*
 * A writer into the file base was loaded from (fd: open read-write on it):
 * unchanged chunks stay where they are, new ones are appended, dead ones
 * have their blocks freed, and a new index goes at the end.  The header is
 * the caller's, as ever; until it is written the file is neither the old
 * state nor the new one, so it must not be named as a state meanwhile.
 */
int vmm_chunk_writer_open_in_place(vmm_chunk_writer **out, int fd, const vmm_chunk_base *base,
				   const char *what, int level, int threads, vmm_error **err);

/*
 * Reuse the unchanged chunks of `base` (borrowed until finish) when they are
 * in this writer's codec.  Call before vmm_chunk_writer_add_memory().
 */
void vmm_chunk_writer_set_base(vmm_chunk_writer *w, const vmm_chunk_base *base);

/* How many memory chunks were compressed and how many copied from the base so far. */
void vmm_chunk_writer_counts(vmm_chunk_writer *w, uint64_t *compressed, uint64_t *reused);

/*
 * Queue the guest RAM in ram_fd (size bytes; holes are skipped without
 * reading) for compression; the threads start on it at once and work
 * beside vmm_chunk_writer_pump().  ram_fd must stay open and unchanged
 * until vmm_chunk_writer_finish().
 */
int vmm_chunk_writer_add_memory(vmm_chunk_writer *w, int ram_fd, uint64_t size, vmm_error **err);
/*
 * The same for the chunks at the positions in list (n of them, ascending,
 * multiples of VMM_CHUNK_SIZE; the writer takes it) instead of those that
 * hold data now.
 */
void vmm_chunk_writer_add_chunks(vmm_chunk_writer *w, int ram_fd, uint64_t size, uint64_t *list,
				 size_t n);
/*
 * Which chunks of the RAM in ram_fd (size bytes) hold data: their positions,
 * ascending, in *list (caller frees), *n of them.  Pages tmpfs never had,
 * or allocated and never written, are holes.
 */
int vmm_chunks_with_data(int ram_fd, uint64_t size, uint64_t **list, size_t *n, vmm_error **err);

/*
 * Saving ahead: while the guest runs, one thread at the lowest priority
 * (SCHED_IDLE and the idle I/O class: only what the guest leaves) keeps a
 * base of its RAM (tmpfs) in fd, the run's never-restored
 * state.vmmsave.resumed.tmp.  Every `interval` seconds it reads each chunk
 * that holds data into a buffer of its own and hashes it there; a chunk
 * whose hash is the same as at the pass before but not that of its frame is
 * compressed (from the same buffer) into a dead frame's room, or at the
 * end, and then named instead of its old frame.  What changes all the time
 * is thus never compressed; a suspend then reuses, by hash, the frames of
 * what did not change since, as after a resume.  *base (may be NULL) is
 * what a resume or an earlier stop left, freed at once of its stream and
 * index; one that cannot be kept (another codec, a fill under way, frames
 * off 4 KiB) gives way to an empty one.  Taken (*base NULL) on success; on
 * failure *base is still a base for fd.
 */
typedef struct vmm_chunk_ahead vmm_chunk_ahead;
int vmm_chunk_ahead_start(vmm_chunk_ahead **out, int ram_fd, uint64_t size, int fd,
			  vmm_chunk_base **base, vmm_codec codec, double interval, vmm_error **err);
/*
 * An eventfd, readable when it has caught up (every chunk seen twice, and
 * a pass found nothing more to compress), and when the thread fails.
 */
int vmm_chunk_ahead_fd(const vmm_chunk_ahead *a);
/*
 * After the fd is readable: 1 if caught up, 0 if not, -1 if the thread
 * failed (why in *err; it stopped, its base stands); *bytes the RAM
 * compressed so far, and at the last pass *stored chunks with a frame and
 * *changing chunks without one.
 */
int vmm_chunk_ahead_news(vmm_chunk_ahead *a, uint64_t *bytes, size_t *stored, size_t *changing,
			 vmm_error **err);
/*
 * Stop the thread, without waiting for it (it changes nothing from then on),
 * and free a: its base, for a save into fd or a later start.
 */
vmm_chunk_base *vmm_chunk_ahead_stop(vmm_chunk_ahead *a);

/*
 * Where the threads read the RAM from, instead of ram_fd: read(ctx, pos,
 * buf, len) puts the len bytes of RAM at pos (a chunk) into buf; 0, or -1
 * with errno.  For a RAM that changes while it is saved (vm/cow.h).  Call
 * before vmm_chunk_writer_add_memory().
 */
typedef int (*vmm_chunk_source)(void *ctx, uint64_t pos, void *buf, size_t len);
void vmm_chunk_writer_set_source(vmm_chunk_writer *w, vmm_chunk_source read, void *ctx);
/*
 * Read fd to its end as stream chunks (QEMU's migration stream from a
 * pipe).  The threads compress full chunks while this reads the next one.
 */
int vmm_chunk_writer_pump(vmm_chunk_writer *w, int fd, vmm_error **err);

/*
 * Wait for every chunk, write the index and fill h's format-2 fields
 * (kind, codec, device_size, raw_size, chunk_size, index_*,
 * compressed_size).  Does not write the header or sync.
 */
int vmm_chunk_writer_finish(vmm_chunk_writer *w, vmm_savefile_header *h, vmm_error **err);

/* Write 1 to the eventfd fd (borrowed) when the writer fails. */
void vmm_chunk_writer_notify(vmm_chunk_writer *w, int fd);
/* -1 with the first error if the writer has failed, else 0. */
int vmm_chunk_writer_check(vmm_chunk_writer *w, vmm_error **err);
/* Stop the threads (an unfinished body is abandoned) and free. */
void vmm_chunk_writer_free(vmm_chunk_writer *w);

/* Ask the threads to stop soon (another thread's pump or finish then fails). */
void vmm_chunk_writer_cancel(vmm_chunk_writer *w);

/* --- reading ------------------------------------------------------------------ */

typedef struct vmm_chunk_index vmm_chunk_index;

/* Read and check the index of the state file open as fd (header h). */
int vmm_chunk_index_load(vmm_chunk_index **out, int fd, const vmm_savefile_header *h,
			 const char *what, vmm_error **err);
/* Check an index held in memory (len bytes); used by the loader and the fuzzer. */
int vmm_chunk_index_parse(vmm_chunk_index **out, const void *buf, size_t len,
			  const vmm_savefile_header *h, const char *what, vmm_error **err);
void vmm_chunk_index_free(vmm_chunk_index *x);

typedef struct vmm_chunk_fill vmm_chunk_fill;

/*
 * Start decompressing the memory chunks of the state file fd (header h,
 * index x; both borrowed until the wait) into ram_fd, which must read as
 * zeros: `threads` threads write the stored pages and leave the rest holes.
 */
int vmm_chunk_fill_start(vmm_chunk_fill **out, int fd, const vmm_savefile_header *h,
			 const vmm_chunk_index *x, int ram_fd, int threads, const char *what,
			 vmm_error **err);
/* The guest runs meanwhile: from their next chunk on, the threads run at nice 10. */
void vmm_chunk_fill_background(vmm_chunk_fill *f);

/* The fill frees x when it is done (it outlives the loader that read x). */
void vmm_chunk_fill_adopt_index(vmm_chunk_fill *f, vmm_chunk_index *x);

/*
 * For a guest that runs before its memory is all in (vm/lazy.h): make sure
 * the page at `offset` of the RAM is in, and the rest of its chunk.  *data
 * says whether the state holds it; if not, it is a page of zeros the caller
 * provides.  -1 if its chunk
 * could not be restored (the fill has failed: vmm_chunk_fill_wait says why).
 * One caller at a time.
 */
int vmm_chunk_fill_page(vmm_chunk_fill *f, uint64_t offset, bool *data);
/*
 * While the fill of a lazy resume is under way, a base for a save of the
 * stopped guest (f must outlive it): a chunk not yet in was never touched
 * by the guest (vmm_chunk_fill_page), so the save keeps its frame without
 * reading the RAM; chunks in are compared as with any base (a save fails
 * if the fill fails meanwhile).  Until the base is freed the fill's
 * threads begin no chunk (the save would wait for each).  NULL if the fill
 * has failed, or if a save in `codec` could not reuse its frames (then
 * wait for the fill).
 */
vmm_chunk_base *vmm_chunk_fill_base(vmm_chunk_fill *f, vmm_codec codec);
/* Readable once every chunk is in, or once the fill has failed. */
int vmm_chunk_fill_done_fd(const vmm_chunk_fill *f);
bool vmm_chunk_fill_failed(vmm_chunk_fill *f);
/* Stop the threads soon; the wait then fails. */
void vmm_chunk_fill_cancel(vmm_chunk_fill *f);

/*
 * Wait for the fill; the first error (a corrupt chunk: VMM_EFORMAT) if any.
 * With base non-NULL, *base gets what a later save may reuse (caller frees).
 * Frees f.
 */
int vmm_chunk_fill_wait(vmm_chunk_fill *f, vmm_chunk_base **base, vmm_error **err);

/*
 * Decompress the stream chunks in order into out_fd (a pipe to QEMU), with
 * `threads` threads working ahead of the writes.
 */
int vmm_chunk_stream_out(int fd, const vmm_savefile_header *h, const vmm_chunk_index *x, int out_fd,
			 int threads, const char *what, vmm_error **err);

/*
 * Write the state file src again into dst (`dst`.tmp, fsync, rename) with
 * every chunk in `codec` at `level`; the header names the new codec.  For
 * pushes, where the network is slower than a stronger codec.
 */
int vmm_chunk_reencode(const char *src, const char *dst, vmm_codec codec, int level, int threads,
		       vmm_error **err);

#endif
