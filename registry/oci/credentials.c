/*
 * credentials.c — the credential chain and the `vmm login` store; see
 * credentials.h.  Nothing here prints; secrets are wiped when freed.
 */
#include "registry/oci/credentials.h"
#include "common/json.h"
#include "common/util.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <regex.h>
#include <signal.h>
#include <spawn.h>
#include <string.h>
#include <strings.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

#define CONFIG_MAX (4 * 1024 * 1024)
#define HELPER_OUTPUT_MAX (1024 * 1024)
#define HELPER_TIMEOUT_MS 60000
#define DOCKER_HUB "registry-1.docker.io"

void vmm_credentials_free(vmm_credentials *c)
{
	if (!c)
		return;
	if (c->password) {
		explicit_bzero(c->password, strlen(c->password));
		free(c->password);
	}
	free(c->username);
	free(c);
}

static vmm_credentials *creds_new(const char *user, size_t ulen, const char *pass, size_t plen)
{
	vmm_credentials *c = xcalloc(1, sizeof(*c));
	c->username = xstrndup(user, ulen);
	c->password = xstrndup(pass, plen);
	return c;
}

/*
 * The host a key in a Docker config names: "https://host/v1/" → "host",
 * lower case, Docker Hub's aliases folded into registry-1.docker.io.
 */
char *vmm_credentials_host_key(const char *key)
{
	const char *s = key;
	if (strncasecmp(s, "https://", 8) == 0)
		s += 8;
	else if (strncasecmp(s, "http://", 7) == 0)
		s += 7;
	char *h = xstrndup(s, strcspn(s, "/"));
	for (char *p = h; *p; p++)
		*p = (char)tolower((unsigned char)*p);
	static const char *const hub[] = {"docker.io", "index.docker.io", "registry-1.docker.io",
					  "registry.hub.docker.com"};
	for (size_t i = 0; i < ARRAY_SIZE(hub); i++)
		if (strcmp(h, hub[i]) == 0) {
			free(h);
			return xstrdup(DOCKER_HUB);
		}
	return h;
}

int vmm_credentials_check_host(const char *host, vmm_error **err)
{
	if (strncasecmp(host, "http://", 7) == 0 || strncasecmp(host, "https://", 8) == 0)
		return vmm_error_set(err, VMM_EINVAL,
				     "improperly formatted host \"%s\" was provided, make sure "
				     "that it doesn't start with http:// or https://",
				     host);
	bool ok = *host && strlen(host) <= 255;
	for (const char *p = host; ok && *p; p++)
		ok = isalnum((unsigned char)*p) || strchr(".-:[]_", *p);
	if (!ok)
		return vmm_error_set(err, VMM_EINVAL,
				     "improperly formatted host \"%s\" was provided", host);
	return 0;
}

/* --- base64 ----------------------------------------------------------------- */

static int b64_value(unsigned char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == '/')
		return 63;
	return -1;
}

/* Decode standard base64 (padding optional); NULL if malformed.  *len excludes the NUL. */
static char *b64_decode(const char *in, size_t *len)
{
	size_t n = strlen(in);
	while (n && in[n - 1] == '=')
		n--;
	if (n % 4 == 1)
		return NULL;
	char *out = xmalloc(n / 4 * 3 + 3);
	size_t o = 0;
	uint32_t acc = 0;
	int bits = 0;
	for (size_t i = 0; i < n; i++) {
		int v = b64_value((unsigned char)in[i]);
		if (v < 0) {
			explicit_bzero(out, o);
			free(out);
			return NULL;
		}
		acc = (acc << 6) | (uint32_t)v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			out[o++] = (char)((acc >> bits) & 0xff);
		}
	}
	out[o] = '\0';
	*len = o;
	return out;
}

static char *b64_encode(const char *in, size_t n)
{
	static const char tbl[] =
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	char *out = xmalloc(4 * ((n + 2) / 3) + 1), *o = out;
	for (size_t i = 0; i < n; i += 3) {
		uint32_t v = (uint32_t)(unsigned char)in[i] << 16;
		if (i + 1 < n)
			v |= (uint32_t)(unsigned char)in[i + 1] << 8;
		if (i + 2 < n)
			v |= (unsigned char)in[i + 2];
		*o++ = tbl[(v >> 18) & 63];
		*o++ = tbl[(v >> 12) & 63];
		*o++ = i + 1 < n ? tbl[(v >> 6) & 63] : '=';
		*o++ = i + 2 < n ? tbl[v & 63] : '=';
	}
	*o = '\0';
	return out;
}

