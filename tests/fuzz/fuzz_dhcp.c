/* DHCP requests from a guest: answer or ignore anything, never read or write out of bounds. */
#include <arpa/inet.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "vm/dhcp.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	vmm_dhcp_lease l = {.prefix = 24, .lease_seconds = 3600};
	/* the MAC the fuzzer's inputs must match to get past the first check */
	if (size >= 34)
		memcpy(l.mac, data + 28, 6);
	inet_pton(AF_INET, "10.0.2.15", &l.address);
	inet_pton(AF_INET, "10.0.2.2", &l.router);
	inet_pton(AF_INET, "10.0.2.3", &l.dns);
	uint8_t out[VMM_DHCP_REPLY_MAX];
	struct in_addr to;
	vmm_dhcp_reply(&l, data, size, out, &to);
	return 0;
}
