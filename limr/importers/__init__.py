"""Reward histories from the rollout logs other RL frameworks write.

One module per format, each finding its files and reading them into the same rollout records
(:class:`Rollout`; in bulk :class:`RolloutBatch`, columns of one file):

========== ============================================================ =================
format     files                                                        prompt key
========== ============================================================ =================
limr       ``rewards.log`` (+ shards) / ``history/`` / export ``.jsonl`` its ids
openrlhf   ``step_N.json`` / ``.jsonl`` (the LIMR fork, ``train/``)       prompt text
verl       ``{global_step}.jsonl`` (``trainer.rollout_data_dir``)         ``index`` or text
trl        ``completions/completions_{step:05d}.parquet``                 a column or text
nemo-rl    ``train_data_step{N}.jsonl``                                   prompt text
prime-rl   ``rollouts/step_N/train/{all,effective}/traces.jsonl``         ``task.key``
========== ============================================================ =================

:func:`read_history` detects the format (``format="auto"``), reads the files a few at a time on
two threads (pyarrow parses them in C; memory is O(the largest file + prompts x epochs)) and
returns a memory-only :class:`limr.history.RewardHistory` whose ``info`` says what was read and
what was left out. Errors (a truncated line, a missing column, a prompt matching no ``--data``
record) raise :class:`RolloutError` naming ``FILE:LINE`` or the column, with a count.

The source of each format fact is cited in the module that reads it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from limr.history import RewardHistory
from limr.importers import native, nemo_rl, openrlhf, prime_rl, trl, verl
from limr.importers._core import (
    DataIndex,
    HistoryBuilder,
    ImportOptions,
    Rollout,
    RolloutBatch,
    RolloutError,
    normalize_prompt,
    ordered_map,
    progress_bar,
)

__all__ = [
    "FORMATS",
    "DataIndex",
    "ImportOptions",
    "Rollout",
    "RolloutBatch",
    "RolloutError",
    "detect_format",
    "iter_rollouts",
    "normalize_prompt",
    "read_history",
]

_FOREIGN = {m.NAME: m for m in (openrlhf, verl, trl, nemo_rl, prime_rl)}
FORMATS = ("limr", *_FOREIGN)
"""Every format name, as ``--format`` takes it (and ``auto``)."""

EXPECTED = {
    "limr": "a history folder (rewards.log, or a run folder's history/) or a history export",
    "openrlhf": "step_N.json / step_N.jsonl files (or a train/ folder of them)",
    "verl": "{global_step}.jsonl files (trainer.rollout_data_dir)",
    "trl": "completions/completions_NNNNN.parquet files (GRPOConfig log_completions=True)",
    "nemo-rl": "train_data_step{N}.jsonl files",
    "prime-rl": "rollouts/step_N/train/all/traces.jsonl files",
}


def detect_format(path: str | Path) -> str:
    """The format of the logs at ``path``; RolloutError when none, or several, match."""
    path = Path(path)
    if not path.exists():
        raise RolloutError([f"{path}: no such file or folder"])
    found = ["limr"] if native.find(path) is not None else []
    found += [name for name, module in _FOREIGN.items() if module.find(path)]
    if len(found) == 1:
        return found[0]
    if not found:
        raise RolloutError(
            [f"{path}: no rollout logs of a known format here; expected one of:"]
            + [f"  --format {name}: {what}" for name, what in EXPECTED.items()]
        )
    raise RolloutError(
        [f"{path}: holds logs of several formats ({', '.join(found)}); choose with --format"]
    )


def _files(path: Path, fmt: str) -> list[tuple[int, Path]]:
    files = _FOREIGN[fmt].find(path)
    if not files:
        raise RolloutError([f"{path}: no {fmt} logs here (expected {EXPECTED[fmt]})"])
    return files


def _reader(fmt: str, files: list[tuple[int, Path]], opts: ImportOptions) -> tuple[Callable, int]:
    """(function (step, path) -> batches, how many files may be parsed at once)."""
    workers = max(1, opts.workers)
    if fmt == "openrlhf":
        return lambda sp: openrlhf.read_file(sp[0], sp[1], opts), workers
    if fmt == "verl":
        id_field = verl.id_field_of(files, opts)
        return lambda sp: verl.read_file(sp[0], sp[1], opts, id_field), workers
    if fmt == "nemo-rl":
        return lambda sp: nemo_rl.read_file(sp[0], sp[1], opts), workers
    if fmt == "prime-rl":
        return lambda sp: prime_rl.read_file(sp[0], sp[1], opts), workers
    if fmt == "trl":
        reader = trl.Reader(opts)  # compares each file with the one before: in order
        return lambda sp: reader.read_file(sp[0], sp[1]), 1
    raise RolloutError([f"unknown format {fmt!r}; known: {', '.join(FORMATS)}"])


def _suggest_steps_per_epoch(fmt: str, files: list[tuple[int, Path]], opts: Any) -> str:
    """A hint for --steps-per-epoch: the step at which the first prompt comes back."""
    probe = ImportOptions(**{**opts.__dict__, "steps_per_epoch": 1, "max_epochs": None})
    read, _ = _reader(fmt, files, probe)
    seen: set[str] = set()
    for step, path in files[:400]:
        try:
            batches = read((step, path))
        except RolloutError:
            return ""
        keys = {k for b in batches for k in b.keys}
        if keys & seen:
            return (
                f"; the first prompt seen again is at step {step}, so --steps-per-epoch "
                f"{step - files[0][0]} looks right"
            )
        seen |= keys
    return ""


def read_history(
    path: str | Path, format: str = "auto", options: ImportOptions | None = None
) -> RewardHistory:
    """The reward history in the logs at ``path`` (memory only; see :mod:`limr.importers`).

    Args:
        path: a folder (or one file) of logs.
        format: one of :data:`FORMATS`, or ``auto`` to detect it.
        options: steps per epoch, fields, correctness, ``--data`` mapping (:class:`ImportOptions`).
    """
    opts = options or ImportOptions()
    path = Path(path)
    fmt = detect_format(path) if format == "auto" else format
    if fmt == "limr":
        if native.find(path) is None:
            raise RolloutError([f"{path}: no limr history here (expected {EXPECTED['limr']})"])
        return native.read(path)
    if fmt not in _FOREIGN:
        raise RolloutError([f"unknown format {fmt!r}; known: {', '.join(FORMATS)}"])
    files = _files(path, fmt)
    if opts.steps_per_epoch is None:
        raise RolloutError(
            [
                f"{path} holds {fmt} rollout logs ({len(files)} steps): give --steps-per-epoch "
                "(steps per pass over the prompts; LIMR's released run: --steps-per-epoch 8 "
                f"--max-epochs 21){_suggest_steps_per_epoch(fmt, files, opts)}"
            ]
        )
    if opts.steps_per_epoch < 1:
        raise RolloutError([f"--steps-per-epoch must be at least 1, got {opts.steps_per_epoch}"])
    if opts.max_epochs is not None and opts.max_epochs < 1:
        raise RolloutError([f"--max-epochs must be at least 1, got {opts.max_epochs}"])
    wanted = [(s, p) for s, p in files if opts.epoch_of(s) is not None]
    if not wanted:
        raise RolloutError(
            [f"{path}: no step files from step {opts.first_step} within the first "
             f"{opts.max_epochs} epochs (steps {files[0][0]}..{files[-1][0]})"]
        )  # fmt: skip
    data = None
    if opts.data:
        data = DataIndex(opts.data, opts.data_id_field, opts.data_problem_field)
    builder = HistoryBuilder(opts, data)
    read, workers = _reader(fmt, wanted, opts)
    bar = progress_bar(len(wanted), f"limr: reading {fmt} logs", opts.progress)
    try:
        for batches in ordered_map(read, wanted, workers, bar):
            builder.files += 1
            for batch in batches:
                builder.add(batch)
    finally:
        if bar is not None:
            bar.close()
    h = builder.finish(str(path), fmt)
    if data is not None:
        h.info["data"] = opts.data
    return h


def iter_rollouts(
    path: str | Path, format: str = "auto", options: ImportOptions | None = None
) -> Iterator[Rollout]:
    """Every rollout of the logs at ``path``, one :class:`Rollout` at a time, in step order
    (every step: ``steps_per_epoch`` and ``max_epochs`` are not applied here)."""
    opts = options or ImportOptions()
    path = Path(path)
    fmt = detect_format(path) if format == "auto" else format
    if fmt == "limr":
        raise RolloutError([f"{path}: a limr history holds cells, not rollouts"])
    files = _files(path, fmt)
    read, _ = _reader(fmt, files, opts)
    for item in files:
        for batch in read(item):
            yield from batch.rollouts()
