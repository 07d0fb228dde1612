/* The sandbox: the libraries a script gets, the globals it does not, a read-only view of the rest under its own
 * _ENV, and the Lua half of the API (prelude.lua). */
#include "internal.h"

#include <lauxlib.h>
#include <lualib.h>
#include <string.h>

/* Registry keys: their addresses are unique. */
const char shim_array_key = 'a';     /* the metatable that marks JSON arrays */
const char shim_null_key = 'n';      /* ttn.null */
const char shim_env_key = 'e';       /* the script's _ENV */
const char shim_buffer_key = 'b';    /* the metatable of json.encode's buffer */

/* ---- The sandbox. ---- */

/* load(chunk [, chunkname [, mode [, env]]]): text chunks only; env defaults to the script's _ENV. */
static int sandbox_load(lua_State *L) {
    size_t length;
    const char *chunk = luaL_checklstring(L, 1, &length);
    const char *name = luaL_optstring(L, 2, chunk);
    const char *mode = luaL_optstring(L, 3, "t");
    luaL_argcheck(L, strchr(mode, 't') != NULL, 3, "only text chunks can be loaded (mode \"t\")");
    int has_env = !lua_isnone(L, 4);
    lua_settop(L, 4);
    if (luaL_loadbufferx(L, chunk, length, name, "t") != LUA_OK) {
        luaL_pushfail(L);
        lua_insert(L, -2);
        return 2; /* nil plus the message, as the standard load */
    }
    if (has_env) lua_pushvalue(L, 4);
    else lua_rawgetp(L, LUA_REGISTRYINDEX, &shim_env_key);
    if (!lua_setupvalue(L, -2, 1)) lua_pop(L, 1);
    return 1;
}

/* setmetatable without __gc: a finalizer would run Lua code outside any invocation (during a collection
 * started by the host, or when the state closes), where no time limit applies. */
static int sandbox_setmetatable(lua_State *L) {
    if (lua_type(L, 1) == LUA_TTABLE) shim_lazy_decode(L, 1);
    if (lua_type(L, 2) == LUA_TTABLE) {
        lua_pushliteral(L, "__gc");
        if (lua_rawget(L, 2) != LUA_TNIL) luaL_argerror(L, 2, "__gc metamethods are not available to scripts");
    }
    lua_settop(L, 2);
    lua_pushvalue(L, lua_upvalueindex(1)); /* the standard setmetatable */
    lua_insert(L, 1);
    lua_call(L, 2, 1);
    return 1;
}

static int readonly_newindex(lua_State *L) {
    if (lua_type(L, 2) == LUA_TSTRING) {
        return luaL_error(L, "cannot set '%s': the standard libraries and the ttn API are read-only", lua_tostring(L, 2));
    }
    return luaL_error(L, "the standard libraries and the ttn API are read-only");
}

/* The iterator of pairs() over a read-only proxy: walks its view (upvalue 1) without handing it out. */
static int readonly_next(lua_State *L) {
    lua_settop(L, 2);
    return lua_next(L, lua_upvalueindex(1)) ? 2 : 0;
}

static int readonly_pairs(lua_State *L) {
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_pushvalue(L, 1);
    lua_pushnil(L);
    return 3;
}

/* Pushes a view of the table at `index`: a copy whose table values are read-only proxies. Tables that
 * refer back to an enclosing one (such as _G) are left out. */
static void push_view(lua_State *L, int index, int depth);

/* Pushes a read-only proxy of the table at `index`: reads go to its view, writes raise, pairs works. */
static void push_readonly(lua_State *L, int index, int depth) {
    index = lua_absindex(L, index);
    luaL_checkstack(L, 8, "read-only view");
    lua_newtable(L);                         /* the proxy */
    lua_createtable(L, 0, 4);                /* its metatable */
    push_view(L, index, depth);
    lua_pushvalue(L, -1);
    lua_pushcclosure(L, readonly_next, 1);
    lua_pushcclosure(L, readonly_pairs, 1);
    lua_setfield(L, -3, "__pairs");
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, readonly_newindex);
    lua_setfield(L, -2, "__newindex");
    lua_pushboolean(L, 0);
    lua_setfield(L, -2, "__metatable");
    lua_setmetatable(L, -2);
}

