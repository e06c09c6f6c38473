"""The cheap-LIM study (issue 11): selections of the cheap estimators, their agreement with
full LIM, and the report's "Cheap LIM" table.

Arms (``run.arms``), each trained like LIM on its own selection:

- ``lim_prefix``: LIM over the first quarter of the FULL run's whole epochs
  (:class:`limr.selectors.cheap.LIMPrefix`, ``fraction=0.25``);
- ``lim_subsample``: LIM over a random quarter of the pool, predicted for the rest from the
  base pass rate (:class:`limr.selectors.cheap.LIMSubsample`);
- ``lim_probe``: LIM over an offline pass-ratio@k curve (:mod:`limr.probe`) of the base and the
  FULL run's checkpoints of its first quarter (``trainer.keep_checkpoints`` must keep them).

Each uses LIM's cut (``selector.threshold`` / ``selector.size``, default theta 0.6). Its cost is
the rollouts it needed over the FULL run's: a prefix's epochs, a subsample's prompts, a probe's
samples plus the FULL steps up to its last checkpoint.

Pure functions of the run folder: :mod:`limr.pipeline` and :mod:`limr.report` call them.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import numpy as np

CHEAP_ARMS = ("lim_prefix", "lim_subsample", "lim_probe")
CHEAP_LABELS = {
    "lim_prefix": "LIM-prefix",
    "lim_subsample": "LIM-subsample",
    "lim_probe": "LIM-probe",
}
PREFIX_FRACTION = 0.25
"""The share of the FULL run a cheap arm may use (the issue's goal: at most 25%)."""
GOALS = {"cost": 0.25, "spearman": 0.8, "jaccard": 0.7}


def cheap_selection(arm: str, history: Any, cfg: Any, seed: int) -> Any:
    """The :class:`limr.types.Selection` of ``lim_prefix`` or ``lim_subsample`` on the FULL
    run's history, with LIM's cut."""
    import limr.selectors  # noqa: F401
    from limr.registry import SELECTORS

    sc = cfg.selector
    kwargs: dict[str, Any] = {"fraction": PREFIX_FRACTION}
    return SELECTORS.build(
        arm, threshold=sc.threshold, size=sc.size, metric=sc.metric, seed=seed, **kwargs
    ).select(history)


_STEP = re.compile(r"step-(\d+)\.ckpt$")


def probe_checkpoints(full_dir: Path, max_step: int) -> list[tuple[int, Path]]:
    """(step, path) of the FULL run's checkpoints at or before ``max_step``, oldest first."""
    found = []
    for p in sorted((Path(full_dir) / "checkpoints").glob("step-*.ckpt")):
        m = _STEP.search(p.name)
        if m and int(m.group(1)) <= max_step:
            found.append((int(m.group(1)), p))
    return sorted(found)


def probe_selection(
    cfg: Any, full_dir: Path, out_dir: Path, base_path: str, seed: int, full_steps: int
) -> tuple[Any, dict[str, Any]]:
    """Run (or resume) the probe of the base and FULL's checkpoints of its first
    :data:`PREFIX_FRACTION` of steps, then LIM over its curve. Returns (Selection, cost info)."""
    import copy

    import limr.selectors  # noqa: F401
    from limr.history import RewardHistory
    from limr.probe import probe
    from limr.registry import SELECTORS

    max_step = int(full_steps * PREFIX_FRACTION)
    ckpts = probe_checkpoints(full_dir, max_step)
    pcfg = copy.deepcopy(cfg)
    pcfg.run.seed = seed
    specs = [base_path, *[str(p) for _, p in ckpts]]
    manifest = probe(
        specs, pcfg, out_dir, samples=cfg.sampler.n_samples, progress=False, log=lambda _: None
    )
    full_rollouts = int(RewardHistory.load(Path(full_dir) / "history").n.sum())
    last_step = ckpts[-1][0] if ckpts else 0
    # FULL's steps are all the same size (rollout_batch_size x n_samples)
    trained = full_rollouts * last_step / full_steps if full_steps else 0.0
    used = trained + sum(manifest["rollouts"])
    sc = cfg.selector
    h = RewardHistory.load(Path(out_dir) / "history")
    sel = SELECTORS.build(
        "lim", threshold=sc.threshold, size=sc.size, metric=sc.metric, seed=seed
    ).select(h)
    cost = {
        "probe_checkpoints": specs,
        "probe_rollouts": sum(manifest["rollouts"]),
        "full_steps_used": last_step,
        "rollouts_used": used,
        "rollouts_total": full_rollouts,
        "cost_fraction": used / full_rollouts if full_rollouts else math.nan,
    }
    return sel, cost


def read_scores_file(path: str | Path) -> tuple[dict[str, float], set[str]]:
    """({id: score}, kept ids) of a pipeline ``<arm>-s<seed>.scores.jsonl``."""
    scores: dict[str, float] = {}
    kept: set[str] = set()
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        r = json.loads(line)
        s = r.get("score")
        if s is None:
            s = r.get("nonfinite")
        if s is None:
            continue
        value = float(s)
        if not math.isnan(value):
            scores[str(r["id"])] = value
        if r.get("kept"):
            kept.add(str(r["id"]))
    return scores, kept


def agreement(cheap: dict, lim: dict) -> dict[str, Any]:
    """How a cheap arm's selection entry agrees with LIM's (entries of
    ``selections-s<seed>.json``: ``scores`` path, ``info`` with the cost)."""
    from limr.compare import compare_scores, jaccard

    a, kept_a = read_scores_file(lim["scores"])
    b, kept_b = read_scores_file(cheap["scores"])
    r = compare_scores(a, b, [max(1, len(kept_a))])
    info = cheap.get("info", {})
    return {
        "cost_fraction": info.get("cost_fraction"),
        "spearman": r.spearman,
        "kendall": r.kendall,
        "n_common": r.n_common,
        "jaccard": jaccard(kept_a, kept_b),
        "top_overlap": next(iter(r.top_k.values()))["overlap"] if r.top_k else math.nan,
        "n_kept": len(kept_b),
        "lim_kept": len(kept_a),
    }


def _mean(values: list[float | None]) -> float:
    vals = [v for v in values if v is not None and not math.isnan(v)]
    return float(np.mean(vals)) if vals else math.nan


def _pct(x: float) -> str:
    return "-" if math.isnan(x) else f"{100 * x:.0f}%"


def _num(x: float) -> str:
    return "-" if math.isnan(x) else f"{x:.2f}"


def cheap_section(
    root: Path,
    results: dict,
    selections: dict,
    arms: list[str],
    seeds: list[int],
    labels: dict[str, str],
) -> list[str]:
    """The markdown lines of the "Cheap LIM" section (empty when no cheap arm ran)."""
    from limr.report import BOOTSTRAP_SEED, CONFIDENCE, N_BOOT, paired_accuracies
    from limr.stats import paired_bootstrap

    cheap = [a for a in arms if a in CHEAP_ARMS]
    if not cheap:
        return []
    bench = results["benchmarks"][0]
    lines = [
        f"| arm | rollouts (of FULL's) | Spearman vs LIM | overlap (Jaccard) vs LIM | "
        f"top-N overlap | {bench} | - LIM ({100 * CONFIDENCE:.0f}% CI) | "
        f"- RAND ({100 * CONFIDENCE:.0f}% CI) | goals met |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    best: tuple[float, str] | None = None
    cache: dict = {}
    for arm in cheap:
        rows = [
            agreement(selections[str(s)][arm], selections[str(s)]["lim"])
            for s in seeds
            if arm in selections.get(str(s), {})
        ]
        cost = _mean([r["cost_fraction"] for r in rows])
        rho = _mean([r["spearman"] for r in rows])
        jac = _mean([r["jaccard"] for r in rows])
        top = _mean([r["top_overlap"] for r in rows])
        per_seed = results["arms"].get(arm) or {}
        acc = _mean([v.get(bench, {}).get("accuracy") for v in per_seed.values()])
        diffs = []
        within_lim = False
        for other in ("lim", "rand"):
            if other not in arms:
                diffs.append("-")
                continue
            used, xa, xb = paired_accuracies(root, arm, other, seeds, bench, cache)
            if not used or xa.shape[1] == 0:
                diffs.append("-")
                continue
            r = paired_bootstrap(xa, xb, n_boot=N_BOOT, seed=BOOTSTRAP_SEED, confidence=CONFIDENCE)
            diffs.append(f"{100 * r.mean:+.1f} [{100 * r.low:+.1f}, {100 * r.high:+.1f}]")
            if other == "lim":
                within_lim = r.low <= 0.0 <= r.high
        met = [
            not math.isnan(cost) and cost <= GOALS["cost"],
            not math.isnan(rho) and rho >= GOALS["spearman"],
            not math.isnan(jac) and jac >= GOALS["jaccard"],
            within_lim,
        ]
        # closeness: the worst of the three agreement goals, as a ratio to its target
        ratios = [
            GOALS["cost"] / cost if cost and not math.isnan(cost) else 0.0,
            rho / GOALS["spearman"] if not math.isnan(rho) else 0.0,
            jac / GOALS["jaccard"] if not math.isnan(jac) else 0.0,
        ]
        score = min(ratios)
        if best is None or score > best[0]:
            best = (score, arm)
        lines.append(
            f"| {labels.get(arm, CHEAP_LABELS.get(arm, arm))} | {_pct(cost)} | {_num(rho)} | "
            f"{_num(jac)} | {_num(top)} | {'-' if math.isnan(acc) else f'{100 * acc:.1f}'} | "
            f"{diffs[0]} | "
            f"{diffs[1]} | {sum(met)} of 4 |"
        )
    lines += [
        "",
        "Rollouts: what the estimator needed, as a share of the FULL run's rollouts (mean over "
        "seeds). Spearman: rank correlation of its scores with full LIM's over the prompts both "
        "scored; overlap: Jaccard index of its selected set and LIM's (both with LIM's cut; a "
        "prefix's flatter average curve lets theta 0.6 keep more prompts than LIM does); top-N "
        "overlap: the share of LIM's N kept prompts among the estimator's N best scores. "
        "Differences in points with the paired bootstrap CI of the Comparisons section. "
        "LIM-subsample is simulated: its curves are the FULL run's own for the sampled prompts "
        "(a policy trained on the whole pool), not a run on that fraction; its share is what such "
        "a run would cost. Goals "
        f"(issue 11): rollouts <= {100 * GOALS['cost']:.0f}%, Spearman >= {GOALS['spearman']}, "
        f"overlap >= {GOALS['jaccard']}, and 0 inside the CI of the difference to LIM.",
    ]
    if best is not None:
        lines += [
            "",
            f"Closest to the goals: {labels.get(best[1], CHEAP_LABELS.get(best[1], best[1]))} "
            f"(its weakest agreement goal at {100 * min(best[0], 9.99):.0f}% of target).",
        ]
    return lines + [""]
