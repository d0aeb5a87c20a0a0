/* QEMU command lines from bundles: argv, model and fingerprint, --publish, firmware, accel. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <unistd.h>
#include <sys/stat.h>

#include "common/util.h"
#include "vm/bundle.h"
#include "vm/qemu.h"
#include "vm/state.h"
#include "tests/unit/helpers.h"

typedef struct fixture {
	char *base;
	char *a, *b; /* two bundles with different names, same content */
	vmm_config *cfg;
	char *bin; /* a fake qemu-system-x86_64 on PATH */
	char *old_path;
} fixture;

static void touch(const char *dir, const char *name)
{
	char *p = path_join(dir, name);
	assert_int_equal(vmm_write_file_atomic(p, "x", 1, 0644, NULL), 0);
	free(p);
}

static int setup(void **state)
{
	fixture *f = xcalloc(1, sizeof(*f));
	f->base = test_tmpdir("/tmp/vmm-qemu.");
	f->a = path_join(f->base, "vm-one");
	f->b = path_join(f->base, "another,vm");
	char *bindir = path_join(f->base, "bin");
	const char *dirs[] = {f->a, f->b, bindir};
	for (size_t i = 0; i < ARRAY_SIZE(dirs); i++) {
		assert_int_equal(mkdir(dirs[i], 0755), 0);
		if (i < 2) {
			touch(dirs[i], VMM_DISK_FILE);
			touch(dirs[i], VMM_KERNEL_FILE);
			touch(dirs[i], VMM_INITRAMFS_FILE);
		}
	}
	/* argv is built, not run: any executable named like QEMU will do */
	f->bin = path_join(bindir, "qemu-system-x86_64");
	assert_int_equal(vmm_write_file_atomic(f->bin, "#!/bin/sh\n", 10, 0755, NULL), 0);
	f->old_path = test_path_push(bindir, true);
	free(bindir);
	f->cfg = vmm_config_new_linux();
	strcpy(f->cfg->arch, "amd64");
	f->cfg->cpu_count = 2;
	f->cfg->memory_size = 256u << 20;
	f->cfg->cmdline = xstrdup("console=ttyS0");
	strcpy(f->cfg->mac, "7a:00:00:00:00:01");
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	fixture *f = *state;
	test_path_restore(f->old_path);
	test_tmpdir_free(f->base);
	free(f->a);
	free(f->b);
	free(f->bin);
	vmm_config_free(f->cfg);
	free(f);
	return 0;
}

static bool has_pair(const vmm_qemu_cmd *q, const char *opt, const char *val)
{
	for (size_t i = 0; i + 1 < q->argc; i++)
		if (strcmp(q->argv[i], opt) == 0 && strcmp(q->argv[i + 1], val) == 0)
			return true;
	return false;
}

/* The file behind descriptor number fd that q passes QEMU, or NULL. */
static const vmm_qemu_file *passed(const vmm_qemu_cmd *q, int fd)
{
	size_t i = (size_t)(fd - VMM_QEMU_FILE_FD);
	return fd >= VMM_QEMU_FILE_FD && i < q->nfiles ? &q->files[i] : NULL;
}

/* The first file of fd set `set` (-add-fd fd=N,set=S) with access mode `mode`, or NULL. */
static const vmm_qemu_file *in_set(const vmm_qemu_cmd *q, int set, int mode)
{
	for (size_t i = 0; i + 1 < q->argc; i++) {
		int fd, s;
		if (strcmp(q->argv[i], "-add-fd") != 0 ||
		    sscanf(q->argv[i + 1], "fd=%d,set=%d", &fd, &s) != 2 || s != set)
			continue;
		const vmm_qemu_file *f = passed(q, fd);
		if (f && (f->flags & O_ACCMODE) == mode)
			return f;
	}
	return NULL;
}

/*
 * An argument with the descriptors QEMU gets put back as the paths vmm
 * opened: "/dev/fdset/S" (by its read-only file) and "/proc/self/fd/N".
 */
static char *resolve_fds(const vmm_qemu_cmd *q, const char *arg)
{
	char *out = xstrdup(arg);
	for (char *l; (l = strstr(out, ",file.locking=off"));) /* see drive_file() */
		memmove(l, l + 17, strlen(l + 17) + 1);
	for (;;) {
		char *p = strstr(out, "/dev/fdset/"), *end;
		const char *path = NULL;
		if (p) {
			long set = strtol(p + 11, &end, 10);
			const vmm_qemu_file *f = in_set(q, (int)set, O_RDONLY);
			path = f ? f->path : "?";
		} else if ((p = strstr(out, "/proc/self/fd/"))) {
			long fd = strtol(p + 14, &end, 10);
			const vmm_qemu_file *f = passed(q, (int)fd);
			path = f ? f->path : "?";
		} else {
			return out;
		}
		*p = '\0';
		char *n = xasprintf("%s%s%s", out, path, end);
		free(out);
		out = n;
	}
}

