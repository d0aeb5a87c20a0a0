/*
 * qemu.h — how a bundle becomes a QEMU command line.
 *
 * vmm_qemu_cmd_build() picks the QEMU binary for the guest's architecture
 * (x86_64 guests on qemu-system-x86_64 with q35, arm64 on
 * qemu-system-aarch64 with virt), the accelerator (KVM only where /dev/kvm
 * opens and the CPU can virtualize, else TCG), the boot (direct kernel when
 * the bundle has `kernel`, else UEFI with the host's OVMF/AAVMF and the
 * VM's own efivars.fd), the disk, the network and the display.
 *
 * QEMU runs with the bundle as its working directory and every bundle file
 * named relatively, so the arguments do not depend on where the bundle
 * lives: a clone of a suspended VM (a fork) restores with the same ones.
 * The arguments that define the guest (machine, CPU, memory, devices,
 * firmware) are the "model"; its SHA-256 is the fingerprint a state file
 * records and must match on resume.  What does not change the guest (the
 * VM's name, VNC, port forwards, the descriptors QMP and the console use)
 * stays out of it, and so does the network's backend (TAP or user-mode).
 *
 * The guest's RAM is a memfd that `vmm run` owns and QEMU maps shared
 * (memory-backend-file on /proc/self/fd/VMM_QEMU_RAM_FD), named as QEMU
 * names its own RAM ("pc.ram", "mach-virt.ram") so migration streams of
 * either origin load.  Where the RAM lives does not change the guest, so
 * it stays out of the model: states of earlier vmm keep their fingerprint.
 */
#ifndef VMM_VM_QEMU_H
#define VMM_VM_QEMU_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "common/err.h"
#include "vm/config.h"
#include "vm/devices.h"

/* Descriptors QEMU inherits (its argv names them). */
#define VMM_QEMU_QMP_FD 3  /* private QMP connection to `vmm run` */
#define VMM_QEMU_TAP_FD 4  /* the VM's network (vm/net.h), unless user-mode */
#define VMM_QEMU_UFFD_FD 5 /* a lazy resume's socket for QEMU's userfaultfd (vm/lazy.h) */
#define VMM_QEMU_RAM_FD 6  /* the guest's RAM: a memfd of `vmm run` (DESIGN.md §8) */
#define VMM_QEMU_FILE_FD 7 /* the first of the files QEMU gets open (vmm_qemu_file) */
/* The control socket of `vmm run` in the bundle directory (vmm suspend talks to it). */
#define VMM_CONTROL_SOCKET "vmm.sock"

typedef enum {
	VMM_ACCEL_AUTO,
	VMM_ACCEL_KVM,
	VMM_ACCEL_TCG,
} vmm_accel;

int vmm_accel_parse(const char *s, vmm_accel *out);

/*
 * The guest agent's channel (Tart's guest agent listens on vsock port
 * 8080): a vhost-vsock device needs the host's /dev/vhost-vsock.
 */
typedef enum {
	VMM_VSOCK_AUTO,	    /* where /dev/vhost-vsock can be used */
	VMM_VSOCK_OFF,	    /* never (a state saved without one) */
	VMM_VSOCK_REQUIRED, /* always, else an error (a state saved with one) */
} vmm_vsock_mode;

typedef struct vmm_qemu_opts {
	vmm_accel accel;
	const char *const *publish; /* borrowed: "[tcp:|udp:][ADDR:]HOST:GUEST", user mode only */
	size_t npublish;
	bool tap;	 /* QEMU gets the network as a TAP on fd 4, else user-mode NAT */
	const char *vnc; /* borrowed: NULL, or a VNC display ("127.0.0.1:0") */
	bool incoming;	 /* resume: -incoming defer */

	/* `vmm run`'s extra devices (vm/devices.h); arrays borrowed */
	const vmm_disk_spec *disks; /* --disk: virtio disks and CD-ROMs, in order */
	size_t ndisks;
	const vmm_dir_spec *dirs; /* --dir: 9p shares */
	size_t ndirs;
	const char *shares_dir;	      /* borrowed: an empty directory of vmm's for tags with named
					 shares (see vmm_qemu_shares_prepare); NULL if none has */
	vmm_disk_opts root_disk;      /* --root-disk-opts */
	bool nested;		      /* --nested: KVM with the host's vmx/svm */
	bool no_pointer, no_keyboard; /* leave out the USB tablet / keyboard (arm64 guests) */
	vmm_vsock_mode vsock;
} vmm_qemu_opts;

