/*
 * The reference parser on arbitrary strings: a parsed reference prints to a
 * string that parses to the same reference.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "registry/oci/reference.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *s = malloc(size + 1);
	memcpy(s, data, size);
	s[size] = '\0';
	vmm_reference *r = NULL;
	if (vmm_reference_parse(&r, s, NULL) == 0) {
		if (!vmm_reference_is_remote(s))
			abort();
		char *again = vmm_reference_string(r);
		vmm_reference *r2 = NULL;
		if (vmm_reference_parse(&r2, again, NULL) != 0 || strcmp(r->host, r2->host) != 0 ||
		    strcmp(r->namespace, r2->namespace) != 0 ||
		    strcmp(vmm_reference_value(r), vmm_reference_value(r2)) != 0)
			abort();
		vmm_reference_free(r2);
		free(again);
		vmm_reference_free(r);
	}
	free(s);
	return 0;
}
