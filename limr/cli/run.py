"""``limr run [CONFIG] [key=value ...]``: the whole LIMR experiment (default: configs/default.yaml
when run from a checkout, else the schema defaults, which are the embedded tiny setup)."""

from __future__ import annotations

import argparse
from pathlib import Path

from limr.config import load_config

DEFAULT_CONFIG = Path("configs/default.yaml")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", nargs="?", help=f"YAML config (default: {DEFAULT_CONFIG})")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="dotlist overrides")


def main(args: argparse.Namespace) -> int:
    from limr.pipeline import Pipeline

    config, overrides = args.config, list(args.overrides)
    if config is not None and "=" in config:
        config, overrides = None, [config, *overrides]
    if config is None and DEFAULT_CONFIG.exists():
        config = str(DEFAULT_CONFIG)
    cfg = load_config(config, overrides)
    Pipeline(cfg).run()
    return 0
