#ifndef TTN_CNATS_SHIM_H
#define TTN_CNATS_SHIM_H
#include <nats/nats.h>
#endif
