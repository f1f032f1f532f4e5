# tests/programs: the C++ workload that suite.sh runs under LD_PRELOAD.  It
# is deliberately not linked to hakmem: the preload is what is under test.
PROGRAMS_CXX_BIN := $(BUILD)/tests/cxx_workload

$(PROGRAMS_CXX_BIN): tests/programs/cxx_workload.cc
	@mkdir -p $(@D)
	$(CXX) -std=c++17 -O2 -g -Wall -Wextra -Werror -pthread $< -o $@

TEST_BINS += $(PROGRAMS_CXX_BIN)
