/* Manifests: Tart's exact bytes, the OCI config blob, and validation of hostile input. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "common/json.h"
#include "registry/oci/manifest.h"

#define H(c)                                                                                       \
	"sha256:" c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c  \
	    c c c c c c c c c c c c c c c c c c c c c c c c
#define DA H("a")
#define DB H("b")
#define DC H("c")
#define DD H("d")
#define DE H("e")

/* spec §5.3: the stub config blob, 99 bytes, sha256 7ebb7602…62be */
static void test_manifest_config_blob__tart_bytes(void **state)
{
	(void)state;
	char *s = vmm_oci_config_encode("arm64", "linux", "raw", NULL, 0);
	assert_string_equal(s,
			    "{\"architecture\":\"arm64\",\"config\":{\"Labels\":{\"org.cirruslabs."
			    "tart.disk.format\":\"raw\"}},\"os\":\"linux\"}");
	assert_int_equal(strlen(s), 99);
	char d[72];
	vmm_sha256_digest(s, strlen(s), d);
	assert_string_equal(
	    d, "sha256:7ebb76025a1831b9abea3486d58c4c976928110195586a6c7575ef3b557062be");
	free(s);
}

static void test_manifest_config_blob__labels(void **state)
{
	(void)state;
	const char *labels[] = {"b=2",	    "=skipped", "novalue", "A=x=y", "url=http://x/y",
				"item10=a", "item9=b"};
	char *s = vmm_oci_config_encode("amd64", "linux", "raw", labels, 7);
	/* Foundation order: case-insensitive, numbers by value; '/' escaped */
	assert_string_equal(
	    s, "{\"architecture\":\"amd64\",\"config\":{\"Labels\":{\"A\":\"x=y\",\"b\":\"2\","
	       "\"item9\":\"b\",\"item10\":\"a\",\"novalue\":\"\",\"org.cirruslabs.tart.disk."
	       "format\":\"raw\",\"url\":\"http:\\/\\/x\\/y\"}},\"os\":\"linux\"}");
	free(s);
}

static void test_manifest_foundation_compare__cases(void **state)
{
	(void)state;
	assert_true(vmm_foundation_compare("a", "B") < 0);
	assert_true(vmm_foundation_compare("B", "a") > 0);
	assert_true(vmm_foundation_compare("x2", "x10") < 0);
	assert_true(vmm_foundation_compare("x010", "x9") > 0);
	assert_true(vmm_foundation_compare("abc", "ABC") > 0); /* forced: literal order */
	assert_int_equal(vmm_foundation_compare("same", "same"), 0);
	assert_true(vmm_foundation_compare("ab", "abc") < 0);
	/* fixed keys Tart emits sort as bytes do */
	assert_true(vmm_foundation_compare("annotations", "config") < 0);
	assert_true(vmm_foundation_compare("mediaType", "schemaVersion") < 0);
	assert_true(vmm_foundation_compare("org.cirruslabs.tart.uncompressed-content-digest",
					   "org.cirruslabs.tart.uncompressed-size") < 0);
}

