/*
 * lazy.h — shared libraries loaded on first use.
 *
 * Linking libcurl, libarchive and libcrypto the usual way costs every vmm
 * command about 9 ms before main() (libcurl alone pulls in 35 libraries:
 * GnuTLS, Kerberos, LDAP, ICU ...), four times what a btrfs clone itself
 * takes.  Only registry, archive and hashing work needs them, so the vmm
 * binary is linked without them and each function vmm calls is a
 * trampoline that dlopen()s the library the first time one of its
 * functions runs and then jumps to the real symbol.  The prototypes come
 * from the libraries' own headers, so the compiler checks every trampoline
 * against them.
 *
 * Each library's trampolines sit next to the code that uses it:
 * registry/oci/libcurl.c, storage/libarchive.c, and libcrypto's in
 * common/lazy.c.  Entry points that can report an error call
 * vmm_lazy_load() first, so a missing library is an error message; a
 * trampoline that still cannot find its library or symbol (a broken
 * installation) dies like an allocation that fails.
 *
 * The variadic setters (curl_easy_setopt, curl_easy_getinfo,
 * curl_share_setopt) take exactly one argument after the option, a long, a
 * curl_off_t or a pointer: all passed in one integer register on the ABIs
 * vmm builds for (x86-64 SysV, AAPCS64), so it is forwarded as a pointer-
 * sized integer.
 */
#ifndef VMM_COMMON_LAZY_H
#define VMM_COMMON_LAZY_H

#include <stdarg.h>
#include <stdint.h>

#include "common/err.h"

#if !defined(__x86_64__) && !defined(__aarch64__)
#error "lazy.h forwards variadic arguments as the x86-64 and AArch64 ABIs pass them"
#endif

typedef struct vmm_lazy_lib {
	const char *soname;   /* from the build machine's library; "" if unknown */
	const char *fallback; /* Debian 12's */
	void *handle;	      /* set once loaded */
} vmm_lazy_lib;

/* dlopen() lib unless it is loaded: 0, or -1 with "cannot load <so>: <why>". */
int vmm_lazy_load(vmm_lazy_lib *lib, vmm_error **err);
/* The address of `name` in lib, loaded first if need be; dies if it cannot be had. */
void *vmm_lazy_sym(vmm_lazy_lib *lib, const char *name);

#define VMM_LAZY_REAL(lib, name)                                                                   \
	static __typeof__(&name) real_;                                                            \
	__typeof__(&name) fn_ = __atomic_load_n(&real_, __ATOMIC_ACQUIRE);                         \
	if (!fn_) {                                                                                \
		fn_ = (__typeof__(&name))vmm_lazy_sym(&lib, #name);                                \
		__atomic_store_n(&real_, fn_, __ATOMIC_RELEASE);                                   \
	}

#define LAZY(lib, ret, name, params, args)                                                         \
	ret name params                                                                            \
	{                                                                                          \
		VMM_LAZY_REAL(lib, name)                                                           \
		return fn_ args;                                                                   \
	}

#define LAZY_VOID(lib, name, params, args)                                                         \
	void name params                                                                           \
	{                                                                                          \
		VMM_LAZY_REAL(lib, name)                                                           \
		fn_ args;                                                                          \
	}

#define LAZY_VARIADIC(lib, ret, name, T1, T2)                                                      \
	ret name(T1 a, T2 b, ...)                                                                  \
	{                                                                                          \
		va_list ap;                                                                        \
		va_start(ap, b);                                                                   \
		uintptr_t arg = va_arg(ap, uintptr_t);                                             \
		va_end(ap);                                                                        \
		VMM_LAZY_REAL(lib, name)                                                           \
		return fn_(a, b, arg);                                                             \
	}

#endif
