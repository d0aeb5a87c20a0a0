/*
 * manifest.h — OCI image manifests as Tart writes and reads them
 * (tart-spec §5.1–5.4, DESIGN §6).
 *
 * Parsing validates what a hostile registry could send: the JSON shape,
 * media types, digests ("sha256:" + 64 lower-case hex), sizes within
 * bounds, annotations as strings.  vmm_manifest_check_tart() then applies
 * Tart's rules for a VM image (one config layer, one NVRAM layer, at least
 * one disk.v2 layer with both annotations, sizes that add up).
 *
 * Encoding produces Tart's exact bytes: compact, keys sorted as Foundation
 * sorts them, '/' escaped as "\/", every layer with an "annotations"
 * object (empty for config and NVRAM).
 *
 * A vmm_manifest owns everything it points to; free with vmm_manifest_free().
 */
#ifndef VMM_REGISTRY_OCI_MANIFEST_H
#define VMM_REGISTRY_OCI_MANIFEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <jansson.h>

#include "common/err.h"

#define VMM_MEDIA_OCI_MANIFEST_V1 "application/vnd.oci.image.manifest.v1+json"
#define VMM_MEDIA_OCI_CONFIG_V1 "application/vnd.oci.image.config.v1+json"
#define VMM_MEDIA_TART_CONFIG "application/vnd.cirruslabs.tart.config.v1"
#define VMM_MEDIA_TART_DISK_V1 "application/vnd.cirruslabs.tart.disk.v1"
#define VMM_MEDIA_TART_DISK_V2 "application/vnd.cirruslabs.tart.disk.v2"
#define VMM_MEDIA_TART_NVRAM "application/vnd.cirruslabs.tart.nvram.v1"

#define VMM_ANN_UNCOMPRESSED_SIZE "org.cirruslabs.tart.uncompressed-size"
#define VMM_ANN_UNCOMPRESSED_DIGEST "org.cirruslabs.tart.uncompressed-content-digest"
#define VMM_ANN_DISK_SIZE "org.cirruslabs.tart.uncompressed-disk-size"

/*
 * The largest disk a manifest may claim: 16 TiB, ext4's largest file.  A
 * claim of more is refused rather than sized, pruned for and hashed.
 */
#define VMM_DISK_MAX_BYTES (16ULL << 40)
#define VMM_ANN_UPLOAD_TIME "org.cirruslabs.tart.upload-time"
#define VMM_LABEL_DISK_FORMAT "org.cirruslabs.tart.disk.format"

/* Tart's disk chunk: 512 MiB of uncompressed disk per layer. */
#define VMM_DISK_CHUNK (512ULL * 1024 * 1024)

/* Bounds that keep a lying manifest from doing harm. */
#define VMM_MANIFEST_MAX_LAYERS 100000
#define VMM_BLOB_MAX_SIZE (1ULL << 42)

typedef struct vmm_descriptor {
	char *media_type; /* owned */
	char digest[72];  /* "sha256:<hex>" */
	uint64_t size;
	json_t *annotations; /* owned: an object of strings (maybe empty) */
	/* disk layers, filled by vmm_manifest_check_tart() */
	uint64_t uncompressed_size;
	char uncompressed_digest[72];
	uint64_t offset; /* where the layer starts in disk.img */
} vmm_descriptor;

typedef struct vmm_manifest {
	vmm_descriptor config;
	vmm_descriptor *layers; /* owned */
	size_t nlayers;
	json_t *annotations; /* owned: an object (maybe empty) */
	uint64_t disk_size;  /* Σ disk layers' uncompressed sizes (after check_tart) */
} vmm_manifest;

/* Parse and validate an OCI image manifest. */
int vmm_manifest_parse(vmm_manifest **out, const char *data, size_t len, vmm_error **err);
/*
 * Tart's rules for a VM image; fills the disk layers' sizes, digests and
 * offsets and m->disk_size.  Legacy disk.v1 images get Tart's message.
 */
int vmm_manifest_check_tart(vmm_manifest *m, vmm_error **err);
void vmm_manifest_free(vmm_manifest *m);

/* The index of the first layer of this media type, or -1. */
long vmm_manifest_find(const vmm_manifest *m, const char *media_type);
/* A "sha256:<hex>" string with exactly 64 lower-case hex digits? */
bool vmm_digest_is_valid(const char *s);

/* --- building ------------------------------------------------------------ */

vmm_manifest *vmm_manifest_new(void);
/* Append a layer (annotations start empty); returns it (borrowed). */
vmm_descriptor *vmm_manifest_add_layer(vmm_manifest *m, const char *media_type, const char *digest,
				       uint64_t size);
void vmm_descriptor_annotate(vmm_descriptor *d, const char *key, const char *value);
void vmm_manifest_annotate(vmm_manifest *m, const char *key, const char *value);
/* Tart's exact manifest bytes (caller frees). */
char *vmm_manifest_encode(const vmm_manifest *m);

/*
 * The OCI config blob Tart pushes:
 *   {"architecture":"arm64","config":{"Labels":{…}},"os":"linux"}
 * with org.cirruslabs.tart.disk.format = disk_format and each "k=v" of
 * labels (split at the first '=', empty keys skipped, a missing value "").
 */
char *vmm_oci_config_encode(const char *arch, const char *os, const char *disk_format,
			    const char *const *labels, size_t nlabels);

static inline void cleanup_vmm_manifest_fn(vmm_manifest **m)
{
	vmm_manifest_free(*m);
}
#define cleanup_vmm_manifest __attribute__((cleanup(cleanup_vmm_manifest_fn)))

#endif
