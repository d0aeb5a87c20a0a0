#include "cmd/cmd.h"
#include "cmd/run.h"
#include "common/util.h"
#include "vm/run.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

typedef struct run_args {
	bool no_graphics, graphics, vnc, vnc_experimental, net_softnet, net_host, suspendable;
	bool nested, serial, no_audio, no_clipboard, no_pointer, no_keyboard, no_trackpad;
	vmm_opt_list publish, disk, dir;
	const char *net_bridged, *net_softnet_allow, *net_softnet_block, *net_softnet_expose,
	    *accel;
	const char *root_disk_opts, *serial_path;
	vmm_opt_num stop_timeout, save_ahead;
} run_args;

static const vmm_opt opts[] = {
    {VMM_FLAG(run_args, no_graphics, "no-graphics",
	      "Accepted for Tart's sake: vmm never opens a window")},
    {VMM_FLAG(run_args, graphics, "graphics", "Not available: vmm has no window (use --vnc)"),
     .hidden = true},
    {VMM_FLAG(run_args, vnc, "vnc", "Serve the display over VNC on 127.0.0.1")},
    {VMM_FLAG(run_args, vnc_experimental, "vnc-experimental", "Same as --vnc"), .hidden = true},
    {VMM_LIST(run_args, publish, "publish", "[tcp:|udp:][ADDR:]HOST:GUEST",
	      "Forward a host port to a guest port (any network; repeatable)"),
     .short_name = 'p'},
    {VMM_STRING(run_args, net_bridged, "net-bridged", "IFACE",
		"Attach the VM to a Linux bridge (a TAP) or to an interface (a macvtap)")},
    {VMM_FLAG(run_args, net_softnet, "net-softnet",
	      "Isolate the VM as Tart's softnet does: only globally routable destinations")},
    {VMM_STRING(run_args, net_softnet_allow, "net-softnet-allow", "CIDRS",
		"Softnet: also allow these comma-separated CIDRs")},
    {VMM_STRING(run_args, net_softnet_block, "net-softnet-block", "CIDRS",
		"Softnet: block these comma-separated CIDRs")},
    {VMM_STRING(run_args, net_softnet_expose, "net-softnet-expose", "EXT:INT,...",
		"Softnet: forward these host ports (every host address) to guest ports")},
    {VMM_FLAG(run_args, net_host, "net-host",
	      "Let the VM reach the host (its gateway) and nothing else")},
    {VMM_STRING(run_args, accel, "accel", "auto|kvm|tcg",
		"Accelerator (default auto: KVM where it works, else TCG)")},
    {VMM_FLAG(run_args, suspendable, "suspendable",
	      "Accepted for Tart's sake: every vmm VM can be suspended")},
    {VMM_INT(run_args, stop_timeout, "stop-timeout", "SECONDS", 0, 86400,
	     "On SIGINT/SIGTERM, wait this long for the guest to power off (default 30)")},
    {VMM_INT(run_args, save_ahead, "save-ahead", "SECONDS", 0, 86400,
	     "Compress the RAM while the guest runs, looking again every SECONDS, so that "
	     "a suspend saves only what changed since (0: off, the default)")},
    {VMM_LIST(run_args, disk, "disk", "PATH[:ro][,sync=none|fsync|full][,caching=...]",
	      "Attach a disk image or block device (a .iso as a bootable CD-ROM; repeatable)")},
    {VMM_STRING(run_args, root_disk_opts, "root-disk-opts", "OPTIONS",
		"Root disk options: ro, sync=none|fsync|full, caching=automatic|cached|uncached")},
    {VMM_LIST(run_args, dir, "dir", "[NAME:]PATH[:ro][,tag=TAG]",
	      "Share a host directory (9p, tag " VMM_DIR_DEFAULT_TAG " by default; repeatable)")},
    {VMM_FLAG(run_args, nested, "nested",
	      "Nested virtualization (KVM with the host's vmx/svm and kvm nested=1)")},
    {VMM_FLAG(run_args, serial, "serial",
	      "The serial console on a new pseudo-terminal instead of stdin/stdout")},
    {VMM_STRING(run_args, serial_path, "serial-path", "PATH",
		"The serial console on this terminal (or other file) instead of stdin/stdout")},
    {VMM_FLAG(run_args, no_audio, "no-audio", "Accepted for Tart's sake: vmm gives no audio")},
    {VMM_FLAG(run_args, no_clipboard, "no-clipboard",
	      "Accepted for Tart's sake: vmm shares no clipboard")},
    {VMM_FLAG(run_args, no_pointer, "no-pointer",
	      "No USB tablet (arm64 guests; x86_64 guests have none anyway)")},
    {VMM_FLAG(run_args, no_keyboard, "no-keyboard",
	      "No USB keyboard (arm64 guests; x86_64 guests have none anyway)")},
    {VMM_FLAG(run_args, no_trackpad, "no-trackpad", "macOS guests only"), .hidden = true},
    {0},
};

