"""A small Tk app that desktop tests drive with real X input events.

    python tests/apps/tk_app.py STATE.json

The app writes its whole state as JSON to STATE.json (atomically, by rename)
after every change. `widgets` gives each widget's box in screen pixels
`[x, y, width, height]`, so a test can aim at it, and `ready` becomes true once
the window is mapped. A Tk canvas has no wheel bindings, so the app binds the
horizontal wheel on its wide canvas itself.
"""

from __future__ import annotations

import functools
import json
import os
import sys
import tkinter as tk
from pathlib import Path
from typing import Any

TITLE = "Executor test app"
CLICK_AREA_COLOR = "#2060c0"
ITEM_SIZE = 40
ANIMATION_STEPS = 10
ANIMATION_STEP_MS = 60


class TkTestApp:
    def __init__(self, root: tk.Tk, state_path: Path) -> None:
        self.root = root
        self.state_path = state_path
        self.state: dict[str, Any] = {
            "ready": False,
            "button_presses": 0,
            "clicks": {"left": 0, "middle": 0, "right": 0, "double": 0, "triple": 0},
            "entry": "",
            "text": "",
            "list_top": 0,
            "list_selection": [],
            "wide_left": 0.0,
            "item": [0, 0],
            "drag_releases": 0,
            "pointer": None,
            "keys": [],
            "animation_done": False,
            "widgets": {},
        }
        self._write_pending = False
        root.title(TITLE)
        root.geometry("+0+0")
        self._build()
        root.bind_all("<Motion>", self._on_motion, add="+")
        root.bind_all("<KeyPress>", self._on_key, add="+")
        root.bind("<Map>", self._on_map)
        root.bind("<Configure>", lambda event: self._record_widgets())

    # Widgets.

    def _build(self) -> None:
        left = tk.Frame(self.root)
        left.grid(row=0, column=0, sticky="n", padx=8, pady=8)
        right = tk.Frame(self.root)
        right.grid(row=0, column=1, sticky="n", padx=8, pady=8)

        self.button = tk.Button(left, text="Press", command=self._on_button)
        self.button.pack(fill="x")
        self.click_area = tk.Frame(left, width=200, height=70, background=CLICK_AREA_COLOR)
        self.click_area.pack(pady=6)
        self._bind_clicks(self.click_area)

        self.entry_value = tk.StringVar()
        self.entry_value.trace_add("write", lambda *_: self._set("entry", self.entry_value.get()))
        self.entry = tk.Entry(left, textvariable=self.entry_value, width=30)
        self.entry.pack(pady=6)

        self.text = tk.Text(left, width=30, height=5)
        self.text.pack(pady=6)
        self.text.bind("<<Modified>>", self._on_text_modified)

        self.animate = tk.Button(left, text="Animate", command=self._start_animation)
        self.animate.pack(fill="x")
        self.swatch = tk.Label(left, text="swatch", width=20, background="#000000")
        self.swatch.pack(pady=6)

        self._build_list(right)
        self._build_wide(right)
        self._build_board(right)

    def _bind_clicks(self, widget: tk.Widget) -> None:
        bindings = {
            "<Button-1>": "left",
            "<Button-2>": "middle",
            "<Button-3>": "right",
            "<Double-Button-1>": "double",
            "<Triple-Button-1>": "triple",
        }
        for sequence, name in bindings.items():
            widget.bind(sequence, functools.partial(self._count_click, name))

    def _build_list(self, parent: tk.Frame) -> None:
        frame = tk.Frame(parent)
        frame.pack()
        scrollbar = tk.Scrollbar(frame, orient="vertical")
        self.listbox = tk.Listbox(
            frame, height=8, width=24, yscrollcommand=self._on_list_scroll(scrollbar)
        )
        scrollbar.configure(command=self.listbox.yview)
        for number in range(100):
            self.listbox.insert("end", f"Item {number}")
        self.listbox.pack(side="left")
        scrollbar.pack(side="left", fill="y")
        self.listbox.bind("<<ListboxSelect>>", self._on_list_select)

    def _on_list_scroll(self, scrollbar: tk.Scrollbar) -> Any:
        def update(first: str, last: str) -> None:
            scrollbar.set(first, last)
            self._set("list_top", self.listbox.nearest(0))

        return update

    def _build_wide(self, parent: tk.Frame) -> None:
        self.wide = tk.Canvas(
            parent, width=240, height=60, background="#ffffff", scrollregion=(0, 0, 4000, 60)
        )
        self.wide.pack(pady=6)
        for x in range(0, 4000, 100):
            self.wide.create_text(x + 50, 30, text=str(x))
        self.wide.configure(
            xscrollcommand=lambda first, last: self._set("wide_left", self.wide.canvasx(0))
        )
        # Tk 8.6 on X11 delivers wheel buttons 6 and 7 as Shift with buttons 4 and 5.
        self.wide.bind("<Shift-Button-4>", lambda event: self.wide.xview_scroll(-2, "units"))
        self.wide.bind("<Shift-Button-5>", lambda event: self.wide.xview_scroll(2, "units"))
        self.wide.configure(xscrollincrement=10)

    def _build_board(self, parent: tk.Frame) -> None:
        self.board = tk.Canvas(parent, width=240, height=160, background="#e0ffe0")
        self.board.pack(pady=6)
        self.item = self.board.create_rectangle(
            10, 10, 10 + ITEM_SIZE, 10 + ITEM_SIZE, fill="#c04040"
        )
        self._grab: tuple[int, int] | None = None
        self.board.tag_bind(self.item, "<ButtonPress-1>", self._on_item_press)
        self.board.bind("<B1-Motion>", self._on_item_motion)
        self.board.bind("<ButtonRelease-1>", self._on_item_release)
        self._record_item()

    # Events.

    def _on_button(self) -> None:
        self._set("button_presses", self.state["button_presses"] + 1)

    def _count_click(self, name: str, event: tk.Event) -> None:
        self.state["clicks"][name] += 1
        self._schedule_write()

    def _on_text_modified(self, event: tk.Event) -> None:
        self._set("text", self.text.get("1.0", "end-1c"))
        self.text.edit_modified(False)

    def _on_list_select(self, event: tk.Event) -> None:
        self._set(
            "list_selection", [self.listbox.get(index) for index in self.listbox.curselection()]
        )

    def _on_item_press(self, event: tk.Event) -> None:
        self._grab = (event.x, event.y)

    def _on_item_motion(self, event: tk.Event) -> None:
        if self._grab is None:
            return
        self.board.move(self.item, event.x - self._grab[0], event.y - self._grab[1])
        self._grab = (event.x, event.y)
        self._record_item()

    def _on_item_release(self, event: tk.Event) -> None:
        if self._grab is not None:
            self._grab = None
            self._set("drag_releases", self.state["drag_releases"] + 1)

    def _on_motion(self, event: tk.Event) -> None:
        self._set("pointer", [event.x_root, event.y_root])

    def _on_key(self, event: tk.Event) -> None:
        state = int(event.state)
        modifiers = [
            name for bit, name in ((0x1, "shift"), (0x4, "ctrl"), (0x8, "alt")) if state & bit
        ]
        self.state["keys"] = [*self.state["keys"][-49:], [event.keysym, modifiers]]
        self._schedule_write()

    def _on_map(self, event: tk.Event) -> None:
        if event.widget is self.root:
            self.root.after(100, self._become_ready)

    def _become_ready(self) -> None:
        self._record_widgets()
        self._set("ready", True)

    def _start_animation(self) -> None:
        """Change the swatch colour in steps, so the screen keeps changing for a while."""
        self._set("animation_done", False)
        for step in range(1, ANIMATION_STEPS + 1):
            self.root.after(step * ANIMATION_STEP_MS, self._animation_step, step)

    def _animation_step(self, step: int) -> None:
        shade = 255 * step // ANIMATION_STEPS
        self.swatch.configure(background=f"#{shade:02x}{shade:02x}00")
        if step == ANIMATION_STEPS:
            self._set("animation_done", True)

    # State.

    def _record_item(self) -> None:
        x1, y1, x2, y2 = self.board.coords(self.item)
        self.state["item"] = [
            self.board.winfo_rootx() + (x1 + x2) / 2,
            self.board.winfo_rooty() + (y1 + y2) / 2,
        ]
        self._schedule_write()

    def _record_widgets(self) -> None:
        widgets = {
            "button": self.button,
            "click_area": self.click_area,
            "entry": self.entry,
            "text": self.text,
            "animate": self.animate,
            "swatch": self.swatch,
            "listbox": self.listbox,
            "wide": self.wide,
            "board": self.board,
        }
        self.state["widgets"] = {
            name: [
                widget.winfo_rootx(),
                widget.winfo_rooty(),
                widget.winfo_width(),
                widget.winfo_height(),
            ]
            for name, widget in widgets.items()
        }
        self._record_item()

    def _set(self, key: str, value: Any) -> None:
        self.state[key] = value
        self._schedule_write()

    def _schedule_write(self) -> None:
        if not self._write_pending:
            self._write_pending = True
            self.root.after_idle(self._write)

    def _write(self) -> None:
        self._write_pending = False
        partial = self.state_path.with_suffix(".partial")
        partial.write_text(json.dumps(self.state), encoding="utf-8")
        os.replace(partial, self.state_path)


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        sys.stderr.write("usage: tk_app.py STATE.json\n")
        return 2
    root = tk.Tk()
    TkTestApp(root, Path(argv[1]))
    root.mainloop()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
