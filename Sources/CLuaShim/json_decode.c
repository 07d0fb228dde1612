#include "internal.h"

#include <lauxlib.h>
#include <stdint.h>
#include <string.h>

/* ---- JSON -> Lua, in one pass straight onto the Lua stack. ----
 * Objects become tables, arrays sequences marked with a shared metatable (so [] encodes back as []),
 * numbers without fraction or exponent that fit 64 bits Lua integers and other numbers floats, null the
 * ttn.null sentinel. (lua-cjson decodes every number as a float, which is why this decoder exists.)
 *
 * The same functions also scan without building anything (`extents` set): getLastMessage() checks the whole
 * message that way, recording where each object and array ends, and then decodes each of them only when the
 * script first looks into it (the lazy tables of lazy_message.c). */

void shim_json_fail(lua_State *L, json_reader *r, const char *what) {
    luaL_error(L, "invalid JSON: %s at byte %d", what, (int)(r->p - r->start));
}

void shim_skip_space(json_reader *r) {
    while (r->p < r->end && (*r->p == ' ' || *r->p == '\t' || *r->p == '\n' || *r->p == '\r')) r->p++;
}

static int is_digit(json_reader *r) { return r->p < r->end && *r->p >= '0' && *r->p <= '9'; }

static unsigned hex4(lua_State *L, json_reader *r) {
    unsigned value = 0;
    if (r->end - r->p < 4) shim_json_fail(L, r, "short \\u escape");
    for (int i = 0; i < 4; i++) {
        char ch = *r->p++;
        value <<= 4;
        if (ch >= '0' && ch <= '9') value |= (unsigned)(ch - '0');
        else if (ch >= 'a' && ch <= 'f') value |= (unsigned)(ch - 'a' + 10);
        else if (ch >= 'A' && ch <= 'F') value |= (unsigned)(ch - 'A' + 10);
        else shim_json_fail(L, r, "bad \\u escape");
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
void shim_skip_plain(json_reader *r) {
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

void shim_json_string(lua_State *L, json_reader *r) {
    r->p++; /* opening quote */
    const char *start = r->p;
    shim_skip_plain(r);
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
        if (ch < 0x20) shim_json_fail(L, r, "control character in string");
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
                if (r->end - r->p < 6 || r->p[0] != '\\' || r->p[1] != 'u') shim_json_fail(L, r, "lone surrogate");
                r->p += 2;
                unsigned low = hex4(L, r);
                if (low < 0xDC00 || low > 0xDFFF) shim_json_fail(L, r, "bad surrogate pair");
                code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00);
            } else if (code >= 0xDC00 && code <= 0xDFFF) {
                shim_json_fail(L, r, "lone surrogate");
            }
            if (build) add_utf8(&b, code);
            break;
        }
        default: shim_json_fail(L, r, "bad escape");
        }
    }
#undef JSON_ADD
    if (r->p >= r->end) shim_json_fail(L, r, "unterminated string");
    r->p++;
    if (build) luaL_pushresult(&b);
}

/* A number, by the JSON grammar: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)? */
static void json_number(lua_State *L, json_reader *r) {
    const char *start = r->p;
    int negative = 0, integral = 1, overflow = 0;
    uint64_t magnitude = 0;
    if (*r->p == '-') { negative = 1; r->p++; }
    if (!is_digit(r)) shim_json_fail(L, r, "bad number");
    if (*r->p == '0') {
        r->p++;
        if (is_digit(r)) shim_json_fail(L, r, "leading zero in number");
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
        if (!is_digit(r)) shim_json_fail(L, r, "digit expected after '.'");
        while (is_digit(r)) r->p++;
    }
    if (r->p < r->end && (*r->p == 'e' || *r->p == 'E')) {
        integral = 0;
        r->p++;
        if (r->p < r->end && (*r->p == '+' || *r->p == '-')) r->p++;
        if (!is_digit(r)) shim_json_fail(L, r, "digit expected in exponent");
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
        if (lua_stringtonumber(L, text) == 0) shim_json_fail(L, r, "bad number");
    } else {
        lua_pushlstring(L, start, length);
        if (lua_stringtonumber(L, lua_tostring(L, -1)) == 0) shim_json_fail(L, r, "bad number");
        lua_remove(L, -2);
    }
}

