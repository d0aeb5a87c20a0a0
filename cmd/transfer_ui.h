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

/* --concurrency N (default 4), at least 1 with Tart's message; returns 0 or an exit code. */
int cmd_concurrency(const vmm_cmd_spec *s, const vmm_args *a, int *out);

/*
 * Pull ref as `vmm pull` does, taking --concurrency and --insecure from a
 * (both options must be in the command's table): prints Tart's
 * "pulling <ref>..." and the pull's own lines.  Returns 0, an exit code for
 * a usage error, or -1 with *err.  *dir (may be NULL) gets the cache entry.
 */
int cmd_pull_ref(const vmm_cmd_spec *s, const vmm_args *a, const vmm_reference *ref, char **dir,
		 vmm_error **err);

#endif
