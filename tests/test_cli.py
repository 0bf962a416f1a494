from __future__ import annotations

import json

import pytest

from gexplain.cli import COMMANDS, main
from gexplain.cli._common import parse_int_list


def test_version_and_help(cli):
    r = cli.invoke(main, ["--version"])
    assert r.exit_code == 0 and "0.1.0" in r.output
    r = cli.invoke(main, ["--help"])
    assert r.exit_code == 0
    for name in COMMANDS:
        assert name in r.output


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_subcommand_has_help_with_examples(cli, name):
    r = cli.invoke(main, [name, "--help"])
    assert r.exit_code == 0, r.output
    assert "Example" in r.output
    # every command takes --quiet (groups: their subcommands do)
    cmd = main.get_command(None, name)
    subs = list(cmd.commands.values()) if hasattr(cmd, "commands") else [cmd]
    for sub in subs:
        assert any("--quiet" in p.opts for p in sub.params), f"{name} {sub.name} lacks --quiet"


def test_info_text_and_json(cli, tmp_path, small_cohort):
    small_cohort.save(tmp_path / "c")
    r = cli.invoke(main, ["info", str(tmp_path / "c")])
    assert r.exit_code == 0
    assert "samples     12" in r.output and "C1" in r.output
    r = cli.invoke(main, ["info", str(tmp_path / "c"), "--json"])
    data = json.loads(r.output)
    assert data["n_genes"] == 7 and data["classes"] == {"C0": 4, "C1": 4, "C2": 4}


def test_info_on_a_non_cohort_is_a_clear_error(cli, tmp_path):
    r = cli.invoke(main, ["info", str(tmp_path)])
    assert r.exit_code == 1
    assert "not a cohort folder: samples.parquet is missing" in r.output


def test_parse_int_list():
    assert parse_int_list("0-3") == [0, 1, 2, 3]
    assert parse_int_list("1,4,6-7") == [1, 4, 6, 7]
    import click

    with pytest.raises(click.BadParameter):
        parse_int_list("a-b")
