"""GPU-only paths the CPU suite cannot reach: DeepSpeed ZeRO-2 steps (ZeRO-3 is in
tests/test_strategy.py), bf16-true training on the GPU, training with the vllm sampler, and the
chunked log-probs' memory on CUDA. All are skipped without CUDA; perf/gpu_check.sh runs them."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path

import pytest
import torch
from test_strategy import HAS_DEEPSPEED, ROOT

from limr.config import load_config

HAS_VLLM = importlib.util.find_spec("vllm") is not None
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


def train_steps(model_dir: Path, tmp_path: Path, steps: int = 3, **extra) -> tuple[dict, Path]:
    """A few steps of ``limr train`` on the tiny model on one GPU (the ZeRO-3 test's settings)."""
    from limr.train import train

    sys.path.insert(0, str(ROOT / "tests"))  # toy_plugins
    data = tmp_path / "p.jsonl"
    rows = [{"id": f"p{i}", "problem": f"{i}+{i}=", "answer": str(2 * i)} for i in range(8)]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    run = tmp_path / "run"
    args = {
        "plugins": "[toy_plugins]", "model.name_or_path": str(model_dir),
        "data.train": str(data), "reward.name": "toy_digit", "sampler.n_samples": 2,
        "sampler.max_new_tokens": 4, "ppo.rollout_batch_size": 2, "ppo.train_batch_size": 4,
        "ppo.micro_batch_size": 2, "ppo.actor_lr": 1e-3, "ppo.critic_lr": 1e-3,
        "ppo.warmup_steps": 0, "trainer.accelerator": "gpu", "trainer.devices": 1,
        "trainer.max_steps": steps, "trainer.checkpoint_every": 2, "trainer.progress": False,
        "run.run_dir": str(run), **extra,
    }  # fmt: skip
    return train(load_config(None, [f"{k}={v}" for k, v in args.items()])), run


def assert_trained(model_dir: Path, run: Path, summary: dict, steps: int = 3) -> None:
    """All steps ran, the metrics are finite, and the saved policy is whole and changed."""
    from safetensors.torch import load_file

    assert summary["steps"] == steps
    metrics = {k: v for k, v in summary["metric_last"].items() if isinstance(v, float)}
    assert metrics and all(math.isfinite(v) for v in metrics.values()), metrics
    start = load_file(model_dir / "model.safetensors")
    end = load_file(run / "final" / "model.safetensors")
    assert start.keys() == end.keys()
    assert all(end[k].shape == start[k].shape for k in start)
    assert any(not torch.equal(start[k].float(), end[k].float()) for k in start)


@pytest.mark.gpu
@needs_cuda
@pytest.mark.skipif(not HAS_DEEPSPEED, reason="needs deepspeed (the gpu extra)")
@pytest.mark.parametrize("stage", [2, 3])
def test_deepspeed_bf16_steps(tiny_model_dir, tmp_path, stage):
    """ZeRO-2 and ZeRO-3: the saved policy is gathered whole (not ZeRO-3's empty partitions),
    trained, and a checkpoint to resume from is written."""
    from limr.train import find_resume_checkpoint

    settings = {"trainer.strategy": f"deepspeed_stage_{stage}", "trainer.precision": "bf16-mixed"}
    summary, run = train_steps(tiny_model_dir, tmp_path, **settings)
    assert_trained(tiny_model_dir, run, summary)
    assert find_resume_checkpoint(run) is not None


@pytest.mark.gpu
@needs_cuda
def test_bf16_true_steps_on_gpu(tiny_model_dir, tmp_path):
    summary, run = train_steps(tiny_model_dir, tmp_path, **{"trainer.precision": "bf16-true"})
    assert_trained(tiny_model_dir, run, summary)


@pytest.mark.gpu
@needs_cuda
@pytest.mark.skipif(not HAS_VLLM, reason="needs vllm (the gpu extra)")
def test_vllm_sampler_trains_on_gpu(tiny_model_dir, tmp_path):
    """The vllm engine samples the rollouts of a run, and follows the policy's updates."""
    summary, run = train_steps(tiny_model_dir, tmp_path, **{
        "sampler.name": "vllm", "sampler.kwargs.gpu_memory_utilization": 0.2,
        "sampler.kwargs.dtype": "float32", "sampler.kwargs.enforce_eager": True,
        "sampler.kwargs.max_model_len": 128})  # fmt: skip
    assert_trained(tiny_model_dir, run, summary)


@pytest.mark.gpu
@needs_cuda
def test_chunked_logprobs_use_less_cuda_memory():
    """On CUDA (where the allocator's peak is exact) one forward + backward of the chunked
    log-probs peaks far below the unchunked one, with the same values and gradients."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from limr.forward import sequence_logprobs

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=49152, hidden_size=128, intermediate_size=256,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         tie_word_embeddings=True)  # fmt: skip
    model = LlamaForCausalLM(config).cuda()
    N, P, T = 8, 64, 1024  # one float32 copy of the response logits: 1.5 GiB
    ids = torch.randint(3, config.vocab_size, (N, P + T), device="cuda")
    mask = torch.ones_like(ids)

    def step(chunk_size):
        model.zero_grad(set_to_none=True)
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        lp, ent = sequence_logprobs(model, ids, mask, T, 0.7, "grad", chunk_size=chunk_size)
        (lp.mean() + 0.1 * ent.mean()).backward()
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated() - base
        grads = [p.grad.clone() for p in model.parameters()]
        return lp.detach(), ent.detach(), grads, peak

    whole = step(0)
    chunked = step(64)
    copy = N * T * config.vocab_size * 4
    assert whole[3] > copy  # the unchunked path holds at least one [N, T, V] float32 copy
    assert chunked[3] < whole[3] / 4, (chunked[3], whole[3])
    torch.testing.assert_close(chunked[0], whole[0], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(chunked[1], whole[1], atol=1e-4, rtol=1e-4)
    for a, b in zip(chunked[2], whole[2]):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-3)