static void push_view(lua_State *L, int index, int depth) {
    index = lua_absindex(L, index);
    lua_newtable(L);
    int view = lua_gettop(L);
    lua_pushnil(L);
    while (lua_next(L, index)) {
        if (lua_type(L, -1) == LUA_TTABLE) {
            if (depth >= 3 || lua_rawequal(L, -1, index)) {
                lua_pop(L, 1);
                continue;
            }
            push_readonly(L, -1, depth + 1);
            lua_replace(L, -2);
        }
        lua_pushvalue(L, -2);
        lua_insert(L, -2);
        lua_rawset(L, view);
    }
}

static const char *const removed_globals[] = { "dofile", "loadfile", "require", "collectgarbage", "warn", NULL };

static int open_protected(lua_State *L) {
    static const luaL_Reg libraries[] = {
        { LUA_GNAME, luaopen_base }, { LUA_TABLIBNAME, luaopen_table }, { LUA_STRLIBNAME, luaopen_string },
        { LUA_MATHLIBNAME, luaopen_math }, { LUA_UTF8LIBNAME, luaopen_utf8 }, { LUA_COLIBNAME, luaopen_coroutine },
        { NULL, NULL }
    };
    for (const luaL_Reg *library = libraries; library->func; library++) {
        luaL_requiref(L, library->name, library->func, 1);
        lua_pop(L, 1);
    }
    for (const char *const *name = removed_globals; *name; name++) {
        lua_pushnil(L);
        lua_setglobal(L, *name);
    }
    lua_pushcfunction(L, sandbox_load);
    lua_setglobal(L, "load");
    /* Functions that touch tables raw decode lazy tables first (see getLastMessage()'s lazy tables, lazy_message.c). */
    static const char *const raw_globals[] = { "next", "pairs", "rawget", "rawset", "rawlen", "getmetatable", NULL };
    for (const char *const *name = raw_globals; *name; name++) {
        lua_getglobal(L, *name);
        lua_pushcclosure(L, shim_with_tables_decoded, 1);
        lua_setglobal(L, *name);
    }
    static const char *const table_functions[] = { "concat", "insert", "move", "remove", "sort", "unpack", NULL };
    lua_getglobal(L, LUA_TABLIBNAME);
    for (const char *const *name = table_functions; *name; name++) {
        lua_getfield(L, -1, *name);
        lua_pushcclosure(L, shim_with_tables_decoded, 1);
        lua_setfield(L, -2, *name);
    }
    lua_pop(L, 1);
    lua_getglobal(L, "setmetatable");
    lua_pushcclosure(L, sandbox_setmetatable, 1);
    lua_setglobal(L, "setmetatable");

    /* string.dump makes bytecode; the string metatable (whose __index is the real string table) is hidden. */
    lua_getglobal(L, LUA_STRLIBNAME);
    lua_pushnil(L);
    lua_setfield(L, -2, "dump");
    lua_pop(L, 1);
    lua_pushliteral(L, "");
    lua_getmetatable(L, -1);
    lua_pushboolean(L, 0);
    lua_setfield(L, -2, "__metatable");
    lua_pop(L, 2);

    /* os: only the clock and date functions. */
    luaL_requiref(L, LUA_OSLIBNAME, luaopen_os, 0);
    lua_createtable(L, 0, 4);
    static const char *const kept[] = { "time", "clock", "date", "difftime", NULL };
    for (const char *const *name = kept; *name; name++) {
        lua_getfield(L, -2, *name);
        lua_setfield(L, -2, *name);
    }
    lua_setglobal(L, LUA_OSLIBNAME);
    lua_pop(L, 1);
    /* The loaded-modules table holds the full os library; nothing needs it without require. */
    lua_pushnil(L);
    lua_setfield(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);

    /* Metatables of JSON arrays and of json.encode's buffer, and the null sentinel. */
    lua_createtable(L, 0, 2);
    lua_pushliteral(L, "json.array");
    lua_setfield(L, -2, "__name");
    lua_pushboolean(L, 0);
    lua_setfield(L, -2, "__metatable");
    lua_rawsetp(L, LUA_REGISTRYINDEX, &shim_array_key);
    lua_createtable(L, 0, 1);
    lua_pushcfunction(L, shim_json_buffer_gc);
    lua_setfield(L, -2, "__gc");
    lua_rawsetp(L, LUA_REGISTRYINDEX, &shim_buffer_key);
    lua_newuserdatauv(L, 0, 0);
    lua_createtable(L, 0, 3);
    lua_pushcfunction(L, shim_null_tostring);
    lua_setfield(L, -2, "__tostring");
    lua_pushliteral(L, "ttn.null");
    lua_setfield(L, -2, "__name");
    lua_pushboolean(L, 0);
    lua_setfield(L, -2, "__metatable");
    lua_setmetatable(L, -2);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &shim_null_key);

    lua_pushcfunction(L, shim_set_message_handler);
    lua_setglobal(L, "setMessageHandler");
    lua_pushcfunction(L, shim_get_last_message);
    lua_setglobal(L, "getLastMessage");
    lua_pushcfunction(L, shim_get_last_event);
    lua_setglobal(L, "getLastEvent");
    lua_pushcfunction(L, shim_set_dispatcher);
    lua_setglobal(L, "__ttn_set_dispatcher");

    lua_createtable(L, 0, 16);                     /* ttn */
    lua_createtable(L, 0, 3);                      /* ttn.json */
    lua_pushcfunction(L, shim_json_decode);
    lua_setfield(L, -2, "decode");
    lua_pushcfunction(L, shim_json_encode);
    lua_setfield(L, -2, "encode");
    lua_pushcfunction(L, shim_json_array);
    lua_setfield(L, -2, "array");
    lua_setfield(L, -2, "json");
    lua_rawgetp(L, LUA_REGISTRYINDEX, &shim_null_key);
    lua_setfield(L, -2, "null");
    lua_setglobal(L, "ttn");
    return 0;
}

