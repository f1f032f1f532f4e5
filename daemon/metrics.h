/* Prometheus text exposition (format 0.0.4) of what the core knows: the
 * daemon, every live process, every site with its thresholds and arms.
 * Used by the control server (hakmemctl metrics) and by --metrics-file,
 * so both show the same text.  Call from a thread the core may read on
 * (registered with hkd_reader_thread_enter, or the core's own thread). */
#ifndef HAKMEMD_METRICS_H
#define HAKMEMD_METRICS_H

#include <stddef.h>

/* *out is malloc'd and NUL-terminated; *len excludes the NUL.  0 or -errno. */
int hkd_metrics_render(char **out, size_t *len);

/* Renders and replaces path atomically (temp file in the same directory,
 * then rename), mode 0644, so node_exporter's textfile collector never
 * reads half a file.  0 or -errno. */
int hkd_metrics_write_file(const char *path);

#endif
