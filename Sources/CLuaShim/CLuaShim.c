#define _POSIX_C_SOURCE 200809L /* clock_gettime */
#include "CLuaShim.h"

#include <lauxlib.h>
#include <lualib.h>
#include <limits.h>
#include <locale.h>
#include <math.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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
    const uint32_t *outline;        /* its containers, when the host checked it already (not owned), or NULL */
    size_t outline_containers;
};

/* The count hook fires every TTN_HOOK_STEP instructions: the budget's granularity. */
#define TTN_HOOK_STEP 1000
/* JSON nesting accepted by the decoder and produced by the encoder (which also stops cycles with it). */
#define TTN_JSON_MAX_DEPTH 200

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

/* Registry keys: their addresses are unique. */
static const char handler_key = 'h';   /* the message handler */
static const char message_key = 'm';   /* this invocation's decoded uplink */
static const char array_key = 'a';     /* the metatable that marks JSON arrays */
static const char null_key = 'n';      /* ttn.null */
static const char env_key = 'e';       /* the script's _ENV */
static const char buffer_key = 'b';    /* the metatable of json.encode's buffer */
static const char lazy_key = 'l';      /* in a lazy table not yet decoded: the number of its container */

static ttn_context *context_of(lua_State *L) {
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
    ttn_context *c = context_of(L);
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
    ttn_context *c = context_of(L);
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
    context_of(L)->enforce_limit = 0;
}

/* ---- Protected calls with a traceback. ---- */

static int ttn_traceback(lua_State *L) {
    const char *message = lua_tostring(L, 1);
    if (!message) message = luaL_typename(L, 1);
    luaL_traceback(L, L, message, 1);
    return 1;
}

/* Calls f with the `nargs` values on top of the stack, under a traceback handler. Pushing light C functions
 * and rotating the stack do not allocate, so nothing here can raise outside the pcall. */
static int protected_call(lua_State *L, lua_CFunction f, int nargs, int nresults) {
    int base = lua_gettop(L) - nargs;
    lua_pushcfunction(L, ttn_traceback);
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
    ttn_context *c = context_of(L);
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
    int status = protected_call(L, register_protected, 2, 0);
    if (source.box) release(source.box); /* registration failed before the userdata took it */
    return status;
}

/* ---- A growable byte buffer: json.encode's output, and the extents of getLastMessage()'s containers. ---- */

/* In a userdata, allocated through the state's allocator so the memory cap covers it, and freed by __gc even
 * when encoding or decoding raises an error. Unlike luaL_Buffer it never moves values on the stack, so its
 * users can push and pop freely. */
typedef struct { char *data; size_t length, capacity; } json_buffer;

static int json_buffer_gc(lua_State *L) {
    json_buffer *buffer = lua_touserdata(L, 1);
    if (buffer->data) {
        void *ud;
        lua_Alloc alloc = lua_getallocf(L, &ud);
        alloc(ud, buffer->data, buffer->capacity, 0);
        buffer->data = NULL;
    }
    return 0;
}

static void put(lua_State *L, json_buffer *buffer, const char *bytes, size_t length) {
    if (buffer->length + length > buffer->capacity) {
        size_t capacity = buffer->capacity ? buffer->capacity : 256;
        while (capacity < buffer->length + length) capacity *= 2;
        void *ud;
        lua_Alloc alloc = lua_getallocf(L, &ud);
        char *data = alloc(ud, buffer->data, buffer->data ? buffer->capacity : 0, capacity);
        if (!data) luaL_error(L, "not enough memory");
        buffer->data = data;
        buffer->capacity = capacity;
    }
    memcpy(buffer->data + buffer->length, bytes, length);
    buffer->length += length;
}

/* ---- JSON -> Lua, in one pass straight onto the Lua stack. ----
 * Objects become tables, arrays sequences marked with a shared metatable (so [] encodes back as []),
 * numbers without fraction or exponent that fit 64 bits Lua integers and other numbers floats, null the
 * ttn.null sentinel. (lua-cjson decodes every number as a float, which is why this decoder exists.)
 *
 * The same functions also scan without building anything (`extents` set): getLastMessage() checks the whole
 * message that way, recording where each object and array ends, and then decodes each of them only when the
 * script first looks into it (the lazy tables below). */

/* One object or array of a scanned text, numbered in document order: where it starts and ends, how many
 * members or elements it has, and the number of the first container after everything inside it. */
typedef struct { uint32_t start, end, count, next; } json_extent;

typedef struct {
    const char *start, *p, *end;
    int depth;
    json_buffer *extents; /* scanning: push nothing, record every container here */
} json_reader;

static void json_fail(lua_State *L, json_reader *r, const char *what) {
    luaL_error(L, "invalid JSON: %s at byte %d", what, (int)(r->p - r->start));
}

static void skip_space(json_reader *r) {
    while (r->p < r->end && (*r->p == ' ' || *r->p == '\t' || *r->p == '\n' || *r->p == '\r')) r->p++;
}

static int is_digit(json_reader *r) { return r->p < r->end && *r->p >= '0' && *r->p <= '9'; }

static unsigned hex4(lua_State *L, json_reader *r) {
    unsigned value = 0;
    if (r->end - r->p < 4) json_fail(L, r, "short \\u escape");
    for (int i = 0; i < 4; i++) {
        char ch = *r->p++;
        value <<= 4;
        if (ch >= '0' && ch <= '9') value |= (unsigned)(ch - '0');
        else if (ch >= 'a' && ch <= 'f') value |= (unsigned)(ch - 'a' + 10);
        else if (ch >= 'A' && ch <= 'F') value |= (unsigned)(ch - 'A' + 10);
        else json_fail(L, r, "bad \\u escape");
    }
    return value;
}

static void add_utf8(luaL_Buffer *b, unsigned code) {
    char utf8[4];
    size_t n;
    if (code < 0x80) { utf8[0] = (char)code; n = 1; }
    else if (code < 0x800) { utf8[0] = (char)(0xC0 | (code >> 6)); utf8[1] = (char)(0x80 | (code & 0x3F)); n = 2; }
    else if (code < 0x10000) {
        utf8[0] = (char)(0xE0 | (code >> 12)); utf8[1] = (char)(0x80 | ((code >> 6) & 0x3F));
        utf8[2] = (char)(0x80 | (code & 0x3F)); n = 3;
    } else {
        utf8[0] = (char)(0xF0 | (code >> 18)); utf8[1] = (char)(0x80 | ((code >> 12) & 0x3F));
        utf8[2] = (char)(0x80 | ((code >> 6) & 0x3F)); utf8[3] = (char)(0x80 | (code & 0x3F)); n = 4;
    }
    luaL_addlstring(b, utf8, n);
}

