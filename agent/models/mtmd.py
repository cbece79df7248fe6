"""A llama.cpp context plus an mtmd vision context that keep the KV cache between calls.

llama-cpp-python's chat handlers clear the KV cache and re-encode every image on every
call. An agent step repeats almost all of the previous prompt: the system prompt, earlier
screenshots and replies. This session therefore records what the KV cache contains, one
entry per text token or image, and evaluates only what follows the longest common prefix.

Positions and cells differ for images: with M-RoPE an image occupies one KV cell per
image token but advances the position by only max(grid width, grid height). Each cache
entry records both, so context budgets count cells and cache trimming uses positions.
"""

from __future__ import annotations

import ctypes
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import llama_cpp
import llama_cpp.mtmd_cpp as mtmd_cpp
import numpy as np

from agent.errors import ModelError
from agent.models.images import PreparedImage

logger = logging.getLogger(__name__)

SEQUENCE = 0
# A NULL function pointer: the helper's post-decode callback is optional.
_NO_CALLBACK = mtmd_cpp.mtmd_helper_post_decode_callback()
_NO_ABORT = llama_cpp.ggml_abort_callback()
# llama_decode's return code when the abort callback stopped it.
_DECODE_ABORTED = 2


class _Cancelled(Exception):
    """Raised inside `evaluate` when the caller cancels. The cache keeps the finished entries."""


@llama_cpp.llama_log_callback
def _log_to_debug(level: int, text: bytes, user_data: ctypes.c_void_p) -> None:
    # mtmd writes progress lines to stderr at every encode, even when llama-cpp-python is
    # quiet; they go to this module's DEBUG log instead.
    logger.debug("mtmd: %s", text.decode("utf-8", errors="replace").rstrip())


# ggml_log_level in the ggml.h that llama-cpp-python 0.3.36 bundles. llama-cpp-python's own
# table is older and treats WARN (3) as ERROR.
_GGML_WARN = 3
_GGML_ERROR = 4
_GGML_CONT = 5


class _NativeLog:
    """The llama.cpp log state: the level of the last line, and whether a requested abort runs."""

    level = logging.DEBUG
    aborting = False


@llama_cpp.llama_log_callback
def _log_llama(level: int, text: bytes, user_data: ctypes.c_void_p) -> None:
    # llama-cpp-python prints llama.cpp's log to stderr, which garbles the TUI. An aborted
    # decode warns about the KV entries it removes, which is expected after a cancel.
    if level != _GGML_CONT:
        _NativeLog.level = {_GGML_WARN: logging.WARNING, _GGML_ERROR: logging.ERROR}.get(
            level, logging.DEBUG
        )
    level_used = logging.DEBUG if _NativeLog.aborting else _NativeLog.level
    logger.log(level_used, "llama.cpp: %s", text.decode("utf-8", errors="replace").rstrip())


def route_native_logs() -> None:
    """Send llama.cpp's, mtmd's and mtmd-helper's log output to logging instead of stderr."""
    llama_cpp.llama_log_set(_log_llama, ctypes.c_void_p(0))
    mtmd_cpp.mtmd_log_set(_log_to_debug, ctypes.c_void_p(0))
    mtmd_cpp.mtmd_helper_log_set(_log_to_debug, ctypes.c_void_p(0))


@dataclass(frozen=True)
class CacheEntry:
    """One text token or one image in the KV cache.

    `key` is the token id or the image's content hash; `cells` is its KV cells and
    `positions` how far it advances the position.
    """

    key: int | str
    cells: int = 1
    positions: int = 1


@dataclass(frozen=True)
class Prompt:
    """A tokenized prompt: mtmd's chunks (owned, freed on close) and their cache entries."""

    chunks: mtmd_cpp.mtmd_input_chunks_p
    entries: tuple[CacheEntry, ...]
    # Index of the first entry of each chunk, plus the total at the end.
    chunk_starts: tuple[int, ...]

    @property
    def cells(self) -> int:
        return sum(entry.cells for entry in self.entries)

    @property
    def image_cells(self) -> int:
        return sum(entry.cells for entry in self.entries if isinstance(entry.key, str))


@dataclass(frozen=True)
class EvalStats:
    """The cost of evaluating one prompt: KV cells evaluated and reused, and seconds spent."""

    evaluated_cells: int
    reused_cells: int
    image_encode_s: float
    eval_s: float
    # True when the caller cancelled before the whole prompt was in the cache.
    cancelled: bool = False


