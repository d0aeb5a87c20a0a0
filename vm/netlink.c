#include "vm/netlink.h"
#include "common/util.h"

#include <errno.h>
#include <libmnl/libmnl.h>
#include <linux/if_link.h>
#include <linux/rtnetlink.h>
#include <linux/veth.h>
#include <net/if.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* rtnetlink messages here are small; dumps come in pages of this size */
#define NL_BUF 16384

struct vmm_nl {
	struct mnl_socket *sock; /* owned */
	unsigned int portid;
	unsigned int seq;
};

static vmm_nl *wrap(struct mnl_socket *s)
{
	vmm_nl *nl = xcalloc(1, sizeof(*nl));
	nl->sock = s;
	nl->portid = mnl_socket_get_portid(s);
	nl->seq = (unsigned int)time(NULL);
	return nl;
}

int vmm_nl_open(vmm_nl **out, vmm_error **err)
{
	struct mnl_socket *s = mnl_socket_open2(NETLINK_ROUTE, SOCK_CLOEXEC);
	if (!s)
		return vmm_error_errno(err, errno, "open a route netlink socket");
	if (mnl_socket_bind(s, 0, MNL_SOCKET_AUTOPID) < 0) {
		int e = errno;
		mnl_socket_close(s);
		return vmm_error_errno(err, e, "bind a route netlink socket");
	}
	*out = wrap(s);
	return 0;
}

vmm_nl *vmm_nl_adopt(int fd)
{
	struct mnl_socket *s = mnl_socket_fdopen(fd);
	if (!s) {
		close(fd);
		return NULL;
	}
	return wrap(s);
}

void vmm_nl_free(vmm_nl *nl)
{
	if (!nl)
		return;
	mnl_socket_close(nl->sock);
	free(nl);
}

int vmm_nl_fd(const vmm_nl *nl)
{
	return mnl_socket_get_fd(nl->sock);
}

static struct nlmsghdr *begin(vmm_nl *nl, char *buf, uint16_t type, uint16_t flags)
{
	struct nlmsghdr *h = mnl_nlmsg_put_header(buf);
	h->nlmsg_type = type;
	h->nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK | flags;
	h->nlmsg_seq = ++nl->seq;
	return h;
}

/*
 * Send h and read replies until the acknowledgement (or the end of a dump);
 * cb (may be NULL) sees each data message.  Returns 0 or -errno.
 */
static int talk(vmm_nl *nl, struct nlmsghdr *h, mnl_cb_t cb, void *data)
{
	if (mnl_socket_sendto(nl->sock, h, h->nlmsg_len) < 0)
		return -errno;
	char *buf = xmalloc(NL_BUF);
	int rc;
	for (;;) {
		ssize_t n = mnl_socket_recvfrom(nl->sock, buf, NL_BUF);
		if (n < 0) {
			rc = errno == EINTR ? 0 : -errno;
			if (rc)
				break;
			continue;
		}
		rc = mnl_cb_run(buf, (size_t)n, h->nlmsg_seq, nl->portid, cb, data);
		if (rc <= MNL_CB_STOP) {
			rc = rc < 0 ? -errno : 0;
			break;
		}
	}
	free(buf);
	return rc;
}

static int fail(vmm_error **err, int rc, const char *what, const char *ifname)
{
	if (ifname)
		return vmm_error_errno(err, -rc, "%s `%s`", what, ifname);
	return vmm_error_errno(err, -rc, "%s", what);
}

static const char *ifname_of(int ifindex, char *buf)
{
	snprintf(buf, IF_NAMESIZE + 16, "#%d", ifindex);
	return buf;
}

/* --- links ------------------------------------------------------------------------ */

typedef struct link_info {
	int ifindex;
	char kind[32];
} link_info;

static int attr_kind(const struct nlattr *a, void *data)
{
	link_info *li = data;
	if (mnl_attr_get_type(a) == IFLA_INFO_KIND && mnl_attr_validate(a, MNL_TYPE_STRING) >= 0)
		snprintf(li->kind, sizeof(li->kind), "%s", mnl_attr_get_str(a));
	return MNL_CB_OK;
}

static int attr_link(const struct nlattr *a, void *data)
{
	if (mnl_attr_get_type(a) == IFLA_LINKINFO && mnl_attr_validate(a, MNL_TYPE_NESTED) >= 0)
		mnl_attr_parse_nested(a, attr_kind, data);
	return MNL_CB_OK;
}

static int on_link(const struct nlmsghdr *h, void *data)
{
	link_info *li = data;
	const struct ifinfomsg *ifi = mnl_nlmsg_get_payload(h);
	li->ifindex = ifi->ifi_index;
	mnl_attr_parse(h, sizeof(*ifi), attr_link, data);
	return MNL_CB_OK;
}

