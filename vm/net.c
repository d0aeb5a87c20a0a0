/*
 * net.c — see net.h for the design.  Layout of one VM's default network:
 *
 *   host namespace                     the VM's namespace
 *   vmmXXXXXXXX  H/30  <--veth-->  eth0  O/30   (the host reaches O: DNAT to the guest)
 *                                   tap0  10.0.2.2/24  <--> QEMU <--> guest 10.0.2.15
 *   slirp4netns (host sockets) <-->  slirp0 10.0.3.100/24, default route (masquerade)
 *
 * A helper process creates the namespace, its TAP, addresses, firewall and
 * DHCP socket, hands the descriptors back and exits; `vmm run` then adds the
 * veth pair under a host-wide lock (the choice of a free /30 and its route
 * must not race another `vmm run`) and starts slirp4netns.
 */
#include "vm/net.h"
#include "common/util.h"
#include "vm/dhcp.h"
#include "vm/netlink.h"
#include "vm/qemu.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <linux/if_tun.h>
#include <linux/sockios.h>
#include <net/if.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#define GUEST_PREFIX 24
#define GATEWAY_MAC "\x52\x55\x0a\x00\x02\x02" /* QEMU's slirp gateway, remembered by guests */
#define SLIRP_CIDR "10.0.3.0/24"
#define SLIRP_GUEST "10.0.3.100"
#define SLIRP_DNS "10.0.3.3"
#define NS_TAP "tap0"
#define NS_VETH "eth0"
#define NS_SLIRP "slirp0"
#define DEFAULT_POOL "10.250.0.0/16,172.31.250.0/24,192.168.250.0/24"
#define LEASE_SECONDS 86400
#define LOCK_NAME "vmm-net-lock" /* abstract socket: per network namespace, gone with us */
#define READY_TIMEOUT 10.0

struct vmm_net {
	vmm_net_mode mode;
	int tap;		       /* for QEMU, until taken */
	char address[INET_ADDRSTRLEN]; /* O: the guest, seen from the host */
	char host_if[IF_NAMESIZE];     /* veth or macvtap in the host namespace */
	bool delete_host_if;	       /* ours to delete */
	char *notice;		       /* owned */
	const vmm_net_opts *o;	       /* borrowed */
	int nsfd, usernsfd;	       /* the VM's namespaces */
	vmm_nl *nl_host, *nl_ns;       /* owned */
	vmm_dhcp_server *dhcp;	       /* owned */
	int dhcp_sock;		       /* until the server owns it */
	pid_t slirp;		       /* 0 when not running */
	int slirp_exit;		       /* closing it stops slirp4netns */
	int slirp_ready, slirp_err;    /* until it has said it is ready */
	char slirp_api[64];	       /* its API socket, while we need it */
	pid_t helper;		       /* the namespace's helper, until it is done */
	int helper_sock;
	struct in_addr host_addr, guest_addr; /* H and O */
};

/* --- parsing -------------------------------------------------------------------- */

int vmm_net_parse_cidr(const char *s, vmm_net_cidr *out)
{
	char buf[INET_ADDRSTRLEN + 4];
	if (strlen(s) >= sizeof(buf))
		return -1;
	strcpy(buf, s);
	int len = 32;
	char *slash = strchr(buf, '/');
	if (slash) {
		*slash = '\0';
		uint64_t v;
		if (vmm_parse_u64(slash + 1, &v) < 0 || v > 32)
			return -1;
		len = (int)v;
	}
	struct in_addr a;
	if (inet_pton(AF_INET, buf, &a) != 1)
		return -1;
	uint32_t mask = len ? ~0u << (32 - len) : 0;
	out->addr.s_addr = htonl(ntohl(a.s_addr) & mask);
	out->len = len;
	return 0;
}

/* A comma-separated list of CIDRs; `what` names the option for errors. */
static int parse_cidrs(const char *list, const char *what, vmm_net_cidr **out, size_t *n,
		       vmm_error **err)
{
	*out = NULL;
	*n = 0;
	if (!list)
		return 0;
	cleanup_free char *copy = xstrdup(list);
	char *save = NULL;
	for (char *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
		while (isspace((unsigned char)*t))
			t++;
		vmm_net_cidr c;
		if (vmm_net_parse_cidr(t, &c) < 0) {
			free(*out);
			*out = NULL;
			return vmm_error_set(err, VMM_EUSAGE, "%s: \"%s\" is not an IPv4 CIDR",
					     what, t);
		}
		*out = xrealloc(*out, (*n + 1) * sizeof(**out));
		(*out)[(*n)++] = c;
	}
	return 0;
}

static int bad_publish(const char *s, vmm_error **err)
{
	return vmm_error_set(err, VMM_EUSAGE,
			     "--publish \"%s\": expected [tcp:|udp:][ADDRESS:]HOST_PORT:GUEST_PORT",
			     s);
}

static int parse_port(const char *s, size_t len, uint16_t *out)
{
	char buf[8];
	uint64_t v;
	if (len == 0 || len >= sizeof(buf))
		return -1;
	memcpy(buf, s, len);
	buf[len] = '\0';
	if (vmm_parse_u64(buf, &v) < 0 || v == 0 || v > 65535)
		return -1;
	*out = (uint16_t)v;
	return 0;
}

int vmm_net_parse_publish(const char *s, vmm_net_port *out, vmm_error **err)
{
	memset(out, 0, sizeof(*out));
	const char *p = s;
	if (strncmp(p, "tcp:", 4) == 0 || strncmp(p, "udp:", 4) == 0) {
		out->udp = p[0] == 'u';
		p += 4;
	}
	/* split from the right: GUEST, HOST, then an optional address */
	const char *c2 = strrchr(p, ':');
	if (!c2)
		return bad_publish(s, err);
	const char *c1 = NULL;
	for (const char *x = c2 - 1; x >= p; x--) {
		if (*x == ':') {
			c1 = x;
			break;
		}
	}
	const char *hp = c1 ? c1 + 1 : p;
	if (parse_port(hp, (size_t)(c2 - hp), &out->host) < 0 ||
	    parse_port(c2 + 1, strlen(c2 + 1), &out->guest) < 0)
		return bad_publish(s, err);
	if (c1) {
		struct in_addr a;
		size_t l = (size_t)(c1 - p);
		if (l >= sizeof(out->addr))
			return bad_publish(s, err);
		memcpy(out->addr, p, l);
		out->addr[l] = '\0';
		if (inet_pton(AF_INET, out->addr, &a) != 1)
			return bad_publish(s, err);
	}
	return 0;
}

/* Tart's --net-softnet-expose: "EXTERNAL:INTERNAL[,...]", TCP on every host address. */
static int parse_expose(const char *list, vmm_net_port **out, size_t *n, vmm_error **err)
{
	*out = NULL;
	*n = 0;
	if (!list)
		return 0;
	cleanup_free char *copy = xstrdup(list);
	char *save = NULL;
	for (char *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
		const char *colon = strchr(t, ':');
		vmm_net_port p = {0};
		if (!colon || parse_port(t, (size_t)(colon - t), &p.host) < 0 ||
		    parse_port(colon + 1, strlen(colon + 1), &p.guest) < 0) {
			free(*out);
			*out = NULL;
			return vmm_error_set(err, VMM_EUSAGE,
					     "--net-softnet-expose: \"%s\" is not "
					     "EXTERNAL_PORT:INTERNAL_PORT",
					     t);
		}
		*out = xrealloc(*out, (*n + 1) * sizeof(**out));
		(*out)[(*n)++] = p;
	}
	return 0;
}

