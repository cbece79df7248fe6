"""Normalise the key names that models write into one canonical vocabulary.

Canonical names are lower case: the modifiers `ctrl`, `alt`, `shift` and `super`,
named keys such as `enter`, `esc`, `tab`, `pagedown` and `f1`..`f24`, and single
characters (kept as written, so `"A"` stays an upper-case A).

Each executor translates canonical names to its own API in exactly one table
(`executors.browser.PLAYWRIGHT_KEYS`, `executors.desktop.XDOTOOL_KEYS`).

macOS names on Linux map to the key that does the same job there, never to nothing:

| written | on Linux | on macOS |
| --- | --- | --- |
| `cmd`, `command`, `⌘` | `ctrl` (Command shortcuts such as cmd+c are ctrl+c on Linux) | `super` |
| `option`, `opt`, `⌥` | `alt` | `alt` |
| `return` | `enter` | `enter` |
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from agent.errors import KeyNameError

MODIFIERS = ("ctrl", "alt", "shift", "super")

NAMED_KEYS = frozenset(
    {
        *MODIFIERS,
        "enter",
        "esc",
        "tab",
        "space",
        "backspace",
        "delete",
        "insert",
        "home",
        "end",
        "pageup",
        "pagedown",
        "up",
        "down",
        "left",
        "right",
        "capslock",
        "numlock",
        "scrolllock",
        "printscreen",
        "pause",
        "menu",
        *(f"f{n}" for n in range(1, 25)),
    }
)

_ALIASES = {
    "control": "ctrl",
    "ctl": "ctrl",
    "lctrl": "ctrl",
    "rctrl": "ctrl",
    "control_l": "ctrl",
    "control_r": "ctrl",
    "ctrl_l": "ctrl",
    "ctrl_r": "ctrl",
    "alt_l": "alt",
    "alt_r": "alt",
    "altgr": "alt",
    "lalt": "alt",
    "ralt": "alt",
    "shift_l": "shift",
    "shift_r": "shift",
    "lshift": "shift",
    "rshift": "shift",
    "win": "super",
    "windows": "super",
    "meta": "super",
    "super_l": "super",
    "super_r": "super",
    "lwin": "super",
    "rwin": "super",
    "return": "enter",
    "kp_enter": "enter",
    "ret": "enter",
    "escape": "esc",
    "bksp": "backspace",
    "back_space": "backspace",
    "back": "backspace",
    "del": "delete",
    "ins": "insert",
    "pgup": "pageup",
    "page_up": "pageup",
    "prior": "pageup",
    "pgdn": "pagedown",
    "pgdown": "pagedown",
    "page_down": "pagedown",
    "next": "pagedown",
    "arrowup": "up",
    "arrowdown": "down",
    "arrowleft": "left",
    "arrowright": "right",
    "uparrow": "up",
    "downarrow": "down",
    "leftarrow": "left",
    "rightarrow": "right",
    "spacebar": "space",
    "caps_lock": "capslock",
    "caps": "capslock",
    "num_lock": "numlock",
    "scroll_lock": "scrolllock",
    "print": "printscreen",
    "prtsc": "printscreen",
    "prtscr": "printscreen",
    "print_screen": "printscreen",
    "apps": "menu",
    "contextmenu": "menu",
    "break": "pause",
}

_MAC_ALIASES = {
    "linux": {
        "cmd": "ctrl",
        "command": "ctrl",
        "⌘": "ctrl",
        "option": "alt",
        "opt": "alt",
        "⌥": "alt",
    },
    "darwin": {
        "cmd": "super",
        "command": "super",
        "⌘": "super",
        "option": "alt",
        "opt": "alt",
        "⌥": "alt",
    },
}

_CHARACTER_NAMES = {
    "plus": "+",
    "minus": "-",
    "period": ".",
    "comma": ",",
    "slash": "/",
    "backslash": "\\",
    "semicolon": ";",
    "apostrophe": "'",
    "quote": "'",
    "grave": "`",
    "equal": "=",
    "equals": "=",
    "bracketleft": "[",
    "bracketright": "]",
}

# A chord such as "ctrl+shift+t" or "ctrl-alt-t". A lone "+" or "-" is a character, not a separator.
_CHORD_SEPARATOR = re.compile(r"(?<=.)[+\-](?=.)")


def normalise_key(name: str, platform: str = "linux") -> str:
    """Return the canonical name of one key, or raise `KeyNameError` naming it."""
    if not isinstance(name, str) or name == "":
        raise KeyNameError(str(name), f"invalid key {name!r}; a key must be a non-empty string")
    if len(name) == 1:
        mapped = _MAC_ALIASES.get(platform, _MAC_ALIASES["linux"]).get(name)
        return mapped or name

    lowered = name.strip().lower().replace(" ", "")
    if lowered in NAMED_KEYS:
        return lowered
    if lowered in _ALIASES:
        return _ALIASES[lowered]
    mac = _MAC_ALIASES.get(platform, _MAC_ALIASES["linux"])
    if lowered in mac:
        return mac[lowered]
    if lowered in _CHARACTER_NAMES:
        return _CHARACTER_NAMES[lowered]
    raise KeyNameError(name)


def split_chord(text: str) -> list[str]:
    """Split one written chord such as "ctrl+shift+t" or "ctrl-alt-t" into key names."""
    stripped = text.strip()
    if len(stripped) <= 1:
        return [stripped or text]
    parts = _CHORD_SEPARATOR.split(stripped)
    # "ctrl++" splits into ["ctrl", "+"]: the trailing separator was the key itself.
    if stripped.endswith(("++", "+-", "-+", "--")):
        parts = [*_CHORD_SEPARATOR.split(stripped[:-2]), stripped[-1]]
    return [part.strip() for part in parts]


def normalise_keys(keys: str | Sequence[str], platform: str = "linux") -> list[str]:
    """Normalise what a model wrote for the `key` action into a list of canonical names.

    Accepts a chord string ("ctrl+c", "ctrl-alt-t"), a list (["ctrl", "c"]), or a list
    whose items are chords (["ctrl+c"]). Raises `KeyNameError` for the first unknown key.
    """
    items = [keys] if isinstance(keys, str) else list(keys)
    if not items:
        raise KeyNameError(
            "", "the keys list is empty; give at least one key, for example ['enter']"
        )

    names: list[str] = []
    for item in items:
        if not isinstance(item, str):
            raise KeyNameError(str(item), f"invalid key {item!r}; each key must be a string")
        for part in split_chord(item) if len(item) > 1 else [item]:
            names.append(normalise_key(part, platform))
    return names
