# Control protocol and hakmemctl tests (tests/ctl/suite.sh).
#   test_ctl_unit  cmocka: framing, JSON writer, ELF symbolization, UTF-8, atomic files
#   fake_hakmemd   TEST ONLY: the real control server over fake_core.c
#   ctl_probe      TEST ONLY: raw and misbehaving control clients
CTL_OUT  := $(BUILD)/tests/ctl
CTL_CF   := $(HKD_CFLAGS) -Itests/ctl
CTL_SRV_OBJS := $(addprefix $(HKD_OBJDIR)/,ctl_server.o ctl_access.o ctl_handlers.o ctl_answer.o ctl_binaries.o ctl_fleet.o binaries.o binlearn.o frame.o metrics.o metrics_file.o proc_copy.o \
                atomic_file.o utf8.o log.o sdnotify.o control.pb-c.o)

$(CTL_OUT)/test_ctl_unit: tests/ctl/test_ctl_unit.c $(addprefix $(HKD_OBJDIR)/,frame.o jsonw.o symbolize.o utf8.o atomic_file.o)
	@mkdir -p $(@D)
	$(CC) $(CTL_CF) -o $@ $^ -lcmocka -ldl -pthread

$(CTL_OUT)/fake_hakmemd: tests/ctl/fake_main.c tests/ctl/fake_core.c $(CTL_SRV_OBJS)
	@mkdir -p $(@D)
	$(CC) $(CTL_CF) -o $@ $^ -lprotobuf-c -lsystemd -ldl -lm -pthread

$(CTL_OUT)/ctl_probe: tests/ctl/ctl_probe.c $(addprefix $(HKD_OBJDIR)/,frame.o control.pb-c.o)
	@mkdir -p $(@D)
	$(CC) $(CTL_CF) -o $@ $^ -lprotobuf-c

$(CTL_OUT)/alloc_sites: tests/ctl/alloc_sites.c
	@mkdir -p $(@D)
	$(CC) $(TOOL_CFLAGS) -fno-optimize-sibling-calls -o $@ $<

TEST_BINS += $(CTL_OUT)/test_ctl_unit $(CTL_OUT)/fake_hakmemd $(CTL_OUT)/ctl_probe $(CTL_OUT)/alloc_sites
