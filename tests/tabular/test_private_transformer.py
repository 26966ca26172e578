"""The CTGAN transformer fitted under DP (`--dp-transformer-epsilon`): what it releases, what it leaves out, and its cost."""

from __future__ import annotations

import json

import numpy as np
import pytest
from opacus.accountants import RDPAccountant

from ganworks.errors import ConfigError, DatasetError
from ganworks.settings import StoreSettings
from ganworks.tabular.data import Column, Schema, TabularDataset
from ganworks.tabular.private import DELTA_SHARE, fit_private
from ganworks.tabular.synthesizer import prepare
from trainer import driver
from trainer.config import TrainOptions
from trainer.privacy import PrivacyBudget

SCHEMA = Schema((Column("city", "categorical"), Column("owner", "boolean"), Column("income", "continuous"), Column("age", "integer")))
TINY_CTGAN = {"latent_dim": "8", "g_width": "16", "d_width": "16", "max_modes": "3"}


def _table(n: int = 4000, seed: int = 0, rare: str | None = None, outlier: float | None = None) -> dict[str, np.ndarray]:
    """n records; with rare, one more record holds that city alone; with outlier, one more income far beyond the rest."""
    rng = np.random.default_rng(seed)
    columns = {"city": rng.choice(["north", "south", "east"], n).astype(object), "owner": rng.random(n) < 0.4,
               "income": rng.lognormal(10, 0.5, n), "age": rng.integers(18, 80, n)}
    if rare is not None or outlier is not None:
        extra = {"city": rare or "north", "owner": True, "income": outlier or 20000.0, "age": 40}
        columns = {k: np.concatenate([v, np.array([extra[k]], dtype=v.dtype)]) for k, v in columns.items()}
    return columns


def test_a_level_held_by_one_record_is_never_listed_and_its_record_is_encoded_as_the_commonest_level():
    for seed in range(20):
        fit, conformed = fit_private(SCHEMA, _table(rare="Smallville"), epsilon=1.0, delta=1e-7, max_modes=4, seed=seed)
        city = fit.transformer.discrete()[0]
        assert sorted(city.levels) == ["east", "north", "south"]
        assert conformed["city"][-1] == city.levels[int(np.argmax(city.frequencies))] and fit.merged["city"] == 1
        assert fit.transformer.discrete()[1].levels == ["False", "True"]  # a boolean's levels are known without the data


def test_an_outlier_does_not_move_the_released_range_and_is_clipped_into_it():
    plain = fit_private(SCHEMA, _table(), epsilon=1.0, delta=1e-7, max_modes=4, seed=3)[0]
    fit, conformed = fit_private(SCHEMA, _table(outlier=1e12), epsilon=1.0, delta=1e-7, max_modes=4, seed=3)

    low, high = fit.clipped["income"]
    assert (low, high) == plain.clipped["income"] and high < 1e7  # incomes are about e^10 ≈ 22,000
    assert conformed["income"][-1] == high
    income = next(e for e in fit.transformer.encodings if e.name == "income")
    assert (income.low, income.high) == (low, high) and len(income.means) == 4 and low < min(income.means) < max(income.means) < high


def test_the_released_counts_are_noisy_but_near_and_the_mechanism_is_reproducible_from_the_seed():
    columns = _table()
    first = fit_private(SCHEMA, columns, epsilon=1.0, delta=1e-7, max_modes=4, seed=0)[0].transformer
    again = fit_private(SCHEMA, columns, epsilon=1.0, delta=1e-7, max_modes=4, seed=0)[0].transformer
    other = fit_private(SCHEMA, columns, epsilon=1.0, delta=1e-7, max_modes=4, seed=1)[0].transformer

    true = dict(zip(*np.unique(columns["city"].astype(str), return_counts=True)))
    city = first.discrete()[0]
    assert again.dumps() == first.dumps() and other.dumps() != first.dumps()
    assert city.frequencies != [true[level] for level in city.levels]  # the counts are not the table's
    # Laplace noise at ε = 1 / 4 columns: scale 4, so a count is off by more than 60 with probability e^-15.
    assert all(abs(count - true[level]) < 60 for level, count in zip(city.levels, city.frequencies))


