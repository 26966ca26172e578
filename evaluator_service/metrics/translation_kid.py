"""KID of a translation run, per direction (translated held-out A against real B, and the reverse): the `kid`
estimator on the same features. Unbiased at any sample count, so it suits the small held-out splits of class
subsets better than FID; the subset size defaults to the smaller side, at most 1000."""

from __future__ import annotations

from evaluator_service.metrics.kid import kid
from evaluator_service.metrics.spec import GENERATED_TRANSLATIONS, REFERENCE_DOMAINS, Metric, Param
from evaluator_service.samples import DIRECTIONS

DEFAULT_SUBSET = 1000


def translation_kid(real, fake, num_subsets: int = 100, subset_size: int | None = None, seed: int = 0) -> dict[str, float]:
    out = {}
    for d in DIRECTIONS:
        size = subset_size or min(DEFAULT_SUBSET, len(real.features[d]), len(fake.features[d]))
        result = kid(real.features[d], fake.features[d], num_subsets=num_subsets, subset_size=size, seed=seed)
        out[f"kid_{d}"], out[f"kid_std_{d}"] = result["kid_mean"], result["kid_std"]
    return out


METRIC = Metric(
    "translation_kid", translation_kid, REFERENCE_DOMAINS, GENERATED_TRANSLATIONS, ("kid_a_to_b", "kid_std_a_to_b", "kid_b_to_a", "kid_std_b_to_a"),
    "translation runs: KID of translated held-out images against the real target domain, each direction (lower is better)",
    params=(
        Param("num_subsets", int, 100, 1, 1000, "subsets averaged"),
        Param("subset_size", int, None, 2, 5000, "samples per subset from each side (default: the smaller side, at most 1000)", at_most_samples=True),
        Param("seed", int, 0, 0, 2**32 - 1, "seed of the subset draws"),
    ),
    gauges={"kid_a_to_b": "translation_kid_a_to_b", "kid_b_to_a": "translation_kid_b_to_a"},
    default=False,
)
