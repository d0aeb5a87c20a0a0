/*
 * grpc.h — one gRPC call over plain HTTP/2 (libnghttp2) on a connected
 * stream socket: what `vmm exec` and `vmm ip --resolver agent` need to talk
 * to Tart's guest agent through control.sock.
 *
 * The caller drives it from its own poll loop: poll vmm_grpc_fd() for
 * POLLIN (and POLLOUT while vmm_grpc_want_write()), then call
 * vmm_grpc_io().  Each complete response message goes to the on_message
 * callback; vmm_grpc_done() tells when the call is over and its status.
 *
 * The gRPC message framing (a compressed flag, a 4-byte big-endian length,
 * the message) is reassembled by vmm_grpc_frames_feed(), which sees only
 * what the peer sent and is fuzzed on its own.
 */
#ifndef VMM_VM_GRPC_H
#define VMM_VM_GRPC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

/* The largest response message accepted (the agent sends 4 KiB chunks). */
#define VMM_GRPC_MAX_MESSAGE (16u << 20)

typedef void (*vmm_grpc_message_fn)(void *ctx, const uint8_t *msg, size_t len);

/* Reassembly of length-prefixed messages from DATA frames of any size. */
typedef struct vmm_grpc_frames {
	uint8_t *buf; /* owned */
	size_t len, cap;
} vmm_grpc_frames;

/*
 * Add `n` bytes of a response body; call fn for each complete message.
 * -1 (with *why static) for a compressed message (none was negotiated) or
 * one larger than VMM_GRPC_MAX_MESSAGE.
 */
int vmm_grpc_frames_feed(vmm_grpc_frames *f, const uint8_t *p, size_t n, vmm_grpc_message_fn fn,
			 void *ctx, const char **why);
void vmm_grpc_frames_free(vmm_grpc_frames *f);

typedef struct vmm_grpc vmm_grpc;

/*
 * Start a call of `path` ("/Agent/Exec") on socket `fd` (the call owns it
 * from now on; it is made non-blocking).  timeout_ms > 0 sends a
 * grpc-timeout.  Request messages follow with vmm_grpc_send.
 */
int vmm_grpc_start(vmm_grpc **out, int fd, const char *path, int timeout_ms,
		   vmm_grpc_message_fn on_message, void *ctx, vmm_error **err);
void vmm_grpc_free(vmm_grpc *g);

/* Queue one request message; with `last`, the request stream ends after it. */
void vmm_grpc_send(vmm_grpc *g, const uint8_t *msg, size_t len, bool last);
/* Bytes queued and not yet sent (to stop reading input while the peer is slow). */
size_t vmm_grpc_pending(const vmm_grpc *g);

int vmm_grpc_fd(const vmm_grpc *g);
bool vmm_grpc_want_write(const vmm_grpc *g);
/* Read what is there, then send what can be sent.  -1: the connection failed. */
int vmm_grpc_io(vmm_grpc *g, vmm_error **err);

/*
 * Is the call over?  Then *status is its grpc-status (-1 if the peer sent
 * none) and *message its grpc-message (borrowed, may be "").
 */
bool vmm_grpc_done(const vmm_grpc *g, int *status, const char **message);
/* Did the peer answer at all (an HTTP/2 SETTINGS frame)? */
bool vmm_grpc_heard(const vmm_grpc *g);

#endif
