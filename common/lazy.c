/*
 * lazy.c — loading libraries on first use (common/lazy.h), and the
 * trampolines of libcrypto, which common/, vm/, storage/ and registry/ all
 * use for hashing.
 */
#include "common/lazy.h"

#include <dlfcn.h>
#include <openssl/evp.h>

#ifndef VMM_SONAME_CRYPTO
#define VMM_SONAME_CRYPTO ""
#endif

int vmm_lazy_load(vmm_lazy_lib *lib, vmm_error **err)
{
	if (__atomic_load_n(&lib->handle, __ATOMIC_ACQUIRE))
		return 0;
	const char *so = lib->soname[0] ? lib->soname : lib->fallback;
	/* dlopen of a loaded library returns the same handle: a race is harmless */
	void *h = dlopen(so, RTLD_NOW | RTLD_LOCAL);
	if (!h)
		return vmm_error_set(err, VMM_EGENERIC, "cannot load %s: %s", so, dlerror());
	__atomic_store_n(&lib->handle, h, __ATOMIC_RELEASE);
	return 0;
}

void *vmm_lazy_sym(vmm_lazy_lib *lib, const char *name)
{
	cleanup_vmm_error vmm_error *err = NULL;
	if (vmm_lazy_load(lib, &err) < 0)
		vmm_fatal("%s", err->msg);
	void *fn = dlsym(__atomic_load_n(&lib->handle, __ATOMIC_ACQUIRE), name);
	if (!fn)
		vmm_fatal("%s lacks %s", lib->soname[0] ? lib->soname : lib->fallback, name);
	return fn;
}

static vmm_lazy_lib crypto_lib = {VMM_SONAME_CRYPTO, "libcrypto.so.3", NULL};

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
