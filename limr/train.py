"""``limr train``: one RL run in ``run_dir`` that records the reward history as it goes.

    run_dir/
      config.yaml          the resolved config of the run
      history/             the reward history (per prompt, per epoch), durable at every step
      metrics.jsonl        one line of training metrics per step (the report's curves)
      checkpoints/         step-NNNNNN.ckpt, written atomically, the last few kept
      tb/                  TensorBoard logs
      final/               the trained policy as a Hugging Face folder (safetensors)
      train_summary.json   steps, epochs, time, last metrics

A run killed at any moment continues with ``--resume`` from its newest readable checkpoint.
"""

from __future__ import annotations

import copy
import json
import os
import time
import warnings
from pathlib import Path
from typing import Any

import lightning as L
import torch

from limr.config import ConfigError, LimrConfig, as_dict, to_yaml
from limr.history import RewardHistory
from limr.models import ValueModel, load_policy, resolve_model_path
from limr.module import PPOModule
from limr.prompts import format_prompt, load_prompts
from limr.registry import REWARDS, SELECTORS, import_plugins

CKPT_DIR = "checkpoints"


class CheckpointError(RuntimeError):
    """No readable checkpoint to resume from."""


class AtomicCheckpoint(L.Callback):
    """Save a checkpoint every ``every`` RL steps and at the end: written to a temporary file and
    renamed, so a kill never leaves a half-written checkpoint under the real name; keeps ``keep``.
    """

    def __init__(self, folder: Path, every: int, keep: int) -> None:
        self.folder = folder
        self.every = max(1, every)
        self.keep = max(1, keep)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:  # noqa: ARG002
        step = pl_module.rl_step
        if step % self.every == 0 or step >= pl_module.total_steps():
            self.save(trainer, step)

    def save(self, trainer: L.Trainer, step: int) -> None:
        path = self.folder / f"step-{step:06d}.ckpt"
        tmp = self.folder / f".step-{step:06d}.ckpt.tmp"
        trainer.save_checkpoint(tmp)
        if trainer.is_global_zero:
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
            os.replace(tmp, path)
            for old in sorted(self.folder.glob("step-*.ckpt"))[: -self.keep]:
                old.unlink(missing_ok=True)


def find_resume_checkpoint(run_dir: Path) -> Path | None:
    """The newest checkpoint that loads; a corrupt or truncated one is reported and skipped."""
    folder = run_dir / CKPT_DIR
    for path in sorted(folder.glob("step-*.ckpt"), reverse=True):
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
            if "limr" not in state or "state_dict" not in state:
                raise ValueError("not a limr checkpoint")
            return path
        except Exception as err:  # noqa: BLE001 - any failure means "unusable", reported below
            warnings.warn(
                f"checkpoint {path} is unreadable ({type(err).__name__}: {err}); "
                "falling back to the previous one",
                stacklevel=2,
            )
    return None


def _check_strategy(cfg: LimrConfig) -> None:
    strategy = cfg.trainer.strategy
    if strategy.startswith("deepspeed"):
        if not torch.cuda.is_available():
            raise ConfigError(
                f"trainer.strategy={strategy}: DeepSpeed needs CUDA GPUs and none is visible. "
                "On a CPU use trainer.strategy=auto (one process) or ddp (several, over gloo)."
            )
        try:
            import deepspeed  # noqa: F401
        except ImportError:
            raise ConfigError(
                f"trainer.strategy={strategy}: DeepSpeed is not installed; pip install -e '.[gpu]'"
            ) from None


