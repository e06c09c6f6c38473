"""``limr config show CONFIG [key=value ...]``: print the fully resolved config."""

from __future__ import annotations

import argparse

from limr.config import load_config, to_yaml


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", choices=["show"], help="show: print the resolved config as YAML")
    p.add_argument("config", nargs="?", help="YAML file (default: schema defaults only)")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="dotlist overrides")


def main(args: argparse.Namespace) -> int:
    config, overrides = args.config, list(args.overrides)
    if config is not None and "=" in config:  # `limr config show a.b=1` with no file
        config, overrides = None, [config, *overrides]
    print(to_yaml(load_config(config, overrides)), end="")
    return 0
