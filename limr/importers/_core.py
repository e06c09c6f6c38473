"""What every importer shares: the rollout records, prompt normalisation, the --data index, the
fast JSON readers (pyarrow) with a careful fallback that names FILE:LINE, and the builder that
aggregates rollouts into a :class:`limr.history.RewardHistory`.

A format module yields :class:`RolloutBatch` es (the rollouts of one file or one step, in columns:
numpy for the numbers, a dictionary encoding for the keys), and :class:`HistoryBuilder` turns them
into per-(prompt, epoch) cells, so that memory is O(one file + prompts x epochs) whatever the size
of the logs. :func:`iter_rollouts` in :mod:`limr.importers` gives the same records one by one.
"""

from __future__ import annotations

import json
import math
import re
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from limr.history import HistoryError, RewardHistory

MAX_PROBLEMS = 20
"""How many problems an error lists (then a count of the rest)."""


class RolloutError(HistoryError):
    """Rollout logs that cannot be imported; ``problems`` holds one ``FILE:LINE: what`` per
    problem (at most :data:`MAX_PROBLEMS`, then how many more)."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


def fail(problems: Sequence[str], total: int | None = None) -> RolloutError:
    """A RolloutError listing the first problems and how many there are in all."""
    total = len(problems) if total is None else total
    shown = list(problems[:MAX_PROBLEMS])
    if total > len(shown):
        shown.append(f"... and {total - len(shown)} more ({total} in all)")
    return RolloutError(shown)


class Rollout(NamedTuple):
    """One rollout as every importer reads it.

    Attributes:
        step: the training step it was recorded at (as the framework numbers its files).
        key: the prompt id (``key_kind == "id"``) or the prompt text as logged.
        reward: the reward (NaN when the framework logged none).
        length: the response length (characters or tokens, as the format has it), or None.
        where: ``FILE:LINE`` (or ``FILE:row N``) for messages.
    """

    step: int
    key: str
    reward: float
    length: float | None
    where: str


@dataclass
class RolloutBatch:
    """Rollouts of one step from one file, in columns.

    Attributes:
        source: the file (for messages).
        step: the training step.
        codes: [N] int32 index of each rollout's key in ``keys``.
        keys: U distinct keys (prompt texts or ids as text).
        rewards: [N] float64 (NaN: no reward logged).
        lengths: [N] float64 response lengths, or None.
        key_kind: "id" or "prompt".
        locate: row -> "FILE:LINE" (slow, for messages only).
        dropped: rollouts the reader left out on purpose, by reason (e.g. repeated rows).
    """

    source: Path
    step: int
    codes: np.ndarray
    keys: list[str]
    rewards: np.ndarray
    lengths: np.ndarray | None
    key_kind: str
    locate: Callable[[int], str]
    dropped: dict[str, int] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.codes)

    def rollouts(self) -> Iterator[Rollout]:
        lengths = self.lengths
        for row, (code, reward) in enumerate(zip(self.codes.tolist(), self.rewards.tolist())):
            length = None if lengths is None else float(lengths[row])
            yield Rollout(self.step, self.keys[code], reward, length, f"{self.source}:{row + 1}")


# ------------------------------------------------------------------------------ prompt text

_CHATML_USER = re.compile(r"<\|im_start\|>user\s*\n?(.*?)(?:<\|im_end\|>|$)", re.S)
_LLAMA3_USER = re.compile(
    r"<\|start_header_id\|>user<\|end_header_id\|>\s*(.*?)(?:<\|eot_id\|>|$)", re.S
)
_GEMMA_USER = re.compile(r"<start_of_turn>user\s*\n?(.*?)(?:<end_of_turn>|$)", re.S)
_DEEPSEEK_USER = re.compile(r"<｜User｜>(.*?)(?:<｜Assistant｜>|<｜end▁of▁sentence｜>|$)", re.S)
_MISTRAL_USER = re.compile(r"\[INST\](.*?)(?:\[/INST\]|$)", re.S)
_SPECIAL = re.compile(
    r"<\|[^|<>\n]{1,40}\|>|<｜[^｜<>\n]{1,40}｜>|</?s>|<</?SYS>>|\[/?INST\]|<(?:start|end)_of_turn>"
)
_SPACE = re.compile(r"\s+")


def normalize_prompt(text: str) -> str:
    """A prompt as a dataset problem reads: the last user turn of a chat-formatted prompt
    (ChatML / Qwen, Llama 3, Gemma, DeepSeek, Mistral markers), other special tokens removed,
    whitespace runs collapsed to one space, stripped."""
    for pattern in (_CHATML_USER, _LLAMA3_USER, _GEMMA_USER, _DEEPSEEK_USER, _MISTRAL_USER):
        turns = pattern.findall(text)
        if turns:
            text = turns[-1]
            break
    text = _SPECIAL.sub(" ", text)
    return _SPACE.sub(" ", text).strip()


class DataIndex:
    """Dataset records by their normalised problem text, to map logged prompts to ids.

    A logged prompt matches a record when, normalised (:func:`normalize_prompt`), it equals the
    record's problem, or contains it with text around it (a prompt template that adds an
    instruction): the first such match teaches the index the template's fixed prefix and
    suffix, so that later prompts are matched by one lookup. Prompts that match no record are
    counted by the caller.

    Args:
        spec: a .jsonl / .json (list) / .parquet file, or ``shipped:NAME``.
        id_field: the records' id field.
        problem_field: the records' problem text field (``prompt`` is tried too).
    """

    SEARCH_LIMIT = 200
    """Unmatched prompts that are searched for inside every problem (a linear scan each);
    the rest are matched by exact text and the templates learned, or counted unmatched."""

    def __init__(self, spec: str, id_field: str = "id", problem_field: str = "problem") -> None:
        self.spec = spec
        self.path = _data_path(spec)
        self.by_text: dict[str, str] = {}
        self.duplicates = 0
        problems: list[str] = []
        count = 0
        for where, rec in _iter_data_records(self.path):
            count += 1
            if not isinstance(rec, dict):
                problems.append(f"{where}: not a JSON object")
                continue
            rid = rec.get(id_field)
            text = rec.get(problem_field, rec.get("prompt"))
            if rid is None or not isinstance(text, str):
                problems.append(f"{where}: no {id_field!r} or no text {problem_field!r}")
                continue
            key = normalize_prompt(text)
            if key in self.by_text and self.by_text[key] != str(rid):
                self.duplicates += 1
                continue
            self.by_text.setdefault(key, str(rid))
        if problems:
            raise fail([f"--data {p}" for p in problems])
        if not self.by_text:
            raise RolloutError([f"--data {spec}: no records"])
        self.size = count
        self._by_length = sorted(self.by_text, key=len, reverse=True)
        self._templates: list[tuple[str, str]] = []
        self._searches = 0
        self.ids = set(self.by_text.values())

    def match(self, text: str) -> str | None:
        """The id of the record whose problem the prompt holds, or None."""
        key = normalize_prompt(text)
        rid = self.by_text.get(key)
        if rid is not None:
            return rid
        for prefix, suffix in self._templates:
            if key.startswith(prefix) and key.endswith(suffix) and len(key) > len(prefix):
                core = key[len(prefix) : len(key) - len(suffix)].strip()
                rid = self.by_text.get(core)
                if rid is not None:
                    return rid
        if self._searches >= self.SEARCH_LIMIT:
            return None
        self._searches += 1
        for problem in self._by_length:  # the longest problem the prompt holds
            at = key.find(problem)
            if at >= 0 and problem:
                template = (key[:at], key[at + len(problem) :])
                if template not in self._templates:
                    self._templates.append(template)
                return self.by_text[problem]
        return None


def _data_path(spec: str) -> Path:
    if spec.startswith("shipped:"):
        from limr.prompts import DataError, shipped_path

        try:
            return shipped_path(spec[len("shipped:") :])
        except DataError as err:
            raise RolloutError(err.problems) from None
    path = Path(spec)
    if not path.is_file():
        raise RolloutError([f"--data {spec}: no such file"])
    return path


def _iter_data_records(path: Path) -> Iterator[tuple[str, Any]]:
    """(location, record) of a dataset file, with :func:`limr.prompts.iter_records` (the
    training data's reader); its problems become a :class:`RolloutError` naming ``--data``."""
    from limr.prompts import DataError, iter_records

    try:
        for where, record in iter_records(path):
            if isinstance(record, DataError):
                raise RolloutError([f"--data {where}: {p}" for p in record.problems])
            yield where, record
    except DataError as err:
        raise RolloutError([f"--data {p}" for p in err.problems]) from None


# ------------------------------------------------------------------------------ options


@dataclass
class ImportOptions:
    """How to read rollout logs (the options of ``limr score`` / ``limr history import``).

    Attributes:
        steps_per_epoch: steps per pass over the prompts; step N is in epoch
            ``(N - first_step) // steps_per_epoch``. Required for every foreign format.
        max_epochs: read only the first E epochs (files of later steps are not opened).
        first_step: the number of the first step (the frameworks number from 1).
        id_field: the rollout field holding the prompt id (default: the format's own, else the
            prompt text is the key).
        reward_field: the rollout field holding the reward (default: the format's own).
        correct_threshold: a rollout is correct when reward >= this; None: when reward == 1
            (the released LIM's rule).
        data: a dataset (file or ``shipped:NAME``) to map logged prompt texts to its ids.
        data_id_field / data_problem_field: its fields.
        allow_unmatched: leave out (and count) prompts that match no --data record instead of
            failing.
        workers: files parsed at once (threads; pyarrow releases the GIL while it parses;
            more than the machine's two cores measured slower).
        progress: draw a progress bar on stderr (None: when stderr is a terminal).
        lengths: keep response lengths (``limr score`` does not need them: 8 bytes a cell).
    """

    steps_per_epoch: int | None = None
    max_epochs: int | None = None
    first_step: int = 1
    id_field: str | None = None
    reward_field: str | None = None
    correct_threshold: float | None = None
    data: str | None = None
    data_id_field: str = "id"
    data_problem_field: str = "problem"
    allow_unmatched: bool = False
    workers: int = 2
    progress: bool | None = None
    lengths: bool = True

    def epoch_of(self, step: int) -> int | None:
        """The epoch of ``step``, or None when it is outside what is read."""
        if step < self.first_step:
            return None
        assert self.steps_per_epoch is not None
        epoch = (step - self.first_step) // self.steps_per_epoch
        if self.max_epochs is not None and epoch >= self.max_epochs:
            return None
        return epoch


# ------------------------------------------------------------------------------ building


class HistoryBuilder:
    """Aggregates :class:`RolloutBatch` es into a memory-only :class:`RewardHistory`.

    Keys are mapped once per distinct key: a prompt text is stripped (the released LIM's key),
    or mapped to a dataset id with ``--data``; ids are taken as they are (with ``--data``, they
    must be its ids). Rollouts without a reward (NaN) are left out and counted.
    """

    def __init__(self, options: ImportOptions, data: DataIndex | None = None) -> None:
        self.opts = options
        self.data = data
        self.history = RewardHistory(None)
        self._canon: dict[str, str | None] = {}
        self._gidx: dict[str, int] = {}
        self.unmatched: dict[str, tuple[str, int]] = {}  # prompt -> (first location, rollouts)
        self.no_reward = 0
        self.dropped: dict[str, int] = {}
        self.steps: set[int] = set()  # steps with cells
        self.seen_steps: set[int] = set()  # steps whose file was read (repeats included)
        self.files = 0
        self.rollouts = 0
        self.key_kinds: set[str] = set()

    def _canonical(self, key: str, kind: str) -> str | None:
        got = self._canon.get(key, "")
        if got != "":
            return got
        if kind == "id":  # with --data, an id must be one of its records'
            canon: str | None = key if self.data is None or key in self.data.ids else None
        elif self.data is not None:
            canon = self.data.match(key)
        else:
            canon = key.strip()
        self._canon[key] = canon
        return canon

    def add(self, batch: RolloutBatch) -> None:
        for reason, count in batch.dropped.items():
            self.dropped[reason] = self.dropped.get(reason, 0) + count
        self.seen_steps.add(batch.step)
        epoch = self.opts.epoch_of(batch.step)
        if epoch is None or not len(batch):
            return
        self.key_kinds.add(batch.key_kind)
        # raw key -> history index, -1 unmatched; -2 not seen yet (mapped below)
        cache = self._gidx
        lut = np.fromiter((cache.get(k, -2) for k in batch.keys), np.int64, len(batch.keys))
        codes = batch.codes
        rewards = batch.rewards
        finite = np.isfinite(rewards)
        if not finite.all():
            self.no_reward += int((~finite).sum())
        new = np.flatnonzero(lut == -2)
        if len(new):
            used = np.zeros(len(lut), bool)
            used[codes[finite]] = True
            fresh: list[int] = []
            for code in new.tolist():
                canon = self._canonical(batch.keys[code], batch.key_kind)
                if canon is None:
                    lut[code] = -1
                    cache[batch.keys[code]] = -1
                elif used[code]:
                    fresh.append(code)
            if fresh:
                keys = [self._canon[batch.keys[c]] for c in fresh]
                lut[fresh] = self.history.intern(keys)  # type: ignore[arg-type]
                for c, g in zip(fresh, lut[fresh].tolist()):
                    cache[batch.keys[c]] = g
        g = lut[codes]
        if (g == -1).any():
            self._note_unmatched(batch, lut != -1, finite)
        ok = (g >= 0) & finite
        if not ok.all():
            g, rewards = g[ok], rewards[ok]
        if not len(g):
            return
        weights_len = None if batch.lengths is None or not self.opts.lengths else batch.lengths[ok]
        threshold = self.opts.correct_threshold
        correct = rewards == 1.0 if threshold is None else rewards >= threshold
        num_i = self.history.num_prompts
        if num_i <= 16 * len(g):  # dense counts over every prompt: no sort
            n_all = np.bincount(g, minlength=num_i)
            idx = np.flatnonzero(n_all)
            n = n_all[idx]
            nc = np.bincount(g, weights=correct, minlength=num_i)[idx]
            rs = np.bincount(g, weights=rewards, minlength=num_i)[idx]
            ls = None
            if weights_len is not None:
                ls = np.bincount(g, weights=weights_len, minlength=num_i)[idx]
        else:
            idx, inv = np.unique(g, return_inverse=True)
            m = len(idx)
            n = np.bincount(inv, minlength=m)
            nc = np.bincount(inv, weights=correct, minlength=m)
            rs = np.bincount(inv, weights=rewards, minlength=m)
            ls = None
            if weights_len is not None:
                ls = np.bincount(inv, weights=weights_len, minlength=m)
        self.history.add_cells(
            batch.step, epoch, idx.astype(np.int32), n.astype(np.int32),
            np.rint(nc).astype(np.int32), rs, ls, self.opts.steps_per_epoch,
        )  # fmt: skip
        self.steps.add(batch.step)
        self.rollouts += len(g)

    def _note_unmatched(self, batch: RolloutBatch, known: np.ndarray, finite: np.ndarray) -> None:
        missing = np.flatnonzero(~known)
        counts = np.bincount(batch.codes, minlength=len(batch.keys))
        first_rows = {}
        if len(self.unmatched) < MAX_PROBLEMS:
            order = np.argsort(batch.codes, kind="stable")
            starts = np.searchsorted(batch.codes[order], missing)
            first_rows = dict(zip(missing.tolist(), order[starts].tolist()))
        for code in missing.tolist():
            text = batch.keys[code].strip()
            where, total = self.unmatched.get(text, ("", 0))
            if not where and code in first_rows:
                where = batch.locate(first_rows[code])
            self.unmatched[text] = (where, total + int(counts[code]))

    def finish(self, source: str, fmt: str) -> RewardHistory:
        h = self.history
        if self.unmatched and not self.opts.allow_unmatched:
            n_roll = sum(c for _, c in self.unmatched.values())
            assert self.data is not None
            lines = [
                f"{where or '?'}: prompt {_short(normalize_prompt(text))!r} matches no record of "
                f"{self.data.spec}"
                for text, (where, _) in list(self.unmatched.items())[:MAX_PROBLEMS]
            ]
            lines.append(
                f"{len(self.unmatched)} prompts ({n_roll} rollouts) match no --data record "
                f"(matched by {self.opts.data_problem_field!r} text, chat markers and spacing "
                "ignored); --allow-unmatched leaves them out"
            )
            raise RolloutError(lines)
        if not h.num_prompts:
            raise RolloutError([f"{source}: no rollouts to read ({fmt} format)"])
        steps = sorted(self.steps)
        missing = sorted(set(range(steps[0], steps[-1] + 1)) - self.seen_steps)
        h.info.update(
            source=source,
            format=fmt,
            files_read=self.files,
            rollouts=self.rollouts,
            steps_read=len(steps),
            first_step=steps[0],
            last_step=steps[-1],
            missing_steps=missing,
            steps_per_epoch=self.opts.steps_per_epoch,
            key=("id" if self.key_kinds == {"id"} or self.data is not None else "prompt"),
        )
        if self.no_reward:
            h.info["no_reward"] = self.no_reward
        if self.dropped:
            h.info["dropped"] = dict(self.dropped)
        if self.unmatched:
            h.info["unmatched_prompts"] = len(self.unmatched)
            h.info["unmatched_rollouts"] = sum(c for _, c in self.unmatched.values())
        h._committed_step = steps[-1]
        h._n_committed = len(h._blocks)
        return h


def _short(text: str, width: int = 70) -> str:
    text = _SPACE.sub(" ", text).strip()
    return text if len(text) <= width else text[: width - 3] + "..."


# ------------------------------------------------------------------------------ parallel reading


def ordered_map(
    fn: Callable[[Any], Any], items: Sequence[Any], workers: int, progress: Any = None
) -> Iterator[Any]:
    """``fn`` over ``items`` on ``workers`` threads, results in order, at most ``workers + 1``
    results in flight (memory: a few files, not all)."""
    if workers <= 1 or len(items) <= 1:
        for item in items:
            yield fn(item)
            if progress is not None:
                progress.update(1)
        return
    with ThreadPoolExecutor(max_workers=workers) as pool:
        pending = []
        it = iter(items)
        for item in it:
            pending.append(pool.submit(fn, item))
            if len(pending) > workers:
                break
        while pending:
            result = pending.pop(0).result()
            nxt = next(it, None)
            if nxt is not None:
                pending.append(pool.submit(fn, nxt))
            yield result
            if progress is not None:
                progress.update(1)


def progress_bar(total: int, desc: str, enabled: bool | None) -> Any:
    """A tqdm bar on stderr, shown after 1 s of work (None when disabled or not a terminal)."""
    if enabled is None:
        enabled = sys.stderr.isatty()
    if not enabled or total < 2:
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="file", delay=1.0, leave=False, file=sys.stderr)


