"""Augmentation gain: does adding a snapshot's rows of the rare classes make a downstream model better on real data?

A fixed downstream model is trained (a) on the real training rows and (b) on the same rows plus the generated rows
of the minority class (the rarest target level), and both are scored on the real held-out rows: minority recall, F1
and average precision (PR-AUC), and balanced accuracy; `augmentation_gain_*` is (b) − (a). Two models, as users of
imbalanced-learn compare them: logistic regression and histogram gradient boosting (scikit-learn), each seeded, so
the same snapshot gives the same numbers. The generated rows come from the evaluation's samples: more samples give
more minority rows (a 3 % class in 10,000 samples: about 300); with none, the gain is 0 and `augmentation_added` 0.
"""

from __future__ import annotations

import numpy as np

from evaluator_service.errors import InsufficientSamplesError, InvalidRequestError
from evaluator_service.metrics.spec import GENERATED_TABLE, HELD_OUT_TABLE, REFERENCE_TABLE, Metric, Param

MODELS = ("logreg", "hgb")
SCORES = ("recall", "f1", "pr_auc", "balanced_accuracy")


def encode(columns: dict, schema, reference: dict) -> np.ndarray:
    """Features for the downstream model: numbers standardised on the reference rows, categories one-hot over its levels."""
    parts = []
    for column in schema.columns:
        if column.name == schema.target:
            continue
        values, ref = columns[column.name], reference[column.name]
        if column.kind in ("continuous", "integer"):
            ref = np.asarray(ref, float)
            parts.append(((np.asarray(values, float) - ref.mean()) / (ref.std() or 1.0))[:, None])
        else:
            levels = sorted(set(np.asarray(ref).astype(str)))
            parts.append(np.stack([np.asarray(values).astype(str) == level for level in levels], axis=1).astype(np.float64))
    return np.concatenate(parts, axis=1)


def downstream_model(name: str, seed: int):
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression

    if name == "logreg":
        return LogisticRegression(max_iter=2000, random_state=seed)
    return HistGradientBoostingClassifier(random_state=seed)


def minority_scores(y_true: np.ndarray, score: np.ndarray, threshold: float = 0.5) -> dict[str, float]:
    """Scores of the positive (minority) class from its predicted probability."""
    from sklearn.metrics import average_precision_score, balanced_accuracy_score, f1_score, recall_score

    predicted = score >= threshold
    return {"recall": float(recall_score(y_true, predicted, zero_division=0)), "f1": float(f1_score(y_true, predicted, zero_division=0)),
            "pr_auc": float(average_precision_score(y_true, score)), "balanced_accuracy": float(balanced_accuracy_score(y_true, predicted))}


def fit_and_score(name: str, x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, y_test: np.ndarray, seed: int,
                  sample_weight: np.ndarray | None = None) -> dict[str, float]:
    from threadpoolctl import threadpool_limits

    # One thread: the same numbers on any machine, and on a busy CPU OpenMP's spinning threads made HGB 30× slower.
    with threadpool_limits(1):
        model = downstream_model(name, seed).fit(x_train, y_train, sample_weight=sample_weight)
        return minority_scores(y_test, model.predict_proba(x_test)[:, 1])


def augmentation(real, fake, held_out=None, seed: int = 0) -> dict[str, float]:
    """real: the training rows; fake: the snapshot's rows; held_out: the real test rows (TabularDatasets)."""
    if held_out is None or real.schema.target is None:
        raise InvalidRequestError("augmentation needs held-out rows and a target column (the schema's 'target')")
    target = real.schema.target
    labels = np.asarray(real.columns[target]).astype(str)
    levels, counts = np.unique(labels, return_counts=True)
    if len(levels) < 2:
        raise InsufficientSamplesError(f"augmentation needs at least two classes in {target}, the training rows have {len(levels)}")
    minority = str(levels[counts.argmin()])
    fake_labels = np.asarray(fake.columns[target]).astype(str)
    added = np.flatnonzero(fake_labels == minority)
    x_real = encode(real.columns, real.schema, real.columns)
    x_fake = encode({k: np.asarray(v)[added] for k, v in fake.columns.items()}, real.schema, real.columns)
    x_test = encode(held_out.columns, real.schema, real.columns)
    y_real = (labels == minority).astype(int)
    y_test = (np.asarray(held_out.columns[target]).astype(str) == minority).astype(int)
    x_aug, y_aug = np.concatenate([x_real, x_fake]), np.concatenate([y_real, np.ones(len(added), int)])
    out: dict[str, float] = {"augmentation_added": float(len(added))}
    for model in MODELS:
        before = fit_and_score(model, x_real, y_real, x_test, y_test, seed)
        # No minority row among the samples: nothing to add, so the augmented model is the real one (gain 0).
        after = fit_and_score(model, x_aug, y_aug, x_test, y_test, seed) if len(added) else before
        for score in SCORES:
            out[f"augmentation_{score}_real_{model}"] = before[score]
            out[f"augmentation_{score}_augmented_{model}"] = after[score]
            out[f"augmentation_gain_{score}_{model}"] = after[score] - before[score]
    return out


OUTPUTS = ("augmentation_added", *(f"augmentation_{s}_{side}_{m}" for m in MODELS for s in SCORES for side in ("real", "augmented")),
           *(f"augmentation_gain_{s}_{m}" for m in MODELS for s in SCORES))

METRIC = Metric(
    "augmentation", augmentation, REFERENCE_TABLE, GENERATED_TABLE, OUTPUTS,
    "downstream models trained on real rows vs real + generated minority rows, scored on held-out rows (recall, F1, PR-AUC, balanced accuracy, gain)",
    params=(Param("seed", int, 0, 0, 2**32 - 1, "seed of the downstream models"),),
    extra={"held_out": HELD_OUT_TABLE},
    gauges={f"augmentation_gain_{s}_{m}": f"augmentation_gain_{s}_{m}" for m in MODELS for s in SCORES},
    default=False,
)
