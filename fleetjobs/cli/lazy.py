"""Verbs registered without importing them: ``fleetjobs --help`` and a read verb pay only for
the modules they use.

:data:`VERBS` names, for each subcommand, the module of :mod:`fleetjobs.cli` that defines it
(with ``@cli.command``) and the first paragraph of its help, which ``--help`` lists without
importing the module. ``tests/test_cli_lazy.py`` checks the table against the modules.
"""

from __future__ import annotations

import difflib
import importlib
from typing import Any

import click

VERBS: dict[str, tuple[str, str]] = {
    "actions": (
        "catalog",
        "List the actions the online workers offer, with their parameters (Get-Command).",
    ),
    "answer": (
        "control",
        "Answer the question JOB asks (a parent: every child asking the same question).",
    ),
    "beat": (
        "schedule",
        "Fire the fleet's schedules: each firing starts a job named after its schedule.",
    ),
    "deadletters": (
        "deadletters",
        "List the messages workers refused (not a job: bad body, bad JSON, no headers...).",
    ),
    "demo": (
        "verbs",
        "Walk through the PowerShell jobs examples on a private Redis and local workers.",
    ),
    "flower": (
        "flower",
        "Run Flower on the fleet's broker: tasks named Name@location, workers by location.",
    ),
    "get": ("verbs", "List jobs: the newest 50, or the JOBs named (Get-Job)."),
    "hosts": (
        "verbs",
        "List the hosts whose workers have heartbeated: online or not, tags, running jobs.",
    ),
    "invoke": (
        "launch",
        "Run ACTION on the hosts and print what each returns as it comes (Invoke-Command).",
    ),
    "ping": (
        "ping",
        "Is each SERVER reachable (Test-Connection)? From this machine unless --from HOST.",
    ),
    "receive": (
        "receive",
        "Print JOBs' results (Receive-Job): output on stdout, other streams on stderr.",
    ),
    "relay": (
        "relay",
        "Serve confined workers: write what they ask for their own location's jobs, and sweep.",
    ),
    "remove": (
        "verbs",
        "Remove JOBs and all they own (Remove-Job); unfinished ones only with --force.",
    ),
    "resume": ("control", "Resume suspended JOBs (Resume-Job): they go on from their checkpoint."),
    "schedule": (
        "schedule",
        "Run jobs on a schedule, fleet-wide (Register-ScheduledJob): cron, every N, or once "
        "at a time.",
    ),
    "start": (
        "launch",
        "Start ACTION with ARGS as a background job and return at once (Start-Job).",
    ),
    "stop": (
        "verbs",
        "Stop JOBs (Stop-Job): queued ones never run, running ones end, their output kept.",
    ),
    "suspend": (
        "control",
        "Suspend JOBs at their next checkpoint (Suspend-Job); resume them with resume.",
    ),
    "upgrade": (
        "upgrade",
        "Move the history indexes 0.2 kept into this version's buckets, all of them now.",
    ),
    "wait": ("verbs", "Wait for JOBs (default: every job) to finish, then print them (Wait-Job)."),
    "worker": ("verbs", "Run a worker serving LOCATIONs' queues on this host."),
}


class LazyGroup(click.Group):
    """A group whose subcommands are imported when one is used, by its name."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(VERBS) | set(self.commands))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in VERBS:
            importlib.import_module(f"{__package__}.{VERBS[cmd_name][0]}")
        return self.commands.get(cmd_name)

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        # click suggests among the verbs imported so far: none, for a verb not imported yet
        name = args[0] if args else ""
        unknown = name and not name.startswith("-") and not ctx.resilient_parsing
        if unknown and self.get_command(ctx, name) is None:
            close = difflib.get_close_matches(name, self.list_commands(ctx), n=3)
            hint = f" Did you mean {close[0]!r}?" if len(close) == 1 else ""
            hint = hint or (f" (Did you mean one of: {', '.join(close)}?)" if close else "")
            raise click.UsageError(f"No such command {name!r}.{hint}", ctx)
        return super().resolve_command(ctx, args)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # as click's own, with the help of a verb not imported taken from the table
        names = self.list_commands(ctx)
        if not names:
            return
        limit = formatter.width - 6 - max(len(n) for n in names)
        rows = []
        for name in names:
            cmd: Any = self.commands.get(name) or click.Command(name, help=VERBS[name][1])
            if cmd.hidden:
                continue
            rows.append((name, cmd.get_short_help_str(limit)))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)
