#include "vm/dhcp.h"
#include "common/util.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

/* RFC 2131 §2: the fixed part of a message, then the magic cookie and options */
#define OFF_OP 0
#define OFF_HTYPE 1
#define OFF_HLEN 2
#define OFF_XID 4
#define OFF_FLAGS 10
#define OFF_CIADDR 12
#define OFF_YIADDR 16
#define OFF_SIADDR 20
#define OFF_GIADDR 24
#define OFF_CHADDR 28
#define OFF_COOKIE 236
#define OFF_OPTIONS 240
#define COOKIE 0x63825363u

enum {
	OPT_PAD = 0,
	OPT_MASK = 1,
	OPT_ROUTER = 3,
	OPT_DNS = 6,
	OPT_BROADCAST = 28,
	OPT_REQUESTED = 50,
	OPT_LEASE = 51,
	OPT_TYPE = 53,
	OPT_SERVER = 54,
	OPT_T1 = 58,
	OPT_T2 = 59,
	OPT_END = 255,
};

enum {
	DISCOVER = 1,
	OFFER = 2,
	REQUEST = 3,
	DECLINE = 4,
	ACK = 5,
	NAK = 6,
	RELEASE = 7,
	INFORM = 8,
};

typedef struct request {
	int type;
	struct in_addr requested, server, ciaddr;
	bool has_requested, has_server;
} request;

static uint32_t get32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Walk the options (RFC 2132); false if they are malformed. */
static bool parse_options(const uint8_t *p, size_t len, request *r)
{
	size_t i = 0;
	while (i < len) {
		uint8_t code = p[i++];
		if (code == OPT_PAD)
			continue;
		if (code == OPT_END)
			return true;
		if (i >= len || i + 1 + p[i] > len)
			return false;
		uint8_t n = p[i++];
		const uint8_t *v = p + i;
		i += n;
		if (code == OPT_TYPE && n == 1)
			r->type = v[0];
		else if (code == OPT_REQUESTED && n == 4) {
			memcpy(&r->requested, v, 4);
			r->has_requested = true;
		} else if (code == OPT_SERVER && n == 4) {
			memcpy(&r->server, v, 4);
			r->has_server = true;
		}
	}
	return true; /* no end option: tolerated, as most servers do */
}

typedef struct builder {
	uint8_t *p;
	size_t len;
} builder;

static void put(builder *b, uint8_t code, const void *v, uint8_t n)
{
	b->p[b->len++] = code;
	b->p[b->len++] = n;
	memcpy(b->p + b->len, v, n);
	b->len += n;
}

static void put32(builder *b, uint8_t code, uint32_t host_order)
{
	uint32_t v = htonl(host_order);
	put(b, code, &v, 4);
}

static void put_addr(builder *b, uint8_t code, struct in_addr a)
{
	put(b, code, &a, 4);
}

size_t vmm_dhcp_reply(const vmm_dhcp_lease *l, const uint8_t *req, size_t len, uint8_t *out,
		      struct in_addr *to)
{
	if (len < OFF_OPTIONS || req[OFF_OP] != 1 || req[OFF_HTYPE] != 1 || req[OFF_HLEN] != 6 ||
	    get32(req + OFF_COOKIE) != COOKIE || memcmp(req + OFF_CHADDR, l->mac, 6) != 0)
		return 0;
	request r = {0};
	if (!parse_options(req + OFF_OPTIONS, len - OFF_OPTIONS, &r))
		return 0;
	memcpy(&r.ciaddr, req + OFF_CIADDR, 4);
	int type;
	switch (r.type) {
	case DISCOVER:
		type = OFFER;
		break;
	case REQUEST: {
		/* a request for another server's offer is not ours to answer */
		if (r.has_server && r.server.s_addr != l->router.s_addr)
			return 0;
		struct in_addr want = r.has_requested ? r.requested : r.ciaddr;
		type = want.s_addr == l->address.s_addr ? ACK : NAK;
		break;
	}
	case INFORM:
		type = ACK;
		break;
	default:
		return 0; /* DECLINE, RELEASE: nothing to say; a fixed lease stays */
	}

