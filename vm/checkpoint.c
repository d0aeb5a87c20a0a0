#include "vm/checkpoint.h"
#include "common/util.h"
#include "storage/copy.h"
#include "vm/bundle.h"
#include "vm/chunks.h"
#include "vm/cow.h"
#include "vm/state.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <spawn.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <linux/fs.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/wait.h>

#define FDNAME "vmm-ckpt"
#define NODE "vmm-ckpt" /* the backup target's node and job */
#define SCRATCH ".disk.img.ckpt.qcow2"
#define SCRATCH_FDSET 900 /* its fd set in QEMU (the bundle's files use 1 and up) */
#define UFFD_FDSET 901	  /* /dev/userfaultfd, lent to an unprivileged QEMU */

extern char **environ;

typedef enum { SAVING, FINISHING } stage;

struct vmm_ckpt {
	char *dest;		/* owned */
	char *state_tmp;	/* owned: dest/state.vmmsave.tmp */
	char *state_path;	/* owned */
	char *disk_src;		/* owned */
	char *disk_dst;		/* owned */
	char *scratch;		/* owned: the qcow2 QEMU's backup writes (no reflinks) */
	char *efi_src;		/* owned: NULL without UEFI */
	char *efi_dst;		/* owned */
	vmm_savefile_header *h; /* owned */
	vmm_chunk_writer *w;	/* owned */
	vmm_cow *cow;		/* owned: vmm protects the RAM (vm/cow.h); QEMU saves the devices */
	uint64_t *cow_list;	/* owned: its chunks to save, for the writer once the guest runs */
	size_t cow_n;
	int ram_fd; /* borrowed */
	uint64_t ram_size;
	int state_fd, rd, evfd;
	stage st;
	bool reflink, node_added, job_started, job_done, migrating, migrated, was_running,
	    fd_passed;
	bool job_unleashed;
	bool paused_by_us, resumed;
	bool fdset_added; /* the scratch file is in QEMU's fd set SCRATCH_FDSET */
	bool uffd_lent;	  /* QEMU holds /dev/userfaultfd in its fd set UFFD_FDSET */
	bool background;  /* it ran and QEMU write-protects its RAM: it runs on by itself */
	char *job_error;  /* owned: why the backup failed */
	double stop_ts, resume_ts, start;
	pthread_mutex_t mu;
	pthread_t pump, fin;
	bool pump_started, pump_done, fin_started, fin_done;
	int pump_rc, fin_rc;
	vmm_error *pump_err, *fin_err; /* owned */
};

static void poke(vmm_ckpt *k)
{
	uint64_t one = 1;
	(void)!write(k->evfd, &one, sizeof(one));
}

int vmm_ckpt_fd(const vmm_ckpt *k)
{
	return k->evfd;
}

static double event_time(const json_t *ev)
{
	const json_t *t = json_object_get(ev, "timestamp");
	return (double)json_integer_value(json_object_get(t, "seconds")) +
	       (double)json_integer_value(json_object_get(t, "microseconds")) / 1e6;
}

void vmm_ckpt_event(vmm_ckpt *k, const json_t *ev)
{
	const char *name = json_string_value(json_object_get(ev, "event"));
	if (!name)
		return;
	if (strcmp(name, "STOP") == 0 && k->stop_ts == 0) {
		k->stop_ts = event_time(ev);
	} else if (strcmp(name, "RESUME") == 0 && k->stop_ts > 0 && !k->resumed) {
		k->resume_ts = event_time(ev);
		k->resumed = true;
		poke(k); /* the backup may go at full speed */
	} else if ((strcmp(name, "BLOCK_JOB_COMPLETED") == 0 ||
		    strcmp(name, "BLOCK_JOB_CANCELLED") == 0) &&
		   k->job_started && !k->job_done) {
		const json_t *d = json_object_get(ev, "data");
		const char *dev = json_string_value(json_object_get(d, "device"));
		if (!dev || strcmp(dev, NODE) != 0)
			return;
		k->job_done = true;
		const char *e = json_string_value(json_object_get(d, "error"));
		if (e || strcmp(name, "BLOCK_JOB_CANCELLED") == 0)
			k->job_error = xstrdup(e ? e : "cancelled");
		poke(k);
	}
}

