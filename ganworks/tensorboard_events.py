"""TensorBoard event files for the store: written locally with tensorboardX, uploaded whole (object stores cannot append).

tensorboardX needs only numpy and protobuf; TensorBoard itself (its server and reader) is for the person looking.
The trainer and the evaluator each write their own files under `runs/<run>/tb/` (keys in `ganworks.layout`), so
`tensorboard --logdir` on a synced copy of that folder shows the training curves, the grids and the metrics together.
"""

from __future__ import annotations

import pathlib
import shutil
import tempfile
import threading
import time

from ganworks.images import decode_png


class EventFile:
    """One event file, written synchronously (SummaryWriter's queue would race a flush-then-read); safe to add to
    from the training thread and the snapshot publisher's thread at once."""

    def __init__(self):
        from tensorboardX.event_file_writer import EventsWriter

        self._folder = pathlib.Path(tempfile.mkdtemp(prefix="ganworks-tb-"))
        self._writer = EventsWriter(str(self._folder / "events"))
        self._lock = threading.Lock()

    def _write(self, step: int, summary, walltime: float | None) -> None:
        from tensorboardX.proto.event_pb2 import Event

        with self._lock:
            self._writer.write_event(Event(wall_time=walltime or time.time(), step=step, summary=summary))

    def scalars(self, step: int, values: dict[str, float], prefix: str = "", walltime: float | None = None) -> None:
        from tensorboardX.summary import scalar

        for name, value in values.items():
            self._write(step, scalar(f"{prefix}{name}", float(value)), walltime)

    def image(self, tag: str, png: bytes, step: int) -> None:
        """The PNG itself, not re-encoded: TensorBoard shows exactly the grid in the store."""
        from tensorboardX.proto.summary_pb2 import Summary

        height, width, channels = decode_png(png).shape
        image = Summary.Image(height=height, width=width, colorspace=channels, encoded_image_string=png)
        self._write(step, Summary(value=[Summary.Value(tag=tag, image=image)]), None)

    def encoded(self) -> bytes:
        """Everything added so far, as the bytes of one event file."""
        with self._lock:
            self._writer.flush()
            [path] = [p for p in self._folder.iterdir() if "tfevents" in p.name]
            return path.read_bytes()

    def close(self) -> None:
        with self._lock:
            self._writer.close()
            shutil.rmtree(self._folder, ignore_errors=True)


def evaluation_events(step: int, metrics: dict[str, float], metrics_set: str, walltime: float | None = None) -> bytes:
    """An event file holding one evaluation's metrics at the snapshot's step, tagged `<metrics-set>/<metric>`."""
    events = EventFile()
    try:
        events.scalars(step, metrics, prefix=f"{metrics_set}/", walltime=walltime)
        return events.encoded()
    finally:
        events.close()
