"""The in-process backend: a Qwen3-VL GGUF model and its mmproj run by llama-cpp-python.

The model loads once, warms up, and then serves every step of a run. Each call renders
the GGUF's own chat template and resizes screenshots to the image-token budget. It
checks the context budget from real image token counts before any decoding, evaluates
only the part of the prompt that the KV cache lacks, and samples with an optional
tool-call grammar.

Timings in `ModelReply.timings`, in seconds unless named otherwise: `image_encode_s`
(vision encoder only), `prompt_s` (prompt evaluation, images included), `decode_s`,
`decode_tokens_per_s` and `total_s`.
"""

from __future__ import annotations

import codecs
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import llama_cpp
from PIL import Image

from agent.errors import ConfigError, ContextOverflowError, ModelError
from agent.models.base import ChatRequest, ImagePart, Message, ModelReply, TextPart, Usage
from agent.models.chat_template import render_prompt
from agent.models.grammar import THINK_CLOSE, tool_call_grammar
from agent.models.images import PreparedImageCache, TokenBudget
from agent.models.mtmd import EvalStats, MtmdSession, route_native_logs
from agent.models.sampling import INSTRUCT_SAMPLING, THINKING_SAMPLING, SamplingParams, TokenSampler

logger = logging.getLogger(__name__)

KV_CACHE_TYPES = {
    "f32": llama_cpp.GGML_TYPE_F32,
    "f16": llama_cpp.GGML_TYPE_F16,
    "q8_0": llama_cpp.GGML_TYPE_Q8_0,
    "q5_1": llama_cpp.GGML_TYPE_Q5_1,
    "q5_0": llama_cpp.GGML_TYPE_Q5_0,
    "q4_1": llama_cpp.GGML_TYPE_Q4_1,
    "q4_0": llama_cpp.GGML_TYPE_Q4_0,
}

# Tokens kept free for the tool call when a constrained Thinking model's reasoning is
# closed early: a `computer_use` call is 30-60 tokens with Qwen's vocabulary.
ACTION_TOKEN_RESERVE = 128
# Appended when the reasoning budget is spent, in the layout Qwen3 Thinking models write.
REASONING_CLOSE = f"\n{THINK_CLOSE}\n\n"


@dataclass
class _Generation:
    tokens: list[int] = field(default_factory=list)
    data: bytearray = field(default_factory=bytearray)
    finish_reason: str = "length"
    reasoning_open: bool = False
    reasoning_tokens: int = 0
    # Turns the byte stream into text for `ChatRequest.on_text`, holding back split UTF-8 sequences.
    decoder: codecs.IncrementalDecoder = field(
        default_factory=lambda: codecs.getincrementaldecoder("utf-8")(errors="replace")
    )


