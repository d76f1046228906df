"""Shell completion for `infermeter`, by argcomplete: commands, options and choices complete
from the very parser that parses them, so they never drift apart.

    eval "$(infermeter completion bash)"            # in ~/.bashrc
    infermeter completion zsh > ~/.zfunc/_infermeter
    infermeter completion fish > ~/.config/fish/completions/infermeter.fish

The shell runs `infermeter` itself with _ARGCOMPLETE set to ask for completions; complete()
answers and exits before anything else runs. argcomplete is imported only then and by the
`completion` command, so ordinary runs do not pay for it.
"""

from __future__ import annotations

import argparse
import os

SHELLS = ("bash", "zsh", "fish", "tcsh", "powershell")
PROG = "infermeter"


def complete(parser: argparse.ArgumentParser) -> None:
    """When the shell asks for completions, print them and exit; otherwise return at once."""
    if "_ARGCOMPLETE" not in os.environ:
        return
    import argcomplete

    argcomplete.autocomplete(parser)


def register(subparsers: argparse._SubParsersAction) -> None:
    completion = subparsers.add_parser(
        "completion",
        help="print the shell completion script for bash, zsh, fish, tcsh or PowerShell",
        description="Print the script that makes your shell complete infermeter's commands, "
        "options and their choices. Load it from your shell's start-up file.",
        epilog="examples:\n"
        '  echo \'eval "$(infermeter completion bash)"\' >> ~/.bashrc\n'
        "  infermeter completion zsh > \"${fpath[1]}/_infermeter\"\n"
        "  infermeter completion fish > ~/.config/fish/completions/infermeter.fish",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    completion.add_argument("shell", choices=SHELLS, help="the shell to complete in")
    completion.set_defaults(func=_print_script)


def _print_script(args: argparse.Namespace) -> int:
    import argcomplete

    print(argcomplete.shellcode([PROG], shell=args.shell), end="")
    return 0
