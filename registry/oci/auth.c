/*
 * auth.c — WWW-Authenticate parsing, token endpoint URL and answer, scopes.
 * See auth.h.  No I/O here: the client (client.c) does the requests.
 */
#include "registry/oci/auth.h"
#include "common/json.h"
#include "common/util.h"

#include <ctype.h>
#include <string.h>
#include <strings.h>

#include <openssl/evp.h>

#define MAX_CHALLENGES 64
#define MAX_PARAMS 64
#define MAX_TOKEN_LEN (64 * 1024)

/* --- WWW-Authenticate ---------------------------------------------------- */

typedef struct parser {
	const char *s;
	size_t pos;
	const char *why;
} parser;

static bool is_tchar(unsigned char c)
{
	return isalnum(c) || (c && strchr("!#$%&'*+-.^_`|~", c));
}

static bool is_token68_char(unsigned char c)
{
	return isalnum(c) || (c && strchr("-._~+/", c));
}

static void skip_ows(parser *p)
{
	while (p->s[p->pos] == ' ' || p->s[p->pos] == '\t')
		p->pos++;
}

/* Skip list separators: whitespace and empty list elements (RFC 7230 §7). */
static void skip_list_sep(parser *p)
{
	while (p->s[p->pos] == ' ' || p->s[p->pos] == '\t' || p->s[p->pos] == ',')
		p->pos++;
}

static size_t token_len(const parser *p, size_t at)
{
	size_t n = 0;
	while (is_tchar((unsigned char)p->s[at + n]))
		n++;
	return n;
}

/* A quoted-string at p->pos (the opening quote); *out gets the unescaped text. */
static int parse_quoted(parser *p, char **out)
{
	size_t i = p->pos + 1, n = 0;
	cleanup_free char *buf = xmalloc(strlen(p->s + i) + 1);
	for (;;) {
		unsigned char c = (unsigned char)p->s[i];
		if (c == '\0') {
			p->why = "unterminated quoted string";
			return -1;
		}
		if (c == '"')
			break;
		if (c == '\\') {
			unsigned char e = (unsigned char)p->s[i + 1];
			if (e == '\0' || (e < 0x20 && e != '\t') || e == 0x7f) {
				p->pos = i;
				p->why = "bad escape in quoted string";
				return -1;
			}
			buf[n++] = (char)e;
			i += 2;
			continue;
		}
		if ((c < 0x20 && c != '\t') || c == 0x7f) {
			p->pos = i;
			p->why = "control character in quoted string";
			return -1;
		}
		buf[n++] = (char)c;
		i++;
	}
	buf[n] = '\0';
	p->pos = i + 1;
	*out = steal_ptr(buf);
	return 0;
}

/*
 * An unquoted parameter value.  RFC 7235 says token, but registries send
 * unquoted URLs (`realm=https://auth.example/token`), so accept any visible
 * character but separators that would make the header ambiguous.
 */
static int parse_bare_value(parser *p, char **out)
{
	size_t n = 0;
	for (;;) {
		unsigned char c = (unsigned char)p->s[p->pos + n];
		if (c <= 0x20 || c == 0x7f || c == ',' || c == '"' || c == '\\')
			break;
		n++;
	}
	if (n == 0) {
		p->why = p->s[p->pos] == '\0' || p->s[p->pos] == ',' ? "parameter without a value"
								     : "unexpected character";
		return -1;
	}
	*out = xstrndup(p->s + p->pos, n);
	p->pos += n;
	return 0;
}

static void challenge_clear(vmm_auth_challenge *c)
{
	free(c->scheme);
	free(c->token68);
	for (size_t i = 0; i < c->nparams; i++) {
		free(c->params[i].name);
		free(c->params[i].value);
	}
	free(c->params);
	memset(c, 0, sizeof(*c));
}

void vmm_auth_challenges_free(vmm_auth_challenge *c, size_t n)
{
	if (!c)
		return;
	for (size_t i = 0; i < n; i++)
		challenge_clear(&c[i]);
	free(c);
}

