"""``bench tuning``'s judgement of a promised effect, and its scenario list:
one scenario per recommendation rule."""

from __future__ import annotations

from bench.tuning import shown
from bench.tuning_scenarios import by_rule
from service.domain.advice import RULES


def window(mean, sd, n=6):
    return {"mean": mean, "sd": sd, "n": n}


def test_an_effect_is_shown_only_the_promised_way_and_past_the_noise():
    assert shown(window(0.55, 0.02), window(0.85, 0.1), +1)
    assert not shown(window(0.55, 0.02), window(0.85, 0.1), -1)  # the wrong way
    # a move inside twice the standard error is noise
    assert not shown(window(10.0, 3.0), window(8.0, 3.0), -1)
    # a significant move under 5 % is too small to count
    assert not shown(window(100.0, 0.1), window(97.0, 0.1), -1)
    assert not shown(window(None, None, 0), window(1.0, 0.1), +1)


def test_every_rule_has_a_scenario():
    assert set(by_rule()) == set(RULES)
