#include "common/err.h"
#include "common/util.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int set_va(vmm_error **err, int code, const char *suffix, const char *fmt, va_list ap)
{
	if (!err)
		return -1;
	char *msg = xvasprintf(fmt, ap);
	if (suffix) {
		char *full = xasprintf("%s: %s", msg, suffix);
		free(msg);
		msg = full;
	}
	vmm_error *e = xmalloc(sizeof(*e));
	e->code = code;
	e->msg = msg;
	vmm_error_free(*err);
	*err = e;
	return -1;
}

int vmm_error_set(vmm_error **err, int code, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	set_va(err, code, NULL, fmt, ap);
	va_end(ap);
	return -1;
}

int vmm_error_errno(vmm_error **err, int errnum, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	set_va(err, errnum > 0 ? errnum : VMM_EGENERIC, vmm_strerror(errnum), fmt, ap);
	va_end(ap);
	return -1;
}

int vmm_error_wrap(vmm_error **err, const char *fmt, ...)
{
	if (!err || !*err)
		return -1;
	va_list ap;
	va_start(ap, fmt);
	char *prefix = xvasprintf(fmt, ap);
	va_end(ap);
	char *msg = xasprintf("%s: %s", prefix, (*err)->msg);
	free(prefix);
	free((*err)->msg);
	(*err)->msg = msg;
	return -1;
}

void vmm_error_free(vmm_error *e)
{
	if (!e)
		return;
	free(e->msg);
	free(e);
}

const char *vmm_strerror(int errnum)
{
	switch (errnum) {
	case ENOSPC:
		return "no space left on the device; free some space (vmm prune) and try again";
	case EDQUOT:
		return "disk quota exceeded";
	case EACCES:
	case EPERM:
		return "permission denied";
	case EROFS:
		return "the file system is read-only";
	case ENOENT:
		return "no such file or directory";
	default:
		return strerror(errnum);
	}
}

int vmm_error_exit_code(const vmm_error *e)
{
	if (!e)
		return 0;
	switch (e->code) {
	case VMM_ENOTFOUND:
	case VMM_ENOTRUNNING:
	case VMM_EALREADYRUNNING:
		return 2;
	case VMM_EUSAGE:
		return 64;
	default:
		return 1;
	}
}

int vmm_error_code(const vmm_error *e)
{
	return e ? e->code : 0;
}

int vmm_error_not_found(vmm_error **err, const char *name)
{
	return vmm_error_set(err, VMM_ENOTFOUND, "the specified VM \"%s\" does not exist", name);
}

int vmm_error_running(vmm_error **err, const char *name)
{
	return vmm_error_set(err, VMM_ERUNNING, "VM \"%s\" is running", name);
}

void vmm_error_vprint(const char *fmt, va_list ap)
{
	fputs("vmm: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
}

void vmm_error_print(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vmm_error_vprint(fmt, ap);
	va_end(ap);
}

void vmm_fatal(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vmm_error_vprint(fmt, ap);
	va_end(ap);
	abort();
}
