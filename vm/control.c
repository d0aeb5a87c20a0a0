/*
 * control.c — the other side of vm/run.c: commands that act on a VM another
 * process runs.  `vmm stop` signals it (Tart's way); `vmm suspend`,
 * checkpoints and `vmm ip` ask it over <bundle>/vmm.sock and get one line
 * back ("ok ..." or "error <message>").
 */
#include "vm/run.h"
#include "common/util.h"
#include "vm/bundle.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>

/* Grace after the stop timeout before `vmm run` itself is killed. */
#define QUIT_GRACE 10.0

static bool wait_not_running(const char *dir, double secs)
{
	double end = vmm_now() + secs;
	while (vmm_bundle_dir_is_running(dir)) {
		if (vmm_now() > end)
			return false;
		usleep(10000);
	}
	return true;
}

int vmm_vm_stop(const vmm_home *h, const char *name, double timeout, bool *was_suspended,
		vmm_error **err)
{
	cleanup_vmm_bundle vmm_bundle *b = NULL;
	if (vmm_bundle_open(&b, h, name, err) < 0)
		return -1;
	if (was_suspended)
		*was_suspended = false;
	pid_t pid = vmm_bundle_dir_running_pid(b->dir);
	if (pid < 0)
		return vmm_error_set(err, VMM_EGENERIC,
				     "VM \"%s\" is run by a process this one cannot see or signal",
				     name);
	if (pid > 0) {
		/*
		 * Signal through a pidfd taken while the pid still holds the run
		 * lock: should the VM exit and its pid be reused meanwhile, the
		 * signal goes nowhere rather than to a stranger.
		 */
		cleanup_close int pfd = (int)syscall(SYS_pidfd_open, pid, 0);
		if (pfd < 0 && errno != ESRCH)
			return vmm_error_errno(err, errno, "signal the process running VM \"%s\"",
					       name);
		if (pfd < 0 || vmm_bundle_dir_running_pid(b->dir) != pid)
			return 0; /* it is gone already */
		/* the run process powers the guest down and quits QEMU after `timeout` */
		siginfo_t si = {.si_signo = SIGINT, .si_code = SI_QUEUE};
		si.si_pid = getpid();
		si.si_uid = getuid();
		si.si_value.sival_int = timeout > 1e6 ? 1000000 : (int)timeout;
		if (syscall(SYS_pidfd_send_signal, pfd, SIGINT, &si, 0) < 0 && errno != ESRCH)
			return vmm_error_errno(err, errno, "signal the process running VM \"%s\"",
					       name);
		if (wait_not_running(b->dir, timeout + QUIT_GRACE))
			return 0;
		if (syscall(SYS_pidfd_send_signal, pfd, SIGKILL, NULL, 0) < 0 && errno != ESRCH)
			return vmm_error_errno(
			    err, errno, "failed to forcefully terminate the VM \"%s\"", name);
		wait_not_running(b->dir, 5);
		return 0;
	}
	if (vmm_bundle_state(b) != VMM_STATE_SUSPENDED)
		return vmm_error_set(err, VMM_ENOTRUNNING, "VM \"%s\" is not running", name);
	cleanup_close int lock = -1;
	if (vmm_bundle_dir_lock(b->dir, name, &lock, err) < 0)
		return -1;
	static const char *const files[] = {VMM_STATE_FILE, VMM_TART_STATE_FILE};
	for (size_t i = 0; i < ARRAY_SIZE(files); i++) {
		cleanup_free char *p = vmm_bundle_path(b, files[i]);
		if (unlink(p) < 0 && errno != ENOENT)
			return vmm_error_errno(err, errno, "remove `%s`", p);
	}
	if (was_suspended)
		*was_suspended = true;
	return vmm_fsync_dir(b->dir, true, err);
}

