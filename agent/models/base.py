"""The model seam: a chat with images goes in, one reply comes out.

A backend implements `ChatModel.complete`. The in-process llama.cpp backend, the
OpenAI-compatible HTTP backend and the shipped test doubles (`agent.models.testing`)
all follow it, so the loop works with any of them unchanged.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal, Protocol, runtime_checkable

from PIL import Image

Role = Literal["system", "user", "assistant"]


@dataclass(frozen=True)
class TextPart:
    text: str


@dataclass(frozen=True)
class ImagePart:
    """An RGB screenshot. Backends resize it to their image-token budget themselves."""

    image: Image.Image


@dataclass(frozen=True)
class Message:
    role: Role
    content: tuple[TextPart | ImagePart, ...]

    @classmethod
    def text(cls, role: Role, text: str) -> Message:
        return cls(role=role, content=(TextPart(text),))

    @property
    def images(self) -> list[Image.Image]:
        return [part.image for part in self.content if isinstance(part, ImagePart)]


@dataclass(frozen=True)
class ChatRequest:
    """One call to a model.

    `constrain_tool_call` asks the backend to restrict decoding to one
    `computer_use` tool call (after the reasoning, for a Thinking model).
    `temperature` None means the model card's default.
    """

    messages: tuple[Message, ...]
    max_tokens: int = 1024
    temperature: float | None = None
    constrain_tool_call: bool = False
    # For a Thinking model: tokens of reasoning allowed before the backend closes it.
    reasoning_budget: int | None = None
    seed: int | None = None
    # Called with each new piece of generated text, for showing the reply as it streams.
    # Backends that cannot stream call it once with the whole text.
    on_text: Callable[[str], None] | None = field(default=None, compare=False, repr=False)
    # Polled while the backend works: by llama.cpp during prompt evaluation and between
    # tokens, by the HTTP backend while it waits for the server. When it returns True, the
    # backend stops early and returns what it has with finish_reason "cancelled".
    cancelled: Callable[[], bool] | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class Usage:
    """True token counts. `prompt_tokens` counts image tokens one per 32x32 px, not M-RoPE positions."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    image_tokens: int = 0
    # Prompt tokens actually evaluated this call; the rest came from the reused KV-cache prefix.
    evaluated_tokens: int = 0


@dataclass(frozen=True)
class ModelReply:
    """A model's raw text with the reasoning split off, true usage and timings in seconds."""

    text: str
    reasoning: str = ""
    content: str = ""
    usage: Usage = field(default_factory=Usage)
    timings: dict[str, float] = field(default_factory=dict)
    finish_reason: str = "stop"


@runtime_checkable
class ChatModel(Protocol):
    """A model that replies to chats with images."""

    name: str

    def complete(self, request: ChatRequest) -> ModelReply:
        """Generate the reply to one chat request."""
        ...