class LlamaCppModel:
    """A Qwen3-VL model run in-process by llama.cpp; implements `ChatModel`.

    - `thinking` selects the Thinking layout: the prompt opens `<think>`, replies are
      split at `</think>`, and the reasoning budget applies.
    - `image_min_tokens`..`image_max_tokens` is the image-token budget per screenshot.
      `n_batch` (also n_ubatch) defaults to max(512, image_max_tokens).
    - `kv_cache_type` is one of `KV_CACHE_TYPES`; quantized types need a head size that is
      a multiple of 32. `n_gpu_layers` -1 offloads every layer, 0 none.
    - `sampling` replaces the model card defaults. A request's `temperature` overrides
      only the temperature, and its `seed` overrides `seed`.
    - `max_prelude_chars` and `max_string_chars` bound the free text before a constrained
      tool call and each JSON string in it.
    - `chat_template` replaces the GGUF's `tokenizer.chat_template`.
    """

    def __init__(
        self,
        model_path: str | Path,
        mmproj_path: str | Path,
        *,
        thinking: bool = False,
        name: str | None = None,
        n_ctx: int = 16384,
        image_min_tokens: int = 1024,
        image_max_tokens: int = 2048,
        n_batch: int | None = None,
        kv_cache_type: str = "f16",
        n_gpu_layers: int = -1,
        n_threads: int | None = None,
        sampling: SamplingParams | None = None,
        max_prelude_chars: int = 256,
        max_string_chars: int = 500,
        chat_template: str | None = None,
        seed: int | None = None,
        warm_up: bool = True,
    ) -> None:
        self.thinking = thinking
        self.name = name or Path(model_path).stem
        self.budget = _image_budget(image_min_tokens, image_max_tokens)
        self._images = PreparedImageCache(self.budget)
        self.n_ctx = n_ctx
        self.n_batch = _batch_size(n_batch, image_max_tokens, n_ctx)
        self.sampling = sampling or (THINKING_SAMPLING if thinking else INSTRUCT_SAMPLING)
        self.seed = seed
        self._grammar = tool_call_grammar(
            thinking=thinking,
            max_prelude_chars=max_prelude_chars,
            max_string_chars=max_string_chars,
        )
        self._lock = threading.Lock()
        self._closed = False

        self._llama = _load_llama(
            model_path,
            n_ctx=n_ctx,
            n_batch=self.n_batch,
            kv_cache_type=kv_cache_type,
            n_gpu_layers=n_gpu_layers,
            n_threads=n_threads,
        )
        try:
            self._template = chat_template or _gguf_chat_template(self._llama, model_path)
            self._session = self._open_session(mmproj_path, image_max_tokens, n_gpu_layers != 0)
        except BaseException:
            self._llama.close()
            raise
        self._vocab = llama_cpp.llama_model_get_vocab(self._llama.model)
        self._reasoning_close = self._llama.tokenize(
            REASONING_CLOSE.encode(), add_bos=False, special=True
        )

        if warm_up:
            try:
                self.warm_up()
            except BaseException:
                self.close()
                raise

    def _open_session(
        self, mmproj_path: str | Path, image_max_tokens: int, use_gpu: bool
    ) -> MtmdSession:
        route_native_logs()
        return MtmdSession(
            self._llama,
            str(_existing(mmproj_path, "mmproj")),
            n_batch=self.n_batch,
            image_max_tokens=image_max_tokens,
            use_gpu=use_gpu,
            n_threads=self._llama.n_threads,
        )

    def complete(self, request: ChatRequest) -> ModelReply:
        """Generate the reply to one chat request, reusing the KV cache of the previous call."""
        with self._lock:
            return self._complete(request)

    def warm_up(self) -> None:
        """Run one small image and one token through the model, then empty the KV cache.

        The first encode and decode allocate compute buffers; doing it at load time keeps
        the first agent step from being the slowest.
        """
        started = time.perf_counter()
        image = Image.new("RGB", (64, 64), (128, 128, 128))
        message = Message(role="user", content=(ImagePart(image), TextPart("Describe the screen.")))
        self.complete(ChatRequest(messages=(message,), max_tokens=1, temperature=0.0))
        self.clear_cache()
        logger.info("warmed up %s in %.2f s", self.name, time.perf_counter() - started)

    def clear_cache(self) -> None:
        """Empty the KV cache, so the next call evaluates its whole prompt."""
        with self._lock:
            if not self._closed:
                self._session.clear()

    def close(self) -> None:
        """Free the vision context, the llama.cpp context and the model."""
        with self._lock:
            if not self._closed:
                self._closed = True
                self._session.close()
                self._llama.close()

    def __enter__(self) -> LlamaCppModel:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # --- one request ---------------------------------------------------------

    def _complete(self, request: ChatRequest) -> ModelReply:
        if self._closed:
            raise ModelError(f"the model {self.name} is closed")
        started = time.perf_counter()
        text, images = render_prompt(self._template, request.messages, marker=self._session.marker)
        prepared = [self._images.prepare(image) for image in images]
        logger.debug("prompt for %s:\n%s", self.name, text)
        with self._session.tokenize(text, prepared) as prompt:
            self._check_context(prompt.cells, request.max_tokens)
            stats = self._session.evaluate(prompt, request.cancelled)
            prompt_cells, image_cells = prompt.cells, prompt.image_cells
        decode_started = time.perf_counter()
        if stats.cancelled:
            # The prompt's last logits were never computed, so nothing can be sampled.
            generation = _Generation(reasoning_open=self.thinking, finish_reason="cancelled")
        else:
            generation = self._generate(request)
        decode_s = time.perf_counter() - decode_started
        usage = Usage(
            prompt_tokens=prompt_cells,
            completion_tokens=len(generation.tokens),
            image_tokens=image_cells,
            evaluated_tokens=stats.evaluated_cells,
        )
        return self._reply(
            generation, usage, _timings(stats, decode_s, len(generation.tokens), started)
        )

    def _check_context(self, prompt_cells: int, max_tokens: int) -> None:
        if prompt_cells + max_tokens > self.n_ctx:
            raise ContextOverflowError(
                f"the prompt needs {prompt_cells} tokens (images counted one per 32x32 px) plus "
                f"max_tokens {max_tokens}, more than the context of {self.n_ctx} tokens. In "
                "`agent run`, keep fewer screenshots with --history-images, lower the MAX of "
                "--image-tokens MIN:MAX or raise --context TOKENS"
            )

    def _generate(self, request: ChatRequest) -> _Generation:
        generation = _Generation(reasoning_open=self.thinking)
        grammar = self._grammar if request.constrain_tool_call else None
        params = self.sampling.with_temperature(request.temperature)
        seed = request.seed if request.seed is not None else self.seed
        budget = self._reasoning_budget(request)
        sampler = TokenSampler(
            self._vocab, self._llama.n_vocab(), params, grammar=grammar, seed=seed
        )
        try:
            while len(generation.tokens) < request.max_tokens:
                if request.cancelled is not None and request.cancelled():
                    generation.finish_reason = "cancelled"
                    break
                if (
                    generation.reasoning_open
                    and generation.reasoning_tokens >= budget
                    and _utf8_complete(generation.data)
                ):
                    self._close_reasoning(sampler, generation, request)
                    continue
                token = sampler.sample(self._llama.ctx)
                if llama_cpp.llama_vocab_is_eog(self._vocab, token):
                    generation.finish_reason = "stop"
                    break
                sampler.accept(token)
                self._append(generation, token, request.max_tokens, request.on_text)
        finally:
            sampler.close()
        return generation

    def _reasoning_budget(self, request: ChatRequest) -> float:
        """Return the reasoning tokens allowed before `</think>` is forced, or infinity."""
        if not self.thinking:
            return float("inf")
        budget = float("inf") if request.reasoning_budget is None else request.reasoning_budget
        if request.constrain_tool_call:
            budget = min(budget, max(0, request.max_tokens - ACTION_TOKEN_RESERVE))
        return budget

    def _close_reasoning(
        self, sampler: TokenSampler, generation: _Generation, request: ChatRequest
    ) -> None:
        logger.debug(
            "reasoning budget of %s spent after %d tokens; closing it",
            self.name,
            generation.reasoning_tokens,
        )
        for token in self._reasoning_close:
            if not sampler.allows(token):
                raise ModelError(
                    f"the grammar rejected the forced reasoning close {REASONING_CLOSE!r}"
                )
            sampler.accept(token)
            self._append(generation, token, request.max_tokens, request.on_text)
        generation.reasoning_open = False

    def _append(
        self,
        generation: _Generation,
        token: int,
        max_tokens: int,
        on_text: Callable[[str], None] | None = None,
    ) -> None:
        """Record a token and evaluate it, unless it is the last one `max_tokens` allows."""
        generation.tokens.append(token)
        piece = self._llama.detokenize([token])
        generation.data += piece
        if on_text is not None:
            text = generation.decoder.decode(piece)
            if text:
                on_text(text)
        if generation.reasoning_open:
            generation.reasoning_tokens += 1
            generation.reasoning_open = THINK_CLOSE.encode() not in generation.data
        if len(generation.tokens) < max_tokens:
            self._session.decode_token(token)

    def _reply(
        self, generation: _Generation, usage: Usage, timings: dict[str, float]
    ) -> ModelReply:
        text = generation.data.decode("utf-8", errors="replace")
        reasoning, content = "", text.strip()
        if self.thinking:
            head, closed, tail = text.partition(THINK_CLOSE)
            reasoning, content = head.strip(), tail.strip() if closed else ""
        return ModelReply(
            text=text,
            reasoning=reasoning,
            content=content,
            usage=usage,
            timings=timings,
            finish_reason=generation.finish_reason,
        )


