#include "cmd/cmd.h"
#include "common/util.h"
#include "vm/run.h"

typedef struct stop_args {
	vmm_opt_num timeout;
} stop_args;

static const vmm_opt opts[] = {
    {VMM_INT(stop_args, timeout, "timeout", "SECONDS", 0, 86400,
	     "Seconds to wait for the guest to power off before killing it (default 30)"),
     .short_name = 't'},
    {0},
};

static const vmm_cmd_spec spec = {
    "stop", "NAME [--timeout SECONDS]",
    "Stop a VM: power a running one down (killing it after the timeout), or discard a "
    "suspended one's saved state",
    opts};

int cmd_stop(int argc, char **argv)
{
	stop_args o = {.timeout.value = 30};
	VMM_ARGS(a, spec, argc, argv, &o);
	cleanup_vmm_error vmm_error *err = NULL;
	if (vmm_vm_stop(cmd_home(), a.pos[0], (double)o.timeout.value, NULL, &err) < 0)
		return vmm_fail(err);
	return 0;
}
