#include "cmd/cmd.h"
#include "common/util.h"
#include "vm/run.h"

#include <stdio.h>

static const vmm_opt opts[] = {
    {"stats", 0, NULL, "Print the guest's pause and the state's sizes (for benchmarks)", false},
    {NULL, 0, NULL, NULL, false},
};

static const vmm_cmd_spec spec = {
    "checkpoint",
    "NAME DIR",
    "Save a running VM's memory and disk into DIR and let it run on (for snapshots)",
    opts,
    2,
    2};

int cmd_checkpoint(int argc, char **argv)
{
	cleanup_vmm_args vmm_args a;
	VMM_ARGS_PARSE(a, spec, argc, argv);
	cleanup_vmm_error vmm_error *err = NULL;
	vmm_savefile_stats st = {0};
	if (vmm_vm_checkpoint(cmd_home(), a.pos[0], a.pos[1], &st, &err) < 0)
		return vmm_fail(err);
	/* pause 0.012345 s, raw 536870912 bytes, stored 201326592 bytes, 3.2 s */
	if (vmm_args_has(&a, "stats"))
		printf("pause %.6f s, raw %llu bytes, stored %llu bytes, %.3f s\n", st.pause,
		       (unsigned long long)st.raw_bytes, (unsigned long long)st.compressed_bytes,
		       st.seconds);
	return 0;
}
