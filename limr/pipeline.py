"""``limr run``: the whole LIMR experiment, stage by stage, resumable.

1. base policy (``builtin:tiny``: the shipped, warmed-up tiny model; or any HF model)
2. FULL: a PPO run on all training prompts that records every prompt's reward curve
3. selections from that history: ``selector.name`` (LIM by default; the ``lim`` arm), LINEAR,
   RAND (the size of the first)
4. one PPO run from the base on each subset with the same step budget, and a CURRICULUM arm
   (dynamic threshold from the start)
5. evaluation of the base and every arm on the held-out benchmarks (``limr eval``'s machinery)
6. the report: report.md, plots, TensorBoard logs, the config

Stages 2-5 are jobs of a dependency graph (:meth:`Pipeline.plan`), run by :mod:`limr.runner`
in ``run.workers`` worker processes: every seed's FULL run first, then, as soon as a seed's FULL
is done, its selections (in the parent) and its subset arms; the CURRICULUM arm and the base's
evaluation need nothing and start at once, each arm's evaluation follows its training.

Layout of ``run.run_dir``::

    config.yaml  stages.json  eval.json  report.md  plots/
    arms/<arm>-s<seed>/     one ``limr train`` run folder each (history, checkpoints, tb, final)
    selections/<arm>-s<seed>.jsonl (+ .scores.jsonl)
    eval/<arm>-s<seed>.json
    logs/<job>.log          each job's output when it ran in a worker process
    locks/<job>.lock        held while a job runs (two processes never run the same job)

Re-running the same command continues: a finished job is not redone, an interrupted training run
resumes from its last checkpoint.
"""

from __future__ import annotations

import copy
import json
import math
import os
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import lightning as L

from limr.cheap_study import (
    CHEAP_ARMS,
    CHEAP_LABELS,
    PROBE_DONE,
    cheap_selection,
    probe_selection,
    probe_specs,
    run_probe,
    subsample_pool,
    subsample_selection,
    subsample_steps,
)
from limr.config import ConfigError, LimrConfig, check_selector, to_yaml

SUBSET_ARMS = ("lim", "linear", "rand", *CHEAP_ARMS)
"""Arms trained on a selection of the FULL pool; the cheap-LIM arms (issue 11,
:mod:`limr.cheap_study`) are selected only when ``run.arms`` names them."""
ARM_LABELS = {
    "base": "base",
    "full": "FULL",
    "lim": "LIM",
    "linear": "LINEAR",
    "rand": "RAND",
    "curriculum": "CURRICULUM",
    **CHEAP_LABELS,
}
KNOWN_ARMS = ("full", *SUBSET_ARMS, "curriculum")
N_STAGES = 6
# Keys of the run's config.yaml that do not change any result: a run may be continued with
# other values (e.g. more workers, no progress bars, or its folder named by another path).
VOLATILE_KEYS = (("run", "workers"), ("trainer", "progress"), ("run", "run_dir"))


def arm_label(arm: str, cfg: LimrConfig) -> str:
    """The arm's name in reports: the ``lim`` arm is named after ``selector.name`` when that is
    not ``lim`` (e.g. VARIANCE); its key, folders and files stay ``lim``."""
    if arm == "lim" and cfg.selector.name != "lim":
        return cfg.selector.name.upper()
    return ARM_LABELS.get(arm, arm)


