"""The own-camera loop measured on NUAA: one session stands in for the new camera.

Frames of one NUAA session are presented as a camera would show them (a
folder per person and class, read by ``tla-edge record``). Some people are
recorded for calibration and fine-tuning; the others are recorded as the
check set and never used for a choice. Every step runs as the user would
run it (``python -m tla_edge.cli ...``, one process per step) and is timed:

  record -> evaluate the default model (before) -> calibrate it -> evaluate
  -> prepare -> train --weights default -> convert --int8 -> calibrate -> evaluate
  (a fused default also: the set before, calibrated as a set, and the fine-tuned
  primary fused with the bundled partner, calibrated as a set)

Figures on the check set come from ``tla-edge evaluate --raw`` (the device
pipeline, image-mode detector, no smoothing) at the threshold written in each
model; figures on the recording are the calibration's own (in-sample).

  python scripts/own_camera_loop.py --session 02 --work runs/own_loop \\
      --json benchmarks/results/own_camera_loop.json

``--default-model`` / ``--default-weights`` replace the bundled int8 model and
its float weights (e.g. a model trained on the other session only, so that
the "new camera" is new to it); the JSON says which were used.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

from common import REPO, data_dir

sys.path.insert(0, str(REPO))

from tla_edge.data import datasets  # noqa: E402


def sh(cmd: list[str], log: Path) -> float:
    """Runs one tla-edge command; returns its wall time; raises with the log's tail on failure."""
    t0 = time.perf_counter()
    with log.open("a") as f:
        f.write("$ " + " ".join(cmd) + "\n")
        f.flush()
        rc = subprocess.run([sys.executable, "-m", "tla_edge.cli", *cmd], stdout=f, stderr=subprocess.STDOUT,
                            cwd=REPO).returncode
    wall = time.perf_counter() - t0
    if rc not in (0, 1):
        tail = log.read_text().splitlines()[-15:]
        raise SystemExit(f"step failed (exit {rc}): {' '.join(cmd)}\n" + "\n".join(tail))
    return wall if rc == 0 else -wall


def sources(data: Path, session: str, subjects: list[str], work: Path) -> list[tuple[str, str, str, Path]]:
    """One folder of links per (subject, class or attack species, session): the stand-in camera's takes.

    ``session`` empty: every session (e.g. both cameras of MSU-MFSD), each take recorded under its own.
    """
    out = []
    records = [r for r in datasets.load_dataset(data) if not session or datasets.same_id(r.session, session)]
    for subject in subjects:
        takes: dict[tuple[str, str], list[Path]] = {}
        for r in records:
            if r.subject == subject:
                kind = "real" if r.label == "real" else (r.species or "print")
                takes.setdefault((kind, r.session or "01"), []).append(r.path)
        for (kind, sess), paths in sorted(takes.items()):
            picked = sorted(paths)
            folder = work / "src" / f"{subject}_{kind}_{sess}"
            folder.mkdir(parents=True, exist_ok=True)
            for p in picked:
                link = folder / p.name
                if not link.exists():
                    link.symlink_to(p.resolve())
            out.append((subject, kind, sess, folder))
    return out


def figures(metrics_json: Path) -> dict:
    """The check-set figures of one ``tla-edge evaluate`` run."""
    m = json.loads(metrics_json.read_text())
    keep = ("threshold", "n_real", "n_attack", "apcer", "bpcer", "acer", "eer", "auc", "no_face")
    return {k: m.get(k) for k in keep}


