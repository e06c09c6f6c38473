"""The cheap-LIM study (issue 11): selections of the cheap estimators, their agreement with
full LIM, and the report's "Cheap LIM" table.

Arms (``run.arms``), each trained like LIM on its own selection; f = ``run.cheap_fraction``
(default 0.25), the share of the FULL run each may use:

- ``lim_prefix``: LIM over the first ceil(f x E) of the FULL run's E whole epochs
  (:class:`limr.selectors.cheap.LIMPrefix`);
- ``lim_subsample``: a real run on a random f of the pool for f of FULL's steps (the job
  ``subsample-s<seed>``, folder ``arms/subsample-s<seed>``), scored by LIM, extended to the rest of
  the pool by a least-squares predictor from the base pass rate (the probe's base epoch) and the
  level (:func:`limr.selectors.cheap.extend_by_predictor`);
- ``lim_probe``: LIM over an offline pass-ratio@k curve (:mod:`limr.probe`, the job
  ``probe-s<seed>``, folder ``probe/s<seed>``) of the base and the FULL run's checkpoints up to
  step f x FULL's steps (``trainer.keep_checkpoints`` must keep them).

The cut (``run.cheap_cut``): ``lim_size``, as many prompts as the LIM arm kept (default), or
``threshold``, LIM's own. ``run.cheap_kwargs`` adds keyword arguments to an arm's selector. Each
arm's cost is the rollouts it needed over the FULL run's: a prefix's epochs; a subsample's run
plus the base probe of the prompts it predicts; a probe's samples plus the FULL steps up to its
last checkpoint.

Pure functions of the run folder and the config: :mod:`limr.pipeline` and :mod:`limr.report`
call them.
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
GOALS = {"cost": 0.25, "spearman": 0.8, "jaccard": 0.7}


def selector_kwargs(cfg: Any, arm: str, lim_size: int) -> dict[str, Any]:
    """The cut and extra keyword arguments of a cheap arm's selector (``run.cheap_cut``,
    ``run.cheap_kwargs``)."""
    sc = cfg.selector
    if cfg.run.cheap_cut == "lim_size":
        cut: dict[str, Any] = {"threshold": None, "size": max(1, int(lim_size))}
    else:
        cut = {"threshold": sc.threshold, "size": sc.size}
    extra = dict(cfg.run.cheap_kwargs.get(arm, {}) or {})
    return {**cut, "metric": sc.metric, **extra}


def cheap_selection(arm: str, history: Any, cfg: Any, seed: int, lim_size: int) -> Any:
    """The :class:`limr.types.Selection` of ``lim_prefix`` on the FULL run's history."""
    import limr.selectors  # noqa: F401
    from limr.registry import SELECTORS

    kwargs = selector_kwargs(cfg, arm, lim_size)
    if arm == "lim_prefix" and "epochs" not in kwargs:
        kwargs.setdefault("fraction", cfg.run.cheap_fraction)
    return SELECTORS.build(arm, seed=seed, **kwargs).select(history)


def _pool(cfg: Any) -> list[Any]:
    from limr.prompts import load_prompts

    d = cfg.data
    return load_prompts(
        d.train, split=d.split, id_field=d.id_field, problem_field=d.problem_field,
        answer_field=d.answer_field, subset=d.subset, max_prompts=d.max_prompts,
        levels=d.levels,
    )  # fmt: skip


def subsample_pool(cfg: Any, seed: int) -> list[str]:
    """The ids of a seeded random ``run.cheap_fraction`` of FULL's pool (at least 2), in the
    dataset's order: what the ``subsample`` run trains on."""
    import random

    ids = [p.id for p in _pool(cfg)]
    m = max(2, min(len(ids), round(cfg.run.cheap_fraction * len(ids))))
    chosen = set(random.Random(seed).sample(range(len(ids)), m))
    return [pid for j, pid in enumerate(ids) if j in chosen]


def subsample_steps(cfg: Any) -> int:
    """RL steps of the subsample run: ``run.cheap_fraction`` of FULL's ``trainer.max_steps``
    (the same number of epochs over a pool that much smaller)."""
    return max(1, round(cfg.run.cheap_fraction * cfg.trainer.max_steps))


