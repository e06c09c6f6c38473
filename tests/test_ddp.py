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


def _ddp_train(tiny_model_dir, tmp_path, **extra):
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
        **extra,
    }
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests")]),
           "OMP_NUM_THREADS": "1"}  # fmt: skip
    cmd = [sys.executable, "-m", "limr", "train", *(f"{k}={v}" for k, v in args.items())]
    out = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    return run, [json.loads((run / "ranks" / f"rank-{r}.json").read_text()) for r in (0, 1)]


def test_two_process_ddp_shards_gathers_and_stays_in_sync(tiny_model_dir, tmp_path):
    run, ranks = _ddp_train(tiny_model_dir, tmp_path)
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


def test_ranks_left_with_different_rows_keep_one_kl_coefficient(tiny_model_dir, tmp_path):
    # rank 0 keeps both its groups every step; rank 1 one group, then none, then one. The
    # adaptive KL coefficient follows the batch's KL, not each rank's own: it stays identical
    # (it did not: each rank updated it from its local KL, and a rank without rows from 0).
    # k2 >= 0 and a tiny target: once the policy has moved, any rows push the coefficient up
    extra = {"ppo.adaptive_kl": True, "ppo.kl_coef": 0.05, "ppo.kl_estimator": "k2",
             "ppo.kl_target": 1e-9, "ppo.kl_horizon": 10, "ppo.filter": "toy_uneven"}  # fmt: skip
    _, ranks = _ddp_train(tiny_model_dir, tmp_path, **extra)
    assert ranks[0]["kl_coef"] == ranks[1]["kl_coef"] != 0.05
    assert ranks[0]["weights_sha256"] == ranks[1]["weights_sha256"]


# -- the update's shortcuts give the same training as the long way round (one process).
# They live here because the module's own tests (tests/test_train.py) are another owner's file.


def _final_weights(tiny_model_dir, tmp_path, name, switches=None, **extra):
    import lightning as L

    from limr.config import load_config
    from limr.train import train

    sys.path.insert(0, str(ROOT / "tests"))
    data = write_prompts(tmp_path / "p.jsonl")

    class Switch(L.Callback):
        def on_fit_start(self, trainer, module):  # noqa: ARG002
            for k, v in (switches or {}).items():
                assert hasattr(module, k)
                setattr(module, k, v)

    args = {
        "plugins": "[toy_plugins]", "model.name_or_path": str(tiny_model_dir),
        "data.train": str(data), "reward.name": "toy_digit", "sampler.n_samples": 2,
        "sampler.max_new_tokens": 4, "sampler.temperature": 1.0, "ppo.rollout_batch_size": 2,
        "ppo.train_batch_size": 4, "ppo.micro_batch_size": 2, "ppo.actor_lr": 1e-3,
        "ppo.critic_lr": 1e-3, "ppo.warmup_steps": 0, "trainer.accelerator": "cpu",
        "trainer.max_steps": 2, "trainer.progress": False, "run.run_dir": str(tmp_path / name),
        **extra,
    }  # fmt: skip
    summary = train(load_config(None, [f"{k}={v}" for k, v in args.items()]), callbacks=[Switch()])
    from safetensors.torch import load_file

    ckpt = sorted((tmp_path / name / "checkpoints").glob("step-*.ckpt"))[-1]
    critic = torch.load(ckpt, map_location="cpu", weights_only=True)["state_dict"]
    critic = {k: v for k, v in critic.items() if k.startswith("value_model.")}
    return load_file(tmp_path / name / "final" / "model.safetensors"), critic, summary


def _assert_close(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=2e-5, rtol=1e-4, msg=k)


def test_critic_values_from_the_update_pass_equal_a_separate_forward(tiny_model_dir, tmp_path):
    # one epoch, one mini-batch (4 rollouts = train_batch_size): the fused path applies
    p1, c1, s1 = _final_weights(tiny_model_dir, tmp_path, "fused", {"fuse_critic": True})
    p2, c2, s2 = _final_weights(tiny_model_dir, tmp_path, "separate", {"fuse_critic": False})
    _assert_close(p1, p2)
    _assert_close(c1, c2)
    m1, m2 = s1["metric_last"], s2["metric_last"]
    for k in ("train/value_loss", "train/policy_loss", "train/advantage_mean"):
        assert abs(m1[k] - m2[k]) < 1e-5, k


def test_sampler_logprobs_train_like_recomputed_ones(tiny_model_dir, tmp_path):
    p1, c1, _ = _final_weights(tiny_model_dir, tmp_path, "s", **{"ppo.old_logprobs": "sampler"})
    p2, c2, _ = _final_weights(tiny_model_dir, tmp_path, "r", **{"ppo.old_logprobs": "recompute"})
    _assert_close(p1, p2)
    _assert_close(c1, c2)


def test_prompts_run_once_per_group_train_like_whole_rows(tiny_model_dir, tmp_path):
    # micro-batches of 2 = one group of 2 samples: policy, reference and critic run each prompt
    # once; two PPO epochs so that the unfused critic path is exercised too
    on = {"share_prompts": True}
    off = {"share_prompts": False}
    extra = {"ppo.ppo_epochs": 2}
    p1, c1, _ = _final_weights(tiny_model_dir, tmp_path, "shared", on, **extra)
    p2, c2, _ = _final_weights(tiny_model_dir, tmp_path, "whole", off, **extra)
    _assert_close(p1, p2)
    _assert_close(c1, c2)