static int get_link(vmm_nl *nl, const char *name, int ifindex, link_info *li)
{
	char buf[MNL_SOCKET_BUFFER_SIZE];
	struct nlmsghdr *h = begin(nl, buf, RTM_GETLINK, 0);
	struct ifinfomsg *ifi = mnl_nlmsg_put_extra_header(h, sizeof(*ifi));
	ifi->ifi_family = AF_UNSPEC;
	ifi->ifi_index = ifindex;
	if (name)
		mnl_attr_put_strz(h, IFLA_IFNAME, name);
	memset(li, 0, sizeof(*li));
	return talk(nl, h, on_link, li);
}

int vmm_nl_ifindex(vmm_nl *nl, const char *name, vmm_error **err)
{
	link_info li;
	int rc = get_link(nl, name, 0, &li);
	if (rc == -ENODEV)
		return 0;
	if (rc < 0)
		return fail(err, rc, "look up interface", name);
	return li.ifindex;
}

int vmm_nl_link_is_bridge(vmm_nl *nl, int ifindex, bool *out, vmm_error **err)
{
	link_info li;
	int rc = get_link(nl, NULL, ifindex, &li);
	char n[IF_NAMESIZE + 16];
	if (rc < 0)
		return fail(err, rc, "look up interface", ifname_of(ifindex, n));
	*out = strcmp(li.kind, "bridge") == 0;
	return 0;
}

static struct nlmsghdr *link_msg(vmm_nl *nl, char *buf, uint16_t type, uint16_t flags, int ifindex)
{
	struct nlmsghdr *h = begin(nl, buf, type, flags);
	struct ifinfomsg *ifi = mnl_nlmsg_put_extra_header(h, sizeof(*ifi));
	ifi->ifi_family = AF_UNSPEC;
	ifi->ifi_index = ifindex;
	return h;
}

int vmm_nl_link_up(vmm_nl *nl, int ifindex, vmm_error **err)
{
	char buf[MNL_SOCKET_BUFFER_SIZE];
	struct nlmsghdr *h = link_msg(nl, buf, RTM_NEWLINK, 0, ifindex);
	struct ifinfomsg *ifi = mnl_nlmsg_get_payload(h);
	ifi->ifi_flags = IFF_UP;
	ifi->ifi_change = IFF_UP;
	int rc = talk(nl, h, NULL, NULL);
	char n[IF_NAMESIZE + 16];
	return rc < 0 ? fail(err, rc, "bring up interface", ifname_of(ifindex, n)) : 0;
}

int vmm_nl_link_set_mac(vmm_nl *nl, int ifindex, const uint8_t *mac, vmm_error **err)
{
	char buf[MNL_SOCKET_BUFFER_SIZE];
	struct nlmsghdr *h = link_msg(nl, buf, RTM_NEWLINK, 0, ifindex);
	mnl_attr_put(h, IFLA_ADDRESS, 6, mac);
	int rc = talk(nl, h, NULL, NULL);
	char n[IF_NAMESIZE + 16];
	return rc < 0 ? fail(err, rc, "set the MAC address of", ifname_of(ifindex, n)) : 0;
}

int vmm_nl_link_delete(vmm_nl *nl, int ifindex, vmm_error **err)
{
	char buf[MNL_SOCKET_BUFFER_SIZE];
	struct nlmsghdr *h = link_msg(nl, buf, RTM_DELLINK, 0, ifindex);
	int rc = talk(nl, h, NULL, NULL);
	char n[IF_NAMESIZE + 16];
	return rc < 0 && rc != -ENODEV ? fail(err, rc, "delete interface", ifname_of(ifindex, n))
				       : 0;
}

int vmm_nl_veth_add(vmm_nl *nl, const char *name, const char *peer, int peer_netns, vmm_error **err)
{
	char buf[MNL_SOCKET_BUFFER_SIZE];
	struct nlmsghdr *h = link_msg(nl, buf, RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL, 0);
	mnl_attr_put_strz(h, IFLA_IFNAME, name);
	struct nlattr *info = mnl_attr_nest_start(h, IFLA_LINKINFO);
	mnl_attr_put_strz(h, IFLA_INFO_KIND, "veth");
	struct nlattr *data = mnl_attr_nest_start(h, IFLA_INFO_DATA);
	struct nlattr *p = mnl_attr_nest_start(h, VETH_INFO_PEER);
	struct ifinfomsg *pi = mnl_nlmsg_put_extra_header(h, sizeof(*pi));
	pi->ifi_family = AF_UNSPEC;
	mnl_attr_put_strz(h, IFLA_IFNAME, peer);
	if (peer_netns >= 0)
		mnl_attr_put_u32(h, IFLA_NET_NS_FD, (uint32_t)peer_netns);
	mnl_attr_nest_end(h, p);
	mnl_attr_nest_end(h, data);
	mnl_attr_nest_end(h, info);
	int rc = talk(nl, h, NULL, NULL);
	return rc < 0 ? fail(err, rc, "create veth pair", name) : 0;
}

