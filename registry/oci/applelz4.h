/*
 * applelz4.h — Apple's LZ4 stream (COMPRESSION_LZ4 of the Compression
 * framework), the framing of Tart's disk layers (tart-spec §5.6).  It is
 * not the LZ4 frame format: a stream is a run of blocks, each led by a
 * four-byte magic, and ends with "bv4$":
 *
 *   "bv41" u32le decoded_size u32le encoded_size  <raw LZ4 block>
 *   "bv4-" u32le size                              <size bytes stored>
 *   "bv4$"                                         end; nothing may follow
 *
 * A "bv41" block may reference up to 64 KiB of the output decoded before
 * it (the previous block), so the decoder keeps that history as the LZ4
 * dictionary.
 *
 * The encoder emits blocks of at most 64 KiB decoded, linked to the block
 * before (LZ4_compress_fast_continue over a double buffer), a "bv4-" block
 * where compression does not pay, and always the "bv4$" end marker.
 *
 * The decoder is streaming: feed it any slices of the stream; it keeps at
 * most one encoded block plus a bounded window of output, validates every
 * header (magic, sizes within limits, the block decoding to exactly its
 * declared size), and refuses bytes after the end marker.  Both objects are
 * owned by the caller and released with their _free().
 */
#ifndef VMM_REGISTRY_OCI_APPLELZ4_H
#define VMM_REGISTRY_OCI_APPLELZ4_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

#define VMM_APPLELZ4_BLOCK (64 * 1024)
/* Largest decoded block the decoder accepts (Apple's encoder writes 64 KiB). */
#define VMM_APPLELZ4_MAX_BLOCK (4 * 1024 * 1024)

/* Receives output in order; return negative to stop (the caller's error). */
typedef int (*vmm_applelz4_out)(void *ctx, const void *data, size_t len);

/* --- encoder ------------------------------------------------------------- */

typedef struct vmm_applelz4_enc vmm_applelz4_enc;

vmm_applelz4_enc *vmm_applelz4_enc_new(void);
void vmm_applelz4_enc_free(vmm_applelz4_enc *e);
/* Start a new, independent stream (the next block links to nothing). */
void vmm_applelz4_enc_reset(vmm_applelz4_enc *e);
/*
 * Compress `len` bytes; complete blocks are handed to out as they fill.
 * Returns 0, or the negative value out returned.
 */
int vmm_applelz4_enc_update(vmm_applelz4_enc *e, const void *data, size_t len, vmm_applelz4_out out,
			    void *ctx);
/*
 * Append `len` zero bytes without reading them: whole zero blocks reuse one
 * precomputed encoding, so holes of a sparse disk cost almost nothing.
 */
int vmm_applelz4_enc_zeros(vmm_applelz4_enc *e, uint64_t len, vmm_applelz4_out out, void *ctx);
/* Flush the last partial block and write "bv4$".  The encoder is then reset. */
int vmm_applelz4_enc_finish(vmm_applelz4_enc *e, vmm_applelz4_out out, void *ctx);

/* One-shot helper: the whole stream for buf in a malloc'ed buffer. */
void vmm_applelz4_compress(const void *buf, size_t len, unsigned char **out, size_t *out_len);

/* --- decoder ------------------------------------------------------------- */

typedef struct vmm_applelz4_dec vmm_applelz4_dec;

/*
 * A decoder that refuses to produce more than max_output bytes in total
 * (0: no limit) — a layer's annotated size bounds what its stream may yield.
 */
vmm_applelz4_dec *vmm_applelz4_dec_new(uint64_t max_output);
void vmm_applelz4_dec_free(vmm_applelz4_dec *d);
/*
 * Feed the next `len` bytes of the stream; decoded output goes to out.
 * Errors (VMM_EFORMAT) say what is wrong and at which stream offset.  If
 * out fails, its return value is passed on and *err is left alone.
 */
int vmm_applelz4_dec_update(vmm_applelz4_dec *d, const void *data, size_t len, vmm_applelz4_out out,
			    void *ctx, vmm_error **err);
/* The stream must have ended with "bv4$": else a truncation error. */
int vmm_applelz4_dec_finish(vmm_applelz4_dec *d, vmm_error **err);
/* Decoded bytes so far. */
uint64_t vmm_applelz4_dec_total(const vmm_applelz4_dec *d);
bool vmm_applelz4_dec_done(const vmm_applelz4_dec *d);

/* One-shot helper for tests and small blobs; *out is malloc'ed. */
int vmm_applelz4_decompress(const void *buf, size_t len, uint64_t max_output, unsigned char **out,
			    size_t *out_len, vmm_error **err);

#endif
