#include "vm/qemu.h"
#include "common/json.h"
#include "common/util.h"
#include "vm/bundle.h"
#include "vm/net.h"
#include "vm/uffd_shim.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <grp.h>
#include <pwd.h>
#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>
#include <sched.h>
#include <signal.h>
#include <unistd.h>
#include <linux/vhost.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statvfs.h>

int vmm_accel_parse(const char *s, vmm_accel *out)
{
	if (!s || strcmp(s, "auto") == 0)
		*out = VMM_ACCEL_AUTO;
	else if (strcmp(s, "kvm") == 0)
		*out = VMM_ACCEL_KVM;
	else if (strcmp(s, "tcg") == 0)
		*out = VMM_ACCEL_TCG;
	else
		return -1;
	return 0;
}

void vmm_qemu_cmd_free(vmm_qemu_cmd *q)
{
	if (!q)
		return;
	free(q->binary);
	for (size_t i = 0; i < q->argc; i++)
		free(q->argv[i]);
	free(q->argv);
	json_decref(q->model);
	free(q->fingerprint);
	free(q->notice);
	free(q->firmware_code);
	free(q->firmware_vars);
	for (size_t i = 0; i < q->nbinds; i++) {
		free(q->binds[i].src);
		free(q->binds[i].dst);
	}
	free(q->binds);
	free(q->uid_map);
	free(q->gid_map);
	for (size_t i = 0; i < q->nfiles; i++)
		free(q->files[i].path);
	free(q->files);
	if (q->envp)
		for (char **e = q->envp; *e; e++)
			free(*e);
	free(q->envp);
	free(q->sandbox_notice);
	free(q);
}

char *vmm_find_in_path(const char *name)
{
	if (strchr(name, '/'))
		return access(name, X_OK) == 0 ? xstrdup(name) : NULL;
	const char *path = getenv("PATH");
	if (!path)
		path = "/usr/local/bin:/usr/bin:/bin";
	cleanup_free char *copy = xstrdup(path);
	char *save = NULL;
	for (char *d = strtok_r(copy, ":", &save); d; d = strtok_r(NULL, ":", &save)) {
		char *p = path_join(*d ? d : ".", name);
		struct stat st;
		if (stat(p, &st) == 0 && S_ISREG(st.st_mode) && access(p, X_OK) == 0)
			return p;
		free(p);
	}
	return NULL;
}

/* --- accelerator ------------------------------------------------------------ */

static const char *host_target(void)
{
#if defined(__x86_64__)
	return "x86_64";
#elif defined(__aarch64__)
	return "aarch64";
#else
	return "unknown";
#endif
}

/* Why KVM cannot be used here, or NULL if it can. */
static const char *kvm_unusable(const char *arch)
{
	if (strcmp(arch, host_target()) != 0)
		return "the guest's architecture differs from the host's";
	int fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (fd < 0)
		return errno == ENOENT ? "/dev/kvm does not exist" : "/dev/kvm cannot be opened";
	close(fd);
#if defined(__x86_64__)
	cleanup_free char *info = NULL;
	size_t len = 0;
	if (vmm_read_file("/proc/cpuinfo", 64u << 20, &info, &len, NULL) < 0)
		return "/proc/cpuinfo cannot be read";
	for (char *line = strtok(info, "\n"); line; line = strtok(NULL, "\n")) {
		if (strncmp(line, "flags", 5) != 0)
			continue;
		if (strstr(line, " vmx") || strstr(line, " svm"))
			return NULL;
		break;
	}
	return "the CPU has no hardware virtualization (vmx/svm)";
#else
	return NULL;
#endif
}

int vmm_qemu_pick_accel(vmm_accel req, const char *arch, const char **accel, char **notice,
			vmm_error **err)
{
	*notice = NULL;
	if (req == VMM_ACCEL_TCG) {
		*accel = "tcg";
		return 0;
	}
	const char *why = kvm_unusable(arch);
	if (!why) {
		*accel = "kvm";
		return 0;
	}
	if (req == VMM_ACCEL_KVM)
		return vmm_error_set(err, VMM_EINVAL, "--accel kvm: KVM cannot be used: %s", why);
	*accel = "tcg";
	*notice =
	    xasprintf("KVM cannot be used (%s); running under TCG emulation, which is slower", why);
	return 0;
}

/* --- firmware ---------------------------------------------------------------- */

static bool json_array_has(json_t *a, const char *s)
{
	size_t i;
	json_t *v;
	json_array_foreach(a, i, v)
	{
		if (json_is_string(v) && strcmp(json_string_value(v), s) == 0)
			return true;
	}
	return false;
}

/* Does QEMU firmware descriptor `d` describe plain split-flash UEFI for `arch`? */
static bool descriptor_fits(json_t *d, const char *arch, const char **code, const char **vars)
{
	if (!json_array_has(json_object_get(d, "interface-types"), "uefi"))
		return false;
	json_t *features = json_object_get(d, "features");
	if (json_array_has(features, "secure-boot") || json_array_has(features, "requires-smm") ||
	    json_array_has(features, "enrolled-keys") || json_array_has(features, "amd-sev-es"))
		return false;
	json_t *m = json_object_get(d, "mapping");
	const char *dev = json_string_value(json_object_get(m, "device"));
	const char *mode = json_string_value(json_object_get(m, "mode"));
	if (!dev || strcmp(dev, "flash") != 0 || (mode && strcmp(mode, "split") != 0))
		return false;
	json_t *exe = json_object_get(m, "executable"),
	       *tmpl = json_object_get(m, "nvram-template");
	const char *fmt = json_string_value(json_object_get(exe, "format"));
	*code = json_string_value(json_object_get(exe, "filename"));
	*vars = json_string_value(json_object_get(tmpl, "filename"));
	if (!*code || !*vars || (fmt && strcmp(fmt, "raw") != 0))
		return false;
	const char *probe = strcmp(arch, "x86_64") == 0 ? "pc-q35-99.0" : "virt-99.0";
	size_t i;
	json_t *t;
	json_array_foreach(json_object_get(d, "targets"), i, t)
	{
		const char *a = json_string_value(json_object_get(t, "architecture"));
		if (!a || strcmp(a, arch) != 0)
			continue;
		size_t j;
		json_t *pat;
		json_array_foreach(json_object_get(t, "machines"), j, pat)
		{
			if (json_is_string(pat) && fnmatch(json_string_value(pat), probe, 0) == 0)
				return true;
		}
	}
	return false;
}

