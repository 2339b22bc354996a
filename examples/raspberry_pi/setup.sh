#!/usr/bin/env bash
# Sets up tla-edge on a Raspberry Pi 4/5 (Raspberry Pi OS Bookworm 64-bit) or
# any 64-bit Linux: a venv, the runtime extra (no TensorFlow, no MediaPipe: the
# face detector runs through LiteRT on every board), and a self-check that runs
# one bundled sample frame through the whole pipeline.
#
#   examples/raspberry_pi/setup.sh                 # venv in ~/tla-edge-venv
#   examples/raspberry_pi/setup.sh --venv DIR --apt --edgetpu
#   examples/raspberry_pi/setup.sh --mediapipe     # + the opt-in MediaPipe detector (Pi 5 only)
#
# Safe to run again: it reuses the venv and reinstalls tla-edge from this checkout.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
VENV=$HOME/tla-edge-venv
APT=0
EDGETPU=0
MEDIAPIPE=0
SYSTEM_SITE=auto
CHECK=1
PYTHON=${PYTHON:-python3}
# What OpenCV's native libraries load; Raspberry Pi OS Lite lacks them. EGL and
# GLES are MediaPipe's only: added below with --mediapipe.
APT_PACKAGES=(python3-venv python3-pip libgl1 libglib2.0-0 libxcb1)
SONAMES=(libGL.so.1 libglib-2.0.so.0 libxcb.so.1)
# The arm64 CPU features (/proc/cpuinfo) mediapipe 1.x needs (tla_edge.runtime.cpu.ARMV82_FEATURES),
# checked only with --mediapipe: a Pi 5 (Cortex-A76) has them; a Pi 4 (Cortex-A72,
# ARMv8.0) does not, and mediapipe stops there with SIGILL. The default detector
# (LiteRT, the same BlazeFace, same boxes) needs none of them.
MEDIAPIPE_FEATURES=(aes sha2 crc32 atomics asimddp fphp asimdhp asimdrdm lrcpc)

usage() {
    cat <<EOF
usage: $0 [--venv DIR] [--apt] [--edgetpu] [--mediapipe] [--system-site-packages | --no-system-site-packages] [--skip-check]

  --venv DIR                  where to create the virtual environment (default: $VENV)
  --apt                       install the system packages OpenCV needs with sudo apt-get:
                              ${APT_PACKAGES[*]} (+ libegl1 libgles2 with --mediapipe)
  --mediapipe                 also install the opt-in MediaPipe Tasks detector (tla-edge[runtime,mediapipe],
                              for --detector-backend mediapipe); refused on a CPU it cannot run on (Pi 4)
  --edgetpu                   also check that the Coral Edge TPU delegate loads (libedgetpu1-std, see README)
  --system-site-packages      let the venv see apt's python3-picamera2 (default: when picamera2 is installed)
  --no-system-site-packages   an isolated venv even when picamera2 is installed
  --skip-check                install only, no self-check
EOF
}

die() { echo "setup.sh: error: $*" >&2; exit 2; }
say() { echo "setup.sh: $*" >&2; }

while [[ $# -gt 0 ]]; do
    case "$1" in
        --venv) VENV=${2:?--venv needs a directory}; shift 2 ;;
        --apt) APT=1; shift ;;
        --edgetpu) EDGETPU=1; shift ;;
        --mediapipe) MEDIAPIPE=1; shift ;;
        --system-site-packages) SYSTEM_SITE=yes; shift ;;
        --no-system-site-packages) SYSTEM_SITE=no; shift ;;
        --skip-check) CHECK=0; shift ;;
        -h|--help) usage; exit 0 ;;
        *) usage >&2; die "unknown argument '$1'; expected one of the options above" ;;
    esac
done

# --- Python 3.10-3.12 (the wheels of mediapipe and ai-edge-litert exist for these)
command -v "$PYTHON" >/dev/null || die "'$PYTHON' not found; expected Python 3.10-3.12 (sudo apt install python3)"
pyver=$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
case "$pyver" in 3.10|3.11|3.12) ;; *) die "$PYTHON is Python $pyver; expected 3.10, 3.11 or 3.12 (set PYTHON=python3.11)" ;; esac
say "$(uname -m), Python $pyver, $(. /etc/os-release 2>/dev/null && echo "$PRETTY_NAME")"
[[ $(uname -m) == armv7l ]] && die "this is a 32-bit OS (armv7l); ai-edge-litert needs 64-bit Raspberry Pi OS (aarch64)"

