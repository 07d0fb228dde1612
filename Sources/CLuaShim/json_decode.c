#include "internal.h"

#include <lauxlib.h>

/* ---- JSON -> Lua, from a tape of the project's one JSON parser (CJSON). ----
 * Objects become tables, arrays sequences marked with a shared metatable (so [] encodes back as []),
 * numbers without fraction or exponent that fit 64 bits Lua integers and other numbers floats, null the
 * ttn.null sentinel. (lua-cjson decodes every number as a float, which is why this decoder exists.) */

/* Lua's allocator for the parser, so that the memory cap covers the tape. */
static void *lua_allocate(void *L, void *block, size_t old_size, size_t new_size) {
    void *ud;
    lua_Alloc alloc = lua_getallocf(L, &ud);
    return alloc(ud, block, block ? old_size : 0, new_size);
}

json_buffer *shim_push_tape_buffer(lua_State *L) {
    json_buffer *buffer = lua_newuserdatauv(L, sizeof(json_buffer), 0);
    *buffer = (json_buffer){ NULL, 0, 0 };
    lua_rawgetp(L, LUA_REGISTRYINDEX, &shim_buffer_key);
    lua_setmetatable(L, -2);
    return buffer;
}

const ttn_json_element *shim_parse(lua_State *L, const char *text, size_t length, size_t *count) {
    json_buffer *buffer = shim_push_tape_buffer(L);
    ttn_json_tape tape = { 0 };
    int status = ttn_json_parse(text, length, &tape, lua_allocate, L);
    /* Owned by the userdata from here on, so that its __gc frees it whatever happens next. */
    buffer->data = (char *)tape.elements;
    buffer->capacity = tape.capacity * sizeof *tape.elements;
    buffer->length = tape.count * sizeof *tape.elements;
    if (status == TTN_JSON_OUT_OF_MEMORY) luaL_error(L, "not enough memory");
    if (status != TTN_JSON_OK) luaL_error(L, "invalid JSON: %s at byte %d", tape.error, (int)tape.error_offset);
    *count = tape.count;
    return tape.elements;
}

void shim_push_string(lua_State *L, const char *text, const ttn_json_element *element) {
    size_t length = element->end - element->start;
    if (element->plain) {
        lua_pushlstring(L, text + element->start, length);
        return;
    }
    luaL_Buffer b;
    char *output = luaL_buffinitsize(L, &b, length);
    luaL_pushresultsize(&b, ttn_json_unescape(text, element, output));
}

void shim_push_scalar(lua_State *L, const char *text, const ttn_json_element *element) {
    switch (element->kind) {
    case TTN_JSON_STRING: shim_push_string(L, text, element); break;
    case TTN_JSON_NUMBER: {
        int64_t integer;
        if (ttn_json_integer(text, element, &integer)) lua_pushinteger(L, (lua_Integer)integer);
        else lua_pushnumber(L, (lua_Number)ttn_json_double(text, element));
        break;
    }
    case TTN_JSON_TRUE: lua_pushboolean(L, 1); break;
    case TTN_JSON_FALSE: lua_pushboolean(L, 0); break;
    default: lua_rawgetp(L, LUA_REGISTRYINDEX, &shim_null_key); break;
    }
}

/* Pushes the value at `index` decoded whole; returns the index of the element after it. The parser bounded the
 * nesting, and so this recursion. */
static size_t push_value(lua_State *L, const char *text, const ttn_json_element *elements, size_t index) {
    const ttn_json_element *element = &elements[index];
    if (element->kind != TTN_JSON_ARRAY && element->kind != TTN_JSON_OBJECT) {
        shim_push_scalar(L, text, element);
        return index + 1;
    }
    luaL_checkstack(L, 4, "JSON nesting");
    size_t child = index + 1;
    if (element->kind == TTN_JSON_ARRAY) {
        lua_createtable(L, (int)element->count, 0);
        lua_rawgetp(L, LUA_REGISTRYINDEX, &shim_array_key);
        lua_setmetatable(L, -2);
        for (uint32_t position = 1; position <= element->count; position++) {
            child = push_value(L, text, elements, child);
            lua_rawseti(L, -2, position);
        }
    } else {
        lua_createtable(L, 0, (int)element->count);
        for (uint32_t member = 0; member < element->count; member++) {
            shim_push_string(L, text, &elements[child]);
            child = push_value(L, text, elements, child + 1);
            lua_rawset(L, -3);
        }
    }
    return child;
}

void shim_push_decoded(lua_State *L, const char *text, const ttn_json_element *elements, size_t index) {
    push_value(L, text, elements, index);
}

/* ttn.json.decode(text) */
int shim_json_decode(lua_State *L) {
    size_t length, count;
    const char *text = luaL_checklstring(L, 1, &length);
    const ttn_json_element *elements = shim_parse(L, text, length, &count);
    push_value(L, text, elements, 0);
    return 1;
}
