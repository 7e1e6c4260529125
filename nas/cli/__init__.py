"""The ``lowformer-nas`` command. Each sub-command group lives in its own module with a ``register``."""

from __future__ import annotations

import argparse
import importlib
import sys

from lowformer_common import MEASURE_EXTRA_HINT, UserError, __version__

# Modules that add sub-commands; each has register(subparsers).
_GROUPS = ("nas.cli._space", "nas.cli._measure", "nas.cli._data", "nas.cli._predict", "nas.cli._search", "nas.cli._study",
           "nas.cli._onboard")


_MEASURE_EXTRA = ("torch", "onnx", "onnxruntime", "onnxscript")


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # argparse's own errors: one line, exit 2, like ours
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="lowformer-nas", description=__doc__)
    parser.add_argument("--version", action="version", version=f"lowformer-nas {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
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


if __name__ == "__main__":
    sys.exit(main())