static int parse_mac(const char *s, uint8_t mac[6])
{
	unsigned v[6];
	char end;
	if (!s ||
	    sscanf(s, "%x:%x:%x:%x:%x:%x%c", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5], &end) != 6)
		return -1;
	for (int i = 0; i < 6; i++) {
		if (v[i] > 255)
			return -1;
		mac[i] = (uint8_t)v[i];
	}
	return 0;
}

int vmm_net_check_opts(const vmm_net_opts *o, vmm_error **err)
{
	cleanup_free vmm_net_cidr *a = NULL, *b = NULL;
	cleanup_free vmm_net_port *e = NULL;
	size_t na, nb, ne;
	if (parse_cidrs(o->softnet_allow, "--net-softnet-allow", &a, &na, err) < 0 ||
	    parse_cidrs(o->softnet_block, "--net-softnet-block", &b, &nb, err) < 0 ||
	    parse_expose(o->softnet_expose, &e, &ne, err) < 0)
		return -1;
	for (size_t i = 0; i < o->npublish; i++) {
		vmm_net_port p;
		if (vmm_net_parse_publish(o->publish[i], &p, err) < 0)
			return -1;
	}
	if (o->bridged && (o->npublish || ne))
		return vmm_error_set(err, VMM_EUSAGE,
				     "--publish and --net-softnet-expose work with the default "
				     "network, not with --net-bridged");
	if (o->bridged && (o->softnet || o->softnet_allow || o->softnet_block || o->host_only))
		return vmm_error_set(err, VMM_EUSAGE,
				     "--net-bridged, --net-softnet and --net-host are mutually "
				     "exclusive");
	return 0;
}

/* --- privilege ---------------------------------------------------------------------- */

static bool has_net_admin(void)
{
	if (geteuid() == 0)
		return true;
	struct __user_cap_header_struct h = {_LINUX_CAPABILITY_VERSION_3, 0};
	struct __user_cap_data_struct d[2];
	if (syscall(SYS_capget, &h, d) < 0)
		return false;
	return d[CAP_NET_ADMIN / 32].effective & (1u << (CAP_NET_ADMIN % 32));
}

static char *find_tool(const char *name)
{
	char *p = vmm_find_in_path(name);
	if (p)
		return p;
	/* ordinary users' PATH often lacks the sbin directories */
	static const char *const dirs[] = {"/usr/sbin", "/sbin", "/usr/bin"};
	for (size_t i = 0; i < ARRAY_SIZE(dirs); i++) {
		p = path_join(dirs[i], name);
		if (access(p, X_OK) == 0)
			return p;
		free(p);
	}
	return NULL;
}

/* The helpers vmm starts get no environment of ours (it may hold registry credentials). */
static const char *const tool_env[] = {"PATH=/usr/sbin:/usr/bin:/sbin:/bin", NULL};

/* --- the firewall of the VM's namespace ---------------------------------------------- */

/* Destinations that are not globally routable (Tart's softnet blocks them). */
static const char *const non_global[] = {
    "0.0.0.0/8",       "10.0.0.0/8",	 "100.64.0.0/10", "127.0.0.0/8",    "169.254.0.0/16",
    "172.16.0.0/12",   "192.0.0.0/24",	 "192.0.2.0/24",  "192.168.0.0/16", "198.18.0.0/15",
    "198.51.100.0/24", "203.0.113.0/24", "224.0.0.0/4",	  "240.0.0.0/4",
};

static void append_cidr(char **s, const vmm_net_cidr *c)
{
	char a[INET_ADDRSTRLEN];
	inet_ntop(AF_INET, &c->addr, a, sizeof(a));
	char *n = xasprintf("%s%s%s/%d", *s ? *s : "", *s ? ", " : "", a, c->len);
	free(*s);
	*s = n;
}

/*
 * A destination rule, decided as softnet does: the longest prefix wins; of
 * equal prefixes the user's block beats the user's allow, which beats vmm's
 * own (the pool, the non-global ranges).
 */
enum { RULE_BUILTIN, RULE_ALLOW, RULE_BLOCK };
typedef struct dest_rule {
	uint64_t first, last; /* host order; last inclusive */
	int len, kind;
} dest_rule;

