"""NeMo-RL training dumps: ``train_data_step{N}.jsonl`` in the run's log directory.

Format facts (NVIDIA-NeMo/RL, ``nemo_rl/algorithms/grpo.py``, the "Log training data" block of
``grpo_train``, and ``nemo_rl/utils/logger.py``, ``Logger.log_batched_dict_as_jsonl``): after
every step (``total_steps + 1``, so numbered from 1) GRPO writes ``train_data_step{N}.jsonl``, one
line per rollout with ``content`` (the list of the conversation's message texts, as the chat
template rendered them; the last one is the model's response: see ``batched_message_log_to_flat_
message`` in ``nemo_rl/data/llm_message_utils.py``), ``rewards`` (the rollout's total reward),
``input_lengths``, token ids, masks, advantages and log-probabilities, and ``idx``, which the
logger sets to the row's position in the batch: it is not the dataset index, so prompts are
keyed by their text (every message but the last, joined), mapped to dataset ids with ``--data``.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from limr.importers._core import (
    ImportOptions,
    RolloutBatch,
    arrow_indices,
    arrow_scalar,
    arrow_strings,
    careful_json_rows,
    encode_keys,
    fail,
    float_column,
    jsonl_locator,
    read_json_rows,
    step_files,
    text_length,
    values_of,
)

NAME = "nemo-rl"
STEP_FILE = re.compile(r"^train_data_step(\d+)\.jsonl$")
CONTENT_FIELD = "content"
REWARD_FIELD = "rewards"


def find(path: Path) -> list[tuple[int, Path]] | None:
    """The step files (sorted by step), or None when ``path`` holds none."""
    return step_files(path, STEP_FILE)


def _split(content: list) -> tuple[str, str]:
    """(prompt text, response text) of a logged conversation."""
    texts = [c if isinstance(c, str) else "" for c in content]
    return "".join(texts[:-1]), texts[-1] if texts else ""


def read_file(step: int, path: Path, opts: ImportOptions) -> list[RolloutBatch]:
    import pyarrow as pa
    import pyarrow.compute as pc

    reward_field = opts.reward_field or REWARD_FIELD
    id_field = opts.id_field
    fields = [(CONTENT_FIELD, pa.list_(pa.string())), (reward_field, pa.float64())]
    if id_field:
        fields.append((id_field, pa.string()))
    try:
        table = read_json_rows(path, pa.schema(fields))
    except (pa.ArrowInvalid, UnicodeDecodeError):
        return [_careful(step, path, opts)]
    content, rewards = table.column(CONTENT_FIELD).combine_chunks(), table.column(reward_field)
    if content.null_count or rewards.null_count or (id_field and table.column(id_field).null_count):
        return [_careful(step, path, opts)]
    counts = values_of(pc.list_value_length(content))
    if len(counts) and counts.min() < 1:
        return [_careful(step, path, opts)]
    if id_field:
        keys = table.column(id_field)
    else:
        # rows with the same number of messages at once: join all but the last
        pieces_by_count, order = [], []
        for k in np.unique(counts).tolist():
            rows = np.flatnonzero(counts == k)
            sub = content.take(arrow_indices(rows))
            if k == 1:
                joined = arrow_strings([""] * len(rows))
            elif k == 2:
                joined = pc.list_element(sub, arrow_scalar(0))
            else:
                joined = pc.binary_join_element_wise(
                    *[pc.list_element(sub, arrow_scalar(j)) for j in range(k - 1)],
                    arrow_scalar(""),
                )
            pieces_by_count.append(joined)
            order.append(rows)
        inverse = np.argsort(np.concatenate(order))
        keys = pa.concat_arrays(pieces_by_count).take(arrow_indices(inverse))
    offsets = values_of(content.offsets)
    flat = pc.list_flatten(content)
    responses = flat.take(arrow_indices(offsets[1:] - 1 - offsets[0]))
    lengths = text_length(responses)
    codes, distinct = encode_keys(keys)
    kind = "id" if id_field else "prompt"
    return [
        RolloutBatch(
            path, step, codes, distinct, float_column(rewards), lengths, kind,
            jsonl_locator(path),
        )
    ]  # fmt: skip


def _careful(step: int, path: Path, opts: ImportOptions) -> RolloutBatch:
    reward_field = opts.reward_field or REWARD_FIELD
    keys: dict[str, int] = {}
    codes: list[int] = []
    rewards: list[float] = []
    lengths: list[float] = []
    problems: list[str] = []
    for where, rec in careful_json_rows(path):
        if isinstance(rec, str):
            problems.append(f"{where}: {rec}")
            continue
        content = rec.get(CONTENT_FIELD) if isinstance(rec, dict) else None
        reward = rec.get(reward_field) if isinstance(rec, dict) else None
        if not isinstance(content, list) or not content:
            problems.append(f"{where}: {CONTENT_FIELD!r} is not a list of message texts")
            continue
        if isinstance(reward, bool) or not isinstance(reward, (int, float)):
            problems.append(f"{where}: {reward_field!r} is {reward!r}, not a number")
            continue
        prompt, response = _split(content)
        key = prompt
        if opts.id_field:
            if rec.get(opts.id_field) is None:
                problems.append(f"{where}: no {opts.id_field!r}")
                continue
            key = str(rec[opts.id_field])
        codes.append(keys.setdefault(key, len(keys)))
        rewards.append(float(reward))
        lengths.append(float(len(response)))
    if problems:
        raise fail(problems)
    kind = "id" if opts.id_field else "prompt"
    return RolloutBatch(
        path, step, np.asarray(codes, np.int32), list(keys), np.asarray(rewards, np.float64),
        np.asarray(lengths, np.float64), kind, jsonl_locator(path),
    )  # fmt: skip