/* A bind mount QEMU's child makes in a mount namespace of its own (named shares). */
typedef struct vmm_qemu_bind {
	char *src; /* owned */
	char *dst; /* owned */
	bool ro;
} vmm_qemu_bind;

/*
 * A file QEMU gets as an open descriptor (number VMM_QEMU_FILE_FD + its
 * index) instead of a path: `vmm run` opens them all, so QEMU, which may
 * run as a user that could not (DESIGN.md §8b), never opens a file of the
 * host by name.  Block devices name them as /dev/fdset/N, the kernel and
 * the initramfs as /proc/self/fd/N.
 */
typedef struct vmm_qemu_file {
	char *path; /* owned: relative to the bundle, or absolute */
	int flags;  /* O_RDONLY or O_RDWR */
	bool image; /* read whole by QEMU's loader through /proc/self/fd (kernel, initramfs) */
	const unsigned char *bytes; /* borrowed: if set, a sealed memfd of these instead */
	size_t nbytes;
} vmm_qemu_file;

typedef struct vmm_qemu_cmd {
	char *binary; /* owned: absolute path of qemu-system-* */
	char **argv;  /* owned: NULL-terminated, argv[0] = binary */
	size_t argc;
	json_t *model;	     /* owned: array of the guest-defining arguments */
	char *fingerprint;   /* owned: "sha256:<hex>" of model */
	const char *arch;    /* static: QEMU target, "x86_64" | "aarch64" */
	const char *accel;   /* static: "kvm" | "tcg" */
	char *notice;	     /* owned: NULL, or one line about the accelerator choice */
	char *firmware_code; /* owned: UEFI code image, NULL for direct kernel boot */
	char *firmware_vars; /* owned: UEFI variables template, NULL for direct kernel boot */
	bool uefi;
	uint32_t vsock_cid;   /* the guest's vsock CID (unique on the host), 0 without vsock */
	bool shares;	      /* has shared folders: QEMU 7.2 cannot save it */
	vmm_qemu_bind *binds; /* owned: for vmm_qemu_child_setup */
	size_t nbinds;
	char *uid_map, *gid_map; /* owned: "<id> <id> 1", for a user namespace if need be */
	vmm_qemu_file *files;	 /* owned: descriptors QEMU inherits, see vmm_qemu_file */
	size_t nfiles;
	char **envp; /* owned: QEMU's whole environment (nothing of vmm's) */
	bool drop;   /* QEMU runs as uid:gid (vmm runs as root) */
	uid_t uid;
	gid_t gid;
	gid_t groups[1]; /* supplementary: the group that may open /dev/kvm */
	size_t ngroups;
	char *sandbox_notice; /* owned: NULL, or why QEMU keeps root */
} vmm_qemu_cmd;

/*
 * Build the command line for the bundle in `dir` with config `c`.  Checks
 * that QEMU is on PATH, that the firmware or the kernel is there, and that
 * the requested accelerator can be had.  Does not touch the bundle (see
 * vmm_qemu_prepare_efivars).
 */
int vmm_qemu_cmd_build(vmm_qemu_cmd **out, const char *dir, const vmm_config *c,
		       const vmm_qemu_opts *o, vmm_error **err);
void vmm_qemu_cmd_free(vmm_qemu_cmd *q);

/* UEFI: make <dir>/efivars.fd from the firmware's template if it is missing (atomically). */
int vmm_qemu_prepare_efivars(const vmm_qemu_cmd *q, const char *dir, vmm_error **err);

