#include "storage/copy.h"
#include "common/util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#ifdef __APPLE__
#include <sys/clonefile.h>
#else
#include <linux/fs.h>
#endif

#define COPY_BUF (1u << 20) /* 1 MiB reads in the zero-skipping copy */
#define ZERO_BLOCK 4096u    /* granularity of holes it leaves: a file system block */

const char *vmm_copy_method_name(vmm_copy_method m)
{
	switch (m) {
	case VMM_COPY_REFLINK:
		return "reflink";
	case VMM_COPY_SPARSE:
		return "sparse";
	default:
		return "zero-skip";
	}
}

/* The errors that mean "these two files cannot share blocks", not "the copy failed". */
static bool reflink_unsupported(int e)
{
	switch (e) {
	case EXDEV:
	case EOPNOTSUPP:
#if EOPNOTSUPP != ENOTSUP
	case ENOTSUP:
#endif
	case EINVAL:
	case ENOTTY:
	case ETXTBSY:
	case EISDIR:
	case EPERM:
	case ENOSYS:
		return true;
	default:
		return false;
	}
}

static bool all_zero(const unsigned char *p, size_t n)
{
	/* word-at-a-time compare; buffers are malloc-aligned */
	size_t i = 0;
	for (; i + sizeof(uint64_t) <= n; i += sizeof(uint64_t)) {
		uint64_t w;
		memcpy(&w, p + i, sizeof(w));
		if (w)
			return false;
	}
	for (; i < n; i++)
		if (p[i])
			return false;
	return true;
}

/*
 * Write the non-zero ZERO_BLOCK-sized pieces of buf (which belongs at file
 * offset off, a multiple of ZERO_BLOCK) to out, each run of them in one
 * write; all-zero pieces stay holes.
 */
static int write_nonzero(int out, const unsigned char *buf, size_t len, off_t off)
{
	size_t run = 0, run_len = 0; /* the pending run of non-zero pieces */
	for (size_t b = 0; b < len; b += ZERO_BLOCK) {
		size_t bl = len - b < ZERO_BLOCK ? len - b : ZERO_BLOCK;
		if (!all_zero(buf + b, bl)) {
			if (!run_len)
				run = b;
			run_len += bl;
			continue;
		}
		if (run_len && vmm_pwrite_all(out, buf + run, run_len, off + (off_t)run) < 0)
			return -1;
		run_len = 0;
	}
	if (run_len && vmm_pwrite_all(out, buf + run, run_len, off + (off_t)run) < 0)
		return -1;
	return 0;
}

#define WRITEBACK_CHUNK (32u << 20) /* start writeback of the copy every 32 MiB */

/* Start writeback of [off, off+len) of out without waiting (write_back mode). */
static void kick_writeback(int out, bool write_back, off_t off, uint64_t len)
{
	if (write_back)
		(void)sync_file_range(out, off, (off_t)len, SYNC_FILE_RANGE_WRITE);
}

/* Copy [off, off+len) with copy_file_range, falling back to read/write. */
static int copy_range(int in, int out, off_t off, uint64_t len, uint64_t *copied, bool write_back)
{
	bool use_cfr = true;
	cleanup_free unsigned char *buf = NULL;
	while (len) {
		if (use_cfr) {
			loff_t ioff = off, ooff = off;
			size_t want = len > WRITEBACK_CHUNK ? WRITEBACK_CHUNK : (size_t)len;
			ssize_t n = copy_file_range(in, &ioff, out, &ooff, want, 0);
			if (n > 0) {
				kick_writeback(out, write_back, off, (uint64_t)n);
				off += n;
				len -= (uint64_t)n;
				*copied += (uint64_t)n;
				continue;
			}
			if (n == 0) {
				errno = EIO; /* source shrank under us */
				return -1;
			}
			if (errno == EINTR)
				continue;
			if (errno != EXDEV && errno != EINVAL && errno != EOPNOTSUPP &&
			    errno != ENOSYS && errno != EBADF)
				return -1;
			use_cfr = false;
		}
		if (!buf)
			buf = xmalloc(COPY_BUF);
		size_t want = len > COPY_BUF ? COPY_BUF : (size_t)len;
		if (vmm_pread_all(in, buf, want, off) < 0)
			return -1;
		/* keep zero blocks inside data extents as holes too */
		if (write_nonzero(out, buf, want, off) < 0)
			return -1;
		kick_writeback(out, write_back, off, want);
		off += (off_t)want;
		len -= want;
		*copied += want;
	}
	return 0;
}

static int copy_sparse(int in, int out, uint64_t size, uint64_t *copied, bool write_back)
{
	off_t pos = 0, end = (off_t)size;
	while (pos < end) {
		off_t data = lseek(in, pos, SEEK_DATA);
		if (data < 0) {
			if (errno == ENXIO)
				return 0; /* only a hole remains: dst is already that size */
			return -1;
		}
		if (data >= end)
			return 0;
		off_t hole = lseek(in, data, SEEK_HOLE);
		if (hole < 0)
			return -1;
		if (hole > end)
			hole = end;
		if (copy_range(in, out, data, (uint64_t)(hole - data), copied, write_back) < 0)
			return -1;
		pos = hole;
	}
	return 0;
}

int vmm_copy_sparse_fd(int in, int out, uint64_t size, uint64_t *copied)
{
	return copy_sparse(in, out, size, copied, false);
}

static int copy_zeroskip(int in, int out, uint64_t size, uint64_t *copied, bool write_back)
{
	cleanup_free unsigned char *buf = xmalloc(COPY_BUF);
	uint64_t off = 0;
	while (off < size) {
		size_t want = size - off > COPY_BUF ? COPY_BUF : (size_t)(size - off);
		if (vmm_pread_all(in, buf, want, (off_t)off) < 0)
			return -1;
		if (write_nonzero(out, buf, want, (off_t)off) < 0)
			return -1;
		kick_writeback(out, write_back, (off_t)off, want);
		off += want;
		*copied += want;
	}
	return 0;
}

