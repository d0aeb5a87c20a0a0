#include "registry/image.h"
#include "common/util.h"
#include "vm/bundle.h"

#include <string.h>

static const vmm_image_file files[] = {
    {VMM_CONFIG_FILE, VMM_MEDIA_TART_CONFIG, "config", VMM_LAYER_CONFIG},
    {VMM_DISK_FILE, VMM_MEDIA_TART_DISK_V2, "disk", VMM_LAYER_DISK},
    {VMM_NVRAM_FILE, VMM_MEDIA_TART_NVRAM, "NVRAM", VMM_LAYER_TART},
    {VMM_KERNEL_FILE, VMM_MEDIA_VMM_KERNEL, "kernel", VMM_LAYER_VMM},
    {VMM_INITRAMFS_FILE, VMM_MEDIA_VMM_INITRAMFS, "initramfs", VMM_LAYER_VMM},
    {VMM_STATE_FILE, VMM_MEDIA_VMM_STATE, "suspended state", VMM_LAYER_VMM},
};

const vmm_image_file *vmm_image_files(size_t *n)
{
	*n = ARRAY_SIZE(files);
	return files;
}

int vmm_image_check(vmm_manifest *m, vmm_error **err)
{
	if (vmm_manifest_check_tart(m, err) < 0)
		return -1;
	for (size_t i = 0; i < ARRAY_SIZE(files); i++) {
		if (files[i].kind != VMM_LAYER_VMM)
			continue;
		size_t n = 0;
		for (size_t k = 0; k < m->nlayers; k++)
			n += strcmp(m->layers[k].media_type, files[i].media_type) == 0;
		if (n > 1)
			return vmm_error_set(err, VMM_EINVAL, "manifest: more than one %s layer",
					     files[i].media_type);
	}
	return 0;
}
