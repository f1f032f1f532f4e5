/* Answers on a control connection (proto/control.proto): one response, an
 * error, or an answer in parts.  The reads that grow with the number of
 * sites (sites, metrics, export) are answered here in bounded pieces: to a
 * client that asked for a stream, one frame per piece; to any other, one
 * frame built from the pieces up to the frame limit, else TOO_LARGE.  The
 * daemon's memory per answer is a page of sites or a piece of text, plus
 * 16 bytes a site for the order of `sites`, whatever the number of sites.
 * Errors are negative errno values (the connection must close). */
#ifndef HAKMEMD_CTL_ANSWER_H
#define HAKMEMD_CTL_ANSWER_H

#include <stdarg.h>

#include "control.pb-c.h"

typedef struct hkc_out {
    int fd;
    int timeout_ms;              /* per frame sent */
    int stream;                  /* the request set Request.stream */
} hkc_out;

/* Sends resp (its version filled in); one too big for a frame becomes a
 * TOO_LARGE error. */
int hkc_send(const hkc_out *o, Hakmem__Ctl__Response *resp);
int hkc_send_errorv(const hkc_out *o, Hakmem__Ctl__Error__Code code, const char *fmt, va_list ap)
    __attribute__((format(printf, 3, 0)));
/* "what: strerror", with the Error code that fits err. */
int hkc_send_core_error(const hkc_out *o, const char *what, int err);

int hkc_answer_sites(const hkc_out *o, const Hakmem__Ctl__SitesRequest *rq);
int hkc_answer_metrics(const hkc_out *o);
int hkc_answer_export(const hkc_out *o);

#endif
