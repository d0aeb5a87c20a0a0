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

int vmm_args_parse(vmm_args *a, const vmm_cmd_spec *spec, int argc, char **argv)
{
	memset(a, 0, sizeof(*a));
	a->spec = spec;
	size_t n = count_opts(spec);
	if (n + 1 > VMM_MAX_OPTS)
		abort();
	struct option longopts[VMM_MAX_OPTS + 1];
	/* leading ':' reports a missing value as ':'; GNU getopt permutes, so
	 * options may follow positional arguments as with Tart */
	char shortopts[3 * VMM_MAX_OPTS + 4] = ":h";
	size_t sl = 2;
	for (size_t i = 0; i < n; i++) {
		const vmm_opt *o = &spec->opts[i];
		longopts[i] = (struct option){o->name, o->arg ? required_argument : no_argument,
					      NULL, (int)(1000 + i)};
		if (o->short_name) {
			shortopts[sl++] = (char)o->short_name;
			if (o->arg)
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
		const char *v = spec->opts[idx].arg ? optarg : "";
		a->val[idx] = v;
		a->list[idx] = xrealloc(a->list[idx], (a->nlist[idx] + 1) * sizeof(char *));
		a->list[idx][a->nlist[idx]++] = v;
	}
	a->pos = argv + optind;
	a->npos = (size_t)(argc - optind);
	if (a->npos < spec->min_pos)
		return vmm_usage_error(spec, "missing argument");
	if (a->npos > spec->max_pos)
		return vmm_usage_error(spec, "unexpected argument '%s'", a->pos[spec->max_pos]);
	return 0;
}

void vmm_args_free(vmm_args *a)
{
	for (size_t i = 0; i < VMM_MAX_OPTS; i++) {
		free(a->list[i]);
		a->list[i] = NULL;
	}
}

static size_t find(const vmm_args *a, const char *name)
{
	for (size_t i = 0; a->spec->opts && a->spec->opts[i].name; i++)
		if (strcmp(a->spec->opts[i].name, name) == 0)
			return i;
	fprintf(stderr, "vmm: internal error: no option --%s in `%s`\n", name, a->spec->name);
	abort();
}

const char *vmm_args_get(const vmm_args *a, const char *name)
{
	return a->val[find(a, name)];
}

bool vmm_args_has(const vmm_args *a, const char *name)
{
	return a->val[find(a, name)] != NULL;
}

const char **vmm_args_list(const vmm_args *a, const char *name, size_t *n)
{
	size_t i = find(a, name);
	*n = a->nlist[i];
	return a->list[i];
}
