"""Benchmark the agent loop's own overhead: the tiny model driving a real browser page.

The real `AgentLoop` runs the tiny random-weight Qwen3-VL Instruct model (loaded with
`LlamaCppModel`) against a headless `BrowserExecutor` on a MiniWoB++ task page at
1280x800, with auto approval and a real `Recorder`. Each step's time is split into:

- capture: `executor.observe()`, the screenshot (`StepRecord.timings["observe"]`);
- hash, parse, approval: the loop's own timings in `StepRecord.timings`;
- model: the model calls (`StepRecord.timings["model"]`);
- execute: `executor.execute()` less the settle wait;
- settle: the browser executor waiting for the page to react (`BrowserExecutor._settle`);
- record: the time the loop spends inside `recorder.record_step()`;
- other: the rest of the step (prompt building, history, events), found by subtraction.

The loop's overhead is everything except the model calls and the settle wait, as a share
of the step. Capture, execute and record are timed by wrapping the executor and the
recorder; the loop itself is unchanged. The recorder writes PNGs and fsyncs on its own
thread, and the script reports that thread's time separately.

The model's weights are random, so its replies are valid but arbitrary actions and its
speed is not that of the 8B model. The 8B model's calls are slower, so its overhead
share would be smaller than measured here; that has not been measured.

Usage: python scripts/bench_loop.py [--steps 10] [--task click-checkboxes]
       [--output docs/benchmarks.md] [--print-only]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from importlib import metadata
from pathlib import Path
from typing import Any, TypeVar

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agent.actions import Action
from agent.approval import AutoApprove
from agent.control import RunControl
from agent.deciding import Models
from agent.loop import AgentLoop, LoopSettings
from agent.miniwob import MiniWobTask
from agent.models.llama import LlamaCppModel
from agent.models.tiny import write_tiny_models
from agent.recording import ModelFiles, Recorder
from agent.runner import ENVIRONMENTS, ExecutorSpec
from agent.steps import LoopEvent, RunOutcome, StepFinished, StepRecord
from executors.base import ExecutionResult, Observation
from executors.browser import BrowserExecutor

START_MARKER = "<!-- bench_loop:start -->"
END_MARKER = "<!-- bench_loop:end -->"
VIEWPORT = (1280, 800)
MODEL_SEED = 7
# With random weights a `type` string can run to the grammar's limit (500 characters by
# default), while a real model types a few words. This limit keeps typing from dominating
# the execute phase.
MAX_STRING_CHARS = 32
OVERHEAD_GOAL = 0.10
PHASES = ("capture", "hash", "model", "parse", "approval", "execute", "settle", "record", "other")
# Phases that are not the loop's overhead: the model's work and the page's reaction time.
NOT_OVERHEAD = ("model", "settle")

Result = TypeVar("Result")


class Stopwatch:
    """Sums the seconds spent in the calls it wraps, per name, until `take()` resets them."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.counts: dict[str, int] = {}

    def wrap(self, name: str, function: Callable[..., Result]) -> Callable[..., Result]:
        def timed(*args: Any, **kwargs: Any) -> Result:
            started = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                self.add(name, time.perf_counter() - started)

        return timed

    def add(self, name: str, seconds: float) -> None:
        self.seconds[name] = self.seconds.get(name, 0.0) + seconds
        self.counts[name] = self.counts.get(name, 0) + 1

    def take(self, name: str) -> float:
        self.counts.pop(name, None)
        return self.seconds.pop(name, 0.0)


class TimedExecutor:
    """Delegates to a `BrowserExecutor`, timing `execute()` and marking when each step starts."""

    name = "browser"

    def __init__(self, inner: BrowserExecutor, watch: Stopwatch) -> None:
        self.inner = inner
        self._watch = watch
        self.step_started: float | None = None
        # The settle wait runs inside execute(); timing it here separates it from the rest.
        inner._settle = watch.wrap("settle", inner._settle)  # type: ignore[method-assign]

    def observe(self) -> Observation:
        # The loop's first call in every step, so a step's span starts here.
        self.step_started = time.perf_counter()
        return self.inner.observe()

    def execute(self, action: Action) -> ExecutionResult:
        return self._watch.wrap("execute", self.inner.execute)(action)

    def __enter__(self) -> TimedExecutor:
        return self

    def __exit__(self, *exc_info: object) -> None:
        pass


