"""A CLI people can read: commands grouped in the order one meets them, every option
explained, examples in every command's help."""

from __future__ import annotations

import argparse

import pytest

from poller.cli import GROUPS, build_parser
from tests.cli.conftest import run


def _subcommands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    [sub] = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(sub.choices)


def test_help_lists_the_commands_grouped_in_a_sensible_order() -> None:
    done = run("--help")
    assert done.returncode == 0, done.stderr
    out = done.stdout
    headers = [f"  {group}:" for group, _names in GROUPS]
    positions = [out.index(h + "\n") for h in headers]
    assert positions == sorted(positions)
    assert [g for g, _n in GROUPS] == ["set up", "run", "inspect", "deliveries", "tools"]
    listed = [name for _g, names in GROUPS for name in names]
    assert sorted(listed) == sorted(_subcommands())  # every command, in one group
    for name in listed:
        assert f"\n    {name} " in out
    order = [out.index(f"\n    {name} ") for name in listed]
    assert order == sorted(order)


@pytest.mark.parametrize("name", sorted(_subcommands()))
def test_every_option_has_help_and_every_command_examples(name: str) -> None:
    parser = _subcommands()[name]
    missing = [
        "/".join(a.option_strings) or a.dest
        for a in parser._actions
        if not isinstance(a, argparse._HelpAction) and not (a.help and a.help.strip())
    ]
    assert missing == [], f"{name}: options without help: {missing}"
    assert parser.epilog and parser.epilog.startswith("examples:\n  bcx-poller"), name


def test_a_command_help_shows_its_examples() -> None:
    done = run("backfill", "--help")
    assert done.returncode == 0
    assert "examples:" in done.stdout and "backfill --since 2d --dry-run" in done.stdout
