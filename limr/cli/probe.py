"""``limr probe CHECKPOINT... --data DATA --samples K --out DIR [--config CONFIG] [--set k=v]``:
an offline pass-ratio@k curve, no training (issue 11).

Each CHECKPOINT (a model folder such as a run's ``final/``, ``builtin:tiny``, or a training
checkpoint ``checkpoints/step-NNNNNN.ckpt``) samples K responses per prompt of DATA with the
configured sampler and reward; the rollouts go to ``DIR/history`` as a reward history with one
epoch per checkpoint (in the order given), so ``limr score DIR``, ``limr select DIR`` and
``limr compare-scores`` take it. Committed after each checkpoint: a rerun resumes. See
:mod:`limr.probe`.
"""

from __future__ import annotations

import argparse

from limr.cli import UsageError


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoints", nargs="+", metavar="CHECKPOINT", help="models, in epoch order")
    p.add_argument("--data", help="dataset (default: data.train of the config)")
    p.add_argument("--samples", type=int, required=True, metavar="K", help="responses per prompt")
    p.add_argument("--out", required=True, metavar="DIR", help="folder for history/, probe.json")
    p.add_argument("--config", help="YAML config (default: schema defaults)")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="config override, e.g. sampler.temperature=0.6 (repeatable)",
    )
    p.add_argument("--max-prompts", type=int, help="only the first N prompts of DATA")
    p.add_argument("--batch-size", type=int, help="prompts per generate call (eval.batch_size)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def main(args: argparse.Namespace) -> int:
    from limr.config import load_config
    from limr.probe import ProbeError, probe

    overrides = list(args.overrides)
    if args.data:
        overrides.append(f"data.train={args.data}")
    if args.max_prompts is not None:
        overrides.append(f"data.max_prompts={args.max_prompts}")
    cfg = load_config(args.config, overrides)
    if cfg.trainer.num_threads:
        import torch

        torch.set_num_threads(cfg.trainer.num_threads)
    try:
        manifest = probe(
            args.checkpoints,
            cfg,
            args.out,
            samples=args.samples,
            batch_size=args.batch_size,
            progress=cfg.trainer.progress and not args.no_progress,
        )
    except ProbeError as err:
        raise UsageError(str(err)) from None
    total = sum(manifest["rollouts"])
    print(
        f"limr probe: {len(manifest['rollouts'])} checkpoints x {manifest['n_prompts']} prompts "
        f"x {manifest['samples']} samples = {total} rollouts -> {args.out}/history"
    )
    return 0
