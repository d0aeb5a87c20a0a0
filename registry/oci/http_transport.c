/*
 * http_transport.c — one HTTP exchange on libcurl; see http_transport.h.
 */
#include "registry/oci/http_transport.h"
#include "common/util.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <strings.h>

#include <curl/curl.h>

#define POOL_MAX 32
#define MAX_REDIRECTS 10
#define ERROR_BODY_MAX (64 * 1024)
#define HEADER_MAX (16 * 1024)

struct vmm_http {
	CURLSH *share;
	pthread_mutex_t locks[CURL_LOCK_DATA_LAST];
	pthread_mutex_t pool_lock;
	CURL *pool[POOL_MAX];
	size_t npool;
	char *user_agent;
	char *ca_file; /* from SSL_CERT_FILE / CURL_CA_BUNDLE */
	char *ca_dir;  /* from SSL_CERT_DIR */
	long connect_timeout, stall_timeout;
	atomic_long connections;
};

static pthread_once_t global_once = PTHREAD_ONCE_INIT;
static CURLcode global_rc;

static void global_init(void)
{
	global_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

static void share_lock(CURL *c, curl_lock_data data, curl_lock_access access, void *user)
{
	UNUSED(c);
	UNUSED(access);
	vmm_http *h = user;
	pthread_mutex_lock(&h->locks[data]);
}

static void share_unlock(CURL *c, curl_lock_data data, void *user)
{
	UNUSED(c);
	vmm_http *h = user;
	pthread_mutex_unlock(&h->locks[data]);
}

static char *env_path(const char *a, const char *b)
{
	const char *v = getenv(a);
	if ((!v || !*v) && b)
		v = getenv(b);
	return v && *v ? xstrdup(v) : NULL;
}

int vmm_http_new(vmm_http **out, const vmm_http_opts *opts, vmm_error **err)
{
	if (vmm_http_load(err) < 0)
		return -1;
	pthread_once(&global_once, global_init);
	if (global_rc != CURLE_OK)
		return vmm_error_set(err, VMM_EGENERIC, "libcurl initialisation: %s",
				     curl_easy_strerror(global_rc));
	vmm_http *h = xcalloc(1, sizeof(*h));
	for (size_t i = 0; i < ARRAY_SIZE(h->locks); i++)
		pthread_mutex_init(&h->locks[i], NULL);
	pthread_mutex_init(&h->pool_lock, NULL);
	h->user_agent = xstrdup(opts->user_agent);
	/* the curl tool's order: CURL_CA_BUNDLE, then OpenSSL's SSL_CERT_FILE */
	h->ca_file = env_path("CURL_CA_BUNDLE", "SSL_CERT_FILE");
	h->ca_dir = env_path("SSL_CERT_DIR", NULL);
	h->connect_timeout = opts->connect_timeout_s > 0 ? opts->connect_timeout_s : 30;
	h->stall_timeout = opts->stall_timeout_s > 0 ? opts->stall_timeout_s : 30;
	h->share = curl_share_init();
	if (!h->share || curl_share_setopt(h->share, CURLSHOPT_LOCKFUNC, share_lock) ||
	    curl_share_setopt(h->share, CURLSHOPT_UNLOCKFUNC, share_unlock) ||
	    curl_share_setopt(h->share, CURLSHOPT_USERDATA, h) ||
	    curl_share_setopt(h->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS) ||
	    curl_share_setopt(h->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION)) {
		vmm_http_free(h);
		return vmm_error_set(err, VMM_EGENERIC, "libcurl: cannot set up a share handle");
	}
	*out = h;
	return 0;
}

void vmm_http_free(vmm_http *h)
{
	if (!h)
		return;
	/* easy handles first: they reference the share */
	for (size_t i = 0; i < h->npool; i++)
		curl_easy_cleanup(h->pool[i]);
	if (h->share)
		curl_share_cleanup(h->share);
	for (size_t i = 0; i < ARRAY_SIZE(h->locks); i++)
		pthread_mutex_destroy(&h->locks[i]);
	pthread_mutex_destroy(&h->pool_lock);
	free(h->user_agent);
	free(h->ca_file);
	free(h->ca_dir);
	free(h);
}

long vmm_http_connections(vmm_http *h)
{
	return atomic_load(&h->connections);
}

static CURL *pool_get(vmm_http *h)
{
	CURL *c = NULL;
	pthread_mutex_lock(&h->pool_lock);
	if (h->npool)
		c = h->pool[--h->npool];
	pthread_mutex_unlock(&h->pool_lock);
	if (!c)
		c = curl_easy_init();
	if (!c)
		vmm_fatal("out of memory (curl_easy_init)");
	return c;
}

/* Back to the pool with its options reset and its idle connections kept. */
static void pool_put(vmm_http *h, CURL *c)
{
	curl_easy_reset(c);
	pthread_mutex_lock(&h->pool_lock);
	if (h->npool < POOL_MAX) {
		h->pool[h->npool++] = c;
		c = NULL;
	}
	pthread_mutex_unlock(&h->pool_lock);
	if (c)
		curl_easy_cleanup(c);
}

/* --- URLs ------------------------------------------------------------------ */

char *vmm_http_origin(const char *url)
{
	CURLU *u = curl_url();
	char *scheme = NULL, *host = NULL, *port = NULL, *out = NULL;
	if (!u || curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK ||
	    curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
	    curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK ||
	    curl_url_get(u, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT) != CURLUE_OK)
		goto out;
	if (strcasecmp(scheme, "http") != 0 && strcasecmp(scheme, "https") != 0)
		goto out;
	out = xasprintf("%s://%s:%s", scheme, host, port);
	for (char *p = out; *p; p++)
		*p = (char)tolower((unsigned char)*p);
out:
	curl_free(scheme);
	curl_free(host);
	curl_free(port);
	curl_url_cleanup(u);
	return out;
}

char *vmm_http_resolve(const char *base, const char *location)
{
	CURLU *u = curl_url();
	char *s = NULL, *out = NULL;
	if (u && curl_url_set(u, CURLUPART_URL, base, 0) == CURLUE_OK &&
	    curl_url_set(u, CURLUPART_URL, location, 0) == CURLUE_OK &&
	    curl_url_get(u, CURLUPART_URL, &s, 0) == CURLUE_OK)
		out = xstrdup(s);
	curl_free(s);
	curl_url_cleanup(u);
	return out;
}

/* --- one transfer ------------------------------------------------------------ */

typedef struct xfer {
	CURL *curl;
	const vmm_http_req *req;
	vmm_http_resp *resp;
	bool follow;  /* is this hop allowed to redirect */
	bool decided; /* has the body's destination been chosen */
	enum { TO_DISCARD, TO_CAPTURE, TO_ERROR, TO_SINK } dest;
	uint64_t skip; /* bytes of a 200 to drop before the sink (range resumed as 200) */
	size_t cap;    /* body capacity */
	size_t max_body;
	bool too_large;
	bool bad_range;
	size_t up_off; /* upload cursor */
} xfer;

static void set_header(char **slot, const char *v, size_t n)
{
	free(*slot);
	*slot = xstrndup(v, n);
}

static void clear_headers(vmm_http_resp *r)
{
	char **slots[] = {&r->location,		&r->content_type, &r->docker_content_digest,
			  &r->www_authenticate, &r->retry_after,  &r->range};
	for (size_t i = 0; i < ARRAY_SIZE(slots); i++) {
		free(*slots[i]);
		*slots[i] = NULL;
	}
	r->has_content_length = false;
	r->content_length = 0;
}

static size_t on_header(char *buf, size_t size, size_t nmemb, void *ud)
{
	xfer *x = ud;
	vmm_http_resp *r = x->resp;
	size_t len = size * nmemb, n = len;
	if (len >= 5 && memcmp(buf, "HTTP/", 5) == 0) {
		/* a new response (1xx, or the next one): forget the previous headers */
		clear_headers(r);
		return len;
	}
	while (n && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
		n--;
	const char *colon = memchr(buf, ':', n);
	if (!colon)
		return len;
	size_t nl = (size_t)(colon - buf);
	const char *v = colon + 1;
	size_t vl = n - nl - 1;
	while (vl && (*v == ' ' || *v == '\t'))
		v++, vl--;
	while (vl && (v[vl - 1] == ' ' || v[vl - 1] == '\t'))
		vl--;
	if (vl > HEADER_MAX)
		vl = HEADER_MAX;
#define IS(name) (nl == sizeof(name) - 1 && strncasecmp(buf, name, nl) == 0)
	if (IS("location"))
		set_header(&r->location, v, vl);
	else if (IS("content-type"))
		set_header(&r->content_type, v, vl);
	else if (IS("docker-content-digest"))
		set_header(&r->docker_content_digest, v, vl);
	else if (IS("retry-after"))
		set_header(&r->retry_after, v, vl);
	else if (IS("range"))
		set_header(&r->range, v, vl);
	else if (IS("content-length")) {
		cleanup_free char *s = xstrndup(v, vl);
		r->has_content_length = vmm_parse_u64(s, &r->content_length) == 0;
	} else if (IS("www-authenticate")) {
		size_t old = r->www_authenticate ? strlen(r->www_authenticate) : 0;
		if (old + vl + 2 <= HEADER_MAX) {
			r->www_authenticate = xrealloc(r->www_authenticate, old + vl + 3);
			if (old)
				memcpy(r->www_authenticate + old, ", ", 2), old += 2;
			memcpy(r->www_authenticate + old, v, vl);
			r->www_authenticate[old + vl] = '\0';
		}
	}
#undef IS
	return len;
}

static bool is_redirect(long status)
{
	return status == 301 || status == 302 || status == 303 || status == 307 || status == 308;
}

/* Parse "bytes START-END/TOTAL" and check START. */
static bool content_range_starts_at(CURL *c, uint64_t from)
{
	struct curl_header *hd = NULL;
	if (curl_easy_header(c, "Content-Range", 0, CURLH_HEADER, -1, &hd) != CURLHE_OK)
		return false;
	const char *v = hd->value;
	if (strncasecmp(v, "bytes ", 6) != 0)
		return false;
	char *end = NULL;
	errno = 0;
	unsigned long long start = strtoull(v + 6, &end, 10);
	return errno == 0 && end != v + 6 && *end == '-' && start == from;
}

/* First body bytes of a response: choose where they go. */
static void decide(xfer *x)
{
	long status = 0;
	curl_easy_getinfo(x->curl, CURLINFO_RESPONSE_CODE, &status);
	x->decided = true;
	x->skip = 0;
	if (x->follow && is_redirect(status) && x->resp->location) {
		x->dest = TO_DISCARD;
	} else if (status >= 200 && status < 300) {
		x->dest = x->req->sink ? TO_SINK : TO_CAPTURE;
		if (x->req->range_from > 0 && x->dest == TO_SINK) {
			if (status == 200)
				x->skip = x->req->range_from;
			else if (status != 206 ||
				 !content_range_starts_at(x->curl, x->req->range_from))
				x->bad_range = true;
		}
	} else {
		x->dest = TO_ERROR;
	}
}

static bool capture(xfer *x, const char *data, size_t len, size_t limit)
{
	vmm_http_resp *r = x->resp;
	if (r->body_len + len > limit) {
		if (x->dest == TO_ERROR) {
			len = limit - r->body_len; /* error bodies are truncated */
		} else {
			x->too_large = true;
			return false;
		}
	}
	if (r->body_len + len + 1 > x->cap) {
		size_t want = (r->body_len + len + 1) * 2;
		x->cap = want > limit + 1 ? limit + 1 : want;
		r->body = xrealloc(r->body, x->cap);
	}
	memcpy(r->body + r->body_len, data, len);
	r->body_len += len;
	r->body[r->body_len] = '\0';
	return true;
}

static size_t on_write(char *data, size_t size, size_t nmemb, void *ud)
{
	xfer *x = ud;
	size_t len = size * nmemb;
	if (!x->decided)
		decide(x);
	switch (x->dest) {
	case TO_DISCARD:
		return len;
	case TO_ERROR:
		capture(x, data, len, ERROR_BODY_MAX);
		return len;
	case TO_CAPTURE:
		return capture(x, data, len, x->max_body) ? len : 0;
	case TO_SINK:
		break;
	}
	if (x->bad_range)
		return 0;
	size_t off = 0;
	if (x->skip) {
		off = x->skip < len ? (size_t)x->skip : len;
		x->skip -= off;
	}
	if (off < len) {
		if (x->req->sink(x->req->sink_ctx, data + off, len - off) != 0) {
			x->resp->sink_aborted = true;
			return 0;
		}
		x->resp->sunk += len - off;
	}
	return len;
}

static size_t on_read(char *buf, size_t size, size_t nmemb, void *ud)
{
	xfer *x = ud;
	size_t left = x->req->body_len - x->up_off, n = size * nmemb;
	if (n > left)
		n = left;
	if (n)
		memcpy(buf, (const char *)x->req->body + x->up_off, n);
	x->up_off += n;
	return n;
}

static int on_seek(void *ud, curl_off_t off, int origin)
{
	xfer *x = ud;
	if (origin != SEEK_SET || off < 0 || (uint64_t)off > x->req->body_len)
		return CURL_SEEKFUNC_CANTSEEK;
	x->up_off = (size_t)off;
	return CURL_SEEKFUNC_OK;
}

/* Abort early when a captured body announces itself too large. */
static int on_progress(void *ud, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
		       curl_off_t ulnow)
{
	UNUSED(dlnow);
	UNUSED(ultotal);
	UNUSED(ulnow);
	xfer *x = ud;
	if (!x->req->sink && strcmp(x->req->method, "HEAD") != 0 && dltotal > 0 &&
	    (uint64_t)dltotal > x->max_body) {
		long status = 0;
		curl_easy_getinfo(x->curl, CURLINFO_RESPONSE_CODE, &status);
		if (status >= 200 && status < 300) {
			x->too_large = true;
			return 1;
		}
	}
	return 0;
}

static bool curl_retryable(CURLcode rc)
{
	switch (rc) {
	case CURLE_COULDNT_RESOLVE_HOST:
	case CURLE_COULDNT_CONNECT:
	case CURLE_OPERATION_TIMEDOUT:
	case CURLE_SEND_ERROR:
	case CURLE_RECV_ERROR:
	case CURLE_GOT_NOTHING:
	case CURLE_PARTIAL_FILE:
	case CURLE_HTTP2:
	case CURLE_HTTP2_STREAM:
	case CURLE_SSL_CONNECT_ERROR:
		return true;
	default:
		return false;
	}
}

static struct curl_slist *build_headers(const vmm_http_req *req, bool with_auth)
{
	struct curl_slist *l = NULL;
	/* no 100-continue round trip: bodies are in memory and registries answer fast */
	l = curl_slist_append(l, "Expect:");
	for (size_t i = 0; req->headers && req->headers[i]; i++)
		l = curl_slist_append(l, req->headers[i]);
	if (with_auth && req->authorization) {
		cleanup_free char *a = xasprintf("Authorization: %s", req->authorization);
		l = curl_slist_append(l, a);
		explicit_bzero(a, strlen(a));
	}
	if (req->range_from > 0) {
		char r[64];
		snprintf(r, sizeof(r), "Range: bytes=%" PRIu64 "-", req->range_from);
		l = curl_slist_append(l, r);
	}
	if (!l)
		vmm_fatal("out of memory (curl_slist_append)");
	return l;
}

static void setup(vmm_http *h, CURL *c, xfer *x, const char *method, const char *url,
		  struct curl_slist *hdrs, char *errbuf)
{
	const vmm_http_req *req = x->req;
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_SHARE, h->share);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(c, CURLOPT_USERAGENT, h->user_agent);
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
	curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
	curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, h->connect_timeout);
	curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1024L);
	curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, h->stall_timeout);
	curl_easy_setopt(c, CURLOPT_TCP_KEEPALIVE, 1L);
	curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 1L);
	curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 2L);
	if (h->ca_file)
		curl_easy_setopt(c, CURLOPT_CAINFO, h->ca_file);
	if (h->ca_dir)
		curl_easy_setopt(c, CURLOPT_CAPATH, h->ca_dir);
	curl_easy_setopt(c, CURLOPT_BUFFERSIZE, 256L * 1024);
	curl_easy_setopt(c, CURLOPT_UPLOAD_BUFFERSIZE, 2L * 1024 * 1024);
	curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(c, CURLOPT_HEADERDATA, x);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_write);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, x);
	curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
	curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, on_progress);
	curl_easy_setopt(c, CURLOPT_XFERINFODATA, x);
	if (strcmp(method, "HEAD") == 0) {
		curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
	} else if (strcmp(method, "GET") == 0) {
		curl_easy_setopt(c, CURLOPT_HTTPGET, 1L);
	} else if (strcmp(method, "DELETE") == 0) {
		curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, "DELETE");
	} else {
		/* PUT, POST, PATCH: an upload of exactly body_len bytes */
		x->up_off = 0;
		curl_easy_setopt(c, CURLOPT_UPLOAD, 1L);
		curl_easy_setopt(c, CURLOPT_INFILESIZE_LARGE, (curl_off_t)req->body_len);
		curl_easy_setopt(c, CURLOPT_READFUNCTION, on_read);
		curl_easy_setopt(c, CURLOPT_READDATA, x);
		curl_easy_setopt(c, CURLOPT_SEEKFUNCTION, on_seek);
		curl_easy_setopt(c, CURLOPT_SEEKDATA, x);
		if (strcmp(method, "PUT") != 0)
			curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
	}
}

