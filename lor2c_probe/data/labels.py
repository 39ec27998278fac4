"""Labels of the user's own data: which are numbers, which are class names, and their ids.

A label column holds numbers (integers: classes; any non-integer: a regression) or class names, never
both: a stray word among numbers, or a number among words, is refused unless the caller asks for string
labels, where every label (numbers too, as their text) is a class name.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

from lor2c_probe.data.textfile import check_text
from lor2c_probe.errors import UserError

STRING_LABELS_OPTION = "--string-labels"
# ASCII decimal only: float() would also take "1_000", " ١ " or "infinity", and each would be a guess.
_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?", re.ASCII)
_NON_FINITE = re.compile(r"[+-]?(?:nan|inf|infinity)", re.IGNORECASE)
_JSON_KIND = {bool: "a JSON boolean", list: "a JSON array", dict: "a JSON object"}


@dataclass(frozen=True)
class LabelScheme:
    regression: bool
    classes: tuple[str, ...]  # class names in id order; () for a regression
    string_labels: bool = False


def show(value: object, width: int = 40) -> str:
    text = repr(value) if isinstance(value, str) else _json_text(value)
    return text if len(text) <= width else text[: width - 3] + "..."


def _json_text(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, (list, dict)):
        return json.dumps(value, ensure_ascii=False)
    return repr(value) if not isinstance(value, int) or abs(value) < 10**40 else f"{str(value)[:20]}... ({len(str(value))} digits)"


def check_label(value: object, where: str) -> None:
    """Refuse what is neither a number nor a class name, whatever the scheme."""
    if value is None or (isinstance(value, str) and not value.strip()):
        raise UserError(f"{where}: missing or empty 'label'")
    kind = next((k for t, k in _JSON_KIND.items() if isinstance(value, t)), None)
    if kind is not None:
        raise UserError(f"{where}: label {show(value)} is {kind}; expected a number or a class name")
    if isinstance(value, str):
        check_text(value, where, "label")
    elif not isinstance(value, (int, float)):
        raise UserError(f"{where}: label {show(value)} is not a number or a class name")


def number(value: object, where: str) -> float | None:
    """The label as a finite number; None for a word. 'nan', 'inf' and overflowing numbers are refused."""
    if isinstance(value, str):
        text = value.strip()
        if _NON_FINITE.fullmatch(text):
            raise UserError(f"{where}: label {value!r} is not a finite number")
        if not _NUMBER.fullmatch(text):
            return None
        x = float(text)
    else:
        try:
            x = float(value)  # type: ignore[arg-type]
        except OverflowError:
            x = math.inf
    if not math.isfinite(x):
        raise UserError(f"{where}: label {show(value)} is not a finite number")
    return x


def _name(value: object) -> str:
    return value if isinstance(value, str) else repr(value) if isinstance(value, float) else str(value)


def infer(path: Path, raw: list, lines: list[int], string_labels: bool = False) -> LabelScheme:
    """The scheme the training labels imply (every label already passed ``check_label``)."""
    if string_labels:
        return LabelScheme(False, tuple(sorted({_name(v) for v in raw})), True)
    nums: list[tuple[int, object, float]] = []
    words: list[tuple[int, object]] = []
    for v, n in zip(raw, lines):
        x = number(v, f"{path}:{n}")
        if x is None:
            words.append((n, v))
        else:
            nums.append((n, v, x))
    if nums and words:
        (wn, wv), (nn, nv, _) = words[0], nums[0]
        raise UserError(
            f"{path}:{wn}: label {show(wv)} is a word but line {nn} has the number {show(nv)}; a label column holds "
            f"numbers or class names, not both (pass {STRING_LABELS_OPTION} to read every label as a class name)"
        )
    if words:
        return LabelScheme(False, tuple(sorted({str(v) for _, v in words})))
    values = [x for _, _, x in nums]
    if any(x != int(x) for x in values):
        return LabelScheme(True, ())
    return LabelScheme(False, tuple(str(int(x)) for x in sorted(set(values))))


def encode(path: Path, raw: list, lines: list[int], scheme: LabelScheme, train_path: Path) -> list:
    """Class ids (or regression targets) for ``raw``; a label the training file lacks is an error at its line."""
    if scheme.regression:
        out: list = []
        for v, n in zip(raw, lines):
            x = number(v, f"{path}:{n}")
            if x is None:
                raise UserError(f"{path}:{n}: label {show(v)} is not a number, but the labels of {train_path} are (a regression)")
            out.append(x)
        return out
    index = {c: i for i, c in enumerate(scheme.classes)}
    out = []
    for v, n in zip(raw, lines):
        if scheme.string_labels:
            key = _name(v)
        else:
            x = number(v, f"{path}:{n}")
            key = str(int(x)) if x is not None and x == int(x) else str(v)
        if key not in index:
            raise UserError(f"{path}:{n}: label {show(v)} does not occur in the training file {train_path} (classes: {_list(scheme.classes)})")
        out.append(index[key])
    return out


def _list(classes: tuple[str, ...], most: int = 20) -> str:
    head = ", ".join(classes[:most])
    return head if len(classes) <= most else f"{head}, ... ({len(classes)} in all)"
