#include "cmd/cmd.h"
#include "common/util.h"
#include "registry/cache.h"
#include "registry/oci/reference.h"
#include "vm/bundle.h"
#include "vm/snapshot.h"
#include "vm/transfer.h"

#include <stdio.h>
#include <string.h>

static const vmm_cmd_spec spec = {
    "export", "NAME|VM@SNAP [FILE]",
    "Write a VM to a portable .tar.zst archive (default NAME.tar.zst; - for stdout)", NULL};

int cmd_export(int argc, char **argv)
{
	VMM_ARGS(a, spec, argc, argv, NULL);
	const char *name = a.pos[0];
	vmm_home *h = cmd_home();
	cleanup_vmm_error vmm_error *err = NULL;
	cleanup_free char *dir = NULL;
	cleanup_vmm_reference vmm_reference *ref = NULL;
	if (vmm_reference_parse(&ref, name, NULL) == 0) {
		if (vmm_cache_resolve(h, ref, &dir, NULL, &err) < 0)
			return vmm_fail(err);
	} else if (vmm_snapshot_source_dir(h, name, &dir, &err) < 0) {
		return vmm_fail(err);
	}
	cleanup_free char *path = a.npos > 1 ? xstrdup(a.pos[1]) : xasprintf("%s.tar.zst", name);
	if (ref && a.npos < 2)
		return vmm_usage_error(&spec, "give a FILE to export a reference to");
	/* progress words go to stderr so that `export NAME -` can stream */
	fprintf(stderr, "exporting...\n");
	if (vmm_vm_export(dir, name, path, &err) < 0)
		return vmm_fail(err);
	return 0;
}
