"""Choose a model's decision threshold on a recording of the deployment camera; write a calibrated copy.

Every frame of DATA (a recording by ``tla-edge record``, or any dataset
layout) goes through the device pipeline: the face detector in image mode,
the shared crop, the ``.tflite`` model, no smoothing. The threshold is then
chosen on the scores:

- ``--target-bpcer B`` (default 0.01): the strictest threshold that rejects
  at most a fraction B of the bona fide frames; works on bona fide frames
  alone, and reports the APCER when attacks were recorded too;
- ``--at eer`` or ``--target-apcer A``: need bona fide and attack frames.

The model file is never changed: a copy with the new threshold in its
metadata is written to --out (embedded, and as the ``<out>.json`` sidecar).
The expected BPCER and APCER come with a Clopper-Pearson interval over the
frames scored, and the number of people they came from: frames of one person
are alike, so with few people the true uncertainty is wider.

When no threshold serves (bona fide frames score below the attacks, the
threshold would fall under --floor, or the other error rate exceeds
--max-error), nothing is written, the reasons are printed and the exit code
is 1: fine-tune on the recording (``tla-edge train ... --weights default``).

Example:
  tla-edge calibrate data/kiosk --out kiosk_int8.tflite                 # bundled model, BPCER 1 %
  tla-edge calibrate data/kiosk --model mine_int8.tflite --at eer --out mine_kiosk.tflite
"""

from __future__ import annotations

import argparse
import hashlib
import math
import time
from collections import Counter
from pathlib import Path
from typing import Any, NamedTuple, Sequence

import numpy as np

from tla_edge import fileio, metrics

from tla_edge.cli import argtypes

from tla_edge.data import datasets
from tla_edge.runtime import metadata as metadata_lib
from tla_edge.errors import UserError

RULES = ("bpcer", "apcer", "eer")
DEFAULT_TARGET_BPCER = 0.01
DEFAULT_FLOOR = 0.1
DEFAULT_MAX_ERROR = 0.10
CAVEAT = (
    "intervals count frames as independent; frames of one person and one session are alike, "
    "so the true uncertainty is wider, closer to what the number of people allows"
)


# --- pure statistics --------------------------------------------------------------


def _binom_cdf(k: int, n: int, p: float) -> float:
    """P(X <= k) for X ~ Binomial(n, p), summed in log space."""
    if k < 0:
        return 0.0
    if k >= n or p <= 0.0:
        return 1.0
    if p >= 1.0:
        return 0.0
    i = np.arange(k + 1, dtype=np.float64)
    log_comb = np.concatenate(([0.0], np.cumsum(np.log(n - i[:-1]) - np.log(i[1:])))) if k > 0 else np.zeros(1)
    logs = log_comb + i * math.log(p) + (n - i) * math.log1p(-p)
    top = logs.max()
    return float(min(1.0, math.exp(top) * np.exp(logs - top).sum()))


