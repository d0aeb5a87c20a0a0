/*
 * transfer_ui.h — the printing side of registry/transfer.h for push, pull
 * and clone: Tart's status lines on stdout, and a progress meter (a bar on
 * stderr when it is a terminal and CI is unset, Tart's percentage lines on
 * stdout otherwise).
 */
#ifndef VMM_CMD_TRANSFER_UI_H
#define VMM_CMD_TRANSFER_UI_H

#include "cmd/cmd.h"
#include "registry/oci/reference.h"
#include "registry/transfer.h"

vmm_transfer_ui cmd_transfer_ui(void);

/* --insecure and --concurrency N, as pull, clone and snapshot pull take them. */
typedef struct cmd_pull_args {
	bool insecure;
	vmm_opt_num concurrency;
} cmd_pull_args;

/* Their two entries of an option table whose struct T holds a cmd_pull_args m. */
#define CMD_PULL_OPTS(T, m, concurrency_help)                                                      \
	{VMM_FLAG(T, m.insecure, "insecure", "Use plain HTTP for the registry")},                  \
	{                                                                                          \
		VMM_INT(T, m.concurrency, "concurrency", "N", 0, 1024, concurrency_help)           \
	}

/* --concurrency N (default 4), at least 1 with Tart's message; returns 0 or an exit code. */
int cmd_concurrency(const vmm_cmd_spec *s, const vmm_opt_num *concurrency, int *out);

/*
 * Pull ref as `vmm pull` does: prints Tart's "pulling <ref>..." and the
 * pull's own lines.  Returns 0, an exit code for a usage error, or -1 with
 * *err.  *dir (may be NULL) gets the cache entry.
 */
int cmd_pull_ref(const vmm_cmd_spec *s, const cmd_pull_args *o, const vmm_reference *ref,
		 char **dir, vmm_error **err);

/* push's options, which `snapshot push` takes too (cmd/push.c). */
typedef struct cmd_push_args {
	cmd_pull_args net; /* --insecure, --concurrency */
	vmm_opt_num chunk_size;
	vmm_opt_list label;
	bool populate_cache;
} cmd_push_args;
extern const vmm_opt cmd_push_opts[];

/*
 * Push src (a local VM, VM@SNAP or a cached reference) to the references
 * refs as `vmm push` does; returns the exit code.
 */
int cmd_push_to(const vmm_cmd_spec *s, const cmd_push_args *o, const char *src, char *const *refs,
		size_t nrefs);

#endif
