#include "vm/agent.h"
#include "common/util.h"
#include "vm/agentpb.h"
#include "vm/bundle.h"
#include "vm/grpc.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <linux/vm_sockets.h>
#include <sys/ioctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/un.h>

/* --- the forwarder in `vmm run` ------------------------------------------------------ */

#define MAX_CONNS 32
#define BUF_BYTES 65536

typedef struct half {
	uint8_t b[BUF_BYTES];
	size_t off, len;
	bool eof, shut; /* read side saw EOF; write side shut down after it drained */
} half;

typedef struct conn {
	int c, g;      /* the client on control.sock, the guest's agent */
	half up, down; /* client → guest, guest → client */
} conn;

struct vmm_agent_fwd {
	pthread_t thread;
	int lfd, stop[2], dirfd;
	uint32_t cid;
	char *target; /* owned: $VMM_AGENT_FORWARD, or NULL for vsock */
	conn *conns[MAX_CONNS];
};

static int sockaddr_in_dir(struct sockaddr_un *sa, int dirfd)
{
	memset(sa, 0, sizeof(*sa));
	sa->sun_family = AF_UNIX;
	int l = snprintf(sa->sun_path, sizeof(sa->sun_path), "/proc/self/fd/%d/%s", dirfd,
			 VMM_AGENT_SOCKET);
	return l < 0 || (size_t)l >= sizeof(sa->sun_path) ? -1 : 0;
}

/* A connection to the agent: vsock (cid, 8080), or the Unix socket at f->target. */
static int dial(const vmm_agent_fwd *f)
{
	int fd;
	if (f->target) {
		struct sockaddr_un sa = {.sun_family = AF_UNIX};
		if (strlen(f->target) >= sizeof(sa.sun_path))
			return -1;
		strcpy(sa.sun_path, f->target);
		fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
			close(fd);
			return -1;
		}
	} else {
		struct sockaddr_vm sv = {
		    .svm_family = AF_VSOCK, .svm_cid = f->cid, .svm_port = VMM_AGENT_VSOCK_PORT};
		fd = socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (fd >= 0 && connect(fd, (struct sockaddr *)&sv, sizeof(sv)) < 0) {
			close(fd);
			return -1;
		}
	}
	if (fd >= 0)
		fcntl(fd, F_SETFL, O_NONBLOCK);
	return fd;
}

static void conn_close(vmm_agent_fwd *f, size_t i)
{
	close(f->conns[i]->c);
	close(f->conns[i]->g);
	free(f->conns[i]);
	f->conns[i] = NULL;
}

