"""The ``limr`` command. Each subcommand lives in its own module with ``add_parser`` and ``main``.

Errors the user can fix (config, data, unknown plugin names, unreadable histories and rollout
logs) print one clear message and exit 2; commands whose capability is not built yet exit 3.

Only the module of the command being run is imported (``limr score`` imports neither torch nor
Lightning: its start-up is part of its speed).
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
    "history": (
        "limr.cli.history",
        "export, show or import a reward history (per prompt, per epoch)",
    ),
    "data": ("limr.cli.data", "list shipped datasets and check dataset files"),
    "config": ("limr.cli.config", "show the fully resolved config"),
    "compare-scores": ("limr.cli.compare", "how two score files agree: Spearman, Kendall, top-k"),
    "probe": ("limr.cli.probe", "pass-ratio@k of checkpoints, no training, as a reward history"),
}


QUIET_COMMANDS = ("run", "train", "eval")
"""Commands that run the frameworks: their known noise is silenced (limr/_quiet.py)."""


class UsageError(Exception):
    """A mistake in what the user asked for; printed without a traceback, exit 2."""


class NotBuiltError(Exception):
    """A command whose capability is not built yet; exit 3."""


USER_ERRORS: dict[str, tuple[str, ...]] = {
    "limr.config": ("ConfigError",),
    "limr.prompts": ("DataError",),
    "limr.registry": ("RegistryError", "PluginImportError"),
    "limr.history": ("HistoryError",),
}
"""Module -> its exception classes that mean a user mistake (exit 2)."""


def _user_errors() -> tuple[type[BaseException], ...]:
    """The user-error classes of the modules imported so far: one from a module that was never
    imported cannot have been raised, and importing it (limr.prompts imports torch) would
    cost the start-up that ``limr score`` is measured by."""
    found: list[type[BaseException]] = [UsageError]
    for module, names in USER_ERRORS.items():
        mod = sys.modules.get(module)
        if mod is not None:
            found.extend(getattr(mod, n) for n in names if hasattr(mod, n))
    return tuple(found)


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The parser; with ``only``, the arguments of that command alone are built (the other
    commands are listed, their modules not imported; "" builds none of them)."""
    parser = argparse.ArgumentParser(
        prog="limr",
        description="Less-is-more RL for maths: record reward curves, select by LIM, train.",
    )
    parser.add_argument("--version", action="version", version=f"limr {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name, (module, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if only is not None and name != only:
            continue
        importlib.import_module(module).add_arguments(p)
        p.add_argument(
            "--plugins",
            default="",
            metavar="MODULES",
            help="comma-separated importable modules that register your own plugins",
        )
        p.set_defaults(_module=module)
    return parser


def _command_of(argv: list[str]) -> str | None:
    """The command named in ``argv`` (the first word that is one), or None."""
    for word in argv:
        if word in COMMANDS:
            return word
        if not word.startswith("-"):
            return None
    return None


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    command = _command_of(argv)
    args = build_parser(only=command or "").parse_args(argv)
    if args.command in QUIET_COMMANDS:
        from limr._quiet import quiet

        quiet()
    try:
        modules = [m for m in args.plugins.split(",") if m.strip()]
        if modules:
            from limr.registry import import_plugins

            sys.path.insert(0, "")  # modules in the current directory, like `python -m`
            import_plugins([m.strip() for m in modules])
        return int(importlib.import_module(args._module).main(args) or 0)
    except NotBuiltError as err:
        print(f"limr {args.command}: not built yet: {err}", file=sys.stderr)
        return 3
    except KeyboardInterrupt:
        print(f"limr {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as err:
        if isinstance(err, _user_errors()):
            print(f"limr {args.command}: error: {err}", file=sys.stderr)
            return 2
        raise
