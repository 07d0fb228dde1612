#ifndef TTN_CMOSQUITTO_SHIM_H
#define TTN_CMOSQUITTO_SHIM_H
#include <mosquitto.h>
#endif