def _timings(stats: EvalStats, decode_s: float, tokens: int, started: float) -> dict[str, float]:
    return {
        "image_encode_s": stats.image_encode_s,
        "prompt_s": stats.eval_s,
        "decode_s": decode_s,
        "decode_tokens_per_s": tokens / decode_s if decode_s > 0 else 0.0,
        "total_s": time.perf_counter() - started,
    }


def _utf8_complete(data: bytes | bytearray) -> bool:
    """Return whether `data` does not end inside a multi-byte UTF-8 character."""
    tail = data[-4:]
    for back in range(1, len(tail) + 1):
        byte = tail[-back]
        if byte < 0x80:
            return True
        if byte >= 0xF0:
            return back >= 4
        if byte >= 0xE0:
            return back >= 3
        if byte >= 0xC0:
            return back >= 2
    return True


def _image_budget(min_tokens: int, max_tokens: int) -> TokenBudget:
    try:
        return TokenBudget(min_tokens, max_tokens)
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc


def _batch_size(n_batch: int | None, image_max_tokens: int, n_ctx: int) -> int:
    """Return n_batch (also used as n_ubatch): one micro-batch must hold the largest image.

    Splitting an image across micro-batches breaks M-RoPE positions in some llama.cpp builds.
    """
    size = n_batch if n_batch is not None else max(512, image_max_tokens)
    if size < image_max_tokens:
        raise ConfigError(
            f"n_batch {size} is smaller than image_max_tokens {image_max_tokens}; raise n_batch"
        )
    if image_max_tokens > n_ctx:
        raise ConfigError(f"image_max_tokens {image_max_tokens} exceeds n_ctx {n_ctx}; raise n_ctx")
    return min(size, n_ctx)


