"""prime-rl episode logs: ``{output_dir}/rollouts/step_N/train/{all,effective}/traces.jsonl``.

Format facts:

- PrimeIntellect-ai/prime-rl, ``src/prime_rl/monitors/file.py`` (``FileMonitor.log_episodes``):
  episodes are appended to ``rollouts/step_{step}/{kind}/{subset}/traces.jsonl``, kind ``train``
  or ``eval``, subset ``all`` (every completed episode, as it arrives: crash-durable) or
  ``effective`` (the episodes admitted to a training batch); ``src/prime_rl/orchestrator/
  orchestrator.py`` logs a train episode under the step whose batch was collecting;
- one line per episode, ``vf.Episode.to_record()`` (PrimeIntellect-ai/verifiers,
  ``verifiers/v1/episode.py``): ``task`` with the stable ``key`` (``TraceTask.key``, defaulting
  to the content ``hash``), ``group``, ``ok``, ``errors`` and ``traces``; each trace
  (``verifiers/v1/trace.py``, ``Trace``) has ``rewards``, named ``{"score", "weight"}`` objects
  (null where scoring did not run), and its reward is the sum of score x weight.

limr reads the ``train`` episodes of ``all`` (else ``effective`` when a step has no ``all``),
one rollout per trace (a trace-less, failed episode is left out and counted), keyed by
``task.key`` (``--id-field hash`` for the content hash). ``--reward-field NAME`` takes one named
reward's score instead of the weighted sum.
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
    jsonl_locator,
    read_json_rows,
    values_of,
)

NAME = "prime-rl"
STEP_DIR = re.compile(r"^step_(\d+)$")


def _rollouts_dir(path: Path) -> Path | None:
    for folder in (path, path / "rollouts"):
        if folder.is_dir() and any(STEP_DIR.match(p.name) for p in folder.iterdir()):
            return folder
    return None


def find(path: Path) -> list[tuple[int, Path]] | None:
    """(step, traces.jsonl) for every step with train episodes (``all``, else ``effective``)."""
    if path.is_file():
        if path.name == "traces.jsonl":
            step_dir = next((p for p in path.parents if STEP_DIR.match(p.name)), None)
            if step_dir is not None:
                return [(int(STEP_DIR.match(step_dir.name).group(1)), path)]
        return None
    if not path.is_dir():
        return None
    root = _rollouts_dir(path)
    if root is None:
        return None
    found = []
    for step_dir in root.iterdir():
        m = STEP_DIR.match(step_dir.name)
        if not m or not step_dir.is_dir():
            continue
        for subset in ("all", "effective"):
            traces = step_dir / "train" / subset / "traces.jsonl"
            if traces.is_file():
                found.append((int(m.group(1)), traces))
                break
    return sorted(found) or None


def reward_names(data: bytes, lines: int = 5) -> list[str] | None:
    """The reward names in the first episodes of a file (None: not JSON there). That no
    other name occurs later is checked after the parse (:func:`read_file`)."""
    names: dict[str, None] = {}
    start = 0
    for _ in range(lines):
        end = data.find(b"\n", start)
        line = data[start:] if end < 0 else data[start:end]
        if line.strip():
            try:
                rec = json.loads(line)
            except (json.JSONDecodeError, UnicodeDecodeError):
                return None
            traces = rec.get("traces") if isinstance(rec, dict) else None
            for t in traces or []:
                rewards = t.get("rewards") if isinstance(t, dict) else None
                for n in rewards or {}:
                    names.setdefault(n, None)
        if end < 0:
            break
        start = end + 1
    return list(names)


def read_file(step: int, path: Path, opts: ImportOptions) -> list[RolloutBatch]:
    import pyarrow as pa

    key_name = opts.id_field or "key"
    data = path.read_bytes()
    names = reward_names(data)
    if not names:
        return [_careful(step, path, opts)]
    # every "score" key of the file is one reward's: the parse below must find them all
    score_keys = data.count(b'"score"')
    reward = pa.struct([("score", pa.float64()), ("weight", pa.float64())])
    trace = pa.struct([("rewards", pa.struct([(n, reward) for n in names]))]) if names else None
    fields = [("task", pa.struct([(key_name, pa.string())]))]
    if trace is not None:
        fields.append(("traces", pa.list_(trace)))
    try:
        table = read_json_rows(path, pa.schema(fields), data=data)
    except (pa.ArrowInvalid, UnicodeDecodeError):
        return [_careful(step, path, opts)]
    del data
    import pyarrow.compute as pc  # after the parse (see read_json_rows)

    keys = pc.struct_field(table.column("task").combine_chunks(), key_name)
    if keys.null_count or trace is None:
        return [_careful(step, path, opts)]
    traces = table.column("traces").combine_chunks()
    per_episode = values_of(pc.list_value_length(traces), fill=0)
    flat = pc.list_flatten(traces)
    rewards_struct = pc.struct_field(flat, "rewards")
    parsed = 0
    for n in names:
        score = pc.struct_field(pc.struct_field(rewards_struct, n), "score")
        parsed += len(score) - score.null_count
    if parsed != score_keys:  # another reward name, or "score" keys elsewhere: every record
        return [_careful(step, path, opts)]
    if opts.reward_field:
        if opts.reward_field not in names:
            raise fail([f"{path}: no reward named {opts.reward_field!r} (names: {names})"])
        total = pc.struct_field(pc.struct_field(rewards_struct, opts.reward_field), "score")
        total = values_of(total, "float64", float("nan")).astype(np.float64)
    else:
        total = np.zeros(len(flat))
        for n in names:
            r = pc.struct_field(rewards_struct, n)
            score = values_of(pc.struct_field(r, "score"), "float64", 0.0)
            weight = values_of(pc.struct_field(r, "weight"), "float64", 1.0)
            total += score * weight
    episode_of = np.repeat(np.arange(len(per_episode)), per_episode)
    codes, distinct = encode_keys(keys)
    dropped = int((per_episode == 0).sum())
    locate = jsonl_locator(path)
    batch = RolloutBatch(
        path, step, codes[episode_of], distinct, total.astype(np.float64), None,
        "id", lambda row: locate(int(episode_of[row])),
        {"episodes without a trace (failed)": dropped} if dropped else {},
    )  # fmt: skip
    return [batch]


def _careful(step: int, path: Path, opts: ImportOptions) -> RolloutBatch:
    key_name = opts.id_field or "key"
    keys: dict[str, int] = {}
    codes: list[int] = []
    rewards: list[float] = []
    rows: list[int] = []
    problems: list[str] = []
    dropped = 0
    for i, (where, rec) in enumerate(careful_json_rows(path)):
        if isinstance(rec, str):
            problems.append(f"{where}: {rec}")
            continue
        task = rec.get("task") if isinstance(rec, dict) else None
        key = task.get(key_name) if isinstance(task, dict) else None
        if key is None:
            problems.append(f"{where}: no task.{key_name} (the episode's stable task id)")
            continue
        traces = rec.get("traces") or []
        if not traces:
            dropped += 1
            continue
        for t in traces:
            named = (t or {}).get("rewards") or {}
            if opts.reward_field:
                r = named.get(opts.reward_field)
                value = float("nan") if not isinstance(r, dict) else _num(r.get("score"))
            else:
                value = sum(
                    _num(r.get("score")) * _num(r.get("weight"), 1.0)
                    for r in named.values()
                    if isinstance(r, dict)
                )
            codes.append(keys.setdefault(str(key), len(keys)))
            rewards.append(value)
            rows.append(i)
    if problems:
        raise fail(problems)
    locate = jsonl_locator(path)
    return RolloutBatch(
        path, step, np.asarray(codes, np.int32), list(keys), np.asarray(rewards, np.float64),
        None, "id", lambda row: locate(rows[row]),
        {"episodes without a trace (failed)": dropped} if dropped else {},
    )  # fmt: skip


def _num(x, default: float = 0.0) -> float:
    return float(x) if isinstance(x, (int, float)) and not isinstance(x, bool) else default