const char *vmm_auth_param_get(const vmm_auth_challenge *c, const char *name)
{
	for (size_t i = 0; c && i < c->nparams; i++)
		if (strcasecmp(c->params[i].name, name) == 0)
			return c->params[i].value;
	return NULL;
}

/*
 * After a scheme and its whitespace: is what follows `Scheme token68`?
 * A token68 is its character set, then '='s, then the end or a comma.
 */
static bool try_token68(parser *p, vmm_auth_challenge *c)
{
	size_t i = p->pos, n = 0;
	while (is_token68_char((unsigned char)p->s[i + n]))
		n++;
	if (n == 0)
		return false;
	size_t end = i + n;
	while (p->s[end] == '=')
		end++;
	size_t after = end;
	while (p->s[after] == ' ' || p->s[after] == '\t')
		after++;
	if (p->s[after] != '\0' && p->s[after] != ',')
		return false;
	c->token68 = xstrndup(p->s + i, end - i);
	p->pos = after;
	return true;
}

/* One auth-param at p->pos: name BWS '=' BWS value. */
static int parse_param(parser *p, vmm_auth_challenge *c)
{
	size_t n = token_len(p, p->pos);
	if (n == 0) {
		p->why = "expected a parameter name";
		return -1;
	}
	cleanup_free char *name = xstrndup(p->s + p->pos, n);
	p->pos += n;
	skip_ows(p);
	if (p->s[p->pos] != '=') {
		p->why = "expected '=' after parameter name";
		return -1;
	}
	p->pos++;
	skip_ows(p);
	cleanup_free char *value = NULL;
	if (p->s[p->pos] == '"' ? parse_quoted(p, &value) < 0 : parse_bare_value(p, &value) < 0)
		return -1;
	if (vmm_auth_param_get(c, name)) {
		p->why = "duplicate parameter";
		return -1;
	}
	if (c->nparams == MAX_PARAMS) {
		p->why = "too many parameters";
		return -1;
	}
	c->params = xrealloc(c->params, (c->nparams + 1) * sizeof(*c->params));
	c->params[c->nparams].name = steal_ptr(name);
	c->params[c->nparams].value = steal_ptr(value);
	c->nparams++;
	return 0;
}

/* After a comma: does a new challenge start here (`Scheme` not followed by '=')? */
static bool at_new_challenge(const parser *p)
{
	size_t n = token_len(p, p->pos);
	if (n == 0)
		return false;
	size_t i = p->pos + n;
	while (p->s[i] == ' ' || p->s[i] == '\t')
		i++;
	return p->s[i] != '=';
}

/* The parameters (or token68) of challenge c, p->pos just after its scheme. */
static int parse_challenge_body(parser *p, vmm_auth_challenge *c)
{
	size_t before = p->pos;
	skip_ows(p);
	if (p->s[p->pos] == '\0' || p->s[p->pos] == ',')
		return 0; /* a bare scheme */
	if (p->pos == before) {
		p->why = "expected a space after the scheme";
		return -1;
	}
	if (try_token68(p, c))
		return 0;
	for (;;) {
		if (parse_param(p, c) < 0)
			return -1;
		skip_ows(p);
		if (p->s[p->pos] == '\0')
			return 0;
		if (p->s[p->pos] != ',') {
			p->why = "expected ',' between parameters";
			return -1;
		}
		skip_list_sep(p);
		if (p->s[p->pos] == '\0' || at_new_challenge(p))
			return 0;
	}
}

static int parse_error(vmm_error **err, const parser *p)
{
	/* quote a bounded, printable part of the header: it comes from the network */
	char shown[81];
	size_t n = 0;
	for (const char *s = p->s; *s && n < sizeof(shown) - 1; s++)
		shown[n++] = (*s >= 0x20 && *s < 0x7f) ? *s : '?';
	shown[n] = '\0';
	return vmm_error_set(err, VMM_EFORMAT,
			     "malformed WWW-Authenticate header `%s%s`: %s at character %zu", shown,
			     strlen(p->s) > n ? "…" : "", p->why, p->pos + 1);
}

