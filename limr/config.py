"""The configuration schema: one dataclass per stage plus the root :class:`LimrConfig`.

Precedence: these defaults < a YAML file in ``configs/`` < ``key=value`` arguments on the command
line. :func:`load_config` is the one place that merges them; an unknown key, a wrong type or a
missing value fails there with a :class:`ConfigError` that names the key. Classes get flat
keyword arguments from their builders, except the RL module and its stages (:mod:`limr.module`,
:mod:`limr.experience`, :mod:`limr.update`), which take the ``sampler`` and ``ppo`` sections whole:
those two are frozen, so no stage can change a setting under another.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

QWEN_MATH_SYSTEM_PROMPT = "Please reason step by step, and put your final answer within \\boxed{}."


class ConfigError(ValueError):
    """A configuration problem: names the key and what is wrong. The CLI exits with status 2."""


def _check_choice(section: str, name: str, value: Any, choices: tuple) -> None:
    if value not in choices:
        raise ConfigError(
            f"{section}.{name}: {value!r} is not one of {', '.join(map(str, choices))}"
        )


@dataclass
class TinyModelConfig:
    """The embedded tiny policy, built from this config (no download)."""

    arch: str = "qwen2"
    """Hugging Face architecture of the tiny model: qwen2 or llama."""
    hidden_size: int = 64
    """Width of the tiny model."""
    num_layers: int = 4
    """Transformer blocks."""
    num_heads: int = 4
    """Attention heads."""
    num_kv_heads: int = 2
    """Key/value heads (grouped-query attention)."""
    intermediate_size: int = 256
    """MLP width."""
    max_position: int = 256
    """Longest prompt + response, in characters (the tokenizer is character level)."""
    warmup_steps: int = 3500
    """Supervised warm-up steps that give the base policy partial skill."""
    warmup_batch_size: int = 64
    """Sequences per warm-up step."""
    warmup_lr: float = 3e-3
    """Peak AdamW learning rate of the warm-up."""
    warmup_levels: list[int] = field(default_factory=lambda: [1, 2, 3, 4, 5])
    """Difficulty levels shown during the warm-up."""
    warmup_unfinished_fraction: float = 0.5
    """Fraction of warm-up targets that go on after the boxed answer (the instruction, echoed)
    instead of ending: a base that often does not finish, as the paper's R1-Zero-style bases."""


@dataclass
class ModelConfig:
    """The policy, value model and reference policy."""

    name_or_path: str = "builtin:tiny"
    """Hugging Face model folder or hub name; ``builtin:tiny`` builds the embedded tiny model."""
    gguf_file: str | None = None
    """A GGUF file inside ``name_or_path`` to load with transformers (needs the gguf package)."""
    dtype: str = "float32"
    """Parameter dtype: float32, bfloat16 or float16."""
    critic_name_or_path: str | None = None
    """The value model's base; None = the same as the policy (the paper's setup)."""
    gradient_checkpointing: bool = False
    """Trade compute for memory in policy and value model."""
    tiny: TinyModelConfig = field(default_factory=TinyModelConfig)
    """Size and warm-up of the embedded tiny model (used with ``builtin:tiny``)."""

    def __post_init__(self) -> None:
        _check_choice("model", "dtype", self.dtype, ("float32", "bfloat16", "float16"))


