#include "vm/run.h"
#include "common/util.h"
#include "storage/copy.h"
#include "vm/bundle.h"
#include "vm/checkpoint.h"
#include "vm/chunks.h"
#include "vm/lazy.h"
#include "vm/uffd_shim.h"
#include "vm/agent.h"
#include "vm/qmp.h"
#include "vm/resumed.h"
#include "vm/state.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>
#include <sys/prctl.h>
#include <sys/mman.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/utsname.h>
#include <sys/wait.h>

#define DEFAULT_STOP_TIMEOUT 30.0
#define QUIT_GRACE 10.0
#define RESUMED_ASIDE VMM_STATE_RESUMED_FILE

typedef struct run {
	const vmm_run_opts *o;
	const vmm_home *home;
	const char *name; /* borrowed */
	const char *dir;  /* borrowed */
	int dirfd;
	vmm_config *cfg;   /* owned */
	vmm_qemu_cmd *cmd; /* owned */
	pid_t pid;	   /* QEMU; 0 once reaped */
	int status;	   /* QEMU's wait status once reaped */
	int console, errpipe, sigfd, ctl, tap, console_in, console_out;
	int ram;		/* the guest's RAM: a memfd QEMU maps (VMM_QEMU_RAM_FD) */
	uint64_t ram_size;	/* bytes */
	vmm_qmp *qmp;		/* owned */
	vmm_net *net;		/* owned */
	vmm_ckpt *ckpt;		/* owned: a snapshot of the running VM under way */
	vmm_chunk_base *base;	/* owned: the state this run resumed from, for suspend to reuse */
	int base_fd;		/* that file (RESUMED_ASIDE), read-write: suspend saves into it */
	vmm_chunk_ahead *ahead; /* owned: saving the RAM ahead into base_fd (vm/chunks.h) */
	double ahead_every;	/* seconds between its passes (VMM_SAVE_AHEAD); 0: not at all */
	bool ahead_said;	/* it has caught up (said once a run) */
	bool huge;		/* the RAM is in huge pages (hugetlbfs) */
	vmm_lazy *lazy;		/* owned: QEMU's userfaultfd (vm/lazy.h), for the run */
	bool lazy_resume;	/* a resume serves QEMU's faults while fill restores the RAM */
	int lazy_child;		/* QEMU's end of lazy's socket until QEMU has it */
	vmm_chunk_fill *fill;	/* owned: a resume's RAM still coming in (vm/lazy.h) */
	vmm_error *fill_error;	/* owned: why it did not: the run's error */
	double resume_start;	/* when the resume began (vmm_now) */
	int ckpt_client;	/* the control connection waiting for it */
	char *ckpt_wait;	/* owned: where a snapshot asked for during the fill goes */
	vmm_agent_fwd *agent;	/* owned: control.sock's forwarder to the guest agent */
	char *shares_dir;	/* owned: tmp/<uuid> for named shares' mount points */
	int shares_lock;	/* its GC guard */
	char errline[512];	/* QEMU's last line on stderr */
	char errpart[512];
	size_t errpart_len;
	bool stopping, quit_sent, suspended;
	double deadline, kill_at;
} run;

static void say(const run *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void say(const run *r, const char *fmt, ...)
{
	if (!r->o->notice)
		return;
	va_list ap;
	va_start(ap, fmt);
	char *msg = xvasprintf(fmt, ap);
	va_end(ap);
	r->o->notice(r->o->notice_ctx, msg);
	free(msg);
}

/* --- QEMU's stderr and the console ---------------------------------------------- */

/* Forward what QEMU wrote to stderr; remember its last line for error messages. */
static void drain_stderr(run *r)
{
	char buf[4096];
	for (;;) {
		ssize_t n = read(r->errpipe, buf, sizeof(buf));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			if (n == 0) {
				close(r->errpipe);
				r->errpipe = -1;
			}
			return;
		}
		if (r->o->log_fd >= 0)
			(void)!vmm_write_all(r->o->log_fd, buf, (size_t)n);
		for (ssize_t i = 0; i < n; i++) {
			if (buf[i] == '\n') {
				if (r->errpart_len) {
					memcpy(r->errline, r->errpart, r->errpart_len);
					r->errline[r->errpart_len] = '\0';
				}
				r->errpart_len = 0;
			} else if (r->errpart_len + 1 < sizeof(r->errpart) && buf[i] != '\r') {
				r->errpart[r->errpart_len++] = buf[i];
			}
		}
	}
}

static void relay_console_out(run *r)
{
	char buf[65536];
	for (;;) {
		ssize_t n = read(r->console, buf, sizeof(buf));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK)) {
				close(r->console);
				r->console = -1;
			}
			return;
		}
		/* a reader that went away must not take the guest down with it; a
		 * full non-blocking one (--serial's pty, nobody attached) drops output
		 * as a serial line does */
		if (r->console_out >= 0 && vmm_write_all(r->console_out, buf, (size_t)n) < 0 &&
		    errno != EAGAIN)
			r->console_out = -1;
	}
}

static void relay_console_in(run *r)
{
	char buf[4096];
	ssize_t n;
	do
		n = read(r->console_in, buf, sizeof(buf));
	while (n < 0 && errno == EINTR);
	if (n < 0 && errno == EAGAIN)
		return; /* a non-blocking pty (--serial) */
	if (n <= 0) {
		r->console_in = -1; /* EOF: the guest keeps running without input */
		return;
	}
	if (r->console >= 0)
		(void)!vmm_write_all(r->console, buf, (size_t)n);
}

/* --- QEMU's process ------------------------------------------------------------ */

/* Reap QEMU if it has exited; true once it has. */
static bool reap(run *r, bool block)
{
	if (r->pid <= 0)
		return true;
	int st;
	pid_t p;
	do
		p = waitpid(r->pid, &st, block ? 0 : WNOHANG);
	while (p < 0 && errno == EINTR);
	if (p == r->pid || (p < 0 && errno == ECHILD)) {
		r->status = p == r->pid ? st : 0;
		r->pid = 0;
		return true;
	}
	return false;
}

/* Wait up to `secs` for QEMU to exit, then kill it. */
static void wait_exit(run *r, double secs)
{
	double end = vmm_now() + secs;
	while (!reap(r, false)) {
		if (vmm_now() > end) {
			kill(r->pid, SIGKILL);
			reap(r, true);
			break;
		}
		if (r->errpipe >= 0)
			drain_stderr(r);
		usleep(5000);
	}
}

static void quit_now(run *r)
{
	if (r->quit_sent || r->pid <= 0)
		return;
	r->quit_sent = true;
	r->kill_at = vmm_now() + QUIT_GRACE;
	if (!r->qmp || vmm_qmp_execute(r->qmp, "quit", NULL, NULL, NULL) < 0)
		kill(r->pid, SIGKILL);
}

static void kill_and_reap(run *r)
{
	if (r->pid > 0) {
		kill(r->pid, SIGKILL);
		reap(r, true);
	}
}

/* Put fd on a number ≥ floor (and 10) so the dup2 calls below cannot clobber it. */
static int lift(int fd, int floor)
{
	return fd < 0 ? -1 : fcntl(fd, F_DUPFD, floor > 10 ? floor : 10);
}

