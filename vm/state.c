#include "vm/state.h"
#include "common/format.h"
#include "common/util.h"
#include "vm/chunks.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* QEMU's default cap is 128 MiB/s; a save of a paused guest wants no cap at all. */
#define SAVE_BANDWIDTH (1ll << 40)
#define PIPE_BYTES (1 << 20)
#define FDNAME "vmm-state"

uint64_t vmm_state_ram_size(uint64_t memory)
{
	return (memory + (1ull << 20) - 1) & ~((1ull << 20) - 1);
}

int vmm_qmp_machine(vmm_qmp *q, const char *requested, char **out, vmm_error **err)
{
	cleanup_free char *base = xstrndup(requested, strcspn(requested, ","));
	json_t *list = NULL;
	if (vmm_qmp_execute(q, "query-machines", NULL, &list, err) < 0)
		return -1;
	size_t i;
	json_t *m;
	char *found = NULL;
	json_array_foreach(list, i, m)
	{
		const char *name = json_string_value(json_object_get(m, "name"));
		const char *alias = json_string_value(json_object_get(m, "alias"));
		if (!name)
			continue;
		if (alias && strcmp(alias, base) == 0) {
			free(found);
			found = xstrdup(name); /* an alias resolves to a versioned machine */
			break;
		}
		if (!found && strcmp(name, base) == 0)
			found = xstrdup(name);
	}
	json_decref(list);
	*out = found ? found : xstrdup(base);
	return 0;
}

static const char *machine_arg(const vmm_qemu_cmd *cmd)
{
	for (size_t i = 0; i + 1 < cmd->argc; i++)
		if (strcmp(cmd->argv[i], "-machine") == 0)
			return cmd->argv[i + 1];
	return "none";
}

int vmm_state_header_for(vmm_savefile_header **out, vmm_qmp *q, const vmm_qemu_cmd *cmd,
			 const vmm_config *c, vmm_error **err)
{
	vmm_savefile_header *h = vmm_savefile_header_new();
	if (vmm_qmp_machine(q, machine_arg(cmd), &h->machine, err) < 0) {
		vmm_savefile_header_free(h);
		return -1;
	}
	h->qemu_version = xstrdup(vmm_qmp_version(q));
	h->qemu_package = xstrdup(vmm_qmp_package(q));
	h->arch = xstrdup(cmd->arch);
	h->accel = xstrdup(cmd->accel);
	h->fingerprint = xstrdup(cmd->fingerprint);
	h->model = json_incref(cmd->model);
	h->cpus = c->cpu_count;
	h->memory = c->memory_size;
	h->created = vmm_format_iso8601(time(NULL));
	*out = h;
	return 0;
}

static char *mib(uint64_t bytes)
{
	if (bytes % (1ull << 20) == 0)
		return xasprintf("%llu MiB", (unsigned long long)(bytes >> 20));
	return xasprintf("%llu bytes", (unsigned long long)bytes);
}

/* The first option whose value differs between two models, as "`-x a` … vs `-x b`". */
static char *model_difference(const json_t *was, const json_t *now)
{
	size_t nw = json_array_size(was), nn = json_array_size(now);
	size_t i = 0;
	while (i < nw && i < nn &&
	       strcmp(json_string_value(json_array_get(was, i)),
		      json_string_value(json_array_get(now, i))) == 0)
		i++;
	/* show the option together with its value: back up to the option name */
	size_t start = i;
	const json_t *ref = i < nw ? was : now;
	if (start > 0 && start < json_array_size(ref)) {
		const char *s = json_string_value(json_array_get(ref, start));
		if (s[0] != '-')
			start--;
	}
	char *side[2];
	const json_t *arr[2] = {was, now};
	for (int k = 0; k < 2; k++) {
		size_t n = json_array_size(arr[k]);
		if (start >= n) {
			side[k] = xstrdup("nothing");
			continue;
		}
		const char *a = json_string_value(json_array_get(arr[k], start));
		const char *b =
		    start + 1 < n ? json_string_value(json_array_get(arr[k], start + 1)) : NULL;
		if (a[0] == '-' && b && b[0] != '-')
			side[k] = xasprintf("`%s %s`", a, b);
		else
			side[k] = xasprintf("`%s`", a);
	}
	char *msg = xasprintf("QEMU arguments %s in the state vs %s now", side[0], side[1]);
	free(side[0]);
	free(side[1]);
	return msg;
}

