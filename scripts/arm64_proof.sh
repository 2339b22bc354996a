#!/usr/bin/env bash
# Proves that tla-edge's runtime installs from the package index and gives the
# same decisions on 64-bit ARM (Debian bookworm arm64, the base of Raspberry Pi
# OS Bookworm 64-bit) as on x86-64, under qemu-user emulation.
#
#   sudo scripts/arm64_proof.sh                      # bundled samples -> benchmarks/results/arm64_qemu_proof.json
#   sudo scripts/arm64_proof.sh --frames DIR --out proof.json
#
# Steps: (1) debootstrap a bookworm arm64 root (once; reused after), (2) copy
# the repository in (git archive of HEAD, so only committed files count),
# (3) create a venv inside it and `pip install '.[runtime]'` from the package
# index, (4) run the pipeline (bundled detector + bundled int8 liveness model)
# on every frame, one JSON line per frame, (5) do the same in a fresh x86-64
# venv, (6) diff the decisions and write one JSON report.
#
# Until the bundled liveness model exists the run proves face detection only
# (mode "detector"): same frames, same report, decisions "face" / "no_face".
#
# Not part of CI: it needs root (chroot, mounts), network access to a Debian
# mirror (the host's apt sources on a Debian host, else debootstrap's default;
# --mirror to choose) and the package index, and minutes to tens of minutes
# under qemu.
set -euo pipefail
# The whole script is one block, parsed before it runs, so editing this file
# while it runs (it takes a while) cannot change what the running copy does.
{

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# Next to the checkout, never inside it.
ROOT=$(dirname "$REPO")/arm64-root
X86_VENV=$(dirname "$REPO")/arm64-proof-x86-venv
FRAMES=""
MODEL=""
CPU=cortex-a76
OUT=""
FORCE=0
WORKTREE=0
MIRROR=""
PACKAGES=python3,python3-venv,python3-pip,libgl1,libglib2.0-0,libxcb1,libegl1,libgles2,ca-certificates

usage() {
    cat <<EOF
usage: $0 [--root DIR] [--x86-venv DIR] [--frames DIR] [--model FILE] [--cpu NAME] [--out FILE] [--force] [--worktree] [--mirror URL]

  --root DIR       arm64 root, created on first use (default: $ROOT)
  --x86-venv DIR   x86-64 venv for the comparison run, created on first use (default: $X86_VENV)
  --frames DIR     folder of .jpg/.png frames (default: the bundled tla_edge/runtime/assets/samples)
  --model FILE     liveness .tflite (its .tflite.json sidecar travels with it; default: the bundled int8 model)
  --cpu NAME       CPU qemu emulates (default: $CPU, the Raspberry Pi 5's core; cortex-a72 is
                   the Pi 4's; 'max' adds SVE/SME, which no Pi has and which breaks XNNPACK's int8 kernels under qemu 7.2)
  --out FILE       report (default: $REPO/benchmarks/results/arm64_qemu_proof.json)
  --force          overwrite an existing report
  --worktree       copy tracked + untracked (not ignored) files instead of HEAD
  --mirror URL     Debian mirror for debootstrap (default: the host's apt sources on a Debian
                   host, else debootstrap's own default)
EOF
}

die() { echo "arm64_proof: error: $*" >&2; exit 2; }
step() { echo "arm64_proof: [$(date +%H:%M:%S)] $*" >&2; }

while [[ $# -gt 0 ]]; do
    case "$1" in
        --root) ROOT=${2:?--root needs a directory}; shift 2 ;;
        --x86-venv) X86_VENV=${2:?--x86-venv needs a directory}; shift 2 ;;
        --frames) FRAMES=${2:?--frames needs a directory}; shift 2 ;;
        --model) MODEL=${2:?--model needs a .tflite file}; shift 2 ;;
        --cpu) CPU=${2:?--cpu needs a CPU name (qemu-aarch64-static -cpu help)}; shift 2 ;;
        --out) OUT=${2:?--out needs a file}; shift 2 ;;
        --force) FORCE=1; shift ;;
        --worktree) WORKTREE=1; shift ;;
        --mirror) MIRROR=${2:?--mirror needs a URL}; shift 2 ;;
        -h|--help) usage; exit 0 ;;
        *) usage >&2; die "unknown argument '$1'; expected one of the options above" ;;
    esac
