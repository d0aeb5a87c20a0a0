/* Lines from QEMU's QMP socket: parse anything without crashing. */
#include <stddef.h>
#include <stdint.h>

#include "vm/qmp.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	json_t *v = NULL;
	vmm_error *err = NULL;
	if (vmm_qmp_parse_line((const char *)data, size, &v, &err) == 0)
		json_decref(v);
	vmm_error_free(err);
	return 0;
}
