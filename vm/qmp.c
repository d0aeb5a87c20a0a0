#include "vm/qmp.h"
#include "common/util.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>
#include <sys/un.h>

/* A QMP line longer than this is not something QEMU would send. */
#define QMP_MAX_LINE (16u << 20)

struct vmm_qmp {
	int fd;
	double timeout;
	char *buf; /* owned: bytes read and not yet consumed */
	size_t len, cap;
	json_t *events; /* owned: array used as a FIFO */
	unsigned long next_id;
	bool eof;
	char version[32];
	char package[128];
};

void vmm_qmp_free(vmm_qmp *q)
{
	if (!q)
		return;
	if (q->fd >= 0)
		close(q->fd);
	free(q->buf);
	json_decref(q->events);
	free(q);
}

void vmm_qmp_set_timeout(vmm_qmp *q, double seconds)
{
	q->timeout = seconds;
}

int vmm_qmp_fd(const vmm_qmp *q)
{
	return q->fd;
}

const char *vmm_qmp_version(const vmm_qmp *q)
{
	return q->version;
}

const char *vmm_qmp_package(const vmm_qmp *q)
{
	return q->package;
}

int vmm_qmp_parse_line(const char *line, size_t len, json_t **out, vmm_error **err)
{
	json_error_t je;
	json_t *v = json_loadb(line, len, JSON_REJECT_DUPLICATES, &je);
	if (!v)
		return vmm_error_set(err, VMM_EFORMAT, "QMP: invalid JSON from QEMU: %s", je.text);
	if (!json_is_object(v)) {
		json_decref(v);
		return vmm_error_set(err, VMM_EFORMAT,
				     "QMP: QEMU sent something other than an object");
	}
	*out = v;
	return 0;
}

/* Receive more bytes; block up to `wait` seconds (0: don't block).  1 = got data, 0 = nothing. */
static int fill(vmm_qmp *q, double wait, vmm_error **err)
{
	if (q->eof)
		return vmm_error_set(err, VMM_ENOTRUNNING, "QMP: QEMU closed the connection");
	if (wait > 0) {
		struct pollfd p = {.fd = q->fd, .events = POLLIN};
		int ms = wait > 1e6 ? -1 : (int)ceil(wait * 1000);
		int r;
		do
			r = poll(&p, 1, ms);
		while (r < 0 && errno == EINTR);
		if (r < 0)
			return vmm_error_errno(err, errno, "QMP: poll");
		if (r == 0)
			return 0;
	}
	if (q->cap - q->len < 65536) {
		q->cap = q->cap ? q->cap * 2 : 131072;
		q->buf = xrealloc(q->buf, q->cap);
	}
	ssize_t n;
	do
		n = recv(q->fd, q->buf + q->len, q->cap - q->len - 1, MSG_DONTWAIT);
	while (n < 0 && errno == EINTR);
	if (n < 0) {
		if (errno == EAGAIN || errno == EWOULDBLOCK)
			return 0;
		if (errno == ECONNRESET) {
			q->eof = true;
			return vmm_error_set(err, VMM_ENOTRUNNING,
					     "QMP: QEMU closed the connection");
		}
		return vmm_error_errno(err, errno, "QMP: read");
	}
	if (n == 0) {
		q->eof = true;
		return vmm_error_set(err, VMM_ENOTRUNNING, "QMP: QEMU closed the connection");
	}
	q->len += (size_t)n;
	return 1;
}

/*
 * The next complete message.  With `block`, wait until q->timeout; without,
 * return 0 with *out NULL when nothing complete is buffered or readable.
 */
static int next_message(vmm_qmp *q, bool block, const char *what, json_t **out, vmm_error **err)
{
	*out = NULL;
	double deadline = vmm_now() + q->timeout;
	for (;;) {
		char *nl = q->len ? memchr(q->buf, '\n', q->len) : NULL;
		if (nl) {
			size_t l = (size_t)(nl - q->buf);
			json_t *v = NULL;
			int rc = 0;
			bool blank = strspn(q->buf, " \t\r") >= l;
			if (!blank)
				rc = vmm_qmp_parse_line(q->buf, l, &v, err);
			memmove(q->buf, nl + 1, q->len - l - 1);
			q->len -= l + 1;
			if (rc < 0)
				return -1;
			if (blank)
				continue;
			*out = v;
			return 0;
		}
		if (q->len > QMP_MAX_LINE)
			return vmm_error_set(err, VMM_EFORMAT, "QMP: line from QEMU is too long");
		double left = block ? deadline - vmm_now() : 0;
		if (block && left <= 0)
			return vmm_error_set(err, VMM_ETIMEOUT,
					     "QMP %s: QEMU did not answer within %.0f s", what,
					     q->timeout);
		int r = fill(q, block ? left : 0, err);
		if (r < 0)
			return -1;
		if (r == 0 && !block)
			return 0;
	}
}

static void queue_event(vmm_qmp *q, json_t *ev)
{
	/* a client that never drains events must not grow without bound */
	if (json_array_size(q->events) >= 1024)
		json_array_remove(q->events, 0);
	json_array_append_new(q->events, ev);
}

