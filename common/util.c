#include "common/util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <openssl/evp.h>
#include <ftw.h>

static void oom(void)
{
	vmm_fatal("out of memory");
}

void *xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);
	if (!p)
		oom();
	return p;
}

void *xcalloc(size_t count, size_t n)
{
	void *p = calloc(count ? count : 1, n ? n : 1);
	if (!p)
		oom();
	return p;
}

void *xrealloc(void *p, size_t n)
{
	p = realloc(p, n ? n : 1);
	if (!p)
		oom();
	return p;
}

char *xstrdup(const char *s)
{
	char *p = strdup(s);
	if (!p)
		oom();
	return p;
}

char *xstrndup(const char *s, size_t n)
{
	char *p = strndup(s, n);
	if (!p)
		oom();
	return p;
}

char *xvasprintf(const char *fmt, va_list ap)
{
	char *p;
	if (vasprintf(&p, fmt, ap) < 0)
		oom();
	return p;
}

char *xasprintf(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	char *p = xvasprintf(fmt, ap);
	va_end(ap);
	return p;
}

void cleanup_close_fn(int *fd)
{
	if (*fd >= 0) {
		int saved = errno;
		close(*fd);
		errno = saved;
	}
}

char *path_join(const char *a, const char *b)
{
	size_t la = strlen(a);
	while (*b == '/')
		b++;
	if (la && a[la - 1] == '/')
		return xasprintf("%s%s", a, b);
	return xasprintf("%s/%s", a, b);
}

bool path_exists(const char *path)
{
	struct stat st;
	return lstat(path, &st) == 0;
}

bool path_is_dir(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

DIR *vmm_opendir_noatime(const char *path)
{
	int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOATIME);
	if (fd < 0 && errno == EPERM)
		fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return NULL;
	DIR *d = fdopendir(fd);
	if (!d) {
		int e = errno;
		close(fd);
		errno = e;
	}
	return d;
}

int vmm_mkdir_p(const char *path, vmm_error **err)
{
	cleanup_free char *p = xstrdup(path);
	for (char *s = p + 1; *s; s++) {
		if (*s != '/')
			continue;
		*s = '\0';
		if (mkdir(p, 0755) < 0 && errno != EEXIST)
			return vmm_error_errno(err, errno, "create directory `%s`", p);
		*s = '/';
	}
	if (mkdir(p, 0755) < 0 && errno != EEXIST)
		return vmm_error_errno(err, errno, "create directory `%s`", p);
	if (!path_is_dir(p))
		return vmm_error_set(err, ENOTDIR, "`%s` is not a directory", p);
	return 0;
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	UNUSED(st);
	UNUSED(ftw);
	int r = (flag == FTW_DP) ? rmdir(path) : unlink(path);
	if (r < 0 && errno != ENOENT)
		return errno;
	return 0;
}

int vmm_rm_rf(const char *path, vmm_error **err)
{
	struct stat st;
	if (lstat(path, &st) < 0) {
		if (errno == ENOENT)
			return 0;
		return vmm_error_errno(err, errno, "remove `%s`", path);
	}
	if (!S_ISDIR(st.st_mode)) {
		if (unlink(path) < 0 && errno != ENOENT)
			return vmm_error_errno(err, errno, "remove `%s`", path);
		return 0;
	}
	/* Another process (the tmp GC) may be removing the same tree: entries
	 * vanishing under the walk are not errors, and a second walk finishes
	 * what the first could not. */
	for (int attempt = 0;; attempt++) {
		errno = 0;
		int r = nftw(path, rm_one, 32, FTW_DEPTH | FTW_PHYS);
		if (r == 0)
			return 0;
		int e = r > 0 ? r : errno;
		if (lstat(path, &st) < 0 && errno == ENOENT)
			return 0;
		if (e != ENOENT || attempt == 2)
			return vmm_error_errno(err, e ? e : EIO, "remove `%s`", path);
	}
}

int vmm_read_file(const char *path, size_t max, char **out, size_t *len, vmm_error **err)
{
	cleanup_close int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return vmm_error_errno(err, errno, "open `%s`", path);
	/* room for max bytes plus one more, so a file of exactly max bytes is
	 * read whole and one byte larger is refused without reading further */
	size_t cap = max < 4096 ? max + 1 : 4096, n = 0;
	cleanup_free char *buf = xmalloc(cap + 1);
	for (;;) {
		if (n > max)
			return vmm_error_set(err, EFBIG, "`%s` is larger than %zu bytes", path,
					     max);
		if (n == cap) {
			cap = cap * 2 > max + 1 ? max + 1 : cap * 2;
			buf = xrealloc(buf, cap + 1);
		}
		ssize_t r = read(fd, buf + n, cap - n);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			return vmm_error_errno(err, errno, "read `%s`", path);
		}
		if (r == 0)
			break;
		n += (size_t)r;
	}
	buf[n] = '\0';
	if (len)
		*len = n;
	*out = steal_ptr(buf);
	return 0;
}

int vmm_write_all(int fd, const void *buf, size_t len)
{
	const char *p = buf;
	while (len) {
		ssize_t w = write(fd, p, len);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		p += w;
		len -= (size_t)w;
	}
	return 0;
}

