/*
 * json.h — jansson helpers: parsing with an error that names the source,
 * and Foundation's pretty format (what Tart writes to config.json and prints
 * for --format json): 2-space indent, `"key" : value`, `/` escaped as `\/`,
 * key order kept, no trailing newline.
 */
#ifndef VMM_COMMON_JSON_H
#define VMM_COMMON_JSON_H

#include <jansson.h>
#include "common/err.h"

/* Parse `len` bytes; `what` names the source in errors ("`x/config.json`: invalid JSON …"). */
int vmm_json_parse(json_t **out, const char *data, size_t len, const char *what, vmm_error **err);
/* Read and parse a file (at most max bytes). */
int vmm_json_load_file(json_t **out, const char *path, size_t max, vmm_error **err);
/*
 * The same for text that holds secrets (Docker's config.json, the login
 * store, a credential helper's answer): errors give the position and the
 * kind of mistake, never a fragment of the text.
 */
int vmm_json_parse_secret(json_t **out, const char *data, size_t len, const char *what,
			  vmm_error **err);
int vmm_json_load_file_secret(json_t **out, const char *path, size_t max, vmm_error **err);
/* Foundation-style pretty text; caller frees. */
char *vmm_json_pretty(const json_t *v);
/* Compact text with escaped slashes (JSONEncoder default); sort keys if `sorted`. */
char *vmm_json_compact(const json_t *v, int sorted);

/*
 * Foundation's key order for JSONEncoder.sortedKeys: numeric,
 * case-insensitive, then literal (NSString compare with .numeric,
 * .caseInsensitive, .forcedOrdering).
 */
int vmm_foundation_compare(const char *a, const char *b);
/* Compact JSON with every object's keys in Foundation order, '/' escaped (caller frees). */
char *vmm_json_tart_sorted(const json_t *v);

#endif
