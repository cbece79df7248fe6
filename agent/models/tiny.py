"""Write tiny random-weight Qwen3-VL GGUF pairs, so tests run real llama.cpp inference.

The files use the real `qwen3vl` text architecture and the `qwen3vl_merger` projector
with deepstack layers, a byte-level BPE tokenizer with the Qwen special tokens, and a
Qwen-style chat template. They are about 1 MB each and take well under a second to
write. Output is deterministic: the same code writes byte-identical files.

The weights are random, so replies are gibberish. What matters is that every code path
runs for real: image encoding, M-RoPE positions, grammars and the Thinking prompt.
"""

from __future__ import annotations

import itertools
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

try:
    import gguf
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "writing the tiny test model needs the gguf package; install it with "
        "`pip install gguf` or `pip install -e .[test]`"
    ) from exc

# Text model sizes. The rope sections must sum to at most head_dim / 2, or llama.cpp
# aborts on the first decode. A head size of 32 lets a q8_0 KV cache (blocks of 32) load.
TEXT_HIDDEN = 64
TEXT_LAYERS = 4
TEXT_HEADS = 2
TEXT_KV_HEADS = 1
TEXT_HEAD_DIM = TEXT_HIDDEN // TEXT_HEADS
TEXT_FFN = 128
TEXT_CONTEXT = 32768
ROPE_SECTIONS = (6, 5, 5, 0)

# Vision encoder sizes. The head size (hidden / heads) must be divisible by 4 for the
# vision M-RoPE, and the learned position grid must be square.
VISION_HIDDEN = 32
VISION_LAYERS = 4
VISION_HEADS = 4
VISION_FFN = 64
PATCH_SIZE = 16
MERGE_SIZE = 2
POSITION_GRID = 48
DEEPSTACK_LAYERS = (1, 2)

BPE_MERGES = 200
VARIANTS = ("instruct", "thinking")
_SEEDS = {"instruct": 1234, "thinking": 4321}

SPECIAL_TOKENS: tuple[tuple[str, gguf.TokenType], ...] = (
    ("<|endoftext|>", gguf.TokenType.CONTROL),
    ("<|im_start|>", gguf.TokenType.CONTROL),
    ("<|im_end|>", gguf.TokenType.CONTROL),
    ("<|object_ref_start|>", gguf.TokenType.CONTROL),
    ("<|object_ref_end|>", gguf.TokenType.CONTROL),
    ("<|box_start|>", gguf.TokenType.CONTROL),
    ("<|box_end|>", gguf.TokenType.CONTROL),
    ("<|quad_start|>", gguf.TokenType.CONTROL),
    ("<|quad_end|>", gguf.TokenType.CONTROL),
    ("<|vision_start|>", gguf.TokenType.CONTROL),
    ("<|vision_end|>", gguf.TokenType.CONTROL),
    ("<|vision_pad|>", gguf.TokenType.CONTROL),
    ("<|image_pad|>", gguf.TokenType.CONTROL),
    ("<|video_pad|>", gguf.TokenType.CONTROL),
    ("<tool_call>", gguf.TokenType.USER_DEFINED),
    ("</tool_call>", gguf.TokenType.USER_DEFINED),
    ("<think>", gguf.TokenType.USER_DEFINED),
    ("</think>", gguf.TokenType.USER_DEFINED),
)

# Text the BPE merges are trained on: words that the agent's prompts and replies use.
_CORPUS = """
You are a helpful assistant that controls a computer. Look at the screenshot and decide
the next action. The screen's resolution is 1000x1000. Call the computer_use tool.
<tool_call>
{"name": "computer_use", "arguments": {"action": "left_click", "coordinate": [500, 250]}}
</tool_call>
{"name": "computer_use", "arguments": {"action": "type", "text": "hello world"}}
{"name": "computer_use", "arguments": {"action": "key", "keys": ["ctrl", "c"]}}
{"name": "computer_use", "arguments": {"action": "scroll", "pixels": -300}}
{"name": "computer_use", "arguments": {"action": "terminate", "status": "success"}}
The user wants to open the settings menu. I will click the button in the top right corner
of the window, then type the name of the file and press enter to save the document.
Thought: the search box is at the top of the page. Action: click the search box.
"""

