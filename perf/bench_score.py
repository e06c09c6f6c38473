"""Scoring benchmarks: LIM on 1,000,000 prompts x 21 epochs, a history on disk, and `limr score`
on the rollout logs of every format at the released LIMR run's size, beside the released
algorithm.

    .venv/bin/python perf/bench_score.py                       # everything, the defaults below
    .venv/bin/python perf/bench_score.py --skip-logs           # only the selector timings
    .venv/bin/python perf/bench_score.py --skip-lim            # only the rollout logs

1. A synthetic history of ``--prompts`` x ``--epochs`` cells (8 rollouts each, ``--missing`` of the
   cells absent as with LIMR's shuffled drop_last epochs, accuracies rising over the run) is built
   in memory; then LIM (and, for reference, the other offline selectors) select from it ``--repeat``
   times. Target: LIM under 1 s per selection.
2. A history committed epoch by epoch to disk, then loaded and scored (``--disk-prompts``).
3. The released run's size, 8,523 prompts x 21 epochs x 8 samples (1,431,360 rollouts, 8 steps
   an epoch, empty responses: 149 MB of LIMR ``step_N.json``), is written in each format limr
   imports (LIMR/OpenRLHF JSON lists, veRL JSONL, TRL parquet, NeMo-RL JSONL, prime-rl episode
   JSONL). The released algorithm (GAIR-NLP/LIMR ``lim/lim_selection.py``, restated in
   ``_RELEASED``) reads the JSON lists; ``python -m limr score --format F`` reads each format.
   Each is a fresh process, timed from its start (start-up included, median of
   ``--log-repeat`` runs); its peak RSS is its own VmHWM. Target: at most half the released
   algorithm's wall time on every format. Then ``--scale`` times the logs (hard links of the same
   files as later steps: 210 epochs) are read whole, to show memory growing with the cells, not
   with the bytes.

Measured 2026-12-02 (this session: the shared host ran about 1.4-1.9x slower than in the
session before, whose idle figures were released 2.37 s, prime-rl 0.52x) on this project's
2-core machine, load average 0.3-0.5, with `.venv/bin/python perf/bench_score.py`:

    == LIM on 1,000,000 prompts x 21 epochs (4% cells missing; torch 2.13.0+cpu, 2 threads)
       selector       first s  median s  best s   cpu s  kept/scored
       lim              0.470     0.470   0.441   0.470  799,507/931,972
       linear           0.324     0.341   0.324   0.341  305,637/931,972
       pearson          0.543     0.598   0.543   0.598  460,252/931,972
       learnability     0.091     0.110   0.091   0.110  825,951/1,000,000
       variance         0.425     0.421   0.403   0.421  1,000/1,000,000
       rand             0.456     0.390   0.381   0.390  1,389/931,972
       LIM median < 1 s: PASS
    == history on disk: 200,000 prompts x 21 epochs, one record + commit per epoch
       79.2 MB on disk (20.6 bytes per cell); record 3.11 s, commit 0.47 s in all;
       load + densify 0.34 s; LIM 0.13 s
    == `limr score` on rollout logs of every format, the released run's size (1,431,360 rollouts)
       wrote openrlhf    149.4 MB in 168 files (largest 0.89 MB)
       wrote verl        200.0 MB in 168 files (largest 1.20 MB)
       wrote trl           4.9 MB in 168 files (largest 0.03 MB)
       wrote nemo-rl     179.4 MB in 168 files (largest 1.07 MB)
       wrote prime-rl    268.1 MB in 168 files (largest 1.60 MB)
       reader                         wall s  cpu s peak MB  wall/released        range
       released algorithm (json)        3.34   3.45     538          1.00x
       (limr start-up alone)            0.21   0.32      55
       limr score --format openrlhf     1.22   1.93     104          0.39x    0.37-0.49
       limr score --format verl         1.28   2.01     102          0.41x    0.34-0.42
       limr score --format trl          0.82   0.96     123          0.26x    0.24-0.27
       limr score --format nemo-rl      1.35   2.17     128          0.43x    0.40-0.43
       limr score --format prime-rl     1.87   3.13     110          0.56x    0.54-0.62  FAIL
       10x the logs (openrlhf, 1,494 MB, 210 epochs scored): 10.58 s wall, 17.55 s cpu, peak 186 MB
       10x the logs (verl, 2,000 MB, 210 epochs scored): 9.80 s wall, 16.41 s cpu, peak 183 MB

Every format scores the same 8,520 prompts as the released algorithm (the released JSON lists to
within 1.1e-16). Before this bench's readers, `limr score` took 5.50 s and 263 MB on the same
logs. Each round runs every reader once, so a host whose speed drifts slows them alike; the
verdict is the median of the rounds' ratios. Five-round runs the same day: prime-rl 0.51x
(0.50-0.59) and 0.57x (0.42-0.73), the others 0.26-0.43x. prime-rl misses the half: its
episode records hold the same rollouts in 1.8x the bytes, parsing is the cost, and its CPU time
is only 9-12% below the released algorithm's (the two cores give the rest). Measured on these
files: pyarrow's tokenising alone (a schema of one boolean) is ~72% of the full parse; DuckDB's
reader (yyjson) took 1.45 s for the 168 files on two threads, pyarrow 1.2-1.7 s; msgspec and
orjson hold the GIL and were 2-7x slower on one file; smaller pyarrow blocks or pyarrow's own
threads, the same.
TRL's parquet is read through ``ParquetFile`` (``pq.read_table`` imports pyarrow.dataset and
pandas: 0.5 s of start-up). limr's bytecode is compiled first, as pip does when it installs a
wheel (this sandbox sets PYTHONDONTWRITEBYTECODE). The peak is the interpreter with numpy and
pyarrow (55 MB) plus what grows with the cells (prompts x epochs: +80 MB for 10x the epochs);
pyarrow's own peak is about 1.7x the largest file per worker (tests/test_importers.py checks that
it does not grow with the number of files).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import limr.selectors  # noqa: E402, F401  (registers the selectors)
from limr.history import RewardHistory  # noqa: E402
from limr.registry import SELECTORS  # noqa: E402


def synthetic_history(prompts: int, epochs: int, missing: float, seed: int = 0) -> RewardHistory:
    rng = np.random.default_rng(seed)
    n = np.full((prompts, epochs), 8, dtype=np.int64)
    n[rng.random((prompts, epochs)) < missing] = 0
    start = rng.random((prompts, 1), dtype=np.float32) * 0.7
    gain = rng.random((prompts, 1), dtype=np.float32) * 0.5
    p = np.clip(start + gain * np.linspace(0.0, 1.0, epochs, dtype=np.float32)[None, :], 0, 1)
    noise = rng.integers(-1, 2, size=(prompts, epochs), dtype=np.int8)
    n_correct = np.clip(np.rint(p * 8).astype(np.int64) + noise, 0, n)  # 0 where n == 0
    reward_sum = n_correct - 0.5 * (n - n_correct)
    ids = [f"q{i:07d}" for i in range(prompts)]
    return RewardHistory.from_arrays(ids, n, n_correct, reward_sum)


def time_selector(name: str, history, repeat: int, **kwargs) -> dict:
    selector = SELECTORS.build(name, **kwargs)
    walls, cpus = [], []
    sel = None
    for _ in range(repeat):
        w, c = time.perf_counter(), time.process_time()
        sel = selector.select(history)
        walls.append(time.perf_counter() - w)
        cpus.append(time.process_time() - c)
    assert sel is not None
    return {
        "first": walls[0],
        "median": statistics.median(walls),
        "best": min(walls),
        "cpu_median": statistics.median(cpus),
        "kept": sel.info["n_kept"],
        "scored": sel.info["n_scored"],
    }


def bench_lim(args: argparse.Namespace) -> bool:
    print(
        f"== LIM on {args.prompts:,} prompts x {args.epochs} epochs "
        f"({args.missing:.0%} cells missing; torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, {os.cpu_count()} CPUs, "
        f"load average {os.getloadavg()[0]:.1f})"
    )
    t = time.perf_counter()
    h = synthetic_history(args.prompts, args.epochs, args.missing)
    print(f"   history built in memory in {time.perf_counter() - t:.1f} s (not timed below)")
    rows = [("lim", {}), ("linear", {}), ("pearson", {}), ("learnability", {})]
    rows += [("variance", {"size": 1000}), ("rand", {"size": min(1389, args.prompts)})]
    if args.only_lim:
        rows = rows[:1]
    ok = True
    print(
        f"   {'selector':<13}{'first s':>9}{'median s':>10}{'best s':>8}{'cpu s':>8}  kept/scored"
    )
    for name, kw in rows:
        r = time_selector(name, h, args.repeat, **kw)
        print(
            f"   {name:<13}{r['first']:>9.3f}{r['median']:>10.3f}{r['best']:>8.3f}"
            f"{r['cpu_median']:>8.3f}  {r['kept']:,}/{r['scored']:,}"
        )
        if name == "lim":
            ok = r["median"] < 1.0
    print(f"   LIM median {'<' if ok else '>='} 1 s: {'PASS' if ok else 'FAIL'}")
    return ok


# ---------------------------------------------------------------------------------------------
# Rollout logs of every format, at the released run's size, against the released algorithm

_RELEASED = """
import json, sys, time
from pathlib import Path
import numpy as np

