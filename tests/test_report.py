"""`agent report`: the HTML report of checked-in and freshly recorded runs."""

from __future__ import annotations

import base64
import io
import shutil
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

import pytest
from PIL import Image

from agent.approval import ApprovalRequest, Decision, Verdict
from agent.cli import EXIT_OK, EXIT_USAGE, main
from agent.geometry import ScreenGeometry
from agent.history import HistoryConfig
from agent.loop import LoopSettings
from agent.models.testing import ScriptedModel
from agent.recording import ModelFiles, Recorder, Recording
from agent.report import MAX_IMAGE_WIDTH, PROPOSED_COLOUR, RAN_COLOUR, RING_RADIUS, render_report
from agent.steps import RunOutcome, StepRecord
from executors.fake import FakeExecutor
from tests.loop_doubles import make_loop, tool_call

RECORDINGS = Path(__file__).resolve().parent.parent / "recordings"
CHECKED_IN = sorted(path.name for path in RECORDINGS.iterdir() if (path / "manifest.json").exists())
SCRIPT = '<script>alert("pwned")</script>'
# The synthetic run's screens: input points are half the pixels, and the screen
# sits right of and below the primary monitor, so pixels and points never coincide.
GEOMETRY = ScreenGeometry(1280, 800, scale=2.0, origin_x=1920.0, origin_y=100.0)
BACKGROUND = (60, 60, 60)
REPORT_SCALE = MAX_IMAGE_WIDTH / GEOMETRY.width


# Reading the HTML back.


@dataclass
class ParsedStep:
    number: int
    images: list[str] = field(default_factory=list)
    details: list[tuple[bool, str]] = field(default_factory=list)  # (open, text)
    cells: list[str] = field(default_factory=list)
    text: str = ""


class ReportParser(HTMLParser):
    """Collects each step section's images, <details> elements, table cells and text."""

    def __init__(self) -> None:
        super().__init__()
        self.steps: list[ParsedStep] = []
        self.tags: list[str] = []
        self.references: list[str] = []
        self.text = ""
        self._details: list[tuple[bool, str]] = []
        self._in_cell = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        self.tags.append(tag)
        self.references += [value or "" for name, value in attrs if name in ("src", "href")]
        if tag == "section" and values.get("data-step"):
            self.steps.append(ParsedStep(int(values["data-step"] or 0)))
        elif tag == "img" and self.steps:
            self.steps[-1].images.append(values.get("src") or "")
        elif tag == "details":
            self._details.append(("open" in values, ""))
        elif tag == "td" and self.steps:
            self.steps[-1].cells.append("")
            self._in_cell = True

    def handle_endtag(self, tag: str) -> None:
        if tag == "td":
            self._in_cell = False
        if tag == "details" and self._details and self.steps:
            self.steps[-1].details.append(self._details.pop())

    def handle_data(self, data: str) -> None:
        self.text += data
        if self.steps:
            self.steps[-1].text += data
            if self._in_cell:
                self.steps[-1].cells[-1] += data
        if self._details:
            is_open, text = self._details[-1]
            self._details[-1] = (is_open, text + data)


def parse(html: str) -> ReportParser:
    parser = ReportParser()
    parser.feed(html)
    parser.close()
    return parser


def decode(uri: str) -> Image.Image:
    header, _, data = uri.partition(",")
    assert header in ("data:image/png;base64", "data:image/jpeg;base64"), header
    return Image.open(io.BytesIO(base64.b64decode(data))).convert("RGB")


def colour_near(
    image: Image.Image,
    point: tuple[float, float],
    colour: tuple[int, int, int],
    tolerance: int = 50,
) -> bool:
    """Tell whether a pixel within 1 px of `point` has `colour`, give or take JPEG noise."""
    cx, cy = round(point[0]), round(point[1])
    for x in range(cx - 1, cx + 2):
        for y in range(cy - 1, cy + 2):
            pixel = image.getpixel((x, y))
            assert isinstance(pixel, tuple)
            if all(abs(a - b) <= tolerance for a, b in zip(pixel, colour, strict=True)):
                return True
    return False


def report_of(path: Path) -> ReportParser:
    return parse(render_report(Recording.open(path)))


def scaled(point: tuple[float, float]) -> tuple[float, float]:
    return point[0] * REPORT_SCALE, point[1] * REPORT_SCALE


# A synthetic run through the real loop and recorder.


def _approve_except_step_3(request: ApprovalRequest) -> Decision:
    if request.step == 3:
        return Decision(Verdict.DENY, hint="<b>not that one</b>", source="test")
    return Decision.approve("test")


