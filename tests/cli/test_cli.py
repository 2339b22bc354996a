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