static void accept_one(vmm_agent_fwd *f)
{
	int c = accept4(f->lfd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
	if (c < 0)
		return;
	size_t slot = MAX_CONNS;
	for (size_t i = 0; i < MAX_CONNS && slot == MAX_CONNS; i++)
		if (!f->conns[i])
			slot = i;
	int g = slot < MAX_CONNS ? dial(f) : -1;
	if (g < 0) {
		close(c); /* the client sees the connection closed: no agent */
		return;
	}
	conn *k = xcalloc(1, sizeof(*k));
	k->c = c;
	k->g = g;
	f->conns[slot] = k;
}

/* Move what can be moved from `from` through h to `to`; -1 when the pair is broken. */
static int pump(int from, half *h, int to)
{
	if (!h->eof && h->len < BUF_BYTES) {
		ssize_t n = read(from, h->b + h->len, BUF_BYTES - h->len);
		if (n > 0)
			h->len += (size_t)n;
		else if (n == 0)
			h->eof = true;
		else if (errno != EAGAIN && errno != EINTR)
			return -1;
	}
	if (h->off < h->len) {
		ssize_t n = send(to, h->b + h->off, h->len - h->off, MSG_NOSIGNAL);
		if (n > 0)
			h->off += (size_t)n;
		else if (n < 0 && errno != EAGAIN && errno != EINTR)
			return -1;
		if (h->off == h->len)
			h->off = h->len = 0;
	}
	if (h->eof && h->off == h->len && !h->shut) {
		shutdown(to, SHUT_WR);
		h->shut = true;
	}
	return 0;
}

static short events(const half *in, const half *out)
{
	return (short)((!in->eof && in->len < BUF_BYTES ? POLLIN : 0) |
		       (out->off < out->len ? POLLOUT : 0));
}

static void *fwd_thread(void *arg)
{
	vmm_agent_fwd *f = arg;
	for (;;) {
		struct pollfd p[2 + 2 * MAX_CONNS];
		size_t idx[MAX_CONNS];
		nfds_t n = 0;
		p[n++] = (struct pollfd){.fd = f->stop[0], .events = POLLIN};
		p[n++] = (struct pollfd){.fd = f->lfd, .events = POLLIN};
		for (size_t i = 0; i < MAX_CONNS; i++) {
			conn *k = f->conns[i];
			if (!k)
				continue;
			idx[(n - 2) / 2] = i;
			p[n++] = (struct pollfd){.fd = k->c, .events = events(&k->up, &k->down)};
			p[n++] = (struct pollfd){.fd = k->g, .events = events(&k->down, &k->up)};
		}
		if (poll(p, n, -1) < 0 && errno != EINTR)
			break;
		if (p[0].revents)
			break;
		if (p[1].revents)
			accept_one(f);
		for (nfds_t j = 2; j < n; j += 2) {
			if (!p[j].revents && !p[j + 1].revents)
				continue;
			size_t i = idx[(j - 2) / 2];
			conn *k = f->conns[i];
			if (pump(k->c, &k->up, k->g) < 0 || pump(k->g, &k->down, k->c) < 0 ||
			    (k->up.shut && k->down.shut))
				conn_close(f, i);
		}
	}
	return NULL;
}

int vmm_agent_fwd_start(vmm_agent_fwd **out, int dirfd, uint32_t cid, vmm_error **err)
{
	*out = NULL;
	const char *target = getenv("VMM_AGENT_FORWARD");
	if (!cid && !(target && *target))
		return 0;
	struct sockaddr_un sa;
	if (sockaddr_in_dir(&sa, dirfd) < 0)
		return vmm_error_set(err, VMM_EINVAL, "control socket path is too long");
	unlinkat(dirfd, VMM_AGENT_SOCKET, 0); /* left by a run that was killed: we hold the lock */
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return vmm_error_errno(err, errno, "socket");
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, 16) < 0) {
		int e = errno;
		close(fd);
		return vmm_error_errno(err, e, "listen on %s", VMM_AGENT_SOCKET);
	}
	vmm_agent_fwd *f = xcalloc(1, sizeof(*f));
	f->lfd = fd;
	f->dirfd = dirfd;
	f->cid = cid;
	f->target = target && *target ? xstrdup(target) : NULL;
	int e = 0;
	if (pipe2(f->stop, O_CLOEXEC) < 0)
		e = errno;
	else if ((e = pthread_create(&f->thread, NULL, fwd_thread, f)) != 0) {
		close(f->stop[0]);
		close(f->stop[1]);
	}
	if (e) {
		close(fd);
		unlinkat(dirfd, VMM_AGENT_SOCKET, 0);
		free(f->target);
		free(f);
		return vmm_error_errno(err, e, "start the guest agent's forwarder");
	}
	*out = f;
	return 0;
}

void vmm_agent_fwd_stop(vmm_agent_fwd *f)
{
	if (!f)
		return;
	(void)!write(f->stop[1], "x", 1);
	pthread_join(f->thread, NULL);
	for (size_t i = 0; i < MAX_CONNS; i++)
		if (f->conns[i])
			conn_close(f, i);
	close(f->lfd);
	unlinkat(f->dirfd, VMM_AGENT_SOCKET, 0);
	close(f->stop[0]);
	close(f->stop[1]);
	free(f->target);
	free(f);
}

/* --- the clients: exec and ResolveIP ---------------------------------------------------- */

#define CONNECT_HINT ", is the Tart Guest Agent running?"

static int connect_failed(vmm_error **err, const char *why)
{
	return vmm_error_set(
	    err, VMM_EGENERIC,
	    "Failed to connect to the VM using its control socket: %s" CONNECT_HINT, why);
}

/* A connection to running VM `name`'s control.sock; *running says whether it runs. */
static int open_agent(const vmm_home *h, const char *name, int *out, bool *running, vmm_error **err)
{
	cleanup_vmm_bundle vmm_bundle *b = NULL;
	if (vmm_bundle_open(&b, h, name, err) < 0)
		return -1;
	*running = vmm_bundle_dir_running_pid(b->dir) > 0;
	if (!*running)
		return vmm_error_set(err, VMM_ENOTRUNNING, "VM \"%s\" is not running", name);
	cleanup_close int dirfd = open(b->dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
	struct sockaddr_un sa;
	if (dirfd < 0)
		return vmm_error_errno(err, errno, "open `%s`", b->dir);
	if (sockaddr_in_dir(&sa, dirfd) < 0)
		return vmm_error_set(err, VMM_EINVAL, "control socket path is too long");
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return vmm_error_errno(err, errno, "socket");
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		int e = errno;
		close(fd);
		return connect_failed(err, e == ENOENT ? "the VM has no control socket "
							 "(no vsock device for the agent)"
						       : strerror(e));
	}
	*out = fd;
	return 0;
}

