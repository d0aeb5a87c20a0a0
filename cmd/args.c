#include "cmd/cmd.h"
#include "common/util.h"

#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static size_t count_opts(const vmm_cmd_spec *spec)
{
	size_t n = 0;
	while (spec->opts && spec->opts[n].name)
		n++;
	return n;
}

static void print_help(const vmm_cmd_spec *spec)
{
	printf("%s\n\nUsage: vmm %s %s\n", spec->summary, spec->name, spec->usage);
	size_t n = count_opts(spec);
	if (n)
		printf("\nOptions:\n");
	for (size_t i = 0; i < n; i++) {
		const vmm_opt *o = &spec->opts[i];
		if (o->hidden)
			continue;
		char left[64];
		int l = snprintf(left, sizeof(left), "%s%c%s--%s%s%s", o->short_name ? "-" : "",
				 o->short_name ? o->short_name : ' ', o->short_name ? ", " : "  ",
				 o->name, o->arg ? " " : "", o->arg ? o->arg : "");
		if (!o->short_name)
			memmove(left, left + 1, (size_t)l);
		printf("  %-28s %s\n", left, o->help);
	}
	printf("  %-28s %s\n", "-h, --help", "Show this help.");
}

/* How many positional arguments the usage line asks for (see cmd.h). */
static void arity(const char *usage, size_t *min, size_t *max)
{
	*min = *max = 0;
	for (const char *p = usage; *p;) {
		size_t n = strcspn(p, " ");
		bool optional = *p == '[';
		const char *w = optional ? p + 1 : p;
		if (*w < 'A' || *w > 'Z')
			break; /* the options begin */
		size_t len = n - (optional ? 1 : 0) - (optional && p[n - 1] == ']' ? 1 : 0);
		bool many = len >= 3 && memcmp(w + len - 3, "...", 3) == 0;
		*min += !optional;
		*max = many || *max == SIZE_MAX ? SIZE_MAX : *max + 1;
		p += n;
		p += strspn(p, " ");
	}
}

int vmm_usage_error(const vmm_cmd_spec *spec, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vmm_error_vprint(fmt, ap);
	va_end(ap);
	fprintf(stderr, "Usage: vmm %s %s\n  See 'vmm %s --help' for more information.\n",
		spec->name, spec->usage, spec->name);
	return 64;
}

/* Store one occurrence of option o with value v (NULL for a flag) in the target. */
static int store(const vmm_args *a, const vmm_opt *o, const char *v)
{
	void *field = (char *)a->target + o->target;
	uint64_t n;
	switch (o->type) {
	case VMM_OPT_FLAG:
		*(bool *)field = true;
		return 0;
	case VMM_OPT_STRING:
		*(const char **)field = v;
		return 0;
	case VMM_OPT_INT:
	case VMM_OPT_SIZE:
		if (vmm_parse_u64(v, &n) < 0 || n < o->min || n > o->max)
			return vmm_usage_error(
			    a->spec, "--%s: \"%s\" is not a whole number from %llu to %llu",
			    o->name, v, (unsigned long long)o->min, (unsigned long long)o->max);
		((vmm_opt_num *)field)->value = o->type == VMM_OPT_SIZE ? n * o->unit : n;
		((vmm_opt_num *)field)->given = true;
		return 0;
	case VMM_OPT_LIST: {
		vmm_opt_list *l = field;
		l->v = xrealloc(l->v, (l->n + 1) * sizeof(char *));
		l->v[l->n++] = v;
		return 0;
	}
	}
	abort();
}

static int parse(vmm_args *a, const vmm_cmd_spec *spec, int argc, char **argv, void *target,
		 bool passthrough)
{
	memset(a, 0, sizeof(*a));
	a->spec = spec;
	a->target = target;
	size_t n = count_opts(spec);
	if (n + 1 > VMM_MAX_OPTS || (n && !target))
		abort();
	struct option longopts[VMM_MAX_OPTS + 1];
	/* leading ':' reports a missing value as ':'; GNU getopt permutes, so
	 * options may follow positional arguments as with Tart */
	char shortopts[3 * VMM_MAX_OPTS + 5] = ":h";
	size_t sl = 2;
	if (passthrough) { /* '+': stop at the first non-option, as POSIX says */
		memcpy(shortopts, "+:h", 4);
		sl = 3;
	}
	for (size_t i = 0; i < n; i++) {
		const vmm_opt *o = &spec->opts[i];
		bool has_arg = o->type != VMM_OPT_FLAG;
		longopts[i] = (struct option){o->name, has_arg ? required_argument : no_argument,
					      NULL, (int)(1000 + i)};
		if (o->short_name) {
			shortopts[sl++] = (char)o->short_name;
			if (has_arg)
				shortopts[sl++] = ':';
			shortopts[sl] = '\0';
		}
	}
	longopts[n] = (struct option){"help", no_argument, NULL, 'h'};
	longopts[n + 1] = (struct option){0, 0, 0, 0};

	optind = 1;
	opterr = 0;
	int c, li;
	while ((c = getopt_long(argc, argv, shortopts, longopts, &li)) != -1) {
		size_t idx = SIZE_MAX;
		if (c == 'h') {
			print_help(spec);
			return -1;
		} else if (c == '?') {
			if (optopt)
				return vmm_usage_error(spec, "unknown option '-%c'", optopt);
			return vmm_usage_error(spec, "unknown option '%s'", argv[optind - 1]);
		} else if (c == ':') {
			return vmm_usage_error(spec, "option '%s' needs a value", argv[optind - 1]);
		} else if (c >= 1000) {
			idx = (size_t)(c - 1000);
		} else {
			for (size_t i = 0; i < n; i++)
				if (spec->opts[i].short_name == c)
					idx = i;
		}
		if (idx == SIZE_MAX)
			return vmm_usage_error(spec, "unknown option");
		int rc = store(a, &spec->opts[idx], optarg);
		if (rc)
			return rc;
	}
	a->pos = argv + optind;
	a->npos = (size_t)(argc - optind);
	size_t min, max;
	arity(spec->usage, &min, &max);
	if (a->npos < min)
		return vmm_usage_error(spec, "missing argument");
	if (a->npos > max)
		return vmm_usage_error(spec, "unexpected argument '%s'", a->pos[max]);
	return 0;
}

int vmm_args_parse(vmm_args *a, const vmm_cmd_spec *spec, int argc, char **argv, void *target)
{
	return parse(a, spec, argc, argv, target, false);
}

int vmm_args_parse_passthrough(vmm_args *a, const vmm_cmd_spec *spec, int argc, char **argv,
			       void *target)
{
	return parse(a, spec, argc, argv, target, true);
}

void vmm_args_free(vmm_args *a)
{
	for (size_t i = 0; a->target && i < count_opts(a->spec); i++) {
		const vmm_opt *o = &a->spec->opts[i];
		if (o->type != VMM_OPT_LIST)
			continue;
		vmm_opt_list *l = (vmm_opt_list *)((char *)a->target + o->target);
		free(l->v);
		l->v = NULL;
		l->n = 0;
	}
}
