# The exit report's promises, checked on a real program (tests/report/suite.sh).
$(BUILD)/tests/report_bigcache_ten: tests/report/bigcache_ten.c
	@mkdir -p $(@D)
	$(CC) $(TOOL_CFLAGS) -fno-builtin-malloc -fno-builtin-free -o $@ $<

TEST_BINS += $(BUILD)/tests/report_bigcache_ten
