# Stress tests of the allocator through its public API (tests/stress/suite.sh).
#   stress         standard names, linked to nothing: run with LD_PRELOAD
#   stress-linked  standard names, linked against libhakmem.so
#   stress-asan    hak_* names, ASan+UBSan, the prefixed ASan library
#   stress-tsan    hak_* names, TSan, the prefixed TSan library
#   stress-badfree invalid-free checks (standard names, run with LD_PRELOAD)
#   fork_dlopen    fork children while the main thread keeps the loader busy
#                  (standard names, run with LD_PRELOAD)
#   knob-churn     knobs changed while threads allocate (hak_* names, the
#   knob-churn-tsan prefixed library, and its TSan build)
STRESS_SRC  := tests/stress/stress.c tests/stress/stress_blocks.c
STRESS_DEPS := $(STRESS_SRC) tests/stress/stress.h include/hakmem.h
STRESS_OUT  := $(BUILD)/tests
STRESS_SAN  := -fno-omit-frame-pointer -fno-sanitize-recover=all
STRESS_LIBS := -lpthread -lrt -ldl

$(STRESS_OUT)/stress: $(STRESS_DEPS)
	@mkdir -p $(@D)
	$(CC) $(TOOL_CFLAGS) -pthread -o $@ $(STRESS_SRC) $(STRESS_LIBS)

# $ORIGIN keeps the binary pointing at the library of its own build tree.
$(STRESS_OUT)/stress-linked: $(STRESS_DEPS) $(LIB_SO)
	@mkdir -p $(@D)
	$(CC) $(TOOL_CFLAGS) -pthread -o $@ $(STRESS_SRC) $(LIB_SO) \
	    -Wl,-rpath,'$$ORIGIN/..' $(STRESS_LIBS)

$(STRESS_OUT)/stress-asan: $(STRESS_DEPS) $(LIB_ASAN_A)
	@mkdir -p $(@D)
	$(CC) $(TOOL_CFLAGS) -DSTRESS_PREFIXED -fsanitize=address,undefined $(STRESS_SAN) \
	    -pthread -o $@ $(STRESS_SRC) $(LIB_ASAN_A) $(STRESS_LIBS)

$(STRESS_OUT)/stress-tsan: $(STRESS_DEPS) $(LIB_TSAN_A)
	@mkdir -p $(@D)
	$(CC) $(TOOL_CFLAGS) -DSTRESS_PREFIXED -fsanitize=thread $(STRESS_SAN) \
	    -pthread -o $@ $(STRESS_SRC) $(LIB_TSAN_A) $(STRESS_LIBS)

$(STRESS_OUT)/stress-badfree: tests/stress/badfree.c
	@mkdir -p $(@D)
	$(CC) $(TOOL_CFLAGS) -o $@ $< -ldl

$(STRESS_OUT)/fork_dlopen: tests/stress/fork_dlopen.c
	@mkdir -p $(@D)
	$(CC) $(TOOL_CFLAGS) -pthread -o $@ $< -ldl

# It calls the knobs and counters boxes directly, as the policy reader does.
KNOB_CHURN_DEPS := tests/stress/knob_churn.c include/hakmem.h libclient/knobs.h libclient/counters.h
$(STRESS_OUT)/knob-churn: $(KNOB_CHURN_DEPS) $(LIB_PREFIXED_A)
	@mkdir -p $(@D)
	$(CC) $(TOOL_CFLAGS) -Ilibclient -pthread -o $@ $< $(LIB_PREFIXED_A) $(STRESS_LIBS)

$(STRESS_OUT)/knob-churn-tsan: $(KNOB_CHURN_DEPS) $(LIB_TSAN_A)
	@mkdir -p $(@D)
	$(CC) $(TOOL_CFLAGS) -Ilibclient -fsanitize=thread $(STRESS_SAN) -pthread -o $@ $< $(LIB_TSAN_A) $(STRESS_LIBS)

TEST_BINS += $(STRESS_OUT)/stress $(STRESS_OUT)/stress-linked $(STRESS_OUT)/stress-asan \
             $(STRESS_OUT)/stress-tsan $(STRESS_OUT)/stress-badfree \
             $(STRESS_OUT)/knob-churn $(STRESS_OUT)/knob-churn-tsan $(STRESS_OUT)/fork_dlopen
