#include "storage/archive.h"
#include "common/json.h"
#include "common/util.h"

#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>
#include <openssl/evp.h>

#define IO_BUF (1u << 20)
#define ZERO_BLOCK (64u << 10)
#define INDEX_MAX (1u << 20)
#define FILE_MAX (1ULL << 46) /* 64 TiB: anything larger is a lie */

static const unsigned char zeros[IO_BUF];

/* One data or hole run of a file, as SEEK_DATA/SEEK_HOLE report it. */
typedef struct run {
	uint64_t off, len;
} run;

/*
 * The data runs of fd (size bytes).  A file system without SEEK_DATA
 * support reports one run covering everything, which is still correct.
 */
static int data_runs(int fd, uint64_t size, run **out, size_t *n)
{
	run *v = NULL;
	size_t cnt = 0;
	uint64_t pos = 0;
	while (pos < size) {
		off_t d = lseek(fd, (off_t)pos, SEEK_DATA);
		if (d < 0) {
			if (errno == ENXIO)
				break;
			if (errno == EINVAL || errno == EOPNOTSUPP) { /* no SEEK_DATA: all data */
				free(v);
				v = xmalloc(sizeof(*v));
				v[0] = (run){0, size};
				cnt = 1;
				break;
			}
			free(v);
			return -1;
		}
		if ((uint64_t)d >= size)
			break;
		off_t h = lseek(fd, d, SEEK_HOLE);
		if (h < 0) {
			free(v);
			return -1;
		}
		uint64_t end = (uint64_t)h > size ? size : (uint64_t)h;
		v = xrealloc(v, (cnt + 1) * sizeof(*v));
		v[cnt++] = (run){(uint64_t)d, end - (uint64_t)d};
		pos = end;
	}
	*out = v;
	*n = cnt;
	return 0;
}

static void hash_zeros(EVP_MD_CTX *md, uint64_t n)
{
	while (n) {
		size_t k = n > IO_BUF ? IO_BUF : (size_t)n;
		EVP_DigestUpdate(md, zeros, k);
		n -= k;
	}
}

static void hash_final(EVP_MD_CTX *md, char out[72])
{
	unsigned char d[32];
	unsigned int l = 0;
	EVP_DigestFinal_ex(md, d, &l);
	memcpy(out, "sha256:", 7);
	vmm_hex(d, 32, out + 7);
}

static bool plain_name(const char *n)
{
	return vmm_name_is_valid(n) && n[0] != '.' && !strchr(n, '\\') &&
	       strcmp(n, VMM_ARCHIVE_INDEX) != 0;
}

typedef struct src_file {
	const char *name; /* borrowed */
	int fd;
	struct stat st;
	run *runs;
	size_t nruns;
	char sha256[72];
} src_file;

/* SHA-256 of the logical content, reading only the data runs. */
static int hash_file(src_file *f, unsigned char *buf)
{
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	EVP_DigestInit_ex(md, EVP_sha256(), NULL);
	uint64_t pos = 0;
	for (size_t i = 0; i < f->nruns; i++) {
		hash_zeros(md, f->runs[i].off - pos);
		uint64_t off = f->runs[i].off, left = f->runs[i].len;
		while (left) {
			size_t k = left > IO_BUF ? IO_BUF : (size_t)left;
			if (vmm_pread_all(f->fd, buf, k, (off_t)off) < 0) {
				EVP_MD_CTX_free(md);
				return -1;
			}
			EVP_DigestUpdate(md, buf, k);
			off += k;
			left -= k;
		}
		pos = f->runs[i].off + f->runs[i].len;
	}
	hash_zeros(md, (uint64_t)f->st.st_size - pos);
	hash_final(md, f->sha256);
	EVP_MD_CTX_free(md);
	return 0;
}

static int ar_fail(vmm_error **err, struct archive *a, const char *what)
{
	/* libarchive's text for a failed write is "Write error": say why */
	int e = archive_errno(a);
	if (e == ENOSPC || e == EDQUOT || e == EIO || e == EROFS || e == EFBIG)
		return vmm_error_set(err, e, "%s: %s", what, vmm_strerror(e));
	return vmm_error_set(err, archive_errno(a) > 0 ? archive_errno(a) : VMM_EGENERIC, "%s: %s",
			     what, archive_error_string(a) ? archive_error_string(a) : "error");
}

