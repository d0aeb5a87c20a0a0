/*
 * run.h — running a VM in the foreground, and the commands that act on a
 * running one (stop, suspend).
 *
 * vmm_vm_run() is `vmm run`: it holds the running lock on config.json for
 * the VM's lifetime, starts QEMU (resuming a suspended VM from its state
 * file), relays the serial console, and returns when the guest powers off,
 * is stopped or is suspended.  QEMU dies with it (PR_SET_PDEATHSIG), so a
 * killed `vmm run` never leaves a guest running without its lock.
 *
 * The running process listens on <bundle>/vmm.sock; `vmm suspend` asks it
 * there and gets the outcome back.  Signals work as with Tart: SIGINT,
 * SIGTERM and SIGHUP stop the guest (ACPI power-down, QMP quit after the
 * timeout, a second signal quits at once), SIGUSR1 suspends it.
 *
 * vm/ never prints: progress lines go through the `notice` callback, the
 * console through the descriptors given.
 */
#ifndef VMM_VM_RUN_H
#define VMM_VM_RUN_H

#include <stdbool.h>

#include "common/err.h"
#include "vm/home.h"
#include "vm/net.h"
#include "vm/qemu.h"
#include "vm/savefile.h"

typedef enum {
	VMM_RUN_POWEROFF,  /* the guest powered itself off */
	VMM_RUN_STOPPED,   /* stopped by a signal or `vmm stop` */
	VMM_RUN_SUSPENDED, /* the state is on disk and QEMU has exited */
} vmm_run_outcome;

typedef struct vmm_run_opts {
	vmm_qemu_opts qemu;  /* .tap and .publish are set from .net */
	vmm_net_opts net;    /* .mac is set from the VM */
	bool resume_only;    /* `vmm resume`: the VM must be suspended */
	int console_in;	     /* relayed to the guest's serial console; -1 for none */
	int console_out;     /* the console's output; -1 to discard it */
	int log_fd;	     /* QEMU's own messages; -1 to discard them */
	double stop_timeout; /* seconds from ACPI power-down to quit (0: 30) */
	/* saving ahead (vm/chunks.h): seconds between passes; -1 off, 0: VMM_SAVE_AHEAD's */
	double save_ahead;
	void (*notice)(void *ctx, const char *line); /* may be NULL */
	void *notice_ctx;
} vmm_run_opts;

int vmm_vm_run(const vmm_home *h, const char *name, const vmm_run_opts *o, vmm_run_outcome *outcome,
	       vmm_error **err);

/*
 * `vmm stop`: a running VM is asked to power down and, after `timeout`
 * seconds, is killed; a suspended VM loses its state (it becomes stopped);
 * a stopped one is VMM_ENOTRUNNING.  *was_suspended (may be NULL) tells which.
 */
int vmm_vm_stop(const vmm_home *h, const char *name, double timeout, bool *was_suspended,
		vmm_error **err);

/*
 * `vmm suspend`: ask the VM's `vmm run` to save its state, and return once
 * the state is durable and QEMU (and `vmm run`) have exited.  stats may be NULL.
 */
int vmm_vm_suspend(const vmm_home *h, const char *name, vmm_savefile_stats *stats, vmm_error **err);

/*
 * Save a running VM's memory and disk of one instant into the existing
 * directory `dest` (state.vmmsave, disk.img and, for UEFI guests,
 * efivars.fd) and let it run on: the guest pauses for milliseconds while
 * the disk is captured (reflink, or QEMU's copy-before-write backup) and
 * QEMU write-protects its RAM (background-snapshot); the rest is saved while
 * it runs (vm/checkpoint.h).  Returns when all is durable.  The primitive
 * behind snapshots of running VMs (DESIGN.md §8).  stats (may be NULL) gets
 * the sizes, the time and the pause.
 */
int vmm_vm_checkpoint(const vmm_home *h, const char *name, const char *dest,
		      vmm_savefile_stats *stats, vmm_error **err);

/*
 * `vmm ip`: the guest's IPv4 address: on the default network the one vmm
 * gave it (known as soon as the VM runs), on a bridge the one the host's
 * neighbour table has for its MAC, waiting up to `wait` seconds for it.  A VM
 * on the user-mode network has none the host can reach.  *out is the caller's.
 */
int vmm_vm_ip(const vmm_home *h, const char *name, double wait, char **out, vmm_error **err);

/* Internal to vm/: the address of <dir>/vmm.sock through /proc/self/fd/<dirfd> (108-byte limit). */
struct sockaddr_un;
int vmm_control_sockaddr(struct sockaddr_un *sa, int dirfd);

#endif
