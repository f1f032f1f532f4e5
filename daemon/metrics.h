/* Prometheus text exposition (format 0.0.4) of what the core knows: the
 * daemon, every live process, every site with its thresholds and arms.
 * Used by the control server (hakmemctl metrics) and by --metrics-file
 * (metrics_file.h), so both show the same text.  Call from a thread the
 * core may read on (registered with hkd_reader_thread_enter, or the core's
 * own thread).
 *
 * At 65,536 sites the text is some 200 MB, so it is never built whole: it
 * is handed out in pieces as it is written, and memory stays bounded by one
 * piece and one page of sites whatever the number of sites. */
#ifndef HAKMEMD_METRICS_H
#define HAKMEMD_METRICS_H

#include <stddef.h>

/* Largest piece handed to a sink, in bytes. */
#define HKD_METRICS_PIECE (256u << 10)

/* Takes one piece of the text: whole lines, NUL-terminated (len excludes
 * the NUL), in order.  Returns 0, or -errno to stop the rendering. */
typedef int (*hkd_metrics_sink)(const char *text, size_t len, void *arg);

/* Renders the whole exposition through sink.  0, or -errno (the sink's
 * own error when it stopped it). */
int hkd_metrics_stream(hkd_metrics_sink sink, void *arg);

#endif