static const vmm_cmd_spec run_spec = {
    "run", "NAME [options]",
    "Run a VM in the foreground with its serial console on stdin/stdout (a suspended VM "
    "resumes)",
    opts};
static const vmm_cmd_spec resume_spec = {
    "resume", "NAME [options]",
    "Resume a suspended VM in the foreground (as `run` does for a suspended VM)", opts};

/* The devices of --disk, --dir and --root-disk-opts, parsed (vm/devices.h). */
typedef struct devices {
	vmm_disk_spec *disks;
	size_t ndisks;
	vmm_dir_spec *dirs;
	size_t ndirs;
} devices;

static void devices_free(devices *d)
{
	for (size_t i = 0; i < d->ndisks; i++)
		vmm_disk_spec_clear(&d->disks[i]);
	for (size_t i = 0; i < d->ndirs; i++)
		vmm_dir_spec_clear(&d->dirs[i]);
	free(d->disks);
	free(d->dirs);
}

static int parse_devices(const run_args *ra, devices *d, vmm_qemu_opts *q)
{
	cleanup_vmm_error vmm_error *err = NULL;
	if (ra->root_disk_opts &&
	    vmm_disk_opts_parse(ra->root_disk_opts, &q->root_disk, &err) < 0) {
		vmm_error_wrap(&err, "--root-disk-opts");
		return vmm_fail(err);
	}
	d->disks = xcalloc(ra->disk.n + 1, sizeof(*d->disks));
	for (; d->ndisks < ra->disk.n; d->ndisks++)
		if (vmm_disk_spec_parse(ra->disk.v[d->ndisks], &d->disks[d->ndisks], &err) < 0)
			return vmm_fail(err);
	d->dirs = xcalloc(ra->dir.n + 1, sizeof(*d->dirs));
	for (; d->ndirs < ra->dir.n; d->ndirs++)
		if (vmm_dir_spec_parse(ra->dir.v[d->ndirs], &d->dirs[d->ndirs], &err) < 0)
			return vmm_fail(err);
	if (vmm_dir_specs_check(d->dirs, d->ndirs, &err) < 0)
		return vmm_fail(err);
	q->disks = d->disks;
	q->ndisks = d->ndisks;
	q->dirs = d->dirs;
	q->ndirs = d->ndirs;
	q->nested = ra->nested;
	q->no_pointer = ra->no_pointer;
	q->no_keyboard = ra->no_keyboard;
	return 0;
}

/*
 * --serial: the console on a new pseudo-terminal, as Tart does ("Successfully
 * open pty <path>" on stdout).  vmm keeps the other end open, so the console
 * survives a terminal program detaching, and drops output nobody reads.
 */
static int open_serial(const run_args *ra, int *fd, int *keep)
{
	if (ra->serial_path) {
		*fd = open(ra->serial_path, O_RDWR | O_NOCTTY | O_NONBLOCK | O_CLOEXEC);
		if (*fd < 0)
			return vmm_fail_msg("--serial-path `%s`: Failed to open PTY: %s",
					    ra->serial_path, vmm_strerror(errno));
		return 0;
	}
	int m = posix_openpt(O_RDWR | O_NOCTTY | O_NONBLOCK | O_CLOEXEC);
	const char *name = m >= 0 && grantpt(m) == 0 && unlockpt(m) == 0 ? ptsname(m) : NULL;
	int s = name ? open(name, O_RDWR | O_NOCTTY | O_CLOEXEC) : -1;
	if (s < 0) {
		int e = errno;
		if (m >= 0)
			close(m);
		return vmm_fail_msg("--serial: Failed to create PTY: %s", vmm_strerror(e));
	}
	struct termios t;
	if (tcgetattr(s, &t) == 0) {
		cfmakeraw(&t);
		cfsetispeed(&t, B115200);
		cfsetospeed(&t, B115200);
		tcsetattr(s, TCSANOW, &t);
	}
	printf("Successfully open pty %s\n", name);
	*fd = m;
	*keep = s;
	return 0;
}

/* Progress lines, as Tart prints them; stdout carries the guest's console. */
static void notice(void *ctx, const char *line)
{
	(void)ctx;
	fprintf(stderr, "%s\n", line);
}