static struct archive_entry *new_entry(const char *name, uint64_t size, mode_t mode, time_t mtime)
{
	struct archive_entry *e = archive_entry_new();
	archive_entry_set_pathname(e, name);
	archive_entry_set_filetype(e, AE_IFREG);
	archive_entry_set_perm(e, mode & 0777);
	archive_entry_set_size(e, (la_int64_t)size);
	archive_entry_set_mtime(e, mtime, 0);
	archive_entry_set_uid(e, 0);
	archive_entry_set_gid(e, 0);
	return e;
}

/* Feed the logical content: data runs read from disk, holes as zeros the
 * pax writer drops (it has the sparse map), so holes cost nothing. */
static int write_body(struct archive *a, src_file *f, unsigned char *buf, vmm_error **err)
{
	uint64_t pos = 0, size = (uint64_t)f->st.st_size;
	for (size_t i = 0; i <= f->nruns; i++) {
		uint64_t data_off = i < f->nruns ? f->runs[i].off : size;
		while (pos < data_off) {
			size_t k = data_off - pos > IO_BUF ? IO_BUF : (size_t)(data_off - pos);
			if (archive_write_data(a, zeros, k) < 0)
				return ar_fail(err, a, f->name);
			pos += k;
		}
		if (i == f->nruns)
			break;
		uint64_t left = f->runs[i].len;
		while (left) {
			size_t k = left > IO_BUF ? IO_BUF : (size_t)left;
			if (vmm_pread_all(f->fd, buf, k, (off_t)pos) < 0)
				return vmm_error_errno(err, errno, "read `%s`", f->name);
			if (archive_write_data(a, buf, k) < 0)
				return ar_fail(err, a, f->name);
			pos += k;
			left -= k;
		}
	}
	return 0;
}

int vmm_archive_write(int out, const vmm_archive_file *files, size_t nfiles,
		      const vmm_archive_opts *opts, vmm_error **err)
{
	if (nfiles > VMM_ARCHIVE_MAX_FILES)
		return vmm_error_set(err, VMM_EINVAL, "too many files (%zu)", nfiles);
	if (vmm_archive_load(err) < 0)
		return -1;
	int level = opts && opts->level ? opts->level : 3;
	long threads = opts && opts->threads ? opts->threads : sysconf(_SC_NPROCESSORS_ONLN);
	src_file *src = xcalloc(nfiles, sizeof(*src));
	unsigned char *buf = xmalloc(IO_BUF);
	struct archive *a = NULL;
	json_t *index = NULL;
	int rc = -1;

	index = json_pack("{s:s, s:i, s:[]}", "format", "vmm-archive", "version",
			  VMM_ARCHIVE_VERSION, "files");
	for (size_t i = 0; i < nfiles; i++) {
		src_file *f = &src[i];
		f->name = files[i].name;
		f->fd = files[i].fd;
		if (!plain_name(f->name)) {
			vmm_error_set(err, VMM_EINVAL, "\"%s\" is not a plain file name", f->name);
			goto out;
		}
		if (fstat(f->fd, &f->st) < 0) {
			vmm_error_errno(err, errno, "stat `%s`", f->name);
			goto out;
		}
		if (!S_ISREG(f->st.st_mode)) {
			vmm_error_set(err, VMM_EINVAL, "`%s` is not a regular file", f->name);
			goto out;
		}
		if (data_runs(f->fd, (uint64_t)f->st.st_size, &f->runs, &f->nruns) < 0 ||
		    hash_file(f, buf) < 0) {
			vmm_error_errno(err, errno, "read `%s`", f->name);
			goto out;
		}
		json_array_append_new(json_object_get(index, "files"),
				      json_pack("{s:s, s:I, s:s}", "name", f->name, "size",
						(json_int_t)f->st.st_size, "sha256", f->sha256));
	}

	a = archive_write_new();
	if (archive_write_set_format_pax(a) != ARCHIVE_OK ||
	    archive_write_add_filter_zstd(a) != ARCHIVE_OK) {
		ar_fail(err, a, "archive");
		goto out;
	}
	char v[32];
	snprintf(v, sizeof(v), "%d", level);
	archive_write_set_filter_option(a, "zstd", "compression-level", v);
	snprintf(v, sizeof(v), "%ld", threads > 0 ? threads : 1);
	archive_write_set_filter_option(a, "zstd", "threads", v); /* ignored by older libarchive */
	archive_write_set_bytes_in_last_block(a, 1);
	if (archive_write_open_fd(a, out) != ARCHIVE_OK) {
		ar_fail(err, a, "archive");
		goto out;
	}

	{
		cleanup_free char *text = vmm_json_pretty(index);
		size_t len = strlen(text);
		struct archive_entry *e = new_entry(VMM_ARCHIVE_INDEX, len, 0644, time(NULL));
		int r = archive_write_header(a, e);
		archive_entry_free(e);
		if (r != ARCHIVE_OK || archive_write_data(a, text, len) < 0) {
			ar_fail(err, a, VMM_ARCHIVE_INDEX);
			goto out;
		}
	}
	for (size_t i = 0; i < nfiles; i++) {
		src_file *f = &src[i];
		struct archive_entry *e =
		    new_entry(f->name, (uint64_t)f->st.st_size, f->st.st_mode, f->st.st_mtime);
		bool sparse = f->nruns != 1 || f->runs[0].off != 0 ||
			      f->runs[0].len != (uint64_t)f->st.st_size;
		for (size_t r = 0; sparse && r < f->nruns; r++)
			archive_entry_sparse_add_entry(e, (la_int64_t)f->runs[r].off,
						       (la_int64_t)f->runs[r].len);
		int r = archive_write_header(a, e);
		archive_entry_free(e);
		if (r != ARCHIVE_OK) {
			ar_fail(err, a, f->name);
			goto out;
		}
		if (write_body(a, f, buf, err) < 0)
			goto out;
	}
	if (archive_write_close(a) != ARCHIVE_OK) {
		ar_fail(err, a, "archive");
		goto out;
	}
	rc = 0;
out:
	if (a)
		archive_write_free(a);
	for (size_t i = 0; i < nfiles; i++)
		free(src[i].runs);
	free(src);
	free(buf);
	json_decref(index);
	return rc;
}