static int cmp_strp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static int from_descriptors(const char *arch, char **code, char **vars)
{
	/* QEMU's interop spec: same file name in /etc overrides /usr/share; sorted by name */
	static const char *const dirs[] = {"/etc/qemu/firmware", "/usr/share/qemu/firmware"};
	char **names = NULL;
	size_t n = 0;
	for (size_t i = 0; i < ARRAY_SIZE(dirs); i++) {
		cleanup_dir DIR *d = opendir(dirs[i]);
		struct dirent *e;
		while (d && (e = readdir(d))) {
			size_t l = strlen(e->d_name);
			if (l < 6 || strcmp(e->d_name + l - 5, ".json") != 0)
				continue;
			bool dup = false;
			for (size_t k = 0; k < n; k++)
				dup = dup || strcmp(strrchr(names[k], '/') + 1, e->d_name) == 0;
			if (dup)
				continue;
			names = xrealloc(names, (n + 1) * sizeof(char *));
			names[n++] = path_join(dirs[i], e->d_name);
		}
	}
	/* sort by base name */
	for (size_t i = 0; i < n; i++) {
		char *base = strrchr(names[i], '/') + 1;
		char *full = names[i];
		names[i] = xasprintf("%s\t%s", base, full);
		free(full);
	}
	if (n)
		qsort(names, n, sizeof(char *), cmp_strp);
	int found = -1;
	for (size_t i = 0; i < n && found < 0; i++) {
		const char *path = strchr(names[i], '\t') + 1;
		json_t *d = NULL;
		if (vmm_json_load_file(&d, path, 1 << 20, NULL) < 0)
			continue;
		const char *c = NULL, *v = NULL;
		if (json_is_object(d) && descriptor_fits(d, arch, &c, &v) && access(c, R_OK) == 0 &&
		    access(v, R_OK) == 0) {
			*code = xstrdup(c);
			*vars = xstrdup(v);
			found = 0;
		}
		json_decref(d);
	}
	vmm_strv_free(names, n);
	return found;
}

int vmm_qemu_find_firmware(const char *arch, char **code, char **vars, vmm_error **err)
{
	const char *env = getenv("VMM_FIRMWARE");
	if (env && *env) {
		const char *colon = strchr(env, ':');
		if (!colon)
			return vmm_error_set(err, VMM_EINVAL,
					     "VMM_FIRMWARE=\"%s\": expected CODE:VARS", env);
		cleanup_free char *c = xstrndup(env, (size_t)(colon - env));
		cleanup_free char *v = xstrdup(colon + 1);
		if (access(c, R_OK) < 0)
			return vmm_error_errno(err, errno, "UEFI firmware `%s`", c);
		if (access(v, R_OK) < 0)
			return vmm_error_errno(err, errno, "UEFI variables template `%s`", v);
		*code = steal_ptr(c);
		*vars = steal_ptr(v);
		return 0;
	}
	if (from_descriptors(arch, code, vars) == 0)
		return 0;
	static const char *const x86[][2] = {
	    {"/usr/share/OVMF/OVMF_CODE_4M.fd", "/usr/share/OVMF/OVMF_VARS_4M.fd"},
	    {"/usr/share/OVMF/OVMF_CODE.fd", "/usr/share/OVMF/OVMF_VARS.fd"},
	    {"/usr/share/edk2/ovmf/OVMF_CODE.fd", "/usr/share/edk2/ovmf/OVMF_VARS.fd"},
	};
	static const char *const arm[][2] = {
	    {"/usr/share/AAVMF/AAVMF_CODE.fd", "/usr/share/AAVMF/AAVMF_VARS.fd"},
	    {"/usr/share/edk2/aarch64/QEMU_EFI-pflash.raw",
	     "/usr/share/edk2/aarch64/vars-template-pflash.raw"},
	};
	bool is_x86 = strcmp(arch, "x86_64") == 0;
	const char *const(*list)[2] = is_x86 ? x86 : arm;
	size_t n = is_x86 ? ARRAY_SIZE(x86) : ARRAY_SIZE(arm);
	for (size_t i = 0; i < n; i++) {
		if (access(list[i][0], R_OK) == 0 && access(list[i][1], R_OK) == 0) {
			*code = xstrdup(list[i][0]);
			*vars = xstrdup(list[i][1]);
			return 0;
		}
	}
	return vmm_error_set(
	    err, VMM_EGENERIC,
	    "no UEFI firmware for %s guests: install %s (or boot a kernel directly: "
	    "vmm create --kernel)",
	    arch, is_x86 ? "ovmf" : "qemu-efi-aarch64");
}

int vmm_qemu_prepare_efivars(const vmm_qemu_cmd *q, const char *dir, vmm_error **err)
{
	if (!q->uefi)
		return 0;
	cleanup_free char *dst = path_join(dir, VMM_EFIVARS_FILE);
	if (access(dst, F_OK) == 0)
		return 0;
	cleanup_free char *data = NULL;
	size_t len = 0;
	if (vmm_read_file(q->firmware_vars, 256u << 20, &data, &len, err) < 0)
		return vmm_error_wrap(err, "UEFI variables template");
	return vmm_write_file_atomic(dst, data, len, 0644, err);
}

/* --- command line -------------------------------------------------------------- */

int vmm_qemu_parse_publish(const char *s, char **hostfwd, vmm_error **err)
{
	vmm_net_port p;
	if (vmm_net_parse_publish(s, &p, err) < 0)
		return -1;
	*hostfwd = xasprintf("%s:%s:%u-:%u", p.udp ? "udp" : "tcp", p.addr, p.host, p.guest);
	return 0;
}

typedef struct builder {
	char **argv;
	size_t argc;
	json_t *model;
	int fdsets; /* -add-fd sets made so far */
} builder;

static void add(builder *b, const char *arg)
{
	b->argv = xrealloc(b->argv, (b->argc + 2) * sizeof(char *));
	b->argv[b->argc++] = xstrdup(arg);
	b->argv[b->argc] = NULL;
}

