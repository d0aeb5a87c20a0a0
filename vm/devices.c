#include "vm/devices.h"
#include "common/util.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>
#include <sys/stat.h>

/* One option item of --disk or --root-disk-opts: 1 taken, 0 not an option, -1 bad value. */
static int disk_item(const char *it, size_t len, vmm_disk_opts *o, vmm_error **err)
{
	cleanup_free char *s = xstrndup(it, len);
	if (strcmp(s, "ro") == 0) {
		o->ro = true;
		return 1;
	}
	if (strncmp(s, "sync=", 5) == 0) {
		const char *v = s + 5;
		if (strcmp(v, "none") == 0)
			o->sync = VMM_DISK_SYNC_NONE;
		else if (strcmp(v, "fsync") == 0)
			o->sync = VMM_DISK_SYNC_FSYNC;
		else if (strcmp(v, "full") == 0 || !*v)
			o->sync = VMM_DISK_SYNC_FULL;
		else
			return vmm_error_set(err, VMM_EINVAL,
					     "unsupported disk image synchronization mode: \"%s\"",
					     v);
		return 1;
	}
	if (strncmp(s, "caching=", 8) == 0) {
		const char *v = s + 8;
		if (strcmp(v, "automatic") == 0)
			o->caching = VMM_DISK_CACHE_AUTOMATIC;
		else if (strcmp(v, "cached") == 0)
			o->caching = VMM_DISK_CACHE_CACHED;
		else if (strcmp(v, "uncached") == 0)
			o->caching = VMM_DISK_CACHE_UNCACHED;
		else if (*v)
			return vmm_error_set(err, VMM_EINVAL,
					     "unsupported disk image caching mode: \"%s\"", v);
		return 1;
	}
	return 0;
}

/* Does the comma-separated list s name at least one disk option? */
static bool has_disk_option(const char *s)
{
	vmm_disk_opts scratch = {0};
	for (const char *p = s; *p;) {
		size_t n = strcspn(p, ",");
		if (disk_item(p, n, &scratch, NULL) != 0)
			return true;
		p += n;
		p += *p == ',';
	}
	return false;
}

int vmm_disk_opts_parse(const char *s, vmm_disk_opts *out, vmm_error **err)
{
	vmm_disk_opts o = {0};
	for (const char *p = s ? s : ""; *p;) {
		size_t n = strcspn(p, ",");
		int r = n ? disk_item(p, n, &o, err) : 1;
		if (r < 0)
			return -1;
		if (r == 0)
			return vmm_error_set(
			    err, VMM_EINVAL,
			    "unsupported disk option \"%.*s\" (known: ro, "
			    "sync=none|fsync|full, caching=automatic|cached|uncached)",
			    (int)n, p);
		p += n;
		p += *p == ',';
	}
	*out = o;
	return 0;
}

/* "~/x" as Tart expands it; a relative path made absolute against the current directory. */
static char *absolute(const char *path)
{
	const char *home = getenv("HOME");
	if (path[0] == '~' && (path[1] == '/' || !path[1]) && home && *home)
		return xasprintf("%s%s", home, path + 1);
	if (path[0] == '/')
		return xstrdup(path);
	char cwd[PATH_MAX];
	if (!getcwd(cwd, sizeof(cwd)))
		return xstrdup(path);
	return path_join(cwd, path);
}

static bool ends_with_ci(const char *s, const char *suffix)
{
	size_t a = strlen(s), b = strlen(suffix);
	return a >= b && strcasecmp(s + a - b, suffix) == 0;
}

/* Split "<rest>:<options>" when the last part names an option; *opts NULL if none. */
static char *split_options(const char *arg, bool (*is_opts)(const char *), const char **opts)
{
	const char *colon = strrchr(arg, ':');
	*opts = NULL;
	if (colon && is_opts(colon + 1)) {
		*opts = colon + 1;
		return xstrndup(arg, (size_t)(colon - arg));
	}
	return xstrdup(arg);
}

int vmm_disk_spec_parse(const char *arg, vmm_disk_spec *out, vmm_error **err)
{
	memset(out, 0, sizeof(*out));
	const char *opts;
	cleanup_free char *path = split_options(arg, has_disk_option, &opts);
	if (opts && vmm_disk_opts_parse(opts, &out->o, err) < 0)
		return vmm_error_wrap(err, "--disk `%s`", arg);
	if (!*path)
		return vmm_error_set(err, VMM_EINVAL, "--disk `%s`: no path", arg);
	if (strstr(path, "://"))
		return vmm_error_set(err, VMM_EINVAL,
				     "--disk `%s`: network disks (NBD URLs) are not supported",
				     arg);
	char *abs = absolute(path);
	struct stat st;
	if (stat(abs, &st) < 0) {
		int e = errno;
		vmm_error_errno(err, e, "disk image `%s`", abs);
		free(abs);
		return -1;
	}
	if (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode)) {
		vmm_error_set(err, VMM_EINVAL, "disk image `%s`: not a file or a block device",
			      abs);
		free(abs);
		return -1;
	}
	out->path = abs;
	out->cdrom = S_ISREG(st.st_mode) && ends_with_ci(abs, ".iso");
	if (out->cdrom)
		out->o.ro = true;
	return 0;
}

