"""Config is data: YAML is read with a safe loader that refuses duplicate keys, alias bombs
and code evaluation (``__use_yte__``), on the command line and in the Snakefile alike."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import yte
from conftest import copy_project, run_snakemake

from ketastats.config import check_config_files, load_config
from ketastats.exceptions import ConfigError
from ketastats.safeyaml import MAX_EXPANDED_NODES, load_yaml
from ketastats.simulate import load_params


def _bomb(kind: str, levels: int = 9) -> str:
    """A "billion laughs" document: ``levels`` aliases deep, 9**levels values expanded."""
    if kind == "list":
        lines = ["l0: &l0 [" + ", ".join(["lol"] * 9) + "]"]
        lines += [f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 9) + "]" for i in range(1, levels)]
    else:
        lines = ["l0: &l0 {" + ", ".join(f"k{j}: lol" for j in range(9)) + "}"]
        lines += [f"l{i}: &l{i} {{" + ", ".join(f"k{j}: *l{i - 1}" for j in range(9)) + "}" for i in range(1, levels)]
    return "\n".join(lines) + "\n"


@pytest.fixture()
def shipped(project_root) -> str:
    return (project_root / "config/config.yaml").read_text()


def test_the_shipped_config_reads_the_same_as_plain_safe_load(shipped):
    import yaml

    assert load_yaml(shipped) == yaml.safe_load(shipped)


def test_a_key_twice_is_an_error_naming_both_lines(shipped, tmp_path):
    cfg = tmp_path / "config.yaml"
    n = shipped.count("\n")
    cfg.write_text(shipped + "report:\n  small_cell_threshold: 0\n")
    with pytest.raises(ConfigError) as exc:
        load_config(cfg)
    first = shipped.splitlines().index("report:") + 1
    assert f"{cfg}, line {n + 1}: the key 'report' appears twice" in str(exc.value)
    assert f"(first on line {first})" in str(exc.value)


def test_a_nested_key_twice_and_json_duplicates_are_errors():
    with pytest.raises(ConfigError, match="line 3: the key 'pdf' appears twice"):
        load_yaml("report:\n  pdf: true\n  pdf: false\n")
    with pytest.raises(ConfigError, match="the key 'report' appears twice"):
        load_yaml('{"report": {"pdf": true}, "report": {}}')


def test_merge_keys_keep_their_meaning():
    data = load_yaml("base: &b {x: 1, y: 2}\nother:\n  <<: *b\n  x: 3\n")
    assert data["other"] == {"x": 3, "y": 2}


@pytest.mark.parametrize("kind", ["list", "dict"])
def test_alias_bombs_are_refused_at_once(kind, tmp_path):
    cfg = tmp_path / "config.yaml"
    cfg.write_text(_bomb(kind))
    t0 = time.process_time()
    with pytest.raises(ConfigError, match=f"expand the document to more than {MAX_EXPANDED_NODES:,} values"):
        load_config(cfg)
    assert time.process_time() - t0 < 1.0
    # a few aliases that stay small are fine
    assert len(load_yaml(_bomb(kind, levels=3))) == 3


def test_a_self_referring_alias_is_refused():
    with pytest.raises(ConfigError, match="refers to the value that contains it"):
        load_yaml("a: &a [1, *a]\n")


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("__use_yte__: true\nx: ?open('marker', 'w')\n", "'__use_yte__' asks Snakemake to evaluate Python"),
        ("x: !!python/object/apply:os.system ['true']\n", "could not determine a constructor"),
        ("a: 1\n---\nb: 2\n", "expected a single document"),
        ("a: " + "[" * 3000 + "]" * 3000 + "\n", "not valid YAML"),
    ],
)
def test_code_tags_and_odd_documents_are_refused(text, match, tmp_path):
    with pytest.raises(ConfigError, match=match):
        load_yaml(text, source="c.yaml")
    assert not (tmp_path / "marker").exists()


def test_simulation_parameter_files_use_the_same_loader(tmp_path):
    p = tmp_path / "params.yaml"
    p.write_text("effects:\n  efficacy_multiplier_when_ill: 0.5\neffects:\n  efficacy_multiplier_when_ill: 1\n")
    with pytest.raises(ConfigError, match="the key 'effects' appears twice"):
        load_params(p)


def test_check_config_files_skips_missing_files_and_refuses_bad_ones(tmp_path):
    good, bad = tmp_path / "good.yaml", tmp_path / "bad.yaml"
    good.write_text("a: 1\n")
    bad.write_text("a: 1\na: 2\n")
    check_config_files([good, tmp_path / "absent.yaml"])
    with pytest.raises(ConfigError, match="bad.yaml, line 2"):
        check_config_files([good, bad])


# ----------------------------------------------------------------- the Snakefile
@pytest.mark.workflow
def test_the_snakefile_refuses_yte_before_snakemake_evaluates_it(project_root, tmp_path):
    """A config/config.yaml with __use_yte__ and a payload: `snakemake -n` refuses it and the
    payload (writing a marker file) never runs."""
    work = copy_project(project_root, tmp_path / "p")
    marker = tmp_path / "PAYLOAD_RAN"
    cfg = work / "config/config.yaml"
    payload = f'?__import__("pathlib").Path({json.dumps(str(marker))}).write_text("ran")'
    cfg.write_text(f"__use_yte__: true\npayload: '{payload}'\n" + cfg.read_text())
    # the payload is live: Snakemake's loader (YTE) runs it
    yte.process_yaml(cfg.read_text(), require_use_yte=True)
    assert marker.read_text() == "ran"
    marker.unlink()
    proc = run_snakemake(work, "--dry-run")
    assert proc.returncode != 0
    assert "'__use_yte__' asks Snakemake to evaluate Python" in proc.stdout + proc.stderr
    assert not marker.exists()
    assert not (work / "data").exists()


@pytest.mark.workflow
def test_the_snakefile_refuses_duplicate_keys_in_a_configfile_too(project_root, tmp_path):
    """A duplicated report: key in a --configfile is an error; Snakemake's own loader would
    silently keep the last one (here threshold 0: no suppression). (config/config.yaml goes
    through the same check_config_files call: the test above.)"""
    work = copy_project(project_root, tmp_path / "p")
    extra = tmp_path / "extra.yaml"
    extra.write_text("report:\n  pdf: false\nreport:\n  small_cell_threshold: 0\n")
    proc = run_snakemake(work, "--dry-run", "--configfile", str(extra))
    assert proc.returncode != 0
    assert f"{extra}, line 3: the key 'report' appears twice" in proc.stdout + proc.stderr
    assert not Path(work / "data").exists()
