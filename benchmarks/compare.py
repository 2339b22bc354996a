"""Compares a new ``tla-edge bench --json`` result with a reference one; exit 1 on regression.

    python benchmarks/compare.py NEW.json benchmarks/results/bench_x86_64_random_mnv2.json
    python benchmarks/compare.py NEW.json REF.json --tolerance 0.1 --metrics total,invoke,overhead

Configurations are matched by their id (``<model stem>/<threads>t``). For each
metric the new value is divided by the reference one; a latency, the overhead
or the peak memory that grew by more than ``--tolerance`` (a fraction), or an
FPS that fell by more, is a regression, as is a reference configuration the
new run lacks. Like pycoral's benchmark references, a result is only
comparable with one from the same kind of machine: a different CPU or runtime
is reported as a warning.

Exit codes: 0 no regression, 1 regression, 2 unreadable input.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, NamedTuple, Sequence

STAGE_METRICS = ("decode", "detect", "detect_invoke", "crop", "invoke", "glue", "total")
RAW_METRICS = ("raw_detector", "raw_liveness")
OTHER_METRICS = ("overhead", "fps", "peak_rss_mb")
ALL_METRICS = STAGE_METRICS + RAW_METRICS + OTHER_METRICS
DEFAULT_METRICS = ("detect", "crop", "invoke", "total", "raw_detector", "raw_liveness", "overhead", "fps")
HIGHER_IS_BETTER = frozenset({"fps"})


class Row(NamedTuple):
    """One compared value."""

    config: str
    """Configuration id."""
    metric: str
    """Metric name, e.g. ``total`` or ``fps``."""
    reference: float | None
    """Reference value (None: missing)."""
    new: float | None
    """New value (None: missing)."""
    ratio: float | None
    """new / reference."""
    verdict: str
    """``ok``, ``REGRESSION``, ``improved``, ``MISSING`` or ``n/a``."""


def load_report(path: str | Path) -> dict[str, Any]:
    """Reads a bench JSON.

    Raises:
      FileNotFoundError: the file does not exist.
      ValueError: it is not JSON or not a tla-edge bench result.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"bench result '{path}' not found")
    try:
        report = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"bench result '{path}' is not JSON ({err})") from err
    if not isinstance(report, dict) or not str(report.get("format", "")).startswith("tla-edge-bench/"):
        found = report.get("format") if isinstance(report, dict) else type(report).__name__
        raise ValueError(f"'{path}' has format {found!r}; expected a 'tla-edge bench --json' result (tla-edge-bench/1)")
    return report


def metric_value(config: dict[str, Any], metric: str, stat: str = "median") -> float | None:
    """One metric of one configuration: a stage or raw-invoke statistic, overhead, fps or peak RSS."""
    if metric in STAGE_METRICS:
        return (config.get("stages", {}).get(metric) or {}).get(stat)
    if metric in RAW_METRICS:
        return (config.get("raw_invoke_ms", {}).get(metric[len("raw_") :]) or {}).get(stat)
    return config.get(metric)


def judge(metric: str, reference: float | None, new: float | None, tolerance: float) -> tuple[float | None, str]:
    """``(ratio, verdict)`` of one metric; pure."""
    if reference is None or new is None or reference <= 0:
        return None, "n/a"
    ratio = new / reference
    worse = ratio < 1.0 - tolerance if metric in HIGHER_IS_BETTER else ratio > 1.0 + tolerance
    better = ratio > 1.0 + tolerance if metric in HIGHER_IS_BETTER else ratio < 1.0 - tolerance
    return ratio, "REGRESSION" if worse else "improved" if better else "ok"


