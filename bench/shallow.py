"""The shallow task's benchmarks behind one command, run from the repository root.

::

    python -m bench.shallow speed --root path/to/data --threads 1 2 [--from-checkpoint CKPT]
    python -m bench.shallow profile --root path/to/data --threads 1 2
    python -m bench.shallow mnist run --objective cpc --max-steps 21000 --probe-every 1000 --tag protocol_cpc
    python -m bench.shallow mnist parity
    python -m bench.shallow mnist protocol
    python -m bench.shallow cifar record --runs RUNS
    python -m bench.shallow cifar report

Each command runs one script of ``bench/`` (``COMMANDS``) with the arguments that follow it, exactly as
``python bench/<script>.py ARGUMENTS`` runs it, so the results it writes quote that command and either form reruns
it. ``python -m bench.shallow COMMAND --help`` prints the script's own options.
"""

from __future__ import annotations

import argparse
import importlib.util
import runpy
import sys
from collections.abc import Sequence

COMMANDS = {
    "speed": ("bench.shallow_speed", "ms per step of pdrl.fit against a bare float32 loop and this CPU's floor"),
    "profile": ("bench.shallow_step_profile", "where pdrl.fit's step spends its time, by kind of work"),
    "mnist": ("bench.shallow_mnist", "the MNIST protocol and the fast path's parity: run, parity, protocol"),
    "cifar": ("bench.shallow_cifar", "the CIFAR-10 protocol, recorded from its runs' checkpoints: record, report"),
}


def parser() -> argparse.ArgumentParser:
    """The command line's first word: which script to run (the script parses the rest itself)."""
    commands_parser = argparse.ArgumentParser(
        prog="python -m bench.shallow",
        description=__doc__.split("\n")[0],
        epilog="python -m bench.shallow COMMAND --help: the options of that command's script",
    )
    commands = commands_parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (_, question) in COMMANDS.items():
        commands.add_parser(name, help=question, add_help=False)
    return commands_parser


def main(argv: Sequence[str] | None = None) -> None:
    """Run the script that ``argv``'s first word names with the rest of ``argv`` as its own command line.

    The script runs as ``__main__`` (its ``if __name__ == "__main__":`` block: ``main()``, or for
    ``bench/shallow_mnist.py`` the parser of its ``run``, ``parity`` and ``protocol``), with ``sys.argv`` set to
    ``[its path, *arguments]`` while it runs.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    command = parser().parse_args(argv[:1]).command
    module = COMMANDS[command][0]
    saved_argv = sys.argv
    sys.argv = [importlib.util.find_spec(module).origin, *argv[1:]]
    try:
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    finally:
        sys.argv = saved_argv


if __name__ == "__main__":
    main()