int vmm_copy_zeroskip_fd(int in, int out, uint64_t size, uint64_t *copied)
{
	return copy_zeroskip(in, out, size, copied, false);
}

/*
 * Can SEEK_DATA see this file's holes?  File systems without support report
 * the whole file as one data extent; if the file is visibly sparse
 * (allocated < size) and yet looks all data, holes are invisible to it.
 */
static bool seek_data_works(int fd, const struct stat *st)
{
	off_t d = lseek(fd, 0, SEEK_DATA);
	if (d < 0)
		return errno == ENXIO; /* ENXIO: all hole, which is fine */
	if ((uint64_t)st->st_blocks * 512 >= (uint64_t)st->st_size)
		return true; /* dense: nothing to lose */
	off_t h = lseek(fd, d, SEEK_HOLE);
	return !(d == 0 && h >= st->st_size);
}

#ifdef __APPLE__
static int try_reflink(const char *src, const char *dst, int in, int out)
{
	UNUSED(in);
	close(out);
	unlink(dst);
	return clonefile(src, dst, CLONE_NOFOLLOW | CLONE_NOOWNERCOPY);
}
#else
static int try_reflink(const char *src, const char *dst, int in, int out)
{
	UNUSED(src);
	UNUSED(dst);
	return ioctl(out, FICLONE, in);
}
#endif

int vmm_copy_file(const char *src, const char *dst, const vmm_copy_opts *opts,
		  vmm_copy_stats *stats, vmm_error **err)
{
	static const vmm_copy_opts defaults = {0};
	if (!opts)
		opts = &defaults;
	cleanup_close int in = open(src, O_RDONLY | O_CLOEXEC);
	if (in < 0)
		return vmm_error_errno(err, errno, "open `%s`", src);
	struct stat st;
	if (fstat(in, &st) < 0)
		return vmm_error_errno(err, errno, "stat `%s`", src);
	if (!S_ISREG(st.st_mode))
		return vmm_error_set(err, EINVAL, "`%s` is not a regular file", src);
	cleanup_close int out =
	    open(dst, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, st.st_mode & 0777);
	if (out < 0)
		return vmm_error_errno(err, errno, "create `%s`", dst);

	vmm_copy_method method;
	uint64_t copied = 0;
	int rc = -1;
	if (!opts->no_reflink && try_reflink(src, dst, in, out) == 0) {
		method = VMM_COPY_REFLINK;
#ifdef __APPLE__
		out = open(dst, O_WRONLY | O_CLOEXEC);
#endif
		rc = 0;
	} else if (!opts->no_reflink && !reflink_unsupported(errno)) {
		int e = errno;
		unlink(dst);
		return vmm_error_errno(err, e, "clone `%s` to `%s`", src, dst);
	} else {
		if (ftruncate(out, st.st_size) < 0)
			goto fail;
		bool wb = opts->write_back && !opts->fsync;
		if (!opts->no_seek_data && seek_data_works(in, &st)) {
			method = VMM_COPY_SPARSE;
			rc = copy_sparse(in, out, (uint64_t)st.st_size, &copied, wb);
			if (rc < 0 && (errno == EINVAL || errno == EOPNOTSUPP)) {
				method = VMM_COPY_ZEROSKIP;
				copied = 0;
				rc = copy_zeroskip(in, out, (uint64_t)st.st_size, &copied, wb);
			}
		} else {
			method = VMM_COPY_ZEROSKIP;
			rc = copy_zeroskip(in, out, (uint64_t)st.st_size, &copied, wb);
		}
		if (rc < 0)
			goto fail;
		/* wait for the writeback started along the way (and start the rest) */
		if (wb && sync_file_range(out, 0, 0,
					  SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE |
					      SYNC_FILE_RANGE_WAIT_AFTER) < 0)
			goto fail;
	}
	if (opts->fsync && out >= 0 && fsync(out) < 0)
		goto fail;
	if (stats) {
		stats->method = method;
		stats->files++;
		stats->data_bytes += copied;
		if (method == VMM_COPY_REFLINK)
			stats->reflinked++;
	}
	return 0;
fail : {
	int e = errno;
	unlink(dst);
	return vmm_error_errno(err, e, "copy `%s` to `%s`", src, dst);
}
}

int vmm_copy_dir(const char *src, const char *dst, bool recursive, bool (*skip)(const char *name),
		 const vmm_copy_opts *opts, vmm_copy_stats *stats, vmm_error **err)
{
	cleanup_dir DIR *d = opendir(src);
	if (!d)
		return vmm_error_errno(err, errno, "open `%s`", src);
	struct dirent *e;
	while ((e = readdir(d))) {
		if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
			continue;
		if (skip && skip(e->d_name))
			continue;
		struct stat st;
		if (fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
			return vmm_error_errno(err, errno, "stat `%s/%s`", src, e->d_name);
		cleanup_free char *s = path_join(src, e->d_name);
		cleanup_free char *t = path_join(dst, e->d_name);
		if (S_ISREG(st.st_mode)) {
			if (vmm_copy_file(s, t, opts, stats, err) < 0)
				return -1;
		} else if (S_ISDIR(st.st_mode) && recursive) {
			if (mkdir(t, st.st_mode & 0777) < 0)
				return vmm_error_errno(err, errno, "create `%s`", t);
			if (vmm_copy_dir(s, t, true, NULL, opts, stats, err) < 0)
				return -1;
		}
	}
	return 0;
}