/* The high bit of each zero byte of `word`, and maybe of bytes above the lowest one (a borrow's false alarm). */
static uint64_t zero_bytes(uint64_t word) {
    return (word - 0x0101010101010101ULL) & ~word & 0x8080808080808080ULL;
}

/* Moves past the bytes of a string that need no attention: all but '"', '\\' and control characters. Most of
 * a message's bytes are such, so eight at a time: the bytes of a word that need attention, or are above 0x7F,
 * are flagged by bit tricks whose lowest flag is always exact (a false flag can only follow a true one), so
 * the first of them is found at once. Bytes above 0x7F are then passed one by one. */
static void skip_plain(json_reader *r) {
    const char *p = r->p;
    for (;;) {
        while (r->end - p >= 8) {
            uint64_t word;
            memcpy(&word, p, sizeof word);
#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
            word = __builtin_bswap64(word); /* the first byte the lowest, for the count of trailing zeros */
#endif
            uint64_t flags = ((word | (word - 0x2020202020202020ULL)) & 0x8080808080808080ULL)
                | zero_bytes(word ^ 0x2222222222222222ULL) | zero_bytes(word ^ 0x5C5C5C5C5C5C5C5CULL);
            if (flags) {
                p += __builtin_ctzll(flags) / 8;
                break;
            }
            p += 8;
        }
        const char *stop = r->end - p >= 8 ? p + 8 : r->end;
        while (p < stop && *p != '"' && *p != '\\' && (unsigned char)*p >= 0x20) p++;
        if (p < stop || p == r->end) break; /* a byte that needs attention, or the end */
    }
    r->p = p;
}

static void json_string(lua_State *L, json_reader *r) {
    r->p++; /* opening quote */
    const char *start = r->p;
    skip_plain(r);
    if (r->p < r->end && *r->p == '"') { /* fast path: no escapes */
        if (!r->extents) lua_pushlstring(L, start, (size_t)(r->p - start));
        r->p++;
        return;
    }
    /* Escapes: scanning checks them with the same code, adding to a buffer only when building. */
    int build = r->extents == NULL;
    luaL_Buffer b;
    if (build) {
        luaL_buffinit(L, &b);
        luaL_addlstring(&b, start, (size_t)(r->p - start));
    }
#define JSON_ADD(ch) do { if (build) luaL_addchar(&b, (ch)); } while (0)
    while (r->p < r->end && *r->p != '"') {
        unsigned char ch = (unsigned char)*r->p++;
        if (ch < 0x20) json_fail(L, r, "control character in string");
        if (ch != '\\') { JSON_ADD((char)ch); continue; }
        if (r->p >= r->end) break;
        switch (*r->p++) {
        case '"': JSON_ADD('"'); break;
        case '\\': JSON_ADD('\\'); break;
        case '/': JSON_ADD('/'); break;
        case 'b': JSON_ADD('\b'); break;
        case 'f': JSON_ADD('\f'); break;
        case 'n': JSON_ADD('\n'); break;
        case 'r': JSON_ADD('\r'); break;
        case 't': JSON_ADD('\t'); break;
        case 'u': {
            unsigned code = hex4(L, r);
            if (code >= 0xD800 && code <= 0xDBFF) {
                if (r->end - r->p < 6 || r->p[0] != '\\' || r->p[1] != 'u') json_fail(L, r, "lone surrogate");
                r->p += 2;
                unsigned low = hex4(L, r);
                if (low < 0xDC00 || low > 0xDFFF) json_fail(L, r, "bad surrogate pair");
                code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00);
            } else if (code >= 0xDC00 && code <= 0xDFFF) {
                json_fail(L, r, "lone surrogate");
            }
            if (build) add_utf8(&b, code);
            break;
        }
        default: json_fail(L, r, "bad escape");
        }
    }
#undef JSON_ADD
    if (r->p >= r->end) json_fail(L, r, "unterminated string");
    r->p++;
    if (build) luaL_pushresult(&b);
}

/* A number, by the JSON grammar: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)? */
static void json_number(lua_State *L, json_reader *r) {
    const char *start = r->p;
    int negative = 0, integral = 1, overflow = 0;
    uint64_t magnitude = 0;
    if (*r->p == '-') { negative = 1; r->p++; }
    if (!is_digit(r)) json_fail(L, r, "bad number");
    if (*r->p == '0') {
        r->p++;
        if (is_digit(r)) json_fail(L, r, "leading zero in number");
    } else {
        while (is_digit(r)) {
            unsigned digit = (unsigned)(*r->p++ - '0');
            if (magnitude > (UINT64_MAX - digit) / 10) overflow = 1;
            else magnitude = magnitude * 10 + digit;
        }
    }
    if (r->p < r->end && *r->p == '.') {
        integral = 0;
        r->p++;
        if (!is_digit(r)) json_fail(L, r, "digit expected after '.'");
        while (is_digit(r)) r->p++;
    }
    if (r->p < r->end && (*r->p == 'e' || *r->p == 'E')) {
        integral = 0;
        r->p++;
        if (r->p < r->end && (*r->p == '+' || *r->p == '-')) r->p++;
        if (!is_digit(r)) json_fail(L, r, "digit expected in exponent");
        while (is_digit(r)) r->p++;
    }
    if (r->extents) return; /* scanning: the grammar is all that is checked */
    if (integral && !overflow) {
        if (!negative && magnitude <= (uint64_t)LUA_MAXINTEGER) { lua_pushinteger(L, (lua_Integer)magnitude); return; }
        if (negative && magnitude <= (uint64_t)LUA_MAXINTEGER) { lua_pushinteger(L, -(lua_Integer)magnitude); return; }
        if (negative && magnitude == (uint64_t)LUA_MAXINTEGER + 1) { lua_pushinteger(L, LUA_MININTEGER); return; }
    }
    /* A float (or an integer beyond 64 bits): Lua's own conversion, which is locale-independent. The text
     * matched the JSON grammar, which Lua reads the same way. */
    size_t length = (size_t)(r->p - start);
    char text[64];
    if (length < sizeof text) {
        memcpy(text, start, length);
        text[length] = 0;
        if (lua_stringtonumber(L, text) == 0) json_fail(L, r, "bad number");
    } else {
        lua_pushlstring(L, start, length);
        if (lua_stringtonumber(L, lua_tostring(L, -1)) == 0) json_fail(L, r, "bad number");
        lua_remove(L, -2);
    }
}

static void json_value(lua_State *L, json_reader *r);

