"""Instruction-tuning data in the Alpaca format, rendered with the Alpaca-LoRA prompt template.

A file is a JSON array of objects (or JSON Lines, one object per line) with ``instruction``, an optional
``input`` and ``output`` (yahma/alpaca-cleaned's layout). Each record becomes (prompt, response):
the prompt is the template below, the response the output; training appends EOS to the response.
"""

from __future__ import annotations

from pathlib import Path

from lor2c_probe.data.examples import Examples
from lor2c_probe.data.jsontext import json_kind, json_line, json_value, skip_json_ws
from lor2c_probe.data.textfile import check_text, line_of, lines, read_text
from lor2c_probe.errors import UserError

# tloen/alpaca-lora templates/alpaca.json (the reference's prompt, reference-notes §9).
PROMPT_INPUT = (
    "Below is an instruction that describes a task, paired with an input that provides further context. "
    "Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:\n"
)
PROMPT_NO_INPUT = (
    "Below is an instruction that describes a task. Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Response:\n"
)


def render_prompt(instruction: str, input: str = "") -> str:
    if input:
        return PROMPT_INPUT.format(instruction=instruction, input=input)
    return PROMPT_NO_INPUT.format(instruction=instruction)


def _records(path: Path) -> list[tuple[str, object]]:
    """(where, record) for every record of a JSON array or a JSON Lines file; ``where`` names file and line."""
    text = read_text(path)
    pos = skip_json_ws(text, 0)
    if text.startswith("[", pos):
        return _array(path, text, pos)
    out: list[tuple[str, object]] = []
    for n, line in lines(text):
        if line.strip():
            out.append((f"{path}:{n}", json_line(path, n, line, "; expected a JSON array or one object per line")))
    return out


def _array(path: Path, text: str, pos: int) -> list[tuple[str, object]]:
    # Element by element rather than json.loads, so each record's error can name the line it starts on.
    hint = "; expected an array of Alpaca records"
    out: list[tuple[str, object]] = []
    line, counted = 1, 0
    pos = skip_json_ws(text, pos + 1)
    while not text.startswith("]", pos):
        line, counted = line_of(text, pos, counted, line), pos
        rec, pos = json_value(path, text, pos, hint=hint)
        out.append((f"{path}:{line}: record {len(out)}", rec))
        pos = skip_json_ws(text, pos)
        if text.startswith(",", pos):
            pos = skip_json_ws(text, pos + 1)
            if text.startswith("]", pos):  # a trailing comma is not JSON
                at = line_of(text, pos, counted, line)
                raise UserError(f"{path}:{at}: invalid JSON at line {at} (a ']' after a trailing ','){hint}")
        elif not text.startswith("]", pos):
            at = line_of(text, pos, counted, line)
            raise UserError(f"{path}:{at}: invalid JSON at line {at} (expected ',' or ']' after record {len(out) - 1}){hint}")
    end = skip_json_ws(text, pos + 1)
    if end != len(text):
        at = line_of(text, end, counted, line)
        raise UserError(f"{path}:{at}: invalid JSON at line {at} (extra data after the array){hint}")
    return out


def read_alpaca(path: Path) -> Examples:
    """Prompts in ``text_a``, responses in ``text_b``; ``labels`` are unused (token labels come from the text)."""
    path = Path(path)
    prompts, responses = [], []
    for where, rec in _records(path):
        if not isinstance(rec, dict):
            raise UserError(f"{where}: expected an object with instruction, input, output; found {json_kind(rec)}")
        for key in ("instruction", "output"):
            if not isinstance(rec.get(key), str):
                raise UserError(f"{where}: missing text field {key!r} (Alpaca records need instruction and output; input is optional)")
        inp = rec.get("input", "")
        if not isinstance(inp, str):
            raise UserError(f"{where}: field 'input' must be text; found {json_kind(inp)}")
        for key, value in (("instruction", rec["instruction"]), ("input", inp), ("output", rec["output"])):
            check_text(value, where, repr(key))
        prompts.append(render_prompt(rec["instruction"], inp))
        responses.append(rec["output"])
    if not prompts:
        raise UserError(f"{path}: no records")
    return Examples(prompts, responses, [0] * len(prompts))
