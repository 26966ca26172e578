"""The CTGAN data transformer: mode-specific normalisation round trip and JSON saving."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ganworks.tabular.data import Column, Schema
from ganworks.tabular.transformer import DataTransformer

SCHEMA = Schema((Column("amount", "continuous"), Column("cards", "integer"), Column("segment", "categorical"), Column("student", "boolean")), target="segment")


def _table(n=400, seed=0):
    rng = np.random.default_rng(seed)
    amount = np.where(rng.random(n) < 0.5, rng.normal(-50, 2, n), rng.normal(100, 5, n))  # two clear modes
    return {"amount": amount, "cards": rng.integers(1, 9, n).astype(float),
            "segment": rng.choice(np.array(["retail", "private", "corporate"], dtype=object), n), "student": rng.random(n) < 0.3}


@pytest.fixture(scope="module")
def fitted():
    return DataTransformer.fit(SCHEMA, _table(), seed=0)


def test_encoding_then_decoding_gives_the_table_back_within_float32_precision_and_categories_exactly(fitted):
    table, transformer = _table(), fitted
    back = transformer.inverse_transform(transformer.transform(table))
    assert np.allclose(back["amount"], table["amount"], rtol=0, atol=1e-4)
    assert np.array_equal(back["cards"], table["cards"])
    assert back["segment"].tolist() == table["segment"].tolist()
    assert back["student"].tolist() == table["student"].tolist()


def test_a_bimodal_column_keeps_its_two_modes_and_drops_the_empty_ones(fitted):
    transformer = fitted
    amount = transformer.encodings[0]
    assert len(amount.means) == 2
    assert np.allclose(sorted(amount.means), [-50, 100], atol=2)


def test_each_row_has_one_mode_and_one_level_per_column_in_the_declared_spans(fitted):
    transformer = fitted
    rows = transformer.transform(_table(seed=1), rng=np.random.default_rng(0))
    assert rows.shape == (400, transformer.width)
    for span in transformer.spans:
        part = rows[:, span.start : span.start + span.width]
        if span.activation == "softmax":
            assert np.array_equal(part.sum(axis=1), np.ones(400))
        else:
            assert np.abs(part).max() <= 0.99


def test_decoded_numbers_stay_within_the_fitted_range(fitted):
    transformer = fitted
    rows = transformer.transform(_table())
    rows[:, 0] = 1.0  # the largest scalar in every mode
    amount = transformer.inverse_transform(rows)["amount"]
    assert amount.max() <= _table()["amount"].max()


def test_the_transformer_saved_as_json_encodes_exactly_as_the_fitted_one(fitted):
    table = _table()
    text = fitted.dumps()
    json.loads(text)  # plain JSON, nothing pickled
    loaded = DataTransformer.loads(text)
    assert np.array_equal(loaded.transform(table), fitted.transform(table))
    assert loaded.spans == fitted.spans


def test_a_category_unseen_when_fitting_is_refused_with_the_known_ones(fitted):
    transformer = fitted
    table = _table()
    table["segment"][0] = "crypto"
    with pytest.raises(ValueError, match=r"column 'segment': values \['crypto'\] were not seen.*known: \['corporate', 'private', 'retail'\]"):
        transformer.transform(table)


def test_activation_gives_tanh_scalars_and_one_hots_drawn_at_each_spans_softmax_frequencies(fitted):
    import torch

    torch.manual_seed(0)
    raw = torch.randn(1, fitted.width).repeat(20_000, 1)
    out = fitted.activate(raw, tau=0.2, hard=True)
    for span in fitted.spans:
        piece, logits = out[:, span.start : span.start + span.width], raw[0, span.start : span.start + span.width]
        if span.activation == "tanh":
            assert torch.allclose(piece[:, 0], torch.tanh(logits[0]).expand(20_000))
        else:
            assert torch.equal(piece.sum(dim=1), torch.ones(20_000))
            assert torch.allclose(piece.mean(dim=0), torch.softmax(logits, dim=0), atol=0.015)
