/*
 * The registry client against real registries.  Each case needs a part that
 * tests/integration/test_registry_client.sh starts and names in the
 * environment; without it the case is skipped, so `tests/run.sh unit` passes
 * on a machine with no registry running.
 *
 *   VMM_TEST_REGISTRY         plain registry (no auth)              host:port
 *   VMM_TEST_REGISTRY_BASIC   htpasswd registry (VMM_TEST_USER/_PASSWORD)
 *   VMM_TEST_REGISTRY_TOKEN   token-auth registry, anonymous pull allowed;
 *                             VMM_TEST_TOKEN_LOG: the token server's request log
 *   VMM_TEST_PROXY_CUT        fault proxy in front of the plain registry that
 *                             cuts the first blob GET after VMM_TEST_CUT_AFTER bytes;
 *                             VMM_TEST_PROXY_CUT_LOG its request log
 *   VMM_TEST_PROXY_STALL      same, but stalls instead of closing
 *   VMM_TEST_PROXY_NORANGE    same as _CUT, but drops Range headers (a 200 answers a
 *                             resumed GET); VMM_TEST_PROXY_NORANGE_LOG
 *   VMM_TEST_PROXY_503        fault proxy: the first 2 requests get 503 + Retry-After: 1
 *   VMM_TEST_PROXY_FAIL       fault proxy: every request gets 503 (no Retry-After)
 *   VMM_TEST_PROXY_CHALLENGE  fault proxy: every request gets 401 with a broken challenge
 *   VMM_TEST_REDIRECT         redirect front of the htpasswd registry;
 *                             VMM_TEST_REDIRECT_LOG the blob server's request log
 *   VMM_TEST_PROXY_HOSTILE    fault proxy in front of the plain registry serving the
 *                             bytes of VMM_TEST_HOSTILE_MANIFEST for every manifest GET
 *                             and of VMM_TEST_HOSTILE_BLOB for every blob GET, with
 *                             Set-Cookie on every answer; VMM_TEST_PROXY_HOSTILE_LOG
 *   VMM_TEST_REGISTRY_TOKEN_SHORT  token-auth registry whose tokens live 4 s
 *   VMM_TEST_SKOPEO_OUT       file to write the pushed image's reference and digests to
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "common/json.h"
#include "common/util.h"
#include "registry/oci/client.h"

static const char *need(const char *var)
{
	const char *v = getenv(var);
	return v && *v ? v : NULL;
}

#define NEED(var)                                                                                  \
	({                                                                                         \
		const char *v_ = need(var);                                                        \
		if (!v_) {                                                                         \
			print_message("    (skipped: %s not set)\n", var);                         \
			skip();                                                                    \
		}                                                                                  \
		v_;                                                                                \
	})

/* Environment credentials for `host` (they go to no other host: credentials.h). */
static void creds_on(const char *host)
{
	setenv("VMM_REGISTRY_USERNAME", getenv("VMM_TEST_USER") ?: "alice", 1);
	setenv("VMM_REGISTRY_PASSWORD", getenv("VMM_TEST_PASSWORD") ?: "secret", 1);
	setenv("VMM_REGISTRY_HOSTNAME", host, 1);
}

static void creds_wrong(const char *host)
{
	setenv("VMM_REGISTRY_USERNAME", getenv("VMM_TEST_USER") ?: "alice", 1);
	setenv("VMM_REGISTRY_PASSWORD", "not-the-password", 1);
	setenv("VMM_REGISTRY_HOSTNAME", host, 1);
}

static void creds_off(void)
{
	static const char *const vars[] = {"VMM_REGISTRY_USERNAME",  "VMM_REGISTRY_PASSWORD",
					   "VMM_REGISTRY_HOSTNAME",  "TART_REGISTRY_USERNAME",
					   "TART_REGISTRY_PASSWORD", "TART_REGISTRY_HOSTNAME"};
	for (size_t i = 0; i < sizeof(vars) / sizeof(vars[0]); i++)
		unsetenv(vars[i]);
}

static vmm_registry *open_repo(const char *host, const char *ns)
{
	vmm_registry_opts o = {.insecure = true, .retry_base_ms = 20, .max_attempts = 5};
	vmm_registry *r = NULL;
	vmm_error *err = NULL;
	if (vmm_registry_open(&r, host, ns, &o, &err) < 0)
		fail_msg("open %s/%s: %s", host, ns, err->msg);
	return r;
}

/* A unique repository name per case so reruns and cases do not see each other. */
static char *repo(const char *base)
{
	unsigned char b[4];
	char hex[9];
	vmm_random_bytes(b, sizeof(b));
	vmm_hex(b, sizeof(b), hex);
	return xasprintf("vmm-test/%s-%s", base, hex);
}

typedef struct blob {
	unsigned char *data;
	size_t len;
	char digest[72];
} blob;

static blob blob_random(size_t len)
{
	blob b = {.data = xmalloc(len ? len : 1), .len = len};
	vmm_random_bytes(b.data, len);
	vmm_sha256_digest(b.data, len, b.digest);
	return b;
}

typedef struct buf {
	unsigned char *p;
	size_t len;
	size_t calls;
} buf;

static int buf_sink(void *ctx, const void *data, size_t len)
{
	buf *b = ctx;
	b->p = xrealloc(b->p, b->len + len + 1);
	memcpy(b->p + b->len, data, len);
	b->len += len;
	b->calls++;
	return 0;
}

static void expect_ok(int rc, vmm_error *err, const char *what)
{
	if (rc != 0)
		fail_msg("%s: %s", what, err ? err->msg : "(no error)");
}

static void expect_fail(int rc, vmm_error *err, int code, const char *substr)
{
	if (rc == 0)
		fail_msg("expected failure with `%s`", substr);
	assert_non_null(err);
	if (substr && !strstr(err->msg, substr))
		fail_msg("error `%s` lacks `%s`", err->msg, substr);
	if (code && err->code != code)
		fail_msg("error `%s` has code %d, wanted %d", err->msg, err->code, code);
	assert_null(strchr(err->msg, '\n'));
}

