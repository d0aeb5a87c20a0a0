/*
 * libFuzzer target: WWW-Authenticate parsing (registry/oci/auth.h), which reads
 * a header any registry may send.  The first input byte picks a second
 * parser of registry answers to run on the rest: the token endpoint's JSON
 * and scope lists go through the same code paths as the client's.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "registry/oci/auth.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size == 0)
		return 0;
	uint8_t mode = data[0];
	char *s = malloc(size);
	if (!s)
		return 0;
	memcpy(s, data + 1, size - 1);
	s[size - 1] = '\0';

	vmm_auth_challenge *ch = NULL;
	size_t n = 0;
	vmm_error *err = NULL;
	if (vmm_auth_parse_challenges(s, &ch, &n, &err) == 0) {
		const vmm_auth_challenge *pick = vmm_auth_pick(ch, n);
		const char *realm = pick ? vmm_auth_param_get(pick, "realm") : NULL;
		if (realm) {
			char *url = vmm_auth_token_url(realm, vmm_auth_param_get(pick, "service"),
						       vmm_auth_param_get(pick, "scope"));
			free(url);
		}
		vmm_auth_challenges_free(ch, n);
	} else if (!err || !err->msg || strchr(err->msg, '\n')) {
		abort(); /* a failure must come with a one-line message */
	}
	vmm_error_free(err);
	err = NULL;

	if (mode % 3 == 1) {
		char *tok = NULL;
		long ttl = 0;
		if (vmm_auth_parse_token_response(s, size - 1, 1700000000, &tok, &ttl, &err) == 0 &&
		    (!tok || ttl < 0))
			abort();
		free(tok);
		vmm_error_free(err);
	} else if (mode % 3 == 2) {
		/* a well-formed list merged with another covers both */
		char *m = vmm_auth_scope_merge(s, "repository:a/b:pull");
		if (vmm_auth_scope_covers(s, s) &&
		    (!vmm_auth_scope_covers(m, "repository:a/b:pull") ||
		     !vmm_auth_scope_covers(m, s)))
			abort();
		free(m);
	}
	free(s);
	return 0;
}
