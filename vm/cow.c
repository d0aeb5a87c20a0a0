#include "vm/cow.h"
#include "common/util.h"
#include "vm/chunks.h"
#include "vm/lazy.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <linux/userfaultfd.h>
#include <sys/ioctl.h>

#define PAGE 4096u
#define CHUNK ((uint64_t)VMM_CHUNK_SIZE)

/*
 * A chunk: protected since the instant, being read or copied, copied aside,
 * or saved; or all holes at the instant, so not saved (SKIPPED).
 */
enum { PROTECTED, BUSY, COPIED, SAVED, SKIPPED };

struct vmm_cow {
	int uffd, ram_fd; /* borrowed */
	uint64_t base, size;
	size_t nchunks;
	pthread_mutex_t mu;
	pthread_cond_t cv; /* a chunk is no longer BUSY */
	bool captured;
	uint64_t *written; /* owned: before the instant, the pages let go (a bit each) */
	uint8_t *st;	   /* owned: per chunk */
	uint64_t *list;	   /* owned: at the instant, the chunks to save */
	size_t nlist;
	unsigned char **copy; /* owned: per COPIED chunk, as it was (NULL: it could not be read) */
	bool registered;
	pthread_t th;
	bool serving;
	int stop[2];
};

static size_t chunk_len(const vmm_cow *c, size_t i)
{
	uint64_t pos = i * CHUNK;
	return (size_t)(c->size - pos < CHUNK ? c->size - pos : CHUNK);
}

/* Protect or let go [off, off+len) of the RAM; letting go wakes whoever waits there. */
static int protect(vmm_cow *c, uint64_t off, uint64_t len, bool on)
{
	struct uffdio_writeprotect w = {.range = {.start = c->base + off, .len = len},
					.mode = on ? UFFDIO_WRITEPROTECT_MODE_WP : 0};
	int rc;
	while ((rc = ioctl(c->uffd, UFFDIO_WRITEPROTECT, &w)) < 0 && errno == EAGAIN)
		; /* QEMU's address space was changing */
	return rc;
}

static void on_write(void *ctx, uint64_t addr, uint64_t flags)
{
	vmm_cow *c = ctx;
	if (!(flags & UFFD_PAGEFAULT_FLAG_WP) || addr < c->base || addr - c->base >= c->size)
		return;
	uint64_t off = addr - c->base;
	pthread_mutex_lock(&c->mu);
	if (!c->captured) { /* armed: noted, and let go (capture protects it again) */
		c->written[off / PAGE / 64] |= 1ull << (off / PAGE % 64);
		protect(c, off, PAGE, false);
		pthread_mutex_unlock(&c->mu);
		return;
	}
	size_t i = (size_t)(off / CHUNK);
	while (c->st[i] == BUSY)
		pthread_cond_wait(&c->cv, &c->mu);
	if (c->st[i] == SKIPPED) { /* zeros at the instant, and not saved: the guest's now */
		pthread_mutex_unlock(&c->mu);
		protect(c, i * CHUNK, chunk_len(c, i), false);
		return;
	}
	if (c->st[i] != PROTECTED) { /* copied or saved already: a stale fault */
		pthread_mutex_unlock(&c->mu);
		protect(c, off, PAGE, false);
		return;
	}
	c->st[i] = BUSY;
	pthread_mutex_unlock(&c->mu);
	size_t len = chunk_len(c, i);
	unsigned char *buf = xmalloc(len);
	if (vmm_pread_all(c->ram_fd, buf, len, (off_t)(i * CHUNK)) < 0) {
		free(buf); /* the save fails on it (vmm_cow_read) */
		buf = NULL;
	}
	pthread_mutex_lock(&c->mu);
	c->copy[i] = buf;
	c->st[i] = COPIED;
	pthread_cond_broadcast(&c->cv);
	pthread_mutex_unlock(&c->mu);
	protect(c, i * CHUNK, len, false);
}

static void *serve_main(void *arg)
{
	vmm_cow *c = arg;
	vmm_uffd_faults(c->uffd, c->stop[0], on_write, c);
	return NULL;
}