/* What a call that ended without its answer says. */
static int call_failed(const vmm_grpc *g, vmm_error **err)
{
	int st;
	const char *msg;
	if (!vmm_grpc_done(g, &st, &msg))
		return vmm_error_set(err, VMM_ETIMEOUT, "the guest agent did not answer");
	if (!vmm_grpc_heard(g))
		return connect_failed(err, *msg ? msg : "the connection was closed");
	if (st > 0)
		return vmm_error_set(err, VMM_EGENERIC, "the guest agent: %s (gRPC status %d)", msg,
				     st);
	return vmm_error_set(err, VMM_EGENERIC, "the guest agent: %s",
			     *msg ? msg : "the call ended without an answer");
}

typedef struct exec_ctx {
	const vmm_agent_exec_opts *o;
	bool exited, bad;
	int code, write_errno;
} exec_ctx;

static void exec_message(void *ctx, const uint8_t *msg, size_t len)
{
	exec_ctx *x = ctx;
	vmm_pb_exec_response r;
	if (x->exited || x->bad)
		return;
	if (vmm_pb_exec_response_parse(msg, len, &r) < 0) {
		x->bad = true;
		return;
	}
	int fd = r.kind == VMM_PB_EXEC_STDOUT ? x->o->out_fd : x->o->err_fd;
	switch (r.kind) {
	case VMM_PB_EXEC_STDOUT:
	case VMM_PB_EXEC_STDERR:
		if (!x->write_errno && vmm_write_all(fd, r.data, r.len) < 0)
			x->write_errno = errno;
		break;
	case VMM_PB_EXEC_EXIT:
		x->exited = true;
		x->code = r.code;
		break;
	case VMM_PB_EXEC_NONE:
		break;
	}
}

static void term_size(int fd, uint32_t *rows, uint32_t *cols)
{
	struct winsize ws;
	if (fd >= 0 && ioctl(fd, TIOCGWINSZ, &ws) == 0 && ws.ws_row && ws.ws_col) {
		*rows = ws.ws_row;
		*cols = ws.ws_col;
	} else {
		*rows = 24;
		*cols = 80;
	}
}

static void send_msg(vmm_grpc *g, vmm_pb_buf *b, bool last)
{
	vmm_grpc_send(g, b->p, b->len, last);
	free(b->p);
	*b = (vmm_pb_buf){0};
}

/* Standard input while the agent keeps up with it (1 MiB queued at most). */
static void forward_stdin(vmm_grpc *g, const vmm_agent_exec_opts *o, bool *in_eof)
{
	static uint8_t buf[65536];
	ssize_t n;
	do
		n = read(o->in_fd, buf, sizeof(buf));
	while (n < 0 && errno == EINTR);
	if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
		return;
	vmm_pb_buf b = {0};
	vmm_pb_exec_stdin(&b, buf, n > 0 ? (size_t)n : 0); /* an empty chunk is EOF */
	*in_eof = n <= 0;
	send_msg(g, &b, false);
}

static int exec_loop(vmm_grpc *g, exec_ctx *x, int sigfd, vmm_error **err)
{
	const vmm_agent_exec_opts *o = x->o;
	bool in_eof = !o->interactive;
	int st;
	const char *msg;
	if (vmm_grpc_io(g, err) < 0)
		return -1;
	while (!x->exited && !x->bad && !x->write_errno && !vmm_grpc_done(g, &st, &msg)) {
		struct pollfd p[3];
		nfds_t n = 0;
		int i_in = -1, i_sig = -1;
		p[n++] = (struct pollfd){
		    .fd = vmm_grpc_fd(g),
		    .events = (short)(POLLIN | (vmm_grpc_want_write(g) ? POLLOUT : 0))};
		if (!in_eof && vmm_grpc_pending(g) < (1u << 20)) {
			i_in = (int)n;
			p[n++] = (struct pollfd){.fd = o->in_fd, .events = POLLIN};
		}
		if (sigfd >= 0) {
			i_sig = (int)n;
			p[n++] = (struct pollfd){.fd = sigfd, .events = POLLIN};
		}
		if (poll(p, n, -1) < 0 && errno != EINTR)
			return vmm_error_errno(err, errno, "poll");
		/* a resize before the input typed after it */
		if (i_sig >= 0 && p[i_sig].revents) {
			struct signalfd_siginfo si;
			while (read(sigfd, &si, sizeof(si)) == (ssize_t)sizeof(si))
				;
			uint32_t rows, cols;
			term_size(o->term_fd, &rows, &cols);
			vmm_pb_buf b = {0};
			vmm_pb_exec_resize(&b, rows, cols);
			send_msg(g, &b, false);
		}
		if (i_in >= 0 && p[i_in].revents)
			forward_stdin(g, o, &in_eof);
		if (vmm_grpc_io(g, err) < 0)
			return -1;
	}
	if (x->bad)
		return vmm_error_set(err, VMM_EFORMAT, "the guest agent sent a malformed message");
	if (x->write_errno)
		return vmm_error_errno(err, x->write_errno, "write the command's output");
	if (x->exited)
		return 0;
	vmm_grpc_done(g, &st, &msg);
	if (st == 0) { /* the call ended well without an exit code: Tart exits 0 */
		x->code = 0;
		return 0;
	}
	return call_failed(g, err);
}