/* Has q `opt` with a value that is `val` once its descriptors are named by their paths? */
static bool has_file_pair(const vmm_qemu_cmd *q, const char *opt, const char *val)
{
	for (size_t i = 0; i + 1 < q->argc; i++) {
		if (strcmp(q->argv[i], opt) != 0)
			continue;
		char *r = resolve_fds(q, q->argv[i + 1]);
		bool same = strcmp(r, val) == 0;
		free(r);
		if (same)
			return true;
	}
	return false;
}

/* Is the model's value after `opt` `val` somewhere? */
static bool model_pair(const vmm_qemu_cmd *q, const char *opt, const char *val)
{
	for (size_t i = 0; i + 1 < json_array_size(q->model); i++)
		if (strcmp(json_string_value(json_array_get(q->model, i)), opt) == 0 &&
		    strcmp(json_string_value(json_array_get(q->model, i + 1)), val) == 0)
			return true;
	return false;
}

static bool model_has(const vmm_qemu_cmd *q, const char *s)
{
	for (size_t i = 0; i < json_array_size(q->model); i++)
		if (strstr(json_string_value(json_array_get(q->model, i)), s))
			return true;
	return false;
}

static void test_qemu_cmd__direct_kernel(void **state)
{
	fixture *f = *state;
	vmm_qemu_opts o = {.accel = VMM_ACCEL_TCG};
	vmm_qemu_cmd *q = NULL;
	vmm_error *err = NULL;
	if (vmm_qemu_cmd_build(&q, f->a, f->cfg, &o, &err) < 0)
		fail_msg("%s", err->msg);
	assert_string_equal(q->argv[0], f->bin);
	assert_null(q->argv[q->argc]);
	assert_false(q->uefi);
	assert_string_equal(q->accel, "tcg");
	assert_string_equal(q->arch, "x86_64");
	assert_true(has_pair(q, "-machine", "q35"));
	assert_true(has_pair(q, "-smp", "2"));
	assert_true(has_pair(q, "-m", "256M"));
	/* QEMU gets the bundle's files open; the model names them as before */
	assert_true(has_file_pair(q, "-kernel", "kernel"));
	assert_true(has_file_pair(q, "-initrd", "initramfs"));
	assert_true(model_pair(q, "-kernel", "kernel"));
	assert_true(model_pair(q, "-initrd", "initramfs"));
	assert_true(
	    has_file_pair(q, "-drive", "file=disk.img,if=none,id=disk0,format=raw,discard=unmap"));
	assert_true(
	    model_pair(q, "-drive", "file=disk.img,if=none,id=disk0,format=raw,discard=unmap"));
	/* QEMU's image locks would outlive its reopenings through an fd set */
	assert_true(has_pair(q, "-drive",
			     "file=/dev/fdset/1,file.locking=off,if=none,id=disk0,"
			     "format=raw,discard=unmap"));
	/* the writable disk's set has a read-write file and a read-only twin */
	assert_non_null(in_set(q, 1, O_RDWR));
	assert_non_null(in_set(q, 1, O_RDONLY));
	for (size_t i = 0; i < q->nfiles; i++)
		assert_false(q->files[i].image && (q->files[i].flags & O_ACCMODE) != O_RDONLY);
	/* no argument but the binary names a file of the host for QEMU to open */
	for (size_t i = 1; i < q->argc; i++) {
		assert_null(strstr(q->argv[i], f->base));
		assert_null(strstr(q->argv[i], "disk.img"));
	}
	assert_true(
	    has_pair(q, "-sandbox",
		     "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny"));
	assert_false(model_has(q, "-sandbox"));
	/* QEMU's environment is its own: PATH, nothing of the caller's */
	assert_non_null(q->envp);
	assert_non_null(q->envp[0]);
	assert_int_equal(strncmp(q->envp[0], "PATH=", 5), 0);
	/* and, for an unprivileged QEMU, the userfaultfd library it gets open (uffd_shim.h) */
	if (q->drop) {
		assert_non_null(q->envp[1]);
		int fd = -1;
		assert_int_equal(sscanf(q->envp[1], "LD_PRELOAD=/proc/self/fd/%d", &fd), 1);
		assert_in_range(fd, VMM_QEMU_FILE_FD, VMM_QEMU_FILE_FD + (int)q->nfiles - 1);
		const vmm_qemu_file *lib = &q->files[fd - VMM_QEMU_FILE_FD];
		assert_non_null(lib->bytes);
		assert_true(lib->nbytes > 4 && memcmp(lib->bytes, "\177ELF", 4) == 0);
		assert_null(q->envp[2]);
	} else {
		assert_null(q->envp[1]);
	}
	assert_true(has_pair(q, "-append", "console=ttyS0"));
	assert_true(has_pair(q, "-device", "virtio-blk-pci,drive=disk0"));
	assert_true(has_pair(q, "-device", "virtio-net-pci,netdev=net0,mac=7a:00:00:00:00:01"));
	assert_true(has_pair(q, "-netdev", "user,id=net0"));
	assert_true(has_pair(q, "-display", "none"));
	assert_false(has_pair(q, "-incoming", "defer"));
	/* RAM in the memfd `vmm run` passes, named as QEMU names its own RAM */
	assert_true(has_pair(q, "-object",
			     "memory-backend-file,id=pc.ram,size=256M,mem-path=/proc/self/fd/6,"
			     "share=on"));
	assert_true(has_pair(q, "-machine", "memory-backend=pc.ram"));
	/* ... which is not part of the model, so states of earlier vmm still fit */
	assert_false(model_has(q, "memory-backend"));
	/* the model is what defines the guest, not where the bundle is */
	assert_false(model_has(q, f->base));
	assert_false(model_has(q, "vmm-vm-one"));
	assert_false(model_has(q, "qmp0"));
	assert_true(model_has(q, "qemu-system-x86_64"));
	assert_int_equal(strncmp(q->fingerprint, "sha256:", 7), 0);
	vmm_qemu_cmd_free(q);
}