# ------------------------------------------------------------------------------ JSON via pyarrow


def _arrow():
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.json as pj

    return pa, pc, pj


def read_json_rows(path: Path, schema: Any, array: bool = False, data: bytes | None = None) -> Any:
    """The rows of a JSONL file (``array=False``) or of a file holding one JSON list of
    objects (``array=True``), as a pyarrow Table of the fields of ``schema`` (others skipped).

    Raises pyarrow's ArrowInvalid on bad input; callers then run :func:`careful_json_rows` for
    FILE:LINE messages. ``data``: the file's bytes, when the caller has read them already.
    """
    import pyarrow as pa
    import pyarrow.json as pj  # not pyarrow.compute (~60 ms to import): another thread
    # imports it while this one parses, which releases the GIL

    if data is None:
        data = path.read_bytes()
    if array:
        # one object holding the list: pyarrow reads it whole (block = the file)
        data = b'{"rows":' + data + b"}"
        wrapped = pa.schema([("rows", pa.list_(pa.struct(list(schema))))])
        opts = pj.ParseOptions(explicit_schema=wrapped, unexpected_field_behavior="ignore")
        table = pj.read_json(
            pa.BufferReader(data),
            read_options=pj.ReadOptions(use_threads=False, block_size=len(data) + 64),
            parse_options=opts,
        )
        del data
        if table.num_rows != 1:
            raise pa.ArrowInvalid("expected one JSON list")
        import pyarrow.compute as pc

        rows = pc.list_flatten(table.column("rows"))
        return pa.Table.from_struct_array(rows) if len(rows) else schema.empty_table()
    opts = pj.ParseOptions(
        explicit_schema=schema, unexpected_field_behavior="ignore", newlines_in_values=False
    )
    return pj.read_json(
        pa.BufferReader(data),
        read_options=pj.ReadOptions(use_threads=False, block_size=max(1 << 20, len(data) + 64)),
        parse_options=opts,
    )


