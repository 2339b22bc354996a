"""fileio: the one check of output paths against inputs and each other, and text with non-UTF-8 names."""

from __future__ import annotations

import os

import pytest

from tla_edge import fileio
from tla_edge.errors import UserError


def test_an_output_that_is_an_input_is_refused_even_with_force(tmp_path):
    model = tmp_path / "m.tflite"
    model.write_bytes(b"x")
    with pytest.raises(UserError, match=rf"^--report '{model}' is the input --model; expected a path that is not an input"):
        fileio.check_outputs({"--out": tmp_path / "new.tflite", "--report": model}, {"--model": model}, force=True)
    # another spelling of the same file, and a hard link, are the same file
    os.link(model, tmp_path / "link.tflite")
    for alias in (tmp_path / "sub" / ".." / "m.tflite", tmp_path / "link.tflite"):
        (tmp_path / "sub").mkdir(exist_ok=True)
        with pytest.raises(UserError, match=r"is the input --model"):
            fileio.check_outputs({"--report": alias}, [("--model", model)], force=True)
    assert model.read_bytes() == b"x"


def test_two_outputs_naming_one_file_are_refused(tmp_path):
    x = tmp_path / "x.json"
    with pytest.raises(UserError, match=rf"^--out and --report are both '{x}'; expected different files$"):
        fileio.check_outputs({"--out": x, "--report": tmp_path / "." / "x.json"}, force=True)
    assert not x.exists()
    fileio.check_outputs({"--out": x, "--report": None, "--json": tmp_path / "y.json"}, {"DATA": None})


def test_text_naming_a_file_that_is_not_utf8_is_written(tmp_path):
    # `evaluate --raw` lost all its work at the end on such a name (UnicodeEncodeError in scores.csv)
    name = os.fsdecode(b"caf\xe9.jpg")
    out = fileio.write_text_atomic(tmp_path / "scores.csv", f"source\n{name}\n")
    assert out.read_bytes() == b"source\ncaf\xe9.jpg\n"
    assert fileio.write_text_atomic(tmp_path / "odd.txt", "\ud800").read_bytes() == b"\\ud800"
