/*
 * What Tart's guest agent sends back, through control.sock: gRPC message
 * framing cut anywhere, then each message as an ExecResponse and a
 * ResolveIPResponse.  Never read outside the input, never crash or leak.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "vm/agentpb.h"
#include "vm/grpc.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void on_message(void *ctx, const uint8_t *msg, size_t len)
{
	(void)ctx;
	vmm_pb_exec_response r;
	if (vmm_pb_exec_response_parse(msg, len, &r) == 0 &&
	    (r.kind == VMM_PB_EXEC_STDOUT || r.kind == VMM_PB_EXEC_STDERR) && r.len)
		(void)*(volatile const uint8_t *)(r.data + r.len - 1); /* in bounds for ASan */
	char *ip = NULL;
	if (vmm_pb_resolve_ip_response_parse(msg, len, &ip) == 0)
		free(ip);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* the first byte picks where DATA frames split the body */
	size_t step = size ? (size_t)data[0] % 17 + 1 : 1;
	vmm_grpc_frames f = {0};
	const char *why = NULL;
	for (size_t off = size ? 1 : 0; off < size; off += step) {
		size_t n = size - off < step ? size - off : step;
		if (vmm_grpc_frames_feed(&f, data + off, n, on_message, NULL, &why) < 0)
			break;
	}
	vmm_grpc_frames_free(&f);
	/* and the whole input as one message */
	on_message(NULL, data, size);
	return 0;
}
