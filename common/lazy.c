/*
 * lazy.c — libcurl, libarchive and libcrypto loaded on first use.
 *
 * Linking them the usual way costs every vmm command about 9 ms before
 * main() (libcurl alone pulls in 35 libraries: GnuTLS, Kerberos, LDAP, ICU
 * ...), four times what a btrfs clone itself takes.  Only registry, archive
 * and hashing work needs them, so the vmm binary is linked without them
 * and each function vmm calls is a trampoline that dlopen()s the library
 * the first time one of its functions runs and then jumps to the real
 * symbol.  The prototypes come from the libraries' own headers, so the
 * compiler checks every trampoline against them.
 *
 * The variadic setters (curl_easy_setopt, curl_easy_getinfo,
 * curl_share_setopt) take exactly one argument after the option, a long, a
 * curl_off_t or a pointer: all passed in one integer register on the ABIs
 * vmm builds for (x86-64 SysV, AAPCS64), so it is forwarded as a pointer-
 * sized integer.
 */
#define CURL_DISABLE_TYPECHECK 1
#include <archive.h>
#include <archive_entry.h>
#include <curl/curl.h>
#include <dlfcn.h>
#include <openssl/evp.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#if !defined(__x86_64__) && !defined(__aarch64__)
#error "lazy.c forwards variadic arguments as the x86-64 and AArch64 ABIs pass them"
#endif

#ifndef VMM_SONAME_CURL
#define VMM_SONAME_CURL ""
#endif
#ifndef VMM_SONAME_ARCHIVE
#define VMM_SONAME_ARCHIVE ""
#endif
#ifndef VMM_SONAME_CRYPTO
#define VMM_SONAME_CRYPTO ""
#endif

typedef struct lazy_lib {
	const char *soname;   /* from the build machine's library; "" if unknown */
	const char *fallback; /* Debian 12's */
	void *handle;
} lazy_lib;

static lazy_lib curl_lib = {VMM_SONAME_CURL, "libcurl.so.4", NULL};
static lazy_lib archive_lib = {VMM_SONAME_ARCHIVE, "libarchive.so.13", NULL};
static lazy_lib crypto_lib = {VMM_SONAME_CRYPTO, "libcrypto.so.3", NULL};

static void *lazy_sym(lazy_lib *lib, const char *name)
{
	void *h = __atomic_load_n(&lib->handle, __ATOMIC_ACQUIRE);
	if (!h) {
		const char *so = lib->soname[0] ? lib->soname : lib->fallback;
		/* dlopen of a loaded library returns the same handle: a race is harmless */
		h = dlopen(so, RTLD_NOW | RTLD_LOCAL);
		if (!h) {
			fprintf(stderr, "vmm: cannot load %s: %s\n", so, dlerror());
			exit(1);
		}
		__atomic_store_n(&lib->handle, h, __ATOMIC_RELEASE);
	}
	void *fn = dlsym(h, name);
	if (!fn) {
		fprintf(stderr, "vmm: %s lacks %s\n", lib->soname, name);
		exit(1);
	}
	return fn;
}

