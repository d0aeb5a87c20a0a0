/*
 * transfer.h — what push and pull share: how they talk to whoever shows
 * their progress, and the pool of threads that moves their disk layers.
 *
 * registry/ never prints: it hands Tart's status lines ("pulling
 * manifest...") and byte counts to the vmm_transfer_ui callbacks, and cmd/
 * prints them.  Every member may be NULL.
 */
#ifndef VMM_REGISTRY_TRANSFER_H
#define VMM_REGISTRY_TRANSFER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

typedef struct vmm_transfer_ui {
	/* one status line, without the newline */
	void (*say)(void *ctx, const char *line);
	/* a byte meter: begin returns its handle, add may be called from any thread */
	void *(*progress_begin)(void *ctx, const char *label, uint64_t total);
	void (*progress_add)(void *meter, uint64_t n);
	void (*progress_end)(void *meter, bool ok);
	void *ctx;
} vmm_transfer_ui;

/* Format a status line and hand it to ui->say (nothing if say is NULL). */
void vmm_transfer_say(const vmm_transfer_ui *ui, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

typedef struct vmm_transfer_pool vmm_transfer_pool;
typedef int (*vmm_transfer_job)(void *ctx, vmm_transfer_pool *pool, size_t i, vmm_error **err);

/*
 * Run job(ctx, pool, i) for every i in [0, n) on up to `threads` threads
 * (0: 4; never more than n), each taking the next i when done with one.
 * After the first failure no further job starts and vmm_transfer_failed()
 * turns true, so that running jobs can give up early; that first error is
 * returned, not the aborts it caused.
 */
int vmm_transfer_parallel(size_t n, int threads, vmm_transfer_job job, void *ctx, vmm_error **err);
/* Has a job of the pool failed?  (false for NULL) */
bool vmm_transfer_failed(const vmm_transfer_pool *pool);

#endif
