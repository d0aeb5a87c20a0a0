#include "registry/oci/manifest.h"
#include "common/json.h"
#include "common/util.h"

#include <string.h>

bool vmm_digest_is_valid(const char *s)
{
	if (!s || strncmp(s, "sha256:", 7) != 0)
		return false;
	s += 7;
	size_t n = 0;
	for (; s[n]; n++)
		if (!((s[n] >= '0' && s[n] <= '9') || (s[n] >= 'a' && s[n] <= 'f')))
			return false;
	return n == 64;
}

static void descriptor_clear(vmm_descriptor *d)
{
	free(d->media_type);
	json_decref(d->annotations);
}

void vmm_manifest_free(vmm_manifest *m)
{
	if (!m)
		return;
	descriptor_clear(&m->config);
	for (size_t i = 0; i < m->nlayers; i++)
		descriptor_clear(&m->layers[i]);
	free(m->layers);
	json_decref(m->annotations);
	free(m);
}

static int check_annotations(json_t *a, const char *what, vmm_error **err)
{
	if (!json_is_object(a))
		return vmm_error_set(err, VMM_EINVAL, "%s: \"annotations\" is not an object", what);
	for (void *it = json_object_iter(a); it; it = json_object_iter_next(a, it)) {
		if (!json_is_string(json_object_iter_value(it)))
			return vmm_error_set(err, VMM_EINVAL,
					     "%s: annotation \"%s\" is not a string", what,
					     json_object_iter_key(it));
	}
	return 0;
}

static int parse_descriptor(vmm_descriptor *d, json_t *o, const char *what, vmm_error **err)
{
	if (!json_is_object(o))
		return vmm_error_set(err, VMM_EINVAL, "%s is not an object", what);
	json_t *mt = json_object_get(o, "mediaType");
	json_t *dg = json_object_get(o, "digest");
	json_t *sz = json_object_get(o, "size");
	json_t *an = json_object_get(o, "annotations");
	if (!json_is_string(mt) || json_string_length(mt) == 0 || json_string_length(mt) > 255)
		return vmm_error_set(err, VMM_EINVAL, "%s: missing or invalid \"mediaType\"", what);
	if (!json_is_string(dg))
		return vmm_error_set(err, VMM_EINVAL, "%s: missing \"digest\"", what);
	if (!vmm_digest_is_valid(json_string_value(dg)))
		return vmm_error_set(err, VMM_EINVAL,
				     "%s: digest \"%.80s\" is not sha256:<64 lower-case hex>", what,
				     json_string_value(dg));
	if (!json_is_integer(sz) || json_integer_value(sz) < 0 ||
	    (uint64_t)json_integer_value(sz) > VMM_BLOB_MAX_SIZE)
		return vmm_error_set(err, VMM_EINVAL, "%s: missing or absurd \"size\"", what);
	if (an && check_annotations(an, what, err) < 0)
		return -1;
	d->media_type = xstrdup(json_string_value(mt));
	snprintf(d->digest, sizeof(d->digest), "%s", json_string_value(dg));
	d->size = (uint64_t)json_integer_value(sz);
	d->annotations = an ? json_incref(an) : json_object();
	return 0;
}

int vmm_manifest_parse(vmm_manifest **out, const char *data, size_t len, vmm_error **err)
{
	json_t *root = NULL;
	if (vmm_json_parse(&root, data, len, "manifest", err) < 0)
		return -1;
	json_auto_t *r = root;
	if (!json_is_object(r))
		return vmm_error_set(err, VMM_EINVAL, "manifest is not a JSON object");
	json_t *sv = json_object_get(r, "schemaVersion");
	if (!json_is_integer(sv) || json_integer_value(sv) != 2)
		return vmm_error_set(err, VMM_EINVAL, "manifest: \"schemaVersion\" is not 2");
	json_t *mt = json_object_get(r, "mediaType");
	if (mt) {
		const char *s = json_string_value(mt);
		if (!s)
			return vmm_error_set(err, VMM_EINVAL,
					     "manifest: \"mediaType\" is not a string");
		if (strstr(s, "index") || strstr(s, "manifest.list"))
			return vmm_error_set(err, VMM_EINVAL,
					     "manifest: got an image index (%s), not a VM image",
					     s);
		if (strcmp(s, VMM_MEDIA_OCI_MANIFEST_V1) != 0)
			return vmm_error_set(err, VMM_EINVAL,
					     "manifest: unsupported media type \"%.100s\"", s);
	}
	json_t *layers = json_object_get(r, "layers");
	if (!json_is_array(layers))
		return vmm_error_set(err, VMM_EINVAL, "manifest: missing \"layers\" array");
	if (json_array_size(layers) > VMM_MANIFEST_MAX_LAYERS)
		return vmm_error_set(err, VMM_EINVAL, "manifest: %zu layers is absurd",
				     json_array_size(layers));
	json_t *an = json_object_get(r, "annotations");
	if (an && check_annotations(an, "manifest", err) < 0)
		return -1;

	vmm_manifest *m = xcalloc(1, sizeof(*m));
	m->annotations = an ? json_incref(an) : json_object();
	if (parse_descriptor(&m->config, json_object_get(r, "config"), "manifest config", err) < 0)
		goto fail;
	size_t n = json_array_size(layers);
	m->layers = xcalloc(n ? n : 1, sizeof(*m->layers));
	for (size_t i = 0; i < n; i++) {
		char what[48];
		snprintf(what, sizeof(what), "manifest layer %zu", i);
		if (parse_descriptor(&m->layers[i], json_array_get(layers, i), what, err) < 0)
			goto fail;
		m->nlayers++;
	}
	*out = m;
	return 0;
fail:
	vmm_manifest_free(m);
	return -1;
}

