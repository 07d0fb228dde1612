/* Protected calls with a traceback, and Swift functions as Lua functions. */
#include "internal.h"

#include <lauxlib.h>

/* ---- Protected calls with a traceback. ---- */

int shim_traceback(lua_State *L) {
    const char *message = lua_tostring(L, 1);
    if (!message) message = luaL_typename(L, 1);
    luaL_traceback(L, L, message, 1);
    return 1;
}

/* Calls f with the `nargs` values on top of the stack, under a traceback handler. Pushing light C functions
 * and rotating the stack do not allocate, so nothing here can raise outside the pcall. */
int shim_protected_call(lua_State *L, lua_CFunction f, int nargs, int nresults) {
    int base = lua_gettop(L) - nargs;
    lua_pushcfunction(L, shim_traceback);
    lua_insert(L, base + 1);
    lua_pushcfunction(L, f);
    lua_insert(L, base + 2);
    int status = lua_pcall(L, nargs, nresults, base + 1);
    lua_remove(L, base + 1);
    return status;
}

/* ---- Swift functions as Lua functions. ---- */

typedef struct { ttn_host_fn fn; ttn_release_fn release; void *box; } host_box;

static int host_trampoline(lua_State *L) {
    host_box *hb = lua_touserdata(L, lua_upvalueindex(1));
    ttn_context *c = shim_context_of(L);
    int enforced = c->enforce_limit;
    c->enforce_limit = 0; /* Swift code may allocate (push strings, tables) without hitting the cap */
    int results = hb->fn(L, hb->box);
    c->enforce_limit = enforced;
    return results;
}

static int host_box_gc(lua_State *L) {
    host_box *hb = lua_touserdata(L, 1);
    if (hb && hb->box) {
        hb->release(hb->box);
        hb->box = NULL;
    }
    return 0;
}

static int register_protected(lua_State *L) {
    const char *name = lua_touserdata(L, 1);
    host_box *source = lua_touserdata(L, 2);
    host_box *hb = lua_newuserdatauv(L, sizeof(host_box), 0);
    *hb = *source;
    source->box = NULL; /* owned by the userdata from here on */
    lua_createtable(L, 0, 2);
    lua_pushcfunction(L, host_box_gc);
    lua_setfield(L, -2, "__gc");
    lua_pushboolean(L, 0);
    lua_setfield(L, -2, "__metatable");
    lua_setmetatable(L, -2);
    lua_pushcclosure(L, host_trampoline, 1);
    lua_setglobal(L, name);
    return 0;
}

int ttn_register(lua_State *L, const char *name, ttn_host_fn fn, ttn_release_fn release, void *box) {
    host_box source = { fn, release, box };
    lua_pushlightuserdata(L, (void *)name);
    lua_pushlightuserdata(L, &source);
    int status = shim_protected_call(L, register_protected, 2, 0);
    if (source.box) release(source.box); /* registration failed before the userdata took it */
    return status;
}