/*
 * Named shares (vm/devices.h): make the empty directories, one per tag and
 * name, in o->shares_dir that QEMU's child binds the shares onto.  Only
 * empty directories are ever seen outside QEMU's mount namespace, so
 * removing them (vmm_qemu_shares_cleanup) or tmp's garbage collection can
 * never reach the shared files.
 */
int vmm_qemu_shares_prepare(const vmm_qemu_cmd *q, vmm_error **err);
void vmm_qemu_shares_cleanup(const vmm_qemu_cmd *q, const char *shares_dir);

/*
 * In QEMU's child, after fork and before exec: the bind mounts of named
 * shares in a private mount namespace (a user namespace of its own where
 * vmm lacks CAP_SYS_ADMIN).  Async-signal-safe.  0, or -errno.
 */
int vmm_qemu_child_setup(const vmm_qemu_cmd *q);

/*
 * Open q's files (vmm_qemu_file) into fds[0..nfiles-1], relative to the
 * bundle's `dirfd`; where QEMU drops root, a kernel or initramfs it could
 * not read through /proc/self/fd is passed as a sealed memfd copy.
 */
int vmm_qemu_files_open(const vmm_qemu_cmd *q, int dirfd, int *fds, vmm_error **err);

/*
 * In QEMU's child, last before exec: become the unprivileged user if q
 * says so (groups, gid, uid, for good; SIGKILL again when `parent` dies),
 * then exec QEMU with q's environment.  Async-signal-safe; returns -errno
 * (a failed drop) or errno (a failed exec).
 */
int vmm_qemu_child_exec(const vmm_qemu_cmd *q, pid_t parent);

/* Why a VM running with `q` cannot be saved (suspend, snapshot), or NULL if it can. */
const char *vmm_qemu_unsavable(const vmm_qemu_cmd *q);

/* Has a model the guest agent's vsock device? */
bool vmm_qemu_model_vsock(const json_t *model);

/*
 * A hint for a state whose model differs from the VM's now in the devices
 * `vmm run`'s flags add: "" or " (...)" (static).
 */
const char *vmm_qemu_model_hint(const json_t *was, const json_t *now);

/* "sha256:<hex>" of a model array (caller frees); see vmm_qemu_model_guest. */
char *vmm_qemu_fingerprint(const json_t *model);
/*
 * The guest-defining part of a model (a new reference): without the
 * network's backend, which the guest cannot see.
 */
json_t *vmm_qemu_model_guest(const json_t *model);
/* Was the model's network QEMU's user-mode NAT?  Its states resume only there. */
bool vmm_qemu_model_user_net(const json_t *model);

/*
 * Find a UEFI firmware for QEMU target `arch` ("x86_64"/"aarch64"):
 * $VMM_FIRMWARE ("CODE:VARS") if set, else QEMU's firmware descriptors in
 * /usr/share/qemu/firmware and /etc/qemu/firmware (plain UEFI, no Secure
 * Boot), else the usual Debian paths.  Both strings are the caller's.
 */
int vmm_qemu_find_firmware(const char *arch, char **code, char **vars, vmm_error **err);

/*
 * The accelerator for `req` on this host for target `arch`; *notice gets a
 * line to show when auto falls back to TCG (caller frees; may be NULL).
 */
int vmm_qemu_pick_accel(vmm_accel req, const char *arch, const char **accel, char **notice,
			vmm_error **err);

/* Search PATH for `name`; NULL if absent (caller frees). */
char *vmm_find_in_path(const char *name);

/*
 * Parse a --publish value: "[tcp:|udp:][ADDR:]HOST:GUEST" into QEMU's
 * hostfwd form "tcp:ADDR:HOST-:GUEST" (caller frees).
 */
int vmm_qemu_parse_publish(const char *s, char **hostfwd, vmm_error **err);

static inline void cleanup_vmm_qemu_cmd_fn(vmm_qemu_cmd **q)
{
	vmm_qemu_cmd_free(*q);
}
#define cleanup_vmm_qemu_cmd __attribute__((cleanup(cleanup_vmm_qemu_cmd_fn)))

#endif
