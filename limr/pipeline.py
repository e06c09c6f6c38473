"""``limr run``: the whole LIMR experiment, stage by stage, resumable.

1. base policy (``builtin:tiny``: the shipped, warmed-up tiny model; or any HF model)
2. FULL: a PPO run on all training prompts that records every prompt's reward curve
3. selections from that history: LIM (theta), LINEAR, RAND (the size of LIM's)
4. one PPO run from the base on each subset with the same step budget, and a CURRICULUM arm
   (dynamic threshold from the start)
5. evaluation of the base and every arm on the held-out benchmarks (``limr eval``'s machinery)
6. the report: report.md, plots, TensorBoard logs, the config

Layout of ``run.run_dir``::

    config.yaml  stages.json  eval.json  report.md  plots/
    arms/<arm>-s<seed>/     one ``limr train`` run folder each (history, checkpoints, tb, final)
    selections/<arm>-s<seed>.jsonl (+ .scores.jsonl)
    eval/<arm>-s<seed>.json

Re-running the same command continues: a finished stage is not redone, an interrupted training run
resumes from its last checkpoint.
"""

from __future__ import annotations

import copy
import json
import math
import os
import time
from pathlib import Path
from typing import Any

import lightning as L

from limr.config import ConfigError, LimrConfig, to_yaml

SUBSET_ARMS = ("lim", "linear", "rand")
ARM_LABELS = {
    "base": "base",
    "full": "FULL",
    "lim": "LIM",
    "linear": "LINEAR",
    "rand": "RAND",
    "curriculum": "CURRICULUM",
}
KNOWN_ARMS = ("full", *SUBSET_ARMS, "curriculum")


def _write_json(path: Path, obj: Any) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)