class TimedRecorder:
    """Delegates to a `Recorder`, timing `record_step()` and the writer thread's work."""

    def __init__(self, inner: Recorder, watch: Stopwatch) -> None:
        self.inner = inner
        self._watch = watch
        self.records: list[StepRecord] = []
        self.finish_seconds = 0.0
        # Runs on the writer thread, off the loop's critical path.
        inner._write_step = watch.wrap("writer", inner._write_step)  # type: ignore[method-assign]

    def begin(self, task: str, settings: dict[str, Any]) -> None:
        self.inner.begin(task, settings)

    def record_step(self, record: StepRecord) -> None:
        self.records.append(record)
        self._watch.wrap("record", self.inner.record_step)(record)

    def finish(self, outcome: RunOutcome) -> None:
        started = time.perf_counter()
        self.inner.finish(outcome)
        self.finish_seconds += time.perf_counter() - started


@dataclass(frozen=True)
class StepSample:
    """One step's seconds per phase and its whole span."""

    step: int
    action: str
    phases: dict[str, float]
    total: float

    @property
    def overhead(self) -> float:
        return self.total - sum(self.phases[name] for name in NOT_OVERHEAD)


@dataclass
class StepCollector:
    """Turns each finished step's record and stopwatch readings into a `StepSample`."""

    executor: TimedExecutor
    watch: Stopwatch
    samples: list[StepSample] = field(default_factory=list)

    def __call__(self, event: LoopEvent) -> None:
        if not isinstance(event, StepFinished):
            return
        ended = time.perf_counter()
        assert self.executor.step_started is not None
        record = event.record
        timings = record.timings
        execute = self.watch.take("execute")
        settle = self.watch.take("settle")
        phases = {
            "capture": timings.get("observe", 0.0),
            "hash": timings.get("hash", 0.0),
            "model": timings.get("model", 0.0),
            "parse": timings.get("parse", 0.0),
            "approval": timings.get("approval", 0.0),
            "execute": execute - settle,
            "settle": settle,
            "record": self.watch.take("record"),
        }
        total = ended - self.executor.step_started
        phases["other"] = total - sum(phases.values())
        action = record.action.action if record.action else str(record.outcome)
        self.samples.append(StepSample(len(self.samples) + 1, action, phases, total))


@dataclass
class BenchResult:
    samples: list[StepSample]
    writer_seconds: float
    writer_steps: int
    finish_seconds: float
    load_seconds: float
    runs: int
    task: str
    browser_version: str


# The run.


def load_model(directory: Path) -> tuple[LlamaCppModel, ModelFiles]:
    paths = write_tiny_models(directory)
    model = LlamaCppModel(
        paths.instruct,
        paths.instruct_mmproj,
        seed=MODEL_SEED,
        max_string_chars=MAX_STRING_CHARS,
    )
    return model, ModelFiles(model.name, paths.instruct, paths.instruct_mmproj)


def run_bench(steps: int, task_name: str, seed: int) -> BenchResult:
    """Run the loop until `steps` steps are done, restarting it when the model ends a run."""
    watch = Stopwatch()
    with tempfile.TemporaryDirectory(prefix="bench-loop-") as scratch:
        started = time.perf_counter()
        model, files = load_model(Path(scratch) / "models")
        load_seconds = time.perf_counter() - started
        task = MiniWobTask(task_name, seed=seed)
        spec = ExecutorSpec(kind="browser", viewport=VIEWPORT, miniwob_task=task_name)
        with model, BrowserExecutor(task.url, viewport=VIEWPORT) as browser:
            executor = TimedExecutor(browser, watch)
            collector = StepCollector(executor, watch)
            runs, finish_seconds = 0, 0.0
            while len(collector.samples) < steps:
                runs += 1
                recorder = TimedRecorder(
                    Recorder(
                        Path(scratch) / f"run-{runs}",
                        models={"instruct": files},
                        executor=spec.as_dict(),
                    ),
                    watch,
                )
                utterance = task.start(browser)
                loop = AgentLoop(
                    models=Models(model),
                    executor=executor,
                    approval=AutoApprove(),
                    recorder=recorder,
                    control=RunControl(),
                    settings=LoopSettings(
                        max_steps=steps - len(collector.samples),
                        environment=ENVIRONMENTS["browser"],
                    ),
                    on_event=collector,
                )
                loop.run(utterance)
                finish_seconds += recorder.finish_seconds
            browser_version = browser.page.context.browser.version  # type: ignore[union-attr]
    return BenchResult(
        samples=collector.samples,
        writer_seconds=watch.seconds.get("writer", 0.0),
        writer_steps=watch.counts.get("writer", 0),
        finish_seconds=finish_seconds,
        load_seconds=load_seconds,
        runs=runs,
        task=f"{task_name} (seed {seed})",
        browser_version=browser_version,
    )