static void test_qemu_cmd__fingerprint(void **state)
{
	fixture *f = *state;
	vmm_qemu_opts plain = {.accel = VMM_ACCEL_TCG};
	const char *pub[] = {"2222:22", "udp:127.0.0.1:5353:53"};
	vmm_qemu_opts extras = {.accel = VMM_ACCEL_TCG,
				.publish = pub,
				.npublish = 2,
				.vnc = "127.0.0.1:0",
				.incoming = true};
	vmm_qemu_cmd *a = NULL, *b = NULL, *c = NULL;
	assert_int_equal(vmm_qemu_cmd_build(&a, f->a, f->cfg, &plain, NULL), 0);
	/* another directory, forwards, VNC and -incoming: same guest, same fingerprint */
	assert_int_equal(vmm_qemu_cmd_build(&b, f->b, f->cfg, &extras, NULL), 0);
	assert_string_equal(a->fingerprint, b->fingerprint);
	assert_true(has_pair(b, "-netdev",
			     "user,id=net0,hostfwd=tcp::2222-:22,hostfwd=udp:127.0.0.1:5353-:53"));
	assert_true(has_pair(b, "-incoming", "defer"));
	assert_true(has_pair(b, "-vnc", "127.0.0.1:0"));
	assert_true(has_pair(b, "-name", "vmm-another_vm"));
	/* more memory is another guest */
	f->cfg->memory_size = 512u << 20;
	assert_int_equal(vmm_qemu_cmd_build(&c, f->a, f->cfg, &plain, NULL), 0);
	assert_string_not_equal(a->fingerprint, c->fingerprint);
	char *fp = vmm_qemu_fingerprint(c->model);
	assert_string_equal(fp, c->fingerprint);
	free(fp);
	vmm_qemu_cmd_free(a);
	vmm_qemu_cmd_free(b);
	vmm_qemu_cmd_free(c);
}

/*
 * run's flags: what the guest sees of them is in the model, the host's side
 * (paths, cache modes) is not, and without them the model is the one that
 * states saved before these flags existed were made with.
 */
