#include "vm/config.h"
#include "common/json.h"
#include "common/util.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *vmm_host_arch(void)
{
#if defined(__x86_64__)
	return "amd64";
#elif defined(__aarch64__)
	return "arm64";
#else
	return "unknown";
#endif
}

void vmm_mac_random(char out[18])
{
	unsigned char b[6];
	vmm_random_bytes(b, sizeof(b));
	b[0] = (unsigned char)((b[0] & 0xfc) | 0x02);
	snprintf(out, 18, "%02x:%02x:%02x:%02x:%02x:%02x", b[0], b[1], b[2], b[3], b[4], b[5]);
}

bool vmm_mac_is_valid(const char *s)
{
	if (!s || strlen(s) != 17)
		return false;
	for (int i = 0; i < 17; i++) {
		if (i % 3 == 2) {
			if (s[i] != ':')
				return false;
		} else if (!isxdigit((unsigned char)s[i])) {
			return false;
		}
	}
	return true;
}

void vmm_config_free(vmm_config *c)
{
	if (!c)
		return;
	json_decref(c->json);
	free(c->cmdline);
	free(c);
}

static int need_int(json_t *o, const char *key, int64_t *out, bool required, const char *what,
		    vmm_error **err)
{
	json_t *v = json_object_get(o, key);
	if (!v) {
		if (required)
			return vmm_error_set(err, VMM_EINVAL, "%s: missing key `%s`", what, key);
		return 1;
	}
	if (!json_is_integer(v))
		return vmm_error_set(err, VMM_EINVAL, "%s: `%s` must be an integer", what, key);
	*out = json_integer_value(v);
	return 0;
}

static int need_str(json_t *o, const char *key, char *out, size_t cap, bool required,
		    const char *what, vmm_error **err)
{
	json_t *v = json_object_get(o, key);
	if (!v) {
		if (required)
			return vmm_error_set(err, VMM_EINVAL, "%s: missing key `%s`", what, key);
		return 1;
	}
	if (!json_is_string(v))
		return vmm_error_set(err, VMM_EINVAL, "%s: `%s` must be a string", what, key);
	if (json_string_length(v) >= cap)
		return vmm_error_set(err, VMM_EINVAL, "%s: `%s` is too long", what, key);
	memcpy(out, json_string_value(v), json_string_length(v) + 1);
	return 0;
}

static int parse_fields(vmm_config *c, const char *what, vmm_error **err)
{
	json_t *o = c->json;
	int64_t v;
	if (need_int(o, "version", &v, true, what, err) < 0)
		return -1;
	c->version = (int)v;
	strcpy(c->os, "darwin");
	if (need_str(o, "os", c->os, sizeof(c->os), false, what, err) < 0)
		return -1;
	if (strcmp(c->os, "linux") != 0 && strcmp(c->os, "darwin") != 0)
		return vmm_error_set(err, VMM_EINVAL, "%s: unknown `os` \"%s\"", what, c->os);
	strcpy(c->arch, "arm64");
	if (need_str(o, "arch", c->arch, sizeof(c->arch), false, what, err) < 0)
		return -1;
	if (strcmp(c->arch, "arm64") != 0 && strcmp(c->arch, "amd64") != 0)
		return vmm_error_set(err, VMM_EINVAL, "%s: unknown `arch` \"%s\"", what, c->arch);
	if (need_int(o, "cpuCountMin", &c->cpu_count_min, true, what, err) < 0 ||
	    need_int(o, "cpuCount", &c->cpu_count, true, what, err) < 0)
		return -1;
	if (c->cpu_count < 1 || c->cpu_count > 1024 || c->cpu_count_min < 0)
		return vmm_error_set(err, VMM_EINVAL, "%s: `cpuCount` %lld is out of range", what,
				     (long long)c->cpu_count);
	int64_t mem_min, mem;
	if (need_int(o, "memorySizeMin", &mem_min, true, what, err) < 0 ||
	    need_int(o, "memorySize", &mem, true, what, err) < 0)
		return -1;
	if (mem_min < 0 || mem < 1024 * 1024)
		return vmm_error_set(err, VMM_EINVAL, "%s: `memorySize` %lld is out of range", what,
				     (long long)mem);
	c->memory_size_min = (uint64_t)mem_min;
	c->memory_size = (uint64_t)mem;
	json_t *mac = json_object_get(o, "macAddress");
	if (!mac)
		return vmm_error_set(err, VMM_EINVAL, "%s: missing key `macAddress`", what);
	if (!json_is_string(mac))
		return vmm_error_set(err, VMM_EINVAL, "%s: `macAddress` must be a string", what);
	if (json_string_length(mac) != 17 || !vmm_mac_is_valid(json_string_value(mac)))
		return vmm_error_set(err, VMM_EINVAL,
				     "%s: `macAddress` \"%.40s\" is not a MAC address", what,
				     json_string_value(mac));
	memcpy(c->mac, json_string_value(mac), sizeof(c->mac)); /* 17 characters and the NUL */
	for (char *p = c->mac; *p; p++)
		*p = (char)tolower((unsigned char)*p);

	c->display_width = 1024;
	c->display_height = 768;
	c->display_unit[0] = '\0';
	json_t *d = json_object_get(o, "display");
	if (d) {
		if (!json_is_object(d))
			return vmm_error_set(err, VMM_EINVAL, "%s: `display` must be an object",
					     what);
		cleanup_free char *dwhat = xasprintf("%s: display", what);
		if (need_int(d, "width", &c->display_width, true, dwhat, err) < 0 ||
		    need_int(d, "height", &c->display_height, true, dwhat, err) < 0 ||
		    need_str(d, "unit", c->display_unit, sizeof(c->display_unit), false, dwhat,
			     err) < 0)
			return -1;
		if (c->display_width <= 0 || c->display_height <= 0)
			return vmm_error_set(
			    err, VMM_EINVAL, "%s: `display` %lldx%lld is not a size", what,
			    (long long)c->display_width, (long long)c->display_height);
		if (c->display_unit[0] && strcmp(c->display_unit, "pt") != 0 &&
		    strcmp(c->display_unit, "px") != 0)
			return vmm_error_set(
			    err, VMM_EINVAL,
			    "%s: display `unit` \"%s\" is neither \"pt\" nor \"px\"", what,
			    c->display_unit);
	}
	json_t *r = json_object_get(o, "displayRefit");
	if (r && !json_is_boolean(r))
		return vmm_error_set(err, VMM_EINVAL, "%s: `displayRefit` must be true or false",
				     what);
	c->display_refit = r ? (json_is_true(r) ? 1 : 0) : -1;
	strcpy(c->disk_format, "raw");
	json_t *df = json_object_get(o, "diskFormat");
	if (json_is_string(df) && strcmp(json_string_value(df), "asif") == 0)
		strcpy(c->disk_format, "asif");
	json_t *cl = json_object_get(o, "cmdline");
	if (cl) {
		if (!json_is_string(cl))
			return vmm_error_set(err, VMM_EINVAL, "%s: `cmdline` must be a string",
					     what);
		c->cmdline = xstrdup(json_string_value(cl));
	}
	return 0;
}

