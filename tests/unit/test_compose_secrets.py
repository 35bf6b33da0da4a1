"""Compose refuses to start with the example secrets: the one-shot service
``check-secrets`` runs provisioning/compose/check-secrets.sh (here: with
bash, as its image does) against .env.example, and every other service waits
for it to exit successfully.
"""

from __future__ import annotations

import os
import re
import secrets
import subprocess

import pytest

from tests.support.compose import (
    COMPOSE_SCRIPTS,
    ENV_EXAMPLE,
    ONE_SHOT,
    compose_services,
    compose_variables,
    env_example,
    environment_of,
    mounts,
    required,
)

SCRIPT = COMPOSE_SCRIPTS / "check-secrets.sh"
SERVICE = "check-secrets"
SECRET = re.compile(r"_(TOKEN|SECRET|PASSWORD)$")
# Set by the mail provider, and empty for a relay without authentication.
OPTIONAL = {"SMTP_USER", "SMTP_PASSWORD"}
PLACEHOLDER = "change-me"


def run_check(values: dict[str, str]) -> subprocess.CompletedProcess:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **values}
    return subprocess.run(["bash", str(SCRIPT), str(ENV_EXAMPLE)], env=env,
                          capture_output=True, text=True, timeout=30)


def named(result: subprocess.CompletedProcess) -> set[str]:
    return set(re.findall(r"^check-secrets: ([A-Z_0-9]+):", result.stderr, re.MULTILINE))


def is_secret(name: str) -> bool:
    return bool(SECRET.search(name)) and name not in OPTIONAL


def good_settings() -> dict[str, str]:
    """A .env an operator would write: generated secrets, real-looking addresses."""
    chosen = {
        "ALERT_EMAIL_TO": "oncall@example.org,sre@example.org",
        "SMTP_HOST": "smtp.example.org:587",
        "SMTP_USER": "grafana",
        "SMTP_PASSWORD": "from-the-mail-provider",
        "SMTP_FROM": "grafana@example.org",
        "ALERT_SLACK_WEBHOOK_URL": "https://hooks.slack.com/services/T0/B0/abc",
    }
    return {name: chosen.get(name, secrets.token_urlsafe(32) if is_secret(name) else value)
            for name, value in env_example().items()}


def placeholders() -> set[str]:
    return {name for name, value in env_example().items() if PLACEHOLDER in value}


# --------------------------------------------------------------------------
# The script


def test_the_example_settings_are_refused_and_each_one_named():
    result = run_check(env_example())
    assert result.returncode != 0
    assert named(result) == placeholders(), result.stderr
    assert placeholders() >= {n for n in env_example() if is_secret(n)}


def test_an_operators_settings_pass():
    result = run_check(good_settings())
    assert result.returncode == 0, result.stderr
    assert named(result) == set()


def test_optional_mail_credentials_may_be_empty_but_nothing_else_may():
    assert run_check({**good_settings(), "SMTP_USER": "", "SMTP_PASSWORD": ""}).returncode == 0
    for name in sorted(placeholders() - OPTIONAL):
        result = run_check({**good_settings(), name: ""})
        assert result.returncode != 0 and name in named(result), name


@pytest.mark.parametrize("name", sorted(n for n in env_example() if is_secret(n)))
def test_a_short_secret_is_refused(name):
    result = run_check({**good_settings(), name: "x" * 15})
    assert result.returncode != 0
    assert named(result) == {name}, result.stderr
    assert run_check({**good_settings(), name: "y" * 16}).returncode == 0


def test_one_value_for_two_secrets_is_refused_naming_both():
    settings = good_settings()
    settings["GRAFANA_WEBHOOK_TOKEN"] = settings["ADMIN_TOKEN"]
    result = run_check(settings)
    assert result.returncode != 0
    assert "ADMIN_TOKEN" in result.stderr and "GRAFANA_WEBHOOK_TOKEN" in result.stderr


@pytest.mark.parametrize(("name", "value"), [
    ("INFLUX_READ_TOKEN", "r" * 73),            # bcrypt takes 72 bytes
    ("POSTGRES_PASSWORD", "a/b@c" + "p" * 16),  # breaks DATABASE_URL
    ("DOCS_URL", "docs"),
    ("DOCS_URL", "http://host/docs#x"),
    ("SERVICE_URL", "localhost:8000"),
    ("ALERT_SLACK_WEBHOOK_URL", "hooks.slack.com/services/x"),
    ("ALERT_EMAIL_TO", "oncall"),
    ("ALERT_EMAIL_TO", "a@example.org b@example.org"),
])
def test_a_value_that_cannot_work_is_refused(name, value):
    result = run_check({**good_settings(), name: value})
    assert result.returncode != 0
    assert named(result) == {name}, result.stderr


# --------------------------------------------------------------------------
# The compose file


def test_check_secrets_is_a_one_shot_of_an_image_already_used():
    services = compose_services()
    service = services[SERVICE]
    others = {s.get("image") for name, s in services.items() if name != SERVICE}
    assert service["image"] in others, "no extra image to pull"
    assert str(service.get("restart", "no")) == "no"
    command = service.get("entrypoint") or service.get("command")
    assert command[:2] == ["bash", "/compose/check-secrets.sh"], command
    volumes = mounts(service)
    assert volumes["/compose"] == "./provisioning/compose"
    assert volumes[command[2]] == "./.env.example"
    assert SCRIPT.exists()


def test_check_secrets_is_given_every_setting_of_env_example():
    env = environment_of(compose_services()[SERVICE])
    assert set(env) == set(env_example()), set(env) ^ set(env_example())
    for name, value in env.items():
        assert compose_variables(value) == {name}, (name, value)
        if name in placeholders() - OPTIONAL:
            assert required(value), f"{name}: {value} (compose must refuse it unset)"


def test_every_other_service_waits_for_it():
    services = compose_services()
    for name, service in services.items():
        if name == SERVICE:
            continue
        spec = (service.get("depends_on") or {}).get(SERVICE)
        assert spec == {"condition": ONE_SHOT}, f"{name} does not wait for {SERVICE}"
