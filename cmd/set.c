#include "cmd/cmd.h"
#include "common/util.h"
#include "vm/bundle.h"
#include "vm/ops.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const vmm_opt opts[] = {
    {"cpu", 0, "N", "Number of virtual CPUs", false},
    {"memory", 0, "MiB", "Memory size in MiB", false},
    {"display", 0, "WxH[pt|px]", "Display size, e.g. 1920x1080", false},
    {"display-refit", 0, NULL, "Let the guest refit the display to the window", false},
    {"no-display-refit", 0, NULL, "Do not refit the display", false},
    {"random-mac", 0, NULL, "Give the VM a new random MAC address (drops a suspended state)",
     false},
    {"random-serial", 0, NULL, "macOS only; accepted and ignored for Linux VMs", true},
    {"disk", 0, "PATH", "Replace the disk with a copy of this raw image", false},
    {"disk-size", 0, "GB", "Grow the disk to this size in GB (10^9 bytes)", false},
    {"cmdline", 0, "STRING", "Kernel command line for direct kernel boot", false},
    {NULL, 0, NULL, NULL, false},
};

static const vmm_cmd_spec spec = {"set", "NAME [options]", "Modify a VM's configuration", opts, 1,
				  1};

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

int cmd_set(int argc, char **argv)
{
	cleanup_vmm_args vmm_args a;
	VMM_ARGS_PARSE(a, spec, argc, argv);
	if (vmm_args_has(&a, "display-refit") && vmm_args_has(&a, "no-display-refit"))
		return vmm_usage_error(&spec, "--display-refit and --no-display-refit are mutually "
					      "exclusive");
	uint64_t cpu = 0, mem = 0, gb = 0;
	const char *v;
	if ((v = vmm_args_get(&a, "cpu")) && parse_positive(v, 1024, &cpu) < 0)
		return vmm_usage_error(&spec, "--cpu: \"%s\" is not a CPU count", v);
	if ((v = vmm_args_get(&a, "memory")) && parse_positive(v, 1ULL << 30, &mem) < 0)
		return vmm_usage_error(&spec, "--memory: \"%s\" is not a size in MiB", v);
	if ((v = vmm_args_get(&a, "disk-size")) && parse_positive(v, 1000000, &gb) < 0)
		return vmm_usage_error(&spec, "--disk-size: \"%s\" is not a size in GB", v);

	vmm_home *h = cmd_home();
	cleanup_vmm_error vmm_error *err = NULL;
	cleanup_vmm_bundle vmm_bundle *b = NULL;
	if (vmm_bundle_open(&b, h, a.pos[0], &err) < 0)
		return vmm_fail(err);
	/* config.json is replaced below, which a running VM's lock would not survive */
	if (vmm_bundle_dir_running_pid(b->dir) > 0) {
		vmm_error_running(&err, b->name);
		return vmm_fail(err);
	}
	vmm_config *c = b->config;
	if (cpu) {
		if ((int64_t)cpu < c->cpu_count_min && strcmp(c->os, "darwin") == 0)
			return vmm_fail_msg(
			    "VM should have %lld CPU cores at minimum (requested %llu)",
			    (long long)c->cpu_count_min, (unsigned long long)cpu);
		c->cpu_count = (int64_t)cpu;
	}
	if (mem) {
		uint64_t bytes = mem << 20;
		uint64_t min = strcmp(c->os, "darwin") == 0 ? c->memory_size_min : 64ULL << 20;
		if (bytes < min)
			return vmm_fail_msg("VM should have %llu bytes of memory at minimum "
					    "(requested %llu)",
					    (unsigned long long)min, (unsigned long long)bytes);
		c->memory_size = bytes;
	}
	if ((v = vmm_args_get(&a, "display")))
		parse_display(v, c);
	/* as Tart: without either flag, displayRefit is cleared */
	c->display_refit = vmm_args_has(&a, "display-refit")	  ? 1
			   : vmm_args_has(&a, "no-display-refit") ? 0
								  : -1;
	if ((v = vmm_args_get(&a, "cmdline"))) {
		free(c->cmdline);
		c->cmdline = xstrdup(v);
	}
	bool new_mac = vmm_args_has(&a, "random-mac");
	if (new_mac)
		vmm_mac_random(c->mac);
	if ((v = vmm_args_get(&a, "disk")) && vmm_vm_disk_replace(b->dir, v, &err) < 0)
		return vmm_fail(err);
	if (gb && vmm_vm_disk_resize(b->dir, gb * 1000000000ULL, &err) < 0)
		return vmm_fail(err);
	if (vmm_bundle_save_config(b, &err) < 0)
		return vmm_fail(err);
	if (new_mac) {
		/* a suspended guest would wake with the old MAC: drop its state,
		 * vmm's or Tart's (Tart removes its own on any new MAC) */
		static const char *const states[] = {VMM_STATE_FILE, VMM_TART_STATE_FILE};
		for (size_t i = 0; i < ARRAY_SIZE(states); i++) {
			cleanup_free char *state = vmm_bundle_path(b, states[i]);
			if (unlink(state) < 0 && errno != ENOENT)
				return vmm_fail_msg("remove `%s`: %s", state, vmm_strerror(errno));
		}
	}
	return 0;
}