_CHAT_TEMPLATE = """\
{%- for message in messages %}
{%- if message.content is string %}
{%- set content = message.content %}
{%- else %}
{%- set parts = namespace(text='') %}
{%- for part in message.content %}
{%- if part.type == 'image' or part.type == 'image_url' %}
{%- set parts.text = parts.text + '<|vision_start|><|image_pad|><|vision_end|>' %}
{%- elif part.type == 'text' %}
{%- set parts.text = parts.text + part.text %}
{%- endif %}
{%- endfor %}
{%- set content = parts.text %}
{%- endif %}
{%- if message.role == 'assistant' and '</think>' in content %}
{%- set content = content.split('</think>')[-1].lstrip('\\n') %}
{%- endif %}
{{- '<|im_start|>' + message.role + '\\n' + content + '<|im_end|>\\n' }}
{%- endfor %}
{%- if add_generation_prompt %}
{{- '<|im_start|>assistant\\n' }}
{%- if thinking_variant %}
{{- '<think>\\n' }}
{%- endif %}
{%- endif %}
"""


@dataclass(frozen=True)
class TinyModelPaths:
    """The four files `write_tiny_models` writes."""

    instruct: Path
    instruct_mmproj: Path
    thinking: Path
    thinking_mmproj: Path

    def pair(self, variant: str) -> tuple[Path, Path]:
        """Return (model, mmproj) for "instruct" or "thinking"."""
        if variant == "instruct":
            return self.instruct, self.instruct_mmproj
        if variant == "thinking":
            return self.thinking, self.thinking_mmproj
        raise ValueError(f"unknown tiny model variant {variant!r}; use one of {VARIANTS}")


def write_tiny_models(outdir: str | Path) -> TinyModelPaths:
    """Write instruct.gguf, thinking.gguf and their mmproj files into `outdir`."""
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    vocab = build_vocab()
    for variant in VARIANTS:
        rng = np.random.default_rng(_SEEDS[variant])
        write_text_model(outdir / f"{variant}.gguf", vocab, chat_template(variant), rng)
        write_mmproj(outdir / f"{variant}-mmproj.gguf", rng)
    return TinyModelPaths(
        instruct=outdir / "instruct.gguf",
        instruct_mmproj=outdir / "instruct-mmproj.gguf",
        thinking=outdir / "thinking.gguf",
        thinking_mmproj=outdir / "thinking-mmproj.gguf",
    )


def chat_template(variant: str) -> str:
    """Return the Jinja chat template; the Thinking one opens `<think>` in the generation prompt."""
    flag = "true" if variant == "thinking" else "false"
    return "{%- set thinking_variant = " + flag + " %}\n" + _CHAT_TEMPLATE


# --- tokenizer ---------------------------------------------------------------


@dataclass(frozen=True)
class Vocab:
    tokens: list[str]
    token_types: list[int]
    merges: list[str]

    def token_id(self, text: str) -> int:
        return self.tokens.index(text)


def byte_to_unicode() -> dict[int, str]:
    """Map each byte to the printable character that GPT-2 style BPE vocabularies store it as.

    Printable Latin-1 bytes map to themselves; the others (space, control bytes) are
    shifted past 255 so every token string is printable.
    """
    printable = [*range(ord("!"), ord("~") + 1), *range(0xA1, 0xAC + 1), *range(0xAE, 0xFF + 1)]
    mapping = {byte: chr(byte) for byte in printable}
    shift = 0
    for byte in range(256):
        if byte not in mapping:
            mapping[byte] = chr(256 + shift)
            shift += 1
    return mapping