def _write_text(path: Path, text: str) -> None:
    """Write atomically (a unique temporary file renamed into place: concurrent writers of the
    same content never see a half-written file)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _write_json(path: Path, obj: Any) -> None:
    _write_text(path, json.dumps(obj, indent=2) + "\n")


def _comparable(text: str) -> str:
    from omegaconf import OmegaConf

    node = OmegaConf.create(text)
    for section, key in VOLATILE_KEYS:
        if section in node and key in node[section]:
            del node[section][key]
    return OmegaConf.to_yaml(node)


@dataclass(frozen=True)
class Job:
    """One node of the run's dependency graph."""

    name: str
    """``<arm>-s<seed>`` (training), ``selections-s<seed>``, ``eval-base`` or
    ``eval-<arm>-s<seed>``."""
    kind: str
    """train, select, probe or eval."""
    arm: str
    """full, lim, linear, rand, curriculum, a cheap arm, or ``subsample`` (the lim_subsample arm's
    run on part of the pool); ``base`` for the base's evaluation; ``selections``; ``probe``."""
    seed: int | None
    after: tuple[str, ...]
    """Jobs that must be finished first."""
    stage: int
    """Its stage in the ``[i/6]`` lines."""
    label: str

    @property
    def in_parent(self) -> bool:
        """Selections are cheap (seconds): the scheduling process computes them itself."""
        return self.kind == "select"


