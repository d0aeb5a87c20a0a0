/* Reference parsing: Tart's own cases (RemoteNameTests.swift) plus vmm's. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>
#include <stdlib.h>

#include "registry/oci/reference.h"

typedef struct ok_case {
	const char *in;
	const char *host, *ns, *tag, *digest, *display;
} ok_case;

static const char *const D =
    "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

static void test_reference_parse__valid(void **state)
{
	(void)state;
	const ok_case cases[] = {
	    {"ghcr.io/a/b:latest", "ghcr.io", "a/b", "latest", NULL, "ghcr.io/a/b:latest"},
	    {"ghcr.io/a/b:1.2.3-RC-1", "ghcr.io", "a/b", "1.2.3-RC-1", NULL, NULL},
	    {"ghcr.io/a/b@sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
	     "ghcr.io", "a/b", NULL, D, NULL},
	    {"127.0.0.1:8080/a/b", "127.0.0.1:8080", "a/b", "latest", NULL,
	     "127.0.0.1:8080/a/b:latest"},
	    {"foo/bar", "foo", "bar", "latest", NULL, NULL},
	    {"localhost:5000/x/y_z-w.v:v1_2", "localhost:5000", "x/y_z-w.v", "v1_2", NULL, NULL},
	    {"my-host.example.com/ns/deep/er:t", "my-host.example.com", "ns/deep/er", "t", NULL,
	     NULL},
	    /* Docker Hub aliases: Tart contacts docker.io literally and fails (issue #1275) */
	    {"docker.io/ubuntu:22.04", "registry-1.docker.io", "library/ubuntu", "22.04", NULL,
	     "registry-1.docker.io/library/ubuntu:22.04"},
	    {"index.docker.io/org/repo", "registry-1.docker.io", "org/repo", "latest", NULL, NULL},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		vmm_reference *r = NULL;
		vmm_error *err = NULL;
		int rc = vmm_reference_parse(&r, cases[i].in, &err);
		if (rc != 0)
			fail_msg("%s: %s", cases[i].in, err ? err->msg : "?");
		assert_string_equal(r->host, cases[i].host);
		assert_string_equal(r->namespace, cases[i].ns);
		if (cases[i].tag)
			assert_string_equal(r->tag, cases[i].tag);
		else
			assert_null(r->tag);
		if (cases[i].digest)
			assert_string_equal(r->digest, cases[i].digest);
		else
			assert_null(r->digest);
		if (cases[i].display) {
			char *s = vmm_reference_string(r);
			assert_string_equal(s, cases[i].display);
			free(s);
		}
		assert_true(vmm_reference_is_remote(cases[i].in));
		vmm_reference_free(r);
	}
}

static void test_reference_parse__invalid(void **state)
{
	(void)state;
	const char *const cases[] = {
	    "debian:latest",	       /* local name (Tart) */
	    "debian",		       /* local name */
	    "a/../b",		       /* Tart rejects */
	    "ghcr.io/a/../b/c:latest", /* no path traversal (RemoteNameTests) */
	    "ghcr.io/a/./b",
	    "127.0.0.1:/a/b",		   /* port must be given when ':' is used */
	    "touch\xc3\xa9.fr/a/b:latest", /* ASCII only */
	    "ghcr.io/tou/ch\xc3\xa9:latest",
	    "ghcr.io/a/b:touch\xc3\xa9",
	    "ghcr.io/a/b@md5:abc",    /* unknown reference format */
	    "ghcr.io/a/b@sha256:abc", /* short digest */
	    "ghcr.io/a/b:",	      /* empty tag */
	    "ghcr.io/a/b:v1-",	      /* tag may not end in a separator */
	    "ghcr.io//b",
	    "/a/b",
	    "",
	    "ghcr.io/a/b:t:u",
	    "a--b.io/x",
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		vmm_reference *r = NULL;
		vmm_error *err = NULL;
		if (vmm_reference_parse(&r, cases[i], &err) == 0)
			fail_msg("\"%s\" parsed but should not", cases[i]);
		assert_non_null(err);
		assert_non_null(strstr(err->msg, "failed to parse remote name"));
		assert_false(vmm_reference_is_remote(cases[i]));
		vmm_error_free(err);
	}
}

static void test_reference_dup__equal(void **state)
{
	(void)state;
	vmm_reference *r = NULL;
	assert_int_equal(vmm_reference_parse(&r, "ghcr.io/a/b:x", NULL), 0);
	vmm_reference *d = vmm_reference_dup(r);
	char *a = vmm_reference_string(r), *b = vmm_reference_string(d);
	assert_string_equal(a, b);
	assert_string_equal(vmm_reference_value(d), "x");
	free(a);
	free(b);
	vmm_reference_free(r);
	vmm_reference_free(d);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_reference_parse__valid),
	    cmocka_unit_test(test_reference_parse__invalid),
	    cmocka_unit_test(test_reference_dup__equal),
	};
	return cmocka_run_group_tests_name("reference", tests, NULL, NULL);
}
