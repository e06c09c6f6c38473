"""``limr score LOGS --selector NAME --out scores.jsonl``: score every prompt of a reward history.

LOGS is a run folder (its ``history/``), a history folder, a ``limr history export`` JSONL, or
the rollout logs of another framework (``--format auto|limr|openrlhf|verl|trl|nemo-rl|prime-rl``,
detected from the files by default; :mod:`limr.importers`), which need ``--steps-per-epoch``.
One line per scored prompt: ``{"id": ..., "score": ...}`` (``"prompt"`` instead of ``"id"`` for
rollout logs keyed by prompt text; ``--data DATA`` maps those texts to the data's ids). Prompts
a selector cannot score (LIM: still missing an epoch after the fill) are left out and counted.
Only whole epochs are scored: a partly recorded last epoch (a run stopped mid-epoch) is left out,
and one line says how many epochs and prompts were left out.

The built-in ``lim`` is computed here without torch (:func:`limr.history.lim_scores`, the same
arithmetic as the selector), so that scoring starts in a fraction of a second; any other
selector is run through the registry.

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

from limr.cli import UsageError
from limr.history import (
    LOG_NAME,
    HistoryError,
    RewardHistory,
    find_history,
    lim_scores,
    score_record,
)

DATA_DIR = Path(__file__).resolve().parent.parent / "data"
REFERENCE_SCORES = DATA_DIR / "limr_reference" / "selection.jsonl"
"""The released LIMR scores, shipped: ``shipped:limr_reference`` on the command line."""

FORMAT_CHOICES = ("auto", "limr", "openrlhf", "verl", "trl", "nemo-rl", "prime-rl")


class SourceError(HistoryError):
    """A LOGS / SCORES input that cannot be read: one ``FILE:LINE: what`` per problem."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


@dataclass
class Source:
    """What a LOGS / SCORES argument holds: a history, or precomputed scores.

    Attributes:
        description: where it came from, for messages.
        id_key: "id", or "prompt" when ids are prompt texts (rollout logs).
        record: the reward history as read (None for a scores file).
        max_epochs: the first epochs to use (``--max-epochs``), or None.
        ids: every id in a scores file (scored or not).
        scores: {id: score} of the scored ids of a scores file.
        info: reader details (steps read, missing steps, ...).
    """

    description: str
    id_key: str = "id"
    record: Any = None
    max_epochs: int | None = None
    ids: list[str] = field(default_factory=list)
    scores: dict[str, float] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)
    _view: Any = None

    @property
    def history(self) -> Any:
        """The history the selectors score (torch arrays; the first ``max_epochs`` epochs)."""
        if self._view is None and self.record is not None:
            h = self.record
            self._view = h.head(self.max_epochs) if self.max_epochs is not None else h
        return self._view

    def numpy_history(self, fields: tuple[str, ...] | None = None) -> Any:
        """The same view with numpy arrays (no torch)."""
        h = self.record
        if isinstance(h, RewardHistory):
            if self.max_epochs is None:
                return h
            return h.numpy_arrays(fields, epochs=self.max_epochs)
        return self.history


def add_source_arguments(p: argparse.ArgumentParser, own_names: bool = False) -> None:
    """The options that say how to read LOGS. ``own_names``: the command has no --data /
    --id-field of its own, so the mapping options take those names (``limr score``, ``limr
    history``); otherwise they are --match-data / --rollout-id-field (``limr select``)."""
    g = p.add_argument_group("rollout logs of other frameworks (see limr.importers)")
    g.add_argument(
        "--format",
        choices=FORMAT_CHOICES,
        default="auto",
        help="format of LOGS (default: detected from its files)",
    )
    g.add_argument(
        "--steps-per-epoch",
        type=int,
        default=None,
        help="steps per pass over the prompts (LIMR: 8); required for rollout logs",
    )
    g.add_argument(
        "--max-epochs",
        type=int,
        default=None,
        help="use only the first E epochs (LIMR: 21); also applies to limr histories",
    )
    g.add_argument("--first-step", type=int, default=1, help="number of the first step (default 1)")
    g.add_argument(
        "--id-field" if own_names else "--rollout-id-field",
        dest="rollout_id_field",
        default=None,
        metavar="FIELD",
        help="the rollouts' prompt-id field (default: the format's own, e.g. veRL's index, "
        "prime-rl's task key; else prompts are keyed by their text)",
    )
    g.add_argument(
        "--reward-field",
        default=None,
        metavar="FIELD",
        help="the rollouts' reward field (default: the format's own; TRL: the only reward "
        "column, or NAME+NAME to sum)",
    )
    g.add_argument(
        "--correct-threshold",
        type=float,
        default=None,
        metavar="T",
        help="a rollout is correct when its reward >= T (default: when it is exactly 1, as "
        "the released LIM)",
    )
    g.add_argument(
        "--data" if own_names else "--match-data",
        dest="map_data",
        default=None,
        metavar="DATA",
        help="dataset (.jsonl/.json/.parquet or shipped:NAME) whose ids replace logged prompt "
        "texts (chat markers and spacing ignored; a prompt matching no record is an error)",
    )
    g.add_argument("--data-id-field", default="id", help="id field of DATA (default id)")
    g.add_argument(
        "--data-problem-field", default="problem", help="problem field of DATA (default problem)"
    )
    g.add_argument(
        "--allow-unmatched",
        action="store_true",
        help="leave out (and count) prompts that match no DATA record instead of failing",
    )


