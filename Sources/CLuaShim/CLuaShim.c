#define _GNU_SOURCE
#include "CLuaShim.h"

#include <lauxlib.h>
#include <lualib.h>
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdatomic.h>
#include <time.h>

struct ttn_context {
    size_t used, peak, limit;
    int enforce_limit;              /* the memory cap applies only while script code runs */
    long long budget;               /* instructions left, in units of TTN_HOOK_STEP */
    long long deadline_ns;          /* CLOCK_MONOTONIC deadline; 0 = none */
    atomic_int *interrupt;          /* raised from any thread to abort */
    int abort_reason;               /* enum ttn_abort of the last abort */
    const char *message;            /* the current invocation's uplink JSON (not owned) */
    size_t message_length;
};

#define TTN_HOOK_STEP 1000

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

/* Registry keys: their addresses are unique. */
static const char handler_key = 'h';
static const char message_key = 'm';
static const char array_key = 'a';

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
    if (c->enforce_limit && nsize > old && c->used + (nsize - old) > c->limit) return NULL;
    void *p = realloc(ptr, nsize);
    if (!p) return NULL;
    c->used = c->used - old + nsize;
    if (c->used > c->peak) c->peak = c->used;
    return p;
}

static int ttn_panic(lua_State *L) {
    const char *message = lua_tostring(L, -1);
    fprintf(stderr, "TTNLua: unprotected Lua error (a bug in TTNLua): %s\n", message ? message : "?");
    abort();
}

lua_State *ttn_state_new(ttn_context *context) {
    lua_State *L = lua_newstate(ttn_alloc, context);
    if (L) lua_atpanic(L, ttn_panic);
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
        /* From now on fire at every instruction, so a script's own pcall cannot swallow the abort. */
        lua_sethook(L, ttn_hook, LUA_MASKCOUNT, 1);
    }
    /* Level 0 is the running Lua function, so the message names the script line the limit caught. */
    luaL_where(L, 0);
    switch (c->abort_reason) {
    case TTN_ABORT_TIME: lua_pushliteral(L, "time limit exceeded"); break;
    case TTN_ABORT_INSTRUCTIONS: lua_pushliteral(L, "instruction limit exceeded"); break;
    default: lua_pushliteral(L, "interrupted by the host"); break;
    }
    lua_concat(L, 2);
    lua_error(L);
}

