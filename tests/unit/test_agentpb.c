/*
 * The guest agent's protobuf messages and gRPC framing.  The expected
 * encodings were produced by Python's protobuf (python3-protobuf, the
 * reference implementation) from tests/tools/agent.proto.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "vm/agentpb.h"
#include "vm/grpc.h"

static size_t unhex(const char *h, uint8_t *out)
{
	size_t n = 0;
	for (; h[0] && h[1]; h += 2) {
		unsigned x;
		sscanf(h, "%2x", &x);
		out[n++] = (uint8_t)x;
	}
	return n;
}

static void assert_encoded(const vmm_pb_buf *b, const char *hex)
{
	char got[512] = "";
	for (size_t i = 0; i < b->len && 2 * i + 2 < sizeof(got); i++)
		snprintf(got + 2 * i, 3, "%02x", b->p[i]);
	assert_string_equal(got, hex);
}

static void test_agentpb_encode__as_protobuf_does(void **state)
{
	(void)state;
	const char *args[] = {"-l", "/"};
	vmm_pb_command c = {.name = "ls",
			    .args = args,
			    .nargs = 2,
			    .interactive = true,
			    .tty = true,
			    .has_size = true,
			    .rows = 24,
			    .cols = 80};
	struct {
		int kind;
		const char *hex;
	} cases[] = {
	    {0, "0a150a026c7312022d6c12012f180120012a0408181050"},
	    {1, "0a060a0474727565"},
	    {2, "12040a026869"},
	    {3, "1200"},
	    {4, "1a0408281078"},
	};
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		vmm_pb_buf b = {0};
		vmm_pb_command plain = {.name = "true"};
		switch (cases[i].kind) {
		case 0:
			vmm_pb_exec_command(&b, &c);
			break;
		case 1:
			vmm_pb_exec_command(&b, &plain);
			break;
		case 2:
			vmm_pb_exec_stdin(&b, "hi", 2);
			break;
		case 3:
			vmm_pb_exec_stdin(&b, NULL, 0);
			break; /* EOF: an empty chunk */
		case 4:
			vmm_pb_exec_resize(&b, 40, 120);
			break;
		}
		assert_encoded(&b, cases[i].hex);
		free(b.p);
	}
}

static void test_agentpb_decode__responses(void **state)
{
	(void)state;
	struct {
		const char *hex;
		vmm_pb_exec_kind kind;
		int32_t code;
		const char *data;
	} cases[] = {
	    {"0a0b08ffffffffffffffffff01", VMM_PB_EXEC_EXIT, -1, NULL},
	    {"0a020803", VMM_PB_EXEC_EXIT, 3, NULL},
	    {"0a00", VMM_PB_EXEC_EXIT, 0, NULL},
	    {"12050a03616263", VMM_PB_EXEC_STDOUT, 0, "abc"},
	    {"1a030a0165", VMM_PB_EXEC_STDERR, 0, "e"},
	    {"1200", VMM_PB_EXEC_STDOUT, 0, ""},
	    /* unknown fields of every wire type are skipped: varint, fixed64, bytes, fixed32 */
	    {"f80107490102030405060708"
	     "22020a0b2d01020304"
	     "12050a03616263",
	     VMM_PB_EXEC_STDOUT, 0, "abc"},
	    /* a oneof's last field wins */
	    {"12050a036162630a020803", VMM_PB_EXEC_EXIT, 3, NULL},
	    {"0a02080312050a03616263", VMM_PB_EXEC_STDOUT, 0, "abc"},
	    /* a known field with another wire type is an unknown one */
	    {"0807", VMM_PB_EXEC_NONE, 0, NULL},
	    {"", VMM_PB_EXEC_NONE, 0, NULL},
	};
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		uint8_t m[128];
		size_t n = unhex(cases[i].hex, m);
		vmm_pb_exec_response r;
		assert_int_equal(vmm_pb_exec_response_parse(m, n, &r), 0);
		assert_int_equal(r.kind, cases[i].kind);
		assert_int_equal(r.code, cases[i].code);
		if (cases[i].data) {
			assert_int_equal(r.len, strlen(cases[i].data));
			assert_memory_equal(r.data, cases[i].data, r.len);
		}
	}
	uint8_t m[64];
	size_t n = unhex("0a0931302e302e322e3135", m);
	char *ip = NULL;
	assert_int_equal(vmm_pb_resolve_ip_response_parse(m, n, &ip), 0);
	assert_string_equal(ip, "10.0.2.15");
	free(ip);
	assert_int_equal(vmm_pb_resolve_ip_response_parse(m, 0, &ip), 0);
	assert_string_equal(ip, "");
	free(ip);
}

