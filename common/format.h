/*
 * format.h — text formatting shared by the commands: Tart's plain tables,
 * relative and ISO-8601 dates, and human-readable byte counts.  All returned
 * strings are owned by the caller.
 */
#ifndef VMM_COMMON_FORMAT_H
#define VMM_COMMON_FORMAT_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

/*
 * Tart's TextTable "plain" rendering: each column as wide as its widest cell
 * (title included), cells left-aligned and space-padded, columns joined by one
 * space, lines ended by '\n', the whole text trimmed of leading and trailing
 * whitespace.  `cells` holds nrows rows of ncols strings, row-major.
 *
 *   Source Name  Disk Size Accessed    State
 *   local  debian 50   0    2 hours ago stopped
 */
char *vmm_format_table(const char *const *headers, size_t ncols, const char *const *cells,
		       size_t nrows);

/*
 * "3 days ago", "1 hour ago", "in 5 minutes", and "in 0 seconds" for no
 * difference (Foundation's RelativeDateTimeFormatter, numeric, .full).
 */
char *vmm_format_relative(time_t then, time_t now);
/* "2026-05-12T21:45:18Z" */
char *vmm_format_iso8601(time_t t);
/* 1536 -> "1.5 KiB"; values under 1024 -> "N B". */
char *vmm_format_bytes(uint64_t n);
/* Sizes as Foundation's ByteCountFormatter writes them: "50 GB", "1.5 GB". */
char *vmm_format_decimal_bytes(uint64_t n);

#endif