def careful_json_rows(path: Path, array: bool = False) -> Iterator[tuple[str, Any]]:
    """(location, record or an error message) for every record, with the stdlib parser: what
    the fast path falls back to when pyarrow refuses a file, so that every bad line is named."""
    if array:
        try:
            data = json.loads(path.read_bytes())
        except json.JSONDecodeError as err:
            yield f"{path}:{err.lineno}", f"not valid JSON ({err.msg}; a truncated file?)"
            return
        except UnicodeDecodeError as err:
            yield str(path), f"not UTF-8 text ({err.reason})"
            return
        if not isinstance(data, list):
            yield str(path), "expected a JSON list of rollouts"
            return
        for i, rec in enumerate(data):
            yield f"{path}:item {i + 1}", rec
        return
    with open(path, "rb") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                yield f"{path}:{lineno}", json.loads(line)
            except json.JSONDecodeError as err:
                truncated = " (a truncated line?)" if not line.endswith(b"\n") else ""
                yield f"{path}:{lineno}", f"not valid JSON: {err.msg}{truncated}"
            except UnicodeDecodeError as err:
                yield f"{path}:{lineno}", f"not UTF-8 text ({err.reason})"


def jsonl_locator(path: Path) -> Callable[[int], str]:
    """row (0-based, blank lines not counted) -> ``FILE:LINE``."""

    def locate(row: int) -> str:
        seen = -1
        with open(path, "rb") as f:
            for lineno, line in enumerate(f, 1):
                if line.strip():
                    seen += 1
                    if seen == row:
                        return f"{path}:{lineno}"
        return f"{path}:row {row + 1}"

    return locate


