/* Progress: the size, rate and time formatters, the bar, and Tart's plain lines. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "common/progress.h"

static void expect(char *got, const char *want)
{
	assert_string_equal(got, want);
	free(got);
}

static void test_progress_format__rate(void **state)
{
	(void)state;
	expect(vmm_progress_format_rate(0), "-");
	expect(vmm_progress_format_rate(-5), "-");
	expect(vmm_progress_format_rate(512), "512 B/s");
	expect(vmm_progress_format_rate(1536), "1.50 KiB/s");
	expect(vmm_progress_format_rate(300.0 * 1024 * 1024), "300 MiB/s");
	expect(vmm_progress_format_rate(1.25 * 1024 * 1024 * 1024), "1.25 GiB/s");
}

static void test_progress_format__eta(void **state)
{
	(void)state;
	expect(vmm_progress_format_eta(-1), "--:--");
	expect(vmm_progress_format_eta(0), "0:00");
	expect(vmm_progress_format_eta(4.4), "0:04");
	expect(vmm_progress_format_eta(59.6), "1:00");
	expect(vmm_progress_format_eta(725), "12:05");
	expect(vmm_progress_format_eta(3723), "1:02:03");
	expect(vmm_progress_format_eta(1e12), "--:--");
}

static void test_progress_format__plain(void **state)
{
	(void)state;
	expect(vmm_progress_format_plain(0, 100), "0%");
	expect(vmm_progress_format_plain(37, 100), "37%");
	expect(vmm_progress_format_plain(999, 1000), "99%"); /* never 100% before the end */
	expect(vmm_progress_format_plain(1000, 1000), "100%");
	expect(vmm_progress_format_plain(5, 0), "0%");
	expect(vmm_progress_format_plain(UINT64_MAX / 2, UINT64_MAX), "49%");
}

static void test_progress_format__bar(void **state)
{
	(void)state;
	uint64_t G = 1024ULL * 1024 * 1024;
	/* half of 2 GiB in 4 s: 256 MiB/s, 4 s left; the bar takes what 100 columns leave */
	char *s = vmm_progress_format_bar("pulling disk", G, 2 * G, 4.0, 100);
	assert_string_equal(s, "pulling disk [##################...................]  50%  "
			       "1.00 GiB / 2.00 GiB  256 MiB/s  0:04 left");
	assert_true(strlen(s) <= 100);
	free(s);
	/* narrow terminal: no bar, numbers only */
	s = vmm_progress_format_bar("pushing disk", 0, 0, 0, 40);
	assert_string_equal(s, "pushing disk   0%  0 B / ?  -  --:-- left");
	free(s);
	/* overshoot never overflows the bar */
	s = vmm_progress_format_bar("x", 3 * G, G, 1.0, 80);
	assert_non_null(strstr(s, "100%"));
	assert_non_null(strstr(s, "#] "));
	assert_true(strlen(s) <= 80);
	free(s);
}

static void test_progress_plain__lines(void **state)
{
	(void)state;
	FILE *f = tmpfile();
	vmm_progress *p = vmm_progress_new("pulling disk", 1000, VMM_PROGRESS_PLAIN, f);
	vmm_progress_add(p, 10); /* within a second of "0%": not printed */
	vmm_progress_add(p, 500);
	vmm_progress_finish(p);
	vmm_progress_finish(p); /* idempotent */
	vmm_progress_free(p);
	char buf[256] = {0};
	rewind(f);
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	buf[n] = '\0';
	assert_string_equal(buf, "0%\n100%\n");
	fclose(f);
}

static void test_progress_bar__redraws_in_place(void **state)
{
	(void)state;
	FILE *f = tmpfile();
	vmm_progress *p = vmm_progress_new("pushing disk", 100, VMM_PROGRESS_BAR, f);
	vmm_progress_add(p, 30);
	vmm_progress_finish(p);
	vmm_progress_free(p);
	char buf[1024] = {0};
	rewind(f);
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	buf[n] = '\0';
	assert_true(buf[0] == '\r');
	assert_non_null(strstr(buf, "\033[K"));
	assert_non_null(strstr(buf, "100%"));
	assert_int_equal(buf[n - 1], '\n');
	assert_null(strchr(buf, '\n') + 1 < buf + n ? strchr(strchr(buf, '\n') + 1, '\n') : NULL);
	fclose(f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_progress_format__rate),
	    cmocka_unit_test(test_progress_format__eta),
	    cmocka_unit_test(test_progress_format__plain),
	    cmocka_unit_test(test_progress_format__bar),
	    cmocka_unit_test(test_progress_plain__lines),
	    cmocka_unit_test(test_progress_bar__redraws_in_place),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
