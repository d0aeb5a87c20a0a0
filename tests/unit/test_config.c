/* config.json: Tart's pretty and compact forms, unknown keys and order kept, errors, MACs. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <dirent.h>
#include <sys/stat.h>

#include "common/json.h"
#include "common/util.h"
#include "vm/config.h"
#include "tests/unit/helpers.h"

/* tart-spec §2.2, as `tart create --linux` writes it: no trailing newline */
static const char TART_PRETTY[] = "{\n"
				  "  \"version\" : 1,\n"
				  "  \"os\" : \"linux\",\n"
				  "  \"arch\" : \"arm64\",\n"
				  "  \"cpuCountMin\" : 4,\n"
				  "  \"cpuCount\" : 4,\n"
				  "  \"memorySizeMin\" : 4294967296,\n"
				  "  \"memorySize\" : 4294967296,\n"
				  "  \"macAddress\" : \"7a:47:bb:5f:97:c9\",\n"
				  "  \"display\" : {\n"
				  "    \"width\" : 1024,\n"
				  "    \"height\" : 768\n"
				  "  },\n"
				  "  \"diskFormat\" : \"raw\"\n"
				  "}";

/* what `tart pull` leaves: the pushed compact blob, another key order */
static const char TART_COMPACT[] =
    "{\"version\":1,\"hardwareModel\":\"YnBsaXN0\",\"ecid\":\"ZWNpZA==\",\"cpuCountMin\":4,"
    "\"arch\":\"arm64\",\"os\":\"darwin\",\"cpuCount\":8,\"memorySizeMin\":8589934592,"
    "\"memorySize\":8589934592,\"display\":{\"width\":1920,\"height\":1200,\"unit\":\"pt\"},"
    "\"diskFormat\":\"raw\",\"macAddress\":\"B6:0A:11:22:33:44\",\"displayRefit\":true}";

static vmm_config *parse_ok(const char *s)
{
	vmm_config *c = NULL;
	vmm_error *err = NULL;
	if (vmm_config_parse(&c, s, strlen(s), "`t`", &err) < 0)
		fail_msg("%s", err->msg);
	return c;
}

static char *parse_err(const char *s)
{
	vmm_config *c = NULL;
	vmm_error *err = NULL;
	if (vmm_config_parse(&c, s, strlen(s), "`/h/vms/x/config.json`", &err) == 0)
		fail_msg("parsed but should not: %s", s);
	assert_null(c);
	assert_int_equal(vmm_error_exit_code(err), 1);
	char *m = xstrdup(err->msg);
	vmm_error_free(err);
	return m;
}

static void test_config_pretty__tart_file_round_trips_byte_for_byte(void **state)
{
	(void)state;
	vmm_config *c = parse_ok(TART_PRETTY);
	assert_int_equal(c->version, 1);
	assert_string_equal(c->os, "linux");
	assert_string_equal(c->arch, "arm64");
	assert_int_equal(c->cpu_count_min, 4);
	assert_int_equal(c->cpu_count, 4);
	assert_true(c->memory_size == 4294967296ULL && c->memory_size_min == 4294967296ULL);
	assert_string_equal(c->mac, "7a:47:bb:5f:97:c9");
	assert_int_equal(c->display_width, 1024);
	assert_int_equal(c->display_height, 768);
	assert_string_equal(c->display_unit, "");
	assert_int_equal(c->display_refit, -1);
	assert_string_equal(c->disk_format, "raw");
	assert_null(c->cmdline);
	char *s = vmm_config_pretty(c);
	assert_string_equal(s, TART_PRETTY);
	free(s);
	vmm_config_free(c);
}

static void test_config_compact__pull_form_read_and_rewritten(void **state)
{
	(void)state;
	vmm_config *c = parse_ok(TART_COMPACT);
	assert_string_equal(c->os, "darwin");
	assert_int_equal(c->cpu_count, 8);
	assert_string_equal(c->mac, "b6:0a:11:22:33:44"); /* lower-cased */
	assert_string_equal(c->display_unit, "pt");
	assert_int_equal(c->display_refit, 1);
	/* compact output keeps the pull's key order and macOS keys */
	char *s = vmm_config_compact(c);
	assert_string_equal(
	    s, "{\"version\":1,\"hardwareModel\":\"YnBsaXN0\",\"ecid\":\"ZWNpZA==\","
	       "\"cpuCountMin\":4,\"arch\":\"arm64\",\"os\":\"darwin\",\"cpuCount\":8,"
	       "\"memorySizeMin\":8589934592,\"memorySize\":8589934592,\"display\":{\"width\":"
	       "1920,\"height\":1200,\"unit\":\"pt\"},\"diskFormat\":\"raw\",\"macAddress\":"
	       "\"b6:0a:11:22:33:44\",\"displayRefit\":true}");
	free(s);
	vmm_config_free(c);
}