def build_vocab() -> Vocab:
    """Build 256 byte tokens (id = byte value), trained merges, then the Qwen special tokens."""
    byte_chars = byte_to_unicode()
    tokens = [byte_chars[byte] for byte in range(256)]
    merges = train_merges(_CORPUS, byte_chars, BPE_MERGES)
    tokens += [merge.replace(" ", "") for merge in merges]
    token_types = [int(gguf.TokenType.NORMAL)] * len(tokens)
    for text, token_type in SPECIAL_TOKENS:
        tokens.append(text)
        token_types.append(int(token_type))
    return Vocab(tokens=tokens, token_types=token_types, merges=merges)


def train_merges(corpus: str, byte_chars: dict[int, str], count: int) -> list[str]:
    """Learn up to `count` BPE merges ("a b" strings) by repeatedly joining the most frequent pair.

    Ties go to the pair seen first, so the result is deterministic.
    """
    words = Counter(
        tuple(byte_chars[byte] for byte in piece.encode("utf-8"))
        for piece in re.findall(r" ?[A-Za-z_]+| ?[^\sA-Za-z_0-9]+|\s+|[0-9]", corpus)
    )
    merges: list[str] = []
    while len(merges) < count:
        pairs: Counter[tuple[str, str]] = Counter()
        for word, frequency in words.items():
            for pair in itertools.pairwise(word):
                pairs[pair] += frequency
        if not pairs:
            break
        best = max(pairs.items(), key=lambda item: item[1])[0]
        merges.append(f"{best[0]} {best[1]}")
        words = Counter({_merge_pair(word, best): freq for word, freq in words.items()})
    return merges


def _merge_pair(word: tuple[str, ...], pair: tuple[str, str]) -> tuple[str, ...]:
    merged: list[str] = []
    index = 0
    while index < len(word):
        if index + 1 < len(word) and (word[index], word[index + 1]) == pair:
            merged.append(word[index] + word[index + 1])
            index += 2
        else:
            merged.append(word[index])
            index += 1
    return tuple(merged)


# --- weights -----------------------------------------------------------------


def _linear(rng: np.random.Generator, n_out: int, n_in: int) -> np.ndarray:
    # Scaling by 1/sqrt(fan-in) keeps activations in range, so outputs depend on the
    # prompt and the image; a fixed small scale made outputs ignore both.
    return (rng.standard_normal((n_out, n_in)) / np.sqrt(n_in)).astype(np.float32)


def _norm(rng: np.random.Generator, size: int) -> np.ndarray:
    return (1.0 + 0.1 * rng.standard_normal(size)).astype(np.float32)


def _bias(rng: np.random.Generator, size: int) -> np.ndarray:
    return (0.02 * rng.standard_normal(size)).astype(np.float32)


def text_tensors(rng: np.random.Generator, vocab: Vocab) -> Iterable[tuple[str, np.ndarray]]:
    """Yield the `qwen3vl` text model tensors in GGUF naming (numpy shape = reversed ggml shape)."""
    n_vocab = len(vocab.tokens)
    kv_width = TEXT_KV_HEADS * TEXT_HEAD_DIM
    yield "token_embd.weight", rng.standard_normal((n_vocab, TEXT_HIDDEN)).astype(np.float32)
    for layer in range(TEXT_LAYERS):
        prefix = f"blk.{layer}"
        yield f"{prefix}.attn_norm.weight", _norm(rng, TEXT_HIDDEN)
        yield f"{prefix}.attn_q.weight", _linear(rng, TEXT_HEADS * TEXT_HEAD_DIM, TEXT_HIDDEN)
        yield f"{prefix}.attn_k.weight", _linear(rng, kv_width, TEXT_HIDDEN)
        yield f"{prefix}.attn_v.weight", _linear(rng, kv_width, TEXT_HIDDEN)
        yield f"{prefix}.attn_output.weight", _linear(rng, TEXT_HIDDEN, TEXT_HEADS * TEXT_HEAD_DIM)
        yield f"{prefix}.attn_q_norm.weight", _norm(rng, TEXT_HEAD_DIM)
        yield f"{prefix}.attn_k_norm.weight", _norm(rng, TEXT_HEAD_DIM)
        yield f"{prefix}.ffn_norm.weight", _norm(rng, TEXT_HIDDEN)
        yield f"{prefix}.ffn_gate.weight", _linear(rng, TEXT_FFN, TEXT_HIDDEN)
        yield f"{prefix}.ffn_up.weight", _linear(rng, TEXT_FFN, TEXT_HIDDEN)
        yield f"{prefix}.ffn_down.weight", _linear(rng, TEXT_HIDDEN, TEXT_FFN)
    yield "output_norm.weight", _norm(rng, TEXT_HIDDEN)
    yield "output.weight", _output_head(rng, vocab)


