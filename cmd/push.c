#include "cmd/cmd.h"
#include "cmd/transfer_ui.h"
#include "common/util.h"
#include "registry/push.h"
#include "registry/oci/reference.h"
#include "vm/snapshot.h"

#include <stdio.h>
#include <string.h>

const vmm_opt cmd_push_opts[] = {
    CMD_PULL_OPTS(cmd_push_args, net, "Layers compressed and uploaded at once (default 4)"),
    {VMM_SIZE(cmd_push_args, chunk_size, "chunk-size", "MB", 1000000, 0, 1000000,
	      "Upload blobs in PATCH chunks of MB megabytes (default: one PUT)")},
    {VMM_LIST(cmd_push_args, label, "label", "KEY=VALUE",
	      "Add a label to the image's OCI config (repeatable)")},
    {VMM_FLAG(cmd_push_args, populate_cache, "populate-cache",
	      "Also keep the pushed image in the OCI cache")},
    {0},
};

static const vmm_cmd_spec spec = {
    "push", "NAME REF... [--insecure] [--concurrency N] [--chunk-size MB] [--label K=V]...",
    "Push a local VM, a snapshot (VM@SNAP) or a cached image (under new tags) to registry "
    "references",
    cmd_push_opts};

int cmd_push_to(const vmm_cmd_spec *s, const cmd_push_args *o, const char *src, char *const *refs,
		size_t nrefs)
{
	int conc = 4;
	int rc = cmd_concurrency(s, &o->net.concurrency, &conc);
	if (rc)
		return rc;
	cleanup_vmm_error vmm_error *err = NULL;
	vmm_reference **v = xcalloc(nrefs, sizeof(*v));
	for (size_t i = 0; i < nrefs && rc == 0; i++)
		if (vmm_reference_parse(&v[i], refs[i], &err) < 0)
			rc = vmm_fail(err);
	if (rc == 0) {
		vmm_push_opts po = {
		    .labels = o->label.v,
		    .nlabels = o->label.n,
		    .concurrency = conc,
		    .chunk_size = o->chunk_size.value,
		    .insecure = o->net.insecure,
		    .populate_cache = o->populate_cache,
		    .ui = cmd_transfer_ui(),
		};
		const char *dc = getenv("VMM_TEST_DISK_CHUNK"); /* tests: smaller chunks */
		uint64_t chunk = 0;
		if (dc && vmm_parse_u64(dc, &chunk) == 0 && chunk >= 65536)
			po.disk_chunk = chunk;
		vmm_reference *ref = NULL;
		cleanup_free char *snap_dir = NULL;
		int snap = 0;
		if (vmm_reference_parse(&ref, src, NULL) == 0)
			rc = vmm_push_remote(cmd_home(), ref, v, nrefs, &po, &err);
		else if ((snap = vmm_snapshot_resolve(cmd_home(), src, &snap_dir, &err)) != 0)
			rc = snap < 0 ? -1
				      : vmm_push_dir(cmd_home(), snap_dir, src, v, nrefs, &po, NULL,
						     &err);
		else
			rc = vmm_push(cmd_home(), src, v, nrefs, &po, NULL, &err);
		vmm_reference_free(ref);
		if (rc < 0)
			rc = vmm_fail(err);
	}
	for (size_t i = 0; i < nrefs; i++)
		vmm_reference_free(v[i]);
	free(v);
	return rc;
}

/*
 * Output (stdout), Tart's lines:
 *   pushing debian to 127.0.0.1:5000/vm/debian{:a,:b}...
 *   pushing config...
 *   pushing disk... this will take a while...
 *   <progress>
 *   pushing NVRAM...
 *   pushing manifest for a...
 */
int cmd_push(int argc, char **argv)
{
	cmd_push_args o = {0};
	VMM_ARGS(a, spec, argc, argv, &o);
	return cmd_push_to(&spec, &o, a.pos[0], a.pos + 1, a.npos - 1);
}
