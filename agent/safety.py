"""Risk classification of actions, and secrets that models never see.

Risky actions are those a person should confirm under the `risky` approval policy:

- Enter (alone or in a chord), or typed text with a line break, while a terminal-like
  window has focus, because it submits a command;
- a destructive key chord from `DESTRUCTIVE_CHORDS`, such as alt+f4 or shift+delete,
  and ctrl+c or ctrl+d in a terminal;
- typing a secret.

A window is terminal-like when an observation's window or page title names a
terminal program or shell, or looks like a shell prompt (`user@host: ~/dir`).

Secrets: the model writes a placeholder such as `{{secret:PASSWORD}}` in the text of
a `type` action. Only `Secrets.reveal`, called right before the executor runs the
action, puts the value in; everything the loop keeps, shows or writes contains the
placeholder, and the recorder also passes every string through `Secrets.redact`.
"""

from __future__ import annotations

import json
import logging
import re
import urllib.parse
from collections.abc import Mapping
from typing import Any

from agent.actions import Action, Key, Type
from agent.errors import ConfigError, InvalidReplyError
from agent.prompts import secret_placeholder
from executors.base import Observation

logger = logging.getLogger(__name__)

# Observation extras that may hold the focused window's or page's title.
TITLE_EXTRAS = ("window_title", "title", "wm_class", "app")

_TERMINAL_NAMES = re.compile(
    r"\b(terminal|xterm|uxterm|konsole|tilix|terminator|alacritty|kitty|wezterm|urxvt|rxvt|"
    r"tmux|bash|zsh|fish|sh|ssh|powershell|pwsh|cmd\.exe|command prompt|iterm2?|guake|yakuake|"
    r"console|kgx|ptyxis|foot|st-256color|sakura|lxterminal|mate-terminal|xfce4-terminal)\b",
    re.IGNORECASE,
)
_SHELL_PROMPT = re.compile(r"\w[\w.-]*@[\w.-]+:\s*[~/]")

# Chords as sets of canonical key names, with what each does on common Linux desktops.
DESTRUCTIVE_CHORDS: dict[frozenset[str], str] = {
    frozenset({"alt", "f4"}): "closes the focused window",
    frozenset({"ctrl", "w"}): "closes the current tab or window",
    frozenset({"ctrl", "shift", "w"}): "closes the whole window",
    frozenset({"ctrl", "q"}): "quits the application",
    frozenset({"ctrl", "shift", "q"}): "quits the application",
    frozenset({"shift", "delete"}): "deletes without moving to the trash",
    frozenset({"ctrl", "alt", "delete"}): "logs out or restarts the computer",
    frozenset({"ctrl", "alt", "backspace"}): "kills the X server and every open application",
}
TERMINAL_CHORDS: dict[frozenset[str], str] = {
    # A terminal reads ctrl+m as carriage return and ctrl+j as line feed, so both run a command.
    frozenset({"ctrl", "m"}): "runs the command line, like Enter",
    frozenset({"ctrl", "j"}): "runs the command line, like Enter",
    frozenset({"ctrl", "c"}): "interrupts the running command",
    frozenset({"ctrl", "d"}): "ends the input, which can close the shell",
    frozenset({"ctrl", "z"}): "suspends the running command",
}

_PLACEHOLDER = re.compile(r"\{\{secret:([^{}]*)\}\}")
_SECRET_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# Secret values shorter than this are likely to appear in ordinary text as well.
_SHORT_SECRET = 6


def window_title(observation: Observation) -> str:
    """Return the first title-like extra of an observation, or an empty string."""
    for key in TITLE_EXTRAS:
        value = observation.extras.get(key, "")
        if value:
            return value
    return ""


def is_terminal_title(title: str) -> bool:
    return bool(_TERMINAL_NAMES.search(title) or _SHELL_PROMPT.search(title))