int vmm_nl_macvtap_add(vmm_nl *nl, const char *name, int lower_ifindex, const uint8_t *mac,
		       vmm_error **err)
{
	char buf[MNL_SOCKET_BUFFER_SIZE];
	struct nlmsghdr *h = link_msg(nl, buf, RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL, 0);
	mnl_attr_put_strz(h, IFLA_IFNAME, name);
	mnl_attr_put_u32(h, IFLA_LINK, (uint32_t)lower_ifindex);
	mnl_attr_put(h, IFLA_ADDRESS, 6, mac);
	struct nlattr *info = mnl_attr_nest_start(h, IFLA_LINKINFO);
	mnl_attr_put_strz(h, IFLA_INFO_KIND, "macvtap");
	struct nlattr *data = mnl_attr_nest_start(h, IFLA_INFO_DATA);
	mnl_attr_put_u32(h, IFLA_MACVLAN_MODE, MACVLAN_MODE_BRIDGE);
	mnl_attr_nest_end(h, data);
	mnl_attr_nest_end(h, info);
	int rc = talk(nl, h, NULL, NULL);
	return rc < 0 ? fail(err, rc, "create macvtap", name) : 0;
}

/* --- addresses and routes ----------------------------------------------------------- */

int vmm_nl_addr_add(vmm_nl *nl, int ifindex, struct in_addr a, int prefix, vmm_error **err)
{
	char buf[MNL_SOCKET_BUFFER_SIZE];
	struct nlmsghdr *h = begin(nl, buf, RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL);
	struct ifaddrmsg *ifa = mnl_nlmsg_put_extra_header(h, sizeof(*ifa));
	ifa->ifa_family = AF_INET;
	ifa->ifa_prefixlen = (unsigned char)prefix;
	ifa->ifa_index = (unsigned)ifindex;
	mnl_attr_put(h, IFA_LOCAL, sizeof(a), &a);
	mnl_attr_put(h, IFA_ADDRESS, sizeof(a), &a);
	int rc = talk(nl, h, NULL, NULL);
	char n[IF_NAMESIZE + 16];
	return rc < 0 ? fail(err, rc, "add an address to", ifname_of(ifindex, n)) : 0;
}

int vmm_nl_route_add(vmm_nl *nl, struct in_addr dst, int prefix, struct in_addr gw, int ifindex,
		     vmm_error **err)
{
	char buf[MNL_SOCKET_BUFFER_SIZE];
	struct nlmsghdr *h = begin(nl, buf, RTM_NEWROUTE, NLM_F_CREATE | NLM_F_EXCL);
	struct rtmsg *rt = mnl_nlmsg_put_extra_header(h, sizeof(*rt));
	rt->rtm_family = AF_INET;
	rt->rtm_dst_len = (unsigned char)prefix;
	rt->rtm_table = RT_TABLE_MAIN;
	rt->rtm_protocol = RTPROT_STATIC;
	rt->rtm_scope = gw.s_addr ? RT_SCOPE_UNIVERSE : RT_SCOPE_LINK;
	rt->rtm_type = RTN_UNICAST;
	if (prefix)
		mnl_attr_put(h, RTA_DST, sizeof(dst), &dst);
	if (gw.s_addr)
		mnl_attr_put(h, RTA_GATEWAY, sizeof(gw), &gw);
	mnl_attr_put_u32(h, RTA_OIF, (uint32_t)ifindex);
	int rc = talk(nl, h, NULL, NULL);
	char n[IF_NAMESIZE + 16];
	return rc < 0 ? fail(err, rc, "add a route through", ifname_of(ifindex, n)) : 0;
}

typedef struct route_list {
	vmm_nl_prefix *v;
	size_t n;
} route_list;

static int attr_dst(const struct nlattr *a, void *data)
{
	if (mnl_attr_get_type(a) == RTA_DST && mnl_attr_get_payload_len(a) == 4)
		memcpy(data, mnl_attr_get_payload(a), 4);
	return MNL_CB_OK;
}

static int on_route(const struct nlmsghdr *h, void *data)
{
	route_list *l = data;
	const struct rtmsg *rt = mnl_nlmsg_get_payload(h);
	if (rt->rtm_family != AF_INET || rt->rtm_dst_len == 0)
		return MNL_CB_OK;
	struct in_addr dst = {0};
	mnl_attr_parse(h, sizeof(*rt), attr_dst, &dst);
	l->v = xrealloc(l->v, (l->n + 1) * sizeof(*l->v));
	l->v[l->n++] = (vmm_nl_prefix){dst, rt->rtm_dst_len};
	return MNL_CB_OK;
}

int vmm_nl_routes(vmm_nl *nl, vmm_nl_prefix **out, size_t *n, vmm_error **err)
{
	char buf[MNL_SOCKET_BUFFER_SIZE];
	struct nlmsghdr *h = begin(nl, buf, RTM_GETROUTE, NLM_F_DUMP);
	struct rtmsg *rt = mnl_nlmsg_put_extra_header(h, sizeof(*rt));
	rt->rtm_family = AF_INET;
	rt->rtm_table = RT_TABLE_UNSPEC; /* every table, local and policy tables too */
	route_list l = {0};
	int rc = talk(nl, h, on_route, &l);
	if (rc < 0) {
		free(l.v);
		return fail(err, rc, "list the host's routes", NULL);
	}
	*out = l.v;
	*n = l.n;
	return 0;
}