def build_strategy(cfg: LimrConfig) -> Any:
    """Lightning strategy from the config; DeepSpeed gets the accumulation of our micro-batches."""
    strategy = cfg.trainer.strategy
    if strategy.startswith("deepspeed"):
        from lightning.pytorch.strategies import DeepSpeedStrategy

        stage = 3 if "3" in strategy else 2
        offload = "offload" in strategy
        return DeepSpeedStrategy(
            stage=stage,
            offload_optimizer=offload,
            offload_parameters=offload and stage == 3,
            config={
                "train_micro_batch_size_per_gpu": cfg.ppo.micro_batch_size,
                "gradient_accumulation_steps": max(1, cfg.grad_accum // cfg.trainer.devices),
                "gradient_clipping": cfg.ppo.grad_clip,
                "bf16": {"enabled": "bf16" in cfg.trainer.precision},
                "zero_optimization": {"stage": stage},
            },
        )
    if strategy == "ddp" and cfg.trainer.accelerator == "cpu":
        from lightning.pytorch.strategies import DDPStrategy

        return DDPStrategy(process_group_backend="gloo")
    return strategy


def train(cfg: LimrConfig, *, resume: bool = False, config_text: str | None = None) -> dict:
    """Run (or resume) one RL run as configured. Returns the summary written to the run folder."""
    run_dir = Path(cfg.run.run_dir)
    ckpt_dir = run_dir / CKPT_DIR
    existing = sorted(ckpt_dir.glob("step-*.ckpt")) if ckpt_dir.exists() else []
    if existing and not resume:
        raise ConfigError(
            f"{run_dir} already holds a run ({len(existing)} checkpoints): pass --resume to "
            "continue it, or choose another run.run_dir; nothing was overwritten"
        )
    _check_strategy(cfg)
    if cfg.trainer.num_threads:
        torch.set_num_threads(cfg.trainer.num_threads)
    L.seed_everything(cfg.run.seed, workers=True, verbose=False)

    # 0. plugins, prompts (a bad data file fails here, before any work)
    import_plugins(cfg.plugins)
    d = cfg.data
    prompts = load_prompts(
        d.train, split=d.split, id_field=d.id_field, problem_field=d.problem_field,
        answer_field=d.answer_field, subset=d.subset, max_prompts=d.max_prompts,
    )  # fmt: skip
    if len(prompts) < cfg.ppo.rollout_batch_size:
        raise ConfigError(
            f"ppo.rollout_batch_size ({cfg.ppo.rollout_batch_size}) is larger than the "
            f"{len(prompts)} training prompts"
        )
    reward = REWARDS.build(cfg.reward.name, **cfg.reward.kwargs)
    group_filter = (
        SELECTORS.build(cfg.ppo.filter, **cfg.ppo.filter_kwargs) if cfg.ppo.filter else None
    )
    curriculum = None
    if cfg.curriculum.enabled:
        kwargs = {k: v for k, v in as_dict(cfg.curriculum).items() if k != "enabled"}
        curriculum = SELECTORS.build("curriculum", metric=cfg.selector.metric,
                                     seed=cfg.run.seed, **kwargs)  # fmt: skip

    # 1. models: policy, frozen reference, value model
    m = cfg.model
    policy, tokenizer = load_policy(
        m.name_or_path, dtype=m.dtype, gguf_file=m.gguf_file, tiny=as_dict(m.tiny)
    )
    if m.gradient_checkpointing:
        policy.gradient_checkpointing_enable()
    needs_ref = cfg.ppo.kl_coef > 0 or cfg.ppo.adaptive_kl
    ref_policy = copy.deepcopy(policy).eval() if needs_ref else None
    value_model = None
    if cfg.ppo.estimator == "gae":
        base = resolve_model_path(m.critic_name_or_path or m.name_or_path, tiny=as_dict(m.tiny))
        value_model = ValueModel.from_pretrained(base, dtype=m.dtype, gguf_file=m.gguf_file)

    for sub in ("", CKPT_DIR):
        (run_dir / sub).mkdir(parents=True, exist_ok=True)
    if config_text is None:
        config_text = to_yaml(cfg)
    if not resume or not (run_dir / "config.yaml").exists():
        (run_dir / "config.yaml").write_text(config_text, encoding="utf-8")
    history = RewardHistory(run_dir / "history")

    def fmt(problem: str) -> str:
        return format_prompt(
            problem, template=d.template, tokenizer=tokenizer, system_prompt=d.system_prompt,
            plain_suffix=d.plain_suffix,
        )  # fmt: skip

    s, p = cfg.sampler, cfg.ppo
    module = PPOModule(
        policy=policy, tokenizer=tokenizer, reward=reward, prompts=prompts, format_prompt=fmt,
        history=history, ref_policy=ref_policy, value_model=value_model,
        group_filter=group_filter, curriculum=curriculum,
        metrics_path=run_dir / "metrics.jsonl", max_steps=cfg.trainer.max_steps,
        max_epochs=cfg.trainer.max_epochs, seed=cfg.run.seed,
        sampler_name=s.name, sampler_kwargs=s.kwargs, n_samples=s.n_samples,
        temperature=s.temperature, top_p=s.top_p, max_new_tokens=s.max_new_tokens, stop=s.stop,
        **{k: v for k, v in as_dict(p).items() if k not in ("filter", "filter_kwargs")},
    )  # fmt: skip

    # 2. the Lightning trainer
    from lightning.pytorch.loggers import TensorBoardLogger

    t = cfg.trainer
    checkpoint = AtomicCheckpoint(ckpt_dir, t.checkpoint_every, t.keep_checkpoints)
    trainer = L.Trainer(
        accelerator=t.accelerator, devices=t.devices, num_nodes=t.num_nodes,
        strategy=build_strategy(cfg), precision=t.precision,
        max_epochs=-1, max_steps=-1, logger=TensorBoardLogger(str(run_dir), name="tb", version=""),
        callbacks=[checkpoint], enable_checkpointing=False, log_every_n_steps=t.log_every,
        enable_progress_bar=t.progress, enable_model_summary=False, num_sanity_val_steps=0,
        use_distributed_sampler=False,
    )  # fmt: skip
    ckpt_path = None
    if resume:
        ckpt_path = find_resume_checkpoint(run_dir)
        if ckpt_path is None and existing:
            raise CheckpointError(f"{run_dir}: no readable checkpoint to resume from")
        if ckpt_path is None:
            history.truncate(-1)  # a run killed before its first checkpoint starts afresh
            (run_dir / "metrics.jsonl").unlink(missing_ok=True)
    elif (run_dir / "metrics.jsonl").exists():
        (run_dir / "metrics.jsonl").unlink()
        history.truncate(-1)

    # 3. train
    start = time.time()
    trainer.fit(module, ckpt_path=str(ckpt_path) if ckpt_path else None, weights_only=True)

    # 4. the trained policy as a Hugging Face folder, and a summary
    summary = {
        "steps": module.rl_step,
        "epochs": module.epoch + 1,
        "prompts": len(prompts),
        "seconds": round(time.time() - start, 2),
        "resumed_from": str(ckpt_path) if ckpt_path else None,
        "metric_last": _last_metrics(run_dir / "metrics.jsonl"),
        "curriculum_schedule": getattr(curriculum, "schedule", None),
    }
    if trainer.is_global_zero:
        policy.save_pretrained(run_dir / "final", safe_serialization=True)
        tokenizer.save_pretrained(run_dir / "final")
        (run_dir / "train_summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def _last_metrics(path: Path) -> dict:
    if not path.exists():
        return {}
    lines = [ln for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]
    return json.loads(lines[-1]) if lines else {}