# The report.


def render_section(result: BenchResult) -> str:
    lines = [
        START_MARKER,
        "## Agent loop",
        "",
        *_intro(result),
        "",
        *_phase_table(result.samples),
        "",
        *_summary(result),
        "",
        *_step_table(result.samples),
        END_MARKER,
    ]
    return "\n".join(lines) + "\n"


def _intro(result: BenchResult) -> list[str]:
    steps = len(result.samples)
    runs = "one run" if result.runs == 1 else f"{result.runs} runs (the model ended a run early)"
    return _paragraph(
        f"Measured by `python scripts/bench_loop.py` on {date.today():%Y-%m-%d}: {_machine()},",
        f"llama-cpp-python {_version('llama_cpp_python')} on the CPU,",
        f"Playwright {_version('playwright')} with headless Chromium {result.browser_version}.",
        f"The numbers come from one invocation: {steps} steps in {runs}.",
        "Other processes shared the CPU, so single timings are noisy.",
        "The real `AgentLoop` in single-model mode drove the MiniWoB++ task",
        f"{result.task} at {VIEWPORT[0]}x{VIEWPORT[1]} with auto approval and a real recorder.",
        "The model is the tiny random-weight Qwen3-VL Instruct from",
        "`agent.models.tiny`, loaded by `LlamaCppModel` with the default image budget",
        f"(1024-2048 tokens) and JSON strings of at most {MAX_STRING_CHARS} characters; loading,",
        f"warm-up included, took {result.load_seconds:.2f} s. Its replies are arbitrary valid",
        "actions. The 8B model's calls are slower, so its overhead share would be smaller",
        "(not measured).",
    )


def _phase_table(samples: list[StepSample]) -> list[str]:
    totals = [sample.total for sample in samples]
    step_mean = statistics.mean(totals)
    lines = [
        "| phase | mean (ms) | median (ms) | max (ms) | share of step |",
        "| --- | --- | --- | --- | --- |",
    ]
    for phase in PHASES:
        values = [sample.phases[phase] for sample in samples]
        lines.append(_row(phase, values, step_mean))
    lines.append(_row("**overhead** (all but model and settle)", _overheads(samples), step_mean))
    lines.append(_row("**step**", totals, step_mean))
    return lines


def _row(name: str, values: list[float], step_mean: float) -> str:
    mean = statistics.mean(values)
    return (
        f"| {name} | {mean * 1000:.1f} | {statistics.median(values) * 1000:.1f} "
        f"| {max(values) * 1000:.1f} | {mean / step_mean:.1%} |"
    )


def _overheads(samples: list[StepSample]) -> list[float]:
    return [sample.overhead for sample in samples]


