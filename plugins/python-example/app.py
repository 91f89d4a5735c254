"""A Ward job plugin in Python: validates and normalises a contact record.

Built into a WebAssembly component by componentize-py (see
docs/plugins.md, "Other languages"); `scripts/build-lang-plugins python` does it.

The payload is a JSON object such as
``{"email":"Ada@Example.com","name":" Ada Lovelace ","simulate":"none"}``:

- ``email`` must be a string with exactly one ``@`` and text on both sides;
  it is returned with ASCII letters lower-cased.
- ``name`` must be a string that is not empty once ASCII whitespace is
  trimmed from both ends; it is returned trimmed.
- ``simulate`` (optional): ``"none"``, or ``"upstream-503"`` to fail
  transiently (code ``http-503``, upstream ``crm``) on attempts 1 and 2.

Anything else (invalid JSON, not an object, a bad field) fails permanently
with code ``invalid-record`` and a message naming the field. On success the
result is ``{"email":…,"name":…,"attempt":N}``, compact, in that key order.
The Python, JavaScript and C examples behave byte for byte the same, and
each reports progress (``50``, ``record is valid``) once the record is valid.
Built against ``ward:plugin@0.2.0`` (``plugin-sdk/wit``).
"""

import json
import re
from itertools import accumulate

import wit_world
from componentize_py_types import Err
from wit_world.imports import host, jobs
from wit_world.imports.types import Failure, FailureClass, Job

# Records nested deeper than this are refused, the same in every language:
# CPython's parser would otherwise overflow the wasm stack (a crash) a few
# thousand levels down.
MAX_DEPTH = 256
_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)
_NOT_BRACKETS = re.compile(r"[^\[\]{}]")

# What `trim` removes: ASCII whitespace, the same set in every language.
_WHITESPACE = " \t\n\v\f\r"
_UPPER_TO_LOWER = str.maketrans(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz"
)


def _invalid(message: str) -> Err:
    return Err(Failure(FailureClass.PERMANENT, message, "invalid-record", None, None))


def _reject_constant(name: str) -> None:
    # Python's json accepts NaN and Infinity; JSON (and the other examples) do not.
    raise ValueError(f"{name} is not JSON")


def _depth(text: str) -> int:
    """How deeply the JSON text nests arrays and objects."""
    brackets = _NOT_BRACKETS.sub("", _STRINGS.sub("", text))
    return max(accumulate((1 if b in "[{" else -1 for b in brackets), initial=0))


def _parse(payload: bytes) -> dict:
    """Decodes the record, or raises `Err` with an `invalid-record` failure."""
    try:
        text = payload.decode("utf-8")
    except UnicodeError:
        raise _invalid("payload is not valid JSON") from None
    if _depth(text) > MAX_DEPTH:
        raise _invalid(f"payload nests deeper than {MAX_DEPTH} levels")
    try:
        record = json.loads(text, parse_constant=_reject_constant)
    except (ValueError, RecursionError):
        raise _invalid("payload is not valid JSON") from None
    if not isinstance(record, dict):
        raise _invalid("record must be a JSON object")
    return record


def _text(value: object) -> str | None:
    """`value` if it is a string that is valid Unicode, else None.

    JSON can spell an unpaired surrogate ("\\ud800"); such a string cannot be
    encoded as UTF-8, so it counts as not a string.
    """
    if not isinstance(value, str):
        return None
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return None
    return value


class WitWorld(wit_world.WitWorld):
    def handle(self, job: Job) -> bytes:
        host.log(
            host.Level.INFO,
            f"python-example: attempt {job.attempt}, {len(job.payload)} payload bytes",
        )
        record = _parse(job.payload)

        email = _text(record.get("email"))
        if not (
            email is not None
            and email.count("@") == 1
            and all(email.split("@"))
        ):
            raise _invalid("email must be a string with exactly one @ and text on both sides")
        name = _text(record.get("name"))
        if name is None or not name.strip(_WHITESPACE):
            raise _invalid("name must be a non-empty string")
        simulate = record.get("simulate", "none")
        if simulate not in ("none", "upstream-503"):
            raise _invalid('simulate must be "none" or "upstream-503"')

        if simulate == "upstream-503" and job.attempt <= 2:
            raise Err(
                Failure(
                    FailureClass.TRANSIENT,
                    f"crm answered 503 (simulated, attempt {job.attempt})",
                    "http-503",
                    "crm",
                    None,
                )
            )

        # ward:plugin@0.2.0: `ward job show` and the admin API show this.
        jobs.progress(50, "record is valid")
        result = {
            "email": email.translate(_UPPER_TO_LOWER),
            "name": name.strip(_WHITESPACE),
            "attempt": job.attempt,
        }
        return json.dumps(result, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
