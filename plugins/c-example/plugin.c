/*
 * A Ward job plugin in C: validates and normalises a contact record.
 *
 * Built into a WebAssembly component with clang (wasm32-wasi), bindings from
 * `wit-bindgen c` and `wasm-tools component embed/new` (see
 * docs/plugins.md, "Other languages"); `scripts/build-lang-plugins c` does it.
 *
 * The payload is a JSON object such as
 * {"email":"Ada@Example.com","name":" Ada Lovelace ","simulate":"none"}:
 *
 * - `email` must be a string with exactly one `@` and text on both sides;
 *   it is returned with ASCII letters lower-cased.
 * - `name` must be a string that is not empty once ASCII whitespace is
 *   trimmed from both ends; it is returned trimmed.
 * - `simulate` (optional): "none", or "upstream-503" to fail transiently
 *   (code `http-503`, upstream `crm`) on attempts 1 and 2.
 *
 * Anything else (invalid JSON, not an object, a bad field) fails permanently
 * with code `invalid-record` and a message naming the field. On success the
 * result is {"email":...,"name":...,"attempt":N}, compact, in that key order.
 * The Python, JavaScript and C examples behave byte for byte the same, and
 * each reports progress (50, "record is valid") once the record is valid.
 * Built against ward:plugin@0.2.0 (plugin-sdk/wit).
 *
 * Memory: the `job` argument belongs to this function (freed here); the
 * result bytes and the failure's strings must be malloc'd, since the
 * generated glue frees them after the host has copied them out. Running out
 * of memory aborts, which the host reports as a crash of this attempt.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "job_plugin.h"

/* Records nested deeper than this are refused, the same in every language. */
#define MAX_DEPTH 256
#define STR(x) STR_(x)
#define STR_(x) #x

/* ---- a growable byte buffer --------------------------------------------- */

typedef struct {
  uint8_t *ptr;
  size_t len;
  size_t cap;
} buf_t;

static void buf_reserve(buf_t *b, size_t more) {
  if (b->cap - b->len >= more) {
    return;
  }
  size_t cap = b->cap ? b->cap : 64;
  while (cap - b->len < more) {
    cap *= 2;
  }
  uint8_t *p = realloc(b->ptr, cap);
  if (p == NULL) {
    abort();
  }
  b->ptr = p;
  b->cap = cap;
}

static void buf_push(buf_t *b, const void *data, size_t n) {
  buf_reserve(b, n);
  memcpy(b->ptr + b->len, data, n);
  b->len += n;
}

static void buf_byte(buf_t *b, uint8_t c) { buf_push(b, &c, 1); }

static void buf_str(buf_t *b, const char *s) { buf_push(b, s, strlen(s)); }

static void buf_u64(buf_t *b, uint64_t v) {
  char digits[20];
  size_t n = 0;
  do {
    digits[n++] = (char)('0' + v % 10);
    v /= 10;
  } while (v > 0);
  while (n > 0) {
    buf_byte(b, (uint8_t)digits[--n]);
  }
}

static void buf_free(buf_t *b) {
  free(b->ptr);
  *b = (buf_t){0};
}

/* ---- a strict JSON reader, enough for one flat record ------------------- */