def item_locator(path: Path, word: str = "item") -> Callable[[int], str]:
    return lambda row: f"{path}:{word} {row + 1}"


def _values(array: Any, dtype: str, fill: float) -> np.ndarray:
    """The values of a primitive pyarrow array as numpy (its buffer), nulls set to ``fill``.

    (Not ``fill_null``: a Python fill value makes pyarrow import pandas, 0.25 s.)"""
    values = np.frombuffer(array.buffers()[1], dtype=dtype)[
        array.offset : array.offset + len(array)
    ]
    if array.null_count:
        values = values.astype(np.float64 if fill != fill else values.dtype, copy=True)
        values[array.is_null().to_numpy(zero_copy_only=False)] = fill
    return values


def arrow_indices(values: np.ndarray) -> Any:
    """An int64 pyarrow array over a numpy array's buffer (``pa.array`` would import pandas)."""
    pa, _, _ = _arrow()
    values = np.ascontiguousarray(values, dtype=np.int64)
    return pa.Array.from_buffers(pa.int64(), len(values), [None, pa.py_buffer(values)])


def arrow_scalar(value: int | str) -> Any:
    """An int64 or string pyarrow scalar built from buffers (a Python value handed to a compute
    function goes through ``pa.scalar``, which imports pandas: 0.3 s)."""
    pa, _, _ = _arrow()
    if isinstance(value, str):
        data = value.encode()
        offsets = np.array([0, len(data)], np.int32)
        return pa.Array.from_buffers(
            pa.string(), 1, [None, pa.py_buffer(offsets), pa.py_buffer(data)]
        )[0]
    return arrow_indices(np.array([value]))[0]


