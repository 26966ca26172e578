"""FID of a translation run, per direction: held-out images of domain A translated to B against the real B
images (`fid_a_to_b`), and the reverse (`fid_b_to_a`). The same Fréchet distance as `fid`, on the same features."""

from __future__ import annotations

from evaluator_service.metrics.fid import EPS, fid, fid_warnings
from evaluator_service.metrics.spec import GENERATED_TRANSLATIONS, REFERENCE_DOMAINS, Metric, Param
from evaluator_service.samples import DIRECTIONS


def translation_fid(real, fake, eps: float = EPS) -> dict[str, float]:
    """real: the target domains' real features per direction; fake: the translated images' (DirectionSamples)."""
    return {f"fid_{d}": fid(real.stats[d], fake.stats[d], eps=eps)["fid"] for d in DIRECTIONS}


def translation_fid_warnings(real, fake) -> list[str]:
    return [f"{d}: {text}" for d in DIRECTIONS for text in fid_warnings(real.stats[d], fake.stats[d])]


METRIC = Metric(
    "translation_fid", translation_fid, REFERENCE_DOMAINS, GENERATED_TRANSLATIONS, ("fid_a_to_b", "fid_b_to_a"),
    "translation runs: FID of translated held-out images against the real target domain, each direction (lower is better)",
    params=(Param("eps", float, EPS, 0.0, 1.0, "regulariser added to the covariances when the first attempt is not finite", open_low=True),),
    warnings=translation_fid_warnings,
    gauges={"fid_a_to_b": "translation_fid_a_to_b", "fid_b_to_a": "translation_fid_b_to_a"},
    default=False,
)
