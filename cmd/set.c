#include "cmd/cmd.h"
#include "common/util.h"
#include "vm/bundle.h"
#include "vm/ops.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct set_args {
	vmm_opt_num cpu;
	vmm_opt_num memory, disk_size; /* bytes */
	const char *display, *disk, *cmdline;
	bool display_refit, no_display_refit, random_mac, random_serial;
} set_args;

static const vmm_opt opts[] = {
    {VMM_INT(set_args, cpu, "cpu", "N", 1, 1024, "Number of virtual CPUs")},
    {VMM_SIZE(set_args, memory, "memory", "MiB", 1ULL << 20, 1, 1ULL << 30, "Memory size in MiB")},
    {VMM_STRING(set_args, display, "display", "WxH[pt|px]", "Display size, e.g. 1920x1080")},
    {VMM_FLAG(set_args, display_refit, "display-refit",
	      "Let the guest refit the display to the window")},
    {VMM_FLAG(set_args, no_display_refit, "no-display-refit", "Do not refit the display")},
    {VMM_FLAG(set_args, random_mac, "random-mac",
	      "Give the VM a new random MAC address (drops a suspended state)")},
    {VMM_FLAG(set_args, random_serial, "random-serial",
	      "macOS only; accepted and ignored for Linux VMs"),
     .hidden = true},
    {VMM_STRING(set_args, disk, "disk", "PATH", "Replace the disk with a copy of this raw image")},
    {VMM_SIZE(set_args, disk_size, "disk-size", "GB", 1000000000, 1, 1000000,
	      "Grow the disk to this size in GB (10^9 bytes)")},
    {VMM_STRING(set_args, cmdline, "cmdline", "STRING",
		"Kernel command line for direct kernel boot")},
    {0},
};

static const vmm_cmd_spec spec = {"set", "NAME [options]", "Modify a VM's configuration", opts};

static int parse_positive(const char *s, uint64_t max, uint64_t *out)
{
	return vmm_parse_u64(s, out) < 0 || *out == 0 || *out > max ? -1 : 0;
}

/* "1920x1080", "1920x1080px"; zero or unparsable parts keep the old value (Tart). */
static void parse_display(const char *s, vmm_config *c)
{
	char unit[4] = "";
	size_t l = strlen(s);
	if (l > 2 && (strcmp(s + l - 2, "pt") == 0 || strcmp(s + l - 2, "px") == 0)) {
		memcpy(unit, s + l - 2, 3);
		l -= 2;
	}
	cleanup_free char *dims = xstrndup(s, l);
	char *x = strchr(dims, 'x');
	if (x) {
		*x = '\0';
		uint64_t w, h;
		if (parse_positive(dims, 1 << 16, &w) == 0)
			c->display_width = (int64_t)w;
		if (parse_positive(x + 1, 1 << 16, &h) == 0)
			c->display_height = (int64_t)h;
	}
	memcpy(c->display_unit, unit, sizeof(unit));
}

/* The config changes, made by vmm_vm_set under the VM's lock. */
static int edit_config(vmm_config *c, void *ctx, vmm_error **err)
{
	const set_args *o = ctx;
	if (o->cpu.given) {
		uint64_t cpu = o->cpu.value;
		if ((int64_t)cpu < c->cpu_count_min && strcmp(c->os, "darwin") == 0)
			return vmm_error_set(err, VMM_EINVAL,
					     "VM should have %lld CPU cores at minimum (requested "
					     "%llu)",
					     (long long)c->cpu_count_min, (unsigned long long)cpu);
		c->cpu_count = (int64_t)cpu;
	}
	if (o->memory.given) {
		uint64_t bytes = o->memory.value;
		uint64_t min = strcmp(c->os, "darwin") == 0 ? c->memory_size_min : 64ULL << 20;
		if (bytes < min)
			return vmm_error_set(err, VMM_EINVAL,
					     "VM should have %llu bytes of memory at minimum "
					     "(requested %llu)",
					     (unsigned long long)min, (unsigned long long)bytes);
		c->memory_size = bytes;
	}
	if (o->display)
		parse_display(o->display, c);
	/* as Tart: without either flag, displayRefit is cleared */
	c->display_refit = o->display_refit ? 1 : o->no_display_refit ? 0 : -1;
	if (o->cmdline) {
		free(c->cmdline);
		c->cmdline = xstrdup(o->cmdline);
	}
	return 0;
}

int cmd_set(int argc, char **argv)
{
	set_args o = {0};
	VMM_ARGS(a, spec, argc, argv, &o);
	if (o.display_refit && o.no_display_refit)
		return vmm_usage_error(&spec, "--display-refit and --no-display-refit are mutually "
					      "exclusive");
	vmm_set_opts so = {
	    .edit = edit_config,
	    .ctx = &o,
	    /* a suspended guest would wake with the old MAC or onto another disk:
	     * both drop its state, vmm's or Tart's (Tart does so on a new MAC) */
	    .new_mac = o.random_mac,
	    .disk = o.disk,
	    .disk_size = o.disk_size.given ? o.disk_size.value : 0,
	};
	cleanup_vmm_error vmm_error *err = NULL;
	if (vmm_vm_set(cmd_home(), a.pos[0], &so, &err) < 0)
		return vmm_fail(err);
	return 0;
}