int vmm_cow_arm(vmm_cow **out, int uffd, uint64_t base, int ram_fd, uint64_t size, vmm_error **err)
{
	if (size % PAGE || !size)
		return vmm_error_set(err, VMM_EINVAL, "guest memory of %llu bytes",
				     (unsigned long long)size);
	vmm_cow *c = xcalloc(1, sizeof(*c));
	c->uffd = uffd;
	c->ram_fd = ram_fd;
	c->base = base;
	c->size = size;
	c->nchunks = (size_t)((size + CHUNK - 1) / CHUNK);
	c->written = xcalloc(size / PAGE / 64 + 1, sizeof(uint64_t));
	c->st = xcalloc(c->nchunks, 1);
	c->copy = xcalloc(c->nchunks, sizeof(*c->copy));
	c->stop[0] = c->stop[1] = -1;
	pthread_mutex_init(&c->mu, NULL);
	pthread_cond_init(&c->cv, NULL);
	if (pipe2(c->stop, O_CLOEXEC) < 0) {
		vmm_error_errno(err, errno, "pipe");
		goto fail;
	}
	struct uffdio_register reg = {.range = {.start = base, .len = size},
				      .mode = UFFDIO_REGISTER_MODE_WP};
	if (ioctl(uffd, UFFDIO_REGISTER, &reg) < 0) {
		vmm_error_errno(err, errno, "register the guest's memory for write protection");
		goto fail;
	}
	c->registered = true;
	if (!(reg.ioctls & (1ull << _UFFDIO_WRITEPROTECT))) {
		vmm_error_set(err, VMM_EGENERIC, "the guest's memory cannot be write-protected");
		goto fail;
	}
	if (pthread_create(&c->th, NULL, serve_main, c) != 0) {
		vmm_error_set(err, VMM_EGENERIC, "cannot start a thread");
		goto fail;
	}
	c->serving = true;
	if (protect(c, 0, size, true) < 0) {
		vmm_error_errno(err, errno, "write-protect the guest's memory");
		goto fail;
	}
	/*
	 * Which chunks hold data, outside the pause: found after the
	 * protection, so a hole the guest writes from now on faults, is noted
	 * and joins them at the capture.
	 */
	uint64_t *data;
	size_t n;
	if (vmm_chunks_with_data(ram_fd, size, &data, &n, err) < 0)
		goto fail;
	pthread_mutex_lock(&c->mu);
	memset(c->st, SKIPPED, c->nchunks);
	for (size_t k = 0; k < n; k++)
		c->st[data[k] / CHUNK] = PROTECTED;
	pthread_mutex_unlock(&c->mu);
	free(data);
	*out = c;
	return 0;
fail:
	vmm_cow_free(c);
	return -1;
}

int vmm_cow_capture(vmm_cow *c, vmm_error **err)
{
	int rc = 0, e = 0;
	pthread_mutex_lock(&c->mu);
	c->captured = true;
	size_t pages = (size_t)(c->size / PAGE);
	for (size_t p = 0; p < pages && rc == 0;) {
		if (!(c->written[p / 64] >> (p % 64) & 1)) {
			p++;
			continue;
		}
		size_t q = p;
		while (q < pages && c->written[q / 64] >> (q % 64) & 1)
			q++;
		rc = protect(c, p * PAGE, (q - p) * PAGE, true);
		e = errno;
		for (size_t k = p; k < q; k++)
			if (c->st[k * PAGE / CHUNK] == SKIPPED)
				c->st[k * PAGE / CHUNK] = PROTECTED;
		p = q;
	}
	c->list = xcalloc(c->nchunks, sizeof(uint64_t));
	for (size_t i = 0; i < c->nchunks; i++)
		if (c->st[i] == PROTECTED)
			c->list[c->nlist++] = i * CHUNK;
	pthread_mutex_unlock(&c->mu);
	if (rc < 0)
		return vmm_error_errno(err, e, "write-protect the guest's memory");
	return 0;
}

int vmm_cow_read(void *cow, uint64_t pos, void *buf, size_t len)
{
	vmm_cow *c = cow;
	size_t i = (size_t)(pos / CHUNK);
	if (pos % CHUNK || i >= c->nchunks || len != chunk_len(c, i)) {
		errno = EINVAL;
		return -1;
	}
	/* tests hold the save here: the guest's writes meanwhile are all copied aside */
	vmm_test_pause("snapshot-cow");
	pthread_mutex_lock(&c->mu);
	while (c->st[i] == BUSY)
		pthread_cond_wait(&c->cv, &c->mu);
	int st = c->st[i];
	unsigned char *copy = steal_ptr(c->copy[i]);
	if (st == PROTECTED || st == COPIED)
		c->st[i] = st == PROTECTED ? BUSY : SAVED;
	pthread_mutex_unlock(&c->mu);
	if (st == COPIED) {
		if (!copy) {
			errno = EIO;
			return -1;
		}
		memcpy(buf, copy, len);
		free(copy);
		return 0;
	}
	if (st != PROTECTED) { /* each chunk of the list once */
		errno = EINVAL;
		return -1;
	}
	/* still protected: as it was, read where it is, and then let go */
	int rc = vmm_pread_all(c->ram_fd, buf, len, (off_t)pos);
	int e = errno;
	protect(c, pos, len, false);
	pthread_mutex_lock(&c->mu);
	c->st[i] = SAVED;
	pthread_cond_broadcast(&c->cv);
	pthread_mutex_unlock(&c->mu);
	errno = e;
	return rc;
}

size_t vmm_cow_take_list(vmm_cow *c, uint64_t **list)
{
	*list = steal_ptr(c->list);
	return c->nlist;
}

void vmm_cow_free(vmm_cow *c)
{
	if (!c)
		return;
	if (c->registered) { /* every write goes through from here on */
		protect(c, 0, c->size, false);
		struct uffdio_range r = {.start = c->base, .len = c->size};
		ioctl(c->uffd, UFFDIO_UNREGISTER, &r);
	}
	if (c->serving) {
		(void)!write(c->stop[1], "x", 1);
		pthread_join(c->th, NULL);
	}
	if (c->stop[0] >= 0) {
		close(c->stop[0]);
		close(c->stop[1]);
	}
	for (size_t i = 0; i < c->nchunks; i++)
		free(c->copy[i]);
	free(c->copy);
	free(c->list);
	free(c->st);
	free(c->written);
	pthread_mutex_destroy(&c->mu);
	pthread_cond_destroy(&c->cv);
	free(c);
}