void ttn_arm(lua_State *L, long long instructions, long long timeout_ns) {
    ttn_context *c = context_of(L);
    c->budget = instructions / TTN_HOOK_STEP;
    c->deadline_ns = timeout_ns > 0 ? now_ns() + timeout_ns : 0;
    c->abort_reason = TTN_ABORT_NONE;
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

/* Calls f with the `nargs` values on top of the stack, under a traceback handler. */
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
    c->enforce_limit = 0; /* Swift code may allocate (push strings, tables) without hitting the cap. */
    int results = hb->fn(L, hb->box);
    c->enforce_limit = enforced;
    if (results < 0) return lua_error(L); /* the longjmp starts here, in C, after the Swift frame returned */
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

/* ---- JSON -> Lua. Objects become tables, arrays sequences (marked), integers Lua integers, null ttn.null. ---- */

typedef struct { const char *start, *p, *end; int depth; } json_reader;

static void json_fail(lua_State *L, json_reader *r, const char *what) {
    luaL_error(L, "invalid JSON: %s at byte %d", what, (int)(r->p - r->start));
}

static void skip_space(json_reader *r) {
    while (r->p < r->end && (*r->p == ' ' || *r->p == '\t' || *r->p == '\n' || *r->p == '\r')) r->p++;
}

static void json_value(lua_State *L, json_reader *r);

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

static void json_string(lua_State *L, json_reader *r) {
    r->p++; /* opening quote */
    const char *start = r->p;
    while (r->p < r->end && *r->p != '"' && *r->p != '\\' && (unsigned char)*r->p >= 0x20) r->p++;
    if (r->p < r->end && *r->p == '"') { /* fast path: no escapes */
        lua_pushlstring(L, start, (size_t)(r->p - start));
        r->p++;
        return;
    }
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    luaL_addlstring(&b, start, (size_t)(r->p - start));
    while (r->p < r->end && *r->p != '"') {
        unsigned char ch = (unsigned char)*r->p++;
        if (ch < 0x20) json_fail(L, r, "control character in string");
        if (ch != '\\') { luaL_addchar(&b, (char)ch); continue; }
        if (r->p >= r->end) break;
        char e = *r->p++;
        switch (e) {
        case '"': luaL_addchar(&b, '"'); break;
        case '\\': luaL_addchar(&b, '\\'); break;
        case '/': luaL_addchar(&b, '/'); break;
        case 'b': luaL_addchar(&b, '\b'); break;
        case 'f': luaL_addchar(&b, '\f'); break;
        case 'n': luaL_addchar(&b, '\n'); break;
        case 'r': luaL_addchar(&b, '\r'); break;
        case 't': luaL_addchar(&b, '\t'); break;
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
            char utf8[4];
            int n;
            if (code < 0x80) { utf8[0] = (char)code; n = 1; }
            else if (code < 0x800) { utf8[0] = (char)(0xC0 | (code >> 6)); utf8[1] = (char)(0x80 | (code & 0x3F)); n = 2; }
            else if (code < 0x10000) {
                utf8[0] = (char)(0xE0 | (code >> 12)); utf8[1] = (char)(0x80 | ((code >> 6) & 0x3F));
                utf8[2] = (char)(0x80 | (code & 0x3F)); n = 3;
            } else {
                utf8[0] = (char)(0xF0 | (code >> 18)); utf8[1] = (char)(0x80 | ((code >> 12) & 0x3F));
                utf8[2] = (char)(0x80 | ((code >> 6) & 0x3F)); utf8[3] = (char)(0x80 | (code & 0x3F)); n = 4;
            }
            luaL_addlstring(&b, utf8, (size_t)n);
            break;
        }
        default: json_fail(L, r, "bad escape");
        }
    }
    if (r->p >= r->end) json_fail(L, r, "unterminated string");
    r->p++;
    luaL_pushresult(&b);
}

static void json_number(lua_State *L, json_reader *r) {
    const char *start = r->p;
    int integral = 1;
    if (r->p < r->end && *r->p == '-') r->p++;
    if (r->p >= r->end || *r->p < '0' || *r->p > '9') json_fail(L, r, "bad number");
    while (r->p < r->end) {
        char ch = *r->p;
        if (ch >= '0' && ch <= '9') r->p++;
        else if (ch == '.' || ch == 'e' || ch == 'E' || ch == '+' || (ch == '-' && r->p > start)) { integral = 0; r->p++; }
        else break;
    }
    char text[64];
    size_t length = (size_t)(r->p - start);
    if (length >= sizeof text) { integral = 0; length = sizeof text - 1; }
    memcpy(text, start, length);
    text[length] = 0;
    char *end;
    if (integral) {
        errno = 0;
        long long value = strtoll(text, &end, 10);
        if (errno == 0 && *end == 0) { lua_pushinteger(L, (lua_Integer)value); return; }
    }
    double value = strtod(text, &end);
    if (*end != 0) json_fail(L, r, "bad number");
    lua_pushnumber(L, value);
}

static void mark_array(lua_State *L) {
    lua_rawgetp(L, LUA_REGISTRYINDEX, &array_key);
    lua_setmetatable(L, -2);
}

