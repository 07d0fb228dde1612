#define _POSIX_C_SOURCE 200809L /* clock_gettime */
/* The per-state context: interrupt flags, the counting allocator and its memory cap, the panic function, state
 * creation, and the count hook that enforces the limits of a run. */
#include "internal.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#if defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define TTN_THREAD_SANITIZER 1
#endif
#endif
#if defined(__SANITIZE_THREAD__)
#define TTN_THREAD_SANITIZER 1
#endif

#if defined(TTN_THREAD_SANITIZER) && defined(__GLIBC__)
#include <setjmp.h>
/* ThreadSanitizer builds only. Lua raises errors with longjmp, and Debian's liblua5.4 is built with
 * _FORTIFY_SOURCE, so it calls glibc's __longjmp_chk, which ThreadSanitizer does not intercept. Its shadow call
 * stack then keeps the frames each jump skipped, grows with every Lua error, and after some thousands of errors in
 * one thread overflows (a SEGV inside ThreadSanitizer). The executable's definition comes before glibc's, so Lua
 * jumps through here into longjmp, which ThreadSanitizer intercepts and rewinds its shadow stack for. Only the
 * fortify check that the target frame is still live is skipped, in these test builds. */
__attribute__((noreturn)) void __longjmp_chk(struct __jmp_buf_tag env[1], int value) { longjmp(env, value); }
#endif

void *ttn_flag_new(void) {
    atomic_int *flag = malloc(sizeof(atomic_int));
    if (flag) atomic_init(flag, 0);
    return flag;
}

void ttn_flag_raise(void *flag) { atomic_store((atomic_int *)flag, 1); }

void ttn_flag_free(void *flag) { free(flag); }

ttn_context *ttn_context_new(size_t memory_limit, void *interrupt_flag) {
    ttn_context *context = calloc(1, sizeof(ttn_context));
    if (context) {
        context->limit = memory_limit;
        context->interrupt = interrupt_flag;
    }
    return context;
}

void ttn_context_free(ttn_context *context) { free(context); }

size_t ttn_context_used(const ttn_context *context) { return context->used; }

int ttn_context_abort_reason(const ttn_context *context) { return context->abort_reason; }

int ttn_context_memory_refused(const ttn_context *context) { return context->memory_refused; }

ttn_context *shim_context_of(lua_State *L) {
    void *ud = NULL;
    lua_getallocf(L, &ud);
    return (ttn_context *)ud;
}

static long long now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* ---- Memory: a counting allocator that refuses growth past the cap while script code runs. ---- */

static void *ttn_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
    ttn_context *c = ud;
    size_t old = ptr ? osize : 0;
    if (nsize == 0) {
        free(ptr);
        c->used -= old;
        return NULL;
    }
    if (c->enforce_limit && nsize > old && c->used + (nsize - old) > c->limit) {
        c->memory_refused = 1;
        return NULL;
    }
    void *p = realloc(ptr, nsize);
    if (!p) return NULL;
    c->used = c->used - old + nsize;
    return p;
}

static int ttn_panic(lua_State *L) {
    const char *message = lua_tostring(L, -1);
    fprintf(stderr, "TTNLua: unprotected Lua error (a bug in TTNLua): %s\n", message ? message : "?");
    abort();
}

lua_State *ttn_state_new(ttn_context *context) {
    lua_State *L = lua_newstate(ttn_alloc, context);
    if (!L) return NULL;
    lua_atpanic(L, ttn_panic);
    /* Each message decodes into a dozen tables that die at the end of the invocation: the generational
     * collector is made for such short-lived objects (a few percent cheaper per invocation, docs/benchmarks.md). */
    lua_gc(L, LUA_GCGEN, 0, 0);
    return L;
}

/* ---- CPU: a count hook that aborts on budget, deadline or interrupt, and cannot be caught by pcall. ---- */

static void ttn_hook(lua_State *L, lua_Debug *ar) {
    (void)ar;
    ttn_context *c = shim_context_of(L);
    if (c->abort_reason == TTN_ABORT_NONE) {
        if (c->interrupt && atomic_load_explicit(c->interrupt, memory_order_relaxed)) c->abort_reason = TTN_ABORT_INTERRUPT;
        else if (--c->budget < 0) c->abort_reason = TTN_ABORT_INSTRUCTIONS;
        else if (c->deadline_ns && now_ns() > c->deadline_ns) c->abort_reason = TTN_ABORT_TIME;
        else return;
    }
    /* Once fired, fire at every instruction of whichever coroutine runs (hooks are per thread), so a
     * script's own pcall or coroutine.resume cannot swallow the abort: the next instruction raises again. */
    lua_sethook(L, ttn_hook, LUA_MASKCOUNT, 1);
    /* coroutine.resume catches the error raised here; the main thread then raises at its next instruction. */
    if (L != c->main_thread) lua_sethook(c->main_thread, ttn_hook, LUA_MASKCOUNT, 1);
    /* The message is tiny; let it past a full cap so the abort says what happened, not "not enough memory". */
    int enforced = c->enforce_limit;
    c->enforce_limit = 0;
    luaL_where(L, 0); /* level 0 is the running Lua function: the message names the line the limit caught */
    switch (c->abort_reason) {
    case TTN_ABORT_TIME: lua_pushliteral(L, "time limit exceeded"); break;
    case TTN_ABORT_INSTRUCTIONS: lua_pushliteral(L, "instruction limit exceeded"); break;
    default: lua_pushliteral(L, "interrupted by the host"); break;
    }
    lua_concat(L, 2);
    c->enforce_limit = enforced;
    lua_error(L);
}

void ttn_arm(lua_State *L, long long instructions, long long timeout_ns) {
    ttn_context *c = shim_context_of(L);
    c->budget = instructions / TTN_HOOK_STEP;
    c->deadline_ns = timeout_ns > 0 ? now_ns() + timeout_ns : 0;
    c->abort_reason = TTN_ABORT_NONE;
    c->main_thread = L;
    c->memory_refused = 0;
    c->enforce_limit = 1;
    lua_sethook(L, ttn_hook, LUA_MASKCOUNT, TTN_HOOK_STEP);
}

void ttn_disarm(lua_State *L) {
    lua_sethook(L, NULL, 0, 0);
    shim_context_of(L)->enforce_limit = 0;
}
