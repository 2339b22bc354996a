"""The evaluation report: per-sample results, metrics.json, the summary and the report files.

As ISO/IEC 30107-3 asks, APCER, BPCER, ACER, EER and AUC are over the
presentations the system processed; a frame without a usable face or with a
model error is a non-response, reported apart by class and reason, and an
end-to-end figure counts it as a rejection.
"""

from __future__ import annotations

import csv
import io
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, NamedTuple, Sequence

import numpy as np

from tla_edge import fileio, metrics
from tla_edge.errors import UserError
from tla_edge.runtime.metadata import portable_path
from tla_edge.runtime.pipeline import SCORED

OUTPUT_FILES = (
    "metrics.json",
    "report.md",
    "scores.csv",
    "roc.png",
    "det.png",
    "hist.png",
    "confusion.png",
    "worst_errors.png",
)


class Evaluated:
    """Per-sample results of one evaluation, in data order."""

    def __init__(self) -> None:
        self.sources: list[str] = []
        self.labels: list[int] = []
        self.species: list[str] = []
        self.subjects: list[str] = []
        self.sessions: list[str] = []
        self.scores: list[float] = []
        self.decisions: list[str] = []
        self.extra: dict[str, Any] = {}
        self.corrupt: list[str] = []
        self.thumbs: Any = None  # callable index -> RGB image, for the worst-errors grid

    def add(self, source, label, species, subject, session, score, decision) -> None:
        """Appends one sample; ``score`` is None for a non-response (no usable face, model error)."""
        self.sources.append(str(source))
        self.labels.append(int(label))
        self.species.append(species if label == 0 else "")
        self.subjects.append(subject)
        self.sessions.append(session)
        self.scores.append(float("nan") if score is None else float(score))
        self.decisions.append(decision)

    def arrays(self) -> tuple[np.ndarray, np.ndarray, list[str]]:
        """``(scores, labels, species)`` of every sample; a non-response's score is NaN."""
        return np.asarray(self.scores, np.float64), np.asarray(self.labels, np.int64), list(self.species)

    def processed(self) -> np.ndarray:
        """True where the system processed the presentation (a decision with a score, :data:`SCORED`)."""
        return np.array([d in SCORED for d in self.decisions], bool)

    def reasons(self) -> list[str | None]:
        """Per sample: None when processed, else the non-response reason (the decision)."""
        return [None if d in SCORED else d for d in self.decisions]


class Selection(NamedTuple):
    """Which part of the data is evaluated (None: all)."""

    split: str | None = None
    """Keep only this split."""
    sessions: str | None = None
    """Keep only these comma-separated sessions."""
    subjects: str | None = None
    """Keep only these comma-separated subjects."""
    limit: int | None = None
    """Evaluate this many images, evenly spread."""

    def describe(self) -> str:
        """`` (split 'test', sessions 02)`` for messages; empty without filters."""
        parts = []
        if self.split:
            parts.append(f"split {self.split!r}")
        if self.sessions:
            parts.append(f"sessions {self.sessions}")
        if self.subjects:
            parts.append(f"subjects {self.subjects}")
        return (" (" + ", ".join(parts) + ")") if parts else ""


