"""A stand-in for InfluxDB 2.7's ``influx`` CLI and the server behind it, for
running provisioning/influxdb/*.sh where there is no InfluxDB 2.x.

``install(directory, state)`` puts an executable ``influx`` in ``directory``
that keeps the server's state in ``state.json`` and records each call's argv
in ``calls.jsonl``. It answers the commands the set-up script uses, with the
flags the real CLI (influx-cli v2.7.5) accepts, printing what it prints
(tab-padded tables, ``--hide-headers``), and it behaves as the server does
where it matters:

- ``v1 dbrp create`` ignores ``--default``: the CLI parses the flag but never
  puts it in the request (clients/v1_dbrps/v1_dbrps.go, Create). The server
  makes a new mapping the default only when its database has none yet
  (influxdb dbrp/service.go, Create).
- ``v1 dbrp update --default`` moves the default (dbrp/service.go, Update).
- Every bucket has a virtual mapping ``<bucket>/autogen``, the default only
  while no physical mapping points at that bucket (dbrp/service.go, FindMany).
- ``bucket list --name`` of an unknown bucket fails (404 from the API).
"""

from __future__ import annotations

import json
import math
import os
import stat
import sys
from pathlib import Path

ORG = "notify"
ORG_ID = "0a0000000000000f"
USER_ID = "0a000000000000ee"

FLAGS: dict[tuple[str, ...], set[str]] = {
    ("bucket", "list"): {"--org", "--name", "--id", "--hide-headers", "--json"},
    ("bucket", "create"): {"--org", "--name", "--retention", "--description",
                           "--hide-headers", "--json"},
    ("v1", "dbrp", "list"): {"--org", "--db", "--rp", "--default", "--bucket-id", "--id",
                             "--hide-headers", "--json"},
    ("v1", "dbrp", "create"): {"--org", "--db", "--rp", "--bucket-id", "--default",
                               "--hide-headers", "--json"},
    ("v1", "dbrp", "update"): {"--org", "--id", "--rp", "--default", "--hide-headers", "--json"},
    ("v1", "auth", "list"): {"--org", "--username", "--id", "--user", "--hide-headers", "--json"},
    ("v1", "auth", "delete"): {"--id", "--username", "--hide-headers", "--json"},
    ("v1", "auth", "create"): {"--org", "--username", "--password", "--no-password",
                               "--read-bucket", "--write-bucket", "--description",
                               "--hide-headers", "--json"},
}
BOOLEAN = {"--hide-headers", "--json", "--default", "--no-password"}
REPEATED = {"--read-bucket", "--write-bucket"}


class CliError(Exception):
    pass


# --------------------------------------------------------------------------
# The server's state


def new_state(*bucket_names: str) -> dict:
    state = {"next": 1, "buckets": [], "dbrps": [], "auths": []}
    for name in bucket_names:
        add_bucket(state, name, "7d")
    return state


def _new_id(state: dict) -> str:
    state["next"] += 1
    return f"{0x0a00000000000000 + state['next']:016x}"


def add_bucket(state: dict, name: str, retention: str) -> dict:
    if any(b["name"] == name for b in state["buckets"]):
        raise CliError(f'failed to create bucket: bucket with name {name} already exists')
    bucket = {"id": _new_id(state), "name": name, "retention": retention}
    state["buckets"].append(bucket)
    return bucket


def bucket_named(state: dict, name: str) -> dict | None:
    return next((b for b in state["buckets"] if b["name"] == name), None)


def mappings(state: dict) -> list[dict]:
    """Physical mappings, then virtual ones, as FindMany returns them."""
    physical = [dict(m, virtual=False) for m in state["dbrps"]]
    virtual = []
    for bucket in state["buckets"]:
        db, _, rp = bucket["name"].partition("/")
        overridden = any(m["bucket_id"] == bucket["id"] for m in physical)
        virtual.append({"id": bucket["id"], "db": db, "rp": rp or "autogen",
                        "bucket_id": bucket["id"], "default": not overridden, "virtual": True})
    return physical + virtual


def default_rps(state: dict, db: str) -> list[str]:
    """Every mapping of ``db`` that InfluxDB reports as a default."""
    return [m["rp"] for m in mappings(state) if m["db"] == db and m["default"]]


