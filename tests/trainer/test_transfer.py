"""Transfer learning: `ganworks train --init-from RUN[@STEP]` starts a new run at another run's published weights."""

from __future__ import annotations

import json
import logging
from collections import Counter

import numpy as np

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load as load_safetensors

from ganworks.checkpoint import list_snapshots, load_snapshot, load_training_weights, publish_snapshot, read_manifest
from ganworks.cli import main
from ganworks.data import ImageDataset
from ganworks.errors import CheckpointIntegrityError, ConfigError
from ganworks.layout import run_info_key
from ganworks.models import get_family
from ganworks.settings import StoreSettings
from ganworks.store import open_store
from trainer import transfer
from trainer.ema import make_ema
from trainer.publisher import SampleGrid
from tests.trainer.helpers import train

SOURCE_PARAMS = {"width": 8, "image_size": 32, "channels": 1, "num_classes": 10}


def _publish_source(store, run: str = "base", step: int = 40, params: dict | None = None, seed: int = 3, training: bool = True):
    """A source snapshot as the trainer publishes it: G_ema, its grid, and the raw G and D."""
    family = get_family("dcgan")
    params = family.validate(params or SOURCE_PARAMS)
    torch.manual_seed(seed)
    G_ema, G, D = family.build_generator(params), family.build_generator(params), family.build_discriminator(params)
    grid = SampleGrid("dcgan", params, seed=0)
    states = {"generator": G.state_dict(), "discriminator": D.state_dict()} if training else None
    publish_snapshot(store, run=run, step=step, generator_state=G_ema.state_dict(), architecture="dcgan", architecture_params=params,
                     samples_png=grid.render(G_ema.state_dict()), training_states=states)
    return G_ema, G, D


def _dry_run(capsys, store_path, *flags: str) -> tuple[int, str, str]:
    code = main(["train", "--dry-run", "--store", str(store_path), "--run", "tuned", "--conditional", *flags])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_a_snapshot_carries_verified_training_weights_and_a_modified_one_is_refused(tmp_path):
    store = open_store(str(tmp_path / "store"))
    _, G, D = _publish_source(store)

    weights = load_training_weights(store, "base", 40)

    assert set(weights) == {"generator", "discriminator"}
    assert torch.equal(load_safetensors(weights["discriminator"])["head.bias"], D.state_dict()["head.bias"])
    assert set(read_manifest(store, "base", 40).training_weights) == {"generator", "discriminator"}
    key = "runs/base/checkpoints/000000040/training-discriminator.safetensors"
    store.put_bytes(key, store.get_bytes(key)[:-4] + b"\0\0\0\0")
    with pytest.raises(CheckpointIntegrityError, match="training-discriminator"):
        load_training_weights(store, "base", 40)


@pytest.mark.parametrize("spec, named", [("nowhere", "has no published snapshot of run 'nowhere'"),
                                         ("base@7", "has no complete snapshot at step 7; its published steps end with: 40"),
                                         ("base@x@y", "is not RUN or RUN@STEP")])
def test_init_from_an_unknown_run_or_step_is_refused_naming_the_flag(capsys, tmp_path, spec, named):
    _publish_source(open_store(str(tmp_path / "store")))

    code, _, err = _dry_run(capsys, tmp_path / "store", "--init-from", spec)

    assert code == 2
    assert f"--init-from {spec!r}" in err and named in err


def test_init_from_a_published_snapshot_takes_its_model_flags_and_records_where_it_started(capsys, tmp_path):
    _publish_source(open_store(str(tmp_path / "store")))

    code, out, err = _dry_run(capsys, tmp_path / "store", "--init-from", "base")

    assert code == 0, err
    run_json = json.loads(out)
    assert run_json["architecture_params"]["width"] == 8  # the source's, without --model-param
    assert run_json["init_from"]["run"] == "base" and run_json["init_from"]["step"] == 40
    assert run_json["init_from"]["sha256"] == read_manifest(open_store(str(tmp_path / "store")), "base", 40).sha256


