"""The in-process llama.cpp backend, run for real on the tiny Qwen3-VL model."""

from __future__ import annotations

import dataclasses
import logging
import math

import llama_cpp
import numpy as np
import pytest
from PIL import Image

from agent.actions import action_point
from agent.errors import ConfigError, ContextOverflowError, ModelError
from agent.models.base import ChatModel, ChatRequest, ImagePart, Message, TextPart
from agent.models.grammar import tool_call_grammar
from agent.models.images import (
    PreparedImageCache,
    TokenBudget,
    fit_to_budget,
    image_tokens,
    resize_to_budget,
)
from agent.models.llama import LlamaCppModel
from agent.models.sampling import INSTRUCT_SAMPLING, THINKING_SAMPLING, SamplingParams, TokenSampler
from agent.parsing import ReplyStatus, parse_reply
from tests.fixtures_models import TEST_IMAGE_MAX_TOKENS, TEST_IMAGE_MIN_TOKENS, load_tiny_model

TEST_BUDGET = TokenBudget(TEST_IMAGE_MIN_TOKENS, TEST_IMAGE_MAX_TOKENS)
SYSTEM = Message.text("system", "You control a computer. Answer with one computer_use tool call.")


def noise(width: int, height: int, seed: int = 0) -> Image.Image:
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    return Image.fromarray(pixels)


def user(image: Image.Image, text: str) -> Message:
    return Message("user", (ImagePart(image), TextPart(text)))


def constrained(*messages: Message, **options: object) -> ChatRequest:
    settings: dict[str, object] = {
        "max_tokens": 200,
        "temperature": 0.0,
        "constrain_tool_call": True,
    }
    settings.update(options)
    return ChatRequest(messages=messages, **settings)  # type: ignore[arg-type]


# --- image sizing ------------------------------------------------------------

RESIZE_CASES = [
    ("tiny 20x20 grows to the minimum", (20, 20), (1024, 1024)),
    ("1280x800 grows just past 1024 tokens", (1280, 800), (1312, 832)),
    ("1920x1080 rounds to 1088 rows", (1920, 1080), (1920, 1088)),
    ("3840x2160 shrinks under 2048 tokens", (3840, 2160), (1920, 1056)),
    ("square 1024 keeps its size", (1024, 1024), (1024, 1024)),
    ("wide strip is clamped to 200:1", (10000, 10), (12800, 64)),
    ("one pixel line is clamped", (100000, 1), (6400, 32)),
    ("tall strip keeps its aspect", (20, 4000), (96, 14496)),
]


@pytest.mark.parametrize(
    ("case", "size", "expected"), RESIZE_CASES, ids=[case[0] for case in RESIZE_CASES]
)
def test_resize_table(case: str, size: tuple[int, int], expected: tuple[int, int]) -> None:
    assert fit_to_budget(*size, TokenBudget()) == expected


@pytest.mark.parametrize(
    "size",
    [(20, 20), (640, 400), (1280, 800), (1366, 768), (2560, 1600), (3840, 2160), (800, 1280)],
)
@pytest.mark.parametrize("budget", [TokenBudget(), TokenBudget(16, 256), TokenBudget(1, 4)])
def test_resize_stays_in_budget(size: tuple[int, int], budget: TokenBudget) -> None:
    width, height = fit_to_budget(*size, budget)

    assert width % 32 == 0
    assert height % 32 == 0
    assert budget.min_tokens <= image_tokens(width, height) <= budget.max_tokens
    if budget.max_tokens >= 16:
        assert abs(math.log((width / height) / (size[0] / size[1]))) < 0.25


def test_resize_returns_rgb_of_chosen_size() -> None:
    image = Image.new("RGBA", (1280, 800), (10, 20, 30, 255))

    resized = resize_to_budget(image, TokenBudget())

    assert resized.mode == "RGB"
    assert resized.size == (1312, 832)


def test_prepared_images_are_cached_by_object() -> None:
    cache = PreparedImageCache(TokenBudget(16, 256))
    image = noise(640, 400, 1)

    first = cache.prepare(image)
    again = cache.prepare(image)
    twin = cache.prepare(image.copy())
    other = cache.prepare(noise(640, 400, 2))

    assert again is first
    assert twin is not first
    assert twin.key == first.key
    assert other.key != first.key
    assert first.image.size == fit_to_budget(640, 400, TokenBudget(16, 256))