def import_options(args: argparse.Namespace) -> Any:
    """The :class:`limr.importers.ImportOptions` of the parsed arguments."""
    from limr.importers import ImportOptions

    return ImportOptions(
        lengths=getattr(args, "command", None) != "score",  # scores need no lengths
        steps_per_epoch=getattr(args, "steps_per_epoch", None),
        max_epochs=getattr(args, "max_epochs", None),
        first_step=getattr(args, "first_step", 1),
        id_field=getattr(args, "rollout_id_field", None),
        reward_field=getattr(args, "reward_field", None),
        correct_threshold=getattr(args, "correct_threshold", None),
        data=getattr(args, "map_data", None),
        data_id_field=getattr(args, "data_id_field", "id"),
        data_problem_field=getattr(args, "data_problem_field", "problem"),
        allow_unmatched=getattr(args, "allow_unmatched", False),
    )


def open_source(path: str, args: argparse.Namespace, allow_scores: bool = False) -> Source:
    """Read LOGS / SCORES; raise SourceError (a HistoryError) or UsageError, one clear message."""
    if path in ("shipped:limr_reference", "limr_reference"):
        if not allow_scores:
            raise UsageError("the released LIMR reference holds scores, not reward curves")
        return _read_scores(REFERENCE_SCORES, "the released LIMR scores (shipped:limr_reference)")
    p = Path(path)
    if not p.exists():
        raise SourceError([f"{path}: no such file or folder"])
    fmt = getattr(args, "format", "auto") or "auto"
    max_epochs = getattr(args, "max_epochs", None)
    if max_epochs is not None and max_epochs < 1:
        raise UsageError(f"--max-epochs must be at least 1, got {max_epochs}")
    folder = find_history(p) if fmt in ("auto", "limr") else None
    kind = _native_kind(p) if fmt in ("auto", "limr") and folder is None else None
    if folder is not None or kind == "cells":
        own = getattr(args, "command", None) != "select"  # select names two of them apart
        given = [
            flag
            for flag, dest in (
                ("--id-field" if own else "--rollout-id-field", "rollout_id_field"),
                ("--reward-field", "reward_field"),
                ("--correct-threshold", "correct_threshold"),
                ("--data" if own else "--match-data", "map_data"),
            )
            if getattr(args, dest, None) is not None
        ]
        if given:
            raise UsageError(
                f"{path} is a limr history, whose cells are already counted: "
                f"{', '.join(given)} apply to rollout logs only"
            )
    if folder is not None:
        h = RewardHistory.load(folder)
        src = Source(f"reward history {folder}", record=h, info=dict(h.info))
    elif kind is not None:
        src = _read_jsonl_source(p, allow_scores)
        if src.record is None:
            return src
    elif fmt == "limr":
        raise SourceError(
            [
                f"{path}: not a limr history (no {LOG_NAME}, no history/{LOG_NAME}), nor a "
                "history export or scores JSONL"
            ]
        )
    else:
        from limr.importers import RolloutError, read_history

        try:
            h = read_history(p, fmt, import_options(args))
        except RolloutError as err:
            raise SourceError(err.problems) from None
        key = h.info.get("key", "id")
        src = Source(
            f"{h.info.get('format')} rollout logs {p}", id_key=key, record=h, info=dict(h.info)
        )
        notes = _notes(h.info)
        if notes:
            src.info["notes"] = notes
            src.info["warning"] = "; ".join(notes)  # what `limr select` prints
    src.max_epochs = max_epochs
    return src


def _notes(info: dict[str, Any]) -> list[str]:
    """What the reader left out or could not see, one line each."""
    notes = []
    missing = info.get("missing_steps") or []
    if missing:
        notes.append(
            f"{len(missing)} step files are missing between step {info['first_step']} and "
            f"{info['last_step']} (e.g. {missing[:5]}); their cells count as absent"
        )
    for reason, count in (info.get("dropped") or {}).items():
        notes.append(f"{count} rollouts left out: {reason}")
    if info.get("no_reward"):
        notes.append(f"{info['no_reward']} rollouts without a reward (null / NaN) left out")
    if info.get("unmatched_prompts"):
        notes.append(
            f"{info['unmatched_prompts']} prompts ({info['unmatched_rollouts']} rollouts) match "
            "no --data record: left out"
        )
    if info.get("format") == "trl":
        notes.append(
            "TRL writes only the last generation batch of each logging step: most rollouts "
            "are not in these files; limr.integrations.trl.record_rewards records them all"
        )
    return notes


