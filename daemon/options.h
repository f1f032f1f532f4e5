/* hakmemd's command line: the settings it runs with, and the answers to
 * --help, --version and --list-arms. */
#ifndef HAKMEMD_OPTIONS_H
#define HAKMEMD_OPTIONS_H

#include <stdint.h>

#include "fleet.h"

typedef struct hkd_options {
    const char *shm;                 /* the shared-memory segment's name */
    const char *socket;              /* the control socket's path */
    int use_socket;                  /* 0: --no-socket */
    const char *state_dir;
    const char *metrics_file;        /* NULL: none */
    long interval_ms;
    int learning;
    int debug;
    double memory_weight_ns;         /* < 0: the learner's default */
    uint32_t arm_mask;               /* per-binary arms the learner may run; 0: its default */
    uint64_t settled_report_every;   /* 0: the learner's default */
    uint64_t retention_s;
    uint64_t state_max_bytes;
    uint64_t max_sites_per_user;
    uint64_t new_sites_per_interval;
    hkd_fleet_cfg fleet;             /* endpoints NULL: no fleet */
} hkd_options;

#define HKD_OPTIONS_RUN (-1)

/* Fills *out from argv.  HKD_OPTIONS_RUN when the daemon is to start;
 * otherwise the status to exit with: 0 when --help, --version or
 * --list-arms was answered on stdout (1 when the arms could not be
 * printed), 2 after a bad option or value was reported on stderr. */
int hkd_options_parse(int argc, char **argv, hkd_options *out);

#endif
