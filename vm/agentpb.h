/*
 * agentpb.h — the protobuf messages of Tart's guest agent
 * (tart-guest-agent's proto/rpc/agent.proto), encoded and decoded by hand:
 * the proto has seven small messages, not worth a code generator.
 *
 * Encoders append to a vmm_pb_buf (caller frees .p).  Decoders take a
 * message the agent sent (outside input), never read outside it, skip
 * unknown fields as protobuf requires, and return -1 for malformed wire
 * data.  Decoded byte fields point into the message.
 */
#ifndef VMM_VM_AGENTPB_H
#define VMM_VM_AGENTPB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct vmm_pb_buf {
	uint8_t *p; /* owned */
	size_t len, cap;
} vmm_pb_buf;

/* ExecRequest.command (field 1): Command{name, args, interactive, tty, terminal_size}. */
typedef struct vmm_pb_command {
	const char *name;
	const char *const *args;
	size_t nargs;
	bool interactive, tty;
	bool has_size;
	uint32_t rows, cols;
} vmm_pb_command;

void vmm_pb_exec_command(vmm_pb_buf *b, const vmm_pb_command *c);
/* ExecRequest.standard_input (field 2); len 0 means EOF. */
void vmm_pb_exec_stdin(vmm_pb_buf *b, const void *data, size_t len);
/* ExecRequest.terminal_resize (field 3). */
void vmm_pb_exec_resize(vmm_pb_buf *b, uint32_t rows, uint32_t cols);

typedef enum {
	VMM_PB_EXEC_NONE, /* no known field: ignore it */
	VMM_PB_EXEC_EXIT,
	VMM_PB_EXEC_STDOUT,
	VMM_PB_EXEC_STDERR,
} vmm_pb_exec_kind;

typedef struct vmm_pb_exec_response {
	vmm_pb_exec_kind kind; /* the oneof's last field wins, as protobuf says */
	int32_t code;	       /* EXIT */
	const uint8_t *data;   /* STDOUT/STDERR: borrowed from the message */
	size_t len;
} vmm_pb_exec_response;

int vmm_pb_exec_response_parse(const uint8_t *msg, size_t len, vmm_pb_exec_response *out);

/* ResolveIPResponse{ip}: *ip (caller frees) is "" when absent. */
int vmm_pb_resolve_ip_response_parse(const uint8_t *msg, size_t len, char **ip);

#endif
