/*
 * libarchive.c — libarchive's trampolines (common/lazy.h): the vmm binary
 * loads libarchive only when a command reads or writes an archive.
 */
#include <archive.h>
#include <archive_entry.h>

#include "common/lazy.h"
#include "storage/archive.h"

#ifndef VMM_SONAME_ARCHIVE
#define VMM_SONAME_ARCHIVE ""
#endif

static vmm_lazy_lib vmm_libarchive = {VMM_SONAME_ARCHIVE, "libarchive.so.13", NULL};

int vmm_archive_load(vmm_error **err)
{
	return vmm_lazy_load(&vmm_libarchive, err);
}

LAZY(vmm_libarchive, struct archive_entry *, archive_entry_new, (void), ())
LAZY_VOID(vmm_libarchive, archive_entry_free, (struct archive_entry * e), (e))
LAZY(vmm_libarchive, __LA_MODE_T, archive_entry_filetype, (struct archive_entry * e), (e))
LAZY(vmm_libarchive, const char *, archive_entry_hardlink, (struct archive_entry * e), (e))
LAZY(vmm_libarchive, const char *, archive_entry_pathname, (struct archive_entry * e), (e))
LAZY(vmm_libarchive, __LA_MODE_T, archive_entry_perm, (struct archive_entry * e), (e))
LAZY(vmm_libarchive, la_int64_t, archive_entry_size, (struct archive_entry * e), (e))
LAZY(vmm_libarchive, int, archive_entry_size_is_set, (struct archive_entry * e), (e))
LAZY(vmm_libarchive, const char *, archive_entry_symlink, (struct archive_entry * e), (e))
LAZY_VOID(vmm_libarchive, archive_entry_set_filetype, (struct archive_entry * e, unsigned int t),
	  (e, t))
LAZY_VOID(vmm_libarchive, archive_entry_set_gid, (struct archive_entry * e, la_int64_t g), (e, g))
LAZY_VOID(vmm_libarchive, archive_entry_set_uid, (struct archive_entry * e, la_int64_t u), (e, u))
LAZY_VOID(vmm_libarchive, archive_entry_set_mtime, (struct archive_entry * e, time_t t, long ns),
	  (e, t, ns))
LAZY_VOID(vmm_libarchive, archive_entry_set_pathname, (struct archive_entry * e, const char *p),
	  (e, p))
LAZY_VOID(vmm_libarchive, archive_entry_set_perm, (struct archive_entry * e, __LA_MODE_T m), (e, m))
LAZY_VOID(vmm_libarchive, archive_entry_set_size, (struct archive_entry * e, la_int64_t s), (e, s))
LAZY_VOID(vmm_libarchive, archive_entry_sparse_add_entry,
	  (struct archive_entry * e, la_int64_t off, la_int64_t len), (e, off, len))
LAZY(vmm_libarchive, int, archive_errno, (struct archive * a), (a))
LAZY(vmm_libarchive, const char *, archive_error_string, (struct archive * a), (a))
LAZY(vmm_libarchive, struct archive *, archive_read_new, (void), ())
LAZY(vmm_libarchive, int, archive_read_support_filter_none, (struct archive * a), (a))
LAZY(vmm_libarchive, int, archive_read_support_filter_zstd, (struct archive * a), (a))
LAZY(vmm_libarchive, int, archive_read_support_format_tar, (struct archive * a), (a))
LAZY(vmm_libarchive, int, archive_read_open_fd, (struct archive * a, int fd, size_t block),
     (a, fd, block))
LAZY(vmm_libarchive, int, archive_read_open_memory, (struct archive * a, const void *b, size_t n),
     (a, b, n))
LAZY(vmm_libarchive, int, archive_read_next_header, (struct archive * a, struct archive_entry **e),
     (a, e))
LAZY(vmm_libarchive, la_ssize_t, archive_read_data, (struct archive * a, void *b, size_t n),
     (a, b, n))
LAZY(vmm_libarchive, int, archive_read_data_block,
     (struct archive * a, const void **b, size_t *n, la_int64_t *off), (a, b, n, off))
LAZY(vmm_libarchive, int, archive_read_free, (struct archive * a), (a))
LAZY(vmm_libarchive, struct archive *, archive_write_new, (void), ())
LAZY(vmm_libarchive, int, archive_write_set_format_pax, (struct archive * a), (a))
LAZY(vmm_libarchive, int, archive_write_add_filter_zstd, (struct archive * a), (a))
LAZY(vmm_libarchive, int, archive_write_set_filter_option,
     (struct archive * a, const char *m, const char *o, const char *v), (a, m, o, v))
LAZY(vmm_libarchive, int, archive_write_set_bytes_in_last_block, (struct archive * a, int n),
     (a, n))
LAZY(vmm_libarchive, int, archive_write_open_fd, (struct archive * a, int fd), (a, fd))
LAZY(vmm_libarchive, int, archive_write_header, (struct archive * a, struct archive_entry *e),
     (a, e))
LAZY(vmm_libarchive, la_ssize_t, archive_write_data, (struct archive * a, const void *b, size_t n),
     (a, b, n))
LAZY(vmm_libarchive, int, archive_write_close, (struct archive * a), (a))
LAZY(vmm_libarchive, int, archive_write_free, (struct archive * a), (a))