int vmm_auth_parse_challenges(const char *header, vmm_auth_challenge **out, size_t *n,
			      vmm_error **err)
{
	parser p = {.s = header ? header : ""};
	vmm_auth_challenge *list = NULL;
	size_t count = 0;
	skip_list_sep(&p);
	if (p.s[p.pos] == '\0') {
		p.why = "no challenge";
		return parse_error(err, &p);
	}
	while (p.s[p.pos] != '\0') {
		size_t sl = token_len(&p, p.pos);
		if (sl == 0) {
			p.why = "expected an authentication scheme";
			goto fail;
		}
		if (count == MAX_CHALLENGES) {
			p.why = "too many challenges";
			goto fail;
		}
		list = xrealloc(list, (count + 1) * sizeof(*list));
		memset(&list[count], 0, sizeof(*list));
		list[count].scheme = xstrndup(p.s + p.pos, sl);
		count++;
		p.pos += sl;
		if (parse_challenge_body(&p, &list[count - 1]) < 0)
			goto fail;
		skip_list_sep(&p);
	}
	*out = list;
	*n = count;
	return 0;
fail:
	vmm_auth_challenges_free(list, count);
	return parse_error(err, &p);
}

const vmm_auth_challenge *vmm_auth_pick(const vmm_auth_challenge *c, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (strcasecmp(c[i].scheme, "Bearer") == 0)
			return &c[i];
	for (size_t i = 0; i < n; i++)
		if (strcasecmp(c[i].scheme, "Basic") == 0)
			return &c[i];
	return NULL;
}

/* --- Basic ---------------------------------------------------------------- */

char *vmm_auth_basic_header(const char *username, const char *password)
{
	cleanup_free char *plain = xasprintf("%s:%s", username, password);
	size_t len = strlen(plain);
	char *out = xmalloc(6 + 4 * ((len + 2) / 3) + 1);
	memcpy(out, "Basic ", 6);
	EVP_EncodeBlock((unsigned char *)out + 6, (const unsigned char *)plain, (int)len);
	explicit_bzero(plain, len);
	return out;
}

/* --- token endpoint --------------------------------------------------------- */

static void append_escaped(char **buf, size_t *len, const char *s)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t n = strlen(s);
	*buf = xrealloc(*buf, *len + 3 * n + 1);
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		if (isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~') {
			(*buf)[(*len)++] = (char)c;
		} else {
			(*buf)[(*len)++] = '%';
			(*buf)[(*len)++] = hex[c >> 4];
			(*buf)[(*len)++] = hex[c & 15];
		}
	}
	(*buf)[*len] = '\0';
}

static void append_raw(char **buf, size_t *len, const char *s)
{
	size_t n = strlen(s);
	*buf = xrealloc(*buf, *len + n + 1);
	memcpy(*buf + *len, s, n + 1);
	*len += n;
}

char *vmm_auth_token_url(const char *realm, const char *service, const char *scopes)
{
	size_t rl = strcspn(realm, "#"), len = 0;
	char *url = xstrndup(realm, rl);
	len = rl;
	bool has_query = strchr(url, '?') != NULL;
	char sep = has_query ? '&' : '?';
	if (has_query && (url[len - 1] == '?' || url[len - 1] == '&'))
		sep = 0;
	if (service && *service) {
		char s[2] = {sep, 0};
		append_raw(&url, &len, s);
		append_raw(&url, &len, "service=");
		append_escaped(&url, &len, service);
		sep = '&';
	}
	cleanup_free char *copy = xstrdup(scopes ? scopes : "");
	char *save = NULL;
	for (char *tok = strtok_r(copy, " ", &save); tok; tok = strtok_r(NULL, " ", &save)) {
		char s[2] = {sep, 0};
		append_raw(&url, &len, s);
		append_raw(&url, &len, "scope=");
		append_escaped(&url, &len, tok);
		sep = '&';
	}
	return url;
}