static void test_qemu_cmd__run_devices(void **state)
{
	fixture *f = *state;
	vmm_error *err = NULL;
	vmm_qemu_opts plain = {.accel = VMM_ACCEL_TCG, .vsock = VMM_VSOCK_OFF};
	vmm_qemu_cmd *base = NULL, *q = NULL;
	assert_int_equal(vmm_qemu_cmd_build(&base, f->a, f->cfg, &plain, NULL), 0);
	assert_true(has_file_pair(base, "-drive",
				  "file=disk.img,if=none,id=disk0,format=raw,discard=unmap"));
	assert_int_equal(json_array_size(base->model), 30);
	assert_null(vmm_qemu_unsavable(base));
	assert_false(vmm_qemu_model_vsock(base->model));

	/* host-side root disk options: other arguments, the same guest */
	vmm_qemu_opts o = plain;
	o.root_disk = (vmm_disk_opts){.sync = VMM_DISK_SYNC_NONE};
	assert_int_equal(vmm_qemu_cmd_build(&q, f->a, f->cfg, &o, NULL), 0);
	assert_true(has_file_pair(q, "-drive",
				  "file=disk.img,if=none,id=disk0,format=raw,"
				  "discard=unmap,cache.no-flush=on"));
	assert_string_equal(q->fingerprint, base->fingerprint);
	vmm_qemu_cmd_free(q);
	/* a read-only root disk is another guest */
	o.root_disk.ro = true;
	assert_int_equal(vmm_qemu_cmd_build(&q, f->a, f->cfg, &o, NULL), 0);
	assert_string_not_equal(q->fingerprint, base->fingerprint);
	assert_true(model_has(q, "readonly=on"));
	assert_string_not_equal(vmm_qemu_model_hint(base->model, q->model), "");
	assert_string_equal(vmm_qemu_model_hint(base->model, base->model), "");
	vmm_qemu_cmd_free(q);
	/* uncached (O_DIRECT) on a disk that is not whole 4 KiB blocks: refused */
	o.root_disk = (vmm_disk_opts){.caching = VMM_DISK_CACHE_UNCACHED};
	assert_int_equal(vmm_qemu_cmd_build(&q, f->a, f->cfg, &o, &err), -1);
	assert_non_null(strstr(err->msg, "not a multiple of 4096"));
	vmm_error_free(err);
	err = NULL;

	/* extra disks: kind, order and read-only in the model, paths only in argv */
	char *img1 = path_join(f->base, "one.img"), *img2 = path_join(f->base, "two,img");
	vmm_disk_spec disks[] = {
	    {img1, false, {.ro = true}},
	    {img2, true, {.ro = true, .caching = VMM_DISK_CACHE_UNCACHED}},
	};
	o = plain;
	o.disks = disks;
	o.ndisks = 2;
	vmm_qemu_cmd *d1 = NULL, *d2 = NULL;
	assert_int_equal(vmm_qemu_cmd_build(&d1, f->a, f->cfg, &o, NULL), 0);
	char *want = xasprintf("file=%s,if=none,id=disk1,format=raw,readonly=on", img1);
	assert_true(has_file_pair(d1, "-drive", want));
	free(want);
	want = xasprintf("file=%s/two,img,if=none,id=cd0,media=cdrom,readonly=on,format=raw,"
			 "cache.direct=on",
			 f->base);
	assert_true(has_file_pair(d1, "-drive", want));
	free(want);
	assert_true(has_pair(d1, "-device", "virtio-blk-pci,drive=disk1"));
	assert_true(has_pair(d1, "-device", "ide-cd,drive=cd0,bus=ide.0"));
	assert_false(model_has(d1, f->base));
	assert_string_not_equal(d1->fingerprint, base->fingerprint);
	/* the same kinds of disk elsewhere: the same guest (a fork's own copy) */
	disks[0].path = img2;
	disks[1].path = img1;
	assert_int_equal(vmm_qemu_cmd_build(&d2, f->a, f->cfg, &o, NULL), 0);
	assert_string_equal(d1->fingerprint, d2->fingerprint);
	vmm_qemu_cmd_free(d2);
	/* but a writable one instead of a read-only one is not */
	disks[0].o.ro = false;
	assert_int_equal(vmm_qemu_cmd_build(&d2, f->a, f->cfg, &o, NULL), 0);
	assert_string_not_equal(d1->fingerprint, d2->fingerprint);
	vmm_qemu_cmd_free(d1);
	vmm_qemu_cmd_free(d2);

	/* shares: one 9p device per tag; named ones export vmm's directory of mount points */
	char t1[] = VMM_DIR_DEFAULT_TAG, t2[] = "work", na[] = "a", nb[] = "b";
	vmm_dir_spec dirs[] = {
	    {na, f->a, t1, false}, {NULL, f->b, t2, true}, {nb, f->base, t1, true}};
	o = plain;
	o.dirs = dirs;
	o.ndirs = 3;
	assert_int_equal(vmm_qemu_cmd_build(&q, f->a, f->cfg, &o, &err), -1);
	assert_non_null(strstr(err->msg, "named shares need a directory"));
	vmm_error_free(err);
	err = NULL;
	char *shares = path_join(f->base, "shares");
	o.shares_dir = shares;
	assert_int_equal(vmm_qemu_cmd_build(&q, f->a, f->cfg, &o, NULL), 0);
	want = xasprintf("local,id=fs0,path=%s/t0,security_model=none,multidevs=remap", shares);
	assert_true(has_pair(q, "-fsdev", want));
	free(want);
	want =
	    xasprintf("local,id=fs1,path=%s/another,,vm,security_model=none,readonly=on", f->base);
	assert_true(has_pair(q, "-fsdev", want));
	free(want);
	assert_true(has_pair(q, "-device",
			     "virtio-9p-pci,id=share0,fsdev=fs0,mount_tag=" VMM_DIR_DEFAULT_TAG));
	assert_true(has_pair(q, "-device", "virtio-9p-pci,id=share1,fsdev=fs1,mount_tag=work"));
	assert_false(model_has(q, f->base));
	assert_int_equal(q->nbinds, 2);
	assert_string_equal(q->binds[0].src, f->a);
	want = path_join(shares, "t0/a");
	assert_string_equal(q->binds[0].dst, want);
	free(want);
	assert_false(q->binds[0].ro);
	assert_true(q->binds[1].ro);
	assert_non_null(vmm_qemu_unsavable(q));
	/* the mount points: made, and removed with rmdir only */
	assert_int_equal(mkdir(shares, 0755), 0);
	assert_int_equal(vmm_qemu_shares_prepare(q, NULL), 0);
	assert_true(path_is_dir(q->binds[1].dst));
	vmm_qemu_shares_cleanup(q, shares);
	assert_false(path_exists(shares));
	vmm_qemu_cmd_free(q);
	free(shares);

	/* the agent's vsock: a state made with one needs one */
	o = plain;
	o.vsock = VMM_VSOCK_REQUIRED;
	if (access("/dev/vhost-vsock", R_OK | W_OK) < 0) {
		assert_int_equal(vmm_qemu_cmd_build(&q, f->a, f->cfg, &o, &err), -1);
		assert_int_equal(err->code, VMM_EINCOMPATIBLE);
		assert_non_null(strstr(err->msg, "virtio-vsock"));
		vmm_error_free(err);
		err = NULL;
	} else {
		assert_int_equal(vmm_qemu_cmd_build(&q, f->a, f->cfg, &o, NULL), 0);
		assert_true(q->vsock_cid >= 3);
		assert_true(vmm_qemu_model_vsock(q->model));
		assert_false(model_has(q, "guest-cid"));
		vmm_qemu_cmd_free(q);
	}
	json_t *m = json_deep_copy(base->model);
	json_array_append_new(m, json_string("-device"));
	json_array_append_new(m, json_string("vhost-vsock-pci,id=vsock0"));
	assert_true(vmm_qemu_model_vsock(m));
	json_decref(m);

	/* --nested needs KVM */
	o = plain;
	o.nested = true;
	assert_int_equal(vmm_qemu_cmd_build(&q, f->a, f->cfg, &o, &err), -1);
	assert_int_equal(err->code, VMM_EUSAGE);
	assert_non_null(strstr(err->msg, "--nested: nested virtualization needs KVM"));
	vmm_error_free(err);
	free(img1);
	free(img2);
	vmm_qemu_cmd_free(base);
}

