"""Differentially private training (`ganworks train --dp-epsilon E`): DP-SGD on the discriminator, its accountant, its budget.

Only the discriminator sees real data. It is trained with DP-SGD (Opacus): every sample's gradient is clipped to
--dp-max-grad-norm C, the clipped gradients are summed, and Gaussian noise of standard deviation σ·C is added. The
generator learns only from D's outputs, so G, G_ema and everything sampled from them are private by post-processing.

What is charged, and why only the real samples: each D step is ONE forward and backward over a Poisson sample of the
real training data (every record joins with probability q = batch / n) together with `per_worker` generated samples.
Every row, real or generated, is clipped on its own; then the noise is added once to the sum. The generated rows are
a function of the current G and of the noise stream alone, never of any training record, so adding or removing one
record changes the noised sum by at most C: this is exactly the subsampled Gaussian mechanism (rate q, noise σ) that
the accountant composes, once per step. Generated rows are clipped too, which costs a little utility and no privacy.
(The alternative, pairing real i with fake i into one clipped "sample" as Opacus' DCGAN example does, needs equal
real and fake counts, which Poisson sampling does not give.)

With DDP every worker draws its share of the Poisson sample (each record lives on one worker), clips its rows, and
only rank 0 adds noise before the sum over workers (Opacus' DistributedDPOptimizer): one mechanism per global step,
accounted once. The accountant is Opacus' RDP accountant; its history is part of the resume state.

Tables (ctgan): the unit is one row; trainer/kinds/table.py's PrivateCTGANStep trains with pac 1, no gradient penalty
and Poisson-sampled rows shown with their own conditions (docs/trainer.md says why). ε covers the networks, not the
DataTransformer fitted on the table without noise and published beside every snapshot.

Sampling and noise come from seeded PyTorch generators (reproducible runs), not from a cryptographic source
(Opacus' secure_mode): fine against the attacks the accountant models, stated here so nobody assumes more.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
from typing import Any

import torch

from ganworks.errors import ConfigError
from ganworks.images import from_uint8
from ganworks.optim import finite_grad_norm

ACCOUNTANT = "rdp"
log = logging.getLogger("trainer")


def require_opacus() -> None:
    try:
        import opacus  # noqa: F401
    except ImportError:
        raise ConfigError("--dp-epsilon trains with Opacus, which is not installed: pip install 'ganworks[dp]'") from None


def default_delta(n: int) -> float:
    """δ = 1/(n·√n): well below 1/n, the level at which leaking one whole record would still be 'private'."""
    return 1.0 / (n * math.sqrt(n))


def epsilon(history: list[tuple[float, float, int]], delta: float) -> float:
    """ε after the steps in history [(noise multiplier, sample rate, steps), ...], from Opacus' RDP accountant."""
    from opacus.accountants import RDPAccountant

    if not history:
        return 0.0
    accountant = RDPAccountant()
    accountant.history = [tuple(entry) for entry in history]
    return float(accountant.get_epsilon(delta))


@dataclasses.dataclass
class PrivacyPlan:
    """run.json's "privacy": what the run was planned with. σ is fixed for the whole run, resumes included."""

    epsilon: float  # the budget E
    delta: float
    max_grad_norm: float
    noise_multiplier: float
    sample_rate: float
    planned_steps: int
    budget_steps: int  # the last step whose ε is within E (the run stops there whatever --steps says)
    accountant: str = ACCOUNTANT
    epsilon_spent: float = 0.0  # ε of the newest published snapshot; rank 0 rewrites it after each publish (trainer/reporting.py)
    epsilon_spent_step: int = 0  # that snapshot's step
    charged: str = "real samples only: each D step is one clipped, noised pass over a Poisson sample of the data plus generated samples"
    # Spent before training (a table's transformer fitted privately, --dp-transformer-epsilon): ε adds up with the
    # networks' (sequential composition), which train within the rest of the budget, epsilon − preprocessing_epsilon.
    preprocessing_epsilon: float = 0.0
    preprocessing_delta: float = 0.0
    covers: str = "the networks"
    transformer: dict[str, Any] | None = None  # what the private fit released and left out (ganworks.tabular.private.PrivateFit)

    @property
    def network_epsilon(self) -> float:
        return self.epsilon - self.preprocessing_epsilon

    @property
    def network_delta(self) -> float:
        return self.delta - self.preprocessing_delta

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "PrivacyPlan":
        return cls(**{f.name: data[f.name] for f in dataclasses.fields(cls) if f.name in data})


