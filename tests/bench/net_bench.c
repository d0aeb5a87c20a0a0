/*
 * net_bench RUNS: set up and tear down a VM's default network (vm/net.h)
 * RUNS times, as `vmm run` does around QEMU, and print one line per run:
 * "<setup seconds> <teardown seconds>", where teardown lasts until the
 * host's end of the VM's network is gone (the kernel removes it once the
 * namespace's last descriptor closes).  Run it inside a network namespace.
 */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "common/util.h"
#include "vm/net.h"
#include "vm/netlink.h"

/* Until no interface but lo and those there before is left. */
static void wait_clean(vmm_nl *nl, const char *name)
{
	for (int i = 0; i < 100000; i++) {
		if (vmm_nl_ifindex(nl, name, NULL) == 0)
			return;
		usleep(200);
	}
}

int main(int argc, char **argv)
{
	int runs = argc > 1 ? atoi(argv[1]) : 11;
	vmm_nl *nl = NULL;
	vmm_error *err = NULL;
	if (vmm_nl_open(&nl, &err) < 0) {
		fprintf(stderr, "net_bench: %s\n", err->msg);
		return 1;
	}
	for (int i = 0; i < runs; i++) {
		vmm_net_opts o = {.mac = "52:54:00:12:34:56"};
		vmm_net *n = NULL;
		double t0 = vmm_now();
		if (vmm_net_setup(&n, &o, &err) < 0) {
			fprintf(stderr, "net_bench: %s\n", err->msg);
			return 1;
		}
		if (vmm_net_get_mode(n) != VMM_NET_DEFAULT) {
			fprintf(stderr, "net_bench: no default network: %s\n", vmm_net_notice(n));
			return 1;
		}
		double t1 = vmm_now();
		/* the host's end is named after the subnet: vmm + its address in hex */
		char name[16];
		struct in_addr a;
		inet_pton(AF_INET, vmm_net_address(n), &a);
		snprintf(name, sizeof(name), "vmm%08x", ntohl(a.s_addr) - 2);
		vmm_net_free(n);
		double t2 = vmm_now();
		wait_clean(nl, name);
		double t3 = vmm_now();
		printf("%.6f %.6f %.6f\n", t1 - t0, t2 - t1, t3 - t1);
		fflush(stdout);
	}
	vmm_nl_free(nl);
	return 0;
}