static void test_qemu_cmd__bad_bundles(void **state)
{
	fixture *f = *state;
	vmm_qemu_opts o = {.accel = VMM_ACCEL_TCG};
	vmm_qemu_cmd *q = NULL;
	vmm_error *err = NULL;
	/* a kernel that cannot be read */
	char *k = path_join(f->a, VMM_KERNEL_FILE);
	chmod(k, 0);
	if (geteuid() != 0) {
		assert_int_equal(vmm_qemu_cmd_build(&q, f->a, f->cfg, &o, &err), -1);
		assert_non_null(strstr(err->msg, "kernel"));
	}
	chmod(k, 0644);
	free(k);
	/* no disk */
	char *d = path_join(f->a, VMM_DISK_FILE);
	unlink(d);
	assert_int_equal(vmm_qemu_cmd_build(&q, f->a, f->cfg, &o, &err), -1);
	assert_non_null(strstr(err->msg, "disk"));
	free(d);
	/* QEMU not on PATH */
	setenv("PATH", "/nonexistent", 1);
	assert_int_equal(vmm_qemu_cmd_build(&q, f->b, f->cfg, &o, &err), -1);
	assert_string_equal(err->msg, "qemu-system-x86_64 is not on PATH: install qemu-system-x86");
	/* macOS and ASIF */
	strcpy(f->cfg->os, "darwin");
	assert_int_equal(vmm_qemu_cmd_build(&q, f->b, f->cfg, &o, &err), -1);
	assert_non_null(strstr(err->msg, "macOS"));
	strcpy(f->cfg->os, "linux");
	vmm_error_free(err);
}

/* A TAP or user-mode NAT is the backend, which the guest cannot see: same fingerprint. */
static void test_qemu_cmd__network_backend(void **state)
{
	fixture *f = *state;
	const char *pub[] = {"80:80"};
	vmm_qemu_opts user = {.accel = VMM_ACCEL_TCG, .publish = pub, .npublish = 1};
	vmm_qemu_opts tap = {.accel = VMM_ACCEL_TCG, .tap = true, .publish = pub, .npublish = 1};
	vmm_qemu_cmd *a = NULL, *b = NULL;
	assert_int_equal(vmm_qemu_cmd_build(&a, f->a, f->cfg, &user, NULL), 0);
	assert_int_equal(vmm_qemu_cmd_build(&b, f->a, f->cfg, &tap, NULL), 0);
	assert_true(has_pair(a, "-netdev", "user,id=net0,hostfwd=tcp::80-:80"));
	/* on a TAP, vm/net forwards the ports; no vnet header, as user mode has none */
	assert_true(has_pair(b, "-netdev", "tap,id=net0,fd=4,vhost=off"));
	assert_string_equal(a->fingerprint, b->fingerprint);
	/* but the model says which: user-mode NAT saves itself in a state */
	assert_true(vmm_qemu_model_user_net(a->model));
	assert_false(vmm_qemu_model_user_net(b->model));
	/* a model of vmm 0.1 named the backend: it still fingerprints the same */
	json_t *old = json_deep_copy(b->model);
	json_array_insert_new(old, 3, json_string("-netdev"));
	json_array_insert_new(old, 4, json_string("user,id=net0"));
	char *fp = vmm_qemu_fingerprint(old);
	assert_string_equal(fp, b->fingerprint);
	free(fp);
	json_decref(old);
	vmm_qemu_cmd_free(a);
	vmm_qemu_cmd_free(b);
}

