#include "cmd/transfer_ui.h"
#include "cmd/cmd.h"
#include "common/progress.h"

#include "common/util.h"
#include "registry/pull.h"

#include <stdio.h>

static void say(void *ctx, const char *line)
{
	(void)ctx;
	printf("%s\n", line);
	fflush(stdout);
}

static void *begin(void *ctx, const char *label, uint64_t total)
{
	(void)ctx;
	if (cmd_interactive())
		return vmm_progress_new(label, total, VMM_PROGRESS_BAR, stderr);
	return vmm_progress_new(label, total, VMM_PROGRESS_PLAIN, stdout);
}

static void add(void *meter, uint64_t n)
{
	vmm_progress_add(meter, n);
}

static void end(void *meter, bool ok)
{
	if (ok)
		vmm_progress_finish(meter);
	vmm_progress_free(meter);
}

vmm_transfer_ui cmd_transfer_ui(void)
{
	return (vmm_transfer_ui){
	    .say = say, .progress_begin = begin, .progress_add = add, .progress_end = end};
}

int cmd_concurrency(const vmm_cmd_spec *s, const vmm_opt_num *concurrency, int *out)
{
	uint64_t n = concurrency->given ? concurrency->value : 4;
	if (n < 1)
		return vmm_usage_error(s, "network concurrency cannot be less than 1");
	*out = (int)n;
	return 0;
}

int cmd_pull_ref(const vmm_cmd_spec *s, const cmd_pull_args *o, const vmm_reference *ref,
		 char **dir, vmm_error **err)
{
	int conc = 4;
	int r = cmd_concurrency(s, &o->concurrency, &conc);
	if (r)
		return r;
	cleanup_free char *display = vmm_reference_string(ref);
	printf("pulling %s...\n", display);
	vmm_pull_opts po = {
	    .concurrency = conc,
	    .insecure = o->insecure,
	    .ui = cmd_transfer_ui(),
	};
	return vmm_pull(cmd_home(), ref, &po, dir, NULL, err);
}
