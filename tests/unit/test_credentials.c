/*
 * The credential chain (registry/oci/credentials.h): environment, Docker config
 * (auths, credHelpers with Tart's pattern keys, credsStore through real
 * docker-credential-* helper programs written here), the login store.
 * Each case runs with HOME, DOCKER_CONFIG, XDG_CONFIG_HOME and PATH pointing
 * into a fresh temporary directory.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/util.h"
#include "registry/oci/credentials.h"
#include "tests/unit/helpers.h"

static char *tmp;      /* per case */
static char *old_path; /* PATH before the case */

static void write_file(const char *rel, const char *text, mode_t mode)
{
	char *p = path_join(tmp, rel);
	char *dir = xstrdup(p);
	*strrchr(dir, '/') = '\0';
	vmm_error *err = NULL;
	if (vmm_mkdir_p(dir, &err) < 0 ||
	    vmm_write_file_atomic(p, text, strlen(text), mode, &err) < 0)
		fail_msg("%s", err->msg);
	free(dir);
	free(p);
}

static int setup(void **state)
{
	(void)state;
	tmp = test_tmpdir("/tmp/vmm-test-creds.");
	setenv("HOME", tmp, 1);
	char *v = xasprintf("%s/xdg", tmp);
	setenv("XDG_CONFIG_HOME", v, 1);
	free(v);
	unsetenv("DOCKER_CONFIG");
	unsetenv("VMM_CREDENTIALS_FILE");
	const char *vars[] = {"VMM_REGISTRY_USERNAME",	"VMM_REGISTRY_PASSWORD",
			      "VMM_REGISTRY_HOSTNAME",	"TART_REGISTRY_USERNAME",
			      "TART_REGISTRY_PASSWORD", "TART_REGISTRY_HOSTNAME"};
	for (size_t i = 0; i < ARRAY_SIZE(vars); i++)
		unsetenv(vars[i]);
	v = xasprintf("%s/bin", tmp);
	old_path = test_path_push(v, false);
	free(v);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	test_tmpdir_free(tmp);
	test_path_restore(old_path);
	return 0;
}

/* Look host up and check the answer (user NULL: nothing found, no error). */
static void expect(const char *host, const char *user, const char *pass)
{
	vmm_credentials *c = NULL;
	vmm_error *err = NULL;
	if (vmm_credentials_lookup(host, &c, &err) < 0)
		fail_msg("lookup %s: %s", host, err->msg);
	if (!user) {
		if (c)
			fail_msg("lookup %s: unexpected user %s", host, c->username);
		return;
	}
	if (!c)
		fail_msg("lookup %s: nothing found, wanted %s", host, user);
	assert_string_equal(c->username, user);
	assert_string_equal(c->password, pass);
	vmm_credentials_free(c);
}

/* A helper program: prints `json` for server `server` (else "not found", exit 1), logs stdin. */
static void helper(const char *name, const char *server, const char *json)
{
	char *rel = xasprintf("bin/docker-credential-%s", name);
	char *script = xasprintf("#!/bin/sh\n"
				 "[ \"$1\" = get ] || exit 3\n"
				 "read -r server\n"
				 "printf '%%s\\n' \"$server\" >>\"%s/%s.stdin\"\n"
				 "if [ \"$server\" = '%s' ]; then printf '%%s' '%s'; exit 0; fi\n"
				 "echo 'credentials not found in native keychain'; exit 1\n",
				 tmp, name, server, json);
	write_file(rel, script, 0755);
	free(script);
	free(rel);
}

static char *helper_stdin(const char *name)
{
	char *p = xasprintf("%s/%s.stdin", tmp, name), *text = NULL;
	size_t len;
	if (vmm_read_file(p, 4096, &text, &len, NULL) < 0)
		text = xstrdup("");
	free(p);
	return text;
}

/* A lookup that finds nothing and says why, naming `needle`. */
static void expect_none_because(const char *host, const char *needle)
{
	vmm_credentials *c = NULL;
	vmm_error *err = NULL;
	assert_int_equal(vmm_credentials_lookup(host, &c, &err), -1);
	assert_null(c);
	if (!strstr(err->msg, needle))
		fail_msg("lookup %s: `%s` lacks `%s`", host, err->msg, needle);
	vmm_error_free(err);
}