/* Scanning: records the container starting at r->p; returns its number, for scan_end. */
static size_t scan_begin(lua_State *L, json_reader *r) {
    json_extent extent = { (uint32_t)(r->p - r->start), 0, 0, 0 };
    shim_put(L, r->extents, (const char *)&extent, sizeof extent);
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
    shim_skip_space(r);
    uint32_t count = 0;
    for (;; count++) {
        if (count == 0 && r->p < r->end && *r->p == '}') break;
        shim_skip_space(r);
        if (r->p >= r->end || *r->p != '"') shim_json_fail(L, r, "expected a string key");
        shim_json_string(L, r);
        shim_skip_space(r);
        if (r->p >= r->end || *r->p != ':') shim_json_fail(L, r, "expected ':'");
        r->p++;
        shim_json_value(L, r);
        if (!r->extents) lua_rawset(L, -3);
        shim_skip_space(r);
        if (r->p < r->end && *r->p == ',') { r->p++; continue; }
        if (r->p < r->end && *r->p == '}') {
            count++;
            break;
        }
        shim_json_fail(L, r, "expected ',' or '}'");
    }
    r->p++;
    if (r->extents) scan_end(r, number, count);
}

static void json_array(lua_State *L, json_reader *r) {
    size_t number = r->extents ? scan_begin(L, r) : 0;
    r->p++;
    if (!r->extents) {
        lua_newtable(L);
        lua_rawgetp(L, LUA_REGISTRYINDEX, &shim_array_key);
        lua_setmetatable(L, -2);
    }
    shim_skip_space(r);
    lua_Integer count = 0;
    for (;;) {
        if (count == 0 && r->p < r->end && *r->p == ']') break;
        shim_json_value(L, r);
        count++;
        if (!r->extents) lua_rawseti(L, -2, count);
        shim_skip_space(r);
        if (r->p < r->end && *r->p == ',') { r->p++; continue; }
        if (r->p < r->end && *r->p == ']') break;
        shim_json_fail(L, r, "expected ',' or ']'");
    }
    r->p++;
    if (r->extents) scan_end(r, number, (uint32_t)count);
}

static int literal(json_reader *r, const char *word, size_t length) {
    if ((size_t)(r->end - r->p) < length || memcmp(r->p, word, length) != 0) return 0;
    r->p += length;
    return 1;
}

void shim_json_value(lua_State *L, json_reader *r) {
    shim_skip_space(r);
    if (r->p >= r->end) shim_json_fail(L, r, "unexpected end");
    if (++r->depth > TTN_JSON_MAX_DEPTH) shim_json_fail(L, r, "nested too deeply");
    if (!r->extents) luaL_checkstack(L, 4, "JSON nesting");
    char ch = *r->p;
    if (ch == '{') json_object(L, r);
    else if (ch == '[') json_array(L, r);
    else if (ch == '"') shim_json_string(L, r);
    else if (ch == '-' || (ch >= '0' && ch <= '9')) json_number(L, r);
    else if (literal(r, "true", 4)) { if (!r->extents) lua_pushboolean(L, 1); }
    else if (literal(r, "false", 5)) { if (!r->extents) lua_pushboolean(L, 0); }
    else if (literal(r, "null", 4)) { if (!r->extents) lua_rawgetp(L, LUA_REGISTRYINDEX, &shim_null_key); }
    else shim_json_fail(L, r, "unexpected character");
    r->depth--;
}

/* Decodes `json` (or, with `extents`, scans it) and checks that nothing but white space follows. */
void shim_json_read(lua_State *L, const char *json, size_t length, json_buffer *extents) {
    json_reader r = { json, json, json + length, 0, extents };
    shim_json_value(L, &r);
    shim_skip_space(&r);
    if (r.p != r.end) shim_json_fail(L, &r, "trailing characters");
}

/* ttn.json.decode(text) */
int shim_json_decode(lua_State *L) {
    size_t length;
    const char *text = luaL_checklstring(L, 1, &length);
    shim_json_read(L, text, length, NULL);
    return 1;
}
