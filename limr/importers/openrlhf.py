"""LIMR/OpenRLHF rollout logs: a folder of ``step_N.json`` (or ``step_N.jsonl``) files.

Format facts (from the sources):

- The LIMR fork of OpenRLHF (GAIR-NLP/LIMR, ``openrlhf/trainer/ppo_trainer.py``, ``fit``) writes,
  on rank 0 after every rollout step ``steps`` (numbered from 1),
  ``{samples_save_path}/train/step_{steps}.json``: one JSON list (``json.dump(..., indent=4)``)
  of ``{"prompt", "response", "reward", "response_length"}`` per rollout, ``prompt`` being the
  decoded templated prompt and ``response_length`` its token count.
- The released LIM script (GAIR-NLP/LIMR, ``lim/lim_selection.py``) reads ``step_1.json`` ...
  ``step_{steps_per_epoch * max_epochs}.json``, puts step N in epoch ``(N - 1) //
  steps_per_epoch``, keys prompts by ``prompt.strip()`` and counts ``reward == 1`` as correct.
- Upstream OpenRLHF (OpenRLHF/OpenRLHF) writes no per-sample file; record its rewards live with
  :func:`limr.integrations.openrlhf.record_reward_func`.

The path may be the ``train`` folder or the folder above it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from limr.importers._core import (
    ImportOptions,
    RolloutBatch,
    careful_json_rows,
    encode_keys,
    fail,
    float_column,
    item_locator,
    jsonl_locator,
    read_json_rows,
    steps_from_names,
    text_length,
)

NAME = "openrlhf"
STEP_FILE = re.compile(r"^step_(\d+)\.jsonl?$")
PROMPT_FIELD = "prompt"
REWARD_FIELD = "reward"
RESPONSE_FIELD = "response"
LENGTH_FIELD = "response_length"


def find(path: Path) -> list[tuple[int, Path]] | None:
    """The step files (sorted by step), or None when ``path`` holds none."""
    if path.is_file():
        found = steps_from_names([path], STEP_FILE)
        return found or None
    if not path.is_dir():
        return None
    for folder in (path, path / "train"):
        if folder.is_dir():
            found = steps_from_names(folder.iterdir(), STEP_FILE)
            if found:
                return found
    return None


def read_file(step: int, path: Path, opts: ImportOptions) -> list[RolloutBatch]:
    """The rollouts of one step file."""
    import pyarrow as pa

    key_field = opts.id_field or PROMPT_FIELD
    reward_field = opts.reward_field or REWARD_FIELD
    array = path.suffix == ".json"
    fields = [(key_field, pa.string()), (reward_field, pa.float64())]
    if opts.lengths:
        fields += [(RESPONSE_FIELD, pa.string()), (LENGTH_FIELD, pa.float64())]
    schema = pa.schema(fields)
    try:
        table = read_json_rows(path, schema, array=array)
    except (pa.ArrowInvalid, UnicodeDecodeError):
        return [_careful(step, path, opts, key_field, reward_field, array)]
    keys = table.column(key_field)
    rewards = table.column(reward_field)
    if keys.null_count or rewards.null_count:
        return [_careful(step, path, opts, key_field, reward_field, array)]
    codes, distinct = encode_keys(keys)
    length = None
    if opts.lengths:
        lengths = table.column(LENGTH_FIELD)
        if lengths.null_count == len(lengths):  # no token counts: characters of the response
            length = text_length(table.column(RESPONSE_FIELD))
        else:
            length = float_column(lengths).copy()
            length[np.isnan(length)] = 0.0
    locate = item_locator(path) if array else jsonl_locator(path)
    kind = "id" if opts.id_field else "prompt"
    return [RolloutBatch(path, step, codes, distinct, float_column(rewards), length, kind, locate)]


def _careful(
    step: int, path: Path, opts: ImportOptions, key_field: str, reward_field: str, array: bool
) -> RolloutBatch:
    """The stdlib path: every record checked, every problem named."""
    keys: dict[str, int] = {}
    codes: list[int] = []
    rewards: list[float] = []
    lengths: list[float] = []
    problems: list[str] = []
    bad = 0
    for where, rec in careful_json_rows(path, array):
        if isinstance(rec, str):
            bad += 1
            problems.append(f"{where}: {rec}")
            continue
        try:
            key = rec[key_field]
            reward = float(rec[reward_field])
            if not isinstance(key, (str, int)) or isinstance(key, bool):
                raise TypeError
        except (KeyError, TypeError, ValueError):
            bad += 1
            problems.append(
                f"{where}: rollout lacks a text {key_field!r} or a numeric {reward_field!r}"
            )
            continue
        key = str(key)
        codes.append(keys.setdefault(key, len(keys)))
        rewards.append(reward)
        n_tokens = rec.get(LENGTH_FIELD)
        response = rec.get(RESPONSE_FIELD)
        if isinstance(n_tokens, (int, float)) and not isinstance(n_tokens, bool):
            lengths.append(float(n_tokens))
        else:
            lengths.append(float(len(response)) if isinstance(response, str) else 0.0)
    if problems:
        raise fail(problems, bad)
    locate = item_locator(path) if array else jsonl_locator(path)
    kind = "id" if opts.id_field else "prompt"
    return RolloutBatch(
        path, step, np.asarray(codes, np.int32), list(keys), np.asarray(rewards, np.float64),
        np.asarray(lengths, np.float64), kind, locate,
    )  # fmt: skip


def batches(files: list[tuple[int, Path]], opts: ImportOptions) -> Iterator[list[RolloutBatch]]:
    for step, path in files:
        yield read_file(step, path, opts)
