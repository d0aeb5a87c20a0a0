/*
 * archive.h — the portable archive (DESIGN.md §7): a pax tar compressed
 * with zstd (`.tar.zst`) that GNU tar and bsdtar can list and extract.
 *
 *   vmm-archive.json   first entry: {"format":"vmm-archive","version":1,
 *                      "files":[{"name","size","sha256"}...]}
 *   config.json, disk.img, nvram.bin, ...   the bundle's files, in that
 *                      order, holes kept as sparse entries (GNU sparse 1.0)
 *
 * Reading trusts nothing: the first entry must be the index; every entry
 * must be a regular file listed there, with a plain name (no '/', no "..",
 * not absolute), the listed size and SHA-256; links, devices and unknown
 * entries are refused.  Files are created by name inside the destination,
 * so nothing can be written outside it.
 */
#ifndef VMM_STORAGE_ARCHIVE_H
#define VMM_STORAGE_ARCHIVE_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

#define VMM_ARCHIVE_INDEX "vmm-archive.json"
#define VMM_ARCHIVE_VERSION 1
#define VMM_ARCHIVE_MAX_FILES 64

typedef struct vmm_archive_opts {
	int level;   /* zstd level; 0: 3 */
	int threads; /* zstd worker threads; 0: online CPUs */
} vmm_archive_opts;

typedef struct vmm_archive_file {
	const char *name; /* plain name in the archive */
	int fd;		  /* open for reading; borrowed, never closed here (so a POSIX
			   * lock the caller holds through it survives) */
} vmm_archive_file;

/* Load libarchive (storage/libarchive.c) unless loaded; the functions below do. */
int vmm_archive_load(vmm_error **err);

/*
 * Write the files, in order, to out as one archive.  opts may be NULL.
 * Holes in the files stay holes in the archive (they cost neither space nor
 * compression time).
 */
int vmm_archive_write(int out, const vmm_archive_file *files, size_t nfiles,
		      const vmm_archive_opts *opts, vmm_error **err);

/*
 * Read an archive from fd into the existing, empty directory `dest`,
 * verifying every size and checksum.  On failure `dest` may hold partial
 * files: the caller removes it.  Holes (and all-zero blocks) are not
 * allocated.
 */
int vmm_archive_read(int fd, const char *dest, vmm_error **err);

/* Same, from memory (fuzzing, tests). */
int vmm_archive_read_memory(const void *buf, size_t len, const char *dest, vmm_error **err);

/* vmm_archive_read() of the file at path ("-" is stdin); errors name the archive. */
int vmm_archive_unpack(const char *path, const char *dest, vmm_error **err);

#endif