class Pipeline:
    """The stages of one ``limr run``; each writes its outputs atomically and is skipped when
    they already exist."""

    def __init__(self, cfg: LimrConfig, *, log=print) -> None:
        unknown = [a for a in cfg.run.arms if a not in KNOWN_ARMS]
        if unknown:
            raise ConfigError(f"run.arms: unknown arm(s) {unknown}; known: {', '.join(KNOWN_ARMS)}")
        if "full" not in cfg.run.arms:
            raise ConfigError("run.arms must include 'full': the selections need its history")
        self.cfg = cfg
        self.root = Path(cfg.run.run_dir)
        self.log = log
        self.stages_path = self.root / "stages.json"
        self.times: dict[str, float] = {}

    # ------------------------------------------------------------------ bookkeeping

    def arm_dir(self, arm: str, seed: int) -> Path:
        return self.root / "arms" / f"{arm}-s{seed}"

    def _check_same_config(self) -> None:
        saved = self.root / "config.yaml"
        text = to_yaml(self.cfg)
        if saved.exists() and saved.read_text(encoding="utf-8") != text:
            raise ConfigError(
                f"{self.root} holds a run made with another config ({saved}); re-run with the "
                "same config to continue it, or choose another run.run_dir (nothing was changed)"
            )
        self.root.mkdir(parents=True, exist_ok=True)
        saved.write_text(text, encoding="utf-8")

    # ------------------------------------------------------------------ stages

    def run(self) -> dict:
        import transformers

        transformers.utils.logging.disable_progress_bar()  # one line per stage instead
        start = time.time()
        self._check_same_config()
        cfg = self.cfg
        seeds = list(cfg.run.seeds)
        arms = [a for a in KNOWN_ARMS if a in cfg.run.arms]
        n_stages = 6
        # 1. base
        base_path = self._stage(1, n_stages, "base", self.base_model)
        # 2-4. FULL, selections, arms, per seed
        selections: dict[str, dict] = {}
        for seed in seeds:
            self._stage(
                2, n_stages, f"FULL (seed {seed})", lambda s=seed: self.train_arm("full", s)
            )
            selections[str(seed)] = self._stage(
                3, n_stages, f"selections (seed {seed})", lambda s=seed: self.select(s)
            )
            for arm in arms:
                if arm == "full":
                    continue
                self._stage(
                    4,
                    n_stages,
                    f"{ARM_LABELS[arm]} (seed {seed})",
                    lambda a=arm, s=seed: self.train_arm(a, s, selections[str(s)]),
                )
        # 5. evaluation
        results = self._stage(5, n_stages, "evaluation", lambda: self.evaluate_all(base_path, arms))
        # 6. report
        from limr import report

        report_path = self._stage(
            6,
            n_stages,
            "report",
            lambda: report.write_report(self.root, cfg, results, selections, arms, seeds),
        )
        self.log(f"limr run: done in {(time.time() - start) / 60:.1f} min -> {report_path}")
        return {"report": str(report_path), "eval": results, "selections": selections}

    def _stage(self, i: int, n: int, name: str, fn) -> Any:
        self.log(f"[{i}/{n}] {name} ...")
        t0 = time.time()
        out = fn()
        dt = time.time() - t0
        self.times[name] = dt
        summary = out.get("_summary", "") if isinstance(out, dict) else ""
        self.log(f"[{i}/{n}] {name}: {summary + ', ' if summary else ''}{dt:.1f} s")
        return out

    def base_model(self) -> str:
        from limr.config import as_dict
        from limr.models import resolve_model_path

        m = self.cfg.model
        return resolve_model_path(m.name_or_path, tiny=as_dict(m.tiny))

    def arm_config(self, arm: str, seed: int, selections: dict | None = None) -> LimrConfig:
        cfg = copy.deepcopy(self.cfg)
        cfg.run.seed = seed
        cfg.run.run_dir = str(self.arm_dir(arm, seed))
        cfg.curriculum.enabled = arm == "curriculum"
        if arm in SUBSET_ARMS:
            assert selections is not None
            sel = selections[arm]
            cfg.data.subset = sel["path"]
            cfg.data.max_prompts = None  # the subset already lies inside the FULL pool
            if self.cfg.run.subset_steps is not None:
                cfg.trainer.max_steps = self.cfg.run.subset_steps
            fit_batch_to_subset(cfg, sel["n_kept"])
        cfg.__post_init__()  # recompute derived sizes
        return cfg

    def train_arm(self, arm: str, seed: int, selections: dict | None = None) -> dict:
        from limr.train import train

        run_dir = self.arm_dir(arm, seed)
        summary_path = run_dir / "train_summary.json"
        if summary_path.exists():
            s = json.loads(summary_path.read_text())
            return {**s, "_summary": f"done before ({s['steps']} steps)"}
        if arm in SUBSET_ARMS and selections[arm]["n_kept"] == 0:
            # Nothing to train on (e.g. LINEAR needs two or more epochs of history): the arm is
            # skipped, and the report says so.
            return {"skipped": True, "_summary": "skipped: its selection kept no prompts"}
        cfg = self.arm_config(arm, seed, selections)
        resume = (run_dir / "checkpoints").exists()
        callbacks = []
        if cfg.eval.every_steps > 0:
            callbacks.append(HeldoutEval(cfg, run_dir / "heldout.jsonl", seed=seed))
        s = train(cfg, resume=resume, callbacks=callbacks)
        last = s.get("metric_last", {})
        acc = last.get("train/correct_rate")
        acc_txt = f", last train accuracy {acc:.2f}" if acc is not None else ""
        return {**s, "_summary": f"{s['steps']} steps on {s['prompts']} prompts{acc_txt}"}

    def select(self, seed: int) -> dict:
        """LIM, LINEAR and RAND (LIM's size) from the FULL run's reward history."""
        from limr.history import RewardHistory
        from limr.registry import SELECTORS, import_plugins

        import_plugins(self.cfg.plugins)
        out_dir = self.root / "selections"
        out_dir.mkdir(parents=True, exist_ok=True)
        done = out_dir / f"selections-s{seed}.json"
        if done.exists():
            saved = json.loads(done.read_text())
            return {**saved, "_summary": "done before"}
        history = RewardHistory.load(self.arm_dir("full", seed) / "history")
        sc = self.cfg.selector
        result: dict[str, Any] = {}
        # selector.size (top N) applies to LIM and LINEAR alike; otherwise each uses its
        # threshold (LIM: selector.threshold or 0.6; LINEAR: its own 0.7)
        lim = SELECTORS.build(
            "lim", threshold=sc.threshold, size=sc.size, metric=sc.metric, seed=seed
        ).select(history)
        linear = SELECTORS.build("linear", size=sc.size, metric=sc.metric, seed=seed).select(
            history
        )
        rand = SELECTORS.build("rand", size=len(lim.kept_ids), seed=seed).select(history)
        for name, sel in (("lim", lim), ("linear", linear), ("rand", rand)):
            path = out_dir / f"{name}-s{seed}.jsonl"
            tmp = path.with_suffix(".tmp")
            tmp.write_text("".join(json.dumps({"id": i}) + "\n" for i in sel.kept_ids))
            os.replace(tmp, path)
            scores_path = out_dir / f"{name}-s{seed}.scores.jsonl"
            rows = [
                {"id": i, "score": _finite(float(s)), "kept": bool(k)}
                for i, s, k in zip(sel.ids, sel.scores.tolist(), sel.keep.tolist())
            ]
            scores_path.write_text("".join(json.dumps(r) + "\n" for r in rows))
            info = {k: v for k, v in sel.info.items() if k != "avg_curve"}
            result[name] = {
                "path": str(path),
                "scores": str(scores_path),
                "n_kept": len(sel.kept_ids),
                "n_scored": len(sel.ids),
                "threshold": sel.threshold,
                "info": info,
            }
        result["lim"]["avg_curve"] = lim.info.get("avg_curve")
        result["lim"]["nearby"] = nearby_counts(lim.scores.tolist(), lim.threshold)
        result["n_prompts"] = len(history.ids)
        result["epochs"] = int(history.n.shape[1])
        _write_json(done, result)
        summary = (
            f"{result['epochs']} epochs of history; LIM kept {result['lim']['n_kept']} of "
            f"{result['lim']['n_scored']} ({_cut(lim)}), LINEAR "
            f"{result['linear']['n_kept']}, RAND {result['rand']['n_kept']}"
        )
        return {**result, "_summary": summary}

    def evaluate_all(self, base_path: str, arms: list[str]) -> dict:
        """Evaluate the base and every arm's final policy; eval/<arm>-s<seed>.json each, and
        eval.json with the summary of all."""
        out_dir = self.root / "eval"
        out_dir.mkdir(parents=True, exist_ok=True)
        models = [("base", None, base_path)]
        for seed in self.cfg.run.seeds:
            for arm in arms:
                final = self.arm_dir(arm, seed) / "final"
                if final.exists():  # a skipped arm has no model
                    models.append((arm, seed, str(final)))
        combined: dict[str, Any] = {"benchmarks": list(self.cfg.run.eval_benchmarks), "arms": {}}
        for arm, seed, path in models:
            name = "base" if seed is None else f"{arm}-s{seed}"
            target = out_dir / f"{name}.json"
            if target.exists():
                result = json.loads(target.read_text())
            else:
                result = evaluate_model(self.cfg, path, seed=seed or self.cfg.run.seed)
                _write_json(target, result)
            combined["arms"].setdefault(arm, {})[str(seed) if seed is not None else "-"] = (
                summarise_eval(result)
            )
            self.log(
                f"    {name}: "
                + ", ".join(
                    f"{b} {summarise_eval(result)[b]['accuracy']:.3f}"
                    for b in summarise_eval(result)
                )
            )
        _write_json(self.root / "eval.json", combined)
        return combined


