"""``tla-edge bench``: statistics on hand-made numbers, then a few real NUAA frames end to end.

No test asserts a speed: timings vary by machine and load. They check the
schema, that numbers are positive and consistent with each other, and the
error paths.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import re
import shutil
from pathlib import Path

import pytest

from tla_edge import cli

from tla_edge import host
from tla_edge.runtime import benchmark as bench
from tla_edge.runtime import benchmark_report

HAVE_MATPLOTLIB = importlib.util.find_spec("matplotlib") is not None
"""--plot needs the dev extra's matplotlib; the runtime extra alone no longer brings it (it came with mediapipe)."""


def run_cli(argv: list[str], monkeypatch) -> int:
    """``tla_edge.cli.main`` with only the command under test registered."""
    monkeypatch.setattr(cli, "COMMANDS", {argv[0]: cli.COMMANDS[argv[0]]})
    return cli.main(argv)


# --- pure helpers -------------------------------------------------------------------


def test_stage_stats_hand_values():
    s = bench.stage_stats([float(v) for v in range(1, 11)])
    assert s == {
        "n": 10,
        "median": 5.5,
        "p90": 9.1,  # linear interpolation between the 9th and 10th values
        "p99": 9.91,
        "mean": 5.5,
        "std": 2.8723,
        "min": 1.0,
        "max": 10.0,
    }


def test_stage_stats_empty_has_no_numbers():
    assert bench.stage_stats([]) == {
        "n": 0, "median": None, "p90": None, "p99": None, "mean": None, "std": None, "min": None, "max": None,
    }  # fmt: skip


def test_stage_shares_hand_values():
    parts = {"decode": [1.0, 1.0], "detect": [3.0, 3.0], "crop": [1.0], "invoke": [4.0], "glue": [0.5, 0.5]}
    end_to_end = [10.0, 4.0]  # the second frame had no face: no crop, no invoke
    shares = benchmark_report.stage_shares(parts, end_to_end)
    assert list(shares) == list(benchmark_report.SHARE_STAGES)
    assert shares == {"decode": 0.1429, "detect": 0.4286, "crop": 0.0714, "invoke": 0.2857, "glue": 0.0714}
    assert benchmark_report.stage_shares({s: [] for s in parts}, []) == dict.fromkeys(parts)


def test_overhead_and_fps():
    total = {"median": 12.0, "mean": 10.0}
    assert benchmark_report.overhead_ratio(total, {"median": 4.0}, {"median": 6.0}) == 1.2
    assert benchmark_report.overhead_ratio(total, {"median": None}, {"median": 6.0}) is None
    assert benchmark_report.overhead_ratio({"median": None}, {"median": 4.0}, {"median": 6.0}) is None
    assert benchmark_report.fps_from(total) == 100.0
    assert benchmark_report.fps_from({"mean": None}) is None


def test_configurations_cover_every_pair_once(tmp_path):
    a, b = tmp_path / "a_int8.tflite", tmp_path / "b.tflite"
    configs = bench.configurations([a, b, a], [1, 2, 1], edgetpu=False)
    assert [c.id for c in configs] == ["a_int8/1t", "a_int8/2t", "b/1t", "b/2t"]
    assert bench.configurations([a], [4], edgetpu=True)[0].id == "a_int8/4t+edgetpu"


def test_configurations_with_detector_backends_side_by_side(tmp_path):
    a = tmp_path / "a_int8.tflite"
    configs = bench.configurations([a], [1, 2], False, ["mediapipe", "litert", "mediapipe"])
    assert [c.id for c in configs] == ["a_int8/1t@mediapipe", "a_int8/1t@litert", "a_int8/2t@mediapipe",
                                       "a_int8/2t@litert"]
    assert [c.detector_backend for c in configs] == ["mediapipe", "litert"] * 2


def test_a_fused_set_is_one_configuration(tmp_path):
    a, b = tmp_path / "a_int8.tflite", tmp_path / "b_int8.tflite"
    configs = bench.configurations([a, f"{a}+{b}", (a, b)], [1], edgetpu=False)
    assert [c.id for c in configs] == ["a_int8/1t", "a_int8+b_int8/1t"]
    assert configs[1].models == [a, b] and configs[1].model == a and configs[0].models == [a]
    assert bench.model_set(f"{a}+{b}") == (a, b) and bench.model_set(a) == (a,)


