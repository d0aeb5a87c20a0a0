/* WWW-Authenticate parsing, the token endpoint's URL and answer, scopes (registry/oci/auth.h). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "registry/oci/auth.h"

typedef struct param_want {
	const char *name, *value;
} param_want;

typedef struct challenge_case {
	const char *header;
	size_t n;	      /* challenges */
	const char *scheme0;  /* first scheme */
	param_want params[4]; /* of the first challenge, looked up case-insensitively */
	const char *token68;
	const char *picked; /* scheme vmm_auth_pick() returns, NULL for none */
} challenge_case;

static void test_auth_challenge__valid(void **state)
{
	(void)state;
	const challenge_case cases[] = {
	    {"Bearer realm=\"https://auth.docker.io/token\",service=\"registry.docker.io\","
	     "scope=\"repository:library/ubuntu:pull\"",
	     1,
	     "Bearer",
	     {{"realm", "https://auth.docker.io/token"},
	      {"service", "registry.docker.io"},
	      {"scope", "repository:library/ubuntu:pull"}},
	     NULL,
	     "Bearer"},
	    /* case-insensitive scheme and names */
	    {"bEaReR REALM=\"x\"", 1, "bEaReR", {{"realm", "x"}}, NULL, "bEaReR"},
	    /* escapes and commas inside quotes */
	    {"Bearer realm=\"a\\\"b\\\\c\",service=\"x,y\"",
	     1,
	     "Bearer",
	     {{"realm", "a\"b\\c"}, {"service", "x,y"}},
	     NULL,
	     "Bearer"},
	    /* two challenges; Bearer preferred */
	    {"Basic realm=\"r\", Bearer realm=\"b\"", 2, "Basic", {{"realm", "r"}}, NULL, "Bearer"},
	    {"Basic realm=\"vmm\"", 1, "Basic", {{"realm", "vmm"}}, NULL, "Basic"},
	    /* unquoted URLs, as some registries send them */
	    {"Bearer realm=https://x.example/token?a=b,service=svc",
	     1,
	     "Bearer",
	     {{"realm", "https://x.example/token?a=b"}, {"service", "svc"}},
	     NULL,
	     "Bearer"},
	    /* a bare scheme, a token68 */
	    {"Basic", 1, "Basic", {{NULL, NULL}}, NULL, "Basic"},
	    {"Negotiate abc123+/==", 1, "Negotiate", {{NULL, NULL}}, "abc123+/==", NULL},
	    /* whitespace around '=' and commas, empty list elements */
	    {"  Bearer realm = \"x\" ,, service=\"y\" , ",
	     1,
	     "Bearer",
	     {{"realm", "x"}, {"service", "y"}},
	     NULL,
	     "Bearer"},
	    {"Bearer error=\"insufficient_scope\",realm=\"r\",scope=\"repository:a:pull "
	     "repository:b:pull\"",
	     1,
	     "Bearer",
	     {{"error", "insufficient_scope"}, {"scope", "repository:a:pull repository:b:pull"}},
	     NULL,
	     "Bearer"},
	    /* an empty quoted value is a value */
	    {"Bearer realm=\"r\",service=\"\"", 1, "Bearer", {{"service", ""}}, NULL, "Bearer"},
	    {"Digest realm=\"x\", Negotiate", 2, "Digest", {{"realm", "x"}}, NULL, NULL},
	};
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		const challenge_case *c = &cases[i];
		vmm_auth_challenge *ch = NULL;
		size_t n = 0;
		vmm_error *err = NULL;
		if (vmm_auth_parse_challenges(c->header, &ch, &n, &err) < 0)
			fail_msg("`%s`: %s", c->header, err->msg);
		assert_int_equal(n, c->n);
		assert_string_equal(ch[0].scheme, c->scheme0);
		for (size_t p = 0; p < 4 && c->params[p].name; p++) {
			const char *v = vmm_auth_param_get(&ch[0], c->params[p].name);
			if (!v)
				fail_msg("`%s`: no %s", c->header, c->params[p].name);
			assert_string_equal(v, c->params[p].value);
		}
		if (c->token68)
			assert_string_equal(ch[0].token68, c->token68);
		else
			assert_null(ch[0].token68);
		const vmm_auth_challenge *pick = vmm_auth_pick(ch, n);
		if (c->picked)
			assert_string_equal(pick->scheme, c->picked);
		else
			assert_null(pick);
		vmm_auth_challenges_free(ch, n);
	}
}

