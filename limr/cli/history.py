"""``limr history export|show|import RUN_OR_LOGS``: a reward history as cells, a summary, or a
limr history made from another framework's rollout logs.

``export --out FILE.jsonl`` writes one line per (prompt, epoch) with rollouts: ``{"id", "epoch",
"n", "n_correct", "reward_sum"}`` (plus ``"length_sum"`` when lengths were recorded, and
``"epoch_complete"`` where the history knows whether the cell's epoch is whole). ``show``
prints the size of a history and its mean accuracy and reward per epoch. ``import --out RUN_DIR``
writes ``RUN_DIR/history/`` (whole or not at all), so that every command and the curriculum read
it as a run of limr's own. RUN_OR_LOGS is a run folder, a history folder, a history export, or
rollout logs of another framework (``--format``, ``--steps-per-epoch``, see ``limr score``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from limr.cli.score import add_source_arguments, open_source, write_jsonl
from limr.history import HISTORY_DIRNAME, iter_cells, log_files


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "action",
        choices=["export", "show", "import"],
        help="export cells as JSONL / print a summary / import rollout logs as a limr history",
    )
    p.add_argument("source", metavar="RUN_OR_LOGS", help="run folder, history folder or logs")
    p.add_argument("--out", help="FILE.jsonl to write (export), RUN_DIR to write (import)")
    add_source_arguments(p, own_names=True)


def main(args: argparse.Namespace) -> int:
    from limr.cli import UsageError

    if args.action in ("export", "import") and not args.out:
        what = "FILE.jsonl" if args.action == "export" else "RUN_DIR"
        raise UsageError(f"history {args.action} needs --out {what}")
    if args.action == "import":
        target = Path(args.out) / HISTORY_DIRNAME
        if log_files(target) or (target.exists() and any(target.iterdir())):
            raise UsageError(f"{target} already holds files; choose another --out")
    src = open_source(args.source, args)
    for note in src.info.get("notes") or []:
        print(f"limr history: note: {note}")
    if args.action == "import":
        return _import(args, src, target)
    h = src.numpy_history()
    arrays = h.numpy_arrays() if hasattr(h, "numpy_arrays") else h
    if args.action == "export":
        n = write_jsonl(args.out, iter_cells(arrays))
        print(
            f"limr history: wrote {n} (prompt, epoch) cells of {len(arrays.ids)} prompts x "
            f"{arrays.n.shape[1]} epochs from {src.description} to {args.out}"
        )
        return 0
    n = np.asarray(arrays.n)
    nc = np.asarray(arrays.n_correct)
    rs = np.asarray(arrays.reward_sum)
    size = f"{len(arrays.ids)} prompts, {n.shape[1]} epochs, {int(n.sum())} rollouts"
    print(f"{src.description}: {size}")
    print(f"{'epoch':>5} {'prompts':>8} {'rollouts':>9} {'accuracy':>9} {'reward':>8}")
    for e in range(n.shape[1]):
        rollouts = int(n[:, e].sum())
        acc = float(nc[:, e].sum()) / rollouts if rollouts else float("nan")
        rew = float(rs[:, e].sum()) / rollouts if rollouts else float("nan")
        print(f"{e:>5} {int((n[:, e] > 0).sum()):>8} {rollouts:>9} {acc:>9.3f} {rew:>8.3f}")
    return 0


def _import(args: argparse.Namespace, src, target: Path) -> int:
    h = src.record
    if src.max_epochs is not None and h.num_epochs > src.max_epochs:
        h = h.first_epochs(src.max_epochs)
    h.save(target)
    key = "prompt texts" if src.id_key == "prompt" else "ids"
    print(
        f"limr history: imported {h.num_rollouts} rollouts of {h.num_prompts} prompts ({key}) "
        f"x {h.num_epochs} epochs from {src.description} into {target}"
    )
    return 0
