#include "vm/agentpb.h"
#include "common/util.h"

#include <string.h>

/* --- encoding ------------------------------------------------------------------ */

static void put(vmm_pb_buf *b, const void *p, size_t n)
{
	if (b->len + n > b->cap) {
		b->cap = (b->len + n) * 2 + 64;
		b->p = xrealloc(b->p, b->cap);
	}
	if (n)
		memcpy(b->p + b->len, p, n);
	b->len += n;
}

static void varint(vmm_pb_buf *b, uint64_t v)
{
	uint8_t t[10];
	size_t n = 0;
	do {
		t[n] = (uint8_t)(v & 0x7f);
		v >>= 7;
		if (v)
			t[n] |= 0x80;
		n++;
	} while (v);
	put(b, t, n);
}

static void key(vmm_pb_buf *b, uint32_t field, uint32_t wire)
{
	varint(b, ((uint64_t)field << 3) | wire);
}

static void bytes_field(vmm_pb_buf *b, uint32_t field, const void *p, size_t n)
{
	key(b, field, 2);
	varint(b, n);
	put(b, p, n);
}

/* proto3: a scalar equal to its default is not written */
static void varint_field(vmm_pb_buf *b, uint32_t field, uint64_t v)
{
	if (!v)
		return;
	key(b, field, 0);
	varint(b, v);
}

static void terminal_size(vmm_pb_buf *b, uint32_t rows, uint32_t cols)
{
	varint_field(b, 1, rows);
	varint_field(b, 2, cols);
}

/* A submessage: encoded into its own buffer, then written with its length. */
static void message_field(vmm_pb_buf *b, uint32_t field, const vmm_pb_buf *sub)
{
	bytes_field(b, field, sub->p, sub->len);
}

void vmm_pb_exec_command(vmm_pb_buf *b, const vmm_pb_command *c)
{
	vmm_pb_buf cmd = {0};
	if (c->name && *c->name)
		bytes_field(&cmd, 1, c->name, strlen(c->name));
	for (size_t i = 0; i < c->nargs; i++)
		bytes_field(&cmd, 2, c->args[i], strlen(c->args[i]));
	varint_field(&cmd, 3, c->interactive);
	varint_field(&cmd, 4, c->tty);
	if (c->has_size) {
		vmm_pb_buf size = {0};
		terminal_size(&size, c->rows, c->cols);
		message_field(&cmd, 5, &size);
		free(size.p);
	}
	message_field(b, 1, &cmd);
	free(cmd.p);
}

void vmm_pb_exec_stdin(vmm_pb_buf *b, const void *data, size_t len)
{
	vmm_pb_buf chunk = {0};
	if (len)
		bytes_field(&chunk, 1, data, len);
	message_field(b, 2, &chunk);
	free(chunk.p);
}

void vmm_pb_exec_resize(vmm_pb_buf *b, uint32_t rows, uint32_t cols)
{
	vmm_pb_buf size = {0};
	terminal_size(&size, rows, cols);
	message_field(b, 3, &size);
	free(size.p);
}

/* --- decoding ------------------------------------------------------------------ */

typedef struct reader {
	const uint8_t *p, *end;
} reader;

static int get_varint(reader *r, uint64_t *v)
{
	uint64_t x = 0;
	for (unsigned shift = 0; shift < 70; shift += 7) {
		if (r->p >= r->end)
			return -1;
		uint8_t c = *r->p++;
		if (shift == 63 && c > 1)
			return -1; /* more than 64 bits */
		x |= (uint64_t)(c & 0x7f) << shift;
		if (!(c & 0x80)) {
			*v = x;
			return 0;
		}
	}
	return -1;
}

/* One field: its number, wire type, and its value (varint in *v, bytes in data and len). */
typedef struct field {
	uint32_t num, wire;
	uint64_t v;
	const uint8_t *data;
	size_t len;
} field;

static int next_field(reader *r, field *f)
{
	uint64_t k;
	if (get_varint(r, &k) < 0)
		return -1;
	f->num = (uint32_t)(k >> 3);
	f->wire = (uint32_t)(k & 7);
	if (k >> 3 == 0 || k >> 3 > 0x1fffffff)
		return -1;
	switch (f->wire) {
	case 0:
		return get_varint(r, &f->v);
	case 1:
	case 5: {
		size_t n = f->wire == 1 ? 8 : 4;
		if ((size_t)(r->end - r->p) < n)
			return -1;
		r->p += n;
		return 0;
	}
	case 2:
		if (get_varint(r, &f->v) < 0 || f->v > (uint64_t)(r->end - r->p))
			return -1;
		f->data = r->p;
		f->len = (size_t)f->v;
		r->p += f->len;
		return 0;
	default:
		return -1; /* groups (3, 4) are not in this proto; 6 and 7 do not exist */
	}
}

/* IOChunk{bytes data = 1}: the last occurrence wins. */
static int io_chunk(const uint8_t *p, size_t n, const uint8_t **data, size_t *len)
{
	reader r = {p, p + n};
	field f;
	*data = p;
	*len = 0;
	while (r.p < r.end) {
		if (next_field(&r, &f) < 0)
			return -1;
		if (f.num == 1 && f.wire == 2) {
			*data = f.data;
			*len = f.len;
		}
	}
	return 0;
}

static int exit_message(const uint8_t *p, size_t n, int32_t *code)
{
	reader r = {p, p + n};
	field f;
	*code = 0;
	while (r.p < r.end) {
		if (next_field(&r, &f) < 0)
			return -1;
		if (f.num == 1 && f.wire == 0)
			*code =
			    (int32_t)(uint32_t)f.v; /* int32: negative values are 10-byte varints */
	}
	return 0;
}

int vmm_pb_exec_response_parse(const uint8_t *msg, size_t len, vmm_pb_exec_response *out)
{
	reader r = {msg, msg + len};
	memset(out, 0, sizeof(*out));
	field f;
	while (r.p < r.end) {
		if (next_field(&r, &f) < 0)
			return -1;
		if (f.wire != 2 || f.num < 1 || f.num > 3)
			continue;
		if (f.num == 1) {
			if (exit_message(f.data, f.len, &out->code) < 0)
				return -1;
			out->kind = VMM_PB_EXEC_EXIT;
			out->data = NULL;
			out->len = 0;
		} else {
			if (io_chunk(f.data, f.len, &out->data, &out->len) < 0)
				return -1;
			out->kind = f.num == 2 ? VMM_PB_EXEC_STDOUT : VMM_PB_EXEC_STDERR;
			out->code = 0;
		}
	}
	return 0;
}

int vmm_pb_resolve_ip_response_parse(const uint8_t *msg, size_t len, char **ip)
{
	reader r = {msg, msg + len};
	field f;
	const uint8_t *s = NULL;
	size_t n = 0;
	while (r.p < r.end) {
		if (next_field(&r, &f) < 0)
			return -1;
		if (f.num == 1 && f.wire == 2) {
			s = f.data;
			n = f.len;
		}
	}
	if (s && memchr(s, '\0', n))
		return -1;
	*ip = s ? xstrndup((const char *)s, n) : xstrdup("");
	return 0;
}
