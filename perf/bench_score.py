"""Scoring benchmarks: LIM on 1,000,000 prompts x 21 epochs, and streaming LIMR step logs.

    .venv/bin/python perf/bench_score.py                 # both, the defaults below
    .venv/bin/python perf/bench_score.py --skip-logs     # only the 1M x 21 timing

1. A synthetic history of ``--prompts`` x ``--epochs`` cells (8 rollouts each, ``--missing`` of the
   cells absent as with LIMR's shuffled drop_last epochs, accuracies rising over the run) is built
   in memory; then LIM (and, for reference, the other offline selectors) select from it ``--repeat``
   times. Target: LIM under 1 s per selection.
2. A folder of LIMR/OpenRLHF ``step_N.json`` logs is written and read back by
   :func:`limr.history.read_openrlhf_logs` in a child process, once for the first third of the
   epochs and once for all of them: the peak memory growth stays flat while the bytes read triple
   (memory O(one step's prompts + prompts x epochs), not O(logs)).
Wall and CPU seconds are both printed: on a shared machine the wall time depends on the load.
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


_CHILD = """
import json, sys, time
from limr.history import read_openrlhf_logs

def status():
    out = {}
    for line in open("/proc/self/status"):
        if line.startswith(("VmRSS", "VmHWM")):
            key, value = line.split(":")
            out[key] = int(value.split()[0])
    return out

try:  # reset the peak to the current size (Linux >= 4.0), so the import peak does not count
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
except OSError:
    pass
base = status()["VmRSS"]
t = time.perf_counter()
h = read_openrlhf_logs(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
sec = time.perf_counter() - t
n = h.n
print(json.dumps({"base_kb": base, "peak_kb": status()["VmHWM"], "seconds": sec,
                  "prompts": len(h.ids), "epochs": int(n.shape[1]), "rollouts": int(n.sum())}))
"""


def write_logs(folder: Path, prompts: int, steps_per_epoch: int, epochs: int, samples: int,
               response_chars: int, seed: int = 0) -> int:  # fmt: skip
    rng = np.random.default_rng(seed)
    texts = [
        f"<|im_start|>user\nProblem {i}: compute {i} + {i * 7 % 113}.<|im_end|>\n"
        for i in range(prompts)
    ]
    per_step = prompts // steps_per_epoch
    filler = "x" * response_chars
    total = 0
    for e in range(epochs):
        order = rng.permutation(prompts)
        for s in range(steps_per_epoch):
            chosen = order[s * per_step : (s + 1) * per_step]
            rewards = rng.choice([1.0, -0.5, -1.0], size=(len(chosen), samples))
            rows = [
                {"prompt": texts[i], "response": filler, "reward": float(r)}
                for i, rr in zip(chosen.tolist(), rewards)
                for r in rr.tolist()
            ]
            path = folder / f"step_{e * steps_per_epoch + s + 1}.json"
            data = json.dumps(rows)
            path.write_text(data)
            total += len(data)
    return total


def bench_logs(args: argparse.Namespace) -> None:
    spe, epochs = args.steps_per_epoch, args.log_epochs
    print(
        f"== streaming {spe * epochs} step logs: {args.log_prompts:,} prompts, {spe} steps per "
        f"epoch, {epochs} epochs, {args.samples} samples, {args.response_chars}-char responses"
    )
    folder = Path(tempfile.mkdtemp(prefix="limr_bench_logs_"))
    try:
        t = time.perf_counter()
        total = write_logs(folder, args.log_prompts, spe, epochs, args.samples, args.response_chars)
        step_mb = max(p.stat().st_size for p in folder.iterdir()) / 2**20
        print(
            f"   wrote {total / 2**20:.0f} MB ({step_mb:.1f} MB per step file) in "
            f"{time.perf_counter() - t:.1f} s"
        )
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        print(
            f"   {'epochs read':>11}{'MB read':>9}{'seconds':>9}{'MB/s':>7}{'peak RSS growth':>17}"
        )
        for e in sorted({max(1, epochs // 3), epochs}):
            out = subprocess.run(
                [sys.executable, "-c", _CHILD, str(folder), str(spe), str(e)],
                capture_output=True,
                text=True,
                env=env,
                check=True,
            )
            r = json.loads(out.stdout.strip().splitlines()[-1])
            mb = total / 2**20 * e / epochs
            grow = (r["peak_kb"] - r["base_kb"]) / 1024
            print(
                f"   {e:>11}{mb:>9.0f}{r['seconds']:>9.1f}{mb / r['seconds']:>7.1f}"
                f"{grow:>14.1f} MB   ({r['prompts']:,} prompts x {r['epochs']} epochs, "
                f"{r['rollouts']:,} rollouts)"
            )
    finally:
        shutil.rmtree(folder, ignore_errors=True)


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
    p.add_argument("--log-prompts", type=int, default=2048)
    p.add_argument("--steps-per-epoch", type=int, default=8)
    p.add_argument("--log-epochs", type=int, default=21)
    p.add_argument("--samples", type=int, default=8)
    p.add_argument("--response-chars", type=int, default=400)
    args = p.parse_args()
    ok = bench_lim(args)
    if args.disk_prompts:
        bench_disk(args)
    if not args.skip_logs:
        bench_logs(args)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