done

OUT=${OUT:-$REPO/benchmarks/results/arm64_qemu_proof.json}
[[ $(id -u) == 0 ]] || die "running as uid $(id -u); expected root (debootstrap, chroot and mounts need it)"
[[ $(uname -m) == x86_64 ]] || die "host is $(uname -m); expected an x86-64 host (the arm64 side runs under qemu)"
[[ -e $OUT && $FORCE == 0 ]] && die "report '$OUT' exists; pass --force to overwrite it"
if [[ -n $FRAMES ]]; then
    [[ -d $FRAMES ]] || die "frames folder '$FRAMES' not found; expected a folder of .jpg/.png frames"
    FRAMES=$(cd "$FRAMES" && pwd)
fi
if [[ -n $MODEL ]]; then
    [[ -f $MODEL ]] || die "model file '$MODEL' not found; expected a liveness .tflite"
    MODEL=$(cd "$(dirname "$MODEL")" && pwd)/$(basename "$MODEL")
fi
QEMU_CPUS=$(qemu-aarch64-static -cpu help 2>/dev/null | tail -n +2 | xargs || true)
[[ " $QEMU_CPUS " == *" $CPU "* ]] || die "qemu has no CPU '$CPU'; expected one of: $QEMU_CPUS"
case "$ROOT" in "$REPO"|"$REPO"/*) die "root '$ROOT' is inside the repository; expected a folder outside it" ;; esac

# --- 1. host tools and binfmt ------------------------------------------------
missing=()
command -v debootstrap >/dev/null || missing+=(debootstrap)
command -v qemu-aarch64-static >/dev/null || missing+=(qemu-user-static)
command -v update-binfmts >/dev/null || missing+=(binfmt-support)
if ((${#missing[@]})); then
    step "installing ${missing[*]}"
    apt-get update -q >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >&2
fi
mountpoint -q /proc/sys/fs/binfmt_misc || mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
update-binfmts --enable qemu-aarch64 >/dev/null 2>&1 || true
grep -q '^enabled' /proc/sys/fs/binfmt_misc/qemu-aarch64 2>/dev/null \
    || die "binfmt handler qemu-aarch64 is not enabled; expected 'enabled' in /proc/sys/fs/binfmt_misc/qemu-aarch64"

# --- 2. the arm64 root (once) -------------------------------------------------
# The Debian archive the host's apt already uses (a .../debian URI in its
# sources), so the root comes from the same mirror; nothing on a non-Debian host.
host_debian_mirror() {
    [[ $(. /etc/os-release 2>/dev/null && echo "${ID:-}") == debian ]] || return 0
    {
        grep -hE '^[[:space:]]*deb[[:space:]]' /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null \
            | sed -E 's/\[[^]]*\]//' | awk '{print $2}'
        grep -hE '^[[:space:]]*URIs:' /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '{for (i = 2; i <= NF; i++) print $i}'
    } | grep -E '^https?://[^ ]+/debian/?$' | head -n 1 || true
}
[[ -n $MIRROR ]] || MIRROR=$(host_debian_mirror)
mkdir -p "$ROOT"
exec 9>"$ROOT.lock"
flock -n 9 || die "another arm64_proof.sh is using '$ROOT' (lock '$ROOT.lock'); wait for it to finish"
if [[ ! -e $ROOT/.tla-edge-bootstrapped ]]; then
    step "debootstrap bookworm arm64 into $ROOT from ${MIRROR:-the debootstrap default mirror} (tens of minutes under qemu)"
    nice -n 10 debootstrap --arch=arm64 --variant=minbase --include="$PACKAGES" \
        bookworm "$ROOT" ${MIRROR:+"$MIRROR"} >&2
    touch "$ROOT/.tla-edge-bootstrapped"
fi
# MediaPipe's XNNPACK reads the CPU list from sysfs. Bind-mounting the host's
# /sys crashes it under qemu; plain files with a CPU range are enough.
ncpu=$(nproc)
mkdir -p "$ROOT/sys/devices/system/cpu"
for f in present possible online; do echo "0-$((ncpu - 1))" >"$ROOT/sys/devices/system/cpu/$f"; done
cp /etc/resolv.conf "$ROOT/etc/resolv.conf"
# pip inside the root trusts what the host trusts (a host behind a TLS-inspecting
# proxy has that proxy's CA in its bundle; elsewhere this is the usual Mozilla set).
HOST_CA=${PIP_CERT:-/etc/ssl/certs/ca-certificates.crt}
[[ -f $HOST_CA ]] && cp "$HOST_CA" "$ROOT/etc/tla-edge-host-ca.crt"

cleanup() {
    mountpoint -q "$ROOT/dev" && umount "$ROOT/dev" || true
    mountpoint -q "$ROOT/proc" && umount "$ROOT/proc" || true
    [[ -n ${TMP:-} ]] && rm -rf "$TMP"
}
trap cleanup EXIT
TMP=$(mktemp -d)
mountpoint -q "$ROOT/proc" || mount -t proc proc "$ROOT/proc"
mountpoint -q "$ROOT/dev" || mount --bind /dev "$ROOT/dev"

in_root() {
    local ca=()
    [[ -f $ROOT/etc/tla-edge-host-ca.crt ]] && ca=(PIP_CERT=/etc/tla-edge-host-ca.crt)
    # QEMU_CPU is read by qemu's binfmt handler: every arm64 process runs on that CPU model.
    chroot "$ROOT" /usr/bin/env -i HOME=/root LANG=C.UTF-8 QEMU_CPU="$CPU" "${ca[@]}" \
        PATH=/opt/tla-edge-venv/bin:/usr/local/bin:/usr/bin:/bin "$@"
}

# --- 3. the repository, as committed ----------------------------------------
SRC=$TMP/src
mkdir -p "$SRC"
if [[ $WORKTREE == 1 ]]; then
    (cd "$REPO" && git ls-files -z --cached --others --exclude-standard \
        | tar --null -T - --ignore-failed-read -cf - 2>/dev/null) | tar -xf - -C "$SRC"
    COMMIT="$(git -C "$REPO" rev-parse HEAD) + worktree"
else
    git -C "$REPO" archive --format=tar HEAD | tar -xf - -C "$SRC"
    COMMIT=$(git -C "$REPO" rev-parse HEAD)
fi
[[ -f $SRC/tla_edge/runtime/assets/face_detection_short_range.tflite ]] \
    || die "the bundled face detector is not in $([[ $WORKTREE == 1 ]] && echo the worktree || echo HEAD); commit tla_edge/runtime/assets first or pass --worktree"
rm -rf "$ROOT/opt/tla-edge-src"
cp -a "$SRC" "$ROOT/opt/tla-edge-src"

# The runner: one header line, then one JSON line per frame. Shared verbatim
# by both architectures so the only difference is the machine.
cat >"$TMP/run_frames.py" <<'PY'
"""Runs the bundled detector (+ liveness model) on a folder of frames; JSON lines on stdout."""
import importlib.metadata as md
import json
import os
import platform
import sys
from pathlib import Path

from tla_edge.runtime import assets
from tla_edge.runtime.sources import open_source

frames_dir = assets.sample_frames_dir() if sys.argv[1] == "bundled" else Path(sys.argv[1])
model = None if sys.argv[2] == "bundled" else Path(sys.argv[2])
DETECTORS = ("short", "full")
mode = "pipeline" if model is not None or assets.DEFAULT_LIVENESS_MODEL.is_file() else "detector"


def version(name):
    try:
        return md.version(name)
    except md.PackageNotFoundError:
        return None


def where(path):
    """A path inside the venv as <venv>/...: the report names no machine's folders."""
    path = str(path)
    return "<venv>/" + os.path.relpath(path, sys.prefix) if path.startswith(sys.prefix + os.sep) else path


def wheel_tags():
    """name==version -> the wheel tags pip installed it from (shows which are arm64 binaries)."""
    tags = {}
    for dist in md.distributions():
        text = dist.read_text("WHEEL") or ""
        found = [line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("Tag:")]
        tags[f"{dist.metadata['Name']}=={dist.version}"] = ", ".join(found) or None
    return dict(sorted(tags.items(), key=lambda kv: kv[0].lower()))


print(json.dumps({
    "kind": "header",
    "machine": platform.machine(),
    "python": platform.python_version(),
    "mode": mode,
    "frames_dir": where(frames_dir),
    # the bundled set is the primary and the partners its metadata names (a fused pair)
    "model": (where(model) if model else "+".join(where(m) for m in assets.default_liveness_models()))
    if mode == "pipeline" else None,
    "tla_edge_file": where(__import__("tla_edge").__file__),
    "packages": {n: version(n) for n in (
        "tla-edge", "numpy", "mediapipe", "ai-edge-litert", "opencv-contrib-python", "opencv-python")},
    "wheels": wheel_tags(),
    # which face detector backend "auto" takes on this CPU, and why
    "detector_backend_auto": list(__import__("tla_edge.runtime.cpu", fromlist=["auto_backend"]).auto_backend()),
}), flush=True)


def box(face):
    return None if face is None else [round(float(v), 3) for v in (face.x, face.y, face.width, face.height)]


if mode == "pipeline":
    from tla_edge.runtime.pipeline import Pipeline

    # Stills: image-mode detector, no smoothing, so each line is that frame alone.
    # Both bundled detectors: the full-range one finds more faces to score.
    for detector in DETECTORS:
        with Pipeline(model, smoothing=1, video=False, num_threads=1, detector_model=detector) as pipe, \
                open_source(frames_dir) as frames:
            for frame in frames:
                pipe.reset()
                r = pipe.process(frame.rgb)
                print(json.dumps({
                    "frame": frame.name,
                    "detector": detector,
                    "backend": pipe.detector.backend,
                    "decision": r.decision,
                    "score": None if r.raw_score is None else round(r.raw_score, 4),
                    "box": box(r.face),
                    "error": r.error,
                }), flush=True)
else:
    from tla_edge.runtime.faces import FaceDetector

    for name in DETECTORS:
        detector = FaceDetector(name, mode="image", num_threads=1)
        try:
            with open_source(frames_dir) as frames:
                for frame in frames:
                    faces = detector.detect(frame.rgb)
                    face = max(faces, key=lambda f: f.area) if faces else None
                    print(json.dumps({
                        "frame": frame.name,
                        "detector": name,
                        "backend": detector.backend,
                        "decision": "face" if face else "no_face",
                        "score": None if face is None else round(float(face.score), 4),
                        "box": box(face),
                    }), flush=True)
        finally:
            detector.close()  # explicitly: MediaPipe's teardown at interpreter exit is fragile
PY
cp "$TMP/run_frames.py" "$ROOT/opt/run_frames.py"

FRAMES_ARG=bundled
if [[ -n $FRAMES ]]; then
    rm -rf "$ROOT/opt/frames"
    cp -a "$FRAMES" "$ROOT/opt/frames"
    FRAMES_ARG=/opt/frames
fi
MODEL_ARG=bundled
if [[ -n $MODEL ]]; then
    rm -rf "$ROOT/opt/model" && mkdir -p "$ROOT/opt/model"
    cp "$MODEL" "$ROOT/opt/model/"
    [[ -f $MODEL.json ]] && cp "$MODEL.json" "$ROOT/opt/model/"
    MODEL_ARG=/opt/model/$(basename "$MODEL")
fi

# --- 4. arm64: venv, install from the index, run --------------------------------
if [[ ! -x $ROOT/opt/tla-edge-venv/bin/python ]]; then
    step "arm64: creating the venv"
    in_root python3 -m venv /opt/tla-edge-venv
    in_root pip install -q --upgrade pip >&2
fi
step "arm64: pip install '.[runtime]' (ai-edge-litert, opencv, numpy)"
in_root pip install -q '/opt/tla-edge-src[runtime]' >&2
in_root pip install -q --force-reinstall --no-deps /opt/tla-edge-src >&2
in_root pip freeze --exclude-editable >"$TMP/arm64_freeze.txt"
step "arm64: running the frames"
# A crash (e.g. SIGILL: a wheel built for newer CPU features than --cpu has)
# is a result to report, not a reason to stop before the report.
set +e
in_root python -I /opt/run_frames.py "$FRAMES_ARG" "$MODEL_ARG" >"$TMP/arm64.jsonl" 2>"$TMP/arm64.err"
echo $? >"$TMP/arm64.rc"
set -e
grep -v -E '^(INFO: |W0000|WARNING: Logging)' "$TMP/arm64.err" | tail -n 5 >&2 || true

# --- 5. x86-64: the same in a fresh venv -------------------------------------------
PY311=$(command -v python3.11 || command -v python3)
if [[ ! -x $X86_VENV/bin/python ]]; then
    step "x86-64: creating the venv with $PY311"
    "$PY311" -m venv "$X86_VENV"
fi
step "x86-64: pip install '.[runtime]'"
"$X86_VENV/bin/pip" install -q "$SRC[runtime]" >&2
"$X86_VENV/bin/pip" install -q --force-reinstall --no-deps "$SRC" >&2
"$X86_VENV/bin/pip" freeze --exclude-editable >"$TMP/x86_freeze.txt"
X86_FRAMES=$FRAMES_ARG
[[ -n $FRAMES ]] && X86_FRAMES=$FRAMES
step "x86-64: running the frames"
(cd "$TMP" && "$X86_VENV/bin/python" -I "$TMP/run_frames.py" "$X86_FRAMES" "${MODEL:-bundled}") >"$TMP/x86.jsonl"

# --- 6. compare and report -----------------------------------------------------------
QEMU="$(qemu-aarch64-static --version | head -1), -cpu $CPU"
# The report names no path of this machine: frames inside the checkout by their
# path in it, others by their folder's name.
FRAMES_DESC=""
if [[ -n $FRAMES ]]; then
    FRAMES_ABS=$(cd "$FRAMES" && pwd)
    case "$FRAMES_ABS/" in
        "$REPO"/*) FRAMES_DESC="${FRAMES_ABS#"$REPO"/} (in the checkout)" ;;
        *) FRAMES_DESC="a folder named $(basename "$FRAMES_ABS") (outside the checkout)" ;;
    esac
fi
python3 - "$TMP" "$OUT" "$COMMIT" "$QEMU" "${FRAMES_DESC:-bundled samples (tla_edge/runtime/assets/samples)}" \
    "${MODEL:-bundled (tla_edge/runtime/assets: liveness_mnv2_int8.tflite and the partners its metadata names)}" <<'PY'
import datetime, json, os, sys, tempfile
from pathlib import Path

tmp, out, commit, qemu, frames, model = Path(sys.argv[1]), Path(sys.argv[2]), *sys.argv[3:7]


def side(name):
    lines = [json.loads(l) for l in (tmp / f"{name}.jsonl").read_text().splitlines() if l.strip()]
    header = lines[0] if lines and lines[0].get("kind") == "header" else {"mode": None}
    if str(header.get("frames_dir", "")).startswith("/") and not str(header["frames_dir"]).startswith("/opt/"):
        header["frames_dir"] = frames  # the x86-64 side reads them where they are: no machine's path in the report
    rows = lines[1:] if lines and lines[0].get("kind") == "header" else lines
    freeze = [l.replace(f"file://{tmp}/src", "<src>")  # the temporary copy's path means nothing elsewhere
              for l in (tmp / f"{name}_freeze.txt").read_text().splitlines() if l.strip()]
    return {**{k: v for k, v in header.items() if k != "kind"}, "pip_freeze": freeze, "frames": rows}


arm, x86 = side("arm64"), side("x86")
rc = int((tmp / "arm64.rc").read_text())
if rc != 0:
    signal = {132: "SIGILL: an instruction this CPU does not have", 139: "SIGSEGV", 134: "SIGABRT"}.get(rc, "")
    tail = [l for l in (tmp / "arm64.err").read_text(errors="replace").splitlines()
            if not l.startswith(("INFO: ", "W0000", "WARNING: Logging"))][-5:]
    arm["error"] = f"the arm64 run exited {rc}" + (f" ({signal})" if signal else "")
    arm["stderr_tail"] = tail
a = {f'{r["frame"]} [{r["detector"]}]': r for r in arm["frames"]}
b = {f'{r["frame"]} [{r["detector"]}]': r for r in x86["frames"]}
mismatches = [
    {"frame": f, "arm64": a.get(f, {}).get("decision"), "x86_64": b.get(f, {}).get("decision")}
    for f in sorted(set(a) | set(b))
    if a.get(f, {}).get("decision") != b.get(f, {}).get("decision")
]
score_diffs = [abs(a[f]["score"] - b[f]["score"]) for f in a
               if f in b and a[f]["score"] is not None and b[f]["score"] is not None]
box_diffs = [max(abs(p - q) for p, q in zip(a[f]["box"], b[f]["box"])) for f in a
             if f in b and a[f]["box"] and b[f]["box"]]
report = {
    "what": "tla-edge runtime on Debian bookworm arm64 under qemu-user vs x86-64: same frames, same code",
    "created_utc": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    "commit": commit,
    "frames": frames,
    "mode": arm["mode"],
    "model": model if arm["mode"] == "pipeline" else None,
    "emulator": qemu,
    "arm64_error": arm.get("error"),
    "arm64_os": "Debian 12 bookworm arm64 (debootstrap --variant=minbase)",
    "n_frames": len({r["frame"] for r in arm["frames"]}),
    "n_runs": len(a),
    "match": rc == 0 and not mismatches and len(a) == len(b) > 0 and arm["mode"] == x86["mode"],
    "mismatches": mismatches,
    "max_abs_score_diff": round(max(score_diffs), 4) if score_diffs else None,
    "max_abs_box_diff_px": round(max(box_diffs), 3) if box_diffs else None,
    "arm64": arm,
    "x86_64": x86,
}
out.parent.mkdir(parents=True, exist_ok=True)
fd, name = tempfile.mkstemp(prefix=f".{out.name}.", dir=out.parent)
with os.fdopen(fd, "w") as f:
    json.dump(report, f, indent=2)
    f.write("\n")
os.chmod(name, 0o644)
os.replace(name, out)

print(f"arm64 proof ({report['mode']}), commit {commit[:12]}, {report['n_frames']} frames x detectors short, full")
for label, sd in (("arm64 ", arm), ("x86-64", x86)):
    print(f"  {label}: Python {sd.get('python')} ({sd.get('machine')}), " + ", ".join(
        f"{k} {v}" for k, v in sd.get("packages", {}).items() if v))
print(f"  emulator: {qemu}")
if arm.get("error"):
    print(f"  arm64 FAILED: {arm['error']}")
print(f"  {'frame [detector]':<36} {'arm64':<22} {'x86-64':<22}")
for f in sorted(set(a) | set(b)):
    fmt = lambda r: f"{r.get('decision')} {r.get('score')}" if r else "-"
    print(f"  {f:<36} {fmt(a.get(f)):<22} {fmt(b.get(f)):<22}")
print(f"  decisions match: {report['match']}; max |score diff| {report['max_abs_score_diff']}; "
      f"max box diff {report['max_abs_box_diff_px']} px")
print(f"  report: {out}")
sys.exit(0 if report["match"] else 1)
PY
exit
}