/* An option with its value; `model` is what the fingerprint sees (NULL: nothing). */
static void opt(builder *b, const char *name, const char *value, const char *model)
{
	add(b, name);
	add(b, value);
	if (model) {
		json_array_append_new(b->model, json_string(name));
		json_array_append_new(b->model, json_string(model));
	}
}

static void mopt(builder *b, const char *name, const char *value)
{
	opt(b, name, value, value);
}

/* A file QEMU gets open (vmm_qemu_file); its descriptor's number. */
static int pass_file(vmm_qemu_cmd *q, const char *path, int flags, bool image)
{
	q->files = xrealloc(q->files, (q->nfiles + 1) * sizeof(*q->files));
	q->files[q->nfiles] = (vmm_qemu_file){xstrdup(path), flags, image, NULL, 0};
	return VMM_QEMU_FILE_FD + (int)q->nfiles++;
}

/*
 * A block device's file as an fd set: the drive options naming it (caller
 * frees).  A writable one gets a read-only twin in its set: QEMU's block
 * layer opens its files again with another access mode at times (a VM
 * resumed from a state takes its disk over only when the state is in), and
 * takes from the set the descriptor whose mode matches.  QEMU's image
 * locking is off: its locks are on open file descriptions, which the set
 * keeps open, so a lock taken through one reopening would outlive it and
 * refuse the next (`cont` after a snapshot: "Failed to get shared write
 * lock").  One QEMU per disk is vmm's run lock's to ensure.  A block
 * device needs its driver named.
 */
static char *drive_file(builder *b, vmm_qemu_cmd *q, const char *path, bool ro)
{
	int set = ++b->fdsets;
	char arg[64];
	snprintf(arg, sizeof(arg), "fd=%d,set=%d", pass_file(q, path, O_RDONLY, false), set);
	opt(b, "-add-fd", arg, NULL);
	if (!ro) {
		snprintf(arg, sizeof(arg), "fd=%d,set=%d", pass_file(q, path, O_RDWR, false), set);
		opt(b, "-add-fd", arg, NULL);
	}
	struct stat st;
	if (stat(path, &st) == 0 && S_ISBLK(st.st_mode))
		return xasprintf("file.driver=host_device,file.filename=/dev/fdset/%d,"
				 "file.locking=off",
				 set);
	return xasprintf("file=/dev/fdset/%d,file.locking=off", set);
}

json_t *vmm_qemu_model_guest(const json_t *model)
{
	json_t *out = json_array();
	size_t n = json_array_size(model);
	for (size_t i = 0; i < n; i++) {
		const char *s = json_string_value(json_array_get(model, i));
		/* the network's backend: not something the guest sees */
		if (s && strcmp(s, "-netdev") == 0 && i + 1 < n) {
			i++;
			continue;
		}
		json_array_append(out, json_array_get(model, i));
	}
	return out;
}

/* Has the model an option `opt` whose value starts with `prefix`? */
static bool model_has_opt(const json_t *model, const char *opt, const char *prefix)
{
	size_t n = json_array_size(model);
	for (size_t i = 0; i + 1 < n; i++) {
		const char *k = json_string_value(json_array_get(model, i));
		const char *v = json_string_value(json_array_get(model, i + 1));
		if (k && v && strcmp(k, opt) == 0 && strncmp(v, prefix, strlen(prefix)) == 0)
			return true;
	}
	return false;
}

bool vmm_qemu_model_user_net(const json_t *model)
{
	return model_has_opt(model, "-netdev", "user,");
}

char *vmm_qemu_fingerprint(const json_t *model)
{
	json_t *guest = vmm_qemu_model_guest(model);
	char *text = json_dumps(guest, JSON_COMPACT);
	json_decref(guest);
	if (!text)
		abort();
	char *d = xmalloc(72);
	vmm_sha256_digest(text, strlen(text), d);
	free(text);
	return d;
}

static int check_bundle_file(const char *dir, const char *file, const char *what, vmm_error **err)
{
	cleanup_free char *p = path_join(dir, file);
	if (access(p, R_OK) < 0)
		return vmm_error_errno(err, errno, "%s `%s`", what, p);
	return 0;
}

/* Which boot, firmware, binary and accelerator; fills q. */
static int resolve(vmm_qemu_cmd *q, const char *dir, const vmm_config *c, const vmm_qemu_opts *o,
		   vmm_error **err)
{
	bool x86 = strcmp(c->arch, "amd64") == 0;
	const char *bin = x86 ? "qemu-system-x86_64" : "qemu-system-aarch64";
	q->arch = x86 ? "x86_64" : "aarch64";
	q->binary = vmm_find_in_path(bin);
	if (!q->binary)
		return vmm_error_set(err, VMM_EGENERIC, "%s is not on PATH: install %s", bin,
				     x86 ? "qemu-system-x86" : "qemu-system-arm");
	if (vmm_qemu_pick_accel(o->accel, q->arch, &q->accel, &q->notice, err) < 0)
		return -1;
	/* a bundle with a kernel, an initramfs or a command line means direct boot */
	cleanup_free char *kernel = path_join(dir, VMM_KERNEL_FILE);
	cleanup_free char *initramfs = path_join(dir, VMM_INITRAMFS_FILE);
	q->uefi =
	    access(kernel, F_OK) < 0 && access(initramfs, F_OK) < 0 && !(c->cmdline && *c->cmdline);
	if (q->uefi) {
		if (vmm_qemu_find_firmware(q->arch, &q->firmware_code, &q->firmware_vars, err) < 0)
			return -1;
	} else {
		if (check_bundle_file(dir, VMM_KERNEL_FILE, "kernel", err) < 0)
			return -1;
		cleanup_free char *initrd = path_join(dir, VMM_INITRAMFS_FILE);
		if (access(initrd, F_OK) == 0 &&
		    check_bundle_file(dir, VMM_INITRAMFS_FILE, "initramfs", err) < 0)
			return -1;
	}
	return check_bundle_file(dir, VMM_DISK_FILE, "disk", err);
}

/*
 * The NIC is part of the fingerprint; its backend is not: the guest cannot
 * tell a TAP from QEMU's user-mode network.  The model records it all the
 * same, because user-mode NAT saves its own section in the migration stream,
 * so a state made on it resumes only on it (vmm_qemu_model_user_net).
 */