def test_init_from_without_model_trains_the_source_family_and_an_explicit_other_family_is_refused(capsys, tmp_path):
    store = open_store(str(tmp_path / "store"))
    family = get_family("stylegan2")
    params = family.validate({"image_size": 32, "channels": 1, "num_classes": 10, "channel_base": 64, "channel_max": 16,
                              "mapping_layers": 1, "w_dim": 16, "latent_dim": 16})
    G = family.build_generator(params)
    publish_snapshot(store, run="base", step=10, generator_state=G.state_dict(), architecture="stylegan2", architecture_params=params,
                     samples_png=b"", training_states={"generator": G.state_dict(), "discriminator": family.build_discriminator(params).state_dict()})

    code, out, err = _dry_run(capsys, tmp_path / "store", "--init-from", "base")

    assert code == 0, err
    run_json = json.loads(out)
    assert run_json["architecture"] == "stylegan2" and run_json["options"]["model"] == "stylegan2"
    assert run_json["architecture_params"]["channel_max"] == 16  # the family's flags follow the source too
    code, _, err = _dry_run(capsys, tmp_path / "store", "--init-from", "base", "--model", "dcgan")
    assert code == 2 and "is a stylegan2 snapshot; train with --model stylegan2" in err
    code, out, err = _dry_run(capsys, tmp_path / "store")  # no source: the default family
    assert code == 0 and json.loads(out)["architecture"] == "dcgan"


def test_a_run_from_a_snapshot_averages_g_ema_from_its_first_step_unless_the_ramp_up_is_given(capsys, tmp_path):
    _publish_source(open_store(str(tmp_path / "store")))

    rampups = {}
    for name, flags in {"tuned": ["--init-from", "base"], "tuned-ramped": ["--init-from", "base", "--ema-rampup", "0.1"], "fresh": []}.items():
        code, out, err = _dry_run(capsys, tmp_path / "store", *flags)
        assert code == 0, err
        rampups[name] = json.loads(out)["options"]["ema_rampup"]

    # The source's G_ema is already an average of a trained generator: no ramp-up unless asked; from scratch, 0.05.
    assert rampups == {"tuned": 0.0, "tuned-ramped": 0.1, "fresh": 0.05}


@pytest.mark.parametrize("flags, named", [(["--model-param", "width=16"], "width: source 8, this run 16"),
                                          (["--image-size", "64"], "image_size: source 32, this run 64"),
                                          (["--model", "stylegan2"], "is a dcgan snapshot; train with --model dcgan")])
def test_init_from_a_snapshot_of_another_architecture_is_refused_naming_what_differs(capsys, tmp_path, flags, named):
    _publish_source(open_store(str(tmp_path / "store")))

    code, _, err = _dry_run(capsys, tmp_path / "store", "--init-from", "base@40", *flags)

    assert code == 2
    assert named in err


def test_a_snapshot_without_training_weights_cannot_be_started_from(capsys, tmp_path):
    _publish_source(open_store(str(tmp_path / "store")), training=False)

    code, _, err = _dry_run(capsys, tmp_path / "store", "--init-from", "base")

    assert code == 2
    assert "published without its discriminator and generator weights" in err


def test_unconditional_from_conditional_is_refused_and_freezing_needs_a_source(capsys, tmp_path):
    _publish_source(open_store(str(tmp_path / "store")))

    code = main(["train", "--dry-run", "--store", str(tmp_path / "store"), "--run", "plain", "--init-from", "base"])
    err = capsys.readouterr().err
    assert code == 2 and "is conditional with 10 classes, this run is unconditional: add --conditional" in err

    code, _, err = _dry_run(capsys, tmp_path / "store", "--freeze-d-blocks", "2")
    assert code == 2 and "--freeze-d-blocks" in err and "needs --init-from" in err

    code, _, err = _dry_run(capsys, tmp_path / "store", "--init-from", "base", "--freeze-d-blocks", "9")
    assert code == 2 and "--freeze-d-blocks 9: this dcgan discriminator has 4 blocks" in err


@pytest.mark.parametrize("new_class_init", ["mean", "nearest"])
def test_a_new_class_start_for_a_run_with_the_sources_class_count_is_refused_naming_the_flag(capsys, tmp_path, new_class_init):
    _publish_source(open_store(str(tmp_path / "store")))  # 10 classes, as digits has

    code, _, err = _dry_run(capsys, tmp_path / "store", "--init-from", "base", "--new-class-init", new_class_init)

    assert code == 2
    assert f"--new-class-init {new_class_init}: --init-from 'base' (base step 40) has the same 10 classes as this run" in err