def _output_head(rng: np.random.Generator, vocab: Vocab) -> np.ndarray:
    # Zero rows give control tokens (end of turn included) a logit of 0, so greedy output
    # is readable text that runs to max_tokens unless a grammar allows only the end.
    head = _linear(rng, len(vocab.tokens), TEXT_HIDDEN) * 4.0
    for token_id, token_type in enumerate(vocab.token_types):
        if token_type == gguf.TokenType.CONTROL:
            head[token_id] = 0.0
    return head


def vision_tensors(rng: np.random.Generator) -> Iterable[tuple[str, np.ndarray]]:
    """Yield the `qwen3vl_merger` projector tensors, deepstack included."""
    hidden = VISION_HIDDEN
    merged = hidden * MERGE_SIZE * MERGE_SIZE
    patch_shape = (hidden, 3, PATCH_SIZE, PATCH_SIZE)
    patch_scale = 1.0 / np.sqrt(3 * PATCH_SIZE * PATCH_SIZE)
    # The temporal Conv3D of the real model is stored as two 2D kernels; both must exist.
    for name in ("v.patch_embd.weight", "v.patch_embd.weight.1"):
        yield name, (rng.standard_normal(patch_shape) * patch_scale).astype(np.float16)
    yield "v.patch_embd.bias", _bias(rng, hidden)
    yield (
        "v.position_embd.weight",
        (0.1 * rng.standard_normal((POSITION_GRID**2, hidden))).astype(np.float32),
    )
    for layer in range(VISION_LAYERS):
        yield from _vision_block(rng, layer)
        if layer in DEEPSTACK_LAYERS:
            prefix = f"v.deepstack.{layer}"
            yield f"{prefix}.norm.weight", _norm(rng, merged)
            yield f"{prefix}.norm.bias", _bias(rng, merged)
            yield f"{prefix}.fc1.weight", _linear(rng, merged, merged)
            yield f"{prefix}.fc1.bias", _bias(rng, merged)
            yield f"{prefix}.fc2.weight", _linear(rng, TEXT_HIDDEN, merged)
            yield f"{prefix}.fc2.bias", _bias(rng, TEXT_HIDDEN)
    yield "v.post_ln.weight", _norm(rng, hidden)
    yield "v.post_ln.bias", _bias(rng, hidden)
    yield "mm.0.weight", _linear(rng, merged, merged)
    yield "mm.0.bias", _bias(rng, merged)
    yield "mm.2.weight", _linear(rng, TEXT_HIDDEN, merged)
    yield "mm.2.bias", _bias(rng, TEXT_HIDDEN)


def _vision_block(rng: np.random.Generator, layer: int) -> Iterable[tuple[str, np.ndarray]]:
    hidden = VISION_HIDDEN
    prefix = f"v.blk.{layer}"
    yield f"{prefix}.ln1.weight", _norm(rng, hidden)
    yield f"{prefix}.ln1.bias", _bias(rng, hidden)
    yield f"{prefix}.attn_qkv.weight", _linear(rng, 3 * hidden, hidden)
    yield f"{prefix}.attn_qkv.bias", _bias(rng, 3 * hidden)
    yield f"{prefix}.attn_out.weight", _linear(rng, hidden, hidden)
    yield f"{prefix}.attn_out.bias", _bias(rng, hidden)
    yield f"{prefix}.ln2.weight", _norm(rng, hidden)
    yield f"{prefix}.ln2.bias", _bias(rng, hidden)
    yield f"{prefix}.ffn_up.weight", _linear(rng, VISION_FFN, hidden)
    yield f"{prefix}.ffn_up.bias", _bias(rng, VISION_FFN)
    yield f"{prefix}.ffn_down.weight", _linear(rng, hidden, VISION_FFN)
    yield f"{prefix}.ffn_down.bias", _bias(rng, hidden)