class Pipeline:
    """The stages of one ``limr run``; each writes its outputs atomically and is skipped when
    they already exist."""

    def __init__(self, cfg: LimrConfig, *, log=print) -> None:
        unknown = [a for a in cfg.run.arms if a not in KNOWN_ARMS]
        if unknown:
            raise ConfigError(f"run.arms: unknown arm(s) {unknown}; known: {', '.join(KNOWN_ARMS)}")
        if "full" not in cfg.run.arms:
            raise ConfigError("run.arms must include 'full': the selections need its history")
        check_selector(cfg)  # imports the plugins: a bad selector fails before FULL trains
        self.cfg = cfg
        self.root = Path(cfg.run.run_dir)
        self.log = log
        self.stages_path = self.root / "stages.json"
        self.times: dict[str, float] = {}

    # ------------------------------------------------------------------ bookkeeping

    @property
    def arms(self) -> list[str]:
        return [a for a in KNOWN_ARMS if a in self.cfg.run.arms]

    def arm_dir(self, arm: str, seed: int) -> Path:
        return self.root / "arms" / f"{arm}-s{seed}"

    def log_path(self, job: Job) -> Path:
        return self.root / "logs" / f"{job.name}.log"

    def _check_same_config(self) -> None:
        saved = self.root / "config.yaml"
        text = to_yaml(self.cfg)
        if saved.exists() and _comparable(saved.read_text(encoding="utf-8")) != _comparable(text):
            raise ConfigError(
                f"{self.root} holds a run made with another config ({saved}); re-run with the "
                "same config to continue it, or choose another run.run_dir (nothing was changed)"
            )
        self.root.mkdir(parents=True, exist_ok=True)
        if not saved.exists() or saved.read_text(encoding="utf-8") != text:
            _write_text(saved, text)

    def plan(self) -> list[Job]:
        """Every job of the run in the order one process runs them (``run.workers: 1``); each
        names the jobs it waits for."""
        jobs: list[Job] = []
        arms = self.arms
        for seed in self.cfg.run.seeds:
            full = f"full-s{seed}"
            jobs.append(Job(full, "train", "full", seed, (), 2, f"FULL (seed {seed})"))
            needs = [full]
            if "lim_subsample" in arms:
                share = f"{100 * self.cfg.run.cheap_fraction:.0f}%"
                sub = f"subsample-s{seed}"
                jobs.append(Job(sub, "train", "subsample", seed, (), 2,
                                f"FULL on a random {share} of the pool (seed {seed})"))  # fmt: skip
                needs.append(sub)
            if "lim_probe" in arms or "lim_subsample" in arms:
                probe = f"probe-s{seed}"
                after = (full,) if "lim_probe" in arms else ()
                jobs.append(Job(probe, "probe", "probe", seed, after, 3,
                                f"probe (seed {seed})"))  # fmt: skip
                needs.append(probe)
            sel = f"selections-s{seed}"
            jobs.append(Job(sel, "select", "selections", seed, tuple(needs), 3,
                            f"selections (seed {seed})"))  # fmt: skip
            for arm in arms:
                if arm == "full":
                    continue
                after = (sel,) if arm in SUBSET_ARMS else ()
                label = f"{arm_label(arm, self.cfg)} (seed {seed})"
                jobs.append(Job(f"{arm}-s{seed}", "train", arm, seed, after, 4, label))
        jobs.append(Job("eval-base", "eval", "base", None, (), 5, "evaluation of base"))
        for seed in self.cfg.run.seeds:
            for arm in arms:
                jobs.append(
                    Job(f"eval-{arm}-s{seed}", "eval", arm, seed, (f"{arm}-s{seed}",), 5,
                        f"evaluation of {arm_label(arm, self.cfg)} (seed {seed})")
                )  # fmt: skip
        return jobs

    def job(self, name: str) -> Job:
        for job in self.plan():
            if job.name == name:
                return job
        raise KeyError(name)

    def is_done(self, job: Job) -> bool:
        """Its output exists (a cheap check: no reading)."""
        if job.kind == "train":
            return (self.arm_dir(job.arm, job.seed) / "train_summary.json").exists()
        if job.kind == "select":
            return (self.root / "selections" / f"selections-s{job.seed}.json").exists()
        if job.kind == "probe":
            return self._probe_done(job.seed) is not None
        return self._eval_path(job.arm, job.seed).exists()

    def precheck(self, job: Job) -> dict | None:
        """The job's result when there is nothing to do (done before, or skipped), else None.
        Only meaningful once the jobs it waits for are done."""
        if job.kind == "select":
            return self.select(job.seed) if self.is_done(job) else None
        if job.kind == "probe":
            done = self._probe_done(job.seed)
            if done is None:
                return None
            return {**done, "_summary": f"done before ({sum(done['rollouts'])} rollouts)"}
        if job.kind == "train":
            summary_path = self.arm_dir(job.arm, job.seed) / "train_summary.json"
            if summary_path.exists():
                s = json.loads(summary_path.read_text())
                return {**s, "_summary": f"done before ({s['steps']} steps)"}
            if job.arm in SUBSET_ARMS:
                sel_done = self.root / "selections" / f"selections-s{job.seed}.json"
                saved = json.loads(sel_done.read_text()) if sel_done.exists() else {}
                if saved.get(job.arm, {}).get("n_kept") == 0:
                    # Nothing to train on (e.g. LINEAR needs two or more epochs of history): the
                    # arm is skipped, and the report says so.
                    return {"skipped": True, "_summary": "skipped: its selection kept no prompts"}
            return None
        target = self._eval_path(job.arm, job.seed)
        if target.exists():
            return {"_summary": "done before: " + _accuracies(json.loads(target.read_text()))}
        if job.arm != "base" and not (self.arm_dir(job.arm, job.seed) / "final").exists():
            return {"skipped": True, "_summary": "skipped: the arm has no trained model"}
        return None

    def execute(self, job: Job, base_path: str | None = None) -> dict:
        """Run one job here (idempotent: a finished job returns its result). Holds the job's lock
        meanwhile, so that no other process runs the same job at the same time."""
        from limr.runner import job_lock

        done = self.precheck(job)
        if done is not None:
            return done
        with job_lock(self.root / "locks" / f"{job.name}.lock", wait=job.kind == "select"):
            if job.kind == "select":
                return self.select(job.seed)
            if job.kind == "train":
                selections = self.select(job.seed) if job.arm in SUBSET_ARMS else None
                return self.train_arm(job.arm, job.seed, selections)
            if job.kind == "probe":
                return self.run_probe(job.seed)
            if base_path is None and job.arm == "base":
                base_path = self.base_model()
            return self.evaluate_arm(job.arm, job.seed, base_path)

    # ------------------------------------------------------------------ stages

    def run(self, *, job_fn=None) -> dict:
        """The whole experiment. ``job_fn(cfg, job_name, base_path) -> dict`` replaces what a
        worker process runs for each job (a module-level function: tests inject failures)."""
        import transformers

        from limr.runner import resolve_workers, run_jobs

        transformers.utils.logging.disable_progress_bar()  # one line per stage instead
        start = time.time()
        workers = resolve_workers(self.cfg)
        self._check_same_config()
        cfg = self.cfg
        seeds = list(cfg.run.seeds)
        arms = self.arms
        # 1. base
        base_path = self._stage(1, N_STAGES, "base", self.base_model)
        # 2-5. FULL, selections, arms, evaluations: a dependency graph over the workers
        run_jobs(self, self.plan(), workers=workers, base_path=base_path, job_fn=job_fn)
        selections: dict[str, dict] = {str(seed): self.select(seed) for seed in seeds}
        results = self._stage(5, N_STAGES, "evaluation", lambda: self.evaluate_all(base_path, arms))
        # 6. report
        report_path = self._stage(6, N_STAGES, "report", lambda: self._report(results, selections))
        self.log(f"limr run: done in {(time.time() - start) / 60:.1f} min -> {report_path}")
        return {"report": str(report_path), "eval": results, "selections": selections}

    def _report(self, results: dict, selections: dict) -> Path:
        from limr import report

        seeds = list(self.cfg.run.seeds)
        return report.write_report(self.root, self.cfg, results, selections, self.arms, seeds)

    def run_only(self, names: list[str]) -> None:
        """Run the named jobs of :meth:`plan` here, one after the other (``limr run --only``:
        what a cluster job runs). ``report`` evaluates whatever is not evaluated yet and writes
        the report. A job whose prerequisites are not finished is refused, except that a subset
        arm computes its seed's selections when they are missing."""
        import transformers

        from limr.cli import UsageError

        transformers.utils.logging.disable_progress_bar()
        plan = {j.name: j for j in self.plan()}
        bad = [n for n in names if n not in plan and n != "report"]
        if bad:
            raise UsageError(
                f"--only: no job {bad[0]!r} in this run's plan; its jobs: "
                f"{', '.join([*plan, 'report'])}"
            )
        self._check_same_config()
        for name in names:
            if name == "report":
                missing = [
                    j.name for j in plan.values()
                    if j.kind == "train" and self.precheck(j) is None
                ]  # fmt: skip
                if missing:
                    raise UsageError(f"--only report: arms not trained yet: {', '.join(missing)}")
                base_path = self._stage(1, N_STAGES, "base", self.base_model)
                selections = {str(s): self.select(s) for s in self.cfg.run.seeds}
                results = self._stage(
                    5, N_STAGES, "evaluation", lambda b=base_path: self.evaluate_all(b, self.arms)
                )
                path = self._stage(
                    6, N_STAGES, "report", lambda r=results, s=selections: self._report(r, s)
                )
                self.log(f"limr run: report -> {path}")
                continue
            job = plan[name]
            for dep in job.after:
                dj = plan[dep]
                if self.precheck(dj) is not None:
                    continue
                if dj.kind == "select" and all(self.precheck(plan[d]) for d in dj.after):
                    continue  # computed on the way
                raise UsageError(f"--only {name}: needs {dep} finished first")
            self._stage(job.stage, N_STAGES, job.label, lambda j=job: self.execute(j))

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
        # one string that loads on its own: a GGUF model's file path, with no gguf_file beside it
        return resolve_model_path(m.name_or_path, gguf_file=m.gguf_file, tiny=as_dict(m.tiny))

    def arm_config(self, arm: str, seed: int, selections: dict | None = None) -> LimrConfig:
        cfg = copy.deepcopy(self.cfg)
        cfg.run.seed = seed
        cfg.run.run_dir = str(self.arm_dir(arm, seed))
        cfg.curriculum.enabled = arm == "curriculum"
        if arm == "subsample":
            pool = self._subsample_pool(seed)
            cfg.data.subset = str(pool)
            cfg.data.max_prompts = None
            cfg.trainer.max_steps = subsample_steps(self.cfg)
            fit_batch_to_subset(cfg, len(pool.read_text(encoding="utf-8").splitlines()))
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

    def _subsample_pool(self, seed: int) -> Path:
        """``selections/subsample-pool-s<seed>.jsonl``: the ids the subsample run trains on."""
        path = self.root / "selections" / f"subsample-pool-s{seed}.jsonl"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            ids = subsample_pool(self.cfg, seed)
            _write_text(path, "".join(json.dumps({"id": i}) + "\n" for i in ids))
        return path

    def _probe_dir(self, seed: int) -> Path:
        return self.root / "probe" / f"s{seed}"

    def _probe_specs(self, seed: int) -> tuple[list[str], int]:
        """What the probe of this seed probes: the base, and FULL's early checkpoints when the
        ``lim_probe`` arm runs (FULL must be done then)."""
        full_steps = None
        if "lim_probe" in self.arms:
            summary = self.arm_dir("full", seed) / "train_summary.json"
            if not summary.exists():
                raise RuntimeError(f"the probe of seed {seed} needs FULL finished ({summary})")
            full_steps = int(json.loads(summary.read_text())["steps"])
        return probe_specs(self.cfg, self.arm_dir("full", seed), self.base_model(), full_steps)

    def _probe_done(self, seed: int) -> dict | None:
        """The probe's ``done.json`` when it probed what this run asks for, else None."""
        path = self._probe_dir(seed) / PROBE_DONE
        if not path.exists():
            return None
        done = json.loads(path.read_text(encoding="utf-8"))
        if (
            "lim_probe" in self.arms
            and not (self.arm_dir("full", seed) / "train_summary.json").exists()
        ):
            return None
        return done if done["checkpoints"] == self._probe_specs(seed)[0] else None

    def run_probe(self, seed: int) -> dict:
        """The probe of the base (and FULL's early checkpoints): the lim_probe arm's curve, and
        the base pass rates that lim_subsample's predictor extends from."""
        specs, last_step = self._probe_specs(seed)
        done = run_probe(self.cfg, self._probe_dir(seed), specs, seed, last_step)
        n = len(specs)
        return {**done, "_summary": f"{n} model{'s' if n > 1 else ''}, "
                f"{sum(done['rollouts'])} rollouts"}  # fmt: skip

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
        resumed = f", resumed from {Path(s['resumed_from']).name}" if s.get("resumed_from") else ""
        return {
            **s,
            "_summary": f"{s['steps']} steps on {s['prompts']} prompts{acc_txt}{resumed}",
        }

    def select(self, seed: int) -> dict:
        """``selector.name`` (with ``selector.kwargs``; LIM by default: the ``lim`` arm), LINEAR
        and RAND (the size of the first) from the FULL run's reward history."""
        from limr.history import RewardHistory
        from limr.registry import SELECTORS, import_plugins

        import_plugins(self.cfg.plugins)
        out_dir = self.root / "selections"
        out_dir.mkdir(parents=True, exist_ok=True)
        done = out_dir / f"selections-s{seed}.json"
        cheap = [a for a in self.arms if a in CHEAP_ARMS]
        saved = json.loads(done.read_text()) if done.exists() else None
        if saved is not None and all(a in saved for a in cheap):
            return {**saved, "_summary": "done before"}
        history = RewardHistory.load(self.arm_dir("full", seed) / "history")
        if saved is not None:  # the cheap arms added since
            for arm in cheap:
                if arm not in saved:
                    saved[arm] = self._cheap_selection(
                        arm, seed, history, out_dir, saved["lim"]["n_kept"]
                    )
            _write_json(done, saved)
            return {**saved, "_summary": "done before (cheap arms added)"}
        sc = self.cfg.selector
        result: dict[str, Any] = {}
        # selector.size (top N) applies to the selector and LINEAR alike; otherwise each uses its
        # threshold (the selector: selector.threshold or its default, LIM 0.6; LINEAR its 0.7)
        main = SELECTORS.build(
            sc.name, threshold=sc.threshold, size=sc.size, metric=sc.metric, seed=seed,
            **dict(sc.kwargs),
        ).select(history)  # fmt: skip
        linear = SELECTORS.build("linear", size=sc.size, metric=sc.metric, seed=seed).select(
            history
        )
        rand = SELECTORS.build("rand", size=len(main.kept_ids), seed=seed).select(history)
        for name, sel in (("lim", main), ("linear", linear), ("rand", rand)):
            result[name] = _selection_entry(out_dir, name, seed, sel)
        for arm in cheap:
            result[arm] = self._cheap_selection(arm, seed, history, out_dir, len(main.kept_ids))
        result["lim"]["selector"] = sc.name
        result["lim"]["label"] = arm_label("lim", self.cfg)
        result["lim"]["avg_curve"] = main.info.get("avg_curve")
        if sc.name == "lim" or main.threshold is not None:
            result["lim"]["nearby"] = nearby_counts(main.scores.tolist(), main.threshold)
        result["n_prompts"] = len(history.ids)
        result["epochs"] = int(history.n.shape[1])
        _write_json(done, result)
        label = result["lim"]["label"]
        summary = (
            f"{result['epochs']} epochs of history; {label} kept {result['lim']['n_kept']} of "
            f"{result['lim']['n_scored']} ({_cut(main)}), LINEAR "
            f"{result['linear']['n_kept']}, RAND {result['rand']['n_kept']}"
        )
        return {**result, "_summary": summary}

    def _cheap_selection(
        self, arm: str, seed: int, history: Any, out_dir: Path, lim_size: int
    ) -> dict:
        """A cheap-LIM arm's selection (:mod:`limr.cheap_study`), written as the others are;
        ``lim_size``: what the LIM arm kept (``run.cheap_cut: lim_size`` keeps as many)."""
        cost: dict[str, Any] = {}
        full = self.arm_dir("full", seed)
        if arm == "lim_probe":
            summary = json.loads((full / "train_summary.json").read_text())
            sel, cost = probe_selection(
                self.cfg, full, self._probe_dir(seed), seed, int(summary["steps"]), lim_size
            )
        elif arm == "lim_subsample":
            sel, cost = subsample_selection(
                self.cfg, full, self.arm_dir("subsample", seed), self._probe_dir(seed), seed,
                lim_size,
            )  # fmt: skip
        else:
            sel = cheap_selection(arm, history, self.cfg, seed, lim_size)
        return _selection_entry(out_dir, arm, seed, sel, cost)

    def _eval_path(self, arm: str, seed: int | None) -> Path:
        name = "base" if seed is None else f"{arm}-s{seed}"
        return self.root / "eval" / f"{name}.json"

    def evaluate_arm(self, arm: str, seed: int | None, base_path: str | None) -> dict:
        """Evaluate the base (``seed`` None) or one arm's final policy: ``eval/<arm>-s<seed>.json``,
        written atomically; read back when it exists."""
        target = self._eval_path(arm, seed)
        if target.exists():
            result = json.loads(target.read_text())
            return {**result, "_summary": "done before: " + _accuracies(result)}
        path = base_path if seed is None else str(self.arm_dir(arm, seed) / "final")
        if path is None:
            path = self.base_model()
        result = evaluate_model(self.cfg, path, seed=self.cfg.run.seed if seed is None else seed)
        target.parent.mkdir(parents=True, exist_ok=True)
        _write_json(target, result)
        return {**result, "_summary": _accuracies(result)}

    def evaluate_all(self, base_path: str, arms: list[str]) -> dict:
        """Evaluate the base and every arm's final policy (those not evaluated yet: the jobs did
        them); eval/<arm>-s<seed>.json each, and eval.json with the summary of all."""
        out_dir = self.root / "eval"
        out_dir.mkdir(parents=True, exist_ok=True)
        models: list[tuple[str, int | None]] = [("base", None)]
        for seed in self.cfg.run.seeds:
            for arm in arms:
                if (self.arm_dir(arm, seed) / "final").exists():  # a skipped arm has no model
                    models.append((arm, seed))
        combined: dict[str, Any] = {"benchmarks": list(self.cfg.run.eval_benchmarks), "arms": {}}
        for arm, seed in models:
            name = "base" if seed is None else f"{arm}-s{seed}"
            result = self.evaluate_arm(arm, seed, base_path)
            result.pop("_summary", None)
            combined["arms"].setdefault(arm, {})[str(seed) if seed is not None else "-"] = (
                summarise_eval(result)
            )
            self.log(f"    {name}: {_accuracies(result)}")
        _write_json(self.root / "eval.json", combined)
        return combined


