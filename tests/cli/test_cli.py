"""The command line as a whole: help, the weight of imports, one-line errors."""

import subprocess
import sys

import pytest

from tla_edge import cli

RUNTIME_MODULES = [
    "tla_edge",
    "tla_edge.cli",
    "tla_edge.runtime.faces",
    "tla_edge.runtime.preprocess",
    "tla_edge.runtime.interpreter",
    "tla_edge.runtime.pipeline",
    "tla_edge.runtime.sources",
    "tla_edge.cli.demo",
    "tla_edge.cli.bench",
    "tla_edge.cli.info",
    "tla_edge.runtime.modelinfo",
    "tla_edge.metrics",
]


def test_runtime_modules_never_import_tensorflow():
    # A Raspberry Pi installs the runtime extra only: none of these may pull in
    # TensorFlow or Keras, even when they are installed (as here).
    code = (
        "import importlib, sys\n"
        f"for m in {RUNTIME_MODULES!r}: importlib.import_module(m)\n"
        "from tla_edge import cli; cli.build_parser()\n"
        "heavy = sorted(m for m in ('tensorflow', 'keras', 'tf_keras') if m in sys.modules)\n"
        "print(','.join(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_every_subcommand_has_help(capsys):
    for name in cli.COMMANDS:
        with pytest.raises(SystemExit) as exc:
            cli.main([name, "--help"])
        assert exc.value.code == 0
        assert "usage: tla-edge " + name in capsys.readouterr().out


def test_unknown_subcommand_exits_non_zero(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["frobnicate"])
    assert exc.value.code == 2


def test_missing_model_is_one_line(tmp_path, capsys):
    rc = cli.main(["info", str(tmp_path / "missing.tflite")])
    err = capsys.readouterr().err.strip()
    assert rc == 2
    assert err.count("\n") == 0 and "Traceback" not in err
    assert "missing.tflite" in err and "not found" in err


def test_console_script_reports_a_user_error_in_one_line(tmp_path):
    bad = tmp_path / "model.tflite"
    bad.write_text("not a model")
    out = subprocess.run(
        [sys.executable, "-m", "tla_edge.cli", "info", str(bad)], capture_output=True, text=True
    )
    assert out.returncode == 2
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("tla-edge info: error:"), out.stderr
    assert "is not a TFLite model" in lines[0]


@pytest.mark.parametrize("argv", [["info", "short"], ["bench", "--source", "samples", "--frames", "1"]])
def test_closed_stdout_is_one_line_exit_2(argv):
    # the shell's ">&-": fd 1 is closed before Python starts, so sys.stdout is None
    code = "import sys; from tla_edge import cli; sys.exit(cli.main(sys.argv[1:]))"
    r = subprocess.run([sys.executable, "-c", code, *argv], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                       text=True, timeout=120, pass_fds=(), preexec_fn=lambda: __import__("os").close(1))
    assert r.returncode == 2, r.stderr
    lines = [line for line in r.stderr.splitlines() if line.startswith("tla-edge")]
    assert lines == [f"tla-edge {argv[0]}: error: standard output is closed; expected somewhere to write the "
                     "results (redirect it to a file, or to /dev/null to discard them)"]
    assert "Traceback" not in r.stderr


# --- thread counts (issue 18, item 8) -------------------------------------------

THREAD_FLAGS = [("bench", "--threads"), ("demo", "--threads"), ("evaluate", "--num-threads"),
                ("calibrate", "--num-threads")]


@pytest.mark.parametrize("command,flag", THREAD_FLAGS)
@pytest.mark.parametrize("value", ["0", "65", "30000", "2147483648", "two"])
def test_thread_flags_are_bounded_1_to_64(capsys, command, flag, value):
    # 30000 made LiteRT segfault without a word and 2**31 raised a traceback.
    extra = [] if command in ("bench", "demo") else ["data"]
    with pytest.raises(SystemExit) as exc:
        cli.main([command, *extra, flag, value])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert f"argument {flag}: '{value}' is not a thread count; expected an integer in [1, 64]" in err


def test_thread_type_accepts_the_range_ends():
    from tla_edge.cli import argtypes

    assert (argtypes.threads("1"), argtypes.threads("64")) == (1, 64)


# --- outputs that are inputs or each other (issue 18, item 5) ----------------------------

SAME_PATH_CASES = [
    # calibrate --report M.tflite --force wrote JSON over the input model, then said it was unchanged
    (["calibrate", "data", "--model", "m.tflite", "--out", "new.tflite", "--report", "m.tflite", "--force"],
     "--report 'm.tflite' is the input --model"),
    (["calibrate", "data", "--model", "m.tflite", "--out", "m.tflite.json", "--force"],
     "--out 'm.tflite.json' is the input --model's sidecar"),
    (["calibrate", "data", "--model", "m.tflite", "--out", "x.tflite", "--report", "x.tflite"],
     "--out and --report are both 'x.tflite'; expected different files"),
    (["evaluate", "data", "--raw", "--model", "m.tflite", "--out", "data"], "--out 'data' is the input DATA"),
    (["bench", "--model", "m.tflite", "--json", "m.tflite", "--force"], "--json 'm.tflite' is the input --model"),
    (["demo", "--source", "m.tflite", "--output", "m.tflite", "--headless"], "--output 'm.tflite' is the input --source"),
    (["record", "--source", "data", "--out", "data", "--label", "real", "--headless"], "--out 'data' is the input --source"),
]


@pytest.mark.parametrize("argv,expected", SAME_PATH_CASES, ids=lambda v: v[0] if isinstance(v, list) else "")
def test_no_command_writes_over_an_input_or_twice_into_one_file(tmp_path, monkeypatch, capsys, argv, expected):
    import shutil

    from conftest import FIXTURES

    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    shutil.copy(FIXTURES / "tiny_int8.tflite", "m.tflite")
    shutil.copy(FIXTURES / "tiny_int8.tflite.json", "m.tflite.json")
    before = {p.name: p.read_bytes() for p in tmp_path.glob("m.*")}
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"tla-edge {argv[0]}: error: {expected}") and "\n" not in err
    assert {p.name: p.read_bytes() for p in tmp_path.glob("m.*")} == before
    assert not (tmp_path / "x.tflite").exists()