int vmm_state_check(const vmm_savefile_header *h, const vmm_qemu_cmd *cmd, const vmm_config *c,
		    const char *qemu_version, vmm_error **err)
{
	if (strcmp(h->arch, cmd->arch) != 0)
		return vmm_error_set(err, VMM_EINCOMPATIBLE,
				     "architecture %s in the state vs %s now", h->arch, cmd->arch);
	if (h->cpus != c->cpu_count)
		return vmm_error_set(err, VMM_EINCOMPATIBLE, "%lld CPUs in the state vs %lld now",
				     (long long)h->cpus, (long long)c->cpu_count);
	if (h->memory != c->memory_size) {
		cleanup_free char *a = mib(h->memory);
		cleanup_free char *b = mib(c->memory_size);
		return vmm_error_set(err, VMM_EINCOMPATIBLE, "memory %s in the state vs %s now", a,
				     b);
	}
	if (strcmp(h->accel, cmd->accel) != 0)
		return vmm_error_set(err, VMM_EINCOMPATIBLE,
				     "accelerator %s in the state vs %s now", h->accel, cmd->accel);
	if (qemu_version && strcmp(h->qemu_version, qemu_version) != 0)
		return vmm_error_set(err, VMM_EINCOMPATIBLE, "QEMU %s in the state vs QEMU %s now",
				     h->qemu_version, qemu_version);
	/* from the model: the fingerprint of vmm 0.1 had the network's backend in it */
	cleanup_free char *was =
	    h->model ? vmm_qemu_fingerprint(h->model) : xstrdup(h->fingerprint);
	if (strcmp(was, cmd->fingerprint) != 0) {
		json_t *a = vmm_qemu_model_guest(h->model), *b = vmm_qemu_model_guest(cmd->model);
		cleanup_free char *d = model_difference(a, b);
		const char *hint = vmm_qemu_model_hint(a, b); /* run's flags, if they differ */
		json_decref(a);
		json_decref(b);
		return vmm_error_set(err, VMM_EINCOMPATIBLE, "%s%s", d, hint);
	}
	return 0;
}

static int move_error(vmm_error **err, vmm_error **from)
{
	if (err) {
		vmm_error_free(*err);
		*err = steal_ptr(*from);
	}
	return -1;
}

static void set_pipe_size(int fd)
{
	fcntl(fd, F_SETPIPE_SZ, PIPE_BYTES); /* best effort: a smaller pipe only costs speed */
}

/* Poll query-migrate until it ends; 0 when completed, else an error with QEMU's reason. */
static int wait_migration(vmm_qmp *q, double timeout, vmm_error **err)
{
	double deadline = vmm_now() + timeout;
	for (;;) {
		json_t *r = NULL;
		if (vmm_qmp_execute(q, "query-migrate", NULL, &r, err) < 0)
			return -1;
		const char *st = json_string_value(json_object_get(r, "status"));
		if (st && strcmp(st, "completed") == 0) {
			json_decref(r);
			return 0;
		}
		if (st && (strcmp(st, "failed") == 0 || strcmp(st, "cancelled") == 0)) {
			const char *desc = json_string_value(json_object_get(r, "error-desc"));
			vmm_error_set(err, VMM_EGENERIC, "QEMU's migration %s%s%s", st,
				      desc ? ": " : "", desc ? desc : "");
			json_decref(r);
			return -1;
		}
		json_decref(r);
		if (vmm_now() > deadline)
			return vmm_error_set(err, VMM_ETIMEOUT,
					     "QEMU's migration did not finish within %.0f s",
					     timeout);
		usleep(10000);
	}
}

static int set_caps(vmm_qmp *q, bool ignore_shared, vmm_error **err)
{
	json_t *a = json_pack("{s:[{s:s,s:b}]}", "capabilities", "capability", "x-ignore-shared",
			      "state", ignore_shared);
	return vmm_qmp_execute(q, "migrate-set-capabilities", a, NULL, err);
}

/* A pipe QEMU writes to (or reads from) as `fd:vmm-state`; *ours is the other end. */
static int pass_pipe(vmm_qmp *q, bool qemu_writes, int *ours, vmm_error **err)
{
	int p[2];
	if (pipe2(p, O_CLOEXEC) < 0)
		return vmm_error_errno(err, errno, "pipe");
	set_pipe_size(p[1]);
	int theirs = qemu_writes ? p[1] : p[0];
	*ours = qemu_writes ? p[0] : p[1];
	int rc =
	    vmm_qmp_execute_fd(q, "getfd", json_pack("{s:s}", "fdname", FDNAME), theirs, NULL, err);
	close(theirs);
	if (rc < 0) {
		close(*ours);
		*ours = -1;
	}
	return rc;
}