def last_step_within(history: list[tuple[float, float, int]], noise_multiplier: float, sample_rate: float, delta: float, budget: float, limit: int) -> int:
    """The largest step k <= limit whose ε (the steps in history, then more at σ and q) is within budget: a binary search,
    as ε grows with every step. Never below the steps already in history."""
    done = sum(entry[2] for entry in history)
    history = [tuple(entry) for entry in history]

    def within(more: int) -> bool:
        return epsilon(history + ([(noise_multiplier, sample_rate, more)] if more else []), delta) <= budget

    if limit <= done:
        return max(limit, 0)
    if within(limit - done):
        return limit
    low, high = 0, limit - done  # within(low) or low == 0; not within(high)
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (middle, high) if within(middle) else (low, middle)
    return done + low


def run_delta(opts, n: int) -> float:
    """--dp-delta, or 1/(n·√n); refused at 1/n or above."""
    delta = opts.dp_delta or default_delta(n)
    if delta >= 1.0 / n:
        raise ConfigError(f"--dp-delta {delta:g} is not below 1/n = {1 / n:g} for the {n} training samples; a δ that large allows leaking a whole record")
    return delta


def plan_privacy(opts, n: int, previous: dict[str, Any] | None, preprocessing: tuple[float, float] = (0.0, 0.0), covers: str = "the networks",
                 transformer: dict[str, Any] | None = None) -> PrivacyPlan:
    """σ from --dp-noise-multiplier, or the smallest σ whose --steps spend at most what E leaves after preprocessing
    (ε, δ spent before training); a resumed run keeps its σ."""
    require_opacus()
    from opacus.accountants.utils import get_noise_multiplier

    delta = run_delta(opts, n)
    pre_epsilon, pre_delta = preprocessing
    sample_rate = opts.batch_size / n
    if previous:
        same = {"epsilon": opts.dp_epsilon, "delta": delta, "max_grad_norm": opts.dp_max_grad_norm, "sample_rate": sample_rate,
                "preprocessing_epsilon": pre_epsilon}
        changed = [k for k, v in same.items() if not math.isclose(previous.get(k, 0.0 if k == "preprocessing_epsilon" else math.nan), v, rel_tol=1e-9)]  # runs from before T: 0
        if opts.dp_noise_multiplier and not math.isclose(opts.dp_noise_multiplier, previous["noise_multiplier"], rel_tol=1e-9):
            changed.append("noise_multiplier")
        if changed:
            raise ConfigError(f"run {opts.run!r} was trained privately with {', '.join(f'{k}={previous.get(k, 0.0)}' for k in changed)}; resume it with the same "
                              "--dp-epsilon, --dp-delta, --dp-max-grad-norm, --dp-noise-multiplier, --dp-transformer-epsilon and --batch-size, or choose a new --run")
        sigma = previous["noise_multiplier"]
    elif opts.dp_noise_multiplier:
        sigma = opts.dp_noise_multiplier
    else:
        sigma = get_noise_multiplier(target_epsilon=opts.dp_epsilon - pre_epsilon, target_delta=delta - pre_delta, sample_rate=sample_rate,
                                     steps=opts.steps, accountant=ACCOUNTANT)
    budget_steps = last_step_within([], sigma, sample_rate, delta - pre_delta, opts.dp_epsilon - pre_epsilon, opts.steps)
    spent = {k: previous[k] for k in ("epsilon_spent", "epsilon_spent_step") if k in previous} if previous else {}  # a resume keeps what was published
    return PrivacyPlan(opts.dp_epsilon, delta, opts.dp_max_grad_norm, float(sigma), sample_rate, opts.steps, budget_steps, **spent,
                       preprocessing_epsilon=pre_epsilon, preprocessing_delta=pre_delta, covers=covers, transformer=transformer)


# ---- what can be trained privately ----------------------------------------------------------------------------

SUPPORTED = "--model dcgan --model-param spectral_norm=false"


