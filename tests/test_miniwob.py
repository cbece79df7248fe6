"""MiniWoB++ tasks solved through BrowserExecutor: grid -> CSS pixel -> input event.

Each solver reads the instruction and the DOM the way a perfect agent would read
the screen. It converts every target's CSS position to the 0..1000 grid of the
screenshot, builds the action from the JSON a model would write (`parse_action`),
and sends it through the executor. The task page scores the result itself, and
every task must reach raw reward 1. One browser serves all tasks.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from playwright.sync_api import Locator

from agent.actions import parse_action
from agent.errors import ConfigError
from agent.miniwob import MiniWobTask, task_names
from executors.base import ExecutionResult
from executors.browser import BrowserExecutor

pytest.importorskip("miniwob")

pytestmark = pytest.mark.timeout(30)


class Session:
    """Sends actions on the grid of the latest screenshot to one running task."""

    def __init__(self, executor: BrowserExecutor) -> None:
        self.executor = executor
        self.page = executor.page
        self.geometry = executor.observe().geometry

    def locate(self, target: str | Locator) -> Locator:
        return self.page.locator(target) if isinstance(target, str) else target

    def grid(self, target: str | Locator, dx: float = 0, dy: float = 0) -> list[float]:
        """Return the grid point of a visible part of the target, plus an offset in CSS pixels.

        That is the centre of the target's first line box unless another element
        covers it (buttons may overlap). Then it is the first uncovered point.
        """
        x, y = self.locate(target).evaluate(_VISIBLE_POINT)
        return list(self.geometry.point_to_grid(x + dx, y + dy))

    def act(self, **arguments: Any) -> ExecutionResult:
        result = self.executor.execute(parse_action(arguments))
        assert result.ok, result.reason
        return result

    def click(self, target: str | Locator, dx: float = 0, dy: float = 0) -> None:
        self.act(action="left_click", coordinate=self.grid(target, dx, dy))

    def type_into(self, target: str | Locator, text: str) -> None:
        self.click(target)
        self.act(action="type", text=text)

    def drag(self, source: str | Locator, target: str | Locator, dy: float = 0) -> None:
        """Drag the source so that its centre ends on the target's centre, shifted by dy."""
        grab_x, grab_y = self.locate(source).evaluate(_VISIBLE_POINT)
        source_x, source_y = self.centre(source)
        target_x, target_y = self.centre(target)
        self.act(action="mouse_move", coordinate=list(self.geometry.point_to_grid(grab_x, grab_y)))
        drop = (target_x + grab_x - source_x, target_y + grab_y - source_y + dy)
        self.act(action="left_click_drag", coordinate=list(self.geometry.point_to_grid(*drop)))

    def centre(self, target: str | Locator) -> tuple[float, float]:
        box = self.locate(target).bounding_box()
        assert box is not None
        return box["x"] + box["width"] / 2, box["y"] + box["height"] / 2

    def text(self, selector: str) -> str:
        return self.page.inner_text(selector)


# Returns [x, y] in CSS pixels: the element's centre, or the first point of a 9x9
# lattice over its box where the element itself is on top.
_VISIBLE_POINT = """e => {
    const r = e.getClientRects()[0];
    const hits = (x, y) => {
        const top = document.elementFromPoint(x, y);
        return top && e.contains(top);
    };
    const centre = [r.left + r.width / 2, r.top + r.height / 2];
    if (hits(...centre)) return centre;
    for (let i = 1; i < 10; i++) for (let j = 1; j < 10; j++) {
        const point = [r.left + r.width * i / 10, r.top + r.height * j / 10];
        if (hits(...point)) return point;
    }
    return centre;
}"""


def quoted(utterance: str) -> list[str]:
    return re.findall(r'"([^"]*)"', utterance)


def exact_text(locator: Locator, text: str) -> Locator:
    return locator.filter(has_text=re.compile(f"^\\s*{re.escape(text)}\\s*$")).first


SOLVERS: dict[str, Callable[[Session, str], None]] = {}


def solver(name: str) -> Callable[[Callable[[Session, str], None]], Callable[[Session, str], None]]:
    def register(function: Callable[[Session, str], None]) -> Callable[[Session, str], None]:
        SOLVERS[name] = function
        return function

    return register


# Clicks.


@solver("click-test")
def solve_click_test(session: Session, utterance: str) -> None:
    session.click("#subbtn")


@solver("click-test-2")
def solve_click_test_2(session: Session, utterance: str) -> None:
    session.click(exact_text(session.page.locator("#area button"), "ONE"))


@solver("click-button")
def solve_click_button(session: Session, utterance: str) -> None:
    session.click(exact_text(session.page.locator("#area button"), quoted(utterance)[0]))