/* --- reading ------------------------------------------------------------ */

typedef struct want {
	char *name;
	uint64_t size;
	char sha256[72];
	bool seen;
} want;

static int parse_index(const char *text, size_t len, want **out, size_t *n, vmm_error **err)
{
	json_t *j = NULL;
	if (vmm_json_parse(&j, text, len, VMM_ARCHIVE_INDEX, err) < 0)
		return -1;
	int rc = -1;
	want *w = NULL;
	size_t cnt = 0;
	json_t *files = json_object_get(j, "files");
	json_t *fmt = json_object_get(j, "format"), *ver = json_object_get(j, "version");
	if (!json_is_string(fmt) || strcmp(json_string_value(fmt), "vmm-archive") != 0) {
		vmm_error_set(err, VMM_EFORMAT, "%s: not a vmm archive index", VMM_ARCHIVE_INDEX);
		goto out;
	}
	if (!json_is_integer(ver) || json_integer_value(ver) != VMM_ARCHIVE_VERSION) {
		vmm_error_set(err, VMM_EFORMAT,
			      "%s: unsupported archive version (this vmm reads %d)",
			      VMM_ARCHIVE_INDEX, VMM_ARCHIVE_VERSION);
		goto out;
	}
	if (!json_is_array(files) || json_array_size(files) > VMM_ARCHIVE_MAX_FILES) {
		vmm_error_set(err, VMM_EFORMAT, "%s: `files` must be a list of at most %d entries",
			      VMM_ARCHIVE_INDEX, VMM_ARCHIVE_MAX_FILES);
		goto out;
	}
	w = xcalloc(json_array_size(files) + 1, sizeof(*w));
	size_t i;
	json_t *f;
	json_array_foreach(files, i, f)
	{
		json_t *name = json_object_get(f, "name"), *size = json_object_get(f, "size"),
		       *sum = json_object_get(f, "sha256");
		if (!json_is_string(name) || !json_is_integer(size) || !json_is_string(sum) ||
		    json_integer_value(size) < 0 || (uint64_t)json_integer_value(size) > FILE_MAX ||
		    json_string_length(sum) != 71 ||
		    strncmp(json_string_value(sum), "sha256:", 7) != 0) {
			vmm_error_set(err, VMM_EFORMAT, "%s: file %zu is malformed",
				      VMM_ARCHIVE_INDEX, i);
			goto out;
		}
		const char *nm = json_string_value(name);
		if (!plain_name(nm) || strlen(nm) != json_string_length(name)) {
			vmm_error_set(err, VMM_EFORMAT, "%s: refusing file name \"%s\"",
				      VMM_ARCHIVE_INDEX, nm);
			goto out;
		}
		for (size_t k = 0; k < cnt; k++)
			if (strcmp(w[k].name, nm) == 0) {
				vmm_error_set(err, VMM_EFORMAT, "%s: \"%s\" is listed twice",
					      VMM_ARCHIVE_INDEX, nm);
				goto out;
			}
		w[cnt].name = xstrdup(nm);
		w[cnt].size = (uint64_t)json_integer_value(size);
		memcpy(w[cnt].sha256, json_string_value(sum), 72);
		cnt++;
	}
	*out = steal_ptr(w);
	*n = cnt;
	rc = 0;
out:
	if (w) {
		for (size_t k = 0; k < cnt; k++)
			free(w[k].name);
		free(w);
	}
	json_decref(j);
	return rc;
}

