#define _GNU_SOURCE /* strtod_l */
#include "ttn_json.h"

#include <locale.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

/* ---- The parser: one pass, checking as it goes, writing elements to the tape. ---- */

typedef struct {
    const char *start, *p, *end;
    ttn_json_tape *tape;
    ttn_json_allocator allocate;
    void *context;
    int depth;
} parser;

static int fail(parser *s, const char *reason) {
    s->tape->error = reason;
    s->tape->error_offset = (size_t)(s->p - s->start);
    return 0;
}

static const char out_of_memory[] = "out of memory";

static void *default_allocate(void *context, void *block, size_t old_size, size_t new_size) {
    (void)context;
    (void)old_size;
    if (new_size == 0) {
        free(block);
        return NULL;
    }
    return realloc(block, new_size);
}

/* Appends an element from `first` to the position; returns its index, or -1 when memory was refused. */
static long append(parser *s, uint8_t kind, uint8_t plain, const char *first) {
    ttn_json_tape *tape = s->tape;
    if (tape->count == tape->capacity) {
        size_t capacity = tape->capacity * 2;
        ttn_json_element *larger = s->allocate(s->context, tape->elements, tape->capacity * sizeof *larger,
                                               capacity * sizeof *larger);
        if (!larger) return -1;
        tape->elements = larger;
        tape->capacity = capacity;
    }
    size_t index = tape->count++;
    tape->elements[index] = (ttn_json_element){
        kind, plain, (uint32_t)(first - s->start), (uint32_t)(s->p - s->start), 0, (uint32_t)(index + 1)
    };
    return (long)index;
}

static void skip_space(parser *s) {
    while (s->p < s->end && (*s->p == ' ' || *s->p == '\n' || *s->p == '\r' || *s->p == '\t')) s->p++;
}

/* The high bit of each zero byte of `word`, and maybe of bytes above the lowest one (a borrow's false alarm). */
static uint64_t zero_bytes(uint64_t word) {
    return (word - 0x0101010101010101ULL) & ~word & 0x8080808080808080ULL;
}

/* Moves past printable ASCII other than '"' and '\\': most of a message's bytes. Eight at a time: a word's bytes
 * that need attention ('"', '\\', below 0x20 or above 0x7F) are flagged by bit tricks whose lowest flag is
 * always exact (a false flag can only follow a true one), so the first of them is found at once. */
static void skip_plain(parser *s) {
    const char *p = s->p;
    while (s->end - p >= 8) {
        uint64_t word;
        memcpy(&word, p, sizeof word);
#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
        word = __builtin_bswap64(word); /* the first byte the lowest, for the count of trailing zeros */
#endif
        uint64_t flags = ((word | (word - 0x2020202020202020ULL)) & 0x8080808080808080ULL)
            | zero_bytes(word ^ 0x2222222222222222ULL) | zero_bytes(word ^ 0x5C5C5C5C5C5C5C5CULL);
        if (flags) {
            s->p = p + __builtin_ctzll(flags) / 8;
            return;
        }
        p += 8;
    }
    while (p < s->end) {
        unsigned char byte = (unsigned char)*p;
        if (byte < 0x20 || byte > 0x7F || byte == '"' || byte == '\\') break;
        p++;
    }
    s->p = p;
}

static int hex_digit(unsigned char byte) {
    if (byte >= '0' && byte <= '9') return byte - '0';
    if (byte >= 'a' && byte <= 'f') return byte - 'a' + 10;
    if (byte >= 'A' && byte <= 'F') return byte - 'A' + 10;
    return -1;
}

/* Four hex digits at the position; -1 (at the first bad one) when they are not. */
static long hex_quad(parser *s) {
    long value = 0;
    for (int i = 0; i < 4; i++) {
        int digit = s->p < s->end ? hex_digit((unsigned char)*s->p) : -1;
        if (digit < 0) return -1;
        value = value << 4 | digit;
        s->p++;
    }
    return value;
}