/*
 * An `auths` entry: {"auth": base64("user:password")} (split at the first
 * ':', so passwords may hold colons) or {"username", "password"}.  0 with
 * *out NULL when the entry holds nothing usable (a credsStore placeholder).
 */
static int parse_auth_entry(json_t *entry, const char *where, vmm_credentials **out,
			    vmm_error **err)
{
	*out = NULL;
	const char *auth = json_string_value(json_object_get(entry, "auth"));
	if (auth && *auth) {
		size_t len = 0;
		char *plain = b64_decode(auth, &len);
		if (!plain)
			return vmm_error_set(err, VMM_EINVAL, "%s: `auth` is not valid base64",
					     where);
		char *colon = memchr(plain, ':', len);
		int rc = 0;
		if (!colon || colon == plain || memchr(plain, '\0', len))
			rc =
			    vmm_error_set(err, VMM_EINVAL,
					  "%s: `auth` does not decode to \"user:password\"", where);
		else
			*out = creds_new(plain, (size_t)(colon - plain), colon + 1,
					 len - (size_t)(colon - plain) - 1);
		explicit_bzero(plain, len);
		free(plain);
		return rc;
	}
	const char *u = json_string_value(json_object_get(entry, "username"));
	const char *p = json_string_value(json_object_get(entry, "password"));
	if (u && *u && p)
		*out = creds_new(u, strlen(u), p, strlen(p));
	return 0;
}

/* --- docker-credential-<helper> ---------------------------------------------- */

static bool helper_name_is_valid(const char *s)
{
	if (!*s || strlen(s) > 64)
		return false;
	for (; *s; s++)
		if (!isalnum((unsigned char)*s) && *s != '-' && *s != '_' && *s != '.')
			return false;
	return true;
}

typedef struct sink_buf {
	int fd;
	char *buf; /* owned, NUL-terminated */
	size_t len, cap;
} sink_buf;

/*
 * Read two pipes (a helper's stdout and stderr) together until both reach
 * EOF, the deadline passes (-ETIMEDOUT) or one holds more than max bytes
 * (-EFBIG).  Reading them together keeps a chatty stderr from blocking the
 * helper while we wait on its stdout.
 */
static int read_both(sink_buf *b, size_t max, double deadline)
{
	for (int i = 0; i < 2; i++) {
		b[i].cap = 4096;
		b[i].buf = xmalloc(b[i].cap + 1);
		b[i].buf[0] = '\0';
		b[i].len = 0;
	}
	for (;;) {
		struct pollfd p[2];
		nfds_t n = 0;
		for (int i = 0; i < 2; i++)
			if (b[i].fd >= 0)
				p[n++] = (struct pollfd){b[i].fd, POLLIN, 0};
		if (n == 0)
			return 0;
		double left = deadline - vmm_now();
		if (left <= 0)
			return -ETIMEDOUT;
		int pr = poll(p, n, (int)(left * 1000) + 1);
		if (pr < 0 && errno == EINTR)
			continue;
		if (pr < 0)
			return -errno;
		for (nfds_t k = 0; k < n; k++) {
			if (!p[k].revents)
				continue;
			sink_buf *s = b[0].fd == p[k].fd ? &b[0] : &b[1];
			if (s->len == s->cap) {
				if (s->cap >= max)
					return -EFBIG;
				s->cap *= 2;
				s->buf = xrealloc(s->buf, s->cap + 1);
			}
			ssize_t r = read(s->fd, s->buf + s->len, s->cap - s->len);
			if (r < 0 && errno == EINTR)
				continue;
			if (r < 0)
				return -errno;
			if (r == 0)
				s->fd = -1; /* EOF; the caller closes it */
			s->len += r > 0 ? (size_t)r : 0;
			s->buf[s->len] = '\0';
		}
	}
}

static void close_pipe(int p[2])
{
	if (p[0] >= 0)
		close(p[0]);
	if (p[1] >= 0)
		close(p[1]);
	p[0] = p[1] = -1;
}

/*
 * Run `docker-credential-<helper> get` with the server on stdin; parse
 * {"Username", "Secret"}.  "credentials not found" is 0 with *out NULL.
 */
