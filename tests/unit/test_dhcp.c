/* vm/dhcp.c: the answers of the default network's DHCP server, request by request. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <arpa/inet.h>
#include <string.h>

#include "common/util.h"
#include "vm/dhcp.h"

static const uint8_t MAC[6] = {0x7a, 0x00, 0x00, 0x00, 0x00, 0x01};

static vmm_dhcp_lease lease(void)
{
	vmm_dhcp_lease l = {.prefix = 24, .lease_seconds = 86400};
	memcpy(l.mac, MAC, 6);
	inet_pton(AF_INET, "10.0.2.15", &l.address);
	inet_pton(AF_INET, "10.0.2.2", &l.router);
	inet_pton(AF_INET, "10.0.2.3", &l.dns);
	return l;
}

/* A client's message: type, then optional requested address, server id, ciaddr. */
static size_t request(uint8_t *p, int type, const char *requested, const char *server,
		      const char *ciaddr, const uint8_t *mac)
{
	memset(p, 0, 548);
	p[0] = 1;
	p[1] = 1;
	p[2] = 6;
	memcpy(p + 4, "\xde\xad\xbe\xef", 4);
	memcpy(p + 28, mac, 6);
	if (ciaddr)
		inet_pton(AF_INET, ciaddr, p + 12);
	memcpy(p + 236, "\x63\x82\x53\x63", 4);
	size_t i = 240;
	p[i++] = 53;
	p[i++] = 1;
	p[i++] = (uint8_t)type;
	if (requested) {
		p[i++] = 50;
		p[i++] = 4;
		inet_pton(AF_INET, requested, p + i);
		i += 4;
	}
	if (server) {
		p[i++] = 54;
		p[i++] = 4;
		inet_pton(AF_INET, server, p + i);
		i += 4;
	}
	p[i++] = 255;
	return i;
}

/* The value of option `code` in a reply, or NULL. */
static const uint8_t *option(const uint8_t *r, size_t len, uint8_t code, uint8_t *n)
{
	for (size_t i = 240; i + 1 < len && r[i] != 255;) {
		if (r[i] == 0) {
			i++;
			continue;
		}
		if (r[i] == code) {
			*n = r[i + 1];
			return r + i + 2;
		}
		i += 2u + r[i + 1];
	}
	return NULL;
}

static char *addr_at(const uint8_t *p)
{
	static char s[INET_ADDRSTRLEN];
	inet_ntop(AF_INET, p, s, sizeof(s));
	return s;
}

static void test_dhcp_reply__discover_gets_offer(void **state)
{
	(void)state;
	vmm_dhcp_lease l = lease();
	uint8_t req[548], r[VMM_DHCP_REPLY_MAX];
	struct in_addr to;
	size_t n = vmm_dhcp_reply(&l, req, request(req, 1, NULL, NULL, NULL, MAC), r, &to);
	assert_true(n >= 300);
	assert_int_equal(r[0], 2);
	assert_memory_equal(r + 4, "\xde\xad\xbe\xef", 4);
	assert_string_equal(addr_at(r + 16), "10.0.2.15");
	uint8_t len;
	const uint8_t *v = option(r, n, 53, &len);
	assert_non_null(v);
	assert_int_equal(v[0], 2); /* OFFER */
	assert_string_equal(addr_at(option(r, n, 54, &len)), "10.0.2.2");
	assert_string_equal(addr_at(option(r, n, 1, &len)), "255.255.255.0");
	assert_string_equal(addr_at(option(r, n, 3, &len)), "10.0.2.2");
	assert_string_equal(addr_at(option(r, n, 6, &len)), "10.0.2.3");
	assert_string_equal(addr_at(option(r, n, 28, &len)), "10.0.2.255");
	v = option(r, n, 51, &len);
	assert_int_equal(len, 4);
	assert_int_equal(v[0] << 24 | v[1] << 16 | v[2] << 8 | v[3], 86400);
	assert_int_equal(to.s_addr, htonl(INADDR_BROADCAST));
}

static void test_dhcp_reply__request(void **state)
{
	(void)state;
	vmm_dhcp_lease l = lease();
	uint8_t req[548], r[VMM_DHCP_REPLY_MAX], len;
	struct in_addr to;
	struct {
		const char *requested, *server, *ciaddr;
		int want; /* 5 ACK, 6 NAK, 0 silence */
		const char *to;
	} cases[] = {
	    {"10.0.2.15", "10.0.2.2", NULL, 5, "255.255.255.255"}, /* selecting */
	    {"10.0.2.16", "10.0.2.2", NULL, 6, "255.255.255.255"}, /* another address */
	    {"10.0.2.15", "10.0.9.9", NULL, 0, NULL},		   /* another server's offer */
	    {NULL, NULL, "10.0.2.15", 5, "10.0.2.15"},		   /* renewing: unicast */
	    {"10.0.2.15", NULL, NULL, 5, "255.255.255.255"},	   /* init-reboot */
	    {"192.168.1.7", NULL, NULL, 6, "255.255.255.255"},	   /* a lease from elsewhere */
	};
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		size_t q =
		    request(req, 3, cases[i].requested, cases[i].server, cases[i].ciaddr, MAC);
		size_t n = vmm_dhcp_reply(&l, req, q, r, &to);
		if (!cases[i].want) {
			assert_int_equal(n, 0);
			continue;
		}
		assert_true(n > 0);
		assert_int_equal(option(r, n, 53, &len)[0], cases[i].want);
		assert_string_equal(addr_at((uint8_t *)&to), cases[i].to);
		if (cases[i].want == 6) {
			assert_string_equal(addr_at(r + 16), "0.0.0.0");
			assert_null(option(r, n, 3, &len));
		}
	}
}

static void test_dhcp_reply__ignored(void **state)
{
	(void)state;
	vmm_dhcp_lease l = lease();
	uint8_t req[548], r[VMM_DHCP_REPLY_MAX];
	struct in_addr to;
	const uint8_t other[6] = {0x52, 0x54, 0, 1, 2, 3};
	/* another MAC, a release, a decline */
	assert_int_equal(vmm_dhcp_reply(&l, req, request(req, 1, NULL, NULL, NULL, other), r, &to),
			 0);
	assert_int_equal(
	    vmm_dhcp_reply(&l, req, request(req, 7, NULL, NULL, "10.0.2.15", MAC), r, &to), 0);
	assert_int_equal(
	    vmm_dhcp_reply(&l, req, request(req, 4, "10.0.2.15", NULL, NULL, MAC), r, &to), 0);
	/* truncated, a reply instead of a request, a wrong cookie, an option past the end */
	size_t q = request(req, 1, NULL, NULL, NULL, MAC);
	assert_int_equal(vmm_dhcp_reply(&l, req, 239, r, &to), 0);
	req[0] = 2;
	assert_int_equal(vmm_dhcp_reply(&l, req, q, r, &to), 0);
	req[0] = 1;
	req[236] = 0;
	assert_int_equal(vmm_dhcp_reply(&l, req, q, r, &to), 0);
	req[236] = 0x63;
	req[q - 1] = 61; /* client id, its length byte beyond the message */
	assert_int_equal(vmm_dhcp_reply(&l, req, q, r, &to), 0);
	/* no message type at all */
	q = request(req, 1, NULL, NULL, NULL, MAC);
	req[240] = 0;
	req[241] = 0;
	req[242] = 0;
	assert_int_equal(vmm_dhcp_reply(&l, req, q, r, &to), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_dhcp_reply__discover_gets_offer),
	    cmocka_unit_test(test_dhcp_reply__request),
	    cmocka_unit_test(test_dhcp_reply__ignored),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
