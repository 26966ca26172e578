"""Fast-path forms on a CPU: which forms count (the one-step pixel rule), bf16 autocast, and the bucket padding that
CUDA graphs use (the same code, run eagerly here)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ganworks.images import to_uint8
from ganworks.models import build_generator, get_family
from generator_service import fastpath
from tests.generator.conftest import SMALL

CPU = torch.device("cpu")
DCGAN = get_family("dcgan")
SG2 = get_family("stylegan2")
SG2_PARAMS = SG2.validate({"image_size": 16, "channels": 1, "num_classes": 4, "latent_dim": 16, "w_dim": 16, "channel_base": 256, "channel_max": 16})


def _dcgan() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_generator("dcgan", **SMALL).eval()


def _shifted(generator: torch.nn.Module, plan: fastpath.FormPlan) -> torch.nn.Module:
    """A 'form' two uint8 steps off everywhere: never to be served, however fast."""
    class Shifted(torch.nn.Module):
        def forward(self, z, labels=None):
            return generator(z) + 4 / 255

    return Shifted()


def test_each_form_is_kept_exactly_when_its_pixels_stay_within_one_step_and_the_served_one_is_the_fastest_kept():
    generator = _dcgan()
    forms = {"bf16_autocast": fastpath.FORMS["bf16_autocast"], "bucket_padded": fastpath.form("fp32", buckets=True), "shifted": _shifted}
    modules, trials = fastpath.measure_forms(generator, DCGAN, DCGAN.validate(SMALL), batch=8, device=CPU, forms=forms)
    by_name = {t.name: t for t in trials}
    assert set(by_name) == {"eager", *forms}
    for trial in trials:
        assert trial.drift is not None, trial  # every one of these forms runs on a CPU
        assert trial.qualified == (trial.drift <= 1) == (trial.name in modules), trial
    assert by_name["eager"].drift == 0 and by_name["bucket_padded"].qualified
    assert not by_name["shifted"].qualified and "changes pixels by up to 2/255" in by_name["shifted"].reason


def test_bf16_autocast_runs_on_a_cpu_and_is_served_only_if_it_passes_the_pixel_rule(monkeypatch):
    generator = _dcgan()
    monkeypatch.setattr(fastpath, "FORMS", {"bf16_autocast": fastpath.FORMS["bf16_autocast"]})
    module, name, timings = fastpath.fastest_form(generator, DCGAN, DCGAN.validate(SMALL), batch=8, device=CPU)
    _, trials = fastpath.measure_forms(generator, DCGAN, DCGAN.validate(SMALL), batch=8, device=CPU)
    bf16 = next(t for t in trials if t.name == "bf16_autocast")
    assert bf16.drift is not None  # it ran: CPU autocast supports bf16
    assert ("bf16_autocast" in timings) == (bf16.drift <= 1)
    z = torch.from_numpy(DCGAN.seeded_latents(SMALL, 5, 0, 8))
    with torch.inference_mode():
        served, eager = to_uint8(DCGAN.generate(module, z, None, torch.ones(8))), to_uint8(generator(z))
    assert np.abs(served.astype(int) - eager.astype(int)).max() <= 1
    if name == "bf16_autocast":
        assert served.dtype == np.uint8 and module(z).dtype == torch.float32  # the family's code after the entry runs in fp32


def test_forms_that_need_cuda_are_not_tried_on_a_cpu_and_are_skipped_if_asked_for():
    assert not set(fastpath.CUDA_FORMS) & set(fastpath.forms_for(CPU))
    assert set(fastpath.CUDA_FORMS) <= set(fastpath.forms_for(torch.device("cuda")))
    assert "compile" in fastpath.forms_for(torch.device("cuda"), compile=True) and "compile" not in fastpath.forms_for(torch.device("cuda"), compile=False)
    _, trials = fastpath.measure_forms(_dcgan(), DCGAN, DCGAN.validate(SMALL), batch=4, device=CPU, forms={"cuda_graphs": fastpath.CUDA_FORMS["cuda_graphs"]})
    graphs = next(t for t in trials if t.name == "cuda_graphs")
    assert not graphs.qualified and "need a CUDA device" in graphs.reason


def test_a_call_is_padded_up_to_its_bucket_and_cut_back_and_each_sample_is_what_the_unpadded_call_gives():
    generator = _dcgan()
    seen = []

    def forward(z):
        seen.append(len(z))
        return generator(z)

    padded = fastpath.BucketPadding(forward, (1, 2, 4, 8))
    with torch.inference_mode():
        for n in (3, 8, 1, 3, 5, 9):  # 3 after 8: the rows the 8 left in the bucket's buffer must not leak into it
            z = torch.randn(n, SMALL["latent_dim"])
            out = padded(z)
            assert out.shape[0] == n
            torch.testing.assert_close(out, generator(z), rtol=0, atol=1e-5)
    assert seen == [4, 8, 1, 4, 8, 9]  # what the module was run at: each call's bucket; 9 > 8 runs as it is
    assert fastpath.graph_buckets(64) == (1, 2, 4, 8, 16, 24, 32, 40, 48, 56, 64)
    assert fastpath.graph_buckets(12) == (1, 2, 4, 8, 12)


def test_a_stylegan2_form_wraps_mapping_and_synthesis_and_keeps_the_family_code_between_them():
    torch.manual_seed(0)
    generator = SG2.build_generator(SG2_PARAMS).eval()
    with torch.no_grad():
        generator.mapping.w_avg.normal_()
    run = fastpath._runner(SG2, fastpath._example(SG2, SG2_PARAMS, 3, CPU))
    entries, _ = fastpath.entry_points(generator, run)
    assert entries == ("mapping", "synthesis")
    modules, trials = fastpath.measure_forms(generator, SG2, SG2_PARAMS, batch=6, device=CPU, forms={"bucket_padded": fastpath.form("fp32", buckets=True)})
    assert [t.name for t in trials if t.qualified] == ["eager", "bucket_padded"]
    # Truncation (the family's code between the two entries) still applies to a padded batch of 5 in a bucket of 6.
    z, labels = torch.from_numpy(SG2.seeded_latents(SG2_PARAMS, 1, 0, 5)), torch.from_numpy(SG2.seeded_labels(SG2_PARAMS, 1, 0, 5))
    psi = torch.full((5,), 0.5)
    with torch.inference_mode():
        torch.testing.assert_close(SG2.generate(modules["bucket_padded"], z, labels, psi), SG2.generate(generator, z, labels, psi), rtol=0, atol=1e-5)


def test_a_form_whose_build_fails_is_skipped_and_the_eager_module_still_serves():
    generator = _dcgan()

    def broken(g, plan):
        raise RuntimeError("no kernel for this")

    modules, trials = fastpath.measure_forms(generator, DCGAN, DCGAN.validate(SMALL), batch=4, device=CPU, forms={"broken": broken})
    assert list(modules) == ["eager"] and modules["eager"] is generator
    assert "not available: RuntimeError: no kernel for this" in trials[1].reason


@pytest.mark.parametrize("precision", ["bf16"])
def test_an_autocast_entry_returns_float32_so_the_batcher_and_to_uint8_see_what_eager_gives(precision):
    generator = _dcgan()
    module = fastpath.form(precision)(generator, fastpath.FormPlan(("",), CPU, (1, 2, 4)))
    with torch.inference_mode():
        assert module(torch.randn(2, SMALL["latent_dim"])).dtype == torch.float32