class MtmdSession:
    """Evaluates prompts with images into sequence 0 of a llama.cpp context, reusing the cache.

    Not thread-safe: one request at a time.
    """

    def __init__(
        self,
        llama: llama_cpp.Llama,
        mmproj_path: str,
        *,
        n_batch: int,
        image_max_tokens: int,
        use_gpu: bool,
        n_threads: int,
    ) -> None:
        self._llama = llama
        self._ctx = llama.ctx
        self._n_batch = n_batch
        self._entries: list[CacheEntry] = []
        self._position = 0
        self._closed = False
        # The ctypes callback must outlive every decode that can call it.
        self._abort = _NO_ABORT
        self._mtmd = _init_mtmd(llama, mmproj_path, image_max_tokens, use_gpu, n_threads)
        self._batch = llama_cpp.llama_batch_init(n_batch, 0, 1)
        self._batch_tokens = np.ctypeslib.as_array(self._batch.token, shape=(n_batch,))
        self._batch_pos = np.ctypeslib.as_array(self._batch.pos, shape=(n_batch,))
        self._batch_logits = np.ctypeslib.as_array(self._batch.logits, shape=(n_batch,))
        for index in range(n_batch):
            self._batch.n_seq_id[index] = 1
            self._batch.seq_id[index][0] = SEQUENCE
        self.marker = mtmd_cpp.mtmd_default_marker().decode()

    @contextmanager
    def tokenize(self, text: str, images: Sequence[PreparedImage]) -> Iterator[Prompt]:
        """Tokenize `text`, whose media markers stand for `images` in order, into mtmd chunks.

        Images are passed to mtmd as raw RGB pixels, with no image file encoding.
        """
        chunks = mtmd_cpp.mtmd_input_chunks_init()
        if not chunks:
            raise ModelError("mtmd could not allocate input chunks")
        try:
            _tokenize_into(self._mtmd, chunks, text, images)
            yield _describe_chunks(chunks)
        finally:
            mtmd_cpp.mtmd_input_chunks_free(chunks)

    def evaluate(self, prompt: Prompt, cancelled: Callable[[], bool] | None = None) -> EvalStats:
        """Bring the KV cache to exactly `prompt`, evaluating only what the cache lacks.

        The last entry is always evaluated again, so the logits of the final prompt
        position are ready for sampling. `cancelled` is polled before each chunk and, through
        llama.cpp's abort callback, inside each decode. A cancelled evaluation keeps the
        entries it finished, so the next prompt reuses them.
        """
        if not prompt.entries or isinstance(prompt.entries[-1].key, str):
            raise ModelError(
                "the rendered prompt is empty or ends with an image; the chat template must "
                "end with its generation prompt"
            )
        started = time.perf_counter()
        reused = self._trim_to_common_prefix(prompt.entries)
        reused_cells = sum(entry.cells for entry in prompt.entries[:reused])
        cached_before = self.cached_cells
        encode_s = 0.0
        aborted = False
        self._set_abort(cancelled)
        try:
            for index in range(len(prompt.chunk_starts) - 1):
                start, end = prompt.chunk_starts[index], prompt.chunk_starts[index + 1]
                if end <= reused:
                    continue
                if cancelled is not None and cancelled():
                    raise _Cancelled
                chunk = mtmd_cpp.mtmd_input_chunks_get(prompt.chunks, index)
                if isinstance(prompt.entries[start].key, str):
                    encode_s += self._eval_image(chunk, prompt.entries[start])
                else:
                    keys = [entry.key for entry in prompt.entries[max(start, reused) : end]]
                    self._eval_text(
                        [int(key) for key in keys], logits_last=end == len(prompt.entries)
                    )
        except _Cancelled:
            aborted = True
            logger.info(
                "prompt evaluation cancelled after %d new cells", self.cached_cells - cached_before
            )
        finally:
            self._set_abort(None)
            _NativeLog.aborting = False
        return EvalStats(
            evaluated_cells=self.cached_cells - cached_before,
            reused_cells=reused_cells,
            image_encode_s=encode_s,
            eval_s=time.perf_counter() - started,
            cancelled=aborted,
        )

    @property
    def cached_cells(self) -> int:
        """The KV cells that hold finished entries."""
        return sum(entry.cells for entry in self._entries)

    def decode_token(self, token: int) -> None:
        """Append one generated token to the KV cache and compute its logits."""
        self._eval_text([token], logits_last=True)

    def clear(self) -> None:
        """Empty the KV cache, so the next prompt is evaluated from scratch."""
        llama_cpp.llama_memory_clear(llama_cpp.llama_get_memory(self._ctx), True)
        self._entries = []
        self._position = 0

    def close(self) -> None:
        """Free the vision context and the batch; the llama.cpp context belongs to the caller."""
        if not self._closed:
            self._closed = True
            mtmd_cpp.mtmd_free(self._mtmd)
            llama_cpp.llama_batch_free(self._batch)

    def _trim_to_common_prefix(self, entries: Sequence[CacheEntry]) -> int:
        """Drop the cached entries after the common prefix and return how many entries remain."""
        limit = min(len(entries) - 1, len(self._entries))
        common = 0
        while common < limit and self._entries[common] == entries[common]:
            common += 1
        position = sum(entry.positions for entry in entries[:common])
        memory = llama_cpp.llama_get_memory(self._ctx)
        if not llama_cpp.llama_memory_seq_rm(memory, SEQUENCE, position, -1):
            logger.warning(
                "llama.cpp could not trim the KV cache at position %d; evaluating the whole prompt",
                position,
            )
            self.clear()
            return 0
        del self._entries[common:]
        self._position = position
        return common

    def _set_abort(self, cancelled: Callable[[], bool] | None) -> None:
        """Install `cancelled` as llama.cpp's abort callback, or remove it with None."""
        if cancelled is None:
            self._abort = _NO_ABORT
        else:

            def poll(_data: ctypes.c_void_p) -> bool:
                if cancelled():
                    _NativeLog.aborting = True
                    return True
                return False

            # ggml calls this between graph nodes inside llama_decode, so keep it cheap.
            self._abort = llama_cpp.ggml_abort_callback(poll)
        llama_cpp.llama_set_abort_callback(self._ctx, self._abort, None)

    def _eval_text(self, tokens: list[int], *, logits_last: bool) -> None:
        for offset in range(0, len(tokens), self._n_batch):
            part = tokens[offset : offset + self._n_batch]
            count = len(part)
            position = self._position
            self._batch_tokens[:count] = part
            self._batch_pos[:count] = np.arange(position, position + count)
            self._batch_logits[:count] = 0
            if logits_last and offset + count == len(tokens):
                self._batch_logits[count - 1] = 1
            self._batch.n_tokens = count
            result = llama_cpp.llama_decode(self._ctx, self._batch)
            if result == _DECODE_ABORTED:
                # The batch's entries are not recorded, and the next `evaluate` trims the
                # KV cache after its common prefix, so nothing partial is reused.
                raise _Cancelled
            if result != 0:
                raise ModelError(
                    f"llama_decode failed with code {result} on {count} text tokens "
                    f"at position {position}"
                )
            self._entries.extend(CacheEntry(key=token) for token in part)
            self._position += count

    def _eval_image(self, chunk: mtmd_cpp.mtmd_input_chunk_p, entry: CacheEntry) -> float:
        if entry.cells > self._n_batch:
            raise ModelError(
                f"an image of {entry.cells} tokens does not fit in one batch of {self._n_batch}; "
                "raise n_batch or lower image_max_tokens"
            )
        started = time.perf_counter()
        if mtmd_cpp.mtmd_encode_chunk(self._mtmd, chunk) != 0:
            raise ModelError("mtmd failed to encode an image")
        encode_s = time.perf_counter() - started
        embeddings = mtmd_cpp.mtmd_get_output_embd(self._mtmd)
        new_position = llama_cpp.llama_pos(0)
        result = mtmd_cpp.mtmd_helper_decode_image_chunk(
            self._mtmd,
            self._ctx,
            chunk,
            embeddings,
            self._position,
            SEQUENCE,
            self._n_batch,
            ctypes.byref(new_position),
            _NO_CALLBACK,
            None,
        )
        if result == _DECODE_ABORTED:
            raise _Cancelled
        if result != 0:
            raise ModelError(
                f"llama.cpp failed to decode an image of {entry.cells} tokens (code {result})"
            )
        self._entries.append(entry)
        self._position = new_position.value
        return encode_s