def assess_risk(action: Action, observation: Observation) -> str:
    """Return why an action is risky on this screen, or an empty string when it is not."""
    title = window_title(observation)
    terminal = is_terminal_title(title)
    reasons: list[str] = []
    if isinstance(action, Key):
        # A chord with extra keys (ctrl+alt+shift+delete) still does what its core does.
        chord = frozenset(action.keys)
        shown = "+".join(action.keys)
        reasons.extend(
            f"{shown} {effect}" for keys, effect in DESTRUCTIVE_CHORDS.items() if keys <= chord
        )
        if terminal:
            reasons.extend(
                f"{shown} in a terminal {effect}"
                for keys, effect in TERMINAL_CHORDS.items()
                if keys <= chord
            )
        if terminal and "enter" in chord:
            reasons.append(f"Enter in the terminal-like window {title!r} runs a command")
    if isinstance(action, Type):
        if terminal and ("\n" in action.text or "\r" in action.text):
            reasons.append(
                f"typing a line break in the terminal-like window {title!r} runs a command"
            )
        names = placeholder_names(action.text)
        if names:
            reasons.append(f"types the secret {', '.join(names)}")
    return "; ".join(reasons)


def placeholder_names(text: str) -> list[str]:
    """Return the secret names of the placeholders in a text, in order, without repeats."""
    return list(dict.fromkeys(match.group(1) for match in _PLACEHOLDER.finditer(text)))


class Secrets:
    """Named secret values, typed by the executor but never shown to a model or written."""

    def __init__(self, values: Mapping[str, str] | None = None) -> None:
        self._values = dict(values or {})
        for name, value in self._values.items():
            if not _SECRET_NAME.fullmatch(name):
                raise ConfigError(
                    f"secret name {name!r} is invalid; use letters, digits and underscores, "
                    "starting with a letter or underscore"
                )
            if not value:
                raise ConfigError(f"secret {name} is empty; give it a value")
            if len(value) < _SHORT_SECRET:
                logger.warning(
                    "secret %s has only %d characters; every occurrence of that text in prompts, "
                    "logs and recordings is shown as its placeholder",
                    name,
                    len(value),
                )
        # Longest values first, so a value that contains another is replaced whole.
        # Each value also in the forms it takes inside a URL or a JSON string, because a
        # password typed into a GET form comes back in the page URL.
        forms = {
            (name, form)
            for name, value in self._values.items()
            for form in (
                value,
                urllib.parse.quote(value, safe=""),
                urllib.parse.quote_plus(value),
                json.dumps(value)[1:-1],
            )
        }
        self._by_length = sorted(forms, key=lambda item: len(item[1]), reverse=True)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self._values)

    def __bool__(self) -> bool:
        return bool(self._values)

    def check(self, action: Action) -> None:
        """Raise `InvalidReplyError` when a `type` action names a secret that was not given."""
        if not isinstance(action, Type):
            return
        unknown = [name for name in placeholder_names(action.text) if name not in self._values]
        if unknown:
            known = ", ".join(secret_placeholder(name) for name in self._values) or "none"
            raise InvalidReplyError(
                f"the secret {unknown[0]!r} does not exist; the secrets you can type are: {known}"
            )

    def reveal(self, action: Action) -> Action:
        """Return the action with placeholders replaced by values, for the executor only."""
        if not isinstance(action, Type) or not self._values:
            return action
        text = _PLACEHOLDER.sub(
            lambda match: self._values.get(match.group(1), match.group(0)), action.text
        )
        return action if text == action.text else Type(action="type", text=text)

    def redact_action(self, action: Action) -> Action:
        """Return the action with secret values in its text replaced by placeholders."""
        text = getattr(action, "text", None)
        if not isinstance(text, str) or not self._values:
            return action
        redacted = self.redact(text)
        return action if redacted == text else action.model_copy(update={"text": redacted})

    def redact(self, text: str) -> str:
        """Replace every secret value in a text with its placeholder."""
        for name, value in self._by_length:
            if value in text:
                text = text.replace(value, secret_placeholder(name))
        return text

    def redact_value(self, value: Any, keep: frozenset[str] = frozenset()) -> Any:
        """Redact every string inside a JSON-like value (dicts, lists, strings).

        Values under the keys in `keep` stay as they are: file names and enum values that a
        short secret such as "step" would otherwise break.
        """
        if not self._values:
            return value
        if isinstance(value, str):
            return self.redact(value)
        if isinstance(value, dict):
            return {
                key: item if key in keep else self.redact_value(item, keep)
                for key, item in value.items()
            }
        if isinstance(value, list | tuple):
            return [self.redact_value(item, keep) for item in value]
        return value
