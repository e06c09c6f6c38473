"""The report of a ``limr run``: ``report.md`` with the paper-style table and the PNG plots.

Numbers are copied from ``eval.json`` and the run's own files, never tuned: when LIM does not beat
the baselines, the report says so.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path

from limr.config import LimrConfig

LABELS = {
    "base": "base",
    "full": "FULL",
    "lim": "LIM",
    "linear": "LINEAR",
    "rand": "RAND",
    "curriculum": "CURRICULUM",
}


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _read_jsonl(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines() if x.strip()]


def _mean_spread(values: list[float]) -> str:
    values = [v for v in values if v is not None]
    if not values:
        return "-"
    if len(values) == 1:
        return f"{100 * values[0]:.1f}"
    return f"{100 * statistics.mean(values):.1f} ± {100 * statistics.stdev(values):.1f}"


def _smooth(y: list[float], k: int) -> list[float]:
    out, acc = [], 0.0
    for i, v in enumerate(y):
        acc += v
        if i >= k:
            acc -= y[i - k]
        out.append(acc / min(i + 1, k))
    return out


def results_table(
    results: dict, selections: dict, arms: list[str], seeds: list[int], root: Path
) -> tuple[str, dict]:
    """The markdown table (arm, prompts, accuracy per level and overall) and the overall means."""
    benches = results["benchmarks"]
    first = benches[0]
    levels: list[str] = []
    for per_seed in results["arms"].values():
        for summary in per_seed.values():
            levels = sorted({*levels, *(summary.get(first, {}).get("by_level") or {})}, key=str)
    header = ["arm", "prompts"] + [f"{first} L{lv}" for lv in levels] + benches
    if len(benches) > 1:
        header.append("AVG")
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    overall: dict[str, float] = {}
    for arm in ["base", *arms]:
        per_seed = results["arms"].get(arm)
        if not per_seed:
            if arm in ("lim", "linear", "rand"):
                empty = ["-"] * (len(header) - 2)
                lines.append(
                    f"| {LABELS[arm]} | 0 (skipped: nothing selected) | " + " | ".join(empty) + " |"
                )
            continue
        runs = list(per_seed.values())
        row = [LABELS[arm], _prompts_used(arm, selections, seeds, root)]
        for lv in levels:
            row.append(
                _mean_spread(
                    [r[first]["by_level"].get(lv) for r in runs if r.get(first, {}).get("by_level")]
                )
            )
        accs_per_bench = []
        for b in benches:
            accs = [r[b]["accuracy"] for r in runs if b in r]
            accs_per_bench.append(accs)
            row.append(_mean_spread(accs))
        avg_runs = [statistics.mean(x) for x in zip(*accs_per_bench)] if accs_per_bench else []
        if len(benches) > 1:
            row.append(_mean_spread(avg_runs))
        overall[arm] = statistics.mean(avg_runs) if avg_runs else float("nan")
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines), overall


def _prompts_used(arm: str, selections: dict, seeds: list[int], root: Path) -> str:
    if arm == "base":
        return "-"
    if arm in ("lim", "linear", "rand"):
        counts = sorted({selections[str(s)][arm]["n_kept"] for s in seeds})
        return "/".join(f"{c:,}" for c in counts)
    if arm == "full":
        counts = sorted({selections[str(s)]["n_prompts"] for s in seeds})
        return "/".join(f"{c:,}" for c in counts)
    sizes = []
    for s in seeds:
        summary = root / "arms" / f"curriculum-s{s}" / "train_summary.json"
        sched = (
            json.loads(summary.read_text()).get("curriculum_schedule") if summary.exists() else None
        )
        if sched:
            sizes += [e.get("size") for e in sched if e.get("size") is not None]
    return f"dynamic {min(sizes)}-{max(sizes)}" if sizes else "dynamic"


def _cut_text(sel: dict) -> str:
    if sel.get("threshold") is not None:
        return f"theta >= {sel['threshold']}"
    return f"the top {sel['info'].get('size')} by score"


def verdict(overall: dict[str, float], seeds: list[int]) -> str:
    """Plain sentences comparing LIM with RAND, LINEAR and FULL (no spin)."""

    def pts(a: str, b: str) -> str:
        return f"{100 * (overall[a] - overall[b]):+.1f} points"

    out = []
    if "lim" in overall and "rand" in overall:
        d = overall["lim"] - overall["rand"]
        word = "beat" if d > 0 else ("tied" if d == 0 else "did worse than")
        out.append(f"LIM {word} RAND of the same size ({pts('lim', 'rand')}).")
    if "lim" in overall and "linear" in overall:
        out.append(f"LIM vs LINEAR: {pts('lim', 'linear')}.")
    if "lim" in overall and "full" in overall:
        d = overall["lim"] - overall["full"]
        word = "matched or beat" if d >= 0 else "fell short of"
        out.append(f"LIM {word} FULL ({pts('lim', 'full')}).")
    if "curriculum" in overall and "full" in overall:
        out.append(f"CURRICULUM vs FULL: {pts('curriculum', 'full')}.")
    if len(seeds) == 1:
        out.append(
            "One seed only: differences of a few points are within the noise of such small runs "
            "(see EMBEDDED_TASK_FIGURES); use run.seeds=[...] for a spread."
        )
    return " ".join(out)


# ---------------------------------------------------------------------------------------------
# plots


def plot_training_curves(root: Path, arms: list[str], seeds: list[int], out: Path) -> Path:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 4))
    for arm in arms:
        for j, s in enumerate(seeds):
            rows = _read_jsonl(root / "arms" / f"{arm}-s{s}" / "metrics.jsonl")
            if not rows:
                continue
            steps = [r["step"] for r in rows]
            acc = _smooth([r["train/correct_rate"] for r in rows], 10)
            ax.plot(steps, acc, label=LABELS[arm] if j == 0 else None, alpha=1.0 if j == 0 else 0.4)
    ax.set_xlabel("RL step")
    ax.set_ylabel("accuracy of the step's rollouts (10-step mean)")
    ax.set_title("Training accuracy per arm (each arm on its own prompts)")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def plot_heldout_curves(
    root: Path, arms: list[str], seeds: list[int], bench: str, out: Path
) -> Path | None:
    """Held-out accuracy versus RL step per arm (``heldout.jsonl`` of each arm), or None."""
    from limr.pipeline import read_heldout

    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 4))
    drawn = False
    for arm in arms:
        for j, s in enumerate(seeds):
            rows = read_heldout(root / "arms" / f"{arm}-s{s}" / "heldout.jsonl")
            rows = [r for r in rows if bench in r]
            if not rows:
                continue
            drawn = True
            ax.plot(
                [r["step"] for r in rows],
                [100 * r[bench] for r in rows],
                "o-",
                ms=3,
                label=LABELS[arm] if j == 0 else None,
                alpha=1.0 if j == 0 else 0.4,
            )
    if not drawn:
        plt.close(fig)
        return None
    ax.set_xlabel("RL step")
    ax.set_ylabel(f"{bench} accuracy (%)")
    ax.set_title("Held-out accuracy versus step")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def plot_heldout(results: dict, arms: list[str], out: Path) -> Path:
    plt = _plt()
    bench = results["benchmarks"][0]
    names, means, errs = [], [], []
    for arm in ["base", *arms]:
        runs = [r[bench]["accuracy"] for r in results["arms"].get(arm, {}).values() if bench in r]
        if not runs:
            continue
        names.append(LABELS[arm])
        means.append(100 * statistics.mean(runs))
        errs.append(100 * statistics.stdev(runs) if len(runs) > 1 else 0.0)
    fig, ax = plt.subplots(figsize=(7, 3.5))
    ax.bar(names, means, yerr=errs, color="#4c72b0", capsize=4)
    for i, m in enumerate(means):
        ax.text(i, m + 0.5, f"{m:.1f}", ha="center", va="bottom", fontsize=9)
    ax.set_ylabel(f"{bench} accuracy (%)")
    ax.set_title("Held-out accuracy per arm")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def plot_lim_histogram(selection: dict, out: Path) -> Path:
    plt = _plt()
    rows = _read_jsonl(Path(selection["scores"]))
    scores = [r["score"] for r in rows if r["score"] is not None]
    lo = max(min(scores, default=0.0), -3.0)
    fig, ax = plt.subplots(figsize=(7, 3.5))
    ax.hist([max(s, lo) for s in scores], bins=40, color="#55a868")
    if selection.get("threshold") is not None:
        ax.axvline(
            selection["threshold"],
            color="red",
            ls="--",
            label=f"theta = {selection['threshold']} ({selection['n_kept']} kept)",
        )
        ax.legend()
    ax.set_xlabel(f"LIM score (values below {lo:.1f} shown at {lo:.1f})")
    ax.set_ylabel("prompts")
    ax.set_title(f"LIM scores of {len(scores)} prompts")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def plot_selected_curves(history_dir: Path, selection: dict, metric: str, out: Path) -> Path:
    import torch

    from limr.history import RewardHistory
    from limr.selectors.curves import epoch_values

    plt = _plt()
    history = RewardHistory.load(history_dir)
    values, present = epoch_values(history, metric)
    kept = {json.loads(x)["id"] for x in Path(selection["path"]).read_text().splitlines() if x}
    rows = [i for i, pid in enumerate(history.ids) if pid in kept]
    avg = (values * present).sum(0) / present.sum(0).clamp_min(1)
    fig, ax = plt.subplots(figsize=(7, 4))
    epochs = list(range(values.shape[1]))
    g = torch.Generator().manual_seed(0)
    shown = [rows[j] for j in torch.randperm(len(rows), generator=g)[:40].tolist()]
    for j, r in enumerate(shown):
        mask = present[r]
        ax.plot(
            [e for e in epochs if mask[e]],
            values[r][mask].tolist(),
            color="#4c72b0",
            alpha=0.25,
            lw=1,
            marker="o",
            ms=3,
            label="LIM-selected prompts" if j == 0 else None,
        )
    ax.plot(epochs, avg.tolist(), "o-", color="black", lw=2.5, label="average of all prompts")
    if metric == "accuracy":
        ax.set_ylim(-0.05, 1.05)
    ax.set_xlabel("epoch of the FULL run")
    ax.set_ylabel(metric)
    ax.set_title(f"Reward curves: {len(shown)} of {len(rows)} selected prompts vs the average")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def plot_curriculum(schedule: list[dict], out: Path) -> Path:
    plt = _plt()
    epochs = [e["epoch"] for e in schedule]
    fig, ax1 = plt.subplots(figsize=(7, 3.5))
    ax1.plot(epochs, [e.get("theta") for e in schedule], "o-", color="red", label="theta")
    ax1.set_xlabel("epoch")
    ax1.set_ylabel("threshold theta", color="red")
    ax2 = ax1.twinx()
    ax2.plot(epochs, [e.get("size") for e in schedule], "s-", color="#4c72b0", label="subset")
    ax2.set_ylabel("prompts in the subset", color="#4c72b0")
    if any("mean_accuracy" in e for e in schedule):
        ax1.plot(
            epochs,
            [e.get("mean_accuracy") for e in schedule],
            "^--",
            color="gray",
            label="mean accuracy",
        )
    ax1.legend(loc="upper left")
    ax1.set_title("Dynamic-threshold curriculum: theta and subset size per update")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


# ---------------------------------------------------------------------------------------------


def write_report(
    root: Path,
    cfg: LimrConfig,
    results: dict,
    selections: dict,
    arms: list[str],
    seeds: list[int],
) -> Path:
    """Write ``root/report.md`` and ``root/plots/*.png``; returns the report's path."""
    plots = root / "plots"
    plots.mkdir(parents=True, exist_ok=True)
    table, overall = results_table(results, selections, arms, seeds, root)
    seed0 = str(seeds[0])
    lim = selections[seed0]["lim"]
    figs: list[tuple[str, Path]] = []
    figs.append(("Held-out accuracy per arm", plot_heldout(results, arms, plots / "heldout.png")))
    curve = plot_heldout_curves(
        root, arms, seeds, results["benchmarks"][0], plots / "accuracy_vs_step.png"
    )
    if curve is not None:
        figs.append(("Held-out accuracy versus step", curve))
    figs.append(
        (
            "Training accuracy versus step",
            plot_training_curves(root, arms, seeds, plots / "train_accuracy_vs_step.png"),
        )
    )
    figs.append(("LIM score histogram", plot_lim_histogram(lim, plots / "lim_histogram.png")))
    figs.append(
        (
            "Reward curves of LIM-selected prompts against the average",
            plot_selected_curves(
                root / "arms" / f"full-s{seed0}" / "history",
                lim,
                cfg.selector.metric,
                plots / "lim_curves.png",
            ),
        )
    )
    if "curriculum" in arms:
        summary = root / "arms" / f"curriculum-s{seed0}" / "train_summary.json"
        sched = json.loads(summary.read_text()).get("curriculum_schedule") or []
        if sched:
            figs.append(("Curriculum schedule", plot_curriculum(sched, plots / "curriculum.png")))

    sel_lines = []
    for s in seeds:
        sel = selections[str(s)]
        li = sel["lim"]
        sel_lines.append(
            f"- seed {s}: {sel['epochs']} epochs of history over {sel['n_prompts']} prompts. "
            f"LIM (metric {cfg.selector.metric}, {_cut_text(li)}) kept "
            f"**{li['n_kept']}** of {li['n_scored']} scored "
            f"({li['info'].get('never_solved_kept', 0)} of them never solved in the FULL run); "
            f"LINEAR kept {sel['linear']['n_kept']} ({_cut_text(sel['linear'])}); "
            f"RAND drew {sel['rand']['n_kept']}."
        )
        sel_lines.append(
            "  Kept at nearby thresholds: "
            + ", ".join(f"{t}: {n}" for t, n in li.get("nearby", {}).items())
        )
    text = [
        "# LIMR experiment report",
        "",
        f"Run folder `{root}`; config `config.yaml` (the exact config of this run); seeds "
        f"{', '.join(map(str, seeds))}; benchmarks {', '.join(results['benchmarks'])}.",
        "",
        "## Results",
        "",
        "Accuracy in % on the held-out benchmark(s)"
        + (" (mean ± std over seeds)" if len(seeds) > 1 else "")
        + "; `prompts` is how many training prompts each arm used.",
        "",
        table,
        "",
        verdict(overall, seeds),
        "",
        "## Selections from the FULL run's reward history",
        "",
        *sel_lines,
        "",
        "## Plots",
        "",
    ]
    for title, path in figs:
        text += [f"### {title}", "", f"![{title}](plots/{path.name})", ""]
    text += [
        "## Files",
        "",
        "- `eval.json`: the numbers of the table; `eval/<arm>-s<seed>.json`: every problem's "
        "responses and verdicts.",
        "- `arms/<arm>-s<seed>/`: each training run (reward history, metrics.jsonl, checkpoints, "
        "final model).",
        f"- TensorBoard: `tensorboard --logdir {root / 'arms'}`.",
        "",
        "For reference, the paper (Qwen2.5-Math-7B, MATH): FULL 57.0, LIMR 58.1, RAND 49.4, "
        "LINEAR 54.9 AVG over AIME24 / MATH500 / AMC23.",
        "",
    ]
    out = root / "report.md"
    out.write_text("\n".join(text), encoding="utf-8")
    return out
