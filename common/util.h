/*
 * util.h — allocation that aborts on exhaustion, cleanup attributes, paths,
 * whole-file I/O, the one atomic-replace helper, hashing and randomness.
 *
 * Everything returned by x*() and the *_alloc functions is owned by the
 * caller and released with free().  Out of memory aborts with a message.
 */
#ifndef VMM_COMMON_UTIL_H
#define VMM_COMMON_UTIL_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <dirent.h>
#include <sys/types.h>

#include "common/err.h"

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define UNUSED(x) ((void)(x))

void *xmalloc(size_t n);
void *xcalloc(size_t count, size_t n);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);
char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
char *xvasprintf(const char *fmt, va_list ap) __attribute__((format(printf, 1, 0)));

static inline void cleanup_free_fn(void *p)
{
	free(*(void **)p);
}
void cleanup_close_fn(int *fd);
static inline void cleanup_file_fn(FILE **f)
{
	if (*f)
		fclose(*f);
}
static inline void cleanup_dir_fn(DIR **d)
{
	if (*d)
		closedir(*d);
}
#define cleanup_free __attribute__((cleanup(cleanup_free_fn)))
#define cleanup_close __attribute__((cleanup(cleanup_close_fn)))
#define cleanup_file __attribute__((cleanup(cleanup_file_fn)))
#define cleanup_dir __attribute__((cleanup(cleanup_dir_fn)))

/* Hand ownership out of a cleanup variable: `*out = steal_ptr(p);`. */
#define steal_ptr(p)                                                                               \
	({                                                                                         \
		__typeof__(p) tmp_ = (p);                                                          \
		(p) = NULL;                                                                        \
		tmp_;                                                                              \
	})
#define steal_fd(fd)                                                                               \
	({                                                                                         \
		int tmp_ = (fd);                                                                   \
		(fd) = -1;                                                                         \
		tmp_;                                                                              \
	})

/* "a" + "/" + "b" (no doubled slash). */
char *path_join(const char *a, const char *b);
bool path_exists(const char *path);
bool path_is_dir(const char *path);
/*
 * opendir() that leaves the directory's atime alone where it may (O_NOATIME:
 * the owner, or CAP_FOWNER).  A VM's atime is its access date, which list
 * and prune go by, and reading it would bump it (relatime: once a day).
 */
DIR *vmm_opendir_noatime(const char *path);

/* mkdir -p with mode 0755; EEXIST is success. */
int vmm_mkdir_p(const char *path, vmm_error **err);
/* rm -rf; a missing path is success. Does not follow symlinks. */
int vmm_rm_rf(const char *path, vmm_error **err);

/* Read a whole file (at most max bytes, else EFBIG). *out is NUL-terminated. */
int vmm_read_file(const char *path, size_t max, char **out, size_t *len, vmm_error **err);
/*
 * Replace `path` atomically: write "<path>.tmp-XXXXXX" (a unique name),
 * fsync, rename over path, fsync the directory.  Nothing but the old or the
 * new content is ever visible at `path`.
 */
int vmm_write_file_atomic(const char *path, const void *data, size_t len, mode_t mode,
			  vmm_error **err);
/* fsync the directory that contains `path` (or `path` itself if is_dir). */
int vmm_fsync_dir(const char *path, bool is_dir, vmm_error **err);
/* write(2) all of buf, retrying on EINTR and short writes. */
int vmm_write_all(int fd, const void *buf, size_t len);
/* pread/pwrite fully; return 0 or -1 with errno (pread: short read at EOF sets errno EIO). */
int vmm_pread_all(int fd, void *buf, size_t len, off_t off);
int vmm_pwrite_all(int fd, const void *buf, size_t len, off_t off);

/* Fill buf with cryptographically random bytes (getrandom); aborts on failure. */
void vmm_random_bytes(void *buf, size_t len);
/* A random RFC 4122 v4 UUID in upper case, as Foundation's UUID().uuidString. */
void vmm_uuid(char out[37]);
/* Lower-case hex of buf into out (2*len+1 bytes). */
void vmm_hex(const unsigned char *buf, size_t len, char *out);
/* "sha256:<hex>" of buf into out (72 bytes). */
void vmm_sha256_digest(const void *buf, size_t len, char out[72]);

/* Parse a non-negative decimal integer that fits uint64; whole string. */
int vmm_parse_u64(const char *s, uint64_t *out);

/* Free n strings and the array holding them. */
void vmm_strv_free(char **v, size_t n);

/* Monotonic clock in seconds. */
double vmm_now(void);

/*
 * A place where a test can hold a command, to race another against it:
 * when $VMM_TEST_PAUSE names `point`, create "$VMM_TEST_PAUSE_DIR/<point>.reached"
 * and wait until "<point>.go" appears there.  Does nothing otherwise.
 */
void vmm_test_pause(const char *point);

/* Is s a valid name for a local VM: non-empty, no '/', not "." or "..", no NUL/newline. */
bool vmm_name_is_valid(const char *s);

#endif
