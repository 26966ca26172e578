"""`ganworks augment`: a training set for a downstream model — the real data plus generated examples of its rare
classes, drawn from a served conditional run (table or image) — with a sidecar JSON that rebuilds it exactly.
Tables go to CSV or Parquet; images to an .npz (images, labels, synthetic) or a folder of PNGs per class.

    ganworks augment --run credit --data credit-default --split train --classes Yes --share 0.2 --out aug.csv
    ganworks augment --run fm-cgan --data fashion-mnist:shirt=1% --split train --classes shirt --add 940 --copies 0.5 --out aug.npz
    ganworks augment --from-sidecar aug.csv.augment.json --out again.csv      # the same set, byte for byte

Examples are asked from the generator service over gRPC in parts of its per-call limit, every part from the snapshot
that answered the first. How many: `--add N` of each named class, or `--share S` (each named class, or every class
below S when none is named, brought up to a share S of the whole set). Filters: `--check-class` drops an example that
an independent classifier fitted on the real data does not assign to its class; `--privacy-guard Q` drops an example
closer to a training record than the Q-quantile of the training records' distances to each other. For images,
`--copies S` makes a share S of what each class gets flipped/shifted copies of its real images (the filters apply to
the generated ones). The sidecar records run, step, seeds and counts of every call, the copies, the filters and what
each dropped.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import hashlib
import json
import math
import os
import pathlib
import sys
import time

import numpy as np

from ganworks.commandline import CommandError, read_flag_file, read_token_file
from ganworks.output import add_output_flags, print_json

SIDECAR_FORMAT = "ganworks-augment/1"
TABLE_SUFFIXES, IMAGE_SUFFIXES = (".csv", ".parquet"), (".npz",)
MAX_DRAWS = 8  # calls per class before a filter that keeps too little is reported instead of asked again


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--address", default="localhost:50051", help="generator host:port (default localhost:50051)")
    parser.add_argument("--run", help="the conditional run (model) to draw from")
    parser.add_argument("--version", type=int, default=0, help="snapshot step (default 0: the newest; the sidecar records the one used)")
    parser.add_argument("--data", help="the real training data: a table (built-in name, .csv/.parquet) or an image dataset spec")
    parser.add_argument("--schema-file", help="tables: the schema JSON of --data (default: its sidecar, as for training)")
    parser.add_argument("--split", default="train", choices=["all", "train", "test"], help="which split of --data is the training data (default train)")
    parser.add_argument("--classes", help="classes to add examples of, comma-separated (table: values of the target column; images: names or indices)")
    how = parser.add_mutually_exclusive_group()
    how.add_argument("--add", type=int, help="add this many generated examples of each named class")
    how.add_argument("--share", type=float, help="bring each named class (or, without --classes, every class below this share) up to this share of the set")
    parser.add_argument("--copies", type=float, default=0.0, metavar="SHARE",
                        help="images: of what each class gets, this share are flipped/shifted copies of its real images instead of generated ones "
                             "(default 0; 0.5 caught the most rare shirts in benchmarks/augmentation.py)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the draws (default 0); the same seed, run and data give the same set")
    parser.add_argument("--check-class", action="store_true", help="drop examples an independent classifier fitted on the real data does not assign to their class")
    parser.add_argument("--privacy-guard", type=float, metavar="Q", help="drop examples closer to a training record than the Q-quantile (e.g. 0.01) "
                                                                           "of the training records' distances to each other")
    parser.add_argument("--out", help="output: .csv or .parquet for a table; for images .npz (images, labels, synthetic) or a new folder "
                                      "(no suffix: a subfolder of PNGs per class)")
    parser.add_argument("--sidecar", help="where to write the sidecar JSON (default: OUT.augment.json)")
    parser.add_argument("--from-sidecar", help="rebuild the set a sidecar describes (the same run, step, data, draws and filters)")
    parser.add_argument("--token-file", help="file with the bearer token (or env GANWORKS_GENERATOR_AUTH_TOKEN)")
    parser.add_argument("--tls-ca", help="PEM file of the CA that signed the generator's certificate; turns TLS on")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for each call (default 120)")
    add_output_flags(parser, wide=False)


# ---- how many of each class -------------------------------------------------------------------------------------------


def plan_counts(counts: dict[str, int], classes: list[str] | None, add: int | None, share: float | None) -> dict[str, int]:
    """Examples to generate per class. counts: the real data's class counts (every class, in a fixed order)."""
    if add is not None:
        if add < 1:
            raise CommandError(f"--add must be at least 1, got {add}")
        if not classes:
            raise CommandError("--add needs --classes: name the classes to add examples of")
        return {c: add for c in classes}
    if share is None:
        raise CommandError("say how many: --add N (of each named class) or --share S (bring classes up to a share S of the set)")
    if not 0 < share < 1:
        raise CommandError(f"--share must be between 0 and 1, got {share}")
    total = sum(counts.values())
    chosen = classes or [c for c, n in counts.items() if n / total < share]
    if not chosen:
        raise CommandError(f"no class is below a share of {share} ({', '.join(f'{c}: {n / total:.3f}' for c, n in counts.items())}); nothing to add")
    if len(chosen) * share >= 1:
        raise CommandError(f"{len(chosen)} classes cannot each be {share} of the set; lower --share below {1 / len(chosen):.3f}")
    # Each chosen class k ends with share S of the whole: n_k + x_k = S (N + X), X = Σ x_k.
    added = (len(chosen) * share * total - sum(counts[c] for c in chosen)) / (1 - len(chosen) * share)
    plan = {c: max(0, math.ceil(share * (total + added) - counts[c])) for c in chosen}
    if not any(plan.values()):
        raise CommandError(f"the classes {', '.join(chosen)} already have a share of at least {share}; nothing to add")
    return {c: n for c, n in plan.items() if n}