static int run_helper(const char *helper, const char *host, vmm_credentials **out, vmm_error **err)
{
	*out = NULL;
	if (!helper_name_is_valid(helper))
		return vmm_error_set(err, VMM_EINVAL, "invalid credential helper name `%.64s`",
				     helper);
	cleanup_free char *prog = xasprintf("docker-credential-%s", helper);
	/* Docker names its Hub by this URL when it talks to helpers */
	cleanup_free char *server =
	    xstrdup(strcmp(host, DOCKER_HUB) == 0 ? "https://index.docker.io/v1/" : host);
	/*
	 * stdin is a memfd holding "<server>\n", not a pipe: a helper that exits
	 * without reading cannot raise SIGPIPE in a library that does not own
	 * the process's signal dispositions.
	 */
	cleanup_free char *line = xasprintf("%s\n", server);
	cleanup_close int in = memfd_create("vmm-credential-helper-stdin", MFD_CLOEXEC);
	if (in < 0 || vmm_write_all(in, line, strlen(line)) < 0 || lseek(in, 0, SEEK_SET) < 0)
		return vmm_error_errno(err, errno, "%s: stdin", prog);
	int outp[2] = {-1, -1}, errp[2] = {-1, -1};
	if (pipe2(outp, O_CLOEXEC) < 0 || pipe2(errp, O_CLOEXEC) < 0) {
		int e = errno;
		close_pipe(outp), close_pipe(errp);
		return vmm_error_errno(err, e, "%s: pipe", prog);
	}
	posix_spawn_file_actions_t fa;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_adddup2(&fa, in, 0);
	posix_spawn_file_actions_adddup2(&fa, outp[1], 1);
	posix_spawn_file_actions_adddup2(&fa, errp[1], 2);
	char *argv[] = {prog, (char *)"get", NULL};
	pid_t pid;
	int sr = posix_spawnp(&pid, prog, &fa, NULL, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	close(outp[1]), close(errp[1]);
	outp[1] = errp[1] = -1;
	if (sr != 0) {
		close_pipe(outp), close_pipe(errp);
		if (sr == ENOENT)
			return vmm_error_set(
			    err, VMM_ENOTFOUND,
			    "credential helper `%s` is not installed (not in PATH)", prog);
		return vmm_error_errno(err, sr, "run `%s`", prog);
	}
	double deadline = vmm_now() + HELPER_TIMEOUT_MS / 1000.0;
	sink_buf b[2] = {{.fd = outp[0]}, {.fd = errp[0]}};
	int rr = read_both(b, HELPER_OUTPUT_MAX, deadline);
	close_pipe(outp), close_pipe(errp);
	cleanup_free char *so = b[0].buf, *se = b[1].buf;
	size_t sol = b[0].len;
	if (rr < 0)
		kill(pid, SIGKILL);
	int status = 0;
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	int rc = 0;
	if (rr == -ETIMEDOUT) {
		rc = vmm_error_set(err, VMM_ETIMEOUT, "`%s get` did not answer within %d s", prog,
				   HELPER_TIMEOUT_MS / 1000);
	} else if (rr < 0) {
		rc = vmm_error_errno(err, -rr, "`%s get`", prog);
	} else if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		/* docker's helpers say this on stdout when they hold nothing for the server */
		if (strstr(so, "credentials not found") ||
		    strstr(se ? se : "", "credentials not found"))
			goto out;
		const char *msg = so && *so ? so : (se ? se : "");
		size_t n = strcspn(msg, "\r\n");
		rc = vmm_error_set(err, VMM_EGENERIC, "`%s get` failed (%s %d)%s%.*s", prog,
				   WIFEXITED(status) ? "exit status" : "signal",
				   WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status),
				   n ? ": " : "", (int)(n > 200 ? 200 : n), msg);
	} else {
		json_auto_t *j = NULL;
		cleanup_free char *what = xasprintf("output of `%s get`", prog);
		if (vmm_json_parse_secret(&j, so, sol, what, err) < 0) {
			rc = -1;
			goto out;
		}
		const char *u = json_string_value(json_object_get(j, "Username"));
		const char *s = json_string_value(json_object_get(j, "Secret"));
		if (!u || !s)
			rc = vmm_error_set(err, VMM_EINVAL, "%s: no `Username` and `Secret`", what);
		else if (strcmp(u, "<token>") == 0)
			rc = vmm_error_set(err, VMM_EINVAL,
					   "%s: identity tokens are not supported, only user names "
					   "and passwords",
					   what);
		else
			*out = creds_new(u, strlen(u), s, strlen(s));
	}
out:
	if (so)
		explicit_bzero(so, sol);
	return rc;
}

/* --- ~/.docker/config.json ----------------------------------------------------- */

static char *docker_config_path(void)
{
	const char *dc = getenv("DOCKER_CONFIG");
	if (dc && *dc)
		return path_join(dc, "config.json");
	const char *home = getenv("HOME");
	if (!home || !*home)
		return NULL;
	return xasprintf("%s/.docker/config.json", home);
}

