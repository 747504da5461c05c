"""Every `--help` of the refmesh CLI works with no environment at all: no API token, keystore,
directory or settings file (issue 14, item 7). The command tree is walked, so a command added
later is covered too."""
from __future__ import annotations

import os

import click
import pytest
from click.testing import CliRunner

from cli import cli


def commands(group: click.Group = cli, path: tuple[str, ...] = ()):
    """(path, command) of every command and group under ``group``, the group itself first."""
    yield path, group
    if isinstance(group, click.Group):
        for name in sorted(group.commands):
            yield from commands(group.commands[name], (*path, name))


ALL = sorted(commands(), key=lambda pc: pc[0])


def test_the_tree_is_walked() -> None:
    paths = {" ".join(p) for p, _ in ALL}
    assert {"", "refer send", "consent record", "gateway run", "seal", "users"} <= paths
    assert len(ALL) > 30


@pytest.mark.parametrize("path", [p for p, _ in ALL], ids=lambda p: " ".join(p) or "refmesh")
def test_help_needs_no_environment(path: tuple[str, ...], monkeypatch) -> None:
    for name in list(os.environ):  # nothing: not even HOME or PATH
        monkeypatch.delenv(name)
    result = CliRunner().invoke(cli, [*path, "--help"], prog_name="refmesh")
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"Usage: {' '.join(('refmesh', *path))} "), result.output


def test_a_gateway_command_without_a_token_says_which_variable(monkeypatch) -> None:
    monkeypatch.delenv("REFMESH_API_TOKEN", raising=False)
    result = CliRunner().invoke(cli, ["refer", "inbox"], prog_name="refmesh")
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [
        "error: set your gateway's API token in the environment variable REFMESH_API_TOKEN; "
        "see 'refmesh refer inbox --help'"]