def test_invalid_budget_is_rejected() -> None:
    with pytest.raises(ValueError, match="image token budget"):
        TokenBudget(0, 10)
    with pytest.raises(ValueError, match="image token budget"):
        TokenBudget(300, 200)
    with pytest.raises(ValueError, match="image size"):
        fit_to_budget(0, 10, TokenBudget())


# --- configuration -----------------------------------------------------------


def test_bad_options_raise_config_error(tiny_models) -> None:
    paths = tiny_models.pair("instruct")
    with pytest.raises(ConfigError, match="image token budget"):
        LlamaCppModel(*paths, image_min_tokens=4096, image_max_tokens=1024)
    with pytest.raises(ConfigError, match="n_batch"):
        LlamaCppModel(*paths, n_batch=256, image_max_tokens=1024)
    with pytest.raises(ConfigError, match="kv_cache_type"):
        LlamaCppModel(*paths, kv_cache_type="q3")
    with pytest.raises(ConfigError, match="not found"):
        LlamaCppModel(paths[0].with_name("missing.gguf"), paths[1])
    with pytest.raises(ConfigError, match="mmproj"):
        LlamaCppModel(paths[0], paths[1].with_name("missing.gguf"), n_ctx=2048)


def test_batch_holds_the_largest_image(tiny_instruct) -> None:
    assert tiny_instruct.n_batch == 512
    assert tiny_instruct.n_batch >= TEST_IMAGE_MAX_TOKENS


def test_sampling_defaults_follow_model_cards(tiny_instruct, tiny_thinking) -> None:
    assert tiny_instruct.sampling == INSTRUCT_SAMPLING
    assert tiny_thinking.sampling == THINKING_SAMPLING
    assert (
        SamplingParams(temperature=0.7, top_p=0.8, top_k=20, presence_penalty=1.5)
        == INSTRUCT_SAMPLING
    )
    assert SamplingParams(temperature=1.0, top_p=0.95, top_k=20) == THINKING_SAMPLING
    assert isinstance(tiny_instruct, ChatModel)


# --- inference -----------------------------------------------------------------

SCREENS = [(20, 20), (1280, 800), (3840, 2160), (4000, 20), (24, 3000)]


@pytest.mark.parametrize("size", SCREENS, ids=[f"{w}x{h}" for w, h in SCREENS])
def test_any_screen_size_gives_a_valid_call(tiny_instruct, size: tuple[int, int]) -> None:
    reply = tiny_instruct.complete(constrained(SYSTEM, user(noise(*size), "Open the menu.")))
    parsed = parse_reply(reply.text)

    assert parsed.status is ReplyStatus.OK, (reply.text, parsed.error)
    assert reply.usage.image_tokens == image_tokens(*fit_to_budget(*size, TEST_BUDGET))


@pytest.mark.parametrize("seed", range(6))
def test_sampled_calls_stay_valid(tiny_instruct, seed: int) -> None:
    request = constrained(
        SYSTEM, user(noise(320, 200, seed), f"Task {seed}."), temperature=1.0, seed=seed
    )

    reply = tiny_instruct.complete(request)
    parsed = parse_reply(reply.text)

    assert parsed.status is ReplyStatus.OK, (reply.text, parsed.error)
    assert parsed.action is not None
    point = action_point(parsed.action)
    if point is not None:
        assert 0 <= point[0] <= 1000
        assert 0 <= point[1] <= 1000


def test_screenshots_skip_png_encoding(tiny_instruct, monkeypatch: pytest.MonkeyPatch) -> None:
    def fail_save(*args: object, **kwargs: object) -> None:
        raise AssertionError("the backend encoded an image file")

    monkeypatch.setattr(Image.Image, "save", fail_save)

    reply = tiny_instruct.complete(constrained(SYSTEM, user(noise(640, 400, 21), "Raw pixels.")))

    assert reply.usage.image_tokens > 0


def test_usage_counts_every_image_token(tiny_instruct) -> None:
    tiny_instruct.clear_cache()
    first, second = noise(640, 400, 1), noise(300, 300, 2)
    expected = sum(
        image_tokens(*fit_to_budget(*image.size, TEST_BUDGET)) for image in (first, second)
    )

    reply = tiny_instruct.complete(constrained(SYSTEM, user(first, "a"), user(second, "b")))

    assert reply.usage.image_tokens == expected
    assert reply.usage.prompt_tokens > expected
    assert reply.usage.evaluated_tokens == reply.usage.prompt_tokens
    assert reply.usage.completion_tokens > 0
    assert set(reply.timings) == {
        "image_encode_s",
        "prompt_s",
        "decode_s",
        "decode_tokens_per_s",
        "total_s",
    }