def subsample_selection(
    cfg: Any, full_dir: Path, sub_dir: Path, probe_dir: Path, seed: int, lim_size: int
) -> tuple[Any, dict[str, Any]]:
    """LIM of the subsample run, extended to FULL's pool from the base probe's pass rates (and
    the prompts' levels when every one has one). Returns (Selection, cost info)."""
    import limr.selectors  # noqa: F401
    from limr.history import RewardHistory
    from limr.prompts import level_of
    from limr.registry import SELECTORS

    levels = {p.id: level_of(p) for p in _pool(cfg)}
    features = {"level": levels} if all(v is not None for v in levels.values()) else None
    kwargs = selector_kwargs(cfg, "lim_subsample", lim_size)
    sel = SELECTORS.build(
        "lim_subsample", seed=seed, base_history=str(Path(probe_dir) / "history"),
        features=features, **kwargs,
    ).select(RewardHistory.load(Path(sub_dir) / "history"))  # fmt: skip
    full_rollouts = int(RewardHistory.load(Path(full_dir) / "history").n.sum())
    used = int(sel.info["rollouts_used"])
    cost = {
        "rollouts_used": used,
        "rollouts_total": full_rollouts,
        "cost_fraction": used / full_rollouts if full_rollouts else math.nan,
        "subsample_prompts": len(RewardHistory.load(Path(sub_dir) / "history").ids),
    }
    return sel, cost


_STEP = re.compile(r"step-(\d+)\.ckpt$")


def probe_checkpoints(full_dir: Path, max_step: int) -> list[tuple[int, Path]]:
    """(step, path) of the FULL run's checkpoints at or before ``max_step``, oldest first."""
    found = []
    for p in sorted((Path(full_dir) / "checkpoints").glob("step-*.ckpt")):
        m = _STEP.search(p.name)
        if m and int(m.group(1)) <= max_step:
            found.append((int(m.group(1)), p))
    return sorted(found)


def probe_specs(
    cfg: Any, full_dir: Path, base_path: str, full_steps: int | None
) -> tuple[list[str], int]:
    """(models to probe, FULL's last step among them): the base, then FULL's checkpoints up to
    step ``run.cheap_fraction`` x ``full_steps`` (None: the base only)."""
    if full_steps is None:
        return [base_path], 0
    ckpts = probe_checkpoints(full_dir, int(full_steps * cfg.run.cheap_fraction))
    return [base_path, *[str(p) for _, p in ckpts]], ckpts[-1][0] if ckpts else 0


PROBE_DONE = "done.json"


def run_probe(
    cfg: Any, out_dir: Path, specs: list[str], seed: int, last_step: int
) -> dict[str, Any]:
    """Run (or resume) the probe of ``specs`` into ``out_dir``; write ``done.json`` (the specs,
    their rollouts, FULL's last step among them) and return it."""
    import copy

    from limr.probe import probe

    pcfg = copy.deepcopy(cfg)
    pcfg.run.seed = seed
    manifest = probe(
        specs, pcfg, out_dir, samples=cfg.sampler.n_samples, progress=False, log=lambda _: None
    )
    done = {"checkpoints": specs, "rollouts": manifest["rollouts"], "full_steps_used": last_step}
    Path(out_dir, PROBE_DONE).write_text(json.dumps(done, indent=2) + "\n", encoding="utf-8")
    return done


