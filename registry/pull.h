/*
 * pull.h — pull a VM image into the OCI cache (tart-spec §5.7, §1.4).
 *
 *   1. GET the manifest; the digest directory is named by the sha256 of its
 *      raw bytes (a digest reference must match it).
 *   2. Tag already linked to a cached digest: nothing to do.
 *   3. Under the per-host lock, build the image in the deterministic staging
 *      directory tmp/<md5 of the name>: config, disk layers in parallel
 *      (streamed, decoded and written sparse as they arrive, every digest and
 *      size checked), NVRAM, vmm's kernel/initramfs/state, manifest.json.
 *   4. One rename makes it the digest directory; the tag link is replaced
 *      atomically (digest pulls get .explicitly-pulled); the OCI GC runs.
 *
 * An interrupted pull resumes: disk layers verified and synced before the
 * interruption are recorded in the staging directory and not fetched again.
 * Layers that are all zeros are never fetched (they are holes), and layers
 * found in other cached images are copied locally (and verified) instead.
 * Before fetching, the cache is auto-pruned for the disk size plus 128 MiB
 * unless VMM_NO_AUTO_PRUNE / TART_NO_AUTO_PRUNE is set.
 *
 * On failure nothing appears in the cache: only the staging directory is
 * left, for the next attempt.
 */
#ifndef VMM_REGISTRY_PULL_H
#define VMM_REGISTRY_PULL_H

#include <stdbool.h>
#include <stdint.h>

#include "common/err.h"
#include "registry/oci/reference.h"
#include "registry/transfer.h"
#include "vm/home.h"

typedef struct vmm_pull_opts {
	int concurrency; /* parallel layer downloads; 0: 4 */
	bool insecure;
	vmm_transfer_ui ui;
} vmm_pull_opts;

typedef struct vmm_pull_stats {
	uint64_t layers_fetched; /* disk layers downloaded */
	uint64_t layers_resumed; /* already in the staging directory */
	uint64_t layers_local;	 /* copied from another cached image */
	uint64_t layers_zero;	 /* all zeros: left as holes */
	uint64_t bytes_fetched;	 /* compressed bytes downloaded */
} vmm_pull_stats;

/*
 * Pull r into the cache.  *dir (may be NULL) gets the digest directory;
 * stats may be NULL.
 */
int vmm_pull(const vmm_home *h, const vmm_reference *r, const vmm_pull_opts *o, char **dir,
	     vmm_pull_stats *stats, vmm_error **err);

#endif