static void get_and_compare(vmm_registry *r, const blob *b)
{
	buf got = {0};
	vmm_error *err = NULL;
	expect_ok(vmm_registry_blob_get(r, b->digest, 0, b->len, buf_sink, &got, &err), err,
		  "blob get");
	assert_int_equal(got.len, b->len);
	assert_memory_equal(got.p, b->data, b->len);
	free(got.p);
}

/* --- blobs --------------------------------------------------------------------- */

static void test_client_blob__put_monolithic(void **state)
{
	(void)state;
	const char *host = NEED("VMM_TEST_REGISTRY");
	char *ns = repo("mono");
	vmm_registry *r = open_repo(host, ns);
	blob b = blob_random(3 * 1024 * 1024 + 17);
	vmm_error *err = NULL;
	bool exists = true;
	expect_ok(vmm_registry_blob_exists(r, b.digest, &exists, &err), err, "head");
	assert_false(exists);
	expect_ok(vmm_registry_blob_put(r, b.digest, b.data, b.len, 0, &err), err, "put");
	expect_ok(vmm_registry_blob_exists(r, b.digest, &exists, &err), err, "head");
	assert_true(exists);
	get_and_compare(r, &b);
	/* an empty blob too */
	blob e = blob_random(0);
	expect_ok(vmm_registry_blob_put(r, e.digest, e.data, 0, 0, &err), err, "put empty");
	expect_ok(vmm_registry_blob_exists(r, e.digest, &exists, &err), err, "head empty");
	assert_true(exists);
	free(e.data);
	free(b.data);
	free(ns);
	vmm_registry_free(r);
}

static void test_client_blob__put_chunked(void **state)
{
	(void)state;
	const char *host = NEED("VMM_TEST_REGISTRY");
	char *ns = repo("chunked");
	vmm_registry *r = open_repo(host, ns);
	blob b = blob_random(2 * 1024 * 1024 + 512 * 1024 + 3);
	vmm_error *err = NULL;
	vmm_registry_stats before, after;
	vmm_registry_get_stats(r, &before);
	expect_ok(vmm_registry_blob_put(r, b.digest, b.data, b.len, 1024 * 1024, &err), err,
		  "chunked put");
	vmm_registry_get_stats(r, &after);
	/* POST, PATCH, PATCH, PUT */
	assert_int_equal(after.requests - before.requests, 4);
	bool exists = false;
	expect_ok(vmm_registry_blob_exists(r, b.digest, &exists, &err), err, "head");
	assert_true(exists);
	get_and_compare(r, &b);
	/* a blob exactly one chunk long goes in one PUT */
	blob c = blob_random(1024 * 1024);
	vmm_registry_get_stats(r, &before);
	expect_ok(vmm_registry_blob_put(r, c.digest, c.data, c.len, 1024 * 1024, &err), err,
		  "one-chunk put");
	vmm_registry_get_stats(r, &after);
	assert_int_equal(after.requests - before.requests, 2);
	get_and_compare(r, &c);
	free(c.data);
	free(b.data);
	free(ns);
	vmm_registry_free(r);
}

static void test_client_blob__head_and_get_missing(void **state)
{
	(void)state;
	const char *host = NEED("VMM_TEST_REGISTRY");
	char *ns = repo("missing");
	vmm_registry *r = open_repo(host, ns);
	blob b = blob_random(10);
	vmm_error *err = NULL;
	bool exists = true;
	expect_ok(vmm_registry_blob_exists(r, b.digest, &exists, &err), err, "head");
	assert_false(exists);
	buf got = {0};
	int rc = vmm_registry_blob_get(r, b.digest, 0, 0, buf_sink, &got, &err);
	expect_fail(rc, err, VMM_ENOTFOUND, "HTTP 404 BLOB_UNKNOWN");
	assert_non_null(strstr(err->msg, b.digest));
	assert_int_equal(got.len, 0);
	vmm_error_free(err);
	err = NULL;
	rc = vmm_registry_blob_exists(r, "sha256:nothex", &exists, &err);
	expect_fail(rc, err, VMM_EINVAL, "invalid digest");
	vmm_error_free(err);
	free(b.data);
	free(ns);
	vmm_registry_free(r);
}

static void test_client_blob__mount(void **state)
{
	(void)state;
	const char *host = NEED("VMM_TEST_REGISTRY");
	char *a = repo("mount-a"), *bns = repo("mount-b");
	vmm_registry *ra = open_repo(host, a), *rb = open_repo(host, bns);
	blob b = blob_random(100 * 1024);
	vmm_error *err = NULL;
	expect_ok(vmm_registry_blob_put(ra, b.digest, b.data, b.len, 0, &err), err, "put");
	bool mounted = false, exists = true;
	expect_ok(vmm_registry_blob_exists(rb, b.digest, &exists, &err), err, "head b");
	assert_false(exists);
	expect_ok(vmm_registry_blob_mount(rb, b.digest, a, &mounted, &err), err, "mount");
	assert_true(mounted);
	expect_ok(vmm_registry_blob_exists(rb, b.digest, &exists, &err), err, "head b");
	assert_true(exists);
	get_and_compare(rb, &b);
	/* a blob the source does not have: declined, not an error */
	blob n = blob_random(10);
	mounted = true;
	expect_ok(vmm_registry_blob_mount(rb, n.digest, a, &mounted, &err), err, "mount missing");
	assert_false(mounted);
	free(n.data);
	free(b.data);
	free(a);
	free(bns);
	vmm_registry_free(ra);
	vmm_registry_free(rb);
}

