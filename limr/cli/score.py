"""``limr score LOGS --selector NAME --out scores.jsonl``: score every prompt of a reward history.

LOGS is a run folder (its ``history/``), a history folder, a ``limr history export`` JSONL, or a
folder of LIMR/OpenRLHF ``step_N.json`` rollout logs (with ``--steps-per-epoch``). One line per
scored prompt: ``{"id": ..., "score": ...}`` (``"prompt"`` instead of ``"id"`` for rollout logs,
which are keyed by prompt text). Prompts a selector cannot score (LIM: still missing an epoch after
the fill) are left out and counted. Only whole epochs are scored: a partly recorded last epoch (a
run stopped mid-epoch) is left out, and one line says how many epochs and prompts were left out.

JSON has no infinity or NaN: a score that is not finite is written as ``"score": null`` with
``"nonfinite": "-inf"`` (or ``"inf"``, ``"nan"``) beside it. Readers (``limr select``,
:func:`open_source`) take the score back from ``nonfinite``; a null score without it means
unscored (the released LIMR file's convention), and a NaN counts as unscored too. Files written
before this rule, with a bare ``-Infinity``, still read.

This module also holds the input readers shared by ``limr select`` and ``limr history``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from limr.cli import UsageError
from limr.history import (
    LOG_NAME,
    HistoryError,
    RewardHistory,
    find_history,
    read_openrlhf_logs,
    step_files,
)
from limr.prompts import DATA_DIR, DataError
from limr.selectors.curves import score_record

REFERENCE_SCORES = DATA_DIR / "limr_reference" / "selection.jsonl"
"""The released LIMR scores, shipped: ``shipped:limr_reference`` on the command line."""


@dataclass
class Source:
    """What a LOGS / SCORES argument holds: a history, or precomputed scores.

    Attributes:
        description: where it came from, for messages.
        id_key: "id", or "prompt" when ids are prompt texts (rollout logs).
        history: the reward history (None for a scores file).
        ids: every id in a scores file (scored or not).
        scores: {id: score} of the scored ids of a scores file.
        info: reader details (steps read, missing steps, ...).
    """

    description: str
    id_key: str = "id"
    history: Any = None
    ids: list[str] = field(default_factory=list)
    scores: dict[str, float] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)


def add_source_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("rollout logs (LIMR/OpenRLHF step_N.json folders)")
    g.add_argument(
        "--steps-per-epoch",
        type=int,
        default=None,
        help="steps per epoch of the logs (LIMR: 8); required for a folder of step_N.json",
    )
    g.add_argument(
        "--max-epochs",
        type=int,
        default=None,
        help="use only the first E epochs (LIMR: 21); also applies to limr histories",
    )
    g.add_argument(
        "--first-step", type=int, default=1, help="number of the first step file (default 1)"
    )


def open_source(path: str, args: argparse.Namespace, allow_scores: bool = False) -> Source:
    """Read LOGS / SCORES; raise DataError or UsageError with one clear message."""
    if path in ("shipped:limr_reference", "limr_reference"):
        if not allow_scores:
            raise UsageError("the released LIMR reference holds scores, not reward curves")
        return _read_scores(REFERENCE_SCORES, "the released LIMR scores (shipped:limr_reference)")
    p = Path(path)
    if not p.exists():
        raise DataError([f"{path}: no such file or folder"])
    try:
        hist_dir = find_history(p)
        if hist_dir is not None:
            h = RewardHistory.load(hist_dir)
            src = Source(f"reward history {hist_dir}", history=h, info=dict(h.info))
        elif p.is_dir() and step_files(p):
            if args.steps_per_epoch is None:
                raise UsageError(
                    f"{path} holds step_N.json rollout logs: give --steps-per-epoch "
                    "(LIMR's released run: --steps-per-epoch 8 --max-epochs 21)"
                )
            h = read_openrlhf_logs(
                p, args.steps_per_epoch, args.max_epochs, first_step=args.first_step
            )
            src = Source(f"rollout logs {p}", id_key="prompt", history=h, info=dict(h.info))
            missing = h.info.get("missing_steps") or []
            if missing:
                src.info["warning"] = (
                    f"{len(missing)} step files are missing between step {h.info['first_step']} "
                    f"and {h.info['last_step']} (e.g. {missing[:5]}); their cells count as absent"
                )
            return src
        elif p.is_file():
            src = _read_jsonl_source(p, allow_scores)
        else:
            raise DataError(
                [
                    f"{path}: neither a reward history (no {LOG_NAME}, no history/{LOG_NAME}), "
                    "nor a folder of step_N.json rollout logs, nor a JSONL file"
                ]
            )
    except HistoryError as err:
        raise DataError([str(err)]) from None
    if src.history is not None and args.max_epochs is not None:
        src.history = src.history.head(args.max_epochs)
    return src


def _read_jsonl_source(path: Path, allow_scores: bool) -> Source:
    first = None
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                try:
                    first = json.loads(line)
                except json.JSONDecodeError:
                    first = None
                break
    if not isinstance(first, dict):
        raise DataError([f"{path}:1: expected JSON lines of objects"])
    if "epoch" in first and "n" in first:
        return _read_cells(path)
    if "score" in first or "lim_score" in first:
        if not allow_scores:
            raise UsageError(
                f"{path} holds scores, not reward curves: `limr select` takes it, `limr score` "
                "needs a history or rollout logs"
            )
        return _read_scores(path, f"scores {path}")
    raise DataError(
        [
            f"{path}:1: not a scores file ({{id, score}} or {{id, lim_score}} lines) nor a "
            "history export ({id, epoch, n, n_correct, reward_sum} lines)"
        ]
    )


def _iter_jsonl(path: Path):
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if line.strip():
                try:
                    yield f"{path}:{lineno}", json.loads(line)
                except json.JSONDecodeError as err:
                    yield f"{path}:{lineno}", DataError([f"not valid JSON: {err.msg}"])


def _read_scores(path: Path, description: str) -> Source:
    src = Source(description)
    problems: list[str] = []
    for where, rec in _iter_jsonl(path):
        if isinstance(rec, DataError):
            problems.append(f"{where}: {rec}")
            continue
        key = "id" if "id" in rec else "prompt" if "prompt" in rec else None
        if key is None:
            problems.append(f"{where}: no 'id' (or 'prompt')")
            continue
        src.id_key = key
        pid = str(rec[key])
        score = rec.get("score", rec.get("lim_score"))
        if pid in src.scores or (score is None and pid in src.ids):
            problems.append(f"{where}: duplicate {key} {pid[:60]!r}")
            continue
        src.ids.append(pid)
        if score is None:
            score = rec.get("nonfinite")  # limr score's -inf / inf / nan, else unscored
            if score is None:
                continue  # unscored (null), like LIMR's prompts that missed an epoch
        try:
            value = float(score)
        except (TypeError, ValueError):
            problems.append(f"{where}: score {score!r} is not a number")
            continue
        if not math.isnan(value):  # a NaN score ranks nowhere: unscored
            src.scores[pid] = value
    if problems:
        raise DataError(problems[:20] + ([f"... {len(problems) - 20} more"] * (len(problems) > 20)))
    if not src.ids:
        raise DataError([f"{path}: no scores"])
    return src


def _read_cells(path: Path) -> Source:
    """A ``limr history export`` file back into a history."""
    index: dict[str, int] = {}
    rows: list[tuple[int, int, int, int, float]] = []
    problems: list[str] = []
    for where, rec in _iter_jsonl(path):
        if isinstance(rec, DataError):
            problems.append(f"{where}: {rec}")
            continue
        try:
            pid = str(rec["id"])
            cell = (int(rec["epoch"]), int(rec["n"]), int(rec["n_correct"]), rec["reward_sum"])
        except (KeyError, TypeError, ValueError):
            problems.append(f"{where}: expected id, epoch, n, n_correct, reward_sum")
            continue
        j = index.setdefault(pid, len(index))
        rows.append((j, *cell))
    if problems:
        raise DataError(problems[:20])
    if not rows:
        raise DataError([f"{path}: no cells"])
    arr = np.array(rows, dtype=np.float64)
    num_i, num_e = len(index), int(arr[:, 1].max()) + 1
    dense = np.zeros((3, num_i, num_e))
    for k in range(3):
        np.add.at(dense[k], (arr[:, 0].astype(np.int64), arr[:, 1].astype(np.int64)), arr[:, 2 + k])
    h = RewardHistory.from_arrays(list(index), np.rint(dense[0]), np.rint(dense[1]), dense[2])
    return Source(f"history export {path}", history=h)


def parse_selector_args(items: list[str]) -> dict[str, Any]:
    """``KEY=VALUE`` pairs; VALUE as JSON when it parses (numbers, true/false, null), else text."""
    kwargs: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.isidentifier():
            raise UsageError(f"--selector-arg {item!r}: expected KEY=VALUE")
        try:
            kwargs[key] = json.loads(value)
        except json.JSONDecodeError:
            kwargs[key] = value
    return kwargs


def build_selector(name: str, **kwargs: Any) -> Any:
    """SELECTORS.build with the registry imported and constructor errors as usage errors."""
    import limr.selectors  # noqa: F401  (registers the built-in selectors)
    from limr.registry import SELECTORS

    cls = SELECTORS.get(name)
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as err:
        raise UsageError(f"selector {name!r}: {err}") from None


def epochs_line(info: dict[str, Any]) -> str | None:
    """The one line on the epochs scored and the prompts left out, from ``Selection.info``
    (None for a selector that does not report its epochs)."""
    if "epochs_recorded" not in info:
        return None
    recorded, scored = info["epochs_recorded"], info.get("epochs", info["epochs_recorded"])
    text = f"whole epochs scored: {scored} of {recorded} recorded"
    part = info.get("partial_epoch")
    if part:
        steps = ""
        if part.get("steps") is not None:
            of = f" of {part['of']}" if part.get("of") is not None else ""
            steps = f"{part['steps']}{of} steps, "
        if part.get("dropped"):
            verdict = "left out"
        else:
            verdict = "kept, being the only epoch"
        text += f" (epoch {part['epoch']} is partial: {steps}{part['prompts']} prompts; {verdict})"
    if "unscored" in info:
        text += f"; unscored prompts: {info['unscored']} of {info.get('n_prompts', '?')}"
    return text


def write_jsonl(path: str | Path, records) -> int:
    """Write records atomically (temp file + rename); return how many."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    count = 0
    with open(tmp, "w", encoding="utf-8") as f:
        for rec in records:
            f.write(json.dumps(rec, ensure_ascii=False) + "\n")
            count += 1
    os.replace(tmp, path)
    return count