/* spec §5.2: the exact bytes Tart PUTs */
static void test_manifest_encode__tart_bytes(void **state)
{
	(void)state;
	vmm_manifest *m = vmm_manifest_new();
	m->config.media_type = xstrdup(VMM_MEDIA_OCI_CONFIG_V1);
	strcpy(m->config.digest,
	       "sha256:7ebb76025a1831b9abea3486d58c4c976928110195586a6c7575ef3b557062be");
	m->config.size = 99;
	vmm_manifest_add_layer(m, VMM_MEDIA_TART_CONFIG, DA, 180);
	vmm_descriptor *d = vmm_manifest_add_layer(m, VMM_MEDIA_TART_DISK_V2, DB, 2400000);
	vmm_descriptor_annotate(d, VMM_ANN_UNCOMPRESSED_SIZE, "536870912");
	vmm_descriptor_annotate(d, VMM_ANN_UNCOMPRESSED_DIGEST, DC);
	vmm_manifest_add_layer(m, VMM_MEDIA_TART_NVRAM, DD, 0);
	vmm_manifest_annotate(m, VMM_ANN_UPLOAD_TIME, "2026-05-12T21:45:18Z");
	vmm_manifest_annotate(m, VMM_ANN_DISK_SIZE, "536870912");
	char *s = vmm_manifest_encode(m);
	const char *want =
	    "{\"annotations\":{\"org.cirruslabs.tart.uncompressed-disk-size\":\"536870912\","
	    "\"org.cirruslabs.tart.upload-time\":\"2026-05-12T21:45:18Z\"},\"config\":{\"digest\":"
	    "\"sha256:7ebb76025a1831b9abea3486d58c4c976928110195586a6c7575ef3b557062be\","
	    "\"mediaType\":\"application\\/vnd.oci.image.config.v1+json\",\"size\":99},"
	    "\"layers\":[{\"annotations\":{},\"digest\":\"" DA "\",\"mediaType\":"
	    "\"application\\/vnd.cirruslabs.tart.config.v1\",\"size\":180},{\"annotations\":{"
	    "\"org.cirruslabs.tart.uncompressed-content-digest\":\"" DC "\","
	    "\"org.cirruslabs.tart.uncompressed-size\":\"536870912\"},\"digest\":\"" DB "\","
	    "\"mediaType\":\"application\\/vnd.cirruslabs.tart.disk.v2\",\"size\":2400000},"
	    "{\"annotations\":{},\"digest\":\"" DD "\",\"mediaType\":\"application\\/vnd."
	    "cirruslabs.tart.nvram.v1\",\"size\":0}],\"mediaType\":\"application\\/vnd.oci."
	    "image.manifest.v1+json\",\"schemaVersion\":2}";
	assert_string_equal(s, want);

	/* and it parses back with Tart's rules */
	vmm_manifest *p = NULL;
	vmm_error *err = NULL;
	assert_int_equal(vmm_manifest_parse(&p, s, strlen(s), &err), 0);
	assert_int_equal(vmm_manifest_check_tart(p, &err), 0);
	assert_int_equal(p->nlayers, 3);
	assert_int_equal(p->disk_size, 536870912);
	assert_int_equal(p->layers[1].uncompressed_size, 536870912);
	assert_string_equal(p->layers[1].uncompressed_digest, DC);
	assert_int_equal(vmm_manifest_find(p, VMM_MEDIA_TART_NVRAM), 2);
	char *again = vmm_manifest_encode(p);
	assert_string_equal(again, s);
	free(again);
	vmm_manifest_free(p);
	free(s);
	vmm_manifest_free(m);
}

static char *tart_manifest(const char *layers, const char *annotations)
{
	return xasprintf("{\"schemaVersion\":2,\"mediaType\":\"" VMM_MEDIA_OCI_MANIFEST_V1 "\","
			 "\"config\":{\"mediaType\":\"" VMM_MEDIA_OCI_CONFIG_V1
			 "\",\"digest\":\"" DA "\",\"size\":99},\"layers\":[%s]%s%s}",
			 layers, annotations ? ",\"annotations\":" : "",
			 annotations ? annotations : "");
}

#define CFG "{\"mediaType\":\"" VMM_MEDIA_TART_CONFIG "\",\"digest\":\"" DA "\",\"size\":10}"
#define NV "{\"mediaType\":\"" VMM_MEDIA_TART_NVRAM "\",\"digest\":\"" DB "\",\"size\":10}"
#define DISK(sz, usz)                                                                              \
	"{\"mediaType\":\"" VMM_MEDIA_TART_DISK_V2 "\",\"digest\":\"" DC "\",\"size\":" sz         \
	",\"annotations\":{\"" VMM_ANN_UNCOMPRESSED_SIZE "\":\"" usz                               \
	"\",\"" VMM_ANN_UNCOMPRESSED_DIGEST "\":\"" DE "\"}}"

/* Older Tart images have layers of varying sizes: offsets follow the annotations. */
static void test_manifest_check_tart__variable_layer_sizes(void **state)
{
	(void)state;
	char *s = tart_manifest(CFG "," DISK("100000", "4194304") "," DISK(
				    "200000", "12582912") "," DISK("5", "1000") "," NV,
				"{\"" VMM_ANN_DISK_SIZE "\":\"16778216\"}");
	vmm_manifest *m = NULL;
	vmm_error *err = NULL;
	assert_int_equal(vmm_manifest_parse(&m, s, strlen(s), &err), 0);
	assert_int_equal(vmm_manifest_check_tart(m, &err), 0);
	assert_int_equal(m->layers[1].offset, 0);
	assert_int_equal(m->layers[2].offset, 4194304);
	assert_int_equal(m->layers[3].offset, 4194304 + 12582912);
	assert_int_equal(m->disk_size, 16778216);
	vmm_manifest_free(m);
	free(s);
}

typedef struct bad_case {
	const char *name;
	char *text;
	const char *needle;
	bool tart_only; /* parses, but fails Tart's rules */
} bad_case;