int vmm_pread_all(int fd, void *buf, size_t len, off_t off)
{
	char *p = buf;
	while (len) {
		ssize_t r = pread(fd, p, len, off);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		if (r == 0) {
			errno = EIO;
			return -1;
		}
		p += r;
		off += r;
		len -= (size_t)r;
	}
	return 0;
}

int vmm_pwrite_all(int fd, const void *buf, size_t len, off_t off)
{
	const char *p = buf;
	while (len) {
		ssize_t w = pwrite(fd, p, len, off);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		p += w;
		off += w;
		len -= (size_t)w;
	}
	return 0;
}

int vmm_fsync_dir(const char *path, bool is_dir, vmm_error **err)
{
	cleanup_free char *dir = NULL;
	if (is_dir) {
		dir = xstrdup(path);
	} else {
		const char *slash = strrchr(path, '/');
		dir = slash ? xstrndup(path, slash == path ? 1 : (size_t)(slash - path))
			    : xstrdup(".");
	}
	cleanup_close int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return vmm_error_errno(err, errno, "open directory `%s`", dir);
	if (fsync(fd) < 0 && errno != EINVAL)
		return vmm_error_errno(err, errno, "sync directory `%s`", dir);
	return 0;
}

int vmm_write_file_atomic(const char *path, const void *data, size_t len, mode_t mode,
			  vmm_error **err)
{
	/* a unique name: two writers of one file must not share (and truncate)
	 * one temporary file; the last rename wins with a whole file */
	cleanup_free char *tmp = xasprintf("%s.tmp-XXXXXX", path);
	cleanup_close int fd = mkostemp(tmp, O_CLOEXEC);
	if (fd < 0)
		return vmm_error_errno(err, errno, "create a temporary file beside `%s`", path);
	if (fchmod(fd, mode) < 0 || vmm_write_all(fd, data, len) < 0 || fsync(fd) < 0) {
		int e = errno;
		unlink(tmp);
		return vmm_error_errno(err, e, "write `%s`", path);
	}
	if (close(steal_fd(fd)) < 0) {
		int e = errno;
		unlink(tmp);
		return vmm_error_errno(err, e, "write `%s`", path);
	}
	if (rename(tmp, path) < 0) {
		int e = errno;
		unlink(tmp);
		return vmm_error_errno(err, e, "replace `%s`", path);
	}
	return vmm_fsync_dir(path, false, err);
}

void vmm_random_bytes(void *buf, size_t len)
{
	unsigned char *p = buf;
	while (len) {
		ssize_t r = getrandom(p, len, 0);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			vmm_fatal("getrandom failed");
		}
		p += r;
		len -= (size_t)r;
	}
}

void vmm_uuid(char out[37])
{
	unsigned char b[16];
	vmm_random_bytes(b, sizeof(b));
	b[6] = (b[6] & 0x0f) | 0x40;
	b[8] = (b[8] & 0x3f) | 0x80;
	snprintf(out, 37, "%02X%02X%02X%02X-%02X%02X-%02X%02X-%02X%02X-%02X%02X%02X%02X%02X%02X",
		 b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12],
		 b[13], b[14], b[15]);
}

void vmm_hex(const unsigned char *buf, size_t len, char *out)
{
	static const char digits[] = "0123456789abcdef";
	for (size_t i = 0; i < len; i++) {
		out[2 * i] = digits[buf[i] >> 4];
		out[2 * i + 1] = digits[buf[i] & 15];
	}
	out[2 * len] = '\0';
}

void vmm_sha256_digest(const void *buf, size_t len, char out[72])
{
	unsigned char md[32];
	unsigned int mdlen = 0;
	if (!EVP_Digest(buf, len, md, &mdlen, EVP_sha256(), NULL))
		abort();
	memcpy(out, "sha256:", 7);
	vmm_hex(md, 32, out + 7);
}

int vmm_parse_u64(const char *s, uint64_t *out)
{
	if (!s || !*s)
		return -1;
	uint64_t v = 0;
	for (const char *p = s; *p; p++) {
		if (*p < '0' || *p > '9')
			return -1;
		unsigned d = (unsigned)(*p - '0');
		if (v > (UINT64_MAX - d) / 10)
			return -1;
		v = v * 10 + d;
	}
	*out = v;
	return 0;
}

double vmm_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

bool vmm_name_is_valid(const char *s)
{
	if (!s || !*s || strcmp(s, ".") == 0 || strcmp(s, "..") == 0)
		return false;
	if (strlen(s) > 255)
		return false;
	for (const char *p = s; *p; p++)
		if (*p == '/' || *p == '\n' || *p == '\r')
			return false;
	return true;
}

void vmm_strv_free(char **v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(v[i]);
	free(v);
}

void vmm_test_pause(const char *point)
{
	const char *want = getenv("VMM_TEST_PAUSE");
	const char *dir = getenv("VMM_TEST_PAUSE_DIR");
	if (!want || !dir || strcmp(want, point) != 0)
		return;
	cleanup_free char *reached = xasprintf("%s/%s.reached", dir, point);
	cleanup_free char *go = xasprintf("%s/%s.go", dir, point);
	int fd = open(reached, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
	if (fd >= 0)
		close(fd);
	while (access(go, F_OK) < 0)
		usleep(10000);
}
