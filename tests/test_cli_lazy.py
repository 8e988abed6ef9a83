"""The lazy verb table (fleetjobs/cli/lazy.py) says what the verbs' modules define."""

from __future__ import annotations

import importlib
import subprocess
import sys

import click

from fleetjobs.cli import cli
from fleetjobs.cli.lazy import VERBS


def test_the_table_names_every_verb_its_module_and_its_help() -> None:
    for module in sorted({m for m, _ in VERBS.values()}):
        importlib.import_module(f"fleetjobs.cli.{module}")
    assert sorted(cli.commands) == sorted(VERBS)
    for name, (module, text) in VERBS.items():
        cmd = cli.commands[name]
        assert cmd.callback is not None
        assert cmd.callback.__module__ == f"fleetjobs.cli.{module}", name
        listed = click.Command(name, help=text)
        for limit in (30, 45, 80, 200):
            assert listed.get_short_help_str(limit) == cmd.get_short_help_str(limit), name


def test_help_lists_every_verb_without_importing_redis_or_celery() -> None:
    code = (
        "import sys\n"
        "from fleetjobs.cli import run\n"
        "rc = run(['--help'])\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('redis', 'celery', 'rich')))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.rstrip().endswith("[]")
    for name in VERBS:
        assert f"\n  {name} " in done.stdout


def test_a_mistyped_verb_is_told_the_verb_it_is_near() -> None:
    # click suggested among the verbs imported so far, none of them yet: a mistyped option got
    # a suggestion, a mistyped verb did not
    def fleetjobs(*args: str) -> subprocess.CompletedProcess[str]:
        argv = [sys.executable, "-m", "fleetjobs", *args]
        return subprocess.run(argv, capture_output=True, text=True, timeout=60)

    typo = fleetjobs("strat", "-l", "web01", "echo", "hi")
    assert typo.returncode == 2 and typo.stderr.count("\n") == 1, typo.stderr
    assert "No such command 'strat'. Did you mean 'start'?" in typo.stderr
    far = fleetjobs("zzzz")
    assert far.returncode == 2 and "Did you mean" not in far.stderr, far.stderr
    # and a subgroup's own verbs as before
    assert "Did you mean 'add'?" in fleetjobs("schedule", "ad").stderr