/* Whether `s` is well-formed UTF-8 (no overlong forms, no surrogates). */
static bool valid_utf8(const uint8_t *s, size_t n) {
  size_t i = 0;
  while (i < n) {
    uint8_t c = s[i];
    size_t extra;
    uint32_t min;
    uint32_t cp;
    if (c < 0x80) {
      i++;
      continue;
    } else if ((c & 0xE0) == 0xC0) {
      extra = 1, min = 0x80, cp = c & 0x1F;
    } else if ((c & 0xF0) == 0xE0) {
      extra = 2, min = 0x800, cp = c & 0x0F;
    } else if ((c & 0xF8) == 0xF0) {
      extra = 3, min = 0x10000, cp = c & 0x07;
    } else {
      return false;
    }
    if (n - i <= extra) {
      return false;
    }
    for (size_t k = 1; k <= extra; k++) {
      if ((s[i + k] & 0xC0) != 0x80) {
        return false;
      }
      cp = (cp << 6) | (s[i + k] & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) {
      return false;
    }
    i += extra + 1;
  }
  return true;
}

typedef struct {
  const uint8_t *p;
  const uint8_t *end;
  bool too_deep;
} reader_t;

static void skip_ws(reader_t *r) {
  while (r->p < r->end &&
         (*r->p == ' ' || *r->p == '\t' || *r->p == '\n' || *r->p == '\r')) {
    r->p++;
  }
}

/* Consumes `c` (after whitespace), or returns false. */
static bool expect(reader_t *r, char c) {
  skip_ws(r);
  if (r->p < r->end && *r->p == (uint8_t)c) {
    r->p++;
    return true;
  }
  return false;
}

static bool peek(reader_t *r, char c) {
  skip_ws(r);
  return r->p < r->end && *r->p == (uint8_t)c;
}

static int32_t hex4(reader_t *r) {
  if (r->end - r->p < 4) {
    return -1;
  }
  int32_t v = 0;
  for (int i = 0; i < 4; i++) {
    uint8_t c = *r->p++;
    v <<= 4;
    if (c >= '0' && c <= '9') {
      v |= c - '0';
    } else if (c >= 'a' && c <= 'f') {
      v |= c - 'a' + 10;
    } else if (c >= 'A' && c <= 'F') {
      v |= c - 'A' + 10;
    } else {
      return -1;
    }
  }
  return v;
}

static void put_utf8(buf_t *out, uint32_t cp) {
  uint8_t b[4];
  size_t n;
  if (cp < 0x80) {
    b[0] = (uint8_t)cp, n = 1;
  } else if (cp < 0x800) {
    b[0] = 0xC0 | (cp >> 6), b[1] = 0x80 | (cp & 0x3F), n = 2;
  } else if (cp < 0x10000) {
    b[0] = 0xE0 | (cp >> 12), b[1] = 0x80 | ((cp >> 6) & 0x3F),
    b[2] = 0x80 | (cp & 0x3F), n = 3;
  } else {
    b[0] = 0xF0 | (cp >> 18), b[1] = 0x80 | ((cp >> 12) & 0x3F),
    b[2] = 0x80 | ((cp >> 6) & 0x3F), b[3] = 0x80 | (cp & 0x3F), n = 4;
  }
  buf_push(out, b, n);
}

/*
 * Reads a string (the reader is on its opening quote). With `out`, appends
 * the decoded UTF-8. An escaped unpaired surrogate ("\ud800") is valid JSON
 * but not Unicode text: it sets `*lone` (and decodes as U+FFFD).
 */
static bool read_string(reader_t *r, buf_t *out, bool *lone) {
  r->p++;
  while (r->p < r->end) {
    uint8_t c = *r->p++;
    if (c == '"') {
      return true;
    }
    if (c < 0x20) {
      return false;
    }
    if (c != '\\') {
      if (out) {
        buf_byte(out, c);
      }
      continue;
    }
    if (r->p == r->end) {
      return false;
    }
    uint8_t e = *r->p++;
    uint32_t cp;
    switch (e) {
      case '"': cp = '"'; break;
      case '\\': cp = '\\'; break;
      case '/': cp = '/'; break;
      case 'b': cp = '\b'; break;
      case 'f': cp = '\f'; break;
      case 'n': cp = '\n'; break;
      case 'r': cp = '\r'; break;
      case 't': cp = '\t'; break;
      case 'u': {
        int32_t u = hex4(r);
        if (u < 0) {
          return false;
        }
        cp = (uint32_t)u;
        if (cp >= 0xD800 && cp <= 0xDBFF && r->end - r->p >= 6 && r->p[0] == '\\' &&
            r->p[1] == 'u') {
          reader_t look = {r->p + 2, r->end, false};
          int32_t low = hex4(&look);
          if (low < 0) {
            return false;
          }
          if (low >= 0xDC00 && low <= 0xDFFF) {
            cp = 0x10000 + ((cp - 0xD800) << 10) + ((uint32_t)low - 0xDC00);
            r->p = look.p;
          }
        }
        if (cp >= 0xD800 && cp <= 0xDFFF) {
          *lone = true;
          cp = 0xFFFD;
        }
        break;
      }
      default:
        return false;
    }
    if (out) {
      put_utf8(out, cp);
    }
  }
  return false;
}

static bool read_digits(reader_t *r) {
  const uint8_t *start = r->p;
  while (r->p < r->end && *r->p >= '0' && *r->p <= '9') {
    r->p++;
  }
  return r->p > start;
}

static bool read_number(reader_t *r) {
  if (*r->p == '-') {
    r->p++;
  }
  if (r->p < r->end && *r->p == '0') {
    r->p++;
  } else if (!read_digits(r)) {
    return false;
  }
  if (r->p < r->end && *r->p == '.') {
    r->p++;
    if (!read_digits(r)) {
      return false;
    }
  }
  if (r->p < r->end && (*r->p == 'e' || *r->p == 'E')) {
    r->p++;
    if (r->p < r->end && (*r->p == '+' || *r->p == '-')) {
      r->p++;
    }
    if (!read_digits(r)) {
      return false;
    }
  }
  return true;
}

static bool read_word(reader_t *r, const char *word) {
  size_t n = strlen(word);
  if ((size_t)(r->end - r->p) < n || memcmp(r->p, word, n) != 0) {
    return false;
  }
  r->p += n;
  return true;
}

/* Reads and discards any JSON value, inside `depth` arrays and objects. */
static bool skip_value(reader_t *r, int depth) {
  bool lone = false;
  skip_ws(r);
  if (r->p == r->end) {
    return false;
  }
  if ((*r->p == '[' || *r->p == '{') && depth + 1 > MAX_DEPTH) {
    r->too_deep = true;
    return false;
  }
  switch (*r->p) {
    case '"':
      return read_string(r, NULL, &lone);
    case 't':
      return read_word(r, "true");
    case 'f':
      return read_word(r, "false");
    case 'n':
      return read_word(r, "null");
    case '[':
      r->p++;
      if (expect(r, ']')) {
        return true;
      }
      do {
        if (!skip_value(r, depth + 1)) {
          return false;
        }
      } while (expect(r, ','));
      return expect(r, ']');
    case '{':
      r->p++;
      if (expect(r, '}')) {
        return true;
      }
      do {
        if (!peek(r, '"') || !read_string(r, NULL, &lone) || !expect(r, ':') ||
            !skip_value(r, depth + 1)) {
          return false;
        }
      } while (expect(r, ','));
      return expect(r, '}');
    default:
      if (*r->p == '-' || (*r->p >= '0' && *r->p <= '9')) {
        return read_number(r);
      }
      return false;
  }
}

/* One of the record's fields: absent, a string (decoded), or something else. */
typedef struct {
  enum { FIELD_ABSENT, FIELD_STRING, FIELD_OTHER } kind;
  buf_t text;
  bool lone_surrogate;
} field_t;

typedef struct {
  field_t email;
  field_t name;
  field_t simulate;
} record_t;

static void record_free(record_t *rec) {
  buf_free(&rec->email.text);
  buf_free(&rec->name.text);
  buf_free(&rec->simulate.text);
}

static bool key_is(const buf_t *key, const char *name) {
  return key->len == strlen(name) && memcmp(key->ptr, name, key->len) == 0;
}

typedef enum { PARSE_OK, PARSE_NOT_JSON, PARSE_NOT_OBJECT, PARSE_TOO_DEEP } parse_result_t;

/* Reads the payload; a key given twice keeps its last value, as in JSON.parse. */
static parse_result_t parse_record(const uint8_t *data, size_t len, record_t *rec) {
  if (!valid_utf8(data, len)) {
    return PARSE_NOT_JSON;
  }
  reader_t r = {data, data + len, false};
  if (!peek(&r, '{')) {
    bool value = skip_value(&r, 0);
    skip_ws(&r);
    return value && r.p == r.end ? PARSE_NOT_OBJECT
           : r.too_deep          ? PARSE_TOO_DEEP
                                 : PARSE_NOT_JSON;
  }
  r.p++;
  if (!expect(&r, '}')) {
    do {
      buf_t key = {0};
      bool key_lone = false;
      if (!peek(&r, '"') || !read_string(&r, &key, &key_lone) || !expect(&r, ':')) {
        buf_free(&key);
        return PARSE_NOT_JSON;
      }
      field_t *field = NULL;
      if (!key_lone) {
        field = key_is(&key, "email")      ? &rec->email
                : key_is(&key, "name")     ? &rec->name
                : key_is(&key, "simulate") ? &rec->simulate
                                           : NULL;
      }
      buf_free(&key);
      bool ok;
      if (field != NULL && peek(&r, '"')) {
        field->text.len = 0;
        field->lone_surrogate = false;
        field->kind = FIELD_STRING;
        ok = read_string(&r, &field->text, &field->lone_surrogate);
      } else {
        if (field != NULL) {
          field->kind = FIELD_OTHER;
        }
        ok = skip_value(&r, 1);
      }
      if (!ok) {
        return r.too_deep ? PARSE_TOO_DEEP : PARSE_NOT_JSON;
      }
    } while (expect(&r, ','));
    if (!expect(&r, '}')) {
      return PARSE_NOT_JSON;
    }
  }
  skip_ws(&r);
  return r.p == r.end ? PARSE_OK : PARSE_NOT_JSON;
}

/* Appends `s` as a JSON string, escaped as Python's json and JSON.stringify do. */
static void put_json_string(buf_t *out, const uint8_t *s, size_t n) {
  buf_byte(out, '"');
  for (size_t i = 0; i < n; i++) {
    uint8_t c = s[i];
    switch (c) {
      case '"': buf_str(out, "\\\""); break;
      case '\\': buf_str(out, "\\\\"); break;
      case '\b': buf_str(out, "\\b"); break;
      case '\f': buf_str(out, "\\f"); break;
      case '\n': buf_str(out, "\\n"); break;
      case '\r': buf_str(out, "\\r"); break;
      case '\t': buf_str(out, "\\t"); break;
      default:
        if (c < 0x20) {
          static const char hex[] = "0123456789abcdef";
          buf_str(out, "\\u00");
          buf_byte(out, (uint8_t)hex[c >> 4]);
          buf_byte(out, (uint8_t)hex[c & 0xF]);
        } else {
          buf_byte(out, c);
        }
    }
  }
  buf_byte(out, '"');
}

/* ---- the plugin ---------------------------------------------------------- */

static bool is_trim_space(uint8_t c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r';
}

static bool is_string(const field_t *f) {
  return f->kind == FIELD_STRING && !f->lone_surrogate;
}

static bool text_is(const field_t *f, const char *s) {
  return is_string(f) && key_is(&f->text, s);
}

/* A string the generated glue may free: a malloc'd copy of `s`. */
static job_plugin_string_t owned(const char *s) {
  job_plugin_string_t out;
  job_plugin_string_dup(&out, s);
  return out;
}

/* Fills in a failure; takes over `message` (malloc'd) as its message. */
static void fail(job_plugin_failure_t *err, ward_plugin_types_failure_class_t cls,
                 buf_t message, const char *code, const char *upstream) {
  *err = (job_plugin_failure_t){0};
  err->class_ = cls;
  err->message = (job_plugin_string_t){message.ptr, message.len};
  err->code.is_some = true;
  err->code.val = owned(code);
  if (upstream != NULL) {
    err->upstream.is_some = true;
    err->upstream.val = owned(upstream);
  }
}

static void invalid(job_plugin_failure_t *err, const char *message) {
  buf_t text = {0};
  buf_str(&text, message);
  fail(err, WARD_PLUGIN_TYPES_FAILURE_CLASS_PERMANENT, text, "invalid-record", NULL);
}

/* The transformation itself; `job` stays owned by the caller. */
static bool run(const job_plugin_job_t *job, job_plugin_list_u8_t *ret,
                job_plugin_failure_t *err) {
  buf_t line = {0};
  buf_str(&line, "c-example: attempt ");
  buf_u64(&line, job->attempt);
  buf_str(&line, ", ");
  buf_u64(&line, job->payload.len);
  buf_str(&line, " payload bytes");
  job_plugin_string_t message = {line.ptr, line.len};
  ward_plugin_host_log(WARD_PLUGIN_HOST_LEVEL_INFO, &message);
  buf_free(&line);

  record_t rec = {0};
  switch (parse_record(job->payload.ptr, job->payload.len, &rec)) {
    case PARSE_OK:
      break;
    case PARSE_NOT_JSON:
      record_free(&rec);
      invalid(err, "payload is not valid JSON");
      return false;
    case PARSE_NOT_OBJECT:
      record_free(&rec);
      invalid(err, "record must be a JSON object");
      return false;
    case PARSE_TOO_DEEP:
      record_free(&rec);
      invalid(err, "payload nests deeper than " STR(MAX_DEPTH) " levels");
      return false;
  }

  const buf_t *email = &rec.email.text;
  size_t ats = 0, at = 0;
  for (size_t i = 0; i < email->len; i++) {
    if (email->ptr[i] == '@') {
      ats++, at = i;
    }
  }
  if (!is_string(&rec.email) || ats != 1 || at == 0 || at == email->len - 1) {
    record_free(&rec);
    invalid(err, "email must be a string with exactly one @ and text on both sides");
    return false;
  }

  const uint8_t *name = rec.name.text.ptr;
  size_t name_len = rec.name.text.len;
  while (name_len > 0 && is_trim_space(name[0])) {
    name++, name_len--;
  }
  while (name_len > 0 && is_trim_space(name[name_len - 1])) {
    name_len--;
  }
  if (!is_string(&rec.name) || name_len == 0) {
    record_free(&rec);
    invalid(err, "name must be a non-empty string");
    return false;
  }

  bool simulate_503 = text_is(&rec.simulate, "upstream-503");
  if (rec.simulate.kind != FIELD_ABSENT && !simulate_503 && !text_is(&rec.simulate, "none")) {
    record_free(&rec);
    invalid(err, "simulate must be \"none\" or \"upstream-503\"");
    return false;
  }

  if (simulate_503 && job->attempt <= 2) {
    record_free(&rec);
    buf_t text = {0};
    buf_str(&text, "crm answered 503 (simulated, attempt ");
    buf_u64(&text, job->attempt);
    buf_str(&text, ")");
    fail(err, WARD_PLUGIN_TYPES_FAILURE_CLASS_TRANSIENT, text, "http-503", "crm");
    return false;
  }

  /* ward:plugin@0.2.0: `ward job show` and the admin API show this. */
  job_plugin_string_t valid = {(uint8_t *)"record is valid", 15};
  ward_plugin_jobs_progress(50, &valid);

  for (size_t i = 0; i < email->len; i++) {
    if (email->ptr[i] >= 'A' && email->ptr[i] <= 'Z') {
      email->ptr[i] += 'a' - 'A';
    }
  }
  buf_t out = {0};
  buf_str(&out, "{\"email\":");
  put_json_string(&out, email->ptr, email->len);
  buf_str(&out, ",\"name\":");
  put_json_string(&out, name, name_len);
  buf_str(&out, ",\"attempt\":");
  buf_u64(&out, job->attempt);
  buf_str(&out, "}");
  record_free(&rec);

  ret->ptr = out.ptr;
  ret->len = out.len;
  return true;
}

bool exports_job_plugin_handle(job_plugin_job_t *job, job_plugin_list_u8_t *ret,
                               job_plugin_failure_t *err) {
  bool ok = run(job, ret, err);
  job_plugin_job_free(job);
  return ok;
}