/* Run a helper program (qemu-img) to its end; its last line of stderr on failure. */
static int run_tool(const char *const argv[], vmm_error **err)
{
	int p[2];
	if (pipe2(p, O_CLOEXEC) < 0)
		return vmm_error_errno(err, errno, "pipe");
	posix_spawn_file_actions_t fa;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
	posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
	posix_spawn_file_actions_adddup2(&fa, p[1], 2);
	pid_t pid;
	/* posix_spawn's argv is not const for historical reasons; it does not write it */
	int rc = posix_spawn(&pid, argv[0], &fa, NULL, (char *const *)argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	close(p[1]);
	if (rc != 0) {
		close(p[0]);
		return vmm_error_errno(err, rc, "start `%s`", argv[0]);
	}
	char msg[512] = "";
	size_t len = 0;
	for (;;) {
		char buf[512];
		ssize_t n = read(p[0], buf, sizeof(buf));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		for (ssize_t i = 0; i < n; i++) {
			if (buf[i] == '\n' && len) {
				msg[len] = '\0';
				len = 0;
			} else if (buf[i] != '\n' && len + 1 < sizeof(msg)) {
				msg[len++] = buf[i];
			}
		}
	}
	if (len)
		msg[len] = '\0';
	close(p[0]);
	int st;
	while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
		;
	if (WIFEXITED(st) && WEXITSTATUS(st) == 0)
		return 0;
	return vmm_error_set(err, VMM_EGENERIC, "%s failed%s%s", argv[0], msg[0] ? ": " : "", msg);
}

/*
 * The rest of QEMU's stream, read and dropped.  A background snapshot must
 * end as QEMU sees it: QEMU 7.2 lifts the write protection of the guest's
 * RAM only when the migration completes, so a stream broken after that
 * leaves the guest stuck on its next write.
 */
static void drain(int fd)
{
	char sink[1 << 16];
	ssize_t n;
	while ((n = read(fd, sink, sizeof(sink))) > 0 || (n < 0 && errno == EINTR))
		;
}

static void *pump_main(void *arg)
{
	vmm_ckpt *k = arg;
	vmm_error *e = NULL;
	int rc = vmm_chunk_writer_pump(k->w, k->rd, &e);
	if (rc < 0 && k->background)
		drain(k->rd);
	pthread_mutex_lock(&k->mu);
	k->pump_rc = rc;
	k->pump_err = e;
	k->pump_done = true;
	pthread_mutex_unlock(&k->mu);
	poke(k);
	return NULL;
}

static int fsync_path(const char *path, vmm_error **err)
{
	cleanup_close int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || fsync(fd) < 0)
		return vmm_error_errno(err, errno, "sync `%s`", path);
	return 0;
}

/* After the instant: the disk out of the scratch, everything synced, the state published. */
static int finish(vmm_ckpt *k, vmm_error **err)
{
	if (k->job_started) {
		cleanup_free char *img = vmm_find_in_path("qemu-img");
		if (!img)
			return vmm_error_set(err, VMM_EGENERIC,
					     "qemu-img is not on PATH: install qemu-utils");
		const char *argv[] = {img,   "convert", "-q", "-f",	  "qcow2",     "-O",
				      "raw", "-S",	"4k", k->scratch, k->disk_dst, NULL};
		if (run_tool(argv, err) < 0)
			return -1;
		unlink(k->scratch);
	}
	if (fsync_path(k->disk_dst, err) < 0 || (k->efi_dst && fsync_path(k->efi_dst, err) < 0))
		return -1;
	if (vmm_chunk_writer_finish(k->w, k->h, err) < 0)
		return -1;
	vmm_cow_free(steal_ptr(k->cow)); /* every chunk is saved: the RAM is the guest's again */
	if (vmm_savefile_publish(k->state_fd, k->state_tmp, k->state_path, k->h, err) < 0)
		return -1;
	return vmm_fsync_dir(k->dest, true, err);
}