static void test_client_blob__range_from(void **state)
{
	(void)state;
	const char *host = NEED("VMM_TEST_REGISTRY");
	char *ns = repo("range");
	vmm_registry *r = open_repo(host, ns);
	blob b = blob_random(300000);
	vmm_error *err = NULL;
	expect_ok(vmm_registry_blob_put(r, b.digest, b.data, b.len, 0, &err), err, "put");
	buf got = {0};
	expect_ok(vmm_registry_blob_get(r, b.digest, 123456, b.len, buf_sink, &got, &err), err,
		  "get from");
	assert_int_equal(got.len, b.len - 123456);
	assert_memory_equal(got.p, b.data + 123456, got.len);
	free(got.p);
	/* a lying expected size: more bytes than announced is an error */
	memset(&got, 0, sizeof(got));
	int rc = vmm_registry_blob_get(r, b.digest, 0, 1000, buf_sink, &got, &err);
	expect_fail(rc, err, VMM_EFORMAT, "more than the expected 1000 bytes");
	assert_true(got.len <= 1000);
	free(got.p);
	vmm_error_free(err);
	err = NULL;
	/* fewer bytes than expected, every time: an error once retries are spent */
	memset(&got, 0, sizeof(got));
	rc = vmm_registry_blob_get(r, b.digest, 0, b.len + 10, buf_sink, &got, &err);
	expect_fail(rc, err, VMM_EFORMAT, "ended after 300000 of 300010 bytes");
	assert_int_equal(got.len, b.len);
	free(got.p);
	vmm_error_free(err);
	free(b.data);
	free(ns);
	vmm_registry_free(r);
}

/* --- manifests ----------------------------------------------------------------- */

static void test_client_manifest__put_get(void **state)
{
	(void)state;
	const char *host = NEED("VMM_TEST_REGISTRY");
	char *ns = repo("manifest");
	vmm_registry *r = open_repo(host, ns);
	vmm_error *err = NULL;
	blob cfg = blob_random(0);
	free(cfg.data);
	const char *cfg_text = "{\"architecture\":\"arm64\",\"os\":\"darwin\"}";
	cfg.data = (unsigned char *)xstrdup(cfg_text);
	cfg.len = strlen(cfg_text);
	vmm_sha256_digest(cfg.data, cfg.len, cfg.digest);
	expect_ok(vmm_registry_blob_put(r, cfg.digest, cfg.data, cfg.len, 0, &err), err, "cfg");
	char *m = xasprintf("{\"schemaVersion\":2,\"mediaType\":\"%s\",\"config\":{\"mediaType\":"
			    "\"%s\",\"digest\":\"%s\",\"size\":%zu},\"layers\":[]}",
			    VMM_MEDIA_OCI_MANIFEST, VMM_MEDIA_OCI_CONFIG, cfg.digest, cfg.len);
	char md[72];
	vmm_sha256_digest(m, strlen(m), md);
	expect_ok(vmm_registry_manifest_put(r, "v1", m, strlen(m), VMM_MEDIA_OCI_MANIFEST, &err),
		  err, "manifest put");
	char *body = NULL, *mt = NULL, digest[72];
	size_t len = 0;
	expect_ok(vmm_registry_manifest_get(r, "v1", &body, &len, &mt, digest, &err), err, "get");
	assert_int_equal(len, strlen(m));
	assert_memory_equal(body, m, len);
	assert_string_equal(digest, md);
	assert_string_equal(mt, VMM_MEDIA_OCI_MANIFEST);
	free(body);
	free(mt);
	/* by digest */
	expect_ok(vmm_registry_manifest_get(r, md, &body, &len, NULL, digest, &err), err,
		  "get by digest");
	assert_memory_equal(body, m, len);
	free(body);
	/* unknown tag */
	int rc = vmm_registry_manifest_get(r, "nope", &body, &len, NULL, digest, &err);
	expect_fail(rc, err, VMM_ENOTFOUND, "GET manifest `nope`: HTTP 404 MANIFEST_UNKNOWN");
	vmm_error_free(err);
	err = NULL;
	rc = vmm_registry_manifest_get(r, "../x", &body, &len, NULL, digest, &err);
	expect_fail(rc, err, VMM_EINVAL, "invalid tag");
	vmm_error_free(err);
	free(m);
	free(cfg.data);
	free(ns);
	vmm_registry_free(r);
}

/* --- resumption, stalls, retries ------------------------------------------------ */

typedef struct log_line {
	char *method, *path, *range;
	long status, sent;
	bool cut, authorization;
} log_line;

/* Lines of a fault proxy log whose path contains `needle`. */
static size_t read_proxy_log(const char *path, const char *needle, log_line *out, size_t max)
{
	char *text = NULL;
	size_t len = 0, n = 0;
	vmm_error *err = NULL;
	if (vmm_read_file(path, 16 * 1024 * 1024, &text, &len, &err) < 0)
		fail_msg("%s", err->msg);
	char *save = NULL;
	for (char *l = strtok_r(text, "\n", &save); l && n < max; l = strtok_r(NULL, "\n", &save)) {
		json_t *j = json_loads(l, 0, NULL);
		assert_non_null(j);
		const char *p = json_string_value(json_object_get(j, "path"));
		if (p && strstr(p, needle)) {
			const char *rg = json_string_value(json_object_get(j, "range"));
			out[n++] =
			    (log_line){xstrdup(json_string_value(json_object_get(j, "method"))),
				       xstrdup(p),
				       rg ? xstrdup(rg) : NULL,
				       (long)json_integer_value(json_object_get(j, "status")),
				       (long)json_integer_value(json_object_get(j, "sent")),
				       json_is_true(json_object_get(j, "cut")),
				       json_is_true(json_object_get(j, "authorization"))};
		}
		json_decref(j);
	}
	free(text);
	return n;
}

static void log_lines_free(log_line *l, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(l[i].method);
		free(l[i].path);
		free(l[i].range);
	}
}

