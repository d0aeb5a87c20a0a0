/*
 * client.c — the OCI distribution client: retries, authentication and the
 * registry API on top of http_transport.c.  See client.h.
 */
#include "registry/oci/client.h"
#include "common/json.h"
#include "common/util.h"
#include "registry/oci/auth.h"
#include "registry/oci/credentials.h"
#include "registry/oci/http_transport.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#ifndef VMM_VERSION
#define VMM_VERSION "0.1.0"
#endif

#define MANIFEST_MAX (4 * 1024 * 1024)
#define TOKEN_BODY_MAX (1024 * 1024)
#define RETRY_CAP_MS 20000L
#define RETRY_AFTER_CAP_S 60L
/* a transfer that makes progress may be resumed this many times in all */
#define RESUME_LIMIT 100

typedef struct token_entry {
	char *scope;   /* owned: what was asked for */
	char *header;  /* owned: "Bearer <token>" */
	double expiry; /* vmm_now() seconds */
} token_entry;

enum auth_mode { AUTH_UNKNOWN, AUTH_BASIC, AUTH_BEARER };

struct vmm_registry {
	char *host, *ns;
	char *base;   /* "<scheme>://<host>/v2/" */
	char *origin; /* origin of base */
	bool insecure;
	int max_attempts;
	long retry_base_ms;
	vmm_http *http;

	pthread_mutex_t auth_lock; /* everything below up to the counters */
	enum auth_mode mode;
	char *basic;	       /* "Basic …" */
	char *realm, *service; /* of the last Bearer challenge */
	token_entry *tokens;
	size_t ntokens;
	bool creds_looked_up;
	bool creds_fixed; /* check_credentials: use exactly these, look nothing up */
	vmm_credentials *creds;
	char *creds_note; /* why a credential source failed, for auth errors */

	atomic_long requests, token_fetches, retries;
};

/* One logical request. */
typedef struct call {
	const char *what; /* "GET blob `sha256:…`" for messages */
	const char *method;
	const char *url;
	const char *scope; /* needed scope, "" for /v2/ */
	const char *const *headers;
	const void *body;
	size_t body_len;
	bool follow;
	bool noauth;		   /* the token request itself */
	const char *authorization; /* with noauth: a fixed header (Basic for the realm) */
	size_t max_body;
	int attempts; /* 0: r->max_attempts */
	vmm_http_sink sink;
	void *sink_ctx;
	uint64_t range_from; /* advanced as bytes reach the sink */
	bool retryable;	     /* out: the failure was retryable (attempts ran out) */
} call;

/* --- small helpers ------------------------------------------------------- */

static long env_long(const char *name)
{
	const char *v = getenv(name);
	uint64_t n;
	if (v && vmm_parse_u64(v, &n) == 0 && n < 86400000)
		return (long)n;
	return 0;
}

