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

typedef struct clone_args {
	bool force;
	cmd_pull_args pull;
	vmm_opt_num prune_limit; /* bytes */
} clone_args;

static const vmm_opt opts[] = {
    {VMM_FLAG(clone_args, force, "force", "Replace an existing VM named NEW")},
    CMD_PULL_OPTS(clone_args, pull, "Parallel layer downloads when pulling (default 4)"),
    {VMM_SIZE(clone_args, prune_limit, "prune-limit", "GB", 1ULL << 30, 0, 1ULL << 30,
	      "Most cache space to reclaim for the clone (default 100)"),
     .hidden = true},
    {0},
};

static const vmm_cmd_spec spec = {
    "clone", "SOURCE NEW [--force]",
    "Clone a local VM, a snapshot (VM@SNAP) or a registry image into a new local VM", opts};

/* A registry source: pull it unless cached (Tart's pull output), then clone from the cache. */
static int remote_source(const vmm_home *h, const vmm_reference *ref, const clone_args *o,
			 char **dir, vmm_error **err)
{
	if (vmm_cache_resolve(h, ref, dir, NULL, NULL) == 0)
		return 0;
	return cmd_pull_ref(&spec, &o->pull, ref, dir, err);
}

int cmd_clone(int argc, char **argv)
{
	clone_args o = {.prune_limit.value = 100ULL << 30};
	VMM_ARGS(a, spec, argc, argv, &o);
	const char *src = a.pos[0], *dst = a.pos[1];
	if (strchr(dst, '/'))
		return vmm_usage_error(&spec, "%s should be a local name", dst);

	vmm_home *h = cmd_home();
	cleanup_vmm_error vmm_error *err = NULL;
	cleanup_free char *src_dir = NULL;
	cleanup_vmm_reference vmm_reference *ref = NULL;
	if (vmm_reference_parse(&ref, src, NULL) == 0) {
		int r = remote_source(h, ref, &o, &src_dir, &err);
		if (r > 0)
			return r;
		if (r < 0)
			return vmm_fail(err);
		vmm_access_date_set(src_dir, time(NULL));
	} else if (vmm_snapshot_source_dir(h, src, &src_dir, &err) < 0) {
		return vmm_fail(err);
	}
	vmm_clone_opts co = {.force = o.force};
	if (vmm_vm_clone(h, src_dir, src, dst, &co, NULL, &err) < 0)
		return vmm_fail(err);
	/*
	 * Tart's auto-prune after a clone: the clone shares the source's blocks
	 * now but will need up to the source's sparse remainder as it is written.
	 */
	uint64_t apparent = 0, allocated = 0;
	if (vmm_bundle_dir_sizes(src_dir, &apparent, &allocated, NULL) == 0 &&
	    apparent > allocated) {
		uint64_t need = apparent - allocated;
		if (need > o.prune_limit.value)
			need = o.prune_limit.value;
		if (vmm_prune_reclaim(h, need, src_dir, NULL, &err) < 0)
			vmm_error_print("automatic pruning failed: %s", err->msg);
	}
	return 0;
}
