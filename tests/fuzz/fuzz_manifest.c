/*
 * The manifest parser and Tart's rules on hostile input; whatever parses
 * must re-encode to bytes that parse to the same layers.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "registry/oci/manifest.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	vmm_manifest *m = NULL;
	vmm_error *err = NULL;
	if (vmm_manifest_parse(&m, (const char *)data, size, &err) != 0) {
		if (!err || !err->msg[0])
			abort();
		vmm_error_free(err);
		return 0;
	}
	vmm_manifest_check_tart(m, NULL);
	char *s = vmm_manifest_encode(m);
	vmm_manifest *again = NULL;
	if (vmm_manifest_parse(&again, s, strlen(s), NULL) != 0 || again->nlayers != m->nlayers)
		abort();
	for (size_t i = 0; i < m->nlayers; i++)
		if (strcmp(again->layers[i].digest, m->layers[i].digest) != 0 ||
		    again->layers[i].size != m->layers[i].size)
			abort();
	vmm_manifest_free(again);
	free(s);
	vmm_manifest_free(m);
	return 0;
}
