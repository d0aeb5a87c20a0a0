#include "cmd/cmd.h"
#include "common/util.h"
#include "vm/ops.h"

#include <string.h>

typedef struct rename_args {
	bool force;
} rename_args;

static const vmm_opt opts[] = {
    {VMM_FLAG(rename_args, force, "force", "Replace an existing VM named NEW")},
    {0},
};

static const vmm_cmd_spec spec = {"rename", "NAME NEW [--force]", "Rename a local VM", opts};

int cmd_rename(int argc, char **argv)
{
	rename_args o = {0};
	VMM_ARGS(a, spec, argc, argv, &o);
	if (strchr(a.pos[0], '/'))
		return vmm_usage_error(&spec, "%s should be a local name", a.pos[0]);
	if (strchr(a.pos[1], '/'))
		return vmm_usage_error(&spec, "%s should be a local name", a.pos[1]);
	cleanup_vmm_error vmm_error *err = NULL;
	if (vmm_vm_rename(cmd_home(), a.pos[0], a.pos[1], o.force, &err) < 0) {
		/* Tart reports both as validation errors (exit 64) */
		if (err->code == VMM_ENOTFOUND || err->code == VMM_EEXISTS)
			err->code = VMM_EUSAGE;
		return vmm_fail(err);
	}
	return 0;
}
