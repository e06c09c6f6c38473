"""The evaluation runner: sample every benchmark problem under its protocol, score the responses
with a reward plugin, and report the paper's numbers.

    result = evaluate(sampler, ["math500", "aime24", "amc23"], format_prompt=fmt)
    write_eval_json(result, "eval.json")
    print(format_table(result))

``result`` maps each benchmark name to ``{"accuracy", "pass@k", "by_level", "by_subject",
"n_problems", "n_samples", "protocol", "problems"}``; ``problems`` has one record per problem
with its id, gold answer, responses, finished flags, rewards and correctness.
"""

from __future__ import annotations

import json
import math
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from limr.benchmarks.base import Benchmark
from limr.benchmarks.metrics import GroupAccuracy, MeanAccuracy, PassAtK
from limr.types import Prompt, Reward, Sampler

PAPER_COLUMNS = {"aime24": "AIME24", "math500": "MATH500", "amc23": "AMC23"}
"""The paper's table columns, in its order; other benchmarks follow under their own names."""


def _resolve(benchmark: str | Benchmark) -> Benchmark:
    if isinstance(benchmark, Benchmark):
        return benchmark
    from limr.registry import BENCHMARKS, import_plugins

    import_plugins()
    return BENCHMARKS.build(benchmark)


def _groups(prompts: Sequence[Prompt], key: str) -> list[str] | None:
    """The sorted distinct values of ``extra[key]`` when every problem has one, else None."""
    values = [p.extra.get(key) for p in prompts]
    if not values or any(v is None for v in values):
        return None
    return sorted({str(v) for v in values}, key=lambda v: (len(v), v))


def evaluate(
    sampler: Sampler,
    benchmarks: Sequence[str | Benchmark],
    *,
    format_prompt: Callable[[str], str],
    reward: Reward | None = None,
    n_samples: int | None = None,
    temperature: float | None = None,
    top_p: float | None = None,
    max_new_tokens: int | None = None,
    batch_size: int = 64,
    max_problems: int | None = None,
    seed: int = 0,
    progress: bool = True,
    stop: Sequence[str] = (),
) -> dict[str, Any]:
    """Evaluate a sampler on benchmarks.

    Args:
        sampler: a :class:`limr.types.Sampler` (``generate`` returns rollout-major texts).
        benchmarks: registered names or :class:`Benchmark` objects.
        format_prompt: turns a problem into the text the model continues (the prompt template).
        reward: scores the responses; its ``correct`` is what accuracy counts. Default: the
            ``correct`` reward (last ``\\boxed{}`` equivalent to the gold answer).
        n_samples, temperature, top_p, max_new_tokens: override every benchmark's protocol
            (None keeps each benchmark's own).
        batch_size: problems per ``generate`` call.
        max_problems: evaluate only the first N problems of each benchmark.
        seed: sampling seed (batch i uses ``seed + i``).
        progress: print one progress line per batch to stderr.
        stop: extra stop strings.
    Returns:
        A JSON-serialisable dict, one entry per benchmark (see the module docstring).
    """
    if reward is None:
        from limr.registry import REWARDS, import_plugins

        import_plugins()
        reward = REWARDS.build("correct")
    result: dict[str, Any] = {}
    for spec in benchmarks:
        bench = _resolve(spec).with_protocol(n_samples, temperature, top_p, max_new_tokens)
        if bench.name in result:
            raise ValueError(f"benchmark {bench.name!r} is listed twice")
        result[bench.name] = _evaluate_one(
            sampler, bench, format_prompt, reward, batch_size, max_problems, seed, progress, stop
        )
    return result


