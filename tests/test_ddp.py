"""A real two-process ``ddp`` run over gloo on the CPU, through ``python -m limr train``.

It checks the three promises of data-parallel training: every rank's rollouts reach the reward
history (all-gathered to rank 0), each rank trains on its own share of the prompt batch, and both
ranks end with identical weights (rank 1 never saves, so its digest is compared with what rank 0
saved).
"""

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import torch

from limr.history import RewardHistory
from limr.train import weights_digest

ROOT = Path(__file__).resolve().parent.parent
STEPS, BATCH, SAMPLES = 3, 4, 2  # 4 prompts a step, 2 per rank; 8 prompts = 2 steps an epoch


def write_prompts(path: Path, n: int = 8) -> Path:
    with open(path, "w") as f:
        for i in range(n):
            f.write(json.dumps({"id": f"p{i}", "problem": f"{i}+{i}=", "answer": str(2 * i)}))
            f.write("\n")
    return path


def test_two_process_ddp_shards_gathers_and_stays_in_sync(tiny_model_dir, tmp_path):
    data = write_prompts(tmp_path / "p.jsonl")
    run = tmp_path / "run"
    args = {
        "plugins": "[toy_plugins]",
        "model.name_or_path": str(tiny_model_dir),
        "data.train": str(data),
        "reward.name": "toy_digit",
        "sampler.n_samples": SAMPLES,
        "sampler.max_new_tokens": 4,
        "sampler.temperature": 1.0,
        "ppo.estimator": "gae",  # a value model too: both models must stay in sync
        "ppo.rollout_batch_size": BATCH,
        "ppo.train_batch_size": 4,
        "ppo.micro_batch_size": 1,
        "ppo.actor_lr": 1e-3,
        "ppo.critic_lr": 1e-3,
        "ppo.warmup_steps": 0,
        "trainer.accelerator": "cpu",
        "trainer.strategy": "ddp",
        "trainer.devices": 2,
        "trainer.max_steps": STEPS,
        "trainer.checkpoint_every": 100,
        "trainer.progress": False,
        "run.run_dir": str(run),
    }
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests")]),
           "OMP_NUM_THREADS": "1"}  # fmt: skip
    cmd = [sys.executable, "-m", "limr", "train", *(f"{k}={v}" for k, v in args.items())]
    out = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]

    ranks = [json.loads((run / "ranks" / f"rank-{r}.json").read_text()) for r in (0, 1)]
    assert [r["world"] for r in ranks] == [2, 2]

    # sharded: every step, each rank rolled out its own half of the batch, no prompt twice
    for step in range(STEPS):
        a, b = (r["rollout_ids"][str(step)] for r in ranks)
        assert len(a) == len(b) == BATCH // 2
        assert not set(a) & set(b), f"step {step}: both ranks rolled out {set(a) & set(b)}"

    # gathered: the history holds every rollout of both ranks, prompt by prompt
    h = RewardHistory.load(run / "history")
    assert int(h.n.sum()) == STEPS * BATCH * SAMPLES
    seen = Counter(i for r in ranks for ids in r["rollout_ids"].values() for i in ids)
    per_prompt = dict(zip(h.ids, (h.n.sum(1)).tolist()))
    assert per_prompt == {i: c * SAMPLES for i, c in seen.items()}

    # in sync: both ranks' policy and value model are bit-identical after the updates...
    assert ranks[0]["weights_sha256"] == ranks[1]["weights_sha256"]
    summary = json.loads((run / "train_summary.json").read_text())
    assert summary["processes"] == 2 and summary["weights_in_sync"] is True
    # ...and equal to the policy rank 0 saved, which differs from the starting one
    from transformers import AutoModelForCausalLM

    final = AutoModelForCausalLM.from_pretrained(run / "final", dtype=torch.float32)
    start = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    assert weights_digest(final) == ranks[1]["weights_sha256"]["policy"]
    assert weights_digest(start) != ranks[1]["weights_sha256"]["policy"]