/* Does the whole of host match the POSIX extended regex pattern? */
static bool pattern_matches(const char *pattern, const char *host)
{
	cleanup_free char *anchored = xasprintf("^(%s)$", pattern);
	regex_t re;
	if (regcomp(&re, anchored, REG_EXTENDED | REG_NOSUB) != 0)
		return false;
	bool m = regexec(&re, host, 0, NULL, 0) == 0;
	regfree(&re);
	return m;
}

/* credHelpers: an exact (normalized) key first, then Tart's whole-match patterns. */
static const char *find_cred_helper(json_t *helpers, const char *host)
{
	const char *key;
	json_t *v;
	json_object_foreach(helpers, key, v)
	{
		cleanup_free char *k = vmm_credentials_host_key(key);
		if (json_is_string(v) && strcmp(k, host) == 0)
			return json_string_value(v);
	}
	json_object_foreach(helpers, key, v)
	{
		if (json_is_string(v) && pattern_matches(key, host))
			return json_string_value(v);
	}
	return NULL;
}

static int from_docker_config(const char *host, vmm_credentials **out, vmm_error **err)
{
	*out = NULL;
	cleanup_free char *path = docker_config_path();
	if (!path || !path_exists(path))
		return 0;
	json_auto_t *cfg = NULL;
	if (vmm_json_load_file_secret(&cfg, path, CONFIG_MAX, err) < 0)
		return -1;
	if (!json_is_object(cfg))
		return vmm_error_set(err, VMM_EINVAL, "`%s`: not a JSON object", path);
	json_t *auths = json_object_get(cfg, "auths");
	const char *key;
	json_t *entry;
	json_object_foreach(auths, key, entry)
	{
		cleanup_free char *k = vmm_credentials_host_key(key);
		if (strcmp(k, host) != 0 || !json_is_object(entry))
			continue;
		cleanup_free char *where = xasprintf("`%s`: auths[\"%s\"]", path, key);
		if (parse_auth_entry(entry, where, out, err) < 0)
			return -1;
		if (*out)
			return 0;
	}
	const char *helper = find_cred_helper(json_object_get(cfg, "credHelpers"), host);
	if (!helper)
		helper = json_string_value(json_object_get(cfg, "credsStore"));
	if (helper && *helper)
		return run_helper(helper, host, out, err);
	return 0;
}

/* --- environment --------------------------------------------------------------- */

/*
 * <prefix>_REGISTRY_USERNAME/_PASSWORD, for the host <prefix>_REGISTRY_HOSTNAME
 * names.  Without a host name Tart sends them to every registry and every
 * token realm a registry names, so that pulling from a stranger's registry
 * hands it the credentials meant for one's own: vmm uses them nowhere then,
 * and says why (*unscoped) if the registry turns out to want credentials.
 */
static vmm_credentials *from_env(const char *prefix, const char *host, char **unscoped)
{
	cleanup_free char *un = xasprintf("%s_REGISTRY_USERNAME", prefix);
	cleanup_free char *pn = xasprintf("%s_REGISTRY_PASSWORD", prefix);
	cleanup_free char *hn = xasprintf("%s_REGISTRY_HOSTNAME", prefix);
	const char *u = getenv(un), *p = getenv(pn), *h = getenv(hn);
	if (!u || !*u || !p)
		return NULL;
	if (!h || !*h) {
		if (!*unscoped)
			*unscoped = xasprintf("%s is set without %s, so it is sent to no registry: "
					      "set %s to the host it is for",
					      un, hn, hn);
		return NULL;
	}
	cleanup_free char *want = vmm_credentials_host_key(h);
	if (strcmp(want, host) != 0)
		return NULL;
	return creds_new(u, strlen(u), p, strlen(p));
}

/* --- the store ---------------------------------------------------------------- */

char *vmm_credentials_store_path(void)
{
	const char *f = getenv("VMM_CREDENTIALS_FILE");
	if (f && *f)
		return xstrdup(f);
	const char *x = getenv("XDG_CONFIG_HOME");
	if (x && *x == '/')
		return xasprintf("%s/vmm/credentials.json", x);
	const char *home = getenv("HOME");
	if (!home || !*home)
		return NULL;
	return xasprintf("%s/.config/vmm/credentials.json", home);
}

static int from_store(const char *host, vmm_credentials **out, vmm_error **err)
{
	*out = NULL;
	cleanup_free char *path = vmm_credentials_store_path();
	if (!path || !path_exists(path))
		return 0;
	json_auto_t *st = NULL;
	if (vmm_json_load_file_secret(&st, path, CONFIG_MAX, err) < 0)
		return -1;
	json_t *entry = json_object_get(json_object_get(st, "auths"), host);
	if (!json_is_object(entry))
		return 0;
	cleanup_free char *where = xasprintf("`%s`: auths[\"%s\"]", path, host);
	return parse_auth_entry(entry, where, out, err);
}