static int two_digits(const char *s, int *out)
{
	if (!isdigit((unsigned char)s[0]) || !isdigit((unsigned char)s[1]))
		return -1;
	*out = (s[0] - '0') * 10 + (s[1] - '0');
	return 0;
}

bool vmm_auth_parse_time(const char *s, time_t *out)
{
	struct tm tm = {0};
	int year = 0, mon, day, hour, min, sec;
	for (int i = 0; i < 4; i++) {
		if (!isdigit((unsigned char)s[i]))
			return false;
		year = year * 10 + (s[i] - '0');
	}
	if (s[4] != '-' || two_digits(s + 5, &mon) < 0 || s[7] != '-' ||
	    two_digits(s + 8, &day) < 0 || (s[10] != 'T' && s[10] != 't' && s[10] != ' ') ||
	    two_digits(s + 11, &hour) < 0 || s[13] != ':' || two_digits(s + 14, &min) < 0 ||
	    s[16] != ':' || two_digits(s + 17, &sec) < 0)
		return false;
	if (mon < 1 || mon > 12 || day < 1 || day > 31 || hour > 23 || min > 59 || sec > 60)
		return false;
	const char *p = s + 19;
	if (*p == '.') {
		p++;
		if (!isdigit((unsigned char)*p))
			return false;
		while (isdigit((unsigned char)*p))
			p++;
	}
	long offset = 0;
	if (*p == 'Z' || *p == 'z') {
		p++;
	} else if (*p == '+' || *p == '-') {
		int oh, om;
		if (two_digits(p + 1, &oh) < 0 || p[3] != ':' || two_digits(p + 4, &om) < 0 ||
		    oh > 23 || om > 59)
			return false;
		offset = (oh * 3600L + om * 60L) * (*p == '-' ? -1 : 1);
		p += 6;
	} else {
		return false;
	}
	if (*p)
		return false;
	tm.tm_year = year - 1900;
	tm.tm_mon = mon - 1;
	tm.tm_mday = day;
	tm.tm_hour = hour;
	tm.tm_min = min;
	tm.tm_sec = sec;
	time_t t = timegm(&tm);
	if (t == (time_t)-1)
		return false;
	*out = t - offset;
	return true;
}

/* A token goes into a header: printable ASCII without spaces only. */
static bool token_is_safe(const char *t)
{
	for (; *t; t++)
		if (*t <= 0x20 || *t >= 0x7f)
			return false;
	return true;
}

int vmm_auth_parse_token_response(const char *body, size_t len, time_t now, char **token, long *ttl,
				  vmm_error **err)
{
	json_auto_t *root = NULL;
	if (vmm_json_parse(&root, body, len, "token response", err) < 0)
		return -1;
	if (!json_is_object(root))
		return vmm_error_set(err, VMM_EFORMAT, "token response: not a JSON object");
	const char *t = json_string_value(json_object_get(root, "token"));
	if (!t || !*t)
		t = json_string_value(json_object_get(root, "access_token"));
	if (!t || !*t)
		return vmm_error_set(err, VMM_EFORMAT,
				     "token response: no `token` or `access_token`");
	if (strlen(t) > MAX_TOKEN_LEN || !token_is_safe(t))
		return vmm_error_set(err, VMM_EFORMAT,
				     "token response: token is too long or has invalid characters");
	long expires = 60;
	json_t *e = json_object_get(root, "expires_in");
	if (json_is_integer(e) && json_integer_value(e) > 0)
		expires = json_integer_value(e) > 365L * 86400 ? 365L * 86400
							       : (long)json_integer_value(e);
	else if (json_is_real(e) && json_real_value(e) >= 1 && json_real_value(e) < 365.0 * 86400)
		expires = (long)json_real_value(e);
	time_t issued = now;
	const char *ia = json_string_value(json_object_get(root, "issued_at"));
	if (ia && !vmm_auth_parse_time(ia, &issued))
		issued = now;
	/* a token "issued in the future" is a clock skew: trust expires_in */
	long age = issued < now ? (long)(now - issued) : 0;
	*ttl = age >= expires ? 0 : expires - age;
	*token = xstrdup(t);
	return 0;
}

