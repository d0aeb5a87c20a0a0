/*
 * net.h — a running VM's network, set up by `vmm run` before QEMU starts
 * and gone when it ends (DESIGN.md §8a).
 *
 * The default network: each VM gets a network namespace of its own in which
 * the guest's TAP is the only LAN.  Inside it the guest always sees the same
 * addressing as QEMU's user-mode network (it is 10.0.2.15/24, the gateway
 * 10.0.2.2, DNS 10.0.2.3), so a suspended VM resumes on any host, in either
 * mode, with the lease it remembers, and forks of one suspended VM (same
 * MAC, same address) run side by side.  The host reaches each guest at an
 * address of its own: a /30 from a pool that no host route overlaps, on a
 * veth pair between the host and the namespace, translated there to
 * 10.0.2.15 (any port).  Outbound traffic leaves through slirp4netns, so
 * the host needs no IP forwarding and no firewall rules of its own; DHCP is
 * served by vm/dhcp.c.  The namespace lives only as long as the descriptors
 * of `vmm run`, QEMU and slirp4netns do (all die with `vmm run`), so even a
 * SIGKILL leaves nothing behind.
 *
 * Without CAP_NET_ADMIN (or without slirp4netns) the VM falls back to
 * QEMU's user-mode network, with a notice.  --net-bridged puts a TAP on a
 * Linux bridge, or a macvtap on a plain interface (Tart's meaning).
 */
#ifndef VMM_VM_NET_H
#define VMM_VM_NET_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

typedef enum {
	VMM_NET_DEFAULT, /* the private network the host reaches by address */
	VMM_NET_USER,	 /* QEMU's user-mode NAT (no privilege) */
	VMM_NET_BRIDGED, /* --net-bridged */
} vmm_net_mode;

/* What the guest sees on the default and the user-mode network alike. */
#define VMM_NET_GUEST "10.0.2.15"
#define VMM_NET_GATEWAY "10.0.2.2"
#define VMM_NET_DNS "10.0.2.3"

typedef struct vmm_net_opts {
	const char *bridged;	    /* borrowed: --net-bridged IFACE, NULL for the default */
	const char *const *publish; /* borrowed: "[tcp:|udp:][ADDR:]HOST:GUEST" */
	size_t npublish;
	bool softnet;		    /* Tart's softnet: only globally routable destinations */
	const char *softnet_allow;  /* borrowed: comma-separated CIDRs, or NULL */
	const char *softnet_block;  /* borrowed: comma-separated CIDRs, or NULL */
	const char *softnet_expose; /* borrowed: comma-separated EXTERNAL:INTERNAL ports */
	const char *mac;	    /* borrowed: the guest's MAC, "aa:bb:cc:dd:ee:ff" */
	bool host_only;		    /* Tart's --net-host: the host (the gateway) and nothing else */
	bool force_user;	    /* the user-mode network, whatever the privilege */
} vmm_net_opts;

typedef struct vmm_net vmm_net;

/* Check the options (CIDRs, ports) without touching the host: for usage errors. */
int vmm_net_check_opts(const vmm_net_opts *o, vmm_error **err);

/*
 * The destinations the guest may not reach, as nft ranges "A-B, C-D"
 * (*out is the caller's; NULL when none): the pool of VM networks always;
 * with softnet what is not globally routable; with host_only everything;
 * --net-softnet-allow and -block as softnet takes them: the longest prefix
 * wins; of equal ones a block beats an allow, which beats vmm's own.
 */
int vmm_net_blocked(const vmm_net_opts *o, char **out, vmm_error **err);

/* Set up the network for one run.  Undone by vmm_net_free(). */
int vmm_net_setup(vmm_net **out, const vmm_net_opts *o, vmm_error **err);
/* Tear everything down (idempotent on NULL). */
void vmm_net_free(vmm_net *n);

vmm_net_mode vmm_net_get_mode(const vmm_net *n);
/* The TAP (or macvtap) for QEMU, or -1 in user mode; the caller closes it once QEMU has it. */
int vmm_net_take_tap(vmm_net *n);
/* The address the host reaches the guest at (default network), else NULL. */
const char *vmm_net_address(const vmm_net *n);
/* A line to show the user (why the default network was not used), or NULL. */
const char *vmm_net_notice(const vmm_net *n);

/* A --publish value. */
typedef struct vmm_net_port {
	bool udp;
	char addr[INET_ADDRSTRLEN]; /* "" for every address */
	uint16_t host, guest;
} vmm_net_port;
int vmm_net_parse_publish(const char *s, vmm_net_port *out, vmm_error **err);

/* An IPv4 prefix "A.B.C.D[/N]". */
typedef struct vmm_net_cidr {
	struct in_addr addr;
	int len;
} vmm_net_cidr;
int vmm_net_parse_cidr(const char *s, vmm_net_cidr *out);

static inline void cleanup_vmm_net_fn(vmm_net **n)
{
	vmm_net_free(*n);
}
#define cleanup_vmm_net __attribute__((cleanup(cleanup_vmm_net_fn)))

#endif