static void test_qemu_cmd__uefi_firmware(void **state)
{
	fixture *f = *state;
	char *k = path_join(f->a, VMM_KERNEL_FILE);
	unlink(k);
	free(k);
	vmm_qemu_opts o = {.accel = VMM_ACCEL_TCG};
	vmm_qemu_cmd *q = NULL;
	vmm_error *err = NULL;
	/* an initramfs and a command line without a kernel: the kernel is missing */
	assert_int_equal(vmm_qemu_cmd_build(&q, f->a, f->cfg, &o, &err), -1);
	assert_non_null(strstr(err->msg, "kernel `"));
	assert_non_null(strstr(err->msg, "no such file"));
	char *i = path_join(f->a, VMM_INITRAMFS_FILE);
	unlink(i);
	free(i);
	free(f->cfg->cmdline);
	f->cfg->cmdline = NULL;
	/* explicit firmware that is not there */
	setenv("VMM_FIRMWARE", "/nonexistent/CODE.fd:/nonexistent/VARS.fd", 1);
	assert_int_equal(vmm_qemu_cmd_build(&q, f->a, f->cfg, &o, &err), -1);
	assert_non_null(strstr(err->msg, "UEFI firmware `/nonexistent/CODE.fd`"));
	/* explicit firmware that is */
	char *code = path_join(f->base, "CODE.fd"), *vars = path_join(f->base, "VARS.fd");
	assert_int_equal(vmm_write_file_atomic(code, "c", 1, 0644, NULL), 0);
	assert_int_equal(vmm_write_file_atomic(vars, "vars-template", 13, 0644, NULL), 0);
	char *env = xasprintf("%s:%s", code, vars);
	setenv("VMM_FIRMWARE", env, 1);
	if (vmm_qemu_cmd_build(&q, f->a, f->cfg, &o, &err) < 0)
		fail_msg("%s", err->msg);
	assert_true(q->uefi);
	char *pflash = xasprintf("if=pflash,format=raw,unit=0,readonly=on,file=%s", code);
	assert_true(has_file_pair(q, "-drive", pflash));
	assert_true(model_pair(q, "-drive", pflash));
	assert_true(has_file_pair(q, "-drive", "if=pflash,format=raw,unit=1,file=efivars.fd"));
	assert_true(model_pair(q, "-drive", "if=pflash,format=raw,unit=1,file=efivars.fd"));
	assert_false(model_has(q, "-kernel"));
	/* efivars.fd is made from the template once, then left alone */
	assert_int_equal(vmm_qemu_prepare_efivars(q, f->a, NULL), 0);
	char *ev = path_join(f->a, VMM_EFIVARS_FILE);
	char *data = NULL;
	size_t len = 0;
	assert_int_equal(vmm_read_file(ev, 1024, &data, &len, NULL), 0);
	assert_string_equal(data, "vars-template");
	free(data);
	assert_int_equal(vmm_write_file_atomic(ev, "guest-vars", 10, 0644, NULL), 0);
	assert_int_equal(vmm_qemu_prepare_efivars(q, f->a, NULL), 0);
	assert_int_equal(vmm_read_file(ev, 1024, &data, &len, NULL), 0);
	assert_string_equal(data, "guest-vars");
	free(data);
	unsetenv("VMM_FIRMWARE");
	vmm_qemu_cmd_free(q);
	vmm_error_free(err);
	free(ev);
	free(pflash);
	free(env);
	free(code);
	free(vars);
}

