/* vm/net.c without a network: --publish, CIDRs, and softnet's destination policy. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "vm/net.h"

static void test_net_publish__parse(void **state)
{
	(void)state;
	vmm_net_port p;
	assert_int_equal(vmm_net_parse_publish("udp:127.0.0.1:5353:53", &p, NULL), 0);
	assert_true(p.udp);
	assert_string_equal(p.addr, "127.0.0.1");
	assert_int_equal(p.host, 5353);
	assert_int_equal(p.guest, 53);
	assert_int_equal(vmm_net_parse_publish("8080:80", &p, NULL), 0);
	assert_false(p.udp);
	assert_string_equal(p.addr, "");
	const char *bad[] = {"", "80", "0:80", "80:0", "70000:80", "a:b", "999.1.1.1:1:2", "x:1:2"};
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		vmm_error *err = NULL;
		if (vmm_net_parse_publish(bad[i], &p, &err) == 0)
			fail_msg("\"%s\" accepted", bad[i]);
		assert_int_equal(err->code, VMM_EUSAGE);
		vmm_error_free(err);
	}
}

static void test_net_cidr__parse(void **state)
{
	(void)state;
	vmm_net_cidr c;
	assert_int_equal(vmm_net_parse_cidr("192.168.7.9/16", &c), 0);
	assert_int_equal(c.len, 16);
	assert_int_equal(ntohl(c.addr.s_addr), 0xc0a80000u); /* host bits cleared */
	assert_int_equal(vmm_net_parse_cidr("8.8.8.8", &c), 0);
	assert_int_equal(c.len, 32);
	assert_int_equal(vmm_net_parse_cidr("0.0.0.0/0", &c), 0);
	assert_int_equal(c.len, 0);
	assert_int_equal(vmm_net_parse_cidr("10.0.0.0/33", &c), -1);
	assert_int_equal(vmm_net_parse_cidr("10.0.0/8", &c), -1);
	assert_int_equal(vmm_net_parse_cidr("10.0.0.0/", &c), -1);
}

static char *blocked(const vmm_net_opts *o)
{
	char *out = NULL;
	vmm_error *err = NULL;
	if (vmm_net_blocked(o, &out, &err) < 0)
		fail_msg("%s", err->msg);
	return out;
}

static void test_net_blocked__policy(void **state)
{
	(void)state;
	setenv("VMM_NET_POOL", "10.250.0.0/16", 1);
	struct {
		vmm_net_opts o;
		const char *want;
	} cases[] = {
	    /* the default network: only the other VMs */
	    {{.mac = "x"}, "10.250.0.0-10.250.255.255"},
	    /* softnet: what is not globally routable, merged where ranges touch */
	    {{.softnet = true},
	     "0.0.0.0-0.255.255.255, 10.0.0.0-10.255.255.255, 100.64.0.0-100.127.255.255, "
	     "127.0.0.0-127.255.255.255, 169.254.0.0-169.254.255.255, 172.16.0.0-172.31.255.255, "
	     "192.0.0.0-192.0.0.255, 192.0.2.0-192.0.2.255, 192.168.0.0-192.168.255.255, "
	     "198.18.0.0-198.19.255.255, 198.51.100.0-198.51.100.255, 203.0.113.0-203.0.113.255, "
	     "224.0.0.0-255.255.255.255"},
	    /* a longer allowed prefix opens a hole in a shorter block... */
	    {{.softnet = true, .softnet_allow = "10.1.0.0/16,198.51.100.0/24"},
	     "0.0.0.0-0.255.255.255, 10.0.0.0-10.0.255.255, 10.2.0.0-10.255.255.255, "
	     "100.64.0.0-100.127.255.255, 127.0.0.0-127.255.255.255, 169.254.0.0-169.254.255.255, "
	     "172.16.0.0-172.31.255.255, 192.0.0.0-192.0.0.255, 192.0.2.0-192.0.2.255, "
	     "192.168.0.0-192.168.255.255, 198.18.0.0-198.19.255.255, 203.0.113.0-203.0.113.255, "
	     "224.0.0.0-255.255.255.255"},
	    /* ...and a longer block one in an allowed prefix; a tie goes to the block */
	    {{.softnet_allow = "8.0.0.0/8", .softnet_block = "8.8.8.8/32,9.9.9.0/24"},
	     "8.8.8.8-8.8.8.8, 9.9.9.0-9.9.9.255, 10.250.0.0-10.250.255.255"},
	    {{.softnet_allow = "9.9.9.0/24", .softnet_block = "9.9.9.0/24"},
	     "9.9.9.0-9.9.9.255, 10.250.0.0-10.250.255.255"},
	    /* --net-host: everything (the gateway is reached before this set is looked at) */
	    {{.host_only = true}, "0.0.0.0-255.255.255.255"},
	    /* allowing the VMs' own pool is a decision the user can make */
	    {{.softnet_allow = "10.250.0.0/16"}, NULL},
	};
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		char *got = blocked(&cases[i].o);
		if (!cases[i].want)
			assert_null(got);
		else if (!got || strcmp(got, cases[i].want) != 0)
			fail_msg("case %zu: got %s", i, got ? got : "(none)");
		free(got);
	}
	vmm_error *err = NULL;
	char *out = NULL;
	vmm_net_opts bad = {.softnet_block = "1.2.3.4/40"};
	assert_int_equal(vmm_net_blocked(&bad, &out, &err), -1);
	assert_string_equal(err->msg, "--net-softnet-block: \"1.2.3.4/40\" is not an IPv4 CIDR");
	vmm_error_free(err);
	err = NULL;
	setenv("VMM_NET_POOL", "10.0.0.0/31", 1);
	vmm_net_opts plain = {0};
	assert_int_equal(vmm_net_blocked(&plain, &out, &err), -1);
	assert_non_null(strstr(err->msg, "VMM_NET_POOL"));
	vmm_error_free(err);
	unsetenv("VMM_NET_POOL");
}

static void test_net_opts__check(void **state)
{
	(void)state;
	const char *pub[] = {"8080:80"};
	vmm_net_opts o = {.bridged = "br0", .publish = pub, .npublish = 1};
	vmm_error *err = NULL;
	assert_int_equal(vmm_net_check_opts(&o, &err), -1);
	assert_int_equal(err->code, VMM_EUSAGE);
	vmm_error_free(err);
	err = NULL;
	vmm_net_opts e = {.softnet = true, .softnet_expose = "2222:22,80"};
	assert_int_equal(vmm_net_check_opts(&e, &err), -1);
	assert_string_equal(err->msg,
			    "--net-softnet-expose: \"80\" is not EXTERNAL_PORT:INTERNAL_PORT");
	vmm_error_free(err);
	vmm_net_opts good = {.softnet = true,
			     .softnet_expose = "2222:22,8080:80",
			     .softnet_allow = "192.168.0.0/24",
			     .publish = pub,
			     .npublish = 1};
	assert_int_equal(vmm_net_check_opts(&good, NULL), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_net_publish__parse),
	    cmocka_unit_test(test_net_cidr__parse),
	    cmocka_unit_test(test_net_blocked__policy),
	    cmocka_unit_test(test_net_opts__check),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