def _native_kind(path: Path) -> str | None:
    """ "cells" (a history export), "scores", "json" (other JSON lines), or None (not a JSON
    lines file: rollout logs of another framework, or nothing)."""
    if not path.is_file() or path.suffix not in (".jsonl", ".json"):
        return None
    first = None
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            if line.strip():
                try:
                    first = json.loads(line)
                except json.JSONDecodeError:
                    return None
                break
    if not isinstance(first, dict):
        return None
    if "epoch" in first and "n" in first:
        return "cells"
    if "score" in first or "lim_score" in first:
        return "scores" if "id" in first or "prompt" in first else None
    return None


def _read_jsonl_source(path: Path, allow_scores: bool) -> Source:
    first = None
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            if line.strip():
                try:
                    first = json.loads(line)
                except json.JSONDecodeError:
                    first = None
                break
    if not isinstance(first, dict):
        raise SourceError([f"{path}:1: expected JSON lines of objects"])
    if "epoch" in first and "n" in first:
        from limr.importers import RolloutError
        from limr.importers.native import read_export

        try:
            h = read_export(path)
        except RolloutError as err:
            raise SourceError(err.problems) from None
        return Source(f"history export {path}", record=h)
    if "score" in first or "lim_score" in first:
        if not allow_scores:
            raise UsageError(
                f"{path} holds scores, not reward curves: `limr select` takes it, `limr score` "
                "needs a history or rollout logs"
            )
        return _read_scores(path, f"scores {path}")
    raise SourceError(
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
                    yield f"{path}:{lineno}", SourceError([f"not valid JSON: {err.msg}"])


def _read_scores(path: Path, description: str) -> Source:
    src = Source(description)
    problems: list[str] = []
    for where, rec in _iter_jsonl(path):
        if isinstance(rec, SourceError):
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
        raise SourceError(
            problems[:20] + ([f"... {len(problems) - 20} more"] * (len(problems) > 20))
        )
    if not src.ids:
        raise SourceError([f"{path}: no scores"])
    return src


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


def cost_line(info: dict[str, Any]) -> str | None:
    """The cheap estimators' cost (``rollouts_used`` of ``rollouts_total``, the share), from
    ``Selection.info``; None for a selector that reports none."""
    used = info.get("rollouts_used")
    if used is None:
        return None
    total = info.get("rollouts_total")
    text = f"rollouts used: {used:,.0f}"
    if total:
        text += f" of {total:,.0f} ({100 * used / total:.1f}%)"
    if info.get("epochs_used") is not None:
        text += f"; epochs {info['epochs_used']} of {info.get('epochs_total', '?')}"
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
    p.add_argument(
        "logs", metavar="LOGS", help="run folder, history folder, export or rollout logs"
    )
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
    add_source_arguments(p, own_names=True)
    p.add_argument("--out", required=True, help="scores JSONL to write")


LIM_ARGS = {"missing", "whole_epochs", "strict", "threshold", "size"}
"""Selector arguments the torch-free LIM handles (they do not change the scores)."""


def _torch_free_lim(args: argparse.Namespace, kwargs: dict[str, Any]) -> bool:
    """Whether the built-in LIM can be computed here without torch, with the same scores."""
    return (
        args.selector == "lim"
        and not args.plugins.strip()
        and set(kwargs) <= LIM_ARGS
        and kwargs.get("missing", "drop") == "drop"
        and isinstance(kwargs.get("whole_epochs", True), bool)
    )


def main(args: argparse.Namespace) -> int:
    src = open_source(args.logs, args)
    for note in src.info.get("notes") or ([src.info["warning"]] if "warning" in src.info else []):
        print(f"limr score: note: {note}")
    kwargs = parse_selector_args(args.selector_arg)
    info: dict[str, Any] = {}
    if _torch_free_lim(args, kwargs):
        field = "n_correct" if args.metric == "accuracy" else "reward_sum"
        view = src.numpy_history(("n", field))
        ids, scores, info = lim_scores(view, args.metric, kwargs.get("whole_epochs", True))
        n_all = info["n_prompts"]
        values = scores.tolist()
    else:
        ids, values, info, n_all = _score_with_registry(args, src, kwargs)
    n = write_jsonl(args.out, (score_record(src.id_key, pid, s) for pid, s in zip(ids, values)))
    epochs = info.get("epochs", "?")
    print(
        f"limr score: {args.selector} ({args.metric}) scored {n} of {n_all} prompts "
        f"over {epochs} epochs from {src.description}; "
        f"{n_all - n} unscored (missing epochs); wrote {args.out}"
    )
    for line in (epochs_line(info), cost_line(info)):
        if line is not None:
            print(f"limr score: {line}")
    return 0


def _score_with_registry(args: argparse.Namespace, src: Source, kwargs: dict[str, Any]):
    import limr.selectors  # noqa: F401  (registers the built-in selectors; imports torch)
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
    info.setdefault("epochs", int(h.n.shape[1]))
    return ids, scores.tolist(), info, len(h.ids)


def _kind(name: str) -> str:
    from limr.registry import SELECTORS

    return getattr(SELECTORS.get(name), "kind", "offline")


def _article(word: str) -> str:
    return "an" if word[:1] in "aeiou" else "a"
