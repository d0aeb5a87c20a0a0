#include "cmd/cmd.h"
#include "common/util.h"
#include "registry/cache.h"
#include "registry/oci/reference.h"
#include "vm/ops.h"

static const vmm_cmd_spec spec = {
    "delete", "NAME...", "Delete local VMs or cached images; stops at the first error", NULL};

int cmd_delete(int argc, char **argv)
{
	VMM_ARGS(a, spec, argc, argv, NULL);
	for (size_t i = 0; i < a.npos; i++) {
		cleanup_vmm_error vmm_error *err = NULL;
		cleanup_vmm_reference vmm_reference *ref = NULL;
		int rc;
		if (vmm_reference_parse(&ref, a.pos[i], NULL) == 0)
			rc = vmm_cache_delete(cmd_home(), ref, &err);
		else
			rc = vmm_vm_delete(cmd_home(), a.pos[i], &err);
		if (rc < 0)
			return vmm_fail(err);
	}
	return 0;
}
