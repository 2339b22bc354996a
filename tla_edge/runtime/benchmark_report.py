"""What the benchmark reports: the facts of its files, the one-screen table, the per-stage box plots.

The plot needs matplotlib (the ``dev`` or ``train`` extra), imported inside
:func:`write_plot` only, so a device prints the table without it.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Sequence

import numpy as np

from tla_edge import host
from tla_edge.errors import missing_extra
from tla_edge.fileio import sha256_file
from tla_edge.runtime.metadata import portable_path

if TYPE_CHECKING:
    from tla_edge.runtime.benchmark import Configuration, TimedPass

STAGES = ("decode", "detect", "detect_invoke", "crop", "invoke", "glue", "total")
"""Per-frame stages, in milliseconds (see benchmarks/README.md for what each times)."""

PLOT_SUFFIXES = (".png", ".svg", ".pdf")
"""File types :func:`write_plot` writes."""
STAT_NAMES = ("n", "median", "p90", "p99", "mean", "std", "min", "max")
"""The statistics :func:`stage_stats` gives of each stage."""
SHARE_STAGES = ("decode", "detect", "crop", "invoke", "glue")
"""The stages that add up to a frame's end-to-end time, decode to decision (``detect_invoke`` is inside ``detect``)."""


# --- statistics ---------------------------------------------------------------------


def stage_stats(values: Iterable[float]) -> dict[str, Any]:
    """Summary statistics of one stage's per-frame times (milliseconds).

    Args:
      values: one time per frame.

    Returns:
      ``{"n", "median", "p90", "p99", "mean", "std", "min", "max"}``; every
      statistic is None when there are no values (a stage that never ran).
    """
    a = np.asarray(list(values), dtype=np.float64)
    if a.size == 0:
        return {"n": 0, **{k: None for k in STAT_NAMES[1:]}}
    p50, p90, p99 = np.percentile(a, [50, 90, 99])
    return {
        "n": int(a.size),
        "median": round(float(p50), 4),
        "p90": round(float(p90), 4),
        "p99": round(float(p99), 4),
        "mean": round(float(a.mean()), 4),
        "std": round(float(a.std()), 4),
        "min": round(float(a.min()), 4),
        "max": round(float(a.max()), 4),
    }


def overhead_ratio(total: dict[str, Any], raw_detector: dict[str, Any], raw_liveness: dict[str, Any]) -> float | None:
    """Median pipeline total over the sum of the models' median raw invoke times.

    Returns:
      The ratio (1.0 = no glue at all), or None when a median is missing.
    """
    parts = (total.get("median"), raw_detector.get("median"), raw_liveness.get("median"))
    if any(p is None for p in parts) or parts[1] + parts[2] <= 0:
        return None
    return round(parts[0] / (parts[1] + parts[2]), 4)


def fps_from(total: dict[str, Any]) -> float | None:
    """Frames per second from a total-time summary: 1000 / mean milliseconds."""
    mean = total.get("mean")
    return round(1000.0 / mean, 2) if mean else None


# --- files ----------------------------------------------------------------------


def recorded_path(path: str | Path) -> str:
    """A path or source as the JSON records it: :func:`~tla_edge.runtime.metadata.portable_path`
    for an absolute path (relative to the working directory when under it, else
    ``<DIR>/<name>``); anything else exactly as given (``frames/``, ``0``, a URL).

    Results are committed and compared across machines; an absolute path
    names one machine's folders and says nothing the relative one does not.
    """
    return portable_path(path) if Path(str(path)).is_absolute() else str(path)


def file_facts(path: Path) -> dict[str, Any]:
    """Path (see :func:`recorded_path`), size and SHA-256 of a file."""
    return {"path": recorded_path(path), "size_bytes": path.stat().st_size, "sha256": sha256_file(path)}


def model_facts(path: Path) -> dict[str, Any]:
    """What the JSON says about a liveness model: file facts, I/O dtypes and shape, float tensors."""
    from tla_edge.runtime import modelinfo

    info = modelinfo.inspect_model(path)
    return {
        "name": path.stem,
        **file_facts(path),
        "dtype": info.inputs[0].dtype,
        "output_dtype": info.outputs[0].dtype,
        "input_shape": list(info.inputs[0].shape),
        "float_tensors": {"activations": info.float_activations, "constants": info.float_constants},
    }