static void test_qemu_cmd__arm64_guest(void **state)
{
	fixture *f = *state;
	/* Tart's Linux images are arm64 UEFI disks: qemu-system-aarch64, virt, AAVMF */
	char *bin = path_join(f->base, "bin/qemu-system-aarch64");
	assert_int_equal(vmm_write_file_atomic(bin, "#!/bin/sh\n", 10, 0755, NULL), 0);
	char *code = path_join(f->base, "AAVMF_CODE.fd"),
	     *vars = path_join(f->base, "AAVMF_VARS.fd");
	assert_int_equal(vmm_write_file_atomic(code, "c", 1, 0644, NULL), 0);
	assert_int_equal(vmm_write_file_atomic(vars, "v", 1, 0644, NULL), 0);
	char *env = xasprintf("%s:%s", code, vars);
	setenv("VMM_FIRMWARE", env, 1);
	const char *files[] = {VMM_KERNEL_FILE, VMM_INITRAMFS_FILE};
	for (size_t i = 0; i < ARRAY_SIZE(files); i++) {
		char *p = path_join(f->a, files[i]);
		unlink(p);
		free(p);
	}
	free(f->cfg->cmdline);
	f->cfg->cmdline = NULL;
	strcpy(f->cfg->arch, "arm64");
	vmm_qemu_opts o = {.accel = VMM_ACCEL_AUTO};
	vmm_qemu_cmd *q = NULL;
	vmm_error *err = NULL;
	if (vmm_qemu_cmd_build(&q, f->a, f->cfg, &o, &err) < 0)
		fail_msg("%s", err->msg);
	assert_string_equal(q->binary, bin);
	assert_string_equal(q->arch, "aarch64");
	assert_true(q->uefi);
#if !defined(__aarch64__)
	assert_string_equal(q->accel, "tcg"); /* another architecture: emulated */
	assert_non_null(q->notice);
	assert_true(has_pair(q, "-cpu", "max"));
#endif
	assert_true(has_pair(q, "-machine", "virt,gic-version=3"));
	assert_true(has_pair(q, "-machine", "memory-backend=mach-virt.ram"));
	assert_true(has_pair(q, "-device", "virtio-gpu-pci"));
	assert_true(has_pair(q, "-device", "usb-tablet"));
	assert_true(has_file_pair(q, "-drive", "if=pflash,format=raw,unit=1,file=efivars.fd"));
	/* arm64's virt machine has no SATA: an ISO goes on virtio-scsi; no USB input on request */
	char *iso = path_join(f->base, "debian-arm64.iso");
	vmm_disk_spec cd = {iso, true, {.ro = true}};
	vmm_qemu_opts o2 = {.accel = VMM_ACCEL_TCG,
			    .disks = &cd,
			    .ndisks = 1,
			    .no_keyboard = true,
			    .no_pointer = true};
	vmm_qemu_cmd *q2 = NULL;
	if (vmm_qemu_cmd_build(&q2, f->a, f->cfg, &o2, &err) < 0)
		fail_msg("%s", err->msg);
	assert_true(has_pair(q2, "-device", "virtio-scsi-pci,id=scsi0"));
	assert_true(has_pair(q2, "-device", "scsi-cd,drive=cd0,bus=scsi0.0"));
	assert_false(has_pair(q2, "-device", "usb-kbd"));
	assert_false(has_pair(q2, "-device", "usb-tablet"));
	assert_true(has_pair(q2, "-device", "qemu-xhci"));
	vmm_qemu_cmd_free(q2);
	/* Tart's rule the other way round: an amd64 ISO for an arm64 guest */
	free(iso);
	iso = path_join(f->base, "debian-amd64.iso");
	cd.path = iso;
	assert_int_equal(vmm_qemu_cmd_build(&q2, f->a, f->cfg, &o2, &err), -1);
	assert_non_null(strstr(err->msg, "Please use an 'arm64' version of the disk."));
	vmm_error_free(err);
	free(iso);
	unsetenv("VMM_FIRMWARE");
	vmm_qemu_cmd_free(q);
	free(env);
	free(code);
	free(vars);
	free(bin);
}

static void test_qemu_publish__parse(void **state)
{
	(void)state;
	struct {
		const char *in, *out;
	} ok[] = {
	    {"8080:80", "tcp::8080-:80"},
	    {"tcp:2222:22", "tcp::2222-:22"},
	    {"udp:5353:53", "udp::5353-:53"},
	    {"127.0.0.1:8080:80", "tcp:127.0.0.1:8080-:80"},
	    {"tcp:0.0.0.0:1:65535", "tcp:0.0.0.0:1-:65535"},
	};
	for (size_t i = 0; i < ARRAY_SIZE(ok); i++) {
		char *fwd = NULL;
		vmm_error *err = NULL;
		if (vmm_qemu_parse_publish(ok[i].in, &fwd, &err) < 0)
			fail_msg("%s: %s", ok[i].in, err->msg);
		assert_string_equal(fwd, ok[i].out);
		free(fwd);
	}
	const char *bad[] = {"",    "80",   "0:80",    "80:0",	    "70000:80",
			     "a:b", "tcp:", "x,y:1:2", "1:2:3:4:5", "sctp:1:2"};
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		char *fwd = NULL;
		vmm_error *err = NULL;
		if (vmm_qemu_parse_publish(bad[i], &fwd, &err) == 0)
			fail_msg("\"%s\" was accepted as %s", bad[i], fwd);
		assert_int_equal(err->code, VMM_EUSAGE);
		vmm_error_free(err);
	}
}