static void resume_through(const char *proxy_var, const char *log_var, long stall_s,
			   bool range_ignored)
{
	const char *host = NEED("VMM_TEST_REGISTRY");
	const char *proxy = NEED(proxy_var);
	const char *log = NEED(log_var);
	long cut_after = atol(NEED("VMM_TEST_CUT_AFTER"));
	char *ns = repo("resume");
	vmm_registry *direct = open_repo(host, ns);
	vmm_registry_opts o = {.insecure = true, .retry_base_ms = 20, .stall_timeout_s = stall_s};
	vmm_registry *r = NULL;
	vmm_error *err = NULL;
	expect_ok(vmm_registry_open(&r, proxy, ns, &o, &err), err, "open proxy");
	blob b = blob_random((size_t)cut_after * 4 + 1234);
	expect_ok(vmm_registry_blob_put(direct, b.digest, b.data, b.len, 0, &err), err, "put");
	buf got = {0};
	double t0 = vmm_now();
	expect_ok(vmm_registry_blob_get(r, b.digest, 0, b.len, buf_sink, &got, &err), err,
		  "get through the cutting proxy");
	double took = vmm_now() - t0;
	assert_int_equal(got.len, b.len);
	assert_memory_equal(got.p, b.data, b.len);
	if (stall_s)
		assert_true(took < stall_s + 10);
	/* the proxy saw: one GET cut after cut_after bytes, one Range GET for the rest */
	log_line l[8];
	size_t n = read_proxy_log(log, b.digest, l, 8);
	assert_int_equal(n, 2);
	assert_string_equal(l[0].method, "GET");
	assert_true(l[0].cut);
	assert_int_equal(l[0].sent, cut_after);
	assert_null(l[0].range);
	char want[64];
	snprintf(want, sizeof(want), "bytes=%ld-", cut_after);
	assert_non_null(l[1].range);
	assert_string_equal(l[1].range, want);
	if (range_ignored) {
		/* the whole blob came again: the sink still saw each byte once (checked above) */
		assert_int_equal(l[1].status, 200);
		assert_int_equal(l[1].sent, (long)b.len);
	} else {
		assert_int_equal(l[1].status, 206);
		/* no byte crossed the wire twice */
		assert_int_equal(l[0].sent + l[1].sent, (long)b.len);
	}
	log_lines_free(l, n);
	free(got.p);
	free(b.data);
	free(ns);
	vmm_registry_free(r);
	vmm_registry_free(direct);
}

static void test_client_resume__cut_connection(void **state)
{
	(void)state;
	resume_through("VMM_TEST_PROXY_CUT", "VMM_TEST_PROXY_CUT_LOG", 0, false);
}

static void test_client_resume__range_ignored(void **state)
{
	(void)state;
	resume_through("VMM_TEST_PROXY_NORANGE", "VMM_TEST_PROXY_NORANGE_LOG", 0, true);
}

static void test_client_resume__stalled_transfer(void **state)
{
	(void)state;
	resume_through("VMM_TEST_PROXY_STALL", "VMM_TEST_PROXY_STALL_LOG", 2, false);
}

static void test_client_retry__retry_after(void **state)
{
	(void)state;
	const char *proxy = NEED("VMM_TEST_PROXY_503");
	char *ns = repo("retry");
	vmm_registry *r = open_repo(proxy, ns);
	vmm_error *err = NULL;
	bool exists = true;
	blob b = blob_random(10);
	double t0 = vmm_now();
	expect_ok(vmm_registry_blob_exists(r, b.digest, &exists, &err), err, "head after 503s");
	double took = vmm_now() - t0;
	assert_false(exists);
	vmm_registry_stats st;
	vmm_registry_get_stats(r, &st);
	assert_int_equal(st.retries, 2);
	/* Retry-After: 1, twice; the backoff base alone (20 ms) would be far quicker */
	if (took < 1.9)
		fail_msg("retried after %.2f s, Retry-After asked for 2 s in all", took);
	free(b.data);
	free(ns);
	vmm_registry_free(r);
}

static void test_client_retry__exhausted(void **state)
{
	(void)state;
	const char *proxy = NEED("VMM_TEST_PROXY_FAIL");
	char *ns = repo("exhausted");
	vmm_registry_opts o = {.insecure = true, .retry_base_ms = 10, .max_attempts = 3};
	vmm_registry *r = NULL;
	vmm_error *err = NULL;
	expect_ok(vmm_registry_open(&r, proxy, ns, &o, &err), err, "open");
	char *body = NULL, digest[72];
	size_t len;
	int rc = vmm_registry_manifest_get(r, "latest", &body, &len, NULL, digest, &err);
	expect_fail(rc, err, 0, "GET manifest `latest`: HTTP 503 UNAVAILABLE: injected");
	vmm_registry_stats st;
	vmm_registry_get_stats(r, &st);
	assert_int_equal(st.requests, 3);
	vmm_error_free(err);
	err = NULL;
	/* nothing listening: a transport error, retried, then reported */
	vmm_registry *dead = NULL;
	expect_ok(vmm_registry_open(&dead, "127.0.0.1:1", ns, &o, &err), err, "open");
	double t0 = vmm_now();
	rc = vmm_registry_manifest_get(dead, "latest", &body, &len, NULL, digest, &err);
	expect_fail(rc, err, 0, "GET manifest `latest`: ");
	assert_true(vmm_now() - t0 < 5);
	vmm_error_free(err);
	free(ns);
	vmm_registry_free(dead);
	vmm_registry_free(r);
}

/* --- redirects ------------------------------------------------------------------ */

