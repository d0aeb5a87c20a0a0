#include "cmd/cmd.h"
#include "common/format.h"
#include "common/json.h"
#include "common/util.h"
#include "registry/cache.h"
#include "vm/bundle.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/stat.h>

typedef struct list_args {
	const char *source, *format;
	bool quiet;
} list_args;

static const vmm_opt opts[] = {
    {VMM_STRING(list_args, source, "source", "local|oci", "Only list VMs from this source")},
    {VMM_STRING(list_args, format, "format", "text|json", "Output format (default text)")},
    {VMM_FLAG(list_args, quiet, "quiet", "Print only the names"), .short_name = 'q'},
    {0},
};

static const vmm_cmd_spec spec = {"list", "[--source local|oci] [--format text|json] [-q]",
				  "List VMs", opts};

typedef struct row {
	const char *source; /* "local" or "OCI", as Tart prints it */
	char *name;
	uint64_t disk_gb, size_gb;
	time_t accessed;
	long long
	    accessed_ns; /* for the relative date, which Foundation computes to the nanosecond */
	vmm_vm_state state;
} row;

static long long now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void add_row(row **rows, size_t *n, const char *source, const char *name, const char *dir)
{
	struct stat st = {0};
	stat(dir, &st); /* before anything reads the directory */
	uint64_t allocated = 0;
	vmm_bundle_dir_sizes(dir, NULL, &allocated, NULL);
	*rows = xrealloc(*rows, (*n + 1) * sizeof(row));
	(*rows)[(*n)++] = (row){
	    .source = source,
	    .name = xstrdup(name),
	    .disk_gb = vmm_bundle_dir_disk_bytes(dir) / 1000000000ULL,
	    .size_gb = allocated / 1000000000ULL,
	    .accessed = st.st_atim.tv_sec,
	    .accessed_ns = (long long)st.st_atim.tv_sec * 1000000000LL + st.st_atim.tv_nsec,
	    .state = vmm_bundle_dir_state(dir),
	};
}

/*
 * Text (Tart's TextTable "plain"):
 *   Source Name   Disk Size Accessed       State
 *   local  debian 50   1    2 minutes ago  stopped
 * JSON: a pretty array of {Source, Name, Disk, Size, Accessed, Running, State}.
 */
int cmd_list(int argc, char **argv)
{
	list_args o = {0};
	VMM_ARGS(a, spec, argc, argv, &o);
	const char *source = o.source, *format = o.format;
	if (source && strcmp(source, "local") != 0 && strcmp(source, "oci") != 0)
		return vmm_usage_error(&spec, "'%s' is not a valid <source>", source);
	if (format && strcmp(format, "text") != 0 && strcmp(format, "json") != 0)
		return vmm_usage_error(&spec, "'%s' is not a valid <format>", format);
	bool json = format && strcmp(format, "json") == 0;

	vmm_home *h = cmd_home();
	cleanup_vmm_error vmm_error *err = NULL;
	row *rows = NULL;
	size_t n = 0;
	if (!source || strcmp(source, "local") == 0) {
		char **names = NULL;
		size_t cnt = 0;
		if (vmm_bundle_list_names(h, &names, &cnt, &err) < 0)
			return vmm_fail(err);
		for (size_t i = 0; i < cnt; i++) {
			cleanup_free char *dir = vmm_home_vm_dir(h, names[i]);
			add_row(&rows, &n, "local", names[i], dir);
		}
		vmm_strv_free(names, cnt);
	}
	if (!source || strcmp(source, "oci") == 0) {
		vmm_cache_entry *e = NULL;
		size_t cnt = 0;
		if (vmm_cache_list(h, &e, &cnt, &err) < 0)
			return vmm_fail(err);
		for (size_t i = 0; i < cnt; i++)
			add_row(&rows, &n, "OCI", e[i].name, e[i].target);
		vmm_cache_entries_free(e, cnt);
	}

	long long now = now_ns();
	if (o.quiet) {
		for (size_t i = 0; i < n; i++)
			printf("%s\n", rows[i].name);
	} else if (json) {
		json_t *arr = json_array();
		for (size_t i = 0; i < n; i++) {
			char *acc = vmm_format_iso8601(rows[i].accessed);
			json_array_append_new(
			    arr, json_pack("{s:s, s:s, s:I, s:I, s:s, s:b, s:s}", "Source",
					   rows[i].source, "Name", rows[i].name, "Disk",
					   (json_int_t)rows[i].disk_gb, "Size",
					   (json_int_t)rows[i].size_gb, "Accessed", acc, "Running",
					   rows[i].state == VMM_STATE_RUNNING, "State",
					   vmm_vm_state_name(rows[i].state)));
			free(acc);
		}
		char *s = vmm_json_pretty(arr);
		printf("%s\n", s);
		free(s);
		json_decref(arr);
	} else {
		static const char *const headers[] = {"Source", "Name",	    "Disk",
						      "Size",	"Accessed", "State"};
		char **cells = xcalloc(n * 6 + 1, sizeof(char *));
		for (size_t i = 0; i < n; i++) {
			char **c = cells + i * 6;
			c[0] = xstrdup(rows[i].source);
			c[1] = xstrdup(rows[i].name);
			c[2] = xasprintf("%llu", (unsigned long long)rows[i].disk_gb);
			c[3] = xasprintf("%llu", (unsigned long long)rows[i].size_gb);
			/* whole seconds of difference, truncated toward zero as Foundation's
			 * calendar components are */
			c[4] = vmm_format_relative(
			    0, (time_t)((now - rows[i].accessed_ns) / 1000000000LL));
			c[5] = xstrdup(vmm_vm_state_name(rows[i].state));
		}
		char *t =
		    n ? vmm_format_table(headers, 6, (const char *const *)cells, n) : xstrdup("");
		printf("%s\n", t);
		free(t);
		vmm_strv_free(cells, n * 6);
	}
	for (size_t i = 0; i < n; i++)
		free(rows[i].name);
	free(rows);
	return 0;
}
