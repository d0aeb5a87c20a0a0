#include "vm/state.h"
#include "common/format.h"
#include "common/util.h"

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
	cleanup_free char *was = h->model ? vmm_qemu_fingerprint(h->model) : xstrdup(h->fingerprint);
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

int vmm_state_save(vmm_qmp *q, const char *path, vmm_savefile_header *h, vmm_savefile_stats *stats,
		   vmm_error **err)
{
	json_t *st = NULL;
	if (vmm_qmp_execute(q, "query-status", NULL, &st, err) < 0)
		return -1;
	bool was_running = json_is_true(json_object_get(st, "running"));
	json_decref(st);
	if (vmm_qmp_execute(q, "stop", NULL, NULL, err) < 0)
		return -1;
	int rc = -1;
	int p[2] = {-1, -1};
	bool fd_passed = false, migrating = false;
	cleanup_vmm_savefile_writer vmm_savefile_writer *w = NULL;
	if (vmm_qmp_execute(q, "migrate-set-parameters",
			    json_pack("{s:I}", "max-bandwidth", (json_int_t)SAVE_BANDWIDTH), NULL,
			    err) < 0)
		goto out;
	if (pipe2(p, O_CLOEXEC) < 0) {
		vmm_error_errno(err, errno, "pipe");
		goto out;
	}
	set_pipe_size(p[1]);
	if (vmm_qmp_execute_fd(q, "getfd", json_pack("{s:s}", "fdname", FDNAME), p[1], NULL, err) <
	    0)
		goto out;
	fd_passed = true;
	close(p[1]);
	p[1] = -1;
	/* VMM_STATE_ZSTD_LEVEL: a tuning knob for benchmarks (e.g. 3 for smaller, slower states) */
	const char *lv = getenv("VMM_STATE_ZSTD_LEVEL");
	int level = lv && *lv ? atoi(lv) : VMM_STATE_ZSTD_LEVEL;
	if (vmm_savefile_writer_open(&w, path, level, 0, err) < 0)
		goto out;
	if (vmm_qmp_execute(q, "migrate", json_pack("{s:s}", "uri", "fd:" FDNAME), NULL, err) < 0)
		goto out;
	migrating = true; /* QEMU owns the descriptor now and closes it when done */
	if (vmm_savefile_writer_pump(w, p[0], err) < 0) {
		vmm_qmp_execute(q, "migrate_cancel", NULL, NULL, NULL);
		goto out;
	}
	double timeout = 60 + (double)h->memory / (64 << 20); /* generous: ≥ 64 MiB/s */
	if (wait_migration(q, timeout, err) < 0)
		goto out;
	if (vmm_savefile_writer_commit(w, h, stats, err) < 0)
		goto out;
	rc = 0;
out:
	if (p[0] >= 0)
		close(p[0]);
	if (p[1] >= 0)
		close(p[1]);
	if (fd_passed && !migrating)
		vmm_qmp_execute(q, "closefd", json_pack("{s:s}", "fdname", FDNAME), NULL, NULL);
	if (rc < 0 && was_running)
		vmm_qmp_execute(q, "cont", NULL, NULL, NULL);
	return rc;
}

int vmm_state_load(vmm_qmp *q, const char *path, const vmm_savefile_header *h,
		   vmm_savefile_stats *stats, vmm_error **err)
{
	int p[2];
	if (pipe2(p, O_CLOEXEC) < 0)
		return vmm_error_errno(err, errno, "pipe");
	set_pipe_size(p[1]);
	cleanup_close int rd = p[0];
	cleanup_close int wr = p[1];
	if (vmm_qmp_execute_fd(q, "getfd", json_pack("{s:s}", "fdname", FDNAME), rd, NULL, err) < 0)
		return -1;
	close(rd);
	rd = -1;
	if (vmm_qmp_execute(q, "migrate-incoming", json_pack("{s:s}", "uri", "fd:" FDNAME), NULL,
			    err) < 0)
		return -1;
	cleanup_vmm_error vmm_error *stream_err = NULL;
	int src = vmm_savefile_restore(path, h, wr, stats, &stream_err);
	close(wr);
	wr = -1;
	if (src < 0 && vmm_error_code(stream_err) == VMM_EFORMAT) {
		/* our own check failed: that is the cause, whatever QEMU made of it */
		return move_error(err, &stream_err);
	}
	double timeout = 60 + (double)h->memory / (64 << 20);
	if (wait_migration(q, timeout, err) < 0)
		return vmm_error_wrap(err, "QEMU could not load the state");
	if (src < 0)
		return move_error(err, &stream_err);
	return 0;
}
