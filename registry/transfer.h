/*
 * transfer.h — how push and pull talk to whoever shows their progress.
 * registry/ never prints: it hands Tart's status lines ("pulling
 * manifest...") and byte counts to these callbacks, and cmd/ prints them.
 * Every member may be NULL.
 */
#ifndef VMM_REGISTRY_TRANSFER_H
#define VMM_REGISTRY_TRANSFER_H

#include <stdbool.h>
#include <stdint.h>

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

#endif
