/*
 * What QEMU sends on the QMP socket, read by vmm's own reader (vm/qmp.c):
 * the greeting, the answer to qmp_capabilities, events, the answer to a
 * command, in whatever pieces the socket delivers them (the first input
 * byte sets the piece size).  Exercises the framing (lines split across
 * reads, blank and overlong lines, EOF mid-line), the id matching and the
 * event queue, not only jansson: nothing may crash, leak or hang.
 */
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>

#include "vm/qmp.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct feed {
	int fd;
	const uint8_t *data;
	size_t size, piece;
} feed;

static void *writer(void *arg)
{
	feed *f = arg;
	for (size_t off = 0; off < f->size;) {
		size_t n = f->size - off < f->piece ? f->size - off : f->piece;
		ssize_t w = send(f->fd, f->data + off, n, MSG_NOSIGNAL);
		if (w <= 0)
			break;
		off += (size_t)w;
		sched_yield(); /* let the reader see a partial line */
	}
	shutdown(f->fd, SHUT_WR); /* then EOF: no test waits for a timeout */
	return NULL;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
		return 0;
	feed f = {
	    .fd = sv[1], .data = data + 1, .size = size - 1, .piece = (size_t)data[0] % 97 + 1};
	pthread_t t;
	if (pthread_create(&t, NULL, writer, &f) != 0) {
		close(sv[0]);
		close(sv[1]);
		return 0;
	}
	vmm_qmp *q = NULL;
	vmm_error *err = NULL;
	if (vmm_qmp_open_fd(&q, sv[0], 5, &err) == 0) { /* owns sv[0] from here */
		json_t *ret = NULL;
		if (vmm_qmp_execute(q, "query-status", NULL, &ret, &err) == 0)
			json_decref(ret);
		vmm_error_free(err);
		err = NULL;
		while (vmm_qmp_pump(q, &err) == 0) {
			json_t *ev;
			int n = 0;
			while ((ev = vmm_qmp_next_event(q))) {
				json_decref(ev);
				n++;
			}
			if (n == 0)
				break;
		}
		vmm_qmp_free(q);
	}
	vmm_error_free(err);
	pthread_join(t, NULL);
	close(sv[1]);
	return 0;
}