static int send_msg(vmm_qmp *q, const char *text, int fd, vmm_error **err)
{
	size_t len = strlen(text), off = 0;
	while (off < len) {
		struct iovec iov = {.iov_base = (char *)text + off, .iov_len = len - off};
		union {
			char buf[CMSG_SPACE(sizeof(int))];
			struct cmsghdr align;
		} u;
		struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1};
		if (fd >= 0 && off == 0) {
			memset(&u, 0, sizeof(u));
			m.msg_control = u.buf;
			m.msg_controllen = sizeof(u.buf);
			struct cmsghdr *c = CMSG_FIRSTHDR(&m);
			c->cmsg_level = SOL_SOCKET;
			c->cmsg_type = SCM_RIGHTS;
			c->cmsg_len = CMSG_LEN(sizeof(int));
			memcpy(CMSG_DATA(c), &fd, sizeof(int));
		}
		ssize_t n = sendmsg(q->fd, &m, MSG_NOSIGNAL);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EPIPE || errno == ECONNRESET)
				return vmm_error_set(err, VMM_ENOTRUNNING,
						     "QMP: QEMU closed the connection");
			return vmm_error_errno(err, errno, "QMP: write");
		}
		off += (size_t)n;
	}
	return 0;
}

static int execute(vmm_qmp *q, const char *cmd, json_t *args, int fd, json_t **ret, vmm_error **err)
{
	if (ret)
		*ret = NULL;
	unsigned long id = ++q->next_id;
	json_t *req = json_pack("{s:s, s:i}", "execute", cmd, "id", (json_int_t)id);
	if (args)
		json_object_set_new(req, "arguments", args);
	char *text = json_dumps(req, JSON_COMPACT);
	json_decref(req);
	if (!text)
		abort();
	cleanup_free char *line = xasprintf("%s\n", text);
	free(text);
	if (send_msg(q, line, fd, err) < 0)
		return vmm_error_wrap(err, "%s", cmd);
	for (;;) {
		json_t *m = NULL;
		if (next_message(q, true, cmd, &m, err) < 0)
			return vmm_error_wrap(err, "%s", cmd);
		if (json_object_get(m, "event")) {
			queue_event(q, m);
			continue;
		}
		json_t *mid = json_object_get(m, "id");
		if (!json_is_integer(mid) || (unsigned long)json_integer_value(mid) != id) {
			json_decref(m); /* a late answer to a command that timed out */
			continue;
		}
		json_t *e = json_object_get(m, "error");
		if (e) {
			const char *desc = json_string_value(json_object_get(e, "desc"));
			vmm_error_set(err, VMM_EGENERIC, "QMP %s: %s", cmd, desc ? desc : "error");
			json_decref(m);
			return -1;
		}
		if (ret) {
			*ret = json_incref(json_object_get(m, "return"));
			if (!*ret)
				*ret = json_object();
		}
		json_decref(m);
		return 0;
	}
}

int vmm_qmp_execute(vmm_qmp *q, const char *cmd, json_t *args, json_t **ret, vmm_error **err)
{
	return execute(q, cmd, args, -1, ret, err);
}

int vmm_qmp_execute_fd(vmm_qmp *q, const char *cmd, json_t *args, int fd, json_t **ret,
		       vmm_error **err)
{
	return execute(q, cmd, args, fd, ret, err);
}

int vmm_qmp_pump(vmm_qmp *q, vmm_error **err)
{
	for (;;) {
		json_t *m = NULL;
		if (next_message(q, false, "event", &m, err) < 0)
			return -1;
		if (!m)
			return 0;
		if (json_object_get(m, "event"))
			queue_event(q, m);
		else
			json_decref(m);
	}
}

json_t *vmm_qmp_next_event(vmm_qmp *q)
{
	if (json_array_size(q->events) == 0)
		return NULL;
	json_t *e = json_incref(json_array_get(q->events, 0));
	json_array_remove(q->events, 0);
	return e;
}

int vmm_qmp_open_fd(vmm_qmp **out, int fd, double timeout, vmm_error **err)
{
	vmm_qmp *q = xcalloc(1, sizeof(*q));
	q->fd = fd;
	q->timeout = timeout > 0 ? timeout : 30;
	q->events = json_array();
	json_t *g = NULL;
	if (next_message(q, true, "greeting", &g, err) < 0) {
		vmm_qmp_free(q);
		return -1;
	}
	json_t *v = json_object_get(json_object_get(g, "QMP"), "version");
	if (!v) {
		json_decref(g);
		vmm_qmp_free(q);
		return vmm_error_set(err, VMM_EFORMAT, "QMP: the socket does not speak QMP");
	}
	json_t *qv = json_object_get(v, "qemu");
	snprintf(q->version, sizeof(q->version), "%d.%d.%d",
		 (int)json_integer_value(json_object_get(qv, "major")),
		 (int)json_integer_value(json_object_get(qv, "minor")),
		 (int)json_integer_value(json_object_get(qv, "micro")));
	const char *pkg = json_string_value(json_object_get(v, "package"));
	snprintf(q->package, sizeof(q->package), "%s", pkg ? pkg : "");
	json_decref(g);
	if (vmm_qmp_execute(q, "qmp_capabilities", NULL, NULL, err) < 0) {
		vmm_qmp_free(q);
		return -1;
	}
	*out = q;
	return 0;
}

int vmm_qmp_connect(vmm_qmp **out, const char *dir, const char *name, double timeout,
		    vmm_error **err)
{
	cleanup_close int dfd = open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0)
		return vmm_error_errno(err, errno, "open `%s`", dir);
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	int l = snprintf(sa.sun_path, sizeof(sa.sun_path), "/proc/self/fd/%d/%s", dfd, name);
	if (l < 0 || (size_t)l >= sizeof(sa.sun_path))
		return vmm_error_set(err, VMM_EINVAL, "socket name `%s` is too long", name);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return vmm_error_errno(err, errno, "socket");
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		int e = errno;
		close(fd);
		if (e == ENOENT || e == ECONNREFUSED)
			return vmm_error_set(err, VMM_ENOTRUNNING, "`%s/%s`: QEMU is not listening",
					     dir, name);
		return vmm_error_errno(err, e, "connect `%s/%s`", dir, name);
	}
	return vmm_qmp_open_fd(out, fd, timeout, err);
}