def test_context_overflow_raises_before_decode(tiny_instruct) -> None:
    small = (SYSTEM, user(noise(64, 64), "small"))
    tiny_instruct.clear_cache()
    tiny_instruct.complete(constrained(*small, max_tokens=5))
    screens = [user(noise(512, 512, seed), f"step {seed}") for seed in range(20)]

    with pytest.raises(ContextOverflowError, match="more than the context of 4096") as raised:
        tiny_instruct.complete(constrained(SYSTEM, *screens))
    for option in ("--history-images", "--image-tokens MIN:MAX", "--context TOKENS"):
        assert option in str(raised.value)
    with pytest.raises(ContextOverflowError, match="max_tokens 5000"):
        tiny_instruct.complete(constrained(*small, max_tokens=5000))

    # Nothing was decoded for the rejected prompts, so the cache still contains the small one.
    again = tiny_instruct.complete(constrained(*small, max_tokens=5))
    assert again.usage.evaluated_tokens < 10


def test_prefix_reuse_matches_fresh_evaluation(tiny_instruct) -> None:
    tiny_instruct.clear_cache()
    first_turn = (SYSTEM, user(noise(640, 400, 11), "Open the settings."))
    first = tiny_instruct.complete(constrained(*first_turn))
    second_turn = (
        *first_turn,
        Message.text("assistant", first.text),
        user(noise(640, 400, 12), "Now save."),
    )

    reused = tiny_instruct.complete(constrained(*second_turn))
    tiny_instruct.clear_cache()
    fresh = tiny_instruct.complete(constrained(*second_turn))

    new_image = image_tokens(*fit_to_budget(640, 400, TEST_BUDGET))
    assert reused.usage.prompt_tokens == fresh.usage.prompt_tokens
    assert reused.usage.evaluated_tokens <= reused.usage.prompt_tokens - first.usage.prompt_tokens
    assert reused.usage.evaluated_tokens >= new_image
    assert fresh.usage.evaluated_tokens == fresh.usage.prompt_tokens
    assert reused.text == fresh.text


def test_same_prompt_twice_evaluates_one_token(tiny_instruct) -> None:
    request = constrained(SYSTEM, user(noise(200, 200, 5), "Again."))

    first = tiny_instruct.complete(request)
    second = tiny_instruct.complete(request)

    assert second.usage.evaluated_tokens == 1
    assert second.timings["image_encode_s"] == 0.0
    assert second.text == first.text


# --- Thinking model --------------------------------------------------------------


def test_reasoning_budget_closes_think(tiny_thinking) -> None:
    def run(budget: int):
        request = ChatRequest(
            messages=(SYSTEM, user(noise(320, 200, 4), "Think, then act.")),
            max_tokens=60,
            temperature=0.0,
            reasoning_budget=budget,
        )
        return tiny_thinking.complete(request)

    short, long = run(8), run(24)

    assert "</think>" in short.text
    assert short.reasoning
    assert long.reasoning.startswith(short.reasoning)
    assert len(long.reasoning) > len(short.reasoning)
    assert short.text.partition("</think>")[0].endswith("\n")


def test_thinking_call_parses_after_reasoning(tiny_thinking) -> None:
    request = constrained(
        SYSTEM, user(noise(320, 200, 6), "Click OK."), max_tokens=400, reasoning_budget=30
    )

    reply = tiny_thinking.complete(request)
    parsed = parse_reply(reply.text, thinking_opened=True)

    assert parsed.status is ReplyStatus.OK, (reply.text, parsed.error)
    assert reply.reasoning
    assert reply.content.startswith("<tool_call>")


def test_thinking_keeps_room_for_the_action(tiny_thinking) -> None:
    request = constrained(SYSTEM, user(noise(320, 200, 8), "Click OK."), max_tokens=200)

    reply = tiny_thinking.complete(request)

    assert parse_reply(reply.text, thinking_opened=True).status is ReplyStatus.OK, reply.text


def test_thinking_without_budget_is_truncated(tiny_thinking) -> None:
    request = ChatRequest(
        messages=(SYSTEM, user(noise(64, 64), "Go.")), max_tokens=20, temperature=0.0
    )

    reply = tiny_thinking.complete(request)

    assert reply.finish_reason == "length"
    assert reply.usage.completion_tokens == 20
    assert parse_reply(reply.text, thinking_opened=True).status is ReplyStatus.TRUNCATED