static void add_rule(dest_rule **v, size_t *n, const vmm_net_cidr *c, int kind)
{
	uint64_t first = ntohl(c->addr.s_addr);
	*v = xrealloc(*v, (*n + 1) * sizeof(**v));
	(*v)[(*n)++] = (dest_rule){first, first + (1ull << (32 - c->len)) - 1, c->len, kind};
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

static void append_range(char **s, uint64_t first, uint64_t last)
{
	struct in_addr a = {htonl((uint32_t)first)}, b = {htonl((uint32_t)last)};
	char x[INET_ADDRSTRLEN], y[INET_ADDRSTRLEN];
	inet_ntop(AF_INET, &a, x, sizeof(x));
	inet_ntop(AF_INET, &b, y, sizeof(y));
	char *n = xasprintf("%s%s%s-%s", *s ? *s : "", *s ? ", " : "", x, y);
	free(*s);
	*s = n;
}

/* Is the piece of address space starting at `a` blocked?  (Pieces never straddle a rule.) */
static bool blocked_at(const dest_rule *r, size_t n, uint64_t a)
{
	const dest_rule *best = NULL;
	for (size_t k = 0; k < n; k++) {
		if (a < r[k].first || a > r[k].last)
			continue;
		if (!best || r[k].len > best->len ||
		    (r[k].len == best->len && r[k].kind > best->kind))
			best = &r[k];
	}
	return best && best->kind != RULE_ALLOW;
}

/* The blocked destinations as non-overlapping ranges for nft (caller frees; NULL: none). */
static char *blocked_ranges(const dest_rule *r, size_t n)
{
	uint64_t *pts = xmalloc(2 * n * sizeof(*pts) + 1);
	size_t np = 0;
	for (size_t i = 0; i < n; i++) {
		pts[np++] = r[i].first;
		pts[np++] = r[i].last + 1;
	}
	qsort(pts, np, sizeof(*pts), cmp_u64);
	char *out = NULL;
	bool open = false;
	uint64_t from = 0, to = 0;
	for (size_t i = 0; i + 1 < np; i++) {
		if (pts[i] == pts[i + 1] || !blocked_at(r, n, pts[i]))
			continue;
		if (open && to + 1 != pts[i]) {
			append_range(&out, from, to);
			open = false;
		}
		if (!open)
			from = pts[i];
		open = true;
		to = pts[i + 1] - 1;
	}
	if (open)
		append_range(&out, from, to);
	free(pts);
	return out;
}

static int pool_of(vmm_net_cidr **pool, size_t *npool, vmm_error **err);

int vmm_net_blocked(const vmm_net_opts *o, char **out, vmm_error **err)
{
	cleanup_free vmm_net_cidr *pool = NULL, *allow = NULL, *block = NULL;
	size_t npool, nallow, nblock;
	if (pool_of(&pool, &npool, err) < 0 ||
	    parse_cidrs(o->softnet_allow, "--net-softnet-allow", &allow, &nallow, err) < 0 ||
	    parse_cidrs(o->softnet_block, "--net-softnet-block", &block, &nblock, err) < 0)
		return -1;
	dest_rule *rules = NULL;
	size_t nrules = 0;
	for (size_t i = 0; i < npool; i++)
		add_rule(&rules, &nrules, &pool[i], RULE_BUILTIN); /* other VMs, the host's ends */
	for (size_t i = 0; o->softnet && i < ARRAY_SIZE(non_global); i++) {
		vmm_net_cidr c;
		vmm_net_parse_cidr(non_global[i], &c);
		add_rule(&rules, &nrules, &c, RULE_BUILTIN);
	}
	if (o->host_only) {
		vmm_net_cidr all = {{0}, 0};
		add_rule(&rules, &nrules, &all, RULE_BUILTIN);
	}
	for (size_t i = 0; i < nblock; i++)
		add_rule(&rules, &nrules, &block[i], RULE_BLOCK);
	for (size_t i = 0; i < nallow; i++)
		add_rule(&rules, &nrules, &allow[i], RULE_ALLOW);
	*out = nrules ? blocked_ranges(rules, nrules) : NULL;
	free(rules);
	return 0;
}

/*
 * The ruleset: the host's address of the guest (O) and the slirp side lead to
 * the guest; the gateway leads to the host (H); the guest may send only from
 * its own address, and not to blocked destinations (vmm_net_blocked).
 */
static char *ruleset(const vmm_net *n, const char *blocked)
{
	char o[INET_ADDRSTRLEN], h[INET_ADDRSTRLEN];
	inet_ntop(AF_INET, &n->guest_addr, o, sizeof(o));
	inet_ntop(AF_INET, &n->host_addr, h, sizeof(h));
	char *r = xasprintf(
	    "table ip vmm {\n"
	    "\tset blocked { type ipv4_addr; flags interval; %s%s%s }\n"
	    "\tchain prerouting {\n"
	    "\t\ttype nat hook prerouting priority dstnat; policy accept;\n"
	    "\t\tiifname \"" NS_VETH "\" ip daddr %s dnat to " VMM_NET_GUEST "\n"
	    "\t\tiifname \"" NS_SLIRP "\" dnat to " VMM_NET_GUEST "\n"
	    "\t\tiifname \"" NS_TAP "\" ip daddr " VMM_NET_DNS " meta l4proto { tcp, udp } th "
	    "dport 53 dnat to " SLIRP_DNS "\n"
	    "\t\tiifname \"" NS_TAP "\" ip daddr " VMM_NET_GATEWAY " tcp dport 1-65535 dnat to %s\n"
	    "\t\tiifname \"" NS_TAP "\" ip daddr " VMM_NET_GATEWAY " udp dport != 67 dnat to %s\n"
	    "\t}\n"
	    "\tchain postrouting {\n"
	    "\t\ttype nat hook postrouting priority srcnat; policy accept;\n"
	    "\t\toifname { \"" NS_SLIRP "\", \"" NS_VETH "\" } masquerade\n"
	    "\t}\n"
	    "\tchain forward {\n"
	    "\t\ttype filter hook forward priority filter; policy drop;\n"
	    "\t\tct state established,related accept\n"
	    "\t\tiifname \"" NS_TAP "\" ip saddr != " VMM_NET_GUEST " drop\n"
	    "\t\tiifname \"" NS_TAP "\" ct status dnat accept\n"
	    "\t\tiifname \"" NS_TAP "\" ip daddr @blocked drop\n"
	    "\t\tiifname \"" NS_TAP "\" oifname \"" NS_SLIRP "\" accept\n"
	    "\t\toifname \"" NS_TAP "\" ip daddr " VMM_NET_GUEST " ct status dnat accept\n"
	    "\t}\n"
	    "\tchain input {\n"
	    "\t\ttype filter hook input priority filter; policy drop;\n"
	    "\t\tiifname \"lo\" accept\n"
	    "\t\tct state established,related accept\n"
	    "\t\tiifname \"" NS_TAP "\" udp dport 67 accept\n"
	    "\t\ticmp type echo-request accept\n"
	    "\t}\n"
	    "}\n",
	    blocked ? "elements = { " : "", blocked ? blocked : "", blocked ? " }" : "", o, h, h);
	return r;
}

/* Run `nft -f -` with `rules` in the current namespace; first line of its complaint on failure. */
static int load_rules_exec(const char *rules, vmm_error **err)
{
	cleanup_free char *nft = find_tool("nft");
	if (!nft)
		return vmm_error_set(err, ENOENT,
				     "nft is not installed (apt-get install nftables)");
	int in[2], errp[2];
	if (pipe2(in, O_CLOEXEC) < 0)
		return vmm_error_errno(err, errno, "pipe");
	if (pipe2(errp, O_CLOEXEC) < 0) {
		close(in[0]);
		close(in[1]);
		return vmm_error_errno(err, errno, "pipe");
	}
	pid_t pid = fork();
	if (pid == 0) {
		dup2(in[0], 0);
		dup2(errp[1], 1);
		dup2(errp[1], 2);
		char *const argv[] = {(char *)"nft", (char *)"-f", (char *)"-", NULL};
		execve(nft, argv, (char **)tool_env);
		_exit(127);
	}
	close(in[0]);
	close(errp[1]);
	if (pid > 0)
		(void)!vmm_write_all(in[1], rules, strlen(rules));
	close(in[1]);
	char out[1024] = "";
	size_t len = 0;
	ssize_t r;
	while (pid > 0 && (r = read(errp[0], out + len, sizeof(out) - 1 - len)) > 0)
		len += (size_t)r;
	out[len] = '\0';
	close(errp[0]);
	int st = 0;
	if (pid < 0)
		return vmm_error_errno(err, errno, "fork");
	while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
		;
	if (WIFEXITED(st) && WEXITSTATUS(st) == 0)
		return 0;
	out[strcspn(out, "\n")] = '\0';
	return vmm_error_set(err, VMM_EGENERIC, "load the VM's firewall rules: %s",
			     out[0] ? out : "nft failed");
}

/* libnftables, loaded where it is installed (it comes with nftables): no exec of nft */
typedef struct nft_ctx nft_ctx;
typedef struct nftables_api {
	nft_ctx *(*ctx_new)(uint32_t flags);
	int (*buffer_error)(nft_ctx *ctx);
	const char *(*get_error)(nft_ctx *ctx);
	int (*run)(nft_ctx *ctx, const char *buf);
	void (*ctx_free)(nft_ctx *ctx);
} nftables_api;

static bool nftables_open(nftables_api *a)
{
	void *h = dlopen("libnftables.so.1", RTLD_NOW | RTLD_LOCAL);
	if (!h)
		return false;
	*(void **)&a->ctx_new = dlsym(h, "nft_ctx_new");
	*(void **)&a->buffer_error = dlsym(h, "nft_ctx_buffer_error");
	*(void **)&a->get_error = dlsym(h, "nft_ctx_get_error_buffer");
	*(void **)&a->run = dlsym(h, "nft_run_cmd_from_buffer");
	*(void **)&a->ctx_free = dlsym(h, "nft_ctx_free");
	return a->ctx_new && a->buffer_error && a->get_error && a->run && a->ctx_free;
}

/* Load `rules` into the current namespace; the first line of nft's complaint on failure. */
static int load_rules(const char *rules, vmm_error **err)
{
	nftables_api api;
	if (nftables_open(&api)) {
		nft_ctx *ctx = api.ctx_new(0);
		if (!ctx)
			return vmm_error_set(err, VMM_EGENERIC,
					     "load the VM's firewall rules: nft_ctx_new");
		api.buffer_error(ctx);
		int rc = api.run(ctx, rules);
		if (rc != 0) {
			cleanup_free char *why =
			    xstrdup(api.get_error(ctx) ? api.get_error(ctx) : "");
			api.ctx_free(ctx);
			why[strcspn(why, "\n")] = '\0';
			return vmm_error_set(err, VMM_EGENERIC, "load the VM's firewall rules: %s",
					     why[0] ? why : "nft failed");
		}
		api.ctx_free(ctx);
		return 0;
	}
	return load_rules_exec(rules, err);
}

/* --- the namespace helper --------------------------------------------------------------- */

typedef struct ns_reply {
	int code;
	char msg[240];
} ns_reply;

enum { FD_TAP, FD_DHCP, FD_NL, FD_NET, FD_USER, NS_FDS };

static int write_sysctl(const char *path, const char *value)
{
	cleanup_close int fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	return vmm_write_all(fd, value, strlen(value));
}

static int open_tap(const char *name, short flags, int *out, vmm_error **err)
{
	cleanup_close int fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC);
	if (fd < 0)
		return vmm_error_errno(err, errno, "open /dev/net/tun");
	struct ifreq ifr = {0};
	ifr.ifr_flags = flags;
	snprintf(ifr.ifr_name, IFNAMSIZ, "%s", name);
	if (ioctl(fd, TUNSETIFF, &ifr) < 0)
		return vmm_error_errno(err, errno, "create TAP device `%s`", name);
	*out = steal_fd(fd);
	return 0;
}

