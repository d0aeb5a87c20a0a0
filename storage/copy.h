/*
 * copy.h — copying files and bundles without wasting space.
 *
 * The ladder, per file: FICLONE (clonefile(2) on macOS) shares every block
 * and costs no space until written; when the file system or the pair of
 * files cannot reflink (EXDEV, EOPNOTSUPP, EINVAL, ENOTTY, ETXTBSY, EISDIR,
 * EPERM), a sparse copy walks SEEK_DATA/SEEK_HOLE and moves only the data
 * with copy_file_range; where holes cannot be found that way, a copy that
 * reads everything and leaves all-zero blocks as holes.  No method ever
 * turns a hole into allocated zeros.
 */
#ifndef VMM_STORAGE_COPY_H
#define VMM_STORAGE_COPY_H

#include <stdbool.h>
#include <stdint.h>

#include "common/err.h"

typedef enum {
	VMM_COPY_REFLINK,  /* blocks shared */
	VMM_COPY_SPARSE,   /* SEEK_DATA/SEEK_HOLE + copy_file_range */
	VMM_COPY_ZEROSKIP, /* read all, write non-zero blocks */
} vmm_copy_method;

typedef struct vmm_copy_stats {
	vmm_copy_method method; /* of the last file copied */
	uint64_t files;
	uint64_t data_bytes; /* bytes moved by the non-reflink methods */
	uint64_t reflinked;  /* files shared by reflink */
} vmm_copy_stats;

typedef struct vmm_copy_opts {
	bool no_reflink;   /* force the sparse fallback (tests, benchmarks) */
	bool no_seek_data; /* force the zero-skipping copy (tests) */
	bool fsync;	   /* fsync each file before returning */
	/*
	 * Have the data of each copied file written to the device (without a
	 * cache flush or a metadata commit) before returning; writeback starts
	 * while the copy runs.  Enough for a later rename to never expose the
	 * file without its data after a crash: journaling and COW file systems
	 * commit metadata after completed writes, behind a cache flush.
	 * Reflinked files need nothing: sharing extents is a metadata change.
	 */
	bool write_back;
} vmm_copy_opts;

/*
 * Copy regular file src to dst, which must not exist (created with src's
 * permission bits).  On failure dst is removed.  stats and opts may be NULL.
 */
int vmm_copy_file(const char *src, const char *dst, const vmm_copy_opts *opts,
		  vmm_copy_stats *stats, vmm_error **err);

/*
 * Copy the regular files at the top of directory src into the existing
 * directory dst, skipping names for which skip(name) returns true (skip may
 * be NULL).  Subdirectories are copied only if `recursive`.
 */
int vmm_copy_dir(const char *src, const char *dst, bool recursive, bool (*skip)(const char *name),
		 const vmm_copy_opts *opts, vmm_copy_stats *stats, vmm_error **err);

const char *vmm_copy_method_name(vmm_copy_method m);

/* Exposed for tests: the fallback copies on already-open descriptors (dst sized by caller). */
int vmm_copy_sparse_fd(int in, int out, uint64_t size, uint64_t *copied);
int vmm_copy_zeroskip_fd(int in, int out, uint64_t size, uint64_t *copied);

#endif
