/* Lua -> JSON (ttn.json.encode, ttn.json.array), and the byte buffer it writes into. */
#include "internal.h"

#include <lauxlib.h>
#include <locale.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- A growable byte buffer: json.encode's output, and the extents of getLastMessage()'s containers. ---- */

int shim_json_buffer_gc(lua_State *L) {
    json_buffer *buffer = lua_touserdata(L, 1);
    if (buffer->data) {
        void *ud;
        lua_Alloc alloc = lua_getallocf(L, &ud);
        alloc(ud, buffer->data, buffer->capacity, 0);
        buffer->data = NULL;
    }
    return 0;
}

void shim_put(lua_State *L, json_buffer *buffer, const char *bytes, size_t length) {
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

/* ---- Lua -> JSON. Marked tables and sequences become arrays; nesting (and so cycles) is bounded. ---- */

static void put_text(lua_State *L, json_buffer *buffer, const char *text) { shim_put(L, buffer, text, strlen(text)); }

static void json_encode_string(lua_State *L, json_buffer *b, const char *s, size_t length) {
    shim_put(L, b, "\"", 1);
    size_t run = 0;
    for (size_t i = 0; i < length; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch >= 0x20 && ch != '"' && ch != '\\') continue;
        shim_put(L, b, s + run, i - run);
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
    shim_put(L, b, s + run, length - run);
    shim_put(L, b, "\"", 1);
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
        lua_rawgetp(L, LUA_REGISTRYINDEX, &shim_array_key);
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
    shim_lazy_decode(L, index);
    lua_Integer count;
    if (is_array(L, index, &count)) {
        shim_put(L, b, "[", 1);
        for (lua_Integer i = 1; i <= count; i++) {
            if (i > 1) shim_put(L, b, ",", 1);
            lua_rawgeti(L, index, i);
            json_encode_value(L, b, -1, depth + 1);
            lua_pop(L, 1);
        }
        shim_put(L, b, "]", 1);
        return;
    }
    shim_put(L, b, "{", 1);
    int first = 1;
    lua_pushnil(L);
    while (lua_next(L, index)) {
        if (!first) shim_put(L, b, ",", 1);
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
        shim_put(L, b, ":", 1);
        json_encode_value(L, b, -1, depth + 1);
        lua_pop(L, 1);
    }
    shim_put(L, b, "}", 1);
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
        lua_rawgetp(L, LUA_REGISTRYINDEX, &shim_null_key);
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
int shim_json_encode(lua_State *L) {
    luaL_checkany(L, 1);
    lua_settop(L, 1);
    json_buffer *buffer = lua_newuserdatauv(L, sizeof(json_buffer), 0);
    *buffer = (json_buffer){ NULL, 0, 0 };
    lua_rawgetp(L, LUA_REGISTRYINDEX, &shim_buffer_key);
    lua_setmetatable(L, -2);
    json_encode_value(L, buffer, 1, 0);
    lua_pushlstring(L, buffer->data ? buffer->data : "", buffer->length);
    return 1;
}

/* ttn.json.array([t]): marks `t` (or a new table) as a JSON array, so that it encodes as [] when empty. */
int shim_json_array(lua_State *L) {
    if (lua_isnoneornil(L, 1)) {
        lua_settop(L, 0);
        lua_newtable(L);
    } else {
        luaL_checktype(L, 1, LUA_TTABLE);
        lua_settop(L, 1);
        shim_lazy_decode(L, 1);
        if (lua_getmetatable(L, 1)) {
            lua_rawgetp(L, LUA_REGISTRYINDEX, &shim_array_key);
            if (!lua_rawequal(L, -1, -2)) luaL_argerror(L, 1, "the table already has a metatable");
            lua_pop(L, 2);
        }
    }
    lua_rawgetp(L, LUA_REGISTRYINDEX, &shim_array_key);
    lua_setmetatable(L, 1);
    return 1;
}