static void *fin_main(void *arg)
{
	vmm_ckpt *k = arg;
	vmm_error *e = NULL;
	int rc = finish(k, &e);
	pthread_mutex_lock(&k->mu);
	k->fin_rc = rc;
	k->fin_err = e;
	k->fin_done = true;
	pthread_mutex_unlock(&k->mu);
	poke(k);
	return NULL;
}

static int set_caps(vmm_qmp *q, bool background, bool ignore_shared, vmm_error **err)
{
	json_t *a = json_pack("{s:[{s:s,s:b},{s:s,s:b}]}", "capabilities", "capability",
			      "x-ignore-shared", "state", ignore_shared, "capability",
			      "background-snapshot", "state", background);
	return vmm_qmp_execute(q, "migrate-set-capabilities", a, NULL, err);
}

/*
 * An unprivileged QEMU may not make a userfaultfd itself (vm/uffd_shim.h):
 * it gets /dev/userfaultfd, opened by root, for the snapshot and no longer.
 * Without it (vmm not root, a kernel before 6.1) the snapshot pauses the
 * guest throughout instead.
 */
static void lend_uffd(vmm_ckpt *k, vmm_qmp *q, const vmm_qemu_cmd *cmd)
{
	if (!cmd->drop)
		return;
	cleanup_close int fd = open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);
	if (fd >= 0 && vmm_qmp_execute_fd(q, "add-fd", json_pack("{s:i}", "fdset-id", UFFD_FDSET),
					  fd, NULL, NULL) == 0)
		k->uffd_lent = true;
}

static void take_back_uffd(vmm_ckpt *k, vmm_qmp *q)
{
	if (q && k->uffd_lent)
		vmm_qmp_execute(q, "remove-fd", json_pack("{s:i}", "fdset-id", UFFD_FDSET), NULL,
				NULL);
	k->uffd_lent = false;
}

static void discard_events(vmm_qmp *q)
{
	json_t *ev;
	while ((ev = vmm_qmp_next_event(q)))
		json_decref(ev);
}

static void drain_events(vmm_ckpt *k, vmm_qmp *q)
{
	json_t *ev;
	while ((ev = vmm_qmp_next_event(q))) {
		vmm_ckpt_event(k, ev);
		json_decref(ev);
	}
}

/*
 * Map the guest's RAM into QEMU's page tables while the guest runs.
 * Before write-protecting the RAM, QEMU reads a byte of every page (in the
 * pause); pages it has not mapped yet each cost a fault there, which for a
 * guest that never touched most of its RAM is most of the pause.  Reading
 * them through process_vm_readv faults them in now instead.  Best effort.
 */
static void warm_up(pid_t pid, uint64_t ram_size)
{
	char maps[64];
	snprintf(maps, sizeof(maps), "/proc/%d/maps", (int)pid);
	cleanup_file FILE *f = fopen(maps, "re");
	if (!f)
		return;
	char line[512];
	static char sink[1024];
	struct iovec local = {sink, sizeof(sink)};
	struct iovec remote[1024];
	while (fgets(line, sizeof(line), f)) {
		unsigned long long lo, hi, off;
		if (!strstr(line, "memfd:vmm-guest-ram") ||
		    sscanf(line, "%llx-%llx %*s %llx", &lo, &hi, &off) != 3 || off != 0 ||
		    hi - lo != ram_size)
			continue;
		for (unsigned long long a = lo; a < hi;) {
			size_t n = 0;
			for (; n < ARRAY_SIZE(remote) && a < hi; n++, a += 4096)
				remote[n] = (struct iovec){(void *)(uintptr_t)a, 1};
			if (process_vm_readv(pid, &local, 1, remote, n, 0) < 0)
				return;
		}
	}
}

/* Can dst share src's blocks?  Clones one block to find out (dst is overwritten later). */
static bool can_reflink(int src, int dst)
{
	struct stat st;
	if (fstat(src, &st) < 0 || st.st_size < 4096)
		return false;
	struct file_clone_range r = {.src_fd = src, .src_offset = 0, .src_length = 4096};
	return ioctl(dst, FICLONERANGE, &r) == 0;
}