static void test_config_unknown__keys_and_order_kept_on_change(void **state)
{
	(void)state;
	const char *in =
	    "{\"zeta\":{\"deep\":[1,2]},\"version\":1,\"os\":\"linux\","
	    "\"arch\":\"amd64\",\"cpuCountMin\":4,\"cpuCount\":4,\"memorySizeMin\":"
	    "4294967296,\"memorySize\":4294967296,\"macAddress\":\"02:00:00:00:00:01\","
	    "\"display\":{\"width\":1024,\"height\":768,\"extra\":\"kept\"},"
	    "\"diskFormat\":\"raw\",\"vendorKey\":\"a/b\",\"displayRefit\":false}";
	vmm_config *c = parse_ok(in);
	c->cpu_count = 2;
	c->memory_size = 2ULL << 30;
	strcpy(c->mac, "0a:00:00:00:00:02");
	c->display_width = 1920;
	strcpy(c->display_unit, "px");
	c->display_refit = -1; /* `tart set` without refit flags clears it */
	c->cmdline = xstrdup("console=ttyS0");
	char *s = vmm_config_compact(c);
	assert_string_equal(s, "{\"zeta\":{\"deep\":[1,2]},\"version\":1,\"os\":\"linux\","
			       "\"arch\":\"amd64\",\"cpuCountMin\":4,\"cpuCount\":2,"
			       "\"memorySizeMin\":4294967296,\"memorySize\":2147483648,"
			       "\"macAddress\":\"0a:00:00:00:00:02\",\"display\":{\"width\":1920,"
			       "\"height\":768,\"extra\":\"kept\",\"unit\":\"px\"},\"diskFormat\":"
			       "\"raw\",\"vendorKey\":\"a\\/b\",\"cmdline\":\"console=ttyS0\"}");
	free(s);
	/* and back: the rewrite parses to the same values */
	char *p = vmm_config_pretty(c);
	vmm_config *d = parse_ok(p);
	assert_int_equal(d->cpu_count, 2);
	assert_string_equal(d->cmdline, "console=ttyS0");
	assert_string_equal(d->display_unit, "px");
	assert_true(json_equal(c->json, d->json));
	free(p);
	vmm_config_free(d);
	vmm_config_free(c);
}

static void test_config_defaults__optional_keys(void **state)
{
	(void)state;
	vmm_config *c = parse_ok("{\"version\":1,\"cpuCountMin\":1,\"cpuCount\":1,"
				 "\"memorySizeMin\":1048576,\"memorySize\":1048576,"
				 "\"macAddress\":\"02:00:00:00:00:01\",\"diskFormat\":\"qcow9\"}");
	assert_string_equal(c->os, "darwin"); /* Tart's defaults */
	assert_string_equal(c->arch, "arm64");
	assert_int_equal(c->display_width, 1024);
	assert_int_equal(c->display_height, 768);
	assert_string_equal(c->disk_format, "raw"); /* unknown formats read as raw */
	vmm_config_free(c);
}

static void test_config_errors__bad_json_names_file_and_error(void **state)
{
	(void)state;
	char *m =
	    parse_err("{\n  \"version\" : 1,\n  \"os\" : \"linux\"\n  \"arch\" : \"arm64\"\n}");
	assert_non_null(strstr(m, "`/h/vms/x/config.json`: invalid JSON at line 4"));
	free(m);
	m = parse_err("[1, 2]");
	assert_non_null(strstr(m, "`/h/vms/x/config.json`: not a JSON object"));
	free(m);
	m = parse_err("");
	assert_non_null(strstr(m, "invalid JSON"));
	free(m);
}