@dataclass
class DataConfig:
    """The training prompts and how they become model input."""

    train: str = "synthetic:arith"
    """Dataset: a .jsonl/.json/.parquet path, ``shipped:NAME`` (see ``limr data list``),
    ``hf:NAME`` (a Hugging Face dataset, local path or hub name) or ``synthetic:arith``."""
    split: str = "train"
    """Split to read from a Hugging Face dataset or the synthetic task."""
    id_field: str = "id"
    """Record field holding the prompt id (its line number is used when absent)."""
    problem_field: str = "problem"
    """Record field holding the problem text."""
    answer_field: str = "answer"
    """Record field holding the gold answer."""
    template: str = "plain"
    """Prompt format: plain (problem + suffix), chat (tokenizer's chat template) or qwen_math."""
    system_prompt: str = QWEN_MATH_SYSTEM_PROMPT
    """System message for the chat templates (the paper's prompt by default)."""
    plain_suffix: str = ""
    """Appended to the problem in the plain template."""
    max_prompts: int | None = None
    """Use only the first N prompts (after the subset filter); None = all."""
    subset: str | None = None
    """A JSONL file of ids (``{"id": ...}`` lines, e.g. from ``limr select``) to train on."""
    levels: list[int] | None = None
    """Train only on prompts of these difficulty levels (their ``level`` field; the paper used
    MATH levels 3-5); None = all. Applied before ``subset`` and ``max_prompts``."""
    max_prompt_tokens: int = 1024
    """Longer prompts are an error (named by id), not silently cut."""

    def __post_init__(self) -> None:
        _check_choice("data", "template", self.template, ("plain", "chat", "qwen_math"))


@dataclass(frozen=True)
class SamplerConfig:
    """Rollout generation (frozen: build a changed copy with ``dataclasses.replace``)."""

    name: str = "hf"
    """Registered sampler: hf (transformers generate, the CPU default) or vllm."""
    kwargs: dict[str, Any] = field(default_factory=dict)
    """Extra keyword arguments for the sampler (e.g. vllm's gpu_memory_utilization)."""
    n_samples: int = 8
    """Samples per prompt."""
    temperature: float = 1.2
    """Sampling temperature (the paper: 1.2)."""
    top_p: float = 1.0
    """Nucleus sampling."""
    max_new_tokens: int = 3072
    """Generation limit; a response cut here is unfinished."""
    stop: list[str] = field(default_factory=list)
    """Extra stop strings (EOS always stops)."""


@dataclass
class RewardConfig:
    """The reward plugin."""

    name: str = "math_rule"
    """Registered reward: math_rule (+1 / -0.5 / -1, the paper's) or correct (1 / 0)."""
    kwargs: dict[str, Any] = field(default_factory=dict)
    """Keyword arguments of the reward (values and switches of each rule check)."""


