"""A compact StyleGAN2 (Karras et al. 2020) for square images of 16–128 px, optionally class-conditional.

Generator: a mapping network (z normalised to unit second moment, a class embedding concatenated when
conditional, fully connected layers with equalised learning rate and a learning-rate multiplier) gives w,
whose moving average `w_avg` is a buffer; a synthesis network from a learned 4×4 constant applies
modulated 3×3 convolutions with weight demodulation, each computed as ONE grouped convolution over the
batch, adds per-pixel noise with learned strength, and sums skip-connection ToRGB outputs.
Discriminator: residual blocks, minibatch standard deviation, projection of the class when conditional.

Sampling is the family's: truncation pulls w towards `w_avg` by ψ (optionally only the first
`truncation_cutoff` layers), and served images use the generator's fixed noise buffers, so a seed gives
the same image in any batch.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from ganworks.errors import ModelConfigError
from ganworks.models.registry import DATA_PARAMS, GaussianLatents, Param, register

_GAIN = math.sqrt(2.0)  # keeps leaky-ReLU activations at unit scale


def _lrelu(x: torch.Tensor) -> torch.Tensor:
    return F.leaky_relu(x, 0.2) * _GAIN


class EqualLinear(nn.Module):
    """A linear layer with equalised learning rate: weights stored at N(0, 1/lr_mul²), scaled at run time."""

    def __init__(self, in_features: int, out_features: int, lr_mul: float = 1.0, bias_init: float = 0.0, activate: bool = False):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_features, in_features) / lr_mul)
        self.bias = nn.Parameter(torch.full((out_features,), float(bias_init) / lr_mul))
        self.scale, self.lr_mul, self.activate = lr_mul / math.sqrt(in_features), lr_mul, activate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.linear(x, self.weight * self.scale, self.bias * self.lr_mul)
        return _lrelu(out) if self.activate else out


class EqualConv2d(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, kernel: int, bias: bool = True, activate: bool = True):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel, kernel))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.scale, self.padding, self.activate = 1 / math.sqrt(in_channels * kernel * kernel), kernel // 2, activate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.conv2d(x, self.weight * self.scale, self.bias, padding=self.padding)
        return _lrelu(out) if self.activate else out


MODCONV_FORMS = ("grouped", "scaled")


def modulated_conv2d(x: torch.Tensor, weight: torch.Tensor, styles: torch.Tensor, demodulate: bool = True, form: str | None = None) -> torch.Tensor:
    """x (N, I, H, W) convolved with weight (O, I, k, k) scaled per sample by styles (N, I), and demodulated so each
    output channel has unit expected scale — for the whole batch at once, in one of two equal forms:

    - "grouped": the per-sample weights as one grouped convolution (groups = N); fastest on GPUs.
    - "scaled": the styles applied to x's channels, one ordinary convolution with the shared weight, then the
      per-sample demodulation factors applied to its output channels. The same numbers (up to float rounding), and
      on CPUs several times faster where the channels are wide (oneDNN's grouped convolution is slow there:
      measured 3× slower than even a per-sample loop at 256 channels).

    form None picks by device: grouped on CUDA, scaled elsewhere.
    """
    form = form or ("grouped" if x.device.type == "cuda" else "scaled")
    n, in_channels, height, width = x.shape
    out_channels, _, kh, kw = weight.shape
    if form == "scaled":
        out = F.conv2d(x * styles.reshape(n, in_channels, 1, 1).to(x.dtype), weight, padding=kh // 2)
        if demodulate:
            # Σ_i,k (w[o,i,k]·s[n,i])² = Σ_i (Σ_k w[o,i,k]²)·s[n,i]²: the filter norms without building N weight sets.
            norms = styles.square() @ weight.square().sum(dim=(2, 3)).t()  # (N, O)
            out = out * torch.rsqrt(norms + 1e-8).reshape(n, out_channels, 1, 1).to(out.dtype)
        return out
    if form != "grouped":
        raise ValueError(f"modulated conv form must be one of {MODCONV_FORMS}, got {form!r}")
    w = weight.unsqueeze(0) * styles.reshape(n, 1, in_channels, 1, 1)  # (N, O, I, k, k)
    if demodulate:
        w = w * torch.rsqrt(w.square().sum(dim=(2, 3, 4), keepdim=True) + 1e-8)
    out = F.conv2d(x.reshape(1, n * in_channels, height, width), w.reshape(n * out_channels, in_channels, kh, kw), padding=kh // 2, groups=n)
    return out.reshape(n, out_channels, *out.shape[2:])


class ModulatedConv(nn.Module):
    """A style-modulated convolution; w → per-input-channel scales through an affine layer (bias 1)."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int, w_dim: int, demodulate: bool = True):
        super().__init__()
        self.affine = EqualLinear(w_dim, in_channels, bias_init=1.0)
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel, kernel))
        self.scale, self.demodulate = 1 / math.sqrt(in_channels * kernel * kernel), demodulate

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return modulated_conv2d(x, self.weight * self.scale, self.affine(w), self.demodulate)