def _selection_entry(
    out_dir: Path, name: str, seed: int, sel: Any, extra: dict | None = None
) -> dict:
    """Write ``<name>-s<seed>.jsonl`` (the kept ids) and ``.scores.jsonl``; the entry of
    ``selections-s<seed>.json`` (``extra`` joins the selection's info)."""
    from limr.selectors.curves import score_record

    path = out_dir / f"{name}-s{seed}.jsonl"
    _write_text(path, "".join(json.dumps({"id": i}) + "\n" for i in sel.kept_ids))
    scores_path = out_dir / f"{name}-s{seed}.scores.jsonl"
    rows = [
        {**score_record("id", i, s), "kept": bool(k)}
        for i, s, k in zip(sel.ids, sel.scores.tolist(), sel.keep.tolist())
    ]
    _write_text(scores_path, "".join(json.dumps(r) + "\n" for r in rows))
    info = {k: v for k, v in sel.info.items() if k != "avg_curve"}
    info.update(extra or {})
    return {
        "path": str(path),
        "scores": str(scores_path),
        "n_kept": len(sel.kept_ids),
        "n_scored": len(sel.ids),
        "threshold": sel.threshold,
        "info": info,
    }


def _accuracies(result: dict) -> str:
    return ", ".join(f"{b} {r['accuracy']:.3f}" for b, r in summarise_eval(result).items())


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
        e = self.cfg.eval
        result = evaluate_policy(
            self.cfg,
            module.policy,
            module.tokenizer,
            seed=self.seed,
            progress=False,
            max_problems=e.max_problems if e.curve_max_problems is None else e.curve_max_problems,
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
    if sel.threshold is not None:
        return f"theta {sel.threshold}"
    return f"top {sel.info.get('size', len(sel.kept_ids))}"


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
    rollouts = n_prompts * n
    minibatches = max(1, rollouts // max(1, p.train_batch_size))
    while rollouts % minibatches:
        minibatches -= 1
    train = rollouts // minibatches
    cfg.ppo = replace(
        p, rollout_batch_size=n_prompts, train_batch_size=train,
        micro_batch_size=math.gcd(p.micro_batch_size, train),
    )  # fmt: skip


def evaluate_model(cfg: LimrConfig, model_path: str, *, seed: int) -> dict:
    """Evaluate one model folder on ``run.eval_benchmarks`` with ``limr eval``'s runner."""
    from limr.models import load_policy

    if cfg.trainer.num_threads:
        import torch

        torch.set_num_threads(cfg.trainer.num_threads)
    policy, tokenizer = load_policy(model_path, dtype=cfg.model.dtype)
    return evaluate_policy(
        cfg, policy, tokenizer, seed=seed, progress=cfg.trainer.progress,
        max_problems=cfg.eval.max_problems,
    )  # fmt: skip


def evaluate_policy(
    cfg: LimrConfig,
    policy,
    tokenizer,
    *,
    seed: int,
    progress: bool,
    max_problems: int | None,
) -> dict:
    """Evaluate a loaded policy on ``run.eval_benchmarks`` (greedy etc. per benchmark protocol),
    the first ``max_problems`` problems of each (None = all)."""
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
    from limr.registry import REWARDS

    return evaluate(
        sampler,
        [BENCHMARKS.build(name) for name in cfg.run.eval_benchmarks],
        format_prompt=fmt,
        reward=REWARDS.build("correct", unboxed=e.unboxed),
        n_samples=e.n_samples,
        temperature=e.temperature,
        top_p=e.top_p,
        max_new_tokens=e.max_new_tokens,
        batch_size=e.batch_size,
        max_problems=max_problems,
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
