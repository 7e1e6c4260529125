"""README stays the truth: its test command is what CI runs, and every command of its tour parses."""

import pathlib
import re
import shlex

from nas.cli import build_parser

ROOT = pathlib.Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()
BLOCKS = re.findall(r"```bash\n(.*?)```", README, re.S)


def test_two_setup_commands():
    main, tests = BLOCKS[0].strip(), BLOCKS[1].strip()
    assert "pip install -e ." in main and "lowformer-nas search" in main
    assert "python -m pytest" in tests
    ci = (ROOT / ".ci" / "run").read_text()
    assert tests in ci.splitlines(), "the README's test command must be the one .ci/run runs"


def test_every_tour_command_parses():
    parser = build_parser()
    commands = []
    for block in BLOCKS:
        for line in block.splitlines():
            line = line.split("#")[0].strip()
            for part in line.split("&&"):
                part = part.strip()
                if part.startswith("lowformer-nas "):
                    commands.append(part)
    assert len(commands) > 20
    for cmd in commands:
        parser.parse_args(shlex.split(cmd)[1:])  # exits (SystemExit) on a flag the CLI does not have
