#include "internal.h"

#include <lauxlib.h>
#include <limits.h>
#include <stdint.h>
#include <string.h>

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

/* Keys in lazy tables: their addresses are unique. */
static const char lazy_key = 'l';     /* in a lazy table not yet decoded: the number of its container */
static const char resolved_key = 'r'; /* in a lazy object: the bits of the members looked up or assigned */
#define TTN_LAZY_MEMBERS 64           /* objects up to this size are decoded member by member */

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
    shim_skip_space(&w->r);
}

/* Moves to the next member (past its key and colon) or element; 0 at the end of the container. */
static int walk_next(lua_State *L, container_walk *w) {
    json_reader *r = &w->r;
    if (r->p >= r->end || *r->p == ']' || *r->p == '}') return 0;
    if (w->is_array) return 1;
    if (*r->p != '"') shim_json_fail(L, r, "expected a string key");
    w->key = ++r->p;
    shim_skip_plain(r);
    w->key_is_plain = r->p < r->end && *r->p == '"';
    if (!w->key_is_plain) {
        json_buffer scanning = { NULL, 0, 0 }; /* a string scan touches no extents: only the mode is set */
        r->p = w->key - 1;
        r->extents = &scanning;
        shim_json_string(L, r);
        r->extents = NULL;
        r->p--;
    }
    w->key_length = (size_t)(r->p - w->key);
    r->p++;
    shim_skip_space(r);
    if (r->p >= r->end || *r->p != ':') shim_json_fail(L, r, "expected ':'");
    r->p++;
    shim_skip_space(r);
    return 1;
}

static void walk_push_key(lua_State *L, const container_walk *w) {
    if (w->key_is_plain) {
        lua_pushlstring(L, w->key, w->key_length);
    } else {
        json_reader r = w->r;
        r.p = w->key - 1;
        shim_json_string(L, &r);
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
            shim_json_fail(L, r, "outline out of step");
        }
        if (push) push_lazy(L, w->extents, child, *r->p == '[', meta);
        r->p = r->start + w->extents[child].end;
        w->child = w->extents[child].next;
    } else if (push) {
        shim_json_value(L, r);
    } else {
        json_buffer scanning = { NULL, 0, 0 }; /* a scalar's scan touches no extents: only the mode is set */
        r->extents = &scanning;
        shim_json_value(L, r);
        r->extents = NULL;
    }
    shim_skip_space(r);
    if (r->p < r->end && *r->p == ',') {
        r->p++;
        shim_skip_space(r);
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
        shim_lazy_decode(L, 1);
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
void shim_lazy_decode(lua_State *L, int index) {
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
    if (w.is_array) lua_rawgetp(L, LUA_REGISTRYINDEX, &shim_array_key);
    else lua_pushnil(L);
    lua_setmetatable(L, index);
    lua_pushnil(L);
    lua_rawsetp(L, index, &lazy_key);
    lua_pushnil(L);
    lua_rawsetp(L, index, &resolved_key);
    lua_settop(L, meta - 1);
}

/* Whether `outline` describes containers of a text of `length` bytes that shim_lazy_decode can walk safely. */
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
void shim_push_message(lua_State *L, const char *json, size_t length, const uint32_t *outline, size_t containers) {
    json_buffer *extents = lua_newuserdatauv(L, sizeof(json_buffer), 0);
    *extents = (json_buffer){ NULL, 0, 0 };
    lua_rawgetp(L, LUA_REGISTRYINDEX, &shim_buffer_key);
    lua_setmetatable(L, -2);
    if (outline && containers > 0 && outline_is_sound((const json_extent *)outline, containers, json, length)) {
        shim_put(L, extents, (const char *)outline, containers * sizeof(json_extent));
    } else {
        shim_json_read(L, json, length, extents);
    }
    if (extents->length == 0) {
        lua_pop(L, 1);
        shim_json_read(L, json, length, NULL);
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