static int spawn(run *r, vmm_error **err)
{
	int con[2], qmp[2], errp[2], execp[2];
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, con) < 0)
		return vmm_error_errno(err, errno, "socketpair");
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, qmp) < 0) {
		close(con[0]);
		close(con[1]);
		return vmm_error_errno(err, errno, "socketpair");
	}
	if (pipe2(errp, O_CLOEXEC) < 0 || pipe2(execp, O_CLOEXEC) < 0) {
		int e = errno;
		close(con[0]);
		close(con[1]);
		close(qmp[0]);
		close(qmp[1]);
		return vmm_error_errno(err, e, "pipe");
	}
	/* what QEMU gets open instead of opening it (qemu.h): it may run as a user who could not */
	size_t nfiles = r->cmd->nfiles;
	cleanup_free int *files = xcalloc(nfiles + 1, sizeof(int));
	if (vmm_qemu_files_open(r->cmd, r->dirfd, files, err) < 0) {
		close(con[0]);
		close(con[1]);
		close(qmp[0]);
		close(qmp[1]);
		close(errp[0]);
		close(errp[1]);
		close(execp[0]);
		close(execp[1]);
		return -1;
	}
	/* QEMU's descriptors end below floor; floor itself is the exec pipe's */
	int floor = VMM_QEMU_FILE_FD + (int)nfiles;
	pid_t parent = getpid();
	pid_t pid = fork();
	if (pid < 0) {
		int e = errno;
		for (size_t i = 0; i < nfiles; i++)
			close(files[i]);
		return vmm_error_errno(err, e, "fork");
	}
	if (pid == 0) {
		/* QEMU: its own process group (a terminal's Ctrl-C is for vmm), dies with vmm */
		setpgid(0, 0);
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() != parent)
			_exit(127);
		sigset_t none;
		sigemptyset(&none);
		sigprocmask(SIG_SETMASK, &none, NULL);
		signal(SIGPIPE, SIG_DFL);
		int top = floor + 1;
		int c = lift(con[1], top), q = lift(qmp[1], top), e = lift(errp[1], top);
		int x = lift(execp[1], top), t = lift(r->tap, top), m = lift(r->ram, top);
		int u = lift(r->lazy_child, top);
		if (c < 0 || q < 0 || e < 0 || x < 0 || m < 0 || fchdir(r->dirfd) < 0)
			_exit(127);
		for (size_t i = 0; i < nfiles; i++)
			if ((files[i] = lift(files[i], top)) < 0)
				_exit(127);
		if (dup2(c, 0) < 0 || dup2(c, 1) < 0 || dup2(e, 2) < 0 ||
		    dup2(q, VMM_QEMU_QMP_FD) < 0 || (t >= 0 && dup2(t, VMM_QEMU_TAP_FD) < 0) ||
		    (u >= 0 && dup2(u, VMM_QEMU_UFFD_FD) < 0) || dup2(x, floor) < 0 ||
		    fcntl(floor, F_SETFD, FD_CLOEXEC) < 0 || dup2(m, VMM_QEMU_RAM_FD) < 0)
			_exit(127);
		for (size_t i = 0; i < nfiles; i++)
			if (dup2(files[i], VMM_QEMU_FILE_FD + (int)i) < 0)
				_exit(127);
		if (u < 0)
			close(VMM_QEMU_UFFD_FD); /* nothing of vmm's the library could take for its
						    socket */
		close_range((unsigned)top, ~0u, 0);
		/* what failed, as {stage, errno}: 1 the shares' bind mounts, 2 the drop, 3 exec */
		int code[2] = {1, -vmm_qemu_child_setup(r->cmd)};
		if (code[1] == 0) {
			int rc = vmm_qemu_child_exec(r->cmd, parent);
			code[0] = rc < 0 ? 2 : 3;
			code[1] = rc < 0 ? -rc : rc;
		}
		(void)!write(floor, code, sizeof(code));
		_exit(127);
	}
	for (size_t i = 0; i < nfiles; i++)
		close(files[i]);
	close(con[1]);
	close(qmp[1]);
	close(errp[1]);
	close(execp[1]);
	r->pid = pid;
	r->console = con[0];
	r->errpipe = errp[0];
	int code[2] = {0, 0};
	ssize_t n;
	do
		n = read(execp[0], code, sizeof(code));
	while (n < 0 && errno == EINTR);
	close(execp[0]);
	fcntl(r->console, F_SETFL, O_NONBLOCK);
	fcntl(r->errpipe, F_SETFL, O_NONBLOCK);
	if (n == (ssize_t)sizeof(code)) {
		close(qmp[0]);
		reap(r, true);
		if (code[0] == 1)
			return vmm_error_errno(
			    err, code[1], "shared folders: bind mounts in QEMU's mount namespace");
		if (code[0] == 2)
			return vmm_error_errno(err, code[1], "start QEMU as uid %u",
					       (unsigned)r->cmd->uid);
		return vmm_error_errno(err, code[1], "start `%s`", r->cmd->binary);
	}
	if (vmm_qmp_open_fd(&r->qmp, qmp[0], 30, err) < 0) {
		/* QEMU refused its arguments or died: say what it said */
		wait_exit(r, 5);
		fcntl(r->errpipe, F_SETFL, 0);
		while (r->errpipe >= 0)
			drain_stderr(r);
		if (r->errline[0])
			return vmm_error_set(err, VMM_EGENERIC, "QEMU did not start: %s",
					     r->errline);
		return vmm_error_wrap(err, "QEMU did not start");
	}
	return 0;
}

/* --- the control socket --------------------------------------------------------- */

int vmm_control_sockaddr(struct sockaddr_un *sa, int dirfd)
{
	memset(sa, 0, sizeof(*sa));
	sa->sun_family = AF_UNIX;
	int l = snprintf(sa->sun_path, sizeof(sa->sun_path), "/proc/self/fd/%d/%s", dirfd,
			 VMM_CONTROL_SOCKET);
	return l < 0 || (size_t)l >= sizeof(sa->sun_path) ? -1 : 0;
}

static int listen_control(run *r, vmm_error **err)
{
	unlinkat(r->dirfd, VMM_CONTROL_SOCKET, 0); /* stale: we hold the lock */
	struct sockaddr_un sa;
	if (vmm_control_sockaddr(&sa, r->dirfd) < 0)
		return vmm_error_set(err, VMM_EINVAL, "control socket path is too long");
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return vmm_error_errno(err, errno, "socket");
	/* 0600 whatever the umask, set before listen(): until then nobody can
	 * connect, so there is no moment when others could */
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
	    fchmodat(r->dirfd, VMM_CONTROL_SOCKET, 0600, 0) < 0 || listen(fd, 4) < 0) {
		int e = errno;
		close(fd);
		return vmm_error_errno(err, e, "listen on `%s/%s`", r->dir, VMM_CONTROL_SOCKET);
	}
	r->ctl = fd;
	return 0;
}

/* --- suspend and resume ------------------------------------------------------ */

/*
 * The end of a lazy resume (vm/lazy.h): every chunk in, waiting for them
 * unless `cancel`; QEMU's memory ordinary again; the base a suspend saves
 * into.  A chunk that could not be restored leaves the guest with memory
 * it never had: QEMU is killed, and r->fill_error says why.
 */