# --- files -------------------------------------------------------------------


def write_text_model(path: Path, vocab: Vocab, template: str, rng: np.random.Generator) -> None:
    """Write the `qwen3vl` text GGUF with its tokenizer and chat template."""
    writer = gguf.GGUFWriter(str(path), "qwen3vl")
    writer.add_name(f"tiny-qwen3vl-{path.stem}")
    writer.add_context_length(TEXT_CONTEXT)
    writer.add_embedding_length(TEXT_HIDDEN)
    writer.add_block_count(TEXT_LAYERS)
    writer.add_feed_forward_length(TEXT_FFN)
    writer.add_head_count(TEXT_HEADS)
    writer.add_head_count_kv(TEXT_KV_HEADS)
    writer.add_key_length(TEXT_HEAD_DIM)
    writer.add_value_length(TEXT_HEAD_DIM)
    writer.add_rope_freq_base(5_000_000.0)
    writer.add_layer_norm_rms_eps(1e-6)
    writer.add_rope_dimension_sections(list(ROPE_SECTIONS))
    # Must equal the number of deepstack layers in the mmproj: the text model's input
    # width is hidden * (1 + deepstack layers).
    writer.add_num_deepstack_layers(len(DEEPSTACK_LAYERS))
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)

    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("qwen2")
    writer.add_token_list(vocab.tokens)
    writer.add_token_types(vocab.token_types)
    writer.add_token_merges(vocab.merges)
    writer.add_bos_token_id(vocab.token_id("<|endoftext|>"))
    writer.add_eos_token_id(vocab.token_id("<|im_end|>"))
    writer.add_pad_token_id(vocab.token_id("<|endoftext|>"))
    writer.add_add_bos_token(False)
    writer.add_chat_template(template)

    for name, tensor in text_tensors(rng, vocab):
        writer.add_tensor(name, tensor)
    _finish(writer)


def write_mmproj(path: Path, rng: np.random.Generator) -> None:
    """Write the `qwen3vl_merger` vision projector GGUF."""
    writer = gguf.GGUFWriter(str(path), "clip")
    writer.add_type(gguf.GGUFType.MMPROJ)
    writer.add_name(f"tiny-qwen3vl-{path.stem}")
    writer.add_clip_has_vision_encoder(True)
    writer.add_clip_projector_type(gguf.VisionProjectorType.QWEN3VL)
    writer.add_vision_projection_dim(TEXT_HIDDEN)
    writer.add_vision_image_size(POSITION_GRID * PATCH_SIZE)
    writer.add_vision_patch_size(PATCH_SIZE)
    writer.add_vision_embedding_length(VISION_HIDDEN)
    writer.add_vision_feed_forward_length(VISION_FFN)
    writer.add_vision_block_count(VISION_LAYERS)
    writer.add_vision_head_count(VISION_HEADS)
    writer.add_vision_attention_layernorm_eps(1e-6)
    writer.add_vision_image_mean([0.5, 0.5, 0.5])
    writer.add_vision_image_std([0.5, 0.5, 0.5])
    writer.add_vision_spatial_merge_size(MERGE_SIZE)
    writer.add_vision_use_gelu(True)
    writer.add_vision_is_deepstack_layers(
        [layer in DEEPSTACK_LAYERS for layer in range(VISION_LAYERS)]
    )
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)

    for name, tensor in vision_tensors(rng):
        writer.add_tensor(name, tensor)
    _finish(writer)


def _finish(writer: gguf.GGUFWriter) -> None:
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