static void test_auth_challenge__malformed(void **state)
{
	(void)state;
	const char *cases[] = {
	    "",
	    "   ",
	    ",,,",
	    "Bearer realm=\"x",	  /* unterminated */
	    "Bearer realm=\"x\\", /* escape at the end */
	    "Bearer realm=",	  /* parameter without a value? a token68 "realm=" */
	    "Bearer =x",
	    "Bearer realm=\"x\" service=\"y\"", /* missing comma */
	    "Bearer realm=\"a\x01b\"",		/* control character */
	    "\"quoted\" realm=\"x\"",
	    "Bearer realm=\"x\",realm=\"y\"", /* duplicate */
	    "Bearer realm=\"x\", =",
	    "Bearer realm=\"x\",service", /* a bare word after a comma is a new scheme... */
	    "Bearer\trealm=x y",
	    "Bear(er realm=\"x\"",
	    "Bearer realm=x\"y\"",
	};
	/* "Bearer realm=" is a valid token68 and "…,service" a bare scheme: both parse */
	const bool parses[] = {false, false, false, false, false, true,	 false, false,
			       false, false, false, false, true,  false, false, false};
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		vmm_auth_challenge *ch = NULL;
		size_t n = 0;
		vmm_error *err = NULL;
		int rc = vmm_auth_parse_challenges(cases[i], &ch, &n, &err);
		if (parses[i]) {
			if (rc < 0)
				fail_msg("`%s`: %s", cases[i], err->msg);
			vmm_auth_challenges_free(ch, n);
			continue;
		}
		if (rc == 0)
			fail_msg("`%s` parsed into %zu challenges", cases[i], n);
		assert_int_equal(err->code, VMM_EFORMAT);
		assert_non_null(strstr(err->msg, "malformed WWW-Authenticate header"));
		/* one printable line, even when the header has control characters */
		for (const char *p = err->msg; *p; p++)
			assert_true((unsigned char)*p >= 0x20);
		vmm_error_free(err);
	}
	/* a Bearer challenge without a realm parses; the client rejects it */
	vmm_auth_challenge *ch = NULL;
	size_t n = 0;
	assert_int_equal(vmm_auth_parse_challenges("Bearer service=\"x\"", &ch, &n, NULL), 0);
	assert_null(vmm_auth_param_get(&ch[0], "realm"));
	vmm_auth_challenges_free(ch, n);
}

static void test_auth_challenge__long_header(void **state)
{
	(void)state;
	/* many parameters: bounded */
	size_t cap = 100 * 16 + 16;
	char *h = xmalloc(cap);
	size_t len = (size_t)snprintf(h, cap, "Bearer ");
	for (int i = 0; i < 100; i++)
		len += (size_t)snprintf(h + len, cap - len, "%sp%d=\"v\"", i ? "," : "", i);
	vmm_auth_challenge *ch = NULL;
	size_t n = 0;
	vmm_error *err = NULL;
	assert_int_equal(vmm_auth_parse_challenges(h, &ch, &n, &err), -1);
	assert_non_null(strstr(err->msg, "too many parameters"));
	vmm_error_free(err);
	free(h);
}

static void test_auth_basic__header(void **state)
{
	(void)state;
	char *h = vmm_auth_basic_header("alice", "secret");
	assert_string_equal(h, "Basic YWxpY2U6c2VjcmV0");
	free(h);
	h = vmm_auth_basic_header("u", "p:w d");
	assert_string_equal(h, "Basic dTpwOncgZA==");
	free(h);
}

static void test_auth_token__url(void **state)
{
	(void)state;
	const struct {
		const char *realm, *service, *scopes, *want;
	} cases[] = {
	    {"https://auth.example/token", "registry.example", "repository:a/b:pull",
	     "https://auth.example/token?service=registry.example&scope=repository%3Aa%2Fb%3Apull"},
	    {"https://auth.example/token?account=x", "svc", NULL,
	     "https://auth.example/token?account=x&service=svc"},
	    {"https://auth.example/token", NULL, "repository:a:pull,push repository:b:pull",
	     "https://auth.example/token?scope=repository%3Aa%3Apull%2Cpush&scope=repository%3Ab%"
	     "3Apull"},
	    {"https://auth.example/token#frag", "s v", "",
	     "https://auth.example/token?service=s%20v"},
	    {"https://auth.example/token?", "s", NULL, "https://auth.example/token?service=s"},
	    {"http://127.0.0.1:5001/token", NULL, NULL, "http://127.0.0.1:5001/token"},
	};
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		char *u = vmm_auth_token_url(cases[i].realm, cases[i].service, cases[i].scopes);
		assert_string_equal(u, cases[i].want);
		free(u);
	}
}

