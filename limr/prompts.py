"""Prompts: training and benchmark problems read from files, shipped data or Hugging Face datasets.

Records are ``{id, problem, answer, ...extra}``; the field names are configurable. Every problem
in a file is reported at once as ``FILE:LINE: what is wrong`` (:class:`DataError`) before any work
starts, so a bad line never costs a half-finished run.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

from limr.types import Prompt

DATA_DIR = Path(__file__).parent / "data"

SHIPPED: dict[str, tuple[str, str]] = {
    "math_train": ("math_full/train.jsonl", "MATH levels 3-5 training problems (LIMR's pool)"),
    "math500": ("benchmarks/math500/test.jsonl", "MATH500 test problems"),
    "aime24": ("benchmarks/aime24/test.jsonl", "AIME 2024 problems (answers zero padded)"),
    "amc23": ("benchmarks/amc23/test.jsonl", "AMC 2023 problems"),
}


class DataError(ValueError):
    """Problems in a dataset; the message has one ``FILE:LINE: what`` line per problem."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


def shipped_path(name: str) -> Path:
    if name not in SHIPPED:
        raise DataError([f"shipped:{name}: unknown shipped dataset; known: {', '.join(SHIPPED)}"])
    return DATA_DIR / SHIPPED[name][0]


def count_lines(path: Path) -> int:
    with open(path, "rb") as f:
        return sum(1 for line in f if line.strip())