static void test_config_errors__missing_and_mistyped_keys(void **state)
{
	(void)state;
	static const char *const required[] = {"version",	"cpuCountMin", "cpuCount",
					       "memorySizeMin", "memorySize",  "macAddress"};
	for (size_t i = 0; i < ARRAY_SIZE(required); i++) {
		json_t *o = NULL;
		assert_int_equal(vmm_json_parse(&o, TART_PRETTY, strlen(TART_PRETTY), "t", NULL),
				 0);
		json_object_del(o, required[i]);
		char *s = vmm_json_compact(o, 0);
		char *m = parse_err(s);
		char *want = xasprintf("`/h/vms/x/config.json`: missing key `%s`", required[i]);
		if (!strstr(m, want))
			fail_msg("\"%s\" lacks \"%s\"", m, want);
		free(want);
		free(m);
		free(s);
		json_decref(o);
	}
	static const struct {
		const char *key, *value, *want;
	} bad[] = {
	    {"cpuCount", "\"4\"", "`cpuCount` must be an integer"},
	    {"cpuCount", "0", "`cpuCount` 0 is out of range"},
	    {"memorySize", "12", "`memorySize` 12 is out of range"},
	    {"os", "\"windows\"", "unknown `os`"},
	    {"arch", "\"riscv\"", "unknown `arch`"},
	    {"macAddress", "42", "`macAddress` must be a string"},
	    {"macAddress", "\"7a:47:bb:5f:97\"", "is not a MAC address"},
	    {"macAddress", "\"7a:47:bb:5f:97:c9x\"", "is not a MAC address"}, /* 18 chars */
	    {"macAddress", "\"7a-47-bb-5f-97-c9\"", "is not a MAC address"},
	    {"macAddress", "\"zz:47:bb:5f:97:c9\"", "is not a MAC address"},
	    {"macAddress", "\"7a:47:bb:5f:97:c9:00:11\"", "is not a MAC address"},
	    {"display", "[]", "`display` must be an object"},
	    {"display", "{\"width\":1}", "missing key `height`"},
	    {"display", "{\"width\":1,\"height\":1,\"unit\":\"cm\"}", "neither \"pt\" nor \"px\""},
	    {"display", "{\"width\":0,\"height\":1}", "is not a size"},
	    {"displayRefit", "\"yes\"", "`displayRefit` must be true or false"},
	    {"cmdline", "1", "`cmdline` must be a string"},
	};
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		json_t *o = NULL, *v = NULL;
		assert_int_equal(vmm_json_parse(&o, TART_PRETTY, strlen(TART_PRETTY), "t", NULL),
				 0);
		v = json_loads(bad[i].value, JSON_DECODE_ANY, NULL);
		assert_non_null(v);
		json_object_set_new(o, bad[i].key, v);
		char *s = vmm_json_compact(o, 0);
		char *m = parse_err(s);
		if (!strstr(m, bad[i].want))
			fail_msg("%s=%s: \"%s\" lacks \"%s\"", bad[i].key, bad[i].value, m,
				 bad[i].want);
		free(m);
		free(s);
		json_decref(o);
	}
}

static void test_config_new__linux_as_tart_creates_it(void **state)
{
	(void)state;
	vmm_config *c = vmm_config_new_linux();
	char *s = vmm_config_pretty(c);
	char *want =
	    xasprintf("{\n  \"version\" : 1,\n  \"os\" : \"linux\",\n  \"arch\" : \"%s\",\n"
		      "  \"cpuCountMin\" : 4,\n  \"cpuCount\" : 4,\n"
		      "  \"memorySizeMin\" : 4294967296,\n  \"memorySize\" : 4294967296,\n"
		      "  \"macAddress\" : \"%s\",\n  \"display\" : {\n    \"width\" : 1024,\n"
		      "    \"height\" : 768\n  },\n  \"diskFormat\" : \"raw\"\n}",
		      vmm_host_arch(), c->mac);
	assert_string_equal(s, want);
	assert_true(vmm_mac_is_valid(c->mac));
	free(want);
	free(s);
	vmm_config_free(c);
}