static int add_network(builder *b, const vmm_config *c, const vmm_qemu_opts *o, vmm_error **err)
{
	if (o->tap) {
		char tap[80];
		snprintf(tap, sizeof(tap), "tap,id=net0,fd=%d,vhost=off", VMM_QEMU_TAP_FD);
		opt(b, "-netdev", tap, "tap,id=net0");
	} else {
		cleanup_free char *user = xstrdup("user,id=net0");
		for (size_t i = 0; i < o->npublish; i++) {
			cleanup_free char *fwd = NULL;
			if (vmm_qemu_parse_publish(o->publish[i], &fwd, err) < 0)
				return -1;
			char *n = xasprintf("%s,hostfwd=%s", user, fwd);
			free(user);
			user = n;
		}
		opt(b, "-netdev", user, "user,id=net0");
	}
	cleanup_free char *nic = xasprintf("virtio-net-pci,netdev=net0,mac=%s", c->mac);
	mopt(b, "-device", nic);
	return 0;
}

/* A value inside QEMU's "a=b,c=d" options: commas are doubled. */
static char *qemu_escape(const char *s)
{
	char *out = xmalloc(2 * strlen(s) + 1), *o = out;
	for (; *s; s++) {
		*o++ = *s;
		if (*s == ',')
			*o++ = ',';
	}
	*o = '\0';
	return out;
}

/* The model names the files as they were named before QEMU got them open, for old states. */
static void add_boot(builder *b, vmm_qemu_cmd *q, const char *dir, const vmm_config *c)
{
	char fd[40];
	if (q->uefi) {
		cleanup_free char *path = qemu_escape(q->firmware_code);
		cleanup_free char *code = drive_file(b, q, q->firmware_code, true);
		cleanup_free char *vars = drive_file(b, q, VMM_EFIVARS_FILE, false);
		cleanup_free char *fw =
		    xasprintf("if=pflash,format=raw,unit=0,readonly=on,file=%s", path);
		cleanup_free char *fw_arg =
		    xasprintf("if=pflash,format=raw,unit=0,readonly=on,%s", code);
		cleanup_free char *vars_arg = xasprintf("if=pflash,format=raw,unit=1,%s", vars);
		opt(b, "-drive", fw_arg, fw);
		opt(b, "-drive", vars_arg, "if=pflash,format=raw,unit=1,file=" VMM_EFIVARS_FILE);
		return;
	}
	snprintf(fd, sizeof(fd), "/proc/self/fd/%d", pass_file(q, VMM_KERNEL_FILE, O_RDONLY, true));
	opt(b, "-kernel", fd, VMM_KERNEL_FILE);
	cleanup_free char *initrd = path_join(dir, VMM_INITRAMFS_FILE);
	if (access(initrd, F_OK) == 0) {
		snprintf(fd, sizeof(fd), "/proc/self/fd/%d",
			 pass_file(q, VMM_INITRAMFS_FILE, O_RDONLY, true));
		opt(b, "-initrd", fd, VMM_INITRAMFS_FILE);
	}
	if (c->cmdline && *c->cmdline)
		mopt(b, "-append", c->cmdline);
}

/* --- what `vmm run`'s flags add ----------------------------------------------- */

/*
 * Tart's sync and caching modes on QEMU's drive options.  The host side
 * only: the guest sees the same virtio disk with a write cache whatever
 * they are, so they stay out of the model.
 */
static const char *cache_opts(const vmm_disk_opts *o)
{
	bool direct = o->caching == VMM_DISK_CACHE_UNCACHED;
	bool noflush = o->sync == VMM_DISK_SYNC_NONE;
	if (direct && noflush)
		return ",cache.direct=on,cache.no-flush=on";
	return direct ? ",cache.direct=on" : noflush ? ",cache.no-flush=on" : "";
}

/*
 * caching=uncached is O_DIRECT, which reads and writes whole 4 KiB blocks
 * on most hosts: QEMU refuses a writable image whose size is not a multiple
 * of them (Tart's decimal-GB disks are not), so say so before it does.
 */
static int check_uncached(const char *path, const vmm_disk_opts *o, vmm_error **err)
{
	struct stat st;
	if (o->caching != VMM_DISK_CACHE_UNCACHED || o->ro || stat(path, &st) < 0 ||
	    !S_ISREG(st.st_mode) || st.st_size % 4096 == 0)
		return 0;
	return vmm_error_set(err, VMM_EINVAL,
			     "caching=uncached: `%s` is %lld bytes, not a multiple of 4096, and "
			     "direct I/O cannot write its end (use caching=cached or ro)",
			     path, (long long)st.st_size);
}

/* The root disk; read-only is visible to the guest (virtio-blk's RO feature). */
static void add_root_disk(builder *b, vmm_qemu_cmd *q, const vmm_disk_opts *o)
{
	const char *rest = o->ro ? ",if=none,id=disk0,format=raw,discard=unmap,readonly=on"
				 : ",if=none,id=disk0,format=raw,discard=unmap";
	cleanup_free char *model = xasprintf("file=" VMM_DISK_FILE "%s", rest);
	cleanup_free char *file = drive_file(b, q, VMM_DISK_FILE, o->ro);
	cleanup_free char *arg = xasprintf("%s%s%s", file, rest, cache_opts(o));
	opt(b, "-drive", arg, model);
}

/*
 * --disk: images and block devices as virtio disks; `.iso` files as CD-ROMs
 * the firmware boots from, on the q35's own SATA ports (every installer
 * has a driver for them) or, on arm64's virt machine, which has none, on
 * virtio-scsi.  The model keeps what the guest sees (kind, order,
 * read-only), not the host's path: a fork may attach its own copy.
 */
