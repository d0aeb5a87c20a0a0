/* state.vmmsave headers come from disk and registries: parse anything without crashing. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "vm/savefile.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	vmm_savefile_header *h = NULL;
	vmm_error *err = NULL;
	if (vmm_savefile_header_parse(&h, data, size, "fuzz", &err) == 0) {
		/* what parses must encode and parse back to the same fields */
		unsigned char *buf = vmm_savefile_header_encode(h);
		if (buf) {
			vmm_savefile_header *again = NULL;
			if (vmm_savefile_header_parse(&again, buf, VMM_SAVEFILE_HEADER_SIZE, "fuzz",
						      NULL) != 0 ||
			    again->raw_size != h->raw_size || again->memory != h->memory ||
			    again->format != h->format || again->index_count != h->index_count ||
			    !again->raw_sha256 != !h->raw_sha256 ||
			    (h->raw_sha256 && strcmp(again->raw_sha256, h->raw_sha256) != 0))
				__builtin_trap();
			vmm_savefile_header_free(again);
			free(buf);
		}
		vmm_savefile_header_free(h);
	}
	vmm_error_free(err);
	return 0;
}
