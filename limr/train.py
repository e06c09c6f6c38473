"""``limr train``: one RL run in ``run_dir`` that records the reward history as it goes.

    run_dir/
      config.yaml          the resolved config of the run
      history/             the reward history (per prompt, per epoch), durable at every step
      metrics.jsonl        one line of training metrics per step (the report's curves)
      checkpoints/         step-NNNNNN.ckpt, written atomically, the last few kept
      tb/                  TensorBoard logs
      final/               the trained policy as a Hugging Face folder (safetensors)
      train_summary.json   steps, epochs, time, last metrics, final weights' digest
      ranks/rank-K.json    with several processes: each one's weights digest, KL coefficient and
                           prompt shares

A run killed at any moment continues with ``--resume`` from its newest readable checkpoint.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import re
import shutil
import time
import warnings
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_only

from limr._quiet import quiet
from limr.config import ConfigError, LimrConfig, as_dict, to_yaml
from limr.history import RewardHistory
from limr.models import ValueModel, check_saveable, load_policy, resolve_model_path
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
        # weights_only=False: the whole training state (optimiser, schedulers, loops), which a
        # resume needs; it is all tensors and plain types, so it loads with weights_only=True
        trainer.save_checkpoint(tmp, weights_only=False)
        # DeepSpeed writes a folder of shards from every rank: all must be done before the rename
        trainer.strategy.barrier("limr-checkpoint")
        if trainer.is_global_zero:
            if tmp.is_file():
                with open(tmp, "rb") as f:
                    os.fsync(f.fileno())
            if path.is_dir():
                shutil.rmtree(path)
            os.replace(tmp, path)
            for old in sorted(self.folder.glob("step-*.ckpt"))[: -self.keep]:
                shutil.rmtree(old) if old.is_dir() else old.unlink(missing_ok=True)
        trainer.strategy.barrier("limr-checkpoint-done")


def find_resume_checkpoint(run_dir: Path) -> Path | None:
    """The newest checkpoint that loads; a corrupt or truncated one is reported and skipped."""
    folder = run_dir / CKPT_DIR
    for path in sorted(folder.glob("step-*.ckpt"), reverse=True):
        if path.is_dir():  # a DeepSpeed checkpoint: shards plus a "latest" tag file
            if (path / "latest").is_file():
                return path
            warnings.warn(
                f"checkpoint {path} is incomplete (no 'latest' file); skipped", stacklevel=2
            )
            continue
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


def deepspeed_config(strategy: str, *, micro_batch_size: int, precision: str) -> dict[str, Any]:
    """The DeepSpeed config of ``trainer.strategy`` (``deepspeed_stage_N[_offload]``).

    No ``gradient_accumulation_steps``: Lightning refuses it in a config (manual optimisation
    allows no accumulation of its own), and the module marks the accumulation boundary of each
    mini-batch itself, so DeepSpeed keeps its default of 1 and never rescales our losses.

    ``gradient_clipping`` is 0: one engine holds actor and critic, and DeepSpeed would clip both
    on one norm over the two. The module clips each model's gradient partitions on its own norm
    (``ppo.grad_clip``) before the engine steps (:func:`limr.update.clip_per_model`). float16 is
    refused: DeepSpeed's loss scaler would leave those partitions scaled at that point.
    """
    match = re.fullmatch(r"deepspeed(?:_stage_([123]))?(_offload)?", strategy)
    if match is None:
        raise ConfigError(f"trainer.strategy={strategy}: not a DeepSpeed strategy")
    if precision.startswith("16"):
        raise ConfigError(
            f"trainer.precision={precision} with trainer.strategy={strategy}: float16 is not "
            "supported (loss-scaled gradients would be clipped); use bf16-mixed"
        )
    stage = int(match.group(1) or 2)
    zero: dict[str, Any] = {"stage": stage, "overlap_comm": True, "contiguous_gradients": True}
    if match.group(2):
        zero["offload_optimizer"] = {"device": "cpu", "pin_memory": True}
        if stage == 3:
            zero["offload_param"] = {"device": "cpu", "pin_memory": True}
    if stage == 3:
        # the policy's weights are gathered whole for save_pretrained and the vllm sampler
        zero["stage3_gather_16bit_weights_on_model_save"] = True
    return {
        "train_micro_batch_size_per_gpu": micro_batch_size,
        "gradient_clipping": 0.0,  # per model, by the module
        "bf16": {"enabled": "bf16" in precision},
        "fp16": {"enabled": False},
        "zero_optimization": zero,
        "zero_allow_untested_optimizer": True,
        # torch's AdamW with the optimizer offloaded: slower than DeepSpeedCPUAdam, but correct
        "zero_force_ds_cpu_optimizer": False,
    }


def build_strategy(cfg: LimrConfig) -> Any:
    """Lightning strategy from the config: DeepSpeed ZeRO with our config, gloo DDP on CPUs."""
    strategy = cfg.trainer.strategy
    if strategy.startswith("deepspeed"):
        from lightning.pytorch.strategies import DeepSpeedStrategy

        return DeepSpeedStrategy(
            config=deepspeed_config(
                strategy, micro_batch_size=cfg.ppo.micro_batch_size,
                precision=cfg.trainer.precision,
            )
        )  # fmt: skip
    if strategy == "ddp" and cfg.trainer.accelerator == "cpu":
        from lightning.pytorch.strategies import DDPStrategy

        return DDPStrategy(process_group_backend="gloo")
    return strategy


def build_models(cfg: LimrConfig) -> tuple[torch.nn.Module, Any, Any, ValueModel | None]:
    """The policy, its tokenizer, the frozen reference (None without KL) and the value model
    (None unless ``ppo.estimator == "gae"``), as ``model`` configures them.

    ``model.gradient_checkpointing`` applies to both trained models, the policy and the critic
    (OpenRLHF checkpoints both); the reference runs without gradients and needs none.
    """
    m = cfg.model
    policy, tokenizer = load_policy(
        m.name_or_path, dtype=m.dtype, gguf_file=m.gguf_file, tiny=as_dict(m.tiny)
    )
    needs_ref = cfg.ppo.kl_coef > 0 or cfg.ppo.adaptive_kl
    ref_policy = copy.deepcopy(policy).eval() if needs_ref else None
    value_model = None
    if cfg.ppo.estimator == "gae":
        # model.gguf_file belongs to model.name_or_path, not to another critic
        base = resolve_model_path(
            m.critic_name_or_path or m.name_or_path, tiny=as_dict(m.tiny),
            gguf_file=None if m.critic_name_or_path else m.gguf_file,
        )  # fmt: skip
        value_model = ValueModel.from_pretrained(base, dtype=m.dtype)
    if m.gradient_checkpointing:
        policy.gradient_checkpointing_enable()
        if value_model is not None:
            value_model.gradient_checkpointing_enable()
    return policy, tokenizer, ref_policy, value_model


def train(
    cfg: LimrConfig,
    *,
    resume: bool = False,
    config_text: str | None = None,
    callbacks: list[L.Callback] | None = None,
) -> dict:
    """Run (or resume) one RL run as configured. Returns the summary written to the run folder.

    ``callbacks`` are extra Lightning callbacks (e.g. a step timer), called before limr's own.
    """
    run_dir = Path(cfg.run.run_dir)
    ckpt_dir = run_dir / CKPT_DIR
    existing = sorted(ckpt_dir.glob("step-*.ckpt")) if ckpt_dir.exists() else []
    if existing and not resume:
        raise ConfigError(
            f"{run_dir} already holds a run ({len(existing)} checkpoints): pass --resume to "
            "continue it, or choose another run.run_dir; nothing was overwritten"
        )
    _check_strategy(cfg)
    # no framework noise on the terminal (limr/_quiet.py says what goes); after the strategy
    # check, whose import of DeepSpeed sets DeepSpeed's logger to INFO
    quiet()
    if cfg.trainer.num_threads:
        torch.set_num_threads(cfg.trainer.num_threads)
    L.seed_everything(cfg.run.seed, workers=True, verbose=False)

    # 0. plugins, prompts (a bad data file fails here, before any work)
    import_plugins(cfg.plugins)
    d = cfg.data
    prompts = load_prompts(
        d.train, split=d.split, id_field=d.id_field, problem_field=d.problem_field,
        answer_field=d.answer_field, subset=d.subset, max_prompts=d.max_prompts,
        levels=d.levels,
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
        # the rollout batch is part of the curriculum's floor: an epoch is len(subset) // batch
        # steps, so a smaller subset could not fill one step
        curriculum = SELECTORS.build("curriculum", metric=cfg.selector.metric,
                                     seed=cfg.run.seed,
                                     rollout_batch_size=cfg.ppo.rollout_batch_size,
                                     **kwargs)  # fmt: skip

    # 1. models: policy, frozen reference, value model; a policy that could not be saved at the
    # end (e.g. still quantised) is refused now, before any compute
    policy, tokenizer, ref_policy, value_model = build_models(cfg)
    try:
        check_saveable(policy)
    except ValueError as err:
        raise ConfigError(f"model.name_or_path={cfg.model.name_or_path}: {err}") from None

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

    module = PPOModule(
        policy=policy, tokenizer=tokenizer, reward=reward, prompts=prompts, format_prompt=fmt,
        history=history, sampler=cfg.sampler, ppo=cfg.ppo, ref_policy=ref_policy,
        value_model=value_model, group_filter=group_filter, curriculum=curriculum,
        metrics_path=run_dir / "metrics.jsonl", max_steps=cfg.trainer.max_steps,
        max_epochs=cfg.trainer.max_epochs, seed=cfg.run.seed,
    )  # fmt: skip

    # 2. the Lightning trainer
    from lightning.pytorch.loggers import TensorBoardLogger

    t = cfg.trainer
    checkpoint = AtomicCheckpoint(ckpt_dir, t.checkpoint_every, t.keep_checkpoints)
    trainer = L.Trainer(
        accelerator=t.accelerator, devices=t.devices, num_nodes=t.num_nodes,
        strategy=build_strategy(cfg), precision=t.precision,
        max_epochs=-1, max_steps=-1, logger=TensorBoardLogger(str(run_dir), name="tb", version=""),
        callbacks=[*(callbacks or []), checkpoint, *_progress_bar(t.progress)],
        enable_checkpointing=False,
        log_every_n_steps=t.log_every,
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

    if ckpt_path is not None:
        _say(f"limr train: resuming {run_dir} from {ckpt_path.name}")

    # 3. train
    start = time.time()
    trainer.fit(module, ckpt_path=str(ckpt_path) if ckpt_path else None, weights_only=True)

    # 4. the trained policy as a Hugging Face folder, and a summary
    digests = _rank_report(trainer, module, run_dir)
    summary = {
        "steps": module.rl_step,
        "epochs": module.epoch + 1,
        "prompts": len(prompts),
        "seconds": round(time.time() - start, 2),
        "resumed_from": str(ckpt_path) if ckpt_path else None,
        "metric_last": _last_metrics(run_dir / "metrics.jsonl"),
        "curriculum_schedule": getattr(curriculum, "schedule", None),
        "processes": trainer.world_size,
        "weights_sha256": digests[0] if digests else None,
        "weights_in_sync": all(d == digests[0] for d in digests) if digests else None,
    }
    with _gathered(policy):
        if trainer.is_global_zero:
            policy.save_pretrained(run_dir / "final", safe_serialization=True)
            tokenizer.save_pretrained(run_dir / "final")
            (run_dir / "train_summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def weights_digest(model: torch.nn.Module) -> str:
    """sha256 over ``model``'s state dict (names, dtypes, shapes and bytes, in name order)."""
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        t = t.detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}".encode())
        h.update(t.view(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def _rank_report(trainer: L.Trainer, module: PPOModule, run_dir: Path) -> list[dict]:
    """With several processes, each writes ``ranks/rank-K.json`` (digests of its policy and value
    model, its KL coefficient, and the prompts it rolled out, per step); rank 0 returns every
    rank's digests.

    ``[]`` for one process (nothing to compare) and under ZeRO-3 (no rank holds whole weights).
    """
    world = trainer.world_size
    if world <= 1 or _zero3(trainer):
        return []
    digest = {
        "policy": weights_digest(module.policy),
        "value_model": weights_digest(module.value_model) if module.value_model else None,
    }
    folder = run_dir / "ranks"
    folder.mkdir(parents=True, exist_ok=True)
    record = {"rank": trainer.global_rank, "world": world, "weights_sha256": digest,
              "kl_coef": float(module.kl_ctl.value),
              "rollout_ids": {str(k): v for k, v in module.rollout_ids.items()}}  # fmt: skip
    path = folder / f"rank-{trainer.global_rank}.json"
    path.write_text(json.dumps(record) + "\n", encoding="utf-8")
    trainer.strategy.barrier("limr-rank-report")
    if not trainer.is_global_zero:
        return []
    digests = [
        json.loads((folder / f"rank-{r}.json").read_text())["weights_sha256"] for r in range(world)
    ]
    if any(d != digests[0] for d in digests):
        warnings.warn(f"the processes ended with different weights: {digests}", stacklevel=2)
    return digests


def _zero3(trainer: L.Trainer) -> bool:
    config = getattr(trainer.strategy, "config", None) or {}
    return config.get("zero_optimization", {}).get("stage") == 3


def _gathered(model: torch.nn.Module) -> Any:
    """Gather ZeRO-3 partitioned parameters (on every rank) so that rank 0 can save them whole."""
    import contextlib

    params = list(model.parameters())
    if not any(hasattr(p, "ds_id") for p in params):
        return contextlib.nullcontext()
    import deepspeed

    return deepspeed.zero.GatheredParameters(params, modifier_rank=None)


def _progress_bar(enabled: bool) -> list[L.Callback]:
    """A bar that says "RL steps" (Lightning's would say "Epoch 0/-2": its epochs are not ours)."""
    if not enabled:
        return []
    try:
        from lightning.pytorch.callbacks import RichProgressBar

        class RLProgressBar(RichProgressBar):
            def _get_train_description(self, current_epoch: int) -> str:  # noqa: ARG002
                return "RL steps"

        return [RLProgressBar()]
    except (ImportError, ModuleNotFoundError):  # no rich: Lightning's default bar
        return []


@rank_zero_only
def _say(message: str) -> None:
    """One line on the terminal, from the first process only."""
    print(message, flush=True)


def _last_metrics(path: Path) -> dict:
    if not path.exists():
        return {}
    lines = [ln for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]
    return json.loads(lines[-1]) if lines else {}