class _KilledRecorder:
    """Writes every step like `Recorder` but never the outcome, as a killed run leaves it."""

    def __init__(self, recorder: Recorder) -> None:
        self._recorder = recorder

    def begin(self, task: str, settings: dict[str, object]) -> None:
        self._recorder.begin(task, settings)

    def record_step(self, record: StepRecord) -> None:
        self._recorder.record_step(record)

    def finish(self, outcome: RunOutcome) -> None:
        self._recorder.close()


def _record_run(directory: Path, *, killed: bool = False) -> Path:
    model = ScriptedModel(
        [
            f"<think>The field {SCRIPT} is on the left.</think>\n"
            + tool_call(action="left_click", coordinate=[250, 500]),
            tool_call(action="left_click_drag", coordinate=[750, 500]),
            tool_call(action="left_click", coordinate=[500, 250]),
            tool_call(action="terminate", status="success"),
        ]
    )
    images = [Image.new("RGB", (1280, 800), (*BACKGROUND[:2], 60 + step)) for step in range(4)]
    recorder = Recorder(
        directory,
        models={"instruct": ModelFiles("scripted")},
        executor={"kind": "desktop", "monitor": 2},
    )
    loop = make_loop(
        model,
        FakeExecutor(images, geometry=GEOMETRY),
        approval=_approve_except_step_3,
        recorder=_KilledRecorder(recorder) if killed else recorder,
    )
    loop.run(f"Fill in the form {SCRIPT}")
    return directory


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _record_run(tmp_path_factory.mktemp("report") / "rec")


@pytest.fixture(scope="module")
def synthetic_report(synthetic: Path) -> ReportParser:
    return report_of(synthetic)


# Checked-in recordings.


@pytest.mark.parametrize("name", CHECKED_IN)
def test_checked_in_recording_report(name: str) -> None:
    recording = Recording.open(RECORDINGS / name)

    report = report_of(RECORDINGS / name)

    assert [step.number for step in report.steps] == [step.step for step in recording.steps]
    for step in report.steps:
        assert len(step.images) == 1, f"step {step.number} has {len(step.images)} images"
        image = decode(step.images[0])
        assert image.width == MAX_IMAGE_WIDTH
    assert all(reference.startswith("data:image/") for reference in report.references)
    assert "raw reward" in report.text.lower()
    assert recording.task in report.text


def test_checked_in_click_marker() -> None:
    recording = Recording.open(RECORDINGS / "click-checkboxes-seed3")
    step = recording.steps[0]
    assert step.raw["action"] == {"action": "left_click", "coordinate": [13, 78]}
    pixel = ScreenGeometry(1280, 800).grid_to_pixel(13, 78)
    scale = MAX_IMAGE_WIDTH / 1280

    image = decode(report_of(recording.path).steps[0].images[0])

    assert colour_near(image, (pixel[0] * scale, pixel[1] * scale), RAN_COLOUR)


def test_report_is_small() -> None:
    html = render_report(Recording.open(RECORDINGS / "click-checkboxes-seed3"))

    assert len(html) < 400_000


# Markers on the synthetic run.


def test_click_marker_at_grid_pixel(synthetic_report: ReportParser) -> None:
    image = decode(synthetic_report.steps[0].images[0])
    centre = scaled(GEOMETRY.grid_to_pixel(250, 500))
    on_ring = (centre[0] + (RING_RADIUS - 1.5) * 0.7071, centre[1] + (RING_RADIUS - 1.5) * 0.7071)

    assert colour_near(image, centre, RAN_COLOUR)
    assert colour_near(image, on_ring, RAN_COLOUR)
    assert colour_near(image, (centre[0] + 40, centre[1] + 40), BACKGROUND, tolerance=10)
    # Input point (2080, 300) less the origin, read as pixels, is (160, 200).
    assert not colour_near(image, scaled((160, 200)), RAN_COLOUR)


def test_drag_marker_has_arrow(synthetic_report: ReportParser) -> None:
    image = decode(synthetic_report.steps[1].images[0])
    start = scaled(GEOMETRY.grid_to_pixel(250, 500))
    end = scaled(GEOMETRY.grid_to_pixel(750, 500))
    middle = ((start[0] + end[0]) / 2, (start[1] + end[1]) / 2)

    assert colour_near(image, end, RAN_COLOUR)
    assert colour_near(image, start, RAN_COLOUR)
    assert colour_near(image, middle, RAN_COLOUR)
    assert "arrow from the drag start" in synthetic_report.steps[1].text


