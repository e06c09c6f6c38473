"""Policy, value model and reference policy: loading from a Hugging Face folder, a hub name, a GGUF
file, or the embedded tiny model (``builtin:tiny``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from limr._quiet import quiet

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
BUILTIN_TINY = "builtin:tiny"


def resolve_model_path(
    name_or_path: str, *, tiny: dict[str, Any] | None = None, cache_dir: str | Path | None = None
) -> str:
    """The folder or hub name to load; ``builtin:tiny`` becomes the shipped or cached tiny base."""
    if name_or_path != BUILTIN_TINY:
        return name_or_path
    from limr import tiny as tiny_lib

    cache = Path(cache_dir) if cache_dir is not None else Path.home() / ".cache" / "limr"
    return str(tiny_lib.ensure_base(cache, **(tiny or {})))


def load_tokenizer(path: str, *, gguf_file: str | None = None) -> Any:
    from transformers import AutoTokenizer

    kwargs = {"gguf_file": gguf_file} if gguf_file else {}
    tokenizer = AutoTokenizer.from_pretrained(path, **kwargs)
    if tokenizer.pad_token_id is None:
        # Decoder-only tokenizers often lack a pad token; padding positions are masked anyway.
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    return tokenizer


def load_policy(
    name_or_path: str,
    *,
    dtype: str = "float32",
    gguf_file: str | None = None,
    tiny: dict[str, Any] | None = None,
    cache_dir: str | Path | None = None,
) -> tuple[nn.Module, Any]:
    """Load a causal LM and its tokenizer (left padding, a pad token guaranteed).

    Args:
        name_or_path: Hugging Face folder or hub name, or ``builtin:tiny``.
        dtype: float32, bfloat16 or float16.
        gguf_file: a GGUF file inside ``name_or_path`` (needs the gguf package).
        tiny: the ``model.tiny`` fields, for ``builtin:tiny``.
        cache_dir: where a tiny base that is not shipped is warmed up and cached.
    """
    from transformers import AutoModelForCausalLM

    quiet()  # no "Loading weights" bar (limr/_quiet.py)
    path = resolve_model_path(name_or_path, tiny=tiny, cache_dir=cache_dir)
    kwargs: dict[str, Any] = {"dtype": DTYPES[dtype]}
    if gguf_file:
        kwargs["gguf_file"] = gguf_file
    try:
        model = AutoModelForCausalLM.from_pretrained(path, **kwargs)
        tokenizer = load_tokenizer(path, gguf_file=gguf_file)
    except OSError as err:
        raise FileNotFoundError(
            f"cannot load model {name_or_path!r}: {err}. Give a Hugging Face model folder, a hub "
            f"name (online only) or {BUILTIN_TINY}."
        ) from None
    if model.generation_config.pad_token_id is None:
        model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer


class ValueModel(nn.Module):
    """The critic: the base transformer (no LM head) with a scalar head, one value per token.

    As in the paper (OpenRLHF), it starts as a separate copy of the base model.
    """

    def __init__(self, backbone: nn.Module, hidden_size: int) -> None:
        super().__init__()
        self.backbone = backbone
        self.value_head = nn.Linear(hidden_size, 1)
        nn.init.normal_(self.value_head.weight, std=1.0 / (hidden_size + 1))
        nn.init.zeros_(self.value_head.bias)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Returns values [B, L] for every position of ``input_ids`` [B, L]."""
        position_ids = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
        hidden = self.backbone(
            input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids
        ).last_hidden_state  # [B, L, H]
        return self.value_head(hidden.to(self.value_head.weight.dtype)).squeeze(-1)

    def gradient_checkpointing_enable(self, **kwargs: Any) -> None:
        """Recompute the backbone's activations in the backward pass (transformers' switch)."""
        self.backbone.gradient_checkpointing_enable(**kwargs)

    @property
    def is_gradient_checkpointing(self) -> bool:
        return bool(getattr(self.backbone, "is_gradient_checkpointing", False))

    @classmethod
    def from_pretrained(
        cls, path: str, *, dtype: str = "float32", gguf_file: str | None = None
    ) -> ValueModel:
        from transformers import AutoModel

        quiet()
        kwargs: dict[str, Any] = {"dtype": DTYPES[dtype]}
        if gguf_file:
            kwargs["gguf_file"] = gguf_file
        backbone = AutoModel.from_pretrained(path, **kwargs)
        model = cls(backbone, backbone.config.hidden_size)
        model.value_head.to(DTYPES[dtype])
        return model