@pytest.mark.parametrize("new_class_init", ["mean", "random"])
def test_another_class_count_starts_only_the_class_embeddings_anew_and_keeps_every_other_weight(tmp_path, new_class_init):
    store = open_store(str(tmp_path / "store"))
    G_ema, G, D = _publish_source(store)
    family = get_family("dcgan")
    params = family.validate({**SOURCE_PARAMS, "num_classes": 2})

    source = transfer.check_source(store, "base", read_manifest(store, "base", 40), family, params, freeze_d_blocks=0, new_class_init=new_class_init)
    torch.manual_seed(0)
    networks = {"generator_ema": family.build_generator(params), "generator": family.build_generator(params), "discriminator": family.build_discriminator(params)}
    fresh_embed = networks["generator"].embed.weight.detach().clone()
    transfer.load_into(source.weights, source.kept_fresh, networks)

    assert source.reinitialised["generator"] == ["embed.weight"]
    assert "embed.parametrizations.weight.original" in source.reinitialised["discriminator"]
    assert source.describe()["new_class_init"] == new_class_init
    d_embed = networks["discriminator"].embed.parametrizations.weight.original
    if new_class_init == "random":
        assert torch.equal(networks["generator"].embed.weight, fresh_embed)
    else:  # every new class starts as the source's average class, in G and in D's projection
        for c in range(2):
            assert torch.allclose(networks["generator"].embed.weight[c], G.embed.weight.mean(0), atol=1e-6)
            assert torch.allclose(networks["generator_ema"].embed.weight[c], G_ema.embed.weight.mean(0), atol=1e-6)
            assert torch.allclose(d_embed[c], D.embed.parametrizations.weight.original.mean(0), atol=1e-6)
    assert torch.equal(networks["generator"].project.weight, G.project.weight)
    assert torch.equal(networks["generator_ema"].to_image.weight, G_ema.to_image.weight)
    assert torch.equal(networks["discriminator"].head.parametrizations.weight.original, D.head.parametrizations.weight.original)
    assert networks["generator"](torch.randn(2, 64), torch.tensor([0, 1])).shape == (2, 1, 32, 32)


def _two_class_images(size: int) -> ImageDataset:
    """A labelled dataset of two unlike classes: dark squares and light ones."""
    images = np.concatenate([np.full((6, size, size, 1), 20, np.uint8), np.full((6, size, size, 1), 235, np.uint8)])
    return ImageDataset(images, np.repeat(np.arange(2), 6), 2, "two-tones", "test", ("dark", "light"))


def test_nearest_starts_each_new_class_at_the_source_class_whose_projection_fits_its_images(tmp_path):
    store = open_store(str(tmp_path / "store"))
    family = get_family("dcgan")
    params = family.validate(SOURCE_PARAMS)
    data = _two_class_images(32)
    torch.manual_seed(3)
    G_ema, G, D = family.build_generator(params), family.build_generator(params), family.build_discriminator(params)
    with torch.no_grad():  # D's projection: source class 6 fits the dark images, class 2 the light ones, the rest neither
        h = [F.normalize(D.features(data.tensors()[data.labels == c]).flatten(1).mean(0), dim=0) for c in range(2)]
        rows = D.embed.parametrizations.weight.original
        rows.zero_()
        rows[6], rows[2] = h[0] - h[1], h[1] - h[0]
        for _ in range(30):  # spectral norm's power iteration, so its stored vectors match the new weights
            D.embed.weight
    D.eval()
    publish_snapshot(store, run="base", step=40, generator_state=G_ema.state_dict(), architecture="dcgan", architecture_params=params,
                     samples_png=b"", training_states={"generator": G.state_dict(), "discriminator": D.state_dict()})
    store.put_json(run_info_key("base"), {"dataset": {"class_names": [f"c{k}" for k in range(10)]}})
    new = family.validate({**SOURCE_PARAMS, "num_classes": 2})

    source = transfer.check_source(store, "base", read_manifest(store, "base", 40), family, new, freeze_d_blocks=0,
                                   new_class_init="nearest", dataset=data)
    networks = {"generator_ema": family.build_generator(new), "generator": family.build_generator(new), "discriminator": family.build_discriminator(new)}
    transfer.load_into(source.weights, source.kept_fresh, networks)

    assert source.describe()["class_start"] == {"dark": "c6", "light": "c2"}
    for new_class, old_class in ((0, 6), (1, 2)):
        assert torch.equal(networks["generator"].embed.weight[new_class], G.embed.weight[old_class])
        assert torch.equal(networks["generator_ema"].embed.weight[new_class], G_ema.embed.weight[old_class])
        assert torch.equal(networks["discriminator"].embed.parametrizations.weight.original[new_class], rows[old_class])