def _init_mtmd(
    llama: llama_cpp.Llama, mmproj_path: str, image_max_tokens: int, use_gpu: bool, n_threads: int
) -> mtmd_cpp.mtmd_context_p:
    params = mtmd_cpp.mtmd_context_params_default()
    params.use_gpu = use_gpu
    params.print_timings = False
    params.n_threads = n_threads
    params.flash_attn_type = llama_cpp.LLAMA_FLASH_ATTN_TYPE_ENABLED
    # Images arrive already sized inside the budget. A minimum of 1 token and our own
    # maximum make mtmd keep that size instead of applying its defaults (8..4096).
    params.image_min_tokens = 1
    params.image_max_tokens = image_max_tokens
    context = mtmd_cpp.mtmd_init_from_file(mmproj_path.encode(), llama.model, params)
    if not context:
        raise ModelError(
            f"mtmd failed to load the vision projector {mmproj_path}; "
            "check that it belongs to the model"
        )
    if not mtmd_cpp.mtmd_support_vision(context):
        mtmd_cpp.mtmd_free(context)
        raise ModelError(f"the projector {mmproj_path} has no vision encoder")
    return context


def _tokenize_into(
    context: mtmd_cpp.mtmd_context_p,
    chunks: mtmd_cpp.mtmd_input_chunks_p,
    text: str,
    images: Sequence[PreparedImage],
) -> None:
    bitmaps = [_bitmap(image) for image in images]
    try:
        encoded = text.encode("utf-8")
        input_text = mtmd_cpp.mtmd_input_text(
            text=encoded, text_len=len(encoded), add_special=True, parse_special=True
        )
        array = (mtmd_cpp.mtmd_bitmap_p_ctypes * len(bitmaps))(*bitmaps)
        result = mtmd_cpp.mtmd_tokenize(
            context, chunks, ctypes.byref(input_text), array, len(bitmaps)
        )
    finally:
        for bitmap in bitmaps:
            mtmd_cpp.mtmd_bitmap_free(bitmap)
    if result == 1:
        raise ModelError(
            f"the prompt has a different number of image markers than its {len(images)} images"
        )
    if result != 0:
        raise ModelError(f"mtmd failed to tokenize the prompt (code {result})")


