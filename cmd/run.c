#include "cmd/cmd.h"
#include "cmd/run.h"
#include "common/util.h"
#include "vm/run.h"

#include <stdio.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

static const vmm_opt opts[] = {
    {"no-graphics", 0, NULL, "Accepted for Tart's sake: vmm never opens a window", false},
    {"graphics", 0, NULL, "Not available: vmm has no window (use --vnc)", true},
    {"vnc", 0, NULL, "Serve the display over VNC on 127.0.0.1", false},
    {"vnc-experimental", 0, NULL, "Same as --vnc", true},
    {"publish", 'p', "[tcp:|udp:][ADDR:]HOST:GUEST",
     "Forward a host port to a guest port (default network; repeatable)", false},
    {"net-bridged", 0, "IFACE",
     "Attach the VM to a Linux bridge (a TAP) or to an interface (a macvtap)", false},
    {"net-softnet", 0, NULL,
     "Isolate the VM as Tart's softnet does: only globally routable destinations", false},
    {"net-softnet-allow", 0, "CIDRS", "Softnet: also allow these comma-separated CIDRs", false},
    {"net-softnet-block", 0, "CIDRS", "Softnet: block these comma-separated CIDRs", false},
    {"net-softnet-expose", 0, "EXT:INT,...",
     "Softnet: forward these host ports (every host address) to guest ports", false},
    {"net-host", 0, NULL, "Let the VM reach the host (its gateway) and nothing else", false},
    {"accel", 0, "auto|kvm|tcg", "Accelerator (default auto: KVM where it works, else TCG)", false},
    {"suspendable", 0, NULL, "Accepted for Tart's sake: every vmm VM can be suspended", false},
    {"stop-timeout", 0, "SECONDS",
     "On SIGINT/SIGTERM, wait this long for the guest to power off (default 30)", false},
    {NULL, 0, NULL, NULL, false},
};

static const vmm_cmd_spec run_spec = {
    "run",
    "NAME [options]",
    "Run a VM in the foreground with its serial console on stdin/stdout (a suspended VM "
    "resumes)",
    opts,
    1,
    1};
static const vmm_cmd_spec resume_spec = {
    "resume",
    "NAME [options]",
    "Resume a suspended VM in the foreground (as `run` does for a suspended VM)",
    opts,
    1,
    1};

/* Progress lines, as Tart prints them; stdout carries the guest's console. */
static void notice(void *ctx, const char *line)
{
	(void)ctx;
	fprintf(stderr, "%s\n", line);
}

/* The network flags, as Tart takes them: each softnet option implies --net-softnet. */
static int parse_net(const vmm_args *a, const vmm_cmd_spec *spec, vmm_net_opts *n)
{
	n->publish = vmm_args_list(a, "publish", &n->npublish);
	n->bridged = vmm_args_get(a, "net-bridged");
	n->softnet_allow = vmm_args_get(a, "net-softnet-allow");
	n->softnet_block = vmm_args_get(a, "net-softnet-block");
	n->softnet_expose = vmm_args_get(a, "net-softnet-expose");
	n->softnet = vmm_args_has(a, "net-softnet") || n->softnet_allow || n->softnet_block ||
		     n->softnet_expose;
	n->host_only = vmm_args_has(a, "net-host");
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
	cleanup_vmm_args vmm_args a;
	int prc = vmm_args_parse(&a, spec, argc, argv);
	if (prc != 0)
		return prc < 0 ? 0 : prc;
	if (vmm_args_has(&a, "graphics"))
		return vmm_usage_error(spec, "--graphics: vmm opens no window; use --vnc");
	if (vmm_args_has(&a, "graphics") && vmm_args_has(&a, "no-graphics"))
		return vmm_usage_error(spec, "--graphics and --no-graphics are mutually exclusive");
	vmm_run_opts o = {
	    .console_in = STDIN_FILENO,
	    .console_out = STDOUT_FILENO,
	    .log_fd = STDERR_FILENO,
	    .notice = notice,
	};
	if (vmm_accel_parse(vmm_args_get(&a, "accel"), &o.qemu.accel) < 0)
		return vmm_usage_error(spec, "--accel: \"%s\" is not one of auto, kvm, tcg",
				       vmm_args_get(&a, "accel"));
	if (vmm_args_has(&a, "vnc") || vmm_args_has(&a, "vnc-experimental"))
		o.qemu.vnc = "127.0.0.1:0,to=99";
	int nrc = parse_net(&a, spec, &o.net);
	if (nrc)
		return nrc;
	const char *st = vmm_args_get(&a, "stop-timeout");
	if (st) {
		uint64_t secs;
		if (vmm_parse_u64(st, &secs) < 0 || secs > 86400)
			return vmm_usage_error(spec,
					       "--stop-timeout: \"%s\" is not a number of "
					       "seconds",
					       st);
		o.stop_timeout = secs ? (double)secs : 0.001;
	}
	o.resume_only = resume_only;

	/*
	 * On a terminal, keys go to the guest as they are typed and the guest
	 * echoes them (a serial console does); Ctrl-C still stops the VM.
	 */
	struct termios saved;
	bool tty = isatty(STDIN_FILENO) && tcgetattr(STDIN_FILENO, &saved) == 0;
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
