"""Dataset restriction specs: `NAME:class1,class2@COUNT` keeps some classes and at most COUNT images of any dataset;
`NAME:class=60` or `NAME:class=1%` keeps every class but cuts one to 60 images or 1 % of its images (a rare class).

Examples: `fashion-mnist:bag,ankle-boot@1000`, `digits:3,5`, `digits@500`, `/data/faces.npz:0,2`,
`fashion-mnist:shirt=1%` (60 of the 6,000 training shirts, every other class whole), `fashion-mnist:shirt=60,coat=5%`.
Classes are given by name or index; the kept classes are renumbered 0..k-1 in their original order (so `digits:5,3`
and `digits:3,5` are one dataset). A cut alone keeps every class; beside plain names it keeps those and the cut ones.
A cut applies to each split (a share of that split's images of the class, at least one) and the cap after it; both
take images in a fixed, seed-independent order, so the selection never changes between runs.
"""

from __future__ import annotations

import dataclasses
import re

import numpy as np

from ganworks.errors import DatasetError

# The restriction is a suffix: a colon followed by no "/" (so "s3://" is not one), an "@" followed by no "/" or "."
# (so "faces@2x.npz" is a file name, not a count).
_SUFFIX = re.compile(r"^(?P<base>.+?)(?::(?P<classes>[^:/@]*))?(?:@(?P<count>[^:/@.]*))?$")


@dataclasses.dataclass(frozen=True)
class Cut:
    """One class cut to `amount` images, or to `amount` percent of its images when `share`."""

    name: str
    amount: float
    share: bool

    def keep(self, available: int) -> int:
        if self.share:
            return min(available, max(1, int(round(available * self.amount / 100.0)))) if available else 0
        return min(available, int(self.amount))


@dataclasses.dataclass(frozen=True)
class Restriction:
    classes: tuple[str, ...] = ()
    count: int | None = None
    cuts: tuple[Cut, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.classes) or self.count is not None or bool(self.cuts)


def parse(spec: str) -> tuple[str, Restriction]:
    """Splits `NAME:classes@COUNT` into the base spec and its restriction (empty when there is none)."""
    match = _SUFFIX.match(spec)
    if not match or (match["classes"] is None and match["count"] is None):
        return spec, Restriction()
    classes = match["classes"]
    names = tuple(c.strip() for c in classes.split(",")) if classes is not None else ()
    if classes is not None and (not classes.strip() or any(not c for c in names)):
        raise DatasetError(f"dataset spec {spec!r}: the class list after ':' is empty or has an empty entry; write e.g. {match['base']}:3,5")
    cuts = tuple(_cut(spec, entry) for entry in names if "=" in entry)
    names = tuple(entry for entry in names if "=" not in entry)
    count = None
    if match["count"] is not None:
        if not match["count"].isdigit() or int(match["count"]) < 1:
            raise DatasetError(f"dataset spec {spec!r}: the count after '@' must be a positive integer, got {match['count']!r}")
        count = int(match["count"])
    return match["base"], Restriction(names, count, cuts)


_CUT = re.compile(r"^(?P<name>[^=]+)=(?P<amount>\d+(?:\.\d+)?)(?P<share>%?)$")


def _cut(spec: str, entry: str) -> Cut:
    match = _CUT.match(entry)
    amount = float(match["amount"]) if match else -1.0
    if not match or (match["share"] and not 0 < amount <= 100) or (not match["share"] and (not amount.is_integer() or amount < 1)):
        raise DatasetError(f"dataset spec {spec!r}: {entry!r} is not a cut; write CLASS=COUNT (a whole number of images, at least 1) "
                           "or CLASS=PERCENT% (more than 0, at most 100), e.g. shirt=60 or shirt=1%")
    return Cut(match["name"].strip(), amount, bool(match["share"]))


def _normal(name: str) -> str:
    return re.sub(r"[\s_]+", "-", name.strip().lower())


def class_indices(restriction: Restriction, class_names: tuple[str, ...], source: str) -> list[int]:
    """The kept classes' indices, sorted; unknown names are an error that lists the allowed ones."""
    given_names = restriction.classes + tuple(cut.name for cut in restriction.cuts)
    if not given_names:
        return list(range(len(class_names)))
    if not class_names:
        raise DatasetError(f"{source}: has no class labels, so it cannot be restricted to classes {', '.join(given_names)}")
    kept = set(_indices(given_names, class_names, source))
    return sorted(kept) if restriction.classes else list(range(len(class_names)))


def cut_indices(restriction: Restriction, class_names: tuple[str, ...], source: str) -> list[tuple[int, Cut]]:
    """(class index, cut) of each cut of the restriction."""
    return list(zip(_indices(tuple(c.name for c in restriction.cuts), class_names, source), restriction.cuts))


def _indices(names: tuple[str, ...], class_names: tuple[str, ...], source: str) -> list[int]:
    by_name = {_normal(n): i for i, n in enumerate(class_names)}
    kept = []
    for given in names:
        if _normal(given) in by_name:
            kept.append(by_name[_normal(given)])
        elif given.isdigit() and int(given) < len(class_names):
            kept.append(int(given))
        else:
            allowed = ", ".join(f"{i}={n}" for i, n in enumerate(class_names))
            raise DatasetError(f"{source}: unknown class {given!r}; use a name or index of: {allowed}")
    return kept


def apply_cuts(index: np.ndarray, labels: np.ndarray, cuts: list[tuple[int, Cut]]) -> np.ndarray:
    """index without the images a cut leaves out: each cut class keeps its first images in a fixed shuffled order."""
    drop = np.zeros(len(index), dtype=bool)
    for c, cut in cuts:
        members = np.flatnonzero(labels[index] == c)
        order = members[np.random.RandomState(1000 + c).permutation(len(members))]
        drop[order[cut.keep(len(members)):]] = True
    return index[~drop]


def select(labels: np.ndarray | None, n: int, kept: list[int], count: int | None) -> np.ndarray:
    """Indices (sorted) of the kept classes' images, capped at `count` taken class by class in turn."""
    index = np.arange(n) if labels is None else np.flatnonzero(np.isin(labels, kept))
    if count is None or count >= len(index):
        return index
    order = np.random.RandomState(0).permutation(len(index))
    if labels is None:
        return np.sort(index[order[:count]])
    shuffled = index[order]
    # Rank of each image within its class in the shuffled order: taking the lowest ranks first balances the classes.
    rank = np.empty(len(shuffled), dtype=np.int64)
    for c in kept:
        members = labels[shuffled] == c
        rank[members] = np.arange(members.sum())
    picked = shuffled[np.lexsort((labels[shuffled], rank))[:count]]
    return np.sort(picked)


def id_suffix(restriction: Restriction, kept: list[int], num_classes: int) -> str:
    """A key-safe tag for the dataset id: `.c3-5` for classes, `.n1000` for a cap."""
    tag = ""
    if restriction.classes and kept != list(range(num_classes)):
        tag += ".c" + "-".join(map(str, kept))
    for cut in restriction.cuts:
        tag += f".cut-{_normal(cut.name)}-" + (f"{cut.amount:g}pct" if cut.share else f"{int(cut.amount)}")
    if restriction.count is not None:
        tag += f".n{restriction.count}"
    return tag
