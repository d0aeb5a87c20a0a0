#include "cmd/cmd.h"
#include "common/util.h"
#include "vm/ops.h"

#include <string.h>
#include <strings.h>

typedef struct create_args {
	bool linux_vm, force;
	const char *kernel, *initramfs, *cmdline, *disk_format, *from_ipsw;
	vmm_opt_num disk_size; /* bytes */
} create_args;

static const vmm_opt opts[] = {
    {VMM_FLAG(create_args, linux_vm, "linux",
	      "Create a Linux VM that boots from its disk with UEFI")},
    {VMM_STRING(create_args, kernel, "kernel", "FILE",
		"Boot this kernel directly (copied into the VM)")},
    {VMM_STRING(create_args, initramfs, "initramfs", "FILE",
		"Initramfs for --kernel (copied into the VM)")},
    {VMM_STRING(create_args, cmdline, "cmdline", "STRING", "Kernel command line for --kernel")},
    {VMM_SIZE(create_args, disk_size, "disk-size", "GB", 1000000000, 1, 1000000,
	      "Disk size in GB (10^9 bytes), default 50")},
    {VMM_STRING(create_args, disk_format, "disk-format", "FORMAT",
		"Disk format: raw (the only one QEMU can use here)")},
    {VMM_STRING(create_args, from_ipsw, "from-ipsw", "PATH",
		"Install macOS (not available on Linux)"),
     .hidden = true},
    {VMM_FLAG(create_args, force, "force", "Replace an existing VM of the same name")},
    {0},
};

static const vmm_cmd_spec spec = {
    "create", "NAME (--linux | --kernel FILE [--initramfs FILE] [--cmdline S]) [options]",
    "Create a VM", opts};

int cmd_create(int argc, char **argv)
{
	create_args o = {.disk_size.value = 50ULL * 1000 * 1000 * 1000};
	VMM_ARGS(a, spec, argc, argv, &o);
	if (o.from_ipsw)
		return vmm_usage_error(&spec, "--from-ipsw: macOS VMs are not supported on Linux");
	if (o.linux_vm == (o.kernel != NULL))
		return vmm_usage_error(&spec, "please specify either --linux or --kernel");
	if (!o.kernel && (o.initramfs || o.cmdline))
		return vmm_usage_error(&spec, "--initramfs and --cmdline need --kernel");
	if (o.disk_format && strcasecmp(o.disk_format, "raw") != 0)
		return vmm_usage_error(&spec, "Disk format '%s' is not supported on this system.",
				       o.disk_format);

	vmm_create_opts co = {
	    .disk_size = o.disk_size.value,
	    .kernel = o.kernel,
	    .initramfs = o.initramfs,
	    .cmdline = o.cmdline,
	    .force = o.force,
	};
	cleanup_vmm_error vmm_error *err = NULL;
	if (vmm_vm_create(cmd_home(), a.pos[0], &co, &err) < 0)
		return vmm_fail(err);
	return 0;
}