/* --- lookup ---------------------------------------------------------------------- */

int vmm_credentials_lookup(const char *host_in, vmm_credentials **out, vmm_error **err)
{
	cleanup_free char *host = vmm_credentials_host_key(host_in);
	cleanup_free char *unscoped = NULL;
	*out = from_env("VMM", host, &unscoped);
	if (!*out)
		*out = from_env("TART", host, &unscoped);
	if (*out)
		return 0;
	/* a failing source is skipped; its error is reported only if nothing is found */
	cleanup_vmm_error vmm_error *first = NULL, *second = NULL;
	if (from_docker_config(host, out, &first) == 0 && *out)
		return 0;
	if (from_store(host, out, &second) == 0 && *out)
		return 0;
	if (!first)
		first = steal_ptr(second);
	if (!first && unscoped)
		vmm_error_set(&first, VMM_EAUTH, "%s", unscoped);
	if (!first)
		return 0;
	if (err) {
		vmm_error_free(*err);
		*err = steal_ptr(first);
	}
	return -1;
}

/* --- store / remove ---------------------------------------------------------------- */

typedef int (*store_edit)(json_t *auths, const char *host, void *ud);

/* Read-modify-write the store under an flock on "<path>.lock"; 0600, atomic replace. */
static int store_update(const char *host_in, store_edit edit, void *ud, bool create,
			vmm_error **err)
{
	cleanup_free char *path = vmm_credentials_store_path();
	if (!path)
		return vmm_error_set(err, VMM_EINVAL,
				     "no place for credentials: set HOME or VMM_CREDENTIALS_FILE");
	if (!create && !path_exists(path))
		return 0;
	cleanup_free char *dir = xstrdup(path);
	char *slash = strrchr(dir, '/');
	if (slash && slash != dir) {
		*slash = '\0';
		bool existed = path_exists(dir);
		if (vmm_mkdir_p(dir, err) < 0)
			return -1;
		if (!existed)
			chmod(dir, 0700); /* a directory made for secrets */
	}
	cleanup_free char *lock = xasprintf("%s.lock", path);
	cleanup_close int lfd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (lfd < 0)
		return vmm_error_errno(err, errno, "open `%s`", lock);
	while (flock(lfd, LOCK_EX) < 0)
		if (errno != EINTR)
			return vmm_error_errno(err, errno, "lock `%s`", lock);
	json_auto_t *st = NULL;
	if (path_exists(path)) {
		if (vmm_json_load_file_secret(&st, path, CONFIG_MAX, err) < 0)
			return vmm_error_wrap(err, "refusing to overwrite it");
		if (!json_is_object(st))
			return vmm_error_set(err, VMM_EINVAL,
					     "`%s`: not a JSON object, refusing to overwrite it",
					     path);
	} else {
		st = json_object();
	}
	json_t *auths = json_object_get(st, "auths");
	if (!json_is_object(auths)) {
		auths = json_object();
		json_object_set_new(st, "auths", auths);
	}
	cleanup_free char *host = vmm_credentials_host_key(host_in);
	int changed = edit(auths, host, ud);
	if (changed <= 0)
		return changed;
	cleanup_free char *text = vmm_json_pretty(st);
	size_t len = strlen(text);
	int rc = vmm_write_file_atomic(path, text, len, 0600, err);
	explicit_bzero(text, len);
	return rc;
}

typedef struct new_entry {
	const char *user, *pass;
} new_entry;

static int edit_set(json_t *auths, const char *host, void *ud)
{
	new_entry *n = ud;
	cleanup_free char *plain = xasprintf("%s:%s", n->user, n->pass);
	cleanup_free char *b64 = b64_encode(plain, strlen(plain));
	json_object_set_new(auths, host, json_pack("{s:s}", "auth", b64));
	explicit_bzero(plain, strlen(plain));
	explicit_bzero(b64, strlen(b64));
	return 1;
}

static int edit_remove(json_t *auths, const char *host, void *ud)
{
	UNUSED(ud);
	return json_object_del(auths, host) == 0 ? 1 : 0;
}

int vmm_credentials_store(const char *host, const char *username, const char *password,
			  vmm_error **err)
{
	if (!*username || strchr(username, ':'))
		return vmm_error_set(err, VMM_EINVAL,
				     "the user name must be non-empty and must not contain ':'");
	new_entry n = {username, password};
	return store_update(host, edit_set, &n, true, err);
}

int vmm_credentials_remove(const char *host, vmm_error **err)
{
	return store_update(host, edit_remove, NULL, false, err);
}
