#ifndef TTN_CSQLITE_SHIM_H
#define TTN_CSQLITE_SHIM_H
#include <sqlite3.h>
#endif
