# vmm — build, test, benchmark, install.
#
#   make              build/vmm
#   make check        every test (unit, integration, fuzz smoke) under ASan+UBSan
#   make bench        every benchmark against its baseline, ratios printed
#   make deps         install missing Debian packages (build, run and test)
#   make install PREFIX=/usr/local

CC      ?= gcc
PREFIX  ?= /usr/local
BUILD   ?= build
VERSION ?= 0.1.0

PKGS     := libcurl jansson libzstd libarchive liblz4 libcrypto libmnl libnghttp2
# libraries the vmm binary loads only when a command needs them (common/lazy.h)
LAZY_PKGS := libcurl libarchive libcrypto
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null)
EAGER_LIBS := $(shell pkg-config --libs $(filter-out $(LAZY_PKGS),$(PKGS)) 2>/dev/null)
# the SONAME of lib$(1).so on this machine, for dlopen
soname = $(shell readelf -d "$$($(CC) -print-file-name=lib$(1).so)" 2>/dev/null | \
           sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')
LAZY_DEFS = -DVMM_SONAME_CURL='"$(call soname,curl)"' \
            -DVMM_SONAME_ARCHIVE='"$(call soname,archive)"' \
            -DVMM_SONAME_CRYPTO='"$(call soname,crypto)"'

WARN    := -Wall -Wextra -Wshadow -Wmissing-prototypes -Wstrict-prototypes -Wformat=2 \
           -Wundef -Wwrite-strings -Werror
CFLAGS  ?= -O2 -g
ALL_CFLAGS := -std=gnu11 $(WARN) -D_GNU_SOURCE -DVMM_VERSION='"$(VERSION)"' -I. \
              $(PKG_CFLAGS) $(CFLAGS) $(EXTRA_CFLAGS)
LDLIBS  := $(PKG_LIBS) -lpthread -lm
VMM_LDLIBS := $(EAGER_LIBS) -lpthread -lm -ldl

LIB_SRC := $(sort $(wildcard common/*.c vm/*.c storage/*.c registry/*.c registry/oci/*.c))
CMD_SRC := $(sort $(wildcard cmd/*.c))
LIB_OBJ := $(LIB_SRC:%.c=$(BUILD)/obj/%.o)
CMD_OBJ := $(CMD_SRC:%.c=$(BUILD)/obj/%.o)

UNIT_SRC := $(sort $(wildcard tests/unit/test_*.c))
UNIT_HELPERS := tests/unit/helpers.c tests/unit/helpers.h
UNIT_BIN := $(UNIT_SRC:tests/unit/%.c=$(BUILD)/tests/%)
FUZZ_SRC := $(sort $(wildcard tests/fuzz/fuzz_*.c))

ASAN_FLAGS := -O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer \
              -fno-sanitize-recover=undefined

.PHONY: all check unit integration fuzz fuzz-smoke bench deps install clean format format-check analyze demo

all: $(BUILD)/vmm

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -MMD -MP -c $< -o $@

$(BUILD)/libvmm.a: $(LIB_OBJ)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

# the library preloaded into an unprivileged QEMU (vm/uffd_shim.h): its own
# flags (QEMU loads it, so no sanitizers), its bytes inside vmm's binary
SHIM_SO := $(BUILD)/shim/vmm-uffd.so
$(SHIM_SO): vm/shim/uffd_preload.c vm/shim/fdpass.h
	@mkdir -p $(dir $@)
	$(CC) -std=gnu11 -O2 -fPIC -shared $(WARN) -o $@ $< -ldl
$(BUILD)/obj/vm/uffd_shim.o: $(SHIM_SO)
$(BUILD)/obj/vm/uffd_shim.o: ALL_CFLAGS += -DVMM_UFFD_SHIM_SO='"$(SHIM_SO)"'

# the trampolines of each library loaded on first use (common/lazy.h)
LAZY_OBJ := $(BUILD)/obj/common/lazy.o $(BUILD)/obj/storage/libarchive.o \
            $(BUILD)/obj/registry/oci/libcurl.o
$(LAZY_OBJ): ALL_CFLAGS += $(LAZY_DEFS)

# libcurl, libarchive and libcrypto are dlopen()ed on first use (common/lazy.h):
# linked eagerly they cost every command ~9 ms before main()
$(BUILD)/vmm: $(CMD_OBJ) $(BUILD)/libvmm.a
	$(CC) $(ALL_CFLAGS) $(LDFLAGS) -o $@ $(CMD_OBJ) $(BUILD)/libvmm.a $(VMM_LDLIBS)

# tests/unit/helpers.c (temporary directories and homes) goes into every unit test
UNIT_HELPERS_OBJ := $(BUILD)/obj/tests/unit/helpers.o
.SECONDARY: $(UNIT_HELPERS_OBJ)
$(BUILD)/tests/%: tests/unit/%.c $(UNIT_HELPERS_OBJ) $(BUILD)/libvmm.a
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -MMD -MP $(LDFLAGS) -o $@ $< $(UNIT_HELPERS_OBJ) $(BUILD)/libvmm.a \
	  $(LDLIBS) -lcmocka

-include $(LIB_OBJ:.o=.d) $(CMD_OBJ:.o=.d) $(UNIT_BIN:=.d) $(UNIT_HELPERS_OBJ:.o=.d)

# --- tests ------------------------------------------------------------------
# `make check` installs what is missing, builds everything under ASan+UBSan
# in build/asan and runs every suite; scripts/check.sh prints the summary.
check: deps
	$(MAKE) BUILD=build/asan CFLAGS="$(ASAN_FLAGS)" build/asan/vmm units
	VMM=$(CURDIR)/build/asan/vmm BUILD=build/asan bash tests/run.sh

units: $(UNIT_BIN)

unit: check-build-asan
	VMM=$(CURDIR)/build/asan/vmm BUILD=build/asan bash tests/run.sh unit

integration: check-build-asan
	VMM=$(CURDIR)/build/asan/vmm BUILD=build/asan bash tests/run.sh integration

check-build-asan:
	$(MAKE) BUILD=build/asan CFLAGS="$(ASAN_FLAGS)" build/asan/vmm units

# libFuzzer targets (clang); `make fuzz FUZZ_SECONDS=60` runs each longer.
FUZZ_SECONDS ?= 10
FUZZ_CFLAGS := -std=gnu11 -D_GNU_SOURCE -I. $(PKG_CFLAGS) -g -O1 \
               -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined
fuzz:
	bash tests/fuzz/run.sh $(FUZZ_SECONDS)

$(BUILD)/fuzz/%: tests/fuzz/%.c $(LIB_SRC)
	@mkdir -p $(dir $@)
	clang $(FUZZ_CFLAGS) -o $@ $< $(LIB_SRC) $(LDLIBS)

# deps first, then a fresh make: this make's flags were computed before deps ran
bench: deps
	$(MAKE) all
	bash tests/bench/run.sh

deps:
	bash scripts/deps.sh

demo: deps
	$(MAKE) all
	bash scripts/demo.sh

# cap_net_admin lets ordinary users have the default network (vm/net.h), as
# vetu's packages do; VETU_LINK=1 also installs vmm as `vetu` for Orchard.
install: $(BUILD)/vmm
	install -d $(DESTDIR)$(PREFIX)/bin
	install -m 0755 $(BUILD)/vmm $(DESTDIR)$(PREFIX)/bin/vmm
	setcap cap_net_admin+ep $(DESTDIR)$(PREFIX)/bin/vmm || \
	  echo "install: setcap failed: only root will have the default network" >&2
	# the unprivileged user QEMU runs as when vmm runs as root (DESIGN.md §8b)
	[ -n "$(DESTDIR)" ] || id -u vmm-qemu >/dev/null 2>&1 || \
	  useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin \
	    --user-group vmm-qemu || echo "install: no user vmm-qemu: QEMU will run as nobody" >&2
ifeq ($(VETU_LINK),1)
	ln -sf vmm $(DESTDIR)$(PREFIX)/bin/vetu
endif

HDRS := $(wildcard */*.h registry/oci/*.h)

format:
	clang-format -i vm/shim/*.c $(LIB_SRC) $(CMD_SRC) $(HDRS) $(UNIT_SRC) $(UNIT_HELPERS) $(FUZZ_SRC)

format-check:
	clang-format --dry-run --Werror vm/shim/*.c $(LIB_SRC) $(CMD_SRC) $(HDRS)

analyze:
	cppcheck --quiet --error-exitcode=1 --enable=warning,portability -I. -D_GNU_SOURCE \
	  --suppress=missingIncludeSystem $(LIB_SRC) $(CMD_SRC)

clean:
	rm -rf build
