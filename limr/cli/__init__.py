"""The ``limr`` command. Each subcommand lives in its own module with ``add_parser`` and ``main``.

Errors the user can fix (config, data, unknown plugin names) print one clear message and exit 2;
commands whose capability is not built yet exit 3.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from limr import __version__

# name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "run": (
        "limr.cli.run",
        "the whole LIMR experiment: FULL run, selections, arms, eval, report",
    ),
    "train": ("limr.cli.train", "one PPO run in run_dir, recording the reward history (--resume)"),
    "eval": ("limr.cli.eval", "evaluate a model on benchmarks (MATH500, AIME24, AMC23, ...)"),
    "score": ("limr.cli.score", "score every prompt of a reward history or rollout logs"),
    "select": ("limr.cli.select", "select the prompts to train on from a history or scores"),
    "reward": ("limr.cli.reward", "score responses against gold answers with a reward plugin"),
    "history": ("limr.cli.history", "export a reward history (per prompt, per epoch)"),
    "data": ("limr.cli.data", "list shipped datasets and check dataset files"),
    "config": ("limr.cli.config", "show the fully resolved config"),
}


QUIET_COMMANDS = ("run", "train", "eval")
"""Commands that run the frameworks: their known noise is silenced (limr/_quiet.py)."""


class UsageError(Exception):
    """A mistake in what the user asked for; printed without a traceback, exit 2."""


class NotBuiltError(Exception):
    """A command whose capability is not built yet; exit 3."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="limr",
        description="Less-is-more RL for maths: record reward curves, select by LIM, train.",
    )
    parser.add_argument("--version", action="version", version=f"limr {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name, (module, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        importlib.import_module(module).add_arguments(p)
        p.add_argument(
            "--plugins",
            default="",
            metavar="MODULES",
            help="comma-separated importable modules that register your own plugins",
        )
        p.set_defaults(_module=module)
    return parser


def main(argv: list[str] | None = None) -> int:
    from limr.config import ConfigError
    from limr.prompts import DataError
    from limr.registry import PluginImportError, RegistryError, import_plugins

    args = build_parser().parse_args(argv)
    if args.command in QUIET_COMMANDS:
        from limr._quiet import quiet

        quiet()
    try:
        modules = [m for m in args.plugins.split(",") if m.strip()]
        if modules:
            import sys as _sys

            _sys.path.insert(0, "")  # modules in the current directory, like `python -m`
            import_plugins([m.strip() for m in modules])
        return int(importlib.import_module(args._module).main(args) or 0)
    except (ConfigError, DataError, RegistryError, PluginImportError, UsageError) as err:
        print(f"limr {args.command}: error: {err}", file=sys.stderr)
        return 2
    except NotBuiltError as err:
        print(f"limr {args.command}: not built yet: {err}", file=sys.stderr)
        return 3
    except KeyboardInterrupt:
        print(f"limr {args.command}: interrupted", file=sys.stderr)
        return 130
