#include "cmd/cmd.h"
#include "common/util.h"
#include "vm/run.h"

#include <stdio.h>
#include <string.h>

static const vmm_opt opts[] = {
    {"wait", 0, "SECONDS", "Wait this long for the guest to get an address (default 0)", false},
    {"resolver", 0, "dhcp|arp", "Accepted for Tart's sake: vmm reads the host's ARP table", false},
    {NULL, 0, NULL, NULL, false},
};

static const vmm_cmd_spec spec = {"ip",
				  "NAME [--wait SECONDS]",
				  "Print the IPv4 address of a VM on a bridge (--net-bridged)",
				  opts,
				  1,
				  1};

int cmd_ip(int argc, char **argv)
{
	cleanup_vmm_args vmm_args a;
	VMM_ARGS_PARSE(a, spec, argc, argv);
	uint64_t wait = 0;
	const char *w = vmm_args_get(&a, "wait");
	if (w && (vmm_parse_u64(w, &wait) < 0 || wait > 86400))
		return vmm_usage_error(&spec, "--wait: \"%s\" is not a number of seconds", w);
	const char *r = vmm_args_get(&a, "resolver");
	if (r && strcmp(r, "dhcp") != 0 && strcmp(r, "arp") != 0)
		return vmm_usage_error(&spec, "--resolver: \"%s\" is not dhcp or arp", r);
	cleanup_vmm_error vmm_error *err = NULL;
	cleanup_free char *ip = NULL;
	if (vmm_vm_ip(cmd_home(), a.pos[0], (double)wait, &ip, &err) < 0)
		return vmm_fail(err);
	printf("%s\n", ip);
	return 0;
}
