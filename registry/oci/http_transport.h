/*
 * http_transport.h — private to registry/oci/: one HTTP exchange on libcurl,
 * redirects followed here (not by curl) so that the Authorization header
 * goes to the registry's origin only.  Retries, authentication and the OCI
 * API live in client.c on top of this.
 *
 * A vmm_http owns a pool of curl easy handles (each keeps its idle
 * connections, so sequential and parallel requests reuse connections) and a
 * curl share handle for the DNS cache and TLS sessions, with one mutex per
 * kind of shared data.  The connection cache itself is deliberately not put
 * in the share: libcurl 7.88 documents that a shared connection cache is
 * not safe across concurrent threads (KNOWN_BUGS "A shared connection cache
 * is not thread-safe"), and vmm pulls layers from many threads.  Reusing
 * pooled easy handles gives the same reuse without that race.
 *
 * TLS is always verified.  The CA bundle is libcurl's default unless
 * SSL_CERT_FILE or CURL_CA_BUNDLE names a file (SSL_CERT_DIR a directory).
 * No cookies, no Accept-Encoding (blob bytes must arrive as stored), no
 * `Expect: 100-continue`.  Every function is thread-safe on one vmm_http.
 */
#ifndef VMM_REGISTRY_OCI_HTTP_TRANSPORT_H
#define VMM_REGISTRY_OCI_HTTP_TRANSPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

typedef struct vmm_http vmm_http;

typedef struct vmm_http_opts {
	const char *user_agent; /* required */
	long connect_timeout_s; /* 0: 30 */
	long stall_timeout_s;	/* abort a transfer slower than 1 KiB/s for this long; 0: 30 */
} vmm_http_opts;

/* Load libcurl (registry/oci/libcurl.c) unless loaded; vmm_http_new() does. */
int vmm_http_load(vmm_error **err);

int vmm_http_new(vmm_http **out, const vmm_http_opts *opts, vmm_error **err);
void vmm_http_free(vmm_http *h);
/* Connections opened so far (for tests of connection reuse). */
long vmm_http_connections(vmm_http *h);

/* Receives 2xx body bytes; non-zero aborts the transfer. */
typedef int (*vmm_http_sink)(void *ctx, const void *data, size_t len);

typedef struct vmm_http_req {
	const char *method; /* "GET", "HEAD", "PUT", "POST", "PATCH", "DELETE" */
	const char *url;
	const char *auth_origin;    /* "scheme://host:port" authorization may go to; NULL: url's */
	const char *authorization;  /* value of the Authorization header, or NULL */
	const char *const *headers; /* extra "Name: value" lines, NULL-terminated; may be NULL */
	const void *body;	    /* request body (PUT, POST, PATCH) */
	size_t body_len;
	bool follow_redirects; /* up to 10; never from https to http */
	uint64_t range_from;   /* > 0: `Range: bytes=<n>-`; a 200 answer is skipped up to n */
	size_t max_body;       /* cap of a captured 2xx body; 0: 1 MiB */
	vmm_http_sink sink;    /* 2xx body goes here instead of resp->body */
	void *sink_ctx;
} vmm_http_req;

typedef struct vmm_http_resp {
	long status;
	char *body; /* owned: captured 2xx body, or the first 64 KiB of another status */
	size_t body_len;
	char *location; /* owned headers of the final response, NULL if absent */
	char *content_type;
	char *docker_content_digest;
	char *www_authenticate; /* all such headers joined with ", " */
	char *retry_after;
	char *range;
	bool has_content_length;
	uint64_t content_length;
	char *url;	   /* owned: the URL that gave the final response */
	uint64_t sunk;	   /* body bytes handed to the sink */
	bool retryable;	   /* on failure: a transport error worth retrying */
	bool sink_aborted; /* on failure: the sink asked to stop */
} vmm_http_resp;

/*
 * Perform one request (following redirects if asked).  0: a response
 * arrived, whatever its status; *resp holds it (clear it with
 * vmm_http_resp_clear, also after a failure).  -1: no usable response (a
 * transport error, an oversized body, a bad redirect); resp->retryable
 * and resp->sunk tell the caller whether and where to resume.
 */
int vmm_http_do(vmm_http *h, const vmm_http_req *req, vmm_http_resp *resp, vmm_error **err);
void vmm_http_resp_clear(vmm_http_resp *resp);

/* "scheme://host:port" of an http(s) URL, lower case, default port filled in; NULL if not one. */
char *vmm_http_origin(const char *url);
/* Resolve a Location (absolute, or relative to base) into an absolute URL; NULL if invalid. */
char *vmm_http_resolve(const char *base, const char *location);

#endif
