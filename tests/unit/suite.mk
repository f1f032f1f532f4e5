# Unit tests of the client allocator, one cmocka binary per box
# (tests/unit/suite.sh).  They link the prefixed static library: the test
# program itself runs on glibc's malloc while it calls hak_* and the hidden
# hk_* internals, which a static link still resolves.
UNIT_BOXES  := size_class chunk_map segment heap heap_life large bigcache thp site options api modules mallinfo knobs counters command vdso packed
UNIT_OUT    := $(BUILD)/tests
UNIT_CFLAGS := $(TOOL_CFLAGS) -Ilibclient -Itests/unit -pthread
UNIT_BINS   := $(addprefix $(UNIT_OUT)/unit_,$(UNIT_BOXES))
UNIT_COMMON := tests/unit/unit_util.c tests/unit/unit_util.h tests/unit/heap_fixture.h

$(UNIT_BINS): $(UNIT_OUT)/unit_%: tests/unit/test_%.c $(UNIT_COMMON) $(LIB_PREFIXED_A) $(LIB_HDRS)
	@mkdir -p $(@D)
	$(CC) $(UNIT_CFLAGS) -o $@ $< tests/unit/unit_util.c $(LIB_PREFIXED_A) -lcmocka -ldl -lpthread

# The API tests again against the hardened build, which also proves every
# pointer into our own pages is a block start (UNIT_HARDENED turns on the
# tests of that promise).
$(UNIT_OUT)/unit_api_hardened: tests/unit/test_api.c $(UNIT_COMMON) $(LIB_HARDENED_PREFIXED_A) $(LIB_HDRS)
	@mkdir -p $(@D)
	$(CC) $(UNIT_CFLAGS) -DUNIT_HARDENED -o $@ $< tests/unit/unit_util.c $(LIB_HARDENED_PREFIXED_A) -lcmocka -ldl -lpthread

# The daemon plane's client boxes, against a fake daemon that decodes the
# client's hand-made frames with protobuf-c (tests may link it; the library
# does not).
UNIT_PLANE_BOXES := registration policy_reader
UNIT_PLANE_BINS  := $(addprefix $(UNIT_OUT)/unit_,$(UNIT_PLANE_BOXES))
UNIT_FAKE        := tests/unit/fake_daemon.c tests/unit/fake_daemon.h

$(UNIT_PLANE_BINS): $(UNIT_OUT)/unit_%: tests/unit/test_%.c $(UNIT_COMMON) $(UNIT_FAKE) $(LIB_PREFIXED_A) $(LIB_HDRS) \
                    $(HKD_GEN)/control.pb-c.c $(HKD_GEN)/control.pb-c.h
	@mkdir -p $(@D)
	$(CC) $(UNIT_CFLAGS) -I$(HKD_GEN) -o $@ $< tests/unit/unit_util.c tests/unit/fake_daemon.c \
	    $(HKD_GEN)/control.pb-c.c $(LIB_PREFIXED_A) -lcmocka -lprotobuf-c -ldl -lpthread


# The hardened build's free-list checks (encoded links, double frees).
$(UNIT_OUT)/unit_hardened: tests/unit/test_hardened.c $(UNIT_COMMON) $(LIB_HARDENED_PREFIXED_A) $(LIB_HDRS)
	@mkdir -p $(@D)
	$(CC) $(UNIT_CFLAGS) -o $@ $< tests/unit/unit_util.c $(LIB_HARDENED_PREFIXED_A) -lcmocka -ldl -lpthread

TEST_BINS += $(UNIT_BINS) $(UNIT_OUT)/unit_api_hardened $(UNIT_OUT)/unit_hardened $(UNIT_PLANE_BINS)
