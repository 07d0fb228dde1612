#ifndef TTN_CLUASHIM_H
#define TTN_CLUASHIM_H
/* The C half of TTNLua: everything that may raise a Lua error (longjmp) happens here, under lua_pcall,
 * so that no error ever unwinds through a Swift frame. Every function declared here returns normally. */
#include <stddef.h>
#include <stdint.h>
#include <lua.h>
#include <ttn_json.h>

/* Why an invocation was aborted by the hook. */
enum ttn_abort { TTN_ABORT_NONE = 0, TTN_ABORT_TIME = 1, TTN_ABORT_INSTRUCTIONS = 2, TTN_ABORT_INTERRUPT = 3 };

/* Per-state limits and accounting (the allocator's userdata); opaque to Swift. */
typedef struct ttn_context ttn_context;

/* An interrupt flag (a C11 atomic) that any thread may raise; it aborts the running invocation of every
 * state using it, and every later one. */
void *ttn_flag_new(void);
void ttn_flag_raise(void *flag);
void ttn_flag_free(void *flag);

ttn_context *ttn_context_new(size_t memory_limit, void *interrupt_flag);
void ttn_context_free(ttn_context *context);
/* Bytes the state has allocated. */
size_t ttn_context_used(const ttn_context *context);
/* The enum ttn_abort of the last armed run. */
int ttn_context_abort_reason(const ttn_context *context);
/* Whether the allocator refused an allocation for the memory cap during the last armed run. */
int ttn_context_memory_refused(const ttn_context *context);

/* A Swift function callable from Lua. Returns the number of results; it never raises (failures are results
 * that the Lua half of the API turns into errors at the script's line). It runs with the memory cap lifted. */
typedef int (*ttn_host_fn)(lua_State *L, void *box);
typedef void (*ttn_release_fn)(void *box);

/* A state whose allocator counts into `context`; NULL when out of memory. */
lua_State *ttn_state_new(ttn_context *context);
/* Opens the sandboxed libraries and the C half of the API. Status; an error message on the stack on failure. */
int ttn_state_open(lua_State *L);
/* Defines global `name` as a Swift function; `box` is released when the state closes (or now, on failure). */
int ttn_register(lua_State *L, const char *name, ttn_host_fn fn, ttn_release_fn release, void *box);
/* Runs the Lua half of the API (it consumes the registered host functions) and seals the sandbox: builds the
 * script's environment over a read-only view of the globals. Call once, after ttn_register. Status. */
int ttn_state_finish(lua_State *L);
/* Compiles `source` as text (never binary) in the script's environment and runs its top level.
 * Status; the error (with traceback) on the stack on failure. */
int ttn_load(lua_State *L, const char *source, size_t length, const char *chunkname);
/* Runs the message handler once; getLastMessage() decodes `json` as the script reads it. `elements` (or NULL)
 * is CJSON's tape of exactly this text, when the host parsed it already; without it the text is parsed on
 * first use. Status; LUA_ERRRUN with "no message handler" when none is set. */
int ttn_handle(lua_State *L, const char *json, size_t length, const ttn_json_element *elements, size_t count);
/* Runs the prelude's dispatcher for a timer (`timer` > 0: the id the host gave it) or for an event of `kind`
 * (`timer` 0), whose JSON `event` getLastEvent() decodes as the script reads it. Status. */
int ttn_dispatch(lua_State *L, long long timer, const char *kind, const char *event, size_t length);
/* Whether setMessageHandler was called. */
int ttn_has_handler(lua_State *L);
/* Starts a run under the limits: instruction budget, time budget (0 = none) and the memory cap. */
void ttn_arm(lua_State *L, long long instructions, long long timeout_ns);
/* Ends a run: removes the hook and lifts the memory cap. */
void ttn_disarm(lua_State *L);
#endif
