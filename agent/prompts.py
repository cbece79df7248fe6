"""Load and render the prompt templates shipped in the `prompts` package.

Templates are Jinja files rendered with `StrictUndefined`, so a missing value is an
error instead of an empty string. Facts that change between runs (the date, the
platform, the secrets' names) are passed in at render time, never frozen at import.
"""

from __future__ import annotations

import datetime
import enum
import functools
import json
import platform
from dataclasses import dataclass
from importlib import resources
from typing import Any

import jinja2

from agent.actions import TOOL_NAME, Action

TOOL_FILE = "computer_use_tool.json"


class PromptKind(enum.StrEnum):
    """The system prompts: one model that plans and acts, a planner, a grounder."""

    SINGLE = "single"
    PLANNER = "planner"
    GROUNDER = "grounder"


@dataclass(frozen=True)
class PromptFacts:
    """Facts about this run that the system prompts state."""

    date: str
    platform: str
    # The content of the screenshots, for example "a web page in a Chromium browser".
    environment: str
    # Names of the secrets the model may type through placeholders.
    secrets: tuple[str, ...] = ()

    @classmethod
    def for_today(
        cls, environment: str, secrets: tuple[str, ...] = (), today: datetime.date | None = None
    ) -> PromptFacts:
        day = today or datetime.date.today()
        return cls(
            date=f"{day:%A}, {day.day} {day:%B %Y}",
            platform=f"{platform.system() or 'an unknown system'}",
            environment=environment,
            secrets=secrets,
        )


def secret_placeholder(name: str) -> str:
    """Return the placeholder that replaces a secret in prompts, replies and recordings."""
    return "{{secret:" + name + "}}"


@functools.cache
def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FunctionLoader(_load_template),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,
    )


def _load_template(name: str) -> str:
    return resources.files("prompts").joinpath(name).read_text(encoding="utf-8")


def render(name: str, **values: Any) -> str:
    """Render one template file from the `prompts` package; a missing value raises."""
    return _environment().get_template(name).render(**values).strip()


@functools.cache
def tool_declaration() -> dict[str, Any]:
    """Return the `computer_use` function signature declared in the system prompts."""
    declaration: dict[str, Any] = json.loads(_load_template(TOOL_FILE))
    return declaration


def system_prompt(kind: PromptKind, facts: PromptFacts) -> str:
    """Render the system prompt for one kind of model call."""
    tool_json = json.dumps(tool_declaration(), ensure_ascii=False)
    return render(
        f"system_{kind.value}.jinja",
        tool_json=tool_json,
        date=facts.date,
        platform=facts.platform,
        environment=facts.environment,
        secrets=list(facts.secrets),
    )


def feedback(name: str, **values: Any) -> str:
    """Render one macro of `feedback.jinja`: a note to the model about an earlier step."""
    module = _environment().get_template("feedback.jinja").module
    macro = getattr(module, name, None)
    if macro is None:
        raise KeyError(f"feedback.jinja has no macro named {name!r}")
    return str(macro(**values)).strip()


def format_tool_call(action: Action, preface: str = "") -> str:
    """Write an action as the model writes it: optional free text, then one tool-call block."""
    call = json.dumps({"name": TOOL_NAME, "arguments": action.arguments()}, ensure_ascii=False)
    block = f"<tool_call>\n{call}\n</tool_call>"
    return f"{preface.strip()}\n{block}" if preface.strip() else block
