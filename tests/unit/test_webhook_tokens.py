"""ALERT_WEBHOOK_TOKENS: named tokens for the alert webhook alone, read with
ADMIN_TOKENS' rules and kept apart from every token that opens more."""

import pytest

from service.config import ConfigError, Settings

ENV = {"PUBLISH_TOKEN": "p" * 20, "ADMIN_TOKEN": "a" * 20, "USER_TOKEN_SECRET": "s" * 20,
       "ADMIN_TOKENS": "alice:" + "x" * 16}


def test_webhook_tokens_are_taken_by_the_webhook_and_by_nothing_else(tmp_path):
    settings = Settings.from_env({**ENV, "VAR_DIR": str(tmp_path),
                                  "ALERT_WEBHOOK_TOKENS": "grafana:" + "g" * 16
                                  + ", pager:" + "h" * 16})
    assert settings.alert_webhook_tokens == {"grafana": "g" * 16, "pager": "h" * 16}
    assert settings.alert_webhook_credentials() == {
        "admin": "a" * 20, "alice": "x" * 16, "grafana": "g" * 16, "pager": "h" * 16}
    assert "g" * 16 not in settings.admin_credentials().values()
    assert "g" * 16 not in settings.publish_credentials().values()
    unset = Settings.from_env({**ENV, "VAR_DIR": str(tmp_path)})
    assert unset.alert_webhook_credentials() == unset.admin_credentials()


@pytest.mark.parametrize(("value", "complaint"), [
    ("grafana:short", "shorter than 16"),
    ("grafana", "shorter than 16"),  # no token at all
    ("admin:" + "g" * 16, "name:token"),
    ("gra fana:" + "g" * 16, "name:token"),
    ("grafana:" + "g" * 16 + ",grafana:" + "h" * 16, "given twice"),
    ("grafana:" + "g" * 16 + ",pager:" + "g" * 16, "two tokens are the same"),
    ("grafana:" + "p" * 20, "publish token"),
    ("grafana:" + "a" * 20, "admin or the publish"),
    ("grafana:" + "x" * 16, "admin or the publish"),
    ("alice:" + "g" * 16, "admin token's name"),
])
def test_bad_webhook_tokens_are_refused_at_start(tmp_path, value, complaint):
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({**ENV, "VAR_DIR": str(tmp_path), "ALERT_WEBHOOK_TOKENS": value})
    assert "ALERT_WEBHOOK_TOKENS" in str(caught.value) and complaint in str(caught.value)