# The released LIM script's algorithm (GAIR-NLP/LIMR, lim/lim_selection.py), restated: every step
# file of the first max_epochs epochs loaded whole with json.load, rollouts grouped by epoch,
# per-epoch accuracy of each prompt (keyed by prompt.strip(); reward == 1 correct; -1 = absent),
# one backward fill, prompts absent after it left out, the mean curve, then the normalised
# squared distance. (The script keys its table by the raw prompt and counts by the stripped one:
# the same when prompts carry no surrounding whitespace; here both are the stripped one.)
folder, spe, max_epochs = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
epochs, prompts, current = [], set(), []
for step in range(1, spe * max_epochs + 1):
    with open(folder / f"step_{step}.json") as f:
        current.extend(json.load(f))
    if step % spe == 0:
        prompts.update(r["prompt"].strip() for r in current)
        epochs.append(current)
        current = []
per_epoch = []
for epoch in epochs:
    acc = {p: [0, 0] for p in prompts}
    for r in epoch:
        a = acc[r["prompt"].strip()]
        a[1] += 1
        a[0] += r["reward"] == 1
    per_epoch.append({p: c / t if t else -1 for p, (c, t) in acc.items()})
curves = {p: [e[p] for e in per_epoch] for p in prompts}
for c in curves.values():
    for k in range(len(c) - 1):
        if c[k] == -1 and c[k + 1] != -1:
            c[k] = c[k + 1]
