"""Write the checked-in MiniWoB++ recordings under recordings/ from hand-written replies.

Each recording runs the real loop, the real browser executor and a real seeded
MiniWoB++ episode. Only the model replies are hand-written, in the exact format
Qwen3-VL writes, with coordinates on the 0..1000 grid of a 1280x800 screenshot.
They were worked out from the element boxes of each seeded page, so the recordings
are labelled "hand-written replies" in their manifests.

    python scripts/make_miniwob_recordings.py [OUTDIR]      # default: recordings/

`tests/test_replay.py` replays every recording and expects raw reward 1.
"""

from __future__ import annotations

import json
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from agent.approval import AutoApprove
from agent.control import RunControl
from agent.deciding import Models
from agent.loop import LoopSettings
from agent.models.testing import ScriptedModel
from agent.runner import ENVIRONMENTS, ExecutorSpec, RunConfig, run_agent
from agent.steps import Mode

LABEL = "hand-written replies"


def call(action_line: str, **arguments: object) -> str:
    """Write one reply: an "Action:" line and one computer_use tool call."""
    body = json.dumps({"name": "computer_use", "arguments": arguments})
    return f"Action: {action_line}\n<tool_call>\n{body}\n</tool_call>"


def plan(reasoning: str, next_step: str) -> str:
    """Write one planner reply; the Thinking model's prompt already opened <think>."""
    return f"{reasoning}\n</think>\n\nNext step: {next_step}"


@dataclass(frozen=True)
class Script:
    task: str
    seed: int
    mode: Mode
    instruct: tuple[str, ...]
    thinking: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return f"{self.task}-seed{self.seed}"


SCRIPTS = (
    # 'Click on the "Ok" button.' The button's centre is at (19, 85) CSS pixels.
    Script(
        "click-button",
        1,
        Mode.SINGLE,
        (
            call("Click the “Ok” button.", action="left_click", coordinate=[15, 106]),
            call(
                "The button was clicked, so the task is done.", action="terminate", status="success"
            ),
        ),
    ),
    # 'Enter "Marcella" into the text field and press Submit.'
    Script(
        "enter-text",
        2,
        Mode.SINGLE,
        (
            call("Click the empty text field.", action="left_click", coordinate=[57, 94]),
            call("Type the name into the focused field.", action="type", text="Marcella"),
            call("Click the “Submit” button.", action="left_click", coordinate=[47, 131]),
            call("The form was submitted.", action="terminate", status="success"),
        ),
    ),
    # 'Select 91YPF, i6Vdpn2, nd7Qt, XPMut and click Submit.'
    Script(
        "click-checkboxes",
        3,
        Mode.SINGLE,
        (
            call("Tick the checkbox next to “91YPF”.", action="left_click", coordinate=[13, 78]),
            call("Tick the checkbox next to “i6Vdpn2”.", action="left_click", coordinate=[13, 101]),
            call("Tick the checkbox next to “nd7Qt”.", action="left_click", coordinate=[13, 125]),
            call("Tick the checkbox next to “XPMut”.", action="left_click", coordinate=[13, 149]),
            call("Click the “Submit” button.", action="left_click", coordinate=[41, 218]),
            call("All four boxes were ticked and submitted.", action="terminate", status="success"),
        ),
    ),
    # 'Click on Tab #3.' Two models: the planner names the tab, the grounder finds it.
    Script(
        "click-tab",
        4,
        Mode.TWO_MODEL,
        instruct=(call("Click “Tab #3”.", action="left_click", coordinate=[91, 88]),),
        thinking=(
            plan(
                "The task asks for a click on Tab #3. Three tabs sit in a row near the top "
                "of the task area, and the third one is labelled Tab #3.",
                "Click the tab labelled “Tab #3”, the third tab in the row at the top.",
            ),
            "Tab #3 is now selected, so the task is done.\n</think>\n\nFinished: success",
        ),
    ),
)


def write(script: Script, out: Path) -> Path:
    """Run one script against its live MiniWoB++ page and return the recording directory."""
    directory = out / script.name
    if directory.exists():
        shutil.rmtree(directory)
    instruct = ScriptedModel(script.instruct, name="hand-written-instruct")
    thinking = (
        ScriptedModel(script.thinking, name="hand-written-thinking", thinking=True)
        if script.thinking
        else None
    )
    config = RunConfig(
        task="",
        record_dir=directory,
        executor=ExecutorSpec(miniwob_task=script.task, miniwob_seed=script.seed),
        settings=LoopSettings(mode=script.mode, max_steps=10, environment=ENVIRONMENTS["browser"]),
        labels=(LABEL,),
    )
    outcome = run_agent(config, AutoApprove(), RunControl(), models=Models(instruct, thinking))
    reward = outcome.evaluation.get("raw_reward")
    print(f"{script.name}: {outcome.status} after {outcome.steps} steps, raw reward {reward}")
    if reward != 1:
        raise SystemExit(f"{script.name} did not reach raw reward 1; fix its replies")
    return directory


def main(argv: list[str]) -> int:
    out = Path(argv[0]) if argv else Path(__file__).resolve().parent.parent / "recordings"
    out.mkdir(parents=True, exist_ok=True)
    for script in SCRIPTS:
        write(script, out)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