@pytest.mark.parametrize("dataset, named", [(None, "it needs a labelled --dataset and --conditional"),
                                             ("empty-class", "class 'light' of --dataset has no images to compare")])
def test_nearest_without_images_of_every_new_class_is_refused_naming_the_flag(tmp_path, dataset, named):
    store = open_store(str(tmp_path / "store"))
    _publish_source(store)
    family = get_family("dcgan")
    if dataset == "empty-class":  # two classes named, every image labelled dark
        dataset = _two_class_images(32)
        dataset = ImageDataset(dataset.images, np.zeros(len(dataset.images), np.int64), 2, "dark-only", "test", ("dark", "light"))

    with pytest.raises(ConfigError, match=f"--new-class-init nearest.*{named}"):
        transfer.check_source(store, "base", read_manifest(store, "base", 40), family, family.validate({**SOURCE_PARAMS, "num_classes": 2}),
                              freeze_d_blocks=0, new_class_init="nearest", dataset=dataset)


@pytest.mark.parametrize("named, said", [
    ("dark=c1", "names no start for 'light'"),
    ("dark=c1,light=c2,grey=c3", "names 'grey', which --dataset does not have"),
    ("dark=c1,light=boot", "names source class(es) 'boot', which base does not have"),
])
def test_a_class_start_that_does_not_name_each_new_class_once_with_a_source_class_is_refused_listing_both(tmp_path, named, said):
    store = open_store(str(tmp_path / "store"))
    _publish_source(store)
    store.put_json(run_info_key("base"), {"dataset": {"class_names": [f"c{k}" for k in range(10)]}})
    family = get_family("dcgan")

    with pytest.raises(ConfigError) as refused:
        transfer.check_source(store, "base", read_manifest(store, "base", 40), family, family.validate({**SOURCE_PARAMS, "num_classes": 2}),
                              freeze_d_blocks=0, new_class_init=named, dataset=_two_class_images(32))

    assert f"--new-class-init {said}" in str(refused.value)
    assert "for each new class (dark, light) from the source's (c0, c1, c2, c3, c4, c5, c6, c7, c8, c9)" in str(refused.value)


@pytest.mark.parametrize("text, said", [("dark", "or NEW=SOURCE pairs naming the source class each new class starts at"),
                                        ("dark=c1,dark=c2", "names a start for 'dark' more than once")])
def test_a_malformed_class_start_is_refused_before_anything_loads(capsys, tmp_path, text, said):
    code = main(["train", "--run", "tuned", "--dataset", "digits", "--conditional", "--init-from", "base", "--new-class-init", text,
                 "--store", str(tmp_path / "store"), "--dry-run"])

    assert code == 2 and said in capsys.readouterr().err


def test_nearest_gives_more_new_classes_than_source_classes_all_of_the_source_classes_evenly_and_logs_the_match(tmp_path, caplog):
    from trainer import driver
    from trainer.config import TrainOptions

    store = open_store(str(tmp_path / "store"))
    _publish_source(store, params={**SOURCE_PARAMS, "num_classes": 4})
    options = TrainOptions(run="tuned", dataset="digits", conditional=True, init_from="base", new_class_init="nearest", metrics_port=0)

    with caplog.at_level(logging.INFO, logger="trainer"):
        started = driver.plan(options, StoreSettings(store=str(tmp_path / "store"))).init.describe()

    said = "\n".join(record.getMessage() for record in caplog.records)
    assert "scoring up to 256 images of each of 10 new classes with base step 40's discriminator under its 4 labels" in said
    assert "start at the source class their images resemble most: " + ", ".join(f"{new} → {old}" for new, old in started["class_start"].items()) in said

    assert started["new_class_init"] == "nearest"
    assert set(started["class_start"]) == {str(d) for d in range(10)}
    uses = Counter(started["class_start"].values())
    assert set(uses) == {"0", "1", "2", "3"} and max(uses.values()) <= 3  # 10 new classes over 4: at most 3 each