def clopper_pearson(errors: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Exact (Clopper-Pearson) two-sided interval of a binomial proportion.

    Args:
      errors: number of events (e.g. bona fide frames rejected), 0..n.
      n: number of trials, >= 1.
      confidence: e.g. 0.95.

    Returns:
      ``(lower, upper)`` in [0, 1].

    Raises:
      ValueError: ``n`` < 1, ``errors`` outside 0..n, or confidence outside (0, 1).
    """
    if n < 1 or not 0 <= errors <= n:
        raise ValueError(f"errors {errors} of n {n} is not a count in 0..n with n >= 1")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence {confidence!r} is not in (0, 1)")
    tail = (1.0 - confidence) / 2.0

    def solve(f, level: float) -> float:  # f decreasing in p; the root of f(p) = level
        lo, hi = 0.0, 1.0
        for _ in range(100):
            mid = (lo + hi) / 2.0
            if f(mid) > level:
                lo = mid
            else:
                hi = mid
        return (lo + hi) / 2.0

    upper = 1.0 if errors == n else solve(lambda p: _binom_cdf(errors, n, p), tail)
    # lower: P(X >= errors; p) = tail, i.e. cdf(errors - 1; p) = 1 - tail
    lower = 0.0 if errors == 0 else solve(lambda p: _binom_cdf(errors - 1, n, p), 1.0 - tail)
    return lower, upper


def threshold_at_bpcer(real_scores: Sequence[float] | np.ndarray, target: float) -> float:
    """The highest threshold rejecting at most ``target`` of the bona fide scores.

    A frame is accepted iff ``score >= threshold``; the result is one of the
    scores, so exactly ``floor(target * n)`` or fewer (with ties) are rejected.

    Raises:
      ValueError: no scores, or ``target`` outside [0, 1).
    """
    s = np.sort(np.asarray(real_scores, np.float64).reshape(-1))
    if s.size == 0:
        raise ValueError("no bona fide scores; expected at least one")
    if not 0.0 <= target < 1.0:
        raise ValueError(f"BPCER target {target!r} is not in [0, 1)")
    k = int(math.floor(target * s.size + 1e-9))
    return float(s[min(k, s.size - 1)])


def centre_in_gap(threshold: float, scores: Sequence[float] | np.ndarray) -> float:
    """Moves a threshold to the middle of the gap between the scores around it.

    The scores just below and at-or-above ``threshold`` bound an interval in
    which every threshold takes the same decisions on these frames; its middle
    keeps the same error rates on the recording and leaves a margin on both
    sides (a quantized model's scores pile up on a few values, and a threshold
    equal to one of them rejects a frame one step lower). Without a score on
    either side the threshold is returned as it is.
    """
    s = np.asarray(scores, np.float64).reshape(-1)
    above, below = s[s >= threshold], s[s < threshold]
    if above.size == 0 or below.size == 0:
        return float(threshold)
    hi, lo = float(above.min()), float(below.max())
    mid = (lo + hi) / 2.0
    return mid if lo < mid <= hi else hi


class Rate(NamedTuple):
    """An error rate measured on a recording, with its interval."""

    rate: float
    """Errors over trials."""
    errors: int
    """Frames wrongly decided."""
    n: int
    """Frames of that class scored."""
    ci: tuple[float, float]
    """Clopper-Pearson interval at the report's confidence."""


def error_rate(wrong: np.ndarray, confidence: float) -> Rate | None:
    """The :class:`Rate` of a boolean array of wrong decisions; None when it is empty."""
    n = int(wrong.size)
    if n == 0:
        return None
    k = int(wrong.sum())
    return Rate(k / n, k, n, clopper_pearson(k, n, confidence))


def choose_threshold(scores: np.ndarray, labels: np.ndarray, species: Sequence[str], rule: str, target: float | None) -> float:
    """The threshold of one rule (``bpcer``, ``apcer`` or ``eer``) on scored frames.

    Raises:
      UserError: the rule needs both classes and one is missing.
    """
    n_real, n_attack = int((labels == 1).sum()), int((labels == 0).sum())
    if rule == "bpcer":
        if n_real == 0:
            raise UserError(
                f"the calibration set has no bona fide frame with a usable face ({n_attack} attack frames); "
                "--target-bpcer needs bona fide (real) frames: record some with --label real"
            )
        return threshold_at_bpcer(scores[labels == 1], float(target))
    if n_real == 0 or n_attack == 0:
        have, missing = ("real", "attack") if n_attack == 0 else ("attack", "real")
        flag = "--at eer" if rule == "eer" else "--target-apcer"
        raise UserError(
            f"the calibration set has only {have} frames ({max(n_real, n_attack)}) and no {missing} frames; "
            f"{flag} needs both: record {missing} frames, or use --target-bpcer (bona fide only)"
        )
    if rule == "eer":
        return float(metrics.eer(scores, labels)[1])
    return float(metrics.threshold_at_apcer(scores, labels, species, float(target)))


def verdict(
    edge: float,
    rule: str,
    bpcer: Rate | None,
    apcer: Rate | None,
    auc: float | None,
    floor: float,
    max_error: float,
) -> list[str]:
    """Why no threshold serves; an empty list when the chosen one does.

    ``edge`` is the chosen threshold before :func:`centre_in_gap`: for the
    BPCER rule, the lowest bona fide score still accepted.
    """
    reasons = []
    if auc is not None and auc <= 0.5:
        reasons.append(f"bona fide frames score below the attack frames (AUC {auc:.3f} <= 0.5)")
    if edge < floor:
        reasons.append(
            f"the threshold {edge:.4f} is below the floor {floor:g}: the model scores this camera's "
            "real faces as spoofs, and a threshold that low accepts most attacks"
        )
    other = apcer if rule == "bpcer" else bpcer
    name = "APCER" if rule == "bpcer" else "BPCER"
    if other is not None and other.rate > max_error:
        reasons.append(f"{name} {other.rate:.1%} at this threshold exceeds --max-error {max_error:.0%}")
    return reasons


# --- scoring through the device pipeline ----------------------------------------


class Scored(NamedTuple):
    """Per-frame results of a dataset run through the device pipeline."""

    records: list
    """The :class:`~tla_edge.data.datasets.Record` of every frame read."""
    scores: np.ndarray
    """Live probability, NaN where no usable face was found."""
    decisions: list[str]
    """The pipeline's decision per frame (``live``, ``spoof``, ``no_face``, ...)."""
    unreadable: list[str]
    """Images that could not be decoded."""


def score_records(records: Sequence[datasets.Record], model: Path, detector: str = "short",
                  num_threads: int | None = None, show_progress: bool = True, backend: str = "auto") -> Scored:
    """Runs every record through the device pipeline (image-mode detector, no smoothing)."""
    from tla_edge.runtime.faces import FaceDetector
    from tla_edge.runtime.interpreter import LivenessModel
    from tla_edge.runtime.pipeline import Pipeline
    from tla_edge.progress import Progress

    liveness = LivenessModel(model, num_threads=num_threads, meta=metadata_lib.load(model))
    det = FaceDetector(detector, mode="image", policy="largest", backend=backend)
    kept, scores, decisions, unreadable = [], [], [], []
    try:
        pipe = Pipeline(liveness, det, threshold=liveness.threshold, smoothing=1, live_frames=1)
        with Progress(len(records), "calibrate", unit="img", enabled=show_progress) as bar:
            for rec in records:
                rgb = datasets.read_image_rgb(rec.path)
                bar.update()
                if rgb is None:
                    unreadable.append(str(rec.path))
                    continue
                pipe.reset()
                result = pipe.process(rgb)
                kept.append(rec)
                scores.append(np.nan if result.raw_score is None else float(result.raw_score))
                decisions.append(result.decision)
    finally:
        det.close()
    return Scored(kept, np.asarray(scores, np.float64), decisions, unreadable)


def calibration_report(scored: Scored, rule: str, target: float | None, previous: float,
                       floor: float = DEFAULT_FLOOR, max_error: float = DEFAULT_MAX_ERROR,
                       confidence: float = 0.95) -> dict[str, Any]:
    """Chooses the threshold and measures it on the same frames.

    Returns:
      A JSON-ready dict: ``threshold``, ``rule``, ``target``, counts, ``bpcer`` and
      ``apcer`` (rate, errors, n, ci), per species and per subject rates, ``auc``
      and ``eer`` with attacks, ``serves`` and ``reasons``.

    Raises:
      UserError: no frame had a usable face, or the rule needs a missing class.
    """
    ok = ~np.isnan(scored.scores)
    recs = [r for r, k in zip(scored.records, ok) if k]
    labels_all = np.array([1 if r.label == "real" else 0 for r in scored.records], np.int64)
    if not ok.any():
        raise UserError(
            f"none of the {len(scored.records)} frames had a usable face "
            f"({dict(Counter(scored.decisions))}); expected frames showing one face"
        )
    s = scored.scores[ok]
    y = labels_all[ok]
    sp = [r.species or "attack" if r.label == "attack" else "" for r in recs]
    edge = choose_threshold(s, y, sp, rule, target)
    thr = centre_in_gap(edge, s)
    accepted = s >= thr
    bp = error_rate(~accepted[y == 1], confidence)
    ap = error_rate(accepted[y == 0], confidence)
    per_species = {}
    for name in sorted({x for x, lab in zip(sp, y) if lab == 0}):
        m = np.array([x == name for x in sp]) & (y == 0)
        per_species[name] = error_rate(accepted[m], confidence)._asdict()
    worst = max(per_species.items(), key=lambda kv: kv[1]["rate"])[0] if per_species else None
    per_subject = {}
    for subj in sorted({r.subject for r, lab in zip(recs, y) if lab == 1}):
        m = np.array([r.subject == subj for r in recs]) & (y == 1)
        per_subject[subj or "?"] = round(float((~accepted[m]).mean()), 4)
    auc = eer = None
    if bp is not None and ap is not None:
        auc = metrics.auc(s, y)
        eer = metrics.eer(s, y)[0]
    # ISO/IEC 30107-3 reports the worst species' APCER.
    ap_worst = Rate(**per_species[worst]) if worst is not None else None
    reasons = verdict(edge, rule, bp, ap_worst, auc, floor, max_error)
    no_face = Counter(f"{'real' if lab == 1 else 'attack'}:{d}"
                      for d, lab, k in zip(scored.decisions, labels_all, ok) if not k)
    return {
        "rule": rule,
        "target": target,
        "threshold": thr,
        "threshold_edge": edge,
        "previous_threshold": previous,
        "confidence": confidence,
        "frames": len(scored.records),
        "scored": int(ok.sum()),
        "unreadable": len(scored.unreadable),
        "no_usable_face": dict(sorted(no_face.items())),
        "n_real": int((y == 1).sum()),
        "n_attack": int((y == 0).sum()),
        "subjects": sorted({r.subject for r in recs if r.subject}),
        "sessions": sorted({r.session for r in recs if r.session}),
        "bpcer": bp._asdict() if bp else None,
        "apcer": ap_worst._asdict() if ap_worst else None,
        "apcer_worst_species": worst,
        "apcer_per_species": per_species,
        "apcer_pooled": ap._asdict() if ap else None,
        "bpcer_per_subject": per_subject,
        "auc": auc,
        "eer": eer,
        "floor": floor,
        "max_error": max_error,
        "serves": not reasons,
        "reasons": reasons,
        "caveat": CAVEAT,
    }


# --- command ------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Registers the ``calibrate`` flags."""
    parser.add_argument("data", type=Path, metavar="DATA", help="a recording (tla-edge record) or any dataset")
    parser.add_argument("--model", type=Path, default=None, metavar="MODEL.tflite",
                        help="the .tflite to calibrate, with tla-edge metadata (None: the bundled int8 model, "
                        "alone: the calibrated copy runs without a fusion partner)")
    parser.add_argument("--out", type=Path, required=True, metavar="CALIBRATED.tflite",
                        help="the calibrated copy (its metadata sidecar is written beside it)")
    rule = parser.add_mutually_exclusive_group()
    rule.add_argument("--target-bpcer", type=argtypes.probability, default=DEFAULT_TARGET_BPCER, metavar="B",
                      help="strictest threshold rejecting at most B of the bona fide frames")
    rule.add_argument("--target-apcer", type=argtypes.probability, default=None, metavar="A",
                      help="most permissive threshold accepting at most A of each attack species (needs attacks)")
    rule.add_argument("--at", type=str, choices=("eer",), default=None,
                      help="threshold at the equal error rate (needs attacks)")
    parser.add_argument("--sessions", type=str, default=None, help="use only these comma-separated sessions")
    parser.add_argument("--subjects", type=str, default=None, help="use only these comma-separated subjects")
    parser.add_argument("--floor", type=argtypes.probability, default=DEFAULT_FLOOR,
                        help="a threshold below this means no threshold serves")
    parser.add_argument("--max-error", type=argtypes.probability, default=DEFAULT_MAX_ERROR,
                        help="with attacks: the other error rate at the chosen threshold must not exceed this")
    parser.add_argument("--confidence", type=float, default=0.95, help="confidence of the intervals")
    parser.add_argument("--detector", type=str, default="short", metavar="short|full|PATH",
                        help="face detector (the one the device runs)")
    parser.add_argument("--detector-backend", type=str, choices=("auto", "mediapipe", "litert"), default="auto",
                        help="face detector backend: auto (MediaPipe where it runs on this CPU, else LiteRT)")
    parser.add_argument("--num-threads", type=argtypes.positive_int, default=None, help="interpreter CPU threads")
    parser.add_argument("--report", type=Path, default=None, metavar="FILE.json", help="also write the report here")
    parser.add_argument("--force", action="store_true", help="overwrite --out, its sidecar and --report")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def resolve_rule(args: argparse.Namespace) -> tuple[str, float | None]:
    """``(rule, target)`` from the mutually exclusive flags."""
    if args.at == "eer":
        return "eer", None
    if args.target_apcer is not None:
        return "apcer", float(args.target_apcer)
    target = DEFAULT_TARGET_BPCER if getattr(args, "target_bpcer", None) is None else float(args.target_bpcer)
    if target >= 1.0:
        raise UserError(f"--target-bpcer {target:g} is not below 1; expected e.g. 0.01")
    return "bpcer", target


def check_model(path: Path) -> metadata_lib.ModelMetadata:
    """The model's metadata; refuses anything but a ``.tflite`` that carries it.

    Raises:
      FileNotFoundError: no such file.
      UserError: not a ``.tflite``, or no tla-edge metadata (embedded or sidecar).
    """
    from tla_edge.runtime.interpreter import check_tflite_file

    if path.suffix.lower() != ".tflite":
        raise UserError(
            f"--model '{path}' is not a .tflite; calibrate sets the threshold of the file the device "
            "runs: convert it first (tla-edge convert MODEL --int8 --calib CROPS --out model.tflite)"
        )
    check_tflite_file(path)
    meta = metadata_lib.load(path)
    if meta is None:
        raise UserError(
            f"model '{path}' has no tla-edge metadata (none embedded, no '{metadata_lib.sidecar_path(path).name}'); "
            "its crop scale, preprocessing and output are unknown; expected a .tflite written by tla-edge convert"
        )
    return meta


def run(args: argparse.Namespace) -> int:
    """Runs ``tla-edge calibrate``; returns 0, or 1 when no threshold serves (nothing written)."""
    t0 = time.perf_counter()
    rule, target = resolve_rule(args)
    if not 0.0 < args.confidence < 1.0:
        raise UserError(f"--confidence {args.confidence:g} is not in (0, 1)")
    if args.model is None:
        from tla_edge.runtime.assets import default_liveness_model

        model = default_liveness_model()
    else:
        model = Path(args.model)
    meta = check_model(model)
    out = Path(args.out)
    sidecar = metadata_lib.sidecar_path(out)
    if out.resolve() == model.resolve():
        raise UserError(f"--out '{out}' is the input model; the input is never changed: choose another name")
    outputs = [out, sidecar] + ([args.report] if args.report is not None else [])
    for p in outputs:
        fileio.check_writable(p, args.force)

    records = datasets.load_dataset(args.data)
    what = f"dataset '{args.data}'"
    want_sessions, want_subjects = datasets.id_list(args.sessions), datasets.id_list(args.subjects)
    records = [
        r for r in records
        if (want_sessions is None or any(datasets.same_id(r.session, s) for s in want_sessions))
        and (want_subjects is None or any(datasets.same_id(r.subject, s) for s in want_subjects))
    ]
    if not records:
        raise UserError(f"{what} has no frames for sessions={want_sessions} subjects={want_subjects}")
    scored = score_records(records, model, args.detector, args.num_threads, show_progress=not args.quiet,
                           backend=args.detector_backend)
    report = calibration_report(scored, rule, target, float(meta.threshold), args.floor, args.max_error,
                                args.confidence)
    report.update({
        "data": str(args.data),
        "model": str(model),
        "model_sha256": hashlib.sha256(model.read_bytes()).hexdigest(),
        "detector": args.detector,
        "wall_s": round(time.perf_counter() - t0, 2),
    })
    if args.report is not None:
        fileio.write_json_atomic(args.report, report)
    if report["serves"]:
        new_meta = calibrated_metadata(meta, report)
        fileio.write_bytes_atomic(out, metadata_lib.embed(model.read_bytes(), new_meta))
        fileio.write_json_atomic(sidecar, new_meta.to_dict())
    print(format_summary(report, out if report["serves"] else None, args))
    return 0 if report["serves"] else 1


def calibrated_metadata(meta: metadata_lib.ModelMetadata, report: dict[str, Any]) -> metadata_lib.ModelMetadata:
    """The model's metadata with the chosen threshold and a summary of how it was chosen."""
    extra = dict(meta.extra)
    # A fused pair's threshold was derived on the pair's mean score; this file is calibrated alone.
    extra.pop("fusion", None)
    key = f"device_{report['rule']}" + (f"_{report['target']:g}" if report["target"] is not None else "")
    extra["thresholds"] = {**dict(extra.get("thresholds") or {}), key: report["threshold"]}
    extra["device_calibration"] = {
        k: report.get(k)
        for k in ("rule", "target", "threshold", "previous_threshold", "data", "model_sha256", "detector",
                  "frames", "scored", "n_real", "n_attack", "subjects", "sessions", "bpcer", "apcer",
                  "apcer_worst_species", "auc", "eer", "confidence", "caveat")
    }
    return meta.replace(threshold=float(report["threshold"]), extra=extra)


def _rate_text(r: dict[str, Any] | None, confidence: float) -> str:
    if r is None:
        return "n/a"
    lo, hi = r["ci"]
    return f"{r['rate']:.2%} ({r['errors']}/{r['n']}), {confidence:.0%} CI {lo:.2%}-{hi:.2%}"


def format_summary(report: dict[str, Any], written: Path | None, args: argparse.Namespace) -> str:
    """The one-screen summary."""
    if report["rule"] == "bpcer":
        rule_text = f"BPCER <= {report['target']:.2%} on this recording"
    elif report["rule"] == "apcer":
        rule_text = f"APCER <= {report['target']:.2%} for every species on this recording"
    else:
        rule_text = "the equal error rate on this recording"
    species = ", ".join(f"{k} {v['n']}" for k, v in report["apcer_per_species"].items())
    lines = [
        f"tla-edge calibrate: '{report['model']}' on '{report['data']}': {report['scored']} of "
        f"{report['frames']} frames scored: {report['n_real']} bona fide, {report['n_attack']} attack"
        + (f" ({species})" if species else "")
        + f"; {len(report['subjects'])} people, sessions {','.join(report['sessions']) or '-'}",
    ]
    if report["no_usable_face"]:
        lines.append(f"  no usable face (not scored; the device never accepts them): {report['no_usable_face']}")
    lines.append(f"  threshold {report['threshold']:.4f} for {rule_text} (was {report['previous_threshold']:.4f})")
    lines.append(f"  expected BPCER {_rate_text(report['bpcer'], report['confidence'])}")
    if report["apcer"] is not None:
        lines.append(f"  expected APCER {_rate_text(report['apcer'], report['confidence'])} "
                     f"(worst species: {report['apcer_worst_species']}); AUC {report['auc']:.4f}, EER {report['eer']:.2%}")
    else:
        lines.append("  APCER unknown: no attack was recorded (record a print and a phone screen to measure it)")
    per_subject = report["bpcer_per_subject"]
    if per_subject:
        worst = max(per_subject.items(), key=lambda kv: kv[1])
        lines.append(f"  BPCER per person: worst {worst[0]} {worst[1]:.2%} of {len(per_subject)} people; "
                     f"{report['caveat']}")
    if report["serves"]:
        lines.append(f"  wrote {written} and {metadata_lib.sidecar_path(written)} (the input model is unchanged)")
    else:
        lines.append("  NO THRESHOLD SERVES this camera: " + "; ".join(report["reasons"]))
        lines.append("  nothing written; fine-tune on the recording: tla-edge prepare DATA --out CROPS, then "
                     "tla-edge train CROPS --weights default --out MODEL_DIR (docs/own-camera.md)")
    if args.report is not None:
        lines.append(f"  report: {args.report}")
    return "\n".join(lines)

