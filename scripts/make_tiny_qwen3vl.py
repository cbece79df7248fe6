"""Write the tiny random-weight Qwen3-VL test models into a folder.

Usage: python scripts/make_tiny_qwen3vl.py OUTDIR

Writes instruct.gguf, instruct-mmproj.gguf, thinking.gguf and thinking-mmproj.gguf
(about 1 MB each, deterministic). The work is done by `agent.models.tiny`, which the
test fixtures call directly.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agent.models.tiny import write_tiny_models


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Write the tiny random-weight Qwen3-VL test models."
    )
    parser.add_argument("outdir", type=Path, help="folder to write the four GGUF files into")
    args = parser.parse_args(argv)

    started = time.perf_counter()
    paths = write_tiny_models(args.outdir)
    elapsed = time.perf_counter() - started
    for path in (paths.instruct, paths.instruct_mmproj, paths.thinking, paths.thinking_mmproj):
        print(f"{path} ({path.stat().st_size / 1e6:.2f} MB)")
    print(f"wrote 4 files in {elapsed:.2f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
