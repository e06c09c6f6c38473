"""``limr train CONFIG [key=value ...] [--resume]``: one RL run in run.run_dir."""

from __future__ import annotations

import argparse
import sys

from limr.config import load_config


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", nargs="?", help="YAML config (default: schema defaults)")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="dotlist overrides")
    p.add_argument("--resume", action="store_true", help="continue the run in run.run_dir")


def main(args: argparse.Namespace) -> int:
    from limr.train import CheckpointError, train
    from limr.update import NonFiniteLossError

    config, overrides = args.config, list(args.overrides)
    if config is not None and "=" in config:
        config, overrides = None, [config, *overrides]
    cfg = load_config(config, overrides)
    try:
        summary = train(cfg, resume=args.resume)
    except (NonFiniteLossError, CheckpointError) as err:
        print(f"limr train: {err}", file=sys.stderr)
        return 1
    print(
        f"limr train: {summary['steps']} steps, {summary['epochs']} epochs, "
        f"{summary['seconds']} s -> {cfg.run.run_dir}"
    )
    return 0
