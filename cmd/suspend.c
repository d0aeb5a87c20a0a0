#include "cmd/cmd.h"
#include "common/util.h"
#include "vm/run.h"

static const vmm_cmd_spec spec = {
    "suspend",
    "NAME",
    "Suspend a running VM: save its memory (compressed) and stop QEMU; `run` resumes it",
    NULL,
    1,
    1};

int cmd_suspend(int argc, char **argv)
{
	cleanup_vmm_args vmm_args a;
	VMM_ARGS_PARSE(a, spec, argc, argv, NULL);
	cleanup_vmm_error vmm_error *err = NULL;
	if (vmm_vm_suspend(cmd_home(), a.pos[0], NULL, &err) < 0)
		return vmm_fail(err);
	return 0;
}
