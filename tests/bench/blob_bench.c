/*
 * blob_bench HOST NS FILE DIGEST put|get [chunk_bytes]
 *
 * One blob upload (FILE's bytes: reading them is timed, as curl reads the
 * file it sends) or one download (to a sink that only counts) through the
 * registry client over plain HTTP; prints the seconds it took, from before
 * the first byte is read to the registry's answer (curl's time_total for
 * the same requests is the baseline).  Built and run by
 * tests/bench/bench_registry_client.sh.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "registry/oci/client.h"

static int count(void *ctx, const void *data, size_t len)
{
	(void)data;
	*(uint64_t *)ctx += len;
	return 0;
}

int main(int argc, char **argv)
{
	if (argc < 6) {
		fprintf(stderr, "usage: blob_bench HOST NS FILE DIGEST put|get [chunk]\n");
		return 2;
	}
	vmm_registry_opts o = {.insecure = true};
	vmm_registry *r = NULL;
	vmm_error *err = NULL;
	if (vmm_registry_open(&r, argv[1], argv[2], &o, &err) < 0)
		goto fail;
	double t0;
	if (strcmp(argv[5], "put") == 0) {
		char *data = NULL;
		size_t len = 0;
		uint64_t chunk = argc > 6 ? strtoull(argv[6], NULL, 10) : 0;
		t0 = vmm_now();
		if (vmm_read_file(argv[3], (size_t)1 << 40, &data, &len, &err) < 0)
			goto fail;
		if (vmm_registry_blob_put(r, argv[4], data, len, chunk, &err) < 0)
			goto fail;
		free(data);
	} else {
		uint64_t n = 0;
		t0 = vmm_now();
		if (vmm_registry_blob_get(r, argv[4], 0, 0, count, &n, &err) < 0)
			goto fail;
	}
	printf("%.4f\n", vmm_now() - t0);
	vmm_registry_free(r);
	return 0;
fail:
	fprintf(stderr, "blob_bench: %s\n", err ? err->msg : "failed");
	return 1;
}