static int parse_escape(parser *s) {
    s->p++; /* the backslash */
    if (s->p >= s->end) return fail(s, "unterminated escape");
    char escaped = *s->p++;
    switch (escaped) {
    case '"': case '\\': case '/': case 'b': case 'f': case 'n': case 'r': case 't':
        return 1;
    case 'u': {
        long unit = hex_quad(s);
        if (unit < 0) return fail(s, "invalid \\u escape");
        if (unit >= 0xDC00 && unit < 0xE000) return fail(s, "unpaired low surrogate in \\u escape");
        if (unit < 0xD800 || unit >= 0xDC00) return 1;
        if (s->end - s->p < 2 || s->p[0] != '\\' || s->p[1] != 'u') return fail(s, "unpaired high surrogate in \\u escape");
        s->p += 2;
        long low = hex_quad(s);
        if (low < 0) return fail(s, "invalid \\u escape");
        if (low < 0xDC00 || low >= 0xE000) return fail(s, "unpaired high surrogate in \\u escape");
        return 1;
    }
    default:
        s->p--;
        return fail(s, "invalid escape");
    }
}

/* One UTF-8 sequence of two to four bytes (Unicode table 3-7: no overlong forms, no surrogates). */
static int parse_multibyte(parser *s) {
    const unsigned char *p = (const unsigned char *)s->p;
    unsigned char lead = p[0], low = 0x80, high = 0xBF;
    int length;
    if (lead >= 0xC2 && lead <= 0xDF) length = 2;
    else if (lead == 0xE0) { length = 3; low = 0xA0; }
    else if ((lead >= 0xE1 && lead <= 0xEC) || lead == 0xEE || lead == 0xEF) length = 3;
    else if (lead == 0xED) { length = 3; high = 0x9F; }
    else if (lead == 0xF0) { length = 4; low = 0x90; }
    else if (lead >= 0xF1 && lead <= 0xF3) length = 4;
    else if (lead == 0xF4) { length = 4; high = 0x8F; }
    else return fail(s, "invalid UTF-8");
    if (s->end - s->p < length || p[1] < low || p[1] > high) return fail(s, "invalid UTF-8");
    for (int i = 2; i < length; i++) {
        if (p[i] < 0x80 || p[i] > 0xBF) return fail(s, "invalid UTF-8");
    }
    s->p += length;
    return 1;
}

static int parse_string(parser *s) {
    s->p++; /* the opening quote */
    const char *first = s->p;
    uint8_t plain = 1;
    for (;;) {
        skip_plain(s);
        if (s->p >= s->end) return fail(s, "unterminated string");
        unsigned char byte = (unsigned char)*s->p;
        if (byte == '"') break;
        if (byte == '\\') {
            plain = 0;
            if (!parse_escape(s)) return 0;
        } else if (byte < 0x20) {
            return fail(s, "control character in a string (escape it)");
        } else if (!parse_multibyte(s)) {
            return 0;
        }
    }
    if (append(s, TTN_JSON_STRING, plain, first) < 0) return fail(s, out_of_memory);
    s->p++; /* the closing quote */
    return 1;
}

static size_t skip_digits(parser *s) {
    const char *first = s->p;
    while (s->p < s->end && (unsigned char)(*s->p - '0') < 10) s->p++;
    return (size_t)(s->p - first);
}

/* -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)? */
static int parse_number(parser *s) {
    const char *first = s->p;
    uint8_t plain = 1;
    if (*s->p == '-') s->p++;
    if (s->p < s->end && *s->p == '0') {
        s->p++;
    } else if (skip_digits(s) == 0) {
        return fail(s, "invalid number");
    }
    if (s->p < s->end && *s->p == '.') {
        plain = 0;
        s->p++;
        if (skip_digits(s) == 0) return fail(s, "invalid number: digits must follow '.'");
    }
    if (s->p < s->end && (*s->p == 'e' || *s->p == 'E')) {
        plain = 0;
        s->p++;
        if (s->p < s->end && (*s->p == '+' || *s->p == '-')) s->p++;
        if (skip_digits(s) == 0) return fail(s, "invalid number: digits must follow the exponent");
    }
    if (append(s, TTN_JSON_NUMBER, plain, first) < 0) return fail(s, out_of_memory);
    return 1;
}

static int parse_literal(parser *s, const char *word, size_t length, uint8_t kind, const char *reason) {
    const char *first = s->p;
    if ((size_t)(s->end - s->p) < length || memcmp(s->p, word, length) != 0) return fail(s, reason);
    s->p += length;
    if (append(s, kind, 1, first) < 0) return fail(s, out_of_memory);
    return 1;
}

static int parse_value(parser *s);

