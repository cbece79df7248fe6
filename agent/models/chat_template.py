"""Render a chat with the GGUF file's own Jinja chat template.

Image parts become text parts that contain mtmd's media marker, as in llama-cpp-python's
`MTMDChatHandler`. mtmd later replaces each marker with the image and wraps it in
`<|vision_start|>...<|vision_end|>` itself. The template decides everything else,
including the `<think>` that a Thinking model's generation prompt opens.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import jinja2
import jinja2.ext
from jinja2.sandbox import ImmutableSandboxedEnvironment
from PIL import Image

from agent.errors import ModelError
from agent.models.base import ImagePart, Message


def render_prompt(
    template: str,
    messages: Sequence[Message],
    *,
    marker: str,
    bos_token: str = "",
    eos_token: str = "",
) -> tuple[str, list[Image.Image]]:
    """Return the prompt text with a generation prompt, and the images in marker order."""
    environment = ImmutableSandboxedEnvironment(
        trim_blocks=True,
        lstrip_blocks=True,
        extensions=[jinja2.ext.loopcontrols],
    )
    environment.filters["tojson"] = _tojson
    try:
        text = environment.from_string(template).render(
            messages=[_template_message(message, marker) for message in messages],
            add_generation_prompt=True,
            bos_token=bos_token,
            eos_token=eos_token,
            raise_exception=_raise_template_error,
        )
    except jinja2.TemplateError as exc:
        raise ModelError(f"the model's chat template failed to render: {exc}") from exc
    images = [image for message in messages for image in message.images]
    if text.count(marker) != len(images):
        raise ModelError(
            f"the chat template rendered {text.count(marker)} image markers for "
            f"{len(images)} images; it must render every text part"
        )
    return text, images


def _template_message(message: Message, marker: str) -> dict[str, Any]:
    parts = [
        {"type": "text", "text": marker if isinstance(part, ImagePart) else part.text}
        for part in message.content
    ]
    return {"role": message.role, "content": parts}


def _tojson(value: Any, indent: int | None = None) -> str:
    # Hugging Face's templates expect tojson to keep non-ASCII text as written.
    return json.dumps(value, ensure_ascii=False, indent=indent)


def _raise_template_error(message: str) -> None:
    raise jinja2.TemplateError(message)