int vmm_config_parse(vmm_config **out, const char *data, size_t len, const char *what,
		     vmm_error **err)
{
	json_t *j = NULL;
	if (vmm_json_parse(&j, data, len, what, err) < 0)
		return -1;
	if (!json_is_object(j)) {
		json_decref(j);
		return vmm_error_set(err, VMM_EINVAL, "%s: not a JSON object", what);
	}
	vmm_config *c = xcalloc(1, sizeof(*c));
	c->json = j;
	if (parse_fields(c, what, err) < 0) {
		vmm_config_free(c);
		return -1;
	}
	*out = c;
	return 0;
}

int vmm_config_load(vmm_config **out, const char *path, vmm_error **err)
{
	cleanup_free char *buf = NULL;
	size_t len = 0;
	if (vmm_read_file(path, VMM_CONFIG_MAX_BYTES, &buf, &len, err) < 0)
		return -1;
	cleanup_free char *what = xasprintf("`%s`", path);
	return vmm_config_parse(out, buf, len, what, err);
}

vmm_config *vmm_config_new_linux(void)
{
	vmm_config *c = xcalloc(1, sizeof(*c));
	c->json = json_object();
	c->version = 1;
	strcpy(c->os, "linux");
	snprintf(c->arch, sizeof(c->arch), "%s", vmm_host_arch());
	c->cpu_count_min = c->cpu_count = 4;
	c->memory_size_min = c->memory_size = 4ULL << 30;
	vmm_mac_random(c->mac);
	c->display_width = 1024;
	c->display_height = 768;
	c->display_refit = -1;
	strcpy(c->disk_format, "raw");
	vmm_config_to_json(c); /* fixes Tart's key order for a new file */
	return c;
}

json_t *vmm_config_to_json(vmm_config *c)
{
	json_t *o = c->json;
	json_object_set_new(o, "version", json_integer(c->version));
	json_object_set_new(o, "os", json_string(c->os));
	json_object_set_new(o, "arch", json_string(c->arch));
	json_object_set_new(o, "cpuCountMin", json_integer(c->cpu_count_min));
	json_object_set_new(o, "cpuCount", json_integer(c->cpu_count));
	json_object_set_new(o, "memorySizeMin", json_integer((json_int_t)c->memory_size_min));
	json_object_set_new(o, "memorySize", json_integer((json_int_t)c->memory_size));
	json_object_set_new(o, "macAddress", json_string(c->mac));
	json_t *d = json_object_get(o, "display");
	if (!json_is_object(d)) {
		d = json_object();
		json_object_set_new(o, "display", d);
	}
	json_object_set_new(d, "width", json_integer(c->display_width));
	json_object_set_new(d, "height", json_integer(c->display_height));
	if (c->display_unit[0])
		json_object_set_new(d, "unit", json_string(c->display_unit));
	else
		json_object_del(d, "unit");
	if (c->display_refit >= 0)
		json_object_set_new(o, "displayRefit", json_boolean(c->display_refit));
	else
		json_object_del(o, "displayRefit");
	json_object_set_new(o, "diskFormat", json_string(c->disk_format));
	if (c->cmdline)
		json_object_set_new(o, "cmdline", json_string(c->cmdline));
	else
		json_object_del(o, "cmdline");
	return o;
}

char *vmm_config_pretty(vmm_config *c)
{
	return vmm_json_pretty(vmm_config_to_json(c));
}

char *vmm_config_compact(vmm_config *c)
{
	return vmm_json_compact(vmm_config_to_json(c), 0);
}

int vmm_config_save(vmm_config *c, const char *path, vmm_error **err)
{
	cleanup_free char *text = vmm_config_pretty(c);
	return vmm_write_file_atomic(path, text, strlen(text), 0644, err);
}
