#include "cmd/cmd.h"
#include "common/format.h"
#include "common/json.h"
#include "common/util.h"
#include "registry/cache.h"
#include "registry/oci/reference.h"
#include "vm/bundle.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct get_args {
	const char *format;
} get_args;

static const vmm_opt opts[] = {
    {VMM_STRING(get_args, format, "format", "text|json", "Output format (default text)")},
    {0},
};

static const vmm_cmd_spec spec = {"get", "NAME [--format text|json]",
				  "Show a VM's configuration and state", opts};

/* Open a local VM, or a cached image when NAME is a reference. */
static int open_any(vmm_bundle **b, const char *name, vmm_error **err)
{
	cleanup_vmm_reference vmm_reference *ref = NULL;
	if (vmm_reference_parse(&ref, name, NULL) < 0)
		return vmm_bundle_open(b, cmd_home(), name, err);
	cleanup_free char *dir = NULL;
	if (vmm_cache_resolve(cmd_home(), ref, &dir, NULL, err) < 0)
		return -1;
	return vmm_bundle_open_dir(b, dir, name, err);
}

/*
 * Text:
 *   OS    CPU Memory Disk DiskFormat Size  Display  State
 *   linux 4   4096   50   raw        0.002 1024x768 stopped
 * JSON: {OS, CPU, Memory, Disk, DiskFormat, Size, Display, Running, State}.
 */
int cmd_get(int argc, char **argv)
{
	get_args opt = {0};
	VMM_ARGS(a, spec, argc, argv, &opt);
	const char *format = opt.format;
	if (format && strcmp(format, "text") != 0 && strcmp(format, "json") != 0)
		return vmm_usage_error(&spec, "'%s' is not a valid <format>", format);

	cleanup_vmm_error vmm_error *err = NULL;
	cleanup_vmm_bundle vmm_bundle *b = NULL;
	if (open_any(&b, a.pos[0], &err) < 0)
		return vmm_fail(err);
	const vmm_config *c = b->config;
	uint64_t allocated = 0;
	vmm_bundle_dir_sizes(b->dir, NULL, &allocated, NULL);
	vmm_vm_state st = vmm_bundle_state(b);
	cleanup_free char *cpu = xasprintf("%lld", (long long)c->cpu_count);
	cleanup_free char *mem = xasprintf("%llu", (unsigned long long)(c->memory_size >> 20));
	cleanup_free char *disk = xasprintf(
	    "%llu", (unsigned long long)(vmm_bundle_dir_disk_bytes(b->dir) / 1000000000ULL));
	cleanup_free char *size = xasprintf("%.3f", (double)allocated / 1e9);
	cleanup_free char *display = xasprintf("%lldx%lld%s", (long long)c->display_width,
					       (long long)c->display_height, c->display_unit);

	if (format && strcmp(format, "json") == 0) {
		json_t *o = json_pack(
		    "{s:s, s:I, s:I, s:I, s:s, s:s, s:s, s:b, s:s}", "OS", c->os, "CPU",
		    (json_int_t)c->cpu_count, "Memory", (json_int_t)(c->memory_size >> 20), "Disk",
		    (json_int_t)(vmm_bundle_dir_disk_bytes(b->dir) / 1000000000ULL), "DiskFormat",
		    c->disk_format, "Size", size, "Display", display, "Running",
		    st == VMM_STATE_RUNNING, "State", vmm_vm_state_name(st));
		cleanup_free char *s = vmm_json_pretty(o);
		printf("%s\n", s);
		json_decref(o);
		return 0;
	}
	static const char *const headers[] = {"OS",	    "CPU",  "Memory",  "Disk",
					      "DiskFormat", "Size", "Display", "State"};
	const char *cells[] = {c->os,	       cpu,  mem,     disk,
			       c->disk_format, size, display, vmm_vm_state_name(st)};
	cleanup_free char *t = vmm_format_table(headers, 8, cells, 1);
	printf("%s\n", t);
	return 0;
}