static void test_manifest_parse__hostile(void **state)
{
	(void)state;
	bad_case cases[] = {
	    {"not JSON", xstrdup("<html>hello</html>"), "invalid JSON", false},
	    {"array", xstrdup("[1,2]"), "not a JSON object", false},
	    {"schema 1", xstrdup("{\"schemaVersion\":1}"), "schemaVersion", false},
	    {"index",
	     xstrdup("{\"schemaVersion\":2,\"mediaType\":\"application/"
		     "vnd.oci.image.index.v1+json\",\"manifests\":[]}"),
	     "image index", false},
	    {"no layers", xstrdup("{\"schemaVersion\":2,\"config\":{}}"), "layers", false},
	    {"bad digest",
	     tart_manifest("{\"mediaType\":\"x\",\"digest\":\"sha256:../../etc\",\"size\":1}",
			   NULL),
	     "is not sha256", false},
	    {"md5 digest",
	     tart_manifest("{\"mediaType\":\"x\",\"digest\":\"md5:abc\",\"size\":1}", NULL),
	     "is not sha256", false},
	    {"negative size",
	     tart_manifest("{\"mediaType\":\"x\",\"digest\":\"" DA "\",\"size\":-1}", NULL),
	     "absurd", false},
	    {"huge size",
	     tart_manifest("{\"mediaType\":\"x\",\"digest\":\"" DA "\",\"size\":9007199254740993}",
			   NULL),
	     "absurd", false},
	    {"annotation not string",
	     tart_manifest("{\"mediaType\":\"x\",\"digest\":\"" DA
			   "\",\"size\":1,\"annotations\":{\"a\":1}}",
			   NULL),
	     "not a string", false},
	    {"duplicate keys", xstrdup("{\"schemaVersion\":2,\"schemaVersion\":2}"), "invalid JSON",
	     false},
	    {"legacy v1",
	     tart_manifest(CFG ",{\"mediaType\":\"" VMM_MEDIA_TART_DISK_V1 "\",\"digest\":\"" DC
			       "\",\"size\":1}," NV,
			   NULL),
	     "no longer supported", true},
	    {"no nvram", tart_manifest(CFG "," DISK("10", "10"), NULL), "exactly one", true},
	    {"two configs", tart_manifest(CFG "," CFG "," DISK("10", "10") "," NV, NULL),
	     "exactly one", true},
	    {"no disk", tart_manifest(CFG "," NV, NULL),
	     "no application/vnd.cirruslabs.tart.disk.v2", true},
	    {"missing size annotation",
	     tart_manifest(CFG ",{\"mediaType\":\"" VMM_MEDIA_TART_DISK_V2 "\",\"digest\":\"" DC
			       "\",\"size\":10}," NV,
			   NULL),
	     "missing the org.cirruslabs.tart.uncompressed-size", true},
	    {"size not a number", tart_manifest(CFG "," DISK("10", "12x") "," NV, NULL),
	     "not a number", true},
	    {"impossible ratio", tart_manifest(CFG "," DISK("10", "1099511627776") "," NV, NULL),
	     "cannot hold", true},
	    {"zero uncompressed size (an unbounded decoder)",
	     tart_manifest(CFG "," DISK("10", "0") "," NV, NULL), "uncompressed size of 0", true},
	    {"terabytes claimed",
	     tart_manifest(CFG "," DISK("100000000000", "20000000000000") "," NV, NULL),
	     "the most vmm accepts", true},
	    {"disk size lie",
	     tart_manifest(CFG "," DISK("10", "10") "," NV, "{\"" VMM_ANN_DISK_SIZE "\":\"11\"}"),
	     "does not match", true},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		vmm_manifest *m = NULL;
		vmm_error *err = NULL;
		int rc = vmm_manifest_parse(&m, cases[i].text, strlen(cases[i].text), &err);
		if (cases[i].tart_only) {
			if (rc != 0)
				fail_msg("%s: parse failed: %s", cases[i].name, err->msg);
			rc = vmm_manifest_check_tart(m, &err);
		}
		if (rc == 0)
			fail_msg("%s: accepted", cases[i].name);
		if (!strstr(err->msg, cases[i].needle))
			fail_msg("%s: `%s` lacks `%s`", cases[i].name, err->msg, cases[i].needle);
		vmm_error_free(err);
		vmm_manifest_free(m);
		free(cases[i].text);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_manifest_config_blob__tart_bytes),
	    cmocka_unit_test(test_manifest_config_blob__labels),
	    cmocka_unit_test(test_manifest_foundation_compare__cases),
	    cmocka_unit_test(test_manifest_encode__tart_bytes),
	    cmocka_unit_test(test_manifest_check_tart__variable_layer_sizes),
	    cmocka_unit_test(test_manifest_parse__hostile),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