@solver("click-button-sequence")
def solve_click_button_sequence(session: Session, utterance: str) -> None:
    session.click(exact_text(session.page.locator("#area button"), "ONE"))
    session.click(exact_text(session.page.locator("#area button"), "TWO"))


@solver("click-link")
def solve_click_link(session: Session, utterance: str) -> None:
    session.click(exact_text(session.page.locator("#area .alink"), quoted(utterance)[0]))


@solver("click-dialog")
def solve_click_dialog(session: Session, utterance: str) -> None:
    session.click(".ui-dialog-titlebar-close")


@solver("click-widget")
def solve_click_widget(session: Session, utterance: str) -> None:
    kind = quoted(utterance)[0]
    session.click(session.page.locator(f'#area [data-type="{kind}"]').first)


@solver("click-collapsible")
def solve_click_collapsible(session: Session, utterance: str) -> None:
    session.click("#area h3")
    session.act(action="wait", time=0.6)  # The accordion slides open, moving the button.
    session.click("#subbtn")


# Checkboxes, radio buttons, tabs.


def _click_labels(session: Session, names: set[str]) -> None:
    labels = session.page.locator("#boxes label")
    for index in range(labels.count()):
        label = labels.nth(index)
        if label.inner_text().strip() in names:
            session.click(label.locator("input"))


@solver("click-checkboxes")
def solve_click_checkboxes(session: Session, utterance: str) -> None:
    listed = re.fullmatch(r"Select (.*) and click Submit\.", utterance)
    assert listed is not None, utterance
    names = set() if listed.group(1) == "nothing" else set(listed.group(1).split(", "))
    _click_labels(session, names)
    session.click("#subbtn")


@solver("click-option")
def solve_click_option(session: Session, utterance: str) -> None:
    listed = re.fullmatch(r"Select (.*) and click Submit\.", utterance)
    assert listed is not None, utterance
    _click_labels(session, {listed.group(1)})
    session.click("#subbtn")


@solver("click-tab")
def solve_click_tab(session: Session, utterance: str) -> None:
    number = re.search(r"Tab #(\d)", utterance)
    assert number is not None, utterance
    session.click(exact_text(session.page.locator("#area ul a"), f"Tab #{number.group(1)}"))


@solver("click-tab-2")
def solve_click_tab_2(session: Session, utterance: str) -> None:
    word = quoted(utterance)[0]
    for number in (1, 2, 3):
        link = exact_text(session.page.locator(f"#tabs-{number} .alink"), word)
        if link.count():
            session.click(exact_text(session.page.locator("#area ul a"), f"Tab #{number}"))
            session.click(link)
            return
    raise AssertionError(f"no tab holds the link {word!r}")


# Typing.


@solver("focus-text")
def solve_focus_text(session: Session, utterance: str) -> None:
    session.click("#tt")


@solver("enter-text")
def solve_enter_text(session: Session, utterance: str) -> None:
    session.type_into("#tt", quoted(utterance)[0])
    session.click("#subbtn")


@solver("enter-text-2")
def solve_enter_text_2(session: Session, utterance: str) -> None:
    word = quoted(utterance)[0]
    session.type_into("#tt", word.upper() if "upper case" in utterance else word.lower())
    session.click("#subbtn")


@solver("enter-password")
def solve_enter_password(session: Session, utterance: str) -> None:
    password = quoted(utterance)[0]
    session.type_into("#password", password)
    session.type_into("#verify", password)
    session.click("#subbtn")


@solver("login-user")
def solve_login_user(session: Session, utterance: str) -> None:
    user, password = quoted(utterance)
    session.type_into("#username", user)
    session.type_into("#password", password)
    session.click("#subbtn")


@solver("simple-arithmetic")
def solve_simple_arithmetic(session: Session, utterance: str) -> None:
    left, symbol, right = session.text("#math-problem").split()[:3]
    compute = {"+": operator.add, "-": operator.sub, "x": operator.mul}[symbol]
    session.type_into("#math-answer", str(compute(int(left), int(right))))
    session.click("#subbtn")


# Dropdown and scrolling.


@solver("choose-list")
def solve_choose_list(session: Session, utterance: str) -> None:
    listed = re.fullmatch(r"Select (.*) from the list and click Submit\.", utterance)
    assert listed is not None, utterance
    options = session.page.locator("#options option").all_inner_texts()
    steps = options.index(listed.group(1)) - session.page.eval_on_selector(
        "#options", "e => e.selectedIndex"
    )
    session.click("#options")  # Opens the dropdown.
    for _ in range(steps):
        session.act(action="key", keys=["down"])
    session.act(action="key", keys=["enter"])
    session.click(exact_text(session.page.locator("#area button"), "Submit"))


