#include "vm/resumed.h"
#include "common/util.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>

#ifndef STATX_MNT_ID_UNIQUE
#define STATX_MNT_ID_UNIQUE 0x4000U /* Linux 6.8: never reused, unlike STATX_MNT_ID */
#endif

#define BOOT_ID "/proc/sys/kernel/random/boot_id"
#define NEVER "never"

/* FNV-1a, 64 bits: a name, not a defence (who can write the bundle can do anything). */
static uint64_t fnv1a(const char *s, size_t n)
{
	uint64_t h = 0xcbf29ce484222325ull;
	for (size_t i = 0; i < n; i++) {
		h ^= (unsigned char)s[i];
		h *= 0x100000001b3ull;
	}
	return h;
}

/* The witness of the bundle at dir now, 16 hex digits; -1 if it cannot be taken. */
static int witness(const char *dir, char out[17])
{
	static const char *const files[] = {VMM_DISK_FILE, VMM_EFIVARS_FILE, VMM_NVRAM_FILE};
	cleanup_free char *boot = NULL;
	size_t len = 0;
	if (vmm_read_file(BOOT_ID, 256, &boot, &len, NULL) < 0 || len < 16)
		return -1;
	cleanup_free char *text =
	    xasprintf("vmm resume witness 1\nboot %.*s\n", (int)(len - 1), boot);
	cleanup_close int dfd = open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0)
		return -1;
	for (size_t i = 0; i < ARRAY_SIZE(files); i++) {
		struct statx st;
		char *line;
		if (statx(dfd, files[i], 0, STATX_BASIC_STATS | STATX_MNT_ID_UNIQUE, &st) < 0) {
			if (errno != ENOENT)
				return -1;
			line = xasprintf("%s none\n", files[i]);
		} else {
			/* the mount: a file system cut and mounted again is another */
			const char *mnt = st.stx_mask & STATX_MNT_ID_UNIQUE ? "unique"
					  : st.stx_mask & STATX_MNT_ID	    ? "reusable"
									    : "unknown";
			line = xasprintf(
			    "%s %u:%u %" PRIu64 " %" PRIu64 " %lld.%09u %lld.%09u %s %" PRIu64 "\n",
			    files[i], st.stx_dev_major, st.stx_dev_minor, (uint64_t)st.stx_ino,
			    (uint64_t)st.stx_size, (long long)st.stx_mtime.tv_sec,
			    st.stx_mtime.tv_nsec, (long long)st.stx_ctime.tv_sec,
			    st.stx_ctime.tv_nsec, mnt, (uint64_t)st.stx_mnt_id);
		}
		char *t = xasprintf("%s%s", text, line);
		free(line);
		free(text);
		text = t;
	}
	snprintf(out, 17, "%016" PRIx64, fnv1a(text, strlen(text)));
	return 0;
}

char *vmm_resumed_pending_name(const char *dir)
{
	char w[17];
	if (witness(dir, w) < 0)
		return xstrdup(VMM_STATE_RESUMING_PREFIX NEVER ".tmp");
	return xasprintf(VMM_STATE_RESUMING_PREFIX "%s.tmp", w);
}

static bool is_pending(const char *name)
{
	size_t n = strlen(name), p = strlen(VMM_STATE_RESUMING_PREFIX);
	return n > p + 4 && strncmp(name, VMM_STATE_RESUMING_PREFIX, p) == 0 &&
	       strcmp(name + n - 4, ".tmp") == 0;
}

/* Call fn(name) for each pending state in dir; stops at the first that returns true. */
static bool each_pending(const char *dir, bool (*fn)(const char *name, void *ctx), void *ctx)
{
	cleanup_dir DIR *d = vmm_opendir_noatime(dir); /* list must not bump the access date */
	struct dirent *e;
	while (d && (e = readdir(d)))
		if (is_pending(e->d_name) && fn(e->d_name, ctx))
			return true;
	return false;
}

static bool matches(const char *name, void *ctx)
{
	return strcmp(name, (const char *)ctx) == 0;
}

static bool any(const char *name, void *ctx)
{
	UNUSED(name);
	UNUSED(ctx);
	return true;
}

bool vmm_resumed_restorable(const char *dir)
{
	if (!each_pending(dir, any, NULL))
		return false; /* the usual case, without looking at the files */
	cleanup_free char *now = vmm_resumed_pending_name(dir);
	return strstr(now, NEVER) == NULL && each_pending(dir, matches, now);
}

typedef struct settle {
	int dfd;
	const char *now;
	bool have_state;
} settle;

static bool settle_one(const char *name, void *ctx)
{
	settle *s = ctx;
	if (!s->have_state && strcmp(name, s->now) == 0 &&
	    renameat(s->dfd, name, s->dfd, VMM_STATE_FILE) == 0) {
		s->have_state = true;
		fsync(s->dfd); /* a state restored must not be lost again */
		return false;
	}
	unlinkat(s->dfd, name, 0);
	return false;
}

void vmm_resumed_settle(const char *dir)
{
	cleanup_close int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0)
		return;
	unlinkat(dfd, VMM_STATE_RESUMED_FILE, 0);
	unlinkat(dfd, VMM_STATE_FILE ".tmp", 0);
	if (!each_pending(dir, any, NULL))
		return;
	cleanup_free char *now = vmm_resumed_pending_name(dir);
	settle s = {
	    .dfd = dfd, .now = now, .have_state = faccessat(dfd, VMM_STATE_FILE, F_OK, 0) == 0};
	each_pending(dir, settle_one, &s);
}
