"""``limr history``: not built yet."""

from __future__ import annotations

import argparse

from limr.cli import NotBuiltError


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("args", nargs="*", help="arguments (this command is not built yet)")


def main(args: argparse.Namespace) -> int:
    raise NotBuiltError("`limr history` arrives with a later issue (see the README)")
