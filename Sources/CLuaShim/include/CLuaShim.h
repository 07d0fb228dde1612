#ifndef TTN_CLUASHIM_H
#define TTN_CLUASHIM_H
/* The C half of TTNLua: everything that may raise a Lua error (longjmp) happens here, under lua_pcall,
 * so that no error ever unwinds through a Swift frame. */
#include <stddef.h>
#include <lua.h>

/* Why an invocation was aborted by the hook. */
enum ttn_abort { TTN_ABORT_NONE = 0, TTN_ABORT_TIME = 1, TTN_ABORT_INSTRUCTIONS = 2, TTN_ABORT_INTERRUPT = 3 };

/* Per-state limits and accounting (the allocator's userdata); opaque to Swift. */
typedef struct ttn_context ttn_context;

/* An interrupt flag that any thread may raise; it aborts the running invocation of every state using it. */
void *ttn_flag_new(void);
void ttn_flag_raise(void *flag);
void ttn_flag_free(void *flag);

ttn_context *ttn_context_new(size_t memory_limit, void *interrupt_flag);
void ttn_context_free(ttn_context *context);
size_t ttn_context_used(const ttn_context *context);
int ttn_context_abort_reason(const ttn_context *context);

/* A Swift function callable from Lua. Returns the number of results, or -1 with an error message on the stack. */
typedef int (*ttn_host_fn)(lua_State *L, void *box);
typedef void (*ttn_release_fn)(void *box);

lua_State *ttn_state_new(ttn_context *context);
/* Opens the sandboxed libraries and the ttn API. Status; an error message on the stack on failure. */
int ttn_state_open(lua_State *L);
/* Defines global `name` as a Swift function; `box` is released when the state closes. Status. */
int ttn_register(lua_State *L, const char *name, ttn_host_fn fn, ttn_release_fn release, void *box);
/* Runs the embedded Lua prelude (publish from tables, helpers). Call after the host functions exist. */
int ttn_run_prelude(lua_State *L);
/* Compiles `source` as text (never binary) and runs its top level. Status; error (with traceback) on the stack. */
int ttn_load(lua_State *L, const char *source, size_t length, const char *chunkname);
/* Runs the message handler for one uplink. Status; LUA_ERRRUN + "no handler" when none is set. */
int ttn_handle(lua_State *L, const char *json, size_t length);
int ttn_has_handler(lua_State *L);
/* Decodes JSON into a Lua value on the stack (protected). Status; an error message on failure. */
int ttn_json_push(lua_State *L, const char *json, size_t length);
void ttn_arm(lua_State *L, long long instructions, long long timeout_ns);
void ttn_disarm(lua_State *L);
void ttn_collect_garbage(lua_State *L);
#endif
