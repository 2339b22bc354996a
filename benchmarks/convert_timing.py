"""Conversion benchmark: every format of one model, its parity and its latency, as one JSON.

Runs ``tla-edge convert --all --qat`` (float32, fp16, dynamic, int8 PTQ, int8
QAT) with ``--report``, then ``tla-edge bench`` on every written file over
the same frames, and merges both into ``benchmarks/results/convert_<model>.json``:
file size, parity with the Keras model (correlation, agreement, ACER and EER
change, largest score difference), threshold, Edge TPU readiness, and the
liveness invoke latency (median, p90) inside the pipeline and alone.

    python benchmarks/convert_timing.py models/default \\
        --calib crops/nuaa --frames frames/nuaa200 \\
        --out benchmarks/results/convert_default.json

A harness around the two commands (each runs in a child process, as a user
would run it), kept with the other harnesses in ``benchmarks/``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Sequence

from tla_edge import fileio
from tla_edge.cli import argtypes
from tla_edge.errors import UserError


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The benchmark's flags."""
    p = argparse.ArgumentParser(
        prog="python benchmarks/convert_timing.py",
        description=(__doc__ or "").split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("model", type=Path, help="MODEL.keras or a model folder")
    p.add_argument("--calib", type=Path, required=True, help="crops folder (tla-edge prepare)")
    p.add_argument("--frames", type=Path, required=True, help="folder of face frames for tla-edge bench")
    p.add_argument("--out", type=Path, required=True, help="the merged JSON (convert_<model>.json)")
    p.add_argument("--work", type=Path, default=None, help="where the .tflite files go (default: a temp folder)")
    p.add_argument("--bench-frames", type=int, default=100, help="timed frames per model")
    p.add_argument("--threads", type=argtypes.threads, default=1, help="liveness interpreter threads")
    p.add_argument("--qat-target", type=str, default="teacher", choices=("labels", "teacher"),
                   help="passed to tla-edge convert")
    p.add_argument("--qat-epochs", type=int, default=2, help="passed to tla-edge convert")
    p.add_argument("--no-qat", action="store_true", help="skip quantization-aware training")
    p.add_argument("--resize-crops", action="store_true", help="passed to tla-edge convert")
    p.add_argument("--force", action="store_true", help="overwrite --out")
    return p.parse_args(argv)


def _run(cmd: list[str]) -> None:
    print("+ " + " ".join(cmd), file=sys.stderr, flush=True)
    rc = subprocess.run(cmd, check=False).returncode
    if rc not in (0, 1):  # 1: a degraded model was reported, the others are still measured
        raise UserError(f"'{' '.join(cmd[:4])} ...' failed with exit code {rc}")


def merge(convert_report: dict[str, Any], bench: dict[str, Any] | None) -> dict[str, Any]:
    """One row per converted model: size, parity, threshold, Edge TPU, latency.

    Args:
      convert_report: ``tla-edge convert --report`` JSON.
      bench: ``tla-edge bench --json`` JSON of the same files (None: no latency).

    Returns:
      The merged, JSON-ready result.
    """
    by_path: dict[str, dict[str, Any]] = {}
    for c in (bench or {}).get("configurations", []):
        by_path[str(Path(c["model"]["path"]).resolve())] = c
    rows = []
    for m in convert_report["models"]:
        p = m["parity"]
        own = m.get("threshold_source") == "re-derived"
        conv = p["converted_own_threshold" if own else "converted"] or {}
        flt = p["float"] or {}
        row: dict[str, Any] = {
            "model": m["model"],
            "file": Path(m["file"]).name,
            "written": m.get("written", False),
            "size_bytes": m.get("bytes"),
            "size_mb": round(m["bytes"] / 1e6, 3) if m.get("bytes") else None,
            "io": [m["input"], m["output"]],
            "float_tensors": m["float_tensors"],
            "threshold": m["threshold"],
            "threshold_source": m.get("threshold_source"),
            "pearson": p["pearson"],
            "agreement": p["agreement"],
            "agreement_own_threshold": p["agreement_own_threshold"],
            "max_abs_diff": p["max_abs_diff"],
            "mean_abs_diff": p["mean_abs_diff"],
            "acer_float": flt.get("acer"),
            "acer": conv.get("acer"),
            "acer_change_points": None if flt.get("acer") is None or conv.get("acer") is None
            else round(100 * (conv["acer"] - flt["acer"]), 3),
            "eer_float": flt.get("eer"),
            "eer": (p["converted"] or {}).get("eer"),
            "degraded": p["degraded"],
            "edgetpu_ready": m.get("edgetpu_ready"),
            "convert_s": m.get("convert_s"),
        }
        b = by_path.get(str(Path(m["file"]).resolve()))
        if b is not None:
            inv = b["stages"]["invoke"]
            raw = b["raw_invoke_ms"]["liveness"]
            row["latency_ms"] = {
                "threads": b["threads"], "invoke_median": inv["median"], "invoke_p90": inv["p90"],
                "raw_invoke_median": raw["median"], "raw_invoke_p90": raw["p90"],
                "total_median": b["stages"]["total"]["median"], "fps": b["fps"],
            }
        rows.append(row)
    out = {
        "format": "tla-edge-convert-bench/1",
        "source": convert_report["source"],
        "validation": convert_report["validation"],
        "calibration": convert_report["calibration"],
        "qat": convert_report.get("qat"),
        "models": rows,
        "convert_wall_s": convert_report.get("wall_s"),
    }
    if bench:
        out["bench"] = {k: bench.get(k) for k in ("created", "host", "source", "frames", "warmup", "detector")}
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """Runs convert, then bench, then writes the merged JSON; returns the exit code."""
    args = parse_args(argv)
    try:
        fileio.check_writable(args.out, args.force)
        with tempfile.TemporaryDirectory(prefix="tla_edge_convert_bench_") as tmp:
            work = args.work or Path(tmp)
            report_path, bench_path = work / "convert_report.json", work / "bench.json"
            cmd = [sys.executable, "-m", "tla_edge.cli", "convert", str(args.model), "--all",
                   "--calib", str(args.calib), "--out-dir", str(work), "--report", str(report_path),
                   "--force", "--allow-degraded"]
            if not args.no_qat:
                cmd += ["--qat", "--qat-target", args.qat_target, "--qat-epochs", str(args.qat_epochs)]
            if args.resize_crops:
                cmd.append("--resize-crops")
            _run(cmd)
            report = json.loads(report_path.read_text())
            files = [m["file"] for m in report["models"] if m.get("written")]
            bench = None
            if files:
                cmd = [sys.executable, "-m", "tla_edge.cli", "bench", "--source", str(args.frames),
                       "--threads", str(args.threads), "--frames", str(args.bench_frames),
                       "--json", str(bench_path), "--force", "--quiet"]
                for f in files:
                    cmd += ["--model", f]
                _run(cmd)
                bench = json.loads(bench_path.read_text())
            merged = merge(report, bench)
        fileio.write_json_atomic(args.out, merged)
    except UserError as err:
        print(f"convert benchmark: error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {args.out}")
    for r in merged["models"]:
        lat = r.get("latency_ms") or {}
        print(f"  {r['model']:<9} {r['size_mb'] or 0:>6.2f} MB  agree {100 * r['agreement']:6.2f}%  "
              f"ACER {r['acer_change_points'] if r['acer_change_points'] is not None else '-':>6} pts  "
              f"invoke {lat.get('raw_invoke_median', float('nan')):6.2f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
