#include "cmd/cmd.h"
#include "common/util.h"
#include "vm/transfer.h"

#include <stdio.h>
#include <string.h>

typedef struct import_args {
	bool force;
} import_args;

static const vmm_opt opts[] = {
    {VMM_FLAG(import_args, force, "force", "Replace an existing VM of that name")},
    {0},
};

static const vmm_cmd_spec spec = {"import", "FILE NAME [--force]",
				  "Create a VM from a portable archive (- for stdin)", opts};

int cmd_import(int argc, char **argv)
{
	import_args o = {0};
	VMM_ARGS(a, spec, argc, argv, &o);
	if (strchr(a.pos[1], '/'))
		return vmm_usage_error(&spec, "%s should be a local name", a.pos[1]);
	fprintf(stderr, "importing...\n");
	cleanup_vmm_error vmm_error *err = NULL;
	if (vmm_vm_import(cmd_home(), a.pos[0], a.pos[1], o.force, &err) < 0)
		return vmm_fail(err);
	return 0;
}