def check_private_trainable(opts, family, params: dict[str, Any], mixing_hint: str = SUPPORTED) -> None:
    """Refuses, naming the option to use, what DP-SGD on D cannot do; checks a built D, so a new family is checked too.
    A kind's own rules (trainer/kinds/) come first; mixing_hint: what its user can do about a D that mixes samples."""
    require_opacus()
    for given, flag, why in (
        (opts.loss == "wgan-gp", "--loss wgan-gp", "its gradient penalty differentiates D with respect to its inputs; use --loss hinge or non-saturating"),
        (opts.r1_gamma > 0, "--r1-gamma", "R1 differentiates D with respect to the real images; use --r1-gamma 0"),
        (opts.augment != "none", "--augment ada", "ADA tunes its probability from D's outputs on real images, an unaccounted channel; use --augment none"),
    ):
        if given:
            raise ConfigError(f"--dp-epsilon cannot be combined with {flag}: {why}")
    if not params:
        return  # the options alone (before the data); the built D is checked once the data gave its shape
    from opacus.validators import ModuleValidator

    torch.manual_seed(0)
    D = family.build_discriminator(params)
    if any(torch.nn.utils.parametrize.is_parametrized(m) for m in D.modules()):
        hint = "--model-param spectral_norm=false" if "spectral_norm" in params else SUPPORTED
        raise ConfigError(f"--dp-epsilon: {family.name}'s discriminator uses spectral normalisation, a reparametrisation of its weights that Opacus' "
                          f"per-sample gradients do not support; train privately with {hint}")
    problems = ModuleValidator.validate(D, strict=False)
    if problems:
        raise ConfigError(f"--dp-epsilon: {family.name}'s discriminator has layers Opacus cannot train privately ({problems[0]}); use {SUPPORTED}")
    if _mixes_samples(D, family.probe_inputs(params, torch.Generator().manual_seed(0))):
        raise ConfigError(f"--dp-epsilon: {family.name}'s discriminator judges each sample together with others of its batch (e.g. minibatch "
                          f"standard deviation, PacGAN packing), so one sample's gradient is not its own; use {mixing_hint}")


@torch.no_grad()
def _mixes_samples(D: torch.nn.Module, inputs: tuple) -> bool:
    """Does D's output for sample 0 change when only the others change? (batch statistics, minibatch stddev, packing, ...)
    Both passes draw the same dropout masks, so only a real dependence on the other samples shows."""
    x, *rest = inputs
    with torch.random.fork_rng():
        torch.manual_seed(0)
        before = D.train()(x, *rest)[0]
    x = x.clone()
    x[1:] = torch.randn(x[1:].shape, generator=torch.Generator().manual_seed(1))
    with torch.random.fork_rng():
        torch.manual_seed(0)
        after = D(x, *rest)[0]
    return not torch.allclose(before, after)


# ---- the workers' side -------------------------------------------------------------------------------------------

class PrivacyBudget:
    """Each worker's copy of the accountant (they agree: the same history); rank 0's ε is the one reported."""

    def __init__(self, plan: PrivacyPlan):
        from opacus.accountants import RDPAccountant

        self.plan = plan
        self.accountant = RDPAccountant()

    @property
    def steps(self) -> int:
        return sum(entry[2] for entry in self.accountant.history)

    def step(self) -> None:
        self.accountant.step(noise_multiplier=self.plan.noise_multiplier, sample_rate=self.plan.sample_rate)

    def epsilon(self) -> float:
        """ε spent so far: the preprocessing's plus the networks' (Opacus' RDP accountant at the networks' δ)."""
        networks = float(self.accountant.get_epsilon(self.plan.network_delta)) if self.accountant.history else 0.0
        return self.plan.preprocessing_epsilon + networks

    def last_step(self, limit: int) -> int:
        """The step to stop at: --steps, or earlier, where one more step would spend more than E."""
        p = self.plan
        return last_step_within(self.accountant.history, p.noise_multiplier, p.sample_rate, p.network_delta, p.network_epsilon, limit)

    def enforce(self, opts) -> None:
        """The budget is enforced: opts.steps becomes the last step whose ε is within E, whatever --steps said, so
        the last snapshot and checkpoint are at the stop and nothing beyond the budget is ever published."""
        stop_at = self.last_step(opts.steps)
        if stop_at < opts.steps:
            log.warning("privacy budget: stopping at step %d of %d; one more step would spend more than ε = %g", stop_at, opts.steps, self.plan.epsilon)
        opts.steps = stop_at

    def state(self) -> dict[str, Any]:
        """The resume state's "privacy": the accountant's history, JSON (no pickle)."""
        return {"accountant": ACCOUNTANT, "history": [list(entry) for entry in self.accountant.history], "epsilon": self.epsilon(), "delta": self.plan.delta}

    def load_state(self, state: dict[str, Any]) -> None:
        if state.get("accountant", ACCOUNTANT) != ACCOUNTANT:
            raise ValueError(f"the checkpoint's privacy accountant is {state['accountant']!r}, not {ACCOUNTANT!r}")
        self.accountant.history = [tuple(entry) for entry in state.get("history", [])]

    def record(self) -> dict[str, float]:
        """What a snapshot's manifest carries, so a consumer can check the guarantee of what it receives."""
        record = {"dp_epsilon": self.epsilon(), "dp_delta": self.plan.delta, "dp_epsilon_budget": self.plan.epsilon}
        if self.plan.preprocessing_epsilon:  # a table's transformer fitted privately: dp_epsilon includes it
            record["dp_transformer_epsilon"] = self.plan.preprocessing_epsilon
        return record


