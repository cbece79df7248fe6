"""Benchmark the in-process llama.cpp backend with the tiny Qwen3-VL model.

It measures three things:

- per step: image encode time, prompt tokens evaluated against tokens in context, and
  decode speed;
- the ratio of our step time to a bare llama-cpp-python `create_chat_completion` on the
  same prompt;
- over a 10-step run that keeps 4 screenshots, the tokens evaluated per step with
  KV-cache prefix reuse and without it;
- how long a call takes to return after it is cancelled at points spread over the
  evaluation of a long prompt.

The tiny model has random weights, so the numbers measure the runtime's own overhead
and token accounting, not the speed of the real 8B model.

Usage: python scripts/bench_model.py [--output docs/benchmarks.md] [--steps 10] [--print-only]
"""

from __future__ import annotations

import argparse
import base64
import dataclasses
import io
import os
import platform
import statistics
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any, cast

import llama_cpp
from llama_cpp.llama_chat_format import MTMDChatHandler
from llama_cpp.llama_grammar import LlamaGrammar
from PIL import Image, ImageDraw

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agent.actions import describe_action
from agent.history import History, HistoryConfig, PastStep, PromptTurns
from agent.models.base import ChatRequest, ImagePart, Message, ModelReply, TextPart
from agent.models.grammar import tool_call_grammar
from agent.models.images import TokenBudget, fit_to_budget, image_tokens
from agent.models.llama import LlamaCppModel
from agent.models.sampling import SamplingParams
from agent.models.tiny import TinyModelPaths, write_tiny_models
from agent.parsing import parse_reply
from agent.prompts import PromptFacts, PromptKind, format_tool_call, system_prompt

START_MARKER = "<!-- bench_model:start -->"
END_MARKER = "<!-- bench_model:end -->"
SCREEN_SIZE = (1280, 800)
N_CTX = 16384
MAX_TOKENS = 256
# Greedy and without penalties, so our backend and the bare call pick the same tokens.
GREEDY = SamplingParams(temperature=0.0)


@dataclass(frozen=True)
class StepRow:
    step: int
    screenshots: int
    context_tokens: int
    evaluated_reuse: int
    evaluated_fresh: int
    image_encode_s: float
    prompt_s: float
    decode_tokens_per_s: float
    step_s: float
    step_fresh_s: float


@dataclass(frozen=True)
class Timing:
    """Fastest and median seconds over the repeats; the fastest is the least disturbed by load."""

    fastest_s: float
    median_s: float

    @classmethod
    def of(cls, samples: list[float]) -> Timing:
        return cls(fastest_s=min(samples), median_s=statistics.median(samples))


@dataclass(frozen=True)
class OverheadResult:
    ours: Timing
    bare: Timing
    bare_with_png: Timing
    same_text: bool
    completion_tokens: int


def screenshot(step: int) -> Image.Image:
    """Draw a deterministic desktop-like screen: a title bar, a sidebar and a few buttons."""
    image = Image.new("RGB", SCREEN_SIZE, (236, 239, 244))
    draw = ImageDraw.Draw(image)
    draw.rectangle((0, 0, SCREEN_SIZE[0], 40), fill=(40, 44, 52))
    draw.rectangle((0, 40, 220, SCREEN_SIZE[1]), fill=(250, 250, 250))
    for index in range(6):
        top = 80 + 60 * index + 7 * step
        draw.rectangle(
            (300, top, 520 + 30 * index, top + 36), fill=(60 + 25 * index, 120, 200 - 10 * step)
        )
        draw.text((310, top + 10), f"Button {index} at step {step}", fill=(255, 255, 255))
    draw.text((240, 12), f"Window title, step {step}", fill=(255, 255, 255))
    return image


def load_model(paths: TinyModelPaths) -> LlamaCppModel:
    model_path, mmproj_path = paths.pair("instruct")
    return LlamaCppModel(
        model_path,
        mmproj_path,
        n_ctx=N_CTX,
        sampling=GREEDY,
        max_prelude_chars=0,
        max_string_chars=32,
    )