static void test_client_redirect__no_authorization(void **state)
{
	(void)state;
	const char *basic = NEED("VMM_TEST_REGISTRY_BASIC");
	const char *front = NEED("VMM_TEST_REDIRECT");
	const char *log = NEED("VMM_TEST_REDIRECT_LOG");
	creds_on(basic);
	/* the front wants the same user: Tart's variables, scoped to it */
	setenv("TART_REGISTRY_USERNAME", getenv("VMM_TEST_USER") ?: "alice", 1);
	setenv("TART_REGISTRY_PASSWORD", getenv("VMM_TEST_PASSWORD") ?: "secret", 1);
	setenv("TART_REGISTRY_HOSTNAME", front, 1);
	char *ns = repo("redirect");
	vmm_registry *direct = open_repo(basic, ns), *r = open_repo(front, ns);
	blob b = blob_random(200000);
	vmm_error *err = NULL;
	expect_ok(vmm_registry_blob_put(direct, b.digest, b.data, b.len, 0, &err), err, "put");
	get_and_compare(r, &b);
	/* resumed downloads go through the redirect as well */
	buf got = {0};
	expect_ok(vmm_registry_blob_get(r, b.digest, 1000, b.len, buf_sink, &got, &err), err,
		  "get from 1000");
	assert_memory_equal(got.p, b.data + 1000, b.len - 1000);
	free(got.p);
	/* the blob server on another address got the requests, none with Authorization */
	char *text = NULL;
	size_t len = 0, seen = 0;
	expect_ok(vmm_read_file(log, 16 << 20, &text, &len, &err), err, "read log");
	char *save = NULL;
	for (char *l = strtok_r(text, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
		json_t *j = json_loads(l, 0, NULL);
		assert_non_null(j);
		if (strstr(json_string_value(json_object_get(j, "path")), b.digest)) {
			seen++;
			const char *k;
			json_t *v;
			json_object_foreach(json_object_get(j, "headers"), k, v)
			{
				if (strcasecmp(k, "authorization") == 0)
					fail_msg("Authorization reached the other host: %s", l);
				if (strcasecmp(k, "cookie") == 0)
					fail_msg("a cookie reached the other host: %s", l);
			}
		}
		json_decref(j);
	}
	assert_int_equal(seen, 2);
	free(text);
	creds_off();
	free(b.data);
	free(ns);
	vmm_registry_free(r);
	vmm_registry_free(direct);
}

/* --- authentication --------------------------------------------------------------- */

static void test_client_auth__basic(void **state)
{
	(void)state;
	const char *host = NEED("VMM_TEST_REGISTRY_BASIC");
	char *ns = repo("basic");
	vmm_error *err = NULL;
	blob b = blob_random(5000);
	/* no credentials at all */
	creds_off();
	vmm_registry *r = open_repo(host, ns);
	bool exists;
	int rc = vmm_registry_blob_exists(r, b.digest, &exists, &err);
	expect_fail(rc, err, VMM_EAUTH, "requires a user name and password");
	vmm_error_free(err);
	err = NULL;
	vmm_registry_free(r);
	/* wrong password */
	creds_wrong(host);
	r = open_repo(host, ns);
	rc = vmm_registry_blob_exists(r, b.digest, &exists, &err);
	expect_fail(rc, err, VMM_EAUTH, "invalid credentials");
	assert_null(strstr(err->msg, "not-the-password"));
	vmm_error_free(err);
	err = NULL;
	vmm_registry_free(r);
	/* right password: push and pull */
	creds_on(host);
	r = open_repo(host, ns);
	expect_ok(vmm_registry_blob_put(r, b.digest, b.data, b.len, 0, &err), err, "put");
	get_and_compare(r, &b);
	vmm_registry_free(r);
	creds_off();
	free(b.data);
	free(ns);
}

typedef struct token_req {
	char *user;   /* NULL: anonymous */
	char *scopes; /* space-joined */
	long status;
} token_req;

static size_t read_token_log(token_req *out, size_t max)
{
	const char *path = NEED("VMM_TEST_TOKEN_LOG");
	char *text = NULL;
	size_t len = 0, n = 0;
	vmm_error *err = NULL;
	expect_ok(vmm_read_file(path, 16 << 20, &text, &len, &err), err, "read token log");
	char *save = NULL;
	for (char *l = strtok_r(text, "\n", &save); l && n < max; l = strtok_r(NULL, "\n", &save)) {
		json_t *j = json_loads(l, 0, NULL);
		assert_non_null(j);
		json_t *sc = json_object_get(j, "scopes");
		char *s = xstrdup("");
		for (size_t i = 0; i < json_array_size(sc); i++) {
			char *t = xasprintf("%s%s%s", s, i ? " " : "",
					    json_string_value(json_array_get(sc, i)));
			free(s);
			s = t;
		}
		const char *u = json_string_value(json_object_get(j, "user"));
		out[n++] = (token_req){u ? xstrdup(u) : NULL, s,
				       (long)json_integer_value(json_object_get(j, "status"))};
		json_decref(j);
	}
	free(text);
	return n;
}

static void token_reqs_free(token_req *t, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(t[i].user);
		free(t[i].scopes);
	}
}

/* Token requests made for repository ns, in order. */
static size_t token_reqs_for(const char *ns, token_req *out, size_t max)
{
	token_req all[256];
	size_t n = read_token_log(all, 256), m = 0;
	for (size_t i = 0; i < n; i++) {
		if (strstr(all[i].scopes, ns) && m < max)
			out[m++] = all[i];
		else
			token_reqs_free(&all[i], 1);
	}
	return m;
}

static void test_client_auth__anonymous_bearer(void **state)
{
	(void)state;
	const char *host = NEED("VMM_TEST_REGISTRY_TOKEN");
	creds_off();
	char *ns = repo("anon");
	vmm_registry *r = open_repo(host, ns);
	vmm_error *err = NULL;
	char *body = NULL, digest[72];
	size_t len;
	/* the token works: the registry gets far enough to say the tag is unknown */
	int rc = vmm_registry_manifest_get(r, "latest", &body, &len, NULL, digest, &err);
	expect_fail(rc, err, VMM_ENOTFOUND, "MANIFEST_UNKNOWN");
	vmm_error_free(err);
	err = NULL;
	/* anonymous push is refused: one line, an auth error, no secret */
	blob b = blob_random(100);
	rc = vmm_registry_blob_put(r, b.digest, b.data, b.len, 0, &err);
	expect_fail(rc, err, VMM_EAUTH, "without credentials");
	vmm_error_free(err);
	token_req t[8];
	size_t n = token_reqs_for(ns, t, 8);
	assert_true(n >= 2);
	assert_null(t[0].user);
	assert_int_equal(t[0].status, 200);
	char *want = xasprintf("repository:%s:pull", ns);
	assert_string_equal(t[0].scopes, want);
	free(want);
	token_reqs_free(t, n);
	free(b.data);
	free(ns);
	vmm_registry_free(r);
}

