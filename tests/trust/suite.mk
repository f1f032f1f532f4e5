# tests/trust: the hostile member's program (tests/trust/suite.sh).
$(BUILD)/tests/trust/hostile: tests/trust/hostile.c include/hakmem_shm.h
	@mkdir -p $(@D)
	$(CC) $(TOOL_CFLAGS) -o $@ $<

TEST_BINS += $(BUILD)/tests/trust/hostile
