"""docker-compose.yml, .env.example and provisioning/ read as Compose and
Grafana read them, for the deployment tests (tests/unit/test_deploy_files.py,
test_alerting_files.py, test_compose_secrets.py, test_influx_provisioning.py).

PyYAML resolves the ``<<`` merge keys and anchors the compose file uses, as
Compose does.
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from tests.support.repository import ROOT

COMPOSE_FILE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"
PROVISIONING = ROOT / "provisioning"
ALERTING_DIR = PROVISIONING / "alerting"
DATASOURCES_DIR = PROVISIONING / "datasources"
COMPOSE_SCRIPTS = PROVISIONING / "compose"
DATASOURCE_UID = "notify-influxdb"
ONE_SHOT = "service_completed_successfully"


def load_yaml(path: Path) -> dict:
    with path.open() as fh:
        return yaml.safe_load(fh)


def compose() -> dict:
    return load_yaml(COMPOSE_FILE)


def compose_services() -> dict[str, dict]:
    return compose().get("services") or {}


def environment_of(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        pairs = (item.partition("=") for item in env)
        return {name: value for name, _, value in pairs}
    return {name: "" if value is None else str(value) for name, value in env.items()}


def compose_variables(text: str) -> set[str]:
    """Names interpolated by Compose: ${VAR}, ${VAR:-x}, ${VAR:?msg}, $VAR; not $$."""
    text = text.replace("$$", "")
    braced = re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)", text)
    bare = re.findall(r"\$([A-Za-z_][A-Za-z0-9_]*)", text)
    return set(braced) | set(bare)


def required(value: str) -> bool:
    """Whether Compose refuses to start when the variable is unset or empty."""
    return bool(re.fullmatch(r"\$\{[A-Za-z_]\w*:\?[^}]*\}", value))


def env_example() -> dict[str, str]:
    """NAME -> value of .env.example, in order."""
    values = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, value = line.partition("=")
        assert sep, f".env.example: not NAME=value: {line!r}"
        values[name.removeprefix("export ").strip()] = value
    return values


def one_shots() -> set[str]:
    """Services another one waits for to exit successfully."""
    return {other for service in compose_services().values()
            for other, spec in (service.get("depends_on") or {}).items()
            if isinstance(spec, dict) and spec.get("condition") == ONE_SHOT}


def mounts(service: dict) -> dict[str, str]:
    """target -> source of a service's volumes (short syntax)."""
    found = {}
    for volume in service.get("volumes") or []:
        source, target, *_ = volume.split(":")
        found[target.rstrip("/")] = source.rstrip("/")
    return found


def datasources() -> list[dict]:
    found: list[dict] = []
    for path in sorted(DATASOURCES_DIR.glob("*.y*ml")):
        found.extend(load_yaml(path).get("datasources") or [])
    return found


def notify_datasource() -> dict:
    matches = [ds for ds in datasources() if ds.get("uid") == DATASOURCE_UID]
    assert len(matches) == 1, f"expected one datasource with uid {DATASOURCE_UID}: {matches}"
    return matches[0]


def yaml_strings(node: object) -> list[str]:
    """Every string key and value in a loaded YAML document (comments are gone)."""
    if isinstance(node, dict):
        return [s for k, v in node.items() for s in yaml_strings(k) + yaml_strings(v)]
    if isinstance(node, list):
        return [s for item in node for s in yaml_strings(item)]
    return [node] if isinstance(node, str) else []


def relative(path: Path) -> str:
    return str(path.relative_to(ROOT))