static void test_credentials_env__order(void **state)
{
	(void)state;
	expect("ghcr.io", NULL, NULL);
	setenv("TART_REGISTRY_USERNAME", "tart", 1);
	setenv("TART_REGISTRY_PASSWORD", "tpw", 1);
	/* without a host name they would go to every registry (Tart): to none */
	expect_none_because("ghcr.io", "TART_REGISTRY_USERNAME is set without "
				       "TART_REGISTRY_HOSTNAME");
	expect_none_because("evil.example", "set TART_REGISTRY_HOSTNAME to the host");
	setenv("TART_REGISTRY_HOSTNAME", "other.example", 1);
	expect("ghcr.io", NULL, NULL);
	setenv("TART_REGISTRY_HOSTNAME", "ghcr.io", 1);
	expect("ghcr.io", "tart", "tpw");
	expect("evil.example", NULL, NULL);
	/* vmm's own variables come first, under the same rule */
	setenv("VMM_REGISTRY_USERNAME", "vmm", 1);
	setenv("VMM_REGISTRY_PASSWORD", "vpw:with:colons", 1);
	expect("ghcr.io", "tart", "tpw");
	expect_none_because("evil.example", "VMM_REGISTRY_HOSTNAME");
	setenv("VMM_REGISTRY_HOSTNAME", "ghcr.io", 1);
	expect("ghcr.io", "vmm", "vpw:with:colons");
	setenv("VMM_REGISTRY_HOSTNAME", "127.0.0.1:5000", 1);
	expect("ghcr.io", "tart", "tpw");
	expect("127.0.0.1:5000", "vmm", "vpw:with:colons");
	/* a user without a password is nothing */
	unsetenv("VMM_REGISTRY_PASSWORD");
	unsetenv("TART_REGISTRY_PASSWORD");
	expect("127.0.0.1:5000", NULL, NULL);
}

static void test_credentials_docker__auths(void **state)
{
	(void)state;
	/* "alice:pa:ss" and "bob:pw", "hub:hubpw", "old:style" */
	write_file(".docker/config.json",
		   "{\"auths\": {"
		   "\"127.0.0.1:5000\": {\"auth\": \"YWxpY2U6cGE6c3M=\"},"
		   "\"https://registry.example.com\": {\"auth\": \"Ym9iOnB3\"},"
		   "\"https://index.docker.io/v1/\": {\"auth\": \"aHViOmh1YnB3\"},"
		   "\"legacy.example\": {\"username\": \"old\", \"password\": \"style\"},"
		   "\"placeholder.example\": {}"
		   "}}",
		   0600);
	expect("127.0.0.1:5000", "alice", "pa:ss");
	expect("registry.example.com", "bob", "pw");
	expect("REGISTRY.example.com", "bob", "pw");
	expect("registry-1.docker.io", "hub", "hubpw");
	expect("docker.io", "hub", "hubpw");
	expect("legacy.example", "old", "style");
	expect("placeholder.example", NULL, NULL);
	expect("127.0.0.1:5001", NULL, NULL);
	/* $DOCKER_CONFIG moves the file */
	char *dc = xasprintf("%s/elsewhere", tmp);
	setenv("DOCKER_CONFIG", dc, 1);
	expect("127.0.0.1:5000", NULL, NULL);
	write_file("elsewhere/config.json",
		   "{\"auths\": {\"127.0.0.1:5000\": {\"auth\": \"eDp5\"}}}", 0600);
	expect("127.0.0.1:5000", "x", "y");
	free(dc);
}

