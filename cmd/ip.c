#include "cmd/cmd.h"
#include "common/util.h"
#include "vm/agent.h"
#include "vm/run.h"

#include <stdio.h>
#include <string.h>

typedef struct ip_args {
	vmm_opt_num wait;
	const char *resolver;
} ip_args;

static const vmm_opt opts[] = {
    {VMM_INT(ip_args, wait, "wait", "SECONDS", 0, 86400,
	     "Wait this long for the guest to get an address (default 0)")},
    {VMM_STRING(ip_args, resolver, "resolver", "dhcp|arp|agent",
		"dhcp and arp: the address vmm assigned (default network) or the host's ARP "
		"table's (bridged); agent: the one Tart's guest agent reports")},
    {0},
};

static const vmm_cmd_spec spec = {"ip", "NAME [--wait SECONDS]",
				  "Print the IPv4 address the host reaches a running VM at", opts};

int cmd_ip(int argc, char **argv)
{
	ip_args o = {0};
	VMM_ARGS(a, spec, argc, argv, &o);
	const char *r = o.resolver;
	bool agent = r && strcmp(r, "agent") == 0;
	if (r && strcmp(r, "dhcp") != 0 && strcmp(r, "arp") != 0 && !agent)
		return vmm_usage_error(&spec, "--resolver: \"%s\" is not dhcp, arp or agent", r);
	cleanup_vmm_error vmm_error *err = NULL;
	cleanup_free char *ip = NULL;
	int rc = agent ? vmm_agent_resolve_ip(cmd_home(), a.pos[0], (double)o.wait.value, &ip, &err)
		       : vmm_vm_ip(cmd_home(), a.pos[0], (double)o.wait.value, &ip, &err);
	if (rc < 0)
		return vmm_fail(err);
	printf("%s\n", ip);
	return 0;
}
