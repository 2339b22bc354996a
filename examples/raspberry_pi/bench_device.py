#!/usr/bin/env python3
"""Benchmarks this device with tla-edge's benchmark (the one ``tla-edge bench`` runs) and files the result under its name.

    python bench_device.py                       # bundled samples, bundled int8 model, 1 and 4 threads
    python bench_device.py --source 0            # camera 0 instead of the samples
    python bench_device.py --model m_edgetpu.tflite --edgetpu

Writes ``benchmarks/results/<device>.json`` in the bench schema
(``tla-edge-bench/1``) plus a ``device`` record: the board from
``/proc/device-tree/model`` (else the OS and CPU architecture) and, on a
Raspberry Pi, the throttling flags before and after the run. It never
overwrites an existing file without ``--force``.
"""

from __future__ import annotations

import argparse
import platform
import re
import subprocess
import sys
from pathlib import Path

from tla_edge.errors import UserError
from tla_edge.fileio import check_writable, write_json_atomic
from tla_edge.runtime.benchmark import run_benchmark
from tla_edge.runtime.benchmark_report import format_table

RESULTS_DIR = Path(__file__).resolve().parents[2] / "benchmarks" / "results"
DEVICE_TREE_MODEL = Path("/proc/device-tree/model")


def device_model(tree_model: Path = DEVICE_TREE_MODEL) -> str:
    """The board's own name (``Raspberry Pi 5 Model B Rev 1.0``), else ``Linux aarch64``."""
    try:
        name = tree_model.read_bytes().rstrip(b"\x00").decode("utf-8", "replace").strip()
    except OSError:
        name = ""
    return name or f"{platform.system()} {platform.machine()}"


def device_slug(model: str, edgetpu: bool = False) -> str:
    """A file name from a board name: ``Raspberry Pi 5 Model B Rev 1.0`` -> ``raspberry_pi_5_model_b_rev_1_0``."""
    slug = re.sub(r"[^a-z0-9]+", "_", model.lower()).strip("_") or "unknown_device"
    return f"{slug}_edgetpu" if edgetpu else slug


def throttled() -> str | None:
    """``vcgencmd get_throttled`` (``0x0`` = never throttled nor under-volted), None off a Pi."""
    try:
        out = subprocess.run(["vcgencmd", "get_throttled"], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    return out.stdout.strip().partition("=")[2] or None


def build_parser() -> argparse.ArgumentParser:
    """The flags: the usual ``tla-edge bench`` ones plus where the result goes."""
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument("--source", type=str, default=None,
                        help="image folder, video or camera index (default: the bundled sample frames)")
    parser.add_argument("--model", type=str, action="append", default=None,
                        help="liveness .tflite; repeat to compare (default: the bundled int8 model)")
    parser.add_argument("--threads", type=int, action="append", default=None,
                        help="liveness interpreter threads; repeat to compare (default: 1 and 4)")
    parser.add_argument("--frames", type=int, default=100, help="timed frames per configuration")
    parser.add_argument("--warmup", type=int, default=10, help="untimed frames first")
    parser.add_argument("--edgetpu", action="store_true", help="run the liveness model on a Coral Edge TPU")
    parser.add_argument("--device", type=str, default=None,
                        help="name for the result file (default: from /proc/device-tree/model)")
    parser.add_argument("--out", type=Path, default=None,
                        help=f"result file (default: {RESULTS_DIR}/<device>.json)")
    parser.add_argument("--force", action="store_true", help="overwrite the result file")
    return parser


def run(args: argparse.Namespace) -> int:
    """Runs the benchmark (tla_edge.runtime.benchmark), adds the device record, writes the result."""
    for flag, value, least in (("--frames", args.frames, 1), ("--warmup", args.warmup, 0),
                               *(("--threads", t, 1) for t in args.threads or ())):
        if value < least:
            raise ValueError(f"{flag} {value} is not >= {least}")
    model = device_model()
    name = device_slug(args.device or model, args.edgetpu)
    out = check_writable(args.out or RESULTS_DIR / f"{name}.json", args.force)
    before = throttled()
    report, _ = run_benchmark(args.source, [Path(m) for m in args.model or ()], args.threads or (1, 4),
                              args.frames, args.warmup, edgetpu=args.edgetpu)
    print(format_table(report))
    after = throttled()
    report["device"] = {"name": name, "model": model, "edgetpu": args.edgetpu,
                        "throttled_before": before, "throttled_after": after}
    write_json_atomic(out, report)
    print(f"bench_device: wrote {out} (device {model!r})")
    if after not in (None, "0x0"):
        print(f"bench_device: warning: throttled={after}: the board was hot or under-volted; "
              "its numbers are low (add cooling, use the official power supply)", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Parses the flags and runs; a user mistake ends in one line and exit code 2."""
    args = build_parser().parse_args(argv)
    try:
        return run(args)
    except KeyboardInterrupt:
        print("bench_device: interrupted; nothing written", file=sys.stderr)
        return 130
    except (UserError, FileNotFoundError, ValueError, OSError) as err:
        print(f"bench_device: error: {' '.join(str(err).split())}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