def fused_facts(paths: Sequence[Path]) -> dict[str, Any]:
    """:func:`model_facts` of one model; of a fused set, the first's with the set's name and the others' facts."""
    facts = model_facts(paths[0])
    if len(paths) > 1:
        facts["name"] = "+".join(p.stem for p in paths)
        facts["fused_with"] = [model_facts(p) for p in paths[1:]]
    return facts


def stage_shares(parts: dict[str, list[float]], end_to_end: Sequence[float]) -> dict[str, float | None]:
    """Each stage's share of the end-to-end time: its summed milliseconds over the summed end-to-end ones.

    Args:
      parts: per-frame milliseconds of each stage of :data:`SHARE_STAGES`.
      end_to_end: per-frame decode + pipeline total, over the same frames.

    Returns:
      ``{stage: fraction}`` (they sum to 1 when every frame's stages are recorded);
      None for every stage when no time was measured.
    """
    whole = float(sum(end_to_end))
    return {s: (round(float(sum(parts[s])) / whole, 4) if whole > 0 else None) for s in SHARE_STAGES}


# --- table and plot ---------------------------------------------------------------


def _fmt(value: float | None, width: int, digits: int = 2) -> str:
    return f"{'-':>{width}}" if value is None else f"{value:{width}.{digits}f}"


def format_table(report: dict[str, Any]) -> str:
    """The one-screen summary: median milliseconds per stage, FPS, raw invokes, overhead, memory."""
    src = report["source"]
    host = report["host"]
    shape = src.get("frame_shape")
    size = f", {shape[1]}x{shape[0]}" if shape else ""
    width = max([28, *(len(c["id"]) for c in report["configurations"])])  # whole ids: rows differ at the end
    lines = [
        f"tla-edge bench: {report['frames']} frames after {report['warmup']} warm-up from "
        f"'{src['spec']}' ({src['kind']}{size}); detector {report['detector']['model']} "
        f"({report['detector']['mode']} mode); {host['machine']}, {host['cpus_available']} CPUs, "
        f"{host['runtime']['name']} {host['runtime']['version']}",
        "",
        f"{'median ms':{width}s} {'decode':>7s} {'detect':>7s} {'crop':>6s} {'invoke':>7s} {'glue':>6s} "
        f"{'total':>7s} {'p90':>7s} {'fps':>6s} | {'raw det':>7s} {'raw liv':>7s} {'overhd':>6s} | {'RSS MB':>6s}",
    ]
    for c in report["configurations"]:
        st = c["stages"]
        raw = c["raw_invoke_ms"]
        lines.append(
            f"{c['id']:{width}s} {_fmt(st['decode']['median'], 7)} {_fmt(st['detect']['median'], 7)} "
            f"{_fmt(st['crop']['median'], 6)} {_fmt(st['invoke']['median'], 7)} {_fmt(st['glue']['median'], 6)} "
            f"{_fmt(st['total']['median'], 7)} {_fmt(st['total']['p90'], 7)} {_fmt(c['fps'], 6, 1)} | "
            f"{_fmt(raw['detector']['median'], 7)} {_fmt(raw['liveness']['median'], 7)} "
            f"{_fmt(c['overhead'], 6)} | {_fmt(c['peak_rss_mb'], 6, 0)}"
        )
    lines.append("")
    lines.append(
        "overhead = median total (frames with a score) / (median raw detector + median raw liveness invoke); "
        f"goal <= {report['overhead_goal']}"
    )
    lines.append("end to end = decode to decision (decode + pipeline total); share = each stage's part of it")
    for c in report["configurations"]:
        share = c.get("stage_share") or {}
        parts = ", ".join(f"{s} {share[s] * 100:.0f} %" for s in SHARE_STAGES if share.get(s) is not None)
        faces = c.get("overlap_crops_faces")
        when = (f" ({faces['on_worker']} of {faces['on_worker'] + faces['in_turn']} faces: the rest had no idle CPU)"
                if faces and faces["in_turn"] else "")
        fused = (f", members {c['members']}" + (", later crops cut on a worker beside the first crop and invoke" + when
                                                 if c.get("overlap_crops") else "")
                 if c.get("members") and "fused_with" in c["model"] else "")
        lines.append(f"{c['id']}: end to end {_fmt(c.get('fps_end_to_end'), 0, 1).strip()} fps"
                     + (f"; share {parts}" if parts else "") + fused)
    for c in report["configurations"]:
        if c["frames_scored"] < c["frames"]:
            lines.append(
                f"{c['id']}: {c['frames_scored']} of {c['frames']} frames scored ("
                + ", ".join(f"{k} {v}" for k, v in c["decisions"].items())
                + "); crop and invoke are over the scored frames only"
            )
    return "\n".join(lines)