/* Scanning: records the container starting at r->p; returns its number, for scan_end. */
static size_t scan_begin(lua_State *L, json_reader *r) {
    json_extent extent = { (uint32_t)(r->p - r->start), 0, 0, 0 };
    put(L, r->extents, (const char *)&extent, sizeof extent);
    return r->extents->length / sizeof extent - 1;
}

/* Scanning: the container numbered `number`, of `count` members or elements, ended just before r->p. */
static void scan_end(json_reader *r, size_t number, uint32_t count) {
    json_extent *extents = (json_extent *)r->extents->data;
    extents[number].end = (uint32_t)(r->p - r->start);
    extents[number].count = count;
    extents[number].next = (uint32_t)(r->extents->length / sizeof *extents);
}

static void json_object(lua_State *L, json_reader *r) {
    size_t number = r->extents ? scan_begin(L, r) : 0;
    r->p++;
    if (!r->extents) lua_createtable(L, 0, 4); /* TTN's objects have a few members; skips the first rehashes */
    skip_space(r);
    uint32_t count = 0;
    for (;; count++) {
        if (count == 0 && r->p < r->end && *r->p == '}') break;
        skip_space(r);
        if (r->p >= r->end || *r->p != '"') json_fail(L, r, "expected a string key");
        json_string(L, r);
        skip_space(r);
        if (r->p >= r->end || *r->p != ':') json_fail(L, r, "expected ':'");
        r->p++;
        json_value(L, r);
        if (!r->extents) lua_rawset(L, -3);
        skip_space(r);
        if (r->p < r->end && *r->p == ',') { r->p++; continue; }
        if (r->p < r->end && *r->p == '}') {
            count++;
            break;
        }
        json_fail(L, r, "expected ',' or '}'");
    }
    r->p++;
    if (r->extents) scan_end(r, number, count);
}

static void json_array(lua_State *L, json_reader *r) {
    size_t number = r->extents ? scan_begin(L, r) : 0;
    r->p++;
    if (!r->extents) {
        lua_newtable(L);
        lua_rawgetp(L, LUA_REGISTRYINDEX, &array_key);
        lua_setmetatable(L, -2);
    }
    skip_space(r);
    lua_Integer count = 0;
    for (;;) {
        if (count == 0 && r->p < r->end && *r->p == ']') break;
        json_value(L, r);
        count++;
        if (!r->extents) lua_rawseti(L, -2, count);
        skip_space(r);
        if (r->p < r->end && *r->p == ',') { r->p++; continue; }
        if (r->p < r->end && *r->p == ']') break;
        json_fail(L, r, "expected ',' or ']'");
    }
    r->p++;
    if (r->extents) scan_end(r, number, (uint32_t)count);
}

static int literal(json_reader *r, const char *word, size_t length) {
    if ((size_t)(r->end - r->p) < length || memcmp(r->p, word, length) != 0) return 0;
    r->p += length;
    return 1;
}

static void json_value(lua_State *L, json_reader *r) {
    skip_space(r);
    if (r->p >= r->end) json_fail(L, r, "unexpected end");
    if (++r->depth > TTN_JSON_MAX_DEPTH) json_fail(L, r, "nested too deeply");
    if (!r->extents) luaL_checkstack(L, 4, "JSON nesting");
    char ch = *r->p;
    if (ch == '{') json_object(L, r);
    else if (ch == '[') json_array(L, r);
    else if (ch == '"') json_string(L, r);
    else if (ch == '-' || (ch >= '0' && ch <= '9')) json_number(L, r);
    else if (literal(r, "true", 4)) { if (!r->extents) lua_pushboolean(L, 1); }
    else if (literal(r, "false", 5)) { if (!r->extents) lua_pushboolean(L, 0); }
    else if (literal(r, "null", 4)) { if (!r->extents) lua_rawgetp(L, LUA_REGISTRYINDEX, &null_key); }
    else json_fail(L, r, "unexpected character");
    r->depth--;
}

/* Decodes `json` (or, with `extents`, scans it) and checks that nothing but white space follows. */
static void json_read(lua_State *L, const char *json, size_t length, json_buffer *extents) {
    json_reader r = { json, json, json + length, 0, extents };
    json_value(L, &r);
    skip_space(&r);
    if (r.p != r.end) json_fail(L, &r, "trailing characters");
}

/* ---- getLastMessage()'s lazy tables. ----
 * A handler usually reads a few fields of a 1.6 KB uplink, and decoding all of it into tables (about 60 strings
 * and a dozen tables) was most of a Lua invocation's cost. So the message is checked whole when the script asks
 * for it: by the host, which checked the uplink on arrival and passes along its outline of the containers, or
 * else by a scan here (a malformed message raises there, as before). Each object or array becomes a lazy table:
 * empty but for a hidden key holding its container's number, with a metatable shared by the message's lazy
 * tables that holds the text and the extents.
 *
 * An object of up to 64 members is decoded member by member: looking up a name decodes that member alone
 * (a nested container becomes a lazy table in turn) and stores it in the table, so the next look finds it
 * there. A second hidden key holds one bit per member that was looked up or assigned, so that a member the
 * script removed or replaced is never brought back from the text. An array, or a larger object, is decoded
 * whole on the first look. Either way, once decoded whole (by `#`, tostring, or anything that reads the table
 * raw), the table drops its hidden keys and gets the metatable an eagerly decoded table has (none, or the JSON
 * array mark): from then on it is an ordinary table.
 *
 * Everything that reads or writes a table raw is wrapped to decode its table arguments whole first: next,
 * pairs, rawget, rawset, rawlen, getmetatable, setmetatable, the table library, ttn.json.encode and
 * ttn.json.array. The hidden keys are light userdata, which scripts cannot make, and are gone before any of
 * them can see the table's contents. */

static const char resolved_key = 'r'; /* in a lazy object: the bits of the members looked up or assigned */
#define TTN_LAZY_MEMBERS 64           /* objects up to this size are decoded member by member */

static void lazy_decode(lua_State *L, int index);
static void push_lazy(lua_State *L, const json_extent *extents, size_t number, int is_array, int meta);

/* A walk over the members or elements of one container of a checked text. The checks stay, though: a wrong
 * outline must not make it read out of bounds. */
typedef struct {
    json_reader r;               /* inside the container, at the next member's key or the next element */
    const json_extent *extents;
    size_t containers;           /* how many extents there are */
    size_t child;                /* the number of the next nested container */
    int is_array;
    const char *key;             /* objects: the current member's key, between its quotes */
    size_t key_length;
    int key_is_plain;            /* the key has no escapes: its bytes are its text */
} container_walk;