static void json_value(lua_State *L, json_reader *r) {
    skip_space(r);
    if (r->p >= r->end) json_fail(L, r, "unexpected end");
    if (++r->depth > 200) luaL_error(L, "invalid JSON: nested more than 200 levels");
    luaL_checkstack(L, 4, "JSON nesting");
    char ch = *r->p;
    if (ch == '{') {
        r->p++;
        lua_newtable(L);
        skip_space(r);
        if (r->p < r->end && *r->p == '}') { r->p++; r->depth--; return; }
        for (;;) {
            skip_space(r);
            if (r->p >= r->end || *r->p != '"') json_fail(L, r, "expected a string key");
            json_string(L, r);
            skip_space(r);
            if (r->p >= r->end || *r->p != ':') json_fail(L, r, "expected ':'");
            r->p++;
            json_value(L, r);
            lua_rawset(L, -3);
            skip_space(r);
            if (r->p < r->end && *r->p == ',') { r->p++; continue; }
            if (r->p < r->end && *r->p == '}') { r->p++; break; }
            json_fail(L, r, "expected ',' or '}'");
        }
    } else if (ch == '[') {
        r->p++;
        lua_newtable(L);
        mark_array(L);
        skip_space(r);
        if (r->p < r->end && *r->p == ']') { r->p++; r->depth--; return; }
        for (lua_Integer i = 1;; i++) {
            json_value(L, r);
            lua_rawseti(L, -2, i);
            skip_space(r);
            if (r->p < r->end && *r->p == ',') { r->p++; continue; }
            if (r->p < r->end && *r->p == ']') { r->p++; break; }
            json_fail(L, r, "expected ',' or ']'");
        }
    } else if (ch == '"') {
        json_string(L, r);
    } else if (ch == '-' || (ch >= '0' && ch <= '9')) {
        json_number(L, r);
    } else if (r->end - r->p >= 4 && memcmp(r->p, "true", 4) == 0) {
        r->p += 4; lua_pushboolean(L, 1);
    } else if (r->end - r->p >= 5 && memcmp(r->p, "false", 5) == 0) {
        r->p += 5; lua_pushboolean(L, 0);
    } else if (r->end - r->p >= 4 && memcmp(r->p, "null", 4) == 0) {
        r->p += 4; lua_pushlightuserdata(L, NULL);
    } else {
        json_fail(L, r, "unexpected character");
    }
    r->depth--;
}

static void json_decode_into(lua_State *L, const char *json, size_t length) {
    json_reader r = { json, json, json + length, 0 };
    json_value(L, &r);
    skip_space(&r);
    if (r.p != r.end) luaL_error(L, "invalid JSON: trailing characters");
}

/* ttn.json.decode(text) */
static int lua_json_decode(lua_State *L) {
    size_t length;
    const char *text = luaL_checklstring(L, 1, &length);
    json_decode_into(L, text, length);
    return 1;
}

static int json_push_protected(lua_State *L) {
    const char *json = lua_touserdata(L, 1);
    size_t length = (size_t)lua_tointeger(L, 2);
    json_decode_into(L, json, length);
    return 1;
}

int ttn_json_push(lua_State *L, const char *json, size_t length) {
    lua_pushlightuserdata(L, (void *)json);
    lua_pushinteger(L, (lua_Integer)length);
    return protected_call(L, json_push_protected, 2, 1);
}

/* ---- Lua -> JSON. Sequences and marked tables become arrays; cycles stop at a depth limit. ---- */

/* A growable byte buffer in a userdata, freed by __gc even when encoding raises an error. Unlike
 * luaL_Buffer it never moves values on the stack, so the encoder can push and pop freely. */
typedef struct { char *data; size_t length, capacity; } json_buffer;

static int json_buffer_gc(lua_State *L) {
    json_buffer *buffer = lua_touserdata(L, 1);
    free(buffer->data);
    buffer->data = NULL;
    return 0;
}

static void put(lua_State *L, json_buffer *buffer, const char *bytes, size_t length) {
    if (buffer->length + length > buffer->capacity) {
        size_t capacity = buffer->capacity ? buffer->capacity : 256;
        while (capacity < buffer->length + length) capacity *= 2;
        char *data = realloc(buffer->data, capacity);
        if (!data) luaL_error(L, "json.encode: out of memory");
        buffer->data = data;
        buffer->capacity = capacity;
    }
    memcpy(buffer->data + buffer->length, bytes, length);
    buffer->length += length;
}

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