int vmm_agent_exec(const vmm_home *h, const char *name, const vmm_agent_exec_opts *o,
		   int *exit_code, vmm_error **err)
{
	int fd;
	bool running;
	if (open_agent(h, name, &fd, &running, err) < 0)
		return -1;
	exec_ctx x = {.o = o};
	vmm_grpc *g = NULL;
	if (vmm_grpc_start(&g, fd, "/Agent/Exec", 0, exec_message, &x, err) < 0)
		return -1;
	vmm_pb_command c = {.name = o->argv[0],
			    .args = o->argv + 1,
			    .nargs = o->argc - 1,
			    .interactive = o->interactive,
			    .tty = o->tty,
			    .has_size = o->tty};
	if (o->tty)
		term_size(o->term_fd, &c.rows, &c.cols);
	vmm_pb_buf b = {0};
	vmm_pb_exec_command(&b, &c);
	send_msg(g, &b, false);

	/* -t: the terminal's new size after each SIGWINCH */
	sigset_t winch, old;
	sigemptyset(&winch);
	sigaddset(&winch, SIGWINCH);
	int sigfd = -1;
	if (o->tty && sigprocmask(SIG_BLOCK, &winch, &old) == 0)
		sigfd = signalfd(-1, &winch, SFD_CLOEXEC | SFD_NONBLOCK);
	int rc = exec_loop(g, &x, sigfd, err);
	if (o->tty) {
		if (sigfd >= 0)
			close(sigfd);
		sigprocmask(SIG_SETMASK, &old, NULL);
	}
	vmm_grpc_free(g);
	if (rc == 0)
		*exit_code = x.code;
	return rc;
}

static void ip_message(void *ctx, const uint8_t *msg, size_t len)
{
	char **ip = ctx;
	if (*ip)
		return;
	if (vmm_pb_resolve_ip_response_parse(msg, len, ip) < 0)
		*ip = NULL;
}

/* One ResolveIP call with Tart's 1 s deadline; *ip set on success. */
static void resolve_once(const vmm_home *h, const char *name, char **ip, bool *running)
{
	int fd;
	if (open_agent(h, name, &fd, running, NULL) < 0)
		return;
	vmm_grpc *g = NULL;
	char *got = NULL;
	if (vmm_grpc_start(&g, fd, "/Agent/ResolveIP", 1000, ip_message, &got, NULL) < 0)
		return;
	vmm_grpc_send(g, NULL, 0, true);
	double end = vmm_now() + 1.0;
	int st = -1;
	const char *msg;
	while (vmm_grpc_io(g, NULL) == 0 && !vmm_grpc_done(g, &st, &msg) && vmm_now() < end) {
		struct pollfd p = {.fd = vmm_grpc_fd(g),
				   .events =
				       (short)(POLLIN | (vmm_grpc_want_write(g) ? POLLOUT : 0))};
		int ms = (int)((end - vmm_now()) * 1000) + 1;
		if (poll(&p, 1, ms > 0 ? ms : 0) < 0 && errno != EINTR)
			break;
	}
	if (vmm_grpc_done(g, &st, &msg) && st == 0 && got && *got)
		*ip = steal_ptr(got);
	free(got);
	vmm_grpc_free(g);
}

int vmm_agent_resolve_ip(const vmm_home *h, const char *name, double wait, char **ip,
			 vmm_error **err)
{
	cleanup_vmm_bundle vmm_bundle *b = NULL;
	if (vmm_bundle_open(&b, h, name, err) < 0)
		return -1;
	double end = vmm_now() + wait;
	bool running = false;
	*ip = NULL;
	for (;;) {
		resolve_once(h, name, ip, &running);
		if (*ip)
			return 0;
		if (vmm_now() >= end)
			break;
		usleep(1000000);
	}
	running = vmm_bundle_dir_running_pid(b->dir) > 0;
	return vmm_error_set(err, VMM_EGENERIC,
			     "no IP address found%s (also make sure that Guest agent for Tart is "
			     "running inside of a VM)",
			     running ? "" : ", is your VM running?");
}