static void test_client_auth__bearer_scope_widening(void **state)
{
	(void)state;
	const char *host = NEED("VMM_TEST_REGISTRY_TOKEN");
	creds_on(host);
	char *ns = repo("bearer");
	vmm_registry *r = open_repo(host, ns);
	vmm_error *err = NULL;
	blob b = blob_random(64 * 1024);
	bool exists = true;
	expect_ok(vmm_registry_blob_exists(r, b.digest, &exists, &err), err, "head (pull)");
	assert_false(exists);
	expect_ok(vmm_registry_blob_put(r, b.digest, b.data, b.len, 0, &err), err, "put (push)");
	/* pulls now ride on the wider token: no third fetch */
	expect_ok(vmm_registry_blob_exists(r, b.digest, &exists, &err), err, "head again");
	assert_true(exists);
	get_and_compare(r, &b);
	vmm_registry_stats st;
	vmm_registry_get_stats(r, &st);
	assert_int_equal(st.token_fetches, 2);
	token_req t[8];
	size_t n = token_reqs_for(ns, t, 8);
	assert_int_equal(n, 2);
	char *pull = xasprintf("repository:%s:pull", ns);
	char *push = xasprintf("repository:%s:pull,push", ns);
	assert_string_equal(t[0].scopes, pull);
	assert_string_equal(t[1].scopes, push);
	assert_string_equal(t[0].user, getenv("VMM_TEST_USER") ?: "alice");
	assert_string_equal(t[1].user, getenv("VMM_TEST_USER") ?: "alice");
	free(pull);
	free(push);
	token_reqs_free(t, n);
	/* cross-repository mount asks for both repositories in one token */
	char *ns2 = repo("bearer-mount");
	vmm_registry *r2 = open_repo(host, ns2);
	bool mounted = false;
	expect_ok(vmm_registry_blob_mount(r2, b.digest, ns, &mounted, &err), err, "mount");
	assert_true(mounted);
	get_and_compare(r2, &b);
	vmm_registry_free(r2);
	free(ns2);
	creds_off();
	free(b.data);
	free(ns);
	vmm_registry_free(r);
}

static void test_client_auth__bearer_wrong_password(void **state)
{
	(void)state;
	const char *host = NEED("VMM_TEST_REGISTRY_TOKEN");
	creds_wrong(host);
	char *ns = repo("wrongpw");
	vmm_registry *r = open_repo(host, ns);
	vmm_error *err = NULL;
	bool exists;
	double t0 = vmm_now();
	int rc = vmm_registry_blob_exists(
	    r, "sha256:0000000000000000000000000000000000000000000000000000000000000000", &exists,
	    &err);
	expect_fail(rc, err, VMM_EAUTH, "invalid credentials");
	assert_null(strstr(err->msg, "not-the-password"));
	assert_true(vmm_now() - t0 < 5);
	vmm_error_free(err);
	err = NULL;
	rc = vmm_registry_check_credentials(host, true, "alice", "not-the-password", &err);
	expect_fail(rc, err, VMM_EAUTH, "invalid credentials");
	vmm_error_free(err);
	err = NULL;
	expect_ok(vmm_registry_check_credentials(host, true, getenv("VMM_TEST_USER") ?: "alice",
						 getenv("VMM_TEST_PASSWORD") ?: "secret", &err),
		  err, "check good credentials");
	creds_off();
	free(ns);
	vmm_registry_free(r);
}

static void test_client_auth__broken_challenge(void **state)
{
	(void)state;
	const char *proxy = NEED("VMM_TEST_PROXY_CHALLENGE");
	vmm_registry *r = open_repo(proxy, "vmm-test/broken");
	vmm_error *err = NULL;
	char *body = NULL, digest[72];
	size_t len;
	double t0 = vmm_now();
	int rc = vmm_registry_manifest_get(r, "latest", &body, &len, NULL, digest, &err);
	expect_fail(rc, err, VMM_EFORMAT,
		    "GET manifest `latest`: HTTP 401: malformed WWW-Authenticate");
	assert_true(vmm_now() - t0 < 3);
	vmm_error_free(err);
	vmm_registry_free(r);
}

/* --- threads and connection reuse -------------------------------------------------- */

typedef struct worker {
	vmm_registry *r;
	const blob *blobs;
	size_t nblobs;
	int failures;
} worker;

static void *work(void *arg)
{
	worker *w = arg;
	for (size_t round = 0; round < 3; round++)
		for (size_t i = 0; i < w->nblobs; i++) {
			buf got = {0};
			vmm_error *err = NULL;
			const blob *b = &w->blobs[(i + round) % w->nblobs];
			if (vmm_registry_blob_get(w->r, b->digest, 0, b->len, buf_sink, &got,
						  &err) < 0 ||
			    got.len != b->len || memcmp(got.p, b->data, b->len) != 0)
				w->failures++;
			vmm_error_free(err);
			free(got.p);
		}
	return NULL;
}

static void test_client_threads__parallel_pulls(void **state)
{
	(void)state;
	const char *host = NEED("VMM_TEST_REGISTRY_TOKEN");
	creds_on(host);
	char *ns = repo("threads");
	vmm_registry *r = open_repo(host, ns);
	vmm_error *err = NULL;
	blob blobs[4];
	for (size_t i = 0; i < 4; i++) {
		blobs[i] = blob_random(256 * 1024 + i);
		expect_ok(
		    vmm_registry_blob_put(r, blobs[i].digest, blobs[i].data, blobs[i].len, 0, &err),
		    err, "put");
	}
	vmm_registry *fresh = open_repo(host, ns);
	pthread_t th[8];
	worker w[8];
	for (size_t i = 0; i < 8; i++) {
		w[i] = (worker){fresh, blobs, 4, 0};
		pthread_create(&th[i], NULL, work, &w[i]);
	}
	for (size_t i = 0; i < 8; i++) {
		pthread_join(th[i], NULL);
		assert_int_equal(w[i].failures, 0);
	}
	vmm_registry_stats st;
	vmm_registry_get_stats(fresh, &st);
	/* one token for all threads (they wait for the first fetch) */
	assert_int_equal(st.token_fetches, 1);
	/* 96 downloads over at most one connection per thread (plus the first 401) */
	if (st.connections > 16)
		fail_msg("%ld connections for %ld requests", st.connections, st.requests);
	vmm_registry_free(fresh);
	for (size_t i = 0; i < 4; i++)
		free(blobs[i].data);
	creds_off();
	free(ns);
	vmm_registry_free(r);
}

