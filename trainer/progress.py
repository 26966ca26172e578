"""The driver's console view of training: a rich progress bar fed by rank 0 through a Ray queue."""

from __future__ import annotations

import logging
import queue as stdlib_queue

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

log = logging.getLogger("trainer")


class ProgressView:
    def __init__(self, progress_queue, run: str, total_steps: int, enabled: bool = True):
        self.queue, self.run, self.total = progress_queue, run, total_steps
        self.enabled = enabled
        self.step = 0
        self.metrics_port: int | None = None
        self.published: list[int] = []
        self.failed: list[int] = []
        self.start_steps: list[int] = []  # one per worker-group start: a restart after a failure adds one
        self.last_snapshot: int | None = None
        self._stopped = False

    def stop(self) -> None:
        self._stopped = True

    def follow(self) -> None:
        console = Console(stderr=True)
        bar = Progress(
            TextColumn(f"[bold]{self.run}[/]"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[status]}"),
            TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(), console=console, disable=not self.enabled, transient=False,
        )
        with bar:
            task = bar.add_task("train", total=self.total, status="starting Ray workers…")
            while True:
                try:
                    message = self.queue.get(timeout=0.5)
                except (stdlib_queue.Empty, Exception):  # noqa: BLE001 - ray's Empty, or the queue actor gone
                    if self._stopped:
                        return
                    continue
                self._handle(message, bar, task)

    def _handle(self, message: dict, bar: Progress, task) -> None:
        event = message.get("event")
        if event == "start":
            self.metrics_port = message.get("metrics_port")
            self.step = message["step"]
            self.start_steps.append(self.step)
            bar.update(task, completed=self.step, status=f"from step {self.step}" + (f", metrics on :{self.metrics_port}" if self.metrics_port else ""))
            if not self.enabled:
                log.info("run %s starts at step %d; metrics port %s", self.run, self.step, self.metrics_port)
        elif event == "log":
            self.step = message["step"]
            status = f"{message['images_per_second']:.0f} img/s  G {message['loss_g']:.3f}"
            if "loss_d" in message:  # withheld by a private run, as is D(x)
                status += f"  D {message['loss_d']:.3f}  D(x) {message['d_real']:+.2f}"
            status += f"  D(G(z)) {message['d_fake']:+.2f}"
            if self.last_snapshot is not None:
                status += f"  snapshot {self.last_snapshot}"
            bar.update(task, completed=self.step, status=status)
        elif event == "published":
            self.last_snapshot = message["step"]
        elif event == "done":
            self.step = message["step"]
            self.published += message["published"]
            self.failed += message["failed"]
            bar.update(task, completed=self.step, status=f"done; published {len(self.published)} snapshots")
