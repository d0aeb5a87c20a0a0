/*
 * Preloaded into an unprivileged QEMU (DESIGN.md §8b): its userfaultfd(2)
 * through /dev/userfaultfd.
 *
 * QEMU's background snapshot (memory saved while the guest runs) needs a
 * userfaultfd that catches the kernel's faults too.  The system call gives
 * one only to a process with CAP_SYS_PTRACE where
 * vm.unprivileged_userfaultfd is 0, and QEMU 7.2 knows no other way.  Since
 * Linux 6.1 whoever holds an open /dev/userfaultfd may ask it for one
 * (USERFAULTFD_IOC_NEW); the right is checked when the device is opened.
 * `vmm run`, as root, opens it and hands it to QEMU (QMP add-fd) for the
 * length of a snapshot only.  This library, QEMU's LD_PRELOAD, turns a
 * refused userfaultfd(2) into that ioctl on the device QEMU holds, if it
 * holds one.  Everything else goes to libc's syscall(2) unchanged.
 *
 * For a lazy resume (vm/lazy.h) vmm queues /dev/userfaultfd on a socket
 * that QEMU gets as descriptor 5 (VMM_QEMU_UFFD_FD).  Before QEMU's main
 * this library makes this process's userfaultfd from it, sends that back
 * and closes all three: QEMU keeps neither the device nor the userfaultfd.
 *
 * Built on its own, without sanitizers: QEMU loads it, not vmm.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "fdpass.h"

#ifndef USERFAULTFD_IOC_NEW
#define USERFAULTFD_IOC_NEW _IO(0xAA, 0x00)
#endif

long syscall(long nr, ...);

typedef long (*syscall_fn)(long, ...);

/* A descriptor of this process open on /dev/userfaultfd, or -1. */
static int find_device(void)
{
	DIR *d = opendir("/proc/self/fd");
	if (!d)
		return -1;
	int found = -1;
	struct dirent *de;
	while (found < 0 && (de = readdir(d))) {
		char path[32];
		int fd = atoi(de->d_name);
		if (de->d_name[0] < '0' || de->d_name[0] > '9' || fd == dirfd(d))
			continue;
		ssize_t n = readlinkat(dirfd(d), de->d_name, path, sizeof(path) - 1);
		if (n < 0)
			continue;
		path[n] = '\0';
		if (strcmp(path, "/dev/userfaultfd") == 0)
			found = fd;
	}
	closedir(d);
	return found;
}

long syscall(long nr, ...)
{
	static syscall_fn next_fn; /* libc's; threads may race to look it up, to one answer */
	syscall_fn next = __atomic_load_n(&next_fn, __ATOMIC_ACQUIRE);
	if (!next) {
		next = (syscall_fn)dlsym(RTLD_NEXT, "syscall");
		__atomic_store_n(&next_fn, next, __ATOMIC_RELEASE);
	}
	va_list ap;
	va_start(ap, nr);
	long a[6];
	for (int i = 0; i < 6; i++)
		a[i] = va_arg(ap, long);
	va_end(ap);
	long rc = next(nr, a[0], a[1], a[2], a[3], a[4], a[5]);
	if (nr != SYS_userfaultfd || rc >= 0 || errno != EPERM)
		return rc;
	int dev = find_device();
	if (dev < 0) {
		errno = EPERM;
		return -1;
	}
	return ioctl(dev, USERFAULTFD_IOC_NEW, (unsigned long)(int)a[0]);
}

#define LAZY_FD 5 /* VMM_QEMU_UFFD_FD */

__attribute__((constructor)) static void lazy_uffd(void)
{
	struct stat st;
	if (fstat(LAZY_FD, &st) < 0 || !S_ISSOCK(st.st_mode))
		return;
	int dev = vmm_fd_recv(LAZY_FD);
	if (dev >= 0) {
		int u = ioctl(dev, USERFAULTFD_IOC_NEW, O_CLOEXEC | O_NONBLOCK);
		close(dev);
		if (u >= 0) {
			(void)vmm_fd_send(LAZY_FD, u);
			close(u);
		}
	}
	close(LAZY_FD);
}