def draw_seed(seed: int, class_index: int, draw: int) -> int:
    from ganworks.generator_client import part_seed

    return part_seed(part_seed(seed, class_index + 1), draw)


def split_copies(plan: dict[str, int], share: float) -> tuple[dict[str, int], dict[str, int]]:
    """(generated, copies) per class: a share of each class's count becomes flipped/shifted copies of its real images."""
    copies = {c: round(n * share) for c, n in plan.items()}
    return {c: n - copies[c] for c, n in plan.items() if n - copies[c]}, {c: k for c, k in copies.items() if k}


def make_copies(data: "ImageData", copies: dict[str, int], class_order: list[str], seed: int) -> dict[str, np.ndarray]:
    """The flipped/shifted copies of each class's real images, from a seed of their own (a draw number no call uses)."""
    from ganworks.images import flipped_shifted_copies

    labels = data.labels
    empty = [c for c in copies if not (labels == c).any()]
    if empty:
        raise CommandError(f"--copies: class {', '.join(empty)} has no real images to copy; leave out --copies or name classes that have some")
    return {c: flipped_shifted_copies(data.dataset.images[labels == c], k, draw_seed(seed, class_order.index(c), MAX_DRAWS)) for c, k in copies.items()}


# ---- the data kinds ---------------------------------------------------------------------------------------------------


@dataclasses.dataclass
class TableData:
    dataset: object  # ganworks.tabular.data.TabularDataset
    target: str
    schema: object  # the model's schema (its columns in its order)

    @property
    def labels(self) -> np.ndarray:
        return np.asarray(self.dataset.columns[self.target]).astype(str)

    def class_names(self) -> list[str]:
        return sorted(set(self.labels))

    def features(self, columns: dict, exclude=()) -> np.ndarray:
        from orchestration.augment_filters import table_features

        return table_features(columns, self.schema, self.dataset.columns, exclude)


@dataclasses.dataclass
class ImageData:
    dataset: object  # ganworks.data.ImageDataset

    @property
    def labels(self) -> np.ndarray:
        return self.dataset.labels.astype(str)

    def class_names(self) -> list[str]:
        return [str(i) for i in range(self.dataset.num_classes)]


