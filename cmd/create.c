#include "cmd/cmd.h"
#include "common/util.h"
#include "vm/ops.h"

#include <string.h>
#include <strings.h>

static const vmm_opt opts[] = {
    {"linux", 0, NULL, "Create a Linux VM that boots from its disk with UEFI", false},
    {"kernel", 0, "FILE", "Boot this kernel directly (copied into the VM)", false},
    {"initramfs", 0, "FILE", "Initramfs for --kernel (copied into the VM)", false},
    {"cmdline", 0, "STRING", "Kernel command line for --kernel", false},
    {"disk-size", 0, "GB", "Disk size in GB (10^9 bytes), default 50", false},
    {"disk-format", 0, "FORMAT", "Disk format: raw (the only one QEMU can use here)", false},
    {"from-ipsw", 0, "PATH", "Install macOS (not available on Linux)", true},
    {"force", 0, NULL, "Replace an existing VM of the same name", false},
    {NULL, 0, NULL, NULL, false},
};

static const vmm_cmd_spec spec = {
    "create",
    "NAME (--linux | --kernel FILE [--initramfs FILE] [--cmdline S]) [options]",
    "Create a VM",
    opts,
    1,
    1,
};

int cmd_create(int argc, char **argv)
{
	cleanup_vmm_args vmm_args a;
	VMM_ARGS_PARSE(a, spec, argc, argv);
	if (vmm_args_has(&a, "from-ipsw"))
		return vmm_usage_error(&spec, "--from-ipsw: macOS VMs are not supported on Linux");
	bool linux_vm = vmm_args_has(&a, "linux");
	const char *kernel = vmm_args_get(&a, "kernel");
	if (linux_vm == (kernel != NULL))
		return vmm_usage_error(&spec, "please specify either --linux or --kernel");
	if (!kernel && (vmm_args_has(&a, "initramfs") || vmm_args_has(&a, "cmdline")))
		return vmm_usage_error(&spec, "--initramfs and --cmdline need --kernel");
	const char *fmt = vmm_args_get(&a, "disk-format");
	if (fmt && strcasecmp(fmt, "raw") != 0)
		return vmm_usage_error(&spec, "Disk format '%s' is not supported on this system.",
				       fmt);
	uint64_t gb = 50;
	const char *ds = vmm_args_get(&a, "disk-size");
	if (ds && (vmm_parse_u64(ds, &gb) < 0 || gb == 0 || gb > 1000000))
		return vmm_usage_error(&spec, "--disk-size: \"%s\" is not a size in GB", ds);

	vmm_create_opts o = {
	    .disk_size = gb * 1000 * 1000 * 1000,
	    .kernel = kernel,
	    .initramfs = vmm_args_get(&a, "initramfs"),
	    .cmdline = vmm_args_get(&a, "cmdline"),
	    .force = vmm_args_has(&a, "force"),
	};
	cleanup_vmm_error vmm_error *err = NULL;
	if (vmm_vm_create(cmd_home(), a.pos[0], &o, &err) < 0)
		return vmm_fail(err);
	return 0;
}