long vmm_manifest_find(const vmm_manifest *m, const char *media_type)
{
	for (size_t i = 0; i < m->nlayers; i++)
		if (strcmp(m->layers[i].media_type, media_type) == 0)
			return (long)i;
	return -1;
}

static size_t count_type(const vmm_manifest *m, const char *media_type)
{
	size_t n = 0;
	for (size_t i = 0; i < m->nlayers; i++)
		n += strcmp(m->layers[i].media_type, media_type) == 0;
	return n;
}

int vmm_manifest_check_tart(vmm_manifest *m, vmm_error **err)
{
	if (count_type(m, VMM_MEDIA_TART_DISK_V1))
		return vmm_error_set(
		    err, VMM_EINVAL,
		    "Pulling OCI images with legacy disk media type " VMM_MEDIA_TART_DISK_V1
		    " is no longer supported, please re-push the image using a "
		    "current Tart version");
	static const char *const once[] = {VMM_MEDIA_TART_CONFIG, VMM_MEDIA_TART_NVRAM};
	for (size_t i = 0; i < ARRAY_SIZE(once); i++)
		if (count_type(m, once[i]) != 1)
			return vmm_error_set(err, VMM_EINVAL,
					     "manifest: expected exactly one %s layer, found %zu",
					     once[i], count_type(m, once[i]));
	if (count_type(m, VMM_MEDIA_TART_DISK_V2) == 0)
		return vmm_error_set(err, VMM_EINVAL, "manifest: no %s layer",
				     VMM_MEDIA_TART_DISK_V2);
	uint64_t offset = 0;
	for (size_t i = 0; i < m->nlayers; i++) {
		vmm_descriptor *d = &m->layers[i];
		if (strcmp(d->media_type, VMM_MEDIA_TART_DISK_V2) != 0)
			continue;
		const char *us =
		    json_string_value(json_object_get(d->annotations, VMM_ANN_UNCOMPRESSED_SIZE));
		const char *ud =
		    json_string_value(json_object_get(d->annotations, VMM_ANN_UNCOMPRESSED_DIGEST));
		if (!us)
			return vmm_error_set(err, VMM_EINVAL,
					     "layer `%s` is missing the %s annotation", d->digest,
					     VMM_ANN_UNCOMPRESSED_SIZE);
		if (!ud)
			return vmm_error_set(err, VMM_EINVAL,
					     "layer `%s` is missing the %s annotation", d->digest,
					     VMM_ANN_UNCOMPRESSED_DIGEST);
		if (vmm_parse_u64(us, &d->uncompressed_size) < 0)
			return vmm_error_set(
			    err, VMM_EINVAL,
			    "layer `%s`: uncompressed size \"%.40s\" is not a number", d->digest,
			    us);
		/* 0 would be a decoder without a bound, writing into the next layer */
		if (d->uncompressed_size == 0)
			return vmm_error_set(err, VMM_EINVAL,
					     "layer `%s`: an uncompressed size of 0 bytes is not a "
					     "disk layer",
					     d->digest);
		if (!vmm_digest_is_valid(ud))
			return vmm_error_set(err, VMM_EINVAL,
					     "layer `%s`: uncompressed digest \"%.80s\" is invalid",
					     d->digest, ud);
		/*
		 * An Apple LZ4 stream cannot expand more than 255-fold (an LZ4
		 * sequence of 255 bytes costs at least one byte): a bigger claim
		 * is a lie that would only make us reserve absurd space.
		 */
		if (d->uncompressed_size / 255 > d->size + 4096)
			return vmm_error_set(err, VMM_EINVAL,
					     "layer `%s`: %llu compressed bytes cannot hold %llu "
					     "uncompressed bytes",
					     d->digest, (unsigned long long)d->size,
					     (unsigned long long)d->uncompressed_size);
		snprintf(d->uncompressed_digest, sizeof(d->uncompressed_digest), "%s", ud);
		d->offset = offset;
		if (offset + d->uncompressed_size < offset)
			return vmm_error_set(err, VMM_EINVAL, "manifest: disk size overflows");
		offset += d->uncompressed_size;
		if (offset > VMM_DISK_MAX_BYTES)
			return vmm_error_set(err, VMM_EINVAL,
					     "manifest: its disk layers claim more than %llu bytes "
					     "(16 TiB), the most vmm accepts",
					     (unsigned long long)VMM_DISK_MAX_BYTES);
	}
	const char *ds = json_string_value(json_object_get(m->annotations, VMM_ANN_DISK_SIZE));
	uint64_t disk_size;
	if (ds && (vmm_parse_u64(ds, &disk_size) < 0 || disk_size != offset))
		return vmm_error_set(err, VMM_EINVAL,
				     "manifest: %s \"%.40s\" does not match the %llu bytes of its "
				     "disk layers",
				     VMM_ANN_DISK_SIZE, ds, (unsigned long long)offset);
	m->disk_size = offset;
	return 0;
}

