"""``limr select LOGS_OR_SCORES --selector NAME (--threshold T | --size N) --out SUBSET.jsonl``.

Keeps the prompts to train on. The input is a reward history or rollout logs (scored here by the
selector), or a scores JSONL (``{"id", "score"}`` lines from ``limr score``, or the released LIMR
file with ``lim_score``, null = unscored; ``shipped:limr_reference`` names the shipped copy; a
null score with ``"nonfinite": "-inf"`` is limr's -inf, see :mod:`limr.cli.score`). A history is
scored over its whole epochs only (a partly recorded last epoch is left out; one line says how
many epochs and prompts were left out), and ``--selector rand`` draws from the prompts LIM scores
(from a scores file: the ids with a score), or from every prompt with ``--selector-arg pool=all``.
Prints how many prompts were kept and how many each nearby threshold would keep. With ``--data``
the output holds the kept training records (in the data file's order), otherwise ``{"id",
"score"}`` lines; either works as ``data.subset``. ``--plot DIR`` draws the score histogram with
the threshold, the kept prompts' curves against the average curve, and kept count vs threshold.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any

import torch

from limr.cli import UsageError
from limr.cli.score import (
    Source,
    add_source_arguments,
    build_selector,
    cost_line,
    epochs_line,
    open_source,
    parse_selector_args,
    write_jsonl,
)
from limr.prompts import DataError, iter_records, shipped_path
from limr.selectors.curves import score_record


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "source",
        metavar="LOGS_OR_SCORES",
        help="run/history folder, step logs folder, history export, scores JSONL, or "
        "shipped:limr_reference",
    )
    p.add_argument("--selector", default="lim", help="registered offline selector (default lim)")
    cut = p.add_mutually_exclusive_group()
    cut.add_argument(
        "--threshold", type=float, help="keep score >= T (default: the selector's, LIM 0.6)"
    )
    cut.add_argument("--size", type=int, help="keep the top N (rand: N random prompts)")
    cut.add_argument(
        "--size-of",
        metavar="SUBSET.jsonl",
        help="keep as many as this other selection holds (e.g. RAND the size of LIM)",
    )
    p.add_argument("--strict", action="store_true", help="keep score > T instead of >=")
    p.add_argument("--metric", choices=["accuracy", "reward"], default="accuracy")
    p.add_argument("--seed", type=int, default=42, help="seed (rand)")
    p.add_argument(
        "--selector-arg", action="append", default=[], metavar="KEY=VALUE", help="repeatable"
    )
    add_source_arguments(p)
    p.add_argument(
        "--data",
        help="training data (.jsonl/.json/.parquet or shipped:NAME): write its kept records",
    )
    p.add_argument("--id-field", default="id", help="id field of --data records")
    p.add_argument(
        "--problem-field",
        default="problem",
        help="problem field of --data, matched against prompt texts of rollout logs",
    )
    p.add_argument("--out", required=True, help="SUBSET.jsonl to write")
    p.add_argument("--plot", metavar="DIR", help="write PNG plots here")


def main(args: argparse.Namespace) -> int:
    src = open_source(args.source, args, allow_scores=True)
    if "warning" in src.info:
        print(f"limr select: warning: {src.info['warning']}")
    size = args.size
    if args.size_of:
        size = sum(1 for _ in iter_records(args.size_of))
    if size is not None and size < 0:
        raise UsageError("--size must be >= 0")

    if src.history is not None:
        result = _select_history(src, args, size)
    else:
        result = _select_scores(src, args, size)
    kept_ids: list[str] = result["kept"]
    _report(args, src, result)

    if args.data:
        n = _write_records(args, src, kept_ids)
        print(f"wrote {n} training records to {args.out}")
    else:
        scores = result["scores"]
        n = write_jsonl(
            args.out,
            (
                score_record(src.id_key, pid, scores[pid]) if pid in scores else {src.id_key: pid}
                for pid in kept_ids
            ),
        )
        print(f"wrote {n} ids to {args.out}")
    if args.plot:
        for path in _plots(Path(args.plot), args, src, result):
            print(f"plot: {path}")
    return 0


# ---------------------------------------------------------------------------------------------


def _select_history(src: Source, args: argparse.Namespace, size: int | None) -> dict[str, Any]:
    import limr.selectors  # noqa: F401
    from limr.registry import SELECTORS

    cls = SELECTORS.get(args.selector)
    if getattr(cls, "kind", "offline") != "offline":
        raise UsageError(
            f"{args.selector!r} is {_article(cls.kind)} {cls.kind} selector, used inside training "
            "(offline selectors: lim, linear, rand, variance, learnability, pearson)"
        )
    kwargs = parse_selector_args(args.selector_arg)
    if args.strict:
        kwargs["strict"] = True
    selector = build_selector(
        args.selector,
        threshold=args.threshold,
        size=size,
        metric=args.metric,
        seed=args.seed,
        **kwargs,
    )
    try:
        sel = selector.select(src.history)
    except ValueError as err:
        raise UsageError(f"selector {args.selector!r}: {err}") from None
    scores = dict(zip(sel.ids, sel.scores.tolist()))
    return {
        "kept": sel.kept_ids,
        "scores": scores,
        "threshold": sel.threshold,
        "size": size,
        "strict": args.strict,
        "info": sel.info,
        "n_source": len(src.history.ids),
        "random": args.selector == "rand",
    }


def _select_scores(src: Source, args: argparse.Namespace, size: int | None) -> dict[str, Any]:
    import limr.selectors  # noqa: F401
    from limr.registry import SELECTORS
    from limr.selectors.curves import keep_mask

    if args.selector == "rand":
        if size is None:
            raise UsageError("rand needs --size N or --size-of SUBSET.jsonl")
        kwargs = parse_selector_args(args.selector_arg)
        chooser = build_selector("rand", size=size, seed=args.seed, **kwargs)
        # as from a history: the scored prompts (pool=scored), or every id (pool=all)
        pool = src.ids if chooser.pool == "all" else [i for i in src.ids if i in src.scores]
        try:
            kept = chooser.choose(pool)
        except ValueError as err:
            raise UsageError(str(err)) from None
        what = "every id" if chooser.pool == "all" else "the scored ids"
        info = {
            "selector": "rand",
            "seed": args.seed,
            "pool": f"{what} of the scores file",
            "unscored": len(src.ids) - len(pool),
            "n_prompts": len(src.ids),
        }
        return {
            "kept": kept,
            "scores": {},
            "threshold": None,
            "size": size,
            "strict": False,
            "info": info,
            "n_source": len(src.ids),
            "n_pool": len(pool),
            "random": True,
        }
    cls = SELECTORS.get(args.selector)
    threshold = args.threshold
    if threshold is None and size is None:
        threshold = getattr(cls, "default_threshold", None)
        if threshold is None:
            raise UsageError(
                f"{args.selector} has no default threshold: give --threshold or --size"
            )
    ids = list(src.scores)
    values = torch.tensor([src.scores[i] for i in ids], dtype=torch.float64)
    keep = keep_mask(values, threshold, size, args.strict)
    kept = set(i for i, k in zip(ids, keep.tolist()) if k)
    info = {
        "selector": f"{args.selector} (scores read from the file)",
        "metric": "as computed by the file's producer",
    }
    return {
        "kept": [i for i in src.ids if i in kept],
        "scores": src.scores,
        "threshold": None if size is not None else threshold,
        "size": size,
        "strict": args.strict,
        "info": info,
        "n_source": len(src.ids),
        "random": False,
    }


def nearby_counts(
    scores: torch.Tensor, center: float, strict: bool = False, step: float = 0.05, k: int = 4
) -> list[tuple[float, int]]:
    """How many scores pass each threshold center - k*step ... center + k*step."""
    ordered = torch.sort(scores).values
    out = []
    for j in range(-k, k + 1):
        t = round(center + j * step, 10)
        # scores >= t (or > t): count from the first index at or after t
        first = torch.searchsorted(ordered, torch.tensor([t], dtype=ordered.dtype), right=strict)
        out.append((t, int(len(ordered) - first.item())))
    return out


def _report(args: argparse.Namespace, src: Source, r: dict[str, Any]) -> None:
    info = r["info"]
    n_scored = len(r["scores"]) if r["scores"] else r.get("n_pool", r["n_source"])
    cut = (
        f"random {r['size']} (seed {args.seed})"
        if r["random"]
        else f"top {r['size']}"
        if r["size"] is not None
        else f"score {'>' if r['strict'] else '>='} {r['threshold']:g}"
    )
    print(
        f"limr select: kept {len(r['kept'])} of {n_scored} scored prompts ({cut}); "
        f"selector {info.get('selector')}, metric {info.get('metric') or '-'}; "
        f"source: {src.description} ({r['n_source']} prompts, {_unscored(r['n_source'], n_scored)})"
    )
    for line in (epochs_line(info), cost_line(info)):
        if line is not None:
            print(f"  {line}")
    if "never_solved_kept" in info:
        print(
            f"  never-solved prompts kept: {info['never_solved_kept']} "
            "(no correct rollout in any epoch)"
        )
    if r["random"] or not r["scores"]:
        return
    values = torch.tensor(list(r["scores"].values()), dtype=torch.float64)
    if r["threshold"] is not None:
        center = r["threshold"]
    else:
        kept_scores = [r["scores"][i] for i in r["kept"] if i in r["scores"]]
        center = min(kept_scores) if kept_scores else float(values.max())
        print(f"  the top {r['size']} are the prompts scoring >= {center:.4g}")
    comparison = ">" if r["strict"] else ">="
    print(f"  kept at nearby thresholds (score {comparison} T):")
    print("    " + "  ".join(f"{t:>6.2f}" for t, _ in nearby_counts(values, center, r["strict"])))
    print("    " + "  ".join(f"{c:>6d}" for _, c in nearby_counts(values, center, r["strict"])))


def _prompt_key(text: str) -> str:
    """Normalise a prompt for matching: the user turn of a chat-formatted prompt, stripped."""
    start = text.find("<|im_start|>user\n")
    if start >= 0:
        body = text[start + len("<|im_start|>user\n") :]
        end = body.find("<|im_end|>")
        text = body if end < 0 else body[:end]
    return text.strip()


def _write_records(args: argparse.Namespace, src: Source, kept_ids: list[str]) -> int:
    spec = args.data
    path = shipped_path(spec[8:]) if spec.startswith("shipped:") else Path(spec)
    wanted = set(kept_ids)
    by_text = {_prompt_key(k): k for k in kept_ids} if src.id_key == "prompt" else {}
    out: list[dict[str, Any]] = []
    found: set[str] = set()
    problems = []
    for where, rec in iter_records(path):
        if isinstance(rec, DataError) or not isinstance(rec, dict):
            problems.append(f"{where}: not a JSON object")
            continue
        rid = rec.get(args.id_field)
        key = None
        if rid is not None and str(rid) in wanted:
            key = str(rid)
        elif by_text:
            for field in (args.problem_field, "prompt"):
                text = rec.get(field)
                if isinstance(text, str) and _prompt_key(text) in by_text:
                    key = by_text[_prompt_key(text)]
                    break
        if key is not None and key not in found:
            found.add(key)
            out.append(rec)
    if problems:
        raise DataError(problems[:20])
    missing = len(wanted) - len(found)
    if kept_ids and not found:
        raise DataError(
            [
                f"{spec}: none of the {len(kept_ids)} kept prompts is in this data file "
                f"(matched by {args.id_field!r}"
                + (f" and by {args.problem_field!r} text)" if by_text else ")")
            ]
        )
    if missing:
        print(f"limr select: warning: {missing} kept prompts are not in {spec}; left out")
    return write_jsonl(args.out, out)


# ---------------------------------------------------------------------------------------------
# Plots (matplotlib's object API with the Agg canvas: no global pyplot state, no display)


def _figure(width: float = 7.0, height: float = 4.5):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    return fig


def _plots(folder: Path, args: argparse.Namespace, src: Source, r: dict[str, Any]) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    if not r["scores"] or r["random"]:
        print("limr select: no scores to plot for a random selection")
        return written
    name = args.selector
    values = torch.tensor(list(r["scores"].values()), dtype=torch.float64)
    finite = values[torch.isfinite(values)]
    kept_scores = [r["scores"][i] for i in r["kept"] if i in r["scores"]]
    cut = r["threshold"] if r["threshold"] is not None else min(kept_scores, default=math.nan)

    fig = _figure()
    ax = fig.add_subplot()
    ax.hist(finite.numpy(), bins=60, color="tab:blue", alpha=0.8)
    if not math.isnan(cut):
        ax.axvline(cut, color="tab:red", lw=1.5, label=f"threshold {cut:.3g}")
        ax.legend()
    ax.set_xlabel(f"{name} score")
    ax.set_ylabel("prompts")
    ax.set_title(f"{name} scores: {len(r['kept'])} of {len(values)} kept")
    fig.tight_layout()
    written.append(folder / f"{name}_score_hist.png")
    fig.savefig(written[-1], dpi=100)

    fig = _figure()
    ax = fig.add_subplot()
    ordered = torch.sort(finite).values
    lo, hi = float(ordered[0]), float(ordered[-1])
    grid = torch.linspace(max(lo, -1.0) if hi > -1.0 else lo, hi, 200, dtype=torch.float64)
    counts = len(ordered) - torch.searchsorted(ordered, grid, right=r["strict"])
    ax.plot(grid.numpy(), counts.numpy(), color="tab:blue")
    if not math.isnan(cut):
        ax.axvline(cut, color="tab:red", lw=1.0, label=f"threshold {cut:.3g}: {len(r['kept'])}")
        ax.legend()
    ax.set_xlabel("threshold T")
    ax.set_ylabel(f"prompts with score {'>' if r['strict'] else '>='} T")
    ax.set_title("kept count vs threshold")
    fig.tight_layout()
    written.append(folder / f"{name}_kept_vs_threshold.png")
    fig.savefig(written[-1], dpi=100)

    if src.history is not None:
        from limr.selectors.curves import epoch_values, fill_backward_once

        h = src.history
        scored_epochs = r["info"].get("epochs")
        if isinstance(scored_epochs, int) and 0 < scored_epochs < h.n.shape[1]:
            h = h.head(scored_epochs)  # the whole epochs the selector scored
        values_ik, present, _ = fill_backward_once(*epoch_values(h, args.metric))
        complete = present.all(dim=1)
        avg = values_ik[complete].mean(dim=0) if bool(complete.any()) else None
        index = {pid: j for j, pid in enumerate(h.ids)}
        rows = [index[i] for i in r["kept"] if i in index]
        gen = torch.Generator().manual_seed(0)
        if len(rows) > 200:  # a readable sample
            pick = torch.randperm(len(rows), generator=gen)[:200].tolist()
            rows = [rows[j] for j in sorted(pick)]
        fig = _figure()
        ax = fig.add_subplot()
        epochs = list(range(h.n.shape[1]))
        for j in rows:
            curve = torch.where(present[j], values_ik[j], torch.nan)
            ax.plot(epochs, curve.numpy(), color="tab:blue", alpha=0.15, lw=0.8)
        if avg is not None:
            ax.plot(epochs, avg.numpy(), color="black", lw=2.5, label="average curve")
            ax.legend()
        ax.set_xlabel("epoch")
        ax.set_ylabel(args.metric)
        ax.set_title(f"kept prompts' curves ({len(rows)} of {len(r['kept'])} drawn)")
        fig.tight_layout()
        written.append(folder / f"{name}_kept_curves.png")
        fig.savefig(written[-1], dpi=100)
    return written


def _article(word: str) -> str:
    return "an" if word[:1] in "aeiou" else "a"


def _unscored(n_source: int, n_scored: int) -> str:
    """How the scored prompts relate to the source's: some unscored, or more scored (a selector
    that predicts prompts the history does not hold, e.g. lim_subsample with a base history)."""
    if n_scored > n_source:
        return f"{n_scored - n_source} more predicted from outside it"
    return f"{n_source - n_scored} unscored"
