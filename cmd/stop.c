#include "cmd/cmd.h"
#include "common/util.h"
#include "vm/run.h"

static const vmm_opt opts[] = {
    {"timeout", 't', "SECONDS",
     "Seconds to wait for the guest to power off before killing it (default 30)", false},
    {NULL, 0, NULL, NULL, false},
};

static const vmm_cmd_spec spec = {
    "stop",
    "NAME [--timeout SECONDS]",
    "Stop a VM: power a running one down (killing it after the timeout), or discard a "
    "suspended one's saved state",
    opts,
    1,
    1};

int cmd_stop(int argc, char **argv)
{
	cleanup_vmm_args vmm_args a;
	VMM_ARGS_PARSE(a, spec, argc, argv);
	uint64_t timeout = 30;
	const char *t = vmm_args_get(&a, "timeout");
	if (t && (vmm_parse_u64(t, &timeout) < 0 || timeout > 86400))
		return vmm_usage_error(&spec, "--timeout: \"%s\" is not a number of seconds", t);
	cleanup_vmm_error vmm_error *err = NULL;
	if (vmm_vm_stop(cmd_home(), a.pos[0], (double)timeout, NULL, &err) < 0)
		return vmm_fail(err);
	return 0;
}