valid = {p: c for p, c in curves.items() if -1 not in c}
mean = np.mean(list(valid.values()), axis=0)
denom = sum((1 - b) ** 2 for b in mean)
scores = {p: 1 - sum((a - b) ** 2 for a, b in zip(c, mean)) / denom for p, c in valid.items()}
with open(sys.argv[4], "w") as f:
    for p, s in scores.items():
        f.write(json.dumps({"prompt": p, "score": s}) + "\\n")
"""

TEMPLATE = "<|im_start|>user\\nProblem {i}: compute {i} + {j}.<|im_end|>\\n"
"""A prompt as the bench writes it in JSON (the newline escaped)."""


def _released_run(args: argparse.Namespace):
    """(step, [(prompt index, rewards of its samples)]) of a LIMR-like run: every epoch a fresh
    permutation of the prompts in steps of prompts // steps_per_epoch (drop_last)."""
    rng = np.random.default_rng(getattr(args, "seed", 0))
    per_step = args.log_prompts // args.steps_per_epoch
    step = 0
    for _ in range(args.log_epochs):
        order = rng.permutation(args.log_prompts)
        for s in range(args.steps_per_epoch):
            step += 1
            chosen = order[s * per_step : (s + 1) * per_step]
            rewards = rng.choice([1.0, -0.5, -1.0], size=(len(chosen), args.samples))
            yield step, chosen.tolist(), rewards.tolist()