def _load_table(spec: str, schema_file: str | None, split: str, info) -> TableData:
    from ganworks.errors import DatasetError
    from ganworks.tabular.data import Column, Schema, load_table

    try:
        dataset = load_table(spec, schema_file=schema_file, split=split)
    except DatasetError as exc:
        raise CommandError(f"--data {spec}: {exc}") from None
    model = json.loads(info.columns_json)
    target = model.get("target")
    if not target:
        raise CommandError(f"run {info.model} has no target column: augment adds examples of a target's classes; train it with a schema that names a target")
    missing = [c["name"] for c in model["columns"] if c["name"] not in dataset.columns]
    if missing:
        raise CommandError(f"--data {spec} lacks the model's columns {', '.join(missing)}; give the table the run trained on")
    schema = Schema(tuple(Column(c["name"], c["kind"]) for c in model["columns"]), target=target)
    return TableData(dataset, target, schema)


def _load_images(spec: str, split: str, info) -> ImageData:
    from ganworks.data import load_dataset
    from ganworks.errors import DatasetError

    try:
        dataset = load_dataset(spec, image_size=info.image_size, channels=info.channels, split=split)
    except DatasetError as exc:
        raise CommandError(f"--data {spec}: {exc}") from None
    if dataset.labels is None or dataset.num_classes != info.num_classes:
        raise CommandError(f"--data {spec} has {dataset.num_classes} classes, run {info.model} {info.num_classes}; give the data the run trained on")
    return ImageData(dataset)


def _image_class(name: str, dataset) -> str:
    """A class given by name or index, as its index in text."""
    from ganworks.subset import _normal

    if name.strip().isdigit() and int(name) < dataset.num_classes:
        return str(int(name))
    for i, known in enumerate(dataset.class_names):
        if _normal(known) == _normal(name):
            return str(i)
    raise CommandError(f"--classes: {name!r} is not a class of the data; classes: {', '.join(dataset.class_names) or 'indices 0..' + str(dataset.num_classes - 1)}")


# ---- drawing and filtering --------------------------------------------------------------------------------------------


class Drawer:
    """Asks the generator for examples of one class at a time and applies the filters; every call is recorded."""

    def __init__(self, client, run: str, version: int, data, check_class: bool, guard_quantile: float | None, seed: int, progress):
        from orchestration import augment_filters as f

        self.client, self.run, self.version, self.data, self.progress = client, run, version, data, progress
        self.per_call = client.max_per_call(run, version)
        self.table = isinstance(data, TableData)
        self.check, self.guard_threshold, self.guard_quantile = None, None, guard_quantile
        if self.table:
            self.train_features = data.features(data.dataset.columns)
            self.metric = "l1"
        else:
            self.train_features = f.image_features(data.dataset.images)
            self.metric = "l2"
        if check_class:
            if self.table:
                self.check = f.ClassCheck(data.features(data.dataset.columns, exclude=(data.target,)), data.labels, seed=seed)
            else:
                self.check = f.ClassCheck(f.pooled_image_features(data.dataset.images), data.labels, seed=seed)
        if guard_quantile is not None:
            if not 0 <= guard_quantile < 1:
                raise CommandError(f"--privacy-guard must be a quantile in [0, 1), got {guard_quantile}")
            self.guard_threshold = f.privacy_threshold(self.train_features, guard_quantile, self.metric, seed=seed)

    def draw(self, label: str, seed: int, count: int):
        """count examples of class `label` from one seed: (examples, kept mask, dropped by the class check, by the guard)."""
        on_part = self.progress(label, count)
        if self.table:
            rows = self.client.generate_records_in_parts(self.run, count, seed=seed, version=self.version, condition=(self.data.target, label),
                                                         format="arrow", per_call=self.per_call, on_part=on_part)
            examples = _arrow_columns(rows.table, self.data.schema)
        else:
            examples = self.client.generate_in_parts(self.run, count, seed=seed, version=self.version, labels=[int(label)], output="uint8",
                                                     per_call=self.per_call, on_part=on_part).images
        return (examples, *self.filter(examples, label))

    def filter(self, examples, label: str) -> tuple[np.ndarray, int, int]:
        """Which examples of class `label` pass the filters: (keep mask, dropped by the class check, by the guard)."""
        from orchestration import augment_filters as f

        count = len(next(iter(examples.values()))) if self.table else len(examples)
        keep = np.ones(count, dtype=bool)
        by_class = by_guard = 0
        if self.check is not None:
            features = self.data.features(examples, exclude=(self.data.target,)) if self.table else f.pooled_image_features(examples)
            passed = self.check.keep(features, np.full(count, label))
            by_class = int((~passed).sum())
            keep &= passed
        if self.guard_threshold is not None:
            features = self.data.features(examples) if self.table else f.image_features(examples)
            passed = f.privacy_keep(features, self.train_features, self.guard_threshold, self.metric)
            by_guard = int((keep & ~passed).sum())
            keep &= passed
        return keep, by_class, by_guard


