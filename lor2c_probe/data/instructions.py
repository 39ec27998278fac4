"""Instruction-tuning data in the Alpaca format, rendered with the Alpaca-LoRA prompt template.

A file is a JSON array of objects (or JSON Lines, one object per line) with ``instruction``, an optional
``input`` and ``output`` (yahma/alpaca-cleaned's layout). Each record becomes (prompt, response):
the prompt is the template below, the response the output; training appends EOS to the response.
"""

from __future__ import annotations

import json
from pathlib import Path

from lor2c_probe.data.examples import Examples
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


def _records(path: Path) -> list[tuple[str, dict]]:
    """(where, record) for every record of a JSON array or a JSON Lines file."""
    if not path.is_file():
        raise UserError(f"data file not found: {path}")
    text = path.read_text(encoding="utf-8-sig")
    if text.lstrip().startswith("["):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise UserError(f"{path}: invalid JSON at line {e.lineno} ({e.msg}); expected an array of Alpaca records") from None
        return [(f"{path}: record {i}", rec) for i, rec in enumerate(data)]
    out = []
    for n, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            try:
                out.append((f"{path}:{n}", json.loads(line)))
            except json.JSONDecodeError as e:
                raise UserError(f"{path}:{n}: invalid JSON ({e.msg}); expected a JSON array or one object per line") from None
    return out


def read_alpaca(path: Path) -> Examples:
    """Prompts in ``text_a``, responses in ``text_b``; ``labels`` are unused (token labels come from the text)."""
    prompts, responses = [], []
    for where, rec in _records(Path(path)):
        if not isinstance(rec, dict):
            raise UserError(f"{where}: expected an object with instruction, input, output; found {type(rec).__name__}")
        for key in ("instruction", "output"):
            if not isinstance(rec.get(key), str):
                raise UserError(f"{where}: missing text field {key!r} (Alpaca records need instruction and output; input is optional)")
        inp = rec.get("input", "")
        if not isinstance(inp, str):
            raise UserError(f"{where}: field 'input' must be text; found {type(inp).__name__}")
        prompts.append(render_prompt(rec["instruction"], inp))
        responses.append(rec["output"])
    if not prompts:
        raise UserError(f"{path}: no records")
    return Examples(prompts, responses, [0] * len(prompts))
