"""examples/raspberry_pi/liveness_demo.py: the live-streak hook, its actions and its errors."""

from __future__ import annotations

import http.server
import importlib.util
import json
import queue
import threading

import pytest

from conftest import REPO

EXAMPLE = REPO / "examples" / "raspberry_pi" / "liveness_demo.py"


@pytest.fixture(scope="module")
def example():
    spec = importlib.util.spec_from_file_location("liveness_demo", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_live_hold_fires_once_per_streak(example):
    hold = example.LiveHold(2)
    decisions = [True, True, True, False, True, False, True, True, True, True]
    fired = [i for i, live in enumerate(decisions) if hold.update(live)]
    assert fired == [1, 7]


def test_live_hold_of_one_fires_on_every_new_streak(example):
    hold = example.LiveHold(1)
    assert [hold.update(v) for v in (True, True, False, True)] == [True, False, False, True]


def test_live_hold_rejects_zero(example):
    with pytest.raises(ValueError, match=r"--hold-frames 0 is not >= 1"):
        example.LiveHold(0)


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--hold-frames", "0"], "--hold-frames 0 is not >= 1"),
        (["--url", "ftp://door.local/open"], "--url 'ftp://door.local/open' is not an http:// or https:// URL"),
        (["--gpio-seconds", "0"], "--gpio-seconds 0.0 is not > 0"),
        (["--threshold", "1.5"], "--threshold 1.5 is not strictly between 0 and 1"),
        (["--source", "/nonexistent/frames"], "source '/nonexistent/frames' not found"),
    ],
)
def test_bad_flags_end_in_one_line_and_exit_2(example, capsys, flags, message):
    assert example.main(["--headless", *flags]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert err[0].startswith("liveness_demo: error: ")
    assert message in err[0]


class _Recorder(http.server.BaseHTTPRequestHandler):
    received: queue.Queue = queue.Queue()

    def do_POST(self):  # noqa: N802 - http.server's naming
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.received.put((self.path, self.headers["Content-Type"], json.loads(body)))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


def test_headless_on_samples_posts_once_per_live_streak(example, tiny_tflite, capsys):
    from tla_edge.runtime.assets import sample_frames_dir

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/unlock"
    try:
        # Threshold 1e-9, one live frame: every scored face is live, so the streaks follow the detector.
        code = example.main([
            "--headless", "--source", str(sample_frames_dir()), "--model", str(tiny_tflite["int8"]),
            "--threshold", "1e-9", "--smoothing", "1", "--live-frames", "1", "--hold-frames", "1", "--url", url,
        ])
        assert code == 0
        out, err = capsys.readouterr()
        records = [json.loads(line) for line in out.splitlines()]
        frames = sorted(p.name for p in sample_frames_dir().iterdir() if p.suffix == ".jpg")
        assert [r["name"] for r in records] == frames
        lives = [r["is_live"] for r in records]
        streaks = sum(1 for i, v in enumerate(lives) if v and (i == 0 or not lives[i - 1]))
        assert streaks >= 1, [r["decision"] for r in records]
        assert not records[frames.index("04_no_face.jpg")]["is_live"]
        posts = [_Recorder.received.get(timeout=10) for _ in range(streaks)]
        assert _Recorder.received.empty()
        for path, content_type, event in posts:
            assert (path, content_type, event["event"]) == ("/unlock", "application/json", "live")
            assert 0.0 <= event["score"] <= 1.0 and len(event["face"]) == 4
        assert err.count("LIVE held 1 frames") == streaks
        assert "tla-edge demo: 5 frames" in err
    finally:
        server.shutdown()


def test_overlap_frames_and_members_flags_keep_the_decisions(example, capsys):
    from tla_edge.runtime.assets import sample_frames_dir

    runs = []
    for extra in ([], ["--overlap-frames", "--members", "concurrent"]):
        assert example.main(["--headless", "--source", str(sample_frames_dir()), "--threads", "1", *extra]) == 0
        out, _ = capsys.readouterr()
        runs.append([(r["name"], r["decision"], r["raw_score"]) for r in map(json.loads, out.splitlines())])
    assert runs[0] == runs[1] and len(runs[0]) == 5


@pytest.fixture(scope="module")
def bench_device():
    spec = importlib.util.spec_from_file_location("bench_device", EXAMPLE.with_name("bench_device.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_device_model_reads_the_device_tree_and_falls_back(bench_device, tmp_path):
    tree = tmp_path / "model"
    tree.write_bytes(b"Raspberry Pi 5 Model B Rev 1.0\x00")
    assert bench_device.device_model(tree) == "Raspberry Pi 5 Model B Rev 1.0"
    import platform

    assert bench_device.device_model(tmp_path / "absent") == f"{platform.system()} {platform.machine()}"


@pytest.mark.parametrize(
    "model, edgetpu, slug",
    [
        ("Raspberry Pi 5 Model B Rev 1.0", False, "raspberry_pi_5_model_b_rev_1_0"),
        ("Raspberry Pi 4 Model B Rev 1.4", True, "raspberry_pi_4_model_b_rev_1_4_edgetpu"),
        ("Linux x86_64", False, "linux_x86_64"),
        ("  ///  ", False, "unknown_device"),
    ],
)
def test_device_slug(bench_device, model, edgetpu, slug):
    assert bench_device.device_slug(model, edgetpu) == slug


def test_bench_device_writes_the_bench_schema_and_refuses_to_overwrite(bench_device, tiny_tflite, tmp_path, capsys):
    out = tmp_path / "results" / "board.json"
    argv = ["--model", str(tiny_tflite["int8"]), "--frames", "3", "--warmup", "1", "--threads", "1",
            "--device", "Test Board 1", "--out", str(out)]
    assert bench_device.main(argv) == 0
    report = json.loads(out.read_text())
    assert report["format"] == "tla-edge-bench/1"
    assert report["frames"] == 3 and len(report["configurations"]) == 1
    assert report["device"]["name"] == "test_board_1"
    assert f"bench_device: wrote {out}" in capsys.readouterr().out
    before = out.read_bytes()
    assert bench_device.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"bench_device: error: output '{out}' already exists; pass --force to overwrite it"
    assert out.read_bytes() == before


ARM64_PROOF = REPO / "scripts" / "arm64_proof.sh"
SETUP = EXAMPLE.with_name("setup.sh")


@pytest.mark.parametrize("script", [ARM64_PROOF, SETUP], ids=lambda p: p.name)
def test_shell_scripts_parse_and_reject_unknown_flags(script):
    import subprocess

    assert subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True).returncode == 0
    done = subprocess.run(["bash", str(script), "--bogus"], capture_output=True, text=True, timeout=30)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1].endswith(
        "error: unknown argument '--bogus'; expected one of the options above"
    )
    assert "usage:" in done.stderr
