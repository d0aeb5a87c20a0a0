/*
 * dhcp.h — the DHCP server of a VM's default network: one client (the
 * guest's MAC), one fixed lease.
 *
 * vmm_dhcp_reply() is the whole protocol, a pure function over one request
 * (outside input: it is fuzzed); vmm_dhcp_start() serves it on a UDP socket
 * bound to the VM's TAP in a thread of its own, so that the guest gets its
 * lease even while `vmm run` is busy saving a state.
 */
#ifndef VMM_VM_DHCP_H
#define VMM_VM_DHCP_H

#include <netinet/in.h>
#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

typedef struct vmm_dhcp_lease {
	uint8_t mac[6];		/* the only client served */
	struct in_addr address; /* what it gets */
	int prefix;
	struct in_addr router; /* also the server identifier */
	struct in_addr dns;
	uint32_t lease_seconds;
} vmm_dhcp_lease;

/* Big enough for any reply vmm_dhcp_reply() builds. */
#define VMM_DHCP_REPLY_MAX 576

/*
 * The answer to one BOOTP/DHCP request of `len` bytes: returns the reply's
 * length (written to out, at least VMM_DHCP_REPLY_MAX bytes) and where it
 * goes (*to: the client's address for a renewal, else broadcast), or 0 when
 * the request gets no answer (not for us, malformed, a release).
 */
size_t vmm_dhcp_reply(const vmm_dhcp_lease *l, const uint8_t *req, size_t len, uint8_t *out,
		      struct in_addr *to);

typedef struct vmm_dhcp_server vmm_dhcp_server;

/* Serve l on `sock` (a UDP socket bound to port 67; ownership moves) until vmm_dhcp_stop(). */
int vmm_dhcp_start(vmm_dhcp_server **out, int sock, const vmm_dhcp_lease *l, vmm_error **err);
void vmm_dhcp_stop(vmm_dhcp_server *s);

#endif