def check_outputs(out: Path, force: bool) -> None:
    """Refuses to overwrite report files without ``force``; checks the folder can be written.

    Raises:
      UserError: ``out`` is a file, or holds a report file and ``force`` is false.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UserError(f"output '{out}' is a file; expected a folder for the report")
    existing = [name for name in OUTPUT_FILES if (out / name).exists()]
    if existing and not force:
        raise UserError(
            f"output folder '{out}' already holds {', '.join(existing)}; pass --force to overwrite them"
        )
    # Check without creating anything: a run that fails later leaves no empty folder.
    parent = out
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not os.access(parent, os.W_OK):
        raise UserError(f"output folder '{out}' cannot be created: '{parent}' is not writable")


# --- metrics.json -----------------------------------------------------------------


def group_metrics(ev: Evaluated, keys: Sequence[str], threshold: float) -> dict[str, dict[str, Any]]:
    """Error rates (and EER, AUC where both classes were processed) per session or subject."""
    scores, labels, species = ev.arrays()
    done = ev.processed()
    out = {}
    for key in sorted(set(keys)):
        group = np.array([k == key for k in keys])
        mask = group & done
        sp = [s for s, m in zip(species, mask) if m]
        r = metrics.error_rates(scores[mask], labels[mask], sp, threshold)
        if r["n_real"] and r["n_attack"]:
            r["eer"], r["eer_threshold"] = metrics.eer(scores[mask], labels[mask])
            r["auc"] = metrics.auc(scores[mask], labels[mask])
        r["no_face"] = int(sum(1 for d, m in zip(ev.decisions, group) if m and d == "no_face"))
        r["non_responses"] = int((group & ~done).sum())
        out[key] = r
    return out


def build_report(ev: Evaluated, threshold: float, scorers: Sequence[Any], data: Path | str, raw: bool,
                 selection: Selection = Selection(), threshold_source: str = "model metadata") -> dict[str, Any]:
    """The content of metrics.json.

    Args:
      ev: the per-sample results.
      threshold: the decision threshold.
      scorers: the models (``path`` and ``describe()`` each).
      data: the data as given.
      raw: whether the device pipeline ran on raw frames (else prepared crops).
      selection: the filters applied to the data.
      threshold_source: where the threshold came from (``--threshold``, ``model metadata``).

    Raises:
      UserError: the system processed no bona fide or no attack presentation.
    """
    scores, labels, species = ev.arrays()
    done = ev.processed()
    n_done = {name: int((done & (labels == v)).sum()) for name, v in (("bona fide", 1), ("attack", 0))}
    if not all(n_done.values()):
        raise UserError(
            f"the system processed {n_done['bona fide']} bona fide and {n_done['attack']} attack presentations "
            f"of '{data}' ({int((~done).sum())} non-responses); ISO/IEC 30107-3 metrics need at least "
            "one of each"
        )
    # ISO/IEC 30107-3: APCER, BPCER, ACER, EER and AUC over the presentations the
    # system processed; non-responses are reported apart, by reason.
    m = metrics.compute_metrics(scores[done], labels[done], [sp for sp, d in zip(species, done) if d], threshold)
    return {
        **m,
        "metrics_over": "processed presentations (ISO/IEC 30107-3); non-responses reported apart",
        "no_face": int(sum(1 for d in ev.decisions if d == "no_face")),
        "non_response": metrics.non_response_rates(labels, ev.reasons()),
        "end_to_end_non_response_as_rejection": metrics.end_to_end_rates(scores, labels, species, done, threshold),
        "corrupt": len(ev.corrupt),
        "corrupt_files": ev.corrupt,
        "threshold_source": threshold_source,
        "model": " + ".join(portable_path(s.path) for s in scorers),
        "models": [s.describe() for s in scorers],
        "fusion": "mean of scores" if len(scorers) > 1 else None,
        "data": portable_path(data),
        "mode": "raw (device pipeline, image-mode detector, no smoothing)" if raw else "crops",
        "split": selection.split,
        "sessions": selection.sessions,
        "subjects": selection.subjects,
        "limit": selection.limit,
        "per_session": group_metrics(ev, ev.sessions, threshold),
        "per_subject": group_metrics(ev, ev.subjects, threshold),
        **ev.extra,
    }


# --- the summary ------------------------------------------------------------------


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{100.0 * v:.2f} %"


def _metrics_table(report: dict[str, Any]) -> list[str]:
    lines = [
        "| metric | value |",
        "| --- | --- |",
        f"| threshold ({report['threshold_source']}) | {report['threshold']:.4f} |",
        f"| APCER (worst species) | {_pct(report['apcer'])} |",
    ]
    for name, v in report["apcer_per_species"].items():
        lines.append(f"| APCER {name} | {_pct(v)} |")
    lines += [
        f"| BPCER | {_pct(report['bpcer'])} |",
        f"| ACER | {_pct(report['acer'])} |",
        f"| HTER | {_pct(report['hter'])} |",
        f"| EER (threshold) | {_pct(report['eer'])} ({report['eer_threshold']:.4f}) |",
        f"| AUC | {report['auc']:.4f} |",
    ]
    for key, v in report["bpcer_at_apcer"].items():
        lines.append(f"| BPCER @ APCER {100 * v['target']:g} % (threshold) | {_pct(v['bpcer'])} ({v['threshold']:.4f}) |")
    (tn, fp), (fn, tp) = report["confusion_matrix"]
    lines += [
        f"| accuracy / precision / recall / F1 | {report['accuracy']:.4f} / {report['precision']:.4f} / "
        f"{report['recall']:.4f} / {report['f1']:.4f} |",
        f"| confusion [[TN, FP], [FN, TP]] | [[{tn}, {fp}], [{fn}, {tp}]] |",
    ]
    return lines


def _non_response_table(report: dict[str, Any]) -> list[str]:
    nr = report["non_response"]
    lines = [
        "| non-response (rate) | attack presentations | bona fide presentations |",
        "| --- | --- | --- |",
        f"| all | {nr['attack']['non_responses']} of {nr['attack']['presentations']} ({_pct(nr['attack']['rate'])}) "
        f"| {nr['bona_fide']['non_responses']} of {nr['bona_fide']['presentations']} ({_pct(nr['bona_fide']['rate'])}) |",
    ]
    for reason in nr["attack"]["by_reason"]:
        a, b = nr["attack"]["by_reason"][reason], nr["bona_fide"]["by_reason"][reason]
        lines.append(f"| {reason} | {a['count']} ({_pct(a['rate'])}) | {b['count']} ({_pct(b['rate'])}) |")
    return lines


def _session_table(report: dict[str, Any]) -> list[str]:
    lines = [
        "| session | real | attack | APCER | BPCER | ACER | EER | non-responses | no face |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, r in report["per_session"].items():
        lines.append(
            f"| {name or '?'} | {r['n_real']} | {r['n_attack']} | {_pct(r['apcer'])} | {_pct(r['bpcer'])} | "
            f"{_pct(r['acer'])} | {_pct(r.get('eer'))} | {r['non_responses']} | {r['no_face']} |"
        )
    return lines


def format_summary(report: dict[str, Any], out: Path | str) -> str:
    """The one-screen summary (also the body of report.md)."""
    e2e = report["end_to_end_non_response_as_rejection"]
    lines = [
        f"tla-edge evaluate: {report['model']} on {report['data']}"
        + (f" split {report['split']}" if report["split"] else "")
        + (f" sessions {report['sessions']}" if report["sessions"] else ""),
        f"mode {report['mode']}; processed {report['n_real']} bona fide, {report['n_attack']} attacks"
        + (f"; {report['corrupt']} corrupt files skipped" if report["corrupt"] else ""),
        "APCER, BPCER, ACER, EER, AUC are over processed presentations (ISO/IEC 30107-3); "
        "non-responses are below, by reason.",
        "",
        *_metrics_table(report),
        "",
        *_non_response_table(report),
        "",
        "End to end, a non-response counted as a rejection (not ISO APCER/BPCER): "
        f"APCER {_pct(e2e['apcer'])}, BPCER {_pct(e2e['bpcer'])}, ACER {_pct(e2e['acer'])}.",
        "",
        *_session_table(report),
        "",
        f"report files in {out}: {', '.join(OUTPUT_FILES)}",
    ]
    return "\n".join(lines)


# --- the files --------------------------------------------------------------------


def write_report(out: Path, ev: Evaluated, report: dict[str, Any], worst: int = 12) -> None:
    """Writes every file of :data:`OUTPUT_FILES` into a staging folder, then renames them into ``out``.

    An interruption (Ctrl-C, SIGTERM, SIGHUP) or a failure while writing
    removes the staging folder and leaves ``out`` as it was: never half a
    report. The renames themselves run with those signals blocked.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=".evaluate.", suffix=".tmp", dir=out))
    try:
        _write_report_files(stage, ev, report, worst, final=out)
        with fileio.signals_blocked():
            for name in OUTPUT_FILES:
                os.replace(stage / name, out / name)
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def _write_report_files(out: Path, ev: Evaluated, report: dict[str, Any], worst: int, final: Path) -> None:
    from tla_edge.train import plots

    scores, labels, species = ev.arrays()
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["source", "label", "species", "subject", "session", "score", "decision"])
    for i in range(len(scores)):
        w.writerow([ev.sources[i], "real" if labels[i] == 1 else "attack", ev.species[i], ev.subjects[i],
                    ev.sessions[i], "" if np.isnan(scores[i]) else f"{scores[i]:.6f}", ev.decisions[i]])
    fileio.write_text_atomic(out / "scores.csv", buf.getvalue())
    fileio.write_json_atomic(out / "metrics.json", report)
    fileio.write_text_atomic(out / "report.md", "# Liveness evaluation\n\n" + format_summary(report, final) + "\n")
    title = Path(report["models"][0]["path"]).name + (" + ..." if len(report["models"]) > 1 else "")
    done = ev.processed()
    plots.evaluation_plots(out, scores[done], labels[done], [sp for sp, d in zip(species, done) if d],
                           report["threshold"], report["confusion_matrix"], title)
    images, captions = worst_errors(ev, report["threshold"], worst)
    plots.plot_image_grid(images, captions, out / "worst_errors.png",
                          f"worst false accepts, then worst false rejects; threshold {report['threshold']:.3f}")


def worst_errors(ev: Evaluated, threshold: float, k: int) -> tuple[list[np.ndarray], list[str]]:
    """Thumbnails and captions of the ``k`` highest-scoring attacks and ``k`` lowest-scoring bona fide.

    Only actual errors among processed presentations are shown (attacks
    accepted, bona fide rejected); non-responses have no score.
    """
    scores, labels, _ = ev.arrays()
    done = ev.processed()
    fa = [i for i in np.argsort(-scores, kind="stable") if done[i] and labels[i] == 0 and scores[i] >= threshold][:k]
    fr = [i for i in np.argsort(scores, kind="stable") if done[i] and labels[i] == 1 and scores[i] < threshold][:k]
    images, captions = [], []
    for kind, idx in (("false accept", fa), ("false reject", fr)):
        for i in idx:
            images.append(ev.thumbs(int(i)))
            name = ev.sources[i] if len(ev.sources[i]) <= 28 else "..." + ev.sources[i][-25:]
            decision = "" if ev.decisions[i] in SCORED else f" {ev.decisions[i]}"
            captions.append(f"{kind} {scores[i]:.3f}{decision}\n{name}")
    return images, captions
