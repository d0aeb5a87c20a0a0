#include "cmd/cmd.h"
#include "common/util.h"
#include "registry/cache.h"
#include "registry/prune.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

static const vmm_opt opts[] = {
    {"entries", 0, "caches|vms", "Entries to consider: OCI and IPSW caches (default) or local VMs",
     false},
    {"older-than", 0, "DAYS", "Delete entries not accessed in DAYS days", false},
    {"space-budget", 0, "GB",
     "Keep the most recently accessed entries within GB GiB, delete the rest", false},
    {"cache-budget", 0, "GB", "Deprecated: use --space-budget", true},
    {"gc", 0, NULL, "Remove dangling tags and untagged cached images", true},
    {NULL, 0, NULL, NULL, false},
};

static const vmm_cmd_spec spec = {
    "prune",
    "[--entries caches|vms] [--older-than DAYS] [--space-budget GB]",
    "Prune OCI and IPSW caches or local VMs",
    opts,
    0,
    0,
};

static int number(const char *opt, const char *s, uint64_t *out)
{
	if (vmm_parse_u64(s, out) < 0 || *out > (1ULL << 40))
		return vmm_usage_error(&spec, "--%s: \"%s\" is not a whole number", opt, s);
	return 0;
}

/* No output on success (Tart prints nothing). */
int cmd_prune(int argc, char **argv)
{
	cleanup_vmm_args vmm_args a;
	VMM_ARGS_PARSE(a, spec, argc, argv);
	const char *entries = vmm_args_get(&a, "entries");
	const char *older = vmm_args_get(&a, "older-than");
	const char *budget = vmm_args_get(&a, "space-budget");
	const char *cache_budget = vmm_args_get(&a, "cache-budget");
	bool gc = vmm_args_has(&a, "gc");
	vmm_prune_entries which = VMM_PRUNE_CACHES;
	if (entries && strcmp(entries, "vms") == 0)
		which = VMM_PRUNE_VMS;
	else if (entries && strcmp(entries, "caches") != 0)
		return vmm_usage_error(&spec, "unsupported --entries value, please specify either "
					      "\"caches\" or \"vms\"");
	if (cache_budget) {
		fprintf(stderr, "--cache-budget is deprecated, please use --space-budget\n");
		if (budget)
			return vmm_usage_error(&spec, "--cache-budget and --space-budget are "
						      "mutually exclusive");
		budget = cache_budget;
	}
	if (!older && !budget && !gc)
		return vmm_usage_error(&spec, "at least one pruning criteria must be specified");
	uint64_t days = 0, gb = 0;
	if ((older && number("older-than", older, &days) != 0) ||
	    (budget && number("space-budget", budget, &gb) != 0))
		return 64;

	vmm_home *h = cmd_home();
	cleanup_vmm_error vmm_error *err = NULL;
	if (gc && vmm_cache_gc(h, &err) < 0)
		return vmm_fail(err);
	if (older) {
		time_t cutoff = time(NULL) - (time_t)(days * 86400);
		if (vmm_prune_older_than(h, which, cutoff, NULL, &err) < 0)
			return vmm_fail(err);
	}
	if (budget && vmm_prune_space_budget(h, which, gb << 30, NULL, &err) < 0)
		return vmm_fail(err);
	return 0;
}