def _arrow_columns(table, schema) -> dict[str, np.ndarray]:
    out = {}
    for column in schema.columns:
        values = table.column(column.name).to_numpy(zero_copy_only=False)
        out[column.name] = values.astype(np.float64) if column.kind in ("continuous", "integer") else values.astype(bool) if column.kind == "boolean" else values.astype(object)
    return out


def _take(examples, index):
    if isinstance(examples, dict):
        return {k: v[index] for k, v in examples.items()}
    return examples[index]


def build(drawer: Drawer, plan: dict[str, int], class_order: list[str], seed: int, replay: list[dict] | None = None):
    """Draws until each class of `plan` has its count of kept examples (or replays a sidecar's draws exactly).
    Returns the kept examples per class, the draws made, and the counts dropped per filter."""
    kept: dict[str, list] = {c: [] for c in plan}
    draws: list[dict] = []
    dropped = {"class_check": 0, "privacy_guard": 0}
    todo = replay if replay is not None else None
    if todo is not None:
        for record in todo:
            examples, keep, by_class, by_guard = drawer.draw(record["class"], int(record["seed"]), int(record["count"]))
            index = np.flatnonzero(keep)[: int(record["kept"])]
            if len(index) != int(record["kept"]):
                raise CommandError(f"rebuilding class {record['class']}: the draw with seed {record['seed']} kept {len(index)} examples, the sidecar says "
                                   f"{record['kept']}; the run's snapshot or the data differ from the sidecar's")
            kept[record["class"]].append(_take(examples, index))
            dropped["class_check"] += by_class
            dropped["privacy_guard"] += by_guard
            draws.append(dict(record))
        return kept, draws, dropped
    for label, need in plan.items():
        have, index_of = 0, class_order.index(label)
        for attempt in range(MAX_DRAWS):
            missing = need - have
            # With filters, ask for a little more than is missing, from what the last draw kept.
            rate = 1.0 if not draws or draws[-1]["class"] != label else max(draws[-1]["kept"] / draws[-1]["count"], 0.05)
            count = missing if rate >= 1.0 else math.ceil(missing / rate * 1.1) + 8
            s = draw_seed(seed, index_of, attempt)
            examples, keep, by_class, by_guard = drawer.draw(label, s, count)
            index = np.flatnonzero(keep)[:missing]
            kept[label].append(_take(examples, index))
            have += len(index)
            dropped["class_check"] += by_class
            dropped["privacy_guard"] += by_guard
            draws.append({"class": label, "seed": s, "count": count, "kept": int(len(index))})
            if have >= need:
                break
        else:
            raise CommandError(f"class {label}: after {MAX_DRAWS} draws the filters kept {have} of {need} examples "
                               f"(dropped: {dropped['class_check']} by the class check, {dropped['privacy_guard']} by the privacy guard); "
                               "loosen --privacy-guard, leave out --check-class, or ask for fewer")
    return kept, draws, dropped


# ---- writing ----------------------------------------------------------------------------------------------------------


