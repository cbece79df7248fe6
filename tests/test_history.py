"""Bounded history: screenshots kept as turns, dropped in chunks, older steps as text."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from agent.approval import AutoApprove
from agent.deciding import Models
from agent.history import History, HistoryConfig, PastStep, PromptTurns
from agent.loop import AgentLoop, LoopSettings
from agent.models.base import ChatRequest, ImagePart, Message, TextPart
from agent.models.testing import ScriptedModel
from agent.recording import NullRecorder
from executors.fake import FakeExecutor


def _image(index: int) -> Image.Image:
    return Image.new("RGB", (64, 40), (index % 256, (index * 7) % 256, 0))


def _past(step: int) -> PastStep:
    return PastStep(
        step=step,
        image=_image(step),
        action=f"Click at [{step}, {step}]",
        reply=f"reply {step}",
        plan=f"Next step: plan {step}",
        summary=f"Step {step}: Click at [{step}, {step}] (ran)",
        outcome=f"The previous step ran: step {step}.",
    )


def _history(past_steps: int, config: HistoryConfig | None = None) -> History:
    history = History(config)
    for step in range(1, past_steps + 1):
        history.append(_past(step))
    return history


def _prompt(
    history: History, *, planner: bool = False, notes: tuple[str, ...] = ()
) -> tuple[Message, ...]:
    step = len(history) + 1
    return history.messages(
        PromptTurns("SYSTEM", "the task", step, _image(step), notes), planner=planner
    )


def _images(messages: tuple[Message, ...]) -> list[Image.Image]:
    return [image for message in messages for image in message.images]


def _texts(messages: tuple[Message, ...]) -> str:
    return "\n".join(
        part.text for message in messages for part in message.content if isinstance(part, TextPart)
    )


def test_step_30_holds_configured_images() -> None:
    history = _history(29)

    images = _images(_prompt(history))

    assert len(images) == 4
    assert images[-1].getpixel((0, 0)) == _image(30).getpixel((0, 0))


def test_image_count_stays_within_bounds() -> None:
    config = HistoryConfig(images=4, drop_chunk=3)
    for past_steps in range(0, 40):
        count = len(_images(_prompt(_history(past_steps, config))))
        assert count >= min(past_steps + 1, config.images)
        assert count <= config.max_images


def test_chunk_of_one_keeps_exactly_n() -> None:
    config = HistoryConfig(images=3, drop_chunk=1)
    for past_steps in range(2, 20):
        assert len(_images(_prompt(_history(past_steps, config)))) == 3


@pytest.mark.parametrize(
    "config",
    [HistoryConfig(images=4, drop_chunk=3), HistoryConfig(images=4, drop_chunk=3, max_summaries=2)],
    ids=["all-summaries", "two-summaries"],
)
def test_prefix_stays_between_drops(config: HistoryConfig) -> None:
    """Between two drops a prompt, less its last user turn, is a prefix of the next prompt."""
    history = History(config)
    kept_prefix_steps = 0
    previous: tuple[Message, ...] | None = None
    first_before = 0
    for step in range(1, 31):
        prompt = _prompt(history)
        if previous is not None and history.first_kept() == first_before:
            assert prompt[: len(previous) - 1] == previous[:-1]
            kept_prefix_steps += 1
        previous, first_before = prompt, history.first_kept()
        history.append(_past(step))
    # Out of 29 step changes, only the drops (one per chunk) break the prefix.
    assert kept_prefix_steps >= 29 - 30 // config.drop_chunk


def test_window_moves_in_whole_chunks() -> None:
    config = HistoryConfig(images=4, drop_chunk=2)
    starts = [_history(past, config).first_kept() for past in range(0, 12)]

    assert starts == [0, 0, 0, 0, 0, 2, 2, 4, 4, 6, 6, 8]


def test_older_steps_become_text_list() -> None:
    history = _history(9)

    messages = _prompt(history)
    first_user = messages[1]

    assert isinstance(first_user.content[0], TextPart)
    opening = first_user.content[0].text
    assert opening.startswith("Task: the task")
    for step in range(1, history.first_kept() + 1):
        assert f"Step {step}: Click at [{step}, {step}] (ran)" in opening
    assert f"Step {history.first_kept() + 1}:" not in opening


def test_older_steps_list_is_capped() -> None:
    config = HistoryConfig(images=4, drop_chunk=2, max_summaries=5)
    history = _history(29, config)
    first = history.first_kept()

    opening = _prompt(history)[1].content[0]

    assert isinstance(opening, TextPart)
    lines = opening.text.splitlines()
    omitted_at = lines.index(f"({first - 5} earlier steps omitted)")
    assert lines[omitted_at + 1 :] == [_past(step).summary for step in range(first - 4, first + 1)]


def test_no_summaries_keeps_count_only() -> None:
    history = _history(9, HistoryConfig(images=4, drop_chunk=2, max_summaries=0))

    opening = _texts(_prompt(history)[1:2])

    assert f"({history.first_kept()} earlier steps omitted)" in opening
    assert "Step 1:" not in opening


def test_turns_alternate_user_assistant() -> None:
    messages = _prompt(_history(6))

    roles = [message.role for message in messages]
    assert roles[0] == "system"
    assert roles[1:] == ["user", "assistant"] * ((len(roles) - 2) // 2) + ["user"]
    assert isinstance(messages[-1].content[0], ImagePart)


def test_planner_view_shows_plans() -> None:
    history = _history(2)

    actor = _texts(_prompt(history))
    planner = _texts(_prompt(history, planner=True))

    assert "reply 2" in actor
    assert "plan 2" not in actor
    assert "Next step: plan 2" in planner
    assert "reply 2" not in planner


def test_outcome_precedes_next_screenshot() -> None:
    messages = _prompt(_history(2), notes=("a note for this step",))

    last = messages[-1]
    assert isinstance(last.content[0], ImagePart)
    text = last.content[1]
    assert isinstance(text, TextPart)
    assert text.text.startswith("The previous step ran: step 2.")
    assert "step 3" in text.text
    assert text.text.endswith("a note for this step")


def test_amend_last_rewrites_outcome() -> None:
    history = _history(3)

    history.amend_last(summary="Step 3: changed", outcome="The screen did not change.")

    assert history.steps[-1].outcome == "The screen did not change."
    assert history.steps[-2].outcome == "The previous step ran: step 2."
    assert "The screen did not change." in _texts(_prompt(history))


def test_image_steps_names_kept_screenshots() -> None:
    history = _history(9)

    mapping = history.image_steps()

    assert sorted(mapping.values()) == list(range(history.first_kept() + 1, 10))


@pytest.mark.parametrize(
    ("images", "chunk", "summaries"), [(0, 1, 20), (4, 0, 20), (-1, 2, 20), (4, 2, -1)]
)
def test_config_rejects_bad_values(images: int, chunk: int, summaries: int) -> None:
    with pytest.raises(ValueError, match="history"):
        HistoryConfig(images=images, drop_chunk=chunk, max_summaries=summaries)


def test_loop_step_30_prompt_images() -> None:
    """A real 30-step run: the prompt of step 30 contains exactly the configured 4 screenshots."""
    click = {
        "name": "computer_use",
        "arguments": {"action": "left_click", "coordinate": [500, 500]},
    }
    reply = f"<tool_call>\n{json.dumps(click)}\n</tool_call>"
    model = ScriptedModel(lambda request: reply)
    executor = FakeExecutor([_image(index) for index in range(31)])
    loop = AgentLoop(
        models=Models(model),
        executor=executor,
        approval=AutoApprove(),
        recorder=NullRecorder(),
        settings=LoopSettings(max_steps=30),
    )

    outcome = loop.run("click the middle")

    assert outcome.steps == 30
    request: ChatRequest = model.requests[29]
    assert sum(len(message.images) for message in request.messages) == 4


def test_loop_step_200_prompt_bounded() -> None:
    """A real 200-step run: the prompt text stops growing once the older-steps list is full."""
    click = {
        "name": "computer_use",
        "arguments": {"action": "left_click", "coordinate": [500, 500]},
    }
    reply = f"<tool_call>\n{json.dumps(click)}\n</tool_call>"
    model = ScriptedModel(lambda request: reply)
    config = HistoryConfig(images=4, drop_chunk=2, max_summaries=20)
    loop = AgentLoop(
        models=Models(model),
        executor=FakeExecutor([_image(index) for index in range(201)]),
        approval=AutoApprove(),
        recorder=NullRecorder(),
        settings=LoopSettings(max_steps=200, history=config),
    )

    outcome = loop.run("click the middle")

    assert outcome.steps == 200
    # By step 40 the list holds 20 summaries and one "omitted" line, as at step 200.
    step_40 = _texts(model.requests[39].messages)
    step_200 = _texts(model.requests[199].messages)
    assert "(16 earlier steps omitted)" in step_40
    assert "(176 earlier steps omitted)" in step_200
    # The step numbers grow from two digits to three, nothing else may grow.
    assert len(step_200) <= len(step_40) + 200
    assert sum(len(message.images) for message in model.requests[199].messages) == 4
