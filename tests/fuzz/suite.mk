# Fuzzers (libFuzzer, clang).  Not part of `make all`: they need clang and
# its fuzzer runtime (scripts/deps.sh: clang, libclang-rt-14-dev).
#   make fuzz-region [FUZZ_SECONDS=60]   builds and runs the region fuzzer
FUZZ_CC      ?= clang
FUZZ_OUT     := $(BUILD)/fuzz
FUZZ_SECONDS ?= 60
FUZZ_CFLAGS  := -std=gnu17 -O1 -g -Wall -Wextra -Werror -Iinclude -Idaemon -D_GNU_SOURCE -pthread \
                -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined

# The daemon's own code for reading a region, compiled for the fuzzer.
FUZZ_REGION_SRCS := daemon/registry.c daemon/collector.c daemon/publisher.c daemon/segment.c daemon/log.c

$(FUZZ_OUT)/fuzz_region: tests/fuzz/fuzz_region.c $(FUZZ_REGION_SRCS) $(wildcard daemon/*.h) include/hakmem_shm.h
	@mkdir -p $(@D)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -o $@ tests/fuzz/fuzz_region.c $(FUZZ_REGION_SRCS) -lsystemd

.PHONY: fuzz-region
# Runs on a scratch copy of the committed seeds: what it finds stays out of the tree.
fuzz-region: $(FUZZ_OUT)/fuzz_region
	@rm -rf $(FUZZ_OUT)/region-corpus && mkdir -p $(FUZZ_OUT)/region-corpus
	@cp tests/fuzz/corpus/region/* $(FUZZ_OUT)/region-corpus/
	$(FUZZ_OUT)/fuzz_region -max_total_time=$(FUZZ_SECONDS) -max_len=16384 -print_final_stats=1 \
	    -artifact_prefix=$(FUZZ_OUT)/region- $(FUZZ_OUT)/region-corpus
