/*
 * libFuzzer target for the config.json parser (outside input: Tart homes,
 * pulled images).  Whatever the bytes, parsing must not crash, leak or
 * overflow; a config that parses must survive a round trip through vmm's
 * own writers (pretty and compact) with the same values.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/json.h"
#include "vm/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void same(const vmm_config *a, const vmm_config *b)
{
	if (a->cpu_count != b->cpu_count || a->memory_size != b->memory_size ||
	    strcmp(a->mac, b->mac) != 0 || strcmp(a->os, b->os) != 0 ||
	    strcmp(a->arch, b->arch) != 0 || a->display_width != b->display_width ||
	    a->display_height != b->display_height ||
	    strcmp(a->display_unit, b->display_unit) != 0 || a->display_refit != b->display_refit ||
	    strcmp(a->disk_format, b->disk_format) != 0 ||
	    (a->cmdline == NULL) != (b->cmdline == NULL) ||
	    (a->cmdline && strcmp(a->cmdline, b->cmdline) != 0) || !json_equal(a->json, b->json))
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	vmm_config *c = NULL;
	vmm_error *err = NULL;
	if (vmm_config_parse(&c, (const char *)data, size, "`fuzz`", &err) < 0) {
		/* every failure names the source */
		if (!err || !err->msg || strncmp(err->msg, "`fuzz`", 6) != 0)
			abort();
		vmm_error_free(err);
		return 0;
	}
	char *pretty = vmm_config_pretty(c);
	char *compact = vmm_config_compact(c);
	vmm_config *p = NULL, *q = NULL;
	if (vmm_config_parse(&p, pretty, strlen(pretty), "`pretty`", NULL) < 0 ||
	    vmm_config_parse(&q, compact, strlen(compact), "`compact`", NULL) < 0)
		abort();
	same(c, p);
	same(c, q);
	vmm_config_free(p);
	vmm_config_free(q);
	free(pretty);
	free(compact);
	vmm_config_free(c);
	return 0;
}
