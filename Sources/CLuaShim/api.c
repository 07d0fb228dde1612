/* The script API implemented in C (setMessageHandler, getLastMessage, getLastEvent, ttn.null's tostring), and
 * the runs of a script: its top level (ttn_load), its message handler (ttn_handle), and its timers and event
 * handlers (ttn_dispatch). */
#include "internal.h"

#include <lauxlib.h>

/* Registry keys: their addresses are unique. */
static const char handler_key = 'h';   /* the message handler */
static const char message_key = 'm';   /* this invocation's decoded uplink */
static const char event_key = 'e';     /* this invocation's decoded event */
static const char dispatcher_key = 'd'; /* the prelude's dispatcher of timers and events */

/* ---- The script API implemented in C. ---- */

/* Keeps the function argument under the registry key `key`. */
static int keep_function(lua_State *L, const void *key) {
    luaL_checktype(L, 1, LUA_TFUNCTION);
    lua_settop(L, 1);
    lua_rawsetp(L, LUA_REGISTRYINDEX, key);
    return 0;
}

int shim_set_message_handler(lua_State *L) { return keep_function(L, &handler_key); }

int shim_set_dispatcher(lua_State *L) { return keep_function(L, &dispatcher_key); }

/* The table of the invocation's `json` (NULL: none), made on first use and kept under `key` for the invocation:
 * getLastMessage() and getLastEvent(). */
static int invocation_table(lua_State *L, const void *key, const char *json, size_t length,
                            const ttn_json_element *elements, size_t count) {
    if (lua_rawgetp(L, LUA_REGISTRYINDEX, key) != LUA_TNIL) return 1;
    lua_pop(L, 1);
    if (!json) return 0;
    shim_push_message(L, json, length, elements, count);
    lua_pushvalue(L, -1);
    lua_rawsetp(L, LUA_REGISTRYINDEX, key);
    return 1;
}

/* getLastMessage(): the triggering uplink as a (lazy) table. */
int shim_get_last_message(lua_State *L) {
    ttn_context *c = shim_context_of(L);
    return invocation_table(L, &message_key, c->message, c->message_length, c->elements, c->element_count);
}

/* getLastEvent(): the triggering event as a (lazy) table. */
int shim_get_last_event(lua_State *L) {
    ttn_context *c = shim_context_of(L);
    return invocation_table(L, &event_key, c->event, c->event_length, NULL, 0);
}

int shim_null_tostring(lua_State *L) {
    lua_pushliteral(L, "null");
    return 1;
}

/* A run whose limit fired inside a coroutine can still return normally (the resume caught the error and the
 * main thread returned without running another instruction): it failed all the same. */
static int aborted_status(lua_State *L, int status) {
    if (status != LUA_OK || shim_context_of(L)->abort_reason == TTN_ABORT_NONE) return status;
    /* Outside any protected call: the push must not meet the memory cap (it would raise and panic). */
    shim_context_of(L)->enforce_limit = 0;
    lua_pushstring(L, shim_context_of(L)->abort_reason == TTN_ABORT_TIME ? "time limit exceeded"
        : shim_context_of(L)->abort_reason == TTN_ABORT_INSTRUCTIONS ? "instruction limit exceeded" : "interrupted by the host");
    return LUA_ERRRUN;
}

int ttn_load(lua_State *L, const char *source, size_t length, const char *chunkname) {
    int status = luaL_loadbufferx(L, source, length, chunkname, "t");
    if (status != LUA_OK) return status;
    lua_rawgetp(L, LUA_REGISTRYINDEX, &shim_env_key);
    lua_setupvalue(L, -2, 1);                      /* a main chunk's only upvalue is _ENV */
    lua_pushcfunction(L, shim_traceback);
    lua_insert(L, -2);
    status = lua_pcall(L, 0, 0, -2);
    lua_remove(L, status == LUA_OK ? -1 : -2);
    return aborted_status(L, status);
}

int ttn_has_handler(lua_State *L) {
    int type = lua_rawgetp(L, LUA_REGISTRYINDEX, &handler_key);
    lua_pop(L, 1);
    return type == LUA_TFUNCTION;
}

static int handle_protected(lua_State *L) {
    if (lua_rawgetp(L, LUA_REGISTRYINDEX, &handler_key) != LUA_TFUNCTION) {
        return luaL_error(L, "no message handler: call setMessageHandler(function() ... end)");
    }
    lua_call(L, 0, 0);
    return 0;
}

int ttn_handle(lua_State *L, const char *json, size_t length, const ttn_json_element *elements, size_t count) {
    ttn_context *c = shim_context_of(L);
    c->message = json;
    c->message_length = length;
    /* A tape whose first value does not span the text cannot be its parse: parsed again instead. */
    int fits = elements && count > 0 && elements[0].next == count && elements[0].end <= length;
    c->elements = fits ? elements : NULL;
    c->element_count = fits ? count : 0;
    int status = shim_protected_call(L, handle_protected, 0, 0);
    c->message = NULL;
    c->message_length = 0;
    c->elements = NULL;
    c->element_count = 0;
    /* Forget the decoded table. Assigning nil to a registry key never allocates and never raises. */
    lua_pushnil(L);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &message_key);
    return aborted_status(L, status);
}

/* Calls the dispatcher with the timer id (or nil) and the event kind (or nil); the kind arrives as a light
 * userdata and becomes a string here, where an allocation failure is an error rather than a panic. */
static int dispatch_protected(lua_State *L) {
    const char *kind = lua_touserdata(L, 2);
    if (kind) lua_pushstring(L, kind); else lua_pushnil(L);
    lua_replace(L, 2);
    if (lua_rawgetp(L, LUA_REGISTRYINDEX, &dispatcher_key) != LUA_TFUNCTION) return luaL_error(L, "no dispatcher");
    lua_insert(L, 1);
    lua_call(L, 2, 0);
    return 0;
}

int ttn_dispatch(lua_State *L, long long timer, const char *kind, const char *event, size_t length) {
    ttn_context *c = shim_context_of(L);
    /* An integer, nil and a light userdata never allocate, so nothing here can raise outside the pcall. */
    if (timer > 0) lua_pushinteger(L, timer); else lua_pushnil(L);
    lua_pushlightuserdata(L, (void *)kind);
    c->event = event;
    c->event_length = length;
    int status = shim_protected_call(L, dispatch_protected, 2, 0);
    c->event = NULL;
    c->event_length = 0;
    lua_pushnil(L);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &event_key);
    return aborted_status(L, status);
}
