/*
 * One descriptor over a Unix socket (SCM_RIGHTS), for vm/lazy.c and the
 * library preloaded into QEMU (uffd_preload.c), which is built on its own:
 * hence static inline, and nothing but libc.
 */
#ifndef VMM_VM_SHIM_FDPASS_H
#define VMM_VM_SHIM_FDPASS_H

#include <string.h>
#include <sys/socket.h>

/* Send fd with one byte; 0 or -1 (errno). */
static inline int vmm_fd_send(int sock, int fd)
{
	char one = 0;
	struct iovec iov = {.iov_base = &one, .iov_len = 1};
	union {
		struct cmsghdr h;
		char buf[CMSG_SPACE(sizeof(int))];
	} u;
	memset(&u, 0, sizeof(u));
	struct msghdr m = {.msg_iov = &iov,
			   .msg_iovlen = 1,
			   .msg_control = u.buf,
			   .msg_controllen = sizeof(u.buf)};
	struct cmsghdr *c = CMSG_FIRSTHDR(&m);
	c->cmsg_level = SOL_SOCKET;
	c->cmsg_type = SCM_RIGHTS;
	c->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(c), &fd, sizeof(int));
	return sendmsg(sock, &m, MSG_NOSIGNAL) == 1 ? 0 : -1;
}

/* A descriptor waiting on sock (close-on-exec), or -1 if none is there now. */
static inline int vmm_fd_recv(int sock)
{
	char one;
	struct iovec iov = {.iov_base = &one, .iov_len = 1};
	union {
		struct cmsghdr h;
		char buf[CMSG_SPACE(sizeof(int))];
	} u;
	struct msghdr m = {.msg_iov = &iov,
			   .msg_iovlen = 1,
			   .msg_control = u.buf,
			   .msg_controllen = sizeof(u.buf)};
	if (recvmsg(sock, &m, MSG_DONTWAIT | MSG_CMSG_CLOEXEC) != 1)
		return -1;
	struct cmsghdr *c = CMSG_FIRSTHDR(&m);
	if (!c || c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS ||
	    c->cmsg_len != CMSG_LEN(sizeof(int)))
		return -1;
	int fd;
	memcpy(&fd, CMSG_DATA(c), sizeof(int));
	return fd;
}

#endif
