#!/usr/bin/env python3
"""Face liveness on a Raspberry Pi: a window with the overlay, or JSON lines headless.

    python liveness_demo.py                               # USB camera 0, overlay window
    python liveness_demo.py --source picamera2 --headless # Pi camera, one JSON line per frame
    python liveness_demo.py --model model_edgetpu.tflite --edgetpu
    python liveness_demo.py --headless --gpio 17          # pulse GPIO 17 on a live face
    python liveness_demo.py --headless --url http://door.local/unlock

:func:`on_live` runs once each time a *live* decision has held for
``--hold-frames`` consecutive frames; any other decision (pending, spoof, no face,
face too small or cut off, error) re-arms it, so liveness fails closed. Edit
it to do what your kiosk needs. Everything else is tla-edge's own frame loop
(:mod:`tla_edge.runtime.loop`, the one ``tla-edge demo`` runs), with the same flags.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
import urllib.request
from typing import Callable

from tla_edge.errors import UserError
from tla_edge.runtime.loop import check_options, format_summary, pipeline_for_source, run_loop
from tla_edge.runtime.overlay import VideoSink, check_display


class LiveHold:
    """Counts consecutive live frames; fires once per streak of ``frames``.

    Args:
      frames: consecutive live frames needed before firing (>= 1).
    """

    def __init__(self, frames: int) -> None:
        if frames < 1:
            raise ValueError(f"--hold-frames {frames} is not >= 1")
        self.frames = frames
        self.count = 0
        self.fired = False

    def update(self, is_live: bool) -> bool:
        """Adds one frame's decision; True exactly when the streak reaches ``frames``."""
        if not is_live:
            self.count, self.fired = 0, False
            return False
        self.count += 1
        if self.count >= self.frames and not self.fired:
            self.fired = True
            return True
        return False


def gpio_pulse(pin: int, seconds: float) -> Callable[[], None]:
    """An action that raises a GPIO pin for ``seconds`` (a relay, a door strike, an LED).

    Raises:
      UserError: gpiozero is missing or the pin cannot be opened.
    """
    try:
        from gpiozero import OutputDevice
    except ImportError:
        raise UserError(
            "--gpio needs gpiozero; on Raspberry Pi OS: sudo apt install python3-gpiozero "
            "and a venv created with --system-site-packages"
        ) from None
    try:
        device = OutputDevice(pin, active_high=True, initial_value=False)
    except Exception as err:  # noqa: BLE001 - gpiozero raises many types
        raise UserError(f"cannot open GPIO {pin} ({err}); expected a free BCM pin number") from err
    return lambda: device.blink(on_time=seconds, off_time=0, n=1, background=True)


def post_json(url: str, timeout_s: float = 2.0) -> Callable[[dict], None]:
    """An action that POSTs the live event as JSON to ``url`` on a background thread."""
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"--url {url!r} is not an http:// or https:// URL")

    def send(event: dict) -> None:
        def worker() -> None:
            request = urllib.request.Request(
                url, json.dumps(event).encode(), {"Content-Type": "application/json"}
            )
            try:
                urllib.request.urlopen(request, timeout=timeout_s).close()
            except OSError as err:  # a door that does not answer must not stop the camera
                print(f"liveness_demo: warning: POST {url} failed: {err}", file=sys.stderr)

        threading.Thread(target=worker, daemon=True).start()

    return send


def make_on_live(args: argparse.Namespace) -> Callable[[object], None]:
    """Builds :func:`on_live` from the flags: a log line, plus a GPIO pulse and/or a POST."""
    pulse = gpio_pulse(args.gpio, args.gpio_seconds) if args.gpio is not None else None
    post = post_json(args.url) if args.url else None

    def on_live(result) -> None:
        """Runs once per live streak of --hold-frames frames. Edit me."""
        event = {"event": "live", "time": time.time(), "score": round(float(result.score), 4),
                 "face": [round(float(v), 1) for v in result.face[:4]], "frames": args.hold_frames}
        print(f"liveness_demo: LIVE held {args.hold_frames} frames, score {result.score:.3f}", file=sys.stderr)
        if pulse is not None:
            pulse()
        if post is not None:
            post(event)

    return on_live