# --- grammar -------------------------------------------------------------------

CALL = '<tool_call>\n{{"name": "computer_use", "arguments": {}}}\n</tool_call>'
GRAMMAR_CASES = [
    ("click", CALL.format('{"action": "left_click", "coordinate": [1000, 0]}'), True),
    ("click at pointer", CALL.format('{"action": "left_click"}'), True),
    (
        "compact json",
        CALL.format('{"action":"double_click","coordinate":[5,999]}').replace('": ', '":'),
        True,
    ),
    ("chord", CALL.format('{"action": "key", "keys": ["ctrl", "shift", "t"]}'), True),
    ("type", CALL.format('{"action": "type", "text": "hi \\"you\\""}'), True),
    ("scroll", CALL.format('{"action": "scroll", "pixels": -300, "coordinate": [1, 2]}'), True),
    ("largest scroll", CALL.format('{"action": "hscroll", "pixels": -10000}'), True),
    ("scroll too far", CALL.format('{"action": "scroll", "pixels": 10001}'), False),
    ("wait", CALL.format('{"action": "wait", "time": 60}'), True),
    ("terminate", CALL.format('{"action": "terminate", "status": "failure"}'), True),
    ("action line first", "Action: click OK.\n" + CALL.format('{"action": "left_click"}'), True),
    ("x above 1000", CALL.format('{"action": "left_click", "coordinate": [1001, 0]}'), False),
    ("negative y", CALL.format('{"action": "left_click", "coordinate": [10, -1]}'), False),
    ("fraction", CALL.format('{"action": "left_click", "coordinate": [10.5, 1]}'), False),
    ("three numbers", CALL.format('{"action": "mouse_move", "coordinate": [1, 2, 3]}'), False),
    ("unknown key", CALL.format('{"action": "key", "keys": ["hyper"]}'), False),
    ("wait too long", CALL.format('{"action": "wait", "time": 61}'), False),
    ("unknown action", CALL.format('{"action": "jump"}'), False),
    ("bad status", CALL.format('{"action": "terminate", "status": "done"}'), False),
    ("no tags", '{"name": "computer_use", "arguments": {"action": "left_click"}}', False),
]


@pytest.fixture(scope="module")
def vocab_only(tiny_models):
    llm = llama_cpp.Llama(str(tiny_models.instruct), vocab_only=True, verbose=False)
    yield llm
    llm.close()


def grammar_accepts(llm: llama_cpp.Llama, grammar: str, text: str) -> bool:
    """Feed `text` token by token through the grammar; True when all of it fits and it may end."""
    vocab = llama_cpp.llama_model_get_vocab(llm.model)
    sampler = TokenSampler(vocab, llm.n_vocab(), SamplingParams(temperature=0.0), grammar=grammar)
    try:
        for token in llm.tokenize(text.encode(), add_bos=False, special=True):
            if not sampler.allows(token):
                return False
            sampler.accept(token)
        return sampler.allows(llm.token_eos())
    finally:
        sampler.close()


@pytest.mark.parametrize(
    ("case", "text", "valid"), GRAMMAR_CASES, ids=[case[0] for case in GRAMMAR_CASES]
)
def test_instruct_grammar(vocab_only, case: str, text: str, valid: bool) -> None:
    assert grammar_accepts(vocab_only, tool_call_grammar(thinking=False), text) is valid


THINKING_CASES = [
    (
        "reasoning then call",
        "I see a button.\n</think>\n\n" + CALL.format('{"action": "left_click"}'),
        True,
    ),
    ("empty reasoning", "</think>\n\n" + CALL.format('{"action": "left_click"}'), True),
    (
        "tag text inside reasoning",
        "maybe <tool_call> later\n</think>\n" + CALL.format('{"action": "left_click"}'),
        True,
    ),
    ("no closing tag", CALL.format('{"action": "left_click"}'), False),
    (
        "bad call after reasoning",
        "ok\n</think>\n" + CALL.format('{"action": "left_click", "coordinate": [1, 2000]}'),
        False,
    ),
]


@pytest.mark.parametrize(
    ("case", "text", "valid"), THINKING_CASES, ids=[case[0] for case in THINKING_CASES]
)
def test_thinking_grammar(vocab_only, case: str, text: str, valid: bool) -> None:
    assert grammar_accepts(vocab_only, tool_call_grammar(thinking=True), text) is valid