class HeldoutEval(L.Callback):
    """Evaluate the policy on ``run.eval_benchmarks`` every ``eval.every_steps`` RL steps (and
    before the first) and append ``{"step", "<bench>": accuracy}`` lines to a JSONL file: the
    report's held-out accuracy-versus-step curves."""

    def __init__(self, cfg: LimrConfig, path: Path, *, seed: int) -> None:
        self.cfg = cfg
        self.path = path
        self.seed = seed

    def _evaluate(self, trainer: L.Trainer, module: Any) -> None:
        if not trainer.is_global_zero:
            return
        result = evaluate_policy(
            self.cfg, module.policy, module.tokenizer, seed=self.seed, progress=False
        )
        line = {"step": module.rl_step}
        line.update({b: r["accuracy"] for b, r in summarise_eval(result).items()})
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(line) + "\n")

    def on_train_start(self, trainer: L.Trainer, module: Any) -> None:
        if module.rl_step == 0:
            self._evaluate(trainer, module)

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:  # noqa: ARG002
        step = module.rl_step
        if step % self.cfg.eval.every_steps == 0 or step >= module.total_steps():
            self._evaluate(trainer, module)


def read_heldout(path: Path) -> list[dict]:
    """The held-out curve of one arm; a step evaluated twice (a resumed run) keeps its last line."""
    if not path.exists():
        return []
    by_step: dict[int, dict] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            row = json.loads(line)
            by_step[int(row["step"])] = row
    return [by_step[s] for s in sorted(by_step)]