#define REAL(lib, name)                                                                            \
	static __typeof__(&name) real_;                                                            \
	__typeof__(&name) fn_ = __atomic_load_n(&real_, __ATOMIC_ACQUIRE);                         \
	if (!fn_) {                                                                                \
		fn_ = (__typeof__(&name))lazy_sym(&lib, #name);                                    \
		__atomic_store_n(&real_, fn_, __ATOMIC_RELEASE);                                   \
	}

#define LAZY(lib, ret, name, params, args)                                                         \
	ret name params                                                                            \
	{                                                                                          \
		REAL(lib, name)                                                                    \
		return fn_ args;                                                                   \
	}

#define LAZY_VOID(lib, name, params, args)                                                         \
	void name params                                                                           \
	{                                                                                          \
		REAL(lib, name)                                                                    \
		fn_ args;                                                                          \
	}

#define LAZY_VARIADIC(lib, ret, name, T1, T2)                                                      \
	ret name(T1 a, T2 b, ...)                                                                  \
	{                                                                                          \
		va_list ap;                                                                        \
		va_start(ap, b);                                                                   \
		uintptr_t arg = va_arg(ap, uintptr_t);                                             \
		va_end(ap);                                                                        \
		REAL(lib, name)                                                                    \
		return fn_(a, b, arg);                                                             \
	}

/* libcurl */
LAZY(curl_lib, CURLcode, curl_global_init, (long flags), (flags))
LAZY(curl_lib, CURL *, curl_easy_init, (void), ())
LAZY_VARIADIC(curl_lib, CURLcode, curl_easy_setopt, CURL *, CURLoption)
LAZY_VARIADIC(curl_lib, CURLcode, curl_easy_getinfo, CURL *, CURLINFO)
LAZY(curl_lib, CURLcode, curl_easy_perform, (CURL * c), (c))
LAZY_VOID(curl_lib, curl_easy_reset, (CURL * c), (c))
LAZY_VOID(curl_lib, curl_easy_cleanup, (CURL * c), (c))
LAZY(curl_lib, const char *, curl_easy_strerror, (CURLcode code), (code))
LAZY(curl_lib, CURLHcode, curl_easy_header,
     (CURL * c, const char *name, size_t index, unsigned int origin, int request,
      struct curl_header **hout),
     (c, name, index, origin, request, hout))
LAZY(curl_lib, CURLSH *, curl_share_init, (void), ())
LAZY_VARIADIC(curl_lib, CURLSHcode, curl_share_setopt, CURLSH *, CURLSHoption)
LAZY(curl_lib, CURLSHcode, curl_share_cleanup, (CURLSH * s), (s))
LAZY(curl_lib, struct curl_slist *, curl_slist_append, (struct curl_slist * l, const char *s),
     (l, s))
LAZY_VOID(curl_lib, curl_slist_free_all, (struct curl_slist * l), (l))
LAZY_VOID(curl_lib, curl_free, (void *p), (p))
LAZY(curl_lib, CURLU *, curl_url, (void), ())
LAZY_VOID(curl_lib, curl_url_cleanup, (CURLU * u), (u))
LAZY(curl_lib, CURLUcode, curl_url_get,
     (CURLU * u, CURLUPart what, char **part, unsigned int flags), (u, what, part, flags))
LAZY(curl_lib, CURLUcode, curl_url_set,
     (CURLU * u, CURLUPart what, const char *part, unsigned int flags), (u, what, part, flags))

/* libarchive */
LAZY(archive_lib, struct archive_entry *, archive_entry_new, (void), ())
LAZY_VOID(archive_lib, archive_entry_free, (struct archive_entry * e), (e))
LAZY(archive_lib, __LA_MODE_T, archive_entry_filetype, (struct archive_entry * e), (e))
LAZY(archive_lib, const char *, archive_entry_hardlink, (struct archive_entry * e), (e))
LAZY(archive_lib, const char *, archive_entry_pathname, (struct archive_entry * e), (e))
LAZY(archive_lib, __LA_MODE_T, archive_entry_perm, (struct archive_entry * e), (e))
LAZY(archive_lib, la_int64_t, archive_entry_size, (struct archive_entry * e), (e))
LAZY(archive_lib, int, archive_entry_size_is_set, (struct archive_entry * e), (e))
LAZY(archive_lib, const char *, archive_entry_symlink, (struct archive_entry * e), (e))
LAZY_VOID(archive_lib, archive_entry_set_filetype, (struct archive_entry * e, unsigned int t),
	  (e, t))
LAZY_VOID(archive_lib, archive_entry_set_gid, (struct archive_entry * e, la_int64_t g), (e, g))
LAZY_VOID(archive_lib, archive_entry_set_uid, (struct archive_entry * e, la_int64_t u), (e, u))
LAZY_VOID(archive_lib, archive_entry_set_mtime, (struct archive_entry * e, time_t t, long ns),
	  (e, t, ns))
LAZY_VOID(archive_lib, archive_entry_set_pathname, (struct archive_entry * e, const char *p),
	  (e, p))
LAZY_VOID(archive_lib, archive_entry_set_perm, (struct archive_entry * e, __LA_MODE_T m), (e, m))
LAZY_VOID(archive_lib, archive_entry_set_size, (struct archive_entry * e, la_int64_t s), (e, s))
LAZY_VOID(archive_lib, archive_entry_sparse_add_entry,
	  (struct archive_entry * e, la_int64_t off, la_int64_t len), (e, off, len))
LAZY(archive_lib, int, archive_errno, (struct archive * a), (a))
LAZY(archive_lib, const char *, archive_error_string, (struct archive * a), (a))
LAZY(archive_lib, struct archive *, archive_read_new, (void), ())
LAZY(archive_lib, int, archive_read_support_filter_none, (struct archive * a), (a))
LAZY(archive_lib, int, archive_read_support_filter_zstd, (struct archive * a), (a))
LAZY(archive_lib, int, archive_read_support_format_tar, (struct archive * a), (a))
LAZY(archive_lib, int, archive_read_open_fd, (struct archive * a, int fd, size_t block),
     (a, fd, block))
LAZY(archive_lib, int, archive_read_open_memory, (struct archive * a, const void *b, size_t n),
     (a, b, n))
LAZY(archive_lib, int, archive_read_next_header, (struct archive * a, struct archive_entry **e),
     (a, e))
LAZY(archive_lib, la_ssize_t, archive_read_data, (struct archive * a, void *b, size_t n), (a, b, n))
LAZY(archive_lib, int, archive_read_data_block,
     (struct archive * a, const void **b, size_t *n, la_int64_t *off), (a, b, n, off))
LAZY(archive_lib, int, archive_read_free, (struct archive * a), (a))
LAZY(archive_lib, struct archive *, archive_write_new, (void), ())
LAZY(archive_lib, int, archive_write_set_format_pax, (struct archive * a), (a))
LAZY(archive_lib, int, archive_write_add_filter_zstd, (struct archive * a), (a))
LAZY(archive_lib, int, archive_write_set_filter_option,
     (struct archive * a, const char *m, const char *o, const char *v), (a, m, o, v))
LAZY(archive_lib, int, archive_write_set_bytes_in_last_block, (struct archive * a, int n), (a, n))
LAZY(archive_lib, int, archive_write_open_fd, (struct archive * a, int fd), (a, fd))
LAZY(archive_lib, int, archive_write_header, (struct archive * a, struct archive_entry *e), (a, e))
LAZY(archive_lib, la_ssize_t, archive_write_data, (struct archive * a, const void *b, size_t n),
     (a, b, n))
LAZY(archive_lib, int, archive_write_close, (struct archive * a), (a))
LAZY(archive_lib, int, archive_write_free, (struct archive * a), (a))

/* libcrypto */
LAZY(crypto_lib, const EVP_MD *, EVP_sha256, (void), ())
LAZY(crypto_lib, const EVP_MD *, EVP_md5, (void), ())
LAZY(crypto_lib, EVP_MD_CTX *, EVP_MD_CTX_new, (void), ())
LAZY_VOID(crypto_lib, EVP_MD_CTX_free, (EVP_MD_CTX * c), (c))
LAZY(crypto_lib, int, EVP_DigestInit_ex, (EVP_MD_CTX * c, const EVP_MD *t, ENGINE *e), (c, t, e))
LAZY(crypto_lib, int, EVP_DigestUpdate, (EVP_MD_CTX * c, const void *d, size_t n), (c, d, n))
LAZY(crypto_lib, int, EVP_DigestFinal_ex, (EVP_MD_CTX * c, unsigned char *md, unsigned int *s),
     (c, md, s))
LAZY(crypto_lib, int, EVP_Digest,
     (const void *d, size_t n, unsigned char *md, unsigned int *s, const EVP_MD *t, ENGINE *e),
     (d, n, md, s, t, e))
LAZY(crypto_lib, int, EVP_EncodeBlock, (unsigned char *t, const unsigned char *f, int n), (t, f, n))
