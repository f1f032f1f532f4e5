# tests/bench: smoke test of the benchmark programs (tests/bench/suite.sh).
# The programs themselves are built by bench/bench.mk as part of `make all`;
# `make test-bench` builds what the suite needs and runs it alone.
.PHONY: test-bench
test-bench: $(LIB_SO) $(BUILD)/bench/scenarios $(BUILD)/bench/workloads $(BUILD)/bench/fastpath
	@bash tests/bench/suite.sh $(BUILD)
