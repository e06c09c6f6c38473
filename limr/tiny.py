"""The embedded tiny base policy: a character-level tokenizer, a tiny causal LM built from a config,
a supervised warm-up on the synthetic task that gives it partial skill, and the shipped checkpoint.

``ensure_base(cache_dir, **TinyModelConfig fields)`` returns a Hugging Face model folder
(config.json, model.safetensors, tokenizer files) that ``AutoModelForCausalLM`` and
``AutoTokenizer`` load. The default config is shipped warmed up in ``limr/data/tiny_base/``
(rebuilt by ``python -m limr.tiny build --out limr/data/tiny_base``); any other config is warmed
up once and cached under ``cache_dir``.

The tokenizer is byte level with no merges, so one ASCII character is one token. It is built in
exactly the layout of Qwen2's tokenizer (NFC, Qwen2's split regex, ByteLevel) because
transformers 5 loads the tokenizer of any folder whose config says ``qwen2`` as a
``Qwen2Tokenizer``, rebuilding it from the saved vocabulary: a WordLevel character tokenizer comes
back as a byte-level one that drops spaces. Built this way, both loaders give the same ids.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import re
import shutil
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from limr import task
from limr.types import Prompt

SHIPPED_DIR = Path(__file__).parent / "data" / "tiny_base"
"""The shipped warmed-up base model (read only)."""
TINY_CONFIG_FILE = "tiny_config.json"
"""The tiny config a model folder was built from (what ``ensure_base`` compares)."""
FIGURES_FILE = "figures.json"
EOS_TOKEN = "<|endoftext|>"
PAD_TOKEN = "<|pad|>"
FORMAT_VERSION = 2
"""Bump when the task, tokenizer or warm-up change, so cached bases are rebuilt."""

# The split regex of Qwen2's tokenizer (transformers.models.qwen2.tokenization_qwen2).
_QWEN2_SPLIT = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|"""
    r"""\s*[\r\n]+|\s+(?!\S)|\s+"""
)

TINY_DEFAULTS: dict[str, Any] = {
    "arch": "qwen2",
    "hidden_size": 64,
    "num_layers": 4,
    "num_heads": 4,
    "num_kv_heads": 2,
    "intermediate_size": 256,
    "max_position": 256,
    "warmup_steps": 3500,
    "warmup_batch_size": 64,
    "warmup_lr": 3e-3,
    "warmup_levels": [1, 2, 3, 4, 5],
    "warmup_unfinished_fraction": 0.5,
}
"""Mirror of :class:`limr.config.TinyModelConfig` (a test keeps the two equal)."""


