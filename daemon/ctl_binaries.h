/* The control server's answer to BinariesRequest (proto/control.proto):
 * every binary the per-binary learner knows, with its arms. */
#ifndef HAKMEMD_CTL_BINARIES_H
#define HAKMEMD_CTL_BINARIES_H

#include "ctl_answer.h"

int hkc_answer_binaries(const hkc_out *o);

#endif