# --- the opt-in MediaPipe detector (the default, LiteRT, runs on every board)
if [[ $MEDIAPIPE == 1 ]]; then
    cpu_features=$(grep -m1 '^Features' /proc/cpuinfo 2>/dev/null | cut -d: -f2 || true)
    if [[ $(uname -m) == aarch64 && -n $cpu_features ]]; then
        lacking=()
        for f in "${MEDIAPIPE_FEATURES[@]}"; do
            [[ " $cpu_features " == *" $f "* ]] || lacking+=("$f")
        done
        ((${#lacking[@]} == 0)) || die "this CPU lacks ${lacking[*]}: mediapipe 1.x cannot run on it" \
            "(a Pi 4's Cortex-A72); drop --mediapipe, the default LiteRT detector gives the same boxes"
    fi
    APT_PACKAGES+=(libegl1 libgles2)
    SONAMES+=(libEGL.so.1 libGLESv2.so.2)
fi

# --- system libraries
if [[ $APT == 1 ]]; then
    say "installing ${APT_PACKAGES[*]}"
    sudo apt-get update -q
    sudo apt-get install -y -q "${APT_PACKAGES[@]}"
fi
missing=()
for so in "${SONAMES[@]}"; do
    /sbin/ldconfig -p | grep -q "$so" || missing+=("$so")
done
((${#missing[@]} == 0)) || die "missing system libraries ${missing[*]}; run: sudo apt install ${APT_PACKAGES[*]} (or pass --apt)"

# --- the venv
if [[ $SYSTEM_SITE == auto ]]; then
    if "$PYTHON" -c 'import picamera2' 2>/dev/null; then SYSTEM_SITE=yes; else SYSTEM_SITE=no; fi
fi
if [[ ! -x $VENV/bin/python ]]; then
    flags=()
    [[ $SYSTEM_SITE == yes ]] && flags+=(--system-site-packages)
    say "creating the venv $VENV ${flags[*]:-}"
    "$PYTHON" -m venv "${flags[@]}" "$VENV" || die "could not create the venv '$VENV'; install python3-venv (sudo apt install python3-venv)"
fi
say "installing tla-edge[runtime] from $REPO"
"$VENV/bin/python" -m pip install -q --upgrade pip
(cd "$REPO" && "$VENV/bin/python" -m pip install -q -r examples/raspberry_pi/requirements.txt)
if [[ $MEDIAPIPE == 1 ]]; then
    say "installing the mediapipe extra (tla-edge[runtime,mediapipe])"
    (cd "$REPO" && "$VENV/bin/python" -m pip install -q ".[runtime,mediapipe]")
fi
# The same version number may hide newer code in the checkout: reinstall it.
(cd "$REPO" && "$VENV/bin/python" -m pip install -q --force-reinstall --no-deps .)

if [[ $CHECK == 0 ]]; then
    say "done (self-check skipped); activate with: source $VENV/bin/activate"
    exit 0
fi

# --- self-check: bundled detector + bundled liveness model on one bundled frame.
# Runs outside the checkout so it tests the installed package, assets included.
say "self-check"
cd /tmp
TLA_EDGE_EDGETPU=$EDGETPU "$VENV/bin/python" - <<'PY'
import os
import platform
import sys
import time

try:
    from tla_edge import __version__
    from tla_edge.runtime import assets
    from tla_edge.runtime.cpu import auto_backend
    from tla_edge.runtime.faces import FaceDetector
    from tla_edge.runtime.interpreter import LivenessModel, import_runtime, load_edgetpu_delegate
    from tla_edge.runtime.pipeline import Pipeline
    from tla_edge.runtime.sources import list_images, open_source
except ImportError as err:
    sys.exit(f"self-check: error: {err}; the install is incomplete, rerun setup.sh")

failed = False
try:
    runtime = import_runtime()
    model_path = assets.default_liveness_model()
    frames = list_images(assets.sample_frames_dir())
    if not frames:
        raise FileNotFoundError(f"no sample frames in '{assets.sample_frames_dir()}'")
    t0 = time.perf_counter()
    detector = FaceDetector("short", mode="image")
    model = LivenessModel(model_path)
    load_ms = (time.perf_counter() - t0) * 1e3
    with Pipeline(model, detector, smoothing=1, live_frames=1) as pipe, open_source(frames[0]) as source:
        for frame in source:
            result = pipe.process(frame.rgb)
    detector.close()
except Exception as err:  # noqa: BLE001 - the self-check reports, never tracebacks
    sys.exit(f"self-check: error: {type(err).__name__}: {err}")

meta = model.meta
print(f"self-check: tla-edge {__version__} on {platform.machine()}, Python {platform.python_version()}, runtime {runtime.name}")
print(f"  face detector : short range (bundled), backend {detector.backend} ({auto_backend()[1]})")
print(f"  liveness model: {model_path.name} {meta.input_size[0]}x{meta.input_size[1]}, "
      f"crop x{meta.crop_scale}, threshold {meta.threshold:.3f} (loaded in {load_ms:.0f} ms with the detector)")
score = "-" if result.raw_score is None else f"{result.raw_score:.3f}"
face = "-" if result.face is None else f"{result.face.width:.0f}x{result.face.height:.0f} px at ({result.face.x:.0f}, {result.face.y:.0f})"
print(f"  sample frame  : {frames[0].name} -> {result.decision} (score {score}, face {face}, "
      f"{result.timings['total']:.0f} ms: detect {result.timings['detect']:.0f}, invoke {result.timings['invoke']:.0f})")
if result.decision == "error":
    print(f"self-check: error: the pipeline failed on the sample frame: {result.error}", file=sys.stderr)
    failed = True

if os.environ.get("TLA_EDGE_EDGETPU") == "1":
    try:
        load_edgetpu_delegate(runtime)
        print("  Edge TPU      : delegate loaded (libedgetpu), a Coral is attached")
    except Exception as err:  # noqa: BLE001
        print(f"self-check: error: Edge TPU: {err}", file=sys.stderr)
        failed = True
sys.exit(1 if failed else 0)
PY
say "ready; activate with: source $VENV/bin/activate; then: python $REPO/examples/raspberry_pi/liveness_demo.py --help"
say "fit the threshold to this camera (docs/own-camera.md): record a few people and attacks, then calibrate:"
say "  tla-edge record --source picamera2 --label real --subject p01 --session 01 --seconds 30 --every 3 --headless --out ~/kiosk-data"
say "  tla-edge record --source picamera2 --label print --subject p01 --session 01 --seconds 20 --every 3 --headless --out ~/kiosk-data"
say "  tla-edge calibrate ~/kiosk-data --out ~/kiosk/   # then: liveness_demo.py --model ~/kiosk/ (the folder is the calibrated pair)"