def make_private(D: torch.nn.Module, d_opt: torch.optim.Optimizer, plan: PrivacyPlan, per_worker: int, world: int, seed: int, device: torch.device):
    """D wrapped for per-sample gradients (and DPDDP's initial broadcast), and the DP optimizer over d_opt.

    The returned module replaces DDP(D); d_opt stays the optimizer the checkpoint saves.
    """
    from opacus import GradSampleModule
    from opacus.distributed import DifferentiallyPrivateDistributedDataParallel as DPDDP
    from opacus.optimizers import DistributedDPOptimizer, DPOptimizer

    for module in D.modules():  # Opacus' backward hooks cannot see through in-place activations
        if hasattr(module, "inplace"):
            module.inplace = False
    wrapped = GradSampleModule(DPDDP(D) if world > 1 else D, loss_reduction="mean")
    noise = torch.Generator(device=device).manual_seed(seed * 7919 + 17)
    optimizer_class = DistributedDPOptimizer if world > 1 else DPOptimizer
    dp_opt = optimizer_class(d_opt, noise_multiplier=plan.noise_multiplier, max_grad_norm=plan.max_grad_norm,
                             expected_batch_size=per_worker, loss_reduction="mean", generator=noise)
    return wrapped, dp_opt


class PoissonBatches:
    """This worker's share of each step's Poisson sample: every record joins with probability q, independently.

    The records are split over the workers once (a seeded permutation); a step's draw depends on (seed, step, rank)
    only, so a resumed run draws what it would have drawn.
    """

    def __init__(self, records: torch.Tensor, labels: torch.Tensor | None, sample_rate: float, rank: int, world: int, seed: int, device: torch.device):
        order = torch.randperm(len(records), generator=torch.Generator().manual_seed(seed))[rank::world]
        self.records = records[order].to(device)
        self.labels = labels[order].to(device) if labels is not None else None
        self.sample_rate, self.seed, self.rank, self.device = sample_rate, seed, rank, device

    @classmethod
    def of_images(cls, dataset_ref, conditional: bool, sample_rate: float, rank: int, world: int, seed: int, device: torch.device) -> "PoissonBatches":
        import ray

        images_u8, labels_np = ray.get(dataset_ref)
        images = from_uint8(images_u8)
        return cls(images, torch.from_numpy(labels_np.copy()) if conditional else None, sample_rate, rank, world, seed, device)

    def at(self, step: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        gen = torch.Generator().manual_seed((self.seed * 1_000_003 + step) * 1009 + self.rank)
        chosen = (torch.rand(len(self.records), generator=gen) < self.sample_rate).nonzero().squeeze(1).to(self.device)
        return self.records[chosen], (self.labels[chosen] if self.labels is not None else None)


@contextlib.contextmanager
def per_sample_hooks_off(wrapped):
    """G's backward passes through D; D's per-sample hooks must not fire there (nothing was captured for them)."""
    wrapped.disable_hooks()
    try:
        yield
    finally:
        wrapped.enable_hooks()


def private_d_update(dp_opt, D: torch.nn.Module, loss: torch.Tensor, world: int):
    """Backward of the per-row mean loss, then clip, noise, (all-reduce), step. Returns the noised gradient norm or None."""
    dp_opt.zero_grad(set_to_none=True)
    loss.backward()
    if not dp_opt.pre_step():
        return None
    if world > 1:
        dp_opt.reduce_gradients()
    norm = finite_grad_norm(D)  # of the noised, all-reduced gradient: the same on every rank
    if norm is not None:
        dp_opt.original_optimizer.step()
    return norm