def _bitmap(prepared: PreparedImage) -> mtmd_cpp.mtmd_bitmap_p:
    """Wrap an RGB image's raw pixels as an mtmd bitmap; mtmd copies the pixels."""
    image = prepared.image
    pixels = image.tobytes()
    buffer = (ctypes.c_uint8 * len(pixels)).from_buffer_copy(pixels)
    bitmap = mtmd_cpp.mtmd_bitmap_init(image.width, image.height, buffer)
    if not bitmap:
        raise ModelError(f"mtmd could not allocate a {image.width}x{image.height} bitmap")
    mtmd_cpp.mtmd_bitmap_set_id(bitmap, prepared.key.encode())
    return bitmap


def _describe_chunks(chunks: mtmd_cpp.mtmd_input_chunks_p) -> Prompt:
    entries: list[CacheEntry] = []
    starts = []
    for index in range(mtmd_cpp.mtmd_input_chunks_size(chunks)):
        chunk = mtmd_cpp.mtmd_input_chunks_get(chunks, index)
        starts.append(len(entries))
        if mtmd_cpp.mtmd_input_chunk_get_type(chunk) == mtmd_cpp.MTMD_INPUT_CHUNK_TYPE_TEXT:
            count = ctypes.c_size_t()
            tokens = mtmd_cpp.mtmd_input_chunk_get_tokens_text(chunk, ctypes.byref(count))
            entries.extend(CacheEntry(key=tokens[i]) for i in range(count.value))
        else:
            identifier = mtmd_cpp.mtmd_input_chunk_get_id(chunk)
            if not identifier:
                raise ModelError("mtmd returned an image chunk without the id it was given")
            entries.append(
                CacheEntry(
                    key=identifier.decode(),
                    cells=mtmd_cpp.mtmd_input_chunk_get_n_tokens(chunk),
                    positions=mtmd_cpp.mtmd_input_chunk_get_n_pos(chunk),
                )
            )
    starts.append(len(entries))
    return Prompt(chunks=chunks, entries=tuple(entries), chunk_starts=tuple(starts))
