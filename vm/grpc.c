#include "vm/grpc.h"
#include "common/util.h"

#include <errno.h>
#include <fcntl.h>
#include <nghttp2/nghttp2.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* HTTP/2 windows: large enough that a fast stream of output never waits for WINDOW_UPDATEs. */
#define WINDOW (16 << 20)

#ifndef VMM_VERSION
#define VMM_VERSION "0.1.0"
#endif

/* --- message framing -------------------------------------------------------------- */

int vmm_grpc_frames_feed(vmm_grpc_frames *f, const uint8_t *p, size_t n, vmm_grpc_message_fn fn,
			 void *ctx, const char **why)
{
	if (f->len + n > f->cap) {
		f->cap = f->len + n + 4096;
		f->buf = xrealloc(f->buf, f->cap);
	}
	if (n)
		memcpy(f->buf + f->len, p, n);
	f->len += n;
	size_t off = 0;
	while (f->len - off >= 5) {
		const uint8_t *h = f->buf + off;
		uint32_t mlen =
		    (uint32_t)h[1] << 24 | (uint32_t)h[2] << 16 | (uint32_t)h[3] << 8 | h[4];
		if (h[0] != 0) {
			*why = "a compressed message, and no compression was negotiated";
			return -1;
		}
		if (mlen > VMM_GRPC_MAX_MESSAGE) {
			*why = "a message larger than 16 MiB";
			return -1;
		}
		if (f->len - off - 5 < mlen)
			break;
		fn(ctx, h + 5, mlen);
		off += 5 + (size_t)mlen;
	}
	memmove(f->buf, f->buf + off, f->len - off);
	f->len -= off;
	return 0;
}

void vmm_grpc_frames_free(vmm_grpc_frames *f)
{
	free(f->buf);
	memset(f, 0, sizeof(*f));
}

/* --- the call ------------------------------------------------------------------- */

struct vmm_grpc {
	int fd;
	nghttp2_session *s;
	int32_t stream;
	uint8_t *out; /* owned: request bytes not yet handed to nghttp2 */
	size_t out_len, out_off;
	bool out_last, deferred;
	vmm_grpc_frames in;
	vmm_grpc_message_fn on_message;
	void *ctx;
	bool heard, done, eof;
	int status;
	char *message;	 /* owned: grpc-message, or why the call ended */
	char *bad_frame; /* owned: a framing error to report */
};

static void set_message(vmm_grpc *g, const char *m)
{
	free(g->message);
	g->message = xstrdup(m);
}

static void finish(vmm_grpc *g, int status, const char *why)
{
	if (g->done)
		return;
	g->done = true;
	if (g->status < 0)
		g->status = status;
	if (why && (!g->message || !*g->message))
		set_message(g, why);
}

static ssize_t send_cb(nghttp2_session *s, const uint8_t *data, size_t len, int flags, void *u)
{
	(void)s;
	(void)flags;
	vmm_grpc *g = u;
	ssize_t n;
	do
		n = write(g->fd, data, len);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return errno == EAGAIN || errno == EWOULDBLOCK ? NGHTTP2_ERR_WOULDBLOCK
							       : NGHTTP2_ERR_CALLBACK_FAILURE;
	return n;
}

/* grpc-message is percent-encoded */
static char *percent_decode(const uint8_t *v, size_t n)
{
	char *out = xmalloc(n + 1), *o = out;
	for (size_t i = 0; i < n; i++) {
		unsigned x;
		if (v[i] == '%' && i + 2 < n && sscanf((const char *)v + i + 1, "%2x", &x) == 1) {
			*o++ = (char)x;
			i += 2;
		} else {
			*o++ = (char)v[i];
		}
	}
	*o = '\0';
	return out;
}

static int header_cb(nghttp2_session *s, const nghttp2_frame *frame, const uint8_t *name,
		     size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags, void *u)
{
	(void)s;
	(void)flags;
	vmm_grpc *g = u;
	if (frame->hd.type != NGHTTP2_HEADERS || frame->hd.stream_id != g->stream)
		return 0;
	if (namelen == 11 && memcmp(name, "grpc-status", 11) == 0) {
		int st = 0;
		for (size_t i = 0; i < valuelen && i < 4 && value[i] >= '0' && value[i] <= '9'; i++)
			st = st * 10 + (value[i] - '0');
		g->status = st;
	} else if (namelen == 12 && memcmp(name, "grpc-message", 12) == 0) {
		free(g->message);
		g->message = percent_decode(value, valuelen);
	} else if (namelen == 7 && memcmp(name, ":status", 7) == 0 &&
		   !(valuelen == 3 && memcmp(value, "200", 3) == 0)) {
		char why[64];
		snprintf(why, sizeof(why), "HTTP status %.*s", (int)(valuelen < 8 ? valuelen : 8),
			 (const char *)value);
		set_message(g, why);
	}
	return 0;
}