static int settle_memory(run *r, bool cancel)
{
	if (!r->fill) {
		vmm_lazy_end(r->lazy);
		return r->fill_error ? -1 : 0;
	}
	if (cancel) {
		vmm_chunk_fill_cancel(r->fill);
	} else {
		struct pollfd p = {.fd = vmm_chunk_fill_done_fd(r->fill), .events = POLLIN};
		while (poll(&p, 1, -1) < 0 && errno == EINTR)
			;
	}
	if (vmm_chunk_fill_failed(r->fill) && r->pid > 0)
		kill(r->pid, SIGKILL);
	vmm_lazy_end(r->lazy);
	vmm_error *e = NULL;
	int rc = vmm_chunk_fill_wait(steal_ptr(r->fill), r->base_fd >= 0 ? &r->base : NULL,
				     cancel ? NULL : &e);
	if (rc < 0 && !cancel && !r->fill_error)
		r->fill_error = e;
	else
		vmm_error_free(e);
	if (r->base_fd >= 0 && !r->base) {
		close(r->base_fd); /* nothing to save into */
		r->base_fd = -1;
		unlinkat(r->dirfd, RESUMED_ASIDE, 0);
	}
	return rc;
}

/* Before a save: the RAM all in (settle_memory), or why it cannot be. */
static int memory_in(run *r, vmm_error **err)
{
	if (settle_memory(r, false) == 0)
		return 0;
	return vmm_error_set(err, vmm_error_code(r->fill_error), "%s", r->fill_error->msg);
}

/*
 * Saving ahead (vm/chunks.h): while the guest runs and nothing else works
 * on its memory, a low-priority thread keeps r->base up to date in
 * RESUMED_ASIDE, so that a first suspend, too, compresses only what changed
 * lately.  `vmm run --save-ahead SECONDS` (or VMM_SAVE_AHEAD=SECONDS, for
 * those that start vmm run with no say in its flags) turns it on.
 */
static bool ahead_wanted(const run *r)
{
	return r->ahead_every > 0 && r->pid > 0 && r->qmp && r->ram >= 0 && !r->fill && !r->ckpt &&
	       !r->ckpt_wait && !r->stopping && !r->suspended;
}

/*
 * Its base back in r->base, where a save finds it.  (Nothing else here: during
 * a lazy resume's fill the resumed state's base is the fill's, not yet r->base.)
 */
static void ahead_stop(run *r)
{
	if (r->ahead)
		r->base = vmm_chunk_ahead_stop(steal_ptr(r->ahead));
}