	memset(out, 0, VMM_DHCP_REPLY_MAX);
	out[OFF_OP] = 2;
	out[OFF_HTYPE] = 1;
	out[OFF_HLEN] = 6;
	memcpy(out + OFF_XID, req + OFF_XID, 4);
	memcpy(out + OFF_FLAGS, req + OFF_FLAGS, 2);
	memcpy(out + OFF_GIADDR, req + OFF_GIADDR, 4);
	memcpy(out + OFF_CHADDR, req + OFF_CHADDR, 16);
	if (r.type == INFORM)
		memcpy(out + OFF_CIADDR, req + OFF_CIADDR, 4);
	else if (type != NAK)
		memcpy(out + OFF_YIADDR, &l->address, 4);
	memcpy(out + OFF_SIADDR, &l->router, 4);
	uint32_t cookie = htonl(COOKIE);
	memcpy(out + OFF_COOKIE, &cookie, 4);

	builder b = {out, OFF_OPTIONS};
	uint8_t t = (uint8_t)type;
	put(&b, OPT_TYPE, &t, 1);
	put_addr(&b, OPT_SERVER, l->router);
	if (type != NAK) {
		uint32_t mask = l->prefix ? ~0u << (32 - l->prefix) : 0;
		struct in_addr bcast = {l->address.s_addr | htonl(~mask)};
		put32(&b, OPT_MASK, mask);
		put_addr(&b, OPT_ROUTER, l->router);
		put_addr(&b, OPT_DNS, l->dns);
		put_addr(&b, OPT_BROADCAST, bcast);
		if (r.type != INFORM) {
			put32(&b, OPT_LEASE, l->lease_seconds);
			put32(&b, OPT_T1, l->lease_seconds / 2);
			put32(&b, OPT_T2, l->lease_seconds / 8 * 7);
		}
	}
	out[b.len++] = OPT_END;
	if (b.len < 300)
		b.len = 300; /* the minimum BOOTP message some clients insist on */
	/* RFC 2131 §4.1: a client that has an address gets the answer there */
	to->s_addr = r.ciaddr.s_addr && type != NAK ? r.ciaddr.s_addr : htonl(INADDR_BROADCAST);
	return b.len;
}

/* --- the server ---------------------------------------------------------------- */

struct vmm_dhcp_server {
	int sock, stop;
	vmm_dhcp_lease lease;
	pthread_t thread;
};

static void *serve(void *arg)
{
	vmm_dhcp_server *s = arg;
	uint8_t req[1500], reply[VMM_DHCP_REPLY_MAX];
	for (;;) {
		struct pollfd p[2] = {{.fd = s->sock, .events = POLLIN},
				      {.fd = s->stop, .events = POLLIN}};
		if (poll(p, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		if (p[1].revents)
			break;
		ssize_t n = recv(s->sock, req, sizeof(req), MSG_DONTWAIT);
		if (n <= 0)
			continue;
		struct in_addr to;
		size_t len = vmm_dhcp_reply(&s->lease, req, (size_t)n, reply, &to);
		if (!len)
			continue;
		struct sockaddr_in dst = {
		    .sin_family = AF_INET, .sin_port = htons(68), .sin_addr = to};
		(void)!sendto(s->sock, reply, len, MSG_DONTWAIT, (struct sockaddr *)&dst,
			      sizeof(dst));
	}
	return NULL;
}

int vmm_dhcp_start(vmm_dhcp_server **out, int sock, const vmm_dhcp_lease *l, vmm_error **err)
{
	vmm_dhcp_server *s = xcalloc(1, sizeof(*s));
	s->sock = sock;
	s->lease = *l;
	s->stop = eventfd(0, EFD_CLOEXEC);
	if (s->stop < 0) {
		int e = errno;
		close(sock);
		free(s);
		return vmm_error_errno(err, e, "eventfd");
	}
	int rc = pthread_create(&s->thread, NULL, serve, s);
	if (rc != 0) {
		close(sock);
		close(s->stop);
		free(s);
		return vmm_error_errno(err, rc, "start the DHCP server");
	}
	*out = s;
	return 0;
}

void vmm_dhcp_stop(vmm_dhcp_server *s)
{
	if (!s)
		return;
	uint64_t one = 1;
	(void)!write(s->stop, &one, sizeof(one));
	pthread_join(s->thread, NULL);
	close(s->sock);
	close(s->stop);
	free(s);
}