def _summary(result: BenchResult) -> list[str]:
    samples = result.samples
    share = sum(_overheads(samples)) / sum(sample.total for sample in samples)
    verdict = "meets" if share < OVERHEAD_GOAL else "misses"
    record_ms = statistics.mean(sample.phases["record"] for sample in samples) * 1000
    writer_ms = result.writer_seconds / max(1, result.writer_steps) * 1000
    worst = max(samples, key=lambda sample: sample.overhead / sample.total)
    return _paragraph(
        f"The loop's overhead was {share:.1%} of the step time over all steps, which {verdict}",
        f"the goal of under {OVERHEAD_GOAL:.0%}. Its largest share in one step was",
        f"{worst.overhead / worst.total:.1%} (step {worst.step}, a {worst.total:.2f} s step).",
        f"In time it was {_milliseconds(_overheads(samples))} ms per step, whatever the model.",
        "Capture is the screenshot: Playwright's PNG capture, decoding, and reading the page's",
        "URL and title. Settle is the",
        f"browser executor's wait for the page to react ({_settle_text()}).",
        "Other is the rest of the step: prompt building, history, events and bookkeeping.",
        f"Recording cost the loop {record_ms:.2f} ms per step in `record_step`, which only",
        "queues the step. The writer thread spent",
        f"{writer_ms:.1f} ms per step on PNG encoding and fsync, off the critical path,",
        "although on a machine this small it competes with the model for the CPU.",
        f"`finish()` waited {result.finish_seconds * 1000:.1f} ms in all for the last writes.",
    )


def _milliseconds(values: list[float]) -> str:
    return f"{min(values) * 1000:.0f}-{max(values) * 1000:.0f}"


def _settle_text() -> str:
    default = BrowserExecutor.__init__.__kwdefaults__ or {}
    seconds = default.get("settle_s", "?")
    return f"`settle_s` {seconds} s for a new page, then the load state"


def _step_table(samples: list[StepSample]) -> list[str]:
    lines = [
        "| step | action | step (s) | model (s) | capture (ms) | execute (ms) | settle (ms) "
        "| record (ms) | other (ms) | overhead |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for sample in samples:
        phases = sample.phases
        lines.append(
            f"| {sample.step} | {sample.action} | {sample.total:.3f} | {phases['model']:.3f} "
            f"| {phases['capture'] * 1000:.1f} | {phases['execute'] * 1000:.1f} "
            f"| {phases['settle'] * 1000:.1f} | {phases['record'] * 1000:.2f} "
            f"| {phases['other'] * 1000:.1f} | {sample.overhead / sample.total:.1%} |"
        )
    return lines


def _paragraph(*sentences: str) -> list[str]:
    """Wrap the text at about 90 characters, as the rest of docs/benchmarks.md is wrapped."""
    words = " ".join(sentences).split()
    lines, line = [], ""
    for word in words:
        if line and len(line) + 1 + len(word) > 90:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}" if line else word
    if line:
        lines.append(line)
    return lines


def _machine() -> str:
    cores = len(os.sched_getaffinity(0))
    return f"{_cpu_name()}, {cores} cores available, {platform.system()} {platform.machine()}"


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "an unknown CPU"


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "(not installed)"


def write_section(path: Path, section: str) -> None:
    """Replace the text between the bench_loop markers in `path`, or append the section."""
    text = path.read_text(encoding="utf-8") if path.exists() else "# Benchmarks\n"
    start, end = text.find(START_MARKER), text.find(END_MARKER)
    if start != -1 and end > start:
        text = text[:start] + section + text[end + len(END_MARKER) :].lstrip("\n")
    else:
        text = text.rstrip("\n") + "\n\n" + section
    path.write_text(text, encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10, help="steps to measure (default: 10)")
    parser.add_argument(
        "--task", default="click-checkboxes", help="MiniWoB++ task page (default: click-checkboxes)"
    )
    parser.add_argument("--seed", type=int, default=3, help="MiniWoB++ episode seed (default: 3)")
    parser.add_argument(
        "--output",
        type=Path,
        default=Path("docs/benchmarks.md"),
        help="markdown file whose bench_loop section to replace (default: docs/benchmarks.md)",
    )
    parser.add_argument(
        "--print-only", action="store_true", help="print the section instead of writing it"
    )
    args = parser.parse_args(argv)
    if args.steps < 1:
        parser.error(f"--steps {args.steps} is invalid; use 1 or more")

    result = run_bench(args.steps, args.task, args.seed)
    section = render_section(result)
    print(section)
    if not args.print_only:
        write_section(args.output, section)
        print(f"wrote the agent loop section of {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
