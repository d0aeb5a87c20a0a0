/*
 * suspend.c — `vmm suspend NAME` and the hidden `vmm checkpoint NAME DIR`
 * (snapshots of a running VM): both save a running VM's memory, one to
 * stop it, the other to let it run on.
 */
#include "cmd/cmd.h"
#include "common/util.h"
#include "vm/run.h"

static const vmm_cmd_spec suspend_spec = {
    "suspend", "NAME",
    "Suspend a running VM: save its memory (compressed) and stop QEMU; `run` resumes it", NULL};
static const vmm_cmd_spec checkpoint_spec = {
    "checkpoint", "NAME DIR",
    "Save a running VM's memory and disk into DIR and let it run on (for snapshots)", NULL};

static int save(const vmm_cmd_spec *spec, int argc, char **argv)
{
	VMM_ARGS(a, *spec, argc, argv, NULL);
	cleanup_vmm_error vmm_error *err = NULL;
	int rc = spec == &checkpoint_spec
		     ? vmm_vm_checkpoint(cmd_home(), a.pos[0], a.pos[1], NULL, &err)
		     : vmm_vm_suspend(cmd_home(), a.pos[0], NULL, &err);
	return rc < 0 ? vmm_fail(err) : 0;
}

int cmd_suspend(int argc, char **argv)
{
	return save(&suspend_spec, argc, argv);
}

int cmd_checkpoint(int argc, char **argv)
{
	return save(&checkpoint_spec, argc, argv);
}