@solver("click-scroll-list")
def solve_click_scroll_list(session: Session, utterance: str) -> None:
    listed = re.fullmatch(r"Select (.*) from the scroll list and click Submit\.", utterance)
    assert listed is not None, utterance
    option = exact_text(session.page.locator("#options option"), listed.group(1))
    hidden_by = option.evaluate("o => o.offsetTop + o.offsetHeight - o.parentElement.clientHeight")
    assert hidden_by > 0, "choose a seed whose option starts out of view, so the test must scroll"

    session.act(action="scroll", pixels=-(hidden_by + 4), coordinate=session.grid("#options"))
    session.page.wait_for_function("document.getElementById('options').scrollTop > 0")
    session.click(option)
    session.click(exact_text(session.page.locator("#area button"), "Submit"))


@solver("scroll-text")
def solve_scroll_text(session: Session, utterance: str) -> None:
    session.act(action="scroll", pixels=-2000, coordinate=session.grid("#text-area"))
    session.page.wait_for_function("document.getElementById('text-area').scrollTop > 0")
    last_word = session.page.input_value("#text-area").split()[-1].strip(".")
    session.type_into("#answer-input", last_word)
    session.click("#subbtn")


# Dragging.


@solver("drag-box")
def solve_drag_box(session: Session, utterance: str) -> None:
    # The small box's centre on the large box's centre leaves a 15 px margin on each side.
    session.drag("#draggableSmall", "#draggableLarge")
    session.click("#subbtn")


_SORT_TARGETS = {
    "to the top.": lambda current, count: 1,
    "to the bottom.": lambda current, count: count,
}


@solver("drag-items")
def solve_drag_items(session: Session, utterance: str) -> None:
    match = re.fullmatch(r"Drag (\S+) (.*)", utterance)
    assert match is not None, utterance
    name, where = match.groups()
    items = session.page.locator("#sortable li")
    names = [text.strip() for text in items.all_inner_texts()]
    current = names.index(name) + 1
    if where in _SORT_TARGETS:
        target = _SORT_TARGETS[where](current, len(names))
    elif where == "down by one position.":
        target = current + 1
    elif where == "up by one position.":
        target = current - 1
    else:
        position = re.fullmatch(r"to the (\d+)\w\w position\.", where)
        assert position is not None, where
        target = int(position.group(1))

    # jQuery UI sortable moves the item once the pointer passes the target's middle.
    overshoot = 6 if target > current else -6
    session.drag(items.nth(current - 1), items.nth(target - 1), dy=overshoot)


# Seeds picked so that each problem exercises its skill; the default seed is 1.
SEEDS = {"click-scroll-list": 2}


@pytest.fixture(scope="module")
def miniwob_browser() -> Iterator[BrowserExecutor]:
    with BrowserExecutor(viewport=(500, 400), settle_s=0.03) as executor:
        yield executor


@pytest.mark.parametrize("name", sorted(SOLVERS))
def test_task_reaches_reward_one(miniwob_browser: BrowserExecutor, name: str) -> None:
    task = MiniWobTask(name, seed=SEEDS.get(name, 1))
    utterance = task.start(miniwob_browser)
    session = Session(miniwob_browser)

    SOLVERS[name](session, utterance)

    assert task.wait_done(miniwob_browser) == 1.0, (
        f"{utterance!r}: {task.reward_reason(miniwob_browser)}"
    )


def test_solvers_cover_fifteen_tasks() -> None:
    assert len(SOLVERS) >= 15
    assert set(SOLVERS) <= set(task_names())


def test_wrong_action_scores_minus_one(miniwob_browser: BrowserExecutor) -> None:
    task = MiniWobTask("click-test-2", seed=1)
    task.start(miniwob_browser)
    session = Session(miniwob_browser)

    assert task.raw_reward(miniwob_browser) is None
    session.click(exact_text(session.page.locator("#area button"), "TWO"))

    assert task.wait_done(miniwob_browser) == -1.0


def test_same_seed_same_problem(miniwob_browser: BrowserExecutor) -> None:
    first = MiniWobTask("click-button", seed=7).start(miniwob_browser)
    again = MiniWobTask("click-button", seed=7).start(miniwob_browser)
    other = MiniWobTask("enter-text", seed=7).start(miniwob_browser)

    assert first == again
    assert first.startswith("Click on the")
    assert other != first


def test_unknown_task_rejected() -> None:
    with pytest.raises(ConfigError, match="not found"):
        MiniWobTask("no-such-task")


def test_task_url_is_file_page() -> None:
    task = MiniWobTask("click-button")

    assert task.url.startswith("file://")
    assert task.url.endswith("/miniwob/click-button.html")