def test_a_column_too_sparse_for_its_share_of_the_budget_is_refused_naming_it():
    small = TabularDataset(columns=_table(n=50), schema=SCHEMA, id="small", source="test")
    with pytest.raises(DatasetError, match="column 'city': none of its levels is common enough to be released privately at ε = 0.025 per column"):
        prepare(small, 0, private=(0.1, 1e-6), **TINY_CTGAN, pac=1, gp_weight=0.0)
    numbers = Schema((Column("income", "continuous"),))
    with pytest.raises(DatasetError, match="column 'income': no range of its values can be released privately at ε = 0.1 per column"):
        fit_private(numbers, {"income": _table(n=50)["income"]}, epsilon=0.1, delta=0.0, max_modes=4, seed=0)


def _plan(tmp_path, **options):
    options = {"run": "private", "model": "ctgan", "dataset": "credit-default", "conditional": False, "batch_size": 40, "steps": 40,
               "model_params": dict(TINY_CTGAN), **options}
    return driver.plan(TrainOptions(**options), StoreSettings(store=str(tmp_path / "store")))


def test_the_transformers_share_is_spent_first_and_the_networks_train_within_the_rest(tmp_path):
    plan = _plan(tmp_path, dp_epsilon=3.0, dp_transformer_epsilon=0.5)
    p = plan.privacy
    networks_delta = p.delta * (1 - DELTA_SHARE)

    assert (p.preprocessing_epsilon, p.preprocessing_delta) == (0.5, pytest.approx(p.delta * DELTA_SHARE))
    assert p.covers == "the networks and the fitted transformer" and set(p.transformer["numeric_range"]) == {"balance", "income"}
    accountant = RDPAccountant()
    budget = PrivacyBudget(p)
    assert budget.epsilon() == 0.5  # spent before the first step
    for _ in range(p.planned_steps):
        accountant.step(noise_multiplier=p.noise_multiplier, sample_rate=p.sample_rate)
        budget.step()
    # σ was chosen so the planned steps spend what the transformer left: ε = 0.5 + the networks' ε, at most 3.
    assert budget.epsilon() == pytest.approx(0.5 + accountant.get_epsilon(networks_delta), rel=1e-12)
    assert 2.9 < budget.epsilon() <= 3.0
    plain = _plan(tmp_path, dp_epsilon=3.0).privacy
    assert plain.noise_multiplier < p.noise_multiplier and plain.covers.startswith("the networks, not the fitted transformer")


@pytest.mark.parametrize("options, said", [
    ({"dp_epsilon": 1.0, "dp_transformer_epsilon": 1.0}, "--dp-transformer-epsilon 1 must be a part of --dp-epsilon 1"),
    ({"dp_transformer_epsilon": 0.5}, "--dp-transformer-epsilon need --dp-epsilon"),
    ({"dp_epsilon": 3.0, "dp_transformer_epsilon": 0.001}, "--dp-transformer-epsilon 0.001: column"),
    ({"model": "dcgan", "dataset": "digits", "model_params": {"width": 8, "spectral_norm": "false"}, "dp_epsilon": 3.0, "dp_transformer_epsilon": 0.5},
     "--dp-transformer-epsilon is for tables"),
], ids=["whole-budget", "no-budget", "too-small-for-the-table", "image-model"])
def test_a_transformer_budget_that_cannot_work_is_refused_naming_the_flag(tmp_path, options, said):
    with pytest.raises(ConfigError) as refused:
        _plan(tmp_path, **options)
    assert said in str(refused.value)


def test_a_private_table_resumed_with_another_transformer_share_is_refused_and_with_the_same_one_releases_the_same_transformer(tmp_path):
    from ganworks.layout import run_info_key

    plan = _plan(tmp_path, dp_epsilon=3.0, dp_transformer_epsilon=0.5)
    plan.store.put_json(run_info_key("private"), plan.run_json())  # as the driver writes it when the run starts

    with pytest.raises(ConfigError, match=r"preprocessing_epsilon=0.5; resume it with the same .*--dp-transformer-epsilon"):
        _plan(tmp_path, dp_epsilon=3.0, dp_transformer_epsilon=0.2)
    again = _plan(tmp_path, dp_epsilon=3.0, dp_transformer_epsilon=0.5)
    assert again.privacy.transformer == plan.privacy.transformer and again.table.transformer_json == plan.table.transformer_json


