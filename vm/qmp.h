/*
 * qmp.h — a small QMP (QEMU Machine Protocol) client over a unix socket.
 *
 * QMP is line-delimited JSON: QEMU greets with {"QMP": {...}}, the client
 * sends {"execute": cmd, "arguments": {...}} and reads until the matching
 * {"return": ...} or {"error": ...}; asynchronous {"event": ...} lines may
 * come in between and are queued for vmm_qmp_next_event().  File
 * descriptors travel with SCM_RIGHTS alongside a `getfd` command.
 *
 * Nothing outside vm/ speaks QMP.  A vmm_qmp is opaque; free it with
 * vmm_qmp_free(), which closes the socket.  Every wait is bounded by the
 * handle's timeout (vmm_qmp_set_timeout), so a wedged QEMU is an error, not
 * a hang.
 */
#ifndef VMM_VM_QMP_H
#define VMM_VM_QMP_H

#include <jansson.h>
#include <stdbool.h>

#include "common/err.h"

typedef struct vmm_qmp vmm_qmp;

/*
 * Take ownership of a connected socket `fd`, read the greeting and leave
 * capability negotiation done (qmp_capabilities).  On failure fd is closed.
 */
int vmm_qmp_open_fd(vmm_qmp **out, int fd, double timeout, vmm_error **err);

/*
 * Connect to the socket `name` inside directory `dir`.  Unix socket paths
 * are limited to 108 bytes, so the connection goes through
 * /proc/self/fd/<dirfd>/<name>, which is short whatever `dir` is.
 */
int vmm_qmp_connect(vmm_qmp **out, const char *dir, const char *name, double timeout,
		    vmm_error **err);
void vmm_qmp_free(vmm_qmp *q);

/* Seconds each read may wait (default 30). */
void vmm_qmp_set_timeout(vmm_qmp *q, double seconds);
/* The socket, for poll(): readable means events (or EOF) are waiting. */
int vmm_qmp_fd(const vmm_qmp *q);
/* QEMU's version from the greeting, "7.2.22" (borrowed). */
const char *vmm_qmp_version(const vmm_qmp *q);
/* The package string from the greeting, e.g. "Debian 1:7.2+dfsg-7" (borrowed; may be ""). */
const char *vmm_qmp_package(const vmm_qmp *q);

/*
 * Run `cmd` with `args` (stolen; may be NULL) and wait for its answer.
 * *ret (if ret is non-NULL) gets the "return" value (caller decrefs).  A
 * QMP error becomes a vmm_error "<cmd>: <desc>".
 */
int vmm_qmp_execute(vmm_qmp *q, const char *cmd, json_t *args, json_t **ret, vmm_error **err);

/* Like vmm_qmp_execute, and pass `fd` with the message (SCM_RIGHTS); for getfd/add-fd. */
int vmm_qmp_execute_fd(vmm_qmp *q, const char *cmd, json_t *args, int fd, json_t **ret,
		       vmm_error **err);

/*
 * Read whatever is waiting on the socket without blocking and queue its
 * events.  Returns 0, or -1 when QEMU closed the connection (VMM_ENOTRUNNING).
 */
int vmm_qmp_pump(vmm_qmp *q, vmm_error **err);
/* Pop the oldest queued event ({"event": name, "data": ...}; caller decrefs), or NULL. */
json_t *vmm_qmp_next_event(vmm_qmp *q);

/* Parse one line QEMU sent; exposed for tests and the fuzz target. */
int vmm_qmp_parse_line(const char *line, size_t len, json_t **out, vmm_error **err);

static inline void cleanup_vmm_qmp_fn(vmm_qmp **q)
{
	vmm_qmp_free(*q);
}
#define cleanup_vmm_qmp __attribute__((cleanup(cleanup_vmm_qmp_fn)))

#endif