static void deliver(void *ctx, const uint8_t *msg, size_t len)
{
	vmm_grpc *g = ctx;
	g->on_message(g->ctx, msg, len);
}

static int data_cb(nghttp2_session *s, uint8_t flags, int32_t stream, const uint8_t *data,
		   size_t len, void *u)
{
	(void)s;
	(void)flags;
	vmm_grpc *g = u;
	if (stream != g->stream || g->bad_frame)
		return 0;
	const char *why = NULL;
	if (vmm_grpc_frames_feed(&g->in, data, len, deliver, g, &why) < 0) {
		g->bad_frame = xstrdup(why);
		nghttp2_submit_rst_stream(g->s, NGHTTP2_FLAG_NONE, g->stream,
					  NGHTTP2_PROTOCOL_ERROR);
	}
	return 0;
}

static int frame_cb(nghttp2_session *s, const nghttp2_frame *frame, void *u)
{
	(void)s;
	vmm_grpc *g = u;
	if (frame->hd.type == NGHTTP2_SETTINGS)
		g->heard = true;
	if (frame->hd.type == NGHTTP2_GOAWAY && !g->done &&
	    g->stream > frame->goaway.last_stream_id)
		finish(g, -1, "the agent closed the connection (GOAWAY)");
	return 0;
}

static int close_cb(nghttp2_session *s, int32_t stream, uint32_t code, void *u)
{
	(void)s;
	vmm_grpc *g = u;
	if (stream != g->stream)
		return 0;
	if (g->bad_frame) {
		g->status = -1;
		finish(g, -1, g->bad_frame);
		return 0;
	}
	if (g->status >= 0) {
		finish(g, g->status, NULL);
		return 0;
	}
	char why[64];
	snprintf(why, sizeof(why), "the stream was reset (HTTP/2 error %u)", code);
	finish(g, -1, code ? why : "the response ended without a gRPC status");
	return 0;
}

static ssize_t read_cb(nghttp2_session *s, int32_t stream, uint8_t *buf, size_t len,
		       uint32_t *flags, nghttp2_data_source *src, void *u)
{
	(void)s;
	(void)stream;
	(void)src;
	vmm_grpc *g = u;
	size_t avail = g->out_len - g->out_off;
	if (!avail) {
		if (g->out_last) {
			*flags |= NGHTTP2_DATA_FLAG_EOF;
			return 0;
		}
		g->deferred = true;
		return NGHTTP2_ERR_DEFERRED;
	}
	size_t n = avail < len ? avail : len;
	memcpy(buf, g->out + g->out_off, n);
	g->out_off += n;
	if (g->out_off == g->out_len)
		g->out_off = g->out_len = 0;
	if (g->out_off == g->out_len && g->out_last)
		*flags |= NGHTTP2_DATA_FLAG_EOF;
	return (ssize_t)n;
}

static nghttp2_nv nv(const char *name, const char *value)
{
	return (nghttp2_nv){(uint8_t *)name, (uint8_t *)value, strlen(name), strlen(value),
			    NGHTTP2_NV_FLAG_NONE};
}

