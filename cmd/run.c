#include "cmd/cmd.h"
#include "cmd/run.h"
#include "common/util.h"
#include "vm/run.h"

#include <stdio.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

typedef struct run_args {
	bool no_graphics, graphics, vnc, vnc_experimental, net_softnet, net_host, suspendable;
	vmm_opt_list publish;
	const char *net_bridged, *net_softnet_allow, *net_softnet_block, *net_softnet_expose, *accel;
	vmm_opt_num stop_timeout;
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
	if (ra.stop_timeout.given)
		o.stop_timeout = ra.stop_timeout.value ? (double)ra.stop_timeout.value : 0.001;
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