# ---------------------------------------------------------------------------------------------
# Tokenizer


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable character map (what ByteLevel uses)."""
    printable = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    chars = printable[:]
    n = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + n)
            n += 1
    return dict(zip(printable, map(chr, chars)))


def build_tokenizer():
    """A character-level (byte-level, no merges) ``PreTrainedTokenizerFast``.

    Ids: 0 = ``<|endoftext|>`` (EOS), 1 = ``<|pad|>``, then the 256 bytes in byte order (ASCII
    character ``c`` is id ``ord(c) + 2``). No BOS and no special tokens are added to the input.
    """
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers
    from tokenizers import pre_tokenizers as pre
    from transformers import PreTrainedTokenizerFast

    byte_chars = _bytes_to_unicode()
    vocab = {EOS_TOKEN: 0, PAD_TOKEN: 1}
    for b in range(256):
        vocab[byte_chars[b]] = len(vocab)
    tok = Tokenizer(
        models.BPE(
            vocab=vocab,
            merges=[],
            continuing_subword_prefix="",
            end_of_word_suffix="",
            fuse_unk=False,
            byte_fallback=False,
        )
    )
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre.Sequence(
        [
            pre.Split(Regex(_QWEN2_SPLIT), behavior="isolated"),
            pre.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens(
        [AddedToken(EOS_TOKEN, special=True), AddedToken(PAD_TOKEN, special=True)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token=EOS_TOKEN, pad_token=PAD_TOKEN, unk_token=EOS_TOKEN
    )


# ---------------------------------------------------------------------------------------------
# Model


def build_model(
    arch: str = "qwen2",
    hidden_size: int = 64,
    num_layers: int = 4,
    num_heads: int = 4,
    num_kv_heads: int = 2,
    intermediate_size: int = 256,
    max_position: int = 256,
    vocab_size: int = 258,
    seed: int = 0,
):
    """A randomly initialised tiny causal LM (``Qwen2ForCausalLM`` or ``LlamaForCausalLM``).

    Embeddings are tied; EOS = 0 and pad = 1 as in :func:`build_tokenizer`. ``seed`` fixes the
    initial weights without touching the global RNG.
    """
    from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

    classes = {"qwen2": (Qwen2Config, Qwen2ForCausalLM), "llama": (LlamaConfig, LlamaForCausalLM)}
    if arch not in classes:
        raise ValueError(f"unknown tiny arch {arch!r}; valid: {', '.join(classes)}")
    if hidden_size % num_heads or num_heads % num_kv_heads:
        raise ValueError(
            f"hidden_size {hidden_size} must divide by num_heads {num_heads}, "
            f"and num_heads by num_kv_heads {num_kv_heads}"
        )
    config_cls, model_cls = classes[arch]
    config = config_cls(
        vocab_size=vocab_size,
        hidden_size=hidden_size,
        intermediate_size=intermediate_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        num_key_value_heads=num_kv_heads,
        max_position_embeddings=max_position,
        tie_word_embeddings=True,
        bos_token_id=None,
        eos_token_id=0,
        pad_token_id=1,
        use_cache=True,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = model_cls(config)
    model.generation_config.eos_token_id = 0
    model.generation_config.pad_token_id = 1
    model.generation_config.bos_token_id = None
    return model


# ---------------------------------------------------------------------------------------------
# Warm-up


UNFINISHED_TAIL = task.INSTRUCTION.rstrip("\n")
"""What an unfinished warm-up target says after its boxed answer (the instruction, echoed)."""


def _encode_examples(
    tokenizer, prompts: Sequence[Prompt], finished: bool = True
) -> list[tuple[list[int], int]]:
    """(prompt + response + EOS ids, number of prompt ids) per prompt; the response is the gold
    ``\\boxed{ANSWER}``, followed by :data:`UNFINISHED_TAIL` when not ``finished``."""
    queries = tokenizer([p.problem for p in prompts], add_special_tokens=False)["input_ids"]
    tail = "" if finished else UNFINISHED_TAIL
    texts = [task.response_for(p) + tail for p in prompts]
    responses = tokenizer(texts, add_special_tokens=False)["input_ids"]
    eos = tokenizer.eos_token_id
    return [(q + r + [eos], len(q)) for q, r in zip(queries, responses)]


def _collate(examples: list[tuple[list[int], int]], pad_id: int):
    longest = max(len(ids) for ids, _ in examples)
    input_ids = torch.full((len(examples), longest), pad_id, dtype=torch.long)  # [B, L]
    labels = torch.full((len(examples), longest), -100, dtype=torch.long)  # [B, L]
    attention_mask = torch.zeros((len(examples), longest), dtype=torch.long)  # [B, L]
    for row, (ids, n_prompt) in enumerate(examples):
        input_ids[row, : len(ids)] = torch.tensor(ids)
        labels[row, n_prompt : len(ids)] = torch.tensor(ids[n_prompt:])
        attention_mask[row, : len(ids)] = 1
    return input_ids, attention_mask, labels


def warmup(
    model,
    tokenizer,
    prompts: Sequence[Prompt],
    steps: int,
    batch_size: int,
    lr: float,
    levels: Sequence[int] | None = None,
    unfinished_fraction: float = 0.0,
    seed: int = 0,
    progress: bool = True,
    warmup_fraction: float = 0.05,
    decay_fraction: float = 0.2,
    min_lr_ratio: float = 0.1,
    callback: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Supervised warm-up: next-token loss on the gold response + EOS (never on the prompt).

    AdamW (betas 0.9, 0.95, weight decay 0.01) with a warm-up/stable/decay schedule: linear
    warm-up over ``warmup_fraction`` of the steps, constant ``lr``, then linear decay to
    ``min_lr_ratio * lr`` over the last ``decay_fraction``; gradient norm clipped at 1. The
    tiny model learns its digits in a sudden jump that needs a high learning rate (a cosine
    schedule of the same length decays too early and leaves it half-way); with a constant
    rate, the skill reached after N steps does not depend on the total length.

    Batches are drawn uniformly (with ``random.Random(seed)``) from the prompts whose
    ``extra["level"]`` is in ``levels`` (all prompts when None). With probability
    ``unfinished_fraction`` a drawn example's target goes on after ``\\boxed{ANSWER}`` with
    :data:`UNFINISHED_TAIL` (the instruction, echoed) before its EOS: a base that often does not
    stop after its answer, so that its response is cut at ``max_new_tokens`` and scored -1 as
    unfinished, like the R1-Zero-style bases of the paper, whose early RL gain is largely
    learning to finish and box the answer. The answer's digits keep their positions either way.
    ``callback(step)`` runs after each optimiser step (e.g. to evaluate; it must leave the model
    in train mode).

    Returns:
        ``{"steps", "seconds", "final_loss", "examples"}``; the model is trained in place.
    """
    from tqdm.auto import tqdm

    wanted = None if levels is None else set(levels)
    pool = [p for p in prompts if wanted is None or p.extra.get("level") in wanted]
    if not pool:
        raise ValueError(f"no warm-up prompts at levels {list(levels or [])}")
    if not 0.0 <= unfinished_fraction <= 1.0:
        raise ValueError(f"unfinished_fraction must be in [0, 1], got {unfinished_fraction}")
    examples = _encode_examples(tokenizer, pool)
    unfinished = _encode_examples(tokenizer, pool, finished=False) if unfinished_fraction else []
    rng = random.Random(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.95), weight_decay=0.01)
    n_warm = max(1, int(warmup_fraction * steps))
    n_decay = max(1, int(decay_fraction * steps))

    def lr_at(step: int) -> float:
        if step < n_warm:
            return lr * (step + 1) / n_warm
        left = steps - step  # steps left, including this one
        if left > n_decay:
            return lr
        return lr * (min_lr_ratio + (1 - min_lr_ratio) * left / n_decay)

    model.train()
    start = time.perf_counter()
    ema = None
    bar = tqdm(range(steps), desc="tiny warm-up", disable=not progress, leave=False)
    for step in bar:
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step)
        batch = []
        for _ in range(batch_size):
            i = rng.randrange(len(examples))
            batch.append(
                unfinished[i] if unfinished and rng.random() < unfinished_fraction else examples[i]
            )
        input_ids, attention_mask, labels = _collate(batch, tokenizer.pad_token_id)
        loss = model(input_ids=input_ids, attention_mask=attention_mask, labels=labels).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        ema = loss.item() if ema is None else 0.95 * ema + 0.05 * loss.item()
        if step % 10 == 0:
            bar.set_postfix(loss=f"{ema:.3f}")
        if callback is not None:
            callback(step + 1)
    model.eval()
    return {
        "steps": steps,
        "seconds": round(time.perf_counter() - start, 1),
        "final_loss": round(ema, 4) if ema is not None else None,
        "examples": steps * batch_size,
    }