def _evaluate_one(
    sampler: Sampler,
    bench: Benchmark,
    format_prompt: Callable[[str], str],
    reward: Reward,
    batch_size: int,
    max_problems: int | None,
    seed: int,
    progress: bool,
    stop: Sequence[str],
) -> dict[str, Any]:
    prompts = bench.prompts()
    if max_problems is not None:
        prompts = prompts[:max_problems]
    if not prompts:
        raise ValueError(f"benchmark {bench.name} has no problems")
    n = bench.n_samples
    accuracy = MeanAccuracy()
    pass_k = {k: PassAtK(k) for k in sorted({1, n})}
    breakdowns = {
        key: (labels, GroupAccuracy(labels))
        for key in ("level", "subject")
        if (labels := _groups(prompts, key)) is not None
    }
    records = []
    for b, start in enumerate(range(0, len(prompts), batch_size)):
        batch = prompts[start : start + batch_size]
        rollout = sampler.generate(
            [format_prompt(p.problem) for p in batch],
            n=n,
            temperature=bench.temperature,
            top_p=bench.top_p,
            max_new_tokens=bench.max_new_tokens,
            stop=list(stop),
            seed=seed + b,
        )
        # rollout-major: the samples of problem i are the rows whose prompt_index is i
        order = sorted(range(len(rollout.texts)), key=lambda r: int(rollout.prompt_index[r]))
        if [int(rollout.prompt_index[r]) for r in order] != [
            i for i in range(len(batch)) for _ in range(n)
        ]:
            raise RuntimeError(
                f"the sampler returned {len(rollout.texts)} responses for {len(batch)} prompts "
                f"x {n} samples"
            )
        texts = [rollout.texts[r] for r in order]
        finished = [bool(rollout.finished[r]) for r in order]
        answers = [p.answer for p in batch for _ in range(n)]
        extras = [dict(p.extra) for p in batch for _ in range(n)]
        scores = reward(texts, answers, finished, extras)
        correct = scores.correct.bool().view(len(batch), n)  # [B, n]
        rewards = scores.rewards.float().view(len(batch), n)  # [B, n]
        accuracy.update(correct)
        for metric in pass_k.values():
            metric.update(correct)
        for key, (_, metric) in breakdowns.items():
            metric.update(correct, [str(p.extra[key]) for p in batch])
        for i, p in enumerate(batch):
            record: dict[str, Any] = {"id": p.id, "answer": p.answer}
            for key in ("level", "subject"):
                if key in p.extra:
                    record[key] = p.extra[key]
            rows = slice(i * n, (i + 1) * n)
            record["responses"] = texts[rows]
            record["finished"] = finished[rows]
            record["rewards"] = rewards[i].tolist()
            record["correct"] = correct[i].tolist()
            records.append(record)
        if progress:
            done = min(start + batch_size, len(prompts))
            print(
                f"eval {bench.name}: {done}/{len(prompts)} problems, "
                f"accuracy so far {float(accuracy.compute()):.3f}",
                file=sys.stderr,
            )
    return {
        "accuracy": float(accuracy.compute()),
        "pass@k": {str(k): float(m.compute()) for k, m in pass_k.items()},
        "by_level": breakdowns["level"][1].as_dict() if "level" in breakdowns else {},
        "by_subject": breakdowns["subject"][1].as_dict() if "subject" in breakdowns else {},
        "n_problems": len(prompts),
        "n_samples": n,
        "protocol": bench.protocol,
        "problems": records,
    }


def _benchmarks_of(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in result.items() if isinstance(v, dict) and "accuracy" in v}


def average_accuracy(result: dict[str, Any]) -> float:
    """The plain mean of the benchmarks' accuracies (the paper's AVG)."""
    values = [r["accuracy"] for r in _benchmarks_of(result).values()]
    return sum(values) / len(values) if values else math.nan


def format_table(result: dict[str, Any]) -> str:
    """A Markdown table of accuracy (%) with the paper's columns (AIME24, MATH500, AMC23) first
    and AVG last."""
    benches = _benchmarks_of(result)
    names = [n for n in PAPER_COLUMNS if n in benches] + [
        n for n in benches if n not in PAPER_COLUMNS
    ]
    headers = [PAPER_COLUMNS.get(n, n) for n in names] + ["AVG"]
    values = [100 * benches[n]["accuracy"] for n in names] + [100 * average_accuracy(result)]
    cells = [f"{v:.1f}" for v in values]
    widths = [max(len(h), len(c)) for h, c in zip(headers, cells)]
    lines = [
        "| " + " | ".join(h.rjust(w) for h, w in zip(headers, widths)) + " |",
        "|" + "|".join("-" * (w + 1) + ":" for w in widths) + "|",
        "| " + " | ".join(c.rjust(w) for c, w in zip(cells, widths)) + " |",
    ]
    detail = [
        f"{PAPER_COLUMNS.get(n, n)}: {benches[n]['n_problems']} problems x "
        f"{benches[n]['n_samples']} sample{'s' if benches[n]['n_samples'] != 1 else ''}, "
        + ", ".join(f"pass@{k} {100 * v:.1f}" for k, v in benches[n]["pass@k"].items())
        for n in names
    ]
    return "\n".join(lines + [""] + detail)


def write_eval_json(result: dict[str, Any], path: str | Path) -> Path:
    """Write ``result`` as JSON (atomically: a crash never leaves half a file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(result, f, indent=1, ensure_ascii=False)
        f.write("\n")
    os.replace(tmp, path)
    return path


def correct_matrix(record: dict[str, Any]) -> torch.Tensor:
    """[P, n] bool correctness of a benchmark's result (rebuilt from its per-problem records)."""
    return torch.tensor([p["correct"] for p in record["problems"]], dtype=torch.bool)
