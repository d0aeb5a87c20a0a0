#include "vm/lazy.h"
#include "common/util.h"
#include "vm/shim/fdpass.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <linux/userfaultfd.h>
#include <sys/ioctl.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

#define PAGE 4096u

struct vmm_lazy {
	int sock;	      /* ours of the socket QEMU's library answers on */
	int uffd;	      /* QEMU's userfaultfd */
	uint64_t base, size;  /* the RAM in QEMU's address space */
	bool registered;      /* for missing pages: a lazy resume under way */
	bool wp;	      /* the kernel lets it write-protect the RAM (vm/cow.h) */
	vmm_chunk_fill *fill; /* borrowed */
	int qemu;	      /* a pidfd of QEMU, killed if a chunk cannot be restored */
	pthread_t th;
	bool serving;
	int stop[2]; /* a byte here stops the thread */
};

void vmm_lazy_prepare(vmm_lazy **out, int *child)
{
	*out = NULL;
	*child = -1;
	int dev = open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);
	if (dev < 0)
		return;
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0) {
		close(dev);
		return;
	}
	/* the device waits in the socket for QEMU's library to take it */
	int sent = vmm_fd_send(sv[0], dev);
	close(dev);
	if (sent < 0) {
		close(sv[0]);
		close(sv[1]);
		return;
	}
	vmm_lazy *l = xcalloc(1, sizeof(*l));
	l->sock = sv[0];
	l->uffd = -1;
	l->qemu = -1;
	l->stop[0] = l->stop[1] = -1;
	*out = l;
	*child = sv[1];
}

/* Where QEMU (pid) maps the file st, size bytes of it from its start; 0 if nowhere. */
static uint64_t find_mapping(pid_t pid, const struct stat *st, uint64_t size)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/maps", (int)pid);
	FILE *f = fopen(path, "re");
	if (!f)
		return 0;
	char line[512];
	uint64_t found = 0;
	while (!found && fgets(line, sizeof(line), f)) {
		uint64_t start, end, off, ino;
		unsigned maj, min;
		if (sscanf(line, "%" SCNx64 "-%" SCNx64 " %*s %" SCNx64 " %x:%x %" SCNu64, &start,
			   &end, &off, &maj, &min, &ino) == 6 &&
		    ino == st->st_ino && makedev(maj, min) == st->st_dev && off == 0 &&
		    end - start == size)
			found = start;
	}
	fclose(f);
	return found;
}

int vmm_lazy_attach(vmm_lazy *l, pid_t pid, int ram_fd, uint64_t size, vmm_error **err)
{
	l->uffd = vmm_fd_recv(l->sock);
	if (l->uffd < 0)
		return vmm_error_set(err, VMM_EGENERIC, "QEMU sent no userfaultfd");
	/* write protection of shared memory, for snapshots (vm/cow.h), where the kernel has it */
	struct uffdio_api api = {.api = UFFD_API, .features = UFFD_FEATURE_WP_HUGETLBFS_SHMEM};
	l->wp = ioctl(l->uffd, UFFDIO_API, &api) == 0 &&
		(api.features & UFFD_FEATURE_WP_HUGETLBFS_SHMEM);
	api = (struct uffdio_api){.api = UFFD_API};
	if (!l->wp && ioctl(l->uffd, UFFDIO_API, &api) < 0)
		return vmm_error_errno(err, errno, "userfaultfd");
	struct stat st;
	if (fstat(ram_fd, &st) < 0)
		return vmm_error_errno(err, errno, "guest memory");
	l->base = find_mapping(pid, &st, size);
	l->size = size;
	if (!l->base)
		return vmm_error_set(err, VMM_EGENERIC, "QEMU does not map the guest's memory");
	return 0;
}

int vmm_lazy_uffd(const vmm_lazy *l, uint64_t *base)
{
	if (!l || !l->wp || l->uffd < 0 || !l->base)
		return -1;
	*base = l->base;
	return l->uffd;
}

