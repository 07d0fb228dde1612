#ifndef TTN_JSON_H
#define TTN_JSON_H
/* The project's one JSON grammar (RFC 8259, UTF-8 checked), used by the Swift side (TTNCore's JSONTape) and the
 * Lua side (CLuaShim) alike. Parsing checks a whole text in one pass and writes a tape: every value, and every
 * object member's key, as one element in document order over the original bytes. Strings and numbers stay bytes
 * until a reader converts them with the functions below. Nothing here allocates but through the caller's
 * function, and nothing raises. */
#include <stddef.h>
#include <stdint.h>

/* At most this many objects and arrays nested in one another; deeper texts are refused, so that hostile input
 * cannot exhaust a reader's stack. The Lua encoder stops cycles at the same depth. */
#define TTN_JSON_MAX_DEPTH 256

enum ttn_json_kind {
    TTN_JSON_NULL = 0, TTN_JSON_TRUE, TTN_JSON_FALSE, TTN_JSON_NUMBER, TTN_JSON_STRING, TTN_JSON_ARRAY, TTN_JSON_OBJECT
};

/* One value, or one member's key (a string element followed by its value's elements). 20 bytes. */
typedef struct ttn_json_element {
    uint8_t kind;   /* enum ttn_json_kind */
    uint8_t plain;  /* a string without escapes; a number without fraction or exponent */
    uint32_t start; /* strings: the first byte after the quote; numbers: the first digit or '-'; containers: the bracket */
    uint32_t end;   /* strings: the closing quote; numbers: after the last digit; containers: after the closing bracket */
    uint32_t count; /* containers: members or elements */
    uint32_t next;  /* the index of the element after this value and everything inside it */
} ttn_json_element;

/* (Re)allocates `block` of `old_size` bytes to `new_size` bytes, or frees it when `new_size` is 0; NULL when the
 * memory is refused. NULL as the function means malloc, realloc and free. */
typedef void *(*ttn_json_allocator)(void *context, void *block, size_t old_size, size_t new_size);

typedef struct ttn_json_tape {
    ttn_json_element *elements; /* allocated through the parse's allocator; the caller frees it (NULL: none) */
    size_t count;
    size_t capacity;            /* in elements */
    const char *error;          /* on failure: why, as static text ("unterminated string"), and where */
    size_t error_offset;
} ttn_json_tape;

/* What ttn_json_parse returns. */
enum ttn_json_status { TTN_JSON_OK = 1, TTN_JSON_INVALID = 0, TTN_JSON_OUT_OF_MEMORY = -1 };

/* Parses `length` bytes that must hold exactly one JSON value with optional white space around it into `tape`,
 * whose fields it sets and whose elements it allocates through `allocate`: the caller frees them, after a
 * failure too. Returns TTN_JSON_OK; or TTN_JSON_INVALID, or TTN_JSON_OUT_OF_MEMORY when the allocator refused,
 * with `error` and `error_offset` set. */
int ttn_json_parse(const char *text, size_t length, ttn_json_tape *tape, ttn_json_allocator allocate, void *context);

/* Writes the string element's text with its escapes resolved to `output`, which has room for its escaped length
 * (`end - start`, never less than the result); returns the resolved length. The element must come from a parse
 * of `text`, which checked its escapes. */
size_t ttn_json_unescape(const char *text, const ttn_json_element *element, char *output);

/* The number element's value as an integer, when it is one that fits 64 bits: 1 and `*value` set; else 0. */
int ttn_json_integer(const char *text, const ttn_json_element *element, int64_t *value);

/* The number element's value as the nearest double, correctly rounded and independent of the C locale;
 * an infinity when it is too large for one. NaN only when a number of over 127 characters needs a copy that
 * malloc refuses. */
double ttn_json_double(const char *text, const ttn_json_element *element);
#endif
