#include "cmd/cmd.h"
#include "cmd/transfer_ui.h"
#include "common/util.h"
#include "registry/cache.h"
#include "registry/prune.h"
#include "registry/pull.h"
#include "registry/oci/reference.h"
#include "vm/bundle.h"
#include "vm/ops.h"
#include "vm/snapshot.h"

#include <stdio.h>
#include <string.h>

static const vmm_opt opts[] = {
    {"force", 0, NULL, "Replace an existing VM named NEW", false},
    {"insecure", 0, NULL, "Use plain HTTP for the registry", false},
    {"concurrency", 0, "N", "Parallel layer downloads when pulling (default 4)", false},
    {"prune-limit", 0, "GB", "Most cache space to reclaim for the clone (default 100)", true},
    {NULL, 0, NULL, NULL, false},
};

static const vmm_cmd_spec spec = {
    "clone",
    "SOURCE NEW [--force]",
    "Clone a local VM, a snapshot (VM@SNAP) or a registry image into a new local VM",
    opts,
    2,
    2};

/* A registry source: pull it unless cached (Tart's pull output), then clone from the cache. */
static int remote_source(const vmm_home *h, const vmm_reference *ref, const vmm_args *a, char **dir,
			 vmm_error **err)
{
	if (vmm_cache_resolve(h, ref, dir, NULL, NULL) == 0)
		return 0;
	return cmd_pull_ref(&spec, a, ref, dir, err);
}

int cmd_clone(int argc, char **argv)
{
	cleanup_vmm_args vmm_args a;
	VMM_ARGS_PARSE(a, spec, argc, argv);
	const char *src = a.pos[0], *dst = a.pos[1];
	if (strchr(dst, '/'))
		return vmm_usage_error(&spec, "%s should be a local name", dst);
	uint64_t limit_gb = 100;
	const char *pl = vmm_args_get(&a, "prune-limit");
	if (pl && vmm_parse_u64(pl, &limit_gb) < 0)
		return vmm_usage_error(&spec, "--prune-limit: \"%s\" is not a number", pl);

	vmm_home *h = cmd_home();
	cleanup_vmm_error vmm_error *err = NULL;
	cleanup_free char *src_dir = NULL;
	cleanup_vmm_reference vmm_reference *ref = NULL;
	if (vmm_reference_parse(&ref, src, NULL) == 0) {
		int r = remote_source(h, ref, &a, &src_dir, &err);
		if (r > 0)
			return r;
		if (r < 0)
			return vmm_fail(err);
		vmm_access_date_set(src_dir, time(NULL));
	} else if (vmm_snapshot_source_dir(h, src, &src_dir, &err) < 0) {
		return vmm_fail(err);
	}
	vmm_clone_opts o = {.force = vmm_args_has(&a, "force")};
	if (vmm_vm_clone(h, src_dir, src, dst, &o, NULL, &err) < 0)
		return vmm_fail(err);
	/*
	 * Tart's auto-prune after a clone: the clone shares the source's blocks
	 * now but will need up to the source's sparse remainder as it is written.
	 */
	uint64_t apparent = 0, allocated = 0;
	if (vmm_bundle_dir_sizes(src_dir, &apparent, &allocated, NULL) == 0 &&
	    apparent > allocated) {
		uint64_t need = apparent - allocated;
		if (need > (limit_gb << 30))
			need = limit_gb << 30;
		if (vmm_prune_reclaim(h, need, src_dir, NULL, &err) < 0)
			vmm_error_print("automatic pruning failed: %s", err->msg);
	}
	return 0;
}