static void test_client_threads__connection_reuse(void **state)
{
	(void)state;
	const char *host = NEED("VMM_TEST_REGISTRY");
	char *ns = repo("reuse");
	vmm_registry *r = open_repo(host, ns);
	vmm_error *err = NULL;
	blob b = blob_random(1000);
	for (int i = 0; i < 20; i++) {
		bool exists;
		expect_ok(vmm_registry_blob_exists(r, b.digest, &exists, &err), err, "head");
	}
	vmm_registry_stats st;
	vmm_registry_get_stats(r, &st);
	assert_int_equal(st.requests, 20);
	assert_int_equal(st.connections, 1);
	free(b.data);
	free(ns);
	vmm_registry_free(r);
}

/* --- hostile answers, cookies, token expiry, sink errors ------------------------ */

static void write_bytes(const char *path, const void *data, size_t len)
{
	vmm_error *err = NULL;
	expect_ok(vmm_write_file_atomic(path, data, len, 0644, &err), err, "write file");
}

static void test_client_hostile__manifests_and_blobs(void **state)
{
	(void)state;
	const char *proxy = NEED("VMM_TEST_PROXY_HOSTILE");
	const char *mfile = NEED("VMM_TEST_HOSTILE_MANIFEST");
	const char *bfile = NEED("VMM_TEST_HOSTILE_BLOB");
	const char *log = NEED("VMM_TEST_PROXY_HOSTILE_LOG");
	vmm_registry *r = open_repo(proxy, "vmm-test/hostile");
	vmm_error *err = NULL;
	char *body = NULL, digest[72];
	size_t len;
	/* an absurdly large manifest is refused, not buffered */
	size_t big = 5 * 1024 * 1024;
	char *junk = xmalloc(big);
	memset(junk, '{', big);
	write_bytes(mfile, junk, big);
	free(junk);
	int rc = vmm_registry_manifest_get(r, "latest", &body, &len, NULL, digest, &err);
	expect_fail(rc, err, VMM_EFORMAT, "GET manifest `latest`: response body larger than");
	vmm_error_free(err);
	err = NULL;
	/* bytes that do not hash to the digest asked for */
	const char *other = "{\"schemaVersion\":2}";
	write_bytes(mfile, other, strlen(other));
	const char *want =
	    "sha256:1111111111111111111111111111111111111111111111111111111111111111";
	rc = vmm_registry_manifest_get(r, want, &body, &len, NULL, digest, &err);
	expect_fail(rc, err, VMM_EFORMAT, "the manifest's bytes hash to `sha256:");
	vmm_error_free(err);
	err = NULL;
	/* by tag the bytes are returned as they are: judging them is the caller's job */
	expect_ok(vmm_registry_manifest_get(r, "latest", &body, &len, NULL, digest, &err), err,
		  "manifest by tag");
	assert_int_equal(len, strlen(other));
	free(body);
	/* a blob longer than announced stops at the announced size */
	blob b = blob_random(50000);
	write_bytes(bfile, b.data, b.len);
	buf got = {0};
	rc = vmm_registry_blob_get(r, want, 0, 40000, buf_sink, &got, &err);
	expect_fail(rc, err, VMM_EFORMAT, "more than the expected 40000 bytes");
	assert_true(got.len <= 40000);
	free(got.p);
	vmm_error_free(err);
	/* Set-Cookie came with every answer; no request carried a cookie back */
	log_line l[64];
	size_t n = read_proxy_log(log, "/v2/", l, 64);
	assert_true(n >= 4);
	char *text = NULL;
	size_t tl;
	expect_ok(vmm_read_file(log, 1 << 20, &text, &tl, &err), err, "read log");
	assert_null(strstr(text, "\"cookie\": true"));
	assert_non_null(strstr(text, "\"cookie\": false"));
	free(text);
	log_lines_free(l, n);
	free(b.data);
	vmm_registry_free(r);
}

typedef struct failing_sink {
	vmm_error **err;
	size_t seen, limit;
} failing_sink;

static int fail_after(void *ctx, const void *data, size_t len)
{
	(void)data;
	failing_sink *f = ctx;
	f->seen += len;
	if (f->seen > f->limit) {
		vmm_error_set(f->err, ENOSPC, "write `disk.img`: no space left on device");
		return -1;
	}
	return 0;
}

static void test_client_blob__sink_error(void **state)
{
	(void)state;
	const char *host = NEED("VMM_TEST_REGISTRY");
	char *ns = repo("sinkerr");
	vmm_registry *r = open_repo(host, ns);
	blob b = blob_random(2 * 1024 * 1024);
	vmm_error *err = NULL;
	expect_ok(vmm_registry_blob_put(r, b.digest, b.data, b.len, 0, &err), err, "put");
	failing_sink f = {.err = &err, .limit = 100000};
	vmm_registry_stats before, after;
	vmm_registry_get_stats(r, &before);
	int rc = vmm_registry_blob_get(r, b.digest, 0, b.len, fail_after, &f, &err);
	vmm_registry_get_stats(r, &after);
	/* the sink's own error, named by the request, and no retry of a refused write */
	expect_fail(rc, err, ENOSPC, "no space left on device");
	assert_non_null(strstr(err->msg, "GET blob `sha256:"));
	assert_int_equal(after.requests - before.requests, 1);
	vmm_error_free(err);
	free(b.data);
	free(ns);
	vmm_registry_free(r);
}