static int read_reply(int fd, char *buf, size_t cap)
{
	size_t len = 0;
	while (len + 1 < cap) {
		ssize_t n = recv(fd, buf + len, cap - 1 - len, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		len += (size_t)n;
		if (memchr(buf, '\n', len))
			break;
	}
	buf[len] = '\0';
	buf[strcspn(buf, "\n")] = '\0';
	return (int)len;
}

/* Send one request to the VM's `vmm run` and read its one-line answer. */
static int control_request(const vmm_bundle *b, const char *name, const char *req, char *reply,
			   size_t cap, vmm_error **err)
{
	cleanup_close int dirfd = open(b->dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (dirfd < 0)
		return vmm_error_errno(err, errno, "open `%s`", b->dir);
	struct sockaddr_un sa;
	if (vmm_control_sockaddr(&sa, dirfd) < 0)
		return vmm_error_set(err, VMM_EINVAL, "control socket path is too long");
	cleanup_close int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return vmm_error_errno(err, errno, "socket");
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		if (!vmm_bundle_dir_is_running(b->dir))
			return vmm_error_set(err, VMM_ENOTRUNNING, "VM \"%s\" is not running",
					     name);
		return vmm_error_errno(err, errno, "cannot reach the process running VM \"%s\"",
				       name);
	}
	cleanup_free char *line = xasprintf("%s\n", req);
	if (vmm_write_all(fd, line, strlen(line)) < 0)
		return vmm_error_errno(err, errno, "talk to the process running VM \"%s\"", name);
	read_reply(fd, reply, cap);
	return 0;
}

/* Turn an answer into 0 (and stats) or an error prefixed with `what`. */
static int parse_reply(const char *reply, const vmm_bundle *b, const char *name, const char *what,
		       vmm_savefile_stats *stats, vmm_error **err)
{
	if (strncmp(reply, "ok", 2) == 0) {
		unsigned long long raw = 0, comp = 0;
		double secs = 0, pause = 0;
		if (stats && sscanf(reply, "ok %llu %llu %lf %lf", &raw, &comp, &secs, &pause) >= 3)
			*stats = (vmm_savefile_stats){.raw_bytes = raw,
						      .compressed_bytes = comp,
						      .seconds = secs,
						      .pause = pause};
		return 0;
	}
	if (strncmp(reply, "error ", 6) == 0)
		return vmm_error_set(err, VMM_EGENERIC, "%s: %s", what, reply + 6);
	/* no answer: it exited meanwhile (stopped, or suspended by someone else) */
	if (wait_not_running(b->dir, 5))
		return vmm_error_set(err, VMM_ENOTRUNNING, "VM \"%s\" is not running", name);
	return vmm_error_set(err, VMM_EGENERIC, "%s: the process running VM \"%s\" went away", what,
			     name);
}

int vmm_vm_suspend(const vmm_home *h, const char *name, vmm_savefile_stats *stats, vmm_error **err)
{
	cleanup_vmm_bundle vmm_bundle *b = NULL;
	if (vmm_bundle_open(&b, h, name, err) < 0)
		return -1;
	if (!vmm_bundle_dir_is_running(b->dir))
		return vmm_error_set(err, VMM_ENOTRUNNING, "VM \"%s\" is not running", name);
	char reply[2048];
	if (control_request(b, name, "suspend", reply, sizeof(reply), err) < 0 ||
	    parse_reply(reply, b, name, "Failed to suspend the VM", stats, err) < 0)
		return -1;
	wait_not_running(b->dir, 30);
	return 0;
}

int vmm_vm_checkpoint(const vmm_home *h, const char *name, const char *dest,
		      vmm_savefile_stats *stats, vmm_error **err)
{
	cleanup_vmm_bundle vmm_bundle *b = NULL;
	if (vmm_bundle_open(&b, h, name, err) < 0)
		return -1;
	if (!vmm_bundle_dir_is_running(b->dir))
		return vmm_error_set(err, VMM_ENOTRUNNING, "VM \"%s\" is not running", name);
	cleanup_free char *abs = realpath(dest, NULL);
	if (!abs)
		return vmm_error_errno(err, errno, "checkpoint `%s`", dest);
	if (strchr(abs, '\n'))
		return vmm_error_set(err, VMM_EINVAL, "checkpoint `%s`: unusable path", dest);
	cleanup_free char *req = xasprintf("checkpoint %s", abs);
	char reply[2048];
	cleanup_free char *what = xasprintf("checkpoint \"%s\"", name);
	if (control_request(b, name, req, reply, sizeof(reply), err) < 0 ||
	    parse_reply(reply, b, name, what, stats, err) < 0)
		return -1;
	return 0;
}

/* The IPv4 address the host's neighbour table has for `mac`, if any (caller frees). */
static char *arp_lookup(const char *mac)
{
	cleanup_file FILE *f = fopen("/proc/net/arp", "re");
	if (!f)
		return NULL;
	char line[512];
	while (fgets(line, sizeof(line), f)) {
		char ip[64], hw[64];
		unsigned type, flags;
		if (sscanf(line, "%63s 0x%x 0x%x %63s", ip, &type, &flags, hw) != 4)
			continue;
		if (flags != 0 && strcasecmp(hw, mac) == 0)
			return xstrdup(ip);
	}
	return NULL;
}

int vmm_vm_ip(const vmm_home *h, const char *name, double wait, char **out, vmm_error **err)
{
	cleanup_vmm_bundle vmm_bundle *b = NULL;
	if (vmm_bundle_open(&b, h, name, err) < 0)
		return -1;
	double deadline = vmm_now() + wait;
	bool checked_net = false;
	for (;;) {
		bool running = vmm_bundle_dir_is_running(b->dir);
		if (running && !checked_net) {
			/* "ok default ADDRESS", "ok bridged" or "ok user" */
			char reply[256];
			if (control_request(b, name, "net", reply, sizeof(reply), NULL) == 0 &&
			    strncmp(reply, "ok ", 3) == 0) {
				checked_net = true;
				if (strncmp(reply, "ok default ", 11) == 0) {
					*out = xstrdup(reply + 11);
					return 0;
				}
				if (strcmp(reply, "ok user") == 0)
					return vmm_error_set(
					    err, VMM_EGENERIC,
					    "VM \"%s\" is on the user-mode network, which the "
					    "host cannot reach by address (vmm had no "
					    "CAP_NET_ADMIN): use `vmm run --publish "
					    "HOST_PORT:GUEST_PORT`, or run vmm as root",
					    name);
			}
		}
		char *ip = running ? arp_lookup(b->config->mac) : NULL;
		if (ip) {
			*out = ip;
			return 0;
		}
		if (vmm_now() >= deadline)
			return vmm_error_set(err, VMM_EGENERIC, "no IP address found%s",
					     running ? "" : ", is your VM running?");
		usleep(running ? 500000 : 100000);
	}
}