def _cut(sel: Any) -> str:
    return f"theta {sel.threshold}" if sel.threshold is not None else f"top {sel.info['size']}"


def _finite(x: float) -> float | None:
    return x if math.isfinite(x) else None


def nearby_counts(scores: list[float], threshold: float | None) -> dict[str, int]:
    """How many prompts each threshold near ``threshold`` would keep (>=)."""
    center = 0.6 if threshold is None else threshold
    grid = sorted({round(center + d, 2) for d in (-0.2, -0.1, -0.05, 0.0, 0.05, 0.1, 0.2)})
    finite = [s for s in scores if s is not None and math.isfinite(s)]
    return {f"{t:.2f}": sum(s >= t for s in finite) for t in grid}


def fit_batch_to_subset(cfg: LimrConfig, n_prompts: int) -> None:
    """A subset smaller than one rollout batch trains on all of it each step (the optimiser step
    sizes shrink to match, so that they still divide the rollouts)."""
    p, n = cfg.ppo, cfg.sampler.n_samples
    if n_prompts >= p.rollout_batch_size:
        return
    p.rollout_batch_size = n_prompts
    rollouts = n_prompts * n
    minibatches = max(1, (p.rollout_batch_size * n) // max(1, p.train_batch_size))
    while rollouts % minibatches:
        minibatches -= 1
    p.train_batch_size = rollouts // minibatches
    p.micro_batch_size = math.gcd(p.micro_batch_size, p.train_batch_size)


def evaluate_model(cfg: LimrConfig, model_path: str, *, seed: int) -> dict:
    """Evaluate one model folder on ``run.eval_benchmarks`` with ``limr eval``'s runner."""
    from limr.models import load_policy

    if cfg.trainer.num_threads:
        import torch

        torch.set_num_threads(cfg.trainer.num_threads)
    policy, tokenizer = load_policy(model_path, dtype=cfg.model.dtype)
    return evaluate_policy(cfg, policy, tokenizer, seed=seed, progress=cfg.trainer.progress)


def evaluate_policy(cfg: LimrConfig, policy, tokenizer, *, seed: int, progress: bool) -> dict:
    """Evaluate a loaded policy on ``run.eval_benchmarks`` (greedy etc. per benchmark protocol)."""
    from limr.benchmarks.evaluate import evaluate
    from limr.prompts import format_prompt
    from limr.registry import BENCHMARKS, SAMPLERS, import_plugins

    import_plugins(cfg.plugins)
    sampler = SAMPLERS.build(
        "hf", model=policy, tokenizer=tokenizer, batch_size=cfg.eval.batch_size
    )
    d = cfg.data

    def fmt(problem: str) -> str:
        return format_prompt(
            problem,
            template=d.template,
            tokenizer=tokenizer,
            system_prompt=d.system_prompt,
            plain_suffix=d.plain_suffix,
        )

    e = cfg.eval
    return evaluate(
        sampler,
        [BENCHMARKS.build(name) for name in cfg.run.eval_benchmarks],
        format_prompt=fmt,
        n_samples=e.n_samples,
        temperature=e.temperature,
        top_p=e.top_p,
        max_new_tokens=e.max_new_tokens,
        batch_size=e.batch_size,
        max_problems=e.max_problems,
        seed=seed,
        progress=progress,
    )


def summarise_eval(result: dict) -> dict:
    """Per benchmark: accuracy, pass@k, by_level, n_problems (what the report and eval.json use)."""
    out = {}
    for name, r in result.items():
        if not isinstance(r, dict) or "accuracy" not in r:
            continue
        out[name] = {k: r.get(k) for k in ("accuracy", "by_level", "n_problems", "n_samples")}
        passk = {k: v for k, v in r.items() if k.startswith("pass@")}
        out[name].update(passk)
    return out