/* vmm 0.1's format: QEMU's whole stream into one zstd frame (kept for tests). */
static int save_format1(vmm_qmp *q, const char *path, vmm_savefile_header *h,
			vmm_savefile_stats *stats, vmm_error **err)
{
	cleanup_vmm_savefile_writer vmm_savefile_writer *w = NULL;
	if (set_caps(q, false, err) < 0 || vmm_savefile_writer_open(&w, path, -3, 0, err) < 0)
		return -1;
	cleanup_close int rd = -1;
	if (pass_pipe(q, true, &rd, err) < 0)
		return -1;
	if (vmm_qmp_execute(q, "migrate", json_pack("{s:s}", "uri", "fd:" FDNAME), NULL, err) < 0)
		return -1;
	if (vmm_savefile_writer_pump(w, rd, err) < 0) {
		vmm_qmp_execute(q, "migrate_cancel", NULL, NULL, NULL);
		return -1;
	}
	double timeout = 60 + (double)h->memory / (64 << 20);
	if (wait_migration(q, timeout, err) < 0)
		return -1;
	return vmm_savefile_writer_commit(w, h, stats, err);
}

static int save_chunks(vmm_qmp *q, const char *path, vmm_savefile_header *h,
		       const vmm_state_save_opts *o, vmm_savefile_stats *stats, vmm_error **err)
{
	/*
	 * After a resume, into the file resumed from (its unchanged chunks stay,
	 * vm/chunks.h); else a new file.  Either is renamed to path at the end.
	 */
	bool in_place = o->base && o->base_fd >= 0 && o->ram_fd >= 0 &&
			vmm_chunk_base_in_place_ok(o->base, VMM_STATE_CODEC);
	cleanup_free char *tmp = in_place ? xstrdup(o->base_path) : xasprintf("%s.tmp", path);
	cleanup_free char *what = xasprintf("`%s`", tmp);
	cleanup_close int own = -1;
	int fd = o->base_fd;
	if (!in_place) {
		unlink(tmp);
		fd = own = open(tmp, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
		if (fd < 0)
			return vmm_error_errno(err, errno, "create `%s`", tmp);
	}
	vmm_chunk_writer *w = NULL;
	int rc = -1;
	cleanup_close int rd = -1;
	bool migrating = false;
	int threads = vmm_chunks_threads();
	int orc = in_place ? vmm_chunk_writer_open_in_place(&w, fd, o->base, what, VMM_STATE_LEVEL,
							    threads, err)
			   : vmm_chunk_writer_open(&w, fd, what, VMM_STATE_CODEC, VMM_STATE_LEVEL,
						   threads, err);
	if (orc < 0)
		goto out;
	if (!in_place)
		vmm_chunk_writer_set_base(w, o->base);
	/* the RAM does not change once QEMU is stopped: compress it beside QEMU's save */
	if (o->ram_fd >= 0 && vmm_chunk_writer_add_memory(w, o->ram_fd, o->ram_size, err) < 0)
		goto out;
	if (set_caps(q, o->ram_fd >= 0, err) < 0 || pass_pipe(q, true, &rd, err) < 0 ||
	    vmm_qmp_execute(q, "migrate", json_pack("{s:s}", "uri", "fd:" FDNAME), NULL, err) < 0)
		goto out;
	migrating = true;
	if (vmm_chunk_writer_pump(w, rd, err) < 0)
		goto out;
	double timeout = 60 + (double)h->memory / (64 << 20); /* generous: ≥ 64 MiB/s */
	if (wait_migration(q, timeout, err) < 0)
		goto out;
	migrating = false;
	if (vmm_chunk_writer_finish(w, h, err) < 0 ||
	    vmm_savefile_publish(fd, tmp, path, h, err) < 0)
		goto out;
	if (stats)
		vmm_chunk_writer_counts(w, &stats->chunks_compressed, &stats->chunks_reused);
	rc = 0;
out:
	if (migrating)
		vmm_qmp_execute(q, "migrate_cancel", NULL, NULL, NULL);
	vmm_chunk_writer_free(w);
	if (rc < 0 && !in_place)
		unlink(tmp);
	if (rc < 0 && in_place && o->base_spoiled)
		*o->base_spoiled = true; /* neither the old state nor a new one */
	return rc;
}

int vmm_state_save(vmm_qmp *q, const char *path, vmm_savefile_header *h,
		   const vmm_state_save_opts *o, vmm_savefile_stats *stats, vmm_error **err)
{
	double start = vmm_now();
	json_t *st = NULL;
	if (vmm_qmp_execute(q, "query-status", NULL, &st, err) < 0)
		return -1;
	bool was_running = json_is_true(json_object_get(st, "running"));
	json_decref(st);
	if (vmm_qmp_execute(q, "stop", NULL, NULL, err) < 0)
		return -1;
	int rc = -1;
	if (vmm_qmp_execute(q, "migrate-set-parameters",
			    json_pack("{s:I}", "max-bandwidth", (json_int_t)SAVE_BANDWIDTH), NULL,
			    err) == 0) {
		if (o->format == VMM_SAVEFILE_FORMAT_STREAM)
			rc = save_format1(q, path, h, stats, err);
		else
			rc = save_chunks(q, path, h, o, stats, err);
	}
	if (rc < 0) {
		if (was_running)
			vmm_qmp_execute(q, "cont", NULL, NULL, NULL);
		return -1;
	}
	if (stats) {
		stats->raw_bytes = h->raw_size;
		stats->compressed_bytes = h->compressed_size;
		stats->seconds = vmm_now() - start;
		stats->pause = 0;
	}
	return 0;
}

struct vmm_state_load {
	char *path; /* owned */
	char *what; /* owned */
	const vmm_savefile_header *h;
	int fd;
	vmm_chunk_index *x;
	vmm_chunk_fill *fill;
	bool lent_x; /* the fill frees x */
	double start;
};

void vmm_state_load_free(vmm_state_load *l)
{
	if (!l)
		return;
	if (l->fill)
		vmm_chunk_fill_wait(l->fill, NULL, NULL);
	if (!l->lent_x)
		vmm_chunk_index_free(l->x);
	if (l->fd >= 0)
		close(l->fd);
	free(l->path);
	free(l->what);
	free(l);
}

int vmm_state_load_begin(vmm_state_load **out, const char *path, const vmm_savefile_header *h,
			 int ram_fd, vmm_error **err)
{
	vmm_state_load *l = xcalloc(1, sizeof(*l));
	l->path = xstrdup(path);
	l->what = xasprintf("state `%s`", path);
	l->h = h;
	l->start = vmm_now();
	l->fd = open(path, O_RDONLY | O_CLOEXEC);
	if (l->fd < 0) {
		vmm_error_errno(err, errno, "open `%s`", path);
		goto fail;
	}
	if (h->format == VMM_SAVEFILE_FORMAT) {
		if (vmm_chunk_index_load(&l->x, l->fd, h, l->what, err) < 0)
			goto fail;
		if (h->kind == VMM_SAVEFILE_KIND_MEMORY &&
		    vmm_chunk_fill_start(&l->fill, l->fd, h, l->x, ram_fd, vmm_chunks_threads(),
					 l->what, err) < 0)
			goto fail;
	}
	*out = l;
	return 0;
fail:
	vmm_state_load_free(l);
	return -1;
}

vmm_chunk_fill *vmm_state_load_take_fill(vmm_state_load *l)
{
	vmm_chunk_fill *f = steal_ptr(l->fill);
	if (f) {
		vmm_chunk_fill_adopt_index(f, l->x);
		l->lent_x = true;
	}
	return f;
}

int vmm_state_load_finish(vmm_state_load *l, vmm_qmp *q, vmm_savefile_stats *stats,
			  vmm_chunk_base **base, vmm_error **err)
{
	vmm_chunk_base *b = NULL;
	const vmm_savefile_header *h = l->h;
	int rc = -1;
	cleanup_close int wr = -1;
	cleanup_vmm_error vmm_error *stream_err = NULL;
	if (l->fill) {
		int frc = vmm_chunk_fill_wait(l->fill, &b, err);
		l->fill = NULL;
		if (frc < 0)
			goto out;
	}
	bool memory = h->format == VMM_SAVEFILE_FORMAT && h->kind == VMM_SAVEFILE_KIND_MEMORY;
	if (set_caps(q, memory, err) < 0 || pass_pipe(q, false, &wr, err) < 0 ||
	    vmm_qmp_execute(q, "migrate-incoming", json_pack("{s:s}", "uri", "fd:" FDNAME), NULL,
			    err) < 0)
		goto out;
	int src = h->format == VMM_SAVEFILE_FORMAT
		      ? vmm_chunk_stream_out(l->fd, h, l->x, wr, vmm_chunks_threads(), l->what,
					     &stream_err)
		      : vmm_savefile_restore(l->path, h, wr, NULL, &stream_err);
	close(wr);
	wr = -1;
	if (src < 0 && vmm_error_code(stream_err) == VMM_EFORMAT) {
		/* our own check failed: that is the cause, whatever QEMU made of it */
		move_error(err, &stream_err);
		goto out;
	}
	double timeout = 60 + (double)h->memory / (64 << 20);
	if (wait_migration(q, timeout, err) < 0) {
		vmm_error_wrap(err, "QEMU could not load the state");
		goto out;
	}
	if (src < 0) {
		move_error(err, &stream_err);
		goto out;
	}
	if (stats) {
		stats->raw_bytes = h->raw_size;
		stats->compressed_bytes = h->compressed_size;
		stats->seconds = vmm_now() - l->start;
		stats->pause = 0;
	}
	if (base)
		*base = steal_ptr(b);
	rc = 0;
out:
	vmm_chunk_base_free(b);
	vmm_state_load_free(l);
	return rc;
}
