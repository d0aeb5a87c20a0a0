#include "common/json.h"
#include "common/util.h"

#include <ctype.h>

#include <string.h>

int vmm_json_parse(json_t **out, const char *data, size_t len, const char *what, vmm_error **err)
{
	json_error_t je;
	json_t *v = json_loadb(data, len, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &je);
	if (!v)
		return vmm_error_set(err, VMM_EINVAL, "%s: invalid JSON at line %d column %d: %s",
				     what, je.line, je.column, je.text);
	*out = v;
	return 0;
}

/* jansson's messages quote the text ("... near 'hunter2'"); these do not */
static const char *secret_safe_reason(const json_error_t *je)
{
	switch (json_error_code(je)) {
	case json_error_invalid_utf8:
		return "invalid UTF-8";
	case json_error_premature_end_of_input:
		return "unexpected end of input";
	case json_error_end_of_input_expected:
		return "text after the end";
	case json_error_duplicate_key:
		return "a key appears twice";
	case json_error_null_character:
	case json_error_null_byte_in_key:
		return "a NUL character";
	case json_error_numeric_overflow:
		return "a number out of range";
	case json_error_stack_overflow:
		return "nested too deeply";
	default:
		return "syntax error";
	}
}

int vmm_json_parse_secret(json_t **out, const char *data, size_t len, const char *what,
			  vmm_error **err)
{
	json_error_t je;
	json_t *v = json_loadb(data, len, JSON_REJECT_DUPLICATES, &je);
	/* jansson keeps the offending token in je.text: wipe it */
	if (!v) {
		int line = je.line, column = je.column;
		const char *reason = secret_safe_reason(&je);
		explicit_bzero(je.text, sizeof(je.text));
		return vmm_error_set(err, VMM_EINVAL, "%s: invalid JSON at line %d column %d (%s)",
				     what, line, column, reason);
	}
	*out = v;
	return 0;
}

int vmm_json_load_file_secret(json_t **out, const char *path, size_t max, vmm_error **err)
{
	cleanup_free char *buf = NULL;
	size_t len = 0;
	if (vmm_read_file(path, max, &buf, &len, err) < 0)
		return -1;
	cleanup_free char *what = xasprintf("`%s`", path);
	int rc = vmm_json_parse_secret(out, buf, len, what, err);
	explicit_bzero(buf, len);
	return rc;
}

int vmm_json_load_file(json_t **out, const char *path, size_t max, vmm_error **err)
{
	cleanup_free char *buf = NULL;
	size_t len = 0;
	if (vmm_read_file(path, max, &buf, &len, err) < 0)
		return -1;
	cleanup_free char *what = xasprintf("`%s`", path);
	return vmm_json_parse(out, buf, len, what, err);
}

typedef struct strbuf {
	char *p;
	size_t len, cap;
} strbuf;

static void sb_put(strbuf *b, const char *s, size_t n)
{
	if (b->len + n + 1 > b->cap) {
		b->cap = (b->len + n + 1) * 2;
		b->p = xrealloc(b->p, b->cap);
	}
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = '\0';
}

static void sb_puts(strbuf *b, const char *s)
{
	sb_put(b, s, strlen(s));
}

static void sb_indent(strbuf *b, int depth)
{
	for (int i = 0; i < depth; i++)
		sb_put(b, "  ", 2);
}

