/*
 * push.h — push a local VM to one or more registry references in Tart's
 * format (tart-spec §5.9, DESIGN §6).
 *
 * Layers, in order: the config layer (config.json as Tart's JSONEncoder
 * writes it), disk.v2 layers of 512 MiB chunks each one Apple LZ4 stream,
 * the NVRAM layer, then vmm's own: kernel, initramfs (direct-boot VMs) and
 * the suspended state (state.vmmsave).  Then the OCI config blob and the
 * manifest under every tag.
 *
 * The disk is read once: `concurrency` workers each compress, hash and
 * upload a chunk, so compression of one chunk overlaps the upload of
 * another.  Before an upload a HEAD asks whether the registry already has
 * the blob; if not, and the cache knows the blob in another repository of
 * the same registry (or this push already sent it there), a cross-
 * repository mount is tried first.  References are grouped by repository:
 * each blob goes once per repository, every tag gets the manifest.
 *
 * The VM's running lock is held throughout: a running VM is refused with
 * Tart's `VM "<name>" is running`, and nobody starts it mid-push.
 */
#ifndef VMM_REGISTRY_PUSH_H
#define VMM_REGISTRY_PUSH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "registry/oci/reference.h"
#include "registry/transfer.h"
#include "vm/home.h"

typedef struct vmm_push_opts {
	const char *const *labels; /* "k=v" for the OCI config blob */
	size_t nlabels;
	int concurrency;     /* 0: 4 */
	uint64_t chunk_size; /* bytes per PATCH; 0: monolithic POST + PUT */
	bool insecure;
	bool populate_cache; /* also install the pushed image in the cache */
	uint64_t disk_chunk; /* 0: Tart's 512 MiB (tests use smaller) */
	vmm_transfer_ui ui;
} vmm_push_opts;

/*
 * Push the local VM `name` to refs (tags; several repositories allowed).
 * digest_out (may be NULL) gets the manifest's digest.
 */
int vmm_push(const vmm_home *h, const char *name, vmm_reference *const *refs, size_t nrefs,
	     const vmm_push_opts *o, char digest_out[72], vmm_error **err);

/* The same for the bundle in `dir` (a snapshot, say), called `name` in messages. */
int vmm_push_dir(const vmm_home *h, const char *dir, const char *name, vmm_reference *const *refs,
		 size_t nrefs, const vmm_push_opts *o, char digest_out[72], vmm_error **err);

/*
 * Tart's "lightweight push" of a cached image to other tags: its manifest,
 * byte for byte (so the digest stays), under each tag.  The blobs must be in
 * each target repository already; for a repository on the source's registry
 * they are mounted from the source repository when missing.
 */
int vmm_push_remote(const vmm_home *h, const vmm_reference *src, vmm_reference *const *refs,
		    size_t nrefs, const vmm_push_opts *o, vmm_error **err);

#endif