/* --- building ------------------------------------------------------------ */

vmm_manifest *vmm_manifest_new(void)
{
	vmm_manifest *m = xcalloc(1, sizeof(*m));
	m->annotations = json_object();
	m->config.annotations = NULL;
	return m;
}

vmm_descriptor *vmm_manifest_add_layer(vmm_manifest *m, const char *media_type, const char *digest,
				       uint64_t size)
{
	m->layers = xrealloc(m->layers, (m->nlayers + 1) * sizeof(*m->layers));
	vmm_descriptor *d = &m->layers[m->nlayers++];
	memset(d, 0, sizeof(*d));
	d->media_type = xstrdup(media_type);
	snprintf(d->digest, sizeof(d->digest), "%s", digest);
	d->size = size;
	d->annotations = json_object();
	return d;
}

void vmm_descriptor_annotate(vmm_descriptor *d, const char *key, const char *value)
{
	if (!d->annotations)
		d->annotations = json_object();
	json_object_set_new(d->annotations, key, json_string(value));
}

void vmm_manifest_annotate(vmm_manifest *m, const char *key, const char *value)
{
	json_object_set_new(m->annotations, key, json_string(value));
}

static json_t *descriptor_json(const vmm_descriptor *d, bool with_annotations)
{
	json_t *o = json_object();
	if (with_annotations)
		json_object_set(o, "annotations", d->annotations ? d->annotations : json_object());
	json_object_set_new(o, "digest", json_string(d->digest));
	json_object_set_new(o, "mediaType", json_string(d->media_type));
	json_object_set_new(o, "size", json_integer((json_int_t)d->size));
	return o;
}

char *vmm_manifest_encode(const vmm_manifest *m)
{
	json_t *o = json_object();
	if (json_object_size(m->annotations))
		json_object_set(o, "annotations", m->annotations);
	/* Tart's config descriptor carries no annotations; layers always do */
	json_object_set_new(o, "config", descriptor_json(&m->config, false));
	json_t *layers = json_array();
	for (size_t i = 0; i < m->nlayers; i++)
		json_array_append_new(layers, descriptor_json(&m->layers[i], true));
	json_object_set_new(o, "layers", layers);
	json_object_set_new(o, "mediaType", json_string(VMM_MEDIA_OCI_MANIFEST_V1));
	json_object_set_new(o, "schemaVersion", json_integer(2));
	char *s = vmm_json_tart_sorted(o);
	json_decref(o);
	return s;
}

char *vmm_oci_config_encode(const char *arch, const char *os, const char *disk_format,
			    const char *const *labels, size_t nlabels)
{
	json_t *l = json_object();
	json_object_set_new(l, VMM_LABEL_DISK_FORMAT, json_string(disk_format));
	for (size_t i = 0; i < nlabels; i++) {
		const char *eq = strchr(labels[i], '=');
		cleanup_free char *key =
		    eq ? xstrndup(labels[i], (size_t)(eq - labels[i])) : xstrdup(labels[i]);
		if (!*key)
			continue;
		json_object_set_new(l, key, json_string(eq ? eq + 1 : ""));
	}
	json_t *o =
	    json_pack("{s:s, s:{s:o}, s:s}", "architecture", arch, "config", "Labels", l, "os", os);
	char *s = vmm_json_tart_sorted(o);
	json_decref(o);
	return s;
}