def iter_records(path: str | Path) -> Iterator[tuple[str, Any]]:
    """Yield ``(location, record)`` from a .jsonl, .json (a list) or .parquet file.

    A line that is not JSON is yielded as ``(location, DataError)`` so that the caller can report
    every problem of the file at once.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError([f"{path}: no such file"])
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        for i, row in enumerate(pq.read_table(path).to_pylist()):
            yield f"{path}:row {i + 1}", row
    elif suffix == ".json":
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as err:
            raise DataError([f"{path}:{err.lineno}: not valid JSON: {err.msg}"]) from None
        if not isinstance(data, list):
            raise DataError([f"{path}: a .json dataset must be a list of records"])
        for i, row in enumerate(data):
            yield f"{path}:item {i + 1}", row
    else:
        with open(path, encoding="utf-8") as f:
            for lineno, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    yield f"{path}:{lineno}", json.loads(line)
                except json.JSONDecodeError as err:
                    yield f"{path}:{lineno}", DataError([f"not valid JSON: {err.msg}"])


def _as_text(value: Any) -> str:
    """A record value as text; numbers in plain positional notation.

    AMC answers are floats (27.0): integral floats are written as integers. Other floats are
    written with the shortest digits that read back as the same float and never in exponent
    notation: ``str(1e-05)`` is ``"1e-05"``, which an answer checker reads as Euler's e minus 5.
    """
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float) and math.isfinite(value):
        if value.is_integer():
            return str(int(value))
        text = format(Decimal(repr(value)), "f")
        return text.rstrip("0").rstrip(".") if "." in text else text
    return str(value)


def records_to_prompts(
    records: Iterator[tuple[str, Any]],
    *,
    id_field: str = "id",
    problem_field: str = "problem",
    answer_field: str = "answer",
) -> list[Prompt]:
    """Validate and convert records; raise one :class:`DataError` listing every problem."""
    prompts: list[Prompt] = []
    problems: list[str] = []
    seen: dict[str, str] = {}
    for index, (where, record) in enumerate(records):
        if isinstance(record, DataError):
            problems.append(f"{where}: {record}")
            continue
        if not isinstance(record, dict):
            problems.append(f"{where}: expected a JSON object, got {type(record).__name__}")
            continue
        bad = False
        for name in (problem_field, answer_field):
            if name not in record or record[name] is None:
                problems.append(f"{where}: missing field {name!r}")
                bad = True
            elif name == problem_field and not _as_text(record[name]).strip():
                # An empty answer is allowed (two MATH training records have one: such a
                # prompt can never be rewarded); `limr data check` warns about it.
                problems.append(f"{where}: empty {name!r}")
                bad = True
        pid = _as_text(record[id_field]) if record.get(id_field) is not None else str(index)
        if pid in seen:
            problems.append(f"{where}: duplicate id {pid!r} (first at {seen[pid]})")
            bad = True
        seen.setdefault(pid, where)
        if bad:
            continue
        extra = {
            k: v for k, v in record.items() if k not in (id_field, problem_field, answer_field)
        }
        prompts.append(
            Prompt(
                id=pid,
                problem=str(record[problem_field]),
                answer=_as_text(record[answer_field]),
                extra=extra,
            )
        )
    if problems:
        raise DataError(problems)
    return prompts


def load_prompts(
    spec: str,
    *,
    split: str = "train",
    id_field: str = "id",
    problem_field: str = "problem",
    answer_field: str = "answer",
    subset: str | None = None,
    max_prompts: int | None = None,
    levels: Sequence[int] | None = None,
) -> list[Prompt]:
    """Load and validate a dataset.

    Args:
        spec: a .jsonl / .json / .parquet path, ``shipped:NAME``, ``hf:NAME`` (a Hugging Face
            dataset: a local folder saved with ``save_to_disk`` or a hub name, online only) or
            ``synthetic:arith`` (the embedded task, :mod:`limr.task`).
        split: split of a Hugging Face dataset or of the synthetic task.
        subset: a JSONL of ``{"id": ...}`` lines; keep only those ids (in the dataset's order).
        max_prompts: keep only the first N (after the level and subset filters).
        levels: keep only the prompts whose ``level`` field is one of these (MATH's ``5`` or
            ``"Level 5"``, the synthetic task's 1-5); a prompt without a level is an error.
    """
    fields = dict(id_field=id_field, problem_field=problem_field, answer_field=answer_field)
    if spec.startswith("synthetic:"):
        from limr import task

        prompts = task.load(spec.split(":", 1)[1], split=split)
    elif spec.startswith("hf:"):
        prompts = records_to_prompts(_hf_records(spec[3:], split), **fields)
    elif spec.startswith("shipped:"):
        prompts = records_to_prompts(iter_records(shipped_path(spec[8:])), **fields)
    else:
        prompts = records_to_prompts(iter_records(spec), **fields)
    if levels is not None:
        prompts = filter_levels(prompts, levels, spec)
    if subset is not None:
        prompts = filter_subset(prompts, subset)
    if max_prompts is not None:
        prompts = prompts[:max_prompts]
    if not prompts:
        raise DataError([f"{spec}: no prompts"])
    return prompts


def level_of(prompt: Prompt) -> int | None:
    """The difficulty level of a prompt (``extra["level"]``: 3, "3" or "Level 3"), or None."""
    value = prompt.extra.get("level")
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        text = value.strip()
        if text.lower().startswith("level"):
            text = text[5:].strip()
        if text.isdigit():
            return int(text)
    return None


def filter_levels(prompts: list[Prompt], levels: Sequence[int], spec: str) -> list[Prompt]:
    """Keep the prompts whose level is in ``levels`` (in the dataset's order)."""
    wanted = {int(level) for level in levels}
    kept, unlevelled = [], []
    for p in prompts:
        level = level_of(p)
        if level is None:
            unlevelled.append(p.id)
        elif level in wanted:
            kept.append(p)
    if unlevelled:
        raise DataError(
            [f"{spec}: data.levels is set but {len(unlevelled)} prompts have no level field "
             f"(e.g. id {unlevelled[0]!r})"]
        )  # fmt: skip
    if not kept:
        raise DataError([f"{spec}: no prompts at levels {sorted(wanted)}"])
    return kept


def filter_subset(prompts: list[Prompt], subset_path: str | Path) -> list[Prompt]:
    """Keep the prompts whose id is listed in ``subset_path`` (JSONL with an ``id`` per line)."""
    wanted: set[str] = set()
    problems = []
    for where, record in iter_records(subset_path):
        if isinstance(record, dict) and record.get("id") is not None:
            wanted.add(_as_text(record["id"]))
        else:
            problems.append(f"{where}: expected a JSON object with an 'id'")
    if problems:
        raise DataError(problems)
    known = {p.id for p in prompts}
    missing = sorted(wanted - known)
    if missing:
        raise DataError(
            [f"{subset_path}: {len(missing)} ids are not in the dataset, e.g. {missing[:3]}"]
        )
    return [p for p in prompts if p.id in wanted]


def _hf_records(name: str, split: str) -> Iterator[tuple[str, Any]]:
    try:
        import datasets
    except ImportError:
        raise DataError(
            [f"hf:{name}: needs the `datasets` package (pip install datasets)"]
        ) from None
    if Path(name).exists():
        ds = datasets.load_from_disk(name)
        if isinstance(ds, datasets.DatasetDict):
            ds = ds[split]
    else:
        ds = datasets.load_dataset(name, split=split)
    for i, row in enumerate(ds):
        yield f"hf:{name}[{split}]:row {i + 1}", dict(row)


def format_prompt(
    problem: str,
    *,
    template: str = "plain",
    tokenizer: Any = None,
    system_prompt: str = "",
    plain_suffix: str = "",
) -> str:
    """Turn a problem into the text the model continues.

    ``plain``: ``problem + plain_suffix``. ``chat``: the tokenizer's chat template with the system
    prompt. ``qwen_math``: the Qwen chat format written out (the paper's prompt), so it works for
    tokenizers without a template.
    """
    if template == "plain":
        return problem + plain_suffix
    if template == "qwen_math":
        return (
            f"<|im_start|>system\n{system_prompt}<|im_end|>\n"
            f"<|im_start|>user\n{problem}<|im_end|>\n<|im_start|>assistant\n"
        )
    if template == "chat":
        if tokenizer is None or not getattr(tokenizer, "chat_template", None):
            raise ValueError("data.template=chat needs a tokenizer with a chat template")
        messages = [{"role": "user", "content": problem}]
        if system_prompt:
            messages.insert(0, {"role": "system", "content": system_prompt})
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    raise ValueError(f"unknown prompt template {template!r}: plain, chat or qwen_math")
