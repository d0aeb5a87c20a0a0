/*
 * image.h — a VM bundle as an OCI image: the one table of which bundle file
 * becomes which layer and back, which push, pull and the manifest check go
 * by.  Layers come in the table's order:
 *
 *   config.json    application/vnd.cirruslabs.tart.config.v1   Tart's, exactly one
 *   disk.img       application/vnd.cirruslabs.tart.disk.v2     Tart's, 512 MiB chunks
 *   nvram.bin      application/vnd.cirruslabs.tart.nvram.v1    Tart's, exactly one
 *   kernel         application/vnd.vmm.kernel.v1               vmm's, at most one
 *   initramfs      application/vnd.vmm.initramfs.v1            vmm's, at most one
 *   state.vmmsave  application/vnd.vmm.state.v1+zstd           vmm's, at most one
 *
 * Tart ignores vmm's layers.  The state layer carries what the state file's
 * header says about its stream (VMM_ANN_STATE_*).  Tart's own rules for its
 * layers are registry/oci/manifest.h's vmm_manifest_check_tart().
 */
#ifndef VMM_REGISTRY_IMAGE_H
#define VMM_REGISTRY_IMAGE_H

#include <stddef.h>

#include "common/err.h"
#include "registry/oci/manifest.h"

#define VMM_MEDIA_VMM_KERNEL "application/vnd.vmm.kernel.v1"
#define VMM_MEDIA_VMM_INITRAMFS "application/vnd.vmm.initramfs.v1"
#define VMM_MEDIA_VMM_STATE "application/vnd.vmm.state.v1+zstd"

/* vmm's state layer: what the state.vmmsave header says about its stream */
#define VMM_ANN_STATE_RAW_SIZE "org.vmm.state.raw-size"
#define VMM_ANN_STATE_RAW_DIGEST "org.vmm.state.raw-digest"
#define VMM_ANN_STATE_QEMU_VERSION "org.vmm.state.qemu-version"
#define VMM_ANN_STATE_MACHINE "org.vmm.state.machine"

typedef enum {
	VMM_LAYER_CONFIG, /* Tart's config layer: config.json as Tart's JSONEncoder writes it */
	VMM_LAYER_DISK,	  /* Tart's disk layers: disk.img in Apple LZ4 chunks */
	VMM_LAYER_TART,	  /* another file of Tart's, exactly once, verbatim */
	VMM_LAYER_VMM,	  /* a file of vmm's, at most once, verbatim */
} vmm_layer_kind;

typedef struct vmm_image_file {
	const char *file;	/* in the bundle */
	const char *media_type; /* of its layer(s) */
	const char *what;	/* in status lines and errors: "NVRAM", "suspended state" */
	vmm_layer_kind kind;
} vmm_image_file;

/* The table, in layer order; *n gets its length. */
const vmm_image_file *vmm_image_files(size_t *n);

/* Tart's rules (vmm_manifest_check_tart), and vmm's layers at most once each. */
int vmm_image_check(vmm_manifest *m, vmm_error **err);

#endif