void vmm_disk_spec_clear(vmm_disk_spec *d)
{
	free(d->path);
	memset(d, 0, sizeof(*d));
}

int vmm_disk_spec_check_arch(const vmm_disk_spec *d, const char *guest_arch, vmm_error **err)
{
	if (!d->cdrom)
		return 0;
	bool arm = strcmp(guest_arch, "arm64") == 0;
	static const char *const x86[] = {"-amd64.iso", "-x86_64.iso"};
	static const char *const a64[] = {"-arm64.iso", "-aarch64.iso"};
	const char *const *other = arm ? x86 : a64;
	for (size_t i = 0; i < 2; i++)
		if (ends_with_ci(d->path, other[i]))
			return vmm_error_set(
			    err, VMM_EUSAGE,
			    "Seems you have a disk targeting %s architecture (hence %s in the "
			    "name). Please use an '%s' version of the disk.",
			    arm ? "x86" : "arm64", arm ? "amd64" : "arm64",
			    arm ? "arm64" : "amd64");
	return 0;
}

static bool has_dir_option(const char *s)
{
	for (const char *p = s; *p;) {
		size_t n = strcspn(p, ",");
		if ((n == 2 && strncmp(p, "ro", 2) == 0) || strncmp(p, "tag=", 4) == 0)
			return true;
		p += n;
		p += *p == ',';
	}
	return false;
}

int vmm_dir_spec_parse(const char *arg, vmm_dir_spec *out, vmm_error **err)
{
	memset(out, 0, sizeof(*out));
	const char *opts;
	cleanup_free char *rest = split_options(arg, has_dir_option, &opts);
	cleanup_free char *tag = NULL;
	for (const char *p = opts ? opts : ""; *p;) {
		size_t n = strcspn(p, ",");
		if (n == 2 && strncmp(p, "ro", 2) == 0) {
			out->ro = true;
		} else if (n >= 4 && strncmp(p, "tag=", 4) == 0) {
			free(tag);
			tag = xstrndup(p + 4, n - 4);
		} else if (n) {
			return vmm_error_set(err, VMM_EUSAGE,
					     "--dir `%s`: unsupported option \"%.*s\" (known: ro, "
					     "tag=TAG)",
					     arg, (int)n, p);
		}
		p += n;
		p += *p == ',';
	}
	if (tag && !*tag)
		return vmm_error_set(err, VMM_EUSAGE, "--dir `%s`: empty tag", arg);
	if (strncmp(rest, "http:", 5) == 0 || strncmp(rest, "https:", 6) == 0)
		return vmm_error_set(err, VMM_EINVAL,
				     "--dir `%s`: remote archives are not supported", arg);
	const char *path = rest;
	cleanup_free char *name = NULL;
	char *colon = strchr(rest, ':');
	if (colon) {
		name = xstrndup(rest, (size_t)(colon - rest));
		path = colon + 1;
		if (!*name || strchr(name, '/') || strcmp(name, ".") == 0 ||
		    strcmp(name, "..") == 0)
			return vmm_error_set(err, VMM_EUSAGE, "--dir `%s`: bad name \"%s\"", arg,
					     name);
	}
	if (!*path)
		return vmm_error_set(err, VMM_EUSAGE, "--dir `%s`: no path", arg);
	char *abs = absolute(path);
	struct stat st;
	int e = stat(abs, &st) < 0 ? errno : S_ISDIR(st.st_mode) ? 0 : ENOTDIR;
	if (e) {
		vmm_error_errno(err, e, "shared folder `%s`", abs);
		free(abs);
		return -1;
	}
	out->path = abs;
	out->name = steal_ptr(name);
	out->tag = tag ? steal_ptr(tag) : xstrdup(VMM_DIR_DEFAULT_TAG);
	return 0;
}

void vmm_dir_spec_clear(vmm_dir_spec *d)
{
	free(d->name);
	free(d->path);
	free(d->tag);
	memset(d, 0, sizeof(*d));
}

size_t vmm_dir_specs_count_tag(const vmm_dir_spec *d, size_t n, const char *tag)
{
	size_t c = 0;
	for (size_t i = 0; i < n; i++)
		c += strcmp(d[i].tag, tag) == 0;
	return c;
}

int vmm_dir_specs_check(const vmm_dir_spec *d, size_t n, vmm_error **err)
{
	for (size_t i = 0; i < n; i++) {
		for (size_t j = 0; j < n; j++) {
			if (j == i || strcmp(d[i].tag, d[j].tag) != 0)
				continue;
			if (!d[i].name || !d[j].name)
				return vmm_error_set(err, VMM_EUSAGE,
						     "invalid --dir syntax: for multiple directory "
						     "shares each one of them should be named");
			if (j > i && strcmp(d[i].name, d[j].name) == 0)
				return vmm_error_set(
				    err, VMM_EUSAGE,
				    "--dir: two shares named \"%s\" with tag \"%s\"", d[i].name,
				    d[i].tag);
		}
	}
	return 0;
}