static int parse_container(parser *s, uint8_t kind, char closing) {
    if (++s->depth > TTN_JSON_MAX_DEPTH) return fail(s, "nesting deeper than 256 levels");
    long index = append(s, kind, 1, s->p);
    if (index < 0) return fail(s, out_of_memory);
    s->p++;
    skip_space(s);
    uint32_t members = 0;
    if (s->p < s->end && *s->p == closing) {
        s->p++;
    } else {
        for (;;) {
            if (kind == TTN_JSON_OBJECT) {
                if (s->p >= s->end || *s->p != '"') return fail(s, "expected a member name in quotes");
                if (!parse_string(s)) return 0;
                skip_space(s);
                if (s->p >= s->end || *s->p != ':') return fail(s, "expected ':' after a member name");
                s->p++;
                skip_space(s);
            }
            if (!parse_value(s)) return 0;
            members++;
            skip_space(s);
            if (s->p < s->end && *s->p == ',') {
                s->p++;
                skip_space(s);
            } else if (s->p < s->end && *s->p == closing) {
                s->p++;
                break;
            } else {
                return fail(s, kind == TTN_JSON_OBJECT ? "expected ',' or '}' in an object" : "expected ',' or ']' in an array");
            }
        }
    }
    ttn_json_element *container = &s->tape->elements[index];
    container->end = (uint32_t)(s->p - s->start);
    container->count = members;
    container->next = (uint32_t)s->tape->count;
    s->depth--;
    return 1;
}

static int parse_value(parser *s) {
    if (s->p >= s->end) return fail(s, "unexpected end of the JSON text");
    switch (*s->p) {
    case '{': return parse_container(s, TTN_JSON_OBJECT, '}');
    case '[': return parse_container(s, TTN_JSON_ARRAY, ']');
    case '"': return parse_string(s);
    case 't': return parse_literal(s, "true", 4, TTN_JSON_TRUE, "invalid literal (expected true)");
    case 'f': return parse_literal(s, "false", 5, TTN_JSON_FALSE, "invalid literal (expected false)");
    case 'n': return parse_literal(s, "null", 4, TTN_JSON_NULL, "invalid literal (expected null)");
    case '-': case '0': case '1': case '2': case '3': case '4': case '5': case '6': case '7': case '8': case '9':
        return parse_number(s);
    default: return fail(s, "unexpected character");
    }
}

int ttn_json_parse(const char *text, size_t length, ttn_json_tape *tape, ttn_json_allocator allocate, void *context) {
    parser s = { text, text, text + length, tape, allocate ? allocate : default_allocate, context, 0 };
    tape->elements = NULL;
    tape->count = 0;
    tape->capacity = 0;
    tape->error = NULL;
    tape->error_offset = 0;
    if (length >= UINT32_MAX) {
        fail(&s, "text longer than 4 GiB");
        return TTN_JSON_INVALID;
    }
    /* Room for about 1.3 times what a TTN uplink needs: most parses never grow. */
    size_t capacity = length / 8 > 16 ? length / 8 : 16;
    tape->elements = s.allocate(context, NULL, 0, capacity * sizeof *tape->elements);
    if (!tape->elements) {
        fail(&s, out_of_memory);
        return TTN_JSON_OUT_OF_MEMORY;
    }
    tape->capacity = capacity;
    skip_space(&s);
    if (parse_value(&s)) {
        skip_space(&s);
        if (s.p == s.end) return TTN_JSON_OK;
        fail(&s, "unexpected data after the JSON value");
    }
    return tape->error == out_of_memory ? TTN_JSON_OUT_OF_MEMORY : TTN_JSON_INVALID;
}

/* ---- Readers of checked elements. ---- */

static size_t put_utf8(char *output, uint32_t code) {
    if (code < 0x80) {
        output[0] = (char)code;
        return 1;
    }
    if (code < 0x800) {
        output[0] = (char)(0xC0 | code >> 6);
        output[1] = (char)(0x80 | (code & 0x3F));
        return 2;
    }
    if (code < 0x10000) {
        output[0] = (char)(0xE0 | code >> 12);
        output[1] = (char)(0x80 | (code >> 6 & 0x3F));
        output[2] = (char)(0x80 | (code & 0x3F));
        return 3;
    }
    output[0] = (char)(0xF0 | code >> 18);
    output[1] = (char)(0x80 | (code >> 12 & 0x3F));
    output[2] = (char)(0x80 | (code >> 6 & 0x3F));
    output[3] = (char)(0x80 | (code & 0x3F));
    return 4;
}

static uint32_t checked_hex_quad(const char *p) {
    uint32_t value = 0;
    for (int i = 0; i < 4; i++) value = value << 4 | (uint32_t)hex_digit((unsigned char)p[i]);
    return value;
}

