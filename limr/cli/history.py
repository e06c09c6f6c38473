"""``limr history export RUN_OR_LOGS --out FILE.jsonl`` and ``limr history show RUN_OR_LOGS``.

``export`` writes one line per (prompt, epoch) with rollouts: ``{"id", "epoch", "n", "n_correct",
"reward_sum"}`` (plus ``"length_sum"`` when lengths were recorded). ``show`` prints the size of a
history and its mean accuracy and reward per epoch. RUN_OR_LOGS is a run folder, a history folder
or a folder of LIMR/OpenRLHF ``step_N.json`` logs (with ``--steps-per-epoch``).
"""

from __future__ import annotations

import argparse

from limr.cli.score import add_source_arguments, open_source, write_jsonl
from limr.history import iter_cells


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", choices=["export", "show"], help="export cells as JSONL / summary")
    p.add_argument("source", metavar="RUN_OR_LOGS", help="run folder, history folder or step logs")
    p.add_argument("--out", help="FILE.jsonl to write (export)")
    add_source_arguments(p)


def main(args: argparse.Namespace) -> int:
    from limr.cli import UsageError

    if args.action == "export" and not args.out:
        raise UsageError("history export needs --out FILE.jsonl")
    src = open_source(args.source, args)
    if "warning" in src.info:
        print(f"limr history: warning: {src.info['warning']}")
    h = src.history
    if args.action == "export":
        n = write_jsonl(args.out, iter_cells(h))
        print(
            f"limr history: wrote {n} (prompt, epoch) cells of {len(h.ids)} prompts x "
            f"{h.n.shape[1]} epochs from {src.description} to {args.out}"
        )
        return 0
    n = h.n
    print(f"{src.description}: {len(h.ids)} prompts, {n.shape[1]} epochs, {int(n.sum())} rollouts")
    print(f"{'epoch':>5} {'prompts':>8} {'rollouts':>9} {'accuracy':>9} {'reward':>8}")
    for e in range(n.shape[1]):
        rollouts = int(n[:, e].sum())
        acc = float(h.n_correct[:, e].sum()) / rollouts if rollouts else float("nan")
        rew = float(h.reward_sum[:, e].sum()) / rollouts if rollouts else float("nan")
        print(f"{e:>5} {int((n[:, e] > 0).sum()):>8} {rollouts:>9} {acc:>9.3f} {rew:>8.3f}")
    return 0
