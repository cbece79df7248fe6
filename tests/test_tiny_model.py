"""The tiny random-weight Qwen3-VL generator: fast, deterministic, and loadable by llama.cpp."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import gguf
import numpy as np
import pytest
from PIL import Image

from agent.models.base import ChatRequest, ImagePart, Message, TextPart
from agent.models.chat_template import render_prompt
from agent.models.tiny import (
    DEEPSTACK_LAYERS,
    TEXT_HEAD_DIM,
    TEXT_HIDDEN,
    chat_template,
    write_tiny_models,
)
from agent.parsing import ReplyStatus, parse_reply

FILES = ("instruct.gguf", "instruct-mmproj.gguf", "thinking.gguf", "thinking-mmproj.gguf")


def _field(reader: gguf.GGUFReader, key: str) -> Any:
    return reader.fields[key].contents()


def test_writes_four_files_in_under_a_second(tmp_path: Path) -> None:
    started = time.perf_counter()
    paths = write_tiny_models(tmp_path)
    elapsed = time.perf_counter() - started

    assert sorted(path.name for path in tmp_path.iterdir()) == sorted(FILES)
    assert paths.pair("thinking") == (tmp_path / "thinking.gguf", tmp_path / "thinking-mmproj.gguf")
    assert elapsed < 1.0


def test_output_is_deterministic(tmp_path: Path) -> None:
    write_tiny_models(tmp_path / "a")
    write_tiny_models(tmp_path / "b")

    for name in FILES:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name


def test_variants_have_different_weights(tiny_models) -> None:
    assert tiny_models.instruct.read_bytes() != tiny_models.thinking.read_bytes()


def test_text_model_metadata(tiny_models) -> None:
    reader = gguf.GGUFReader(tiny_models.instruct)

    assert _field(reader, "general.architecture") == "qwen3vl"
    assert _field(reader, "qwen3vl.n_deepstack_layers") == len(DEEPSTACK_LAYERS)
    assert _field(reader, "tokenizer.ggml.model") == "gpt2"
    assert sum(_field(reader, "qwen3vl.rope.dimension_sections")) <= TEXT_HEAD_DIM // 2


def test_mmproj_output_width_matches_text_input(tiny_models) -> None:
    reader = gguf.GGUFReader(tiny_models.instruct_mmproj)
    tensors = {tensor.name: tensor for tensor in reader.tensors}
    deepstack = [
        name for name in tensors if name.startswith("v.deepstack.") and name.endswith(".fc2.weight")
    ]

    assert _field(reader, "clip.projector_type") == "qwen3vl_merger"
    assert len(deepstack) == len(DEEPSTACK_LAYERS)
    assert "v.patch_embd.weight.1" in tensors
    output_width = int(tensors["mm.2.bias"].n_elements) * (1 + len(deepstack))
    assert output_width == TEXT_HIDDEN * (1 + len(DEEPSTACK_LAYERS))


def test_special_token_types(tiny_models) -> None:
    reader = gguf.GGUFReader(tiny_models.instruct)
    tokens = _field(reader, "tokenizer.ggml.tokens")
    types = _field(reader, "tokenizer.ggml.token_type")
    kinds = dict(zip(tokens, types, strict=True))

    assert kinds["<|im_end|>"] == gguf.TokenType.CONTROL
    assert kinds["<|vision_start|>"] == gguf.TokenType.CONTROL
    assert kinds["<think>"] == gguf.TokenType.USER_DEFINED
    assert kinds["<tool_call>"] == gguf.TokenType.USER_DEFINED
    assert tokens[ord("A")] == "A"


def test_thinking_template_opens_think() -> None:
    messages = (Message.text("system", "be brief"), Message.text("user", "hi"))

    thinking, _ = render_prompt(chat_template("thinking"), messages, marker="<__media__>")
    instruct, _ = render_prompt(chat_template("instruct"), messages, marker="<__media__>")

    assert thinking.endswith("<|im_start|>assistant\n<think>\n")
    assert instruct.endswith("<|im_start|>assistant\n")
    assert instruct.startswith(
        "<|im_start|>system\nbe brief<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n"
    )


def test_template_places_images_and_drops_old_reasoning() -> None:
    image = Image.new("RGB", (8, 8))
    messages = (
        Message("user", (ImagePart(image), TextPart("first"))),
        Message.text("assistant", "old reasoning\n</think>\n\n<tool_call>x</tool_call>"),
        Message("user", (TextPart("second"), ImagePart(image))),
    )

    text, images = render_prompt(chat_template("thinking"), messages, marker="<M>")

    assert images == [image, image]
    assert "<|im_start|>user\n<M>first<|im_end|>" in text
    assert "<|im_start|>user\nsecond<M><|im_end|>" in text
    assert "old reasoning" not in text
    assert "<|im_start|>assistant\n<tool_call>x</tool_call><|im_end|>" in text


@pytest.mark.parametrize("variant", ["tiny_instruct", "tiny_thinking"])
def test_image_in_tool_call_out(variant: str, request: pytest.FixtureRequest) -> None:
    model = request.getfixturevalue(variant)
    pixels = np.random.default_rng(3).integers(0, 256, (300, 500, 3), dtype=np.uint8)
    message = Message(
        "user", (ImagePart(Image.fromarray(pixels)), TextPart("Click the OK button."))
    )

    reply = model.complete(
        ChatRequest(messages=(message,), max_tokens=200, temperature=0, constrain_tool_call=True)
    )
    parsed = parse_reply(reply.text, thinking_opened=model.thinking)

    assert parsed.status is ReplyStatus.OK, (reply.text, parsed.error)
    assert reply.finish_reason == "stop"
    assert reply.usage.image_tokens > 0
