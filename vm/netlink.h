/*
 * netlink.h — the few rtnetlink requests vmm's networking makes (libmnl).
 *
 * A vmm_nl is a route-netlink socket; it acts on the network namespace it
 * was opened in, with the credentials of the process that opened it, so a
 * socket opened inside a VM's namespace by a helper process keeps working
 * after it has been passed to `vmm run` (vm/net.c relies on that).
 * Every call sends one request and waits for its acknowledgement; errors
 * name the request and the interface.
 */
#ifndef VMM_VM_NETLINK_H
#define VMM_VM_NETLINK_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>

#include "common/err.h"

typedef struct vmm_nl vmm_nl;

/* A socket in the caller's current network namespace. */
int vmm_nl_open(vmm_nl **out, vmm_error **err);
/* Adopt a route-netlink socket descriptor (ownership moves to the vmm_nl). */
vmm_nl *vmm_nl_adopt(int fd);
void vmm_nl_free(vmm_nl *nl);
/* The descriptor (still owned by nl), e.g. to pass it to another process. */
int vmm_nl_fd(const vmm_nl *nl);

/* ifindex of `name` in the socket's namespace; 0 if there is none. */
int vmm_nl_ifindex(vmm_nl *nl, const char *name, vmm_error **err);
int vmm_nl_link_up(vmm_nl *nl, int ifindex, vmm_error **err);
/* mac: 6 bytes. */
int vmm_nl_link_set_mac(vmm_nl *nl, int ifindex, const uint8_t *mac, vmm_error **err);
int vmm_nl_link_delete(vmm_nl *nl, int ifindex, vmm_error **err);
int vmm_nl_addr_add(vmm_nl *nl, int ifindex, struct in_addr a, int prefix, vmm_error **err);
/* A route to dst/prefix (0.0.0.0/0 for the default) via gw (INADDR_ANY: on-link) out of ifindex. */
int vmm_nl_route_add(vmm_nl *nl, struct in_addr dst, int prefix, struct in_addr gw, int ifindex,
		     vmm_error **err);

/*
 * A veth pair: `name` in the socket's namespace and `peer` moved into the
 * namespace of the descriptor peer_netns (-1: the same namespace).
 */
int vmm_nl_veth_add(vmm_nl *nl, const char *name, const char *peer, int peer_netns,
		    vmm_error **err);
/* A macvtap in bridge mode on top of `lower_ifindex`, with the guest's MAC. */
int vmm_nl_macvtap_add(vmm_nl *nl, const char *name, int lower_ifindex, const uint8_t *mac,
		       vmm_error **err);
/* Is ifindex a Linux bridge? */
int vmm_nl_link_is_bridge(vmm_nl *nl, int ifindex, bool *out, vmm_error **err);

/* Every IPv4 route of every table, as prefixes (default routes left out). */
typedef struct vmm_nl_prefix {
	struct in_addr addr;
	int len;
} vmm_nl_prefix;
int vmm_nl_routes(vmm_nl *nl, vmm_nl_prefix **out, size_t *n, vmm_error **err);

static inline void cleanup_vmm_nl_fn(vmm_nl **nl)
{
	vmm_nl_free(*nl);
}
#define cleanup_vmm_nl __attribute__((cleanup(cleanup_vmm_nl_fn)))

#endif
