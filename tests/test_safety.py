"""Risk classification and secrets."""

from __future__ import annotations

import pytest
from PIL import Image

from agent.actions import Action, Key, LeftClick, Type, parse_action
from agent.errors import ConfigError, InvalidReplyError
from agent.geometry import ScreenGeometry
from agent.safety import Secrets, assess_risk, is_terminal_title, placeholder_names
from executors.base import Observation


def _observation(**extras: str) -> Observation:
    return Observation(Image.new("RGB", (10, 10)), ScreenGeometry(10, 10), extras=extras)


def _action(**arguments: object) -> Action:
    return parse_action(arguments)


@pytest.mark.parametrize(
    ("arguments", "extras", "expected"),
    [
        ({"action": "key", "keys": ["enter"]}, {"window_title": "xterm"}, "runs a command"),
        (
            {"action": "key", "keys": ["Return"]},
            {"window_title": "user@host: ~/src"},
            "runs a command",
        ),
        (
            {"action": "key", "keys": ["ctrl", "enter"]},
            {"window_title": "GNOME Terminal"},
            "runs a command",
        ),
        ({"action": "key", "keys": ["enter"]}, {"title": "Search - Example"}, ""),
        ({"action": "key", "keys": ["enter"]}, {}, ""),
        ({"action": "type", "text": "ls -la\n"}, {"window_title": "bash"}, "runs a command"),
        ({"action": "type", "text": "ls -la"}, {"window_title": "bash"}, ""),
        (
            {"action": "type", "text": "line one\nline two"},
            {"window_title": "Konsole"},
            "runs a command",
        ),
        ({"action": "type", "text": "hello\n"}, {"title": "Notes"}, ""),
        ({"action": "key", "keys": ["alt", "f4"]}, {}, "closes the focused window"),
        ({"action": "key", "keys": ["ctrl", "w"]}, {}, "closes the current tab"),
        ({"action": "key", "keys": ["ctrl", "q"]}, {}, "quits"),
        ({"action": "key", "keys": ["shift", "delete"]}, {}, "without moving to the trash"),
        ({"action": "key", "keys": ["ctrl", "alt", "backspace"]}, {}, "kills the X server"),
        ({"action": "key", "keys": ["ctrl", "c"]}, {"window_title": "tmux"}, "interrupts"),
        ({"action": "key", "keys": ["ctrl", "c"]}, {"title": "Editor"}, ""),
        ({"action": "key", "keys": ["ctrl", "d"]}, {"window_title": "ssh host"}, "ends the input"),
        ({"action": "type", "text": "{{secret:PIN}}"}, {}, "types the secret PIN"),
        ({"action": "left_click", "coordinate": [1, 2]}, {"window_title": "xterm"}, ""),
        ({"action": "key", "keys": ["ctrl", "alt", "shift", "delete"]}, {}, "logs out"),
        ({"action": "key", "keys": ["alt", "f4", "a"]}, {}, "closes the focused window"),
        ({"action": "key", "keys": ["ctrl", "m"]}, {"window_title": "bash"}, "like Enter"),
        ({"action": "key", "keys": ["ctrl", "j"]}, {"window_title": "xterm"}, "like Enter"),
        ({"action": "key", "keys": ["ctrl", "m"]}, {"title": "Mail"}, ""),
        ({"action": "key", "keys": ["cmd", "q"]}, {}, "quits"),
        ({"action": "key", "keys": ["enter"]}, {"window_title": "GNOME Console"}, "runs a command"),
    ],
)
def test_risk_table(arguments: dict[str, object], extras: dict[str, str], expected: str) -> None:
    risk = assess_risk(_action(**arguments), _observation(**extras))

    if expected:
        assert expected in risk
    else:
        assert risk == ""


@pytest.mark.parametrize(
    ("title", "terminal"),
    [
        ("xterm", True),
        ("root@box: /var/log", True),
        ("Alacritty", True),
        ("zsh — 80x24", True),
        ("Refresh the page", False),
        ("Shell Oil - Wikipedia", False),
        ("Console", True),
        ("xfce4-terminal", True),
        ("Inbox (3)", False),
        ("", False),
    ],
)
def test_terminal_titles(title: str, terminal: bool) -> None:
    assert is_terminal_title(title) is terminal


def test_reveal_substitutes_values() -> None:
    secrets = Secrets({"USER": "ada", "PASSWORD": "pa55"})

    revealed = secrets.reveal(Type(action="type", text="{{secret:USER}}\t{{secret:PASSWORD}}\n"))

    assert revealed == Type(action="type", text="ada\tpa55\n")


def test_reveal_leaves_other_actions() -> None:
    secrets = Secrets({"PASSWORD": "pa55"})
    click = LeftClick(action="left_click", coordinate=(1, 2))
    key = Key(action="key", keys=["enter"])

    assert secrets.reveal(click) is click
    assert secrets.reveal(key) is key


def test_redact_longest_value_first() -> None:
    secrets = Secrets({"SHORT": "abc", "LONG": "abcdef"})

    assert secrets.redact("x abcdef y abc") == "x {{secret:LONG}} y {{secret:SHORT}}"


def test_redact_value_walks_json() -> None:
    secrets = Secrets({"TOKEN": "tok-123"})

    redacted = secrets.redact_value({"a": ["tok-123", 5, {"b": "say tok-123"}], "n": None})

    assert redacted == {"a": ["{{secret:TOKEN}}", 5, {"b": "say {{secret:TOKEN}}"}], "n": None}


def test_check_rejects_unknown_secret() -> None:
    secrets = Secrets({"PASSWORD": "pa55"})

    with pytest.raises(InvalidReplyError, match=r"'PIN' does not exist.*PASSWORD"):
        secrets.check(Type(action="type", text="{{secret:PIN}}"))
    secrets.check(Type(action="type", text="{{secret:PASSWORD}}"))


@pytest.mark.parametrize(
    ("name", "value", "message"), [("bad-name", "x", "is invalid"), ("EMPTY", "", "is empty")]
)
def test_secrets_reject_bad_input(name: str, value: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Secrets({name: value})


def test_placeholder_names_in_order() -> None:
    assert placeholder_names("{{secret:B}} {{secret:A}} {{secret:B}} {{other}}") == ["B", "A"]


@pytest.mark.parametrize(
    "text",
    [
        "https://x.test/?q=p%40ss+word",
        "https://x.test/?q=p%40ss%20word",
        '{"password": "p@ss word"}',
        "typed p@ss word here",
    ],
)
def test_redact_encoded_forms(text: str) -> None:
    redacted = Secrets({"PW": "p@ss word"}).redact(text)

    assert "{{secret:PW}}" in redacted
    assert "ss+word" not in redacted
    assert "ss%20word" not in redacted
    assert "ss word" not in redacted
