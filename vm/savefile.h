/*
 * savefile.h — state.vmmsave: a suspended VM's memory behind a header that
 * says what it may be restored with.
 *
 * Layout (both formats):
 *   0      "VMMSAVE\n" (8 bytes), u32 little-endian JSON length, the JSON
 *          header, zero padding up to VMM_SAVEFILE_HEADER_SIZE
 *   16384  the body
 *
 * Format 2 (written since vmm 0.2; vm/chunks.h): the body is a series of
 * independently compressed chunks (lz4 or zstd frames, each with its
 * codec's content checksum), then an index of fixed-size records whose
 * SHA-256 the header holds.  Kind "memory": QEMU's migration stream saved
 * with x-ignore-shared (device state only) plus the guest's RAM as the
 * non-zero 4 KiB pages of each 2 MiB stretch; kind "stream": QEMU's whole
 * migration stream (snapshots of running VMs, saved by background-snapshot).
 *
 * Format 1 (read only, for states from earlier vmm): one zstd frame of
 * QEMU's whole migration stream, whose size and SHA-256 the header holds.
 *
 * The header names the format, the QEMU that wrote it, the machine type,
 * the guest-defining QEMU arguments and their fingerprint, CPUs and memory,
 * and the sizes the body must have.  It is written last, so a state file is
 * complete once it has a header; writers build `<path>.tmp`, fsync it and
 * rename it into place.
 *
 * Readers check everything they can before the first byte goes out (magic,
 * version, sizes, the index) and the rest as they decompress (checksums,
 * sizes); a caller must not let the guest run until the load has returned 0.
 */
#ifndef VMM_VM_SAVEFILE_H
#define VMM_VM_SAVEFILE_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "common/err.h"

#define VMM_SAVEFILE_FORMAT 2	     /* what this vmm writes */
#define VMM_SAVEFILE_FORMAT_STREAM 1 /* the one zstd stream of vmm 0.1, still read */
#define VMM_SAVEFILE_MAGIC "VMMSAVE\n"
#define VMM_SAVEFILE_HEADER_SIZE 16384
#define VMM_SAVEFILE_RECORD_SIZE 96	  /* one index record of format 2 */
#define VMM_SAVEFILE_CHUNK_MAX (2u << 20) /* the largest chunk: 512 pages, a 64-byte bitmap */

/* What a format-2 body holds (see above). */
typedef enum {
	VMM_SAVEFILE_KIND_STREAM,
	VMM_SAVEFILE_KIND_MEMORY,
} vmm_savefile_kind;

/* The codec of a format-2 body's chunks. */
typedef enum {
	VMM_CODEC_LZ4,
	VMM_CODEC_ZSTD,
} vmm_codec;

const char *vmm_codec_name(vmm_codec c);

typedef struct vmm_savefile_header {
	int format;		/* 1 or 2 */
	vmm_savefile_kind kind; /* format 2 */
	vmm_codec codec;	/* format 2 */
	char *qemu_version;	/* owned: "7.2.22" */
	char *qemu_package;	/* owned: "Debian 1:7.2+dfsg-7+deb12u18" or "" */
	char *machine;		/* owned: resolved machine type, "pc-q35-7.2" */
	char *arch;		/* owned: QEMU target, "x86_64" | "aarch64" */
	char *accel;		/* owned: "kvm" | "tcg" */
	char *fingerprint;	/* owned: "sha256:<hex>" of `model` */
	json_t *model;		/* owned: array of the fingerprinted QEMU arguments */
	int64_t cpus;
	uint64_t memory; /* bytes */
	/*
	 * Bytes before compression: format 1, QEMU's stream; format 2, QEMU's
	 * stream plus the stored RAM pages (what a raw save would have written).
	 */
	uint64_t raw_size;
	char *raw_sha256;	  /* owned: format 1, "sha256:<hex>" of QEMU's stream; else NULL */
	uint64_t compressed_size; /* bytes after the header */
	char *created;		  /* owned: ISO-8601 UTC */
	/* format 2 */
	uint64_t device_size;  /* bytes of QEMU's migration stream */
	uint64_t chunk_size;   /* bytes of RAM (or stream) per chunk */
	uint64_t index_offset; /* from the start of the file */
	uint64_t index_count;  /* records */
	char *index_sha256;    /* owned: "sha256:<hex>" of the index */
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
	double pause; /* snapshots of running VMs: how long the guest was paused */
	/* memory chunks compressed by this save, and kept from an earlier one unchanged */
	uint64_t chunks_compressed, chunks_reused;
} vmm_savefile_stats;

/*
 * The last step of writing a state file: the header h at the start of fd
 * (open on `tmp`), fsync, rename tmp to path, fsync the directory.  fd is
 * left open for the caller to close.
 */
int vmm_savefile_publish(int fd, const char *tmp, const char *path, const vmm_savefile_header *h,
			 vmm_error **err);

/*
 * The format-1 writer and reader below remain for reading states of vmm
 * 0.1 and, through VMM_STATE_FORMAT=1, for writing them in tests.
 */

/* A format-1 state file being written; opaque. */
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