@dataclass(frozen=True)
class PPOConfig:
    """The RL update (defaults: the paper's PPO run, REFERENCE.md; frozen: build a changed copy
    with ``dataclasses.replace``)."""

    estimator: str = "gae"
    """Advantages: gae (PPO with a value model), grpo, rloo or reinforce_pp (no value model)."""
    rollout_batch_size: int = 1024
    """Prompts per rollout."""
    train_batch_size: int = 256
    """Rollouts per optimiser step."""
    micro_batch_size: int = 4
    """Rollouts per forward/backward pass (gradient accumulation up to train_batch_size)."""
    ppo_epochs: int = 1
    """Passes over each rollout batch."""
    clip_eps: float = 0.2
    """Policy ratio clip (PPO)."""
    value_clip: float = 0.2
    """Value clip around the old values; 0 disables."""
    kl_coef: float = 0.01
    """Coefficient of the per-token KL penalty in the reward."""
    kl_estimator: str = "k1"
    """KL estimator: k1 (log ratio), k2 or k3."""
    adaptive_kl: bool = False
    """Adapt kl_coef towards kl_target (Ziegler et al. 2019)."""
    kl_target: float = 0.01
    """Target KL of the adaptive controller."""
    kl_horizon: int = 10000
    """Horizon of the adaptive controller."""
    gamma: float = 1.0
    """Discount."""
    lam: float = 0.95
    """GAE lambda."""
    whiten_advantages: bool | None = None
    """Normalise advantages to mean 0, std 1 over the batch's tokens; None = yes for gae and
    reinforce_pp, no for grpo and rloo (already normalised per group: whitening again gives a group
    whose samples all agree a non-zero advantage)."""
    entropy_coef: float = 0.0
    """Entropy bonus in the policy loss."""
    old_logprobs: str = "auto"
    """Log-probs of the sampling policy (PPO ratio, KL penalty): sampler (the sampler's own, no
    extra forward), recompute (a forward of the policy after generation, as OpenRLHF) or auto
    (sampler when it runs the policy's own weights in float32, as hf does with model.dtype float32
    and a 32 trainer.precision; recompute otherwise: in bf16 a cached decode differs from the
    training forward, and the first ratio would not be 1)."""
    actor_lr: float = 5e-7
    """Policy learning rate."""
    critic_lr: float = 9e-6
    """Value model learning rate."""
    adam_betas: list[float] = field(default_factory=lambda: [0.9, 0.95])
    """Adam betas."""
    weight_decay: float = 0.0
    """AdamW weight decay."""
    grad_clip: float = 1.0
    """Gradient norm clip, applied to the policy and the value model each on its own norm (both
    norms are logged); 0 disables."""
    warmup_steps: int = 10
    """Linear learning-rate warm-up, in optimiser steps."""
    filter: str | None = None
    """Online group filter applied before the update: dapo or band (None = keep all)."""
    filter_kwargs: dict[str, Any] = field(default_factory=dict)
    """Keyword arguments of the online filter."""

    def __post_init__(self) -> None:
        _check_choice("ppo", "estimator", self.estimator, ("gae", "grpo", "rloo", "reinforce_pp"))
        _check_choice("ppo", "kl_estimator", self.kl_estimator, ("k1", "k2", "k3"))
        _check_choice("ppo", "old_logprobs", self.old_logprobs, ("auto", "sampler", "recompute"))
        if len(self.adam_betas) != 2:
            raise ConfigError(f"ppo.adam_betas: needs two values, got {list(self.adam_betas)}")


@dataclass
class SelectorConfig:
    """Offline selection from a reward history (``limr select`` and the pipeline's arms)."""

    name: str = "lim"
    """Registered selector: lim, linear, rand, variance, learnability, ..."""
    threshold: float | None = None
    """Keep prompts scoring at least this; None = the selector's default (LIM 0.6)."""
    size: int | None = None
    """Keep the top N instead of thresholding (rand: the subset size)."""
    metric: str = "accuracy"
    """Per-epoch value of a prompt: accuracy (fraction correct) or reward (mean raw reward)."""
    kwargs: dict[str, Any] = field(default_factory=dict)
    """Extra keyword arguments of the selector."""

    def __post_init__(self) -> None:
        _check_choice("selector", "metric", self.metric, ("accuracy", "reward"))
        if self.threshold is not None and self.size is not None:
            raise ConfigError(
                f"selector.threshold ({self.threshold}) and selector.size ({self.size}): give one "
                "of them, not both (threshold keeps the prompts scoring at least it, size the top "
                "N); set the other to null"
            )
        if self.size is not None and self.size < 1:
            raise ConfigError(f"selector.size: must be at least 1, got {self.size}")


@dataclass
class CurriculumConfig:
    """The dynamic-threshold curriculum (used when ``enabled``)."""

    enabled: bool = False
    """Reselect the training prompts during training from the reward history so far."""
    warmup_epochs: int = 1
    """Epochs on all prompts before the first selection."""
    update_every: int = 1
    """Reselect every this many epochs."""
    base_threshold: float = 0.6
    """LIM threshold when the model's mean accuracy is 0.5."""
    threshold_slope: float = 0.4
    """How fast the threshold rises with the model's mean accuracy."""
    max_threshold: float = 0.9
    """Upper bound of the threshold."""
    mastered_accuracy: float = 0.95
    """Prompts at or above this accuracy in the last epoch are dropped as mastered."""
    min_fraction: float = 0.1
    """Floor on the subset size, as a fraction of all prompts."""
    min_size: int = 8
    """Floor on the subset size, in prompts."""
    revisit_after: int = 0
    """Unmastered prompts left out this many epochs rejoin the subset (0 = never)."""