static int prepare_disk(vmm_ckpt *k, vmm_qmp *q, vmm_error **err)
{
	cleanup_close int src = open(k->disk_src, O_RDONLY | O_CLOEXEC);
	if (src < 0)
		return vmm_error_errno(err, errno, "open `%s`", k->disk_src);
	cleanup_close int dst = open(k->disk_dst, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
	if (dst < 0)
		return vmm_error_errno(err, errno, "create `%s`", k->disk_dst);
	k->reflink = can_reflink(src, dst);
	if (k->reflink)
		return 0;
	unlink(k->disk_dst); /* qemu-img convert makes it */
	struct stat st;
	if (fstat(src, &st) < 0)
		return vmm_error_errno(err, errno, "stat `%s`", k->disk_src);
	cleanup_free char *img = vmm_find_in_path("qemu-img");
	if (!img)
		return vmm_error_set(err, VMM_EGENERIC,
				     "qemu-img is not on PATH: install qemu-utils");
	char size[32];
	snprintf(size, sizeof(size), "%lld", (long long)st.st_size);
	const char *argv[] = {img, "create", "-q", "-f", "qcow2", k->scratch, size, NULL};
	if (run_tool(argv, err) < 0)
		return -1;
	/* QEMU may run as a user who cannot open it (DESIGN.md §8b): it gets it open */
	int modes[] = {O_RDWR, O_RDONLY};
	for (size_t i = 0; i < ARRAY_SIZE(modes); i++) {
		cleanup_close int fd = open(k->scratch, modes[i] | O_CLOEXEC);
		if (fd < 0)
			return vmm_error_errno(err, errno, "open `%s`", k->scratch);
		if (vmm_qmp_execute_fd(q, "add-fd", json_pack("{s:i}", "fdset-id", SCRATCH_FDSET),
				       fd, NULL, err) < 0)
			return -1;
		k->fdset_added = true;
	}
	char name[32];
	snprintf(name, sizeof(name), "/dev/fdset/%d", SCRATCH_FDSET);
	json_t *a = json_pack("{s:s,s:s,s:{s:s,s:s,s:s}}", "driver", "qcow2", "node-name", NODE,
			      "file", "driver", "file", "filename", name, "locking", "off");
	if (vmm_qmp_execute(q, "blockdev-add", a, NULL, err) < 0)
		return -1;
	k->node_added = true;
	return 0;
}

/* The instant: memory and disk as they are now, the guest paused meanwhile. */
static int capture(vmm_ckpt *k, vmm_qmp *q, vmm_error **err)
{
	if (k->was_running) {
		if (vmm_qmp_execute(q, "stop", NULL, NULL, err) < 0)
			return -1;
		k->paused_by_us = true;
	}
	if (k->cow) { /* the instant: the pages written since the arming protected again */
		if (vmm_cow_capture(k->cow, err) < 0)
			return -1;
		k->cow_n = vmm_cow_take_list(k->cow, &k->cow_list);
	}
	if (!k->background) {
		/*
		 * Paused until the migration has ended, which inactivates the
		 * disk: it cannot have a backup job then, and needs none.
		 */
		vmm_copy_opts co = {0};
		if (vmm_copy_file(k->disk_src, k->disk_dst, &co, NULL, err) < 0)
			return -1;
	} else if (k->reflink) {
		cleanup_close int src = open(k->disk_src, O_RDONLY | O_CLOEXEC);
		cleanup_close int dst = open(k->disk_dst, O_WRONLY | O_CLOEXEC);
		if (src < 0 || dst < 0 || ioctl(dst, FICLONE, src) < 0)
			return vmm_error_errno(err, errno, "clone `%s`", k->disk_src);
	} else {
		/*
		 * Its point in time is now; its copying would hold QEMU's main
		 * loop while QEMU saves the device state and resumes the guest
		 * (a pause of 300 ms instead of 50 measured), so it waits, paused
		 * and at 1 byte/s, until the guest runs again.
		 */
		json_t *a = json_pack("{s:s,s:s,s:s,s:s,s:I}", "job-id", NODE, "device", "disk0",
				      "target", NODE, "sync", "full", "speed", (json_int_t)1);
		if (vmm_qmp_execute(q, "blockdev-backup", a, NULL, err) < 0)
			return -1;
		k->job_started = true;
		vmm_qmp_execute(q, "block-job-pause", json_pack("{s:s}", "device", NODE), NULL,
				NULL);
	}
	if (k->efi_src) {
		vmm_copy_opts co = {0};
		if (vmm_copy_file(k->efi_src, k->efi_dst, &co, NULL, err) < 0)
			return -1;
	}
	if (vmm_qmp_execute(q, "migrate", json_pack("{s:s}", "uri", "fd:" FDNAME), NULL, err) < 0)
		return -1;
	k->migrating = true;
	/* background-snapshot resumes the guest itself once its RAM is write-protected */
	if (k->background)
		k->paused_by_us = false;
	return 0;
}

int vmm_ckpt_begin(vmm_ckpt **out, vmm_qmp *q, const vmm_qemu_cmd *cmd, const vmm_config *c,
		   const char *vm_dir, const char *dest, pid_t qemu_pid, int ram_fd,
		   uint64_t ram_size, int uffd, uint64_t uffd_base, vmm_error **err)
{
	vmm_ckpt *k = xcalloc(1, sizeof(*k));
	k->start = vmm_now();
	k->state_fd = k->rd = k->evfd = -1;
	k->ram_fd = ram_fd;
	k->ram_size = ram_size;
	pthread_mutex_init(&k->mu, NULL);
	k->dest = xstrdup(dest);
	k->state_path = path_join(dest, VMM_STATE_FILE);
	k->state_tmp = xasprintf("%s.tmp", k->state_path);
	k->disk_src = path_join(vm_dir, VMM_DISK_FILE);
	k->disk_dst = path_join(dest, VMM_DISK_FILE);
	k->scratch = path_join(dest, SCRATCH);
	cleanup_free char *efi = path_join(vm_dir, VMM_EFIVARS_FILE);
	if (access(efi, F_OK) == 0) {
		k->efi_src = steal_ptr(efi);
		k->efi_dst = path_join(dest, VMM_EFIVARS_FILE);
	}
	json_t *st = NULL;
	cleanup_free char *what = xasprintf("`%s`", k->state_tmp);
	discard_events(q); /* a block job's end, STOP, RESUME: of before this snapshot */
	if (vmm_qmp_execute(q, "query-status", NULL, &st, err) < 0)
		goto fail;
	k->was_running = json_is_true(json_object_get(st, "running"));
	json_decref(st);
	if (vmm_state_header_for(&k->h, q, cmd, c, err) < 0 ||
	    vmm_qmp_execute(q, "migrate-set-parameters",
			    json_pack("{s:I}", "max-bandwidth", (json_int_t)1 << 40), NULL,
			    err) < 0)
		goto fail;
	/*
	 * background-snapshot needs userfaultfd, which an unprivileged QEMU
	 * lacks where vm.unprivileged_userfaultfd is 0 unless lent the device
	 * (lend_uffd: vmm as root, Linux 6.1 and later).  Refused while the same
	 * setting without it is accepted: the guest stays paused for the whole
	 * save instead (the same stream, only a longer pause).
	 */
	if (k->was_running)
		lend_uffd(k, q, cmd);
	/* vmm's own write protection (vm/cow.h) where it has QEMU's userfaultfd;
	 * QEMU's background snapshot then saves only the devices */
	const char *want_cow = getenv("VMM_SNAPSHOT_COW");
	bool cow = k->was_running && uffd >= 0 && !(want_cow && strcmp(want_cow, "0") == 0);
	if (cow && (set_caps(q, true, true, NULL) < 0 ||
		    vmm_cow_arm(&k->cow, uffd, uffd_base, ram_fd, ram_size, NULL) < 0))
		cow = false; /* QEMU's own protection, then */
	k->background = k->was_running && (cow || set_caps(q, true, false, NULL) == 0);
	if ((!k->background && set_caps(q, false, false, err) < 0) ||
	    (k->background && prepare_disk(k, q, err) < 0))
		goto fail;
	/*
	 * QEMU reads every page of the RAM before write-protecting it, in the
	 * pause; pages it never had would be allocated and faulted in then, one
	 * by one.  Both done now, while the guest runs.
	 */
	if (k->was_running && !cow) {
		fallocate(ram_fd, 0, 0, (off_t)ram_size);
		warm_up(qemu_pid, ram_size);
	}
	k->state_fd = open(k->state_tmp, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (k->state_fd < 0) {
		vmm_error_errno(err, errno, "create `%s`", k->state_tmp);
		goto fail;
	}
	k->evfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (k->evfd < 0) {
		vmm_error_errno(err, errno, "eventfd");
		goto fail;
	}
	if (vmm_chunk_writer_open(&k->w, k->state_fd, what, VMM_STATE_CODEC, VMM_STATE_LEVEL,
				  vmm_chunks_threads(), err) < 0)
		goto fail;
	/* a state that cannot be written (no space) ends the snapshot at once, the disk's
	 * copy too: the RAM's save runs beside it and would only be looked at after it */
	vmm_chunk_writer_notify(k->w, k->evfd);
	int p[2];
	if (pipe2(p, O_CLOEXEC) < 0) {
		vmm_error_errno(err, errno, "pipe");
		goto fail;
	}
	fcntl(p[1], F_SETPIPE_SZ, 1 << 20);
	k->rd = p[0];
	int rc =
	    vmm_qmp_execute_fd(q, "getfd", json_pack("{s:s}", "fdname", FDNAME), p[1], NULL, err);
	close(p[1]);
	if (rc < 0)
		goto fail;
	k->fd_passed = true;
	if (pthread_create(&k->pump, NULL, pump_main, k) != 0)
		abort();
	k->pump_started = true;
	rc = capture(k, q, err);
	drain_events(k, q);
	if (rc < 0)
		goto fail;
	*out = k;
	return 0;
fail:
	vmm_ckpt_free(k, q);
	return -1;
}

static int fail_with(vmm_error **err, vmm_error **from)
{
	if (err) {
		vmm_error_free(*err);
		*err = steal_ptr(*from);
	}
	return -1;
}

static int step(vmm_ckpt *k, vmm_qmp *q, vmm_savefile_stats *stats, vmm_error **err);

int vmm_ckpt_step(vmm_ckpt *k, vmm_qmp *q, vmm_savefile_stats *stats, vmm_error **err)
{
	int rc = step(k, q, stats, err);
	/*
	 * An event that came with the answer to one of step's commands (the
	 * backup's end, with block-job-resume's) waits in q's buffer, where
	 * polling QMP's socket would not see it: looked at now, and it pokes.
	 */
	if (rc == 0)
		drain_events(k, q);
	return rc;
}

static int step(vmm_ckpt *k, vmm_qmp *q, vmm_savefile_stats *stats, vmm_error **err)
{
	uint64_t n;
	(void)!read(k->evfd, &n, sizeof(n));
	drain_events(k, q);
	pthread_mutex_lock(&k->mu);
	bool pump_done = k->pump_done, fin_done = k->fin_done;
	pthread_mutex_unlock(&k->mu);
	if (k->st == SAVING) {
		if (vmm_chunk_writer_check(k->w, err) < 0)
			return -1;
		/*
		 * The RAM of the instant is compressed once the guest runs again:
		 * 2 threads beside QEMU's device save would stretch the pause.
		 */
		if (k->cow_list && (k->resumed || k->migrated)) {
			vmm_chunk_writer_set_source(k->w, vmm_cow_read, k->cow);
			vmm_chunk_writer_add_chunks(k->w, k->ram_fd, k->ram_size,
						    steal_ptr(k->cow_list), k->cow_n);
		}
		if (k->job_started && !k->job_done && !k->job_unleashed &&
		    (k->resumed || !k->was_running || k->migrated)) {
			json_t *a = json_pack("{s:s,s:I}", "device", NODE, "speed", (json_int_t)0);
			if (vmm_qmp_execute(q, "block-job-set-speed", a, NULL, err) < 0)
				return -1;
			vmm_qmp_execute(q, "block-job-resume", json_pack("{s:s}", "device", NODE),
					NULL, NULL);
			k->job_unleashed = true;
		}
		if (pump_done && k->pump_started) {
			pthread_join(k->pump, NULL);
			k->pump_started = false;
			if (k->pump_rc < 0)
				return fail_with(err, &k->pump_err);
		}
		if (pump_done && !k->migrated) {
			/* QEMU closes the stream when the migration has ended */
			json_t *r = NULL;
			if (vmm_qmp_execute(q, "query-migrate", NULL, &r, err) < 0)
				return -1;
			const char *s = json_string_value(json_object_get(r, "status"));
			bool done = s && strcmp(s, "completed") == 0;
			bool failed = !s || strcmp(s, "failed") == 0 || strcmp(s, "cancelled") == 0;
			if (failed) { /* s and why live in r */
				const char *why =
				    json_string_value(json_object_get(r, "error-desc"));
				vmm_error_set(err, VMM_EGENERIC, "QEMU's snapshot %s%s%s",
					      s ? s : "ended", why ? ": " : "", why ? why : "");
				json_decref(r);
				return -1;
			}
			json_decref(r);
			if (!done) {
				usleep(2000);
				poke(k);
				return 0;
			}
			k->migrated = true;
			k->migrating = false;
			set_caps(q, false, false, NULL);
			take_back_uffd(k, q);
			if (k->paused_by_us) { /* no background-snapshot: paused until now */
				if (vmm_qmp_execute(q, "cont", NULL, NULL, err) < 0)
					return -1;
				k->paused_by_us = false;
			}
		}
		if (k->job_done && k->job_error)
			return vmm_error_set(err, VMM_EGENERIC, "copying the disk: %s",
					     k->job_error);
		if (!k->migrated || (k->job_started && !k->job_done))
			return 0;
		if (k->node_added) {
			if (vmm_qmp_execute(q, "blockdev-del",
					    json_pack("{s:s}", "node-name", NODE), NULL, err) < 0)
				return -1;
			k->node_added = false;
		}
		if (k->fdset_added) {
			vmm_qmp_execute(q, "remove-fd",
					json_pack("{s:i}", "fdset-id", SCRATCH_FDSET), NULL, NULL);
			k->fdset_added = false;
		}
		k->st = FINISHING;
		if (pthread_create(&k->fin, NULL, fin_main, k) != 0)
			abort();
		k->fin_started = true;
		return 0;
	}
	if (!fin_done)
		return 0;
	pthread_join(k->fin, NULL);
	k->fin_started = false;
	if (k->fin_rc < 0)
		return fail_with(err, &k->fin_err);
	if (stats) {
		stats->raw_bytes = k->h->raw_size;
		stats->compressed_bytes = k->h->compressed_size;
		stats->seconds = vmm_now() - k->start;
		stats->pause = k->resumed ? k->resume_ts - k->stop_ts : 0;
	}
	free(k->state_tmp);
	k->state_tmp = NULL; /* published: keep it */
	return 1;
}

/*
 * After migrate_cancel, or a failure during a background snapshot: wait until QEMU's migration has
 * ended, one way or the other, before the guest is let go.  A `cont` while it runs would be undone
 * when it completes (the guest stays paused, "postmigrate"), and QEMU cannot stop writing into a
 * pipe (it has no shutdown): if the pump gave up reading (a full disk), closing our end makes its
 * write fail.  Not under a background snapshot, which is never cancelled and whose pump drains the
 * stream to its end (drain).
 */
static void settle_migration(vmm_ckpt *k, vmm_qmp *q)
{
	pthread_mutex_lock(&k->mu);
	bool reading = k->pump_started && !k->pump_done;
	pthread_mutex_unlock(&k->mu);
	if (!reading && k->rd >= 0 && !k->background) {
		close(k->rd);
		k->rd = -1;
	}
	for (int i = 0; i < 3000; i++) {
		json_t *r = NULL;
		if (vmm_qmp_execute(q, "query-migrate", NULL, &r, NULL) < 0)
			return;
		const char *st = json_string_value(json_object_get(r, "status"));
		bool ended = !st || strcmp(st, "completed") == 0 || strcmp(st, "failed") == 0 ||
			     strcmp(st, "cancelled") == 0 || strcmp(st, "none") == 0;
		json_decref(r);
		if (ended)
			return;
		usleep(10000);
	}
}

/*
 * A snapshot that failed lets the guest go if it was stopped for it: by
 * vmm's `stop`, or, with background-snapshot, by QEMU's own, which QEMU
 * undoes only once the RAM is write-protected (a stream that breaks before
 * that leaves the guest paused).
 */
static void let_go(vmm_ckpt *k, vmm_qmp *q, bool published)
{
	bool stopped = k->paused_by_us;
	if (!stopped && k->background && k->was_running && !published) {
		json_t *st = NULL;
		if (vmm_qmp_execute(q, "query-status", NULL, &st, NULL) == 0)
			stopped = !json_is_true(json_object_get(st, "running"));
		json_decref(st);
	}
	if (stopped)
		vmm_qmp_execute(q, "cont", NULL, NULL, NULL);
	k->paused_by_us = false;
}

void vmm_ckpt_free(vmm_ckpt *k, vmm_qmp *q)
{
	if (!k)
		return;
	bool published = !k->state_tmp;
	if (q && k->migrating) {
		/* a background snapshot is let finish (drain), not cancelled */
		if (!k->background)
			vmm_qmp_execute(q, "migrate_cancel", NULL, NULL, NULL);
		settle_migration(k, q);
	}
	/* QEMU holds the pipe's other end until a migration has used it */
	if (q && k->fd_passed && !k->migrating && !k->migrated)
		vmm_qmp_execute(q, "closefd", json_pack("{s:s}", "fdname", FDNAME), NULL, NULL);
	if (q && k->job_started) {
		/* an error if it has ended: then gone from QEMU's list, or the node stays in use */
		vmm_qmp_execute(q, "block-job-cancel",
				json_pack("{s:s,s:b}", "device", NODE, "force", 1), NULL, NULL);
		for (int i = 0; i < 500; i++) {
			json_t *jobs = NULL;
			if (vmm_qmp_execute(q, "query-block-jobs", NULL, &jobs, NULL) < 0)
				break;
			size_t njobs = json_array_size(jobs);
			json_decref(jobs);
			if (!njobs)
				break;
			usleep(10000);
		}
	}
	if (q && k->node_added)
		vmm_qmp_execute(q, "blockdev-del", json_pack("{s:s}", "node-name", NODE), NULL,
				NULL);
	if (q && k->fdset_added)
		vmm_qmp_execute(q, "remove-fd", json_pack("{s:i}", "fdset-id", SCRATCH_FDSET), NULL,
				NULL);
	if (q)
		let_go(k, q, published);
	if (q && !published)
		set_caps(q, false, false, NULL);
	take_back_uffd(k, q);
	if (q) /* this snapshot's events, read with the answers above, are not the next one's */
		discard_events(q);
	if (k->w)
		vmm_chunk_writer_cancel(k->w);
	if (k->pump_started)
		pthread_join(k->pump, NULL); /* QEMU closed its end: cancelled, done or gone */
	if (k->fin_started)
		pthread_join(k->fin, NULL);
	vmm_chunk_writer_free(k->w);
	vmm_cow_free(k->cow); /* after the writer's threads, which read through it */
	free(k->cow_list);
	if (k->rd >= 0)
		close(k->rd);
	if (k->state_fd >= 0)
		close(k->state_fd);
	if (k->evfd >= 0)
		close(k->evfd);
	if (!published) {
		unlink(k->state_tmp);
		unlink(k->state_path);
		unlink(k->disk_dst);
		unlink(k->scratch);
		if (k->efi_dst)
			unlink(k->efi_dst);
	}
	vmm_savefile_header_free(k->h);
	vmm_error_free(k->pump_err);
	vmm_error_free(k->fin_err);
	pthread_mutex_destroy(&k->mu);
	free(k->job_error);
	free(k->dest);
	free(k->state_tmp);
	free(k->state_path);
	free(k->disk_src);
	free(k->disk_dst);
	free(k->scratch);
	free(k->efi_src);
	free(k->efi_dst);
	free(k);
}