static void test_auth_token__response(void **state)
{
	(void)state;
	const time_t now = 1700000000; /* 2023-11-14T22:13:20Z */
	const struct {
		const char *body;
		const char *token; /* NULL: an error */
		long ttl;
	} cases[] = {
	    {"{\"token\":\"abc\",\"expires_in\":300}", "abc", 300},
	    {"{\"access_token\":\"xyz\"}", "xyz", 60}, /* default lifetime */
	    {"{\"token\":\"\",\"access_token\":\"xyz\"}", "xyz", 60},
	    {"{\"token\":\"t\",\"expires_in\":300,\"issued_at\":\"2023-11-14T22:12:20Z\"}", "t",
	     240},
	    {"{\"token\":\"t\",\"expires_in\":300,\"issued_at\":\"2023-11-14T22:12:20."
	     "123456789Z\"}",
	     "t", 240},
	    {"{\"token\":\"t\",\"expires_in\":300,\"issued_at\":\"2023-11-14T23:12:20+01:00\"}",
	     "t", 240},
	    /* issued in the future (clock skew): expires_in counts */
	    {"{\"token\":\"t\",\"expires_in\":300,\"issued_at\":\"2023-11-15T22:12:20Z\"}", "t",
	     300},
	    /* long expired */
	    {"{\"token\":\"t\",\"expires_in\":60,\"issued_at\":\"2020-01-01T00:00:00Z\"}", "t", 0},
	    /* a malformed issued_at is "now"; a bad expires_in the default */
	    {"{\"token\":\"t\",\"expires_in\":-5,\"issued_at\":\"yesterday\"}", "t", 60},
	    {"{\"token\":\"t\",\"expires_in\":\"300\"}", "t", 60},
	    {"not json", NULL, 0},
	    {"[]", NULL, 0},
	    {"{}", NULL, 0},
	    {"{\"token\":42}", NULL, 0},
	    {"{\"token\":\"a\\nb\"}", NULL, 0}, /* would split a header */
	    {"{\"token\":\"a b\"}", NULL, 0},
	};
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		char *tok = NULL;
		long ttl = -1;
		vmm_error *err = NULL;
		int rc = vmm_auth_parse_token_response(cases[i].body, strlen(cases[i].body), now,
						       &tok, &ttl, &err);
		if (!cases[i].token) {
			if (rc == 0)
				fail_msg("`%s` accepted", cases[i].body);
			assert_null(tok);
			vmm_error_free(err);
			continue;
		}
		if (rc < 0)
			fail_msg("`%s`: %s", cases[i].body, err->msg);
		assert_string_equal(tok, cases[i].token);
		if (ttl != cases[i].ttl)
			fail_msg("`%s`: ttl %ld, wanted %ld", cases[i].body, ttl, cases[i].ttl);
		free(tok);
	}
}

static void test_auth_time__parse(void **state)
{
	(void)state;
	time_t t;
	assert_true(vmm_auth_parse_time("1970-01-01T00:00:00Z", &t));
	assert_int_equal(t, 0);
	assert_true(vmm_auth_parse_time("2023-11-14T22:13:20Z", &t));
	assert_int_equal(t, 1700000000);
	assert_true(vmm_auth_parse_time("2023-11-14T17:13:20.5-05:00", &t));
	assert_int_equal(t, 1700000000);
	const char *bad[] = {"",
			     "2023-11-14",
			     "2023-11-14T22:13:20",
			     "2023-13-14T22:13:20Z",
			     "2023-11-14T22:13:20Zjunk",
			     "2023-11-14T22:13:20.Z",
			     "2023-11-14T22:13:20+0100",
			     "20231114T221320Z"};
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++)
		if (vmm_auth_parse_time(bad[i], &t))
			fail_msg("`%s` accepted", bad[i]);
}

static void test_auth_scope__covers(void **state)
{
	(void)state;
	const struct {
		const char *have, *need;
		bool covers;
	} cases[] = {
	    {"repository:a/b:pull", "repository:a/b:pull", true},
	    {"repository:a/b:pull,push", "repository:a/b:pull", true},
	    {"repository:a/b:pull", "repository:a/b:pull,push", false},
	    {"repository:a/b:pull", "repository:a/c:pull", false},
	    {"repository:a/b:*", "repository:a/b:push", true},
	    {"repository:a/b:pull,push repository:c:pull", "repository:c:pull repository:a/b:push",
	     true},
	    {"repository:a/b:pull,push", "repository:a/b:push repository:c:pull", false},
	    {"", "", true},
	    {"repository:a:pull", "", true},
	    {"", "repository:a:pull", false},
	    {"repository:a:pull", "garbage", false},
	    /* a registry name with a port inside the repository name */
	    {"repository:localhost:5000/x:pull", "repository:localhost:5000/x:pull", true},
	};
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++)
		if (vmm_auth_scope_covers(cases[i].have, cases[i].need) != cases[i].covers)
			fail_msg("`%s` covers `%s`: wanted %d", cases[i].have, cases[i].need,
				 cases[i].covers);
}

static void test_auth_scope__merge(void **state)
{
	(void)state;
	char *m = vmm_auth_scope_merge("repository:a:pull", "repository:a:push");
	assert_string_equal(m, "repository:a:pull,push");
	free(m);
	m = vmm_auth_scope_merge("repository:a:pull,push", "repository:a:pull repository:b:pull");
	assert_string_equal(m, "repository:a:pull,push repository:b:pull");
	free(m);
	m = vmm_auth_scope_merge("repository:a:pull", NULL);
	assert_string_equal(m, "repository:a:pull");
	free(m);
	m = vmm_auth_scope_merge("", "");
	assert_string_equal(m, "");
	free(m);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_auth_challenge__valid),
	    cmocka_unit_test(test_auth_challenge__malformed),
	    cmocka_unit_test(test_auth_challenge__long_header),
	    cmocka_unit_test(test_auth_basic__header),
	    cmocka_unit_test(test_auth_token__url),
	    cmocka_unit_test(test_auth_token__response),
	    cmocka_unit_test(test_auth_time__parse),
	    cmocka_unit_test(test_auth_scope__covers),
	    cmocka_unit_test(test_auth_scope__merge),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
