"""What a training run records and prints: history rows, CSV text, JSON-able metrics, the summary."""

from __future__ import annotations

import csv
import dataclasses
import io
import math
from pathlib import Path
from typing import Any

import numpy as np

from tla_edge.progress import format_duration


def history_rows(history: Any, phase: str, start_epoch: int) -> list[dict]:
    """One dict per epoch of a Keras ``History``: ``phase``, ``epoch`` (counted over phases), its figures."""
    h = history.history
    n = len(h.get("loss", []))
    return [
        {"phase": phase, "epoch": start_epoch + i + 1, **{k: float(v[i]) for k, v in h.items()}}
        for i in range(n)
    ]


def csv_text(rows: list[dict]) -> str:
    """CSV of dict rows; the columns are every key, in first-seen order."""
    keys: list[str] = []
    for r in rows:
        keys += [k for k in r if k not in keys]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=keys)
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def jsonable(m: Any) -> Any:
    """Metrics (NamedTuple, dataclass, dict, NumPy numbers) as plain JSON values; NaN and inf become None."""
    if hasattr(m, "_asdict"):
        m = m._asdict()
    elif hasattr(m, "to_dict"):
        m = m.to_dict()
    elif hasattr(m, "__dataclass_fields__"):
        m = dataclasses.asdict(m)
    if isinstance(m, dict):
        return {str(k): jsonable(v) for k, v in m.items()}
    if isinstance(m, (list, tuple)):
        return [jsonable(v) for v in m]
    if isinstance(m, (np.floating, float)):
        return None if not math.isfinite(float(m)) else float(m)
    if isinstance(m, np.integer):
        return int(m)
    return m


def metric(m: Any, key: str) -> float:
    """One figure of a metrics object; NaN when absent or not finite."""
    d = jsonable(m)
    v = d.get(key) if isinstance(d, dict) else None
    return float("nan") if v is None else float(v)


def format_summary(meta: Any, at_eer: Any, at_apcer: Any, phases: dict, out: Path | str, arch: str,
                   target_apcer: float) -> str:
    """The one-screen summary ``tla-edge train`` prints at the end."""
    e = meta.extra
    data = e["data"]
    lines = [
        "",
        f"tla-edge train: {arch} input {meta.input_size[0]} scale {meta.crop_scale:g} crop rule {meta.crop_rule} "
        f"weights {e['weights']} ({e['recipe']})",
        f"  data      train {data['train']['real']} real / {data['train']['attack']} attack; "
        f"val {data['val']['real']} real / {data['val']['attack']} attack ({data['validation']})",
    ]
    for name, p in phases.items():
        ep = f"{p['epochs_run']}/{p['epochs_max']} epochs (kept {p['best_epoch']}), " if "epochs_run" in p else ""
        lines.append(f"  {name:<17} {ep}{format_duration(p['wall_s'])}, {p['img_per_s']:.1f} img/s")
    lines += [
        f"  at EER threshold {meta.threshold:.4f}: ACER {metric(at_eer, 'acer'):.4f}  EER "
        f"{metric(at_eer, 'eer'):.4f}  AUC {metric(at_eer, 'auc'):.4f}  APCER {metric(at_eer, 'apcer'):.4f}  "
        f"BPCER {metric(at_eer, 'bpcer'):.4f}",
        f"  at APCER <= {target_apcer:g} threshold {list(e['thresholds'].values())[1]:.4f}: "
        f"APCER {metric(at_apcer, 'apcer'):.4f}  BPCER {metric(at_apcer, 'bpcer'):.4f}",
        f"  wrote {out}/model.keras, metadata.json, history.csv, learning_curves.png, validation_scores.csv "
        f"(total {format_duration(e['wall_s_total'])})",
    ]
    return "\n".join(lines)