static void walk_begin(lua_State *L, container_walk *w, const char *text, const json_extent *extents,
                       size_t containers, size_t number) {
    if (number >= containers) luaL_error(L, "invalid JSON: outline out of step"); /* cannot happen: numbers are ours */
    w->r = (json_reader){ text, text + extents[number].start, text + extents[number].end, 0, NULL };
    w->extents = extents;
    w->containers = containers;
    w->child = number + 1;
    w->is_array = *w->r.p == '[';
    w->r.p++;
    skip_space(&w->r);
}

/* Moves to the next member (past its key and colon) or element; 0 at the end of the container. */
static int walk_next(lua_State *L, container_walk *w) {
    json_reader *r = &w->r;
    if (r->p >= r->end || *r->p == ']' || *r->p == '}') return 0;
    if (w->is_array) return 1;
    if (*r->p != '"') json_fail(L, r, "expected a string key");
    w->key = ++r->p;
    skip_plain(r);
    w->key_is_plain = r->p < r->end && *r->p == '"';
    if (!w->key_is_plain) {
        json_buffer scanning = { NULL, 0, 0 }; /* a string scan touches no extents: only the mode is set */
        r->p = w->key - 1;
        r->extents = &scanning;
        json_string(L, r);
        r->extents = NULL;
        r->p--;
    }
    w->key_length = (size_t)(r->p - w->key);
    r->p++;
    skip_space(r);
    if (r->p >= r->end || *r->p != ':') json_fail(L, r, "expected ':'");
    r->p++;
    skip_space(r);
    return 1;
}

static void walk_push_key(lua_State *L, const container_walk *w) {
    if (w->key_is_plain) {
        lua_pushlstring(L, w->key, w->key_length);
    } else {
        json_reader r = w->r;
        r.p = w->key - 1;
        json_string(L, &r);
    }
}

/* Whether the current member's key is the string at `index`. */
static int walk_key_equals(lua_State *L, const container_walk *w, int index, const char *key, size_t length) {
    if (w->key_is_plain) return w->key_length == length && memcmp(w->key, key, length) == 0;
    walk_push_key(L, w);
    int equal = lua_rawequal(L, -1, index);
    lua_pop(L, 1);
    return equal;
}

/* Moves past the current value, pushing it when `push` (a nested container as a lazy table, with the message's
 * lazy metatable at `meta`), and past the comma after it. */
static void walk_value(lua_State *L, container_walk *w, int push, int meta) {
    json_reader *r = &w->r;
    if (r->p < r->end && (*r->p == '{' || *r->p == '[')) {
        size_t child = w->child;
        if (child >= w->containers || w->extents[child].start != (uint32_t)(r->p - r->start)) {
            json_fail(L, r, "outline out of step");
        }
        if (push) push_lazy(L, w->extents, child, *r->p == '[', meta);
        r->p = r->start + w->extents[child].end;
        w->child = w->extents[child].next;
    } else if (push) {
        json_value(L, r);
    } else {
        json_buffer scanning = { NULL, 0, 0 }; /* a scalar's scan touches no extents: only the mode is set */
        r->extents = &scanning;
        json_value(L, r);
        r->extents = NULL;
    }
    skip_space(r);
    if (r->p < r->end && *r->p == ',') {
        r->p++;
        skip_space(r);
    }
}

/* The lazy table at `index`, when it is one: its container's number, and the text, extents and lazy metatable
 * pushed (in that order, the metatable's stack index in `meta`). Returns 0, pushing nothing, for a table that
 * is not lazy (any more). */
static int lazy_state(lua_State *L, int index, size_t *number, const char **text, const json_extent **extents,
                      size_t *containers, int *meta) {
    if (lua_rawgetp(L, index, &lazy_key) != LUA_TNUMBER) {
        lua_pop(L, 1);
        return 0;
    }
    *number = (size_t)lua_tointeger(L, -1);
    lua_pop(L, 1);
    lua_getmetatable(L, index);
    *meta = lua_gettop(L);
    lua_rawgeti(L, *meta, 1);
    lua_rawgeti(L, *meta, 2);
    *text = lua_tostring(L, *meta + 1);
    const json_buffer *buffer = lua_touserdata(L, *meta + 2);
    *extents = (const json_extent *)buffer->data;
    *containers = buffer->length / sizeof **extents;
    lua_pop(L, 2); /* the metatable, which stays on the stack, holds both */
    return 1;
}

static uint64_t resolved_members(lua_State *L, int index) {
    uint64_t bits = lua_rawgetp(L, index, &resolved_key) == LUA_TNUMBER ? (uint64_t)lua_tointeger(L, -1) : 0;
    lua_pop(L, 1);
    return bits;
}

/* Whether the table at `index` is a lazy object decoded member by member; if so, finds the members named by
 * the string at `key`: their bits in `matches`, and a walk standing at the last one's value in `last` (as a
 * whole decode keeps the last of repeated names). The lazy state is pushed as by lazy_state. */
static int find_member(lua_State *L, int index, int key, container_walk *last, uint64_t *matches, int *meta) {
    size_t number, containers;
    const char *text;
    const json_extent *extents;
    if (!lazy_state(L, index, &number, &text, &extents, &containers, meta)) return 0;
    if (number >= containers || text[extents[number].start] != '{' || extents[number].count > TTN_LAZY_MEMBERS) {
        lua_settop(L, *meta - 1);
        return 0;
    }
    *matches = 0;
    if (lua_type(L, key) != LUA_TSTRING) return 1; /* a JSON object has only string keys */
    size_t length;
    const char *name = lua_tolstring(L, key, &length);
    container_walk w;
    walk_begin(L, &w, text, extents, containers, number);
    for (unsigned member = 0; member < TTN_LAZY_MEMBERS && walk_next(L, &w); member++) {
        if (walk_key_equals(L, &w, key, name, length)) {
            *matches |= (uint64_t)1 << member;
            *last = w;
        }
        walk_value(L, &w, 0, *meta);
    }
    return 1;
}

static void mark_resolved(lua_State *L, int index, uint64_t bits) {
    lua_pushinteger(L, (lua_Integer)bits);
    lua_rawsetp(L, index, &resolved_key);
}

static int lazy_index(lua_State *L) {
    lua_settop(L, 2);
    container_walk member;
    uint64_t matches;
    int meta;
    if (!find_member(L, 1, 2, &member, &matches, &meta)) { /* an array, or a large object: decoded whole */
        lazy_decode(L, 1);
        lua_settop(L, 2);
        lua_rawget(L, 1);
        return 1;
    }
    uint64_t resolved = resolved_members(L, 1);
    if (matches == 0 || (matches & resolved)) return 0; /* no such member, or the script removed it */
    walk_value(L, &member, 1, meta);
    lua_pushvalue(L, 2);
    lua_pushvalue(L, -2);
    lua_rawset(L, 1);
    mark_resolved(L, 1, resolved | matches);
    return 1;
}

