#include "cmd/cmd.h"
#include "cmd/transfer_ui.h"
#include "common/util.h"
#include "registry/pull.h"
#include "registry/oci/reference.h"
#include "vm/bundle.h"

#include <stdio.h>

typedef struct pull_args {
	cmd_pull_args pull;
} pull_args;

static const vmm_opt opts[] = {
    CMD_PULL_OPTS(pull_args, pull, "Layers downloaded at once (default 4)"),
    {0},
};

static const vmm_cmd_spec spec = {"pull", "REF [--insecure] [--concurrency N]",
				  "Pull a VM image from a registry into the cache", opts};

/*
 * Output (stdout), Tart's lines:
 *   pulling 127.0.0.1:5000/vm/debian:latest...
 *   pulling manifest...
 *   pulling disk (1.2 GB compressed)...
 *   <progress>
 *   pulling NVRAM...
 */
int cmd_pull(int argc, char **argv)
{
	pull_args o = {0};
	VMM_ARGS(a, spec, argc, argv, &o);
	vmm_home *h = cmd_home();
	const char *name = a.pos[0];
	cleanup_free char *local = vmm_home_vm_dir(h, name);
	if (vmm_name_is_valid(name) && vmm_bundle_dir_is_vm(local)) {
		printf("\"%s\" is a local image, nothing to pull here!\n", name);
		return 0;
	}
	cleanup_vmm_error vmm_error *err = NULL;
	cleanup_vmm_reference vmm_reference *ref = NULL;
	if (vmm_reference_parse(&ref, name, &err) < 0)
		return vmm_fail(err);
	int r = cmd_pull_ref(&spec, &o.pull, ref, NULL, &err);
	return r < 0 ? vmm_fail(err) : r;
}
