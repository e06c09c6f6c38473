"""``limr run [CONFIG] [key=value ...]``: the whole LIMR experiment (default: configs/default.yaml
when run from a checkout, else the schema defaults, which are the embedded tiny setup).

``--plan`` / ``--jobs-file FILE`` show the run's jobs (each arm's training, the selections, each
evaluation) with what each waits for and the command that runs it alone; ``--only JOB`` runs one
of them here (what a cluster job runs, docs/SCALING.md)."""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

from limr.config import load_config

DEFAULT_CONFIG = Path("configs/default.yaml")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", nargs="?", help=f"YAML config (default: {DEFAULT_CONFIG})")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="dotlist overrides")
    p.add_argument(
        "--only",
        metavar="JOB[,JOB...]",
        help="run only these jobs of the plan, here, one after the other (e.g. full-s42, "
        "lim-s42, eval-lim-s42, report), then stop: what one cluster job runs",
    )
    p.add_argument(
        "--plan",
        action="store_true",
        help="print the jobs, what each waits for and the command that runs it alone; "
        "writes run_dir/config.yaml (which those commands read) and trains nothing",
    )
    p.add_argument(
        "--jobs-file",
        metavar="FILE",
        help="like --plan, and write the jobs as JSON to FILE (for a cluster's job scheduler)",
    )


def plan_rows(pipe) -> list[dict]:
    """The jobs of a run as JSON-able rows, each with the command that runs it alone."""
    cfg = pipe.cfg
    config = str(pipe.root / "config.yaml")
    rows = []
    for job in pipe.plan():
        rows.append(
            {
                "name": job.name,
                "kind": job.kind,
                "arm": job.arm,
                "seed": job.seed,
                "label": job.label,
                "after": list(job.after),
                # training: one arm's processes (trainer.devices x num_nodes); the rest: one
                "processes": cfg.trainer.devices * cfg.trainer.num_nodes
                if job.kind == "train"
                else 1,
                "done": pipe.is_done(job),
                "command": ["limr", "run", config, "--only", job.name],
            }
        )
    evals = [r["name"] for r in rows if r["kind"] == "eval"]
    rows.append(
        {
            "name": "report",
            "kind": "report",
            "arm": None,
            "seed": None,
            "label": "eval.json and report.md",
            "after": evals,
            "processes": 1,
            "done": (pipe.root / "report.md").exists(),
            "command": ["limr", "run", config, "--only", "report"],
        }
    )
    return rows


def _print_plan(pipe, rows: list[dict]) -> None:
    print(f"limr run: {len(rows)} jobs in {pipe.root} (each line: job, what it waits for, command)")
    width = max(len(r["name"]) for r in rows)
    for r in rows:
        after = ", ".join(r["after"]) if r["kind"] != "report" else "every eval-*"
        done = "  [done]" if r["done"] else ""
        print(f"  {r['name']:<{width}}  after: {after or '-'}{done}")
        print(f"  {'':<{width}}  {shlex.join(r['command'])}")


def main(args: argparse.Namespace) -> int:
    from limr.pipeline import Pipeline
    from limr.runner import JobError

    config, overrides = args.config, list(args.overrides)
    if config is not None and "=" in config:
        config, overrides = None, [config, *overrides]
    if config is None and DEFAULT_CONFIG.exists():
        config = str(DEFAULT_CONFIG)
    cfg = load_config(config, overrides)
    pipe = Pipeline(cfg)
    try:
        if args.plan or args.jobs_file:
            pipe._check_same_config()  # noqa: SLF001 - the commands read run_dir/config.yaml
            rows = plan_rows(pipe)
            _print_plan(pipe, rows)
            if args.jobs_file:
                Path(args.jobs_file).write_text(
                    json.dumps({"run_dir": str(pipe.root), "jobs": rows}, indent=2) + "\n",
                    encoding="utf-8",
                )
                print(f"limr run: jobs -> {args.jobs_file}")
            return 0
        if args.only:
            pipe.run_only([n.strip() for n in args.only.split(",") if n.strip()])
            return 0
        pipe.run()
    except JobError as err:
        print(f"limr run: error: {err}", file=sys.stderr)
        return 1
    return 0
