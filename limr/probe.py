"""An offline pass-ratio@k curve (issue 11, "probe"): k samples per prompt from a few checkpoints,
no training, recorded as a reward history with one "epoch" per checkpoint.

``probe(checkpoints, cfg, out_dir, samples=k)`` loads each checkpoint as a policy (a Hugging Face
model folder such as a run's ``final/``, ``builtin:tiny``, or a limr training checkpoint
``step-NNNNNN.ckpt``, whose policy weights are loaded into ``model.name_or_path``), samples k
responses per prompt of the data with the configured sampler (``sampler.*``: name, temperature,
top_p, max_new_tokens, stop), scores them with the configured reward (``reward.*``), and records
them in ``out_dir/history`` with ``epoch`` = the checkpoint's index and ``step`` = index + 1,
committed after each checkpoint. Every selector (``lim`` over the probe's epochs is the
pass-ratio@k curve's LIM) and ``limr score`` / ``limr select`` / ``limr compare-scores`` read it.

A rerun with the same checkpoints (or more appended) resumes after the last committed one; the
manifest ``out_dir/probe.json`` holds the checkpoints, k, the data and the rollouts per
checkpoint (the probe's cost).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from limr.history import RewardHistory

MANIFEST = "probe.json"


class ProbeError(ValueError):
    """A probe that cannot run as asked (a manifest that disagrees, a bad checkpoint)."""


def _write_json(path: Path, obj: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def load_checkpoint_policy(spec: str, cfg: Any) -> tuple[Any, Any]:
    """(policy, tokenizer) of a model folder / hub name / ``builtin:tiny``, or of a limr
    Lightning checkpoint file (its ``policy.*`` weights into ``cfg.model.name_or_path``)."""
    from limr.config import as_dict
    from limr.models import load_policy

    m = cfg.model
    path = Path(spec)
    if path.is_file() and path.suffix == ".ckpt":
        import torch

        policy, tokenizer = load_policy(
            m.name_or_path, dtype=m.dtype, gguf_file=m.gguf_file, tiny=as_dict(m.tiny)
        )
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
        state = ckpt.get("state_dict", ckpt) if isinstance(ckpt, dict) else None
        if not isinstance(state, dict):
            raise ProbeError(f"{spec}: not a limr checkpoint (no state_dict)")
        weights = {k[len("policy.") :]: v for k, v in state.items() if k.startswith("policy.")}
        if not weights:
            raise ProbeError(f"{spec}: the checkpoint holds no policy.* weights")
        missing, unexpected = policy.load_state_dict(weights, strict=False)
        if unexpected or [k for k in missing if not k.endswith("lm_head.weight")]:
            raise ProbeError(
                f"{spec}: its policy weights do not fit model.name_or_path={m.name_or_path!r} "
                f"({len(missing)} missing, {len(unexpected)} unexpected)"
            )
        return policy, tokenizer
    try:
        gguf_file = m.gguf_file if spec == m.name_or_path else None  # not a trained folder's
        return load_policy(spec, dtype=m.dtype, gguf_file=gguf_file, tiny=as_dict(m.tiny))
    except FileNotFoundError as err:
        raise ProbeError(str(err)) from None


def probe(
    checkpoints: list[str],
    cfg: Any,
    out_dir: str | Path,
    *,
    samples: int,
    batch_size: int | None = None,
    progress: bool = True,
    log: Callable[[str], None] = print,
    load: Callable[[str, Any], tuple[Any, Any]] = load_checkpoint_policy,
) -> dict[str, Any]:
    """Run the probe (see the module docstring); return the manifest.

    Args:
        checkpoints: the checkpoints, in order (epoch k = checkpoints[k]).
        cfg: a :class:`limr.config.LimrConfig` (data, sampler, reward, model, run.seed).
        out_dir: where ``history/`` and ``probe.json`` go.
        samples: k, responses per prompt and checkpoint.
        batch_size: prompts per generate call (default ``eval.batch_size``).
        load: ``(spec, cfg) -> (policy, tokenizer)`` (tests swap it).
    """
    import torch
    from tqdm import tqdm

    from limr.prompts import format_prompt, load_prompts
    from limr.registry import REWARDS, SAMPLERS, import_plugins

    if samples < 1:
        raise ProbeError(f"--samples must be at least 1, got {samples}")
    if not checkpoints:
        raise ProbeError("give at least one checkpoint")
    import_plugins(cfg.plugins)
    d = cfg.data
    prompts = load_prompts(
        d.train, split=d.split, id_field=d.id_field, problem_field=d.problem_field,
        answer_field=d.answer_field, subset=d.subset, max_prompts=d.max_prompts,
        levels=d.levels,
    )  # fmt: skip
    reward = REWARDS.build(cfg.reward.name, **cfg.reward.kwargs)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    manifest_path = out / MANIFEST
    sc = cfg.sampler
    settings = {
        "samples": samples,
        "data": d.train,
        "n_prompts": len(prompts),
        "sampler": sc.name,
        "temperature": sc.temperature,
        "top_p": sc.top_p,
        "max_new_tokens": sc.max_new_tokens,
        "reward": cfg.reward.name,
        "seed": cfg.run.seed,
    }
    manifest: dict[str, Any] = {"checkpoints": list(checkpoints), **settings, "rollouts": []}
    history = RewardHistory(out / "history")
    done = history.committed_step or 0
    if manifest_path.exists():
        old = json.loads(manifest_path.read_text(encoding="utf-8"))
        changed = [k for k, v in settings.items() if old.get(k) != v]
        before = old.get("checkpoints", [])
        if changed or before[:done] != list(checkpoints)[:done]:
            what = ", ".join(changed) if changed else "the checkpoints already probed"
            raise ProbeError(
                f"{out} holds a probe with other settings ({what} differ): choose another --out"
            )
        manifest["rollouts"] = list(old.get("rollouts", []))[:done]
    elif done:
        raise ProbeError(f"{out}/history holds a history without {MANIFEST}: choose another --out")
    if done >= len(checkpoints):
        log(f"limr probe: all {len(checkpoints)} checkpoints already probed in {out}")
        _write_json(manifest_path, manifest)
        return manifest
    if done:
        log(f"limr probe: resuming after checkpoint {done} of {len(checkpoints)}")
    _write_json(manifest_path, manifest)
    bs = batch_size or cfg.eval.batch_size
    n_batches = (len(prompts) + bs - 1) // bs
    bar = tqdm(
        total=(len(checkpoints) - done) * n_batches,
        disable=not progress,
        desc="limr probe",
        unit="batch",
    )
    try:
        for index in range(done, len(checkpoints)):
            spec = checkpoints[index]
            bar.set_description(f"limr probe {index + 1}/{len(checkpoints)}")
            policy, tokenizer = load(spec, cfg)
            policy.eval()
            sampler = SAMPLERS.build(
                sc.name, model=policy, tokenizer=tokenizer, batch_size=bs, **sc.kwargs
            )

            def fmt(problem: str, tokenizer: Any = tokenizer) -> str:
                return format_prompt(
                    problem, template=d.template, tokenizer=tokenizer,
                    system_prompt=d.system_prompt, plain_suffix=d.plain_suffix,
                )  # fmt: skip

            ids: list[str] = []
            correct: list[torch.Tensor] = []
            rewards: list[torch.Tensor] = []
            lengths: list[torch.Tensor] = []
            for b, start in enumerate(range(0, len(prompts), bs)):
                chunk = prompts[start : start + bs]
                rollout = sampler.generate(
                    [fmt(p.problem) for p in chunk],
                    n=samples, temperature=sc.temperature, top_p=sc.top_p,
                    max_new_tokens=sc.max_new_tokens, stop=list(sc.stop),
                    seed=cfg.run.seed * 1_000_003 + index * 1_009 + b,
                )  # fmt: skip
                who = [chunk[i] for i in rollout.prompt_index.tolist()]
                scores = reward(
                    rollout.texts,
                    [p.answer for p in who],
                    rollout.finished.tolist(),
                    [p.extra for p in who],
                )
                ids.extend(p.id for p in who)
                correct.append(scores.correct.bool().cpu())
                rewards.append(scores.rewards.float().cpu())
                lengths.append(rollout.response_mask.sum(-1).cpu())
                bar.update(1)
            history.record(
                index + 1,
                index,
                ids,
                torch.cat(correct),
                torch.cat(rewards),
                torch.cat(lengths),
                epoch_steps=1,
            )
            history.commit(index + 1)
            manifest["rollouts"].append(len(ids))
            _write_json(manifest_path, manifest)
            acc = float(torch.cat(correct).float().mean())
            line = f"limr probe: {spec}: {len(ids)} rollouts, accuracy {acc:.3f}"
            if progress:
                bar.write(line)  # above the bar
            else:
                log(line)
            del policy, sampler
    finally:
        bar.close()
    return manifest
