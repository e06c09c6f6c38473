import subprocess
import sys

import pytest

from limr.cli import COMMANDS, build_parser


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_has_a_one_line_help(command, capsys):
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args([command, "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert COMMANDS[command][1] in " ".join(out.split())


def test_limr_module_entry_point_runs():
    out = subprocess.run(
        [sys.executable, "-m", "limr", "--version"], capture_output=True, text=True, check=True
    )
    assert out.stdout.startswith("limr ")
