/*
 * credentials.h — where registry credentials come from, in order
 * (DESIGN.md §5, tart-spec §6):
 *
 *  1. VMM_REGISTRY_USERNAME + VMM_REGISTRY_PASSWORD for the host that
 *     VMM_REGISTRY_HOSTNAME names, then Tart's TART_REGISTRY_USERNAME +
 *     TART_REGISTRY_PASSWORD for TART_REGISTRY_HOSTNAME's.  Without a host
 *     name Tart uses them for every registry (and sends them to any token
 *     realm a registry names), so a pull from a stranger's registry hands it
 *     one's own credentials: vmm uses them for none, and when a registry
 *     then wants credentials, the error says to set the host name;
 *  2. ~/.docker/config.json (or $DOCKER_CONFIG/config.json): `auths` (keys
 *     "host", "https://host", "https://index.docker.io/v1/" for Docker Hub),
 *     `credHelpers` (exact key or Tart's whole-match pattern keys), then
 *     `credsStore`, both through docker-credential-<helper> get;
 *  3. what `vmm login` stored (a JSON file, mode 0600, in Docker's
 *     `{"auths": {"<host>": {"auth": base64("user:password")}}}` shape).
 *
 * Hosts compare as vmm_credentials_host_key() makes them.  Secrets are
 * never printed or logged, nor are fragments of the files that hold them
 * (a parse error gives a line and column).
 */
#ifndef VMM_REGISTRY_OCI_CREDENTIALS_H
#define VMM_REGISTRY_OCI_CREDENTIALS_H

#include "common/err.h"

typedef struct vmm_credentials {
	char *username; /* owned */
	char *password; /* owned; wiped on free */
} vmm_credentials;

/*
 * *out = NULL (and 0 returned) when no source has credentials for host
 * ("host[:port]").  A source that fails (a malformed config, a helper that
 * is missing or errs) is skipped; only when no source has credentials is
 * its error returned (-1, *out NULL), so a caller may still go on
 * anonymously and report it if the registry then wants credentials.
 */
int vmm_credentials_lookup(const char *host, vmm_credentials **out, vmm_error **err);
void vmm_credentials_free(vmm_credentials *c);

/* `vmm login` / `vmm logout`: the store file, replaced atomically, mode 0600. */
int vmm_credentials_store(const char *host, const char *username, const char *password,
			  vmm_error **err);
/* Removing credentials that are not there succeeds. */
int vmm_credentials_remove(const char *host, vmm_error **err);
/* Path of the store: $VMM_CREDENTIALS_FILE, else $XDG_CONFIG_HOME/vmm/credentials.json,
 * else ~/.config/vmm/credentials.json (caller frees). */
char *vmm_credentials_store_path(void);

/*
 * The key credentials are filed under for a host as a user writes it:
 * lower case, "https://"/"http://" and any path dropped, Docker Hub's
 * aliases (docker.io, index.docker.io, registry.hub.docker.com) folded into
 * registry-1.docker.io as registry/oci/reference.h does (caller frees).
 */
char *vmm_credentials_host_key(const char *host);
/*
 * Is host something `vmm login` can file credentials under ("host[:port]")?
 * A URL gets Tart's message: improperly formatted host "…" was provided,
 * make sure that it doesn't start with http:// or https:// (VMM_EINVAL).
 */
int vmm_credentials_check_host(const char *host, vmm_error **err);

static inline void cleanup_vmm_credentials_fn(vmm_credentials **c)
{
	vmm_credentials_free(*c);
}
#define cleanup_vmm_credentials __attribute__((cleanup(cleanup_vmm_credentials_fn)))

#endif
