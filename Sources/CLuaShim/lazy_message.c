#include "internal.h"

#include <lauxlib.h>
#include <limits.h>
#include <stdint.h>
#include <string.h>

/* ---- getLastMessage()'s lazy tables. ----
 * A handler usually reads a few fields of a 1.6 KB uplink, and decoding all of it into tables (about 60 strings
 * and a dozen tables) would be most of a Lua invocation's cost. So the message is parsed whole when the script
 * asks for it (or the host hands over its parse from the uplink's arrival: the same parser, the same tape), and
 * each object or array becomes a lazy table: empty but for a hidden key holding its element's index in the tape,
 * with a metatable shared by the message's lazy tables that holds the text and the tape.
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

/* Keys in lazy tables: their addresses are unique. */
static const char lazy_key = 'l';     /* in a lazy table not yet decoded: its element's index in the tape */
static const char resolved_key = 'r'; /* in a lazy object: the bits of the members looked up or assigned */
#define TTN_LAZY_MEMBERS 64           /* objects up to this size are decoded member by member */

/* The message's text and tape, as the lazy metatable holds them. */
typedef struct {
    const char *text;
    const ttn_json_element *elements;
    int meta; /* the stack index of the lazy metatable */
} message_parts;

/* Pushes a lazy table for the container at `index`, with the message's lazy metatable. An array, or an object
 * decoded whole, is made with room for its members, so that decoding never grows it; an object decoded member
 * by member, with room for a few. */
static void push_lazy(lua_State *L, const message_parts *m, size_t index) {
    const ttn_json_element *element = &m->elements[index];
    int count = element->count < INT_MAX ? (int)element->count : 0; /* only a size hint */
    if (element->kind == TTN_JSON_ARRAY) lua_createtable(L, count, 1);
    else lua_createtable(L, 0, count <= TTN_LAZY_MEMBERS ? 4 : count + 1);
    lua_pushinteger(L, (lua_Integer)index);
    lua_rawsetp(L, -2, &lazy_key);
    lua_pushvalue(L, m->meta);
    lua_setmetatable(L, -2);
}

/* Pushes the value at `index`: a container as a lazy table, anything else decoded. */
static void push_value(lua_State *L, const message_parts *m, size_t index) {
    uint8_t kind = m->elements[index].kind;
    if (kind == TTN_JSON_ARRAY || kind == TTN_JSON_OBJECT) push_lazy(L, m, index);
    else shim_push_scalar(L, m->text, &m->elements[index]);
}

/* The lazy table at `index`, when it is one: its element's index in `*element`, and the message's parts with
 * its metatable pushed. Returns 0, pushing nothing, for a table that is not lazy (any more). */
static int lazy_state(lua_State *L, int index, size_t *element, message_parts *m) {
    if (lua_rawgetp(L, index, &lazy_key) != LUA_TNUMBER) {
        lua_pop(L, 1);
        return 0;
    }
    *element = (size_t)lua_tointeger(L, -1);
    lua_pop(L, 1);
    lua_getmetatable(L, index);
    m->meta = lua_gettop(L);
    lua_rawgeti(L, m->meta, 1);
    lua_rawgeti(L, m->meta, 2);
    m->text = lua_tostring(L, m->meta + 1);
    m->elements = (const ttn_json_element *)((const json_buffer *)lua_touserdata(L, m->meta + 2))->data;
    lua_pop(L, 2); /* the metatable, which stays on the stack, holds both */
    return 1;
}

static uint64_t resolved_members(lua_State *L, int index) {
    uint64_t bits = lua_rawgetp(L, index, &resolved_key) == LUA_TNUMBER ? (uint64_t)lua_tointeger(L, -1) : 0;
    lua_pop(L, 1);
    return bits;
}

static void mark_resolved(lua_State *L, int index, uint64_t bits) {
    lua_pushinteger(L, (lua_Integer)bits);
    lua_rawsetp(L, index, &resolved_key);
}

/* Whether the key element `key` is the string at stack index `name` (of `length` bytes at `bytes`). */
static int key_equals(lua_State *L, const message_parts *m, size_t key, int name, const char *bytes, size_t length) {
    const ttn_json_element *element = &m->elements[key];
    if (element->plain) {
        return element->end - element->start == length && memcmp(m->text + element->start, bytes, length) == 0;
    }
    shim_push_string(L, m->text, element);
    int equal = lua_rawequal(L, -1, name);
    lua_pop(L, 1);
    return equal;
}

/* Whether the table at `index` is a lazy object decoded member by member; if so, finds the members named by
 * the value at `name`: their bits in `matches`, and the last one's value element in `value` (as a whole decode
 * keeps the last of repeated names). The message's parts are pushed as by lazy_state. */
static int find_member(lua_State *L, int index, int name, size_t *value, uint64_t *matches, message_parts *m) {
    size_t object;
    if (!lazy_state(L, index, &object, m)) return 0;
    const ttn_json_element *element = &m->elements[object];
    if (element->kind != TTN_JSON_OBJECT || element->count > TTN_LAZY_MEMBERS) {
        lua_settop(L, m->meta - 1);
        return 0;
    }
    *matches = 0;
    if (lua_type(L, name) != LUA_TSTRING) return 1; /* a JSON object has only string keys */
    size_t length;
    const char *bytes = lua_tolstring(L, name, &length);
    size_t key = object + 1;
    for (uint32_t member = 0; member < element->count; member++) {
        if (key_equals(L, m, key, name, bytes, length)) {
            *matches |= (uint64_t)1 << member;
            *value = key + 1;
        }
        key = m->elements[key + 1].next;
    }
    return 1;
}