static void test_client_auth__token_expiry(void **state)
{
	(void)state;
	const char *host = NEED("VMM_TEST_REGISTRY_TOKEN_SHORT");
	creds_on(host);
	char *ns = repo("expiry");
	vmm_registry *r = open_repo(host, ns);
	vmm_error *err = NULL;
	blob b = blob_random(10);
	bool exists;
	vmm_registry_stats st;
	expect_ok(vmm_registry_blob_exists(r, b.digest, &exists, &err), err, "head");
	expect_ok(vmm_registry_blob_exists(r, b.digest, &exists, &err), err, "head again");
	vmm_registry_get_stats(r, &st);
	assert_int_equal(st.token_fetches, 1);
	/* tokens live 4 s (issued_at has whole seconds: 3 to 4 s left when fetched) */
	sleep(4);
	expect_ok(vmm_registry_blob_exists(r, b.digest, &exists, &err), err, "head after expiry");
	vmm_registry_get_stats(r, &st);
	assert_int_equal(st.token_fetches, 2);
	/* and fetched proactively: no 401 round trip (HEAD 401, token, HEAD, HEAD, token, HEAD) */
	assert_int_equal(st.requests, 2 + 1 + 1 + 1 + 1);
	creds_off();
	free(b.data);
	free(ns);
	vmm_registry_free(r);
}

/* --- an image skopeo can read ------------------------------------------------------- */

/* A ustar archive holding one file, as an image layer. */
static unsigned char *make_tar(const char *name, const char *content, size_t *len)
{
	size_t clen = strlen(content), body = (clen + 511) / 512 * 512;
	*len = 512 + body + 1024;
	unsigned char *t = xcalloc(1, *len);
	char *h = (char *)t;
	snprintf(h, 100, "%s", name);
	snprintf(h + 100, 8, "%07o", 0644);
	snprintf(h + 108, 8, "%07o", 0);
	snprintf(h + 116, 8, "%07o", 0);
	snprintf(h + 124, 12, "%011zo", clen);
	snprintf(h + 136, 12, "%011o", 0);
	h[156] = '0';
	memcpy(h + 257, "ustar", 6);
	memcpy(h + 263, "00", 2);
	memset(h + 148, ' ', 8);
	unsigned sum = 0;
	for (size_t i = 0; i < 512; i++)
		sum += t[i];
	snprintf(h + 148, 8, "%06o", sum);
	memcpy(t + 512, content, clen);
	return t;
}

static void test_client_skopeo__image(void **state)
{
	(void)state;
	const char *host = NEED("VMM_TEST_REGISTRY");
	const char *out = NEED("VMM_TEST_SKOPEO_OUT");
	char *ns = repo("skopeo");
	vmm_registry *r = open_repo(host, ns);
	vmm_error *err = NULL;
	size_t tl;
	blob layer = {0};
	layer.data = make_tar("hello.txt", "hello from vmm\n", &tl);
	layer.len = tl;
	vmm_sha256_digest(layer.data, layer.len, layer.digest);
	char *cfg = xasprintf("{\"architecture\":\"amd64\",\"os\":\"linux\",\"config\":{},"
			      "\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[\"%s\"]}}",
			      layer.digest);
	char cd[72];
	vmm_sha256_digest(cfg, strlen(cfg), cd);
	expect_ok(vmm_registry_blob_put(r, layer.digest, layer.data, layer.len, 4096, &err), err,
		  "layer (chunked)");
	expect_ok(vmm_registry_blob_put(r, cd, cfg, strlen(cfg), 0, &err), err, "config");
	char *m = xasprintf(
	    "{\"schemaVersion\":2,\"mediaType\":\"%s\",\"config\":{\"mediaType\":\"%s\","
	    "\"digest\":\"%s\",\"size\":%zu},\"layers\":[{\"mediaType\":"
	    "\"application/vnd.oci.image.layer.v1.tar\",\"digest\":\"%s\",\"size\":%zu}]}",
	    VMM_MEDIA_OCI_MANIFEST, VMM_MEDIA_OCI_CONFIG, cd, strlen(cfg), layer.digest, layer.len);
	char md[72];
	vmm_sha256_digest(m, strlen(m), md);
	expect_ok(vmm_registry_manifest_put(r, "v1", m, strlen(m), VMM_MEDIA_OCI_MANIFEST, &err),
		  err, "manifest");
	char *line = xasprintf("%s/%s:v1 %s %s %s\n", host, ns, md, cd, layer.digest);
	expect_ok(vmm_write_file_atomic(out, line, strlen(line), 0644, &err), err, "write out");
	free(line);
	free(m);
	free(cfg);
	free(layer.data);
	free(ns);
	vmm_registry_free(r);
}

int main(void)
{
	if (!need("VMM_TEST_REGISTRY")) {
		/* run with live registries by tests/integration/test_registry_client.sh */
		printf("SKIP: test_client needs the registries that "
		       "tests/integration/test_registry_client.sh starts\n");
		return 77;
	}
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_client_blob__put_monolithic),
	    cmocka_unit_test(test_client_blob__put_chunked),
	    cmocka_unit_test(test_client_blob__head_and_get_missing),
	    cmocka_unit_test(test_client_blob__mount),
	    cmocka_unit_test(test_client_blob__range_from),
	    cmocka_unit_test(test_client_manifest__put_get),
	    cmocka_unit_test(test_client_resume__cut_connection),
	    cmocka_unit_test(test_client_resume__stalled_transfer),
	    cmocka_unit_test(test_client_resume__range_ignored),
	    cmocka_unit_test(test_client_retry__retry_after),
	    cmocka_unit_test(test_client_retry__exhausted),
	    cmocka_unit_test(test_client_redirect__no_authorization),
	    cmocka_unit_test(test_client_auth__basic),
	    cmocka_unit_test(test_client_auth__anonymous_bearer),
	    cmocka_unit_test(test_client_auth__bearer_scope_widening),
	    cmocka_unit_test(test_client_auth__bearer_wrong_password),
	    cmocka_unit_test(test_client_auth__broken_challenge),
	    cmocka_unit_test(test_client_threads__parallel_pulls),
	    cmocka_unit_test(test_client_threads__connection_reuse),
	    cmocka_unit_test(test_client_hostile__manifests_and_blobs),
	    cmocka_unit_test(test_client_blob__sink_error),
	    cmocka_unit_test(test_client_auth__token_expiry),
	    cmocka_unit_test(test_client_skopeo__image),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