int ttn_state_open(lua_State *L) {
    return shim_protected_call(L, open_protected, 0, 0);
}

/* The Lua half of the API, prelude.lua, compiled in byte for byte. It runs with the real globals as its
 * environment, and keeps the host functions registered as __ttn_* in locals, removing the globals. Loaded as
 * chunk "=ttn", so errors and tracebacks inside it name "ttn:<line of prelude.lua>". #embed adds no NUL: the
 * text is all of sizeof prelude. */
#pragma clang diagnostic push
#pragma clang diagnostic ignored "-Wc23-extensions" /* #embed is C23; SwiftPM compiles C as gnu17 */
static const char prelude[] = {
#embed "prelude.lua"
};
#pragma clang diagnostic pop

/* Runs the prelude, then gives the script its own _ENV: writes land in it, reads fall through to a read-only
 * view of the globals, so a script cannot break the API (or the libraries it uses) by assigning a global. */
static int finish_protected(lua_State *L) {
    if (luaL_loadbufferx(L, prelude, sizeof prelude, "=ttn", "t") != LUA_OK) return lua_error(L);
    lua_call(L, 0, 0);
    lua_newtable(L);                               /* the script's _ENV */
    lua_createtable(L, 0, 2);
    lua_pushglobaltable(L);
    push_view(L, -1, 0);
    lua_remove(L, -2);
    lua_pushvalue(L, -3);
    lua_setfield(L, -2, "_G");                     /* _G is the script's own environment */
    lua_setfield(L, -2, "__index");
    lua_pushboolean(L, 0);
    lua_setfield(L, -2, "__metatable");
    lua_setmetatable(L, -2);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &shim_env_key);
    return 0;
}

int ttn_state_finish(lua_State *L) {
    return shim_protected_call(L, finish_protected, 0, 0);
}