def test_resuming_a_nearest_run_starts_its_classes_as_recorded_when_it_began_without_scoring_again(tmp_path):
    from trainer import driver
    from trainer.config import TrainOptions

    store = open_store(str(tmp_path / "store"))
    _publish_source(store, params={**SOURCE_PARAMS, "num_classes": 4})
    settings = StoreSettings(store=str(tmp_path / "store"))
    options = dict(run="tuned", dataset="digits", conditional=True, init_from="base", metrics_port=0)
    before = driver.plan(TrainOptions(**options, new_class_init="nearest"), settings).run_json()
    before["init_from"]["class_start"] = {str(d): "0" for d in range(10)}  # matched otherwise when the run began
    store.put_json("runs/tuned/run.json", before)

    resumed = driver.plan(TrainOptions(**options, new_class_init="nearest"), settings).init
    assert resumed.new_class_init == "nearest" and resumed.describe()["class_start"] == {str(d): "0" for d in range(10)}
    family = get_family("dcgan")
    params = family.validate({**SOURCE_PARAMS, "num_classes": 10})
    generator = family.build_generator(params)
    transfer.load_into(resumed.weights, resumed.kept_fresh, {"generator": generator})
    source_embed = load_safetensors(load_training_weights(store, "base", 40)["generator"])["embed.weight"]
    assert all(torch.equal(generator.embed.weight[d], source_embed[0]) for d in range(10))  # every new class at source class 0, as recorded
    with pytest.raises(ConfigError, match="--new-class-init nearest"):
        driver.plan(TrainOptions(**options, new_class_init="random"), settings)


@pytest.mark.parametrize("new_class_init", ["mean", "nearest", "dark=3,light=0"])
def test_stylegan2_new_classes_start_with_exactly_the_mapping_input_of_the_source_classes_they_start_from(tmp_path, new_class_init):
    store = open_store(str(tmp_path / "store"))
    family = get_family("stylegan2")
    small = {"image_size": 16, "channels": 1, "channel_base": 64, "channel_max": 16, "mapping_layers": 1, "w_dim": 16, "latent_dim": 16}
    old = family.validate({**small, "num_classes": 4})
    torch.manual_seed(5)
    G = family.build_generator(old)
    with torch.no_grad():
        G.mapping.embed.bias.normal_()  # a trained bias: the run-time scale of the weights must not change its share
    publish_snapshot(store, run="base", step=10, generator_state=G.state_dict(), architecture="stylegan2", architecture_params=old,
                     samples_png=b"", training_states={"generator": G.state_dict(), "discriminator": family.build_discriminator(old).state_dict()})
    new = family.validate({**small, "num_classes": 2})

    source = transfer.check_source(store, "base", read_manifest(store, "base", 10), family, new, freeze_d_blocks=0,
                                   new_class_init=new_class_init, dataset=_two_class_images(16))
    tuned = family.build_generator(new)
    transfer.load_into(source.weights, source.kept_fresh, {"generator_ema": tuned, "generator": family.build_generator(new),
                                                           "discriminator": family.build_discriminator(new)})

    with torch.no_grad():
        source_inputs = G.mapping.embed(torch.eye(4))
        started = tuned.mapping.embed(torch.eye(2))
        w_new = tuned.mapping(torch.randn(3, 16), torch.tensor([0, 1, 1]), track=False)
    if new_class_init == "mean":  # both new classes start as the source's average class
        assert torch.allclose(started, source_inputs.mean(0).expand(2, -1), atol=1e-5)
    else:  # each starts as the source class it was matched to; two new classes, four source classes: apart
        starts = [int(source.class_start[name]) for name in ("dark", "light")]
        assert starts[0] != starts[1]
        if "=" in new_class_init:  # the classes named, whatever the discriminator would have matched
            assert starts == [3, 0] and source.describe()["new_class_init"] == new_class_init
        assert torch.allclose(started, source_inputs[starts], atol=1e-5)
    assert torch.isfinite(w_new).all() and not torch.equal(w_new[0], w_new[1])


def test_a_new_run_starts_new_classes_nearest_and_a_resume_without_the_flag_goes_on_as_it_began(tmp_path):
    from trainer import driver
    from trainer.config import TrainOptions

    store = open_store(str(tmp_path / "store"))
    _publish_source(store, params={**SOURCE_PARAMS, "num_classes": 4})
    settings = StoreSettings(store=str(tmp_path / "store"))
    options = dict(run="tuned", dataset="digits", conditional=True, init_from="base", metrics_port=0)
    assert driver.plan(TrainOptions(**options), settings).run_json()["options"]["new_class_init"] == "nearest"
    started = driver.plan(TrainOptions(**options, new_class_init="mean"), settings)
    assert started.init.describe()["new_class_init"] == "mean"
    store.put_json("runs/tuned/run.json", started.run_json())

    assert driver.plan(TrainOptions(**options), settings).init.new_class_init == "mean"
    with pytest.raises(ConfigError, match="--init-from base@40 --new-class-init mean"):
        driver.plan(TrainOptions(**options, new_class_init="nearest"), settings)
    before = started.run_json()  # a run recorded before the flag existed started its new classes at random
    del before["init_from"]["new_class_init"]
    store.put_json("runs/tuned/run.json", before)
    assert driver.plan(TrainOptions(**options), settings).init.new_class_init == "random"
    with pytest.raises(ConfigError, match="--new-class-init random"):
        driver.plan(TrainOptions(**options, new_class_init="mean"), settings)