# ---------------------------------------------------------------------------------------------
# Evaluation (for the figures of a base; the pipeline has its own reward and evaluation)

_BOXED = re.compile(r"\\boxed\{([^{}]*)\}")


def is_correct(text: str, finished: bool, answer: str) -> bool:
    """True when the response ended with EOS and its last ``\\boxed{}`` holds the answer."""
    found = _BOXED.findall(text)
    return finished and bool(found) and found[-1].strip() == answer


@torch.no_grad()
def generate(
    model,
    tokenizer,
    problems: Sequence[str],
    n: int = 1,
    temperature: float = 0.0,
    max_new_tokens: int = 13,
    seed: int = 0,
) -> tuple[list[str], list[bool]]:
    """Sample ``n`` responses per problem (prompt-major), left padded; greedy at temperature 0.

    Returns:
        (texts without special tokens, finished flags: True when EOS was generated).
    """
    batch = tokenizer(
        list(problems),
        return_tensors="pt",
        padding=True,
        padding_side="left",
        add_special_tokens=False,
    )
    sample = temperature > 0
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        out = model.generate(
            **batch,
            do_sample=sample,
            # top_k=0: plain temperature sampling (transformers otherwise applies top_k=50)
            temperature=temperature if sample else None,
            top_p=1.0 if sample else None,
            top_k=0 if sample else None,
            num_return_sequences=n,
            max_new_tokens=max_new_tokens,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
    new = out[:, batch["input_ids"].shape[1] :]  # [B * n, T]
    finished = (new == tokenizer.eos_token_id).any(dim=1).tolist()
    texts = tokenizer.batch_decode(new, skip_special_tokens=True)
    return texts, finished


def evaluate(
    model,
    tokenizer,
    prompts: Sequence[Prompt],
    n_samples: int = 8,
    temperature: float = 1.0,
    max_new_tokens: int = 13,
    batch_size: int = 64,
    seed: int = 0,
) -> dict[str, Any]:
    """Per level: greedy accuracy, mean accuracy of ``n_samples`` samples and pass@n_samples."""
    model.eval()
    greedy: dict[int, list[bool]] = defaultdict(list)
    sampled: dict[int, list[float]] = defaultdict(list)
    passed: dict[int, list[bool]] = defaultdict(list)
    boxed: list[bool] = []  # sampled responses that end with EOS and hold a \boxed{}
    for start in range(0, len(prompts), batch_size):
        chunk = prompts[start : start + batch_size]
        problems = [p.problem for p in chunk]
        texts, done = generate(model, tokenizer, problems, 1, 0.0, max_new_tokens)
        for p, t, f in zip(chunk, texts, done):
            greedy[p.extra["level"]].append(is_correct(t, f, p.answer))
        if n_samples:
            texts, done = generate(
                model, tokenizer, problems, n_samples, temperature, max_new_tokens, seed + start
            )
            for i, p in enumerate(chunk):
                rows = range(i * n_samples, (i + 1) * n_samples)
                hits = [is_correct(texts[j], done[j], p.answer) for j in rows]
                boxed += [done[j] and bool(_BOXED.search(texts[j])) for j in rows]
                sampled[p.extra["level"]].append(sum(hits) / n_samples)
                passed[p.extra["level"]].append(any(hits))

    def mean(values) -> float:
        return round(sum(values) / len(values), 3) if values else float("nan")

    levels = sorted(greedy)
    figures: dict[str, Any] = {
        "greedy": {str(lv): mean(greedy[lv]) for lv in levels},
        "greedy_all": mean([x for lv in levels for x in greedy[lv]]),
        "prompts_per_level": {str(lv): len(greedy[lv]) for lv in levels},
    }
    if n_samples:
        figures[f"sample_t{temperature:g}"] = {str(lv): mean(sampled[lv]) for lv in levels}
        figures[f"pass@{n_samples}_t{temperature:g}"] = {str(lv): mean(passed[lv]) for lv in levels}
        figures[f"sample_t{temperature:g}_all"] = mean([x for lv in levels for x in sampled[lv]])
        figures[f"boxed_t{temperature:g}"] = mean(boxed)
    return figures


def time_rollout(
    model, tokenizer, prompts: Sequence[Prompt], n_prompts: int = 32, n: int = 8, **kwargs
) -> float:
    """Seconds of one batched sampled generate of ``n_prompts`` x ``n`` (an RL step's rollout)."""
    problems = [p.problem for p in prompts[:n_prompts]]
    generate(model, tokenizer, problems[:2], 2, 1.0, **kwargs)  # first call pays set-up costs
    start = time.perf_counter()
    generate(model, tokenizer, problems, n, 1.0, **kwargs)
    return round(time.perf_counter() - start, 3)


# ---------------------------------------------------------------------------------------------
# The base model folder


def tiny_config(**overrides: Any) -> dict[str, Any]:
    """The full tiny config: :data:`TINY_DEFAULTS` updated with ``overrides`` (names checked)."""
    unknown = sorted(set(overrides) - set(TINY_DEFAULTS))
    if unknown:
        raise ValueError(f"unknown tiny config fields {unknown}; valid: {', '.join(TINY_DEFAULTS)}")
    config = {**TINY_DEFAULTS, **overrides}
    config["warmup_levels"] = [int(x) for x in config["warmup_levels"]]
    return config


def _model_kwargs(config: dict[str, Any]) -> dict[str, Any]:
    names = ("arch", "hidden_size", "num_layers", "num_heads", "num_kv_heads")
    return {k: config[k] for k in (*names, "intermediate_size", "max_position")}


def build_base(
    out: Path,
    config: dict[str, Any],
    seed: int = 0,
    progress: bool = True,
    measure: bool = True,
    eval_every: int = 0,
) -> dict[str, Any]:
    """Build, warm up and save a base model folder at ``out`` (which must not exist yet).

    Writes ``config.json``, ``generation_config.json``, ``model.safetensors``, the tokenizer
    files, ``tiny_config.json`` and ``figures.json`` (warm-up time and, with ``measure``, the
    base's test figures and the rollout timing). Returns the figures.
    """
    tokenizer = build_tokenizer()
    model = build_model(**_model_kwargs(config), vocab_size=len(tokenizer), seed=seed)
    figures: dict[str, Any] = {
        "params": sum(p.numel() for p in model.parameters()),
        "torch_threads": torch.get_num_threads(),
    }
    curve: list[dict[str, Any]] = []
    eval_seconds = 0.0

    def evaluate_now(step: int) -> None:
        nonlocal eval_seconds
        if eval_every and step % eval_every == 0 and step < config["warmup_steps"]:
            start = time.perf_counter()
            point = {"step": step, **evaluate(model, tokenizer, task.load("arith", "test")[:250])}
            eval_seconds += time.perf_counter() - start
            curve.append(point)
            print(json.dumps(point), flush=True)
            model.train()

    figures["warmup"] = warmup(
        model,
        tokenizer,
        task.load("arith", "warmup"),
        steps=config["warmup_steps"],
        batch_size=config["warmup_batch_size"],
        lr=config["warmup_lr"],
        levels=config["warmup_levels"],
        unfinished_fraction=config["warmup_unfinished_fraction"],
        seed=seed,
        progress=progress,
        callback=evaluate_now if eval_every else None,
    )
    if curve:
        figures["warmup"]["seconds"] = round(figures["warmup"]["seconds"] - eval_seconds, 1)
        figures["warmup_curve_250_test_prompts"] = curve
    if measure:
        start = time.perf_counter()
        figures["test"] = evaluate(model, tokenizer, task.load("arith", "test"))
        figures["test"]["seconds"] = round(time.perf_counter() - start, 1)
        figures["rollout_32x8_seconds"] = time_rollout(
            model, tokenizer, task.load("arith", "train")
        )
    _save(model, tokenizer, out, config, figures)
    return figures


def _save(model, tokenizer, out: Path, config: dict[str, Any], figures: dict[str, Any]) -> None:
    out.mkdir(parents=True)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    record = {"format_version": FORMAT_VERSION, **config}
    (out / TINY_CONFIG_FILE).write_text(json.dumps(record, indent=1) + "\n")
    (out / FIGURES_FILE).write_text(json.dumps(figures, indent=1) + "\n")


def _read_config(folder: Path) -> dict[str, Any] | None:
    """The tiny config of a complete model folder (None when absent or incomplete)."""
    if not (folder / "model.safetensors").is_file():  # e.g. installed without package data
        return None
    try:
        return json.loads((folder / TINY_CONFIG_FILE).read_text())
    except (OSError, json.JSONDecodeError):
        return None


def ensure_base(cache_dir: str | Path, seed: int = 0, progress: bool = True, **fields: Any) -> Path:
    """The folder of the warmed-up tiny base for a tiny config (``TinyModelConfig`` fields).

    The shipped folder when the config is the shipped one (returned as is: read only);
    otherwise ``cache_dir/tiny-<hash>``, warmed up on first use. The warm-up writes into a
    temporary folder that is renamed at the end, so an interrupted warm-up leaves nothing behind.
    """
    config = tiny_config(**fields)
    wanted = {"format_version": FORMAT_VERSION, **config}
    if _read_config(SHIPPED_DIR) == wanted and seed == 0:
        return SHIPPED_DIR
    digest = hashlib.sha256(json.dumps([wanted, seed], sort_keys=True).encode()).hexdigest()
    cache_dir = Path(cache_dir)
    final = cache_dir / f"tiny-{digest[:12]}"
    if _read_config(final) == wanted:
        return final
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tiny-tmp-", dir=cache_dir))
    try:
        build_base(tmp / "base", config, seed=seed, progress=progress, measure=False)
        if final.exists():  # a stale or concurrent build: replace it
            shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp / "base", final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m limr.tiny build --out limr/data/tiny_base``: rebuild the shipped base."""
    parser = argparse.ArgumentParser(prog="python -m limr.tiny", description=main.__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    build = sub.add_parser("build", help="warm up a tiny base and write it with figures.json")
    build.add_argument("--out", type=Path, default=SHIPPED_DIR)
    build.add_argument("--seed", type=int, default=0)
    build.add_argument("--threads", type=int, default=1, help="torch threads (1: fastest here)")
    build.add_argument("--steps", type=int, default=None, help="override warmup_steps")
    build.add_argument(
        "--eval-every", type=int, default=0, help="print test figures (250 prompts) every N steps"
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    config = tiny_config()
    if args.steps is not None:
        config["warmup_steps"] = args.steps
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tiny-tmp-", dir=args.out.parent))
    try:
        figures = build_base(tmp / "base", config, seed=args.seed, eval_every=args.eval_every)
        if args.out.exists():
            shutil.rmtree(args.out)
        os.replace(tmp / "base", args.out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