static int lazy_newindex(lua_State *L) {
    lua_settop(L, 3);
    container_walk member;
    uint64_t matches;
    int meta;
    if (find_member(L, 1, 2, &member, &matches, &meta)) {
        if (matches) mark_resolved(L, 1, resolved_members(L, 1) | matches);
    } else {
        lazy_decode(L, 1);
    }
    lua_settop(L, 3);
    lua_rawset(L, 1);
    return 0;
}

static int lazy_len(lua_State *L) {
    lazy_decode(L, 1);
    lua_pushinteger(L, (lua_Integer)lua_rawlen(L, 1));
    return 1;
}

static int lazy_tostring(lua_State *L) {
    lazy_decode(L, 1);
    luaL_tolstring(L, 1, NULL);
    return 1;
}

/* Pushes a lazy table for container `number` (an array when `is_array`) of `extents`, with the message's lazy
 * metatable at `meta`. An array, or an object decoded whole, is made with room for its members, so that
 * decoding never grows it; an object decoded member by member, with room for a few. */
static void push_lazy(lua_State *L, const json_extent *extents, size_t number, int is_array, int meta) {
    int count = extents[number].count < INT_MAX ? (int)extents[number].count : 0; /* only a size hint */
    if (is_array) lua_createtable(L, count, 1);
    else lua_createtable(L, 0, count <= TTN_LAZY_MEMBERS ? 4 : count + 1);
    lua_pushinteger(L, (lua_Integer)number);
    lua_rawsetp(L, -2, &lazy_key);
    lua_pushvalue(L, meta);
    lua_setmetatable(L, -2);
}

/* Decodes the table at `index` whole if it is a lazy table (keeping what the script looked up or assigned);
 * otherwise does nothing. The text was checked whole, so only memory can fail here (or an outline that does not
 * fit the text, which raises); a table left half filled then stays lazy and is filled again. */
static void lazy_decode(lua_State *L, int index) {
    index = lua_absindex(L, index);
    size_t number, containers;
    const char *text;
    const json_extent *extents;
    int meta;
    if (!lazy_state(L, index, &number, &text, &extents, &containers, &meta)) return;
    uint64_t resolved = resolved_members(L, index);
    container_walk w;
    walk_begin(L, &w, text, extents, containers, number);
    for (size_t member = 0; walk_next(L, &w); member++) {
        if (w.is_array) {
            walk_value(L, &w, 1, meta);
            lua_rawseti(L, index, (lua_Integer)member + 1);
        } else if (member < TTN_LAZY_MEMBERS && (resolved >> member & 1)) {
            walk_value(L, &w, 0, meta); /* the script's own value, or its removal, stands */
        } else {
            walk_push_key(L, &w);
            walk_value(L, &w, 1, meta);
            lua_rawset(L, index);
        }
    }
    if (w.is_array) lua_rawgetp(L, LUA_REGISTRYINDEX, &array_key);
    else lua_pushnil(L);
    lua_setmetatable(L, index);
    lua_pushnil(L);
    lua_rawsetp(L, index, &lazy_key);
    lua_pushnil(L);
    lua_rawsetp(L, index, &resolved_key);
    lua_settop(L, meta - 1);
}

/* Whether `outline` describes containers of a text of `length` bytes that lazy_decode can walk safely. */
static int outline_is_sound(const json_extent *outline, size_t containers, const char *json, size_t length) {
    for (size_t i = 0; i < containers; i++) {
        const json_extent *e = &outline[i];
        if (e->start >= e->end || e->end > length || e->next <= i || e->next > containers) return 0;
        char open = json[e->start], close = json[e->end - 1];
        if (!((open == '{' && close == '}') || (open == '[' && close == ']'))) return 0;
    }
    return 1;
}

/* Pushes the uplink `json` for a script: an object or array as a lazy table, anything else decoded. Its
 * containers come from the host's `outline` when it checked the text already, or else from scanning it whole
 * now, so that a malformed one raises here. */
static void push_message(lua_State *L, const char *json, size_t length, const uint32_t *outline, size_t containers) {
    json_buffer *extents = lua_newuserdatauv(L, sizeof(json_buffer), 0);
    *extents = (json_buffer){ NULL, 0, 0 };
    lua_rawgetp(L, LUA_REGISTRYINDEX, &buffer_key);
    lua_setmetatable(L, -2);
    if (outline && containers > 0 && outline_is_sound((const json_extent *)outline, containers, json, length)) {
        put(L, extents, (const char *)outline, containers * sizeof(json_extent));
    } else {
        json_read(L, json, length, extents);
    }
    if (extents->length == 0) {
        lua_pop(L, 1);
        json_read(L, json, length, NULL);
        return;
    }
    static const luaL_Reg metamethods[] = {
        { "__index", lazy_index }, { "__newindex", lazy_newindex }, { "__len", lazy_len },
        { "__tostring", lazy_tostring }, { NULL, NULL }
    };
    lua_createtable(L, 2, 5); /* the lazy metatable */
    lua_pushlstring(L, json, length);
    lua_rawseti(L, -2, 1);
    lua_pushvalue(L, -2);
    lua_rawseti(L, -2, 2);
    luaL_setfuncs(L, metamethods, 0);
    lua_pushboolean(L, 0);
    lua_setfield(L, -2, "__metatable");
    const json_extent *root = (const json_extent *)extents->data;
    push_lazy(L, root, 0, json[root->start] == '[', lua_gettop(L));
    lua_replace(L, -3);
    lua_pop(L, 1);
}

/* A library function that reads or writes tables raw (upvalue 1), called with its table arguments decoded. */
static int with_tables_decoded(lua_State *L) {
    int count = lua_gettop(L);
    for (int i = 1; i <= count; i++) {
        if (lua_type(L, i) == LUA_TTABLE) lazy_decode(L, i);
    }
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 1);
    lua_call(L, count, LUA_MULTRET);
    return lua_gettop(L);
}

/* ttn.json.decode(text) */
static int lua_json_decode(lua_State *L) {
    size_t length;
    const char *text = luaL_checklstring(L, 1, &length);
    json_read(L, text, length, NULL);
    return 1;
}