def calib_figures(report: Path) -> dict:
    """The in-sample figures of one ``tla-edge calibrate`` run."""
    r = json.loads(report.read_text())
    return {
        "threshold": r["threshold"], "previous_threshold": r["previous_threshold"], "serves": r["serves"],
        "reasons": r["reasons"], "n_real": r["n_real"], "n_attack": r["n_attack"],
        "subjects": r["subjects"], "bpcer": r["bpcer"], "apcer": r["apcer"], "auc": r["auc"], "eer": r["eer"],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=data_dir(),
                        help="NUAA training sessions (default: $TLA_EDGE_DATA/nuaa-train, else ../shared/data/nuaa-train)")
    parser.add_argument("--session", type=str, default="02",
                        help="the session standing in for the new camera ('': every session of DATA)")
    parser.add_argument("--record-subjects", type=str, default="0001,0004,0005,0006,0007",
                        help="people recorded for calibration and fine-tuning")
    parser.add_argument("--test-subjects", type=str, default="0008,0009", help="people of the check set")
    parser.add_argument("--every", type=int, default=1, help="record every K-th frame")
    parser.add_argument("--target-bpcer", type=float, default=0.01)
    parser.add_argument("--default-model", type=Path, default=None, help=".tflite in place of the bundled model")
    parser.add_argument("--default-weights", type=Path, default=None,
                        help=".weights.h5 in place of the bundled float weights (same architecture)")
    parser.add_argument("--default-partner", type=Path, action="append", default=None,
                        help="with --default-model: the .tflite fused with it (repeat for more)")
    parser.add_argument("--partner-weights", type=Path, default=None,
                        help="float weights of the (first) partner: fine-tune it too, and fuse both fine-tuned")
    parser.add_argument("--work", type=Path, required=True, help="scratch folder (recreated)")
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    parser.add_argument("--note", type=str, default="", help="a note stored in the JSON")
    args = parser.parse_args(argv)

    from tla_edge.runtime import assets

    from tla_edge.train import options as train

    if args.work.exists():
        shutil.rmtree(args.work)
    args.work.mkdir(parents=True)
    log = args.work / "log.txt"
    default_model = args.default_model or assets.default_liveness_model()
    rec, test = args.work / "rec", args.work / "test_rec"
    steps: dict[str, dict] = {}
    t_all = time.perf_counter()

    # 1. record: the recorded people, then the check set's
    t0 = time.perf_counter()
    n_src = 0
    for out, subjects in ((rec, args.record_subjects), (test, args.test_subjects)):
        for subject, kind, sess, folder in sources(args.data, args.session, datasets.id_list(subjects), args.work):
            sh(["record", "--source", str(folder), "--label", kind, "--subject", subject, "--session", sess,
                "--every", str(args.every), "--out", str(out), "--headless"], log)
            n_src += 1
    steps["record"] = {"wall_s": round(time.perf_counter() - t0, 1), "takes": n_src,
                       "recording": datasets.load_dataset(rec).summary()["labels"],
                       "check_set": datasets.load_dataset(test).summary()["labels"]}

    def evaluate(name: str, model: Path | list[Path], threshold: float | None = None) -> dict:
        out = args.work / f"eval_{name}"
        given = [model] if isinstance(model, Path) else model
        wall = sh(["evaluate", str(test), "--raw", *[a for m in given for a in ("--model", str(m))],
                   *(["--threshold", repr(threshold)] if threshold is not None else []),
                   "--out", str(out), "--quiet"], log)
        return {"wall_s": round(wall, 1), **figures(out / "metrics.json")}

    def check_set(step: str, name: str, cal_set: list[Path] | None, models: list[Path]) -> None:
        """The calibrated set on the check people; when no threshold served, the set at the refused one
        (its AUC and EER need no threshold; its error rates are those of a threshold calibrate refused)."""
        if cal_set is not None:
            steps[step]["check"] = evaluate(name, cal_set)
        else:
            steps[step]["check_at_refused_threshold"] = evaluate(name, models, steps[step]["recording"]["threshold"])

    def calibrate(name: str, model: Path | list[Path]) -> tuple[dict, Path | list[Path] | None]:
        """One model into NAME.tflite; a fused set into the folder NAME/ (copies of every member)."""
        given = [model] if isinstance(model, Path) else model
        out = args.work / (f"{name}.tflite" if len(given) == 1 else name)
        report = args.work / f"{name}.json"
        wall = sh(["calibrate", str(rec), *[a for m in given for a in ("--model", str(m))], "--out", str(out),
                   "--report", str(report), "--target-bpcer", str(args.target_bpcer), "--quiet"], log)
        written = out if len(given) == 1 else [out / m.name for m in given]
        return {"wall_s": round(abs(wall), 1), **calib_figures(report)}, (written if wall > 0 else None)

    # The bundled default is a fused set: its partner is kept, as is, beside the fine-tuned primary.
    members = [default_model, *(args.default_partner or ())] if args.default_model else assets.default_liveness_models()
    partners = members[1:]

    # 2. the default model as it is, then calibrated on the recording
    steps["before"] = {"model": default_model.name, "check": evaluate("before", default_model)}
    cal, cal_model = calibrate("default_calibrated", default_model)
    steps["calibrate_default"] = {"recording": cal}
    if cal_model is not None:
        steps["calibrate_default"]["check"] = evaluate("default_calibrated", cal_model)
    if partners:  # the set as the device runs it, then calibrated as a set (the fused threshold)
        steps["before_fused"] = {"models": [m.name for m in members], "check": evaluate("before_fused", members)}
        cal, cal_set = calibrate("default_fused_calibrated", members)
        steps["calibrate_default_fused"] = {"recording": cal}
        check_set("calibrate_default_fused", "default_fused_calibrated", cal_set, members)

    # 3. fine-tune from the default weights on the recording, convert, calibrate again
    from tla_edge.runtime import metadata

    def fine_tune(tag: str, model: Path, weights_file: Path | None) -> Path:
        """prepare at the model's crop, train from its float weights, convert --int8; the int8 path (may not exist)."""
        crops, model_dir = args.work / f"crops{tag}", args.work / f"model{tag}"
        int8 = args.work / f"fine_tuned{tag}_int8.tflite"
        meta = metadata.load(model)  # crops at the model's scale, crop rule and input size
        wall = sh(["prepare", str(rec), "--out", str(crops), "--scales", f"{meta.crop_scale:g}",
                   "--crop-rule", meta.crop_rule, "--size", str(meta.input_size[0]), "--quiet"], log)
        steps[f"prepare{tag}"] = {"wall_s": round(wall, 1)}
        if weights_file is None:
            weights = ["--weights", "default"]
        else:  # the same settings and recipe as --weights default, from another file
            weights = ["--weights", str(weights_file), "--arch", meta.architecture,
                       "--alpha", str(meta.extra["alpha"]), "--input-size", str(meta.input_size[0]),
                       "--scale", str(meta.crop_scale), "--crop-rule", meta.crop_rule,
                       "--colour", str(meta.extra.get("colour", "rgb")),
                       "--epochs", str(train.DEFAULT_WEIGHTS_EPOCHS["epochs"]),
                       "--fine-tune-epochs", str(train.DEFAULT_WEIGHTS_EPOCHS["fine_tune_epochs"])]
        wall = sh(["train", str(crops), *weights, "--out", str(model_dir)], log)
        tmeta = json.loads((model_dir / "metadata.json").read_text())
        steps[f"fine_tune{tag}"] = {
            "wall_s": round(wall, 1), "validation": tmeta["extra"]["validation"]["split"],
            "phases": {k: {kk: v[kk] for kk in ("epochs_run", "lr", "wall_s") if kk in v}
                       for k, v in tmeta["extra"]["phases"].items()},
            "val_at_eer": {k: tmeta["extra"]["validation"]["at_eer_threshold"].get(k)
                           for k in ("acer", "eer", "auc", "apcer", "bpcer")}}
        wall = sh(["convert", str(model_dir), "--int8", "--calib", str(crops), "--out", str(int8)], log)
        steps[f"convert{tag}"] = {"wall_s": round(abs(wall), 1), "ok": wall > 0}
        return int8

    int8 = fine_tune("", default_model, args.default_weights)
    if int8.is_file():  # a degraded conversion writes nothing
        steps["fine_tuned_as_converted"] = {"check": evaluate("fine_tuned", int8)}
        cal, cal_model = calibrate("fine_tuned_calibrated", int8)
        steps["calibrate_fine_tuned"] = {"recording": cal}
        if cal_model is not None:
            steps["calibrate_fine_tuned"]["check"] = evaluate("fine_tuned_calibrated", cal_model)
        if partners:  # the fine-tuned primary fused with the bundled partner; the fused threshold chosen anew
            cal, cal_set = calibrate("fine_tuned_fused_calibrated", [int8, *partners])
            steps["calibrate_fine_tuned_fused"] = {"models": [int8.name, *(p.name for p in partners)],
                                                   "recording": cal}
            check_set("calibrate_fine_tuned_fused", "fine_tuned_fused_calibrated", cal_set, [int8, *partners])
    if partners and args.partner_weights is not None and int8.is_file():  # both members fine-tuned, then fused
        int8_partner = fine_tune("_partner", partners[0], args.partner_weights)
        if int8_partner.is_file():
            steps["partner_fine_tuned_as_converted"] = {"check": evaluate("partner_fine_tuned", int8_partner)}
            both = [int8, int8_partner, *partners[1:]]
            cal, cal_set = calibrate("both_fine_tuned_fused_calibrated", both)
            steps["calibrate_both_fine_tuned_fused"] = {"models": [m.name for m in both], "recording": cal}
            check_set("calibrate_both_fine_tuned_fused", "both_fine_tuned_fused_calibrated", cal_set, both)

    result = {
        "what": (f"own-camera loop on {args.data.name}: "
                 + (f"session {args.session} stands in for the new camera" if args.session
                    else "every session, new people (recorded and checked people disjoint)")),
        "note": args.note,
        "session": args.session,
        "record_subjects": datasets.id_list(args.record_subjects),
        "test_subjects": datasets.id_list(args.test_subjects),
        "every": args.every,
        "target_bpcer": args.target_bpcer,
        "default_model": {"file": default_model.name,
                          "sha256": hashlib.sha256(default_model.read_bytes()).hexdigest()},
        "default_weights": (args.default_weights.name if args.default_weights else "bundled (--weights default)"),
        "default_set": [m.name for m in members],
        "partner_weights": args.partner_weights.name if args.partner_weights else None,
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version()},
        "figures": "check: tla-edge evaluate --raw on the check-set people (held out from every choice); "
                   "recording: the calibration's in-sample figures",
        "steps": steps,
        "wall_s_total": round(time.perf_counter() - t_all, 1),
    }
    text = json.dumps(result, indent=2)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