def write_format(fmt: str, folder: Path, args: argparse.Namespace) -> int:
    """Write the run in one format; returns the bytes written."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    response = "x" * args.response_chars
    total = 0
    for step, chosen, rewards in _released_run(args):
        texts = {i: TEMPLATE.format(i=i, j=i * 7 % 113) for i in chosen}
        if fmt == "trl":
            out = folder / "completions"
            out.mkdir(parents=True, exist_ok=True)
            rows = [(i, r) for i, rr in zip(chosen, rewards) for r in rr]
            table = pa.table({
                "step": [step] * len(rows),
                "prompt": [json.loads(f'"{texts[i]}"') for i, _ in rows],
                "completion": [response] * len(rows),
                "accuracy": [r for _, r in rows],
                "id": [f"q{i}" for i, _ in rows],
                "advantage": [0.0] * len(rows),
            })  # fmt: skip
            path = out / f"completions_{step:05d}.parquet"
            pq.write_table(table, path)
            total += path.stat().st_size
            continue
        lines = []
        for i, rr in zip(chosen, rewards):
            t = texts[i]
            for r in rr:
                if fmt == "openrlhf":
                    lines.append(f'{{"prompt": "{t}", "response": "{response}", "reward": {r}}}')
                elif fmt == "verl":
                    lines.append(f'{{"input": "{t}", "output": "{response}", "gts": "{i}", '
                                 f'"score": {r}, "step": {step}, "index": {i}}}')  # fmt: skip
                elif fmt == "nemo-rl":
                    lines.append(f'{{"content": ["{t}", "{response}"], "rewards": {r}, '
                                 f'"input_lengths": 40, "idx": 0}}')  # fmt: skip
                elif fmt == "prime-rl":
                    lines.append(
                        f'{{"id": "e", "task": {{"type": "Math", "key": "q{i}", "hash": "h{i}"}}, '
                        f'"group": {{"id": "g"}}, "ok": true, "traces": [{{"rewards": '
                        f'{{"correct": {{"score": {r}, "weight": 1.0}}}}, "is_completed": true}}]}}'
                    )
        if fmt == "openrlhf":
            path = folder / f"step_{step}.json"
            data = "[" + ", ".join(lines) + "]"
        elif fmt == "verl":
            path, data = folder / f"{step}.jsonl", "\n".join(lines) + "\n"
        elif fmt == "nemo-rl":
            path, data = folder / f"train_data_step{step}.jsonl", "\n".join(lines) + "\n"
        else:
            path = folder / "rollouts" / f"step_{step}" / "train" / "all" / "traces.jsonl"
            data = "\n".join(lines) + "\n"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(data)
        total += len(data)
    return total


_PEAK = """
import atexit, os, runpy, sys

def report():  # the peak RSS of this process since its exec (VmHWM), on stderr's last line
    with open("/proc/self/status") as f:
        kb = next(line.split()[1] for line in f if line.startswith("VmHWM"))
    os.write(2, f"\\nPEAK_KB {kb}\\n".encode())

atexit.register(report)
mode, target, sys.argv = sys.argv[1], sys.argv[2], sys.argv[2:]
if mode == "-m":
    runpy.run_module(target, run_name="__main__", alter_sys=True)
else:
    exec(compile(open(target).read(), target, "exec"), {"__name__": "__main__"})