@dataclass
class EvalConfig:
    """Benchmark evaluation (``limr eval`` and the pipeline)."""

    benchmarks: list[str] = field(default_factory=lambda: ["math500", "aime24", "amc23"])
    """Registered benchmarks to evaluate."""
    n_samples: int | None = None
    """Samples per problem; None = each benchmark's protocol (MATH500 1, AIME24/AMC23 4)."""
    temperature: float | None = None
    """None = the benchmark's protocol (MATH500 greedy, others 0.4)."""
    top_p: float | None = None
    """None = the benchmark's protocol."""
    max_new_tokens: int | None = None
    """None = the benchmark's protocol (3,072)."""
    batch_size: int = 64
    """Prompts per generate call."""
    max_problems: int | None = None
    """Evaluate only the first N problems of each benchmark (quick checks)."""
    every_steps: int = 0
    """Evaluate during training every this many steps; 0 = only at the end."""
    curve_max_problems: int | None = None
    """Problems of each benchmark in those evaluations during training (the held-out curve);
    None = as ``max_problems``. The final evaluation always uses ``max_problems``."""
    unboxed: str | None = None
    """Where the answer of a response without ``\\boxed{}`` comes from: None (it has none: the
    benchmarks' protocol) or ``last_number`` (as ``reward.kwargs.unboxed``, for a model too small
    to box; reported accuracies are then not the paper's protocol)."""

    def __post_init__(self) -> None:
        if self.unboxed not in (None, "last_number"):
            raise ConfigError(f"eval.unboxed: {self.unboxed!r} is not one of null, last_number")


@dataclass
class TrainerConfig:
    """Lightning Trainer and run length."""

    accelerator: str = "auto"
    """cpu, gpu or auto."""
    devices: int = 1
    """Processes (GPUs, or CPU processes with the ddp strategy) per node."""
    num_nodes: int = 1
    """Machines (torchrun or SLURM sets the rest)."""
    strategy: str = "auto"
    """auto, ddp (gloo on CPU), deepspeed_stage_2, deepspeed_stage_3, ..."""
    precision: str = "32-true"
    """Lightning precision: 32-true, bf16-mixed, bf16-true (16-mixed is refused: its loss
    scaling would have ppo.grad_clip clip scaled gradients)."""
    max_steps: int = 120
    """RL steps (one rollout batch and its update each)."""
    max_epochs: int | None = None
    """Stop after this many passes over the prompts; None = max_steps decides."""
    checkpoint_every: int = 10
    """Save a checkpoint every this many steps (and at the end)."""
    keep_checkpoints: int = 2
    """Checkpoints kept on disk."""
    log_every: int = 1
    """Log metrics every this many steps."""
    num_threads: int | None = None
    """torch CPU threads; None = torch's default."""
    progress: bool = True
    """Show progress bars."""

    def __post_init__(self) -> None:
        deepspeed = self.strategy.startswith("deepspeed")
        if self.precision in ("16-mixed", "16") or (deepspeed and self.precision.startswith("16")):
            raise ConfigError(
                f"trainer.precision: {self.precision!r} is not supported: float16 training scales "
                "the loss (a GradScaler, or DeepSpeed's loss scaler), and ppo.grad_clip would "
                "clip the still-scaled gradients. Use bf16-mixed (no loss scaling; what the GPU "
                "configs use) or 32-true"
            )
        if deepspeed and not re.fullmatch(r"deepspeed(_stage_[123](_offload)?)?", self.strategy):
            raise ConfigError(
                f"trainer.strategy: {self.strategy!r} is not a DeepSpeed strategy limr builds; "
                "use deepspeed_stage_1, deepspeed_stage_2, deepspeed_stage_3 (ZeRO-1/2/3) or "
                "deepspeed_stage_2_offload / deepspeed_stage_3_offload (CPU offload)"
            )