def test_denied_proposal_marker(synthetic_report: ReportParser) -> None:
    step = synthetic_report.steps[2]
    image = decode(step.images[0])

    assert colour_near(image, scaled(GEOMETRY.grid_to_pixel(500, 250)), PROPOSED_COLOUR)
    assert "denied" in step.text
    assert "the proposed action did not run" in step.text
    assert "<b>not that one</b>" in step.text


def test_final_step_has_no_marker(synthetic_report: ReportParser) -> None:
    step = synthetic_report.steps[3]

    assert len(step.images) == 1
    assert "marker at" not in step.text
    assert "Finish the task (success)" in step.text


# Escaping and step details.


def test_recorded_script_is_escaped(synthetic_report: ReportParser) -> None:
    reasoning = synthetic_report.steps[0].details[0]

    assert "script" not in synthetic_report.tags
    assert "b" not in synthetic_report.tags
    assert reasoning == (False, f"\nReasoning\nThe field {SCRIPT} is on the left.\n")
    assert f"Fill in the form {SCRIPT}" in synthetic_report.text


def test_step_shows_action_and_timings(synthetic_report: ReportParser) -> None:
    step = synthetic_report.steps[0]
    cells = step.cells

    assert "Click at [250, 500]" in step.text
    assert '{"action": "left_click", "coordinate": [250, 500]}' in step.text
    assert "approve by test" in step.text
    for phase in ("observe", "hash", "model", "parse", "approval", "execute"):
        assert phase in cells, phase
        milliseconds = cells[cells.index(phase) + 1]
        assert float(milliseconds) >= 0, f"{phase}: {milliseconds!r}"


# Runs that did not finish, and errors.


def test_killed_run_report(tmp_path: Path) -> None:
    recording = _record_run(tmp_path / "rec", killed=True)
    with open(recording / "steps.jsonl", "a", encoding="utf-8") as steps:
        steps.write('{"step": 5, "outcome": "exec')

    assert Recording.open(recording).manifest["outcome"] is None
    report = report_of(recording)

    assert "not finished" in report.text
    assert "cut off mid-write" in report.text
    assert [step.number for step in report.steps] == [1, 2, 3, 4]


def test_missing_screenshot_noted(tmp_path: Path) -> None:
    recording = tmp_path / "rec"
    shutil.copytree(RECORDINGS / "enter-text-seed2", recording)
    (recording / "screenshots" / "step-0002.png").unlink()

    report = report_of(recording)

    assert report.steps[1].images == []
    assert "step-0002.png cannot be read" in report.steps[1].text
    assert [len(step.images) for step in report.steps] == [1, 0, 1, 1]


def test_command_default_output(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    recording = tmp_path / "rec"
    shutil.copytree(RECORDINGS / "click-button-seed1", recording)

    code = main(["report", str(recording)])

    assert code == EXIT_OK
    assert (recording / "report.html").stat().st_size > 0
    assert str(recording / "report.html") in capsys.readouterr().out


def test_command_counts_one_step(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    directory = tmp_path / "rec"
    recorder = Recorder(directory, executor={"kind": "fake"})
    done = tool_call(action="terminate", status="success")
    loop = make_loop(
        ScriptedModel([done]),
        FakeExecutor([Image.new("RGB", (64, 40))]),
        recorder=recorder,
        settings=LoopSettings(max_steps=1, max_tokens=1, history=HistoryConfig(images=1)),
    )
    loop.run("finish")

    code = main(["report", str(directory)])

    assert code == EXIT_OK
    assert capsys.readouterr().out == (
        f"Wrote the report of 1 step to {directory / 'report.html'}\n"
    )
    html = (directory / "report.html").read_text()
    assert "at most 1 step, " in html
    assert "at most 1 generated token, " in html
    assert "1 screenshot in the history" in html


def test_command_missing_recording(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "absent"

    code = main(["report", str(missing), "-o", str(tmp_path / "out.html")])

    assert code == EXIT_USAGE
    assert str(missing) in capsys.readouterr().err
    assert not (tmp_path / "out.html").exists()


def test_command_invalid_recording(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    recording = tmp_path / "rec"
    recording.mkdir()
    (recording / "manifest.json").write_text('{"format": "something else"}', encoding="utf-8")

    code = main(["report", str(recording)])

    assert code == EXIT_USAGE
    assert str(recording / "manifest.json") in capsys.readouterr().err


def test_command_unwritable_output(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    output = tmp_path / "no-such-folder" / "report.html"

    code = main(["report", str(RECORDINGS / "click-button-seed1"), "-o", str(output)])

    assert code == EXIT_USAGE
    assert str(output) in capsys.readouterr().err
