"""tla-edge convert's parity flags: bad values get one line, before any model is read (no TensorFlow)."""

from __future__ import annotations

import pytest

from tla_edge import cli


@pytest.mark.parametrize("argv,expected", [
    (["--parity", "lenient"], "argument --parity: invalid choice: 'lenient' (choose from 'enforce', 'report')"),
    (["--min-pearson", "2"], "argument --min-pearson: '2' is not in [-1, 1]"),
    (["--min-pearson", "nan"], "argument --min-pearson: 'nan' is not in [-1, 1]"),
    (["--min-pearson", "high"], "argument --min-pearson: 'high' is not a number"),
    (["--min-agreement", "1.5"], "argument --min-agreement: '1.5' is not in [0, 1]"),
])
def test_bad_parity_values_are_refused_by_the_parser(capsys, argv, expected):
    with pytest.raises(SystemExit) as exc:
        cli.main(["convert", "nowhere.keras", "--int8", *argv])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == f"tla-edge convert: error: {expected}"


def test_allow_degraded_contradicting_enforce_is_one_line(capsys, tmp_path):
    missing = tmp_path / "nowhere.keras"  # refused before the model is looked for
    assert cli.main(["convert", str(missing), "--int8", "--parity", "enforce", "--allow-degraded"]) == 2
    err = capsys.readouterr().err
    assert err == ("tla-edge convert: error: --allow-degraded (the same as --parity report) contradicts "
                   "--parity enforce; expected one of them\n")


def test_min_score_std_below_zero_is_one_line(capsys, tmp_path):
    assert cli.main(["convert", str(tmp_path / "nowhere.keras"), "--int8", "--min-score-std", "-1"]) == 2
    assert capsys.readouterr().err == ("tla-edge convert: error: parity criteria out of range: min_score_std "
                                       "-1.0 (expected >= 0)\n")


def test_help_names_both_parity_modes(capsys):
    with pytest.raises(SystemExit):
        cli.main(["convert", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "--parity {enforce,report}" in out and "the same as --parity report" in out
    assert "95% Wilson interval" in out
