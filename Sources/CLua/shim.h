#ifndef TTN_CLUA_SHIM_H
#define TTN_CLUA_SHIM_H
#include <lua.h>
#include <lauxlib.h>
#include <lualib.h>

/* What Swift cannot import from the Lua headers (function-like macros, LUA_REGISTRYINDEX, the variadic
 * lua_gc), as functions with a `clua_` prefix. None of them can raise an error:
 * everything that can (lua_call, luaL_error, luaL_check*, ...) is deliberately absent and lives in CLuaShim. */

static inline int clua_registryindex(void) { return LUA_REGISTRYINDEX; }


/* lua_gc with a fixed arity (it is variadic in 5.4), for the options that take no argument. Script code
 * cannot set __gc metamethods, so a collection runs only TTNLua's own C finalizers, which never raise. */
static inline int clua_gc(lua_State *L, int what) { return lua_gc(L, what); }
#endif