"""


def write_logs(folder: Path, prompts: int, steps_per_epoch: int, epochs: int, samples: int,
               response_chars: int, seed: int = 0) -> int:  # fmt: skip
    """LIMR/OpenRLHF ``step_N.json`` logs of a run of that shape in ``folder``; returns the
    bytes written (:func:`write_format` for the other formats)."""
    args = argparse.Namespace(log_prompts=prompts, steps_per_epoch=steps_per_epoch,
                              log_epochs=epochs, samples=samples, response_chars=response_chars,
                              seed=seed)  # fmt: skip
    return write_format("openrlhf", Path(folder), args)


def run_once(cmd: list[str], env: dict) -> tuple[float, float, float]:
    """(wall seconds, CPU seconds, peak RSS in MB) of one ``python -m MODULE ...`` or ``python
    FILE ...`` (``cmd`` without the interpreter). The peak is read by the child itself (VmHWM:
    a parent's rusage would count the memory the child had at fork); CPU = the child's user +
    system time, which other load on the machine does not inflate the way it does the wall."""
    t = time.perf_counter()
    mode = ["-m", cmd[1], *cmd[2:]] if cmd[0] == "-m" else ["-f", *cmd]
    proc = subprocess.Popen(
        [sys.executable, "-c", _PEAK, *mode], env=env, stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    err = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - t
    tail = err.strip().splitlines()
    if proc.returncode != 0 or not tail or not tail[-1].startswith("PEAK_KB"):
        raise SystemExit(f"failed: {' '.join(cmd)}\n{err}")
    return wall, usage.ru_utime + usage.ru_stime, int(tail[-1].split()[1]) / 1024


def run_measured(cmd: list[str], env: dict, repeat: int) -> tuple[float, float, float]:
    """(median wall, median CPU, largest peak) of ``repeat`` runs of ``cmd`` (:func:`run_once`)."""
    runs = [run_once(cmd, env) for _ in range(repeat)]
    return (statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs),
            max(r[2] for r in runs))  # fmt: skip


def run_rounds(cmds: dict[str, list[str]], env: dict, repeat: int) -> dict[str, list[tuple]]:
    """Every command once per round, ``repeat`` rounds: a machine whose speed drifts (a shared
    host) then slows the released algorithm and limr's readers alike, and the ratio of two
    runs of one round compares like with like."""
    out: dict[str, list[tuple]] = {name: [] for name in cmds}
    for _ in range(repeat):
        for name, cmd in cmds.items():
            out[name].append(run_once(cmd, env))
    return out


def _scores(path: Path) -> dict[str, float]:
    out = {}
    for line in path.read_text().splitlines():
        rec = json.loads(line)
        out[rec.get("prompt", rec.get("id"))] = rec["score"]
    return out


def bench_logs(args: argparse.Namespace) -> bool:
    spe, epochs = args.steps_per_epoch, args.log_epochs
    rollouts = (args.log_prompts // spe) * spe * epochs * args.samples
    print(
        f"== `limr score` on rollout logs of every format, the released run's size: "
        f"{args.log_prompts:,} prompts x {epochs} epochs x {args.samples} samples "
        f"({rollouts:,} rollouts, {spe} steps an epoch, {args.response_chars}-char responses); "
        f"{args.log_repeat} rounds, each running every reader once; wall = median, start-up "
        f"included; wall/released = median over the rounds (range: lowest-highest); peak = the "
        f"process's "
        f"max RSS ({os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f})"
    )
    root = Path(tempfile.mkdtemp(prefix="limr_bench_logs_"))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    # limr's bytecode, as an installed package has it (pip compiles a wheel's modules when it
    # installs them; into limr/**/__pycache__, ignored by git): with PYTHONDONTWRITEBYTECODE set
    # every timed process would compile limr from source (~60 ms here). The released algorithm
    # is one script importing only the standard library, compiled already.
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(ROOT / "limr")], check=True)
    ok = True
    try:
        folders = {}
        for fmt in args.formats:
            t = time.perf_counter()
            folders[fmt] = root / fmt
            folders[fmt].mkdir()
            size = write_format(fmt, folders[fmt], args)
            files = [p for p in folders[fmt].rglob("*") if p.is_file()]
            largest = max(p.stat().st_size for p in files)
            print(
                f"   wrote {fmt:<9} {size / 2**20:7.1f} MB in {len(files)} files (largest "
                f"{largest / 2**20:.2f} MB) in {time.perf_counter() - t:.1f} s"
            )
        released_out = root / "released.jsonl"
        script = root / "released_lim.py"
        script.write_text(_RELEASED)
        idle = root / "idle.py"
        idle.write_text("import limr.cli.score, limr.importers, pyarrow.json\n")
        cmds = {
            "released": [str(script), str(folders["openrlhf"]), str(spe), str(epochs),
                         str(released_out)],
            "idle": [str(idle)],
        }  # fmt: skip
        for fmt in args.formats:
            cmds[fmt] = ["-m", "limr", "score", str(folders[fmt]), "--format", fmt,
                         "--steps-per-epoch", str(spe), "--max-epochs", str(epochs),
                         "--out", str(root / f"{fmt}.jsonl")]  # fmt: skip
        runs = run_rounds(cmds, env, args.log_repeat)
        released = _scores(released_out)

        def summary(name: str) -> tuple[float, float, float]:
            r = runs[name]
            return (statistics.median(x[0] for x in r), statistics.median(x[1] for x in r),
                    max(x[2] for x in r))  # fmt: skip

        base_wall, base_cpu, base_peak = summary("released")
        idle_wall, idle_cpu, idle_peak = summary("idle")
        print(f"   {'reader':<30}{'wall s':>7}{'cpu s':>7}{'peak MB':>8}{'wall/released':>15}"
              f"{'range':>13}  scores")  # fmt: skip
        print(f"   {'released algorithm (json)':<30}{base_wall:>7.2f}{base_cpu:>7.2f}"
              f"{base_peak:>8.0f}{'1.00x':>15}{'':>13}  {len(released):,} prompts")  # fmt: skip
        print(f"   {'(limr start-up alone)':<30}{idle_wall:>7.2f}{idle_cpu:>7.2f}{idle_peak:>8.0f}")
        for fmt in args.formats:
            wall, cpu, peak = summary(fmt)
            # the ratio of each round's two runs; the verdict is their median
            ratios = sorted(a[0] / b[0] for a, b in zip(runs[fmt], runs["released"]))
            ratio = statistics.median(ratios)
            got = _scores(root / f"{fmt}.jsonl")
            if fmt in ("openrlhf", "verl", "nemo-rl"):  # keyed by prompt text
                keys = {k.strip() for k in released}
                same = set(map(str.strip, got)) == keys or len(got) == len(released)
            else:
                same = len(got) == len(released)
            diff = ""
            if fmt == "openrlhf":
                d = max(abs(got[k] - released[k]) for k in released)
                diff = f", max |diff| {d:.1e}"
            good = ratio <= 0.5
            ok &= good
            spread = f"{ratios[0]:.2f}-{ratios[-1]:.2f}"
            print(
                f"   {'limr score --format ' + fmt:<30}{wall:>7.2f}{cpu:>7.2f}{peak:>8.0f}"
                f"{ratio:>14.2f}x{spread:>13}  {len(got):,} prompts"
                f"{'' if same else ' (DIFFERENT SET)'}{diff}  {'PASS' if good else 'FAIL'} <= 0.5x"
            )
        if args.scale > 1:
            for fmt in ("openrlhf", "verl"):
                if fmt not in folders:
                    continue
                big = root / f"{fmt}_x{args.scale}"
                big.mkdir()
                files = sorted(
                    (p for p in folders[fmt].iterdir() if p.suffix in (".json", ".jsonl")),
                    key=lambda p: int("".join(c for c in p.stem if c.isdigit())),
                )
                n = len(files)
                for k in range(args.scale):  # hard links: the same bytes, later steps
                    for j, p in enumerate(files, 1):
                        name = p.name.replace(str(j), str(k * n + j), 1)
                        os.link(p, big / name)
                out = root / f"{fmt}_x{args.scale}.jsonl"
                cmd = ["-m", "limr", "score", str(big), "--format", fmt,
                       "--steps-per-epoch", str(spe), "--out", str(out)]  # fmt: skip
                wall, cpu, peak = run_measured(cmd, env, 1)
                mb = sum(p.stat().st_size for p in big.iterdir()) / 2**20
                print(
                    f"   {args.scale}x the logs ({fmt}, {mb:,.0f} MB, {epochs * args.scale} "
                    f"epochs scored): {wall:.2f} s wall, {cpu:.2f} s cpu, peak {peak:.0f} MB"
                )
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(f"   limr score <= half the released algorithm's wall time on every format: "
          f"{'PASS' if ok else 'FAIL'}")  # fmt: skip
    return ok


def bench_disk(args: argparse.Namespace) -> None:
    """A history committed epoch by epoch to disk, then loaded and scored."""
    prompts, epochs = args.disk_prompts, args.epochs
    print(
        f"== history on disk: {prompts:,} prompts x {epochs} epochs, one record + commit per "
        "epoch (one rollout per cell)"
    )
    h = synthetic_history(prompts, epochs, args.missing, seed=1)
    ids = h.ids
    folder = Path(tempfile.mkdtemp(prefix="limr_bench_hist_"))
    try:
        disk = RewardHistory(folder)
        present = h.n > 0
        record_s = commit_s = 0.0
        for e in range(epochs):
            rows = torch.nonzero(present[:, e]).squeeze(1)
            correct = (2 * h.n_correct[rows, e] >= h.n[rows, e]).tolist()
            t = time.perf_counter()
            disk.record(
                e, e, [ids[j] for j in rows.tolist()], torch.tensor(correct), torch.ones(len(rows))
            )
            record_s += time.perf_counter() - t
            t = time.perf_counter()
            disk.commit(e)
            commit_s += time.perf_counter() - t
        size = (folder / "rewards.log").stat().st_size
        t = time.perf_counter()
        loaded = RewardHistory.load(folder)
        _ = loaded.n  # densify
        load = time.perf_counter() - t
        assert int(loaded.n.sum()) == int(present.sum())
        t = time.perf_counter()
        SELECTORS.build("lim").select(loaded)
        lim = time.perf_counter() - t
        print(
            f"   {size / 2**20:.1f} MB on disk ({size / int(present.sum()):.1f} bytes per cell); "
            f"record {record_s:.2f} s, commit {commit_s:.2f} s in all; "
            f"load + densify {load:.2f} s; LIM {lim:.2f} s"
        )
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--prompts", type=int, default=1_000_000)
    p.add_argument("--epochs", type=int, default=21)
    p.add_argument("--missing", type=float, default=0.04, help="fraction of absent cells")
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--only-lim", action="store_true", help="time LIM only")
    p.add_argument("--skip-logs", action="store_true")
    p.add_argument("--disk-prompts", type=int, default=200_000, help="0 skips the disk section")
    p.add_argument("--skip-lim", action="store_true", help="skip the 1M x 21 selector timing")
    p.add_argument("--log-prompts", type=int, default=8523, help="the released run: 8,523")
    p.add_argument("--steps-per-epoch", type=int, default=8)
    p.add_argument("--log-epochs", type=int, default=21)
    p.add_argument("--samples", type=int, default=8)
    p.add_argument("--response-chars", type=int, default=0, help="0: 156 MB of step files")
    p.add_argument("--log-repeat", type=int, default=3, help="runs per timing (median)")
    p.add_argument("--scale", type=int, default=10, help="also read N times the logs (1: no)")
    p.add_argument(
        "--formats",
        default="openrlhf,verl,trl,nemo-rl,prime-rl",
        type=lambda s: [f for f in s.split(",") if f],
        help="formats to bench (openrlhf is always written: the released algorithm reads it)",
    )
    args = p.parse_args()
    if "openrlhf" not in args.formats:
        args.formats.insert(0, "openrlhf")
    ok = True
    if not args.skip_lim:
        ok = bench_lim(args)
        if args.disk_prompts:
            bench_disk(args)
    if not args.skip_logs:
        ok = bench_logs(args) and ok
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
