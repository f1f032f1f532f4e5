# Benchmark programs (bench/).  They link against glibc only: the allocator
# under test is swapped in with LD_PRELOAD by bench/run.sh.  -fno-builtin-*
# keeps the compiler from folding or deleting the malloc/free calls that are
# the very thing being measured.
BENCH_CFLAGS := $(TOOL_CFLAGS) -Ibench -fno-builtin-malloc -fno-builtin-free \
                -fno-builtin-calloc -fno-builtin-realloc -fno-optimize-sibling-calls
BENCH_PROGS  := scenarios workloads fastpath
BENCH_UTIL_O := $(BUILD)/bench/bench_util.o

BENCH_BINS += $(addprefix $(BUILD)/bench/,$(BENCH_PROGS))

$(BUILD)/bench/%.o: bench/%.c bench/bench_util.h include/hakmem.h
	@mkdir -p $(@D)
	$(CC) $(BENCH_CFLAGS) -c $< -o $@

$(addprefix $(BUILD)/bench/,$(BENCH_PROGS)): $(BUILD)/bench/%: $(BUILD)/bench/%.o $(BENCH_UTIL_O)
	$(CC) -o $@ $^ -pthread -ldl

# bench/headroom.sh's counter of live requested bytes, preloaded in front of
# the allocator: it defines malloc and the rest itself, so the compiler must
# not treat those names as the builtins it knows.
HEADROOM_SHIM := $(BUILD)/bench/headroom_shim.so
HEADROOM_SHIM_SRCS := bench/headroom_shim.c bench/headroom_floor.c
$(HEADROOM_SHIM): $(HEADROOM_SHIM_SRCS) bench/headroom_shim.h
	@mkdir -p $(@D)
	$(CC) $(TOOL_CFLAGS) -fPIC -shared -fno-builtin -o $@ $(HEADROOM_SHIM_SRCS) -ldl -pthread

BENCH_BINS += $(HEADROOM_SHIM)

.PHONY: bench-programs
bench-programs: $(addprefix $(BUILD)/bench/,$(BENCH_PROGS))

include bench/suite/suite.mk