def write_table(out: pathlib.Path, data: TableData, kept: dict[str, list]) -> int:
    import pyarrow as pa
    import pyarrow.csv as pa_csv
    import pyarrow.parquet as pq

    from ganworks.tabular.records import arrow_table

    parts = [arrow_table({c.name: data.dataset.columns[c.name] for c in data.schema.columns}, data.schema)]
    parts += [arrow_table(chunk, data.schema) for chunks in kept.values() for chunk in chunks if len(next(iter(chunk.values())))]
    table = pa.concat_tables(parts)
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix.lower() == ".parquet":
        pq.write_table(table, out)
    else:
        pa_csv.write_csv(table, out)
    return table.num_rows


def write_images(out: pathlib.Path, data: ImageData, kept: dict[str, list], copies: dict[str, np.ndarray] | None = None) -> int:
    """The real images, then the generated ones, then the copies; `synthetic` marks the generated, `copied` the copies."""
    chunks = [(np.concatenate(c), int(label)) for label, c in kept.items() if c and sum(len(x) for x in c)]
    copied = [(c, int(label)) for label, c in (copies or {}).items() if len(c)]
    n_real, n_made = len(data.dataset), sum(len(c) for c, _ in chunks)
    images = np.concatenate([data.dataset.images, *[c for c, _ in chunks], *[c for c, _ in copied]])
    labels = np.concatenate([data.dataset.labels.astype(np.int64), *[np.full(len(c), label, np.int64) for c, label in chunks + copied]])
    synthetic, is_copy = np.zeros(len(images), bool), np.zeros(len(images), bool)
    synthetic[n_real : n_real + n_made] = True
    is_copy[n_real + n_made :] = True
    if out.suffix == "":
        return _write_folder(out, data, images, labels, synthetic, is_copy)
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "wb") as fh:  # np.savez to a file object: no zip timestamps from the file name's mtime
        np.savez(fh, images=images, labels=labels, synthetic=synthetic, copied=is_copy, class_names=np.array(data.dataset.class_names, dtype=str))
    return len(images)


def _write_folder(out: pathlib.Path, data: ImageData, images: np.ndarray, labels: np.ndarray, synthetic: np.ndarray, is_copy: np.ndarray) -> int:
    """An image folder as `ganworks train --dataset DIR` reads it: one subfolder per class, real-NNNNNN.png,
    generated-NNNNNN.png and copy-NNNNNN.png files."""
    from ganworks.images import encode_png

    if out.exists() and any(out.iterdir()):
        raise CommandError(f"--out {out}: the folder exists and is not empty; name a new folder")
    names = data.dataset.class_names or tuple(str(i) for i in range(data.dataset.num_classes))
    for i, (image, label, made, copy) in enumerate(zip(images, labels, synthetic, is_copy)):
        folder = out / names[int(label)]
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{'generated' if made else 'copy' if copy else 'real'}-{i:06d}.png").write_bytes(encode_png(image))
    return len(images)


def _sha256(path: pathlib.Path) -> str:
    """A file's sha256, or a folder's: of every file's relative path and bytes, in sorted order."""
    if path.is_dir():
        digest = hashlib.sha256()
        for file in sorted(p for p in path.rglob("*") if p.is_file()):
            digest.update(str(file.relative_to(path)).encode() + b"\0" + hashlib.sha256(file.read_bytes()).digest())
        return digest.hexdigest()
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ---- the command ------------------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _progress_bar(enabled: bool):
    """progress(label, count) -> on_part callback; a rich bar on a terminal, nothing otherwise."""
    if not enabled:
        yield lambda label, count: None
        return
    from rich.progress import Progress

    with Progress(transient=True) as bar:
        def start(label: str, count: int):
            task = bar.add_task(f"class {label}", total=count)
            return lambda done, total: bar.update(task, completed=done)

        yield start


