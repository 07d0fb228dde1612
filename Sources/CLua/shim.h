#ifndef TTN_CLUA_SHIM_H
#define TTN_CLUA_SHIM_H
#include <lua.h>
#include <lauxlib.h>
#include <lualib.h>

/* Lua macros and constants that Swift cannot import, as functions. None of these can raise an error. */
static inline int clua_registryindex(void) { return LUA_REGISTRYINDEX; }
static inline void clua_pop(lua_State *L, int n) { lua_settop(L, -(n) - 1); }
static inline const char *clua_tolstring(lua_State *L, int i, size_t *len) { return lua_tolstring(L, i, len); }
static inline int clua_isnoneornil(lua_State *L, int i) { return lua_type(L, i) <= 0; }
#endif