static void sleep_ms(long ms)
{
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

/* Seconds from a Retry-After value (delta-seconds or an HTTP date); -1 if none. */
static long retry_after_s(const char *v)
{
	if (!v)
		return -1;
	uint64_t n;
	if (vmm_parse_u64(v, &n) == 0)
		return n > RETRY_AFTER_CAP_S ? RETRY_AFTER_CAP_S : (long)n;
	struct tm tm = {0};
	const char *end = strptime(v, "%a, %d %b %Y %H:%M:%S GMT", &tm);
	if (!end || *end)
		return -1;
	time_t t = timegm(&tm), now = time(NULL);
	if (t <= now)
		return 0;
	return t - now > RETRY_AFTER_CAP_S ? RETRY_AFTER_CAP_S : (long)(t - now);
}

/* Exponential backoff with full jitter: uniform in [0, min(cap, base·2^(n-1))]. */
static void backoff(const vmm_registry *r, int failures, const char *retry_after)
{
	long ra = retry_after_s(retry_after);
	if (ra >= 0) {
		sleep_ms(ra * 1000);
		return;
	}
	long ceiling = r->retry_base_ms;
	for (int i = 1; i < failures && ceiling < RETRY_CAP_MS; i++)
		ceiling *= 2;
	if (ceiling > RETRY_CAP_MS)
		ceiling = RETRY_CAP_MS;
	uint64_t rnd;
	vmm_random_bytes(&rnd, sizeof(rnd));
	sleep_ms((long)(rnd % (uint64_t)(ceiling + 1)));
}

static bool status_retryable(long s)
{
	return s == 408 || s == 429 || (s >= 500 && s <= 599 && s != 501 && s != 505);
}

/* Printable, one line, bounded: text from the network goes into messages. */
static char *sanitize(const char *s, size_t max)
{
	size_t n = 0;
	char *out = xmalloc(max + 4);
	for (; s && *s && n < max; s++) {
		unsigned char c = (unsigned char)*s;
		if (c == '\n' || c == '\r' || c == '\t')
			c = ' ';
		out[n++] = (c >= 0x20 && c < 0x7f) ? (char)c : '?';
	}
	while (n && out[n - 1] == ' ')
		n--;
	out[n] = '\0';
	if (s && *s)
		strcpy(out + n, "...");
	return out;
}

/* "CODE: message" from an OCI error body, or a short excerpt of a text body. */
static char *error_detail(const vmm_http_resp *resp)
{
	if (!resp->body || !resp->body_len)
		return NULL;
	json_error_t je;
	json_auto_t *root = json_loadb(resp->body, resp->body_len, 0, &je);
	json_t *errors = json_object_get(root, "errors");
	json_t *first = json_array_get(errors, 0);
	if (json_is_object(first)) {
		const char *code = json_string_value(json_object_get(first, "code"));
		const char *msg = json_string_value(json_object_get(first, "message"));
		cleanup_free char *c = sanitize(code ? code : "", 64);
		cleanup_free char *m = sanitize(msg ? msg : "", 200);
		if (*c && *m)
			return xasprintf("%s: %s", c, m);
		if (*c || *m)
			return xstrdup(*c ? c : m);
	}
	if (root)
		return NULL;
	/* not JSON: an HTML page says nothing useful; plain text might */
	if (resp->content_type && strncasecmp(resp->content_type, "text/html", 9) == 0)
		return NULL;
	cleanup_free char *t = sanitize(resp->body, 120);
	return *t ? steal_ptr(t) : NULL;
}

static int status_code_for(long status)
{
	if (status == 404)
		return VMM_ENOTFOUND;
	if (status == 401 || status == 403)
		return VMM_EAUTH;
	return VMM_EGENERIC;
}

/* "<what>: HTTP <status> <CODE: message>" */
static int status_error(vmm_error **err, const char *what, const vmm_http_resp *resp)
{
	cleanup_free char *detail = error_detail(resp);
	return vmm_error_set(err, status_code_for(resp->status), "%s: HTTP %ld%s%s", what,
			     resp->status, detail ? " " : "", detail ? detail : "");
}

/* --- credentials and tokens ---------------------------------------------- */

/* Under auth_lock. */
static const vmm_credentials *creds_get(vmm_registry *r)
{
	if (r->creds_fixed || r->creds_looked_up)
		return r->creds;
	r->creds_looked_up = true;
	cleanup_vmm_error vmm_error *e = NULL;
	if (vmm_credentials_lookup(r->host, &r->creds, &e) < 0) {
		/* a broken source must not stop anonymous access; remember why */
		r->creds = NULL;
		r->creds_note = xstrdup(e ? e->msg : "credential lookup failed");
	}
	return r->creds;
}

/* Under auth_lock: what to do about missing credentials, and why a source failed. */
static char *no_creds_hint(const vmm_registry *r)
{
	return xasprintf("run `vmm login %s` or set VMM_REGISTRY_HOSTNAME=%s, "
			 "VMM_REGISTRY_USERNAME and VMM_REGISTRY_PASSWORD%s%s",
			 r->host, r->host, r->creds_note ? "; " : "",
			 r->creds_note ? r->creds_note : "");
}

static int perform(vmm_registry *r, call *c, vmm_http_resp *resp, vmm_error **err);

/* Fetch a Bearer token for `scope` from the known realm.  Under auth_lock. */
static int fetch_token(vmm_registry *r, const char *scope, char **header, vmm_error **err)
{
	cleanup_free char *url = vmm_auth_token_url(r->realm, r->service, scope);
	const vmm_credentials *cr = creds_get(r);
	cleanup_free char *basic = NULL;
	if (cr) {
		cleanup_free char *ro = vmm_http_origin(url);
		if (ro && strncmp(ro, "http:", 5) == 0 && !r->insecure)
			return vmm_error_set(err, VMM_EAUTH,
					     "refusing to send the credentials for `%s` over plain "
					     "HTTP to the token realm `%s`",
					     r->host, r->realm);
		basic = vmm_auth_basic_header(cr->username, cr->password);
	}
	cleanup_free char *realm_shown = sanitize(r->realm, 200);
	cleanup_free char *what = xasprintf("token request to `%s`", realm_shown);
	call c = {.what = what,
		  .method = "GET",
		  .url = url,
		  .noauth = true,
		  .authorization = basic,
		  .follow = true,
		  .max_body = TOKEN_BODY_MAX};
	vmm_http_resp resp;
	atomic_fetch_add(&r->token_fetches, 1);
	int rc = perform(r, &c, &resp, err);
	if (basic)
		explicit_bzero(basic, strlen(basic));
	if (rc < 0) {
		vmm_http_resp_clear(&resp);
		return -1;
	}
	if (resp.status != 200) {
		status_error(err, what, &resp);
		if (cr && (resp.status == 401 || resp.status == 403))
			vmm_error_wrap(err, "invalid credentials for `%s` (user `%s`)", r->host,
				       cr->username);
		else if (resp.status == 401 || resp.status == 403) {
			cleanup_free char *hint = no_creds_hint(r);
			vmm_error_wrap(err, "`%s` refused an anonymous token (%s)", r->host, hint);
		}
		if (err && *err && (resp.status == 401 || resp.status == 403))
			(*err)->code = VMM_EAUTH;
		vmm_http_resp_clear(&resp);
		return -1;
	}
	cleanup_free char *token = NULL;
	long ttl = 0;
	rc = vmm_auth_parse_token_response(resp.body, resp.body_len, time(NULL), &token, &ttl, err);
	vmm_http_resp_clear(&resp);
	if (rc < 0)
		return vmm_error_wrap(err, "%s", what);
	char *h = xasprintf("Bearer %s", token);
	explicit_bzero(token, strlen(token));
	/* keep a margin so a token does not expire on the way */
	double margin = ttl > 40 ? 10 : ttl / 4.0;
	r->tokens = xrealloc(r->tokens, (r->ntokens + 1) * sizeof(*r->tokens));
	r->tokens[r->ntokens++] =
	    (token_entry){xstrdup(scope), xstrdup(h), vmm_now() + ttl - margin};
	*header = h;
	return 0;
}

/* Under auth_lock: a valid cached token covering scope, else NULL. */
static char *cached_token(vmm_registry *r, const char *scope)
{
	double now = vmm_now();
	for (size_t i = r->ntokens; i-- > 0;) {
		token_entry *t = &r->tokens[i];
		if (t->expiry <= now) {
			free(t->scope);
			explicit_bzero(t->header, strlen(t->header));
			free(t->header);
			r->tokens[i] = r->tokens[--r->ntokens];
			continue;
		}
		if (vmm_auth_scope_covers(t->scope, scope))
			return xstrdup(t->header);
	}
	return NULL;
}

/*
 * The Authorization value to send first for `scope`: Basic once known,
 * a cached token, or a fresh token when the realm is already known (so a
 * push's wider scope costs no extra 401).  *out NULL: send none.
 */
static int auth_for(vmm_registry *r, const char *scope, char **out, vmm_error **err)
{
	int rc = 0;
	*out = NULL;
	pthread_mutex_lock(&r->auth_lock);
	if (r->mode == AUTH_BASIC) {
		*out = xstrdup(r->basic);
	} else if (r->mode == AUTH_BEARER) {
		*out = cached_token(r, scope);
		if (!*out)
			rc = fetch_token(r, scope, out, err);
	}
	pthread_mutex_unlock(&r->auth_lock);
	return rc;
}

/*
 * A 401 arrived for c, sent with Authorization `sent` (or none): answer its
 * challenge; *out is the header to retry with.  When another thread has
 * answered the same challenge meanwhile, its token is used instead of
 * fetching one more (many threads start pulling at once).
 */
static int answer_challenge(vmm_registry *r, const call *c, const vmm_http_resp *resp,
			    const char *sent, char **out, vmm_error **err)
{
	if (!resp->www_authenticate)
		return vmm_error_set(err, VMM_EAUTH,
				     "%s: HTTP 401 without a WWW-Authenticate header", c->what);
	vmm_auth_challenge *ch = NULL;
	size_t n = 0;
	/* a broken challenge is the registry's fault, not the credentials' (VMM_EFORMAT) */
	if (vmm_auth_parse_challenges(resp->www_authenticate, &ch, &n, err) < 0)
		return vmm_error_wrap(err, "%s: HTTP 401", c->what);
	int rc = -1;
	const vmm_auth_challenge *pick = vmm_auth_pick(ch, n);
	pthread_mutex_lock(&r->auth_lock);
	if (!pick) {
		cleanup_free char *s = sanitize(ch[0].scheme, 40);
		vmm_error_set(err, VMM_EAUTH,
			      "%s: HTTP 401: unsupported authentication scheme `%s`, expected "
			      "Bearer or Basic",
			      c->what, s);
	} else if (strcasecmp(pick->scheme, "Basic") == 0) {
		const vmm_credentials *cr = creds_get(r);
		if (r->mode == AUTH_BASIC && (!sent || strcmp(sent, r->basic) != 0)) {
			*out = xstrdup(r->basic);
			rc = 0;
		} else if (!cr) {
			cleanup_free char *hint = no_creds_hint(r);
			vmm_error_set(err, VMM_EAUTH,
				      "%s: HTTP 401: `%s` requires a user name and password, and "
				      "none were found (%s)",
				      c->what, r->host, hint);
		} else {
			free(r->basic);
			r->basic = vmm_auth_basic_header(cr->username, cr->password);
			r->mode = AUTH_BASIC;
			*out = xstrdup(r->basic);
			rc = 0;
		}
	} else {
		const char *realm = vmm_auth_param_get(pick, "realm");
		cleanup_free char *ro = realm ? vmm_http_origin(realm) : NULL;
		if (!ro) {
			vmm_error_set(err, VMM_EFORMAT,
				      "%s: HTTP 401: Bearer challenge without a usable realm URL",
				      c->what);
		} else {
			free(r->realm);
			free(r->service);
			r->realm = xstrdup(realm);
			const char *svc = vmm_auth_param_get(pick, "service");
			r->service = svc ? xstrdup(svc) : NULL;
			r->mode = AUTH_BEARER;
			cleanup_free char *want =
			    vmm_auth_scope_merge(c->scope, vmm_auth_param_get(pick, "scope"));
			char *fresh = cached_token(r, want);
			if (fresh && (!sent || strcmp(fresh, sent) != 0)) {
				*out = fresh;
				rc = 0;
			} else {
				free(fresh);
				rc = fetch_token(r, want, out, err);
				if (rc < 0)
					vmm_error_wrap(err, "%s", c->what);
			}
		}
	}
	pthread_mutex_unlock(&r->auth_lock);
	vmm_auth_challenges_free(ch, n);
	return rc;
}

/* A second 401 after answering the challenge. */
static int auth_rejected(vmm_registry *r, const call *c, const vmm_http_resp *resp, vmm_error **err)
{
	status_error(err, c->what, resp);
	pthread_mutex_lock(&r->auth_lock);
	const vmm_credentials *cr = r->creds;
	if (cr && r->mode == AUTH_BASIC)
		vmm_error_wrap(err, "invalid credentials for `%s` (user `%s`)", r->host,
			       cr->username);
	else if (cr)
		vmm_error_wrap(err, "access denied to `%s` for user `%s`", r->host, cr->username);
	else {
		cleanup_free char *hint = no_creds_hint(r);
		vmm_error_wrap(err, "access denied to `%s` without credentials (%s)", r->host,
			       hint);
	}
	pthread_mutex_unlock(&r->auth_lock);
	if (err && *err)
		(*err)->code = VMM_EAUTH;
	return -1;
}

/* Did the answer come from the registry itself (not a storage host it redirected to)? */
static bool from_registry(const vmm_registry *r, const vmm_http_resp *resp)
{
	cleanup_free char *o = resp->url ? vmm_http_origin(resp->url) : NULL;
	return o && strcmp(o, r->origin) == 0;
}

/* --- the request loop ------------------------------------------------------- */

/*
 * Run c until a final answer: retries transport errors, 408, 429 and 5xx
 * with backoff (Retry-After honoured), answers one 401 challenge, resumes a
 * sink transfer after the bytes it already delivered.  0 with *resp for
 * any other status (the caller judges it); -1 otherwise.
 */
static int perform(vmm_registry *r, call *c, vmm_http_resp *resp, vmm_error **err)
{
	int max = c->attempts > 0 ? c->attempts : r->max_attempts;
	int failures = 0, resumes = 0;
	bool answered = false;
	cleanup_free char *auth = NULL;
	memset(resp, 0, sizeof(*resp));
	c->retryable = false;
	for (;;) {
		if (c->noauth) {
			free(auth);
			auth = c->authorization ? xstrdup(c->authorization) : NULL;
		} else if (!auth && auth_for(r, c->scope, &auth, err) < 0) {
			return vmm_error_wrap(err, "%s", c->what);
		}
		vmm_http_req req = {.method = c->method,
				    .url = c->url,
				    .auth_origin = c->noauth ? NULL : r->origin,
				    .authorization = auth,
				    .headers = c->headers,
				    .body = c->body,
				    .body_len = c->body_len,
				    .follow_redirects = c->follow,
				    .range_from = c->range_from,
				    .max_body = c->max_body,
				    .sink = c->sink,
				    .sink_ctx = c->sink_ctx};
		vmm_http_resp_clear(resp);
		cleanup_vmm_error vmm_error *e = NULL;
		atomic_fetch_add(&r->requests, 1);
		int rc = vmm_http_do(r->http, &req, resp, &e);
		c->range_from += resp->sunk;
		if (rc < 0) {
			if (resp->sink_aborted) {
				/* the sink's own error, if it left one in *err, wins */
				if (err && *err)
					return vmm_error_wrap(err, "%s", c->what);
				return vmm_error_set(err, VMM_EGENERIC, "%s: aborted", c->what);
			}
			bool progress = resp->sunk > 0;
			if (resp->retryable && progress && ++resumes <= RESUME_LIMIT)
				failures = 0;
			if (!resp->retryable || ++failures >= max || resumes > RESUME_LIMIT) {
				c->retryable = resp->retryable;
				int code = vmm_error_code(e);
				return vmm_error_set(
				    err, code ? code : VMM_EGENERIC, "%s: %s%s", c->what,
				    e ? e->msg : "failed",
				    c->retryable && max > 1 ? " (retries exhausted)" : "");
			}
			atomic_fetch_add(&r->retries, 1);
			if (!progress)
				backoff(r, failures, NULL);
			continue;
		}
		if (resp->status == 401 && !c->noauth && from_registry(r, resp)) {
			if (answered)
				return auth_rejected(r, c, resp, err);
			answered = true;
			cleanup_free char *sent = steal_ptr(auth);
			if (answer_challenge(r, c, resp, sent, &auth, err) < 0)
				return -1;
			continue;
		}
		if (status_retryable(resp->status)) {
			if (++failures >= max) {
				c->retryable = true;
				return status_error(err, c->what, resp);
			}
			atomic_fetch_add(&r->retries, 1);
			backoff(r, failures, resp->retry_after);
			continue;
		}
		return 0;
	}
}

/* --- open / free -------------------------------------------------------------- */

static bool host_is_valid(const char *h)
{
	if (!*h || strlen(h) > 255)
		return false;
	for (const char *p = h; *p; p++)
		if (!isalnum((unsigned char)*p) && !strchr(".-:[]_", *p))
			return false;
	return true;
}

/* Repository names go into URL paths and queries unescaped. */
static bool namespace_is_valid(const char *ns)
{
	if (strlen(ns) > 255 || strstr(ns, "..") || ns[0] == '/')
		return false;
	for (const char *p = ns; *p; p++)
		if (!isalnum((unsigned char)*p) && !strchr("._-/", *p))
			return false;
	return true;
}

int vmm_registry_open(vmm_registry **out, const char *host, const char *namespace,
		      const vmm_registry_opts *opts, vmm_error **err)
{
	if (strncasecmp(host, "http://", 7) == 0 || strncasecmp(host, "https://", 8) == 0)
		return vmm_error_set(err, VMM_EINVAL,
				     "improperly formatted host \"%s\" was provided, make sure "
				     "that it doesn't start with http:// or https://",
				     host);
	if (!host_is_valid(host))
		return vmm_error_set(err, VMM_EINVAL,
				     "improperly formatted host \"%s\" was provided", host);
	if (namespace && !namespace_is_valid(namespace))
		return vmm_error_set(err, VMM_EINVAL, "invalid repository name `%s`", namespace);
	vmm_registry_opts o = opts ? *opts : (vmm_registry_opts){0};
	vmm_registry *r = xcalloc(1, sizeof(*r));
	r->host = xstrdup(host);
	r->ns = xstrdup(namespace ? namespace : "");
	r->insecure = o.insecure;
	r->base = xasprintf("%s://%s/v2/", o.insecure ? "http" : "https", host);
	r->origin = vmm_http_origin(r->base);
	r->max_attempts = o.max_attempts > 0 ? o.max_attempts : 5;
	r->retry_base_ms =
	    o.retry_base_ms > 0 ? o.retry_base_ms : env_long("VMM_REGISTRY_RETRY_BASE_MS");
	if (r->retry_base_ms <= 0)
		r->retry_base_ms = 1000;
	pthread_mutex_init(&r->auth_lock, NULL);
	cleanup_free char *ua = xstrdup(o.user_agent ? o.user_agent : "vmm/" VMM_VERSION);
	vmm_http_opts ho = {.user_agent = ua,
			    .stall_timeout_s = o.stall_timeout_s > 0
						   ? o.stall_timeout_s
						   : env_long("VMM_REGISTRY_STALL_TIMEOUT")};
	if (!r->origin) {
		vmm_registry_free(r);
		return vmm_error_set(err, VMM_EINVAL,
				     "improperly formatted host \"%s\" was provided", host);
	}
	if (vmm_http_new(&r->http, &ho, err) < 0) {
		vmm_registry_free(r);
		return -1;
	}
	*out = r;
	return 0;
}

void vmm_registry_free(vmm_registry *r)
{
	if (!r)
		return;
	vmm_http_free(r->http);
	for (size_t i = 0; i < r->ntokens; i++) {
		explicit_bzero(r->tokens[i].header, strlen(r->tokens[i].header));
		free(r->tokens[i].header);
		free(r->tokens[i].scope);
	}
	free(r->tokens);
	if (r->basic) {
		explicit_bzero(r->basic, strlen(r->basic));
		free(r->basic);
	}
	vmm_credentials_free(r->creds);
	free(r->creds_note);
	free(r->realm);
	free(r->service);
	pthread_mutex_destroy(&r->auth_lock);
	free(r->host);
	free(r->ns);
	free(r->base);
	free(r->origin);
	free(r);
}

void vmm_registry_get_stats(vmm_registry *r, vmm_registry_stats *out)
{
	out->requests = atomic_load(&r->requests);
	out->connections = vmm_http_connections(r->http);
	out->token_fetches = atomic_load(&r->token_fetches);
	out->retries = atomic_load(&r->retries);
}

/* --- the API ---------------------------------------------------------------------- */

static char *scope_pull(const vmm_registry *r)
{
	return xasprintf("repository:%s:pull", r->ns);
}

static char *scope_push(const vmm_registry *r)
{
	return xasprintf("repository:%s:pull,push", r->ns);
}

static bool digest_is_valid(const char *d)
{
	if (strncmp(d, "sha256:", 7) != 0 || strlen(d) != 71)
		return false;
	for (const char *p = d + 7; *p; p++)
		if (!isdigit((unsigned char)*p) && !(*p >= 'a' && *p <= 'f'))
			return false;
	return true;
}

/* A tag or digest as it may appear in a URL path. */
static bool reference_is_valid(const char *ref)
{
	if (digest_is_valid(ref))
		return true;
	size_t n = strlen(ref);
	if (n == 0 || n > 128)
		return false;
	for (const char *p = ref; *p; p++)
		if (!isalnum((unsigned char)*p) && *p != '_' && *p != '.' && *p != '-')
			return false;
	return true;
}

/* A manifest request: the call, and the strings it points to (owned). */
typedef struct manifest_call {
	call c;
	char *what, *url, *scope;
} manifest_call;

static void manifest_call_clear(manifest_call *m)
{
	free(m->what);
	free(m->url);
	free(m->scope);
}
#define cleanup_manifest_call __attribute__((cleanup(manifest_call_clear)))

/* GET or PUT /v2/<ns>/manifests/<reference>, once the reference is checked. */
static int manifest_call_init(manifest_call *m, vmm_registry *r, const char *method,
			      const char *reference, vmm_error **err)
{
	m->what = xasprintf("%s manifest `%s`", method, reference);
	m->url = xasprintf("%s%s/manifests/%s", r->base, r->ns, reference);
	m->scope = strcmp(method, "GET") == 0 ? scope_pull(r) : scope_push(r);
	m->c = (call){.what = m->what, .method = method, .url = m->url, .scope = m->scope};
	if (!reference_is_valid(reference))
		return vmm_error_set(err, VMM_EINVAL, "%s: invalid tag or digest", m->what);
	return 0;
}

int vmm_registry_manifest_get(vmm_registry *r, const char *reference, char **body, size_t *len,
			      char **media_type, char digest[72], vmm_error **err)
{
	cleanup_manifest_call manifest_call m = {0};
	if (manifest_call_init(&m, r, "GET", reference, err) < 0)
		return -1;
	const char *const headers[] = {"Accept: " VMM_MEDIA_OCI_MANIFEST, NULL};
	m.c.headers = headers;
	m.c.follow = true;
	m.c.max_body = MANIFEST_MAX;
	const char *what = m.what;
	vmm_http_resp resp;
	int rc = perform(r, &m.c, &resp, err);
	if (rc == 0 && resp.status != 200)
		rc = status_error(err, what, &resp);
	if (rc < 0) {
		if (err && *err && (*err)->code == EFBIG)
			(*err)->code = VMM_EFORMAT;
		vmm_http_resp_clear(&resp);
		return -1;
	}
	char d[72];
	vmm_sha256_digest(resp.body ? resp.body : "", resp.body_len, d);
	if (digest_is_valid(reference) && strcmp(d, reference) != 0)
		rc = vmm_error_set(err, VMM_EFORMAT, "%s: the manifest's bytes hash to `%s`", what,
				   d);
	else if (resp.docker_content_digest &&
		 strncmp(resp.docker_content_digest, "sha256:", 7) == 0 &&
		 strcmp(resp.docker_content_digest, d) != 0)
		rc = vmm_error_set(
		    err, VMM_EFORMAT,
		    "%s: the manifest's bytes hash to `%s`, the registry says `%.80s`", what, d,
		    resp.docker_content_digest);
	if (rc < 0) {
		vmm_http_resp_clear(&resp);
		return -1;
	}
	if (media_type) {
		const char *ct = resp.content_type ? resp.content_type : "";
		size_t n = strcspn(ct, "; \t");
		*media_type = xstrndup(ct, n);
	}
	memcpy(digest, d, sizeof(d));
	*len = resp.body_len;
	*body = resp.body ? steal_ptr(resp.body) : xstrdup("");
	vmm_http_resp_clear(&resp);
	return 0;
}

int vmm_registry_manifest_put(vmm_registry *r, const char *reference, const void *body, size_t len,
			      const char *media_type, vmm_error **err)
{
	cleanup_manifest_call manifest_call m = {0};
	if (manifest_call_init(&m, r, "PUT", reference, err) < 0)
		return -1;
	if (len > MANIFEST_MAX)
		return vmm_error_set(err, VMM_EINVAL, "%s: larger than 4 MiB", m.what);
	cleanup_free char *ct = xasprintf("Content-Type: %s", media_type);
	const char *const headers[] = {ct, NULL};
	m.c.headers = headers;
	m.c.body = body;
	m.c.body_len = len;
	vmm_http_resp resp;
	int rc = perform(r, &m.c, &resp, err);
	if (rc == 0 && resp.status != 201 && resp.status != 200)
		rc = status_error(err, m.what, &resp);
	vmm_http_resp_clear(&resp);
	return rc;
}

int vmm_registry_blob_exists(vmm_registry *r, const char *digest, bool *exists, vmm_error **err)
{
	cleanup_free char *what = xasprintf("HEAD blob `%s`", digest);
	if (!digest_is_valid(digest))
		return vmm_error_set(err, VMM_EINVAL, "%s: invalid digest", what);
	cleanup_free char *url = xasprintf("%s%s/blobs/%s", r->base, r->ns, digest);
	cleanup_free char *scope = scope_pull(r);
	call c = {.what = what, .method = "HEAD", .url = url, .scope = scope, .follow = true};
	vmm_http_resp resp;
	int rc = perform(r, &c, &resp, err);
	if (rc == 0) {
		if (resp.status == 200)
			*exists = true;
		else if (resp.status == 404)
			*exists = false;
		else
			rc = status_error(err, what, &resp);
	}
	vmm_http_resp_clear(&resp);
	return rc;
}

/* Append ?digest= (or &digest=) to an upload Location resolved against `base`. */
static char *upload_url(const char *base, const char *location, const char *digest)
{
	cleanup_free char *abs = vmm_http_resolve(base, location);
	if (!abs)
		return NULL;
	if (!digest)
		return steal_ptr(abs);
	size_t n = strcspn(abs, "#");
	abs[n] = '\0';
	return xasprintf("%s%cdigest=%s", abs, strchr(abs, '?') ? '&' : '?', digest);
}

/* Cancel an upload session nobody will finish (best effort). */
static void abandon_upload(vmm_registry *r, const char *from_url, const char *location,
			   const char *scope)
{
	cleanup_free char *url = upload_url(from_url, location, NULL);
	if (!url)
		return;
	call c = {
	    .what = "DELETE upload", .method = "DELETE", .url = url, .scope = scope, .attempts = 1};
	vmm_http_resp resp;
	perform(r, &c, &resp, NULL);
	vmm_http_resp_clear(&resp);
}

int vmm_registry_blob_mount(vmm_registry *r, const char *digest, const char *from_namespace,
			    bool *mounted, vmm_error **err)
{
	cleanup_free char *what = xasprintf("mount blob `%s` from `%s`", digest, from_namespace);
	if (!digest_is_valid(digest))
		return vmm_error_set(err, VMM_EINVAL, "%s: invalid digest", what);
	if (!*from_namespace || !namespace_is_valid(from_namespace))
		return vmm_error_set(err, VMM_EINVAL, "%s: invalid repository name", what);
	cleanup_free char *url = xasprintf("%s%s/blobs/uploads/?mount=%s&from=%s", r->base, r->ns,
					   digest, from_namespace);
	cleanup_free char *scope =
	    xasprintf("repository:%s:pull,push repository:%s:pull", r->ns, from_namespace);
	call c = {.what = what, .method = "POST", .url = url, .scope = scope};
	vmm_http_resp resp;
	int rc = perform(r, &c, &resp, err);
	if (rc == 0) {
		if (resp.status == 201) {
			*mounted = true;
		} else if (resp.status == 202) {
			*mounted = false;
			if (resp.location)
				abandon_upload(r, resp.url, resp.location, scope);
		} else {
			rc = status_error(err, what, &resp);
		}
	}
	vmm_http_resp_clear(&resp);
	return rc;
}

/* One request of an upload; a 2xx in `ok` moves *location on. */
static int upload_step(vmm_registry *r, call *c, char **location, const char *scope,
		       bool accept_202, vmm_error **err)
{
	c->scope = scope;
	c->attempts = 1; /* the whole upload is retried, not a step of it */
	vmm_http_resp resp;
	int rc = perform(r, c, &resp, err);
	if (rc == 0 && !(resp.status == 201 || (accept_202 && resp.status == 202)))
		rc = status_error(err, c->what, &resp);
	if (rc == 0 && location) {
		if (!resp.location && resp.status == 202) {
			rc = vmm_error_set(err, VMM_EFORMAT, "%s: HTTP 202 without a Location",
					   c->what);
		} else if (resp.location) {
			char *next = upload_url(resp.url, resp.location, NULL);
			if (!next)
				rc = vmm_error_set(err, VMM_EFORMAT, "%s: invalid Location",
						   c->what);
			free(*location);
			*location = next;
		}
	}
	if (rc < 0 && status_retryable(resp.status))
		c->retryable = true;
	vmm_http_resp_clear(&resp);
	return rc;
}

static int upload_once(vmm_registry *r, const char *digest, const uint8_t *data, size_t len,
		       uint64_t chunk_size, bool *retryable, vmm_error **err)
{
	cleanup_free char *scope = scope_push(r);
	cleanup_free char *start = xasprintf("%s%s/blobs/uploads/", r->base, r->ns);
	cleanup_free char *what_post = xasprintf("POST upload of blob `%s`", digest);
	cleanup_free char *loc = NULL;
	call post = {.what = what_post, .method = "POST", .url = start};
	*retryable = false;
	if (upload_step(r, &post, &loc, scope, true, err) < 0) {
		*retryable = post.retryable;
		return -1;
	}
	if (!loc)
		return vmm_error_set(err, VMM_EFORMAT, "%s: no Location", what_post);
	size_t off = 0;
	while (chunk_size && len - off > chunk_size) {
		size_t n = (size_t)chunk_size;
		/* Tart's form: inclusive, no "bytes=" prefix (what distribution and ECR take) */
		char range[64];
		snprintf(range, sizeof(range), "Content-Range: %zu-%zu", off, off + n - 1);
		const char *const headers[] = {range, "Content-Type: application/octet-stream",
					       NULL};
		cleanup_free char *what =
		    xasprintf("PATCH blob `%s` bytes %zu-%zu", digest, off, off + n - 1);
		cleanup_free char *cur = xstrdup(loc); /* upload_step replaces loc */
		call patch = {.what = what,
			      .method = "PATCH",
			      .url = cur,
			      .headers = headers,
			      .body = data + off,
			      .body_len = n};
		int rc = upload_step(r, &patch, &loc, scope, true, err);
		if (rc < 0) {
			*retryable = patch.retryable;
			return -1;
		}
		off += n;
	}
	cleanup_free char *put_url = upload_url(loc, loc, digest);
	cleanup_free char *what = xasprintf("PUT blob `%s`", digest);
	const char *const headers[] = {"Content-Type: application/octet-stream", NULL};
	call put = {.what = what,
		    .method = "PUT",
		    .url = put_url,
		    .headers = headers,
		    .body = data + off,
		    .body_len = len - off};
	if (upload_step(r, &put, NULL, scope, false, err) < 0) {
		*retryable = put.retryable;
		return -1;
	}
	return 0;
}

int vmm_registry_blob_put(vmm_registry *r, const char *digest, const void *data, size_t len,
			  uint64_t chunk_size, vmm_error **err)
{
	if (!digest_is_valid(digest))
		return vmm_error_set(err, VMM_EINVAL, "PUT blob `%s`: invalid digest", digest);
	for (int attempt = 1;; attempt++) {
		bool retryable = false;
		cleanup_vmm_error vmm_error *e = NULL;
		if (upload_once(r, digest, data, len, chunk_size, &retryable, &e) == 0)
			return 0;
		if (!retryable || attempt >= r->max_attempts) {
			if (err) {
				vmm_error_free(*err);
				*err = steal_ptr(e);
			}
			return -1;
		}
		atomic_fetch_add(&r->retries, 1);
		backoff(r, attempt, NULL);
	}
}

typedef struct get_ctx {
	vmm_blob_sink sink;
	void *ctx;
	uint64_t pos, limit; /* limit 0: none */
	bool overflow;
} get_ctx;

static int get_sink(void *ud, const void *data, size_t len)
{
	get_ctx *g = ud;
	if (g->limit && len > g->limit - g->pos) {
		g->overflow = true;
		return -1;
	}
	if (g->sink(g->ctx, data, len) < 0)
		return -1;
	g->pos += len;
	return 0;
}

int vmm_registry_blob_get(vmm_registry *r, const char *digest, uint64_t from,
			  uint64_t expected_size, vmm_blob_sink sink, void *ctx, vmm_error **err)
{
	cleanup_free char *what = xasprintf("GET blob `%s`", digest);
	if (!digest_is_valid(digest))
		return vmm_error_set(err, VMM_EINVAL, "%s: invalid digest", what);
	if (expected_size && from > expected_size)
		return vmm_error_set(err, VMM_EINVAL,
				     "%s: offset %" PRIu64 " beyond its size %" PRIu64, what, from,
				     expected_size);
	if (expected_size && from == expected_size)
		return 0;
	cleanup_free char *url = xasprintf("%s%s/blobs/%s", r->base, r->ns, digest);
	cleanup_free char *scope = scope_pull(r);
	get_ctx g = {.sink = sink, .ctx = ctx, .pos = from, .limit = expected_size};
	call c = {.what = what,
		  .method = "GET",
		  .url = url,
		  .scope = scope,
		  .follow = true,
		  .sink = get_sink,
		  .sink_ctx = &g,
		  .range_from = from};
	int failures = 0;
	for (;;) {
		vmm_http_resp resp;
		int rc = perform(r, &c, &resp, err);
		if (rc < 0 && g.overflow) {
			vmm_error_set(err, VMM_EFORMAT,
				      "%s: more than the expected %" PRIu64 " bytes", what,
				      expected_size);
		} else if (rc == 0 && resp.status == 416 && expected_size && g.pos > from) {
			/* resumed at the registry's end of the blob: it is shorter than announced
			 */
			rc = vmm_error_set(err, VMM_EFORMAT,
					   "%s: ended after %" PRIu64 " of %" PRIu64 " bytes", what,
					   g.pos, expected_size);
		} else if (rc == 0 && resp.status != 200 && resp.status != 206) {
			rc = status_error(err, what, &resp);
		} else if (rc == 0 && expected_size && g.pos < expected_size) {
			/* a clean end before the expected size: resume like a broken transfer */
			if (++failures < r->max_attempts) {
				vmm_http_resp_clear(&resp);
				atomic_fetch_add(&r->retries, 1);
				backoff(r, failures, NULL);
				continue;
			}
			rc = vmm_error_set(err, VMM_EFORMAT,
					   "%s: ended after %" PRIu64 " of %" PRIu64 " bytes", what,
					   g.pos, expected_size);
		}
		vmm_http_resp_clear(&resp);
		return rc;
	}
}

int vmm_registry_check_credentials(const char *host, bool insecure, const char *username,
				   const char *password, vmm_error **err)
{
	vmm_registry_opts o = {.insecure = insecure};
	vmm_registry *r = NULL;
	if (vmm_registry_open(&r, host, "", &o, err) < 0)
		return -1;
	r->creds_fixed = true;
	r->creds = xcalloc(1, sizeof(*r->creds));
	r->creds->username = xstrdup(username);
	r->creds->password = xstrdup(password);
	cleanup_free char *what = xasprintf("GET %s", r->base);
	call c = {.what = what, .method = "GET", .url = r->base, .scope = "", .follow = true};
	vmm_http_resp resp;
	int rc = perform(r, &c, &resp, err);
	if (rc == 0 && resp.status != 200)
		rc = status_error(err, what, &resp);
	if (rc < 0 && err && *err && (*err)->code == VMM_EAUTH &&
	    !strstr((*err)->msg, "invalid credentials"))
		vmm_error_wrap(err, "invalid credentials for `%s`", host);
	vmm_http_resp_clear(&resp);
	vmm_registry_free(r);
	return rc;
}