/* ttn.json.array([t]): marks `t` (or a new table) as a JSON array, so that it encodes as [] when empty. */
static int lua_json_array(lua_State *L) {
    if (lua_isnoneornil(L, 1)) {
        lua_settop(L, 0);
        lua_newtable(L);
    } else {
        luaL_checktype(L, 1, LUA_TTABLE);
        lua_settop(L, 1);
        lazy_decode(L, 1);
        if (lua_getmetatable(L, 1)) {
            lua_rawgetp(L, LUA_REGISTRYINDEX, &array_key);
            if (!lua_rawequal(L, -1, -2)) luaL_argerror(L, 1, "the table already has a metatable");
            lua_pop(L, 2);
        }
    }
    lua_rawgetp(L, LUA_REGISTRYINDEX, &array_key);
    lua_setmetatable(L, 1);
    return 1;
}

/* ---- Lua -> JSON. Marked tables and sequences become arrays; nesting (and so cycles) is bounded. ---- */

static void put_text(lua_State *L, json_buffer *buffer, const char *text) { put(L, buffer, text, strlen(text)); }

static void json_encode_string(lua_State *L, json_buffer *b, const char *s, size_t length) {
    put(L, b, "\"", 1);
    size_t run = 0;
    for (size_t i = 0; i < length; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch >= 0x20 && ch != '"' && ch != '\\') continue;
        put(L, b, s + run, i - run);
        run = i + 1;
        char escape[8];
        switch (ch) {
        case '"': put_text(L, b, "\\\""); break;
        case '\\': put_text(L, b, "\\\\"); break;
        case '\n': put_text(L, b, "\\n"); break;
        case '\r': put_text(L, b, "\\r"); break;
        case '\t': put_text(L, b, "\\t"); break;
        default: snprintf(escape, sizeof escape, "\\u%04x", ch); put_text(L, b, escape);
        }
    }
    put(L, b, s + run, length - run);
    put(L, b, "\"", 1);
}

/* The shortest text that reads back as the same double, always with a fraction or exponent so that it
 * decodes as a float again (3.0, not 3), and with '.' whatever the C locale says. */
static void format_float(lua_State *L, double value, char *text, size_t size) {
    if (!isfinite(value)) luaL_error(L, "json.encode: cannot encode NaN or infinity");
    for (int precision = 15; precision <= 17; precision++) {
        snprintf(text, size, "%.*g", precision, value);
        if (strtod(text, NULL) == value) break;
    }
    char point = localeconv()->decimal_point[0];
    char *mark = strchr(text, point);
    if (mark) *mark = '.';
    if (!strpbrk(text, ".e")) strncat(text, ".0", size - strlen(text) - 1);
}

/* Whether the table at `index` is a JSON array: marked as one, or a non-empty sequence 1..n. */
static int is_array(lua_State *L, int index, lua_Integer *count) {
    *count = (lua_Integer)lua_rawlen(L, index);
    if (lua_getmetatable(L, index)) {
        lua_rawgetp(L, LUA_REGISTRYINDEX, &array_key);
        int marked = lua_rawequal(L, -1, -2);
        lua_pop(L, 2);
        if (marked) return 1;
    }
    if (*count == 0) return 0;
    lua_Integer keys = 0;
    lua_pushnil(L);
    while (lua_next(L, index)) {
        lua_pop(L, 1);
        if (!lua_isinteger(L, -1)) { lua_pop(L, 1); return 0; }
        keys++;
    }
    return keys == *count;
}

static void json_encode_value(lua_State *L, json_buffer *b, int index, int depth);

static void json_encode_table(lua_State *L, json_buffer *b, int index, int depth) {
    char text[32];
    luaL_checkstack(L, 6, "json.encode nesting");
    lazy_decode(L, index);
    lua_Integer count;
    if (is_array(L, index, &count)) {
        put(L, b, "[", 1);
        for (lua_Integer i = 1; i <= count; i++) {
            if (i > 1) put(L, b, ",", 1);
            lua_rawgeti(L, index, i);
            json_encode_value(L, b, -1, depth + 1);
            lua_pop(L, 1);
        }
        put(L, b, "]", 1);
        return;
    }
    put(L, b, "{", 1);
    int first = 1;
    lua_pushnil(L);
    while (lua_next(L, index)) {
        if (!first) put(L, b, ",", 1);
        first = 0;
        if (lua_type(L, -2) == LUA_TSTRING) {
            size_t length;
            const char *key = lua_tolstring(L, -2, &length);
            json_encode_string(L, b, key, length);
        } else if (lua_isinteger(L, -2)) {
            snprintf(text, sizeof text, "\"%lld\"", (long long)lua_tointeger(L, -2));
            put_text(L, b, text);
        } else {
            luaL_error(L, "json.encode: object keys must be strings or integers, not %s", luaL_typename(L, -2));
        }
        put(L, b, ":", 1);
        json_encode_value(L, b, -1, depth + 1);
        lua_pop(L, 1);
    }
    put(L, b, "}", 1);
}

static void json_encode_value(lua_State *L, json_buffer *b, int index, int depth) {
    if (depth > TTN_JSON_MAX_DEPTH) luaL_error(L, "json.encode: nested too deeply (is there a cycle?)");
    index = lua_absindex(L, index);
    char text[64];
    switch (lua_type(L, index)) {
    case LUA_TNIL: put_text(L, b, "null"); break;
    case LUA_TBOOLEAN: put_text(L, b, lua_toboolean(L, index) ? "true" : "false"); break;
    case LUA_TNUMBER:
        if (lua_isinteger(L, index)) snprintf(text, sizeof text, "%lld", (long long)lua_tointeger(L, index));
        else format_float(L, lua_tonumber(L, index), text, sizeof text);
        put_text(L, b, text);
        break;
    case LUA_TSTRING: {
        size_t length;
        const char *s = lua_tolstring(L, index, &length);
        json_encode_string(L, b, s, length);
        break;
    }
    case LUA_TTABLE: json_encode_table(L, b, index, depth); break;
    case LUA_TUSERDATA: {
        lua_rawgetp(L, LUA_REGISTRYINDEX, &null_key);
        int null = lua_rawequal(L, -1, index);
        lua_pop(L, 1);
        if (null) {
            put_text(L, b, "null");
            break;
        }
    } /* fall through */
    default: luaL_error(L, "json.encode: cannot encode a %s", luaL_typename(L, index));
    }
}

/* ttn.json.encode(value) */
static int lua_json_encode(lua_State *L) {
    luaL_checkany(L, 1);
    lua_settop(L, 1);
    json_buffer *buffer = lua_newuserdatauv(L, sizeof(json_buffer), 0);
    *buffer = (json_buffer){ NULL, 0, 0 };
    lua_rawgetp(L, LUA_REGISTRYINDEX, &buffer_key);
    lua_setmetatable(L, -2);
    json_encode_value(L, buffer, 1, 0);
    lua_pushlstring(L, buffer->data ? buffer->data : "", buffer->length);
    return 1;
}

