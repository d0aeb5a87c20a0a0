/* libFuzzer target: the portable archive reader on arbitrary bytes. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>

#include "common/util.h"
#include "storage/archive.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char dir[] = "/tmp/vmm-fuzz-archive.XXXXXX";
	if (!mkdtemp(dir))
		abort();
	vmm_error *err = NULL;
	vmm_archive_read_memory(data, size, dir, &err);
	vmm_error_free(err);
	vmm_rm_rf(dir, NULL);
	return 0;
}
