/*
 * layers.h — Tart's disk layers (tart-spec §5.5): disk.img cut into
 * 512 MiB chunks, each compressed into one Apple LZ4 stream; and the way
 * back, streamed layer bytes decoded into a sparse disk.img.
 *
 * Encoding reads a chunk once: SEEK_DATA/SEEK_HOLE find the holes, which
 * are compressed without being read (a wholly empty chunk is encoded once
 * per process and reused); the raw bytes and the compressed stream are
 * hashed as they pass.
 *
 * Decoding takes the compressed bytes in whatever slices the network
 * delivers, hashes them, decodes them, hashes the output, and writes it at
 * the layer's offset, leaving all-zero 4 KiB blocks as holes.  finish()
 * checks the compressed size and digest, the end of the LZ4 stream, and
 * the uncompressed size and digest the manifest announced; every message
 * names the layer.
 */
#ifndef VMM_REGISTRY_OCI_LAYERS_H
#define VMM_REGISTRY_OCI_LAYERS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "registry/oci/manifest.h"

/* Progress callback: n more bytes done (uncompressed when pushing, compressed when pulling). */
typedef void (*vmm_progress_fn)(void *ctx, uint64_t n);

typedef struct vmm_disk_chunk {
	uint64_t offset, size; /* the region of disk.img */
	unsigned char *blob;   /* owned: the Apple LZ4 stream */
	size_t blob_len;
	char digest[72];	      /* of blob */
	char uncompressed_digest[72]; /* of the region */
} vmm_disk_chunk;

/*
 * Compress [offset, offset + size) of the disk open at fd into c.
 * progress (may be NULL) hears of every uncompressed byte consumed.
 */
int vmm_disk_chunk_encode(int fd, uint64_t offset, uint64_t size, vmm_disk_chunk *c,
			  vmm_progress_fn progress, void *pctx, vmm_error **err);
void vmm_disk_chunk_clear(vmm_disk_chunk *c);

/* "sha256:<hex>" of `size` zero bytes (computed once per size and cached). */
void vmm_zero_digest(uint64_t size, char out[72]);

/* --- pulling ------------------------------------------------------------- */

typedef struct vmm_layer_writer vmm_layer_writer;

/*
 * A writer for disk layer d (offset, sizes and digests from the manifest)
 * into the disk open at fd (already sized).  `name` names the layer in
 * errors, e.g. "layer 3 `sha256:…`".  The region is first punched to a hole,
 * so a resumed pull never keeps stale bytes.
 */
int vmm_layer_writer_new(vmm_layer_writer **out, int fd, const vmm_descriptor *d, const char *name,
			 vmm_error **err);
void vmm_layer_writer_free(vmm_layer_writer *w);
/* Forget what was fed and start the layer again (a download restarted from byte 0). */
int vmm_layer_writer_restart(vmm_layer_writer *w, vmm_error **err);
int vmm_layer_writer_feed(vmm_layer_writer *w, const void *data, size_t len, vmm_error **err);
int vmm_layer_writer_finish(vmm_layer_writer *w, vmm_error **err);
/* Compressed bytes fed so far. */
uint64_t vmm_layer_writer_fed(const vmm_layer_writer *w);

/*
 * A blob written verbatim to a file (config, NVRAM, kernel…), checked
 * against its digest and size.  The file is created (0644) and removed on
 * failure.
 */
typedef struct vmm_blob_writer vmm_blob_writer;
int vmm_blob_writer_new(vmm_blob_writer **out, const char *path, const vmm_descriptor *d,
			const char *name, vmm_error **err);
int vmm_blob_writer_feed(vmm_blob_writer *w, const void *data, size_t len, vmm_error **err);
int vmm_blob_writer_finish(vmm_blob_writer *w, vmm_error **err);
/* Frees; an unfinished file is removed. */
void vmm_blob_writer_free(vmm_blob_writer *w);

/*
 * Copy a region of another disk (a cached image holding the same layer)
 * into fd at d->offset, sparse, verifying d's uncompressed digest on the
 * way.  On mismatch the region is punched again and VMM_EFORMAT returned,
 * so the caller can download instead.
 */
int vmm_layer_copy_local(int fd, const char *src_disk, uint64_t src_offset, const vmm_descriptor *d,
			 vmm_error **err);

/* Hash [offset, offset+size) of fd (holes hashed without reading). */
int vmm_region_digest(int fd, uint64_t offset, uint64_t size, char out[72], vmm_error **err);

#endif
