"""JSON values from the user's files, stricter than Python's json and with file:line errors."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

from lor2c_probe.data.textfile import line_of, line_start
from lor2c_probe.errors import UserError

_JSON_WS = re.compile(r"[ \t\n\r]*")


class _Refused(ValueError):
    """A JSON text the standard parser accepts but the data must not hold."""


def _no_constant(name: str) -> object:
    raise _Refused(f"{name} is not a number")


def _finite_float(text: str) -> float:
    x = float(text)
    if not math.isfinite(x):  # 1e400 parses to inf
        raise _Refused(f"{text} is too large for a number")
    return x


def _unique_keys(pairs: list[tuple[str, object]]) -> dict:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        dup = next(k for i, (k, _) in enumerate(pairs) if any(k == k2 for k2, _ in pairs[:i]))
        raise _Refused(f"key {dup!r} appears twice in one object")
    return obj


# Python's json accepts NaN/Infinity, turns 1e400 into inf and keeps the last of duplicate keys: all silent guesses.
_DECODER = json.JSONDecoder(parse_constant=_no_constant, parse_float=_finite_float, object_pairs_hook=_unique_keys)


def json_value(path: Path, text: str, pos: int, first_line: int = 1, hint: str = "") -> tuple[object, int]:
    """(value, end offset) of the JSON value at ``text[pos]``, ``text`` starting at line ``first_line`` of ``path``."""
    err_pos = None  # where the parser stopped; hooks and limits do not say, so the value's line is named
    try:
        return _DECODER.raw_decode(text, pos)
    except json.JSONDecodeError as e:
        err_pos, detail = e.pos, e.msg
    except _Refused as e:
        detail = str(e)
    except RecursionError:
        detail = "nested too deeply"
    except ValueError as e:  # e.g. an integer over Python's 4300-digit conversion limit
        detail = str(e)
    line = line_of(text, pos if err_pos is None else err_pos, line=first_line)
    at = f"line {line}" if err_pos is None else f"line {line}, column {err_pos - line_start(text, line - first_line + 1) + 1}"
    raise UserError(f"{path}:{line}: invalid JSON at {at} ({detail}){hint}")


def json_line(path: Path, line: int, text: str, hint: str = "") -> object:
    """The one JSON value that makes up ``text``, line ``line`` of a JSON Lines file."""
    value, end = json_value(path, text, skip_json_ws(text, 0), line, hint)
    if skip_json_ws(text, end) != len(text):
        raise UserError(f"{path}:{line}: invalid JSON at line {line}, column {end + 1} (extra data after the value){hint}")
    return value


def json_kind(value: object) -> str:
    """What a parsed JSON value is, in JSON's words (Python's would be NoneType, dict, list)."""
    kinds = ((type(None), "null"), (bool, "a boolean"), ((int, float), "a number"), (str, "a string"), (list, "an array"))
    return next((name for t, name in kinds if isinstance(value, t)), "an object")


def skip_json_ws(text: str, pos: int) -> int:
    return _JSON_WS.match(text, pos).end()  # type: ignore[union-attr]
