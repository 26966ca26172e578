"""Dataset restriction specs: `NAME:class1,class2@COUNT` keeps some classes and at most COUNT images of any dataset.

Examples: `fashion-mnist:bag,ankle-boot@1000`, `digits:3,5`, `digits@500`, `/data/faces.npz:0,2`. Classes are
given by name or index; the kept classes are renumbered 0..k-1 in their original order (so `digits:5,3` and
`digits:3,5` are one dataset). The cap applies to each split and takes the same number of images from every kept
class in turn (a fixed, seed-independent order), so the selection never changes between runs.
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
class Restriction:
    classes: tuple[str, ...] = ()
    count: int | None = None

    def __bool__(self) -> bool:
        return bool(self.classes) or self.count is not None


def parse(spec: str) -> tuple[str, Restriction]:
    """Splits `NAME:classes@COUNT` into the base spec and its restriction (empty when there is none)."""
    match = _SUFFIX.match(spec)
    if not match or (match["classes"] is None and match["count"] is None):
        return spec, Restriction()
    classes = match["classes"]
    names = tuple(c.strip() for c in classes.split(",")) if classes is not None else ()
    if classes is not None and (not classes.strip() or any(not c for c in names)):
        raise DatasetError(f"dataset spec {spec!r}: the class list after ':' is empty or has an empty entry; write e.g. {match['base']}:3,5")
    count = None
    if match["count"] is not None:
        if not match["count"].isdigit() or int(match["count"]) < 1:
            raise DatasetError(f"dataset spec {spec!r}: the count after '@' must be a positive integer, got {match['count']!r}")
        count = int(match["count"])
    return match["base"], Restriction(names, count)


def _normal(name: str) -> str:
    return re.sub(r"[\s_]+", "-", name.strip().lower())


def class_indices(restriction: Restriction, class_names: tuple[str, ...], source: str) -> list[int]:
    """The kept classes' indices, sorted; unknown names are an error that lists the allowed ones."""
    if not restriction.classes:
        return list(range(len(class_names)))
    if not class_names:
        raise DatasetError(f"{source}: has no class labels, so it cannot be restricted to classes {', '.join(restriction.classes)}")
    by_name = {_normal(n): i for i, n in enumerate(class_names)}
    kept = set()
    for given in restriction.classes:
        if _normal(given) in by_name:
            kept.add(by_name[_normal(given)])
        elif given.isdigit() and int(given) < len(class_names):
            kept.add(int(given))
        else:
            allowed = ", ".join(f"{i}={n}" for i, n in enumerate(class_names))
            raise DatasetError(f"{source}: unknown class {given!r}; use a name or index of: {allowed}")
    return sorted(kept)


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
    if restriction.count is not None:
        tag += f".n{restriction.count}"
    return tag
