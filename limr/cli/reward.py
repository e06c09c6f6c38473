"""``limr reward IN.jsonl --out OUT.jsonl [--reward math_rule] [CONFIG] [key=value ...]``.

Each input line is ``{"response": str, "answer": str, "finished": bool (optional, default
true), ...}``; each output line is the input plus ``"reward": float`` and ``"correct": bool``.
The reward's keyword arguments come from the config (``reward.kwargs.timeout=5``). Every bad
line is reported as ``FILE:LINE`` before anything is scored.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from limr.config import load_config
from limr.prompts import DataError, iter_records

BATCH = 4096


def allow_intermixed(p: argparse.ArgumentParser) -> None:
    """Let ``key=value`` overrides follow options (``IN --out X reward.kwargs.timeout=5``):
    the sub-parser parses intermixed positionals, which plain argparse refuses."""
    plain = type(p).parse_known_args

    def parse_known_args(args=None, namespace=None):  # type: ignore[no-untyped-def]
        p.parse_known_args = lambda a=None, n=None: plain(p, a, n)  # type: ignore[method-assign]
        try:
            return p.parse_known_intermixed_args(args, namespace)
        finally:
            p.parse_known_args = parse_known_args  # type: ignore[method-assign]

    p.parse_known_args = parse_known_args  # type: ignore[method-assign]


def add_arguments(p: argparse.ArgumentParser) -> None:
    allow_intermixed(p)
    p.add_argument("input", help="JSONL of {response, answer, finished?}")
    p.add_argument("config", nargs="?", help="YAML config (default: schema defaults)")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="dotlist overrides")
    p.add_argument("--out", required=True, help="output JSONL (input + reward + correct)")
    p.add_argument("--reward", help="registered reward (default: reward.name, math_rule)")


def _as_answer(value: Any) -> str | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, float) and value.is_integer():
        return str(int(value))  # AMC-style 27.0
    if isinstance(value, (int, float, str)):
        return str(value)
    return None


def read_requests(path: str) -> list[tuple[str, dict[str, Any]]]:
    """``(location, record)`` of every line; one DataError listing every bad line."""
    rows, problems = [], []
    for where, record in iter_records(path):
        if isinstance(record, DataError):
            problems.append(f"{where}: {record}")
            continue
        if not isinstance(record, dict):
            problems.append(f"{where}: expected a JSON object, got {type(record).__name__}")
            continue
        bad = []
        if not isinstance(record.get("response"), str):
            bad.append("'response' must be a string")
        if "answer" not in record:
            bad.append("missing field 'answer'")
        elif _as_answer(record["answer"]) is None or not _as_answer(record["answer"]).strip():
            bad.append("'answer' must be a non-empty string or number")
        if not isinstance(record.get("finished", True), bool):
            bad.append("'finished' must be true or false")
        if bad:
            problems.append(f"{where}: {'; '.join(bad)}")
        else:
            rows.append((where, record))
    if problems:
        raise DataError(problems)
    if not rows:
        raise DataError([f"{path}: no records"])
    return rows


def build_reward(name: str, kwargs: dict[str, Any]) -> Any:
    """``REWARDS.build`` with a usage error (naming the valid keyword arguments) on a bad one."""
    import inspect

    from limr.cli import UsageError
    from limr.registry import REWARDS

    plugin = REWARDS.get(name)
    try:
        inspect.signature(plugin).bind(**kwargs)
    except TypeError as err:
        valid = ", ".join(inspect.signature(plugin).parameters) or "(none)"
        raise UsageError(f"reward {name!r}: {err}; its keyword arguments: {valid}") from None
    return plugin(**kwargs)


def main(args: argparse.Namespace) -> int:
    from limr.registry import import_plugins

    config, overrides = args.config, list(args.overrides)
    if config is not None and "=" in config:
        config, overrides = None, [config, *overrides]
    cfg = load_config(config, overrides)
    import_plugins(cfg.plugins)
    name = args.reward or cfg.reward.name
    kwargs = dict(cfg.reward.kwargs) if name == cfg.reward.name else {}
    reward = build_reward(name, kwargs)
    rows = read_requests(args.input)

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    total, n_correct = 0.0, 0
    with open(tmp, "w", encoding="utf-8") as f:
        for start in range(0, len(rows), BATCH):
            records = [r for _, r in rows[start : start + BATCH]]
            extras = [
                {k: v for k, v in r.items() if k not in ("response", "answer", "finished")}
                for r in records
            ]
            scores = reward(
                [r["response"] for r in records],
                [_as_answer(r["answer"]) for r in records],
                [r.get("finished", True) for r in records],
                extras,
            )
            for record, value, ok in zip(records, scores.rewards.tolist(), scores.correct.tolist()):
                f.write(json.dumps({**record, "reward": value, "correct": bool(ok)}) + "\n")
                total += value
                n_correct += bool(ok)
    os.replace(tmp, out)
    n = len(rows)
    print(
        f"limr reward: {n} responses scored with {name}: mean reward {total / n:.4f}, "
        f"{n_correct} correct ({100 * n_correct / n:.1f}%) -> {out}",
        file=sys.stderr,
    )
    return 0
