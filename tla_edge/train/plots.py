"""Evaluation and training plots as PNG files; matplotlib is imported inside each function.

Every function takes arrays (scores are P(live), labels 1 = bona fide) and an
output path, draws on a standalone :class:`matplotlib.figure.Figure` (no
pyplot global state, no display needed) and writes the PNG through a
temporary name and a rename.
"""

from __future__ import annotations

from pathlib import Path
from statistics import NormalDist
from typing import Any, Mapping, Sequence

import numpy as np

from tla_edge import fileio, metrics
from tla_edge.errors import missing_extra

_LIVE_COLOUR = "#2a9d8f"
_ATTACK_COLOURS = ("#e76f51", "#8e44ad", "#f4a261", "#264653", "#c0392b", "#7f8c8d")


def _figure(width: float = 6.0, height: float = 4.5):
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise missing_extra("matplotlib", "train") from None
    return Figure(figsize=(width, height), dpi=100, layout="constrained")


def _save(fig, path: str | Path) -> Path:
    path = Path(path)
    with fileio.atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    return path


def plot_roc(scores, labels, path: str | Path, title: str = "ROC") -> Path:
    """ROC: bona fide accepted (1 - BPCER) against attacks accepted (pooled APCER), log x-axis."""
    roc = metrics.roc_curve(scores, labels)
    auc = metrics.auc(scores, labels)
    fig = _figure()
    ax = fig.subplots()
    x = np.clip(roc.far, 1e-4, 1.0)
    ax.step(x, 1.0 - roc.frr, where="post", color=_LIVE_COLOUR, label=f"AUC {auc:.4f}")
    ax.set_xscale("log")
    ax.set_xlim(1e-4, 1.0)
    ax.set_ylim(0.0, 1.01)
    ax.set_xlabel("attacks accepted (APCER, pooled)")
    ax.set_ylabel("bona fide accepted (1 - BPCER)")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="lower right")
    return _save(fig, path)


def plot_det(scores, labels, path: str | Path, title: str = "DET", species=None) -> Path:
    """DET curve: BPCER against APCER on normal-deviate axes (ISO/IEC 19795-1 style).

    One curve pools every attack; with ``species`` given, one more per species.
    """
    s, y, sp = metrics.check_inputs(scores, labels, species)
    nd = NormalDist()
    lo, hi = 1e-3, 0.5

    def probit(p):
        p = np.clip(np.asarray(p, np.float64), lo / 2, 1 - lo / 2)
        return np.vectorize(nd.inv_cdf)(p)

    def cdf(z):
        return np.vectorize(nd.cdf)(np.asarray(z, np.float64))

    fig = _figure()
    ax = fig.subplots()
    curves = [("all attacks", np.ones_like(y, bool), "black")]
    names = sorted(set(sp[y == 0].tolist()))
    if species is not None and len(names) > 1:
        curves += [(n, (y == 1) | (sp == n), _ATTACK_COLOURS[i % len(_ATTACK_COLOURS)]) for i, n in enumerate(names)]
    for name, mask, colour in curves:
        roc = metrics.roc_curve(s[mask], y[mask])
        ax.plot(roc.far, roc.frr, color=colour, label=name, drawstyle="steps-post")
    rate, _ = metrics.eer(s, y)
    ax.plot([rate], [rate], "o", color="grey", label=f"EER {rate:.2%}")
    ax.set_xscale("function", functions=(probit, cdf))
    ax.set_yscale("function", functions=(probit, cdf))
    ticks = [0.001, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.4]
    ax.set_xticks(ticks, [f"{t:.1%}" for t in ticks])
    ax.set_yticks(ticks, [f"{t:.1%}" for t in ticks])
    ax.set_xlim(lo, hi)
    ax.set_ylim(lo, hi)
    ax.set_xlabel("APCER (attacks accepted)")
    ax.set_ylabel("BPCER (bona fide rejected)")
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="upper right", fontsize="small")
    return _save(fig, path)