static int dhcp_socket(int *out, vmm_error **err)
{
	cleanup_close int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	int one = 1;
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(67)};
	if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
	    setsockopt(fd, SOL_SOCKET, SO_BROADCAST, &one, sizeof(one)) < 0 ||
	    setsockopt(fd, SOL_SOCKET, SO_BINDTODEVICE, NS_TAP, sizeof(NS_TAP)) < 0 ||
	    bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		return vmm_error_errno(err, errno, "DHCP socket");
	*out = steal_fd(fd);
	return 0;
}

/* Inside the new namespace: its links, the DHCP socket and descriptors of it. */
static int configure_ns(bool userns, int fds[NS_FDS], vmm_error **err)
{
	/* no IPv6 in there: the guest's network is IPv4, and nothing should autoconfigure */
	write_sysctl("/proc/sys/net/ipv6/conf/default/disable_ipv6", "1");
	write_sysctl("/proc/sys/net/ipv6/conf/all/disable_ipv6", "1");
	if (write_sysctl("/proc/sys/net/ipv4/ip_forward", "1") < 0)
		return vmm_error_errno(err, errno, "enable forwarding in the VM's namespace");
	vmm_nl *nl = NULL;
	if (vmm_nl_open(&nl, err) < 0)
		return -1;
	fds[FD_NL] = vmm_nl_fd(nl);
	struct in_addr gw, dns;
	inet_pton(AF_INET, VMM_NET_GATEWAY, &gw);
	inet_pton(AF_INET, VMM_NET_DNS, &dns);
	/* no vnet header: the guest's NIC must look the same as on the user-mode network,
	 * or a state saved on one would not load on the other */
	if (vmm_nl_link_up(nl, 1, err) < 0 ||
	    open_tap(NS_TAP, IFF_TAP | IFF_NO_PI, &fds[FD_TAP], err) < 0)
		return -1;
	/* persistent: when QEMU closes it, it waits for the namespace's end and goes with
	 * every other device of it in one batch (a TAP unregistered alone costs an RCU
	 * grace period of its own) */
	if (ioctl(fds[FD_TAP], TUNSETPERSIST, 1) < 0)
		return vmm_error_errno(err, errno, "TUNSETPERSIST");
	int tap = vmm_nl_ifindex(nl, NS_TAP, err);
	if (tap <= 0 || vmm_nl_link_set_mac(nl, tap, (const uint8_t *)GATEWAY_MAC, err) < 0 ||
	    vmm_nl_addr_add(nl, tap, gw, GUEST_PREFIX, err) < 0 ||
	    /* the DNS address must answer ARP; its port 53 is forwarded to slirp's */
	    vmm_nl_addr_add(nl, tap, dns, 32, err) < 0 || vmm_nl_link_up(nl, tap, err) < 0)
		return -1;
	if (dhcp_socket(&fds[FD_DHCP], err) < 0)
		return -1;
	fds[FD_NET] = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
	fds[FD_USER] = userns ? open("/proc/self/ns/user", O_RDONLY | O_CLOEXEC) : -1;
	if (fds[FD_NET] < 0 || (userns && fds[FD_USER] < 0))
		return vmm_error_errno(err, errno, "open the VM's namespace");
	return 0;
}

static int send_fds(int sock, const ns_reply *r, const int *fds, int n)
{
	struct iovec iov = {.iov_base = (void *)r, .iov_len = sizeof(*r)};
	char cbuf[CMSG_SPACE(sizeof(int) * NS_FDS)] = {0};
	struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1};
	if (n > 0) {
		m.msg_control = cbuf;
		m.msg_controllen = CMSG_SPACE(sizeof(int) * (size_t)n);
		struct cmsghdr *c = CMSG_FIRSTHDR(&m);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int) * (size_t)n);
		memcpy(CMSG_DATA(c), fds, sizeof(int) * (size_t)n);
	}
	return sendmsg(sock, &m, MSG_NOSIGNAL) < 0 ? -1 : 0;
}

/*
 * Without root, the namespace belongs to a user namespace of ours in which we
 * are root: capabilities there survive the exec of nft and slirp4netns.
 */
static int map_root(uid_t uid, gid_t gid)
{
	/* a file capability made us undumpable, which makes /proc/self root's */
	prctl(PR_SET_DUMPABLE, 1);
	char m[64];
	snprintf(m, sizeof(m), "0 %u 1\n", (unsigned)uid);
	if (write_sysctl("/proc/self/setgroups", "deny") < 0 ||
	    write_sysctl("/proc/self/uid_map", m) < 0)
		return -1;
	snprintf(m, sizeof(m), "0 %u 1\n", (unsigned)gid);
	return write_sysctl("/proc/self/gid_map", m);
}