def run(args: argparse.Namespace) -> int:
    import grpc

    from ganworks.generator_client import GeneratorClient

    sidecar_in = None
    if args.from_sidecar:
        try:
            sidecar_in = json.loads(pathlib.Path(args.from_sidecar).read_text())
        except (OSError, ValueError) as exc:
            raise CommandError(f"--from-sidecar {args.from_sidecar}: cannot read it as JSON ({exc})") from None
        if sidecar_in.get("format") != SIDECAR_FORMAT:
            raise CommandError(f"--from-sidecar {args.from_sidecar}: not a ganworks augment sidecar (format {sidecar_in.get('format')!r}, expected {SIDECAR_FORMAT})")
        given = [flag for flag, value in (("--run", args.run), ("--data", args.data), ("--classes", args.classes), ("--add", args.add), ("--share", args.share),
                                          ("--check-class", args.check_class or None), ("--privacy-guard", args.privacy_guard),
                                          ("--copies", args.copies or None)) if value is not None]
        if given:
            raise CommandError(f"--from-sidecar rebuilds what the sidecar says; leave out {', '.join(given)}")
        args.run, args.version, args.data, args.split = sidecar_in["run"], int(sidecar_in["version"]), sidecar_in["data"]["spec"], sidecar_in["data"]["split"]
        args.schema_file = args.schema_file or sidecar_in["data"].get("schema_file")
        args.seed, args.check_class, args.privacy_guard = int(sidecar_in["seed"]), bool(sidecar_in["filters"]["class_check"]), sidecar_in["filters"]["privacy_guard_quantile"]
        args.out = args.out or sidecar_in["out"]
        args.copies = float(sidecar_in.get("copies", {}).get("share", 0.0))
    for flag, value in (("--run", args.run), ("--data", args.data), ("--out", args.out)):
        if not value:
            raise CommandError(f"{flag} is required (or rebuild with --from-sidecar)")
    if not 0 <= args.copies < 1:
        raise CommandError(f"--copies must be a share in [0, 1), got {args.copies}")
    out = pathlib.Path(args.out)
    token = read_token_file("--token-file", args.token_file) or os.environ.get("GANWORKS_GENERATOR_AUTH_TOKEN") or None
    ca = read_flag_file("--tls-ca", args.tls_ca)
    started = time.monotonic()
    with GeneratorClient(args.address, token=token, root_certificates=ca, timeout=args.timeout) as client:
        try:
            info = client.describe(args.run, args.version)
            if sidecar_in is not None and info.sha256 != sidecar_in["model_sha256"]:
                raise CommandError(f"run {args.run} step {args.version} has sha256 {info.sha256[:12]}…, the sidecar's snapshot {sidecar_in['model_sha256'][:12]}…")
            is_table = bool(info.columns_json)
            if is_table and out.suffix.lower() not in TABLE_SUFFIXES:
                raise CommandError(f"--out {out}: run {args.run} makes table rows; write a .csv or .parquet file")
            if not is_table and out.suffix.lower() not in IMAGE_SUFFIXES and out.suffix != "":
                raise CommandError(f"--out {out}: run {args.run} makes images; write an .npz file (images, labels, synthetic) or a folder (no suffix)")
            if is_table and args.copies:
                raise CommandError("--copies is for images (flipped/shifted copies); for a table, leave it out")
            if not is_table and info.num_classes < 2:
                raise CommandError(f"run {args.run} is unconditional: augment needs a conditional run (one trained with class labels)")
            data = _load_table(args.data, args.schema_file, args.split, info) if is_table else _load_images(args.data, args.split, info)
            if sidecar_in is not None and data.dataset.id != sidecar_in["data"]["id"]:
                raise CommandError(f"--data {args.data} is now dataset {data.dataset.id}, the sidecar's was {sidecar_in['data']['id']}; the data changed")
            order = data.class_names()
            labels = data.labels
            counts = {c: int((labels == c).sum()) for c in order}
            if sidecar_in is not None:
                plan = {k: int(v) for k, v in sidecar_in["added"].items()}
                copy_plan = {k: int(v) for k, v in sidecar_in.get("copies", {}).get("added", {}).items()}
            else:
                named = [c.strip() for c in args.classes.split(",") if c.strip()] if args.classes else None
                if named and not is_table:
                    named = [_image_class(c, data.dataset) for c in named]
                unknown = [c for c in named or [] if c not in counts]
                if unknown:
                    raise CommandError(f"--classes: {', '.join(unknown)} not found in {'the target column ' + data.target if is_table else 'the data'}; "
                                       f"classes: {', '.join(order)}")
                plan, copy_plan = split_copies(plan_counts(counts, named, args.add, args.share), args.copies)
            with _progress_bar(args.output == "table" and sys.stderr.isatty()) as progress:
                drawer = Drawer(client, args.run, info.version, data, args.check_class, args.privacy_guard, args.seed, progress)
                kept, draws, dropped = build(drawer, plan, order, args.seed, replay=sidecar_in["draws"] if sidecar_in is not None else None)
        except grpc.RpcError as exc:
            raise CommandError(f"generator at {args.address} answered {exc.code().name}: {exc.details()}") from None
    copies = {} if is_table else make_copies(data, copy_plan, order, args.seed)
    total = write_table(out, data, kept) if is_table else write_images(out, data, kept, copies)
    added = {c: int(sum(len(next(iter(x.values()))) if isinstance(x, dict) else len(x) for x in kept[c])) for c in plan}
    sidecar = {
        "format": SIDECAR_FORMAT, "kind": "table" if is_table else "image", "run": args.run, "version": int(info.version), "model_sha256": info.sha256,
        "data": {"spec": args.data, "split": args.split, "id": data.dataset.id, "rows": len(data.dataset), **({"schema_file": args.schema_file} if args.schema_file else {})},
        **({"target": data.target} if is_table else {"class_names": list(data.dataset.class_names)}),
        "seed": args.seed, "per_call": drawer.per_call, "real_counts": counts, "added": added,
        "filters": {"class_check": bool(args.check_class), "privacy_guard_quantile": args.privacy_guard, "privacy_guard_threshold": drawer.guard_threshold},
        **({"copies": {"share": args.copies, "added": copy_plan}} if copy_plan else {}),
        "dropped": dropped, "draws": draws, "out": str(out), "rows": total, "sha256": _sha256(out),
    }
    rebuilt_same = None
    if sidecar_in is not None:
        rebuilt_same = sidecar["sha256"] == sidecar_in["sha256"]
    sidecar_path = pathlib.Path(args.sidecar) if args.sidecar else (pathlib.Path(args.from_sidecar) if sidecar_in is not None and args.out == sidecar_in["out"] else out.with_name(out.name + ".augment.json"))
    if sidecar_in is None or sidecar_path != pathlib.Path(args.from_sidecar):
        sidecar_path.write_text(json.dumps(sidecar, indent=2) + "\n")
    summary = {"out": str(out), "sidecar": str(sidecar_path), "rows": total, "real": len(data.dataset), "added": added, **({"copies": copy_plan} if copy_plan else {}),
               "dropped": dropped, "run": args.run, "version": int(info.version), "seconds": round(time.monotonic() - started, 2)}
    if rebuilt_same is not None:
        summary["identical_to_sidecar"] = rebuilt_same
    if args.output == "json":
        print_json(summary)
    else:
        adds = ", ".join(f"{n} of {c}" for c, n in added.items())
        made = f"{adds} generated by {args.run} step {info.version}"
        if copy_plan:
            made += ", and " + ", ".join(f"{n} flipped/shifted copies of {c}" for c, n in copy_plan.items())
        print(f"wrote {total} examples to {out}: {len(data.dataset)} real, {made}")
        if args.check_class or args.privacy_guard is not None:
            print(f"dropped {dropped['class_check']} by the class check and {dropped['privacy_guard']} by the privacy guard")
        print(f"sidecar: {sidecar_path}" + ("" if rebuilt_same is None else f" (rebuilt {'identical' if rebuilt_same else 'DIFFERENT: sha256 ' + sidecar['sha256'][:12]})"))
    if rebuilt_same is False:
        return 1
    return 0