static int add_extra_disks(builder *b, vmm_qemu_cmd *q, const vmm_config *c, const vmm_qemu_opts *o,
			   bool x86, vmm_error **err)
{
	size_t ncd = 0;
	for (size_t i = 0; i < o->ndisks; i++) {
		const vmm_disk_spec *d = &o->disks[i];
		if (vmm_disk_spec_check_arch(d, c->arch, err) < 0 ||
		    check_uncached(d->path, &d->o, err) < 0)
			return -1;
		cleanup_free char *model = NULL, *dev = NULL;
		if (d->cdrom) {
			if (x86 && ncd >= 6)
				return vmm_error_set(err, VMM_EUSAGE,
						     "--disk: at most 6 CD-ROMs (the SATA ports of "
						     "the q35 machine)");
			if (!x86 && ncd == 0)
				mopt(b, "-device", "virtio-scsi-pci,id=scsi0");
			model =
			    xasprintf("if=none,id=cd%zu,media=cdrom,readonly=on,format=raw", ncd);
			dev = x86 ? xasprintf("ide-cd,drive=cd%zu,bus=ide.%zu", ncd, ncd)
				  : xasprintf("scsi-cd,drive=cd%zu,bus=scsi0.0", ncd);
			ncd++;
		} else {
			model = xasprintf("if=none,id=disk%zu,format=raw%s", i + 1,
					  d->o.ro ? ",readonly=on" : ",discard=unmap");
			dev = xasprintf("virtio-blk-pci,drive=disk%zu", i + 1);
		}
		cleanup_free char *file = drive_file(b, q, d->path, d->cdrom || d->o.ro);
		cleanup_free char *arg = xasprintf("%s,%s%s", file, model, cache_opts(&d->o));
		opt(b, "-drive", arg, model);
		mopt(b, "-device", dev);
	}
	return 0;
}

static bool first_of_tag(const vmm_qemu_opts *o, size_t i)
{
	for (size_t j = 0; j < i; j++)
		if (strcmp(o->dirs[j].tag, o->dirs[i].tag) == 0)
			return false;
	return true;
}

/*
 * --dir: one virtio-9p device per tag (virtiofsd is not in Debian 12).  A
 * tag with one unnamed share exports that directory.  A tag whose shares
 * are named (Tart shows each under its name) exports a directory of vmm's
 * holding one empty directory per name, onto which QEMU's child binds the
 * shares in a mount namespace of its own (vmm_qemu_child_setup): 9p
 * exports one tree, and nothing of it is visible to the rest of the host.
 * security_model=none: files keep their host owners and modes.  The tag
 * is what the guest sees; the paths are the host's.
 */
static int add_shares(builder *b, vmm_qemu_cmd *q, const vmm_qemu_opts *o, vmm_error **err)
{
	size_t k = 0;
	for (size_t i = 0; i < o->ndirs; i++) {
		if (!first_of_tag(o, i))
			continue;
		const vmm_dir_spec *d = &o->dirs[i];
		bool named = false, all_ro = true;
		for (size_t j = i; j < o->ndirs; j++) {
			if (strcmp(o->dirs[j].tag, d->tag) != 0)
				continue;
			named = named || o->dirs[j].name;
			all_ro = all_ro && o->dirs[j].ro;
		}
		cleanup_free char *group = NULL;
		if (named) {
			if (!o->shares_dir)
				return vmm_error_set(err, VMM_EINVAL,
						     "--dir: named shares need a directory for "
						     "their mounts");
			group = xasprintf("%s/t%zu", o->shares_dir, k);
			for (size_t j = i; j < o->ndirs; j++) {
				if (strcmp(o->dirs[j].tag, d->tag) != 0)
					continue;
				q->binds = xrealloc(q->binds, (q->nbinds + 1) * sizeof(*q->binds));
				q->binds[q->nbinds++] = (vmm_qemu_bind){
				    xstrdup(o->dirs[j].path), path_join(group, o->dirs[j].name),
				    o->dirs[j].ro};
			}
		}
		cleanup_free char *path = qemu_escape(named ? group : d->path);
		cleanup_free char *fsdev =
		    xasprintf("local,id=fs%zu,path=%s,security_model=none%s%s", k, path,
			      all_ro ? ",readonly=on" : "", named ? ",multidevs=remap" : "");
		opt(b, "-fsdev", fsdev, NULL);
		cleanup_free char *tag = qemu_escape(d->tag);
		cleanup_free char *dev =
		    xasprintf("virtio-9p-pci,id=share%zu,fsdev=fs%zu,mount_tag=%s", k, k, tag);
		mopt(b, "-device", dev);
		q->shares = true;
		k++;
	}
	if (q->nbinds) {
		q->uid_map = xasprintf("%u %u 1", (unsigned)getuid(), (unsigned)getuid());
		q->gid_map = xasprintf("%u %u 1", (unsigned)getgid(), (unsigned)getgid());
	}
	return 0;
}

int vmm_qemu_shares_prepare(const vmm_qemu_cmd *q, vmm_error **err)
{
	for (size_t i = 0; i < q->nbinds; i++) {
		cleanup_free char *group = xstrndup(
		    q->binds[i].dst, (size_t)(strrchr(q->binds[i].dst, '/') - q->binds[i].dst));
		if ((mkdir(group, 0755) < 0 && errno != EEXIST) ||
		    (mkdir(q->binds[i].dst, 0755) < 0 && errno != EEXIST))
			return vmm_error_errno(err, errno, "shared folders: mkdir `%s`",
					       q->binds[i].dst);
	}
	return 0;
}

void vmm_qemu_shares_cleanup(const vmm_qemu_cmd *q, const char *shares_dir)
{
	/* rmdir only: these are empty mount points out here */
	for (size_t i = 0; q && i < q->nbinds; i++) {
		rmdir(q->binds[i].dst);
		cleanup_free char *group = xstrndup(
		    q->binds[i].dst, (size_t)(strrchr(q->binds[i].dst, '/') - q->binds[i].dst));
		rmdir(group);
	}
	if (shares_dir)
		rmdir(shares_dir);
}

