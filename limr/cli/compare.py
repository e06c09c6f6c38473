"""``limr compare-scores A B [--top-k K] [--plot out.png] [--json out.json]``: how two per-prompt
scorings agree.

A and B are scores files (``limr score``'s ``{"id", "score"}`` lines, or the released LIMR
file's ``{"id", "lim_score", "in_limr"}`` lines; ``shipped:limr_reference`` names the shipped
copy), or reward histories (a run folder, a history folder, a history export), which are scored
by LIM first (``--max-epochs E``: their first E epochs). Over the prompts both score it prints
Spearman's rho, Kendall's tau-b, and for each ``--top-k K`` (default: LIMR's kept fraction,
1,389 / 8,523, of the common prompts) the shared count, the overlap |A_k & B_k| / k and the
Jaccard index of the two top-k sets. ``--plot`` draws B's scores against A's. See
:mod:`limr.compare`.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

from limr.cli import UsageError


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("a", metavar="A", help="scores JSONL, shipped:limr_reference, or a history")
    p.add_argument("b", metavar="B", help="the other one")
    p.add_argument(
        "--top-k",
        type=int,
        action="append",
        default=None,
        metavar="K",
        help="size of the top sets to compare (repeatable; default: LIMR's kept fraction, "
        "1389/8523, of the common prompts)",
    )
    p.add_argument("--plot", default=None, metavar="PNG", help="write a scatter plot of B vs A")
    p.add_argument("--json", default=None, metavar="FILE", help="write the numbers as JSON")
    p.add_argument(
        "--max-epochs",
        type=int,
        default=None,
        help="a history is scored by LIM over its first E epochs only",
    )
    p.add_argument(
        "--metric",
        choices=["accuracy", "reward"],
        default="accuracy",
        help="per-epoch value when a history is scored (default accuracy)",
    )


def read_scores(path: str, args: argparse.Namespace) -> tuple[dict[str, float], str]:
    """{id: score} of a scores file or of a history scored by LIM, and its description."""
    from limr.cli.score import open_source

    src = open_source(path, args, allow_scores=True)
    if src.record is None:
        return dict(src.scores), src.description
    from limr.history import lim_scores

    field = "n_correct" if args.metric == "accuracy" else "reward_sum"
    ids, scores, info = lim_scores(src.numpy_history(("n", field)), args.metric)
    values = {pid: float(s) for pid, s in zip(ids, scores.tolist()) if not math.isnan(s)}
    return values, f"{src.description} (LIM over {info.get('epochs', '?')} epochs)"


def _fmt(x: float) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.4f}"


def main(args: argparse.Namespace) -> int:
    from limr.compare import compare_scores, scatter_plot

    if args.top_k is not None and any(k < 1 for k in args.top_k):
        raise UsageError(f"--top-k must be at least 1, got {min(args.top_k)}")
    a, desc_a = read_scores(args.a, args)
    b, desc_b = read_scores(args.b, args)
    agreement = compare_scores(a, b, args.top_k)
    if agreement.n_common == 0:
        raise UsageError(f"{args.a} and {args.b} score no prompt in common")
    print(f"limr compare-scores: A = {desc_a}: {len(a)} scored prompts")
    print(f"limr compare-scores: B = {desc_b}: {len(b)} scored prompts")
    print(
        f"common prompts: {agreement.n_common} (only in A: {agreement.only_a}, "
        f"only in B: {agreement.only_b})"
    )
    print(f"Spearman rho:  {_fmt(agreement.spearman)}")
    print(f"Kendall tau-b: {_fmt(agreement.kendall)}")
    print(f"{'top-k':>8} {'shared':>8} {'overlap':>8} {'jaccard':>8}")
    for k, row in agreement.top_k.items():
        print(f"{k:>8} {row['shared']:>8} {row['overlap']:>8.4f} {row['jaccard']:>8.4f}")
    if agreement.nonfinite:
        print(f"note: {agreement.nonfinite} common prompts have a non-finite score (ranked)")
    result: dict[str, Any] = {"a": desc_a, "b": desc_b, **agreement.as_dict()}
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {args.json}")
    if args.plot:
        scatter_plot(agreement, args.plot, Path(args.a).name, Path(args.b).name)
        print(f"wrote {args.plot}")
    return 0
