# tests/fleet: the fleet link's unit tests (cmocka: the value format, UCB1
# with a prior, the core taking the fleet's sums); suite.sh runs them and a
# real etcd cluster with three daemons.
FLEET_TEST_DIR := $(BUILD)/tests/fleet

$(FLEET_TEST_DIR)/test_fleet: tests/fleet/test_fleet.c $(HKD_TEST_LINK) $(HKD_OBJDIR)/fleet_control.o $(wildcard tests/daemon/*.h) | $(HKD_GEN_HDRS)
	@mkdir -p $(FLEET_TEST_DIR)
	$(CC) $(TOOL_CFLAGS) $(HKD_INC) -Itests/daemon -I$(HKD_GEN) -pthread -o $@ $< $(HKD_TEST_LINK) $(HKD_OBJDIR)/fleet_control.o $(HKD_LIBS) -lcmocka

TEST_BINS += $(FLEET_TEST_DIR)/test_fleet
