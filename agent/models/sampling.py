"""Token sampling for the in-process backend: a llama.cpp sampler chain plus an optional grammar.

The grammar is checked the way llama.cpp's own `common_sampler` does it: sample from
the plain chain first, test that one token against the grammar, and only when it is
rejected run the grammar over the whole vocabulary and sample again. Running the
grammar over a 151k-token vocabulary at every step costs far more than the check.
"""

from __future__ import annotations

import ctypes
import random
from dataclasses import dataclass, replace

import llama_cpp
import numpy as np

from agent.errors import ModelError

# Tokens the presence penalty looks back over. llama.cpp's penalties sampler needs a
# fixed window; 1024 covers a reply and a reasoning budget of typical size.
PENALTY_WINDOW = 1024

_TOKEN_DATA = np.dtype([("id", np.intc), ("logit", np.single), ("p", np.single)], align=True)


@dataclass(frozen=True)
class SamplingParams:
    """Sampling settings. A temperature of 0 or below means greedy decoding."""

    temperature: float
    top_p: float = 1.0
    top_k: int = 0
    min_p: float = 0.0
    presence_penalty: float = 0.0
    repeat_penalty: float = 1.0

    def with_temperature(self, temperature: float | None) -> SamplingParams:
        return self if temperature is None else replace(self, temperature=temperature)


# Model card values for Qwen3-VL (generation_config of the Instruct and Thinking checkpoints).
INSTRUCT_SAMPLING = SamplingParams(temperature=0.7, top_p=0.8, top_k=20, presence_penalty=1.5)
THINKING_SAMPLING = SamplingParams(temperature=1.0, top_p=0.95, top_k=20)


class TokenSampler:
    """Samples one token at a time from the last logits of a llama.cpp context.

    Build one per request and call `close` when done; the C samplers hold memory.
    """

    def __init__(
        self,
        vocab: llama_cpp.llama_vocab_p,
        n_vocab: int,
        params: SamplingParams,
        *,
        grammar: str | None = None,
        seed: int | None = None,
    ) -> None:
        self._n_vocab = n_vocab
        self._candidates = np.zeros(n_vocab, dtype=_TOKEN_DATA)
        self._ids = np.arange(n_vocab, dtype=np.intc)
        self._single = np.zeros(1, dtype=_TOKEN_DATA)
        self._closed = False
        self._chain = _build_chain(
            params, n_vocab, random.getrandbits(32) if seed is None else seed
        )
        self._grammar: llama_cpp.llama_sampler_p | None = None
        if grammar is not None:
            compiled = llama_cpp.llama_sampler_init_grammar(vocab, grammar.encode(), b"root")
            if not compiled:
                self.close()
                raise ModelError(
                    "llama.cpp failed to parse the tool-call grammar; "
                    "this is a bug in agent.models.grammar"
                )
            self._grammar = compiled

    def sample(self, ctx: llama_cpp.llama_context_p) -> int:
        """Sample a token from the last evaluated logits; the caller then `accept`s it."""
        logits = np.ctypeslib.as_array(
            llama_cpp.llama_get_logits_ith(ctx, -1), shape=(self._n_vocab,)
        )
        token = self._apply(logits, with_grammar=False)
        if not self.allows(token):
            token = self._apply(logits, with_grammar=True)
        return token

    def accept(self, token: int) -> None:
        """Record a sampled or forced token in the penalty history and the grammar state."""
        llama_cpp.llama_sampler_accept(self._chain, token)
        if self._grammar is not None:
            llama_cpp.llama_sampler_accept(self._grammar, token)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        llama_cpp.llama_sampler_free(self._chain)
        if self._grammar is not None:
            llama_cpp.llama_sampler_free(self._grammar)

    def _apply(self, logits: np.ndarray, *, with_grammar: bool) -> int:
        self._candidates["id"] = self._ids
        self._candidates["logit"] = logits
        self._candidates["p"] = 0.0
        array = _token_array(self._candidates)
        if with_grammar and self._grammar is not None:
            llama_cpp.llama_sampler_apply(self._grammar, ctypes.byref(array))
        llama_cpp.llama_sampler_apply(self._chain, ctypes.byref(array))
        if not 0 <= array.selected < array.size:
            raise ModelError(
                "the sampler selected no token; the grammar may allow nothing at this point"
            )
        return int(array.data[array.selected].id)

    def allows(self, token: int) -> bool:
        """Return whether the grammar, if any, accepts `token` next."""
        if self._grammar is None:
            return True
        self._single["id"] = token
        self._single["logit"] = 1.0
        array = _token_array(self._single)
        llama_cpp.llama_sampler_apply(self._grammar, ctypes.byref(array))
        return bool(np.isfinite(self._single["logit"][0]))


def _token_array(data: np.ndarray) -> llama_cpp.llama_token_data_array:
    return llama_cpp.llama_token_data_array(
        data=data.ctypes.data_as(llama_cpp.llama_token_data_p),
        size=len(data),
        selected=-1,
        sorted=False,
    )


def _build_chain(params: SamplingParams, n_vocab: int, seed: int) -> llama_cpp.llama_sampler_p:
    chain = llama_cpp.llama_sampler_chain_init(llama_cpp.llama_sampler_chain_default_params())
    add = llama_cpp.llama_sampler_chain_add
    if params.presence_penalty or params.repeat_penalty != 1.0:
        penalties = llama_cpp.llama_sampler_init_penalties(
            n_vocab, PENALTY_WINDOW, params.repeat_penalty, 0.0, params.presence_penalty
        )
        add(chain, penalties)
    if params.temperature <= 0:
        add(chain, llama_cpp.llama_sampler_init_greedy())
        return chain
    if params.top_k > 0:
        add(chain, llama_cpp.llama_sampler_init_top_k(params.top_k))
    if params.top_p < 1.0:
        add(chain, llama_cpp.llama_sampler_init_top_p(params.top_p, 1))
    if params.min_p > 0.0:
        add(chain, llama_cpp.llama_sampler_init_min_p(params.min_p, 1))
    add(chain, llama_cpp.llama_sampler_init_temp(params.temperature))
    add(chain, llama_cpp.llama_sampler_init_dist(seed))
    return chain
