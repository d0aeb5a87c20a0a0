#include "cmd/cmd.h"
#include "common/util.h"
#include "registry/cache.h"
#include "registry/oci/reference.h"

#include <stdio.h>

static const vmm_cmd_spec spec = {
    "fqn", "NAME", "Print the fully qualified name (with digest) of a cached reference", NULL};

/* Output: "host/namespace@sha256:<hex>\n" for a reference, the name itself otherwise. */
int cmd_fqn(int argc, char **argv)
{
	VMM_ARGS(a, spec, argc, argv, NULL);
	cleanup_vmm_reference vmm_reference *ref = NULL;
	if (vmm_reference_parse(&ref, a.pos[0], NULL) < 0) {
		printf("%s\n", a.pos[0]);
		return 0;
	}
	cleanup_vmm_error vmm_error *err = NULL;
	cleanup_free char *digest = NULL;
	if (vmm_cache_resolve(cmd_home(), ref, NULL, &digest, &err) < 0) {
		if (vmm_error_code(err) == VMM_ENOTFOUND) {
			cleanup_free char *name = vmm_reference_string(ref);
			vmm_error_set(
			    &err, VMM_EINVAL,
			    "OCI storage error: %s is not a digest and doesn't point to a "
			    "digest",
			    name);
		}
		return vmm_fail(err);
	}
	printf("%s/%s@%s\n", ref->host, ref->namespace, digest);
	return 0;
}
