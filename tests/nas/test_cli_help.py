"""`--help` of the command and of every sub-command: written for users, every option explained."""

import argparse
import re

import pytest

from nas.cli import build_parser, main


def _parsers():
    def walk(parser, path):
        yield path, parser
        for a in parser._actions:
            if isinstance(a, argparse._SubParsersAction):
                for name, sub in a.choices.items():
                    yield from walk(sub, path + [name])

    return list(walk(build_parser(), []))


PARSERS = _parsers()


def test_top_level_help_has_no_developer_notes(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    out = capsys.readouterr().out
    assert e.value.code == 0
    assert not re.search(r"register|module|sub-command group|``", out), out
    assert "lowformer-nas COMMAND --help" in out and "search" in out and "study" in out


@pytest.mark.parametrize("path, parser", PARSERS, ids=[" ".join(p) or "lowformer-nas" for p, _ in PARSERS])
def test_every_option_is_explained(path, parser):
    bare = [a.option_strings or a.dest for a in parser._actions
            if not isinstance(a, (argparse._HelpAction, argparse._VersionAction, argparse._SubParsersAction)) and not a.help]
    assert not bare, f"{' '.join(path)}: options without help: {bare}"
    text = parser.format_help()
    assert not re.search(r"\bregister\b|``|\bTODO\b", text), text


def test_the_command_table_is_what_each_group_registers():
    import importlib

    from nas.cli import _GROUPS, COMMANDS

    for group in _GROUPS:
        parser = argparse.ArgumentParser()
        sub = parser.add_subparsers()
        importlib.import_module(group).register(sub)
        assert {n for n, g in COMMANDS.items() if g == group} == set(sub.choices)


def test_a_command_imports_only_its_own_group():
    import subprocess
    import sys

    from nas.cli import _GROUPS

    code = ("import sys; from nas.cli import main; main(['models']); "
            "print(' '.join(sorted(m for m in sys.modules if m.startswith('nas.cli._'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert set(out.split()) & set(_GROUPS) == {"nas.cli._space"}