def timed_complete(
    model: LlamaCppModel, messages: tuple[Message, ...], *, fresh: bool
) -> tuple[ModelReply, float]:
    if fresh:
        model.clear_cache()
    started = time.perf_counter()
    reply = model.complete(
        ChatRequest(messages=messages, max_tokens=MAX_TOKENS, constrain_tool_call=True)
    )
    return reply, time.perf_counter() - started


@dataclass(frozen=True)
class AbortRow:
    """One cancel: when it was requested, how much of the prompt was in the cache, and the wait."""

    cancel_at_s: float
    evaluated_tokens: int
    latency_s: float


@dataclass(frozen=True)
class AbortResult:
    prompt_tokens: int
    screenshots: int
    full_s: float
    rows: list[AbortRow]
    # Calls that finished before their cancel came, because the machine ran faster than
    # during the timed full evaluation.
    finished_first: int


ABORT_POINTS = (0.1, 0.25, 0.4, 0.55, 0.7, 0.85)


def measure_abort(model: LlamaCppModel, screenshots: int) -> AbortResult:
    """Cancel a long prompt at fractions of its full evaluation time and time each return."""
    content: list[ImagePart | TextPart] = [
        ImagePart(screenshot(step)) for step in range(screenshots)
    ]
    messages = (
        Message.text("system", "You control a computer. Answer with one computer_use tool call."),
        Message("user", (*content, TextPart("Open the settings."))),
    )
    request = ChatRequest(messages=messages, max_tokens=1)
    model.clear_cache()
    started = time.perf_counter()
    full = model.complete(request)
    full_s = time.perf_counter() - started
    rows = []
    finished_first = 0
    for fraction in ABORT_POINTS:
        model.clear_cache()
        cancel = threading.Event()
        requested: list[float] = []

        def request_cancel(
            cancel: threading.Event = cancel, requested: list[float] = requested
        ) -> None:
            requested.append(time.perf_counter())
            cancel.set()

        timer = threading.Timer(fraction * full_s, request_cancel)
        started = time.perf_counter()
        timer.start()
        reply = model.complete(dataclasses.replace(request, cancelled=cancel.is_set))
        returned = time.perf_counter()
        timer.cancel()
        if reply.finish_reason != "cancelled":
            finished_first += 1
            continue
        rows.append(
            AbortRow(
                cancel_at_s=requested[0] - started,
                evaluated_tokens=reply.usage.evaluated_tokens,
                latency_s=returned - requested[0],
            )
        )
    return AbortResult(full.usage.prompt_tokens, screenshots, full_s, rows, finished_first)


def run_history(model: LlamaCppModel, steps: int, config: HistoryConfig) -> list[StepRow]:
    """Run `steps` agent steps twice per step: with prefix reuse, then from an empty cache."""
    facts = PromptFacts(date="Monday, 1 June 2026", platform="Linux", environment="a Linux desktop")
    system = system_prompt(PromptKind.SINGLE, facts)
    history = History(config)
    rows = []
    model.clear_cache()
    for step in range(1, steps + 1):
        turns = PromptTurns(
            system=system,
            task="Open the settings and turn on dark mode.",
            step=step,
            image=screenshot(step),
        )
        messages = history.messages(turns)
        reply, step_s = timed_complete(model, messages, fresh=False)
        fresh, fresh_s = timed_complete(model, messages, fresh=True)
        if fresh.text != reply.text:
            raise SystemExit(
                f"step {step}: the reply with prefix reuse differs from a fresh evaluation"
            )
        # The cache now contains this prompt and reply, as it would after a run with reuse.
        rows.append(_row(step, messages, reply, fresh, step_s, fresh_s))
        history.append(_past_step(step, turns.image, reply.text))
    return rows


def _row(
    step: int,
    messages: Sequence[Message],
    reply: ModelReply,
    fresh: ModelReply,
    step_s: float,
    fresh_s: float,
) -> StepRow:
    return StepRow(
        step=step,
        screenshots=sum(len(message.images) for message in messages),
        context_tokens=reply.usage.prompt_tokens,
        evaluated_reuse=reply.usage.evaluated_tokens,
        evaluated_fresh=fresh.usage.evaluated_tokens,
        image_encode_s=reply.timings["image_encode_s"],
        prompt_s=reply.timings["prompt_s"],
        decode_tokens_per_s=reply.timings["decode_tokens_per_s"],
        step_s=step_s,
        step_fresh_s=fresh_s,
    )


