/* Tart's plain tables, relative and ISO-8601 dates, byte counts. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "common/format.h"
#include "common/util.h"

static void test_format_table__tart_list_example(void **state)
{
	(void)state;
	static const char *const headers[] = {"Source", "Name",	    "Disk",
					      "Size",	"Accessed", "State"};
	static const char *const cells[] = {
	    "local",	   "ubuntu",  "20",	     "3",
	    "2 hours ago", "running", "OCI",	     "ghcr.io/cirruslabs/ubuntu:latest",
	    "20",	   "3",	      "2 hours ago", "stopped",
	};
	char *t = vmm_format_table(headers, 6, cells, 2);
	/* the header keeps its pad spaces; only the end of the whole text is trimmed */
	assert_string_equal(
	    t, "Source Name                             Disk Size Accessed    State  \n"
	       "local  ubuntu                           20   3    2 hours ago running\n"
	       "OCI    ghcr.io/cirruslabs/ubuntu:latest 20   3    2 hours ago stopped");
	free(t);
}

static void test_format_table__tart_get_example(void **state)
{
	(void)state;
	static const char *const headers[] = {"OS",	    "CPU",  "Memory",  "Disk",
					      "DiskFormat", "Size", "Display", "State"};
	static const char *const cells[] = {"linux", "4",     "4096",	  "50",
					    "raw",   "0.002", "1024x768", "stopped"};
	char *t = vmm_format_table(headers, 8, cells, 1);
	assert_string_equal(t, "OS    CPU Memory Disk DiskFormat Size  Display  State  \n"
			       "linux 4   4096   50   raw        0.002 1024x768 stopped");
	free(t);
}

static void test_format_table__last_line_trimmed_header_only(void **state)
{
	(void)state;
	static const char *const headers[] = {"A", "Long"};
	static const char *const cells[] = {"wide-cell", "x"};
	char *t = vmm_format_table(headers, 2, cells, 1);
	assert_string_equal(t, "A         Long\nwide-cell x");
	free(t);
	/* a short last column on the last row: its padding goes with the trim */
	static const char *const cells2[] = {"a", "bbbbbb", "c", ""};
	char *u = vmm_format_table(headers, 2, cells2, 2);
	assert_string_equal(u, "A Long  \na bbbbbb\nc");
	free(u);
}

static void test_format_relative__units(void **state)
{
	(void)state;
	static const struct {
		long delta; /* now - then */
		const char *want;
	} cases[] = {
	    {0, "in 0 seconds"},
	    {1, "1 second ago"},
	    {59, "59 seconds ago"},
	    {60, "1 minute ago"},
	    {119, "1 minute ago"},
	    {3600, "1 hour ago"},
	    {2 * 3600 + 59 * 60, "2 hours ago"},
	    {86400, "1 day ago"},
	    {3 * 86400 + 5, "3 days ago"},
	    {7 * 86400, "1 week ago"},
	    {20 * 86400, "2 weeks ago"},
	    {400 * 86400L, "1 year ago"},
	    {-1, "in 1 second"},
	    {-300, "in 5 minutes"},
	};
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		char *s = vmm_format_relative(1000000000, 1000000000 + cases[i].delta);
		if (strcmp(s, cases[i].want) != 0)
			fail_msg("delta %ld: got \"%s\", want \"%s\"", cases[i].delta, s,
				 cases[i].want);
		free(s);
	}
}

static void test_format_iso8601__utc_seconds(void **state)
{
	(void)state;
	char *a = vmm_format_iso8601(0);
	char *b = vmm_format_iso8601(1778622318);
	assert_string_equal(a, "1970-01-01T00:00:00Z");
	assert_string_equal(b, "2026-05-12T21:45:18Z");
	free(a);
	free(b);
}

static void test_format_bytes__binary_units(void **state)
{
	(void)state;
	static const struct {
		uint64_t n;
		const char *want;
	} cases[] = {
	    {0, "0 B"},
	    {1023, "1023 B"},
	    {1024, "1.00 KiB"},
	    {1536, "1.50 KiB"},
	    {10 << 20, "10.0 MiB"},
	    {(uint64_t)500 << 30, "500 GiB"},
	    {UINT64_MAX, "16.0 EiB"},
	};
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		char *s = vmm_format_bytes(cases[i].n);
		assert_string_equal(s, cases[i].want);
		free(s);
	}
}

/* ByteCountFormatter (.file, decimal) as Tart prints disk sizes in errors. */
static void test_format_decimal_bytes__byte_count_formatter(void **state)
{
	(void)state;
	static const struct {
		uint64_t n;
		const char *want;
	} cases[] = {
	    {999, "999 bytes"},		{123456, "123 KB"},	    {12345678, "12.3 MB"},
	    {20000000000ULL, "20 GB"},	{50000000000ULL, "50 GB"},  {1500000000ULL, "1.5 GB"},
	    {1234567890ULL, "1.23 GB"}, {2000000000000ULL, "2 TB"},
	};
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		char *s = vmm_format_decimal_bytes(cases[i].n);
		assert_string_equal(s, cases[i].want);
		free(s);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_format_table__tart_list_example),
	    cmocka_unit_test(test_format_table__tart_get_example),
	    cmocka_unit_test(test_format_table__last_line_trimmed_header_only),
	    cmocka_unit_test(test_format_relative__units),
	    cmocka_unit_test(test_format_iso8601__utc_seconds),
	    cmocka_unit_test(test_format_bytes__binary_units),
	    cmocka_unit_test(test_format_decimal_bytes__byte_count_formatter),
	};
	return cmocka_run_group_tests_name("format", tests, NULL, NULL);
}
