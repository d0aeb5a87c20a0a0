/*
 * cache.h — the OCI cache under <home>/cache/OCIs, laid out as Tart lays it
 * out (tart-spec §1.4):
 *
 *   OCIs/<host with ':' as %3A>/<namespace…>/sha256:<hex>/   a pulled VM
 *   OCIs/<host with ':' as %3A>/<namespace…>/<tag>           symlink (absolute) to it
 *
 * Listing names an entry "<host:port>/<ns>:<tag>" for a tag symlink and
 * "<host:port>/<ns>@sha256:<hex>" for a digest directory.  The GC removes
 * dangling symlinks and digest directories no tag points at, unless they
 * hold `.explicitly-pulled`.
 */
#ifndef VMM_REGISTRY_CACHE_H
#define VMM_REGISTRY_CACHE_H

#include <stdbool.h>
#include <stddef.h>

#include "common/err.h"
#include "registry/oci/manifest.h"
#include "registry/oci/reference.h"
#include "vm/home.h"

typedef struct vmm_cache_entry {
	char *name;   /* owned: "host:port/ns:tag" or "host:port/ns@sha256:…" */
	char *path;   /* owned: the symlink or the digest directory */
	char *target; /* owned: the digest directory (== path for digest entries) */
	bool is_tag;
} vmm_cache_entry;

/* <home>/cache/OCIs/<host%3Aport>/<ns>/<tag or digest> (caller frees). */
char *vmm_cache_path(const vmm_home *h, const vmm_reference *r);
/* The repository directory <home>/cache/OCIs/<host%3Aport>/<ns> (caller frees). */
char *vmm_cache_repo_dir(const vmm_home *h, const vmm_reference *r);

/*
 * Resolve a reference to its cached digest directory and digest
 * ("sha256:<hex>").  Not cached: VMM_ENOTFOUND.  Either output may be NULL.
 */
int vmm_cache_resolve(const vmm_home *h, const vmm_reference *r, char **dir, char **digest,
		      vmm_error **err);

/* One tag link or digest directory under OCIs/, as vmm_cache_walk() finds it. */
typedef struct vmm_cache_item {
	const char *path;      /* the link or the directory */
	const char *host;      /* "host:port"; NULL right under OCIs/ */
	const char *namespace; /* "a/b"; NULL right under a host's directory */
	const char *name;      /* the tag, or "sha256:<hex>" */
	bool is_tag;	       /* a symlink; else a digest directory */
} vmm_cache_item;
typedef void (*vmm_cache_visit)(void *ctx, const vmm_cache_item *it);

/*
 * The one walk over OCIs/: visit every symlink (a tag, dangling or not) and
 * every directory named sha256:* below it, in no particular order.  Other
 * directories (hosts, namespaces) are descended into; links are not
 * followed, digest directories not entered, hidden names passed over.  The
 * visitor may remove what it is shown.
 */
void vmm_cache_walk(const vmm_home *h, vmm_cache_visit visit, void *ctx);

/*
 * Read <dir>/manifest.json of a cached image: *raw and *len (either may be
 * NULL) get its bytes, *m (may be NULL) the parsed manifest.
 */
int vmm_cache_read_manifest(const char *dir, vmm_manifest **m, char **raw, size_t *len,
			    vmm_error **err);

/* Every initialized entry, tags and digests, sorted by name. Free with vmm_cache_entries_free. */
int vmm_cache_list(const vmm_home *h, vmm_cache_entry **out, size_t *n, vmm_error **err);
void vmm_cache_entries_free(vmm_cache_entry *e, size_t n);

/* Delete a reference: the tag symlink or the digest directory, then GC. */
int vmm_cache_delete(const vmm_home *h, const vmm_reference *r, vmm_error **err);
/*
 * Tart's OCI GC: dangling tags and digest directories nothing points at.
 * A digest directory in use is left alone (see vmm_cache_remove_dir).
 */
int vmm_cache_gc(const vmm_home *h, vmm_error **err);
/*
 * Take the digest directory `dir` out of the cache with one rename into
 * tmp/, then remove it.  Refused (VMM_ELOCKED) while it is in use: flocked
 * by the command that is installing it (a pull until its tag is linked) or
 * locked as a bundle (a clone copying from it).
 */
int vmm_cache_remove_dir(const vmm_home *h, const char *dir, vmm_error **err);

/* --- pulling into the cache ---------------------------------------------- */

/* <home>/cache/OCIs/<host%3Aport> (caller frees). */
char *vmm_cache_host_dir(const vmm_home *h, const char *host);
/* The digest directory of r's repository for `digest` (caller frees). */
char *vmm_cache_digest_dir(const vmm_home *h, const vmm_reference *r, const char *digest);
/*
 * Tart's deterministic pull staging directory tmp/<md5 hex of name>, so an
 * interrupted pull of the same name resumes there (caller frees).
 */
char *vmm_cache_staging_dir(const vmm_home *h, const char *name);
/*
 * The per-host pull lock: flock(LOCK_EX) on cache/OCIs/<host> (created).
 * When another process holds it, waiting(ctx) is called once (Tart prints
 * "waiting for lock...") before blocking.  *fd holds the lock.
 */
int vmm_cache_lock_host(const vmm_home *h, const char *host, void (*waiting)(void *ctx), void *ctx,
			int *fd, vmm_error **err);
/* Point the tag of r at digest_dir: an absolute symlink, replaced atomically. */
int vmm_cache_link_tag(const vmm_home *h, const vmm_reference *r, const char *digest_dir,
		       vmm_error **err);
/* Mark a digest directory as pulled by digest (kept by the GC). */
int vmm_cache_mark_explicit(const char *digest_dir, vmm_error **err);

/* A cached image with its manifest, for layer reuse and cross-repository mounts. */
typedef struct vmm_cache_image {
	char *dir;	 /* owned: the digest directory */
	char *host;	 /* owned: "host:port" */
	char *namespace; /* owned */
	char *digest;	 /* owned: "sha256:…" */
} vmm_cache_image;

/* Every digest directory holding manifest.json and disk.img. */
int vmm_cache_images(const vmm_home *h, vmm_cache_image **out, size_t *n, vmm_error **err);
void vmm_cache_images_free(vmm_cache_image *v, size_t n);

#endif
