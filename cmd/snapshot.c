#include "cmd/cmd.h"
#include "cmd/transfer_ui.h"
#include "registry/pull.h"
#include "registry/oci/reference.h"
#include "common/format.h"
#include "common/json.h"
#include "common/util.h"
#include "vm/bundle.h"
#include "vm/snapshot.h"
#include "vm/transfer.h"

#include <stdio.h>
#include <string.h>

typedef struct pull_args {
	cmd_pull_args pull;
} pull_args;

static const vmm_opt pull_opts[] = {
    CMD_PULL_OPTS(pull_args, pull, "Layers downloaded at once (default 4)"),
    {0},
};

typedef struct list_args {
	const char *format;
} list_args;

static const vmm_opt list_opts[] = {
    {VMM_STRING(list_args, format, "format", "text|json", "Output format (default text)")},
    {0},
};

static const vmm_cmd_spec create_spec = {"snapshot create", "VM SNAP",
					 "Snapshot a VM: its disk, and its memory if it runs or is "
					 "suspended (a running VM pauses only meanwhile)",
					 NULL};
static const vmm_cmd_spec list_spec = {"snapshot list", "VM [--format text|json]",
				       "List a VM's snapshots", list_opts};
static const vmm_cmd_spec restore_spec = {"snapshot restore", "VM SNAP",
					  "Put a VM back to a snapshot (the snapshot stays)", NULL};
static const vmm_cmd_spec delete_spec = {"snapshot delete", "VM SNAP", "Delete a snapshot", NULL};
static const vmm_cmd_spec export_spec = {"snapshot export", "VM SNAP FILE",
					 "Write a snapshot to a portable archive (- for stdout)",
					 NULL};
static const vmm_cmd_spec import_spec = {"snapshot import", "FILE VM SNAP",
					 "Add a snapshot to a VM from a portable archive", NULL};

static const vmm_cmd_spec push_spec = {"snapshot push", "VM SNAP REF... [options]",
				       "Push a snapshot to registry references (as `vmm push "
				       "VM@SNAP REF...`)",
				       cmd_push_opts};

static const vmm_cmd_spec pull_spec = {"snapshot pull",
				       "REF VM SNAP [--insecure] [--concurrency N]",
				       "Pull an image from a registry and add it to a VM as a "
				       "snapshot",
				       pull_opts};

/* Open the VM, naming it in errors; NULL after printing the error (exit code in *rc). */
static vmm_bundle *open_vm(const char *name, int *rc)
{
	vmm_bundle *b = NULL;
	cleanup_vmm_error vmm_error *err = NULL;
	if (vmm_bundle_open(&b, cmd_home(), name, &err) < 0) {
		*rc = vmm_fail(err);
		return NULL;
	}
	return b;
}

static int snap_create(int argc, char **argv)
{
	VMM_ARGS(a, create_spec, argc, argv, NULL);
	int rc = 0;
	cleanup_vmm_bundle vmm_bundle *b = open_vm(a.pos[0], &rc);
	if (!b)
		return rc;
	cleanup_vmm_error vmm_error *err = NULL;
	int r = vmm_snapshot_create(cmd_home(), b->dir, b->name, a.pos[1], NULL, &err);
	return r < 0 ? vmm_fail(err) : 0;
}

/*
 * Text:
 *   Name   Created        Size  Memory
 *   before 2 minutes ago  0.412 no
 * JSON: [{Name, Created (ISO-8601), Size (GB allocated, string "%.3f"), Memory (bool)}]
 */