/* The network flags, as Tart takes them: each softnet option implies --net-softnet. */
static int parse_net(const run_args *ra, const vmm_cmd_spec *spec, vmm_net_opts *n)
{
	n->publish = ra->publish.v;
	n->npublish = ra->publish.n;
	n->bridged = ra->net_bridged;
	n->softnet_allow = ra->net_softnet_allow;
	n->softnet_block = ra->net_softnet_block;
	n->softnet_expose = ra->net_softnet_expose;
	n->softnet = ra->net_softnet || n->softnet_allow || n->softnet_block || n->softnet_expose;
	n->host_only = ra->net_host;
	if ((n->bridged != NULL) + n->softnet + n->host_only > 1)
		return vmm_usage_error(spec,
				       "--net-bridged, --net-softnet and --net-host are mutually "
				       "exclusive");
	cleanup_vmm_error vmm_error *err = NULL;
	if (vmm_net_check_opts(n, &err) < 0)
		return vmm_usage_error(spec, "%s", err->msg);
	return 0;
}

int cmd_run_vm(int argc, char **argv, bool resume_only)
{
	const vmm_cmd_spec *spec = resume_only ? &resume_spec : &run_spec;
	run_args ra = {0};
	cleanup_vmm_args vmm_args a;
	int prc = vmm_args_parse(&a, spec, argc, argv, &ra);
	if (prc != 0)
		return prc < 0 ? 0 : prc;
	if (ra.graphics)
		return vmm_usage_error(spec, "--graphics: vmm opens no window; use --vnc");
	if (ra.graphics && ra.no_graphics)
		return vmm_usage_error(spec, "--graphics and --no-graphics are mutually exclusive");
	if (ra.no_trackpad)
		return vmm_usage_error(spec, "--no-trackpad can only be used with macOS VMs");
	if (ra.serial && ra.serial_path)
		return vmm_usage_error(spec, "--serial and --serial-path are mutually exclusive");
	vmm_run_opts o = {
	    .console_in = STDIN_FILENO,
	    .console_out = STDOUT_FILENO,
	    .log_fd = STDERR_FILENO,
	    .notice = notice,
	};
	if (vmm_accel_parse(ra.accel, &o.qemu.accel) < 0)
		return vmm_usage_error(spec, "--accel: \"%s\" is not one of auto, kvm, tcg",
				       ra.accel);
	if (ra.vnc || ra.vnc_experimental)
		o.qemu.vnc = "127.0.0.1:0,to=99";
	int nrc = parse_net(&ra, spec, &o.net);
	if (nrc)
		return nrc;
	if (ra.save_ahead.given)
		o.save_ahead = ra.save_ahead.value ? (double)ra.save_ahead.value : -1;
	if (ra.stop_timeout.given)
		o.stop_timeout = ra.stop_timeout.value ? (double)ra.stop_timeout.value : 0.001;
	o.resume_only = resume_only;
	__attribute__((cleanup(devices_free))) devices dev = {0};
	int drc = parse_devices(&ra, &dev, &o.qemu);
	if (drc)
		return drc;
	cleanup_close int serial = -1, serial_keep = -1;
	if ((ra.serial || ra.serial_path) && open_serial(&ra, &serial, &serial_keep) != 0)
		return 1;
	if (serial >= 0)
		o.console_in = o.console_out = serial;

	/*
	 * On a terminal, keys go to the guest as they are typed and the guest
	 * echoes them (a serial console does); Ctrl-C still stops the VM.
	 */
	struct termios saved;
	bool tty = serial < 0 && isatty(STDIN_FILENO) && tcgetattr(STDIN_FILENO, &saved) == 0;
	if (tty) {
		struct termios t = saved;
		t.c_lflag &= ~(tcflag_t)(ECHO | ICANON);
		t.c_cc[VMIN] = 1;
		t.c_cc[VTIME] = 0;
		tcsetattr(STDIN_FILENO, TCSANOW, &t);
	}
	cleanup_vmm_error vmm_error *err = NULL;
	vmm_run_outcome out;
	int rc = vmm_vm_run(cmd_home(), a.pos[0], &o, &out, &err);
	if (tty)
		tcsetattr(STDIN_FILENO, TCSANOW, &saved);
	if (rc < 0)
		return vmm_fail(err);
	if (out == VMM_RUN_POWEROFF)
		notice(NULL, "guest has stopped the virtual machine");
	return 0;
}

int cmd_run(int argc, char **argv)
{
	return cmd_run_vm(argc, argv, false);
}
