"""limr's own formats: a history folder (``rewards.log`` and its shards, or a run folder's
``history/``), and the ``limr history export`` JSONL of ``{id, epoch, n, n_correct,
reward_sum[, length_sum][, epoch_complete]}`` cells."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from limr.history import RewardHistory, find_history
from limr.importers._core import RolloutError, fail

NAME = "limr"
CELL_FIELDS = ("id", "epoch", "n", "n_correct", "reward_sum")


def find(path: Path) -> Path | None:
    """The history folder at ``path``, or the export file, or None."""
    folder = find_history(path)
    if folder is not None:
        return folder
    if path.is_file() and path.suffix == ".jsonl" and _first_is_cell(path):
        return path
    return None


def _first_is_cell(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            for line in f:
                if line.strip():
                    rec = json.loads(line)
                    return isinstance(rec, dict) and "epoch" in rec and "n" in rec
    except (json.JSONDecodeError, UnicodeDecodeError, OSError):
        return False
    return False


def read(path: Path) -> RewardHistory:
    folder = find_history(path)
    if folder is not None:
        h = RewardHistory.load(folder)
        h.info.setdefault("source", str(folder))
        h.info["format"] = NAME
        return h
    return read_export(path)


def read_export(path: Path) -> RewardHistory:
    """A ``limr history export`` file back into a history (every problem named FILE:LINE)."""
    index: dict[str, int] = {}
    rows: list[tuple[int, int, int, int, float, float]] = []
    problems: list[str] = []
    has_length = True
    whole: dict[int, tuple[bool, str]] = {}  # epoch -> (epoch_complete, where first said)
    with open(path, "rb") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            where = f"{path}:{lineno}"
            try:
                rec: Any = json.loads(line)
            except (json.JSONDecodeError, UnicodeDecodeError) as err:
                problems.append(f"{where}: not valid JSON: {getattr(err, 'msg', err)}")
                continue
            try:
                pid = str(rec["id"])
                epoch, n, nc = int(rec["epoch"]), int(rec["n"]), int(rec["n_correct"])
                rs = float(rec["reward_sum"])
                if epoch < 0 or n < 0 or not 0 <= nc <= n:
                    raise ValueError
            except (KeyError, TypeError, ValueError):
                problems.append(f"{where}: expected {', '.join(CELL_FIELDS)} (counts >= 0)")
                continue
            said = rec.get("epoch_complete")
            if said is not None:
                if not isinstance(said, bool):
                    problems.append(f"{where}: epoch_complete must be true or false")
                    continue
                first = whole.setdefault(epoch, (said, where))
                if first[0] != said:
                    problems.append(
                        f"{where}: epoch {epoch} is epoch_complete={str(said).lower()} here, "
                        f"{str(first[0]).lower()} at {first[1]}"
                    )
                    continue
            ls = rec.get("length_sum")
            if ls is None:
                has_length = False
            j = index.setdefault(pid, len(index))
            rows.append((j, epoch, n, nc, rs, float(ls or 0.0)))
    if problems:
        raise fail(problems)
    if not rows:
        raise RolloutError([f"{path}: no cells"])
    arr = np.array(rows, dtype=np.float64)
    num_i, num_e = len(index), int(arr[:, 1].max()) + 1
    dense = np.zeros((4, num_i, num_e))
    i, e = arr[:, 0].astype(np.int64), arr[:, 1].astype(np.int64)
    for k in range(4):
        np.add.at(dense[k], (i, e), arr[:, 2 + k])
    complete = [whole[e][0] if e in whole else None for e in range(num_e)]
    h = RewardHistory.from_arrays(
        list(index), np.rint(dense[0]), np.rint(dense[1]), dense[2],
        dense[3] if has_length else None, complete=complete if whole else None,
    )  # fmt: skip
    h.info.update(source=str(path), format=NAME)
    return h