NOISE_MODES = ("random", "const", "none")


class SynthesisLayer(nn.Module):
    """Modulated 3×3 conv, per-pixel noise with learned strength, bias, leaky ReLU."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, resolution: int):
        super().__init__()
        self.conv = ModulatedConv(in_channels, out_channels, 3, w_dim)
        self.noise_strength = nn.Parameter(torch.zeros(()))
        self.register_buffer("noise_const", torch.randn(1, 1, resolution, resolution))
        self.bias = nn.Parameter(torch.zeros(out_channels))

    def forward(self, x: torch.Tensor, w: torch.Tensor, noise_mode: str) -> torch.Tensor:
        x = self.conv(x, w)
        if noise_mode == "random":
            x = x + torch.randn(x.shape[0], 1, *x.shape[2:], device=x.device, dtype=x.dtype) * self.noise_strength
        elif noise_mode == "const":
            x = x + self.noise_const.to(x.dtype) * self.noise_strength
        return _lrelu(x + self.bias.reshape(1, -1, 1, 1))


class ToRGB(nn.Module):
    def __init__(self, in_channels: int, channels: int, w_dim: int):
        super().__init__()
        self.conv = ModulatedConv(in_channels, channels, 1, w_dim, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return self.conv(x, w) + self.bias.reshape(1, -1, 1, 1)


def _upsample(x: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)


def _widths(image_size: int, channel_base: int, channel_max: int) -> dict[int, int]:
    return {res: min(channel_base // res, channel_max) for res in (2 ** k for k in range(2, int(math.log2(image_size)) + 1))}


class Mapping(nn.Module):
    def __init__(self, latent_dim: int, num_classes: int, w_dim: int, layers: int, lr_mul: float, num_ws: int, w_avg_beta: float = 0.995):
        super().__init__()
        self.embed = EqualLinear(num_classes, latent_dim) if num_classes else None
        self.num_classes, self.num_ws, self.w_avg_beta = num_classes, num_ws, w_avg_beta
        dims = [latent_dim * (2 if num_classes else 1)] + [w_dim] * layers
        self.layers = nn.Sequential(*[EqualLinear(a, b, lr_mul=lr_mul, activate=True) for a, b in zip(dims, dims[1:])])
        self.register_buffer("w_avg", torch.zeros(w_dim))

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None, track: bool = True) -> torch.Tensor:
        """w broadcast to every layer: (N, num_ws, w_dim). In training (and `track`), w_avg follows the batch's mean w."""
        x = _unit_second_moment(z)
        if self.embed is not None:
            if labels is None:
                raise ValueError("this generator is class-conditional: pass labels")
            y = self.embed(F.one_hot(labels, self.num_classes).to(z.dtype))
            x = torch.cat([x, _unit_second_moment(y)], dim=1)
        w = self.layers(x)
        if self.training and track:
            with torch.no_grad():
                self.w_avg.copy_(w.detach().float().mean(0).lerp(self.w_avg, self.w_avg_beta))
        return w.unsqueeze(1).expand(-1, self.num_ws, -1)


def _unit_second_moment(x: torch.Tensor) -> torch.Tensor:
    return x * torch.rsqrt(x.square().mean(dim=1, keepdim=True) + 1e-8)