static int transport_error(vmm_error **err, CURLcode rc, const char *errbuf, const char *url)
{
	const char *detail = errbuf[0] ? errbuf : curl_easy_strerror(rc);
	if (rc == CURLE_PEER_FAILED_VERIFICATION || rc == CURLE_SSL_CACERT_BADFILE)
		return vmm_error_set(
		    err, VMM_EGENERIC,
		    "TLS certificate of `%s` is not trusted: %s (point SSL_CERT_FILE "
		    "at a CA bundle that holds its issuer)",
		    url, detail);
	if (rc == CURLE_OPERATION_TIMEDOUT)
		return vmm_error_set(err, VMM_ETIMEOUT, "timed out: %s", detail);
	return vmm_error_set(err, VMM_EGENERIC, "%s", detail);
}

static void body_reset(vmm_http_resp *r)
{
	free(r->body);
	r->body = NULL;
	r->body_len = 0;
}

int vmm_http_do(vmm_http *h, const vmm_http_req *req, vmm_http_resp *resp, vmm_error **err)
{
	memset(resp, 0, sizeof(*resp));
	cleanup_free char *url = xstrdup(req->url);
	cleanup_free char *origin =
	    req->auth_origin ? xstrdup(req->auth_origin) : vmm_http_origin(req->url);
	if (!origin)
		return vmm_error_set(err, VMM_EINVAL, "not an http(s) URL: `%s`", req->url);
	const char *method = req->method;
	CURL *c = pool_get(h);
	int rc = -1;
	for (int hop = 0;; hop++) {
		cleanup_free char *here = vmm_http_origin(url);
		bool same = here && strcmp(here, origin) == 0;
		struct curl_slist *hdrs = build_headers(req, same);
		char errbuf[CURL_ERROR_SIZE] = "";
		xfer x = {.curl = c, .req = req, .resp = resp, .follow = req->follow_redirects};
		x.max_body = req->max_body ? req->max_body : 1024 * 1024;
		body_reset(resp);
		clear_headers(resp);
		setup(h, c, &x, method, url, hdrs, errbuf);
		CURLcode cr = curl_easy_perform(c);
		curl_slist_free_all(hdrs);
		long nc = 0;
		curl_easy_getinfo(c, CURLINFO_NUM_CONNECTS, &nc);
		atomic_fetch_add(&h->connections, nc);
		curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &resp->status);
		if (x.too_large) {
			vmm_error_set(err, EFBIG, "response body larger than %zu bytes",
				      x.max_body);
			break;
		}
		if (x.bad_range) {
			vmm_error_set(err, VMM_EFORMAT,
				      "asked for bytes from %" PRIu64 " on, got HTTP %ld without a "
				      "matching Content-Range",
				      req->range_from, resp->status);
			break;
		}
		if (cr == CURLE_WRITE_ERROR && resp->sink_aborted) {
			vmm_error_set(err, VMM_EGENERIC, "aborted");
			break;
		}
		if (cr != CURLE_OK && x.dest == TO_ERROR && resp->status >= 300) {
			/* an error status whose body broke off: the status is what counts */
			cr = CURLE_OK;
		}
		if (cr != CURLE_OK) {
			resp->retryable = curl_retryable(cr);
			transport_error(err, cr, errbuf, url);
			break;
		}
		if (!(req->follow_redirects && is_redirect(resp->status) && resp->location)) {
			resp->url = steal_ptr(url);
			rc = 0;
			break;
		}
		if (hop == MAX_REDIRECTS) {
			vmm_error_set(err, VMM_EGENERIC, "more than %d redirects", MAX_REDIRECTS);
			break;
		}
		char *next = vmm_http_resolve(url, resp->location);
		cleanup_free char *next_origin = next ? vmm_http_origin(next) : NULL;
		if (!next_origin) {
			free(next);
			vmm_error_set(err, VMM_EFORMAT, "redirect to an invalid URL");
			break;
		}
		if (strncmp(here, "https:", 6) == 0 && strncmp(next_origin, "http:", 5) == 0) {
			free(next);
			vmm_error_set(err, VMM_EGENERIC, "refusing a redirect from https to http");
			break;
		}
		free(url);
		url = next;
		if (resp->status == 303 && strcmp(method, "HEAD") != 0)
			method = "GET";
	}
	pool_put(h, c);
	return rc;
}

void vmm_http_resp_clear(vmm_http_resp *resp)
{
	if (!resp)
		return;
	clear_headers(resp);
	free(resp->body);
	free(resp->url);
	memset(resp, 0, sizeof(*resp));
}