/* Write one entry's blocks at their offsets, leaving holes; check size and hash. */
static int read_body(struct archive *a, int fd, want *w, vmm_error **err)
{
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	EVP_DigestInit_ex(md, EVP_sha256(), NULL);
	uint64_t pos = 0;
	int rc = -1;
	for (;;) {
		const void *blk;
		size_t len;
		la_int64_t off;
		int r = archive_read_data_block(a, &blk, &len, &off);
		if (r == ARCHIVE_EOF)
			break;
		if (r != ARCHIVE_OK && r != ARCHIVE_WARN) {
			ar_fail(err, a, w->name);
			goto out;
		}
		if (off < 0 || (uint64_t)off < pos || (uint64_t)off > w->size ||
		    len > w->size - (uint64_t)off) {
			vmm_error_set(err, VMM_EFORMAT,
				      "`%s`: data beyond its listed size of %llu bytes", w->name,
				      (unsigned long long)w->size);
			goto out;
		}
		hash_zeros(md, (uint64_t)off - pos);
		EVP_DigestUpdate(md, blk, len);
		for (size_t b = 0; b < len; b += ZERO_BLOCK) {
			size_t k = len - b < ZERO_BLOCK ? len - b : ZERO_BLOCK;
			if (memcmp((const char *)blk + b, zeros, k) != 0 &&
			    vmm_pwrite_all(fd, (const char *)blk + b, k,
					   (off_t)((uint64_t)off + b)) < 0) {
				vmm_error_errno(err, errno, "write `%s`", w->name);
				goto out;
			}
		}
		pos = (uint64_t)off + len;
	}
	hash_zeros(md, w->size - pos);
	char got[72];
	hash_final(md, got);
	if (strcmp(got, w->sha256) != 0) {
		vmm_error_set(err, VMM_EFORMAT,
			      "`%s`: checksum mismatch (archive says %s, content is %s)", w->name,
			      w->sha256, got);
		goto out;
	}
	if (fsync(fd) < 0) {
		vmm_error_errno(err, errno, "write `%s`", w->name);
		goto out;
	}
	rc = 0;
out:
	EVP_MD_CTX_free(md);
	return rc;
}

