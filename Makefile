# hakmem.  `make` builds the product into build/: the library variants,
# hakmemd, hakmemctl, their unit files, man pages and pkg-config file;
# `make install` (PREFIX, DESTDIR, LIBDIR, INCLUDEDIR) installs it.  Tests,
# sanitizer builds and fuzzers belong to `make test`; benchmarks to
# `make bench`; `make run` is the demo; `make docs` writes README.md's
# hakmemctl samples from a real run.  `make deps` installs (as root) the
# Debian packages all of these need (scripts/deps.sh).
BUILD   ?= build
CC      ?= gcc
CXX     ?= g++
PREFIX  ?= /usr/local
DESTDIR ?=
LIBDIR  ?= $(PREFIX)/lib
INCLUDEDIR ?= $(PREFIX)/include

# The version, in one place: include/hakmem.h.
HAKMEM_VERSION := $(shell sed -n 's/^\#define HAKMEM_VERSION "\(.*\)"/\1/p' include/hakmem.h)

# Building the product needs a few -dev packages; without them the build
# stops here in one line instead of deep in a compiler error.  (The goals
# that install them first, and clean, need nothing.)
ifneq ($(filter-out deps test run bench fuzz clean,$(or $(MAKECMDGOALS),all)),)
MISSING_BUILD_DEPS := $(shell bash scripts/deps.sh --missing build)
ifneq ($(MISSING_BUILD_DEPS),)
$(error hakmem: missing build dependencies: $(MISSING_BUILD_DEPS); install them with `make deps` (as root))
endif
endif

WARN      := -Wall -Wextra -Werror
CSTD      := -std=gnu17
OPT       ?= -O2 -g
CFLAGS    ?=
# The allocator must never let the compiler turn its own code into calls to
# malloc/calloc (e.g. malloc+memset folded into calloc would recurse).
LIB_CFLAGS := $(CSTD) $(OPT) $(WARN) -fPIC -fvisibility=hidden -Iinclude -Ilibclient \
              -fno-builtin-malloc -fno-builtin-calloc -fno-builtin-realloc -fno-builtin-free \
              -ftls-model=initial-exec -fno-plt -D_GNU_SOURCE $(CFLAGS)
TOOL_CFLAGS := $(CSTD) $(OPT) $(WARN) -Iinclude -D_GNU_SOURCE $(CFLAGS)

