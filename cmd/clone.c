#include "cmd/cmd.h"
#include "common/util.h"
#include "registry/cache.h"
#include "registry/reference.h"
#include "vm/bundle.h"
#include "vm/ops.h"

#include <stdio.h>
#include <string.h>

static const vmm_opt opts[] = {
	{"force", 0, NULL, "Replace an existing VM named NEW", false},
	{"insecure", 0, NULL, "Use plain HTTP for the registry", false},
	{"concurrency", 0, "N", "Parallel layer downloads when pulling (default 4)", false},
	{"prune-limit", 0, "GB", "Most cache space to reclaim for the clone (default 100)", true},
	{NULL, 0, NULL, NULL, false},
};

static const vmm_cmd_spec spec = {"clone", "SOURCE NEW [--force]",
				  "Clone a local VM or a registry image into a new local VM", opts,
				  2, 2};

int cmd_clone(int argc, char **argv)
{
	cleanup_vmm_args vmm_args a;
	VMM_ARGS_PARSE(a, spec, argc, argv);
	const char *src = a.pos[0], *dst = a.pos[1];
	if (strchr(dst, '/'))
		return vmm_usage_error(&spec, "%s should be a local name", dst);

	vmm_home *h = cmd_home();
	cleanup_vmm_error vmm_error *err = NULL;
	cleanup_free char *src_dir = NULL;
	cleanup_vmm_reference vmm_reference *ref = NULL;
	if (vmm_reference_parse(&ref, src, NULL) == 0) {
		if (vmm_cache_resolve(h, ref, &src_dir, NULL, &err) < 0)
			return vmm_fail(err);
	} else {
		cleanup_vmm_bundle vmm_bundle *b = NULL;
		if (vmm_bundle_open(&b, h, src, &err) < 0)
			return vmm_fail(err);
		src_dir = xstrdup(b->dir);
	}
	vmm_clone_opts o = {.force = vmm_args_has(&a, "force")};
	if (vmm_vm_clone(h, src_dir, src, dst, &o, NULL, &err) < 0)
		return vmm_fail(err);
	return 0;
}
