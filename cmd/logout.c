/*
 * logout.c — `vmm logout HOST`: forget what `vmm login` stored for HOST.
 * Succeeds when nothing was stored (Tart's Keychain behaviour).  Credentials
 * from the environment or ~/.docker/config.json are not touched.
 */
#include "cmd/cmd.h"
#include "common/util.h"
#include "registry/oci/credentials.h"

static const vmm_cmd_spec spec = {"logout", "HOST", "Log out from a registry", NULL};

int cmd_logout(int argc, char **argv)
{
	VMM_ARGS(a, spec, argc, argv, NULL);
	cleanup_vmm_error vmm_error *err = NULL;
	if (vmm_credentials_check_host(a.pos[0], &err) < 0 ||
	    vmm_credentials_remove(a.pos[0], &err) < 0)
		return vmm_fail(err);
	return 0;
}