def test_recorded_path_is_relative_under_the_working_directory(tmp_path, monkeypatch):
    (tmp_path / "models").mkdir()
    monkeypatch.chdir(tmp_path)
    recorded_path = benchmark_report.recorded_path
    assert recorded_path(tmp_path / "models" / "m.tflite") == "models/m.tflite"
    # the project's one policy for a path fit to commit (metadata.portable_path): no machine's folders
    assert recorded_path("/elsewhere/m.tflite") == "<DIR>/m.tflite"
    assert recorded_path("0") == "0"  # a camera index stays as given
    assert recorded_path("./frames/") == "./frames/"  # a relative input stays exactly as given
    assert recorded_path("rtsp://cam.local/stream") == "rtsp://cam.local/stream"


def test_peak_rss_is_positive():
    host.reset_peak_rss()
    assert host.peak_rss_mb() > 1.0


# --- end to end on real frames -----------------------------------------------------


@pytest.fixture(scope="module")
def frames_dir(tmp_path_factory, request) -> Path:
    """Four NUAA frames (two real, two printed-photo) copied to a temp folder."""
    nuaa = request.getfixturevalue("nuaa_dir")
    out = tmp_path_factory.mktemp("bench_frames")
    for sub in ("ClientRaw", "ImposterRaw"):
        for i, path in enumerate(sorted((nuaa / sub).rglob("*.jpg"))[:2]):
            shutil.copy(path, out / f"{sub}_{i}.jpg")
    return out


@pytest.fixture(scope="module")
def bench_run(frames_dir, tiny_tflite, tmp_path_factory) -> tuple[dict, Path]:
    """One benchmark: two tiny models x 1 and 2 threads, 5 frames after 1 warm-up, JSON and plot."""
    out = tmp_path_factory.mktemp("bench_out")
    argv = [
        "bench", "--source", str(frames_dir),
        "--model", str(tiny_tflite["int8"]), "--model", str(tiny_tflite["float"]),
        "--threads", "1", "--threads", "2",
        "--frames", "5", "--warmup", "1",
        "--json", str(out / "bench.json"), "--quiet",
    ]  # fmt: skip
    if HAVE_MATPLOTLIB:
        argv += ["--plot", str(out / "bench.png")]
    mp = pytest.MonkeyPatch()
    try:
        assert run_cli(argv, mp) == 0
    finally:
        mp.undo()
    return json.loads((out / "bench.json").read_text()), out


def test_bench_json_schema(bench_run, frames_dir):
    report, _ = bench_run
    assert report["format"] == "tla-edge-bench/1"
    host = report["host"]
    for key in ("platform", "machine", "cpu", "cpu_count", "python", "runtime", "numpy"):
        assert host[key], key
    assert bool(host["mediapipe"]) == (importlib.util.find_spec("mediapipe") is not None)  # the opt-in extra
    assert host["runtime"]["name"] in ("ai-edge-litert", "tflite-runtime", "tensorflow")
    assert report["frames"] == 5 and report["warmup"] == 1 and report["seed"] == 0
    src = report["source"]
    assert src["spec"] == f"<DIR>/{frames_dir.name}" and src["kind"] == "folder" and src["live"] is False
    assert src["distinct_frames"] == 4 and src["frame_shape"] == [480, 640, 3]
    assert report["detector"]["model"] == "short" and report["detector"]["size_bytes"] > 0
    ids = [c["id"] for c in report["configurations"]]
    assert ids == ["tiny_int8/1t", "tiny_int8/2t", "tiny_float/1t", "tiny_float/2t"]
    for c in report["configurations"]:
        assert c["detector_backend"] in ("mediapipe", "litert")  # what ran, "auto" resolved
        assert set(c["stages"]) == set(bench.STAGES)
        assert set(c["raw_invoke_ms"]) == {"detector", "liveness"}
        for stat in c["stages"].values():
            assert set(stat) == set(bench.STAT_NAMES)
        # end to end, decode to decision, per configuration
        assert set(c["end_to_end_ms"]) == set(bench.STAT_NAMES)
        assert isinstance(c["fps_end_to_end"], float)
        assert set(c["stage_share"]) == set(benchmark_report.SHARE_STAGES) == {"decode", "detect", "crop", "invoke", "glue"}


