/*
 * progress.h — progress of a long transfer, as curl's tool shows it
 * (tool_progress.c) on a terminal and as Tart prints it elsewhere.
 *
 *   bar (stderr is a terminal and CI unset), redrawn at most 10 times a second:
 *     pulling disk [##########..........]  1.20 GiB / 2.40 GiB  312 MiB/s  0:04 left
 *   plain (otherwise): Tart's lines on stdout, "0%" at once, then at most one
 *   line a second and only when the number changes:
 *     0%
 *     37%
 *     100%
 *
 * Only cmd/ creates one (library code reports through callbacks); updates
 * may come from several threads.  Free with vmm_progress_free().
 */
#ifndef VMM_COMMON_PROGRESS_H
#define VMM_COMMON_PROGRESS_H

#include <stdint.h>
#include <stdio.h>

typedef enum {
	VMM_PROGRESS_NONE,
	VMM_PROGRESS_PLAIN,
	VMM_PROGRESS_BAR,
} vmm_progress_mode;

typedef struct vmm_progress vmm_progress;

/* `label` is copied; `total` may be 0 when unknown.  out: the stream for the mode. */
vmm_progress *vmm_progress_new(const char *label, uint64_t total, vmm_progress_mode mode,
			       FILE *out);
/* Account n more bytes (thread-safe) and redraw if it is time. */
void vmm_progress_add(vmm_progress *p, uint64_t n);
/* Draw the final state (100% / a full bar) and end the line. */
void vmm_progress_finish(vmm_progress *p);
void vmm_progress_free(vmm_progress *p);
/* A callback of the shape library code takes: ctx is the vmm_progress. */
void vmm_progress_cb(void *ctx, uint64_t n);

/* --- formatting, exposed for tests (caller frees) ----------------------- */

/* "1.20 GiB/s" from bytes per second; "-" when unknown. */
char *vmm_progress_format_rate(double bytes_per_sec);
/* "0:04", "12:05", "1:02:03"; "--:--" when unknown (negative). */
char *vmm_progress_format_eta(double seconds);
/* The integer percentage Tart prints, "37%"; 100% only when done == total. */
char *vmm_progress_format_plain(uint64_t done, uint64_t total);
/* One bar line `width` columns wide at most (without the leading '\r'). */
char *vmm_progress_format_bar(const char *label, uint64_t done, uint64_t total, double elapsed,
			      int width);

#endif
