# Each tests/<area>/suite.mk adds its binaries to TEST_BINS.
include $(sort $(wildcard tests/*/suite.mk))
