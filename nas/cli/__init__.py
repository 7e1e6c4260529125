"""The ``lowformer-nas`` command: one module per sub-command group, each with a ``register(subparsers)``."""

from __future__ import annotations

import argparse
import importlib
import sys

from lowformer_common import MEASURE_EXTRA_HINT, UserError, __version__, one_line

# Every command and the module that adds it (each module has register(subparsers)). A run imports only its
# command's module (tests/nas/test_cli_help.py checks this table against what each module registers).
COMMANDS = {
    "models": "nas.cli._space", "count": "nas.cli._space", "export": "nas.cli._space",
    "measure": "nas.cli._measure", "bundle": "nas.cli._measure",
    "data": "nas.cli._data", "import": "nas.cli._data",
    "predictors": "nas.cli._predict", "predict": "nas.cli._predict",
    "search": "nas.cli._search", "plot": "nas.cli._search",
    "study": "nas.cli._study",
    "onboard": "nas.cli._onboard",
}
_GROUPS = tuple(dict.fromkeys(COMMANDS.values()))  # in the order `lowformer-nas --help` lists them


_MEASURE_EXTRA = ("torch", "onnx", "onnxruntime", "onnxscript")

DESCRIPTION = (
    "Explore the LowFormer family of vision backbones for your device and latency budget: search the design "
    "space with per-device latency predictors, measure configs on this machine or on an edge device, train "
    "predictors from those measurements, and rerun the paper's hardware studies."
)
EPILOG = (
    "Start with `lowformer-nas models` (the paper's variants) and `lowformer-nas search --device jetson_tx2 "
    "--budget-ms 12`; `lowformer-nas COMMAND --help` shows a command's options. Measurements and trained "
    "predictors are kept in $LOWFORMER_NAS_HOME (default ~/.lowformer-nas)."
)


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # argparse's own errors: one line, exit 2, like ours
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser of every command, or, given a known ``command``, of its group only (what a run needs)."""
    parser = _Parser(prog="lowformer-nas", description=DESCRIPTION, epilog=EPILOG)
    parser.add_argument("--version", action="version", version=f"lowformer-nas {__version__}")
    sub = parser.add_subparsers(dest="command", title="commands", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for name in (COMMANDS[command],) if command in COMMANDS else _GROUPS:
        importlib.import_module(name).register(sub)
    return parser


def _command_of(argv: list[str]) -> str | None:
    # The first word that is not an option names the command (the top level has only --help and --version).
    return next((a for a in map(str, argv) if not a.startswith("-")), None)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(_command_of(argv))
    args = parser.parse_args(argv)
    try:
        # Before every command, in this order (nas/cli/_before.py, `before_command`):
        # 1. `--device local` becomes this machine's device id;
        # 2. search and predict on a device without a predictor stop with the onboarding hint;
        # 3. the drift check: measure, search and study on this machine with a predictor time its anchors
        #    (at most once a day; it says so on stderr when it runs; LOWFORMER_NAS_DRIFT_CHECK=off skips it)
        #    and propose onboarding again when they no longer run as the predictor says.
        from ._before import before_command

        before_command(args)
        return args.func(args) or 0
    except UserError as e:
        print(f"lowformer-nas: error: {e}", file=sys.stderr)
        return 2
    except ModuleNotFoundError as e:
        if e.name and e.name.split(".")[0] in _MEASURE_EXTRA:
            print(f"lowformer-nas: error: {args.command}: needs {e.name}; {MEASURE_EXTRA_HINT}", file=sys.stderr)
            return 2
        raise
    except BrokenPipeError:  # `lowformer-nas models | head`
        return 0
    except OSError as e:
        # A path the user gave cannot be read or written (missing folder, permissions, full disk).
        where = e.filename or args.command
        print(f"lowformer-nas: error: {where}: {e.strerror or e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("lowformer-nas: interrupted", file=sys.stderr)
        return 130
    except Exception as e:
        if not _is_database_error(e):
            raise
        # The database went away mid-command (a server restart, a dropped connection): what was committed stays,
        # and the command resumes from there when run again.
        print(f"lowformer-nas: error: database: {one_line(e)}; nothing committed is lost: run the command again once "
              "the database is reachable", file=sys.stderr)
        return 2


def _is_database_error(e: BaseException) -> bool:
    """A SQLAlchemy or database-driver error (OperationalError and its family), without importing SQLAlchemy."""
    return any(c.__module__.split(".")[0] in ("sqlalchemy", "psycopg2", "psycopg", "pymysql", "sqlite3")
               for c in type(e).__mro__)


if __name__ == "__main__":
    sys.exit(main())
