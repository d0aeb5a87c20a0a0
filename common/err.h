/*
 * err.h — the error value every vmm function reports through.
 *
 * A failing function returns a negative int and, when the caller passed a
 * non-NULL `vmm_error **err`, stores a freshly allocated vmm_error there
 * (replacing and freeing any previous one).  The caller owns it and frees it
 * with vmm_error_free().  Callers add context with vmm_error_wrap(), which
 * prefixes the message: "pull `a/b:c`: layer `sha256:…`: digest mismatch".
 * Only cmd/ prints errors, once, as "vmm: <message>", through
 * vmm_error_print().
 */
#ifndef VMM_COMMON_ERR_H
#define VMM_COMMON_ERR_H

#include <stdarg.h>

/* Codes above zero are errno values; these name vmm's own conditions. */
enum {
	VMM_EGENERIC = -1,     /* anything else; exit 1 */
	VMM_ENOTFOUND = -1000, /* a VM or object does not exist; exit 2 */
	VMM_ENOTRUNNING,       /* exit 2 */
	VMM_EALREADYRUNNING,   /* exit 2 */
	VMM_ERUNNING,	       /* the VM is running and must not be; exit 1 */
	VMM_EEXISTS,	       /* target already exists */
	VMM_ELOCKED,	       /* another process holds a lock */
	VMM_EAUTH,	       /* registry authentication failed */
	VMM_ETIMEOUT,
	VMM_EINVAL,	   /* bad input: arguments, JSON, manifests */
	VMM_EFORMAT,	   /* corrupt or hostile data: digests, streams */
	VMM_EUSAGE,	   /* command-line usage; exit 64 */
	VMM_EINCOMPATIBLE, /* state file does not fit this QEMU/config */
};

typedef struct vmm_error {
	int code;
	char *msg; /* owned */
} vmm_error;

/* Set *err (if err is non-NULL) to a new error; always returns -1. */
int vmm_error_set(vmm_error **err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Like vmm_error_set with code `errnum` and ": <sentence for errnum>" appended. */
int vmm_error_errno(vmm_error **err, int errnum, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Prefix the message of *err with "<fmt>: "; returns -1.  No-op if err or *err is NULL. */
int vmm_error_wrap(vmm_error **err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void vmm_error_free(vmm_error *e);
/* A sentence a user can act on for errno values like ENOSPC; else strerror(). */
const char *vmm_strerror(int errnum);
/* The process exit code for an error (Tart's: 2 for not-found/not-running, 64 usage, else 1). */
int vmm_error_exit_code(const vmm_error *e);
/* Returns e ? e->code : 0. */
int vmm_error_code(const vmm_error *e);

/* Tart's texts: `the specified VM "<name>" does not exist`, `VM "<name>" is running`. */
int vmm_error_not_found(vmm_error **err, const char *name);
int vmm_error_running(vmm_error **err, const char *name);

/* The one "vmm: <message>\n" printer on stderr, for cmd/. */
void vmm_error_print(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void vmm_error_vprint(const char *fmt, va_list ap) __attribute__((format(printf, 1, 0)));
/* What cannot be reported (out of memory, no randomness): print and abort. */
void vmm_fatal(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

static inline void cleanup_vmm_error_fn(vmm_error **e)
{
	vmm_error_free(*e);
}
#define cleanup_vmm_error __attribute__((cleanup(cleanup_vmm_error_fn)))

#endif
