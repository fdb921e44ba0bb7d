"""config/README.md is the configuration reference generated from the schema, and complete."""

from __future__ import annotations

import yaml

from ketastats.cli import main
from ketastats.config import schema
from ketastats.configdoc import COMMAND, schema_markdown, undocumented


def test_config_readme_is_generated_from_the_schema(project_root):
    readme = project_root / "config/README.md"
    assert readme.exists(), f"config/README.md is missing; generate it: {COMMAND}"
    assert readme.read_text(encoding="utf-8") == schema_markdown(), (
        f"config/README.md is out of date with the config schema; regenerate it: {COMMAND}"
    )


def test_every_key_of_the_schema_has_a_description():
    assert undocumented() == [], (
        "these config keys have no description in src/ketastats/data/config.schema.yaml "
        f"(config/README.md is made from them): {', '.join(undocumented())}"
    )


def test_undocumented_finds_a_key_without_description():
    sch = schema()
    del sch["properties"]["report"]["properties"]["pdf"]["description"]
    del sch["$defs"]["model_spec"]["properties"]["kind"]["description"]
    assert undocumented(sch) == ["report.pdf", "$defs.model_spec.kind"]


def test_reference_lists_every_key_with_its_default(project_root):
    text = schema_markdown()
    sch = schema()
    for key in sch["properties"]:
        assert f"\n## {key}\n" in text, key
    for key in sch["$defs"]["model_spec"]["properties"]:
        assert f"| `{key}` |" in text, key
    # literal defaults from the schema, kind defaults from ketastats.models.specs
    assert "| `pdf` | string or boolean |  | `auto` | `auto`, `true`, `false` |" in text
    assert "- `tipping_point`: " in text and "`deltas: [-12, -10," in text
    assert "[`config/config.yaml`](config.yaml)" in text


def test_shipped_config_uses_only_documented_keys(project_root):
    """Every key the example config sets has a row in the reference."""
    cfg = yaml.safe_load((project_root / "config/config.yaml").read_text())
    text = schema_markdown()
    keys = set(cfg["report"]) | set(cfg["estimands"]) | {k for m in cfg["models"].values() for k in m}
    keys |= {k for c in cfg["cohorts"].values() for k in c} | {k for r in cfg["recovery"].values() for k in r}
    missing = sorted(k for k in keys if f"| `{k}` |" not in text)
    assert not missing, missing


def test_cli_config_doc_prints_the_reference(capsys):
    assert main(["config-doc"]) == 0
    assert capsys.readouterr().out == schema_markdown()