/* ---- The script API implemented in C. ---- */

static int lua_set_message_handler(lua_State *L) {
    luaL_checktype(L, 1, LUA_TFUNCTION);
    lua_settop(L, 1);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &handler_key);
    return 0;
}

/* getLastMessage(): the triggering uplink as a (lazy) table, made on first use and kept for the invocation. */
static int lua_get_last_message(lua_State *L) {
    if (lua_rawgetp(L, LUA_REGISTRYINDEX, &message_key) != LUA_TNIL) return 1;
    lua_pop(L, 1);
    ttn_context *c = context_of(L);
    if (!c->message) return 0;
    push_message(L, c->message, c->message_length, c->outline, c->outline_containers);
    lua_pushvalue(L, -1);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &message_key);
    return 1;
}

static int null_tostring(lua_State *L) {
    lua_pushliteral(L, "null");
    return 1;
}

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
    else lua_rawgetp(L, LUA_REGISTRYINDEX, &env_key);
    if (!lua_setupvalue(L, -2, 1)) lua_pop(L, 1);
    return 1;
}

/* setmetatable without __gc: a finalizer would run Lua code outside any invocation (during a collection
 * started by the host, or when the state closes), where no time limit applies. */
static int sandbox_setmetatable(lua_State *L) {
    if (lua_type(L, 1) == LUA_TTABLE) lazy_decode(L, 1);
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
    /* Functions that touch tables raw decode lazy tables first (see getLastMessage()'s lazy tables). */
    static const char *const raw_globals[] = { "next", "pairs", "rawget", "rawset", "rawlen", "getmetatable", NULL };
    for (const char *const *name = raw_globals; *name; name++) {
        lua_getglobal(L, *name);
        lua_pushcclosure(L, with_tables_decoded, 1);
        lua_setglobal(L, *name);
    }
    static const char *const table_functions[] = { "concat", "insert", "move", "remove", "sort", "unpack", NULL };
    lua_getglobal(L, LUA_TABLIBNAME);
    for (const char *const *name = table_functions; *name; name++) {
        lua_getfield(L, -1, *name);
        lua_pushcclosure(L, with_tables_decoded, 1);
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
    lua_rawsetp(L, LUA_REGISTRYINDEX, &array_key);
    lua_createtable(L, 0, 1);
    lua_pushcfunction(L, json_buffer_gc);
    lua_setfield(L, -2, "__gc");
    lua_rawsetp(L, LUA_REGISTRYINDEX, &buffer_key);
    lua_newuserdatauv(L, 0, 0);
    lua_createtable(L, 0, 3);
    lua_pushcfunction(L, null_tostring);
    lua_setfield(L, -2, "__tostring");
    lua_pushliteral(L, "ttn.null");
    lua_setfield(L, -2, "__name");
    lua_pushboolean(L, 0);
    lua_setfield(L, -2, "__metatable");
    lua_setmetatable(L, -2);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &null_key);

    lua_pushcfunction(L, lua_set_message_handler);
    lua_setglobal(L, "setMessageHandler");
    lua_pushcfunction(L, lua_get_last_message);
    lua_setglobal(L, "getLastMessage");

    lua_createtable(L, 0, 16);                     /* ttn */
    lua_createtable(L, 0, 3);                      /* ttn.json */
    lua_pushcfunction(L, lua_json_decode);
    lua_setfield(L, -2, "decode");
    lua_pushcfunction(L, lua_json_encode);
    lua_setfield(L, -2, "encode");
    lua_pushcfunction(L, lua_json_array);
    lua_setfield(L, -2, "array");
    lua_setfield(L, -2, "json");
    lua_rawgetp(L, LUA_REGISTRYINDEX, &null_key);
    lua_setfield(L, -2, "null");
    lua_setglobal(L, "ttn");
    return 0;
}

int ttn_state_open(lua_State *L) {
    return protected_call(L, open_protected, 0, 0);
}

/* The Lua half of the API. It runs with the real globals as its environment, and keeps the host functions
 * registered as __ttn_* in locals, removing the globals. */