def arrow_strings(values: Sequence[str]) -> Any:
    """A pyarrow string array of Python strings, built from buffers (no pandas import)."""
    pa, _, _ = _arrow()
    encoded = [v.encode() for v in values]
    offsets = np.zeros(len(encoded) + 1, np.int64)
    np.cumsum([len(b) for b in encoded], out=offsets[1:])
    return pa.Array.from_buffers(
        pa.large_string(), len(encoded),
        [None, pa.py_buffer(offsets), pa.py_buffer(b"".join(encoded))],
    ).cast(pa.string())  # fmt: skip


def values_of(array: Any, dtype: str | None = None, fill: float = 0) -> np.ndarray:
    """A primitive pyarrow array as numpy, nulls set to ``fill`` (dtype: from its type)."""
    pa, _, _ = _arrow()
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    if dtype is None:
        t = array.type
        dtype = f"float{t.bit_width}" if pa.types.is_floating(t) else f"int{t.bit_width}"
    return _values(array, dtype, fill)


def encode_keys(column: Any) -> tuple[np.ndarray, list[str]]:
    """(codes [N] int32, distinct keys) of a pyarrow column of strings or integers (nulls are
    the key "None" and are reported by the caller)."""
    pa, pc, _ = _arrow()
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
        column = pc.cast(column, pa.string())
    enc = pc.dictionary_encode(column)
    keys = enc.dictionary.to_pylist()
    indices = enc.indices
    codes = _values(indices, f"int{indices.type.bit_width}", len(keys))
    if indices.null_count:
        keys.append("None")
    return codes.astype(np.int32), keys


