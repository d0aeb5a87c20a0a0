/*
 * reference.h — OCI references as Tart parses them (tart-spec §1.4):
 *
 *   root: host (':' port)? '/' namespace (':' tag | '@' 'sha256' ':' hex)?
 *   host: name ('-' name)* ('.' name ('-' name)*)*     name: [A-Za-z0-9]+
 *   namespace: component ('/' component)*             component: (name separator?)+
 *   tag: name (separator name)*                        separator: '.' | '-' | '_'
 *
 * A string that parses is a remote reference; anything else is a local VM
 * name.  Ports fold into the host; a missing tag means "latest".  Unlike
 * Tart, Docker Hub's aliases (docker.io, index.docker.io) map to
 * registry-1.docker.io, and single-component Docker Hub names gain
 * "library/".  Free with vmm_reference_free().
 */
#ifndef VMM_REGISTRY_OCI_REFERENCE_H
#define VMM_REGISTRY_OCI_REFERENCE_H

#include <stdbool.h>
#include "common/err.h"

typedef struct vmm_reference {
	char *host;	 /* owned: "host" or "host:port" */
	char *namespace; /* owned: "a/b" */
	char *tag;	 /* owned: NULL when digest is set */
	char *digest;	 /* owned: "sha256:<64 hex>", NULL when tag is set */
} vmm_reference;

int vmm_reference_parse(vmm_reference **out, const char *s, vmm_error **err);
/* Does s parse as a remote reference? */
bool vmm_reference_is_remote(const char *s);
void vmm_reference_free(vmm_reference *r);
vmm_reference *vmm_reference_dup(const vmm_reference *r);

/* "host/namespace:tag" or "host/namespace@sha256:…" (caller frees). */
char *vmm_reference_string(const vmm_reference *r);
/* The tag or the digest: what follows the namespace. */
const char *vmm_reference_value(const vmm_reference *r);

static inline void cleanup_vmm_reference_fn(vmm_reference **r)
{
	vmm_reference_free(*r);
}
#define cleanup_vmm_reference __attribute__((cleanup(cleanup_vmm_reference_fn)))

#endif
