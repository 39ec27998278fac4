"""Find the stack of transformer blocks in any Hugging Face model, plus the per-family facts that go with it.

The stack is found from the module tree alone (the longest ``nn.ModuleList`` of one repeated block class), so a
new family needs no table entry. Paths are given relative to the *unwrapped* model: a PEFT wrapper adds
``base_model.model.`` in front, and callers resolve paths on either.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from lor2c_probe.errors import UserError

if TYPE_CHECKING:
    from torch import nn

PEFT_PREFIX = "base_model.model."
_OVERRIDE_HINT = "pass --layers-path PATH"


class BlockStackError(UserError):
    """The block stack cannot be found, is ambiguous, or cannot be probed per layer (shared weights)."""


def unwrap(model: nn.Module) -> nn.Module:
    """The model inside a PEFT wrapper (its registered child ``base_model.model``), else the model itself.

    Structural rather than ``isinstance(PeftModel)`` so any wrapper with PEFT's layout works; a plain transformers
    model never registers a child named ``base_model`` (its ``base_model`` is a property, not a child)."""
    children = dict(model.named_children())
    tuner = children.get("base_model")
    if tuner is not None:
        inner = dict(tuner.named_children()).get("model")
        if inner is not None:
            return inner
    return model


def _strip(path: str) -> str:
    from lor2c_probe.record.naming import strip_wrappers

    return strip_wrappers(path)


def _model_name(model: nn.Module) -> str:
    return type(model).__name__


def _num_hidden_layers(model: nn.Module) -> int | None:
    """config.num_hidden_layers (attribute maps cover n_layer, n_layers ...), or None when there is no such config."""
    config = getattr(model, "config", None)
    try:
        n = getattr(config, "num_hidden_layers", None)
    except Exception:  # some composite configs raise instead of returning a default
        return None
    return n if isinstance(n, int) and not isinstance(n, bool) else None


def _model_type(model: nn.Module) -> str:
    return str(getattr(getattr(model, "config", None), "model_type", None) or _model_name(model))


def _lists(model: nn.Module) -> list[tuple[str, Any]]:
    """Every non-empty ModuleList / Sequential in the model, outermost first, with its path."""
    from torch import nn

    return [(n, m) for n, m in model.named_modules() if n and isinstance(m, (nn.ModuleList, nn.Sequential)) and len(m) > 0]


def _block_class(stack: Any) -> type | None:
    """The one class of all modules in ``stack``, or None when they differ (a heterogeneous list is not a stack)."""
    classes = {type(m) for m in stack}
    return classes.pop() if len(classes) == 1 else None


def _describe(path: str, stack: Any) -> str:
    cls = _block_class(stack)
    return f"{path} ({len(stack)} x {cls.__name__ if cls else 'mixed'})"


def _nested(inner: str, outer: str) -> bool:
    return inner.startswith(outer + ".")


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def _check_count(model: nn.Module, path: str, stack: Any) -> None:
    """The stack must hold one module per block: ALBERT's one layer group applied N times cannot be probed per layer."""
    n = _num_hidden_layers(model)
    if n is None or len(stack) == n:
        return
    if len(stack) < n:
        raise BlockStackError(
            f"{_model_type(model)}: its {n} blocks share weights (the stack {path} holds {_plural(len(stack), 'module')} "
            f"applied {n} times); per-layer probes need one module per block, so lor2c-probe does not support it"
        )
    raise BlockStackError(
        f"{_model_type(model)}: the stack {_describe(path, stack)} does not match config.num_hidden_layers={n}; {_OVERRIDE_HINT}"
    )


def _resolve(model: nn.Module, layers_path: str) -> tuple[str, Any]:
    """``layers_path`` on the unwrapped model (a wrapper-relative path works too); must be a non-empty block list."""
    from torch import nn

    path = _strip(layers_path.strip())
    try:
        found = model.get_submodule(path) if path else None
    except AttributeError:
        found = None
    if found is None:
        known = ", ".join(_describe(p, s) for p, s in _lists(model)[:4]) or "none"
        raise BlockStackError(
            f"--layers-path {layers_path}: no module at that path in {_model_name(model)} (its module lists: {known})"
        )
    if not isinstance(found, (nn.ModuleList, nn.Sequential)):
        raise BlockStackError(
            f"--layers-path {layers_path}: that is a {type(found).__name__}, not the ModuleList of the model's blocks"
        )
    if len(found) == 0:
        raise BlockStackError(f"--layers-path {layers_path}: that {type(found).__name__} is empty")
    return path, found


