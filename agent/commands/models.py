"""`agent models pull` downloads Qwen3-VL GGUF files, and `agent models list` shows them."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from agent.models.catalog import Catalog, load_catalog, user_catalog_path
from agent.models.downloads import (
    ENDPOINT_ENV,
    MODELS_DIR_ENV,
    TARGETS,
    InstalledModel,
    cached_models,
    format_bytes,
    models_dir,
    plan_pull,
    pull,
)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "models",
        help="download and list Qwen3-VL models",
        description="Download Qwen3-VL GGUF models from the Hugging Face hub and list the "
        "installed ones.",
    )
    actions = parser.add_subparsers(dest="models_command", metavar="ACTION", required=True)

    pull_parser = actions.add_parser(
        "pull",
        help="download a model and its mmproj",
        description="Download a model's GGUF and mmproj into the model cache, resuming an "
        "interrupted download and verifying size and sha256.",
    )
    pull_parser.add_argument(
        "target",
        nargs="?",
        default="instruct",
        help=f"{', '.join(TARGETS)} (the catalog defaults) or a catalog model name such as "
        "qwen3-vl-4b-instruct (default: instruct)",
    )
    pull_parser.add_argument(
        "--quant",
        metavar="QUANT",
        help="quantization, such as Q4_K_M, Q8_0 or F16 (default: the catalog's)",
    )
    pull_parser.add_argument(
        "--size",
        metavar="SIZE",
        help="model size in parameters, such as 2b, 4b or 8b (default: the catalog's defaults)",
    )
    pull_parser.add_argument(
        "--endpoint",
        metavar="URL",
        help=f"hub URL (default: ${ENDPOINT_ENV}, else https://huggingface.co)",
    )
    _add_common_options(pull_parser)
    pull_parser.set_defaults(handler=run_pull)

    list_parser = actions.add_parser("list", help="show the installed models")
    _add_common_options(list_parser)
    list_parser.set_defaults(handler=run_list)


def _add_common_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--catalog",
        type=Path,
        metavar="FILE",
        help=f"a model catalog TOML file merged over the built-in one and {user_catalog_path()}",
    )
    parser.add_argument(
        "--models-dir",
        type=Path,
        metavar="DIR",
        help=f"model cache directory (default: ${MODELS_DIR_ENV}, else {models_dir()})",
    )


def run_pull(args: argparse.Namespace) -> int:
    catalog = load_catalog(args.catalog)
    plan = plan_pull(
        catalog,
        args.target,
        args.quant,
        size=args.size,
        root=args.models_dir,
        endpoint=args.endpoint,
    )
    print(f"{plan.summary()}, from {plan.endpoint} into {plan.root}")

    console = Console(stderr=True)
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console, transient=False) as progress:
        paths = pull(plan, progress=progress)
    for path in paths:
        print(f"installed {path}")
    return 0


def run_list(args: argparse.Namespace) -> int:
    catalog = load_catalog(args.catalog)
    root = args.models_dir if args.models_dir is not None else models_dir()
    cached = cached_models(catalog, root)
    print(f"models directory: {root}")
    print(f"catalog: {', '.join(str(path) for path in catalog.sources)}")
    if not cached:
        _print_nothing_installed(catalog, root)
        return 0

    rows = [("MODEL", "KIND", "QUANT", "SIZE", "STATUS", "GGUF", "MMPROJ")]
    for entry in cached:
        default = (
            " (default)"
            if entry.model.name in (catalog.default_instruct, catalog.default_thinking)
            else ""
        )
        rows.append(
            (
                entry.model.name + default,
                entry.model.kind,
                entry.quant,
                format_bytes(entry.size_bytes),
                "installed" if entry.complete else "wrong size",
                str(entry.gguf),
                str(entry.mmproj),
            )
        )
    _print_table(rows)
    _print_problems([entry for entry in cached if not entry.complete], catalog, root)
    return 0


def _print_problems(entries: list[InstalledModel], catalog: Catalog, root: Path) -> None:
    """Explain each listed model whose files differ in size from the catalog, and the fix."""
    for entry in entries:
        plan = plan_pull(catalog, entry.model.name, entry.quant, root=root)
        print(
            f"{entry.model.name} {entry.quant} is not usable: {'; '.join(entry.problems)}. "
            f"Run `{plan.command}` to download it again"
        )


def _print_nothing_installed(catalog: Catalog, root: Path) -> None:
    plan = plan_pull(catalog, "instruct", root=root)
    print("no models installed")
    print(f"run `{plan.command}` to download {plan.summary()}")


def _print_table(rows: Sequence[tuple[str, ...]]) -> None:
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=True)]
        print("  ".join(cells).rstrip())
