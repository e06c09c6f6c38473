"""veRL rollout dumps: ``trainer.rollout_data_dir``, one ``{global_step}.jsonl`` per step.

Format facts (volcengine/verl, ``verl/trainer/ppo/ray_trainer.py``,
``RayPPOTrainer._dump_generations`` and ``_log_rollout_data``): with
``trainer.rollout_data_dir`` set, every training step writes
``{rollout_data_dir}/{global_steps}.jsonl`` (steps numbered from 1), one line per rollout with
``input`` (the prompt decoded with ``skip_special_tokens=True``: the chat template's text without
its special tokens), ``output``, ``gts``, ``score`` (the sequence's summed token-level score),
``step``, and every key of the reward's extra info whose list has one value per rollout: a
``compute_score`` that returns a dict (``verl/workers/reward_manager/naive.py``) adds its keys,
so :func:`limr.integrations.verl.record_compute_score` carries the dataset's ``index`` (from
``extra_info``) into the dump. The step is taken from the file name.

Keys: ``--id-field`` (default: ``index`` when the dump has it), else the ``input`` text (use
``--data`` to map it to dataset ids).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

from limr.importers._core import (
    ImportOptions,
    RolloutBatch,
    careful_json_rows,
    encode_keys,
    fail,
    float_column,
    jsonl_locator,
    read_json_rows,
    step_files,
    text_length,
)

NAME = "verl"
STEP_FILE = re.compile(r"^(\d+)\.jsonl$")
PROMPT_FIELD = "input"
REWARD_FIELD = "score"
RESPONSE_FIELD = "output"
DEFAULT_ID_FIELD = "index"


def find(path: Path) -> list[tuple[int, Path]] | None:
    """The step files (sorted by step), or None when ``path`` holds none."""
    return step_files(path, STEP_FILE)


def _first_record(path: Path) -> dict | None:
    with open(path, "rb") as f:
        for line in f:
            if line.strip():
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError:
                    return None
                return rec if isinstance(rec, dict) else None
    return None


def id_field_of(files: list[tuple[int, Path]], opts: ImportOptions) -> str | None:
    """The id field to use: --id-field, else ``index`` when the first dump has it."""
    if opts.id_field:
        return opts.id_field
    for _, path in files[:1]:
        rec = _first_record(path)
        if rec is not None and DEFAULT_ID_FIELD in rec:
            return DEFAULT_ID_FIELD
    return None


def read_file(
    step: int, path: Path, opts: ImportOptions, id_field: str | None
) -> list[RolloutBatch]:
    import pyarrow as pa

    key_field = id_field or PROMPT_FIELD
    reward_field = opts.reward_field or REWARD_FIELD
    key_type = pa.string()
    if id_field:
        rec = _first_record(path)
        value = None if rec is None else rec.get(id_field)
        if isinstance(value, int) and not isinstance(value, bool):
            key_type = pa.int64()
    fields = [(key_field, key_type), (reward_field, pa.float64())]
    if opts.lengths:
        fields.append((RESPONSE_FIELD, pa.string()))
    schema = pa.schema(fields)
    try:
        table = read_json_rows(path, schema)
    except (pa.ArrowInvalid, UnicodeDecodeError):
        return [_careful(step, path, key_field, reward_field, bool(id_field))]
    keys, rewards = table.column(key_field), table.column(reward_field)
    if keys.null_count or rewards.null_count:
        return [_careful(step, path, key_field, reward_field, bool(id_field))]
    codes, distinct = encode_keys(keys)
    return [
        RolloutBatch(
            path, step, codes, distinct, float_column(rewards),
            text_length(table.column(RESPONSE_FIELD)) if opts.lengths else None,
            "id" if id_field else "prompt",
            jsonl_locator(path),
        )
    ]  # fmt: skip


def _careful(step: int, path: Path, key_field: str, reward_field: str, is_id: bool):
    keys: dict[str, int] = {}
    codes: list[int] = []
    rewards: list[float] = []
    lengths: list[float] = []
    problems: list[str] = []
    for where, rec in careful_json_rows(path):
        if isinstance(rec, str):
            problems.append(f"{where}: {rec}")
            continue
        if not isinstance(rec, dict):
            problems.append(f"{where}: not a JSON object")
            continue
        key, reward = rec.get(key_field), rec.get(reward_field)
        if key is None or isinstance(key, (dict, list)):
            problems.append(f"{where}: no {key_field!r} (a prompt text or id) in the rollout")
            continue
        if isinstance(reward, bool) or not isinstance(reward, (int, float)):
            problems.append(f"{where}: {reward_field!r} is {reward!r}, not a number")
            continue
        codes.append(keys.setdefault(str(key), len(keys)))
        rewards.append(float(reward))
        out = rec.get(RESPONSE_FIELD)
        lengths.append(float(len(out)) if isinstance(out, str) else 0.0)
    if problems:
        raise fail(problems)
    return RolloutBatch(
        path, step, np.asarray(codes, np.int32), list(keys), np.asarray(rewards, np.float64),
        np.asarray(lengths, np.float64), "id" if is_id else "prompt", jsonl_locator(path),
    )  # fmt: skip
