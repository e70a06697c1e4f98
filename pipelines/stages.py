"""A minimal stage runner: a stage is skipped when its outputs exist, are newer than its inputs,
and were made with the same parameters (hashed into a stamp file beside the first output)."""

from __future__ import annotations

import hashlib
import json
import logging
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click

from textae.errors import TextAEError

log = logging.getLogger("textae.pipeline")


@dataclass
class Stage:
    name: str
    run: Callable[[], None]
    outputs: Sequence[Path]
    inputs: Sequence[Path] = ()
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def stamp(self) -> Path:
        first = Path(self.outputs[0])
        return first.parent / f".{first.name}.{self.name}.stamp"

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(self.params, sort_keys=True, default=str).encode()).hexdigest()

    def up_to_date(self) -> bool:
        if not all(Path(p).exists() for p in self.outputs) or not self.stamp.is_file():
            return False
        if self.stamp.read_text() != self.digest():
            return False
        made = min(Path(p).stat().st_mtime for p in self.outputs)
        return all(Path(p).stat().st_mtime <= made for p in self.inputs if Path(p).exists())


def run_stages(stages: Sequence[Stage], force: bool = False) -> list[str]:
    """Run the stages in order, skipping those up to date; returns the names of the stages that ran."""
    ran = []
    for stage in stages:
        if not force and stage.up_to_date():
            log.info("[%s] up to date, skipped", stage.name)
            continue
        log.info("[%s] running", stage.name)
        stage.run()
        missing = [str(p) for p in stage.outputs if not Path(p).exists()]
        if missing:
            raise RuntimeError(f"stage {stage.name} did not write {missing}")
        stage.stamp.write_text(stage.digest())
        ran.append(stage.name)
        force = True  # everything after a re-run stage depends on it
    return ran


def run_pipeline(build: Callable[[], Sequence[Stage]], report: Path, force: bool = False) -> None:
    """What every pipeline command does: build its stages and run them. A bad config, bad data or
    a stale run is one `error:` line and exit status 2; otherwise it says which stages ran."""
    try:
        ran = run_stages(build(), force=force)
    except (TextAEError, ValueError) as err:
        click.echo(f"error: {err}", err=True)
        sys.exit(2)
    click.echo(f"ran: {', '.join(ran) or 'nothing (all up to date)'}; report: {report}")