static void test_config_mac__random_unicast_locally_administered(void **state)
{
	(void)state;
	enum { N = 2000 };
	char(*macs)[18] = xcalloc(N, 18);
	unsigned seen_or = 0, seen_and = 0xff;
	for (int i = 0; i < N; i++) {
		vmm_mac_random(macs[i]);
		assert_true(vmm_mac_is_valid(macs[i]));
		for (const char *p = macs[i]; *p; p++)
			assert_false(*p >= 'A' && *p <= 'F'); /* lower case */
		unsigned first = (unsigned)strtoul(macs[i], NULL, 16);
		assert_int_equal(first & 0x01, 0);    /* unicast */
		assert_int_equal(first & 0x02, 0x02); /* locally administered */
		seen_or |= first;
		seen_and &= first;
	}
	/* the other bits of the first octet do vary: the rest is random */
	assert_int_equal(seen_or & 0xfc, 0xfc);
	assert_int_equal(seen_and & 0xfc, 0);
	/* no duplicates among 2000 (48-2 random bits) */
	qsort(macs, N, 18, (int (*)(const void *, const void *))strcmp);
	for (int i = 1; i < N; i++)
		assert_string_not_equal(macs[i - 1], macs[i]);
	free(macs);
}

static void test_config_mac__validation(void **state)
{
	(void)state;
	assert_true(vmm_mac_is_valid("7a:47:bb:5f:97:c9"));
	assert_true(vmm_mac_is_valid("7A:47:BB:5F:97:C9"));
	assert_false(vmm_mac_is_valid(NULL));
	assert_false(vmm_mac_is_valid(""));
	assert_false(vmm_mac_is_valid("7a:47:bb:5f:97"));
	assert_false(vmm_mac_is_valid("7a:47:bb:5f:97:c9:"));
	assert_false(vmm_mac_is_valid("7a:47:bb:5f:97:g9"));
	assert_false(vmm_mac_is_valid("7a.47.bb.5f.97.c9"));
}

static void test_config_save__atomic_pretty_no_trailing_newline(void **state)
{
	(void)state;
	char *dir = test_tmpdir("/tmp/vmm-config-");
	char *path = path_join(dir, "config.json");
	vmm_config *c = parse_ok(TART_PRETTY);
	vmm_error *err = NULL;
	assert_int_equal(vmm_config_save(c, path, &err), 0);
	char *buf = NULL;
	size_t len = 0;
	assert_int_equal(vmm_read_file(path, 1 << 20, &buf, &len, NULL), 0);
	assert_string_equal(buf, TART_PRETTY);
	assert_int_equal(len, strlen(TART_PRETTY));
	struct stat st;
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0644);
	DIR *dh = opendir(dir); /* nothing left beside it */
	struct dirent *de;
	int n = 0;
	while ((de = readdir(dh)))
		n += de->d_name[0] != '.';
	closedir(dh);
	assert_int_equal(n, 1);
	vmm_config *d = NULL;
	assert_int_equal(vmm_config_load(&d, path, &err), 0);
	assert_string_equal(d->mac, c->mac);
	/* a load error names the file */
	assert_int_equal(vmm_write_file_atomic(path, "{\"version\":", 11, 0644, NULL), 0);
	vmm_config *e = NULL;
	assert_int_equal(vmm_config_load(&e, path, &err), -1);
	char *want = xasprintf("`%s`: invalid JSON", path);
	assert_non_null(strstr(err->msg, want));
	free(want);
	vmm_error_free(err);
	vmm_config_free(d);
	vmm_config_free(c);
	free(buf);
	test_tmpdir_free(dir);
	free(path);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_config_pretty__tart_file_round_trips_byte_for_byte),
	    cmocka_unit_test(test_config_compact__pull_form_read_and_rewritten),
	    cmocka_unit_test(test_config_unknown__keys_and_order_kept_on_change),
	    cmocka_unit_test(test_config_defaults__optional_keys),
	    cmocka_unit_test(test_config_errors__bad_json_names_file_and_error),
	    cmocka_unit_test(test_config_errors__missing_and_mistyped_keys),
	    cmocka_unit_test(test_config_new__linux_as_tart_creates_it),
	    cmocka_unit_test(test_config_mac__random_unicast_locally_administered),
	    cmocka_unit_test(test_config_mac__validation),
	    cmocka_unit_test(test_config_save__atomic_pretty_no_trailing_newline),
	};
	return cmocka_run_group_tests_name("config", tests, NULL, NULL);
}