def plot_histograms(scores, labels, path: str | Path, species=None, threshold: float = 0.5,
                    title: str = "Scores") -> Path:
    """Score histograms of bona fide and of each attack species, with the threshold."""
    s, y, sp = metrics.check_inputs(scores, labels, species)
    fig = _figure()
    ax = fig.subplots()
    bins = np.linspace(0.0, 1.0, 41)
    groups = [("bona fide", s[y == 1], _LIVE_COLOUR)]
    for i, name in enumerate(sorted(set(sp[y == 0].tolist()))):
        groups.append((f"attack: {name}", s[(y == 0) & (sp == name)], _ATTACK_COLOURS[i % len(_ATTACK_COLOURS)]))
    for name, values, colour in groups:
        if values.size:
            ax.hist(values, bins=bins, alpha=0.55, color=colour, label=f"{name} ({values.size})")
    ax.axvline(threshold, color="black", linestyle="--", label=f"threshold {threshold:.3f}")
    ax.set_yscale("log")
    ax.set_xlabel("score = P(live)")
    ax.set_ylabel("images")
    ax.set_title(title)
    ax.legend(fontsize="small")
    return _save(fig, path)


def plot_confusion(matrix: Sequence[Sequence[int]], path: str | Path, title: str = "Confusion matrix") -> Path:
    """The 2x2 matrix ``[[TN, FP], [FN, TP]]`` (rows true, columns predicted) with counts and row rates."""
    m = np.asarray(matrix, dtype=np.int64)
    rates = m / np.maximum(m.sum(axis=1, keepdims=True), 1)
    fig = _figure(4.8, 4.2)
    ax = fig.subplots()
    ax.imshow(rates, cmap="Blues", vmin=0.0, vmax=1.0)
    for i in range(2):
        for j in range(2):
            ax.text(j, i, f"{m[i, j]}\n{rates[i, j]:.1%}", ha="center", va="center",
                    color="white" if rates[i, j] > 0.5 else "black", fontsize=12)
    ax.set_xticks([0, 1], ["attack", "live"])
    ax.set_yticks([0, 1], ["attack", "live"])
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    return _save(fig, path)


def plot_image_grid(
    images: Sequence[np.ndarray], captions: Sequence[str], path: str | Path, title: str = "", columns: int = 6
) -> Path:
    """A grid of RGB images with one caption each (e.g. the worst errors)."""
    n = max(1, len(images))
    cols = min(columns, n)
    rows = (n + cols - 1) // cols
    fig = _figure(2.0 * cols, 2.3 * rows + 0.4)
    axes = np.atleast_1d(fig.subplots(rows, cols)).reshape(-1)
    for ax in axes:
        ax.axis("off")
    for ax, img, cap in zip(axes, images, captions):
        ax.imshow(img)
        ax.set_title(cap, fontsize=7)
    if not images:
        axes[0].text(0.5, 0.5, "no errors", ha="center", va="center")
    if title:
        fig.suptitle(title)
    return _save(fig, path)


def plot_training_curves(rows: Sequence[Mapping[str, Any]], path: str | Path, title: str) -> Path:
    """Loss and AUC per epoch (train and validation) across every phase, a dashed line between phases.

    Args:
      rows: one dict per epoch, as ``history.csv`` holds them (``phase``, ``loss``,
        ``val_loss``, ``auc``, ``val_auc``, ...).
      path: the PNG to write.
      title: figure title.
    """
    try:
        import matplotlib
    except ImportError:
        raise missing_extra("matplotlib", "train") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    x = list(range(1, len(rows) + 1))
    for ax, key in zip(axes, ("loss", "auc")):
        ax.plot(x, [r.get(key, np.nan) for r in rows], "o-", label=f"train {key}")
        ax.plot(x, [r.get(f"val_{key}", np.nan) for r in rows], "o-", label=f"val {key}")
        for i in range(1, len(rows)):
            if rows[i]["phase"] != rows[i - 1]["phase"]:
                ax.axvline(i + 0.5, color="grey", linestyle="--", linewidth=1)
        ax.set_xlabel("epoch (all phases)")
        ax.set_title(key)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    with fileio.atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    return path


def evaluation_plots(
    out_dir: str | Path,
    scores,
    labels,
    species,
    threshold: float,
    confusion: Sequence[Sequence[int]],
    title: str = "",
) -> dict[str, Any]:
    """Writes ``roc.png``, ``det.png``, ``hist.png`` and ``confusion.png``; returns their paths."""
    out_dir = Path(out_dir)
    suffix = f" - {title}" if title else ""
    return {
        "roc": plot_roc(scores, labels, out_dir / "roc.png", f"ROC{suffix}"),
        "det": plot_det(scores, labels, out_dir / "det.png", f"DET{suffix}", species),
        "hist": plot_histograms(scores, labels, out_dir / "hist.png", species, threshold, f"Scores{suffix}"),
        "confusion": plot_confusion(confusion, out_dir / "confusion.png", f"Confusion at {threshold:.3f}{suffix}"),
    }