def test_string_limit(vocab_only) -> None:
    grammar = tool_call_grammar(thinking=False, max_string_chars=3)

    assert grammar_accepts(vocab_only, grammar, CALL.format('{"action": "type", "text": "abc"}'))
    assert not grammar_accepts(
        vocab_only, grammar, CALL.format('{"action": "type", "text": "abcd"}')
    )


# --- loading and logs ------------------------------------------------------------


def test_load_warm_up_and_close(tiny_models) -> None:
    # The default prelude and string limits, and a quantized KV cache.
    model = load_tiny_model(
        tiny_models, "instruct", kv_cache_type="q8_0", max_prelude_chars=256, max_string_chars=500
    )
    request = constrained(SYSTEM, user(noise(100, 100), "Go."), max_tokens=1500)

    reply = model.complete(request)
    model.close()

    assert reply.usage.evaluated_tokens == reply.usage.prompt_tokens
    assert parse_reply(reply.text).status is ReplyStatus.OK
    with pytest.raises(ModelError, match="closed"):
        model.complete(request)


def test_mtmd_logs_stay_off_stderr(tiny_instruct, capfd: pytest.CaptureFixture[str]) -> None:
    tiny_instruct.complete(constrained(SYSTEM, user(noise(96, 96, 9), "Quiet.")))

    captured = capfd.readouterr()
    assert "encod" not in captured.err
    assert "image" not in captured.err


def test_generated_text_streams_in_pieces(tiny_thinking) -> None:
    pieces: list[str] = []
    request = constrained(SYSTEM, user(noise(320, 200, 5), "Stream it."))
    reply = tiny_thinking.complete(dataclasses.replace(request, on_text=pieces.append))

    assert len(pieces) > 1
    assert "".join(pieces) == reply.text


def test_cancelled_call_stops_early(tiny_instruct) -> None:
    # Constrained replies are ASCII, so every token streams as one piece.
    pieces: list[str] = []
    request = constrained(
        SYSTEM,
        user(noise(320, 200, 6), "Stop soon."),
        on_text=pieces.append,
        cancelled=lambda: len(pieces) >= 3,
    )
    reply = tiny_instruct.complete(request)

    assert reply.finish_reason == "cancelled"
    assert reply.usage.completion_tokens == 3


def test_cancel_during_prompt_keeps_cache(tiny_instruct, capfd: pytest.CaptureFixture[str]) -> None:
    """A cancel inside prompt evaluation keeps only finished entries, and the next call reuses them.

    The cancel fires at the n-th poll, for many n, so it lands at different points: between
    chunks, or inside the decode of a text chunk or of the image.
    """
    request = constrained(SYSTEM, user(noise(320, 200, 7), "Cancel me."))
    tiny_instruct.clear_cache()
    expected = tiny_instruct.complete(request)
    prompt_tokens = expected.usage.prompt_tokens
    stopped_at: set[int] = set()
    for n in (1, 5, 20, 40, 60, 80, 100, 120, 150, 200, 250):
        polls = iter(range(100_000))
        tiny_instruct.clear_cache()
        cancelled = tiny_instruct.complete(
            dataclasses.replace(request, cancelled=lambda polls=polls, n=n: next(polls) >= n)
        )
        again = tiny_instruct.complete(request)

        assert again.text == expected.text, f"cancelled at poll {n}"
        if cancelled.finish_reason != "cancelled" or cancelled.usage.completion_tokens:
            continue
        evaluated = cancelled.usage.evaluated_tokens
        assert evaluated + again.usage.evaluated_tokens == prompt_tokens, f"cancelled at poll {n}"
        stopped_at.add(evaluated)

    assert 0 in stopped_at
    assert len([tokens for tokens in stopped_at if 0 < tokens < prompt_tokens]) >= 2
    assert "llama.cpp" not in capfd.readouterr().err


def test_llama_log_levels(caplog: pytest.LogCaptureFixture) -> None:
    """llama.cpp's ERROR and WARN lines keep their level; continued lines follow the previous one."""
    from agent.models.mtmd import _log_llama

    caplog.set_level(logging.DEBUG, logger="agent.models.mtmd")
    for level, text in ((4, b"failed\n"), (5, b" more\n"), (3, b"careful\n"), (2, b"info\n")):
        _log_llama(level, text, None)

    levels = [(record.levelno, record.getMessage()) for record in caplog.records]
    assert levels == [
        (logging.ERROR, "llama.cpp: failed"),
        (logging.ERROR, "llama.cpp:  more"),
        (logging.WARNING, "llama.cpp: careful"),
        (logging.DEBUG, "llama.cpp: info"),
    ]