static void test_qemu_accel__choice(void **state)
{
	(void)state;
	const char *accel = NULL;
	char *notice = NULL;
	assert_int_equal(vmm_qemu_pick_accel(VMM_ACCEL_TCG, "x86_64", &accel, &notice, NULL), 0);
	assert_string_equal(accel, "tcg");
	assert_null(notice);
	/* another architecture never gets KVM */
	vmm_error *err = NULL;
	assert_int_equal(vmm_qemu_pick_accel(VMM_ACCEL_AUTO, "aarch64", &accel, &notice, NULL), 0);
	assert_string_equal(accel, "tcg");
	assert_non_null(strstr(notice, "architecture"));
	free(notice);
	assert_int_equal(vmm_qemu_pick_accel(VMM_ACCEL_KVM, "aarch64", &accel, &notice, &err), -1);
	assert_non_null(strstr(err->msg, "--accel kvm"));
	vmm_error_free(err);
	/* auto on this host: KVM exactly when it can be used, else TCG with a notice */
	assert_int_equal(vmm_qemu_pick_accel(VMM_ACCEL_AUTO, "x86_64", &accel, &notice, NULL), 0);
	if (strcmp(accel, "tcg") == 0)
		assert_non_null(notice);
	else
		assert_null(notice);
	free(notice);
	vmm_accel a;
	assert_int_equal(vmm_accel_parse("kvm", &a), 0);
	assert_int_equal(a, VMM_ACCEL_KVM);
	assert_int_equal(vmm_accel_parse(NULL, &a), 0);
	assert_int_equal(a, VMM_ACCEL_AUTO);
	assert_int_equal(vmm_accel_parse("hvf", &a), -1);
}

static void test_qemu_state__check_names_both_sides(void **state)
{
	fixture *f = *state;
	vmm_qemu_opts o = {.accel = VMM_ACCEL_TCG};
	vmm_qemu_cmd *q = NULL;
	assert_int_equal(vmm_qemu_cmd_build(&q, f->a, f->cfg, &o, NULL), 0);
	vmm_savefile_header *h = vmm_savefile_header_new();
	h->qemu_version = xstrdup("7.2.22");
	h->arch = xstrdup("x86_64");
	h->accel = xstrdup("tcg");
	h->fingerprint = xstrdup(q->fingerprint);
	h->model = json_deep_copy(q->model);
	h->cpus = 2;
	h->memory = 256u << 20;
	vmm_error *err = NULL;
	assert_int_equal(vmm_state_check(h, q, f->cfg, "7.2.22", &err), 0);
	f->cfg->memory_size = 512u << 20;
	assert_int_equal(vmm_state_check(h, q, f->cfg, NULL, &err), -1);
	assert_string_equal(err->msg, "memory 256 MiB in the state vs 512 MiB now");
	assert_int_equal(err->code, VMM_EINCOMPATIBLE);
	f->cfg->memory_size = 256u << 20;
	f->cfg->cpu_count = 4;
	assert_int_equal(vmm_state_check(h, q, f->cfg, NULL, &err), -1);
	assert_string_equal(err->msg, "2 CPUs in the state vs 4 now");
	f->cfg->cpu_count = 2;
	assert_int_equal(vmm_state_check(h, q, f->cfg, "8.0.0", &err), -1);
	assert_string_equal(err->msg, "QEMU 7.2.22 in the state vs QEMU 8.0.0 now");
	/* a model that differs in one device names that device on both sides */
	json_array_set_new(h->model, json_array_size(h->model) - 1, json_string("chardev:other"));
	free(h->fingerprint);
	h->fingerprint = vmm_qemu_fingerprint(h->model);
	assert_int_equal(vmm_state_check(h, q, f->cfg, "7.2.22", &err), -1);
	assert_string_equal(err->msg, "QEMU arguments `-serial chardev:other` in the state vs "
				      "`-serial chardev:console` now");
	vmm_error_free(err);
	vmm_savefile_header_free(h);
	vmm_qemu_cmd_free(q);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_qemu_cmd__direct_kernel, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_qemu_cmd__fingerprint, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_qemu_cmd__bad_bundles, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_qemu_cmd__run_devices, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_qemu_cmd__uefi_firmware, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_qemu_cmd__arm64_guest, setup, teardown),
	    cmocka_unit_test(test_qemu_publish__parse),
	    cmocka_unit_test_setup_teardown(test_qemu_cmd__network_backend, setup, teardown),
	    cmocka_unit_test(test_qemu_accel__choice),
	    cmocka_unit_test_setup_teardown(test_qemu_state__check_names_both_sides, setup,
					    teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