static void test_credentials_docker__helpers(void **state)
{
	(void)state;
	helper("exact", "ghcr.io",
	       "{\"ServerURL\":\"ghcr.io\",\"Username\":\"gh\",\"Secret\":\"ghs\"}");
	helper("ecr", "123.dkr.ecr.us-east-1.amazonaws.com",
	       "{\"Username\":\"AWS\",\"Secret\":\"ecrpw\"}");
	helper("store", "https://index.docker.io/v1/", "{\"Username\":\"hub\",\"Secret\":\"h\"}");
	write_file(".docker/config.json",
		   "{\"credHelpers\": {"
		   "\"ghcr.io\": \"exact\","
		   "\"(.*).dkr.ecr.(.*).amazonaws.com\": \"ecr\","
		   "\"example\": \"exact\""
		   "}, \"credsStore\": \"store\"}",
		   0600);
	expect("ghcr.io", "gh", "ghs");
	char *in = helper_stdin("exact");
	assert_string_equal(in, "ghcr.io\n");
	free(in);
	/* Tart's pattern keys, matched against the whole host */
	expect("123.dkr.ecr.us-east-1.amazonaws.com", "AWS", "ecrpw");
	/* "example" does not whole-match "a.example.com": it falls to credsStore */
	expect("a.example.com", NULL, NULL);
	in = helper_stdin("store");
	assert_string_equal(in, "a.example.com\n");
	free(in);
	/* Docker Hub is named by its v1 URL when asking helpers */
	expect("registry-1.docker.io", "hub", "h");
}

static void test_credentials_docker__helper_failures(void **state)
{
	(void)state;
	write_file(".docker/config.json", "{\"credsStore\": \"missing\"}", 0600);
	vmm_credentials *c = NULL;
	vmm_error *err = NULL;
	/* a helper that is not installed: an error, but only since nothing else has credentials */
	assert_int_equal(vmm_credentials_lookup("ghcr.io", &c, &err), -1);
	assert_null(c);
	assert_non_null(strstr(err->msg, "docker-credential-missing"));
	assert_non_null(strstr(err->msg, "not installed"));
	vmm_error_free(err);
	err = NULL;
	/* ...and the login store still answers */
	assert_int_equal(vmm_credentials_store("ghcr.io", "stored", "s", &err), 0);
	expect("ghcr.io", "stored", "s");
	/* a helper that fails for another reason */
	write_file("bin/docker-credential-broken",
		   "#!/bin/sh\necho 'keychain locked' >&2\nexit 2\n", 0755);
	write_file(".docker/config.json", "{\"credsStore\": \"broken\"}", 0600);
	assert_int_equal(vmm_credentials_lookup("quay.io", &c, &err), -1);
	assert_non_null(strstr(err->msg, "keychain locked"));
	assert_non_null(strstr(err->msg, "exit status 2"));
	vmm_error_free(err);
	err = NULL;
	/* garbage on stdout */
	write_file("bin/docker-credential-garbage", "#!/bin/sh\ncat >/dev/null\necho '{'\n", 0755);
	write_file(".docker/config.json", "{\"credsStore\": \"garbage\"}", 0600);
	assert_int_equal(vmm_credentials_lookup("quay.io", &c, &err), -1);
	assert_non_null(strstr(err->msg, "invalid JSON"));
	vmm_error_free(err);
	err = NULL;
	/* a helper name that would escape the docker-credential- prefix */
	write_file(".docker/config.json", "{\"credsStore\": \"../../bin/sh\"}", 0600);
	assert_int_equal(vmm_credentials_lookup("quay.io", &c, &err), -1);
	assert_non_null(strstr(err->msg, "invalid credential helper name"));
	vmm_error_free(err);
	err = NULL;
	/* a malformed file of secrets: the error names where, never what */
	write_file(".docker/config.json", "{\"auths\": {\"q\": {\"auth\": hunter2secret}}}", 0600);
	assert_int_equal(vmm_credentials_lookup("quay.io", &c, &err), -1);
	assert_non_null(strstr(err->msg, "invalid JSON at line 1"));
	assert_null(strstr(err->msg, "hunter2"));
	vmm_error_free(err);
	err = NULL;
	write_file("bin/docker-credential-leaky",
		   "#!/bin/sh\ncat >/dev/null\necho '{\"Username\":\"u\",\"Secret\":tops3cret}'\n",
		   0755);
	write_file(".docker/config.json", "{\"credsStore\": \"leaky\"}", 0600);
	assert_int_equal(vmm_credentials_lookup("quay.io", &c, &err), -1);
	assert_non_null(strstr(err->msg, "invalid JSON"));
	assert_null(strstr(err->msg, "tops3cret"));
	vmm_error_free(err);
	err = NULL;
	/* a malformed config file */
	write_file(".docker/config.json", "{\"auths\": ", 0600);
	assert_int_equal(vmm_credentials_lookup("quay.io", &c, &err), -1);
	assert_non_null(strstr(err->msg, "config.json"));
	vmm_error_free(err);
	err = NULL;
	/* bad base64 in auths */
	write_file(".docker/config.json", "{\"auths\": {\"quay.io\": {\"auth\": \"!!!\"}}}", 0600);
	assert_int_equal(vmm_credentials_lookup("quay.io", &c, &err), -1);
	assert_non_null(strstr(err->msg, "base64"));
	vmm_error_free(err);
}