def create_dbrp(state: dict, db: str, rp: str, bucket_id: str) -> dict:
    if not any(b["id"] == bucket_id for b in state["buckets"]):
        raise CliError(f'failed to create dbrp for bucket "{bucket_id}": bucket not found')
    if any(m["db"] == db and m["rp"] == rp for m in state["dbrps"]):
        raise CliError(f'failed to create dbrp for bucket "{bucket_id}": another DBRP mapping '
                       "with same orgID, db, and rp exists")
    has_default = any(m["db"] == db and m["default"] for m in state["dbrps"])
    mapping = {"id": _new_id(state), "db": db, "rp": rp, "bucket_id": bucket_id,
               "default": not has_default}
    state["dbrps"].append(mapping)
    return mapping


# --------------------------------------------------------------------------
# Output as the CLI prints it


def _table(headers: list[str], rows: list[list[str]], hide_headers: bool) -> str:
    """Go's text/tabwriter with minwidth 0, tabwidth 8, padding 1, padchar '\\t'."""
    lines = ([] if hide_headers else [headers]) + rows
    if not lines:
        return ""
    # each column is as wide as its widest cell plus 1, rounded up to a tab stop
    widths = [math.ceil((max(len(line[i]) for line in lines) + 1) / 8) * 8
              for i in range(len(headers))]
    out = []
    for line in lines:
        cells = []
        for i, cell in enumerate(line[:-1]):
            cells.append(cell + "\t" * max(1, math.ceil((widths[i] - len(cell)) / 8)))
        out.append("".join(cells) + line[-1])
    return "\n".join(out) + "\n"


def _bucket_rows(buckets: list[dict]) -> list[list[str]]:
    return [[b["id"], b["name"], b["retention"], "24h0m0s", ORG_ID, "implicit"] for b in buckets]


BUCKET_HEADERS = ["ID", "Name", "Retention", "Shard group duration", "Organization ID",
                  "Schema Type"]
DBRP_HEADERS = ["ID", "Database", "Bucket ID", "Retention Policy", "Default", "Virtual",
                "Organization ID"]
AUTH_HEADERS = ["ID", "Description", "Username", "v2 User Name", "v2 User ID", "Permissions"]


def _dbrp_rows(found: list[dict]) -> list[list[str]]:
    return [[m["id"], m["db"], m["bucket_id"], m["rp"], str(m["default"]).lower(),
             str(m.get("virtual", False)).lower(), ORG_ID] for m in found]


def _auth_rows(auths: list[dict]) -> list[list[str]]:
    return [[a["id"], a["description"], a["username"], "admin", USER_ID,
             "[" + " ".join([f"read:orgs/{ORG_ID}/buckets/{b}" for b in a["read"]]
                            + [f"write:orgs/{ORG_ID}/buckets/{b}" for b in a["write"]]) + "]"]
            for a in auths]


# --------------------------------------------------------------------------
# Commands


def parse(argv: list[str]) -> tuple[tuple[str, ...], dict]:
    for size in (3, 2):
        command = tuple(argv[:size])
        if command in FLAGS:
            break
    else:
        raise CliError(f"stub influx: unknown command {argv[:3]}")
    options: dict = {}
    rest = argv[len(command):]
    while rest:
        flag = rest.pop(0)
        if flag not in FLAGS[command]:
            raise CliError(f"flag provided but not defined: {flag}")
        if flag in BOOLEAN:
            options[flag] = True
        elif not rest:
            raise CliError(f"flag needs an argument: {flag}")
        elif flag in REPEATED:
            options.setdefault(flag, []).append(rest.pop(0))
        else:
            options[flag] = rest.pop(0)
    if options.get("--org", ORG) != ORG:
        raise CliError(f'failed to find org "{options["--org"]}"')
    return command, options


