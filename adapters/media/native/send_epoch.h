/* The send state epoch: a counter that changes whenever anything a route's cached send state (send_state.h) was
 * read from may have changed or gone away. Included by every header that changes it: srtp_session.h (a transmit
 * session freed), sequencer_record.h (a sequencer freed), route_record.h and send_state.h (a watched attribute
 * written). In the load tool's module (peer/_fastpeer.c), which has no routes, it is counted and never read. */
#ifndef CALLSD_SEND_EPOCH_H
#define CALLSD_SEND_EPOCH_H

#include <stdint.h>

/* Starts at 1: a route's epoch 0 means "never read". One per extension module (each is one translation unit). */
static uint64_t send_state_epoch = 1;

#endif
