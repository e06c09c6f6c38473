"""TRL GRPOTrainer completion logs: ``{output_dir}/completions/completions_{step:05d}.parquet``.

Format facts (huggingface/trl 1.16, ``trl/trainer/grpo_trainer.py``): with ``log_completions=True``
the trainer keeps the prompts, completions, per-function rewards, ``log_extra`` columns and
advantages of the latest generation batches in deques of ``generation_batch_size`` entries
(``GRPOTrainer.__init__``, ``self._logs``), and every logging step (``GRPOTrainer.log``) writes
them as ``completions_{global_step:05d}.parquet`` with columns ``step``, ``prompt``,
``completion``, one column per reward function (named after the function, ``reward_func_names``),
the ``log_extra`` columns, and ``advantage``. So:

- only the last generation batch of each logging step reaches disk (``logging_steps`` defaults
  to 10 in ``GRPOConfig``): most rollouts are never written. For a complete history record the
  rewards live with :func:`limr.integrations.trl.record_rewards`;
- a logging step with no new generation since the last one (``num_iterations > 1``, or
  ``steps_per_generation > 1``) writes the same rows again: a file whose rows equal the previous
  file's (every column but ``step``) is left out and counted;
- there is no prompt id unless a reward function logged one with ``log_extra`` (give its column
  as ``--id-field``); otherwise prompts are keyed by their text (for a conversational prompt, the
  last user message), to be mapped to dataset ids with ``--data``.

The reward is ``--reward-field`` (one reward column, or several joined by ``+``, summed: TRL's
total reward is their weighted sum and the weights are not in the file), or the only reward
column when there is one. The step is taken from the file name.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from limr.importers._core import (
    ImportOptions,
    RolloutBatch,
    RolloutError,
    arrow_strings,
    encode_keys,
    float_column,
    item_locator,
    steps_from_names,
    text_length,
)

NAME = "trl"
STEP_FILE = re.compile(r"^completions_(\d+)\.parquet$")
FIXED = ("step", "prompt", "completion", "advantage", "image")


def find(path: Path) -> list[tuple[int, Path]] | None:
    if path.is_file():
        return steps_from_names([path], STEP_FILE) or None
    if not path.is_dir():
        return None
    for folder in (path, path / "completions"):
        if folder.is_dir():
            found = steps_from_names(folder.iterdir(), STEP_FILE)
            if found:
                return found
    return None


def _text(column):
    """Prompt or completion texts: strings as they are; conversations (lists of {role,
    content}) as the last user message (prompts) or the joined contents (completions)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
        return column, column
    if pa.types.is_list(column.type) or pa.types.is_large_list(column.type):
        values = column.to_pylist()
        last_user, joined = [], []
        for messages in values:
            messages = messages or []
            texts = [_content(m) for m in messages]
            users = [
                _content(m) for m in messages if isinstance(m, dict) and m.get("role") == "user"
            ]
            last_user.append(users[-1] if users else "\n".join(texts))
            joined.append("".join(texts))
        return arrow_strings(last_user), arrow_strings(joined)
    return pc.cast(column, pa.string()), pc.cast(column, pa.string())


def _content(message) -> str:
    if not isinstance(message, dict):
        return str(message)
    content = message.get("content")
    if isinstance(content, list):  # multimodal parts
        return "".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return "" if content is None else str(content)


def reward_columns(schema, id_field: str | None) -> list[str]:
    """The columns that may be rewards: numeric, not one of TRL's fixed columns."""
    import pyarrow as pa

    out = []
    for f in schema:
        if f.name in FIXED or f.name == id_field:
            continue
        if pa.types.is_floating(f.type) or pa.types.is_integer(f.type):
            out.append(f.name)
    return out


class Reader:
    """Reads the parquet files in step order, dropping a file that repeats the previous one."""

    def __init__(self, opts: ImportOptions) -> None:
        self.opts = opts
        self.previous = None

    def read_file(self, step: int, path: Path) -> list[RolloutBatch]:
        import pyarrow as pa
        import pyarrow.parquet as pq

        opts = self.opts
        try:  # ParquetFile, not read_table: that one imports pyarrow.dataset (~0.5 s)
            parquet = pq.ParquetFile(path)
            schema = parquet.schema_arrow
        except (pa.ArrowInvalid, OSError) as err:
            raise RolloutError([f"{path}: not a readable parquet file ({err})"]) from None
        names = schema.names
        rewards_wanted = (
            [r.strip() for r in opts.reward_field.split("+")] if opts.reward_field else None
        )
        if rewards_wanted is None:
            candidates = reward_columns(schema, opts.id_field)
            if len(candidates) != 1:
                raise RolloutError(
                    [
                        f"{path}: "
                        + (
                            f"{len(candidates)} reward columns ({', '.join(candidates)}): give "
                            "--reward-field NAME, or NAME+NAME to sum them"
                            if candidates
                            else "no reward column (numeric, besides step and advantage)"
                        )
                    ]
                )
            rewards_wanted = candidates
        needed = ["prompt", "completion", *rewards_wanted]
        if opts.id_field:
            needed.append(opts.id_field)
        missing = [c for c in needed if c not in names]
        if missing:
            raise RolloutError(
                [
                    f"{path}: no column {c!r} (columns: {', '.join(names)})"
                    + (
                        " -- a reward function logs an id with log_extra"
                        if c == opts.id_field
                        else ""
                    )
                    for c in missing
                ]
            )
        try:
            table = parquet.read(columns=[c for c in names if c != "image"])
        except (pa.ArrowInvalid, OSError) as err:
            raise RolloutError([f"{path}: not a readable parquet file ({err})"]) from None
        content = table.drop_columns(["step"]) if "step" in table.column_names else table
        previous, self.previous = self.previous, content
        if previous is not None and content.num_rows and previous.equals(content):
            return [
                RolloutBatch(
                    path, step, np.zeros(0, np.int32), [], np.zeros(0), None, "prompt",
                    item_locator(path, "row"), {"rows repeating the previous file": table.num_rows},
                )
            ]  # fmt: skip
        prompts, _ = _text(table.column("prompt"))
        _, completions = _text(table.column("completion"))
        total = None
        for name in rewards_wanted:
            col = table.column(name)
            if not (pa.types.is_floating(col.type) or pa.types.is_integer(col.type)):
                raise RolloutError([f"{path}: column {name!r} is {col.type}, not a number"])
            values = float_column(col)
            total = values if total is None else total + values
        assert total is not None
        if opts.id_field:
            ids = table.column(opts.id_field)
            if ids.null_count:
                rows = np.flatnonzero(ids.is_null().to_numpy(zero_copy_only=False))
                raise RolloutError(
                    [f"{path}:row {rows[0] + 1}: column {opts.id_field!r} is empty "
                     f"({len(rows)} rows)"]
                )  # fmt: skip
            codes, keys = encode_keys(ids)
            kind = "id"
        else:
            codes, keys = encode_keys(prompts)
            kind = "prompt"
        return [
            RolloutBatch(
                path, step, codes, keys, total,
                text_length(completions) if opts.lengths else None, kind,
                item_locator(path, "row"),
            )
        ]  # fmt: skip
