# hakmemd (daemon/), hakmemctl (hakmemctl/) and the code both use
# (common/: the control frame, JSON, symbolization, UTF-8, atomic files,
# policy parts).  Included by the top-level Makefile.  Every object lands
# in $(HKD_OBJDIR), whichever folder its source is in.
#
# HKD_CORE_OBJS: the learning core (also linked into tests and benches).
# HKD_OBJS:      everything hakmemd links.  Other daemon pieces append their
#                objects to HKD_OBJS / HKD_CTL_OBJS in their own lines below.
HKD_GEN    := $(BUILD)/gen
HKD_OBJDIR := $(BUILD)/obj/daemon
HKD_INC    := -Idaemon -Icommon -Ihakmemctl
HKD_CFLAGS := $(TOOL_CFLAGS) $(HKD_INC) -I$(HKD_GEN) -pthread -MMD -MP
# (-lcurl -ljson-c: the fleet link, etcd's JSON gateway over libcurl.)
HKD_LIBS   := -lurcu -lurcu-cds -lprotobuf-c -lsystemd -lm -lrt -pthread -lcurl -ljson-c

HKD_PROTOS   := $(wildcard proto/*.proto)
HKD_GEN_HDRS := $(patsubst proto/%.proto,$(HKD_GEN)/%.pb-c.h,$(HKD_PROTOS))

HKD_CORE_OBJS := $(addprefix $(HKD_OBJDIR)/,learner.o binlearn.o binaries.o core_binaries.o bands.o persist.o persist_binaries.o atomic_file.o utf8.o segment.o registry.o collector.o publisher.o core.o policy.pb-c.o \
                   core_ops.o core_table.o core_store.o core_collect.o core_learn.o domains.o archive.o value.o pick.o saver.o worker.o \
                   core_fleet.o fleet_codec.o)
HKD_OBJS := $(HKD_CORE_OBJS) $(addprefix $(HKD_OBJDIR)/,main.o options.o log.o sdnotify.o ctl_server.o)

# The fleet link (its own thread; the core's side is core_fleet.o):
HKD_OBJS += $(addprefix $(HKD_OBJDIR)/,fleet.o fleet_peers.o fleet_controls.o fleet_control.o etcd.o etcd_password.o)

# The control server and what it answers with:
HKD_OBJS += $(addprefix $(HKD_OBJDIR)/,ctl_access.o ctl_handlers.o frame.o metrics.o metrics_file.o ctl_answer.o ctl_binaries.o ctl_fleet.o proc_copy.o control.pb-c.o)

$(HKD_GEN)/%.pb-c.c $(HKD_GEN)/%.pb-c.h: proto/%.proto
	@mkdir -p $(HKD_GEN)
	protoc-c --c_out=$(HKD_GEN) -Iproto $<

$(HKD_OBJDIR)/%.o: daemon/%.c | $(HKD_GEN_HDRS)
	@mkdir -p $(HKD_OBJDIR)
	$(CC) $(HKD_CFLAGS) -c $< -o $@
$(HKD_OBJDIR)/%.o: common/%.c | $(HKD_GEN_HDRS)
	@mkdir -p $(HKD_OBJDIR)
	$(CC) $(HKD_CFLAGS) -c $< -o $@
$(HKD_OBJDIR)/%.o: hakmemctl/%.c | $(HKD_GEN_HDRS)
	@mkdir -p $(HKD_OBJDIR)
	$(CC) $(HKD_CFLAGS) -c $< -o $@

$(HKD_OBJDIR)/%.pb-c.o: $(HKD_GEN)/%.pb-c.c $(HKD_GEN)/%.pb-c.h
	@mkdir -p $(HKD_OBJDIR)
	$(CC) $(TOOL_CFLAGS) -I$(HKD_GEN) -c $< -o $@

$(BUILD)/hakmemd: $(HKD_OBJS)
	$(CC) -o $@ $^ $(HKD_LIBS)

.PRECIOUS: $(HKD_GEN)/%.pb-c.c $(HKD_GEN)/%.pb-c.h

TOOL_BINS += $(BUILD)/hakmemd

-include $(wildcard $(HKD_OBJDIR)/*.d)

# ---- hakmemctl, unit files ----
HKC_OBJS := $(addprefix $(HKD_OBJDIR)/,hakmemctl.o hkctl_policy.o hkctl_sites.o hkctl_binaries.o hkctl_fleet.o hkctl_fleetctl.o hkctl_user.o ctl_client.o frame.o jsonw.o symbolize.o \
              etcd.o etcd_password.o fleet_control.o \
              utf8.o atomic_file.o policy_split.o control.pb-c.o policy.pb-c.o)
$(BUILD)/hakmemctl: $(HKC_OBJS)
	$(CC) -o $@ $^ -lprotobuf-c -lcurl -ljson-c
# Unit files and snippets for this build tree: ExecStart points into $(BUILD)
# so tests (systemd-analyze verify, the container boot) use the fresh build.
# scripts/install.sh renders the same templates for PREFIX.
HKD_UNIT_FILES := $(BUILD)/hakmemd.service $(BUILD)/hakmemd.socket \
                  $(BUILD)/hakmem-sysusers.conf $(BUILD)/hakmem-tmpfiles.conf
$(BUILD)/hakmemd.service: systemd/hakmemd.service.in
	@mkdir -p $(BUILD)
	sed 's|@SBINDIR@|$(abspath $(BUILD))|g' $< > $@
$(BUILD)/hakmemd.socket: systemd/hakmemd.socket
	@mkdir -p $(BUILD)
	cp $< $@
$(BUILD)/hakmem-sysusers.conf: systemd/sysusers.d/hakmem.conf
	@mkdir -p $(BUILD)
	cp $< $@
$(BUILD)/hakmem-tmpfiles.conf: systemd/tmpfiles.d/hakmem.conf
	@mkdir -p $(BUILD)
	cp $< $@
TOOL_BINS += $(BUILD)/hakmemctl $(HKD_UNIT_FILES)