@dataclass
class RunConfig:
    """The ``limr run`` pipeline."""

    run_dir: str = "runs/default"
    """Folder of the run: checkpoints, history, eval.json, report.md, TensorBoard logs."""
    seed: int = 42
    """Random seed of everything."""
    seeds: list[int] = field(default_factory=lambda: [42])
    """Seeds of the pipeline's arms (mean and spread in the report when several)."""
    arms: list[str] = field(default_factory=lambda: ["full", "lim", "linear", "rand", "curriculum"])
    """Arms of the pipeline, trained from the base policy."""
    subset_steps: int | None = None
    """RL steps of each subset arm; None = the same as the FULL run."""
    eval_benchmarks: list[str] = field(default_factory=lambda: ["arith"])
    """Benchmarks of the pipeline's evaluation."""
    workers: int | None = None
    """Worker processes that train and evaluate the arms concurrently (logs in run_dir/logs/);
    1 = everything in the ``limr run`` process, one arm after the other. None = one per CPU core
    (``os.sched_getaffinity``) divided by ``trainer.num_threads`` when training on the CPU with
    one process per arm, else 1. Results do not depend on it (each arm has its own seed)."""
    cheap_fraction: float = 0.25
    """The share of the FULL run each cheap-LIM arm may use (issue 11): ``lim_prefix`` scores the
    first ceil(f x E) of FULL's E epochs, ``lim_subsample`` trains a run on a random f of the
    pool for f of FULL's steps, ``lim_probe`` probes FULL's checkpoints up to step f x FULL's."""
    cheap_cut: str = "lim_size"
    """How a cheap arm's selection is cut: ``lim_size`` keeps as many prompts as the LIM arm
    (the top N: overlap and held-out accuracy then compare which prompts, not how many);
    ``threshold`` applies LIM's own cut (``selector.threshold`` / ``selector.size``)."""
    cheap_kwargs: dict[str, Any] = field(default_factory=dict)
    """Extra keyword arguments of a cheap arm's selector, e.g. ``{lim_prefix: {epochs: 2}}``."""

    def __post_init__(self) -> None:
        if not 0.0 < float(self.cheap_fraction) <= 1.0:
            raise ConfigError(f"run.cheap_fraction: must be in (0, 1], got {self.cheap_fraction}")
        if self.cheap_cut not in ("lim_size", "threshold"):
            raise ConfigError(
                f"run.cheap_cut: {self.cheap_cut!r} is not one of lim_size, threshold"
            )
        from limr.cheap_study import CHEAP_ARMS

        bad = [k for k in self.cheap_kwargs if k not in CHEAP_ARMS]
        if bad:
            raise ConfigError(
                f"run.cheap_kwargs: {bad[0]!r} is not a cheap arm; cheap arms: "
                f"{', '.join(CHEAP_ARMS)}"
            )
        if self.workers is not None and self.workers < 1:
            raise ConfigError(
                f"run.workers: must be at least 1 (or null: one per CPU core), got {self.workers}"
            )
        if not self.seeds:
            raise ConfigError("run.seeds: give at least one seed")
        dupes = sorted({s for s in self.seeds if list(self.seeds).count(s) > 1})
        if dupes:
            raise ConfigError(f"run.seeds: {dupes} given more than once")


