#include "cmd/cmd.h"
#include "common/util.h"
#include "vm/run.h"

static const vmm_cmd_spec spec = {
    "checkpoint",
    "NAME DIR",
    "Save a running VM's memory and disk into DIR and let it run on (for snapshots)",
    NULL,
    2,
    2};

int cmd_checkpoint(int argc, char **argv)
{
	cleanup_vmm_args vmm_args a;
	VMM_ARGS_PARSE(a, spec, argc, argv, NULL);
	cleanup_vmm_error vmm_error *err = NULL;
	if (vmm_vm_checkpoint(cmd_home(), a.pos[0], a.pos[1], NULL, &err) < 0)
		return vmm_fail(err);
	return 0;
}
