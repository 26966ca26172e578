"""The ctgan family: hyperparameters, training-by-sampling, conditional sampling, saving without pickle."""

from __future__ import annotations

import numpy as np
import torch
import pytest

from ganworks.errors import ModelConfigError
from ganworks.models import HyperparameterError, get_family
from ganworks.tabular.data import Column, Schema, TabularDataset
from ganworks.tabular.sampler import ConditionError, ConditionSampler
from ganworks.tabular.synthesizer import TabularModel
from ganworks.tabular.transformer import DataTransformer
from trainer.ctgan import fit

CTGAN = get_family("ctgan")
SMALL = {"latent_dim": 8, "g_width": 16, "d_width": 16, "pac": 4, "max_modes": 3}


def _dataset(n=120):
    rng = np.random.default_rng(0)
    default = np.where(rng.random(n) < 0.1, "Yes", "No").astype(object)
    balance = np.where(default == "Yes", rng.normal(1800, 100, n), rng.normal(800, 200, n))
    columns = {"default": default, "student": rng.random(n) < 0.3, "balance": balance}
    schema = Schema((Column("default", "categorical"), Column("student", "boolean"), Column("balance", "continuous")), target="default")
    return TabularDataset(columns=columns, schema=schema, id="tiny", source="test")


@pytest.fixture(scope="module")
def model():
    return fit(_dataset(), epochs=2, batch_size=40, seed=0, **SMALL)


def test_ctgan_hyperparameters_are_declared_and_checked():
    with pytest.raises(HyperparameterError, match="ctgan pac must be an integer from 1 to 64, got '0'"):
        CTGAN.validate({"pac": "0", "data_dim": 5})
    with pytest.raises(ModelConfigError, match="ctgan models tables: its data_dim comes from a DataTransformer fitted on one"):
        CTGAN.validate({})
    assert "data_dim" not in CTGAN.settable() and "pac" in CTGAN.settable()


def test_the_discriminator_judges_pac_rows_together():
    params = CTGAN.validate({"data_dim": 5, "cond_dim": 3, "pac": 4, "d_width": 16})
    assert CTGAN.build_discriminator(params)(torch.zeros(8, 8)).shape == (2, 1)


def test_training_conditions_draw_levels_by_log_frequency_and_real_rows_that_have_them():
    dataset = _dataset(n=1000)
    transformer = DataTransformer.fit(dataset.schema, dataset.columns, max_modes=2)
    encoded = transformer.transform(dataset.columns)
    sampler = ConditionSampler(transformer, encoded)
    rng = np.random.default_rng(0)
    cond, mask, column, level = sampler.sample_training(20_000, rng)
    default_yes = np.mean(level[column == 0] == sampler.condition("default", "Yes")[1])
    counts = np.array(sampler.columns[0].frequencies, dtype=float)
    expected = np.log(counts + 1) / np.log(counts + 1).sum()
    assert default_yes == pytest.approx(expected[sampler.columns[0].levels.index("Yes")], abs=0.02)  # ~0.40, not the data's 0.10
    rows = sampler.sample_real_rows(column[:200], level[:200], rng)
    span = [s for s in transformer.spans if s.discrete]
    for c, v, r in zip(column[:200], level[:200], rows):
        assert encoded[r, span[c].start + v] == 1.0
    assert np.array_equal(cond.sum(axis=1), np.ones(20_000)) and np.array_equal(mask.sum(axis=1), np.ones(20_000))


def test_unconditional_rows_are_conditioned_on_the_target_at_its_real_frequency():
    dataset = _dataset(n=1000)
    transformer = DataTransformer.fit(dataset.schema, dataset.columns, max_modes=2)
    sampler = ConditionSampler(transformer)
    cond = sampler.sample_original(4000, [np.random.default_rng(i) for i in range(4000)])
    target = sampler.columns[sampler.target]
    assert target.name == "default"
    assert cond[:, sampler.offsets[sampler.target] : sampler.offsets[sampler.target] + target.width].sum() == 4000  # never the other column
    yes = cond[:, sampler.offsets[sampler.target] + target.levels.index("Yes")].mean()
    assert yes == pytest.approx(np.mean(dataset.columns["default"] == "Yes"), abs=0.015)  # the data's ~0.10, not log-frequency's ~0.40


def test_conditional_sampling_returns_only_the_requested_value(model):
    rows = model.sample(300, seed=3, condition=("default", "Yes"))
    assert set(rows["default"]) == {"Yes"}
    assert set(model.sample(300, seed=3, condition=("student", "True"))["student"]) == {True}


def test_an_unknown_condition_names_the_allowed_values(model):
    with pytest.raises(ConditionError, match=r"default = 'Maybe' is not a value of default; allowed: \['No', 'Yes'\]"):
        model.sample(10, condition=("default", "Maybe"))
    with pytest.raises(ConditionError, match=r"conditions name a categorical or boolean column, one of \['default', 'student'\]"):
        model.sample(10, condition=("balance", "3"))


def test_the_same_seed_gives_the_same_rows_and_a_row_does_not_depend_on_how_many_are_asked(model):
    a = model.sample(50, seed=7)
    assert np.array_equal(a["balance"][:20], model.sample(20, seed=7)["balance"])
    assert np.array_equal(a["balance"], model.sample(50, seed=7)["balance"])
    assert not np.array_equal(a["balance"], model.sample(50, seed=8)["balance"])


def test_a_saved_model_reloads_from_safetensors_and_json_and_samples_the_same_rows(model, tmp_path):
    model.save(tmp_path / "m")
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["generator.safetensors", "model.json", "transformer.json"]
    loaded = TabularModel.load(tmp_path / "m")
    before, after = model.sample(40, seed=1), loaded.sample(40, seed=1)
    assert np.array_equal(before["balance"], after["balance"]) and before["default"].tolist() == after["default"].tolist()


def test_a_private_runs_real_rows_are_shown_with_their_own_level_of_a_uniformly_drawn_column():
    dataset = _dataset(n=600)
    transformer = DataTransformer.fit(dataset.schema, dataset.columns, max_modes=2)
    encoded = transformer.transform(dataset.columns)
    sampler = ConditionSampler(transformer, encoded)

    cond = sampler.own_conditions(torch.from_numpy(encoded), np.random.default_rng(0)).numpy()

    assert (cond.sum(axis=1) == 1).all()  # one column's level per row
    chosen = np.searchsorted(sampler.offsets, cond.argmax(axis=1), side="right") - 1
    assert abs(np.mean(chosen == 0) - 0.5) < 0.06  # default or student, uniformly (not by a level's frequency)
    for c, name in enumerate(("default", "student")):
        rows = chosen == c
        levels = np.asarray(sampler.columns[c].levels)[cond[rows, sampler.offsets[c] : sampler.offsets[c] + sampler.columns[c].width].argmax(axis=1)]
        assert (levels == np.asarray(dataset.columns[name])[rows].astype(str)).all()  # the row's own value, never another row's
