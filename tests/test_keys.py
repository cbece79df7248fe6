"""Key-name normalisation: chords in several spellings, aliases, macOS names and errors."""

from __future__ import annotations

import pytest

from agent.errors import KeyNameError
from agent.keys import NAMED_KEYS, normalise_key, normalise_keys

CHORD_CASES = [
    ("ctrl+shift+t", ["ctrl", "shift", "t"]),
    (["ctrl", "c"], ["ctrl", "c"]),
    ("ctrl-alt-t", ["ctrl", "alt", "t"]),
    ("Ctrl + Shift + Esc", ["ctrl", "shift", "esc"]),
    (["ctrl+c"], ["ctrl", "c"]),
    ("ctrl++", ["ctrl", "+"]),
    ("ctrl+-", ["ctrl", "-"]),
    ("+", ["+"]),
    ("-", ["-"]),
    (["Return"], ["enter"]),
    ("alt+F4", ["alt", "f4"]),
    ("super", ["super"]),
    ("Control_L+Page_Down", ["ctrl", "pagedown"]),
    ("shift+Tab", ["shift", "tab"]),
    (["cmd", "c"], ["ctrl", "c"]),
    ("option+left", ["alt", "left"]),
]


@pytest.mark.parametrize(("written", "expected"), CHORD_CASES, ids=str)
def test_chords_normalise(written: str | list[str], expected: list[str]) -> None:
    assert normalise_keys(written) == expected


ALIAS_CASES = [
    ("Return", "enter"),
    ("enter", "enter"),
    ("ENTER", "enter"),
    ("esc", "esc"),
    ("Escape", "esc"),
    ("PageDown", "pagedown"),
    ("Page_Up", "pageup"),
    ("PgDn", "pagedown"),
    ("win", "super"),
    ("Windows", "super"),
    ("meta", "super"),
    ("super", "super"),
    ("F1", "f1"),
    ("f12", "f12"),
    ("F24", "f24"),
    ("ArrowUp", "up"),
    ("Del", "delete"),
    ("BackSpace", "backspace"),
    ("space", "space"),
    ("a", "a"),
    ("A", "A"),
    ("7", "7"),
    ("/", "/"),
    ("é", "é"),
    ("plus", "+"),
    ("Print", "printscreen"),
    ("capslock", "capslock"),
]


@pytest.mark.parametrize(("written", "canonical"), ALIAS_CASES, ids=str)
def test_aliases_normalise(written: str, canonical: str) -> None:
    assert normalise_key(written) == canonical


def test_enter_and_return_are_one_key() -> None:
    assert normalise_key("enter") == normalise_key("Return")


@pytest.mark.parametrize(
    ("written", "linux", "darwin"),
    [
        ("cmd", "ctrl", "super"),
        ("command", "ctrl", "super"),
        ("⌘", "ctrl", "super"),
        ("option", "alt", "alt"),
    ],
)
def test_macos_names_have_equivalents(written: str, linux: str, darwin: str) -> None:
    assert normalise_key(written, platform="linux") == linux
    assert normalise_key(written, platform="darwin") == darwin
    assert linux in NAMED_KEYS


@pytest.mark.parametrize(
    ("written", "named"),
    [("ctrl+foo", "foo"), (["ctrl", "hyperkey"], "hyperkey"), ("F25", "F25"), ("", "")],
)
def test_unknown_key_names_itself(written: str | list[str], named: str) -> None:
    with pytest.raises(KeyNameError) as caught:
        normalise_keys(written)
    assert repr(named) in str(caught.value) or named == ""
    assert caught.value.key == named


def test_empty_list_rejected() -> None:
    with pytest.raises(KeyNameError, match="empty"):
        normalise_keys([])


def test_non_string_key_rejected() -> None:
    with pytest.raises(KeyNameError, match="must be a string"):
        normalise_keys(["ctrl", 5])  # type: ignore[list-item]