def add_demo_flags(parser: argparse.ArgumentParser) -> None:
    """The flags of ``tla-edge demo``: source, models, decision, detector, outputs."""
    add = parser.add_argument
    add("--source", type=str, default="0", help="camera index, picamera2, a video file, a folder of images or one image")
    add("--model", type=str, action="append", default=None, metavar="TFLITE",
        help="liveness .tflite, repeatable (scores averaged: two-scale fusion), or a folder holding one model "
        "or one fused set (tla-edge calibrate --out DIR); default: the bundled int8 model")
    add("--threshold", type=float, default=None, help="live iff score >= this; default: the model's own")
    add("--threads", type=int, default=None, help="CPU threads per interpreter; default: the runtime's choice")
    add("--edgetpu", action="store_true", help="run the liveness model on a Coral Edge TPU")
    add("--detector", type=str, choices=("short", "full"), default="short", help="face detector range")
    add("--detector-backend", type=str, choices=("auto", "mediapipe", "litert"), default="auto",
        help="face detector backend")
    add("--members", type=str, choices=("auto", "sequential", "concurrent"), default="auto",
        help="how the bundled pair's two models run: one after another, concurrently, or auto (concurrent "
        "when the board has a core to spare beyond models x --threads)")
    add("--overlap-frames", action="store_true",
        help="detect the next frame on another core while this one is judged: same decisions, more frames "
        "per second when the board is slower than the camera")
    add("--smoothing", type=int, default=None, help="frames whose scores are averaged per face")
    add("--live-frames", type=int, default=None, metavar="K",
        help="consecutive frames at or above the threshold before a face is live")
    add("--headless", action="store_true", help="no window: one JSON line per frame on stdout")
    add("--output", type=str, default=None, metavar="VIDEO", help="also write the annotated frames to this .mp4")
    add("--max-frames", type=int, default=None, help="stop after this many frames")
    add("--loop", action="store_true", help="repeat a video or image folder forever")
    add("--width", type=int, default=None, help="requested camera capture width")
    add("--height", type=int, default=None, help="requested camera capture height")
    add("--force", action="store_true", help="overwrite --output if it exists")


def build_parser() -> argparse.ArgumentParser:
    """tla-edge demo's flags plus the on_live actions."""
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    add_demo_flags(parser)
    parser.add_argument("--hold-frames", type=int, default=5,
                        help="consecutive live frames before on_live fires")
    parser.add_argument("--gpio", type=int, default=None, metavar="BCM_PIN",
                        help="pulse this GPIO pin (BCM numbering) on live")
    parser.add_argument("--gpio-seconds", type=float, default=1.0, help="length of the GPIO pulse")
    parser.add_argument("--url", type=str, default=None, help="POST a JSON event to this URL on live")
    return parser


def run(args: argparse.Namespace) -> int:
    """Opens the source and the pipeline and runs tla-edge's frame loop with the on_live hook."""
    from tla_edge.runtime.sources import open_source

    check_options(args.threshold, smoothing=args.smoothing, live_frames=args.live_frames, threads=args.threads,
                  max_frames=args.max_frames, width=args.width, height=args.height)
    if not args.gpio_seconds > 0:
        raise ValueError(f"--gpio-seconds {args.gpio_seconds} is not > 0")
    if not args.headless:
        check_display()
    hold = LiveHold(args.hold_frames)
    on_live = make_on_live(args)

    def on_result(frame, result) -> None:
        if hold.update(result.is_live):
            on_live(result)

    with open_source(args.source, loop=args.loop, width=args.width, height=args.height) as source, \
            pipeline_for_source(source, args.model or (), threshold=args.threshold, smoothing=args.smoothing,
                                live_frames=args.live_frames, num_threads=args.threads, edgetpu=args.edgetpu,
                                detector=args.detector, detector_backend=args.detector_backend,
                                members=args.members) as pipeline:
        video = VideoSink(args.output, fps=source.fps or 30.0, force=args.force) if args.output else None
        try:
            summary = run_loop(pipeline, source, max_frames=args.max_frames, on_result=on_result,
                               show=not args.headless, json_out=sys.stdout if args.headless else None,
                               video=video, overlap_frames=args.overlap_frames)
        except BaseException:
            if video is not None:
                video.close(keep=False)
            raise
        written = video is not None and video.close(keep=True)
    print(format_summary(summary, str(args.source), str(video.path) if written else None), file=sys.stderr)
    return 130 if summary.stopped == "interrupted" else 0


def main(argv: list[str] | None = None) -> int:
    """Parses the flags and runs; a user mistake ends in one line and exit code 2."""
    args = build_parser().parse_args(argv)
    try:
        return run(args)
    except (UserError, FileNotFoundError, ValueError, OSError) as err:
        print(f"liveness_demo: error: {' '.join(str(err).split())}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