static int lazy_index(lua_State *L) {
    lua_settop(L, 2);
    size_t value;
    uint64_t matches;
    message_parts m;
    if (!find_member(L, 1, 2, &value, &matches, &m)) { /* an array, or a large object: decoded whole */
        shim_lazy_decode(L, 1);
        lua_settop(L, 2);
        lua_rawget(L, 1);
        return 1;
    }
    uint64_t resolved = resolved_members(L, 1);
    if (matches == 0 || (matches & resolved)) return 0; /* no such member, or the script removed it */
    push_value(L, &m, value);
    lua_pushvalue(L, 2);
    lua_pushvalue(L, -2);
    lua_rawset(L, 1);
    mark_resolved(L, 1, resolved | matches);
    return 1;
}

static int lazy_newindex(lua_State *L) {
    lua_settop(L, 3);
    size_t value;
    uint64_t matches;
    message_parts m;
    if (find_member(L, 1, 2, &value, &matches, &m)) {
        if (matches) mark_resolved(L, 1, resolved_members(L, 1) | matches);
    } else {
        shim_lazy_decode(L, 1);
    }
    lua_settop(L, 3);
    lua_rawset(L, 1);
    return 0;
}

static int lazy_len(lua_State *L) {
    shim_lazy_decode(L, 1);
    lua_pushinteger(L, (lua_Integer)lua_rawlen(L, 1));
    return 1;
}

static int lazy_tostring(lua_State *L) {
    shim_lazy_decode(L, 1);
    luaL_tolstring(L, 1, NULL);
    return 1;
}

/* Decodes the table at `index` whole if it is a lazy table (keeping what the script looked up or assigned);
 * otherwise does nothing. Only memory can fail here; a table left half filled then stays lazy and is filled
 * again. */
void shim_lazy_decode(lua_State *L, int index) {
    index = lua_absindex(L, index);
    size_t container;
    message_parts m;
    if (!lazy_state(L, index, &container, &m)) return;
    const ttn_json_element *element = &m.elements[container];
    int is_array = element->kind == TTN_JSON_ARRAY;
    uint64_t resolved = resolved_members(L, index);
    size_t child = container + 1;
    for (uint32_t member = 0; member < element->count; member++) {
        if (is_array) {
            push_value(L, &m, child);
            lua_rawseti(L, index, (lua_Integer)member + 1);
            child = m.elements[child].next;
            continue;
        }
        if (member >= TTN_LAZY_MEMBERS || !(resolved >> member & 1)) { /* else the script's value, or removal, stands */
            shim_push_string(L, m.text, &m.elements[child]);
            push_value(L, &m, child + 1);
            lua_rawset(L, index);
        }
        child = m.elements[child + 1].next;
    }
    if (is_array) lua_rawgetp(L, LUA_REGISTRYINDEX, &shim_array_key);
    else lua_pushnil(L);
    lua_setmetatable(L, index);
    lua_pushnil(L);
    lua_rawsetp(L, index, &lazy_key);
    lua_pushnil(L);
    lua_rawsetp(L, index, &resolved_key);
    lua_settop(L, m.meta - 1);
}

/* Pushes the uplink `json` for a script: an object or array as a lazy table, anything else decoded. Its tape is
 * the host's `elements` (`count` of them, from parsing exactly this text), copied, or else parsed now, so that
 * a malformed message raises here. */
void shim_push_message(lua_State *L, const char *json, size_t length, const ttn_json_element *elements, size_t count) {
    message_parts m;
    if (elements && count > 0) {
        json_buffer *buffer = shim_push_tape_buffer(L);
        shim_put(L, buffer, (const char *)elements, count * sizeof *elements);
        m.elements = (const ttn_json_element *)buffer->data;
    } else {
        m.elements = shim_parse(L, json, length, &count);
    }
    if (m.elements[0].kind != TTN_JSON_ARRAY && m.elements[0].kind != TTN_JSON_OBJECT) {
        shim_push_scalar(L, json, &m.elements[0]);
        lua_remove(L, -2);
        return;
    }
    static const luaL_Reg metamethods[] = {
        { "__index", lazy_index }, { "__newindex", lazy_newindex }, { "__len", lazy_len },
        { "__tostring", lazy_tostring }, { NULL, NULL }
    };
    lua_createtable(L, 2, 5); /* the lazy metatable */
    lua_pushlstring(L, json, length);
    m.text = lua_tostring(L, -1);
    lua_rawseti(L, -2, 1);
    lua_pushvalue(L, -2);
    lua_rawseti(L, -2, 2);
    luaL_setfuncs(L, metamethods, 0);
    lua_pushboolean(L, 0);
    lua_setfield(L, -2, "__metatable");
    m.meta = lua_gettop(L);
    push_lazy(L, &m, 0);
    lua_replace(L, -3);
    lua_pop(L, 1);
}

/* A library function that reads or writes tables raw (upvalue 1), called with its table arguments decoded. */
int shim_with_tables_decoded(lua_State *L) {
    int count = lua_gettop(L);
    for (int i = 1; i <= count; i++) {
        if (lua_type(L, i) == LUA_TTABLE) shim_lazy_decode(L, i);
    }
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 1);
    lua_call(L, count, LUA_MULTRET);
    return lua_gettop(L);
}
