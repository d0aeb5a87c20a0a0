/*
 * auth.h — the pure parts of registry authentication (tart-spec §6), kept
 * free of I/O so that unit tests and the fuzzer reach them directly:
 *
 *  - WWW-Authenticate challenges (RFC 7235): `Bearer realm="…",service=…`,
 *    several challenges in one header, quoted strings with backslash
 *    escapes and commas, case-insensitive scheme and parameter names;
 *  - the Bearer token endpoint: its URL and its JSON answer;
 *  - scopes ("repository:a/b:pull,push"), which the client's token cache is
 *    keyed by, and "Basic base64(user:pass)".
 *
 * Everything returned is owned by the caller: strings with free(), challenge
 * arrays with vmm_auth_challenges_free().
 */
#ifndef VMM_REGISTRY_OCI_AUTH_H
#define VMM_REGISTRY_OCI_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#include "common/err.h"

typedef struct vmm_auth_param {
	char *name;  /* owned; as sent (compare with strcasecmp) */
	char *value; /* owned; quotes and escapes removed */
} vmm_auth_param;

typedef struct vmm_auth_challenge {
	char *scheme;		/* owned; as sent (compare with strcasecmp) */
	char *token68;		/* owned; NULL unless the challenge is `Scheme token68` */
	vmm_auth_param *params; /* owned */
	size_t nparams;
} vmm_auth_challenge;

/*
 * Parse a WWW-Authenticate value into *out (an array of *n >= 1 challenges).
 * Anything that is not RFC 7235 syntax — an empty header, a parameter
 * without a value, an unterminated quoted string, a control character —
 * is VMM_EFORMAT with a message that quotes (a bounded, sanitized part of)
 * the header.  At most 64 challenges and 64 parameters each.
 */
int vmm_auth_parse_challenges(const char *header, vmm_auth_challenge **out, size_t *n,
			      vmm_error **err);
void vmm_auth_challenges_free(vmm_auth_challenge *c, size_t n);

/* The value of parameter `name` (case-insensitive), or NULL. */
const char *vmm_auth_param_get(const vmm_auth_challenge *c, const char *name);

/* The challenge vmm answers: the first Bearer, else the first Basic, else NULL. */
const vmm_auth_challenge *vmm_auth_pick(const vmm_auth_challenge *c, size_t n);

/* "Basic " + base64("user:password") (caller frees). */
char *vmm_auth_basic_header(const char *username, const char *password);

/*
 * The token request URL: realm with `service=` and one `scope=` per scope
 * in the space-separated list `scopes` (either may be NULL or empty)
 * appended to its query, values percent-encoded (caller frees).
 */
char *vmm_auth_token_url(const char *realm, const char *service, const char *scopes);

/*
 * Parse a token endpoint's JSON answer: `token` or else `access_token`
 * (required, non-empty, at most 64 KiB), `expires_in` (seconds; default
 * 60), `issued_at` (RFC 3339; default `now`).  *ttl is how many seconds
 * from `now` the token stays valid (0 if already expired).  *token is the
 * caller's.
 */
int vmm_auth_parse_token_response(const char *body, size_t len, time_t now, char **token, long *ttl,
				  vmm_error **err);

/* Parse "2024-01-02T03:04:05[.frac](Z|±hh:mm)" into *out; false if malformed. */
bool vmm_auth_parse_time(const char *s, time_t *out);

/*
 * Scopes are space-separated "type:name:action[,action…]" items.  Does
 * `have` grant everything `need` asks for?  (An empty need is covered by
 * anything; a malformed item never is.)
 */
bool vmm_auth_scope_covers(const char *have, const char *need);
/* The union of two scope lists, each resource once with merged actions (caller frees). */
char *vmm_auth_scope_merge(const char *a, const char *b);

#endif