/*
 * The helper: it makes the namespace and its links and sends their
 * descriptors at once (so slirp4netns and the veth pair can start), then
 * loads the firewall and says how that went.
 */
static void __attribute__((noreturn)) ns_helper(int sock, const char *rules, bool userns)
{
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	ns_reply r = {0};
	int fds[NS_FDS] = {-1, -1, -1, -1, -1};
	vmm_error *e = NULL;
	uid_t uid = geteuid();
	gid_t gid = getegid();
	if (unshare(userns ? CLONE_NEWUSER | CLONE_NEWNET : CLONE_NEWNET) < 0 ||
	    (userns && map_root(uid, gid) < 0)) {
		r.code = errno;
		snprintf(r.msg, sizeof(r.msg), "create a network namespace: %s", strerror(errno));
	} else if (configure_ns(userns, fds, &e) < 0) {
		r.code = e && e->code ? e->code : VMM_EGENERIC;
		snprintf(r.msg, sizeof(r.msg), "%s", e ? e->msg : "set up the VM's namespace");
	}
	send_fds(sock, &r, fds, r.code ? 0 : (userns ? NS_FDS : NS_FDS - 1));
	if (r.code == 0 && load_rules(rules, &e) < 0) {
		r.code = e->code ? e->code : VMM_EGENERIC;
		snprintf(r.msg, sizeof(r.msg), "%s", e->msg);
	}
	send_fds(sock, &r, NULL, 0);
	_exit(0);
}

static ssize_t recv_reply(int sock, ns_reply *r, int fds[NS_FDS])
{
	char cbuf[CMSG_SPACE(sizeof(int) * NS_FDS)];
	struct iovec iov = {.iov_base = r, .iov_len = sizeof(*r)};
	struct msghdr m = {
	    .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof(cbuf)};
	ssize_t got;
	do
		got = recvmsg(sock, &m, MSG_CMSG_CLOEXEC);
	while (got < 0 && errno == EINTR);
	struct cmsghdr *c = got > 0 ? CMSG_FIRSTHDR(&m) : NULL;
	if (fds && c && c->cmsg_type == SCM_RIGHTS) {
		size_t k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		memcpy(fds, CMSG_DATA(c), sizeof(int) * (k > NS_FDS ? NS_FDS : k));
	}
	r->msg[sizeof(r->msg) - 1] = '\0';
	return got;
}

static int helper_error(const ns_reply *r, ssize_t got, vmm_error **err)
{
	if (got != (ssize_t)sizeof(*r))
		return vmm_error_set(err, VMM_EGENERIC,
				     "the helper setting up the VM's namespace died");
	return vmm_error_set(err, r->code ? r->code : VMM_EGENERIC, "%s", r->msg);
}

/* Start the helper and collect the namespace's descriptors. */
static int ns_start(vmm_net *n, const char *rules, bool userns, vmm_error **err)
{
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
		return vmm_error_errno(err, errno, "socketpair");
	pid_t pid = fork();
	if (pid < 0) {
		close(sv[0]);
		close(sv[1]);
		return vmm_error_errno(err, errno, "fork");
	}
	if (pid == 0) {
		close(sv[0]);
		ns_helper(sv[1], rules, userns);
	}
	close(sv[1]);
	n->helper = pid;
	n->helper_sock = sv[0];
	ns_reply r = {0};
	int fds[NS_FDS] = {-1, -1, -1, -1, -1};
	ssize_t got = recv_reply(sv[0], &r, fds);
	if (got != (ssize_t)sizeof(r) || r.code != 0 || fds[FD_NET] < 0) {
		for (int i = 0; i < NS_FDS; i++)
			if (fds[i] >= 0)
				close(fds[i]);
		return helper_error(&r, got, err);
	}
	n->tap = fds[FD_TAP];
	n->nsfd = fds[FD_NET];
	n->usernsfd = fds[FD_USER];
	n->dhcp_sock = fds[FD_DHCP];
	n->nl_ns = vmm_nl_adopt(fds[FD_NL]);
	if (!n->nl_ns)
		return vmm_error_set(err, VMM_EGENERIC, "adopt the namespace's netlink socket");
	return 0;
}

/* Wait for the helper's firewall. */
static int ns_finish(vmm_net *n, vmm_error **err)
{
	ns_reply r = {0};
	ssize_t got = recv_reply(n->helper_sock, &r, NULL);
	close(steal_fd(n->helper_sock));
	while (waitpid(n->helper, NULL, 0) < 0 && errno == EINTR)
		;
	n->helper = 0;
	return got == (ssize_t)sizeof(r) && r.code == 0 ? 0 : helper_error(&r, got, err);
}

/* The guest's one lease; the server thread starts last, after every fork. */
static int start_dhcp(vmm_net *n, vmm_error **err)
{
	vmm_dhcp_lease l = {.prefix = GUEST_PREFIX, .lease_seconds = LEASE_SECONDS};
	parse_mac(n->o->mac, l.mac);
	inet_pton(AF_INET, VMM_NET_GUEST, &l.address);
	inet_pton(AF_INET, VMM_NET_GATEWAY, &l.router);
	inet_pton(AF_INET, VMM_NET_DNS, &l.dns);
	return vmm_dhcp_start(&n->dhcp, steal_fd(n->dhcp_sock), &l, err);
}

/* --- the host side ----------------------------------------------------------------------- */

/* Serialize the choice of a subnet among `vmm run`s of this network namespace. */
static int host_lock(int *out, vmm_error **err)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	memcpy(sa.sun_path + 1, LOCK_NAME, sizeof(LOCK_NAME) - 1);
	socklen_t len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + sizeof(LOCK_NAME));
	double deadline = vmm_now() + 30;
	for (;;) {
		int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (fd < 0)
			return vmm_error_errno(err, errno, "socket");
		if (bind(fd, (struct sockaddr *)&sa, len) == 0) {
			*out = fd;
			return 0;
		}
		int e = errno;
		close(fd);
		if (e != EADDRINUSE)
			return vmm_error_errno(err, e, "lock the host's VM networks");
		if (vmm_now() > deadline)
			return vmm_error_set(err, VMM_ELOCKED,
					     "another `vmm run` holds the host's network lock");
		usleep(1000);
	}
}

static bool overlaps(uint32_t a, int alen, uint32_t b, int blen)
{
	int l = alen < blen ? alen : blen;
	uint32_t mask = l ? ~0u << (32 - l) : 0;
	return (a & mask) == (b & mask);
}

static int pool_of(vmm_net_cidr **pool, size_t *npool, vmm_error **err)
{
	const char *env = getenv("VMM_NET_POOL");
	if (parse_cidrs(env && *env ? env : DEFAULT_POOL, "VMM_NET_POOL", pool, npool, err) < 0)
		return -1;
	for (size_t i = 0; i < *npool; i++)
		if ((*pool)[i].len > 30)
			return vmm_error_set(err, VMM_EINVAL,
					     "VMM_NET_POOL: a prefix must hold a /30 at least");
	return 0;
}