int vmm_grpc_start(vmm_grpc **out, int fd, const char *path, int timeout_ms,
		   vmm_grpc_message_fn on_message, void *ctx, vmm_error **err)
{
	vmm_grpc *g = xcalloc(1, sizeof(*g));
	g->fd = fd;
	g->status = -1;
	g->on_message = on_message;
	g->ctx = ctx;
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
	nghttp2_session_callbacks *cbs;
	if (nghttp2_session_callbacks_new(&cbs) != 0)
		vmm_fatal("out of memory");
	nghttp2_session_callbacks_set_send_callback(cbs, send_cb);
	nghttp2_session_callbacks_set_on_header_callback(cbs, header_cb);
	nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, data_cb);
	nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, frame_cb);
	nghttp2_session_callbacks_set_on_stream_close_callback(cbs, close_cb);
	int rv = nghttp2_session_client_new(&g->s, cbs, g);
	nghttp2_session_callbacks_del(cbs);
	if (rv != 0) {
		free(g);
		close(fd);
		return vmm_error_set(err, VMM_EGENERIC, "HTTP/2: %s", nghttp2_strerror(rv));
	}
	nghttp2_settings_entry iv[] = {{NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
				       {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, WINDOW}};
	nghttp2_submit_settings(g->s, NGHTTP2_FLAG_NONE, iv, ARRAY_SIZE(iv));
	nghttp2_session_set_local_window_size(g->s, NGHTTP2_FLAG_NONE, 0, WINDOW);
	char timeout[32];
	snprintf(timeout, sizeof(timeout), "%dm", timeout_ms);
	nghttp2_nv hdrs[] = {
	    nv(":method", "POST"),
	    nv(":scheme", "http"),
	    nv(":path", path),
	    nv(":authority", "localhost"),
	    nv("content-type", "application/grpc"),
	    nv("te", "trailers"),
	    nv("user-agent", "vmm/" VMM_VERSION),
	    nv("grpc-timeout", timeout),
	};
	nghttp2_data_provider prd = {.source.ptr = g, .read_callback = read_cb};
	g->stream = nghttp2_submit_request(g->s, NULL, hdrs,
					   ARRAY_SIZE(hdrs) - (timeout_ms > 0 ? 0 : 1), &prd, g);
	if (g->stream < 0) {
		vmm_error_set(err, VMM_EGENERIC, "HTTP/2: %s", nghttp2_strerror(g->stream));
		vmm_grpc_free(g);
		return -1;
	}
	*out = g;
	return 0;
}

void vmm_grpc_free(vmm_grpc *g)
{
	if (!g)
		return;
	nghttp2_session_del(g->s);
	if (g->fd >= 0)
		close(g->fd);
	free(g->out);
	vmm_grpc_frames_free(&g->in);
	free(g->message);
	free(g->bad_frame);
	free(g);
}

void vmm_grpc_send(vmm_grpc *g, const uint8_t *msg, size_t len, bool last)
{
	if (g->out_last)
		return;
	if (g->out_off && g->out_off == g->out_len)
		g->out_off = g->out_len = 0;
	size_t need = g->out_len + 5 + len;
	if (g->out_off > need / 2) { /* reclaim what was sent */
		memmove(g->out, g->out + g->out_off, g->out_len - g->out_off);
		g->out_len -= g->out_off;
		g->out_off = 0;
		need = g->out_len + 5 + len;
	}
	g->out = xrealloc(g->out, need);
	uint8_t *h = g->out + g->out_len;
	h[0] = 0;
	h[1] = (uint8_t)(len >> 24);
	h[2] = (uint8_t)(len >> 16);
	h[3] = (uint8_t)(len >> 8);
	h[4] = (uint8_t)len;
	if (len)
		memcpy(h + 5, msg, len);
	g->out_len = need;
	g->out_last = last;
	if (g->deferred) {
		g->deferred = false;
		nghttp2_session_resume_data(g->s, g->stream);
	}
}

size_t vmm_grpc_pending(const vmm_grpc *g)
{
	return g->out_len - g->out_off;
}

int vmm_grpc_fd(const vmm_grpc *g)
{
	return g->fd;
}

bool vmm_grpc_want_write(const vmm_grpc *g)
{
	return nghttp2_session_want_write(g->s);
}

int vmm_grpc_io(vmm_grpc *g, vmm_error **err)
{
	uint8_t buf[65536];
	while (!g->eof) {
		ssize_t n = read(g->fd, buf, sizeof(buf));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			break;
		if (n <= 0) {
			int e = n < 0 ? errno : 0;
			g->eof = true;
			finish(g, -1, e ? strerror(e) : "the connection was closed");
			break;
		}
		ssize_t rv = nghttp2_session_mem_recv(g->s, buf, (size_t)n);
		if (rv < 0) {
			finish(g, -1, nghttp2_strerror((int)rv));
			return vmm_error_set(err, VMM_EFORMAT, "HTTP/2: %s",
					     nghttp2_strerror((int)rv));
		}
	}
	int rv = nghttp2_session_send(g->s);
	if (rv != 0 && !g->eof) {
		finish(g, -1, "the connection was closed");
		return vmm_error_set(err, VMM_EGENERIC, "HTTP/2: %s", nghttp2_strerror(rv));
	}
	return 0;
}

bool vmm_grpc_done(const vmm_grpc *g, int *status, const char **message)
{
	if (!g->done)
		return false;
	*status = g->status;
	*message = g->message ? g->message : "";
	return true;
}

bool vmm_grpc_heard(const vmm_grpc *g)
{
	return g->heard;
}