static void test_agentpb_decode__malformed(void **state)
{
	(void)state;
	struct {
		const char *hex;
		bool nested; /* malformed inside a submessage ResolveIPResponse takes as a string */
	} bad[] = {
	    {"12", false},			  /* a key without its value */
	    {"1205", false},			  /* a length past the end */
	    {"12050a0361", true},		  /* a nested length past the end */
	    {"0a0b08ffffffffffffffffffff", true}, /* a varint longer than 10 bytes */
	    {"0a0308ffff", true},		  /* a varint cut short */
	    {"0b", false},			  /* a group */
	    {"0e00", false},			  /* wire type 6 */
	    {"00", false},			  /* field number 0 */
	    {"0d010203", false},		  /* fixed32 cut short */
	    {"ffffffffffffffffffff01", false},	  /* a key past 64 bits */
	};
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		uint8_t m[64];
		size_t n = unhex(bad[i].hex, m);
		vmm_pb_exec_response r;
		assert_int_equal(vmm_pb_exec_response_parse(m, n, &r), -1);
		char *ip = NULL;
		int rc = vmm_pb_resolve_ip_response_parse(m, n, &ip);
		if (bad[i].nested) {
			free(ip);
			continue;
		}
		assert_int_equal(rc, -1);
		assert_null(ip);
	}
	/* a NUL inside the address is refused */
	uint8_t m[8];
	size_t n = unhex("0a03310032", m);
	char *ip = NULL;
	assert_int_equal(vmm_pb_resolve_ip_response_parse(m, n, &ip), -1);
}

typedef struct got {
	size_t n;
	size_t lens[8];
	uint8_t first[8];
} got;

static void on_message(void *ctx, const uint8_t *msg, size_t len)
{
	got *g = ctx;
	if (g->n < 8) {
		g->lens[g->n] = len;
		g->first[g->n] = len ? msg[0] : 0;
	}
	g->n++;
}

static void test_grpc_frames__reassembly(void **state)
{
	(void)state;
	/* three messages (3 bytes, empty, 2 bytes), fed one byte at a time and all at once */
	const uint8_t s[] = {0, 0, 0, 0, 3, 'a', 'b', 'c', 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 'x', 'y'};
	for (int mode = 0; mode < 2; mode++) {
		vmm_grpc_frames f = {0};
		got g = {0};
		const char *why = NULL;
		if (mode == 0)
			for (size_t i = 0; i < sizeof(s); i++)
				assert_int_equal(
				    vmm_grpc_frames_feed(&f, s + i, 1, on_message, &g, &why), 0);
		else
			assert_int_equal(
			    vmm_grpc_frames_feed(&f, s, sizeof(s), on_message, &g, &why), 0);
		assert_int_equal(g.n, 3);
		assert_int_equal(g.lens[0], 3);
		assert_int_equal(g.first[0], 'a');
		assert_int_equal(g.lens[1], 0);
		assert_int_equal(g.lens[2], 2);
		assert_int_equal(g.first[2], 'x');
		assert_int_equal(f.len, 0);
		vmm_grpc_frames_free(&f);
	}
	const uint8_t compressed[] = {1, 0, 0, 0, 1, 'a'};
	const uint8_t huge[] = {0, 0x7f, 0xff, 0xff, 0xff};
	const uint8_t *bad[] = {compressed, huge};
	for (size_t i = 0; i < 2; i++) {
		vmm_grpc_frames f = {0};
		got g = {0};
		const char *why = NULL;
		assert_int_equal(vmm_grpc_frames_feed(&f, bad[i], 5, on_message, &g, &why), -1);
		assert_non_null(why);
		assert_int_equal(g.n, 0);
		vmm_grpc_frames_free(&f);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_agentpb_encode__as_protobuf_does),
	    cmocka_unit_test(test_agentpb_decode__responses),
	    cmocka_unit_test(test_agentpb_decode__malformed),
	    cmocka_unit_test(test_grpc_frames__reassembly),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