static void json_encode_value(lua_State *L, json_buffer *b, int index, int depth) {
    if (depth > 100) luaL_error(L, "json.encode: nested more than 100 levels (a cycle?)");
    index = lua_absindex(L, index);
    char text[64];
    switch (lua_type(L, index)) {
    case LUA_TNIL: put_text(L, b, "null"); break;
    case LUA_TLIGHTUSERDATA:
        if (lua_touserdata(L, index) != NULL) luaL_error(L, "json.encode: cannot encode a userdata");
        put_text(L, b, "null");
        break;
    case LUA_TBOOLEAN: put_text(L, b, lua_toboolean(L, index) ? "true" : "false"); break;
    case LUA_TNUMBER:
        if (lua_isinteger(L, index)) {
            snprintf(text, sizeof text, "%lld", (long long)lua_tointeger(L, index));
        } else {
            double value = lua_tonumber(L, index);
            if (!isfinite(value)) luaL_error(L, "json.encode: cannot encode NaN or infinity");
            /* The shortest form that reads back as the same double: 3.4, not 3.3999999999999999. */
            for (int precision = 15; precision <= 17; precision++) {
                snprintf(text, sizeof text, "%.*g", precision, value);
                if (strtod(text, NULL) == value) break;
            }
        }
        put_text(L, b, text);
        break;
    case LUA_TSTRING: {
        size_t length;
        const char *s = lua_tolstring(L, index, &length);
        json_encode_string(L, b, s, length);
        break;
    }
    case LUA_TTABLE: {
        luaL_checkstack(L, 6, "json.encode nesting");
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
        } else {
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
                    luaL_error(L, "json.encode: object keys must be strings or integers");
                }
                put(L, b, ":", 1);
                json_encode_value(L, b, -1, depth + 1);
                lua_pop(L, 1);
            }
            put(L, b, "}", 1);
        }
        break;
    }
    default: luaL_error(L, "json.encode: cannot encode a %s", luaL_typename(L, index));
    }
}

/* ttn.json.encode(value) */
static int lua_json_encode(lua_State *L) {
    luaL_checkany(L, 1);
    lua_settop(L, 1);
    json_buffer *buffer = lua_newuserdatauv(L, sizeof(json_buffer), 0);
    *buffer = (json_buffer){ NULL, 0, 0 };
    lua_createtable(L, 0, 1);
    lua_pushcfunction(L, json_buffer_gc);
    lua_setfield(L, -2, "__gc");
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

/* getLastMessage(): the triggering uplink as a table, decoded on first use and cached for the invocation. */
static int lua_get_last_message(lua_State *L) {
    if (lua_rawgetp(L, LUA_REGISTRYINDEX, &message_key) != LUA_TNIL) return 1;
    lua_pop(L, 1);
    ttn_context *c = context_of(L);
    if (!c->message) return 0;
    json_decode_into(L, c->message, c->message_length);
    lua_pushvalue(L, -1);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &message_key);
    return 1;
}

static const char *const removed_globals[] = {
    "dofile", "loadfile", "load", "require", "collectgarbage", "module", NULL
};

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
    /* string.dump makes bytecode; binary chunks are never loaded anyway. */
    lua_getglobal(L, "string");
    lua_pushnil(L);
    lua_setfield(L, -2, "dump");
    lua_pop(L, 1);

    /* os: only the clock and date functions. */
    luaL_requiref(L, LUA_OSLIBNAME, luaopen_os, 0);
    lua_createtable(L, 0, 4);
    static const char *const kept[] = { "time", "clock", "date", "difftime", NULL };
    for (const char *const *name = kept; *name; name++) {
        lua_getfield(L, -2, *name);
        lua_setfield(L, -2, *name);
    }
    lua_setglobal(L, "os");
    lua_pop(L, 1);
    /* luaL_requiref left the full os in package.loaded; there is no package library, drop the table. */
    lua_pushnil(L);
    lua_setfield(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);

    /* The marker metatable of decoded arrays. */
    lua_createtable(L, 0, 1);
    lua_pushliteral(L, "array");
    lua_setfield(L, -2, "__name");
    lua_rawsetp(L, LUA_REGISTRYINDEX, &array_key);

    lua_pushcfunction(L, lua_set_message_handler);
    lua_setglobal(L, "setMessageHandler");
    lua_pushcfunction(L, lua_get_last_message);
    lua_setglobal(L, "getLastMessage");

    lua_createtable(L, 0, 8);                      /* ttn */
    lua_createtable(L, 0, 2);                      /* ttn.json */
    lua_pushcfunction(L, lua_json_decode);
    lua_setfield(L, -2, "decode");
    lua_pushcfunction(L, lua_json_encode);
    lua_setfield(L, -2, "encode");
    lua_setfield(L, -2, "json");
    lua_pushlightuserdata(L, NULL);
    lua_setfield(L, -2, "null");
    lua_setglobal(L, "ttn");
    return 0;
}

