"""Strict reading of the user's text files: UTF-8 only and CSV/TSV records, with file:line errors (JSON: ``jsontext``).

Every reader in this package goes through here so a malformed file always becomes one ``UserError``
naming the file and the line, never a traceback and never a silently repaired value.
"""

from __future__ import annotations

import contextlib
import csv
import io
import re
from collections.abc import Iterator
from pathlib import Path

from lor2c_probe.errors import UserError

UTF8_BOM = b"\xef\xbb\xbf"
_UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")
# Line ends as csv and io count them (universal newlines), so every reader numbers lines alike.
_BREAK = re.compile(r"\r\n|\r|\n")
_BREAK_BYTES = re.compile(rb"\r\n|\r|\n")


def line_of(text: str, pos: int, start: int = 0, line: int = 1) -> int:
    """1-based line of ``text[pos]``, counting from ``line`` at ``start`` (pass the last answer to count on)."""
    return line + len(_BREAK.findall(text, start, pos))


def read_text(path: Path) -> str:
    """The file decoded as strict UTF-8, a leading BOM dropped; a bad byte is reported with its line and offset."""
    if not path.is_file():
        raise UserError(f"data file not found: {path}")
    try:
        data = path.read_bytes()
    except OSError as e:
        raise UserError(f"{path}: cannot read the file ({e.strerror})") from None
    skip = len(UTF8_BOM) if data.startswith(UTF8_BOM) else 0
    try:
        return data[skip:].decode("utf-8")
    except UnicodeDecodeError as e:
        offset = skip + e.start
        line = 1 + len(_BREAK_BYTES.findall(data, 0, offset))
        bad = " ".join(f"0x{b:02x}" for b in data[offset : skip + e.end])
        hint = "the file starts with a UTF-16 byte-order mark" if data.startswith(_UTF16_BOMS) else f"{e.reason}: {bad}"
        raise UserError(f"{path}:{line}: not valid UTF-8 at byte offset {offset} ({hint}); save the file as UTF-8") from None


def check_text(value: str, where: str, what: str) -> str:
    """``value`` unless it holds a lone surrogate (JSON "\\ud800"), which no tokenizer or table writer can encode."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as e:
        raise UserError(f"{where}: {what} holds an unpaired surrogate \\u{ord(value[e.start]):04x}, which is not text") from None
    return value


def check_header(path: Path, line: int, header: list[str]) -> None:
    seen: set[str] = set()
    for name in header:
        if name in seen:
            raise UserError(f"{path}:{line}: column {name!r} appears twice in the header")
        seen.add(name)


@contextlib.contextmanager
def _field_limit(size: int) -> Iterator[None]:
    # Long texts are legitimate (they are truncated to --max-length tokens later), so no field that fits in
    # the file is refused; the process-wide limit is restored for other csv users.
    old = csv.field_size_limit()
    csv.field_size_limit(max(old, size + 1))
    try:
        yield
    finally:
        csv.field_size_limit(old)


def csv_rows(path: Path, text: str, delimiter: str, quoting: int = csv.QUOTE_MINIMAL) -> list[tuple[int, list[str]]]:
    """(line where the record starts, fields) for each non-blank record; malformed quoting is an error."""
    kind = "TSV" if delimiter == "\t" else "CSV"
    # strict: a stray character after a closing quote or a quote left open at the end of the file is an
    # error, where the lenient parser would silently glue the rest of the file into one field.
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, quoting=quoting, strict=True)
    out: list[tuple[int, list[str]]] = []
    with _field_limit(len(text)):
        while True:
            start = reader.line_num + 1
            try:
                row = next(reader)
            except StopIteration:
                return out
            except csv.Error as e:
                if str(e) != "unexpected end of data":
                    raise UserError(f"{path}:{reader.line_num}: malformed {kind} ({e}); inside a quoted field write a quote as \"\"") from None
                pos = _open_quote(text, line_start(text, start), delimiter)
                line = line_of(text, pos)
                col = pos - line_start(text, line) + 1
                raise UserError(f"{path}:{line}: the quote opened at column {col} is never closed (the field runs to the end of the file)") from None
            if row:
                out.append((start, row))


def line_start(text: str, line: int) -> int:
    if line <= 1:
        return 0
    for n, m in enumerate(_BREAK.finditer(text), start=2):
        if n == line:
            return m.end()
    return len(text)


def _open_quote(text: str, start: int, delimiter: str) -> int:
    """Offset of the quote that opens a field left open at the end of ``text``, scanning one record from ``start``."""
    i, at_field_start, opened = start, True, start
    while i < len(text):
        if at_field_start and text[i] == '"':
            opened = close = i
            while True:  # "" inside a quoted field is an escaped quote, not the end
                close = text.find('"', close + 1)
                if close == -1:
                    return opened
                if not text.startswith('""', close):
                    break
                close += 1
            i, at_field_start = close + 1, False
            continue
        at_field_start = text[i] in (delimiter, "\r", "\n")
        i += 1
    return opened


def lines(text: str) -> Iterator[tuple[int, str]]:
    """(line number, line without its line end) with the same universal newlines csv counts."""
    for n, line in enumerate(io.StringIO(text, newline=""), start=1):
        yield n, line.rstrip("\r\n")
