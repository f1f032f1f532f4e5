# The allocator suite's workload programs (bench/suite/), one binary each so
# that a per-binary learner sees each pattern apart.  Like the other bench
# programs they link glibc only; the allocator is preloaded by bench/run.sh.
SUITE_C_PROGS   := larson mstress remote-free cache-thrash cache-scratch small-leaky grow-shrink interp-churn
SUITE_CXX_PROGS := big-blocks
SUITE_CHECK_O   := $(BUILD)/bench/suite/check.o
SUITE_BINS      := $(addprefix $(BUILD)/bench/suite/,$(SUITE_C_PROGS) $(SUITE_CXX_PROGS))
SUITE_CXXFLAGS  := -std=gnu++17 $(OPT) $(WARN) -Ibench -Ibench/suite -Iinclude -D_GNU_SOURCE $(CFLAGS) \
                   -fno-builtin-malloc -fno-builtin-free

$(BUILD)/bench/suite/%.o: bench/suite/%.c bench/suite/check.h bench/bench_util.h
	@mkdir -p $(@D)
	$(CC) $(BENCH_CFLAGS) -Ibench/suite -c $< -o $@

$(BUILD)/bench/suite/%.o: bench/suite/%.cc bench/suite/check.h bench/bench_util.h
	@mkdir -p $(@D)
	$(CXX) $(SUITE_CXXFLAGS) -c $< -o $@

$(addprefix $(BUILD)/bench/suite/,$(SUITE_C_PROGS)): $(BUILD)/bench/suite/%: $(BUILD)/bench/suite/%.o $(SUITE_CHECK_O) $(BENCH_UTIL_O)
	$(CC) -o $@ $^ -pthread

$(addprefix $(BUILD)/bench/suite/,$(SUITE_CXX_PROGS)): $(BUILD)/bench/suite/%: $(BUILD)/bench/suite/%.o $(SUITE_CHECK_O) $(BENCH_UTIL_O)
	$(CXX) -o $@ $^ -pthread

# The runner's measuring wrapper (wall time, CPU time, peak RSS of a command).
$(BUILD)/bench/measure: bench/measure.c
	@mkdir -p $(@D)
	$(CC) $(TOOL_CFLAGS) -o $@ $<

BENCH_BINS += $(SUITE_BINS) $(BUILD)/bench/measure

$(BUILD)/bench/suite/cache-thrash $(BUILD)/bench/suite/cache-scratch: $(BUILD)/bench/suite/cache_probe.o
$(BUILD)/bench/suite/cache_probe.o $(BUILD)/bench/suite/cache-thrash.o $(BUILD)/bench/suite/cache-scratch.o: bench/suite/cache_probe.h