static int write_proc(const char *file, const char *text)
{
	int fd = open(file, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	ssize_t n = write(fd, text, strlen(text));
	int e = errno;
	close(fd);
	return n == (ssize_t)strlen(text) ? 0 : -(n < 0 ? e : EIO);
}

int vmm_qemu_child_setup(const vmm_qemu_cmd *q)
{
	if (!q->nbinds)
		return 0;
	if (unshare(CLONE_NEWNS) < 0) {
		if (errno != EPERM)
			return -errno;
		/* no CAP_SYS_ADMIN: a user namespace that maps only ourselves */
		int r;
		if (unshare(CLONE_NEWUSER | CLONE_NEWNS) < 0)
			return -errno;
		if ((r = write_proc("/proc/self/setgroups", "deny")) < 0 ||
		    (r = write_proc("/proc/self/uid_map", q->uid_map)) < 0 ||
		    (r = write_proc("/proc/self/gid_map", q->gid_map)) < 0)
			return r;
	}
	/* nothing mounted here may propagate back to the host's namespace */
	if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
		return -errno;
	for (size_t i = 0; i < q->nbinds; i++) {
		const vmm_qemu_bind *m = &q->binds[i];
		if (mount(m->src, m->dst, NULL, MS_BIND | MS_REC, NULL) < 0)
			return -errno;
		if (!m->ro)
			continue;
		/* a read-only remount must keep the flags a user namespace cannot drop */
		struct statvfs sv;
		unsigned long keep = 0;
		if (statvfs(m->dst, &sv) == 0)
			keep = (sv.f_flag & ST_NOSUID ? MS_NOSUID : 0) |
			       (sv.f_flag & ST_NODEV ? MS_NODEV : 0) |
			       (sv.f_flag & ST_NOEXEC ? MS_NOEXEC : 0) |
			       (sv.f_flag & ST_NOATIME ? MS_NOATIME : 0) |
			       (sv.f_flag & ST_NODIRATIME ? MS_NODIRATIME : 0) |
			       (sv.f_flag & ST_RELATIME ? MS_RELATIME : 0);
		if (mount(NULL, m->dst, NULL, MS_REMOUNT | MS_BIND | MS_RDONLY | keep, NULL) < 0)
			return -errno;
	}
	return 0;
}

const char *vmm_qemu_unsavable(const vmm_qemu_cmd *q)
{
	if (q && q->shares)
		return "a VM with shared folders (--dir) cannot be suspended or snapshotted: "
		       "QEMU cannot save a 9p share the guest has mounted; the VM keeps running";
	return NULL;
}

/*
 * The guest agent's channel: a vhost-vsock device with a CID no other VM
 * on the host has.  The kernel keeps the CIDs: one that it accepts for a
 * moment on a probe descriptor of our own is free (QEMU taking it just
 * after can still race another VM's start; it then fails and says so).
 * The CID is not part of the model: after a restore QEMU tells the guest
 * to re-read it (a transport reset), so forks of one state each get
 * their own.
 */
static uint32_t pick_cid(void)
{
	int fd = open("/dev/vhost-vsock", O_RDWR | O_CLOEXEC);
	if (fd < 0)
		return 0;
	uint32_t found = 0;
	if (ioctl(fd, VHOST_SET_OWNER) == 0) {
		for (int i = 0; i < 64 && !found; i++) {
			uint32_t r;
			vmm_random_bytes(&r, sizeof(r));
			uint64_t cid = 3 + r % 0xfffffff0u;
			if (ioctl(fd, VHOST_VSOCK_SET_GUEST_CID, &cid) == 0)
				found = (uint32_t)cid;
			else if (errno != EADDRINUSE)
				break;
		}
	}
	close(fd);
	return found;
}

static int add_vsock(builder *b, vmm_qemu_cmd *q, const vmm_qemu_opts *o, vmm_error **err)
{
	if (o->vsock == VMM_VSOCK_OFF)
		return 0;
	if (access("/dev/vhost-vsock", R_OK | W_OK) == 0)
		q->vsock_cid = pick_cid();
	if (!q->vsock_cid) {
		if (o->vsock == VMM_VSOCK_REQUIRED)
			return vmm_error_set(err, VMM_EINCOMPATIBLE,
					     "the state was saved with a virtio-vsock device (the "
					     "guest agent's channel) and this host cannot give one "
					     "(no usable /dev/vhost-vsock: modprobe vhost_vsock)");
		return 0;
	}
	int fd = pass_file(q, "/dev/vhost-vsock", O_RDWR, false);
	cleanup_free char *dev =
	    xasprintf("vhost-vsock-pci,id=vsock0,guest-cid=%u,vhostfd=%d", q->vsock_cid, fd);
	opt(b, "-device", dev, "vhost-vsock-pci,id=vsock0");
	return 0;
}

bool vmm_qemu_model_vsock(const json_t *model)
{
	return model_has_opt(model, "-device", "vhost-vsock");
}

/* The model's entries that `vmm run`'s flags decide, joined. */
static char *flag_entries(const json_t *model)
{
	static const char *const marks[] = {"id=cd",   "readonly=on", "virtio-9p",
					    "usb-kbd", "usb-tablet",  "+vmx",
					    "+svm",    "virtio-scsi", "vhost-vsock"};
	char *out = xstrdup("");
	size_t n = json_array_size(model);
	for (size_t i = 0; i < n; i++) {
		const char *s = json_string_value(json_array_get(model, i));
		bool hit = s && (strstr(s, "id=disk") && !strstr(s, "id=disk0") ? true : false);
		for (size_t m = 0; s && !hit && m < ARRAY_SIZE(marks); m++)
			hit = strstr(s, marks[m]) != NULL;
		if (!hit)
			continue;
		char *t = xasprintf("%s|%s", out, s);
		free(out);
		out = t;
	}
	return out;
}

const char *vmm_qemu_model_hint(const json_t *was, const json_t *now)
{
	cleanup_free char *a = flag_entries(was);
	cleanup_free char *b = flag_entries(now);
	if (strcmp(a, b) == 0)
		return "";
	return " (resume it with the --disk, --dir, --root-disk-opts ro, --nested, "
	       "--no-keyboard and --no-pointer flags it was suspended with)";
}

/* --nested: KVM's own nested virtualization, which the host's module must allow. */
static const char *nested_param(void)
{
	static const char *const p[] = {"/sys/module/kvm_intel/parameters/nested",
					"/sys/module/kvm_amd/parameters/nested"};
	for (size_t i = 0; i < ARRAY_SIZE(p); i++)
		if (access(p[i], R_OK) == 0)
			return p[i];
	return NULL;
}

static const char *nested_cpu(void)
{
	const char *p = nested_param();
	return p && strstr(p, "kvm_amd") ? "host,+svm" : "host,+vmx";
}

static int check_nested(const vmm_qemu_cmd *q, const vmm_config *c, const vmm_qemu_opts *o,
			vmm_error **err)
{
	if (!o->nested)
		return 0;
	if (strcmp(q->accel, "kvm") != 0) {
		const char *why =
		    o->accel == VMM_ACCEL_TCG ? "--accel tcg was given" : kvm_unusable(q->arch);
		return vmm_error_set(err, VMM_EUSAGE,
				     "--nested: nested virtualization needs KVM, and this VM would "
				     "run under TCG (%s)",
				     why ? why : "KVM cannot be used");
	}
	if (strcmp(c->arch, "amd64") != 0)
		return vmm_error_set(err, VMM_EUSAGE,
				     "--nested: QEMU 7.2 offers nested virtualization under KVM "
				     "to x86_64 guests only");
	const char *param = nested_param();
	cleanup_free char *val = NULL;
	size_t len = 0;
	if (!param || vmm_read_file(param, 64, &val, &len, NULL) < 0 ||
	    (val[0] != 'Y' && val[0] != '1'))
		return vmm_error_set(err, VMM_EUSAGE,
				     "--nested: the host's KVM does not allow nested "
				     "virtualization (%s is not Y: load the module with "
				     "nested=1)",
				     param ? param : "/sys/module/kvm_intel/parameters/nested");
	return 0;
}

/* --- the sandbox (DESIGN.md §8b) ----------------------------------------------- */

/* "uid:gid" or a user's name; false if neither. */
static bool parse_user(const char *s, uid_t *uid, gid_t *gid)
{
	unsigned u, g;
	char end;
	if (sscanf(s, "%u:%u%c", &u, &g, &end) == 2) {
		*uid = (uid_t)u;
		*gid = (gid_t)g;
		return true;
	}
	struct passwd *pw = getpwnam(s);
	if (!pw)
		return false;
	*uid = pw->pw_uid;
	*gid = pw->pw_gid;
	return true;
}

/*
 * Who QEMU runs as.  Under root: $VMM_QEMU_USER, else the user vmm-qemu
 * (`make install` makes it), else nobody; with the group that may open
 * /dev/kvm.  A VM with shared folders keeps root unless VMM_QEMU_USER says
 * otherwise: 9p serves them with QEMU's own rights, and a user's files
 * shared by root are root's to read.  Otherwise QEMU runs as vmm's user.
 */
static int pick_user(vmm_qemu_cmd *q, vmm_error **err)
{
	if (geteuid() != 0)
		return 0;
	const char *want = getenv("VMM_QEMU_USER");
	if (want && *want) {
		if (!parse_user(want, &q->uid, &q->gid))
			return vmm_error_set(err, VMM_EINVAL,
					     "VMM_QEMU_USER: `%s` is neither a user nor uid:gid",
					     want);
	} else if (q->shares) {
		q->sandbox_notice = xstrdup("QEMU keeps root to serve the shared folders with "
					    "root's rights (VMM_QEMU_USER chooses another user)");
		return 0;
	} else if (!parse_user("vmm-qemu", &q->uid, &q->gid) &&
		   !parse_user("nobody", &q->uid, &q->gid)) {
		q->uid = 65534;
		q->gid = 65534;
	}
	if (q->uid == 0)
		return 0;
	q->drop = true;
	struct group *kvm = getgrnam("kvm");
	if (kvm && kvm->gr_gid != q->gid)
		q->groups[q->ngroups++] = kvm->gr_gid;
	return 0;
}

int vmm_qemu_cmd_build(vmm_qemu_cmd **out, const char *dir, const vmm_config *c,
		       const vmm_qemu_opts *o, vmm_error **err)
{
	if (strcmp(c->os, "darwin") == 0)
		return vmm_error_set(err, VMM_EINVAL, "macOS VMs cannot run on Linux");
	if (strcmp(c->disk_format, "raw") != 0)
		return vmm_error_set(err, VMM_EINVAL,
				     "disk format \"%s\" is not supported on this system",
				     c->disk_format);
	vmm_qemu_cmd *q = xcalloc(1, sizeof(*q));
	cleanup_free char *disk = path_join(dir, VMM_DISK_FILE);
	if (resolve(q, dir, c, o, err) < 0 || check_nested(q, c, o, err) < 0 ||
	    check_uncached(disk, &o->root_disk, err) < 0) {
		vmm_qemu_cmd_free(q);
		return -1;
	}
	bool x86 = strcmp(q->arch, "x86_64") == 0;
	builder b = {.model = json_array()};
	add(&b, q->binary);
	json_array_append_new(
	    b.model,
	    json_string(strrchr(q->binary, '/') ? strrchr(q->binary, '/') + 1 : q->binary));
	/* -name is parsed as QEMU options: keep the VM's name to harmless characters */
	char *name = xstrdup(strrchr(dir, '/') ? strrchr(dir, '/') + 1 : dir);
	for (char *p = name; *p; p++)
		if (!isalnum((unsigned char)*p) && !strchr("._-", *p))
			*p = '_';
	char *name_opt = xasprintf("vmm-%s", name);
	opt(&b, "-name", name_opt, NULL);
	free(name_opt);
	free(name);
	mopt(&b, "-machine", x86 ? "q35" : "virt,gic-version=3");
	mopt(&b, "-accel", q->accel);
	if (strcmp(q->accel, "kvm") == 0)
		mopt(&b, "-cpu", o->nested ? (x86 ? nested_cpu() : "host") : "host");
	else if (!x86)
		mopt(&b, "-cpu", "max");
	char num[64];
	snprintf(num, sizeof(num), "%lld", (long long)c->cpu_count);
	mopt(&b, "-smp", num);
	snprintf(num, sizeof(num), "%lluM",
		 (unsigned long long)((c->memory_size + (1ull << 20) - 1) >> 20));
	mopt(&b, "-m", num);
	/* RAM in `vmm run`'s memfd, under the name QEMU gives its own RAM (see qemu.h) */
	const char *ram_id = x86 ? "pc.ram" : "mach-virt.ram";
	char *ram =
	    xasprintf("memory-backend-file,id=%s,size=%s,mem-path=/proc/self/fd/%d,share=on",
		      ram_id, num, VMM_QEMU_RAM_FD);
	opt(&b, "-object", ram, NULL);
	free(ram);
	char *backend = xasprintf("memory-backend=%s", ram_id);
	opt(&b, "-machine", backend, NULL);
	free(backend);
	add(&b, "-nodefaults");
	add(&b, "-no-user-config");
	json_array_append_new(b.model, json_string("-nodefaults"));
	opt(&b, "-display", "none", NULL);
	if (o->vnc)
		opt(&b, "-vnc", o->vnc, NULL);
	add_boot(&b, q, dir, c);
	add_root_disk(&b, q, &o->root_disk);
	mopt(&b, "-device", "virtio-blk-pci,drive=disk0");
	if (add_network(&b, c, o, err) < 0) {
		for (size_t i = 0; i < b.argc; i++)
			free(b.argv[i]);
		free(b.argv);
		json_decref(b.model);
		vmm_qemu_cmd_free(q);
		return -1;
	}
	/* a display adapter is always there, so --vnc can come and go across a suspend */
	if (x86) {
		mopt(&b, "-device", "VGA");
	} else {
		mopt(&b, "-device", "virtio-gpu-pci");
		mopt(&b, "-device", "qemu-xhci");
		if (!o->no_keyboard)
			mopt(&b, "-device", "usb-kbd");
		if (!o->no_pointer)
			mopt(&b, "-device", "usb-tablet");
	}
	/* what `vmm run`'s flags add comes last: without them the model is as it was */
	if (add_extra_disks(&b, q, c, o, x86, err) < 0 || add_shares(&b, q, o, err) < 0 ||
	    add_vsock(&b, q, o, err) < 0 || pick_user(q, err) < 0) {
		for (size_t i = 0; i < b.argc; i++)
			free(b.argv[i]);
		free(b.argv);
		json_decref(b.model);
		vmm_qemu_cmd_free(q);
		return -1;
	}
	/* the serial console on QEMU's stdio, which `vmm run` relays */
	mopt(&b, "-chardev", "stdio,id=console,signal=off");
	mopt(&b, "-serial", "chardev:console");
	char qmp[64];
	snprintf(qmp, sizeof(qmp), "socket,id=qmp0,fd=%d", VMM_QEMU_QMP_FD);
	opt(&b, "-chardev", qmp, NULL);
	opt(&b, "-mon", "chardev=qmp0,mode=control", NULL);
	/* an environment of its own: nothing of vmm's (registry passwords) reaches QEMU */
	q->envp = xcalloc(3, sizeof(char *));
	q->envp[0] = xstrdup("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
	/* an unprivileged QEMU's userfaultfd, for snapshots of a running guest (uffd_shim.h) */
	size_t shim_size;
	const unsigned char *shim = vmm_uffd_shim(&shim_size);
	if (q->drop && shim_size) {
		int fd = pass_file(q, "vmm-uffd.so", O_RDONLY, true);
		q->files[q->nfiles - 1].bytes = shim;
		q->files[q->nfiles - 1].nbytes = shim_size;
		q->envp[1] = xasprintf("LD_PRELOAD=/proc/self/fd/%d", fd);
	}
	/* seccomp: no obsolete calls, no set*id, no fork or exec, no scheduler changes */
	opt(&b, "-sandbox",
	    "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny", NULL);
	/* paused until `vmm run` has set up QMP (and, on resume, loaded the state) */
	add(&b, "-S");
	if (o->incoming)
		opt(&b, "-incoming", "defer", NULL);

	q->argv = b.argv;
	q->argc = b.argc;
	q->model = b.model;
	q->fingerprint = vmm_qemu_fingerprint(q->model);
	*out = q;
	return 0;
}

/* Could QEMU, as q's user, read the file behind fd through /proc/self/fd? */
static bool readable_by(const vmm_qemu_cmd *q, const struct stat *st)
{
	if (st->st_uid == q->uid)
		return st->st_mode & S_IRUSR;
	bool group = st->st_gid == q->gid;
	for (size_t i = 0; i < q->ngroups; i++)
		group = group || st->st_gid == q->groups[i];
	return group ? st->st_mode & S_IRGRP : st->st_mode & S_IROTH;
}

/*
 * A sealed copy of fd, or of bytes if set, in a memfd, which anyone may
 * open (mode 0777) but nobody may change.
 */
static int memfd_copy(int fd, const unsigned char *bytes, size_t nbytes, const char *path,
		      vmm_error **err)
{
	int m = memfd_create("vmm-boot-image", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (m < 0)
		return vmm_error_errno(err, errno, "memfd_create");
	char buf[65536];
	ssize_t n = bytes ? vmm_write_all(m, bytes, nbytes) : 0;
	while (!bytes && (n = read(fd, buf, sizeof(buf))) > 0)
		if (vmm_write_all(m, buf, (size_t)n) < 0) {
			n = -1;
			break;
		}
	if (n < 0 ||
	    fcntl(m, F_ADD_SEALS, F_SEAL_WRITE | F_SEAL_GROW | F_SEAL_SHRINK | F_SEAL_SEAL) < 0) {
		int e = errno;
		close(m);
		return vmm_error_errno(err, e, "copy `%s` for QEMU", path);
	}
	return m;
}

int vmm_qemu_files_open(const vmm_qemu_cmd *q, int dirfd, int *fds, vmm_error **err)
{
	size_t i;
	for (i = 0; i < q->nfiles; i++) {
		const vmm_qemu_file *f = &q->files[i];
		if (f->bytes) {
			if ((fds[i] = memfd_copy(-1, f->bytes, f->nbytes, f->path, err)) < 0)
				break;
			continue;
		}
		fds[i] = openat(dirfd, f->path, f->flags | O_CLOEXEC | O_NOCTTY);
		if (fds[i] < 0) {
			vmm_error_errno(err, errno, "open `%s`", f->path);
			break;
		}
		struct stat st;
		if (f->image && q->drop && fstat(fds[i], &st) == 0 && !readable_by(q, &st)) {
			int m = memfd_copy(fds[i], NULL, 0, f->path, err);
			close(fds[i]);
			fds[i] = m;
			if (m < 0)
				break;
		}
	}
	if (i == q->nfiles)
		return 0;
	while (i-- > 0)
		close(fds[i]);
	return -1;
}

int vmm_qemu_child_exec(const vmm_qemu_cmd *q, pid_t parent)
{
	if (q->drop) {
		if (setgroups(q->ngroups, q->groups) < 0 || setresgid(q->gid, q->gid, q->gid) < 0 ||
		    setresuid(q->uid, q->uid, q->uid) < 0)
			return -errno;
		/* a change of credentials clears the parent-death signal: QEMU dies with vmm */
		if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0)
			return -errno;
		if (getppid() != parent)
			_exit(127);
	}
	execve(q->binary, q->argv, q->envp);
	return errno;
}