static void ahead_start(run *r)
{
	cleanup_vmm_error vmm_error *e = NULL;
	if (r->base_fd < 0)
		r->base_fd =
		    openat(r->dirfd, RESUMED_ASIDE, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (r->base_fd < 0)
		vmm_error_errno(&e, errno, "create `%s/%s`", r->dir, RESUMED_ASIDE);
	else
		vmm_chunk_ahead_start(&r->ahead, r->ram, r->ram_size, r->base_fd, &r->base,
				      VMM_STATE_CODEC, r->ahead_every, &e);
	if (r->ahead)
		return;
	say(r, "saving the memory ahead: %s; it is off for this run", e->msg);
	r->ahead_every = 0;
	if (r->base_fd >= 0 && !r->base) { /* (no fill now: ahead_wanted) */
		close(r->base_fd);
		r->base_fd = -1;
		unlinkat(r->dirfd, RESUMED_ASIDE, 0);
	}
}

/* What the thread has to say: it caught up (said the first time), or it failed. */
static void ahead_news(run *r)
{
	cleanup_vmm_error vmm_error *e = NULL;
	uint64_t bytes = 0;
	size_t stored = 0, changing = 0;
	int rc = vmm_chunk_ahead_news(r->ahead, &bytes, &stored, &changing, &e);
	if (rc > 0 && !r->ahead_said) {
		r->ahead_said = true;
		say(r,
		    "the VM's memory is saved ahead: %zu chunks, %zu changing (%.0f MiB "
		    "compressed so far)",
		    stored, changing, (double)bytes / (1 << 20));
	}
	if (rc >= 0)
		return;
	say(r, "saving the memory ahead stopped: %s", e->msg);
	r->ahead_every = 0;
	ahead_stop(r);
}

static int do_suspend(run *r, vmm_savefile_stats *stats, vmm_error **err)
{
	vmm_savefile_stats mine = {0};
	if (!stats)
		stats = &mine;
	if (r->stopping)
		return vmm_error_set(err, VMM_EGENERIC, "the VM is being stopped");
	if (r->ckpt || r->ckpt_wait)
		return vmm_error_set(
		    err, VMM_EGENERIC,
		    "a snapshot of the VM is being taken; try again when it is done");
	if (!r->qmp || r->pid <= 0)
		return vmm_error_set(err, VMM_EGENERIC, "QEMU is not running");
	if (vmm_qemu_unsavable(r->cmd))
		return vmm_error_set(err, VMM_EINVAL, "%s", vmm_qemu_unsavable(r->cmd));
	ahead_stop(r);
	/* a lazy resume's chunks not yet in are saved as they are, without waiting for them */
	vmm_chunk_base *live =
	    r->fill && r->base_fd >= 0 ? vmm_chunk_fill_base(r->fill, VMM_STATE_CODEC) : NULL;
	if (!live && memory_in(r, err) < 0)
		return -1;
	say(r, "pausing VM to take a snapshot...");
	cleanup_vmm_savefile_header vmm_savefile_header *h = NULL;
	if (vmm_state_header_for(&h, r->qmp, r->cmd, r->cfg, err) < 0) {
		vmm_chunk_base_free(live);
		return -1;
	}
	say(r, "creating a snapshot...");
	cleanup_free char *path = path_join(r->dir, VMM_STATE_FILE);
	cleanup_free char *aside = path_join(r->dir, RESUMED_ASIDE);
	bool spoiled = false;
	vmm_state_save_opts so = {.ram_fd = r->ram,
				  .ram_size = r->ram_size,
				  .base = live ? live : r->base,
				  .base_fd = r->base_fd,
				  .base_path = aside,
				  .base_spoiled = &spoiled};
	/* VMM_STATE_FORMAT=1: vmm 0.1's format, for tests that old states still resume */
	const char *fmt = getenv("VMM_STATE_FORMAT");
	if (fmt && strcmp(fmt, "1") == 0) {
		so.format = VMM_SAVEFILE_FORMAT_STREAM;
		so.ram_fd = -1;
	}
	vmm_qmp_set_timeout(r->qmp, 120);
	int rc = vmm_state_save(r->qmp, path, h, &so, stats, err);
	vmm_qmp_set_timeout(r->qmp, 30);
	vmm_chunk_base_free(live);
	if (spoiled) { /* the next suspend writes a fresh file */
		vmm_chunk_base_free(r->base);
		r->base = NULL;
		close(r->base_fd);
		r->base_fd = -1;
		unlinkat(r->dirfd, RESUMED_ASIDE, 0);
	}
	if (rc < 0)
		return -1;
	say(r, "snapshot created successfully! shutting down the VM...");
	if (stats->chunks_compressed + stats->chunks_reused)
		say(r, "memory: %llu chunks compressed, %llu kept from before",
		    (unsigned long long)stats->chunks_compressed,
		    (unsigned long long)stats->chunks_reused);
	r->suspended = true;
	quit_now(r);
	wait_exit(r, QUIT_GRACE);
	return 0;
}

/*
 * Begin a snapshot of the running VM into `dest` (vm/checkpoint.h): the
 * guest pauses for milliseconds, then the loop goes on relaying the console
 * while threads save the memory and QEMU copies the disk; `client` gets the
 * answer when checkpoint_step() sees the end.
 */
static int do_checkpoint(run *r, int client, const char *dest, vmm_error **err)
{
	if (r->stopping)
		return vmm_error_set(err, VMM_EGENERIC, "the VM is being stopped");
	if (!r->qmp || r->pid <= 0)
		return vmm_error_set(err, VMM_EGENERIC, "QEMU is not running");
	if (r->ckpt || r->ckpt_wait)
		return vmm_error_set(err, VMM_EGENERIC,
				     "a snapshot of the VM is already being taken");
	if (vmm_qemu_unsavable(r->cmd))
		return vmm_error_set(err, VMM_EINVAL, "%s", vmm_qemu_unsavable(r->cmd));
	if (dest[0] != '/' || !path_is_dir(dest))
		return vmm_error_set(err, VMM_EINVAL, "checkpoint: `%s` is not a directory", dest);
	if (r->fill) {
		/* QEMU's write protection needs the memory to itself: once the fill is done
		 * (the loop, and the console, go on meanwhile) */
		r->ckpt_wait = xstrdup(dest);
		r->ckpt_client = client;
		return 0;
	}
	if (memory_in(r, err) < 0)
		return -1;
	ahead_stop(r); /* the snapshot's writer gets the CPUs and the disk */
	vmm_qmp_set_timeout(r->qmp, 120);
	uint64_t uffd_base = 0;
	int uffd = vmm_lazy_uffd(r->lazy, &uffd_base);
	int rc = vmm_ckpt_begin(&r->ckpt, r->qmp, r->cmd, r->cfg, r->dir, dest, r->pid, r->ram,
				r->ram_size, uffd, uffd_base, err);
	vmm_qmp_set_timeout(r->qmp, 30);
	if (rc < 0)
		return -1;
	r->ckpt_client = client;
	return 0;
}

static char *ok_reply(const vmm_savefile_stats *st)
{
	return xasprintf("ok %llu %llu %.6f %.6f\n", (unsigned long long)st->raw_bytes,
			 (unsigned long long)st->compressed_bytes, st->seconds, st->pause);
}

/* The fill is done (or QEMU gone): begin the snapshot that waited for it, or say why not. */
static void checkpoint_after_fill(run *r)
{
	cleanup_free char *dest = steal_ptr(r->ckpt_wait);
	int client = steal_fd(r->ckpt_client);
	cleanup_vmm_error vmm_error *e = NULL;
	if (r->pid > 0 && do_checkpoint(r, client, dest, &e) == 0)
		return;
	cleanup_free char *reply = xasprintf("error %s\n", e ? e->msg : "QEMU exited");
	send(client, reply, strlen(reply), MSG_NOSIGNAL);
	close(client);
}

/* Move a snapshot under way along; answer its client once it has ended. */
static void checkpoint_step(run *r)
{
	if (!r->ckpt)
		return;
	vmm_savefile_stats st = {0};
	cleanup_vmm_error vmm_error *e = NULL;
	int rc = r->qmp ? vmm_ckpt_step(r->ckpt, r->qmp, &st, &e)
			: vmm_error_set(&e, VMM_EGENERIC, "QEMU exited");
	if (rc == 0)
		return;
	cleanup_free char *reply = rc > 0 ? ok_reply(&st) : xasprintf("error %s\n", e->msg);
	send(r->ckpt_client, reply, strlen(reply), MSG_NOSIGNAL);
	close(r->ckpt_client);
	r->ckpt_client = -1;
	vmm_ckpt_free(r->ckpt, r->qmp);
	r->ckpt = NULL;
}

static void serve_control(run *r)
{
	int c = accept4(r->ctl, NULL, NULL, SOCK_CLOEXEC);
	if (c < 0)
		return;
	/* suspend and checkpoint write files as us: only our user or root may ask */
	struct ucred cred;
	socklen_t cl = sizeof(cred);
	if (getsockopt(c, SOL_SOCKET, SO_PEERCRED, &cred, &cl) < 0 ||
	    (cred.uid != 0 && cred.uid != geteuid())) {
		static const char no[] = "error permission denied\n";
		send(c, no, sizeof(no) - 1, MSG_NOSIGNAL);
		close(c);
		return;
	}
	struct timeval tv = {.tv_sec = 5};
	setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	char line[PATH_MAX + 64] = "";
	size_t len = 0;
	while (len + 1 < sizeof(line) && !memchr(line, '\n', len)) {
		ssize_t n = recv(c, line + len, sizeof(line) - 1 - len, 0);
		if (n <= 0)
			break;
		len += (size_t)n;
		line[len] = '\0';
	}
	line[strcspn(line, "\r\n")] = '\0';
	cleanup_free char *reply = NULL;
	vmm_savefile_stats st = {0};
	cleanup_vmm_error vmm_error *e = NULL;
	if (strcmp(line, "suspend") == 0) {
		reply =
		    do_suspend(r, &st, &e) < 0 ? xasprintf("error %s\n", e->msg) : ok_reply(&st);
	} else if (strcmp(line, "net") == 0) {
		/* "ok default ADDRESS", "ok bridged", "ok user" */
		vmm_net_mode m = r->net ? vmm_net_get_mode(r->net) : VMM_NET_USER;
		reply = m == VMM_NET_DEFAULT
			    ? xasprintf("ok default %s\n", vmm_net_address(r->net))
			    : xasprintf("ok %s\n", m == VMM_NET_BRIDGED ? "bridged" : "user");
	} else if (strncmp(line, "checkpoint ", 11) == 0) {
		if (do_checkpoint(r, c, line + 11, &e) == 0)
			return; /* answered when it is done */
		reply = xasprintf("error %s\n", e->msg);
	} else {
		reply = xasprintf("error unknown request \"%.64s\"\n", line);
	}
	send(c, reply, strlen(reply), MSG_NOSIGNAL);
	close(c);
}

/*
 * Restore the state into QEMU started with -incoming, then run the guest.
 *
 * What the state's names promise (vm/resumed.h), and why in this order:
 *
 *   I1  A state is never restored over a disk the guest has written since
 *       it was saved, after a kill or a power cut.  So before `cont` it
 *       leaves the name state.vmmsave durably (rename, then the directory
 *       synced: a rename still in the page cache can come undone in a
 *       power cut, while the guest's flushes make its writes durable).
 *   I2  A state whose guest never ran is never lost.  Until `cont` returns
 *       it is state.vmmsave.resuming-<witness>.tmp, the witness taken just
 *       before `cont`: a kill leaves it there and the next command that
 *       locks the bundle renames it back (vmm_resumed_settle), unless
 *       disk.img, efivars.fd or nvram.bin changed meanwhile (the guest
 *       did run: `cont` was carried out before the kill) or the boot or
 *       the mount did (a power cut: the times of the disk cannot be
 *       trusted, so the state is dropped and the VM boots).
 *   I3  Once `cont` has returned the guest runs and the state is history:
 *       state.vmmsave.resumed.tmp, which no vmm restores (it is removed
 *       when the run ends or by the next lock), a base that a suspend
 *       saves into, keeping the unchanged chunks, and publishes durably as
 *       state.vmmsave again (vm/state.h).  That rename needs no sync: if a
 *       power cut takes it back, I2's check drops the state.
 *   I4  If `cont` fails the guest did not run: the state goes back to its
 *       name, durably.
 */
static int do_resume(run *r, const vmm_savefile_header *h, vmm_state_load *load, vmm_error **err)
{
	cleanup_vmm_state_load vmm_state_load *l = load;
	if (!h || !l)
		return vmm_error_set(err, VMM_EINVAL, "no saved state to resume from");
	if (vmm_state_check(h, r->cmd, r->cfg, vmm_qmp_version(r->qmp), err) < 0)
		return -1;
	cleanup_free char *machine = NULL;
	const char *want = strcmp(r->cmd->arch, "x86_64") == 0 ? "q35" : "virt";
	if (vmm_qmp_machine(r->qmp, want, &machine, err) < 0)
		return -1;
	if (strcmp(machine, h->machine) != 0)
		return vmm_error_set(err, VMM_EINCOMPATIBLE, "machine %s in the state vs %s now",
				     h->machine, machine);
	say(r, "restoring VM state from a snapshot...");
	cleanup_free char *path = path_join(r->dir, VMM_STATE_FILE);
	if (r->lazy_resume) { /* the guest runs while its RAM comes in (vm/lazy.h) */
		r->fill = vmm_state_load_take_fill(l);
		if (!r->fill) /* nothing to serve: QEMU's memory must not stay registered */
			vmm_lazy_end(r->lazy);
		if (r->fill && vmm_lazy_serve(r->lazy, r->fill, r->pid, err) < 0)
			return -1;
		if (r->fill) /* QEMU's loading and the faults come first */
			vmm_chunk_fill_background(r->fill);
	}
	vmm_qmp_set_timeout(r->qmp, 120);
	int rc = vmm_state_load_finish(steal_ptr(l), r->qmp, NULL, &r->base, err);
	vmm_qmp_set_timeout(r->qmp, 30);
	/* a corrupt chunk found before the guest ran, by the fill or by a fault (which
	 * killed QEMU, failing the load): that is the cause; refused and kept, as ever */
	if (r->fill && vmm_chunk_fill_failed(r->fill))
		return memory_in(r, err);
	if (rc < 0)
		return -1;
	/* I1, I2: out of the way durably, under a name that says what it is worth */
	cleanup_free char *pending = vmm_resumed_pending_name(r->dir);
	if (renameat(r->dirfd, VMM_STATE_FILE, r->dirfd, pending) < 0)
		return vmm_error_errno(err, errno, "move `%s` aside", path);
	if (vmm_fsync_dir(r->dir, true, err) < 0) { /* r->dirfd is O_PATH */
		renameat(r->dirfd, pending, r->dirfd, VMM_STATE_FILE);
		return -1;
	}
	vmm_test_pause("resume-before-cont");
	say(r, "resuming VM...");
	if (vmm_qmp_execute(r->qmp, "cont", NULL, NULL, err) < 0) {
		renameat(r->dirfd, pending, r->dirfd, VMM_STATE_FILE); /* I4 */
		vmm_fsync_dir(r->dir, true, NULL);
		return -1;
	}
	vmm_test_pause("resume-after-cont");
	/* I3: VMM_STATE_REUSE=0: the state resumed from is no base for a suspend (benchmarks
	 * measure both; saving ahead, if on, makes one of its own) */
	renameat(r->dirfd, pending, r->dirfd, RESUMED_ASIDE);
	const char *reuse = getenv("VMM_STATE_REUSE");
	if ((r->base || r->fill) && !(reuse && strcmp(reuse, "0") == 0))
		r->base_fd = openat(r->dirfd, RESUMED_ASIDE, O_RDWR | O_CLOEXEC);
	if (r->base_fd < 0) {
		vmm_chunk_base_free(r->base);
		r->base = NULL;
		unlinkat(r->dirfd, RESUMED_ASIDE, 0);
	}
	return 0;
}

/* --- the loop ------------------------------------------------------------------ */

static void begin_stop(run *r, double timeout)
{
	if (r->stopping) {
		quit_now(r); /* asked twice: do not wait for the guest */
		return;
	}
	r->stopping = true;
	say(r, "Stopping VM...");
	r->deadline = vmm_now() + timeout;
	if (!r->qmp || vmm_qmp_execute(r->qmp, "system_powerdown", NULL, NULL, NULL) < 0)
		quit_now(r);
}

static void handle_signal(run *r)
{
	struct signalfd_siginfo si;
	while (read(r->sigfd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
		switch (si.ssi_signo) {
		case SIGINT:
		case SIGTERM:
		case SIGHUP: {
			/* `vmm stop --timeout S` sends S along with the signal */
			double t =
			    r->o->stop_timeout > 0 ? r->o->stop_timeout : DEFAULT_STOP_TIMEOUT;
			if (si.ssi_code == SI_QUEUE && si.ssi_int >= 0)
				t = si.ssi_int;
			begin_stop(r, t);
			break;
		}
		case SIGUSR1: {
			cleanup_vmm_error vmm_error *e = NULL;
			if (do_suspend(r, NULL, &e) < 0)
				say(r, "Failed to suspend the VM: %s", e->msg);
			break;
		}
		case SIGUSR2: /* Tart's requestStop(): ask the guest, wait for it */
			say(r, "Requesting guest OS to stop...");
			if (r->qmp)
				vmm_qmp_execute(r->qmp, "system_powerdown", NULL, NULL, NULL);
			break;
		case SIGQUIT: /* quit at once; `vmm run` then restores the terminal */
			r->stopping = true;
			quit_now(r);
			break;
		case SIGCHLD:
			reap(r, false);
			break;
		}
	}
}

static void loop(run *r)
{
	while (r->pid > 0) {
		struct pollfd p[9];
		int n = 0;
		int i_sig = n, i_con = -1, i_in = -1, i_err = -1, i_qmp = -1, i_ctl = -1, i_ck = -1;
		int i_fill = -1, i_ahead = -1;
		if (r->ahead && !ahead_wanted(r))
			ahead_stop(r);
		else if (!r->ahead && ahead_wanted(r))
			ahead_start(r);
		p[n++] = (struct pollfd){.fd = r->sigfd, .events = POLLIN};
		if (r->console >= 0) {
			i_con = n;
			p[n++] = (struct pollfd){.fd = r->console, .events = POLLIN};
		}
		if (r->console_in >= 0) {
			i_in = n;
			p[n++] = (struct pollfd){.fd = r->console_in, .events = POLLIN};
		}
		if (r->errpipe >= 0) {
			i_err = n;
			p[n++] = (struct pollfd){.fd = r->errpipe, .events = POLLIN};
		}
		if (r->qmp) {
			i_qmp = n;
			p[n++] = (struct pollfd){.fd = vmm_qmp_fd(r->qmp), .events = POLLIN};
		}
		if (r->ctl >= 0) {
			i_ctl = n;
			p[n++] = (struct pollfd){.fd = r->ctl, .events = POLLIN};
		}
		if (r->ckpt) {
			i_ck = n;
			p[n++] = (struct pollfd){.fd = vmm_ckpt_fd(r->ckpt), .events = POLLIN};
		}
		if (r->fill) {
			i_fill = n;
			p[n++] = (struct pollfd){.fd = vmm_chunk_fill_done_fd(r->fill),
						 .events = POLLIN};
		}
		if (r->ahead) {
			i_ahead = n;
			p[n++] =
			    (struct pollfd){.fd = vmm_chunk_ahead_fd(r->ahead), .events = POLLIN};
		}
		int timeout = -1;
		double now = vmm_now();
		if (r->stopping && !r->quit_sent)
			timeout = r->deadline > now ? (int)((r->deadline - now) * 1000) + 1 : 0;
		else if (r->quit_sent)
			timeout = r->kill_at > now ? (int)((r->kill_at - now) * 1000) + 1 : 0;
		int rc = poll(p, (nfds_t)n, timeout);
		if (rc < 0 && errno != EINTR)
			break;
		if (rc > 0) {
			if (p[i_sig].revents)
				handle_signal(r);
			if (i_con >= 0 && p[i_con].revents && r->console >= 0)
				relay_console_out(r);
			if (i_in >= 0 && p[i_in].revents && r->console_in >= 0)
				relay_console_in(r);
			if (i_err >= 0 && p[i_err].revents && r->errpipe >= 0)
				drain_stderr(r);
			bool ck = i_ck >= 0 && p[i_ck].revents;
			if (i_qmp >= 0 && p[i_qmp].revents && r->qmp) {
				json_t *ev;
				if (vmm_qmp_pump(r->qmp, NULL) < 0) {
					vmm_qmp_free(r->qmp); /* QEMU is going away */
					r->qmp = NULL;
				}
				while (r->qmp && (ev = vmm_qmp_next_event(r->qmp))) {
					if (r->ckpt) {
						vmm_ckpt_event(r->ckpt, ev);
						ck = true;
					}
					json_decref(ev);
				}
				if (!r->qmp)
					ck = r->ckpt != NULL;
			}
			if (ck)
				checkpoint_step(r);
			if (i_ctl >= 0 && p[i_ctl].revents && r->ctl >= 0)
				serve_control(r);
			if (i_fill >= 0 && p[i_fill].revents && r->fill &&
			    settle_memory(r, false) == 0)
				say(r,
				    "the VM's memory is restored (%.3f s after the resume began)",
				    vmm_now() - r->resume_start);
			if (r->ckpt_wait && !r->fill)
				checkpoint_after_fill(r);
			if (i_ahead >= 0 && p[i_ahead].revents && r->ahead)
				ahead_news(r);
		}
		now = vmm_now();
		if (r->stopping && !r->quit_sent && now >= r->deadline)
			quit_now(r);
		else if (r->quit_sent && r->pid > 0 && now >= r->kill_at)
			kill(r->pid, SIGKILL);
		reap(r, false);
	}
	ahead_stop(r);
	if (r->ckpt_wait)
		checkpoint_after_fill(r);
	if (r->ckpt) { /* QEMU is gone: the snapshot with it */
		vmm_qmp_free(r->qmp);
		r->qmp = NULL;
		checkpoint_step(r);
	}
	/* what QEMU said last */
	if (r->console >= 0) {
		fcntl(r->console, F_SETFL, O_NONBLOCK);
		relay_console_out(r);
	}
	if (r->errpipe >= 0)
		drain_stderr(r);
}

static int outcome_of(run *r, vmm_run_outcome *out, vmm_error **err)
{
	if (r->fill_error) /* QEMU was killed: its memory could not be restored */
		return vmm_error_set(err, VMM_EGENERIC,
				     "%s; found once the guest ran, so the VM is stopped and the "
				     "state spent",
				     r->fill_error->msg);
	if (r->suspended) {
		*out = VMM_RUN_SUSPENDED;
		return 0;
	}
	if (r->stopping) {
		*out = VMM_RUN_STOPPED;
		return 0;
	}
	if (WIFEXITED(r->status) && WEXITSTATUS(r->status) == 0) {
		*out = VMM_RUN_POWEROFF;
		return 0;
	}
	char why[64];
	if (WIFSIGNALED(r->status))
		snprintf(why, sizeof(why), "killed by signal %d (%s)", WTERMSIG(r->status),
			 strsignal(WTERMSIG(r->status)));
	else
		snprintf(why, sizeof(why), "exit status %d", WEXITSTATUS(r->status));
	if (r->errline[0])
		return vmm_error_set(err, VMM_EGENERIC, "QEMU exited unexpectedly (%s): %s", why,
				     r->errline);
	return vmm_error_set(err, VMM_EGENERIC, "QEMU exited unexpectedly (%s)", why);
}

/* --- vmm_vm_run ------------------------------------------------------------------- */

/*
 * Tart's rule: another running VM with our MAC means a new MAC.  Not for a
 * suspended VM: its guest remembers its MAC, and forks of one state share it;
 * each VM has a network of its own, so they do not collide (on a bridge they
 * would, so that case is refused).
 */
static int fix_mac(const vmm_home *h, vmm_bundle *b, const run *r, vmm_error **err)
{
	if (!vmm_bundle_mac_in_use(h, b->config->mac, b->dir, true))
		return 0;
	cleanup_free char *state = vmm_bundle_path(b, VMM_STATE_FILE);
	if (access(state, F_OK) == 0 || vmm_resumed_restorable(b->dir)) {
		if (r->o->net.bridged)
			return vmm_error_set(
			    err, VMM_EINVAL,
			    "a running VM has the MAC address %s of this suspended "
			    "VM: two of them cannot share a bridge (run it on the "
			    "default network)",
			    b->config->mac);
		return 0;
	}
	say(r, "There is already a running VM with the same MAC address!");
	say(r, "Resetting VM to assign a new MAC address...");
	vmm_mac_random(b->config->mac);
	return vmm_bundle_save_config(b, err);
}

static int block_signals(sigset_t *old, int *sigfd, vmm_error **err)
{
	sigset_t s;
	sigemptyset(&s);
	sigaddset(&s, SIGINT);
	sigaddset(&s, SIGTERM);
	sigaddset(&s, SIGHUP);
	sigaddset(&s, SIGUSR1);
	sigaddset(&s, SIGUSR2);
	sigaddset(&s, SIGQUIT);
	sigaddset(&s, SIGCHLD);
	if (sigprocmask(SIG_BLOCK, &s, old) < 0)
		return vmm_error_errno(err, errno, "sigprocmask");
	*sigfd = signalfd(-1, &s, SFD_CLOEXEC | SFD_NONBLOCK);
	if (*sigfd < 0) {
		int e = errno;
		sigprocmask(SIG_SETMASK, old, NULL);
		return vmm_error_errno(err, e, "signalfd");
	}
	return 0;
}

static void announce_vnc(run *r)
{
	json_t *v = NULL;
	if (!r->o->qemu.vnc || vmm_qmp_execute(r->qmp, "query-vnc", NULL, &v, NULL) < 0)
		return;
	const char *host = json_string_value(json_object_get(v, "host"));
	const char *port = json_string_value(json_object_get(v, "service"));
	if (host && port)
		say(r, "VNC server is running at vnc://%s:%s", host, port);
	json_decref(v);
}

/* Named shares (vm/devices.h) get their mount points in a tmp/ directory of this run. */
static int shares_dir(run *r, vmm_qemu_opts *qo, vmm_error **err)
{
	bool named = false;
	for (size_t i = 0; i < qo->ndirs; i++)
		named = named || qo->dirs[i].name;
	if (!named)
		return 0;
	if (vmm_home_mktemp(r->home, &r->shares_dir, &r->shares_lock, err) < 0)
		return -1;
	qo->shares_dir = r->shares_dir;
	return 0;
}

#define HUGE_PAGE (2ull << 20)

/* free_hugepages less resv_hugepages of the host's pool of 2 MiB pages */
static uint64_t huge_pages_free(void)
{
	const char *dir = "/sys/kernel/mm/hugepages/hugepages-2048kB";
	unsigned long long v[2] = {0, 0};
	const char *names[] = {"free_hugepages", "resv_hugepages"};
	for (size_t i = 0; i < ARRAY_SIZE(names); i++) {
		cleanup_free char *path = path_join(dir, names[i]);
		cleanup_free char *text = NULL;
		size_t len;
		char *end;
		if (vmm_read_file(path, 64, &text, &len, NULL) < 0)
			return 0;
		v[i] = strtoull(text, &end, 10);
		if (end == text)
			return 0;
	}
	return v[0] > v[1] ? v[0] - v[1] : 0;
}

/*
 * The guest's RAM: a memfd, gone with the last of vmm and QEMU however they
 * end.  VMM_HUGEPAGES=1 takes it from the host's pool of 2 MiB huge pages
 * (hugetlbfs), all of it at once: a snapshot of the running guest then
 * write-protects one entry per 2 MiB instead of one per 4 KiB, which is
 * most of its pause.  Where the pool is short, or the memory is not whole
 * huge pages, ordinary pages, and a notice says why.
 */
static int guest_ram(run *r, vmm_error **err)
{
	r->ram_size = vmm_state_ram_size(r->cfg->memory_size);
	const char *want = getenv("VMM_HUGEPAGES");
	if (want && strcmp(want, "1") == 0) {
		uint64_t need = r->ram_size / HUGE_PAGE, have = huge_pages_free();
		int fd = -1;
		if (r->ram_size % HUGE_PAGE)
			say(r,
			    "huge pages: %llu MiB of memory is not whole 2 MiB pages: "
			    "ordinary pages instead",
			    (unsigned long long)(r->ram_size >> 20));
		else if (have < need)
			say(r,
			    "huge pages: %llu needed, %llu free in the host's pool: "
			    "ordinary pages instead",
			    (unsigned long long)need, (unsigned long long)have);
		else if ((fd = memfd_create("vmm-guest-ram", MFD_CLOEXEC | MFD_HUGETLB)) < 0 ||
			 ftruncate(fd, (off_t)r->ram_size) < 0 ||
			 fallocate(fd, 0, 0, (off_t)r->ram_size) < 0) {
			say(r, "huge pages: %s: ordinary pages instead", strerror(errno));
			if (fd >= 0)
				close(fd);
			fd = -1;
		}
		if (fd >= 0) {
			r->ram = fd;
			r->huge = true;
			return 0;
		}
	}
	r->ram = memfd_create("vmm-guest-ram", MFD_CLOEXEC);
	if (r->ram < 0 || ftruncate(r->ram, (off_t)r->ram_size) < 0)
		return vmm_error_errno(err, errno, "guest memory of %llu MiB",
				       (unsigned long long)(r->ram_size >> 20));
	return 0;
}

/*
 * Whether the fill's writes into the memfd make 4 KiB pages: a transparent
 * huge page would make a whole 2 MiB present, zeros where the fill has not
 * written yet, and the guest would read them without a fault.  `advise`
 * does not apply to writes through the file; before Linux 6.4 khugepaged
 * could still collapse a range registered for missing pages.
 */
static bool shmem_small_pages(void)
{
	char *v = NULL;
	size_t n;
	if (vmm_read_file("/sys/kernel/mm/transparent_hugepage/shmem_enabled", 4096, &v, &n, NULL) <
	    0)
		return true; /* no THP in this kernel */
	bool small = strstr(v, "[never]") || strstr(v, "[deny]");
	if (!small && strstr(v, "[advise]")) {
		struct utsname u;
		int major = 0, minor = 0;
		small = uname(&u) == 0 && sscanf(u.release, "%d.%d", &major, &minor) == 2 &&
			(major > 6 || (major == 6 && minor >= 4));
	}
	free(v);
	return small;
}

/*
 * Whether this resume may run the guest before its RAM is all in
 * (vm/lazy.h), where QEMU's userfaultfd is at hand (uffd_ok): a state of
 * RAM chunks; VMM_LAZY_RESUME=0 says no (benchmarks measure both).
 */
static bool lazy_ok(const vmm_savefile_header *h)
{
	const char *want = getenv("VMM_LAZY_RESUME");
	return h && h->format == VMM_SAVEFILE_FORMAT && h->kind == VMM_SAVEFILE_KIND_MEMORY &&
	       !(want && strcmp(want, "0") == 0);
}

/*
 * Whether QEMU gets to make a userfaultfd for vmm (vm/lazy.h), for a lazy
 * resume and for snapshots (vm/cow.h): QEMU with vmm's preloaded library,
 * ordinary pages (a huge page could be seen half written).
 */
static bool uffd_ok(const run *r)
{
	size_t shim_size;
	vmm_uffd_shim(&shim_size);
	return !r->huge && r->cmd->drop && shim_size && shmem_small_pages();
}

/* Everything between holding the lock and QEMU's exit. */
static int run_locked(run *r, bool resume, vmm_run_outcome *outcome, vmm_error **err)
{
	cleanup_vmm_savefile_header vmm_savefile_header *h = NULL;
	cleanup_free char *state = path_join(r->dir, VMM_STATE_FILE);
	cleanup_free char *tart_state = path_join(r->dir, VMM_TART_STATE_FILE);
	if (!resume && access(tart_state, F_OK) == 0)
		return vmm_error_set(err, VMM_EINCOMPATIBLE,
				     "VM \"%s\" holds a suspended state from Tart "
				     "(state.vzvmsave) that QEMU cannot restore; `vmm stop %s` "
				     "discards it",
				     r->name, r->name);
	vmm_qemu_opts qo = r->o->qemu;
	qo.incoming = resume;
	qo.publish = r->o->net.publish;
	qo.npublish = r->o->net.npublish;
	/* a resumed guest has the agent's vsock device if its state has one */
	if (resume && vmm_savefile_read_header(&h, state, err) < 0)
		return -1;
	if (h)
		qo.vsock = vmm_qemu_model_vsock(h->model) ? VMM_VSOCK_REQUIRED : VMM_VSOCK_OFF;
	if (shares_dir(r, &qo, err) < 0)
		return -1;
	/* first with the user-mode network: every check before anything is set up */
	if (vmm_qemu_cmd_build(&r->cmd, r->dir, r->cfg, &qo, err) < 0)
		return -1;
	if (h && vmm_state_check(h, r->cmd, r->cfg, NULL, err) < 0)
		return -1;
	if (vmm_qemu_prepare_efivars(r->cmd, r->dir, err) < 0 ||
	    vmm_qemu_shares_prepare(r->cmd, err) < 0)
		return -1;
	vmm_net_opts no = r->o->net;
	no.mac = r->cfg->mac;
	if (h && vmm_qemu_model_user_net(h->model)) {
		/* QEMU's user-mode NAT saved itself in the state: only it can load it */
		if (no.bridged)
			return vmm_error_set(err, VMM_EINCOMPATIBLE,
					     "the state was saved on the user-mode network and "
					     "resumes only there, not with --net-bridged");
		if (!no.force_user)
			say(r, "The state was saved on the user-mode network: the VM resumes there "
			       "(`vmm ip` cannot answer; --publish reaches it)");
		no.force_user = true;
	}
	if (vmm_net_setup(&r->net, &no, err) < 0)
		return -1;
	if (vmm_net_notice(r->net))
		say(r, "%s", vmm_net_notice(r->net));
	if (vmm_net_get_mode(r->net) != VMM_NET_USER) {
		qo.tap = true;
		r->tap = vmm_net_take_tap(r->net);
		vmm_qemu_cmd_free(r->cmd);
		r->cmd = NULL;
		if (vmm_qemu_cmd_build(&r->cmd, r->dir, r->cfg, &qo, err) < 0)
			return -1;
	}
	if (listen_control(r, err) < 0 ||
	    vmm_agent_fwd_start(&r->agent, r->dirfd, r->cmd->vsock_cid, err) < 0)
		return -1;
	if (r->cmd->notice)
		say(r, "%s", r->cmd->notice);
	if (r->cmd->sandbox_notice)
		say(r, "%s", r->cmd->sandbox_notice);
	if (guest_ram(r, err) < 0)
		return -1;
	if (r->ahead_every > 0 && (r->huge || vmm_qemu_unsavable(r->cmd))) {
		say(r, "--save-ahead: %s",
		    r->huge ? "not with huge pages" : "the VM cannot be suspended");
		r->ahead_every = 0;
	}
	/* a saved RAM decompresses while QEMU starts */
	vmm_state_load *load = NULL;
	r->resume_start = vmm_now();
	if (resume && vmm_state_load_begin(&load, state, h, r->ram, err) < 0)
		return -1;
	if (uffd_ok(r))
		vmm_lazy_prepare(&r->lazy, &r->lazy_child);
	int spawned = spawn(r, err);
	if (r->lazy_child >= 0)
		close(steal_fd(r->lazy_child));
	if (r->lazy && spawned == 0 &&
	    vmm_lazy_attach(r->lazy, r->pid, r->ram, r->ram_size, NULL) < 0)
		vmm_lazy_free(steal_ptr(r->lazy)); /* then all of it before `cont` */
	r->lazy_resume = r->lazy && spawned == 0 && resume && lazy_ok(h) &&
			 vmm_lazy_register(r->lazy, NULL) == 0; /* else all of it before `cont` */
	if (r->lazy_resume)
		say(r, "the VM runs while its memory is restored");
	if (spawned < 0) {
		vmm_state_load_free(load);
		kill_and_reap(r);
		return -1;
	}
	close(r->tap);
	r->tap = -1;
	announce_vnc(r);
	int rc =
	    resume ? do_resume(r, h, load, err) : vmm_qmp_execute(r->qmp, "cont", NULL, NULL, err);
	if (rc < 0) {
		quit_now(r);
		wait_exit(r, QUIT_GRACE);
		return -1;
	}
	loop(r);
	return outcome_of(r, outcome, err);
}

int vmm_vm_run(const vmm_home *h, const char *name, const vmm_run_opts *o, vmm_run_outcome *outcome,
	       vmm_error **err)
{
	cleanup_vmm_bundle vmm_bundle *b = NULL;
	if (vmm_bundle_open(&b, h, name, err) < 0)
		return -1;
	run r = {.o = o,
		 .home = h,
		 .shares_lock = -1,
		 .name = name,
		 .dir = b->dir,
		 .dirfd = -1,
		 .console = -1,
		 .errpipe = -1,
		 .sigfd = -1,
		 .ctl = -1,
		 .tap = -1,
		 .ram = -1,
		 .ckpt_client = -1,
		 .base_fd = -1,
		 .lazy_child = -1,
		 .console_in = o->console_in,
		 .console_out = o->console_out};
	const char *ahead = getenv("VMM_SAVE_AHEAD");
	if (o->save_ahead) {
		r.ahead_every = o->save_ahead > 0 ? o->save_ahead : 0;
	} else if (ahead && *ahead) {
		char *end;
		errno = 0;
		r.ahead_every = strtod(ahead, &end);
		if (errno || *end || !(r.ahead_every >= 0 && r.ahead_every <= 86400))
			return vmm_error_set(
			    err, VMM_EINVAL,
			    "VMM_SAVE_AHEAD=%s: not a number of seconds (0 to 86400)", ahead);
	}
	vmm_vm_state st = vmm_bundle_state(b);
	if (st == VMM_STATE_RUNNING)
		return vmm_error_set(err, VMM_EALREADYRUNNING, "VM \"%s\" is already running!",
				     name);
	if (o->resume_only && st != VMM_STATE_SUSPENDED)
		return vmm_error_set(err, VMM_ENOTRUNNING, "VM \"%s\" is not suspended", name);
	if (fix_mac(h, b, &r, err) < 0)
		return -1;

	cleanup_close int lock = -1;
	if (vmm_bundle_dir_lock_as(b->dir, name, VMM_LOCK_RUN, &lock, err) < 0) {
		if (err && vmm_error_code(*err) == VMM_ERUNNING)
			return vmm_error_set(err, VMM_EALREADYRUNNING,
					     "VM \"%s\" is already running!", name);
		return -1;
	}
	if (vmm_bundle_dir_read_config(b->dir, lock, &r.cfg, NULL, NULL, err) < 0)
		return -1;
	/* the lock has settled what a killed run left (vm/resumed.h) */
	cleanup_free char *state = path_join(b->dir, VMM_STATE_FILE);
	bool resume = access(state, F_OK) == 0;
	if (o->resume_only && !resume) {
		vmm_config_free(r.cfg);
		return vmm_error_set(err, VMM_ENOTRUNNING, "VM \"%s\" is not suspended", name);
	}
	r.dirfd = open(b->dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (r.dirfd < 0) {
		vmm_config_free(r.cfg);
		return vmm_error_errno(err, errno, "open `%s`", b->dir);
	}
	sigset_t old;
	int rc = block_signals(&old, &r.sigfd, err);
	if (rc == 0) {
		rc = run_locked(&r, resume, outcome, err);
		kill_and_reap(&r);
		settle_memory(&r, true);
		vmm_lazy_free(steal_ptr(r.lazy));
		vmm_error_free(r.fill_error);
		struct signalfd_siginfo si;
		while (read(r.sigfd, &si, sizeof(si)) > 0)
			; /* drop what came in, e.g. the SIGCHLD of QEMU's exit */
		close(r.sigfd);
		sigprocmask(SIG_SETMASK, &old, NULL);
	}
	if (rc < 0 && resume && err && *err &&
	    ((*err)->code == VMM_EINCOMPATIBLE || (*err)->code == VMM_EFORMAT)) {
		cleanup_free char *msg = xstrdup((*err)->msg);
		vmm_error_set(err, (*err)->code,
			      "%s; the saved state is kept (`vmm stop %s` discards it)", msg, name);
	}
	if (rc < 0)
		vmm_error_wrap(err, "%s \"%s\"", resume ? "resume" : "run", name);
	if (r.ctl >= 0) {
		close(r.ctl);
		unlinkat(r.dirfd, VMM_CONTROL_SOCKET, 0);
	}
	if (r.console >= 0)
		close(r.console);
	if (r.errpipe >= 0)
		close(r.errpipe);
	if (r.tap >= 0)
		close(r.tap);
	vmm_chunk_base_free(r.base);
	if (r.base_fd >= 0) {
		close(r.base_fd);
		unlinkat(r.dirfd, RESUMED_ASIDE, 0); /* gone already if a suspend saved into it */
	}
	vmm_agent_fwd_stop(r.agent);
	vmm_qemu_shares_cleanup(r.cmd, r.shares_dir);
	if (r.shares_lock >= 0)
		close(r.shares_lock);
	free(r.shares_dir);
	vmm_net_free(r.net); /* QEMU is gone: nothing holds the VM's network any more */
	vmm_qmp_free(r.qmp);
	vmm_qemu_cmd_free(r.cmd);
	vmm_config_free(r.cfg);
	close(r.dirfd);
	/* done with the VM: others may see it stopped or suspended while the RAM is freed */
	close(steal_fd(lock));
	if (r.ram >= 0)
		close(r.ram);
	return rc;
}