static void test_credentials_store__roundtrip(void **state)
{
	(void)state;
	vmm_error *err = NULL;
	char *path = vmm_credentials_store_path();
	char *want = xasprintf("%s/xdg/vmm/credentials.json", tmp);
	assert_string_equal(path, want);
	free(want);
	assert_int_equal(vmm_credentials_remove("nothing.example", &err), 0);
	assert_false(path_exists(path));
	assert_int_equal(vmm_credentials_store("127.0.0.1:5000", "alice", "p:w \"q\"", &err), 0);
	assert_int_equal(vmm_credentials_store("docker.io", "hub", "h", &err), 0);
	struct stat st;
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	expect("127.0.0.1:5000", "alice", "p:w \"q\"");
	expect("registry-1.docker.io", "hub", "h");
	/* replace */
	assert_int_equal(vmm_credentials_store("127.0.0.1:5000", "alice", "new", &err), 0);
	expect("127.0.0.1:5000", "alice", "new");
	/* the Docker config comes before the store */
	write_file(".docker/config.json", "{\"auths\": {\"127.0.0.1:5000\": {\"auth\": \"eDp5\"}}}",
		   0600);
	expect("127.0.0.1:5000", "x", "y");
	char *dcfg = path_join(tmp, ".docker/config.json");
	unlink(dcfg);
	free(dcfg);
	assert_int_equal(vmm_credentials_remove("127.0.0.1:5000", &err), 0);
	expect("127.0.0.1:5000", NULL, NULL);
	expect("registry-1.docker.io", "hub", "h");
	assert_int_equal(vmm_credentials_store("h.example", "a:b", "p", &err), -1);
	assert_non_null(strstr(err->msg, "must not contain ':'"));
	vmm_error_free(err);
	err = NULL;
	/* VMM_CREDENTIALS_FILE wins */
	char *f = xasprintf("%s/custom/creds.json", tmp);
	setenv("VMM_CREDENTIALS_FILE", f, 1);
	char *p2 = vmm_credentials_store_path();
	assert_string_equal(p2, f);
	assert_int_equal(vmm_credentials_store("x.example", "u", "p", &err), 0);
	assert_true(path_exists(f));
	expect("x.example", "u", "p");
	expect("registry-1.docker.io", NULL, NULL);
	unsetenv("VMM_CREDENTIALS_FILE");
	free(p2);
	free(f);
	free(path);
}

static void test_credentials_host__key(void **state)
{
	(void)state;
	const struct {
		const char *in, *out;
	} cases[] = {
	    {"ghcr.io", "ghcr.io"},
	    {"GHCR.io", "ghcr.io"},
	    {"https://index.docker.io/v1/", "registry-1.docker.io"},
	    {"docker.io", "registry-1.docker.io"},
	    {"registry.hub.docker.com", "registry-1.docker.io"},
	    {"http://127.0.0.1:5000/v2/", "127.0.0.1:5000"},
	};
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		char *k = vmm_credentials_host_key(cases[i].in);
		assert_string_equal(k, cases[i].out);
		free(k);
	}
	vmm_error *err = NULL;
	assert_int_equal(vmm_credentials_check_host("127.0.0.1:5000", &err), 0);
	assert_int_equal(vmm_credentials_check_host("https://ghcr.io", &err), -1);
	assert_non_null(strstr(err->msg, "doesn't start with http:// or https://"));
	vmm_error_free(err);
	err = NULL;
	assert_int_equal(vmm_credentials_check_host("a/b", &err), -1);
	vmm_error_free(err);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_credentials_env__order, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_credentials_docker__auths, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_credentials_docker__helpers, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_credentials_docker__helper_failures, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_credentials_store__roundtrip, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_credentials_host__key, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