LIB_SRCS := $(sort $(wildcard libclient/*.c))
LIB_HDRS := $(wildcard libclient/*.h include/*.h)

# Variants of the client library: the real one (standard names) and builds with
# prefixed names (hak_malloc, ...) for sanitizers, which replace malloc themselves.
OBJ_lib      := $(patsubst libclient/%.c,$(BUILD)/obj/lib/%.o,$(LIB_SRCS))
OBJ_prefixed := $(patsubst libclient/%.c,$(BUILD)/obj/prefixed/%.o,$(LIB_SRCS))
OBJ_asan     := $(patsubst libclient/%.c,$(BUILD)/obj/asan/%.o,$(LIB_SRCS))
OBJ_tsan     := $(patsubst libclient/%.c,$(BUILD)/obj/tsan/%.o,$(LIB_SRCS))
OBJ_hardened := $(patsubst libclient/%.c,$(BUILD)/obj/hardened/%.o,$(LIB_SRCS))
OBJ_hardened_prefixed := $(patsubst libclient/%.c,$(BUILD)/obj/hardened_prefixed/%.o,$(LIB_SRCS))
FLAGS_lib      :=
FLAGS_prefixed := -DHAKMEM_PREFIX
FLAGS_asan     := -DHAKMEM_PREFIX -fsanitize=address,undefined -fno-sanitize-recover=all
FLAGS_tsan     := -DHAKMEM_PREFIX -fsanitize=thread
# Hardened: free() also proves a pointer into our pages is a block start.
FLAGS_hardened := -DHAKMEM_HARDENED
FLAGS_hardened_prefixed := -DHAKMEM_HARDENED -DHAKMEM_PREFIX

LIB_SO := $(BUILD)/libhakmem.so
LIB_A  := $(BUILD)/libhakmem.a
LIB_PREFIXED_A := $(BUILD)/libhakmem-prefixed.a
LIB_ASAN_A := $(BUILD)/libhakmem-asan.a
LIB_TSAN_A := $(BUILD)/libhakmem-tsan.a
LIB_HARDENED_SO := $(BUILD)/libhakmem-hardened.so
LIB_HARDENED_PREFIXED_A := $(BUILD)/libhakmem-hardened-prefixed.a

.PHONY: all product lib programs tests deps test run bench docs install clean FORCE
all: product

lib: $(LIB_SO) $(LIB_A) $(LIB_PREFIXED_A) $(LIB_HARDENED_SO) $(LIB_HARDENED_PREFIXED_A)

deps:
	@bash scripts/deps.sh

# Boxes off the allocation paths (the daemon plane, statistics, thread
# start and exit, options) are built for size: a program maps every page
# of the library's code, and a small one's resident set counts them.
LIB_COLD := shm_client policy_reader registration region modules stats command options init mallinfo \
            counters heap_life meta thp os
COLD_OPT ?= -Os

define variant_rule
$(BUILD)/obj/$(1)/%.o: libclient/%.c $(LIB_HDRS) | $(BUILD)/obj/$(1)
	@echo "  CC [$(1)] $$<"
	@$$(CC) $$(LIB_CFLAGS) $$(FLAGS_$(1)) $$(if $$(filter $$*,$$(LIB_COLD)),$$(COLD_OPT)) -c $$< -o $$@
$(BUILD)/obj/$(1):
	@mkdir -p $$@
endef
$(foreach v,lib prefixed asan tsan hardened hardened_prefixed,$(eval $(call variant_rule,$(v))))

$(LIB_SO): $(OBJ_lib)
	$(CC) -shared -Wl,-soname,libhakmem.so -Wl,-z,now -o $@ $^ -lpthread
	@bash scripts/check_tail_jumps.sh $@
$(LIB_HARDENED_SO): $(OBJ_hardened)
	$(CC) -shared -Wl,-soname,libhakmem-hardened.so -Wl,-z,now -o $@ $^ -lpthread
	@bash scripts/check_tail_jumps.sh $@
$(LIB_HARDENED_PREFIXED_A): $(OBJ_hardened_prefixed)
	@rm -f $@; ar rcs $@ $^
$(LIB_A): $(OBJ_lib)
	@rm -f $@; ar rcs $@ $^
$(LIB_PREFIXED_A): $(OBJ_prefixed)
	@rm -f $@; ar rcs $@ $^
$(LIB_ASAN_A): $(OBJ_asan)
	@rm -f $@; ar rcs $@ $^
$(LIB_TSAN_A): $(OBJ_tsan)
	@rm -f $@; ar rcs $@ $^

# The manual pages and the pkg-config file, with the version (and, for the
# latter, the directories) filled in.  hakmem.pc is rewritten only when what
# it says changes, so `make install PREFIX=...` after `make` renders it for
# that prefix.
MAN_PAGES := $(BUILD)/man/hakmemd.8 $(BUILD)/man/hakmemctl.1
PC_FILE   := $(BUILD)/hakmem.pc
$(BUILD)/man/%: man/%.in include/hakmem.h
	@mkdir -p $(@D)
	sed 's|@VERSION@|$(HAKMEM_VERSION)|g' $< >$@
$(PC_FILE): packaging/hakmem.pc.in include/hakmem.h FORCE
	@mkdir -p $(@D)
	@sed -e 's|@PREFIX@|$(PREFIX)|g' -e 's|@LIBDIR@|$(LIBDIR)|g' -e 's|@INCLUDEDIR@|$(INCLUDEDIR)|g' \
	    -e 's|@VERSION@|$(HAKMEM_VERSION)|g' $< >$@.new
	@if cmp -s $@.new $@; then rm -f $@.new; else mv $@.new $@; echo "  GEN $@ (prefix $(PREFIX))"; fi
FORCE:

# Each area owns its fragment; they may add to these.
TEST_BINS :=
BENCH_BINS :=
TOOL_BINS :=
-include daemon/daemon.mk
-include tests/tests.mk
-include bench/bench.mk

product: lib $(TOOL_BINS) $(MAN_PAGES) $(PC_FILE)
# What `make run` and `make bench` need.
programs: product $(BENCH_BINS)
# What `make test` runs: the tests, the sanitizer builds and the fuzzers.
tests: programs $(TEST_BINS) $(LIB_ASAN_A) $(LIB_TSAN_A) fuzzers

test: deps
	@$(MAKE) --no-print-directory tests
	@bash tests/run_all.sh $(BUILD)

run: deps
	@$(MAKE) --no-print-directory programs
	@bash scripts/run_demo.sh $(BUILD)

bench: deps
	@$(MAKE) --no-print-directory programs
	@BENCH_FROM_MAKE=1 bash bench/run.sh --build $(BUILD) $(BENCH_ARGS)

# The hakmemctl samples of README.md, between its sample markers, from a
# private daemon and a demo program (tests/docs checks they stay true).
DOCS_SAMPLES := $(BUILD)/docs/samples
docs: product $(CTL_OUT)/alloc_sites
	@rm -rf $(DOCS_SAMPLES)
	@bash scripts/readme_samples.sh $(BUILD) $(DOCS_SAMPLES)
	@python3 bench/readme_tables.py --kind sample README.md $(DOCS_SAMPLES)

install: product
	@PREFIX=$(PREFIX) DESTDIR=$(DESTDIR) LIBDIR=$(LIBDIR) INCLUDEDIR=$(INCLUDEDIR) bash scripts/install.sh $(BUILD)

clean:
	rm -rf $(BUILD)