size_t ttn_json_unescape(const char *text, const ttn_json_element *element, char *output) {
    const char *p = text + element->start, *end = text + element->end;
    size_t length = 0;
    while (p < end) {
        const char *backslash = memchr(p, '\\', (size_t)(end - p));
        size_t run = (size_t)((backslash ? backslash : end) - p);
        memcpy(output + length, p, run);
        length += run;
        p += run;
        if (!backslash) break;
        char escaped = p[1];
        p += 2;
        switch (escaped) {
        case 'b': output[length++] = '\b'; break;
        case 'f': output[length++] = '\f'; break;
        case 'n': output[length++] = '\n'; break;
        case 'r': output[length++] = '\r'; break;
        case 't': output[length++] = '\t'; break;
        case 'u': {
            uint32_t code = checked_hex_quad(p);
            p += 4;
            if (code >= 0xD800 && code < 0xDC00) { /* the parser checked that a low surrogate follows */
                code = 0x10000 + ((code - 0xD800) << 10) + (checked_hex_quad(p + 2) - 0xDC00);
                p += 6;
            }
            length += put_utf8(output + length, code);
            break;
        }
        default: output[length++] = escaped; /* \" \\ \/ */
        }
    }
    return length;
}

int ttn_json_integer(const char *text, const ttn_json_element *element, int64_t *value) {
    if (!element->plain) return 0;
    const char *p = text + element->start, *end = text + element->end;
    int negative = *p == '-';
    if (negative) p++;
    uint64_t magnitude = 0;
    for (; p < end; p++) {
        unsigned digit = (unsigned)(*p - '0');
        if (magnitude > (UINT64_MAX - digit) / 10) return 0;
        magnitude = magnitude * 10 + digit;
    }
    if (negative) {
        if (magnitude > (uint64_t)INT64_MAX + 1) return 0;
        *value = (int64_t)(0 - magnitude);
    } else {
        if (magnitude > (uint64_t)INT64_MAX) return 0;
        *value = (int64_t)magnitude;
    }
    return 1;
}

/* Powers of ten that a double holds exactly. */
static const double exact_powers_of_ten[] = {
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19,
    1e20, 1e21, 1e22
};

/* A number whose digits make an integer below 2^53 and whose decimal exponent is at most 22 either way: both are
 * exact doubles, so one multiplication or division gives the correctly rounded value (Clinger's fast path).
 * Returns 0 for any other number, left to the full conversion. */
static int exact_double(const char *p, const char *end, double *value) {
    int negative = *p == '-';
    if (negative) p++;
    uint64_t mantissa = 0;
    int exponent = 0, in_fraction = 0;
    for (; p < end; p++) {
        if (*p == '.') {
            in_fraction = 1;
        } else if ((unsigned char)(*p - '0') < 10) {
            mantissa = mantissa * 10 + (uint64_t)(*p - '0');
            if (mantissa >= (uint64_t)1 << 53) return 0;
            if (in_fraction) exponent--;
        } else {
            break; /* the exponent */
        }
    }
    if (p < end) {
        p++; /* e or E */
        int sign = 1;
        if (*p == '-' || *p == '+') sign = *p++ == '-' ? -1 : 1;
        if (end - p > 3) return 0;
        int written = 0;
        for (; p < end; p++) written = written * 10 + (*p - '0');
        exponent += sign * written;
    }
    if (exponent > 22 || exponent < -22) return 0;
    double power = exact_powers_of_ten[exponent < 0 ? -exponent : exponent];
    double magnitude = exponent < 0 ? (double)mantissa / power : (double)mantissa * power;
    *value = negative ? -magnitude : magnitude;
    return 1;
}

static locale_t c_locale;
static pthread_once_t c_locale_once = PTHREAD_ONCE_INIT;
static void make_c_locale(void) { c_locale = newlocale(LC_NUMERIC_MASK, "C", (locale_t)0); }

double ttn_json_double(const char *text, const ttn_json_element *element) {
    const char *p = text + element->start, *end = text + element->end;
    double value;
    if (exact_double(p, end, &value)) return value;
    /* glibc's strtod rounds correctly; the C locale makes '.' the decimal point whatever the process set. */
    char buffer[128];
    size_t length = (size_t)(end - p);
    char *copy = length < sizeof buffer ? buffer : malloc(length + 1);
    if (!copy) return 0.0 / 0.0;
    memcpy(copy, p, length);
    copy[length] = 0;
    pthread_once(&c_locale_once, make_c_locale);
    value = strtod_l(copy, NULL, c_locale);
    if (copy != buffer) free(copy);
    return value;
}