static void pretty(strbuf *b, const json_t *v, int depth)
{
	if (json_is_object(v)) {
		if (json_object_size(v) == 0) {
			sb_puts(b, "{\n\n");
			sb_indent(b, depth);
			sb_puts(b, "}");
			return;
		}
		sb_puts(b, "{\n");
		const char *key;
		json_t *val;
		size_t i = 0, n = json_object_size(v);
		json_object_foreach((json_t *)v, key, val)
		{
			sb_indent(b, depth + 1);
			json_t *k = json_string(key);
			char *ks = json_dumps(k, JSON_ENCODE_ANY | JSON_ESCAPE_SLASH);
			json_decref(k);
			sb_puts(b, ks);
			free(ks);
			sb_puts(b, " : ");
			pretty(b, val, depth + 1);
			sb_puts(b, ++i < n ? ",\n" : "\n");
		}
		sb_indent(b, depth);
		sb_puts(b, "}");
	} else if (json_is_array(v)) {
		if (json_array_size(v) == 0) {
			sb_puts(b, "[\n\n");
			sb_indent(b, depth);
			sb_puts(b, "]");
			return;
		}
		sb_puts(b, "[\n");
		size_t i, n = json_array_size(v);
		json_t *val;
		json_array_foreach((json_t *)v, i, val)
		{
			sb_indent(b, depth + 1);
			pretty(b, val, depth + 1);
			sb_puts(b, i + 1 < n ? ",\n" : "\n");
		}
		sb_indent(b, depth);
		sb_puts(b, "]");
	} else {
		char *s =
		    json_dumps(v, JSON_ENCODE_ANY | JSON_ESCAPE_SLASH | JSON_REAL_PRECISION(17));
		sb_puts(b, s);
		free(s);
	}
}

char *vmm_json_pretty(const json_t *v)
{
	strbuf b = {0};
	pretty(&b, v, 0);
	return b.p;
}

char *vmm_json_compact(const json_t *v, int sorted)
{
	size_t flags = JSON_COMPACT | JSON_ENCODE_ANY | JSON_ESCAPE_SLASH;
	if (sorted)
		flags |= JSON_SORT_KEYS;
	char *s = json_dumps(v, flags);
	if (!s)
		vmm_fatal("out of memory");
	return s;
}

static int fold(int c)
{
	return (c >= 'A' && c <= 'Z') ? c - 'A' + 'a' : c;
}

int vmm_foundation_compare(const char *a, const char *b)
{
	const unsigned char *p = (const unsigned char *)a, *q = (const unsigned char *)b;
	while (*p && *q) {
		if (isdigit(*p) && isdigit(*q)) {
			/* compare digit runs by value: skip leading zeros, then length, then digits
			 */
			while (*p == '0' && isdigit(p[1]))
				p++;
			while (*q == '0' && isdigit(q[1]))
				q++;
			size_t lp = 0, lq = 0;
			while (isdigit(p[lp]))
				lp++;
			while (isdigit(q[lq]))
				lq++;
			if (lp != lq)
				return lp < lq ? -1 : 1;
			int c = memcmp(p, q, lp);
			if (c)
				return c < 0 ? -1 : 1;
			p += lp;
			q += lq;
			continue;
		}
		int cp = fold(*p), cq = fold(*q);
		if (cp != cq)
			return cp < cq ? -1 : 1;
		p++;
		q++;
	}
	if (*p || *q)
		return *p ? 1 : -1;
	int c = strcmp(a, b); /* .forcedOrdering */
	return c < 0 ? -1 : c > 0;
}

static int cmp_keys(const void *x, const void *y)
{
	return vmm_foundation_compare(*(const char *const *)x, *(const char *const *)y);
}

/* A deep copy whose objects hold their keys in Foundation order. */
static json_t *sorted_copy(const json_t *v)
{
	if (json_is_object(v)) {
		size_t n = json_object_size(v), i = 0;
		const char **keys = xcalloc(n ? n : 1, sizeof(char *));
		json_t *obj = (json_t *)v;
		for (void *it = json_object_iter(obj); it; it = json_object_iter_next(obj, it))
			keys[i++] = json_object_iter_key(it);
		qsort(keys, n, sizeof(char *), cmp_keys);
		json_t *o = json_object();
		for (i = 0; i < n; i++)
			json_object_set_new(o, keys[i], sorted_copy(json_object_get(v, keys[i])));
		free(keys);
		return o;
	}
	if (json_is_array(v)) {
		json_t *a = json_array();
		for (size_t i = 0; i < json_array_size(v); i++)
			json_array_append_new(a, sorted_copy(json_array_get(v, i)));
		return a;
	}
	return json_deep_copy(v);
}

char *vmm_json_tart_sorted(const json_t *v)
{
	json_t *s = sorted_copy(v);
	char *out = vmm_json_compact(s, 0);
	json_decref(s);
	return out;
}
