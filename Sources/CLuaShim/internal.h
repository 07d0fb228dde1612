#ifndef TTN_CLUASHIM_INTERNAL_H
#define TTN_CLUASHIM_INTERNAL_H
/* What the files of CLuaShim share among themselves; private to the target (its API is include/CLuaShim.h). */
#include "CLuaShim.h"

#include <lauxlib.h>
#include <ttn_json.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

/* Hidden: shared between these files only, so none of it is exported from a shared library that links them. */
#pragma GCC visibility push(hidden)

struct ttn_context {
    size_t used, limit;
    int enforce_limit;              /* the memory cap applies only while script code runs */
    int memory_refused;             /* the cap refused an allocation during this run */
    long long budget;               /* hook firings left: instructions / TTN_HOOK_STEP */
    long long deadline_ns;          /* CLOCK_MONOTONIC deadline; 0 = none */
    atomic_int *interrupt;          /* raised from any thread to abort */
    int abort_reason;               /* enum ttn_abort of this run */
    lua_State *main_thread;         /* the thread the run started on */
    const char *message;            /* the current invocation's uplink JSON (not owned) */
    size_t message_length;
    const ttn_json_element *elements; /* its tape, when the host parsed it already (not owned), or NULL */
    size_t element_count;
    const char *event;              /* the current event's JSON (not owned), or NULL outside an event handler */
    size_t event_length;
};

/* The count hook fires every TTN_HOOK_STEP instructions: the budget's granularity. */
#define TTN_HOOK_STEP 1000
/* Registry keys: their addresses are unique. Defined once, in sandbox.c, which installs them. */
extern const char shim_array_key;      /* the metatable that marks JSON arrays */
extern const char shim_null_key;       /* ttn.null */
extern const char shim_env_key;        /* the script's _ENV */
extern const char shim_buffer_key;     /* the metatable of json_buffer userdata (encoder output, tapes) */

/* ---- context.c ---- */

/* The context of L's state: its allocator's userdata. */
ttn_context *shim_context_of(lua_State *L);

/* ---- call.c ---- */

/* A lua_pcall message handler: the error message (or the type of the error value) with a traceback. */
int shim_traceback(lua_State *L);
/* Calls f with the `nargs` values on top of the stack under shim_traceback; the status of the lua_pcall. */
int shim_protected_call(lua_State *L, lua_CFunction f, int nargs, int nresults);

/* ---- json_encode.c: a growable byte buffer, json.encode's output and the tapes of parsed texts;
 * Lua -> JSON. ---- */

/* In a userdata, allocated through the state's allocator so the memory cap covers it, and freed by __gc even
 * when encoding or decoding raises an error. Unlike luaL_Buffer it never moves values on the stack, so its
 * users can push and pop freely. */
typedef struct { char *data; size_t length, capacity; } json_buffer;

/* The __gc of the buffer's userdata. */
int shim_json_buffer_gc(lua_State *L);
/* Appends `length` bytes, growing the buffer through the state's allocator; raises when that refuses. */
void shim_put(lua_State *L, json_buffer *buffer, const char *bytes, size_t length);
/* ttn.json.encode(value) */
int shim_json_encode(lua_State *L);
/* ttn.json.array([t]) */
int shim_json_array(lua_State *L);

/* ---- json_decode.c: JSON -> Lua, from a tape of CJSON's parser. ---- */

/* Pushes an empty json_buffer userdata, freed by its __gc, to hold a tape's elements. */
json_buffer *shim_push_tape_buffer(lua_State *L);
/* Parses `text` into a tape held by a userdata it pushes; returns the elements (`*count` of them). Raises
 * "invalid JSON: <why> at byte <n>" for a malformed text, and a memory error when the cap refuses the tape. */
const ttn_json_element *shim_parse(lua_State *L, const char *text, size_t length, size_t *count);
/* Pushes the string element's text, escapes resolved. */
void shim_push_string(lua_State *L, const char *text, const ttn_json_element *element);
/* Pushes a string, number, boolean or null element's value (null as ttn.null). */
void shim_push_scalar(lua_State *L, const char *text, const ttn_json_element *element);
/* ttn.json.decode(text) */
int shim_json_decode(lua_State *L);

/* ---- lazy_message.c: getLastMessage()'s lazy tables. ---- */

/* Decodes the table at `index` whole if it is a lazy table; otherwise does nothing. */
void shim_lazy_decode(lua_State *L, int index);
/* Pushes the uplink `json` for a script: an object or array as a lazy table, anything else decoded. `elements`
 * is the host's tape of exactly this text (copied), or NULL to parse it now. */
void shim_push_message(lua_State *L, const char *json, size_t length, const ttn_json_element *elements, size_t count);
/* A library function that reads or writes tables raw (upvalue 1), called with its table arguments decoded. */
int shim_with_tables_decoded(lua_State *L);

/* ---- api.c: the script API implemented in C. ---- */

/* setMessageHandler(f) */
int shim_set_message_handler(lua_State *L);
/* getLastMessage() */
int shim_get_last_message(lua_State *L);
/* getLastEvent() */
int shim_get_last_event(lua_State *L);
/* __ttn_set_dispatcher(fn): the prelude's function that runs timers and event handlers (ttn_dispatch). */
int shim_set_dispatcher(lua_State *L);
/* The __tostring of ttn.null. */
int shim_null_tostring(lua_State *L);

#pragma GCC visibility pop
#endif