def probe_selection(
    cfg: Any, full_dir: Path, probe_dir: Path, seed: int, full_steps: int, lim_size: int
) -> tuple[Any, dict[str, Any]]:
    """LIM over the probe's curve (written by :func:`run_probe`). Returns (Selection, cost
    info): the probe's samples plus FULL's rollouts up to its last checkpoint."""
    import limr.selectors  # noqa: F401
    from limr.history import RewardHistory
    from limr.registry import SELECTORS

    done = json.loads(Path(probe_dir, PROBE_DONE).read_text(encoding="utf-8"))
    full_rollouts = int(RewardHistory.load(Path(full_dir) / "history").n.sum())
    last_step = int(done["full_steps_used"])
    # FULL's steps are all the same size (rollout_batch_size x n_samples)
    trained = full_rollouts * last_step / full_steps if full_steps else 0.0
    used = trained + sum(done["rollouts"])
    h = RewardHistory.load(Path(probe_dir) / "history")
    sel = SELECTORS.build("lim", seed=seed, **selector_kwargs(cfg, "lim_probe", lim_size)).select(h)
    cost = {
        "probe_checkpoints": done["checkpoints"],
        "probe_rollouts": sum(done["rollouts"]),
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


def prefix_agreement(full_history: Any, lim: dict) -> list[dict[str, Any]]:
    """How LIM from the first k epochs of FULL agrees with full LIM, for every k: rows of
    ``epochs``, ``cost_fraction``, ``spearman`` and ``jaccard`` (as many prompts kept as LIM).
    What tells whether a longer prefix would have reached the goals, and at what cost."""
    import limr.selectors  # noqa: F401
    from limr.compare import compare_scores, jaccard
    from limr.registry import SELECTORS

    ref, kept = read_scores_file(lim["scores"])
    size = max(1, len(kept))
    rows = []
    for k in range(1, int(full_history.n.shape[1]) + 1):
        sel = SELECTORS.build("lim_prefix", epochs=k, size=size).select(full_history)
        scores = {i: float(v) for i, v in zip(sel.ids, sel.scores.tolist()) if v == v}
        r = compare_scores(ref, scores, [size])
        rows.append({
            "epochs": k,
            "cost_fraction": sel.info["cost_fraction"],
            "spearman": r.spearman,
            "jaccard": jaccard(kept, set(sel.kept_ids)),
        })  # fmt: skip
    return rows


def _prefix_lines(root: Path, selections: dict, seeds: list[int]) -> list[str]:
    """The markdown table of :func:`prefix_agreement`, mean over the seeds."""
    from limr.history import RewardHistory

    per_seed = []
    for s in seeds:
        path = Path(root) / "arms" / f"full-s{s}" / "history"
        if "lim" not in selections.get(str(s), {}) or not path.exists():
            continue
        per_seed.append(prefix_agreement(RewardHistory.load(path), selections[str(s)]["lim"]))
    if not per_seed:
        return []
    n = min(len(r) for r in per_seed)
    lines = [
        "LIM-prefix by its length (LIM from FULL's first k epochs against full LIM, as many "
        "prompts kept as LIM; mean over the seeds):",
        "",
        "| epochs | rollouts (of FULL's) | Spearman vs LIM | overlap (Jaccard) vs LIM |",
        "|---|---|---|---|",
    ]
    for k in range(n):
        rows = [r[k] for r in per_seed]
        lines.append(
            f"| {rows[0]['epochs']} | {_pct(_mean([r['cost_fraction'] for r in rows]))} | "
            f"{_num(_mean([r['spearman'] for r in rows]))} | "
            f"{_num(_mean([r['jaccard'] for r in rows]))} |"
        )
    return [*lines, ""]


def _mean(values: list[float | None]) -> float:
    vals = [v for v in values if v is not None and not math.isnan(v)]
    return float(np.mean(vals)) if vals else math.nan


def _pct(x: float) -> str:
    return "-" if math.isnan(x) else f"{100 * x:.0f}%"


def _count(x: float) -> str:
    return "-" if math.isnan(x) else f"{x:.0f}"


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
        f"| arm | rollouts (of FULL's) | Spearman vs LIM | kept (LIM's) | "
        f"overlap (Jaccard) vs LIM | top-N overlap | {bench} | "
        f"- LIM ({100 * CONFIDENCE:.0f}% CI) | - RAND ({100 * CONFIDENCE:.0f}% CI) | goals met |",
        "|---|---|---|---|---|---|---|---|---|---|",
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
        kept = _mean([r["n_kept"] for r in rows])
        lim_kept = _mean([r["lim_kept"] for r in rows])
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
            f"{_count(kept)} ({_count(lim_kept)}) | {_num(jac)} | {_num(top)} | "
            f"{'-' if math.isnan(acc) else f'{100 * acc:.1f}'} | "
            f"{diffs[0]} | "
            f"{diffs[1]} | {sum(met)} of 4 |"
        )
    lines += [
        "",
        "Rollouts: what the estimator needed, as a share of the FULL run's rollouts (mean over "
        "seeds). Spearman: rank correlation of its scores with full LIM's over the prompts both "
        "scored; kept: the prompts its selection kept (LIM's in brackets; `run.cheap_cut` "
        "lim_size keeps as many as LIM, threshold applies LIM's cut to its scores); overlap: "
        "Jaccard index of its selected set and LIM's; top-N overlap: the share of LIM's N kept "
        "prompts among the estimator's N best scores. "
        "Differences in points with the paired bootstrap CI of the Comparisons section. "
        "LIM-subsample trained its own run on a random share of the pool (that share of FULL's "
        "steps) and predicted the rest from the base probe's pass rate and the level. Goals "
        f"(issue 11): rollouts <= {100 * GOALS['cost']:.0f}%, Spearman >= {GOALS['spearman']}, "
        f"overlap >= {GOALS['jaccard']}, and 0 inside the CI of the difference to LIM.",
    ]
    if best is not None:
        lines += [
            "",
            f"Closest to the goals: {labels.get(best[1], CHEAP_LABELS.get(best[1], best[1]))} "
            f"(its weakest agreement goal at {100 * min(best[0], 9.99):.0f}% of target).",
        ]
    return [*lines, "", *_prefix_lines(root, selections, seeds)]