static int snap_list(int argc, char **argv)
{
	list_args o = {0};
	VMM_ARGS(a, list_spec, argc, argv, &o);
	const char *format = o.format;
	if (format && strcmp(format, "text") != 0 && strcmp(format, "json") != 0)
		return vmm_usage_error(&list_spec, "'%s' is not a valid <format>", format);
	int rc = 0;
	cleanup_vmm_bundle vmm_bundle *b = open_vm(a.pos[0], &rc);
	if (!b)
		return rc;
	cleanup_vmm_error vmm_error *err = NULL;
	vmm_snapshot_info *v = NULL;
	size_t n = 0;
	if (vmm_snapshot_list(b->dir, &v, &n, &err) < 0)
		return vmm_fail(err);
	if (format && strcmp(format, "json") == 0) {
		json_t *arr = json_array();
		for (size_t i = 0; i < n; i++) {
			cleanup_free char *created = vmm_format_iso8601(v[i].created);
			cleanup_free char *size = xasprintf("%.3f", (double)v[i].allocated / 1e9);
			json_array_append_new(arr, json_pack("{s:s, s:s, s:s, s:b}", "Name",
							     v[i].name, "Created", created, "Size",
							     size, "Memory", v[i].has_memory));
		}
		cleanup_free char *s = vmm_json_pretty(arr);
		printf("%s\n", s);
		json_decref(arr);
	} else {
		static const char *const headers[] = {"Name", "Created", "Size", "Memory"};
		char **cells = xcalloc(n * 4 + 1, sizeof(char *));
		time_t now = time(NULL);
		for (size_t i = 0; i < n; i++) {
			cells[i * 4] = xstrdup(v[i].name);
			cells[i * 4 + 1] = vmm_format_relative(v[i].created, now);
			cells[i * 4 + 2] = xasprintf("%.3f", (double)v[i].allocated / 1e9);
			cells[i * 4 + 3] = xstrdup(v[i].has_memory ? "yes" : "no");
		}
		cleanup_free char *t =
		    n ? vmm_format_table(headers, 4, (const char *const *)cells, n) : xstrdup("");
		printf("%s\n", t);
		vmm_strv_free(cells, n * 4);
	}
	vmm_snapshot_infos_free(v, n);
	return 0;
}

/* restore and delete: open VM, apply op to SNAP. */
static int vm_snap_op(const vmm_cmd_spec *spec, int argc, char **argv,
		      int (*op)(const char *dir, const char *name, const char *snap,
				vmm_error **err))
{
	VMM_ARGS(a, *spec, argc, argv, NULL);
	int rc = 0;
	cleanup_vmm_bundle vmm_bundle *b = open_vm(a.pos[0], &rc);
	if (!b)
		return rc;
	cleanup_vmm_error vmm_error *err = NULL;
	int r = op(b->dir, b->name, a.pos[1], &err);
	return r < 0 ? vmm_fail(err) : 0;
}

static int restore_in_home(const char *dir, const char *name, const char *snap, vmm_error **err)
{
	return vmm_snapshot_restore(cmd_home(), dir, name, snap, err);
}

static int snap_restore(int argc, char **argv)
{
	return vm_snap_op(&restore_spec, argc, argv, restore_in_home);
}

static int snap_delete(int argc, char **argv)
{
	return vm_snap_op(&delete_spec, argc, argv, vmm_snapshot_delete);
}

static int snap_export(int argc, char **argv)
{
	VMM_ARGS(a, export_spec, argc, argv, NULL);
	cleanup_vmm_error vmm_error *err = NULL;
	if (vmm_snapshot_check_name(a.pos[1], &err) < 0)
		return vmm_fail(err);
	cleanup_free char *label = xasprintf("%s@%s", a.pos[0], a.pos[1]);
	cleanup_free char *dir = NULL;
	if (vmm_snapshot_source_dir(cmd_home(), label, &dir, &err) < 0)
		return vmm_fail(err);
	fprintf(stderr, "exporting...\n");
	int r = vmm_vm_export(dir, label, a.pos[2], &err);
	return r < 0 ? vmm_fail(err) : 0;
}