def test_bench_numbers_are_positive_and_consistent(bench_run, tiny_tflite):
    report, _ = bench_run
    configs = report["configurations"]
    for c in configs:
        st, raw = c["stages"], c["raw_invoke_ms"]
        assert st["total"]["n"] == st["detect"]["n"] == st["decode"]["n"] == c["frames"] == 5
        assert 0 < c["frames_scored"] <= 5
        assert st["crop"]["n"] == st["invoke"]["n"] == c["frames_scored"] == c["total_scored"]["n"]
        assert sum(c["decisions"].values()) == 5
        assert raw["detector"]["n"] == raw["liveness"]["n"] == 5
        for name in ("decode", "detect", "detect_invoke", "crop", "invoke", "total"):
            s = st[name]
            assert 0 < s["min"] <= s["median"] <= s["p90"] <= s["p99"] <= s["max"], name
            assert s["std"] >= 0
        assert raw["detector"]["min"] > 0 and raw["liveness"]["min"] > 0
        # every stage is timed inside the total, so per frame glue >= 0 and total >= each stage
        assert st["glue"]["min"] >= 0
        assert st["total"]["max"] >= max(st[s]["max"] for s in ("detect", "crop", "invoke"))
        assert st["detect"]["min"] >= st["detect_invoke"]["min"]
        expected = c["total_scored"]["median"] / (raw["detector"]["median"] + raw["liveness"]["median"])
        assert c["overhead"] == pytest.approx(expected, rel=1e-3)
        assert c["fps"] == pytest.approx(1000.0 / st["total"]["mean"], rel=1e-3)
        e2e = c["end_to_end_ms"]
        assert e2e["n"] == 5 and c["fps_end_to_end"] == pytest.approx(1000.0 / e2e["mean"], rel=1e-3)
        # decode + total per frame: the mean adds up (to the rounding of the stats)
        assert e2e["mean"] == pytest.approx(st["decode"]["mean"] + st["total"]["mean"], abs=1e-3)
        assert c["fps_end_to_end"] <= c["fps"]
        shares = c["stage_share"]
        assert all(0.0 <= v <= 1.0 for v in shares.values()) and sum(shares.values()) == pytest.approx(1.0, abs=1e-3)
        assert shares["invoke"] > 0 and shares["detect"] > 0
        assert c["peak_rss_mb"] > 0
        path = next(p for p in tiny_tflite.values() if p.name == Path(c["model"]["path"]).name)
        assert c["model"]["path"] == f"<DIR>/{path.name}"  # outside the working directory: no absolute path
        assert c["model"]["size_bytes"] == path.stat().st_size
        assert c["model"]["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert [c["model"]["dtype"] for c in configs] == ["int8", "int8", "float32", "float32"]
    assert report["overhead"] == max(c["overhead"] for c in configs)
    # identical frames for every configuration: same decode times, same faces found
    assert len({json.dumps(c["stages"]["decode"]) for c in configs}) == 1
    assert len({c["frames_scored"] for c in configs}) == 1
    assert [c["threads"] for c in configs] == [1, 2, 1, 2]


def test_bench_times_a_fused_set_as_one_row(frames_dir, tiny_tflite, tmp_path, monkeypatch):
    """A+B runs both models on every face, as the pipeline fuses them: one row, both invokes in it."""
    out = tmp_path / "fused.json"
    fused = f"{tiny_tflite['int8']}+{tiny_tflite['float']}"
    argv = ["bench", "--source", str(frames_dir), "--model", fused, "--threads", "1",
            "--frames", "4", "--warmup", "1", "--json", str(out), "--quiet"]
    assert run_cli(argv, monkeypatch) == 0
    (c,) = json.loads(out.read_text())["configurations"]
    assert c["id"] == "tiny_int8+tiny_float/1t"
    assert c["model"]["name"] == "tiny_int8+tiny_float" and c["model"]["dtype"] == "int8"
    assert [m["name"] for m in c["model"]["fused_with"]] == ["tiny_float"]
    assert c["model"]["fused_with"][0]["dtype"] == "float32"
    assert sum(c["decisions"].values()) == 4
    assert c["stages"]["invoke"]["n"] == c["frames_scored"] > 0
    assert c["raw_invoke_ms"]["liveness"]["n"] == 4
    # the tiny models carry no fusion record: the decisions are said not to mean anything
    assert "no stored fusion threshold" in c["threshold_note"]


@pytest.mark.skipif(not HAVE_MATPLOTLIB, reason="--plot needs matplotlib (the 'dev' extra)")
def test_bench_plot_and_table(bench_run):
    _, out = bench_run
    assert (out / "bench.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bench_table_lists_every_configuration(bench_run):
    report, _ = bench_run
    table = benchmark_report.format_table(report)
    lines = table.splitlines()
    assert lines[0].startswith("tla-edge bench: 5 frames after 1 warm-up from ")
    for c in report["configurations"]:
        row = next(line for line in lines if line.startswith(c["id"]))
        assert f"{c['stages']['total']['median']:.2f}" in row and f"{c['overhead']:.2f}" in row
        e2e = next(line for line in lines if line.startswith(f"{c['id']}: end to end "))
        assert f"{c['fps_end_to_end']:.1f} fps" in e2e
        assert f"invoke {c['stage_share']['invoke'] * 100:.0f} %" in e2e


def test_bench_reuses_frames_when_the_source_is_short(frames_dir, tiny_tflite, tmp_path, monkeypatch, capsys):
    out = tmp_path / "b.json"
    argv = ["bench", "--source", str(frames_dir), "--model", str(tiny_tflite["int8"]),
            "--frames", "6", "--warmup", "0", "--json", str(out), "--quiet"]  # fmt: skip
    assert run_cli(argv, monkeypatch) == 0
    assert "has 4 frames, fewer than the 6 needed; reusing them in order" in capsys.readouterr().err
    c = json.loads(out.read_text())["configurations"][0]
    assert c["stages"]["total"]["n"] == 6 and c["raw_invoke_ms"]["liveness"]["n"] == 6


# --- refusals and bad input: one line, exit 2, before any measuring ----------------


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err, err
    return err


def test_refuses_to_overwrite_json_without_force(tmp_path, tiny_tflite, monkeypatch, capsys):
    out = tmp_path / "bench.json"
    out.write_text("{}")
    argv = ["bench", "--source", str(tmp_path), "--model", str(tiny_tflite["int8"]), "--json", str(out)]
    assert run_cli(argv, monkeypatch) == 2
    err = _one_line_error(capsys)
    assert err == f"tla-edge bench: error: output '{out}' already exists; pass --force to overwrite it"
    assert out.read_text() == "{}"


@pytest.mark.parametrize(
    "extra,message",
    [
        (["--model", "{tmp}/nope.tflite"], r"error: model file '.*nope.tflite' not found$"),
        (["--model", "{tmp}/fake.tflite"], r"error: model file '.*fake.tflite' is not a TFLite model"),
        (["--source", "{tmp}/no_such_dir"], r"error: source '.*no_such_dir' not found; expected a camera index"),
        pytest.param(["--plot", "{tmp}/plot.txt"], r"error: --plot '.*plot.txt' has suffix '.txt'; expected .png, .svg or .pdf$",
                     marks=pytest.mark.skipif(not HAVE_MATPLOTLIB, reason="--plot needs matplotlib (the 'dev' extra)")),
        (["--detector", "huge"], r"error: unknown face detector model 'huge'; expected 'short', 'full'"),
    ],
    ids=["missing-model", "not-tflite", "missing-source", "plot-suffix", "detector"],
)
def test_bad_input_is_one_line(tmp_path, tiny_tflite, frames_dir, monkeypatch, capsys, extra, message):
    (tmp_path / "fake.tflite").write_bytes(b"GIF89a not a model")
    argv = ["bench", "--source", str(frames_dir), "--model", str(tiny_tflite["int8"]), "--frames", "2", "--quiet"]
    argv += [x.format(tmp=tmp_path) for x in extra]
    assert run_cli(argv, monkeypatch) == 2
    err = _one_line_error(capsys)
    assert err.startswith("tla-edge bench: error: ") and re.search(message, err), err


def test_plot_without_matplotlib_names_the_extra(tmp_path, tiny_tflite, monkeypatch, capsys):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "matplotlib" else real(name, *a))
    argv = ["bench", "--model", str(tiny_tflite["int8"]), "--plot", str(tmp_path / "p.png")]
    assert run_cli(argv, monkeypatch) == 2
    assert _one_line_error(capsys) == (
        "tla-edge bench: error: matplotlib is not installed; install the 'dev' extra: pip install 'tla-edge[dev]'"
    )


def test_missing_bundled_model_says_pass_model(tmp_path, monkeypatch, capsys):
    from tla_edge.runtime import assets

    monkeypatch.setattr(assets, "DEFAULT_LIVENESS_MODEL", tmp_path / "liveness.tflite")
    assert run_cli(["bench", "--frames", "1"], monkeypatch) == 2
    assert re.search(r"bundled liveness model '.*liveness.tflite' not found; reinstall tla-edge or pass --model$",
                     _one_line_error(capsys))


@pytest.mark.parametrize(
    "flag,value,expected",
    [("--frames", "0", "'0' is not >= 1"), ("--warmup", "-1", "'-1' is not >= 0"), ("--threads", "two", "'two' is not a thread count; expected an integer in [1, 64]")],
)
def test_bad_numbers_are_refused_by_the_parser(monkeypatch, capsys, flag, value, expected):
    with pytest.raises(SystemExit) as exc:
        run_cli(["bench", flag, value], monkeypatch)
    assert exc.value.code == 2
    assert f"argument {flag}: {expected}" in capsys.readouterr().err


def test_bench_never_imports_tensorflow(frames_dir, tiny_tflite, tmp_path):
    """A whole benchmark run in a fresh process leaves TensorFlow unloaded (device-side rule)."""
    import subprocess
    import sys

    argv = ["bench", "--source", str(frames_dir), "--model", str(tiny_tflite["int8"]),
            "--frames", "1", "--warmup", "0", "--quiet"]  # fmt: skip
    code = (
        "import sys; from tla_edge import cli; cli.COMMANDS = {'bench': cli.COMMANDS['bench']}; "
        f"rc = cli.main({argv!r}); print('RESULT', rc, 'tensorflow' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert "RESULT 0 False" in out.stdout, out.stderr[-2000:]


# --- benchmarks/compare.py ------------------------------------------------------------


@pytest.fixture(scope="module")
def compare_mod():
    import importlib.util

    path = Path(__file__).resolve().parents[2] / "benchmarks" / "compare.py"
    spec = importlib.util.spec_from_file_location("bench_compare", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _report(total: float = 10.0, fps: float = 100.0, ids=("m_int8/1t",)) -> dict:
    def cfg(i):
        return {
            "id": i,
            "model": {"sha256": "ab"},
            "stages": {"total": {"median": total, "p90": total * 1.2}, "invoke": {"median": 4.0}},
            "raw_invoke_ms": {"detector": {"median": 3.0}, "liveness": {"median": 4.0}},
            "overhead": total / 7.0,
            "fps": fps,
        }

    host = {"machine": "x86_64", "cpu": "cpu", "runtime": {"name": "ai-edge-litert", "version": "2.3.0"}}
    return {"format": "tla-edge-bench/1", "host": host, "configurations": [cfg(i) for i in ids]}


def test_compare_judge(compare_mod):
    assert compare_mod.judge("total", 10.0, 12.5, 0.2) == (1.25, "REGRESSION")
    assert compare_mod.judge("total", 10.0, 11.5, 0.2)[1] == "ok"
    assert compare_mod.judge("total", 10.0, 7.0, 0.2)[1] == "improved"
    assert compare_mod.judge("fps", 100.0, 70.0, 0.2)[1] == "REGRESSION"
    assert compare_mod.judge("fps", 100.0, 130.0, 0.2)[1] == "improved"
    assert compare_mod.judge("total", None, 3.0, 0.2) == (None, "n/a")


def test_compare_exit_codes(compare_mod, tmp_path, capsys):
    ref, same, slow, missing = (tmp_path / f"{n}.json" for n in ("ref", "same", "slow", "missing"))
    ref.write_text(json.dumps(_report()))
    same.write_text(json.dumps(_report(total=10.5)))
    slow.write_text(json.dumps(_report(total=15.0, fps=66.0)))
    missing.write_text(json.dumps(_report(ids=("other/1t",))))
    assert compare_mod.main([str(same), str(ref)]) == 0
    assert compare_mod.main([str(slow), str(ref)]) == 1
    out = capsys.readouterr().out
    assert re.search(r"m_int8/1t\s+total\s+10.000\s+15.000\s+1.50  REGRESSION", out)
    assert re.search(r"m_int8/1t\s+fps\s+100.000\s+66.000\s+0.66  REGRESSION", out)
    assert re.search(r"m_int8/1t\s+invoke\s+4.000\s+4.000\s+1.00  ok", out)
    assert compare_mod.main([str(slow), str(ref), "--tolerance", "0.6"]) == 0
    assert compare_mod.main([str(missing), str(ref)]) == 1
    assert "MISSING" in capsys.readouterr().out
    assert compare_mod.main([str(slow), str(ref), "--metrics", "invoke", "--stat", "median"]) == 0


def test_compare_warns_on_another_host(compare_mod, tmp_path, capsys):
    other = _report()
    other["host"]["cpu"] = "Cortex-A72"
    (tmp_path / "a.json").write_text(json.dumps(_report()))
    (tmp_path / "b.json").write_text(json.dumps(other))
    assert compare_mod.main([str(tmp_path / "b.json"), str(tmp_path / "a.json")]) == 0
    assert "warning: host cpu differs: reference 'cpu', new 'Cortex-A72'" in capsys.readouterr().err


def test_compare_real_bench_result_with_itself(compare_mod, bench_run):
    _, out = bench_run
    path = out / "bench.json"
    assert compare_mod.main([str(path), str(path), "--tolerance", "0"]) == 0


@pytest.mark.parametrize(
    "content,message",
    [
        (None, r"^compare: error: bench result '.*nope.json' not found$"),
        ("{not json", r"^compare: error: bench result '.*bad.json' is not JSON"),
        ('{"format": "tla-edge/1"}', r"has format 'tla-edge/1'; expected a 'tla-edge bench --json' result"),
    ],
    ids=["missing", "not-json", "other-format"],
)
def test_compare_bad_input(compare_mod, tmp_path, capsys, content, message):
    ref = tmp_path / "ref.json"
    ref.write_text(json.dumps(_report()))
    name = "nope.json" if content is None else "bad.json"
    if content is not None:
        (tmp_path / name).write_text(content)
    assert compare_mod.main([str(tmp_path / name), str(ref)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and re.search(message, err), err


def test_json_and_plot_on_the_same_file_is_refused(tmp_path, monkeypatch, capsys):
    pytest.importorskip("matplotlib")
    same = tmp_path / "x.png"
    assert run_cli(["bench", "--source", "samples", "--frames", "1", "--json", str(same), "--plot", str(same)],
                   monkeypatch) == 2
    assert capsys.readouterr().err.strip() == (
        f"tla-edge bench: error: --json and --plot are both '{same}'; expected different files"
    )
    assert not same.exists()


# --- model values that named nothing or a model without metadata (issue 18, item 9) ---------


@pytest.mark.parametrize("value", ["+", "++"])
def test_a_model_value_naming_no_model_is_one_line(monkeypatch, capsys, value):
    # was "not enough values to unpack (expected at least 1, got 0)"
    assert run_cli(["bench", "--model", value, "--frames", "1"], monkeypatch) == 2
    assert _one_line_error(capsys) == f"tla-edge bench: error: --model '{value}' names no model; expected M.tflite or A.tflite+B.tflite"


def test_bench_times_a_model_without_metadata_alone_and_fused(tiny_tflite, tmp_path, monkeypatch):
    # fused with a model that has metadata, it was an AttributeError traceback ('NoneType' ... 'extra');
    # alone, an error asking for a --threshold flag bench does not have
    from tla_edge.runtime import metadata

    bare = tmp_path / "no_metadata.tflite"
    bare.write_bytes(metadata.strip_embedded(tiny_tflite["int8"].read_bytes()))
    out = tmp_path / "bare.json"
    argv = ["bench", "--model", f"{tiny_tflite['float']}+{bare}", "--model", str(bare), "--frames", "1",
            "--warmup", "0", "--json", str(out), "--quiet"]
    assert run_cli(argv, monkeypatch) == 0
    configs = json.loads(out.read_text())["configurations"]
    assert [c["id"] for c in configs] == ["tiny_float+no_metadata/1t", "no_metadata/1t"]
    for c in configs:
        assert c["threshold_note"] == f"'{bare}' has no tla-edge metadata: decisions at 0.5, not meaningful"


def test_stream_overlap_script_same_decisions_both_ways_and_refuses_overwrite(frames_dir, tmp_path):
    """benchmarks/stream_overlap.py: process() vs stream() on the same frames, one JSON; never overwrites."""
    import subprocess
    import sys

    script = Path(__file__).resolve().parents[2] / "benchmarks" / "stream_overlap.py"
    out = tmp_path / "stream.json"
    args = [sys.executable, str(script), "--source", str(frames_dir), "--frames", "6", "--rounds", "2",
            "--json", str(out)]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(out.read_text())
    assert report["same_decisions"] is True and report["frames_per_round"] == 6 and report["rounds_counted"] == 1
    for way in ("process", "stream"):
        row = report[way]
        assert len(row["rounds"]) == 1 and row["ms_per_frame_median"] > 0 and row["latency_ms_median"] > 0
        assert row["fps"] == pytest.approx(1e3 / row["ms_per_frame_median"], rel=1e-3)
    assert sum(report["decisions"].values()) == 6
    before = out.read_bytes()
    proc = subprocess.run(args, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and out.read_bytes() == before
    assert proc.stderr.strip().count("\n") == 0 and "already exists" in proc.stderr