def _declared(schema: Schema, ranges: dict, levels: dict) -> Schema:
    return Schema(tuple(Column(c.name, c.kind, tuple(ranges[c.name]) if c.name in ranges else None,
                               tuple(levels[c.name]) if c.name in levels else None) for c in schema.columns), schema.target)


def test_declared_ranges_and_levels_are_used_as_they_are_and_only_the_other_columns_share_the_budget():
    columns = _table(n=300)
    schema = _declared(SCHEMA, {"income": [0, 200000]}, {"city": ["north", "south", "east", "west"]})

    fit, conformed = fit_private(schema, columns, epsilon=0.3, delta=0.0, max_modes=4, seed=0)

    income = next(e for e in fit.transformer.encodings if e.name == "income")
    assert (income.low, income.high) == (0.0, 200000.0) and fit.clipped["income"] == (0.0, 200000.0)
    assert fit.transformer.discrete()[0].levels == ["north", "south", "east", "west"]  # "west" is listed though no record holds it
    assert fit.per_column_epsilon == pytest.approx(0.3 / 3) and fit.delta == 0.0  # city, owner and age release; nothing searched for levels
    assert fit.public == ["city", "income"]
    # Undeclared, the same 300 rows at the same ε cannot release the city levels (a level needs ~ 1 + ln(1/2δ)/ε rows).
    with pytest.raises(DatasetError, match="column 'city'"):
        fit_private(SCHEMA, columns, epsilon=0.3, delta=1e-7, max_modes=4, seed=0)


def test_a_table_whose_schema_file_declares_its_ranges_and_levels_trains_privately_at_a_share_too_small_to_find_them(tmp_path, capsys):
    from ganworks.cli import main

    rng = np.random.default_rng(0)
    n, measures = 400, [f"m{i}" for i in range(12)]
    lines = [",".join(measures + ["diagnosis"])] + [",".join([f"{rng.normal(50, 10):.3f}" for _ in measures] + [rng.choice(["benign", "malignant"])]) for _ in range(n)]
    (tmp_path / "clinic.csv").write_text("\n".join(lines) + "\n")
    flags = ["train", "--dry-run", "--store", str(tmp_path / "store"), "--run", "clinic", "--model", "ctgan", "--dataset", str(tmp_path / "clinic.csv"),
             "--batch-size", "40", "--dp-epsilon", "3", "--dp-transformer-epsilon", "0.5"]

    assert main(flags) == 2 and "--dp-transformer-epsilon 0.5: column 'diagnosis': none of its levels is common enough" in capsys.readouterr().err
    (tmp_path / "clinic.schema.json").write_text(json.dumps({"columns": {**{m: {"kind": "continuous", "range": [0, 100]} for m in measures},
                                                                         "diagnosis": {"kind": "categorical", "levels": ["benign", "malignant"]}}}))
    code = main(flags)
    out, err = capsys.readouterr()
    assert code == 0, err
    released = json.loads(out)["privacy"]["transformer"]
    assert released["numeric_range"] == {m: [0.0, 100.0] for m in measures} and released["per_column_epsilon"] == 0.5
    assert released["delta"] == 0.0 and sorted(released["declared_public"]) == sorted(measures + ["diagnosis"])


def test_what_run_json_records_of_a_private_transformer_is_released_or_declared_never_an_exact_count():
    with_rare = fit_private(SCHEMA, _table(rare="Smallville"), epsilon=1.0, delta=1e-7, max_modes=4, seed=0)[0]
    without = fit_private(SCHEMA, _table(), epsilon=1.0, delta=1e-7, max_modes=4, seed=0)[0]

    assert with_rare.merged["city"] == 1 and without.merged["city"] == 0  # the data owner can see it
    # run.json cannot tell the two tables apart by the rare record: the same mechanisms' outputs, the same keys.
    assert set(with_rare.describe()) == {"epsilon", "delta", "per_column_epsilon", "numeric_range", "declared_public"}
    assert "Smallville" not in json.dumps(with_rare.describe()) and with_rare.describe()["numeric_range"].keys() == without.describe()["numeric_range"].keys()