/* --- scopes ------------------------------------------------------------------ */

typedef struct scope_item {
	char *resource; /* "type:name" */
	char **actions;
	size_t nactions;
} scope_item;

static void items_free(scope_item *it, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(it[i].resource);
		for (size_t j = 0; j < it[i].nactions; j++)
			free(it[i].actions[j]);
		free(it[i].actions);
	}
	free(it);
}

static bool has_action(const scope_item *it, const char *a)
{
	for (size_t j = 0; j < it->nactions; j++)
		if (strcmp(it->actions[j], a) == 0 || strcmp(it->actions[j], "*") == 0)
			return true;
	return false;
}

static void add_action(scope_item *it, const char *a, size_t n)
{
	cleanup_free char *s = xstrndup(a, n);
	for (size_t j = 0; j < it->nactions; j++)
		if (strcmp(it->actions[j], s) == 0)
			return;
	it->actions = xrealloc(it->actions, (it->nactions + 1) * sizeof(char *));
	it->actions[it->nactions++] = steal_ptr(s);
}

/* Parse "type:name:a,b c:d:e" into items, merging repeated resources. */
static int parse_scopes(const char *s, scope_item **out, size_t *n)
{
	scope_item *items = NULL;
	size_t count = 0;
	cleanup_free char *copy = xstrdup(s ? s : "");
	char *save = NULL;
	for (char *tok = strtok_r(copy, " ", &save); tok; tok = strtok_r(NULL, " ", &save)) {
		char *first = strchr(tok, ':'), *last = strrchr(tok, ':');
		if (!first || first == last || first == tok || last == first + 1) {
			items_free(items, count);
			return -1;
		}
		cleanup_free char *res = xstrndup(tok, (size_t)(last - tok));
		scope_item *it = NULL;
		for (size_t i = 0; i < count; i++)
			if (strcmp(items[i].resource, res) == 0)
				it = &items[i];
		if (!it) {
			items = xrealloc(items, (count + 1) * sizeof(*items));
			it = &items[count++];
			memset(it, 0, sizeof(*it));
			it->resource = steal_ptr(res);
		}
		for (const char *a = last + 1; *a;) {
			size_t l = strcspn(a, ",");
			if (l)
				add_action(it, a, l);
			a += l;
			if (*a == ',')
				a++;
		}
	}
	*out = items;
	*n = count;
	return 0;
}

bool vmm_auth_scope_covers(const char *have, const char *need)
{
	scope_item *h = NULL, *w = NULL;
	size_t nh = 0, nw = 0;
	if (parse_scopes(need, &w, &nw) < 0)
		return false;
	if (parse_scopes(have, &h, &nh) < 0) {
		items_free(w, nw);
		return false;
	}
	bool ok = true;
	for (size_t i = 0; i < nw && ok; i++) {
		const scope_item *match = NULL;
		for (size_t j = 0; j < nh; j++)
			if (strcmp(h[j].resource, w[i].resource) == 0)
				match = &h[j];
		for (size_t a = 0; a < w[i].nactions && ok; a++)
			ok = match && has_action(match, w[i].actions[a]);
	}
	items_free(h, nh);
	items_free(w, nw);
	return ok;
}

char *vmm_auth_scope_merge(const char *a, const char *b)
{
	cleanup_free char *both = xasprintf("%s %s", a ? a : "", b ? b : "");
	scope_item *it = NULL;
	size_t n = 0;
	if (parse_scopes(both, &it, &n) < 0)
		return xstrdup(a ? a : "");
	char *out = NULL;
	size_t len = 0;
	append_raw(&out, &len, "");
	for (size_t i = 0; i < n; i++) {
		if (i)
			append_raw(&out, &len, " ");
		append_raw(&out, &len, it[i].resource);
		append_raw(&out, &len, ":");
		for (size_t j = 0; j < it[i].nactions; j++) {
			if (j)
				append_raw(&out, &len, ",");
			append_raw(&out, &len, it[i].actions[j]);
		}
	}
	items_free(it, n);
	return out;
}
