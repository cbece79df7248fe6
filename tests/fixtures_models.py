"""Model fixtures: the tiny random-weight Qwen3-VL pair, written once and loaded once per session.

The loaded models use a small image budget and short grammar strings, so each call
takes tens of milliseconds on a CPU. Tests that depend on the KV cache state call
`clear_cache()` first, because the models are shared.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

from agent.models.tiny import TinyModelPaths, write_tiny_models

if TYPE_CHECKING:
    # Imported lazily below: loading llama.cpp's shared library is only worth it for
    # the tests that run a model.
    from agent.models.llama import LlamaCppModel

TEST_N_CTX = 4096
TEST_IMAGE_MIN_TOKENS = 16
TEST_IMAGE_MAX_TOKENS = 256


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> TinyModelPaths:
    """Write instruct.gguf, thinking.gguf and their mmproj files to a session temp folder."""
    return write_tiny_models(tmp_path_factory.mktemp("tiny-qwen3vl"))


def load_tiny_model(paths: TinyModelPaths, variant: str, **overrides: object) -> LlamaCppModel:
    """Load one tiny variant with the test defaults; keyword arguments override them."""
    from agent.models.llama import LlamaCppModel

    model_path, mmproj_path = paths.pair(variant)
    options: dict[str, object] = {
        "thinking": variant == "thinking",
        "n_ctx": TEST_N_CTX,
        "image_min_tokens": TEST_IMAGE_MIN_TOKENS,
        "image_max_tokens": TEST_IMAGE_MAX_TOKENS,
        "max_prelude_chars": 0,
        "max_string_chars": 16,
        "n_threads": 2,
        "seed": 7,
    }
    options.update(overrides)
    return LlamaCppModel(model_path, mmproj_path, **options)  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def tiny_instruct(tiny_models: TinyModelPaths) -> Iterator[LlamaCppModel]:
    """The tiny Instruct model, loaded once for the session."""
    model = load_tiny_model(tiny_models, "instruct")
    yield model
    model.close()


@pytest.fixture(scope="session")
def tiny_thinking(tiny_models: TinyModelPaths) -> Iterator[LlamaCppModel]:
    """The tiny Thinking model, loaded once for the session."""
    model = load_tiny_model(tiny_models, "thinking")
    yield model
    model.close()