def _existing(path: str | Path, what: str) -> Path:
    resolved = Path(path).expanduser()
    if not resolved.is_file():
        raise ConfigError(
            f"the {what} file {resolved} was not found; run `agent models pull` or fix the path"
        )
    return resolved


def _load_llama(
    model_path: str | Path,
    *,
    n_ctx: int,
    n_batch: int,
    kv_cache_type: str,
    n_gpu_layers: int,
    n_threads: int | None,
) -> llama_cpp.Llama:
    if kv_cache_type not in KV_CACHE_TYPES:
        raise ConfigError(
            f"kv_cache_type {kv_cache_type!r} is unknown; use one of {', '.join(KV_CACHE_TYPES)}"
        )
    path = _existing(model_path, "model")
    cache_type = KV_CACHE_TYPES[kv_cache_type]
    try:
        return llama_cpp.Llama(
            str(path),
            n_ctx=n_ctx,
            n_batch=n_batch,
            n_ubatch=n_batch,
            n_gpu_layers=n_gpu_layers,
            n_threads=n_threads or max(1, (os.cpu_count() or 2) // 2),
            flash_attn=True,
            type_k=cache_type,
            type_v=cache_type,
            verbose=False,
        )
    except (ValueError, RuntimeError) as exc:
        raise ModelError(f"llama.cpp failed to load {path}: {exc}") from exc


def _gguf_chat_template(llama: llama_cpp.Llama, model_path: str | Path) -> str:
    template = llama.metadata.get("tokenizer.chat_template")
    if not template:
        raise ModelError(
            f"{model_path} has no tokenizer.chat_template; pass chat_template explicitly"
        )
    return template
