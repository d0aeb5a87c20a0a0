/*
 * agent.h — Tart's guest agent (github.com/cirruslabs/tart-guest-agent):
 * `vmm exec` and `vmm ip --resolver agent`, and the forwarder `vmm run`
 * keeps for them.
 *
 * As with Tart, `vmm run` listens on <bundle>/control.sock and forwards
 * each connection byte for byte to the guest's vsock port 8080, where the
 * agent serves gRPC over plain HTTP/2 (service `Agent`, no package:
 * /Agent/Exec, a bidirectional stream, and /Agent/ResolveIP).  The clients
 * here speak that protocol on control.sock (vm/grpc.h, vm/agentpb.h).
 *
 * The vsock device needs the host's /dev/vhost-vsock (vm/qemu.h); without
 * it there is no control.sock and `exec` says the agent cannot be reached,
 * as Tart does.  VMM_AGENT_FORWARD=<unix socket path> makes `vmm run`
 * forward control.sock there instead of to the guest, for an agent reached
 * another way (the tests run a real gRPC agent on the host through it).
 *
 * vm/ never prints: exec's output goes to the descriptors given.
 */
#ifndef VMM_VM_AGENT_H
#define VMM_VM_AGENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "vm/home.h"

#define VMM_AGENT_SOCKET "control.sock"
#define VMM_AGENT_VSOCK_PORT 8080

typedef struct vmm_agent_fwd vmm_agent_fwd;

/*
 * Listen on control.sock in the directory `dirfd` (O_PATH is enough) and
 * forward its connections, from a thread of its own, to vsock (cid, 8080)
 * or to $VMM_AGENT_FORWARD.  With neither (cid 0, no variable) *out is
 * NULL and nothing listens.
 */
int vmm_agent_fwd_start(vmm_agent_fwd **out, int dirfd, uint32_t cid, vmm_error **err);
/* Stop forwarding, close every connection, remove control.sock.  NULL is a no-op. */
void vmm_agent_fwd_stop(vmm_agent_fwd *f);

typedef struct vmm_agent_exec_opts {
	const char *const *argv; /* borrowed: the command and its arguments (argc >= 1) */
	size_t argc;
	bool interactive; /* -i: send in_fd to the command until EOF */
	bool tty; /* -t: a pseudo-terminal in the guest, sized as term_fd, resized on SIGWINCH */
	int in_fd, out_fd, err_fd;
	int term_fd; /* the terminal whose size is sent with -t; -1 for none (80x24) */
} vmm_agent_exec_opts;

/*
 * Run a command in running VM `name` through its agent; *exit_code is the
 * command's.  A VM that is not running is VMM_ENOTRUNNING (`VM "x" is not
 * running`); an agent that cannot be reached is Tart's "Failed to connect
 * to the VM using its control socket: ..., is the Tart Guest Agent running?".
 */
int vmm_agent_exec(const vmm_home *h, const char *name, const vmm_agent_exec_opts *o,
		   int *exit_code, vmm_error **err);

/*
 * The address the agent reports (ResolveIP), asking once a second for up to
 * `wait` seconds (at least once, each call with Tart's 1 s deadline).  On
 * failure, Tart's "no IP address found[, is your VM running?] (also make
 * sure that Guest agent for Tart is running inside of a VM)".  *ip is the
 * caller's.
 */
int vmm_agent_resolve_ip(const vmm_home *h, const char *name, double wait, char **ip,
			 vmm_error **err);

#endif
