"""The ``tla-edge`` command: argparse subcommands, one module each.

Each subcommand module defines ``add_arguments(parser)`` and ``run(args) -> int``
and imports heavy libraries (TensorFlow, MediaPipe) only inside ``run``, so
``tla-edge --help`` and the device commands never load TensorFlow.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import signal
import sys
import threading
from typing import Iterator, Sequence

from tla_edge import __version__
from tla_edge.errors import UserError

# name -> (module, one-line help)
COMMANDS = {
    "prepare": ("tla_edge.cli.prepare", "detect and crop faces of a dataset into a crops folder + manifest"),
    "train": ("tla_edge.cli.train", "train a liveness model (MobileNetV2 or ResNet34) on prepared crops"),
    "evaluate": ("tla_edge.cli.evaluate", "ISO/IEC 30107-3 metrics of a .keras or .tflite model"),
    "convert": ("tla_edge.cli.convert", "convert a .keras model to TFLite (float, fp16, dynamic, int8, QAT)"),
    "info": ("tla_edge.cli.info", "inspect a .tflite: tensors, quantization, ops, Edge TPU readiness"),
    "bench": ("tla_edge.cli.bench", "per-stage, per-frame latency of detector + liveness model"),
    "demo": ("tla_edge.cli.demo", "liveness on a camera, video or image folder, with overlay or JSON lines"),
    "record": ("tla_edge.cli.record", "record camera frames (real or an attack species) as a dataset with a manifest"),
    "calibrate": ("tla_edge.cli.calibrate", "choose a model's threshold on a recording; write a calibrated copy"),
}


class _Formatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    pass


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every subcommand registered."""
    parser = argparse.ArgumentParser(
        prog="tla-edge",
        description="Face liveness from Keras training to int8 TFLite on Raspberry Pi and Coral.",
        formatter_class=_Formatter,
    )
    parser.add_argument("--version", action="version", version=f"tla-edge {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name, (module_name, help_text) in COMMANDS.items():
        module = importlib.import_module(module_name)
        p = sub.add_parser(
            name,
            help=help_text,
            description=(module.__doc__ or help_text).strip(),
            formatter_class=_Formatter,
        )
        module.add_arguments(p)
        p.set_defaults(func=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the CLI; returns the exit code (0 ok, 1 failed check, 2 user error, 130 interrupted)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if sys.stdout is None or _fd_closed(sys.stdout):
        print(f"tla-edge {args.command}: error: standard output is closed; expected somewhere to write "
              "the results (redirect it to a file, or to /dev/null to discard them)", file=sys.stderr)
        return 2
    try:
        with signals_as_interrupt():
            return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("tla-edge: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # stdout closed by its reader (`| head`) or before the run: nothing more to say there
        _silence_stdout()
        print(f"tla-edge {args.command}: error: standard output is closed", file=sys.stderr)
        return 2
    except (UserError, FileNotFoundError, ValueError) as err:
        print(f"tla-edge {args.command}: error: {_one_line(err)}", file=sys.stderr)
        return 2
    except OSError as err:
        print(f"tla-edge {args.command}: error: {_one_line(err)}", file=sys.stderr)
        return 2


INTERRUPT_SIGNALS = ("SIGTERM", "SIGHUP")
"""Signals handled like Ctrl-C: cleanup runs, temporary files go, partial files never take a final name."""


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


@contextlib.contextmanager
def signals_as_interrupt() -> Iterator[None]:
    """Turns SIGTERM and SIGHUP into KeyboardInterrupt (main thread only) while the body runs."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {}
    for name in INTERRUPT_SIGNALS:
        sig = getattr(signal, name, None)
        if sig is not None:
            previous[sig] = signal.signal(sig, _raise_interrupt)
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _fd_closed(stream) -> bool:
    try:
        fd = stream.fileno()
    except (OSError, ValueError, AttributeError):  # io.UnsupportedOperation: a StringIO, a test capture
        return False
    try:
        os.fstat(fd)
    except OSError:
        return True
    return False


def _silence_stdout() -> None:
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):
        pass


def _one_line(err: BaseException) -> str:
    text = str(err) or type(err).__name__
    return " ".join(text.split())