def test_a_source_with_another_architecture_inside_is_refused_before_training(tmp_path):
    store = open_store(str(tmp_path / "store"))
    _publish_source(store, params={**SOURCE_PARAMS, "width": 4})
    family = get_family("dcgan")
    manifest = read_manifest(store, "base", 40)
    manifest.architecture_params = dict(manifest.architecture_params, width=8)  # a manifest that lies about its weights

    with pytest.raises(ConfigError, match="does not fit|has shape"):
        transfer.check_source(store, "base", manifest, family, family.validate(SOURCE_PARAMS), freeze_d_blocks=0)


def test_a_new_run_starts_at_the_source_weights_so_the_same_seeds_draw_the_source_grid(tmp_path):
    store = open_store(str(tmp_path / "store"))
    _publish_source(store)
    family = get_family("dcgan")
    params = family.validate(SOURCE_PARAMS)
    source = transfer.check_source(store, "base", read_manifest(store, "base", 40), family, params, freeze_d_blocks=0)
    torch.manual_seed(123)  # the new run's own fresh initialisation, overwritten by the source's weights
    G = family.build_generator(params)
    networks = {"generator_ema": make_ema(G), "generator": G, "discriminator": family.build_discriminator(params)}

    transfer.load_into(source.weights, source.kept_fresh, networks)

    grid = SampleGrid("dcgan", params, seed=0).render(networks["generator_ema"].state_dict())
    assert grid == store.get_bytes("runs/base/checkpoints/000000040/samples.png")


@pytest.mark.ray
@pytest.mark.slow
def test_a_run_from_a_snapshot_trains_from_its_weights_and_keeps_frozen_d_blocks(ray_cluster, tmp_path):
    store = open_store(str(tmp_path / "store"))
    _, G, D = _publish_source(store)

    # Learning rates far below float32 resolution: whatever training does not move must still be the source's.
    outcome = train(StoreSettings(store=str(tmp_path / "store")), "tuned", steps=2, snapshot_every=2, init_from="base@40", freeze_d_blocks=2,
                    g_lr=1e-20, d_lr=1e-3)

    assert outcome.step == 2 and list_snapshots(store, "tuned") == [2]
    assert store.get_json("runs/tuned/run.json")["init_from"]["run"] == "base"
    trained = {role: load_safetensors(data) for role, data in load_training_weights(store, "tuned", 2).items()}
    assert torch.equal(trained["generator"]["project.weight"], G.project.weight)
    frozen = [m for m in D.features if isinstance(m, torch.nn.Conv2d)][:2]
    assert torch.equal(trained["discriminator"]["features.0.parametrizations.weight.original"], frozen[0].parametrizations.weight.original)
    assert torch.equal(trained["discriminator"]["features.2.parametrizations.weight.original"], frozen[1].parametrizations.weight.original)
    assert not torch.equal(trained["discriminator"]["features.4.parametrizations.weight.original"], D.features[4].parametrizations.weight.original)


def test_the_same_command_resumes_a_run_from_its_source_step_after_the_source_published_a_newer_one(tmp_path):
    from trainer import driver
    from trainer.config import TrainOptions

    store = open_store(str(tmp_path / "store"))
    _publish_source(store)
    settings = StoreSettings(store=str(tmp_path / "store"))
    options = dict(run="tuned", dataset="digits", conditional=True, init_from="base", metrics_port=0)
    started = driver.plan(TrainOptions(**options), settings)
    store.put_json("runs/tuned/run.json", started.run_json())  # what `ganworks train` writes before training
    _publish_source(store, step=80, seed=4)  # the source run goes on training

    resumed = driver.plan(TrainOptions(**options), settings)

    assert started.init.step == resumed.init.step == 40