static int snap_import(int argc, char **argv)
{
	VMM_ARGS(a, import_spec, argc, argv, NULL);
	int rc = 0;
	cleanup_vmm_bundle vmm_bundle *b = open_vm(a.pos[1], &rc);
	if (!b)
		return rc;
	cleanup_vmm_error vmm_error *err = NULL;
	fprintf(stderr, "importing...\n");
	int r = vmm_snapshot_import(b->dir, b->name, a.pos[2], a.pos[0], &err);
	return r < 0 ? vmm_fail(err) : 0;
}

/* `snapshot push VM SNAP REF... [push options]` is `push VM@SNAP REF...`. */
static int snap_push(int argc, char **argv)
{
	cmd_push_args o = {0};
	VMM_ARGS(a, push_spec, argc, argv, &o);
	cleanup_vmm_error vmm_error *err = NULL;
	if (vmm_snapshot_check_name(a.pos[1], &err) < 0)
		return vmm_fail(err);
	cleanup_free char *src = xasprintf("%s@%s", a.pos[0], a.pos[1]);
	return cmd_push_to(&push_spec, &o, src, a.pos + 2, a.npos - 2);
}

/*
 * Output (stdout): pull's lines, then nothing; the image stays in the cache
 * too, so pulling the same snapshot elsewhere or again is free.
 */
static int snap_pull(int argc, char **argv)
{
	pull_args o = {0};
	VMM_ARGS(a, pull_spec, argc, argv, &o);
	cleanup_vmm_error vmm_error *err = NULL;
	if (vmm_snapshot_check_name(a.pos[2], &err) < 0)
		return vmm_fail(err);
	int rc = 0;
	cleanup_vmm_bundle vmm_bundle *b = open_vm(a.pos[1], &rc);
	if (!b)
		return rc;
	cleanup_free char *dest = vmm_snapshot_dir(b->dir, a.pos[2]);
	if (path_exists(dest)) {
		vmm_error_set(&err, VMM_EEXISTS, "VM \"%s\" already has a snapshot \"%s\"", b->name,
			      a.pos[2]);
		return vmm_fail(err);
	}
	cleanup_vmm_reference vmm_reference *ref = NULL;
	if (vmm_reference_parse(&ref, a.pos[0], &err) < 0)
		return vmm_fail(err);
	cleanup_free char *dir = NULL;
	int r = cmd_pull_ref(&pull_spec, &o.pull, ref, &dir, &err);
	if (r > 0)
		return r;
	if (r < 0 || vmm_snapshot_from_dir(b->dir, b->name, a.pos[2], dir, &err) < 0)
		return vmm_fail(err);
	return 0;
}

static const struct {
	const char *name;
	int (*fn)(int, char **);
	const char *summary;
} subs[] = {
    {"create", snap_create, "Snapshot a VM"},
    {"list", snap_list, "List a VM's snapshots"},
    {"restore", snap_restore, "Put a VM back to a snapshot"},
    {"delete", snap_delete, "Delete a snapshot"},
    {"export", snap_export, "Write a snapshot to a portable archive"},
    {"import", snap_import, "Add a snapshot from a portable archive"},
    {"push", snap_push, "Push a snapshot to a registry (as push VM@SNAP)"},
    {"pull", snap_pull, "Pull an image into a VM as a snapshot"},
};

int cmd_snapshot(int argc, char **argv)
{
	if (argc >= 2) {
		for (size_t i = 0; i < ARRAY_SIZE(subs); i++)
			if (strcmp(argv[1], subs[i].name) == 0)
				return subs[i].fn(argc - 1, argv + 1);
	}
	FILE *f = argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)
		      ? stdout
		      : stderr;
	if (f == stderr)
		vmm_error_print("snapshot needs a subcommand");
	fprintf(f, "Usage: vmm snapshot <subcommand> ...\n\nSubcommands:\n");
	for (size_t i = 0; i < ARRAY_SIZE(subs); i++)
		fprintf(f, "  %-8s %s\n", subs[i].name, subs[i].summary);
	fprintf(f, "\nA snapshot can be cloned into a new VM with `vmm clone VM@SNAP NEW`.\n");
	return f == stdout ? 0 : 64;
}