def compare(
    new: dict[str, Any],
    reference: dict[str, Any],
    metrics: Sequence[str] = DEFAULT_METRICS,
    tolerance: float = 0.2,
    stat: str = "median",
) -> tuple[list[Row], list[str]]:
    """Compares every reference configuration with the new run's.

    Returns:
      ``(rows, warnings)``.
    """
    warnings = []
    for key in ("machine", "cpu"):
        a, b = reference.get("host", {}).get(key), new.get("host", {}).get(key)
        if a != b:
            warnings.append(f"host {key} differs: reference {a!r}, new {b!r}; timings are not comparable")
    a, b = reference.get("host", {}).get("runtime"), new.get("host", {}).get("runtime")
    if a != b:
        warnings.append(f"runtime differs: reference {a}, new {b}")
    new_by_id = {c["id"]: c for c in new.get("configurations", [])}
    rows = []
    for ref in reference.get("configurations", []):
        cur = new_by_id.get(ref["id"])
        if cur is None:
            rows.append(Row(ref["id"], "-", None, None, None, "MISSING"))
            continue
        if ref.get("model", {}).get("sha256") != cur.get("model", {}).get("sha256"):
            warnings.append(f"{ref['id']}: the model file differs from the reference's (sha256)")
        for metric in metrics:
            r, n = metric_value(ref, metric, stat), metric_value(cur, metric, stat)
            ratio, verdict = judge(metric, r, n, tolerance)
            rows.append(Row(ref["id"], metric, r, n, ratio, verdict))
    for extra in sorted(set(new_by_id) - {c["id"] for c in reference.get("configurations", [])}):
        warnings.append(f"{extra}: not in the reference; not compared")
    return rows, warnings


def format_rows(rows: Sequence[Row], stat: str, tolerance: float) -> str:
    """The comparison as a table."""

    def num(v: float | None) -> str:
        return "-" if v is None else f"{v:.3f}"

    lines = [f"{'configuration':28s} {'metric':14s} {'reference':>10s} {'new':>10s} {'ratio':>6s}  verdict"]
    for r in rows:
        lines.append(
            f"{r.config[:28]:28s} {r.metric:14s} {num(r.reference):>10s} {num(r.new):>10s} "
            f"{'-' if r.ratio is None else f'{r.ratio:.2f}':>6s}  {r.verdict}"
        )
    bad = sum(r.verdict in ("REGRESSION", "MISSING") for r in rows)
    lines.append(
        f"{bad} regression(s) at tolerance {tolerance:.0%} on the {stat} "
        "(latency, overhead, memory: higher is worse; fps: lower is worse)"
    )
    return "\n".join(lines)


def _metrics(text: str) -> list[str]:
    out = [m.strip() for m in text.split(",") if m.strip()]
    unknown = [m for m in out if m not in ALL_METRICS]
    if unknown or not out:
        raise argparse.ArgumentTypeError(f"metrics {unknown or text!r} not known; expected some of {', '.join(ALL_METRICS)}")
    return out


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0.0 <= value < 10.0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a fraction in [0, 10), e.g. 0.2 for 20%")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the comparison; returns the exit code."""
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument("new", type=Path, help="the new bench JSON")
    parser.add_argument("reference", type=Path, help="the reference bench JSON")
    parser.add_argument("--tolerance", type=_fraction, default=0.2, help="allowed relative change, e.g. 0.2 = 20%%")
    parser.add_argument(
        "--metrics", type=_metrics, default=list(DEFAULT_METRICS), metavar="M[,M...]",
        help=f"metrics to compare, of: {', '.join(ALL_METRICS)}",
    )  # fmt: skip
    parser.add_argument(
        "--stat", type=str, default="median", choices=("median", "p90", "p99", "mean", "min", "max"),
        help="statistic of the stage timings compared",
    )  # fmt: skip
    args = parser.parse_args(argv)
    try:
        new, ref = load_report(args.new), load_report(args.reference)
    except (FileNotFoundError, ValueError) as err:
        print(f"compare: error: {' '.join(str(err).split())}", file=sys.stderr)
        return 2
    rows, warnings = compare(new, ref, args.metrics, args.tolerance, args.stat)
    for w in warnings:
        print(f"warning: {w}", file=sys.stderr)
    print(format_rows(rows, args.stat, args.tolerance))
    return 1 if any(r.verdict in ("REGRESSION", "MISSING") for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
