"""``limr data list`` and ``limr data check FILE [FILE ...]``."""

from __future__ import annotations

import argparse

from limr.prompts import SHIPPED, DataError, count_lines, load_prompts, shipped_path


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", choices=["list", "check"], help="list shipped data / check files")
    p.add_argument("files", nargs="*", help="datasets to check (paths or shipped:NAME)")
    p.add_argument("--id-field", default="id")
    p.add_argument("--problem-field", default="problem")
    p.add_argument("--answer-field", default="answer")


def main(args: argparse.Namespace) -> int:
    if args.action == "list":
        print(f"{'name':<12} {'problems':>8}  {'use as':<20} description")
        for name, (_rel, description) in SHIPPED.items():
            n = count_lines(shipped_path(name))
            print(f"{name:<12} {n:>8}  {'shipped:' + name:<20} {description}")
        print("\nsynthetic:arith is the embedded arithmetic task, generated on demand (limr.task).")
        return 0
    if not args.files:
        raise DataError(["limr data check: name at least one file"])
    problems: list[str] = []
    for spec in args.files:
        try:
            prompts = load_prompts(
                spec,
                id_field=args.id_field,
                problem_field=args.problem_field,
                answer_field=args.answer_field,
            )
            print(f"{spec}: ok, {len(prompts)} prompts")
            empty = [p.id for p in prompts if not p.answer.strip()]
            if empty:
                print(
                    f"{spec}: warning: {len(empty)} records have an empty answer and can never "
                    f"be rewarded (ids {', '.join(empty[:5])}{', ...' if len(empty) > 5 else ''})"
                )
        except DataError as err:
            problems.extend(err.problems)
    if problems:
        raise DataError(problems)
    return 0