/* A fault at a: its page in, then QEMU on its way. */
static void serve_one(vmm_lazy *l, uint64_t a)
{
	bool data;
	if (vmm_chunk_fill_page(l->fill, a - l->base, &data) < 0) {
		/* no memory to give this fault, and QEMU waits for it (perhaps
		 * loading its state, before `vmm run` could notice): it goes */
		if (l->qemu >= 0)
			syscall(SYS_pidfd_send_signal, l->qemu, SIGKILL, NULL, 0);
		return;
	}
	if (!data) {
		struct uffdio_zeropage z = {.range = {.start = a, .len = PAGE}};
		int rc;
		while ((rc = ioctl(l->uffd, UFFDIO_ZEROPAGE, &z)) < 0 && errno == EAGAIN)
			z.zeropage = 0;
		if (rc == 0)
			return; /* and woken */
	}
	/* in the file now (or there already, EEXIST): the fault finds it */
	struct uffdio_range r = {.start = a, .len = PAGE};
	ioctl(l->uffd, UFFDIO_WAKE, &r);
}

void vmm_uffd_faults(int uffd, int stop, void (*on)(void *ctx, uint64_t addr, uint64_t flags),
		     void *ctx)
{
	for (;;) {
		struct pollfd p[2] = {{.fd = uffd, .events = POLLIN},
				      {.fd = stop, .events = POLLIN}};
		if (poll(p, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		if (p[1].revents)
			break;
		struct uffd_msg msg[16];
		ssize_t n = read(uffd, msg, sizeof(msg));
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			continue;
		if (n <= 0)
			break;
		for (size_t i = 0; i < (size_t)n / sizeof(msg[0]); i++)
			if (msg[i].event == UFFD_EVENT_PAGEFAULT)
				on(ctx, msg[i].arg.pagefault.address & ~(uint64_t)(PAGE - 1),
				   msg[i].arg.pagefault.flags);
	}
}

static void on_missing(void *ctx, uint64_t a, uint64_t flags)
{
	vmm_lazy *l = ctx;
	(void)flags;
	if (a >= l->base && a - l->base < l->size)
		serve_one(l, a);
}

static void *serve_main(void *arg)
{
	vmm_lazy *l = arg;
	vmm_uffd_faults(l->uffd, l->stop[0], on_missing, l);
	return NULL;
}

int vmm_lazy_register(vmm_lazy *l, vmm_error **err)
{
	struct uffdio_register reg = {.range = {.start = l->base, .len = l->size},
				      .mode = UFFDIO_REGISTER_MODE_MISSING};
	if (ioctl(l->uffd, UFFDIO_REGISTER, &reg) < 0)
		return vmm_error_errno(err, errno, "register the guest's memory");
	l->registered = true;
	uint64_t need = 1ull << _UFFDIO_WAKE | 1ull << _UFFDIO_ZEROPAGE;
	if ((reg.ioctls & need) != need) {
		vmm_lazy_end(l);
		return vmm_error_set(err, VMM_EGENERIC,
				     "the guest's memory cannot have zero pages");
	}
	return 0;
}

int vmm_lazy_serve(vmm_lazy *l, vmm_chunk_fill *f, pid_t qemu, vmm_error **err)
{
	l->qemu = (int)syscall(SYS_pidfd_open, qemu, 0);
	if (l->qemu < 0)
		return vmm_error_errno(err, errno, "pidfd_open");
	if (pipe2(l->stop, O_CLOEXEC) < 0)
		return vmm_error_errno(err, errno, "pipe");
	l->fill = f;
	if (pthread_create(&l->th, NULL, serve_main, l) != 0)
		return vmm_error_set(err, VMM_EGENERIC, "cannot start a thread");
	l->serving = true;
	return 0;
}

void vmm_lazy_end(vmm_lazy *l)
{
	if (!l)
		return;
	if (l->serving) {
		(void)!write(l->stop[1], "x", 1);
		pthread_join(l->th, NULL);
		l->serving = false;
	}
	if (l->registered) { /* wakes whatever still waits: ordinary faults from now on */
		struct uffdio_range r = {.start = l->base, .len = l->size};
		ioctl(l->uffd, UFFDIO_UNREGISTER, &r);
		l->registered = false;
	}
	if (l->qemu >= 0)
		close(steal_fd(l->qemu));
	if (l->stop[0] >= 0) {
		close(steal_fd(l->stop[0]));
		close(steal_fd(l->stop[1]));
	}
	l->fill = NULL;
}

void vmm_lazy_free(vmm_lazy *l)
{
	if (!l)
		return;
	vmm_lazy_end(l);
	if (l->uffd >= 0)
		close(l->uffd);
	close(l->sock);
	free(l);
}