/*
 * Pick a /30 of the pool that no route of the host overlaps and whose
 * interface name is free: H = .1 on the host, O = .2 for the guest.
 */
static int pick_subnet(vmm_net *n, const vmm_net_cidr *pool, size_t npool, vmm_error **err)
{
	cleanup_free vmm_nl_prefix *routes = NULL;
	size_t nroutes = 0;
	if (vmm_nl_routes(n->nl_host, &routes, &nroutes, err) < 0)
		return -1;
	for (size_t p = 0; p < npool; p++) {
		uint32_t base = ntohl(pool[p].addr.s_addr);
		uint64_t count = 1ull << (32 - pool[p].len - 2);
		for (uint64_t i = 0; i < count; i++) {
			uint32_t net = base + (uint32_t)(i << 2);
			bool used = false;
			for (size_t r = 0; r < nroutes && !used; r++)
				used =
				    overlaps(net, 30, ntohl(routes[r].addr.s_addr), routes[r].len);
			if (used)
				continue;
			snprintf(n->host_if, sizeof(n->host_if), "vmm%08x", net);
			if (vmm_nl_ifindex(n->nl_host, n->host_if, NULL) != 0)
				continue; /* a dying VM's pair whose route is gone already */
			n->host_addr.s_addr = htonl(net + 1);
			n->guest_addr.s_addr = htonl(net + 2);
			inet_ntop(AF_INET, &n->guest_addr, n->address, sizeof(n->address));
			return 0;
		}
	}
	cleanup_free char *list = NULL;
	for (size_t p = 0; p < npool; p++)
		append_cidr(&list, &pool[p]);
	return vmm_error_set(err, VMM_EGENERIC,
			     "no free subnet for the VM's network: every /30 of %s overlaps a "
			     "route of the host (VMM_NET_POOL sets the prefixes to use)",
			     list);
}

/* The veth pair between the host and the VM's namespace, the host's end configured. */
static int add_veth(vmm_net *n, vmm_error **err)
{
	if (vmm_nl_veth_add(n->nl_host, n->host_if, NS_VETH, n->nsfd, err) < 0)
		return -1;
	n->delete_host_if = true;
	int idx = vmm_nl_ifindex(n->nl_host, n->host_if, err);
	if (idx <= 0 || vmm_nl_addr_add(n->nl_host, idx, n->host_addr, 30, err) < 0 ||
	    vmm_nl_link_up(n->nl_host, idx, err) < 0)
		return -1;
	return 0;
}

static int ns_veth_up(vmm_net *n, vmm_error **err)
{
	int idx = vmm_nl_ifindex(n->nl_ns, NS_VETH, err);
	if (idx <= 0)
		return idx < 0 ? -1
			       : vmm_error_set(err, VMM_EGENERIC, "the veth pair lost its end");
	return vmm_nl_addr_add(n->nl_ns, idx, n->guest_addr, 30, err) < 0 ||
		       vmm_nl_link_up(n->nl_ns, idx, err) < 0
		   ? -1
		   : 0;
}

/* --- slirp4netns -------------------------------------------------------------------------- */

static int slirp_api(const char *path, const vmm_net_port *p, vmm_error **err)
{
	cleanup_close int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		return vmm_error_errno(err, errno, "reach slirp4netns");
	cleanup_free char *req = xasprintf(
	    "{\"execute\": \"add_hostfwd\", \"arguments\": {\"proto\": \"%s\", \"host_addr\": "
	    "\"%s\", \"host_port\": %u, \"guest_addr\": \"" SLIRP_GUEST "\", \"guest_port\": %u}}",
	    p->udp ? "udp" : "tcp", p->addr[0] ? p->addr : "0.0.0.0", p->host, p->guest);
	if (vmm_write_all(fd, req, strlen(req)) < 0)
		return vmm_error_errno(err, errno, "talk to slirp4netns");
	shutdown(fd, SHUT_WR);
	char reply[512] = "";
	size_t len = 0;
	ssize_t r;
	while (len + 1 < sizeof(reply) && (r = read(fd, reply + len, sizeof(reply) - 1 - len)) > 0)
		len += (size_t)r;
	reply[len] = '\0';
	if (strstr(reply, "\"return\""))
		return 0;
	const char *desc = strstr(reply, "\"desc\"");
	return vmm_error_set(err, VMM_EGENERIC, "publish %s port %u: %s", p->udp ? "UDP" : "TCP",
			     p->host, desc ? desc : "slirp4netns refused");
}

static void __attribute__((noreturn))
exec_slirp(const char *bin, int nsfd, int usernsfd, int exitfd, int readyfd, int errfd,
	   const char *api)
{
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	signal(SIGPIPE, SIG_IGN);
	sigset_t none;
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	/* descriptors at fixed numbers: 3 netns, 4 exit, 5 ready, 6 userns */
	int lifted[4] = {fcntl(nsfd, F_DUPFD, 10), fcntl(exitfd, F_DUPFD, 10),
			 fcntl(readyfd, F_DUPFD, 10),
			 usernsfd >= 0 ? fcntl(usernsfd, F_DUPFD, 10) : -1};
	int nul = open("/dev/null", O_RDWR);
	if (nul < 0 || dup2(nul, 0) < 0 || dup2(nul, 1) < 0 || dup2(errfd, 2) < 0)
		_exit(127);
	for (int i = 0; i < 4; i++)
		if (lifted[i] >= 0 && dup2(lifted[i], 3 + i) < 0)
			_exit(127);
	close_range(usernsfd >= 0 ? 7 : 6, ~0u, 0);
	char *argv[20];
	int a = 0;
	argv[a++] = (char *)"slirp4netns";
	argv[a++] = (char *)"--configure";
	argv[a++] = (char *)"--mtu=65520";
	argv[a++] = (char *)"--disable-host-loopback";
	argv[a++] = (char *)"--cidr=" SLIRP_CIDR;
	argv[a++] = (char *)"--netns-type=path";
	argv[a++] = (char *)"--exit-fd=4";
	argv[a++] = (char *)"--ready-fd=5";
	if (usernsfd >= 0)
		argv[a++] = (char *)"--userns-path=/proc/self/fd/6";
	else
		argv[a++] = (char *)"--enable-sandbox"; /* root: drop to a private, empty root */
	argv[a++] = (char *)"--enable-seccomp";
	char apiarg[sizeof(((struct sockaddr_un *)0)->sun_path) + 16];
	if (api) {
		snprintf(apiarg, sizeof(apiarg), "--api-socket=%s", api);
		argv[a++] = apiarg;
	}
	argv[a++] = (char *)"/proc/self/fd/3";
	argv[a++] = (char *)NS_SLIRP;
	argv[a] = NULL;
	execve(bin, argv, (char **)tool_env);
	_exit(127);
}

