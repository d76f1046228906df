"""Shell completion: the script `infermeter completion bash` prints, loaded into a real bash,
completes commands, options and choices from the parser itself."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from agent.cli import main

BIN = Path(sys.executable).parent
pytestmark = pytest.mark.skipif(
    shutil.which("bash") is None or not (BIN / "infermeter").exists(),
    reason="needs bash and the installed infermeter command",
)

# Loads the script, then asks for completions as bash does when Tab is pressed after $1.
ASK = """
source <(infermeter completion bash)
read -ra COMP_WORDS <<< "$1"
[[ "$1" == *" " ]] && COMP_WORDS+=("")
COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
COMP_LINE="$1"
COMP_POINT=${#COMP_LINE}
_python_argcomplete infermeter
printf '%s\\n' "${COMPREPLY[@]}"
"""


def completions(line: str) -> set[str]:
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    done = subprocess.run(["bash", "-c", ASK, "_", line], env=env, capture_output=True, text=True, timeout=60, check=True)
    return {word.strip() for word in done.stdout.splitlines() if word.strip()}


def test_commands_complete_from_their_first_letters():
    assert completions("infermeter rep") == {"report"}
    assert {"agent", "admin", "collector", "report", "export", "demo", "completion"} <= completions("infermeter ")


def test_subcommands_options_and_choices_complete():
    assert {"costs", "explain", "forecast"} <= completions("infermeter report ")
    assert completions("infermeter report costs --gr") == {"--group-by", "--granularity"}
    assert completions("infermeter completion ") >= {"bash", "zsh", "fish"}


def test_every_shell_gets_a_script_naming_the_command(capsys):
    for shell in ("bash", "zsh", "fish"):
        assert main(["completion", shell]) == 0
        assert "infermeter" in capsys.readouterr().out


def test_an_unknown_shell_is_refused(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["completion", "cmd.exe"])
    assert exit_info.value.code == 2
    assert "invalid choice" in capsys.readouterr().err