def _past_step(step: int, image: Image.Image, text: str) -> PastStep:
    parsed = parse_reply(text)
    if parsed.action is None:
        raise SystemExit(f"step {step}: the constrained reply did not parse: {parsed.error}")
    action = describe_action(parsed.action)
    return PastStep(
        step=step,
        image=image,
        action=action,
        reply=format_tool_call(parsed.action),
        plan=f"Next step: {action}",
        summary=f"Step {step}: {action}",
        outcome="The screen changed.",
    )


def measure_overhead(model: LlamaCppModel, paths: TinyModelPaths, repeats: int) -> OverheadResult:
    """Time one fresh step of ours against llama-cpp-python's MTMDChatHandler on the same prompt."""
    image = screenshot(1).resize(
        fit_to_budget(*SCREEN_SIZE, model.budget), Image.Resampling.BICUBIC
    )
    messages = (
        Message.text("system", "You control a computer. Answer with one computer_use tool call."),
        Message("user", (ImagePart(image), TextPart("Open the settings."))),
    )
    bare = _bare_llama(paths, model.n_batch)
    grammar = LlamaGrammar.from_string(
        tool_call_grammar(thinking=False, max_prelude_chars=0, max_string_chars=32), verbose=False
    )
    ours_times, bare_times, png_times = [], [], []
    try:
        # One untimed call each: the bare handler creates its mtmd context on first use.
        timed_complete(model, messages, fresh=True)
        _bare_call(bare, _png_data_uri(image), grammar)
        for _ in range(repeats):
            reply, ours_s = timed_complete(model, messages, fresh=True)
            started = time.perf_counter()
            url = _png_data_uri(image)
            png_s = time.perf_counter() - started
            bare_text, bare_s = _bare_call(bare, url, grammar)
            ours_times.append(ours_s)
            bare_times.append(bare_s)
            png_times.append(bare_s + png_s)
    finally:
        bare.close()
    return OverheadResult(
        ours=Timing.of(ours_times),
        bare=Timing.of(bare_times),
        bare_with_png=Timing.of(png_times),
        same_text=bare_text == reply.text,
        completion_tokens=reply.usage.completion_tokens,
    )


def _bare_llama(paths: TinyModelPaths, n_batch: int) -> llama_cpp.Llama:
    model_path, mmproj_path = paths.pair("instruct")
    handler = MTMDChatHandler(clip_model_path=str(mmproj_path), verbose=False)
    return llama_cpp.Llama(
        str(model_path),
        chat_handler=handler,
        n_ctx=N_CTX,
        n_batch=n_batch,
        n_ubatch=n_batch,
        flash_attn=True,
        verbose=False,
    )


def _bare_call(llm: llama_cpp.Llama, url: str, grammar: LlamaGrammar) -> tuple[str, float]:
    messages: list[Any] = [
        {
            "role": "system",
            "content": "You control a computer. Answer with one computer_use tool call.",
        },
        {
            "role": "user",
            "content": [
                {"type": "image_url", "image_url": {"url": url}},
                {"type": "text", "text": "Open the settings."},
            ],
        },
    ]
    started = time.perf_counter()
    result = llm.create_chat_completion(
        messages=messages,
        max_tokens=MAX_TOKENS,
        temperature=0.0,
        repeat_penalty=1.0,
        top_k=0,
        top_p=1.0,
        min_p=0.0,
        grammar=grammar,
    )
    elapsed = time.perf_counter() - started
    content = cast(dict[str, Any], result)["choices"][0]["message"]["content"]
    return content or "", elapsed


