"""The ketastats console script."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from ketastats.cli import main


def test_console_script_help_lists_subcommands():
    exe = shutil.which("ketastats") or shutil.which(
        "ketastats", path=str(__import__("pathlib").Path(sys.executable).parent)
    )
    assert exe, "the ketastats console script is not installed (pip install -e .)"
    out = subprocess.run([exe, "--help"], capture_output=True, text=True, check=True).stdout
    for sub in ("simulate", "validate", "fit", "report"):
        assert sub in out


@pytest.mark.parametrize("sub", ["simulate", "validate", "fit", "report"])
def test_subcommand_help(sub, capsys):
    with pytest.raises(SystemExit) as exc:
        main([sub, "--help"])
    assert exc.value.code == 0
    assert "usage: ketastats " + sub in capsys.readouterr().out


def test_fit_drops_rows_with_missing_outcome(data_dir, tmp_path):
    out = tmp_path / "fit.json"
    assert (
        main(
            [
                "fit",
                str(data_dir / "btheb_long.csv"),
                "--formula",
                "bdi ~ time",
                "--group",
                "id",
                "--engine",
                "statsmodels",
                "--json",
                str(out),
            ]
        )
        == 0
    )
    res = json.loads(out.read_text())
    import pandas as pd

    df = pd.read_csv(data_dir / "btheb_long.csv")
    assert res["nobs"] == int(df["bdi"].notna().sum()) == 280
    assert res["ngroups"] == 97


def test_fit_reads_parquet(data_dir, tmp_path):
    import pandas as pd

    pq = tmp_path / "sleep.parquet"
    pd.read_csv(data_dir / "sleepstudy.csv").to_parquet(pq)
    out = tmp_path / "fit.json"
    assert (
        main(["fit", str(pq), "--formula", "Reaction ~ Days", "--group", "Subject", "--json", str(out)]) == 0
    )
    assert json.loads(out.read_text())["nobs"] == 180


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--formula", "Reaction ~ Nope", "--group", "Subject"], "Nope"),
        (
            ["--formula", "Reaction ~ Days", "--group", "Patient"],
            "grouping column 'Patient' is not in the data",
        ),
        (["--formula", "Reaction ~ Days", "--group", "Subject", "--reference", "Days"], "COLUMN=LEVEL"),
    ],
)
def test_fit_errors_are_for_people(argv, message, data_dir, tmp_path, capsys):
    code = main(["fit", str(data_dir / "sleepstudy.csv"), *argv, "--json", str(tmp_path / "x.json")])
    assert code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "x.json").exists()


@pytest.mark.parametrize(
    "where", ["input", "data/raw/site/p.csv", "data/processed/site/p.csv", "reports/site/p.csv"]
)
def test_validate_refuses_a_problems_table_over_the_input_or_among_data_and_outputs(
    where, tmp_path, monkeypatch
):
    """`ketastats validate F --problems F` once overwrote the raw input with the problems table."""
    monkeypatch.chdir(tmp_path)
    raw = tmp_path / "data/raw/site/export.csv"
    raw.parent.mkdir(parents=True)
    raw.write_text("patient_id,session,day,madrs\nP01,1,0,31\n")
    before = raw.read_bytes()
    target = raw if where == "input" else tmp_path / where
    assert main(["validate", str(raw.relative_to(tmp_path)), "--problems", str(target)]) != 0
    assert raw.read_bytes() == before
    if where != "input":
        assert not target.exists()
    # elsewhere is fine
    assert main(["validate", str(raw.relative_to(tmp_path)), "--problems", "logs/problems.csv"]) in (0, 1)
    assert (tmp_path / "logs/problems.csv").exists()


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("empty.csv", b"", "is empty"),
        ("header.csv", b"y,x,g\n", "has a header but no data rows"),
        ("binary.csv", bytes(range(128, 256)) * 8, "is not UTF-8 text"),
        ("garbage.parquet", b"PAR1 not really parquet", "cannot read"),
        ("words.csv", b"y,x,g\nabc,1,a\ndef,2,b\nghi,3,a\n", "the outcome of 'y ~ x' is not a number"),
        ("folder.csv", None, "is a folder"),
    ],
)
def test_fit_on_empty_or_garbage_files_says_what_is_wrong(name, content, message, tmp_path, capsys):
    path = tmp_path / name
    if content is None:
        path.mkdir()
    else:
        path.write_bytes(content)
    code = main(["fit", str(path), "--formula", "y ~ x", "--group", "g", "--json", str(tmp_path / "x.json")])
    assert code == 2
    err = capsys.readouterr().err
    assert message in err and str(path) in err
    assert "Traceback" not in err
    assert not (tmp_path / "x.json").exists()



def test_decision_recovery_scores_the_chosen_estimators(tmp_path):
    import pandas as pd

    argv = ["recovery", "--scenario", "decisions", "--model", "decision", "--replicates", "2", "--patients", "400",
            "--seed", "4"]
    assert main([*argv, "--variants", "aipw", "--out", str(tmp_path / "a")]) == 0
    summary = pd.read_csv(tmp_path / "a" / "summary.csv")
    assert sorted(zip(summary["decision"], summary["outcome"], strict=True)) == [
        ("postpone", "end"), ("postpone", "next"), ("reduced_dose", "end"), ("reduced_dose", "next")]
    assert set(summary["variant"]) == {"aipw"} and (summary["replicates"] == 2).all()
    rows = pd.read_csv(tmp_path / "a" / "replicates.csv", keep_default_na=False)
    assert len(rows) == 8 and {"skipped", "n_treated", "truth"} <= set(rows.columns)
    assert main([*argv, "--variants", "nope", "--out", str(tmp_path / "b")]) != 0
