# tests/bench: smoke test of the benchmark programs (tests/bench/suite.sh).
# The programs themselves are built by bench/bench.mk (`make test` builds them);
# `make test-bench` builds what the suite needs and runs it alone.
BENCH_OVERLAP_SHIM := $(BUILD)/tests/overlap_shim.so

# A preloadable allocator that hands out overlapping blocks: the suite's
# checks must fail under it.
$(BENCH_OVERLAP_SHIM): tests/bench/overlap_shim.c
	@mkdir -p $(@D)
	$(CC) $(TOOL_CFLAGS) -fPIC -shared -fno-builtin-malloc -fno-builtin-free -o $@ $<

TEST_BINS += $(BENCH_OVERLAP_SHIM)

# A program whose peak of live requested bytes is known: bench/headroom_shim.so
# must count it.
BENCH_HEADROOM_KNOWN := $(BUILD)/tests/headroom_known
$(BENCH_HEADROOM_KNOWN): tests/bench/headroom_known.c
	@mkdir -p $(@D)
	$(CC) $(TOOL_CFLAGS) -fno-builtin -o $@ $< -pthread

TEST_BINS += $(BENCH_HEADROOM_KNOWN)

.PHONY: test-bench
test-bench: $(LIB_SO) $(BUILD)/bench/scenarios $(BUILD)/bench/workloads $(BUILD)/bench/fastpath \
            $(SUITE_BINS) $(BUILD)/bench/measure $(BENCH_OVERLAP_SHIM) $(HEADROOM_SHIM) $(BENCH_HEADROOM_KNOWN)
	@bash tests/bench/suite.sh $(BUILD)
