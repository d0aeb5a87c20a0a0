/*
 * devices.h — what `vmm run` adds to a VM beyond its bundle: Tart's
 * `--disk`, `--root-disk-opts` and `--dir` values, parsed and checked.
 *
 * Parsing follows Tart's rules (Sources/tart/Commands/Run.swift): the part
 * after the last ':' holds the options when it names at least one known
 * option, else it is part of the path.  vmm is stricter in one way: once a
 * part is taken for options, every item in it must be known, so a typo is
 * an error rather than silently ignored.  Paths are made absolute (QEMU
 * runs in the bundle directory) and must exist when parsed.
 *
 * vm/qemu.c turns these into QEMU devices (vmm_qemu_opts); whatever the
 * guest can see of them is part of the VM's model, so a suspended state
 * resumes only with the same disks and shares.
 */
#ifndef VMM_VM_DEVICES_H
#define VMM_VM_DEVICES_H

#include <stdbool.h>
#include <stddef.h>

#include "common/err.h"

/* Tart's sync= modes, and how they map onto QEMU (no-flush for none). */
typedef enum {
	VMM_DISK_SYNC_DEFAULT, /* full */
	VMM_DISK_SYNC_NONE,    /* guest flushes are ignored: QEMU cache.no-flush=on */
	VMM_DISK_SYNC_FSYNC,   /* flushes reach the host's disk (fdatasync) */
	VMM_DISK_SYNC_FULL,    /* the same on Linux: fdatasync is as full as it gets */
} vmm_disk_sync;

/* Tart's caching= modes: automatic and cached use the host's page cache, uncached O_DIRECT. */
typedef enum {
	VMM_DISK_CACHE_DEFAULT,
	VMM_DISK_CACHE_AUTOMATIC,
	VMM_DISK_CACHE_CACHED,
	VMM_DISK_CACHE_UNCACHED,
} vmm_disk_caching;

typedef struct vmm_disk_opts {
	bool ro;
	vmm_disk_sync sync;
	vmm_disk_caching caching;
} vmm_disk_opts;

typedef struct vmm_disk_spec {
	char *path; /* owned: absolute path of an image or block device */
	bool cdrom; /* a `.iso`: a CD-ROM the firmware can boot (always read-only) */
	vmm_disk_opts o;
} vmm_disk_spec;

/* Tart's default mount tag (macOS guests mount it automatically). */
#define VMM_DIR_DEFAULT_TAG "com.apple.virtio-fs.automount"

typedef struct vmm_dir_spec {
	char *name; /* owned: NULL, or the directory's name under the tag's mount point */
	char *path; /* owned: absolute path of an existing directory */
	char *tag;  /* owned */
	bool ro;
} vmm_dir_spec;

/*
 * `--root-disk-opts`: comma-separated ro, sync=none|fsync|full,
 * caching=automatic|cached|uncached; "" is no options.  An unknown option
 * or value is VMM_EINVAL.
 */
int vmm_disk_opts_parse(const char *s, vmm_disk_opts *out, vmm_error **err);

/* `--disk PATH[:OPTIONS]`.  Free with vmm_disk_spec_clear. */
int vmm_disk_spec_parse(const char *arg, vmm_disk_spec *out, vmm_error **err);
void vmm_disk_spec_clear(vmm_disk_spec *d);

/*
 * Tart refuses disks named for the other architecture (`-amd64.iso` on its
 * arm64 hosts); vmm refuses an ISO named for an architecture other than
 * the guest's ("amd64" or "arm64").
 */
int vmm_disk_spec_check_arch(const vmm_disk_spec *d, const char *guest_arch, vmm_error **err);

/* `--dir [NAME:]PATH[:OPTIONS]` (options ro, tag=TAG).  Free with vmm_dir_spec_clear. */
int vmm_dir_spec_parse(const char *arg, vmm_dir_spec *out, vmm_error **err);
void vmm_dir_spec_clear(vmm_dir_spec *d);

/*
 * Tart's rule for several shares: one tag with more than one directory (or
 * with a named one) shows each under its name, so each must be named, and
 * the names must differ.  VMM_EUSAGE with Tart's text otherwise.
 */
int vmm_dir_specs_check(const vmm_dir_spec *d, size_t n, vmm_error **err);

/* How many shares have tag d[i].tag (the tag's group size). */
size_t vmm_dir_specs_count_tag(const vmm_dir_spec *d, size_t n, const char *tag);

#endif