# ---------------------------------------------------------------------------------------------


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("logs", metavar="LOGS", help="run folder, history folder, export or step logs")
    p.add_argument("--selector", default="lim", help="registered offline selector (default lim)")
    p.add_argument(
        "--metric",
        choices=["accuracy", "reward"],
        default="accuracy",
        help="per-epoch value: accuracy (fraction correct, default) or mean raw reward",
    )
    p.add_argument("--seed", type=int, default=42, help="seed (rand)")
    p.add_argument(
        "--selector-arg",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra selector argument, e.g. missing=mask or window=3 (repeatable)",
    )
    add_source_arguments(p)
    p.add_argument("--out", required=True, help="scores JSONL to write")


def main(args: argparse.Namespace) -> int:
    src = open_source(args.logs, args)
    if "warning" in src.info:
        print(f"limr score: warning: {src.info['warning']}")
    import limr.selectors  # noqa: F401
    from limr.registry import SELECTORS

    cls = SELECTORS.get(args.selector)
    if getattr(cls, "kind", "offline") != "offline":
        raise UsageError(
            f"{args.selector!r} is {_article(cls.kind)} {cls.kind} selector: "
            "it has no per-prompt score "
            "(offline ones: "
            + ", ".join(n for n in SELECTORS.names() if _kind(n) == "offline")
            + ")"
        )
    kwargs = parse_selector_args(args.selector_arg)
    # Scoring needs no cut; selectors without a default threshold need a placeholder size.
    size = 0 if getattr(cls, "default_threshold", None) is None else None
    selector = build_selector(
        args.selector, size=size, metric=args.metric, seed=args.seed, **kwargs
    )
    h = src.history
    info: dict[str, Any] = {}
    try:
        if hasattr(selector, "select"):  # ids, scores and the epoch report at once
            sel = selector.select(h)
            ids, scores, info = sel.ids, sel.scores, sel.info
        else:
            ids, scores = selector.score(h)
    except ValueError as err:
        raise UsageError(f"selector {args.selector!r}: {err}") from None
    n = write_jsonl(
        args.out, (score_record(src.id_key, pid, s) for pid, s in zip(ids, scores.tolist()))
    )
    epochs = info.get("epochs", h.n.shape[1])
    print(
        f"limr score: {args.selector} ({args.metric}) scored {n} of {len(h.ids)} prompts "
        f"over {epochs} epochs from {src.description}; "
        f"{len(h.ids) - n} unscored (missing epochs); wrote {args.out}"
    )
    line = epochs_line(info)
    if line is not None:
        print(f"limr score: {line}")
    return 0


def _kind(name: str) -> str:
    from limr.registry import SELECTORS

    return getattr(SELECTORS.get(name), "kind", "offline")


def _article(word: str) -> str:
    return "an" if word[:1] in "aeiou" else "a"