static int read_all(struct archive *a, const char *dest, vmm_error **err)
{
	struct archive_entry *e;
	want *w = NULL;
	size_t nw = 0;
	int rc = -1;
	int r = archive_read_next_header(a, &e);
	if (r != ARCHIVE_OK && r != ARCHIVE_WARN) {
		if (r == ARCHIVE_EOF)
			vmm_error_set(err, VMM_EFORMAT, "the archive is empty");
		else
			ar_fail(err, a, "archive");
		goto out;
	}
	const char *first = archive_entry_pathname(e);
	if (!first || strcmp(first, VMM_ARCHIVE_INDEX) != 0 ||
	    archive_entry_filetype(e) != AE_IFREG || archive_entry_size(e) <= 0 ||
	    archive_entry_size(e) > INDEX_MAX) {
		vmm_error_set(err, VMM_EFORMAT, "not a vmm archive: the first entry is not %s",
			      VMM_ARCHIVE_INDEX);
		goto out;
	}
	{
		size_t len = (size_t)archive_entry_size(e);
		cleanup_free char *text = xmalloc(len + 1);
		la_ssize_t got = archive_read_data(a, text, len);
		if (got < 0 || (size_t)got != len) {
			ar_fail(err, a, VMM_ARCHIVE_INDEX);
			goto out;
		}
		text[len] = '\0';
		if (parse_index(text, len, &w, &nw, err) < 0)
			goto out;
	}
	while ((r = archive_read_next_header(a, &e)) == ARCHIVE_OK || r == ARCHIVE_WARN) {
		const char *name = archive_entry_pathname(e);
		if (name && strncmp(name, "./", 2) == 0)
			name += 2;
		if (!name || !plain_name(name)) {
			vmm_error_set(err, VMM_EFORMAT,
				      "refusing entry \"%s\": not a plain file name",
				      name ? name : "");
			goto out;
		}
		if (archive_entry_filetype(e) != AE_IFREG || archive_entry_hardlink(e) ||
		    archive_entry_symlink(e)) {
			vmm_error_set(err, VMM_EFORMAT,
				      "refusing entry \"%s\": only regular files are allowed",
				      name);
			goto out;
		}
		want *cur = NULL;
		for (size_t k = 0; k < nw; k++)
			if (strcmp(w[k].name, name) == 0)
				cur = &w[k];
		if (!cur) {
			vmm_error_set(err, VMM_EFORMAT, "entry \"%s\" is not listed in %s", name,
				      VMM_ARCHIVE_INDEX);
			goto out;
		}
		if (cur->seen) {
			vmm_error_set(err, VMM_EFORMAT, "entry \"%s\" appears twice", name);
			goto out;
		}
		cur->seen = true;
		if (!archive_entry_size_is_set(e) || archive_entry_size(e) < 0 ||
		    (uint64_t)archive_entry_size(e) != cur->size) {
			vmm_error_set(err, VMM_EFORMAT, "`%s`: size differs from %s", name,
				      VMM_ARCHIVE_INDEX);
			goto out;
		}
		cleanup_free char *p = path_join(dest, name);
		cleanup_close int fd = open(p, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW,
					    archive_entry_perm(e) & 0755);
		if (fd < 0 || ftruncate(fd, (off_t)cur->size) < 0) {
			vmm_error_errno(err, errno, "create `%s`", p);
			goto out;
		}
		if (read_body(a, fd, cur, err) < 0)
			goto out;
	}
	if (r != ARCHIVE_EOF) {
		ar_fail(err, a, "archive");
		goto out;
	}
	for (size_t k = 0; k < nw; k++)
		if (!w[k].seen) {
			vmm_error_set(err, VMM_EFORMAT,
				      "`%s` is listed in %s but missing (truncated "
				      "archive?)",
				      w[k].name, VMM_ARCHIVE_INDEX);
			goto out;
		}
	rc = 0;
out:
	for (size_t k = 0; k < nw; k++)
		free(w[k].name);
	free(w);
	return rc;
}

/* A tar reader with zstd, or NULL with *err when libarchive cannot be loaded. */
static struct archive *reader(vmm_error **err)
{
	if (vmm_archive_load(err) < 0)
		return NULL;
	struct archive *a = archive_read_new();
	archive_read_support_filter_zstd(a);
	archive_read_support_filter_none(a);
	archive_read_support_format_tar(a);
	return a;
}

/* Read the archive `a` was opened on (open_rc: what the open returned) into dest; frees a. */
static int read_opened(struct archive *a, int open_rc, const char *dest, vmm_error **err)
{
	int rc = open_rc != ARCHIVE_OK ? ar_fail(err, a, "archive") : read_all(a, dest, err);
	archive_read_free(a);
	return rc;
}

int vmm_archive_read(int fd, const char *dest, vmm_error **err)
{
	struct archive *a = reader(err);
	return a ? read_opened(a, archive_read_open_fd(a, fd, IO_BUF), dest, err) : -1;
}

int vmm_archive_read_memory(const void *buf, size_t len, const char *dest, vmm_error **err)
{
	struct archive *a = reader(err);
	return a ? read_opened(a, archive_read_open_memory(a, buf, len), dest, err) : -1;
}

int vmm_archive_unpack(const char *path, const char *dest, vmm_error **err)
{
	bool from_stdin = strcmp(path, "-") == 0;
	cleanup_close int in = from_stdin ? dup(STDIN_FILENO) : open(path, O_RDONLY | O_CLOEXEC);
	if (in < 0)
		return vmm_error_errno(err, errno, "open `%s`", path);
	if (vmm_archive_read(in, dest, err) < 0)
		return vmm_error_wrap(err, "import `%s`", path);
	return 0;
}
