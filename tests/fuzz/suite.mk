# libFuzzer harnesses (tests/fuzz/fuzz_*.c), built with clang
# (-fsanitize=fuzzer,address,undefined).  `make test` builds them and runs
# each for 30 s (tests/fuzz/suite.sh); besides:
#   make fuzzers            builds every harness into $(BUILD)/fuzz/
#   make fuzz               builds them and runs each for FUZZ_SECONDS
#   tests/fuzz/run.sh S     runs each built harness for S seconds
# One rule serves every tests/fuzz/fuzz_NAME.c: it links against an archive
# of the daemon's sources (all but main.c, the core's core*.c and hakmemctl's own) and
# the fake core (tests/ctl/fake_core.c), each object pulled in only when a
# harness needs it.  A harness that needs more adds prerequisites to its
# binary and FUZZ_EXTRA (target-specific) to its link line.
FUZZ_CC      ?= clang
FUZZ_SECONDS ?= 300
FUZZ_OUT     := $(BUILD)/fuzz
FUZZ_SAN     := -fsanitize=address,undefined -fno-sanitize-recover=undefined
FUZZ_CFLAGS  := -std=gnu17 -g -O1 $(WARN) -Iinclude -Idaemon -Icommon -Ihakmemctl -I$(HKD_GEN) -Itests/ctl -D_GNU_SOURCE -pthread $(FUZZ_SAN)
FUZZ_LIBS    := -lprotobuf-c -lsystemd -lurcu -lurcu-cds -lm -ldl -lrt -pthread

FUZZ_LIB_SRCS := $(filter-out daemon/main.c daemon/core.c daemon/core_%.c, $(wildcard daemon/*.c)) \
                 $(wildcard common/*.c) hakmemctl/ctl_client.c tests/ctl/fake_core.c
FUZZ_LIB_OBJS := $(patsubst %.c,$(FUZZ_OUT)/obj/%.o,$(FUZZ_LIB_SRCS)) \
                 $(patsubst proto/%.proto,$(FUZZ_OUT)/obj/gen/%.pb-c.o,$(HKD_PROTOS))
FUZZ_LIB  := $(FUZZ_OUT)/libfuzzdeps.a
FUZZ_BINS := $(patsubst tests/fuzz/%.c,$(FUZZ_OUT)/%,$(wildcard tests/fuzz/fuzz_*.c))

$(FUZZ_OUT)/obj/gen/%.pb-c.o: $(HKD_GEN)/%.pb-c.c $(HKD_GEN)/%.pb-c.h
	@mkdir -p $(@D)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link -c $< -o $@
$(FUZZ_OUT)/obj/%.o: %.c | $(HKD_GEN_HDRS)
	@mkdir -p $(@D)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link -MMD -MP -c $< -o $@
$(FUZZ_LIB): $(FUZZ_LIB_OBJS)
	@rm -f $@; ar rcs $@ $^
$(FUZZ_OUT)/fuzz_%: tests/fuzz/fuzz_%.c $(FUZZ_LIB)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer -o $@ $< $(FUZZ_LIB) $(FUZZ_EXTRA) $(FUZZ_LIBS)

-include $(wildcard $(FUZZ_LIB_OBJS:.o=.d))

.PHONY: fuzzers fuzz
fuzzers: $(FUZZ_BINS)
fuzz: deps
	@$(MAKE) --no-print-directory fuzzers
	@bash tests/fuzz/run.sh $(FUZZ_SECONDS) $(BUILD)
