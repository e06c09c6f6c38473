"""Strategies: the DeepSpeed config that ``trainer.strategy=deepspeed_stage_N`` builds, gloo DDP on
CPUs, the clear refusal of DeepSpeed without CUDA, and (GPU only) a few ZeRO-3 bf16 steps."""

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from limr.config import ConfigError, load_config
from limr.train import build_strategy, deepspeed_config

ROOT = Path(__file__).resolve().parent.parent
HAS_DEEPSPEED = importlib.util.find_spec("deepspeed") is not None


@pytest.mark.parametrize(
    ("strategy", "stage", "offload"),
    [
        ("deepspeed", 2, False),
        ("deepspeed_stage_1", 1, False),
        ("deepspeed_stage_2", 2, False),
        ("deepspeed_stage_3", 3, False),
        ("deepspeed_stage_2_offload", 2, True),
        ("deepspeed_stage_3_offload", 3, True),
    ],
)
def test_deepspeed_config_per_strategy(strategy, stage, offload):
    c = deepspeed_config(strategy, micro_batch_size=4, precision="bf16-mixed")
    zero = c["zero_optimization"]
    assert zero["stage"] == stage
    assert ("offload_optimizer" in zero) == offload
    assert ("offload_param" in zero) == (offload and stage == 3)
    assert c["train_micro_batch_size_per_gpu"] == 4
    # DeepSpeed would clip actor and critic on one norm over both: the module clips each itself
    assert c["gradient_clipping"] == 0.0
    assert c["bf16"] == {"enabled": True} and c["fp16"] == {"enabled": False}
    # Lightning rejects a config that sets it (the module marks accumulation boundaries itself)
    assert "gradient_accumulation_steps" not in c


def test_deepspeed_precision_follows_the_trainer():
    fp32 = deepspeed_config("deepspeed_stage_3", micro_batch_size=1, precision="32-true")
    assert not fp32["bf16"]["enabled"] and not fp32["fp16"]["enabled"]
    # float16: DeepSpeed's loss scaler would leave scaled gradients for the per-model clip
    for precision in ("16-mixed", "16-true"):
        with pytest.raises(ConfigError, match="trainer.precision.*bf16-mixed"):
            deepspeed_config("deepspeed_stage_2", micro_batch_size=1, precision=precision)


@pytest.mark.parametrize(
    ("precision", "strategy"),
    [("16-mixed", "auto"), ("16", "ddp"), ("16-true", "deepspeed_stage_2")],
)
def test_float16_loss_scaling_is_refused_naming_the_key(precision, strategy):
    with pytest.raises(ConfigError, match=r"trainer\.precision.*bf16-mixed"):
        load_config(None, [f"trainer.precision={precision}", f"trainer.strategy={strategy}"])
    # bf16 needs no loss scaling and stays allowed
    assert load_config(None, ["trainer.precision=bf16-mixed"]).trainer.precision == "bf16-mixed"


def test_a_misspelt_deepspeed_strategy_fails_at_load():
    with pytest.raises(ConfigError, match="deepspeed_stage_3_offload"):
        load_config(None, ["trainer.strategy=deepspeed_stage_4"])


def test_config_builds_the_lightning_strategy():
    from lightning.pytorch.strategies import DDPStrategy

    cfg = load_config(None, ["trainer.strategy=ddp", "trainer.accelerator=cpu"])
    ddp = build_strategy(cfg)
    assert isinstance(ddp, DDPStrategy) and ddp._process_group_backend == "gloo"  # noqa: SLF001
    cfg = load_config(None, ["trainer.strategy=deepspeed_stage_3", "ppo.micro_batch_size=2",
                             "trainer.precision=bf16-mixed"])  # fmt: skip
    if not HAS_DEEPSPEED:
        with pytest.raises(Exception, match="(?i)deepspeed"):
            build_strategy(cfg)
        return
    from lightning.pytorch.strategies import DeepSpeedStrategy

    ds = build_strategy(cfg)
    assert isinstance(ds, DeepSpeedStrategy)
    assert ds.config["zero_optimization"]["stage"] == 3
    assert ds.config["train_micro_batch_size_per_gpu"] == 2 and ds.config["bf16"]["enabled"]


@pytest.mark.skipif(torch.cuda.is_available(), reason="the refusal is for machines without CUDA")
def test_deepspeed_on_cpu_exits_2_with_a_clear_message(tmp_path):
    cmd = [sys.executable, "-m", "limr", "train", "trainer.strategy=deepspeed_stage_3",
           f"run.run_dir={tmp_path / 'run'}"]  # fmt: skip
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})  # fmt: skip
    assert out.returncode == 2, out.stderr[-2000:]
    assert "Traceback" not in out.stderr
    assert "trainer.strategy=deepspeed_stage_3" in out.stderr
    assert "needs CUDA" in out.stderr and "ddp" in out.stderr
    assert not (tmp_path / "run").exists()  # refused before anything was written