def _png_data_uri(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def render_section(
    rows: list[StepRow],
    overhead: OverheadResult,
    config: HistoryConfig,
    load_s: float,
    abort: AbortResult,
) -> str:
    """Return the markdown section, markers included."""
    lines = [
        START_MARKER,
        "## Model runtime",
        "",
        *_intro(load_s),
        "",
        *_overhead_table(overhead),
        "",
        *_history_table(rows, config),
        "",
        *_abort_table(abort),
        END_MARKER,
    ]
    return "\n".join(lines) + "\n"


def _intro(load_s: float) -> list[str]:
    budget = TokenBudget()
    width, height = fit_to_budget(*SCREEN_SIZE, budget)
    return _paragraph(
        f"Measured by `python scripts/bench_model.py` on {date.today():%Y-%m-%d}: {_machine()},",
        f"llama-cpp-python {llama_cpp.__version__} {_build_kind()}.",
        "The model is the tiny random-weight Qwen3-VL Instruct that",
        "`scripts/make_tiny_qwen3vl.py` writes, so these numbers show the backend's own",
        "overhead and token accounting, not the speed of the 8B model.",
        f"Screenshots are {SCREEN_SIZE[0]}x{SCREEN_SIZE[1]}, resized to {width}x{height}",
        f"({image_tokens(width, height)} image tokens) by the default budget of",
        f"{budget.min_tokens}-{budget.max_tokens} tokens.",
        "Decoding is greedy and constrained by the tool-call grammar.",
        f"n_ctx is {N_CTX}. Loading, warm-up included, took {load_s:.2f} s.",
        "Other processes shared the CPU, so single timings are noisy.",
    )


def _overhead_table(overhead: OverheadResult) -> list[str]:
    same = "yes" if overhead.same_text else "no"
    ratio = overhead.ours.fastest_s / overhead.bare.fastest_s
    ratio_png = overhead.ours.fastest_s / overhead.bare_with_png.fastest_s
    return [
        "### One step against a bare llama-cpp-python call",
        "",
        *_paragraph(
            "The same prompt (a system message and one pre-resized screenshot) goes through our",
            "backend from an empty KV cache, and through `Llama.create_chat_completion` with",
            "`MTMDChatHandler` and the same grammar, after one untimed call each.",
            f"Our backend wrote {overhead.completion_tokens} tokens; the bare call wrote the",
            f"same text: {same}.",
        ),
        "",
        "| call | fastest (s) | median (s) |",
        "| --- | --- | --- |",
        _timing_row("our backend", overhead.ours),
        _timing_row("bare call, image already a PNG data URI", overhead.bare),
        _timing_row("bare call, PNG encoding included", overhead.bare_with_png),
        "",
        *_paragraph(
            f"Ratio of our fastest step to the fastest bare call: {ratio:.3f}",
            f"({ratio_png:.3f} with PNG encoding counted). The goal is at most 1.05.",
        ),
    ]


def _paragraph(*parts: str) -> list[str]:
    """Join sentence fragments into one markdown paragraph wrapped at 90 columns."""
    return textwrap.wrap(" ".join(parts), width=90, break_on_hyphens=False)


def _timing_row(label: str, timing: Timing) -> str:
    return _table_row([label, f"{timing.fastest_s:.4f}", f"{timing.median_s:.4f}"])


def _history_table(rows: list[StepRow], config: HistoryConfig) -> list[str]:
    total_reuse = sum(row.evaluated_reuse for row in rows)
    total_fresh = sum(row.evaluated_fresh for row in rows)
    header = [
        "step",
        "screenshots",
        "tokens in context",
        "evaluated with reuse",
        "evaluated without reuse",
        "image encode (s)",
        "prompt eval (s)",
        "decode tokens/s",
        "step with reuse (s)",
        "step without reuse (s)",
    ]
    table = [_table_row(header), _table_row(["---"] * len(header))]
    for row in rows:
        cells: list[object] = [row.step, row.screenshots, row.context_tokens, row.evaluated_reuse]
        cells += [row.evaluated_fresh, f"{row.image_encode_s:.3f}", f"{row.prompt_s:.3f}"]
        cells += [f"{row.decode_tokens_per_s:.0f}", f"{row.step_s:.3f}", f"{row.step_fresh_s:.3f}"]
        table.append(_table_row(cells))
    return [
        f"### {len(rows)}-step run keeping {config.images} screenshots",
        "",
        *_paragraph(
            "Prompts come from `agent.history.History`, which drops screenshots in chunks of",
            f"{config.drop_chunk}. Each step runs twice: with the KV cache that the previous",
            "step left, and from an empty cache. Both runs produced identical replies at every",
            "step.",
        ),
        "",
        *table,
        "",
        *_paragraph(
            f"Tokens evaluated over the run: {total_reuse} with reuse and {total_fresh}",
            f"without, {total_reuse / total_fresh:.0%} of them.",
        ),
    ]


def _abort_table(abort: AbortResult) -> list[str]:
    slowest = max((row.latency_s for row in abort.rows), default=0.0)
    lines = [
        "### Cancel during prompt evaluation",
        "",
        *_paragraph(
            f"One prompt with {abort.screenshots} screenshots ({abort.prompt_tokens} tokens) is",
            f"evaluated from an empty cache, which took {abort.full_s:.2f} s. Each row",
            "cancels the call at a point in that evaluation and measures the time from the",
            "cancel to the return. Text and image tokens stop inside llama_decode through the",
            "abort callback. Encoding a screenshot in the vision encoder cannot be",
            "interrupted, so a cancel that lands there waits for the encoding to finish.",
            "Only one screenshot per step is new, because the others are in the KV cache.",
            f"Slowest return: {slowest * 1000:.0f} ms, {slowest / abort.full_s:.1%} of the full",
            f"evaluation. Calls that finished before their cancel came: {abort.finished_first}.",
        ),
        "",
        _table_row(["cancel at (s)", "prompt tokens in the cache", "time to return (ms)"]),
        _table_row(["---"] * 3),
    ]
    lines.extend(
        _table_row(
            [
                f"{row.cancel_at_s:.2f}",
                f"{row.evaluated_tokens} of {abort.prompt_tokens}",
                f"{row.latency_s * 1000:.1f}",
            ]
        )
        for row in abort.rows
    )
    return lines


def _table_row(cells: Sequence[object]) -> str:
    return "| " + " | ".join(str(cell) for cell in cells) + " |"


def _build_kind() -> str:
    if llama_cpp.llama_supports_gpu_offload():
        return "built with GPU offload"
    return "built for CPU only"


def _machine() -> str:
    name = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    return f"{name}, {len(os.sched_getaffinity(0))} cores available"


def write_section(path: Path, section: str) -> None:
    """Replace the text between the bench markers in `path`, or append the section."""
    text = path.read_text(encoding="utf-8") if path.exists() else "# Benchmarks\n\n"
    start, end = text.find(START_MARKER), text.find(END_MARKER)
    if start != -1 and end != -1:
        text = text[:start] + section.rstrip("\n") + text[end + len(END_MARKER) :]
    else:
        text = text.rstrip("\n") + "\n\n" + section
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--output", type=Path, default=Path("docs/benchmarks.md"), help="markdown file to update"
    )
    parser.add_argument("--steps", type=int, default=10, help="steps in the history run")
    parser.add_argument("--images", type=int, default=4, help="screenshots the history keeps")
    parser.add_argument(
        "--repeats", type=int, default=7, help="repeats of the single-step comparison"
    )
    parser.add_argument(
        "--print-only", action="store_true", help="print the section instead of writing it"
    )
    args = parser.parse_args(argv)

    config = HistoryConfig(images=args.images)
    with tempfile.TemporaryDirectory() as folder:
        paths = write_tiny_models(folder)
        started = time.perf_counter()
        model = load_model(paths)
        load_s = time.perf_counter() - started
        try:
            overhead = measure_overhead(model, paths, args.repeats)
            rows = run_history(model, args.steps, config)
            abort = measure_abort(model, args.images)
        finally:
            model.close()
    section = render_section(rows, overhead, config, load_s, abort)
    if args.print_only:
        print(section)
    else:
        write_section(args.output, section)
        print(f"wrote the model runtime section to {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