@dataclass
class LimrConfig:
    """Everything a limr command needs."""

    plugins: list[str] = field(default_factory=list)
    """Importable modules that register user selectors, rewards, benchmarks or samplers."""
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    sampler: SamplerConfig = field(default_factory=SamplerConfig)
    reward: RewardConfig = field(default_factory=RewardConfig)
    ppo: PPOConfig = field(default_factory=PPOConfig)
    selector: SelectorConfig = field(default_factory=SelectorConfig)
    curriculum: CurriculumConfig = field(default_factory=CurriculumConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    run: RunConfig = field(default_factory=RunConfig)

    def __post_init__(self) -> None:
        # Derived sizes are computed here, never stored in YAML.
        self.rollouts_per_step = self.ppo.rollout_batch_size * self.sampler.n_samples
        if self.rollouts_per_step % self.ppo.train_batch_size:
            raise ConfigError(
                f"ppo.train_batch_size ({self.ppo.train_batch_size}) must divide "
                f"ppo.rollout_batch_size x sampler.n_samples ({self.rollouts_per_step})"
            )
        if self.ppo.train_batch_size % self.ppo.micro_batch_size:
            raise ConfigError(
                f"ppo.micro_batch_size ({self.ppo.micro_batch_size}) must divide "
                f"ppo.train_batch_size ({self.ppo.train_batch_size})"
            )
        self.num_minibatches = self.rollouts_per_step // self.ppo.train_batch_size
        self.grad_accum = self.ppo.train_batch_size // self.ppo.micro_batch_size
        if self.ppo.estimator in ("grpo", "rloo") and self.sampler.n_samples < 2:
            raise ConfigError(f"ppo.estimator={self.ppo.estimator} needs sampler.n_samples >= 2")


# ---------------------------------------------------------------------------------------------
# Loading


def _schema_keys(node: Any) -> list[str]:
    return list(node.keys()) if isinstance(node, DictConfig) else []


def _suggest(key: str, candidates: list[str], prefix: str = "") -> str:
    close = difflib.get_close_matches(key, candidates, n=1, cutoff=0.5)
    return f" (did you mean {prefix + close[0]!r}?)" if close else ""


def _check_keys(schema: DictConfig, user: Any, prefix: str, where: str) -> None:
    """Fail on the first user key that the schema lacks, naming the closest valid key."""
    if not isinstance(user, DictConfig):
        return
    for key in user.keys():
        full = f"{prefix}{key}"
        if key not in schema:
            valid = _schema_keys(schema)
            raise ConfigError(
                f"{where}: unknown key {full!r}{_suggest(str(key), valid, prefix)}; "
                "valid keys under "
                f"{prefix.rstrip('.') or 'the root'}: {', '.join(valid)}"
            )
        sub = schema._get_node(key)  # noqa: SLF001 - the node keeps its declared type
        if isinstance(sub, DictConfig) and sub._metadata.object_type not in (None, dict):  # noqa: SLF001
            _check_keys(sub, user[key], f"{full}.", where)


def _to_container(text_or_path: str | Path | None, overrides: list[str]) -> list[tuple[str, Any]]:
    layers: list[tuple[str, Any]] = []
    if text_or_path is not None:
        path = Path(text_or_path)
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        try:
            loaded = OmegaConf.load(path)
        except Exception as err:  # yaml.YAMLError and friends
            raise ConfigError(f"{path}: not valid YAML: {err}") from None
        if loaded is None or isinstance(loaded, ListConfig):
            raise ConfigError(f"{path}: expected a mapping of config sections at the top level")
        layers.append((str(path), loaded))
    bad = [o for o in overrides if not re.match(r"^[A-Za-z_][\w.]*=", o)]
    if bad:
        raise ConfigError(f"command line: expected key=value overrides, got {bad[0]!r}")
    if overrides:
        try:
            layers.append(("command line", OmegaConf.from_dotlist(list(overrides))))
        except OmegaConfBaseException as err:
            raise ConfigError(f"command line: {err}") from None
    return layers


def load_config(path: str | Path | None = None, overrides: list[str] | tuple = ()) -> LimrConfig:
    """Merge the schema defaults, the YAML file at ``path`` and ``key=value`` ``overrides``.

    Raises:
        ConfigError: naming the key, for an unknown key (with the closest valid one), a wrong
            type, a missing value or an inconsistent combination.
    """
    schema = OmegaConf.structured(LimrConfig)
    merged = schema
    # ``???`` in a layer marks a value the user must give in a later layer (merging a ??? keeps
    # the default, so it is tracked here).
    required: set[str] = set()
    for where, layer in _to_container(path, list(overrides)):
        _check_keys(schema, layer, "", where)
        leaves = _leaf_keys(layer)
        required -= {k for k, is_missing in leaves.items() if not is_missing}
        required |= {k for k, is_missing in leaves.items() if is_missing}
        try:
            merged = OmegaConf.merge(merged, layer)
        except OmegaConfBaseException as err:
            raise ConfigError(f"{where}: {_describe(err)}") from None
    missing = sorted(required)
    if missing:
        raise ConfigError(
            f"{', '.join(missing)}: required (??? in the config): give a value, e.g. on the "
            f"command line as {missing[0]}=..."
        )
    try:
        cfg = OmegaConf.to_object(merged)
    except ConfigError:
        raise
    except OmegaConfBaseException as err:
        raise ConfigError(_describe(err)) from None
    assert isinstance(cfg, LimrConfig)
    return cfg


def _leaf_keys(node: Any, prefix: str = "") -> dict[str, bool]:
    """Every leaf key of a layer, mapped to whether it is ``???``."""
    out: dict[str, bool] = {}
    for key in node.keys():
        full = f"{prefix}{key}"
        if OmegaConf.is_missing(node, key):
            out[full] = True
        elif isinstance(node[key], DictConfig):
            out.update(_leaf_keys(node[key], f"{full}."))
        else:
            out[full] = False
    return out


def _describe(err: OmegaConfBaseException) -> str:
    key = getattr(err, "full_key", None)
    msg = str(err).split("\n")[0]
    if isinstance(err.__cause__, ConfigError):
        return str(err.__cause__)
    return f"{key}: {msg}" if key else msg


def to_yaml(cfg: LimrConfig) -> str:
    """The fully resolved config as YAML (derived sizes are left out: they are not settable)."""
    return OmegaConf.to_yaml(OmegaConf.structured(cfg))


def as_dict(obj: Any) -> dict[str, Any]:
    """A stage dataclass as flat keyword arguments for a builder."""
    assert is_dataclass(obj)
    return {f.name: getattr(obj, f.name) for f in fields(obj)}


def check_selector(cfg: LimrConfig) -> None:
    """Fail, naming the key, when ``selector`` names no registered offline selector or its
    ``threshold`` / ``size`` / ``kwargs`` do not fit it (building it is how that is checked).

    Not part of :func:`load_config`: ``plugins`` must be imported first, which this does; ``limr
    run`` calls it before any training, so that a bad selector fails before the FULL run.
    """
    from limr.registry import SELECTORS, RegistryError, import_plugins

    import_plugins(cfg.plugins)
    sc = cfg.selector
    try:
        cls = SELECTORS.get(sc.name)
    except RegistryError as err:
        raise ConfigError(f"selector.name: {err}") from None
    kind = getattr(cls, "kind", "offline")
    if kind != "offline":
        offline = [
            n for n in SELECTORS.names() if getattr(SELECTORS.get(n), "kind", "") == "offline"
        ]
        raise ConfigError(
            f"selector.name: {sc.name!r} is a{'n' if kind[0] in 'aeiou' else ''} {kind} selector, "
            f"not one that selects from a reward history; offline selectors: {', '.join(offline)}"
        )
    try:
        SELECTORS.build(
            sc.name,
            threshold=sc.threshold,
            size=sc.size,
            metric=sc.metric,
            seed=cfg.run.seed,
            **dict(sc.kwargs),
        )
    except (TypeError, ValueError) as err:
        raise ConfigError(
            f"selector: {sc.name!r} cannot be built from selector.threshold={sc.threshold}, "
            f"selector.size={sc.size}, selector.kwargs={dict(sc.kwargs)}: {err}"
        ) from None