static const char prelude[] =
    "local host_publish, host_log, host_set_device, host_all = __ttn_publish, __ttn_log, __ttn_set_device, __ttn_all\n"
    "__ttn_publish, __ttn_log, __ttn_set_device, __ttn_all = nil, nil, nil, nil\n"
    "local json = ttn.json\n"
    "local b64 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/'\n"
    "local b64index = {}\n"
    "for i = 1, 64 do b64index[b64:byte(i)] = i - 1 end\n"
    "local function b64encode(s)\n"
    "  local out = {}\n"
    "  for i = 1, #s, 3 do\n"
    "    local a, b, c = s:byte(i, i + 2)\n"
    "    local n = a * 65536 + (b or 0) * 256 + (c or 0)\n"
    "    local chars = { b64:sub((n >> 18) + 1, (n >> 18) + 1), b64:sub(((n >> 12) & 63) + 1, ((n >> 12) & 63) + 1),\n"
    "      b and b64:sub(((n >> 6) & 63) + 1, ((n >> 6) & 63) + 1) or '=', c and b64:sub((n & 63) + 1, (n & 63) + 1) or '=' }\n"
    "    out[#out + 1] = table.concat(chars)\n"
    "  end\n"
    "  return table.concat(out)\n"
    "end\n"
    "local function b64decode(s)\n"
    "  if type(s) ~= 'string' then error('base64.decode: expected a string', 2) end\n"
    "  s = s:gsub('=+$', '')\n"
    "  local out, bits, count = {}, 0, 0\n"
    "  for i = 1, #s do\n"
    "    local v = b64index[s:byte(i)]\n"
    "    if not v then error('base64.decode: invalid character at position ' .. i, 2) end\n"
    "    bits, count = (bits << 6) | v, count + 6\n"
    "    if count >= 8 then count = count - 8; out[#out + 1] = string.char((bits >> count) & 255) end\n"
    "  end\n"
    "  return table.concat(out)\n"
    "end\n"
    "local function bytes_to_string(bytes, who)\n"
    "  if type(bytes) == 'string' then return bytes end\n"
    "  if type(bytes) ~= 'table' then error(who .. ': bytes must be a string or an array of integers 0..255', 3) end\n"
    "  local chars = {}\n"
    "  for i, v in ipairs(bytes) do\n"
    "    if math.type(v) ~= 'integer' or v < 0 or v > 255 then error(who .. ': bytes[' .. i .. '] is not an integer 0..255', 3) end\n"
    "    chars[i] = string.char(v)\n"
    "  end\n"
    "  return table.concat(chars)\n"
    "end\n"
    "ttn.base64 = { encode = function(s) return b64encode(bytes_to_string(s, 'base64.encode')) end, decode = b64decode }\n"
    "ttn.hex = {\n"
    "  encode = function(s) return (bytes_to_string(s, 'hex.encode'):gsub('.', function(c) return string.format('%02X', c:byte()) end)) end,\n"
    "  decode = function(s)\n"
    "    if type(s) ~= 'string' or #s % 2 ~= 0 or s:find('[^%x]') then error('hex.decode: expected an even number of hex digits', 2) end\n"
    "    return (s:gsub('%x%x', function(h) return string.char(tonumber(h, 16)) end))\n"
    "  end,\n"
    "}\n"
    "function ttn.bytes(s) return { s:byte(1, -1) } end\n"
    "function ttn.payloadBytes(m)\n"
    "  m = m or getLastMessage()\n"
    "  local up = m and m.uplink_message\n"
    "  if not up or not up.frm_payload then return {} end\n"
    "  return { b64decode(up.frm_payload):byte(1, -1) }\n"
    "end\n"
    "local function log(...)\n"
    "  local parts = table.pack(...)\n"
    "  for i = 1, parts.n do parts[i] = tostring(parts[i]) end\n"
    "  host_log(table.concat(parts, ' ', 1, parts.n))\n"
    "end\n"
    "ttn.log, print = log, log\n"
    "function getAllMessages()\n"
    "  local all = host_all()\n"
    "  for i = 1, #all do all[i] = json.decode(all[i]) end\n"
    "  return all\n"
    "end\n"
    "function setDeviceID(id)\n"
    "  if type(id) ~= 'string' or id == '' then error('setDeviceID: expected a device id string', 2) end\n"
    "  host_set_device(id)\n"
    "end\n"
    "local priorities = { LOWEST = true, LOW = true, BELOW_NORMAL = true, NORMAL = true, ABOVE_NORMAL = true, HIGH = true, HIGHEST = true }\n"
    /* The host returns why it did not send (a refused downlink, the downlink limit); raised at the script's line. */
    "local function send(body, device, schedule)\n"
    "  local refusal = host_publish(body, device, schedule)\n"
    "  if refusal then error(refusal, 3) end\n"
    "end\n"
    "function publish(message, device)\n"
    "  if device ~= nil and type(device) ~= 'string' then error('publish: the device id must be a string', 2) end\n"
    "  if type(message) == 'string' then send(message, device, nil) return end\n"
    "  if type(message) ~= 'table' then error('publish: expected a JSON string or a table {f_port=, bytes= | frm_payload= | decoded_payload=}', 2) end\n"
    "  local port = message.f_port\n"
    "  if math.type(port) ~= 'integer' or port < 1 or port > 223 then error('publish: f_port must be an integer from 1 to 223', 2) end\n"
    "  local item = { f_port = port, confirmed = message.confirmed == true, priority = message.priority or 'NORMAL' }\n"
    "  if not priorities[item.priority] then error('publish: priority must be one of LOWEST, LOW, BELOW_NORMAL, NORMAL, ABOVE_NORMAL, HIGH, HIGHEST', 2) end\n"
    "  if message.bytes ~= nil then item.frm_payload = b64encode(bytes_to_string(message.bytes, 'publish'))\n"
    "  elseif message.frm_payload ~= nil then item.frm_payload = message.frm_payload\n"
    "  elseif message.decoded_payload ~= nil then item.decoded_payload = message.decoded_payload\n"
    "  else error('publish: give the payload as bytes=, frm_payload= (base64) or decoded_payload=', 2) end\n"
    "  if message.correlation_ids ~= nil then item.correlation_ids = message.correlation_ids end\n"
    "  local schedule = message.schedule or 'push'\n"
    "  if schedule ~= 'push' and schedule ~= 'replace' then error('publish: schedule must be \"push\" or \"replace\"', 2) end\n"
    "  send(json.encode({ downlinks = { item } }), device, schedule)\n"
    "end\n"
    "ttn.setMessageHandler, ttn.getLastMessage, ttn.getAllMessages = setMessageHandler, getLastMessage, getAllMessages\n"
    "ttn.publish, ttn.setDeviceID = publish, setDeviceID\n";


/* Runs the prelude, then gives the script its own _ENV: writes land in it, reads fall through to a read-only
 * view of the globals, so a script cannot break the API (or the libraries it uses) by assigning a global. */
static int finish_protected(lua_State *L) {
    if (luaL_loadbufferx(L, prelude, sizeof prelude - 1, "=ttn", "t") != LUA_OK) return lua_error(L);
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
    lua_rawsetp(L, LUA_REGISTRYINDEX, &env_key);
    return 0;
}

int ttn_state_finish(lua_State *L) {
    return protected_call(L, finish_protected, 0, 0);
}

/* A run whose limit fired inside a coroutine can still return normally (the resume caught the error and the
 * main thread returned without running another instruction): it failed all the same. */
static int aborted_status(lua_State *L, int status) {
    if (status != LUA_OK || context_of(L)->abort_reason == TTN_ABORT_NONE) return status;
    /* Outside any protected call: the push must not meet the memory cap (it would raise and panic). */
    context_of(L)->enforce_limit = 0;
    lua_pushstring(L, context_of(L)->abort_reason == TTN_ABORT_TIME ? "time limit exceeded"
        : context_of(L)->abort_reason == TTN_ABORT_INSTRUCTIONS ? "instruction limit exceeded" : "interrupted by the host");
    return LUA_ERRRUN;
}

int ttn_load(lua_State *L, const char *source, size_t length, const char *chunkname) {
    int status = luaL_loadbufferx(L, source, length, chunkname, "t");
    if (status != LUA_OK) return status;
    lua_rawgetp(L, LUA_REGISTRYINDEX, &env_key);
    lua_setupvalue(L, -2, 1);                      /* a main chunk's only upvalue is _ENV */
    lua_pushcfunction(L, ttn_traceback);
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

int ttn_handle(lua_State *L, const char *json, size_t length, const uint32_t *outline, size_t containers) {
    ttn_context *c = context_of(L);
    c->message = json;
    c->message_length = length;
    c->outline = outline;
    c->outline_containers = containers;
    int status = protected_call(L, handle_protected, 0, 0);
    c->message = NULL;
    c->message_length = 0;
    c->outline = NULL;
    c->outline_containers = 0;
    /* Forget the decoded table. Assigning nil to a registry key never allocates and never raises. */
    lua_pushnil(L);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &message_key);
    return aborted_status(L, status);
}
