"""The ``lowformer-nas`` command: one module per sub-command group, each with a ``register(subparsers)``."""

from __future__ import annotations

import argparse
import importlib
import sys

from lowformer_common import MEASURE_EXTRA_HINT, UserError, __version__, one_line

# Modules that add sub-commands; each has register(subparsers).
_GROUPS = ("nas.cli._space", "nas.cli._measure", "nas.cli._data", "nas.cli._predict", "nas.cli._search", "nas.cli._study",
           "nas.cli._onboard")


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


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="lowformer-nas", description=DESCRIPTION, epilog=EPILOG)
    parser.add_argument("--version", action="version", version=f"lowformer-nas {__version__}")
    sub = parser.add_subparsers(dest="command", title="commands", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for name in _GROUPS:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        from ._onboard import before_command

        before_command(args)  # --device local, the onboarding hint, the drift check
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
