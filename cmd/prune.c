#include "cmd/cmd.h"
#include "common/util.h"
#include "registry/cache.h"
#include "registry/prune.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

typedef struct prune_args {
	const char *entries;
	vmm_opt_num older_than;			/* days */
	vmm_opt_num space_budget, cache_budget; /* bytes */
	bool gc;
} prune_args;

#define GIB (1ULL << 30)

static const vmm_opt opts[] = {
    {VMM_STRING(prune_args, entries, "entries", "caches|vms",
		"Entries to consider: OCI and IPSW caches (default) or local VMs")},
    {VMM_INT(prune_args, older_than, "older-than", "DAYS", 0, 1ULL << 40,
	     "Delete entries not accessed in DAYS days")},
    {VMM_SIZE(prune_args, space_budget, "space-budget", "GB", GIB, 0, 1ULL << 32,
	      "Keep the most recently accessed entries within GB GiB, delete the rest")},
    {VMM_SIZE(prune_args, cache_budget, "cache-budget", "GB", GIB, 0, 1ULL << 32,
	      "Deprecated: use --space-budget"),
     .hidden = true},
    {VMM_FLAG(prune_args, gc, "gc", "Remove dangling tags and untagged cached images"),
     .hidden = true},
    {0},
};

static const vmm_cmd_spec spec = {"prune",
				  "[--entries caches|vms] [--older-than DAYS] [--space-budget GB]",
				  "Prune OCI and IPSW caches or local VMs", opts};

/* No output on success (Tart prints nothing). */
int cmd_prune(int argc, char **argv)
{
	prune_args o = {0};
	VMM_ARGS(a, spec, argc, argv, &o);
	const char *entries = o.entries;
	vmm_opt_num budget = o.space_budget;
	vmm_prune_entries which = VMM_PRUNE_CACHES;
	if (entries && strcmp(entries, "vms") == 0)
		which = VMM_PRUNE_VMS;
	else if (entries && strcmp(entries, "caches") != 0)
		return vmm_usage_error(&spec, "unsupported --entries value, please specify either "
					      "\"caches\" or \"vms\"");
	if (o.cache_budget.given) {
		fprintf(stderr, "--cache-budget is deprecated, please use --space-budget\n");
		if (budget.given)
			return vmm_usage_error(&spec, "--cache-budget and --space-budget are "
						      "mutually exclusive");
		budget = o.cache_budget;
	}
	if (!o.older_than.given && !budget.given && !o.gc)
		return vmm_usage_error(&spec, "at least one pruning criteria must be specified");

	vmm_home *h = cmd_home();
	cleanup_vmm_error vmm_error *err = NULL;
	if (o.gc && vmm_cache_gc(h, &err) < 0)
		return vmm_fail(err);
	if (o.older_than.given) {
		time_t cutoff = time(NULL) - (time_t)(o.older_than.value * 86400);
		if (vmm_prune_older_than(h, which, cutoff, NULL, &err) < 0)
			return vmm_fail(err);
	}
	if (budget.given && vmm_prune_space_budget(h, which, budget.value, NULL, &err) < 0)
		return vmm_fail(err);
	return 0;
}
