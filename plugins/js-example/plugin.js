// A Ward job plugin in JavaScript: validates and normalises a contact record.
//
// Built into a WebAssembly component by ComponentizeJS (see
// docs/plugins.md, "Other languages"); `scripts/build-lang-plugins js` does it.
//
// The payload is a JSON object such as
// {"email":"Ada@Example.com","name":" Ada Lovelace ","simulate":"none"}:
//
// - `email` must be a string with exactly one `@` and text on both sides;
//   it is returned with ASCII letters lower-cased.
// - `name` must be a string that is not empty once ASCII whitespace is
//   trimmed from both ends; it is returned trimmed.
// - `simulate` (optional): "none", or "upstream-503" to fail transiently
//   (code `http-503`, upstream `crm`) on attempts 1 and 2.
//
// Anything else (invalid JSON, not an object, a bad field) fails permanently
// with code `invalid-record` and a message naming the field. On success the
// result is {"email":…,"name":…,"attempt":N}, compact, in that key order.
// The Python, JavaScript and C examples behave byte for byte the same, and
// each reports progress (50, "record is valid") once the record is valid.
// Built against ward:plugin@0.2.0 (plugin-sdk/wit).
//
// WIT mapping (ComponentizeJS): the export `handle` is this module's
// `handle`; returning a value is `ok`, throwing `{ payload: failure }` is
// `err`. Records have camelCase fields, enums are their WIT names as strings,
// `option` is `undefined` when absent, `list<u8>` is a Uint8Array.

import { log } from 'ward:plugin/host@0.2.0';
import { progress } from 'ward:plugin/jobs@0.2.0';

// Records nested deeper than this are refused, the same in every language.
const MAX_DEPTH = 256;

// What trimming removes: ASCII whitespace, the same set in every language.
const EDGE_WHITESPACE = /^[ \t\n\v\f\r]+|[ \t\n\v\f\r]+$/g;

class Failure {
  constructor(cls, message, code, upstream) {
    // `payload` is what ComponentizeJS sends back as the `err` value.
    this.payload = {
      class: cls,
      message,
      code,
      upstream,
      retryAfterMs: undefined,
    };
  }
}

function invalid(message) {
  return new Failure('permanent', message, 'invalid-record', undefined);
}

// How deeply the JSON text nests arrays and objects.
function depth(text) {
  let level = 0;
  let deepest = 0;
  for (const c of text.replace(/"(?:[^"\\]|\\.)*"/gs, '')) {
    if (c === '[' || c === '{') {
      deepest = Math.max(deepest, ++level);
    } else if (c === ']' || c === '}') {
      level--;
    }
  }
  return deepest;
}

function parse(payload) {
  let text;
  try {
    // fatal: invalid UTF-8 is an error; ignoreBOM: a BOM is kept (and is
    // then not valid JSON), as in the other examples.
    text = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(payload);
  } catch {
    throw invalid('payload is not valid JSON');
  }
  if (depth(text) > MAX_DEPTH) {
    throw invalid(`payload nests deeper than ${MAX_DEPTH} levels`);
  }
  let record;
  try {
    record = JSON.parse(text);
  } catch {
    throw invalid('payload is not valid JSON');
  }
  if (typeof record !== 'object' || record === null || Array.isArray(record)) {
    throw invalid('record must be a JSON object');
  }
  return record;
}

// `value` if it is a string that is valid Unicode, else undefined. JSON can
// spell an unpaired surrogate ("\ud800"); such a string cannot be encoded as
// UTF-8, so it counts as not a string.
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;
function text(value) {
  return typeof value === 'string' && !LONE_SURROGATE.test(value) ? value : undefined;
}

export function handle(job) {
  log('info', `js-example: attempt ${job.attempt}, ${job.payload.length} payload bytes`);
  const record = parse(job.payload);

  const email = text(record.email);
  const parts = email === undefined ? [] : email.split('@');
  if (parts.length !== 2 || parts[0] === '' || parts[1] === '') {
    throw invalid('email must be a string with exactly one @ and text on both sides');
  }
  const name = (text(record.name) ?? '').replace(EDGE_WHITESPACE, '');
  if (name === '') {
    throw invalid('name must be a non-empty string');
  }
  const simulate = record.simulate === undefined ? 'none' : record.simulate;
  if (simulate !== 'none' && simulate !== 'upstream-503') {
    throw invalid('simulate must be "none" or "upstream-503"');
  }

  if (simulate === 'upstream-503' && job.attempt <= 2) {
    throw new Failure(
      'transient',
      `crm answered 503 (simulated, attempt ${job.attempt})`,
      'http-503',
      'crm',
    );
  }

  // ward:plugin@0.2.0: `ward job show` and the admin API show this.
  progress(50, 'record is valid');
  const result = {
    email: email.replace(/[A-Z]/g, (c) => c.toLowerCase()),
    name,
    attempt: job.attempt,
  };
  return new TextEncoder().encode(JSON.stringify(result));
}