int ttn_state_open(lua_State *L) {
    return protected_call(L, open_protected, 0, 0);
}

/* Lua code run once per state after the host functions exist (they are consumed into locals here). */
static const char prelude[] =
    "local host_publish, host_log, host_set_device, host_all = __ttn_publish, __ttn_log, __ttn_set_device, __ttn_all\n"
    "__ttn_publish, __ttn_log, __ttn_set_device, __ttn_all = nil, nil, nil, nil\n"
    "local json, null = ttn.json, ttn.null\n"
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
    "function publish(message, device)\n"
    "  if device ~= nil and type(device) ~= 'string' then error('publish: the device id must be a string', 2) end\n"
    "  if type(message) == 'string' then return host_publish(message, device, nil) end\n"
    "  if type(message) ~= 'table' then error('publish: expected a JSON string or a table {f_port=, bytes= | frm_payload= | decoded_payload=}', 2) end\n"
    "  local port = message.f_port or message.port\n"
    "  if math.type(port) ~= 'integer' then error('publish: f_port must be an integer from 1 to 223', 2) end\n"
    "  local item = { f_port = port, confirmed = message.confirmed == true, priority = message.priority or 'NORMAL' }\n"
    "  if not priorities[item.priority] then error('publish: priority must be one of LOWEST, LOW, BELOW_NORMAL, NORMAL, ABOVE_NORMAL, HIGH, HIGHEST', 2) end\n"
    "  if message.bytes ~= nil then item.frm_payload = b64encode(bytes_to_string(message.bytes, 'publish'))\n"
    "  elseif message.frm_payload ~= nil then item.frm_payload = message.frm_payload\n"
    "  elseif message.decoded_payload ~= nil then item.decoded_payload = message.decoded_payload\n"
    "  else error('publish: give the payload as bytes=, frm_payload= (base64) or decoded_payload=', 2) end\n"
    "  if message.correlation_ids ~= nil then item.correlation_ids = message.correlation_ids end\n"
    "  local schedule = message.schedule or 'push'\n"
    "  if schedule ~= 'push' and schedule ~= 'replace' then error('publish: schedule must be \"push\" or \"replace\"', 2) end\n"
    "  return host_publish(json.encode({ downlinks = { item } }), device, schedule)\n"
    "end\n"
    "ttn.setMessageHandler, ttn.getLastMessage, ttn.getAllMessages = setMessageHandler, getLastMessage, getAllMessages\n"
    "ttn.publish, ttn.setDeviceID = publish, setDeviceID\n";

int ttn_run_prelude(lua_State *L) {
    int status = luaL_loadbufferx(L, prelude, sizeof prelude - 1, "=ttn", "t");
    if (status != LUA_OK) return status;
    lua_pushcfunction(L, ttn_traceback);
    lua_insert(L, -2);
    status = lua_pcall(L, 0, 0, -2);
    lua_remove(L, status == LUA_OK ? -1 : -2);
    return status;
}

int ttn_load(lua_State *L, const char *source, size_t length, const char *chunkname) {
    int status = luaL_loadbufferx(L, source, length, chunkname, "t");
    if (status != LUA_OK) return status;
    lua_pushcfunction(L, ttn_traceback);
    lua_insert(L, -2);
    status = lua_pcall(L, 0, 0, -2);
    lua_remove(L, status == LUA_OK ? -1 : -2);
    return status;
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

static int clear_message(lua_State *L) {
    lua_pushnil(L);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &message_key);
    return 0;
}

int ttn_handle(lua_State *L, const char *json, size_t length) {
    ttn_context *c = context_of(L);
    c->message = json;
    c->message_length = length;
    int status = protected_call(L, handle_protected, 0, 0);
    c->message = NULL;
    c->message_length = 0;
    /* Forget the decoded table; setting an existing registry key to nil does not allocate. */
    int top = lua_gettop(L);
    lua_pushcfunction(L, clear_message);
    lua_pcall(L, 0, 0, 0);
    lua_settop(L, top);
    return status;
}

void ttn_collect_garbage(lua_State *L) {
    lua_gc(L, LUA_GCCOLLECT, 0);
}
