#include "cmd/cmd.h"
#include "cmd/transfer_ui.h"
#include "common/util.h"
#include "registry/push.h"
#include "registry/oci/reference.h"
#include "vm/snapshot.h"

#include <stdio.h>
#include <string.h>

static const vmm_opt opts[] = {
    {"insecure", 0, NULL, "Use plain HTTP for the registry", false},
    {"concurrency", 0, "N", "Layers compressed and uploaded at once (default 4)", false},
    {"chunk-size", 0, "MB", "Upload blobs in PATCH chunks of MB megabytes (default: one PUT)",
     false},
    {"label", 0, "KEY=VALUE", "Add a label to the image's OCI config (repeatable)", false},
    {"populate-cache", 0, NULL, "Also keep the pushed image in the OCI cache", false},
    {NULL, 0, NULL, NULL, false},
};

static const vmm_cmd_spec spec = {
    "push",
    "NAME REF... [--insecure] [--concurrency N] [--chunk-size MB] [--label K=V]...",
    "Push a local VM, a snapshot (VM@SNAP) or a cached image (under new tags) to registry "
    "references",
    opts,
    2,
    (size_t)-1,
};

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
	cleanup_vmm_args vmm_args a;
	VMM_ARGS_PARSE(a, spec, argc, argv);
	int conc;
	int r = cmd_concurrency(&spec, &a, &conc);
	if (r)
		return r;
	uint64_t chunk_mb = 0;
	const char *cs = vmm_args_get(&a, "chunk-size");
	if (cs && (vmm_parse_u64(cs, &chunk_mb) < 0 || chunk_mb > 1000000))
		return vmm_usage_error(&spec, "--chunk-size: \"%s\" is not a number of MB", cs);
	size_t nlabels = 0;
	const char **labels = vmm_args_list(&a, "label", &nlabels);

	cleanup_vmm_error vmm_error *err = NULL;
	size_t nrefs = a.npos - 1;
	vmm_reference **refs = xcalloc(nrefs, sizeof(*refs));
	int rc = 0;
	for (size_t i = 0; i < nrefs && rc == 0; i++)
		if (vmm_reference_parse(&refs[i], a.pos[i + 1], &err) < 0)
			rc = vmm_fail(err);
	if (rc == 0) {
		vmm_push_opts o = {
		    .labels = labels,
		    .nlabels = nlabels,
		    .concurrency = conc,
		    .chunk_size = chunk_mb * 1000000,
		    .insecure = vmm_args_has(&a, "insecure"),
		    .populate_cache = vmm_args_has(&a, "populate-cache"),
		    .ui = cmd_transfer_ui(),
		};
		const char *dc = getenv("VMM_TEST_DISK_CHUNK"); /* tests: smaller chunks */
		uint64_t chunk = 0;
		if (dc && vmm_parse_u64(dc, &chunk) == 0 && chunk >= 65536)
			o.disk_chunk = chunk;
		vmm_reference *src = NULL;
		cleanup_free char *snap_dir = NULL;
		int snap = 0;
		if (vmm_reference_parse(&src, a.pos[0], NULL) == 0)
			rc = vmm_push_remote(cmd_home(), src, refs, nrefs, &o, &err);
		else if ((snap = vmm_snapshot_resolve(cmd_home(), a.pos[0], &snap_dir, &err)) != 0)
			rc = snap < 0 ? -1
				      : vmm_push_dir(cmd_home(), snap_dir, a.pos[0], refs, nrefs,
						     &o, NULL, &err);
		else
			rc = vmm_push(cmd_home(), a.pos[0], refs, nrefs, &o, NULL, &err);
		vmm_reference_free(src);
		if (rc < 0)
			rc = vmm_fail(err);
	}
	for (size_t i = 0; i < nrefs; i++)
		vmm_reference_free(refs[i]);
	free(refs);
	return rc;
}
