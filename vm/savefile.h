/*
 * savefile.h — state.vmmsave: a suspended VM's memory, as QEMU's migration
 * stream compressed with multi-threaded zstd, behind a header that says
 * what it may be restored with.
 *
 * Layout:
 *   0      "VMMSAVE\n" (8 bytes), u32 little-endian JSON length, the JSON
 *          header, zero padding up to VMM_SAVEFILE_HEADER_SIZE
 *   16384  one zstd frame (with content checksum) of the raw stream
 *
 * The header (JSON, keys below) names the format version, the QEMU that
 * wrote it, the machine type, the guest-defining QEMU arguments and their
 * fingerprint, CPUs and memory, and the raw stream's size and SHA-256.  It
 * is written last, so a state file is complete once it has a header; the
 * writer builds `<path>.tmp`, fsyncs it and renames it into place.
 *
 * The reader checks everything it can before the first byte goes out
 * (magic, version, sizes) and the rest as it streams (zstd checksum, raw
 * size, SHA-256); a caller must not let the guest run until
 * vmm_savefile_restore() has returned 0.
 */
#ifndef VMM_VM_SAVEFILE_H
#define VMM_VM_SAVEFILE_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "common/err.h"

#define VMM_SAVEFILE_FORMAT 1
#define VMM_SAVEFILE_MAGIC "VMMSAVE\n"
#define VMM_SAVEFILE_HEADER_SIZE 16384

typedef struct vmm_savefile_header {
	int format;
	char *qemu_version; /* owned: "7.2.22" */
	char *qemu_package; /* owned: "Debian 1:7.2+dfsg-7+deb12u18" or "" */
	char *machine;	    /* owned: resolved machine type, "pc-q35-7.2" */
	char *arch;	    /* owned: QEMU target, "x86_64" | "aarch64" */
	char *accel;	    /* owned: "kvm" | "tcg" */
	char *fingerprint;  /* owned: "sha256:<hex>" of `model` */
	json_t *model;	    /* owned: array of the fingerprinted QEMU arguments */
	int64_t cpus;
	uint64_t memory;	  /* bytes */
	uint64_t raw_size;	  /* bytes of QEMU's stream */
	char *raw_sha256;	  /* owned: "sha256:<hex>" of QEMU's stream */
	uint64_t compressed_size; /* bytes after the header */
	char *created;		  /* owned: ISO-8601 UTC */
} vmm_savefile_header;

vmm_savefile_header *vmm_savefile_header_new(void);
void vmm_savefile_header_free(vmm_savefile_header *h);

/* Parse the first bytes of a state file; `what` names it in errors. */
int vmm_savefile_header_parse(vmm_savefile_header **out, const void *buf, size_t len,
			      const char *what, vmm_error **err);
/* Encode into exactly VMM_SAVEFILE_HEADER_SIZE bytes (caller frees); NULL if it does not fit. */
unsigned char *vmm_savefile_header_encode(const vmm_savefile_header *h);

/*
 * Read and check the header of the state file at path, including that the
 * file holds as many bytes as the header promises (a truncated file is
 * refused here, before anything runs).
 */
int vmm_savefile_read_header(vmm_savefile_header **out, const char *path, vmm_error **err);

typedef struct vmm_savefile_stats {
	uint64_t raw_bytes;
	uint64_t compressed_bytes;
	double seconds;
} vmm_savefile_stats;

/* A state file being written; opaque. */
typedef struct vmm_savefile_writer vmm_savefile_writer;

/*
 * Start writing `<path>.tmp` (a stale one is replaced).  level: zstd level;
 * workers: zstd threads (0 = one per CPU).
 */
int vmm_savefile_writer_open(vmm_savefile_writer **out, const char *path, int level, int workers,
			     vmm_error **err);
/* Compress everything readable from in_fd until EOF. */
int vmm_savefile_writer_pump(vmm_savefile_writer *w, int in_fd, vmm_error **err);
/* Compress `len` bytes. */
int vmm_savefile_writer_write(vmm_savefile_writer *w, const void *buf, size_t len, vmm_error **err);
/*
 * End the stream, fill in h's raw_size, raw_sha256 and compressed_size,
 * write the header, fsync, rename to path and fsync the directory.
 */
int vmm_savefile_writer_commit(vmm_savefile_writer *w, vmm_savefile_header *h,
			       vmm_savefile_stats *stats, vmm_error **err);
/* Free; an uncommitted `<path>.tmp` is removed. */
void vmm_savefile_writer_free(vmm_savefile_writer *w);

/*
 * Decompress the stream of the state file at path into out_fd, checking it
 * against h (from vmm_savefile_read_header) as it goes.  A mismatch is
 * VMM_EFORMAT naming the file and what is wrong.  The file is not changed.
 */
int vmm_savefile_restore(const char *path, const vmm_savefile_header *h, int out_fd,
			 vmm_savefile_stats *stats, vmm_error **err);

static inline void cleanup_vmm_savefile_header_fn(vmm_savefile_header **h)
{
	vmm_savefile_header_free(*h);
}
#define cleanup_vmm_savefile_header __attribute__((cleanup(cleanup_vmm_savefile_header_fn)))
static inline void cleanup_vmm_savefile_writer_fn(vmm_savefile_writer **w)
{
	vmm_savefile_writer_free(*w);
}
#define cleanup_vmm_savefile_writer __attribute__((cleanup(cleanup_vmm_savefile_writer_fn)))

#endif
