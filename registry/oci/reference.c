#include "registry/oci/reference.h"
#include "common/util.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

typedef struct parser {
	const char *s;
	size_t pos;
	const char *why;
} parser;

static bool is_name_char(char c)
{
	/* ASCII letters and digits only: isalnum() would follow the locale */
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

static bool is_sep(char c)
{
	return c == '.' || c == '-' || c == '_';
}

static bool name(parser *p)
{
	size_t start = p->pos;
	while (is_name_char(p->s[p->pos]))
		p->pos++;
	if (p->pos == start) {
		p->why = "expected a letter or digit";
		return false;
	}
	return true;
}

/* host_component ('.' host_component)*, host_component: name ('-' name)* */
static bool host(parser *p)
{
	for (;;) {
		if (!name(p))
			return false;
		while (p->s[p->pos] == '-') {
			p->pos++;
			if (!name(p))
				return false;
		}
		if (p->s[p->pos] != '.')
			return true;
		p->pos++;
	}
}

/* (name separator?)+ */
static bool ns_component(parser *p)
{
	if (!name(p))
		return false;
	for (;;) {
		if (is_sep(p->s[p->pos]))
			p->pos++;
		if (!is_name_char(p->s[p->pos]))
			return true;
		name(p);
	}
}

/* name (separator name)* */
static bool tag(parser *p)
{
	if (!name(p))
		return false;
	while (is_sep(p->s[p->pos])) {
		p->pos++;
		if (!name(p))
			return false;
	}
	return true;
}

void vmm_reference_free(vmm_reference *r)
{
	if (!r)
		return;
	free(r->host);
	free(r->namespace);
	free(r->tag);
	free(r->digest);
	free(r);
}

vmm_reference *vmm_reference_dup(const vmm_reference *r)
{
	vmm_reference *d = xcalloc(1, sizeof(*d));
	d->host = xstrdup(r->host);
	d->namespace = xstrdup(r->namespace);
	d->tag = r->tag ? xstrdup(r->tag) : NULL;
	d->digest = r->digest ? xstrdup(r->digest) : NULL;
	return d;
}

static int fail(vmm_error **err, const char *s, parser *p)
{
	return vmm_error_set(err, VMM_EINVAL,
			     "failed to parse remote name \"%s\": %s (character %zu)", s, p->why,
			     p->pos + 1);
}

static void normalize_docker_hub(vmm_reference *r)
{
	static const char *const aliases[] = {"docker.io", "index.docker.io",
					      "registry-1.docker.io"};
	bool hub = false;
	for (size_t i = 0; i < ARRAY_SIZE(aliases); i++)
		if (strcmp(r->host, aliases[i]) == 0)
			hub = true;
	if (!hub)
		return;
	free(r->host);
	r->host = xstrdup("registry-1.docker.io");
	if (!strchr(r->namespace, '/')) {
		char *ns = xasprintf("library/%s", r->namespace);
		free(r->namespace);
		r->namespace = ns;
	}
}

int vmm_reference_parse(vmm_reference **out, const char *s, vmm_error **err)
{
	parser p = {.s = s};
	if (!host(&p))
		return fail(err, s, &p);
	if (s[p.pos] == ':') {
		p.pos++;
		size_t start = p.pos;
		while (s[p.pos] >= '0' && s[p.pos] <= '9')
			p.pos++;
		if (p.pos == start) {
			p.why = "expected a port number";
			return fail(err, s, &p);
		}
	}
	size_t host_end = p.pos;
	if (s[p.pos] != '/') {
		p.why = "expected '/' after the host";
		return fail(err, s, &p);
	}
	p.pos++;
	size_t ns_start = p.pos;
	for (;;) {
		if (!ns_component(&p))
			return fail(err, s, &p);
		if (s[p.pos] != '/')
			break;
		p.pos++;
	}
	size_t ns_end = p.pos;
	char *tagv = NULL, *digest = NULL;
	if (s[p.pos] == ':') {
		p.pos++;
		size_t start = p.pos;
		if (!tag(&p))
			return fail(err, s, &p);
		tagv = xstrndup(s + start, p.pos - start);
	} else if (s[p.pos] == '@') {
		p.pos++;
		size_t start = p.pos;
		if (strncmp(s + p.pos, "sha256:", 7) != 0) {
			p.why = "unknown reference format, expected @sha256:<digest>";
			return fail(err, s, &p);
		}
		p.pos += 7;
		size_t hex = 0;
		while (isxdigit((unsigned char)s[p.pos]) && !isupper((unsigned char)s[p.pos])) {
			p.pos++;
			hex++;
		}
		if (hex != 64) {
			p.why = "a sha256 digest has 64 lower-case hex digits";
			return fail(err, s, &p);
		}
		digest = xstrndup(s + start, p.pos - start);
	}
	if (s[p.pos] != '\0') {
		free(tagv);
		free(digest);
		p.why = "unexpected character";
		return fail(err, s, &p);
	}
	vmm_reference *r = xcalloc(1, sizeof(*r));
	r->host = xstrndup(s, host_end);
	r->namespace = xstrndup(s + ns_start, ns_end - ns_start);
	r->tag = tagv;
	r->digest = digest;
	if (!r->tag && !r->digest)
		r->tag = xstrdup("latest");
	normalize_docker_hub(r);
	*out = r;
	return 0;
}

bool vmm_reference_is_remote(const char *s)
{
	vmm_reference *r = NULL;
	if (vmm_reference_parse(&r, s, NULL) < 0)
		return false;
	vmm_reference_free(r);
	return true;
}

const char *vmm_reference_value(const vmm_reference *r)
{
	return r->digest ? r->digest : r->tag;
}

char *vmm_reference_string(const vmm_reference *r)
{
	return xasprintf("%s/%s%s%s", r->host, r->namespace, r->digest ? "@" : ":",
			 vmm_reference_value(r));
}
