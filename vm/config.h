/*
 * config.h — a VM's config.json in Tart's schema (tart-spec §2).
 *
 * vmm_config keeps the parsed JSON object it came from, so keys vmm does not
 * know (and Tart's key order) survive a rewrite; the typed fields are written
 * back into that object by vmm_config_to_json().  Reads accept Tart's pretty
 * form and the compact form a pull writes.  Free with vmm_config_free().
 */
#ifndef VMM_VM_CONFIG_H
#define VMM_VM_CONFIG_H

#include <stdbool.h>
#include <stdint.h>
#include <jansson.h>

#include "common/err.h"

#define VMM_CONFIG_MAX_BYTES (1 << 20)

typedef struct vmm_config {
	json_t *json; /* owned: the whole object, unknown keys included */
	int version;
	char os[16];   /* "linux" | "darwin" */
	char arch[16]; /* "amd64" | "arm64" */
	int64_t cpu_count_min;
	int64_t cpu_count;
	uint64_t memory_size_min; /* bytes */
	uint64_t memory_size;	  /* bytes */
	char mac[18];		  /* "xx:xx:xx:xx:xx:xx", lower case */
	int64_t display_width;
	int64_t display_height;
	char display_unit[4]; /* "", "pt" or "px" */
	int display_refit;    /* -1 absent, 0 false, 1 true */
	char disk_format[8];  /* "raw" | "asif" */
	char *cmdline;	      /* owned; vmm's key for direct kernel boot, NULL if absent */
} vmm_config;

/* Parse config JSON; `what` names the source in errors. */
int vmm_config_parse(vmm_config **out, const char *data, size_t len, const char *what,
		     vmm_error **err);
int vmm_config_load(vmm_config **out, const char *path, vmm_error **err);
/* A new Linux config as `tart create --linux` writes it (4 CPUs, 4 GiB, 1024x768, raw, new MAC,
 * host arch). */
vmm_config *vmm_config_new_linux(void);
void vmm_config_free(vmm_config *c);

/* Write the typed fields into c->json and return it (borrowed). */
json_t *vmm_config_to_json(vmm_config *c);
/* Tart's on-disk pretty text (caller frees). */
char *vmm_config_pretty(vmm_config *c);
/* Compact text as Tart pushes the config layer (caller frees). */
char *vmm_config_compact(vmm_config *c);
/* Atomically write the pretty form to path. */
int vmm_config_save(vmm_config *c, const char *path, vmm_error **err);

/* The host's architecture in Tart's words: "amd64" or "arm64". */
const char *vmm_host_arch(void);

/* A random unicast, locally administered MAC in lower case. */
void vmm_mac_random(char out[18]);
/* Does s look like xx:xx:xx:xx:xx:xx (hex, either case)? */
bool vmm_mac_is_valid(const char *s);

static inline void cleanup_vmm_config_fn(vmm_config **c)
{
	vmm_config_free(*c);
}
#define cleanup_vmm_config __attribute__((cleanup(cleanup_vmm_config_fn)))

#endif
