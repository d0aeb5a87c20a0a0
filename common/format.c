#include "common/format.h"
#include "common/util.h"

#include <string.h>

char *vmm_format_table(const char *const *headers, size_t ncols, const char *const *cells,
		       size_t nrows)
{
	size_t *width = xcalloc(ncols, sizeof(*width));
	for (size_t c = 0; c < ncols; c++) {
		width[c] = strlen(headers[c]);
		for (size_t r = 0; r < nrows; r++) {
			size_t l = strlen(cells[r * ncols + c]);
			if (l > width[c])
				width[c] = l;
		}
	}
	size_t line = ncols;
	for (size_t c = 0; c < ncols; c++)
		line += width[c];
	char *out = xmalloc(line * (nrows + 1) + 1);
	char *p = out;
	for (size_t r = 0; r <= nrows; r++) {
		for (size_t c = 0; c < ncols; c++) {
			const char *s = r == 0 ? headers[c] : cells[(r - 1) * ncols + c];
			size_t l = strlen(s);
			memcpy(p, s, l);
			memset(p + l, ' ', width[c] - l);
			p += width[c];
			if (c + 1 < ncols)
				*p++ = ' ';
		}
		*p++ = '\n';
	}
	*p = '\0';
	free(width);
	/* trim both ends, as Tart does with the whole rendered string */
	size_t len = (size_t)(p - out);
	while (len && (out[len - 1] == ' ' || out[len - 1] == '\n'))
		out[--len] = '\0';
	size_t lead = strspn(out, " \n");
	memmove(out, out + lead, len - lead + 1);
	return out;
}

char *vmm_format_relative(time_t then, time_t now)
{
	static const struct {
		long secs;
		const char *unit;
	} units[] = {
	    {365L * 86400, "year"}, {30L * 86400, "month"}, {7L * 86400, "week"}, {86400, "day"},
	    {3600, "hour"},	    {60, "minute"},	    {1, "second"},
	};
	long d = (long)(now - then);
	/* Foundation's numeric style counts "no difference" as the future */
	if (d == 0)
		return xstrdup("in 0 seconds");
	int future = d < 0;
	long a = future ? -d : d;
	for (size_t i = 0; i < ARRAY_SIZE(units); i++) {
		if (a >= units[i].secs || units[i].secs == 1) {
			long n = a / units[i].secs;
			const char *pl = n == 1 ? "" : "s";
			return future ? xasprintf("in %ld %s%s", n, units[i].unit, pl)
				      : xasprintf("%ld %s%s ago", n, units[i].unit, pl);
		}
	}
	return xstrdup("in 0 seconds"); /* not reached: the last unit always matches */
}

char *vmm_format_iso8601(time_t t)
{
	struct tm tm;
	gmtime_r(&t, &tm);
	char buf[32];
	strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm);
	return xstrdup(buf);
}

char *vmm_format_bytes(uint64_t n)
{
	static const char *const units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
	if (n < 1024)
		return xasprintf("%llu B", (unsigned long long)n);
	double v = (double)n;
	size_t u = 0;
	while (v >= 1024 && u + 1 < ARRAY_SIZE(units)) {
		v /= 1024;
		u++;
	}
	return xasprintf(v < 10 ? "%.2f %s" : v < 100 ? "%.1f %s" : "%.0f %s", v, units[u]);
}

char *vmm_format_decimal_bytes(uint64_t n)
{
	static const char *const units[] = {"bytes", "KB", "MB", "GB", "TB", "PB"};
	if (n < 1000)
		return xasprintf("%llu bytes", (unsigned long long)n);
	double v = (double)n;
	size_t u = 0;
	while (v >= 1000 && u + 1 < ARRAY_SIZE(units)) {
		v /= 1000;
		u++;
	}
	/* ByteCountFormatter is adaptive: KB without decimals, MB with one,
	 * GB and up with two, trailing zeros dropped */
	char buf[32];
	snprintf(buf, sizeof(buf), "%.*f", u <= 1 ? 0 : u == 2 ? 1 : 2, v);
	/* trim trailing zeros and a trailing point: "50.00" -> "50", "1.50" -> "1.5" */
	if (strchr(buf, '.')) {
		char *end = buf + strlen(buf) - 1;
		while (*end == '0')
			*end-- = '\0';
		if (*end == '.')
			*end = '\0';
	}
	return xasprintf("%s %s", buf, units[u]);
}
