/*
 * client.h — an OCI distribution client for one repository (host + namespace).
 *
 * The only HTTP in vmm.  Built on libcurl: TLS verified by default,
 * `insecure` meaning plain http:// (Tart's --insecure), connections and TLS
 * sessions reused across requests (a curl share handle), no cookies,
 * retries with exponential backoff and full jitter on transport errors, 429
 * and 5xx (honouring Retry-After), Range resumption of interrupted blob
 * downloads, and the Authorization header never sent to another host on a
 * redirect (blob storage redirects).
 *
 * Authentication follows tart-spec §6: on a 401 the WWW-Authenticate
 * challenge is parsed; Basic sends the credentials; Bearer fetches a token
 * from the realm (anonymous, or with the credentials) for the scope the
 * request needs, cached until it expires; a later 401 for a wider scope
 * (push) fetches a new one.  Credentials come from registry/oci/credentials.h.
 *
 * Thread safety: one vmm_registry may be used by many threads at once
 * (each call runs on its own easy handle; the token cache is locked).
 * Every function returns 0 or -1 with *err set; messages name the request
 * and carry the registry's error code, e.g.
 * "GET manifest `latest`: HTTP 404 MANIFEST_UNKNOWN: manifest unknown".
 * Codes: 404 is VMM_ENOTFOUND, 401/403 and rejected credentials VMM_EAUTH,
 * a stalled transfer VMM_ETIMEOUT, a hostile answer VMM_EFORMAT.
 *
 * Connection reuse: a pool of curl easy handles (each keeps its idle
 * connections) plus a curl share handle for DNS and TLS sessions; the
 * connection cache itself is not shared across threads because libcurl
 * 7.88 documents that as unsafe (see registry/oci/http_transport.h).
 * TLS trust: libcurl's CA bundle, or CURL_CA_BUNDLE, else SSL_CERT_FILE,
 * and SSL_CERT_DIR, when set (the curl tool's variables).  There is no
 * option to turn verification off.
 * Test knobs (environment, used when the opts fields are 0):
 * VMM_REGISTRY_RETRY_BASE_MS, VMM_REGISTRY_STALL_TIMEOUT (seconds).
 */
#ifndef VMM_REGISTRY_OCI_CLIENT_H
#define VMM_REGISTRY_OCI_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

typedef struct vmm_registry vmm_registry;

typedef struct vmm_registry_opts {
	bool insecure;		/* plain HTTP */
	const char *user_agent; /* NULL: "vmm/<version>" */
	int max_attempts;	/* per request, for retryable failures; 0: 5 */
	/* added by the transport work; 0 keeps the defaults */
	long retry_base_ms;   /* backoff base (full jitter, doubling, capped at 20 s); 0: 1000 */
	long stall_timeout_s; /* abort+retry a transfer below 1 KiB/s for this long; 0: 30 */
} vmm_registry_opts;

#define VMM_MEDIA_OCI_MANIFEST "application/vnd.oci.image.manifest.v1+json"
#define VMM_MEDIA_OCI_CONFIG "application/vnd.oci.image.config.v1+json"

/*
 * A client for host ("host[:port]") and namespace ("a/b"); opts may be NULL.
 * Credentials are looked up (registry/oci/credentials.h) on the first challenge.
 */
int vmm_registry_open(vmm_registry **out, const char *host, const char *namespace,
		      const vmm_registry_opts *opts, vmm_error **err);
void vmm_registry_free(vmm_registry *r);

/*
 * GET /v2/<ns>/manifests/<reference> (tag or digest), Accept: the OCI image
 * manifest.  *body (NUL-terminated, caller frees) holds the raw bytes,
 * *len their length, digest the "sha256:<hex>" of those bytes.  At most
 * 4 MiB is accepted.  Unknown tag: VMM_ENOTFOUND.  media_type may be NULL.
 */
int vmm_registry_manifest_get(vmm_registry *r, const char *reference, char **body, size_t *len,
			      char **media_type, char digest[72], vmm_error **err);

/* PUT /v2/<ns>/manifests/<reference> with Content-Type media_type; 201 expected. */
int vmm_registry_manifest_put(vmm_registry *r, const char *reference, const void *body, size_t len,
			      const char *media_type, vmm_error **err);

/* HEAD /v2/<ns>/blobs/<digest>: *exists = 200; 404 = false; anything else an error. */
int vmm_registry_blob_exists(vmm_registry *r, const char *digest, bool *exists, vmm_error **err);

/*
 * Cross-repository mount: POST /v2/<ns>/blobs/uploads/?mount=<digest>&from=<from_ns>.
 * *mounted = true on 201; false when the registry declined (202 opens an
 * upload session, which is abandoned): the caller then uploads.
 */
int vmm_registry_blob_mount(vmm_registry *r, const char *digest, const char *from_namespace,
			    bool *mounted, vmm_error **err);

/*
 * Upload a blob held in memory.  chunk_size 0: monolithic POST + PUT
 * ?digest=; else PATCH slices of chunk_size bytes (Content-Range
 * "<start>-<end>", 201 or 202 accepted, Location re-read each time) and the
 * last slice with the PUT.  Location may be relative or carry a query.
 */
int vmm_registry_blob_put(vmm_registry *r, const char *digest, const void *data, size_t len,
			  uint64_t chunk_size, vmm_error **err);

/*
 * Receives blob bytes in order; return 0 to go on, negative to abort (the
 * client then fails with the sink's error if it set *err through ctx, or a
 * generic "aborted" error).
 */
typedef int (*vmm_blob_sink)(void *ctx, const void *data, size_t len);

/*
 * GET /v2/<ns>/blobs/<digest> from byte `from` on (Range: bytes=<from>- when
 * from > 0; a 206 must start at that byte, a 200 that ignores the Range has
 * its first bytes dropped), following redirects (without Authorization to
 * another host).  Bytes go to sink exactly once each, in order: when the
 * transfer breaks, the client retries from the first byte the sink has not
 * seen.  If expected_size is non-zero, more bytes than expected_size - from
 * is an error, and so is fewer once retries are exhausted.  The client does
 * not check the digest: the caller hashes what it consumes.
 */
int vmm_registry_blob_get(vmm_registry *r, const char *digest, uint64_t from,
			  uint64_t expected_size, vmm_blob_sink sink, void *ctx, vmm_error **err);

/*
 * `vmm login`'s check: GET <scheme>://<host>/v2/ authenticating with exactly
 * these credentials (Basic, or a Bearer token fetched with them); 200 is
 * success, 401 is VMM_EAUTH "invalid credentials".
 */
int vmm_registry_check_credentials(const char *host, bool insecure, const char *username,
				   const char *password, vmm_error **err);

/* Counters of one client, for tests and benchmarks. */
typedef struct vmm_registry_stats {
	long requests;	    /* HTTP exchanges, redirect hops included */
	long connections;   /* TCP connections opened */
	long token_fetches; /* Bearer token requests */
	long retries;	    /* attempts repeated after a retryable failure */
} vmm_registry_stats;
void vmm_registry_get_stats(vmm_registry *r, vmm_registry_stats *out);

#endif
