/* JSON helpers: parse errors that name the source, Foundation's pretty and compact forms. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/json.h"
#include "common/util.h"

static json_t *parse_ok(const char *s)
{
	json_t *v = NULL;
	vmm_error *err = NULL;
	if (vmm_json_parse(&v, s, strlen(s), "`t`", &err) < 0)
		fail_msg("%s: %s", s, err->msg);
	return v;
}

static void test_json_parse__error_names_source_and_position(void **state)
{
	(void)state;
	static const struct {
		const char *in;
		const char *want; /* substring of the message */
	} cases[] = {
	    {"{\"a\": 1,}", "line 1 column 9"},
	    {"{\n  \"a\" : 1\n  \"b\" : 2\n}", "line 3"},
	    {"", "invalid JSON"},
	    {"{\"a\": tru}", "invalid JSON"},
	    {"{\"a\": 1, \"a\": 2}", "duplicate object key"},
	    {"[1, 2", "invalid JSON"},
	};
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		json_t *v = NULL;
		vmm_error *err = NULL;
		assert_int_equal(
		    vmm_json_parse(&v, cases[i].in, strlen(cases[i].in), "`/x/config.json`", &err),
		    -1);
		assert_null(v);
		assert_non_null(err);
		if (!strstr(err->msg, "`/x/config.json`: invalid JSON") ||
		    !strstr(err->msg, cases[i].want))
			fail_msg("case %zu: message \"%s\" lacks \"%s\"", i, err->msg,
				 cases[i].want);
		assert_int_equal(vmm_error_exit_code(err), 1);
		vmm_error_free(err);
	}
}

static void test_json_parse__reads_a_length_not_a_c_string(void **state)
{
	(void)state;
	json_t *v = NULL;
	const char buf[] = "{\"a\":1}GARBAGE";
	assert_int_equal(vmm_json_parse(&v, buf, 7, "`t`", NULL), 0);
	assert_int_equal(json_integer_value(json_object_get(v, "a")), 1);
	json_decref(v);
}

static void test_json_load__missing_file_names_it(void **state)
{
	(void)state;
	json_t *v = NULL;
	vmm_error *err = NULL;
	assert_int_equal(vmm_json_load_file(&v, "/nonexistent/vmm/x.json", 1024, &err), -1);
	assert_non_null(strstr(err->msg, "`/nonexistent/vmm/x.json`"));
	assert_non_null(strstr(err->msg, "no such file"));
	vmm_error_free(err);
}

static void test_json_load__too_large_refused(void **state)
{
	(void)state;
	char path[] = "/tmp/vmm-json-XXXXXX";
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	assert_int_equal(vmm_write_all(fd, "{\"a\":\"0123456789\"}", 18), 0);
	close(fd);
	json_t *v = NULL;
	vmm_error *err = NULL;
	assert_int_equal(vmm_json_load_file(&v, path, 17, &err), -1);
	assert_non_null(strstr(err->msg, "larger than 17 bytes"));
	vmm_error_free(err);
	err = NULL;
	assert_int_equal(vmm_json_load_file(&v, path, 18, &err), 0); /* exactly max */
	json_decref(v);
	unlink(path);
}

static void test_json_pretty__foundation_layout(void **state)
{
	(void)state;
	static const struct {
		const char *in, *want;
	} cases[] = {
	    /* 2-space indent, " : ", key order kept, no trailing newline */
	    {"{\"b\":1,\"a\":{\"y\":true,\"x\":null}}",
	     "{\n  \"b\" : 1,\n  \"a\" : {\n    \"y\" : true,\n    \"x\" : null\n  }\n}"},
	    {"[1,\"two\",[]]", "[\n  1,\n  \"two\",\n  [\n\n  ]\n]"},
	    {"{}", "{\n\n}"},
	    {"[]", "[\n\n]"},
	    /* '/' escaped as Foundation does; non-ASCII kept as UTF-8 */
	    {"{\"p\":\"a/b\",\"u\":\"\xc3\xa9\"}",
	     "{\n  \"p\" : \"a\\/b\",\n  \"u\" : \"\xc3\xa9\"\n}"},
	    {"{\"big\":4294967296,\"neg\":-1}", "{\n  \"big\" : 4294967296,\n  \"neg\" : -1\n}"},
	};
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		json_t *v = parse_ok(cases[i].in);
		char *s = vmm_json_pretty(v);
		assert_string_equal(s, cases[i].want);
		free(s);
		json_decref(v);
	}
}

static void test_json_compact__sorted_and_unsorted(void **state)
{
	(void)state;
	json_t *v = parse_ok("{\"mediaType\":\"a/b\",\"config\":{\"z\":1,\"a\":2},\"layers\":[]}");
	char *u = vmm_json_compact(v, 0);
	char *s = vmm_json_compact(v, 1);
	assert_string_equal(u,
			    "{\"mediaType\":\"a\\/b\",\"config\":{\"z\":1,\"a\":2},\"layers\":[]}");
	assert_string_equal(s,
			    "{\"config\":{\"a\":2,\"z\":1},\"layers\":[],\"mediaType\":\"a\\/b\"}");
	free(u);
	free(s);
	json_decref(v);
}

static void test_json_pretty__round_trips_through_parse(void **state)
{
	(void)state;
	const char *in = "{\"k\":[1,{\"a\":\"x\\ny\"}],\"e\":{},\"f\":1.5}";
	json_t *v = parse_ok(in);
	char *s = vmm_json_pretty(v);
	json_t *w = parse_ok(s);
	assert_true(json_equal(v, w));
	free(s);
	json_decref(v);
	json_decref(w);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_json_parse__error_names_source_and_position),
	    cmocka_unit_test(test_json_parse__reads_a_length_not_a_c_string),
	    cmocka_unit_test(test_json_load__missing_file_names_it),
	    cmocka_unit_test(test_json_load__too_large_refused),
	    cmocka_unit_test(test_json_pretty__foundation_layout),
	    cmocka_unit_test(test_json_compact__sorted_and_unsorted),
	    cmocka_unit_test(test_json_pretty__round_trips_through_parse),
	};
	return cmocka_run_group_tests_name("json", tests, NULL, NULL);
}