def float_column(column: Any) -> np.ndarray:
    """A numeric pyarrow column as float64 numpy (null -> NaN; booleans -> 0/1)."""
    pa, pc, _ = _arrow()
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    if column.type != pa.float64():
        column = pc.cast(column, pa.float64())
    return _values(column, "float64", float("nan")).astype(np.float64, copy=False)


def text_length(column: Any) -> np.ndarray:
    """Characters of each string of a pyarrow column (null -> 0), float64."""
    pa, pc, _ = _arrow()
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    lengths = pc.utf8_length(column)
    return _values(lengths, f"int{lengths.type.bit_width}", 0).astype(np.float64)


def step_files(path: Path, pattern: re.Pattern[str]) -> list[tuple[int, Path]] | None:
    """(step, file) of the step files at ``path`` (one file, or a folder's files whose names
    match ``pattern``), sorted by step; None when there are none."""
    if path.is_file():
        return steps_from_names([path], pattern) or None
    if not path.is_dir():
        return None
    return steps_from_names(path.iterdir(), pattern) or None


def steps_from_names(paths: Iterable[Path], pattern: re.Pattern[str]) -> list[tuple[int, Path]]:
    """(step, path) of the files whose name matches ``pattern`` (group 1 = the step), sorted."""
    found = []
    for p in paths:
        m = pattern.match(p.name)
        if m and p.is_file():
            found.append((int(m.group(1)), p))
    return sorted(found)


def is_finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)