def find_blocks(model: nn.Module, layers_path: str | None = None) -> tuple[str, nn.ModuleList]:
    """(dotted path from the unwrapped model, the ModuleList) of the model's transformer blocks.

    Without ``layers_path``: the longest ModuleList whose children are >= 2 modules of one class (outermost wins
    over a same-length list nested inside it). Raises BlockStackError when two separate stacks tie (encoder +
    decoder), when there is none, or when the stack is shorter than config.num_hidden_layers (shared weights)."""
    inner = unwrap(model)
    if layers_path is not None:
        path, stack = _resolve(inner, layers_path)
        _check_count(inner, path, stack)
        return path, stack

    from torch import nn

    n_layers = _num_hidden_layers(inner)
    min_len = 1 if n_layers == 1 else 2  # a one-block model's stack is a list of one
    lists = _lists(inner)
    if n_layers == 0:  # a model cut to no blocks (memory planning measures the embeddings and head alone)
        empty = [(p, s) for p, s in inner.named_modules() if p and isinstance(s, nn.ModuleList) and len(s) == 0]
        if empty:
            return empty[0]
    candidates = [(p, s) for p, s in lists if isinstance(s, nn.ModuleList) and len(s) >= min_len and _block_class(s)]
    if not candidates:
        # ALBERT: config says several blocks, but only a length-1 layer group exists -> say "shared weights"
        shorter = [(p, s) for p, s in lists
                   if isinstance(s, nn.ModuleList) and _block_class(s) and n_layers is not None and n_layers > 1 and len(s) < n_layers]
        if shorter:
            path, stack = max(shorter, key=lambda ps: len(ps[1]))  # max() keeps the first (outermost) of equals
            _check_count(inner, path, stack)
        raise BlockStackError(
            f"cannot find a stack of repeated transformer blocks in {_model_name(inner)}; "
            f"{_OVERRIDE_HINT} (the dotted path of the blocks' ModuleList)"
        )
    longest = max(len(s) for _, s in candidates)
    best = [(p, s) for p, s in candidates if len(s) == longest]
    best = [(p, s) for p, s in best if not any(_nested(p, q) for q, _ in best)]  # nested ones belong to the outer stack
    if len(best) > 1:
        # An adapter's per-layer lists (ResLoRA's factors) tie with the blocks but are tiny: the stack holding most of
        # the weights wins when the runner-up has under a tenth of them; an encoder and a decoder stay ambiguous.
        sizes = sorted(((sum(p.numel() for p in s.parameters()), path, s) for path, s in best), key=lambda t: -t[0])
        if sizes[1][0] * 10 < sizes[0][0]:
            best = [(sizes[0][1], sizes[0][2])]
    if len(best) > 1:
        named = [_describe(p, s) for p, s in best]
        raise BlockStackError(
            f"ambiguous block stack in {_model_name(inner)}: {', '.join(named[:-1])} and {named[-1]}; {_OVERRIDE_HINT}"
        )
    path, stack = best[0]
    _check_count(inner, path, stack)
    return path, stack


def layer_of(name: str, layers_path: str) -> int | None:
    """The block index in a parameter or module name (``<layers_path>.<i>[.rest]``, a PEFT prefix allowed), else None."""
    m = re.match(re.escape(_strip(layers_path)) + r"\.(\d+)(?:\.|$)", _strip(name))
    return int(m.group(1)) if m else None


def is_decoder_only(config: Any) -> bool:
    """True for causal decoders (GPT-2, LLaMA, Mistral, Qwen2 ...), False for encoders and encoder-decoders.

    Rule: the config has a causal-LM class but no masked-LM class. BERT-style encoders also ship a ...ForCausalLM
    (BertLMHeadModel), hence the masked-LM exclusion; encoder-decoders (Marian, Pegasus) ship a decoder-only
    ...ForCausalLM, hence the is_encoder_decoder exclusion."""
    from transformers import MODEL_FOR_CAUSAL_LM_MAPPING, MODEL_FOR_MASKED_LM_MAPPING

    if getattr(config, "is_encoder_decoder", False):
        return False
    kind = type(config)
    return kind in MODEL_FOR_CAUSAL_LM_MAPPING and kind not in MODEL_FOR_MASKED_LM_MAPPING


def default_targets(model_type: str, method: str = "lora") -> tuple[str, ...] | None:
    """PEFT's own default target modules for ``model_type`` under ``method``; None when PEFT has none.

    ``method`` is a PEFT type name (lora, ia3, adalora, vera, loha, lokr ...): its tuner's own mapping is used,
    as PEFT does when target_modules is None. IA3 gives its target list (its feed-forward subset is separate in
    PEFT). Any other method (this project's lor2c, reslora ...) adapts the same projections as LoRA."""
    from peft import PEFT_TYPE_TO_TUNER_MAPPING, PeftType
    from peft.utils import constants

    key = method.strip().upper().replace("-", "_")
    mapping = getattr(constants, f"TRANSFORMERS_MODELS_TO_{key}_TARGET_MODULES_MAPPING", None)
    if mapping is None:
        tuner = PEFT_TYPE_TO_TUNER_MAPPING.get(PeftType(key)) if key in PeftType.__members__ else None
        mapping = getattr(tuner, "target_module_mapping", None)
    if mapping is None:
        mapping = constants.TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING
    targets = mapping.get(model_type)
    if not targets:
        return None
    return (targets,) if isinstance(targets, str) else tuple(targets)  # a str is one regex (gemma4)
