"""The command line: serve, jobs, migrate, token, query, demo, detect-changes."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from service.config import ConfigError, Settings
from service.entrypoints import detect_changes, workers
from service.entrypoints.runtime import migrate_database


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m service", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    serve = commands.add_parser(
        "serve", help="one node: Socket.IO and the APIs, on N processes sharing the port")
    workers.add_arguments(serve)
    commands.add_parser("jobs", help="the scheduler")
    commands.add_parser("migrate", help="bring the database's schema to the newest revision")
    token = commands.add_parser("token", help="print a signed user token for each id, one per line")
    token.add_argument("user_ids", nargs="+", metavar="USER_ID")
    query = commands.add_parser("query", help="run an InfluxQL query and print a table")
    query.add_argument("influxql")
    demo = commands.add_parser("demo", help="publish demo notifications to a few demo users")
    demo.add_argument("--rate", type=float, default=5.0, help="notifications per second")
    demo.add_argument("--users", default="alice,bob,carol")
    changes = commands.add_parser(
        "detect-changes", help="find change points in a CSV of time,value; print them as JSON",
        description=detect_changes.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    detect_changes.add_arguments(changes)
    args = parser.parse_args(argv)
    if args.command == "detect-changes":  # needs no settings
        return detect_changes.run(args)

    try:
        settings = Settings.from_env()
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2

    if args.command == "migrate":  # serve and jobs do it first too
        return migrate_database(settings, starting=False)
    if args.command == "serve":
        return workers.run_serve(settings, args)
    if args.command == "jobs":
        from service.entrypoints.jobs import run_jobs

        return run_jobs(settings)
    if args.command == "token":
        return _tokens(settings, args.user_ids)
    if args.command == "query":
        from service.entrypoints.query import run_query

        return run_query(settings, args.influxql)
    if args.command == "demo":
        from service.entrypoints.demo import run_demo

        return run_demo(settings, rate=args.rate, users=args.users.split(","))
    return 2  # pragma: no cover - argparse rejects other commands


def _tokens(settings: Settings, user_ids: list[str]) -> int:
    from service.adapters.tokens import UserTokens
    from service.domain.errors import InvalidInput

    tokens = UserTokens(settings.user_token_secret, settings.user_token_ttl)
    try:
        lines = [tokens.issue(user_id) for user_id in user_ids]
    except InvalidInput as exc:
        print(f"invalid user id: {exc.message}", file=sys.stderr)
        return 2
    print("\n".join(lines))
    return 0