def run(state: dict, argv: list[str]) -> str:
    command, opts = parse(argv)
    hide = bool(opts.get("--hide-headers"))
    if command == ("bucket", "list"):
        found = state["buckets"]
        if "--name" in opts:
            found = [b for b in found if b["name"] == opts["--name"]]
            if not found:
                raise CliError(f'failed to find bucket by name: "{opts["--name"]}" not found')
        return _table(BUCKET_HEADERS, _bucket_rows(found), hide)
    if command == ("bucket", "create"):
        bucket = add_bucket(state, opts["--name"], opts.get("--retention", "0s"))
        return _table(BUCKET_HEADERS, _bucket_rows([bucket]), hide)
    if command == ("v1", "dbrp", "list"):
        found = [m for m in mappings(state)
                 if m["db"] == opts.get("--db", m["db"]) and m["rp"] == opts.get("--rp", m["rp"])
                 and (not opts.get("--default") or m["default"])]
        physical = [m for m in found if not m["virtual"]]
        virtual = [m for m in found if m["virtual"]]
        return (_table(DBRP_HEADERS, _dbrp_rows(physical), hide)
                + "\nVIRTUAL DBRP MAPPINGS (READ-ONLY)\n----------------------------------\n"
                + _table(DBRP_HEADERS, _dbrp_rows(virtual), hide))
    if command == ("v1", "dbrp", "create"):
        # --default is parsed and dropped, as by the real CLI
        mapping = create_dbrp(state, opts["--db"], opts["--rp"], opts["--bucket-id"])
        return _table(DBRP_HEADERS, _dbrp_rows([mapping]), hide)
    if command == ("v1", "dbrp", "update"):
        [mapping] = [m for m in state["dbrps"] if m["id"] == opts["--id"]] or [None]
        if mapping is None:
            raise CliError(f'failed to update DBRP mapping "{opts["--id"]}": not found')
        if opts.get("--default"):
            for other in state["dbrps"]:
                if other["db"] == mapping["db"]:
                    other["default"] = other is mapping
        return _table(DBRP_HEADERS, _dbrp_rows([mapping]), hide)
    if command == ("v1", "auth", "list"):
        found = [a for a in state["auths"]
                 if a["username"] == opts.get("--username", a["username"])
                 and a["id"] == opts.get("--id", a["id"])]
        return _table(AUTH_HEADERS, _auth_rows(found), hide)
    if command == ("v1", "auth", "delete"):
        found = [a for a in state["auths"] if a["id"] == opts.get("--id")
                 or a["username"] == opts.get("--username")]
        if not found:
            raise CliError("could not find v1 auth")
        state["auths"] = [a for a in state["auths"] if a not in found]
        return _table(AUTH_HEADERS + ["Deleted"], [r + ["true"] for r in _auth_rows(found)], hide)
    if command == ("v1", "auth", "create"):
        username = opts["--username"]
        if any(a["username"] == username for a in state["auths"]):
            raise CliError("failed to create new authorization: token already exists")
        password = opts.get("--password", "")
        if not password or len(password) < 8:
            raise CliError(f'failed to set password for "{username}": password is too short')
        ids = {b["id"] for b in state["buckets"]}
        for bucket in opts.get("--read-bucket", []) + opts.get("--write-bucket", []):
            if bucket not in ids:
                raise CliError(f"invalid bucket ID '{bucket}'")
        auth = {"id": _new_id(state), "username": username, "password": password,
                "description": opts.get("--description", ""),
                "read": opts.get("--read-bucket", []), "write": opts.get("--write-bucket", [])}
        state["auths"].append(auth)
        return _table(AUTH_HEADERS, _auth_rows([auth]), hide)
    raise CliError(f"stub influx: {command} not implemented")


def main() -> int:
    home = Path(os.environ["INFLUX_STUB_DIR"])
    argv = sys.argv[1:]
    with (home / "calls.jsonl").open("a") as fh:
        fh.write(json.dumps(argv) + "\n")
    state = json.loads((home / "state.json").read_text())
    try:
        out = run(state, argv)
    except (CliError, KeyError) as exc:
        sys.stderr.write(f"Error: {exc}\n")
        return 1
    (home / "state.json").write_text(json.dumps(state))
    sys.stdout.write(out)
    return 0


# --------------------------------------------------------------------------
# Installing it


def install(directory: Path, state: dict) -> dict[str, str]:
    """Write ``influx`` and its state to ``directory``; return the environment
    that puts it first on PATH."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "state.json").write_text(json.dumps(state))
    (directory / "calls.jsonl").write_text("")
    program = directory / "influx"
    program.write_text(f"#!/bin/sh\nexec {sys.executable} {Path(__file__).resolve()} \"$@\"\n")
    program.chmod(program.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return {"PATH": f"{directory}:{os.environ.get('PATH', '/usr/bin:/bin')}",
            "INFLUX_STUB_DIR": str(directory)}


def calls(directory: Path) -> list[list[str]]:
    return [json.loads(line) for line in (directory / "calls.jsonl").read_text().splitlines()]


def state_of(directory: Path) -> dict:
    return json.loads((directory / "state.json").read_text())


if __name__ == "__main__":
    sys.exit(main())