PLOT_PANELS = ("detect", "crop", "invoke", "glue", "total", "raw_detector", "raw_liveness", "decode")


def write_plot(path: Path, report: dict[str, Any], samples: Sequence[dict[str, list[float]]]) -> None:
    """Box plots of every stage's per-frame times, one box per configuration, one colour per model.

    Raises:
      UserError: matplotlib is not installed.
    """
    try:
        from matplotlib.figure import Figure
        from matplotlib.patches import Patch
    except ImportError:
        raise missing_extra("matplotlib", "dev") from None
    from tla_edge.fileio import atomic_path

    configs = report["configurations"]
    models = list(dict.fromkeys(c["model"]["name"] for c in configs))
    palette = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f"]
    colour = {m: palette[i % len(palette)] for i, m in enumerate(models)}
    fig = Figure(figsize=(4.0 * 4, 3.6 * 2), layout="constrained")
    axes = fig.subplots(2, 4).ravel()
    for ax, stage in zip(axes, PLOT_PANELS):
        data = [s.get(stage) or [np.nan] for s in samples]
        box = ax.boxplot(data, patch_artist=True, showfliers=True, flierprops={"markersize": 2})
        for patch, c in zip(box["boxes"], configs):
            patch.set_facecolor(colour[c["model"]["name"]])
            patch.set_alpha(0.7)
        ax.set_xticks(range(1, len(configs) + 1), [f"{c['threads']}t" for c in configs], fontsize=8)
        ax.set_title(stage.replace("_", " "), fontsize=10)
        ax.set_ylabel("ms")
        ax.grid(axis="y", alpha=0.3)
    handles = [Patch(color=colour[m], label=m) for m in models]
    fig.legend(handles=handles, loc="outside lower center", ncols=min(len(models), 4), fontsize=9)
    host = report["host"]
    fig.suptitle(
        f"tla-edge bench: {report['frames']} frames, {host['machine']} ({host['cpu'][:50]}), "
        f"{host['runtime']['name']} {host['runtime']['version']}",
        fontsize=11,
    )
    fmt = path.suffix.lstrip(".").lower() or "png"
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=fmt, dpi=110)


def configuration_block(config: "Configuration", backend: str, members: str, frames: int, timed: "TimedPass",
                        threshold_note: str | None, rss_scope: str, overlap_crops: bool = False,
                        overlap_counts: tuple[int, int] | None = None) -> dict[str, Any]:
    """The JSON block of one configuration: stage statistics, raw invokes, overhead, FPS, memory.

    ``members`` is how the pipeline ran the fused set (``sequential`` or
    ``concurrent``, ``--members auto`` resolved); the raw liveness pass ran them the same way.
    ``overlap_crops`` is whether its later members' crops were cut on a worker beside the first crop and invoke;
    ``overlap_counts`` (faces cut so, faces cut in turn; warm-up included) how often, when auto decides per face.
    """
    stages = {s: stage_stats(timed.samples[s]) for s in STAGES}
    raw_stats = {k: stage_stats(v) for k, v in timed.raw.items()}
    scored = stage_stats(timed.scored_total)
    end_to_end = stage_stats(timed.end_to_end)
    return {
        "id": config.id,
        "model": fused_facts(config.models),
        "threads": config.threads,
        "edgetpu": config.edgetpu,
        "detector_backend": backend,
        "members": members,
        "overlap_crops": bool(overlap_crops),
        **({"overlap_crops_faces": {"on_worker": int(overlap_counts[0]), "in_turn": int(overlap_counts[1])}}
           if overlap_crops and overlap_counts is not None else {}),
        "frames": frames,
        "frames_scored": len(timed.scored_total),
        "decisions": dict(sorted(timed.decisions.items())),
        **({"threshold_note": threshold_note} if threshold_note else {}),
        "stages": stages,
        "total_scored": scored,
        "raw_invoke_ms": raw_stats,
        "overhead": overhead_ratio(scored, raw_stats["detector"], raw_stats["liveness"]),
        "fps": fps_from(stages["total"]),
        "end_to_end_ms": end_to_end,
        "fps_end_to_end": fps_from(end_to_end),
        "stage_share": stage_shares(timed.samples, timed.end_to_end),
        "peak_rss_mb": round(host.peak_rss_mb(), 1),
        "peak_rss_scope": rss_scope,
    }
