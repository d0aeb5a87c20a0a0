/*
 * suspend.c — `vmm suspend NAME` and the hidden `vmm checkpoint NAME DIR`
 * (snapshots of a running VM): both save a running VM's memory, one to
 * stop it, the other to let it run on.
 */
#include "cmd/cmd.h"
#include "common/util.h"
#include "vm/run.h"

#include <stdio.h>

static const vmm_cmd_spec suspend_spec = {
    "suspend", "NAME",
    "Suspend a running VM: save its memory (compressed) and stop QEMU; `run` resumes it", NULL};

typedef struct checkpoint_args {
	bool stats;
} checkpoint_args;

static const vmm_opt checkpoint_opts[] = {
    {VMM_FLAG(checkpoint_args, stats, "stats",
	      "Print the guest's pause and the state's sizes (for benchmarks)")},
    {0},
};

static const vmm_cmd_spec checkpoint_spec = {
    "checkpoint", "NAME DIR",
    "Save a running VM's memory and disk into DIR and let it run on (for snapshots)",
    checkpoint_opts};

int cmd_suspend(int argc, char **argv)
{
	VMM_ARGS(a, suspend_spec, argc, argv, NULL);
	cleanup_vmm_error vmm_error *err = NULL;
	return vmm_vm_suspend(cmd_home(), a.pos[0], NULL, &err) < 0 ? vmm_fail(err) : 0;
}

int cmd_checkpoint(int argc, char **argv)
{
	checkpoint_args o = {0};
	VMM_ARGS(a, checkpoint_spec, argc, argv, &o);
	cleanup_vmm_error vmm_error *err = NULL;
	vmm_savefile_stats st = {0};
	if (vmm_vm_checkpoint(cmd_home(), a.pos[0], a.pos[1], &st, &err) < 0)
		return vmm_fail(err);
	/* pause 0.012345 s, raw 536870912 bytes, stored 201326592 bytes, 3.2 s */
	if (o.stats)
		printf("pause %.6f s, raw %llu bytes, stored %llu bytes, %.3f s\n", st.pause,
		       (unsigned long long)st.raw_bytes, (unsigned long long)st.compressed_bytes,
		       st.seconds);
	return 0;
}