class Generator(nn.Module):
    """G(z, labels) → images; training draws random noise and mixes styles, evaluation uses the fixed noise."""

    def __init__(self, p: dict[str, Any]):
        super().__init__()
        self.image_size, self.channels, self.latent_dim, self.num_classes = p["image_size"], p["channels"], p["latent_dim"], p["num_classes"]
        widths = _widths(p["image_size"], p["channel_base"], p["channel_max"])
        resolutions = sorted(widths)
        self.num_ws = 2 * len(resolutions)  # block at res r uses ws[2i-1] (up-conv), ws[2i] (conv), ws[2i+1] (ToRGB)
        self.style_mixing, self.truncation_cutoff = p["style_mixing"], p["truncation_cutoff"]
        self.mapping = Mapping(p["latent_dim"], p["num_classes"], p["w_dim"], p["mapping_layers"], p["mapping_lr_mul"], self.num_ws)
        self.const = nn.Parameter(torch.randn(widths[4], 4, 4))
        self.convs = nn.ModuleList([SynthesisLayer(widths[4], widths[4], p["w_dim"], 4)])
        self.to_rgbs = nn.ModuleList([ToRGB(widths[4], p["channels"], p["w_dim"])])
        for low, res in zip(resolutions, resolutions[1:]):
            self.convs.append(SynthesisLayer(widths[low], widths[res], p["w_dim"], res))
            self.convs.append(SynthesisLayer(widths[res], widths[res], p["w_dim"], res))
            self.to_rgbs.append(ToRGB(widths[res], p["channels"], p["w_dim"]))

    def synthesis(self, ws: torch.Tensor, noise_mode: str = "const") -> torch.Tensor:
        """ws (N, num_ws, w_dim) → images; noise_mode is one of NOISE_MODES."""
        if noise_mode not in NOISE_MODES:
            raise ValueError(f"noise_mode must be one of {NOISE_MODES}, got {noise_mode!r}")
        x = self.const.unsqueeze(0).expand(ws.shape[0], -1, -1, -1)
        x = self.convs[0](x, ws[:, 0], noise_mode)
        image = self.to_rgbs[0](x, ws[:, 1])
        for block, to_rgb in enumerate(self.to_rgbs[1:], start=1):
            x = self.convs[2 * block - 1](_upsample(x), ws[:, 2 * block - 1], noise_mode)
            x = self.convs[2 * block](x, ws[:, 2 * block], noise_mode)
            image = _upsample(image) + to_rgb(x, ws[:, 2 * block + 1])
        return image

    def mix_styles(self, ws: torch.Tensor, z: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        """Style-mixing regularisation: with probability style_mixing a sample takes a second z's w from a random layer on."""
        if not self.style_mixing:
            return ws
        n = ws.shape[0]
        cutoff = torch.randint(1, self.num_ws, (n, 1), device=ws.device)
        cutoff = torch.where(torch.rand(n, 1, device=ws.device) < self.style_mixing, cutoff, torch.full_like(cutoff, self.num_ws))
        other = self.mapping(torch.randn_like(z), labels, track=False)
        layer = torch.arange(self.num_ws, device=ws.device).unsqueeze(0)
        return torch.where((layer >= cutoff).unsqueeze(2), other, ws)

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None, return_ws: bool = False):
        ws = self.mapping(z, labels)
        if self.training:
            ws = self.mix_styles(ws, z, labels)
        if return_ws:  # path-length regularisation differentiates the images with respect to ws
            ws = ws.detach().requires_grad_(True) if not ws.requires_grad else ws
            return self.synthesis(ws, "random" if self.training else "const"), ws
        return self.synthesis(ws, "random" if self.training else "const")


class DBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv0 = EqualConv2d(in_channels, in_channels, 3)
        self.conv1 = EqualConv2d(in_channels, out_channels, 3)
        self.skip = EqualConv2d(in_channels, out_channels, 1, bias=False, activate=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skip = self.skip(F.avg_pool2d(x, 2))
        return (skip + F.avg_pool2d(self.conv1(self.conv0(x)), 2)) * math.sqrt(0.5)


def minibatch_stddev(x: torch.Tensor, group_size: int = 4) -> torch.Tensor:
    """Appends one channel: the standard deviation over groups of consecutive samples, averaged over features."""
    n, c, h, w = x.shape
    group = math.gcd(n, group_size)
    y = x.reshape(group, n // group, c, h, w).float()
    y = (y.var(dim=0, unbiased=False) + 1e-8).sqrt().mean(dim=(1, 2, 3))  # (n // group,)
    y = y.reshape(-1, 1, 1, 1).repeat(group, 1, h, w).to(x.dtype)
    return torch.cat([x, y], dim=1)


class Discriminator(nn.Module):
    def __init__(self, p: dict[str, Any]):
        super().__init__()
        widths = _widths(p["image_size"], p["channel_base"], p["channel_max"])
        resolutions = sorted(widths, reverse=True)
        self.from_rgb = EqualConv2d(p["channels"], widths[resolutions[0]], 1)
        self.blocks = nn.Sequential(*[DBlock(widths[res], widths[res // 2]) for res in resolutions[:-1]])
        c = widths[4]
        self.conv = EqualConv2d(c + 1, c, 3)
        self.fc = EqualLinear(c * 16, c, activate=True)
        self.out = EqualLinear(c, 1)
        self.embed = nn.Embedding(p["num_classes"], c) if p["num_classes"] else None
        self.c = c

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """What the output and the class projection both read, (n, c)."""
        return self.fc(self.conv(minibatch_stddev(self.blocks(self.from_rgb(x)))).flatten(1))

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        h = self.features(x)
        out = self.out(h).squeeze(1)
        if self.embed is not None:
            if labels is None:
                raise ValueError("this discriminator is class-conditional: pass labels")
            out = out + (self.embed(labels) * h).sum(dim=1) / math.sqrt(self.c)
        return out

    def class_scores(self, x: torch.Tensor) -> torch.Tensor:
        """forward(x, k) for every class k at once, (n, classes): the features once, the projection for all classes."""
        h = self.features(x)
        return self.out(h) + h @ self.embed.weight.t() / math.sqrt(self.c)


class StyleGAN2(GaussianLatents):
    """Latents are standard normal z; truncation pulls w towards the tracked mean w_avg by ψ."""

    name = "stylegan2"
    params = DATA_PARAMS + (
        Param("latent_dim", int, 128, "size of z (normalised to unit second moment)", min=1),
        Param("w_dim", int, 128, "size of w, the mapping network's output", min=1),
        Param("mapping_layers", int, 4, "fully connected layers of the mapping network", min=1, max=8),
        Param("mapping_lr_mul", float, 0.01, "learning-rate multiplier of the mapping network", min=1e-4, max=1.0),
        Param("channel_base", int, 4096, "channels at resolution r are channel_base / r, capped by channel_max", min=16),
        Param("channel_max", int, 256, "cap on the channels of any layer", min=1),
        Param("style_mixing", float, 0.9, "probability that a training sample mixes the styles of two latents", min=0.0, max=1.0),
        Param("truncation_cutoff", int, 0, "truncate only the first N layers' w; 0 = all", min=0),
    )

    def check(self, p: dict[str, Any]) -> None:
        if p["channel_base"] < p["image_size"]:
            raise ModelConfigError(f"stylegan2 channel_base {p['channel_base']} must be at least image_size {p['image_size']} (channels at r = channel_base / r)")
        num_ws = 2 * (int(math.log2(p["image_size"])) - 1)
        if p["truncation_cutoff"] > num_ws:
            raise ModelConfigError(f"stylegan2 truncation_cutoff {p['truncation_cutoff']} exceeds the {num_ws} style layers at image_size {p['image_size']}")

    def build_generator(self, p: dict[str, Any]) -> nn.Module:
        return Generator(p)

    def build_discriminator(self, p: dict[str, Any]) -> nn.Module:
        return Discriminator(p)

    def discriminator_blocks(self, discriminator: nn.Module) -> list[nn.Module]:
        return [discriminator.from_rgb, *discriminator.blocks]

    def new_class_weights(self, role: str, key: str, source: torch.Tensor, axis: int, mix: torch.Tensor) -> torch.Tensor:
        start = super().new_class_weights(role, key, source, axis, mix)
        if key == "mapping.embed.weight":  # EqualLinear scales by 1/√(class count) at run time: undo the change of count
            start = start * math.sqrt(mix.shape[0] / source.shape[axis])
        return start

    def truncate(self, generator: nn.Module, ws: torch.Tensor, truncation: torch.Tensor, cutoff: int = 0) -> torch.Tensor:
        """ws pulled towards w_avg by each sample's ψ (1 = unchanged, 0 = w_avg), in the first `cutoff` layers (0 = all)."""
        psi = truncation.to(ws.dtype).reshape(-1, 1, 1)
        pulled = generator.mapping.w_avg.to(ws.dtype).lerp(ws, psi)
        if not cutoff:
            return pulled
        return torch.cat([pulled[:, :cutoff], ws[:, cutoff:]], dim=1)

    def generate(self, generator: nn.Module, latents: torch.Tensor, labels: torch.Tensor | None, truncation: torch.Tensor,
                 noise_mode: str = "const") -> torch.Tensor:
        # Const noise (buffers in the snapshot) by default: a sample depends on its seed alone, never on its batch.
        ws = self.truncate(generator, generator.mapping(latents, labels, track=False), truncation, generator.truncation_cutoff)
        return generator.synthesis(ws, noise_mode).clamp(-1, 1)

    def forward_with_latent(self, generator: nn.Module, latents: torch.Tensor, labels: torch.Tensor | None):
        return generator(latents, labels, return_ws=True)


STYLEGAN2_FAMILY = register(StyleGAN2())
