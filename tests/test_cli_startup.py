"""The command line builds only the requested verb's options (start-up cost), and still
shows every verb and each verb's own options to a user who asks."""
from __future__ import annotations

import pytest

from tft_lab.testing import run_cli

VERBS = ["record", "replay", "trace", "run", "sweep", "backup", "keygen", "demo"]


def test_help_lists_every_verb():
    p = run_cli(["-h"], timeout=60)
    assert p.returncode == 0, p.stderr
    for verb in VERBS:
        assert verb in p.stdout.decode()


@pytest.mark.parametrize("verb,option", [("record", "--small-log"), ("run", "--respawn"),
                                         ("sweep", "--victim"), ("backup", "--accept-timeout")])
def test_each_verb_keeps_its_options(verb, option):
    p = run_cli([verb, "-h"], timeout=60)
    assert p.returncode == 0, p.stderr
    assert option in p.stdout.decode()


def test_a_misspelt_verb_is_a_usage_error():
    p = run_cli(["recrod", "--log", "x", "--", "true"], timeout=60)
    assert p.returncode == 2
    assert b"invalid choice: 'recrod'" in p.stderr
