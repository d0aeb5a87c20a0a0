/*
 * libcurl.c — libcurl's trampolines (common/lazy.h): the vmm binary loads
 * libcurl only when a command talks to a registry.
 */
#define CURL_DISABLE_TYPECHECK 1
#include <curl/curl.h>

#include "common/lazy.h"
#include "registry/oci/http_transport.h"

#ifndef VMM_SONAME_CURL
#define VMM_SONAME_CURL ""
#endif

static vmm_lazy_lib vmm_libcurl = {VMM_SONAME_CURL, "libcurl.so.4", NULL};

int vmm_http_load(vmm_error **err)
{
	return vmm_lazy_load(&vmm_libcurl, err);
}

LAZY(vmm_libcurl, CURLcode, curl_global_init, (long flags), (flags))
LAZY(vmm_libcurl, CURL *, curl_easy_init, (void), ())
LAZY_VARIADIC(vmm_libcurl, CURLcode, curl_easy_setopt, CURL *, CURLoption)
LAZY_VARIADIC(vmm_libcurl, CURLcode, curl_easy_getinfo, CURL *, CURLINFO)
LAZY(vmm_libcurl, CURLcode, curl_easy_perform, (CURL * c), (c))
LAZY_VOID(vmm_libcurl, curl_easy_reset, (CURL * c), (c))
LAZY_VOID(vmm_libcurl, curl_easy_cleanup, (CURL * c), (c))
LAZY(vmm_libcurl, const char *, curl_easy_strerror, (CURLcode code), (code))
LAZY(vmm_libcurl, CURLHcode, curl_easy_header,
     (CURL * c, const char *name, size_t index, unsigned int origin, int request,
      struct curl_header **hout),
     (c, name, index, origin, request, hout))
LAZY(vmm_libcurl, CURLSH *, curl_share_init, (void), ())
LAZY_VARIADIC(vmm_libcurl, CURLSHcode, curl_share_setopt, CURLSH *, CURLSHoption)
LAZY(vmm_libcurl, CURLSHcode, curl_share_cleanup, (CURLSH * s), (s))
LAZY(vmm_libcurl, struct curl_slist *, curl_slist_append, (struct curl_slist * l, const char *s),
     (l, s))
LAZY_VOID(vmm_libcurl, curl_slist_free_all, (struct curl_slist * l), (l))
LAZY_VOID(vmm_libcurl, curl_free, (void *p), (p))
LAZY(vmm_libcurl, CURLU *, curl_url, (void), ())
LAZY_VOID(vmm_libcurl, curl_url_cleanup, (CURLU * u), (u))
LAZY(vmm_libcurl, CURLUcode, curl_url_get,
     (CURLU * u, CURLUPart what, char **part, unsigned int flags), (u, what, part, flags))
LAZY(vmm_libcurl, CURLUcode, curl_url_set,
     (CURLU * u, CURLUPart what, const char *part, unsigned int flags), (u, what, part, flags))
