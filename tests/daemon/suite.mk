# tests/daemon: unit tests of the daemon core (cmocka), the end-to-end
# clients, and the scale bench (build/bench_daemon_scale).
HKD_TEST_DIR  := $(BUILD)/tests/daemon
HKD_TEST_LINK := $(HKD_CORE_OBJS) $(HKD_OBJDIR)/log.o
HKD_UNIT      := $(addprefix $(HKD_TEST_DIR)/,test_learner test_binlearn test_binaries test_bands test_segment test_registry test_register test_persist test_core test_hostile test_split test_domains test_domain_caps test_keep)

$(HKD_TEST_DIR)/test_%: tests/daemon/test_%.c $(HKD_TEST_LINK) $(wildcard tests/daemon/*.h) | $(HKD_GEN_HDRS)
	@mkdir -p $(HKD_TEST_DIR)
	$(CC) $(TOOL_CFLAGS) $(HKD_INC) -I$(HKD_GEN) -pthread -o $@ $< $(HKD_TEST_LINK) $(HKD_LIBS) -lcmocka

# Registration through the real control server: the daemon without main().
$(HKD_TEST_DIR)/test_register: tests/daemon/test_register.c $(filter-out $(HKD_OBJDIR)/main.o,$(HKD_OBJS)) $(wildcard tests/daemon/*.h) | $(HKD_GEN_HDRS)
	@mkdir -p $(HKD_TEST_DIR)
	$(CC) $(TOOL_CFLAGS) $(HKD_INC) -I$(HKD_GEN) -pthread -o $@ $< $(filter-out $(HKD_OBJDIR)/main.o,$(HKD_OBJS)) $(HKD_LIBS) -lcmocka

# Two binaries from one source: the daemon must keep their sites apart.
$(HKD_TEST_DIR)/e2e_client_a: tests/daemon/e2e_client.c $(LIB_SO)
	@mkdir -p $(HKD_TEST_DIR)
	$(CC) $(TOOL_CFLAGS) -DVARIANT="'A'" -o $@ $< -L$(BUILD) -Wl,-rpath,$(abspath $(BUILD)) -lhakmem
$(HKD_TEST_DIR)/e2e_client_b: tests/daemon/e2e_client.c $(LIB_SO)
	@mkdir -p $(HKD_TEST_DIR)
	$(CC) $(TOOL_CFLAGS) -DVARIANT="'B'" -o $@ $< -L$(BUILD) -Wl,-rpath,$(abspath $(BUILD)) -lhakmem
$(HKD_TEST_DIR)/knob_probe: tests/daemon/knob_probe.c $(LIB_SO)
	@mkdir -p $(HKD_TEST_DIR)
	$(CC) $(TOOL_CFLAGS) -o $@ $< -L$(BUILD) -Wl,-rpath,$(abspath $(BUILD)) -lhakmem
# More call sites than a report region holds.
$(HKD_TEST_DIR)/many_sites: tests/daemon/many_sites.c $(LIB_SO)
	@mkdir -p $(HKD_TEST_DIR)
	$(CC) $(TOOL_CFLAGS) -o $@ $< -L$(BUILD) -Wl,-rpath,$(abspath $(BUILD)) -lhakmem

$(BUILD)/bench_daemon_scale: tests/daemon/bench_daemon_scale.c $(HKD_TEST_LINK) $(wildcard tests/daemon/*.h) | $(HKD_GEN_HDRS)
	$(CC) $(TOOL_CFLAGS) $(HKD_INC) -I$(HKD_GEN) -pthread -o $@ $< $(HKD_TEST_LINK) $(HKD_LIBS)

TEST_BINS  += $(HKD_UNIT) $(HKD_TEST_DIR)/e2e_client_a $(HKD_TEST_DIR)/e2e_client_b $(HKD_TEST_DIR)/knob_probe \
              $(HKD_TEST_DIR)/many_sites
BENCH_BINS += $(BUILD)/bench_daemon_scale

.PHONY: test-daemon
test-daemon: $(HKD_UNIT) $(HKD_TEST_DIR)/e2e_client_a $(HKD_TEST_DIR)/e2e_client_b $(BUILD)/hakmemd
	@bash tests/daemon/suite.sh $(BUILD)
