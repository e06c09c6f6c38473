"""The README's examples run as written."""

import json
import re
import subprocess
import sys
from pathlib import Path

import torch

from limr.history import RewardHistory

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def test_quick_start_has_exactly_the_two_make_commands():
    block = re.search(r"## Quick start.*?```bash\n(.*?)```", README, re.S).group(1)
    commands = [line.split("#")[0].strip() for line in block.splitlines() if line.strip()]
    assert commands == ["make run", "make test"]


def test_plugin_example_runs_with_limr_select(tmp_path):
    code = re.search(r"```python\n(# my_selectors.py\n.*?)```", README, re.S).group(1)
    (tmp_path / "my_selectors.py").write_text(code)
    # a small history: p0 learns (0 -> 1), p1 stays at 0.5, p2 gets worse
    h = RewardHistory(tmp_path / "run" / "history")
    for epoch, accs in enumerate([[0.0, 0.5, 1.0], [1.0, 0.5, 0.0]]):
        ids = ["p0", "p1", "p2"]
        correct = torch.tensor([a >= 0.75 for a in accs])
        h.record(epoch, epoch, ids, correct, correct.float())
        h.commit(epoch)
    command = re.search(r"```bash\n(limr select .*?)```", README, re.S).group(1)
    args = command.replace("\\\n", " ").split()[2:]  # after `limr select`
    args[0] = str(tmp_path / "run")
    out = subprocess.run(
        [sys.executable, "-m", "limr", "select", *args],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr
    kept = [json.loads(x)["id"] for x in (tmp_path / "subset.jsonl").read_text().splitlines()]
    assert kept == ["p0"]