/* Start slirp4netns; slirp_wait() waits for it. */
static int slirp_spawn(vmm_net *n, bool api, vmm_error **err)
{
	cleanup_free char *bin = find_tool("slirp4netns");
	if (!bin)
		return vmm_error_set(err, ENOENT, "slirp4netns is not installed");
	int exitp[2], readyp[2], errp[2];
	if (pipe2(exitp, O_CLOEXEC) < 0)
		return vmm_error_errno(err, errno, "pipe");
	if (pipe2(readyp, O_CLOEXEC) < 0 || pipe2(errp, O_CLOEXEC) < 0) {
		close(exitp[0]);
		close(exitp[1]);
		return vmm_error_errno(err, errno, "pipe");
	}
	if (api) {
		snprintf(n->slirp_api, sizeof(n->slirp_api), "/tmp/vmm-slirp-%d.sock",
			 (int)getpid());
		unlink(n->slirp_api);
	}
	pid_t pid = fork();
	if (pid == 0)
		exec_slirp(bin, n->nsfd, n->usernsfd, exitp[0], readyp[1], errp[1],
			   api ? n->slirp_api : NULL);
	close(exitp[0]);
	close(readyp[1]);
	close(errp[1]);
	if (pid < 0) {
		close(exitp[1]);
		close(readyp[0]);
		close(errp[0]);
		return vmm_error_errno(err, errno, "fork");
	}
	n->slirp = pid;
	n->slirp_exit = exitp[1];
	n->slirp_ready = readyp[0];
	n->slirp_err = errp[0];
	return 0;
}

/* slirp4netns writes "1" on the ready descriptor once slirp0 is configured; then the forwards. */
static int slirp_wait(vmm_net *n, const vmm_net_port *fwd, size_t nfwd, vmm_error **err)
{
	struct pollfd p = {.fd = n->slirp_ready, .events = POLLIN};
	char c = 0;
	int rc = poll(&p, 1, (int)(READY_TIMEOUT * 1000));
	bool ready = rc > 0 && read(n->slirp_ready, &c, 1) == 1;
	close(steal_fd(n->slirp_ready));
	int frc = 0;
	if (!ready) {
		char msg[512] = "";
		fcntl(n->slirp_err, F_SETFL, O_NONBLOCK);
		ssize_t l = read(n->slirp_err, msg, sizeof(msg) - 1);
		msg[l > 0 ? l : 0] = '\0';
		msg[strcspn(msg, "\n")] = '\0';
		frc = vmm_error_set(err, VMM_EGENERIC, "slirp4netns did not start%s%s",
				    msg[0] ? ": " : "", msg);
	}
	close(steal_fd(n->slirp_err));
	for (size_t i = 0; i < nfwd && frc == 0; i++)
		frc = slirp_api(n->slirp_api, &fwd[i], err);
	if (n->slirp_api[0])
		unlink(n->slirp_api); /* slirp4netns keeps listening on it; nobody else needs the
					 name */
	n->slirp_api[0] = '\0';
	return frc;
}

/* --- bridged -------------------------------------------------------------------------- */

/* A TAP enslaved to bridge `br`. */
static int tap_on_bridge(vmm_net *n, int br, vmm_error **err)
{
	if (open_tap("vmmt%d", IFF_TAP | IFF_NO_PI, &n->tap, err) < 0)
		return -1;
	struct ifreq ifr = {0};
	if (ioctl(n->tap, TUNGETIFF, &ifr) < 0)
		return vmm_error_errno(err, errno, "TUNGETIFF");
	snprintf(n->host_if, sizeof(n->host_if), "%s", ifr.ifr_name);
	int idx = vmm_nl_ifindex(n->nl_host, n->host_if, err);
	if (idx <= 0)
		return -1;
	cleanup_close int sock = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	struct ifreq add = {0};
	if_indextoname((unsigned)br, add.ifr_name);
	add.ifr_ifindex = idx;
	if (sock < 0 || ioctl(sock, SIOCBRADDIF, &add) < 0)
		return vmm_error_errno(err, errno, "--net-bridged `%s`: add `%s` to it",
				       n->o->bridged, n->host_if);
	return vmm_nl_link_up(n->nl_host, idx, err);
}

/* macvtaps whose `vmm run` was killed: named vmmv<pid>, the pid gone. */
static void reclaim_macvtaps(vmm_nl *nl)
{
	cleanup_dir DIR *d = opendir("/sys/class/net");
	struct dirent *e;
	while (d && (e = readdir(d))) {
		int pid;
		char end;
		if (sscanf(e->d_name, "vmmv%d%c", &pid, &end) != 1 || pid <= 0)
			continue;
		if (kill(pid, 0) == 0 || errno != ESRCH)
			continue;
		int idx = vmm_nl_ifindex(nl, e->d_name, NULL);
		if (idx > 0)
			vmm_nl_link_delete(nl, idx, NULL);
	}
}

/* Tart's meaning of --net-bridged on a plain interface: a macvtap on it. */
static int macvtap_on(vmm_net *n, int lower, vmm_error **err)
{
	uint8_t mac[6];
	if (parse_mac(n->o->mac, mac) < 0)
		return vmm_error_set(err, VMM_EINVAL, "bad MAC address \"%s\"", n->o->mac);
	reclaim_macvtaps(n->nl_host);
	snprintf(n->host_if, sizeof(n->host_if), "vmmv%d", (int)getpid());
	if (vmm_nl_macvtap_add(n->nl_host, n->host_if, lower, mac, err) < 0)
		return -1;
	n->delete_host_if = true;
	int idx = vmm_nl_ifindex(n->nl_host, n->host_if, err);
	if (idx <= 0 || vmm_nl_link_up(n->nl_host, idx, err) < 0)
		return -1;
	/* its character device, made here: a host without udev has no /dev/tapN */
	char path[128], dev[32] = "";
	snprintf(path, sizeof(path), "/sys/class/net/%s/macvtap/tap%d/dev", n->host_if, idx);
	cleanup_file FILE *f = fopen(path, "re");
	unsigned maj, min;
	if (!f || !fgets(dev, sizeof(dev), f) || sscanf(dev, "%u:%u", &maj, &min) != 2)
		return vmm_error_set(err, VMM_EGENERIC, "macvtap `%s` has no device", n->host_if);
	char node[64];
	snprintf(node, sizeof(node), "/dev/vmm-%s", n->host_if);
	unlink(node);
	if (mknod(node, S_IFCHR | 0600, makedev(maj, min)) < 0)
		return vmm_error_errno(err, errno, "create `%s`", node);
	n->tap = open(node, O_RDWR | O_CLOEXEC);
	int e = errno;
	unlink(node);
	if (n->tap < 0)
		return vmm_error_errno(err, e, "open `%s`", node);
	/* no vnet header, as on the other networks (see configure_ns) */
	struct ifreq ifr = {.ifr_flags = IFF_TAP | IFF_NO_PI};
	if (ioctl(n->tap, TUNSETIFF, &ifr) < 0)
		return vmm_error_errno(err, errno, "configure macvtap `%s`", n->host_if);
	return 0;
}

