#ifndef TTN_CLUASHIM_H
#define TTN_CLUASHIM_H
#include <lua.h>
#endif