static int setup_bridged(vmm_net *n, vmm_error **err)
{
	if (strlen(n->o->bridged) >= IF_NAMESIZE)
		return vmm_error_set(err, VMM_EINVAL, "--net-bridged `%s`: no such interface",
				     n->o->bridged);
	if (!has_net_admin())
		return vmm_error_set(err, EPERM,
				     "--net-bridged needs root or CAP_NET_ADMIN (`make install` "
				     "gives vmm the capability)");
	if (vmm_nl_open(&n->nl_host, err) < 0)
		return -1;
	int idx = vmm_nl_ifindex(n->nl_host, n->o->bridged, err);
	if (idx < 0)
		return -1;
	if (idx == 0)
		return vmm_error_set(err, VMM_EINVAL, "--net-bridged `%s`: no such interface",
				     n->o->bridged);
	bool bridge;
	if (vmm_nl_link_is_bridge(n->nl_host, idx, &bridge, err) < 0)
		return -1;
	n->mode = VMM_NET_BRIDGED;
	return bridge ? tap_on_bridge(n, idx, err) : macvtap_on(n, idx, err);
}

/* --- the default network ---------------------------------------------------------------- */

static int setup_default(vmm_net *n, vmm_error **err)
{
	cleanup_free vmm_net_cidr *pool = NULL;
	cleanup_free vmm_net_port *expose = NULL;
	cleanup_free char *blocked = NULL;
	size_t npool, nexpose;
	if (pool_of(&pool, &npool, err) < 0 || vmm_net_blocked(n->o, &blocked, err) < 0 ||
	    parse_expose(n->o->softnet_expose, &expose, &nexpose, err) < 0)
		return -1;
	size_t nfwd = n->o->npublish + nexpose;
	cleanup_free vmm_net_port *fwd = xcalloc(nfwd + 1, sizeof(*fwd));
	for (size_t i = 0; i < n->o->npublish; i++)
		if (vmm_net_parse_publish(n->o->publish[i], &fwd[i], err) < 0)
			return -1;
	if (nexpose)
		memcpy(fwd + n->o->npublish, expose, nexpose * sizeof(*fwd));

	if (vmm_nl_open(&n->nl_host, err) < 0)
		return -1;
	/* the subnet is chosen and its route made under the lock: another `vmm run`
	 * must not see it free meanwhile */
	cleanup_close int lock = -1;
	if (host_lock(&lock, err) < 0 || pick_subnet(n, pool, npool, err) < 0)
		return -1;
	/* in parallel where it can be: slirp4netns starts while the veth pair is made
	 * and the helper loads the firewall */
	cleanup_free char *rules = ruleset(n, blocked);
	if (ns_start(n, rules, geteuid() != 0, err) < 0 || slirp_spawn(n, nfwd > 0, err) < 0 ||
	    add_veth(n, err) < 0)
		return -1;
	close(steal_fd(lock));
	if (ns_veth_up(n, err) < 0 || ns_finish(n, err) < 0 || slirp_wait(n, fwd, nfwd, err) < 0)
		return -1;
	return start_dhcp(n, err);
}

/* --- lifecycle ------------------------------------------------------------------------------ */

static vmm_net *net_new(const vmm_net_opts *o)
{
	vmm_net *n = xcalloc(1, sizeof(*n));
	n->o = o;
	n->tap = n->nsfd = n->usernsfd = n->slirp_exit = n->dhcp_sock = -1;
	n->slirp_ready = n->slirp_err = n->helper_sock = -1;
	return n;
}

int vmm_net_setup(vmm_net **out, const vmm_net_opts *o, vmm_error **err)
{
	if (vmm_net_check_opts(o, err) < 0)
		return -1;
	vmm_net *n = net_new(o);
	int rc;
	if (o->bridged) {
		rc = setup_bridged(n, err);
	} else if (o->force_user) {
		n->mode = VMM_NET_USER;
		rc = 0;
	} else if (!has_net_admin() || access("/dev/net/tun", R_OK | W_OK) < 0) {
		n->mode = VMM_NET_USER;
		n->notice = xstrdup("vmm runs without CAP_NET_ADMIN: the VM is on the user-mode "
				    "network, which the host cannot reach by address (use "
				    "--publish, or run as root)");
		rc = 0;
	} else {
		n->mode = VMM_NET_DEFAULT;
		cleanup_vmm_error vmm_error *e = NULL;
		rc = setup_default(n, &e);
		if (rc < 0 && (e->code == EPERM || e->code == EACCES || e->code == ENOENT)) {
			/* no namespaces for us here (a container?), or no slirp4netns */
			vmm_net *u = net_new(o);
			u->mode = VMM_NET_USER;
			u->notice =
			    xasprintf("the VM's network cannot be set up (%s): the VM is on "
				      "the user-mode network, which the host cannot reach "
				      "by address (use --publish)",
				      e->msg);
			vmm_net_free(n);
			n = u;
			rc = 0;
		} else if (rc < 0 && err) {
			vmm_error_free(*err);
			*err = steal_ptr(e);
		}
	}
	if (rc < 0) {
		vmm_net_free(n);
		return -1;
	}
	*out = n;
	return 0;
}

/*
 * Teardown waits for nothing: once the descriptors are closed and QEMU and
 * slirp4netns are gone, the kernel destroys the namespace with every device
 * in it, the host's end of the veth pair included, in one batch.
 */
void vmm_net_free(vmm_net *n)
{
	if (!n)
		return;
	vmm_dhcp_stop(n->dhcp);
	if (n->helper > 0) {
		kill(n->helper, SIGKILL);
		waitpid(n->helper, NULL, 0);
	}
	if (n->helper_sock >= 0)
		close(n->helper_sock);
	if (n->slirp_ready >= 0)
		close(n->slirp_ready);
	if (n->slirp_err >= 0)
		close(n->slirp_err);
	if (n->slirp_api[0])
		unlink(n->slirp_api);
	if (n->slirp_exit >= 0)
		close(n->slirp_exit); /* slirp4netns exits when this closes... */
	if (n->slirp > 0) {
		kill(n->slirp, SIGKILL); /* ...but need not tidy up */
		waitpid(n->slirp, NULL, WNOHANG);
	}
	/* a macvtap lives in the host's namespace: ours to delete */
	if (n->mode == VMM_NET_BRIDGED && n->delete_host_if && n->nl_host) {
		int idx = vmm_nl_ifindex(n->nl_host, n->host_if, NULL);
		if (idx > 0)
			vmm_nl_link_delete(n->nl_host, idx, NULL);
	}
	if (n->tap >= 0)
		close(n->tap);
	if (n->dhcp_sock >= 0)
		close(n->dhcp_sock);
	if (n->nsfd >= 0)
		close(n->nsfd);
	if (n->usernsfd >= 0)
		close(n->usernsfd);
	vmm_nl_free(n->nl_ns);
	vmm_nl_free(n->nl_host);
	free(n->notice);
	free(n);
}

vmm_net_mode vmm_net_get_mode(const vmm_net *n)
{
	return n->mode;
}

int vmm_net_take_tap(vmm_net *n)
{
	int fd = n->tap;
	n->tap = -1;
	return fd;
}

const char *vmm_net_address(const vmm_net *n)
{
	return n->mode == VMM_NET_DEFAULT ? n->address : NULL;
}

const char *vmm_net_notice(const vmm_net *n)
{
	return n->notice;
}
