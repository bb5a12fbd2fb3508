"""StyleGAN2 generator (Karras et al., CVPR 2020, config F: skip generator), written for iagan.

One network for both published PyTorch layouts (their loaders are in `iagan.generators.stylegan2_checkpoints`):
parameter names follow NVlabs' stylegan2-ada-pytorch (`mapping.fc{i}`, `synthesis.b{res}.conv0|conv1|torgb`).

- Mapping: z -> normalise to unit mean square -> 8 equalised fully connected layers (lr multiplier 0.01,
  LeakyReLU(0.2) x sqrt(2)) -> w, broadcast to one w per layer (`num_ws`); `w_avg` is the training-time mean of w.
- Synthesis: a learned 4x4 constant; per resolution two modulated 3x3 convolutions (the first upsamples by 2: a
  stride-2 transposed convolution followed by the [1,3,3,1] blur), each followed by constant noise x a learned
  strength, bias, LeakyReLU(0.2) x sqrt(2); a modulated 1x1 toRGB (no demodulation) whose output is added to the
  previous resolution's RGB upsampled with the same blur ("skip" architecture).
- Modulated convolution (StyleGAN2 eq. 1-3): w'_ijk = s_i w_ijk, demodulated by 1/sqrt(sum_ik w'_ijk^2 + 1e-8).
  rosinality multiplies the stored weight by 1/sqrt(fan_in) before demodulating, NVlabs does not; `prescale`
  keeps each layout's exact forward (they differ only in where the 1e-8 lands).

The latent the pipeline optimises is chosen by `latent_space`: `z` (through the mapping network), `w` (one w for
every layer) or `w_plus` (one w per layer, num_ws x w_dim). Noise inputs are the checkpoint's constant buffers
(NVlabs' noise_mode="const"), so G is deterministic; `use_noise("optimised", weight)` appends them to the latent
instead (one map per convolution, starting at those constants), fitted with it under the noise regulariser of
NVlabs' projector (Karras et al. 2020, appendix D: `noise_regularisation`, `normalise_noise_`). Everything runs in
fp32 (NVlabs' force_fp32 path).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from iagan.errors import UserError
from iagan.generators import NOISE_MODES
from iagan.generators.base import Generator

LRELU_GAIN = math.sqrt(2)
BLUR = (1.0, 3.0, 3.0, 1.0)


def lrelu(x: torch.Tensor) -> torch.Tensor:
    """LeakyReLU(0.2) scaled by sqrt(2) to keep the signal's second moment (StyleGAN's `def_gain`)."""
    return F.leaky_relu(x, 0.2) * LRELU_GAIN


def blur_kernel() -> torch.Tensor:
    """The separable [1,3,3,1] low-pass filter, normalised to sum 1 (NVlabs `setup_filter`)."""
    k = torch.tensor(BLUR)
    k = torch.outer(k, k)
    return k / k.sum()


def noise_regularisation(noise: torch.Tensor) -> torch.Tensor:
    """Per image (N,): the squared autocorrelation of noise maps (N, 1, r, r) at shifts of one pixel across and down,
    summed over the map and its 2x2 average-pooled versions down to 8x8 (NVlabs' projector `reg_loss`)."""
    total = noise.new_zeros(noise.shape[0])
    while True:
        total = total + (noise * noise.roll(1, dims=3)).mean(dim=(1, 2, 3)).square()
        total = total + (noise * noise.roll(1, dims=2)).mean(dim=(1, 2, 3)).square()
        if noise.shape[-1] <= 8:
            return total
        noise = F.avg_pool2d(noise, kernel_size=2)


def normalise_noise_(noise: torch.Tensor) -> None:
    """Noise maps flattened (N, r*r), in place: zero mean and unit mean square per image (the projector's step)."""
    noise.sub_(noise.mean(dim=1, keepdim=True))
    noise.mul_(noise.square().mean(dim=1, keepdim=True).rsqrt())


def upfirdn2d(x: torch.Tensor, kernel: torch.Tensor, up: int, pad: tuple[int, int]) -> torch.Tensor:
    """Upsample by inserting zeros, pad (before, after) on both axes, filter each channel with `kernel` (gain
    included): the reference form of NVlabs/rosinality `upfirdn2d` (the kernel is symmetric, so flipping does not
    matter)."""
    n, c, h, w = x.shape
    if up > 1:
        x = x.reshape(n, c, h, 1, w, 1)
        x = F.pad(x, (0, up - 1, 0, 0, 0, up - 1))
        x = x.reshape(n, c, h * up, w * up)
    x = F.pad(x, (pad[0], pad[1], pad[0], pad[1]))
    weight = kernel.to(x.dtype).expand(c, 1, *kernel.shape)
    return F.conv2d(x, weight, groups=c)


class EqualLinear(nn.Module):
    """Fully connected layer with equalised learning rate: y = x (W * lr/sqrt(in))^T + b * lr."""

    def __init__(self, d_in: int, d_out: int, lr_multiplier: float = 1.0, bias_init: float = 0.0,
                 activation: bool = False) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(d_out, d_in) / lr_multiplier)
        self.bias = nn.Parameter(torch.full((d_out,), float(bias_init)))
        self.weight_gain = lr_multiplier / math.sqrt(d_in)
        self.bias_gain = lr_multiplier
        self.activation = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.linear(x, self.weight * self.weight_gain, self.bias * self.bias_gain)
        return lrelu(x) if self.activation else x


def modulated_conv2d(x: torch.Tensor, weight: torch.Tensor, styles: torch.Tensor, *, demodulate: bool,
                     prescale: float = 1.0, blur: torch.Tensor | None = None) -> torch.Tensor:
    """Per-image weights s_i * w (scaled by `prescale`, demodulated when asked) applied as one grouped
    convolution; with a `blur` kernel (the upsampling layers), a stride-2 transposed convolution then that blur
    (pad 1, 1), as in both published implementations."""
    n, c_in, h, w = x.shape
    c_out, _, k, _ = weight.shape
    wt = prescale * weight.unsqueeze(0) * styles.view(n, 1, c_in, 1, 1)  # (N, out, in, k, k)
    if demodulate:
        wt = wt * torch.rsqrt(wt.square().sum(dim=(2, 3, 4)) + 1e-8).view(n, c_out, 1, 1, 1)
    x = x.reshape(1, n * c_in, h, w)
    if blur is not None:
        wt = wt.transpose(1, 2).reshape(n * c_in, c_out, k, k)
        x = F.conv_transpose2d(x, wt, stride=2, groups=n)
        x = upfirdn2d(x, blur, up=1, pad=(1, 1))
    else:
        x = F.conv2d(x, wt.reshape(n * c_out, c_in, k, k), padding=k // 2, groups=n)
    return x.reshape(n, c_out, *x.shape[2:])


class SynthesisLayer(nn.Module):
    """Modulated 3x3 convolution (optionally upsampling) + constant noise x strength + bias + LeakyReLU."""

    def __init__(self, c_in: int, c_out: int, w_dim: int, resolution: int, up: bool, prescale: bool,
                 conv_clamp: float | None) -> None:
        super().__init__()
        self.affine = EqualLinear(w_dim, c_in, bias_init=1.0)
        self.weight = nn.Parameter(torch.randn(c_out, c_in, 3, 3))
        self.noise_strength = nn.Parameter(torch.zeros(()))
        self.bias = nn.Parameter(torch.zeros(c_out))
        self.register_buffer("noise_const", torch.randn(resolution, resolution))
        # the upsampling blur x 4 (the zeros inserted by the stride-2 transposed convolution), built once
        self.register_buffer("blur", blur_kernel() * 4 if up else None, persistent=False)
        self.prescale = 1 / math.sqrt(c_in * 9) if prescale else 1.0
        self.conv_clamp = conv_clamp

    def forward(self, x: torch.Tensor, w: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
        """`noise`: per-image maps (N, 1, r, r) in place of the constant one."""
        x = modulated_conv2d(x, self.weight, self.affine(w), demodulate=True, prescale=self.prescale, blur=self.blur)
        x = x + self.noise_strength * (self.noise_const if noise is None else noise)
        x = lrelu(x + self.bias.view(1, -1, 1, 1))
        return x.clamp(-self.conv_clamp, self.conv_clamp) if self.conv_clamp is not None else x


class ToRGB(nn.Module):
    """Modulated 1x1 convolution to RGB without demodulation, styles scaled by 1/sqrt(fan_in), plus bias."""

    def __init__(self, c_in: int, w_dim: int, conv_clamp: float | None) -> None:
        super().__init__()
        self.affine = EqualLinear(w_dim, c_in, bias_init=1.0)
        self.weight = nn.Parameter(torch.randn(3, c_in, 1, 1))
        self.bias = nn.Parameter(torch.zeros(3))
        self.weight_gain = 1 / math.sqrt(c_in)
        self.conv_clamp = conv_clamp

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        x = modulated_conv2d(x, self.weight, self.affine(w) * self.weight_gain, demodulate=False)
        x = x + self.bias.view(1, -1, 1, 1)
        return x.clamp(-self.conv_clamp, self.conv_clamp) if self.conv_clamp is not None else x


class SynthesisBlock(nn.Module):
    """One resolution: [const | upsampling conv0], conv1, toRGB added to the upsampled RGB of the block below."""

    def __init__(self, c_in: int, c_out: int, w_dim: int, resolution: int, prescale: bool,
                 conv_clamp: float | None) -> None:
        super().__init__()
        if c_in == 0:
            self.const = nn.Parameter(torch.randn(c_out, resolution, resolution))
        else:
            self.conv0 = SynthesisLayer(c_in, c_out, w_dim, resolution, True, prescale, conv_clamp)
        self.conv1 = SynthesisLayer(c_out, c_out, w_dim, resolution, False, prescale, conv_clamp)
        self.torgb = ToRGB(c_out, w_dim, conv_clamp)
        self.register_buffer("blur", blur_kernel() * 4, persistent=False)  # upsampling the RGB of the block below
        self.num_conv = 1 if c_in == 0 else 2

    def forward(self, x: torch.Tensor | None, img: torch.Tensor | None, ws: torch.Tensor, noise=(None, None)):
        """`noise`: this block's per-image noise maps, one per convolution (None: the constants)."""
        if x is None:
            x = self.const.unsqueeze(0).expand(ws.shape[0], -1, -1, -1)
        else:
            x = self.conv0(x, ws[:, 0], noise[0])
        x = self.conv1(x, ws[:, self.num_conv - 1], noise[self.num_conv - 1])
        rgb = self.torgb(x, ws[:, self.num_conv])
        if img is not None:
            rgb = rgb + upfirdn2d(img, self.blur, up=2, pad=(2, 1))
        return x, rgb


class Mapping(nn.Module):
    """z -> w: unit-mean-square normalisation, then `layers` equalised FC layers with lr multiplier 0.01."""

    def __init__(self, z_dim: int, w_dim: int, layers: int, lr_multiplier: float = 0.01) -> None:
        super().__init__()
        for i in range(layers):
            self.add_module(f"fc{i}", EqualLinear(z_dim if i == 0 else w_dim, w_dim, lr_multiplier, activation=True))
        self.layers = layers
        self.register_buffer("w_avg", torch.zeros(w_dim))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = z * torch.rsqrt(z.square().mean(dim=1, keepdim=True) + 1e-8)
        for i in range(self.layers):
            x = getattr(self, f"fc{i}")(x)
        return x


class Synthesis(nn.Module):
    """The blocks b4 ... b{resolution}; `num_ws` = one w per convolution plus the last toRGB's."""

    def __init__(self, w_dim: int, channels: dict[int, int], prescale: bool, conv_clamp: float | None) -> None:
        super().__init__()
        self.resolutions = sorted(channels)
        for res in self.resolutions:
            c_in = channels[res // 2] if res > 4 else 0
            self.add_module(f"b{res}", SynthesisBlock(c_in, channels[res], w_dim, res, prescale, conv_clamp))
        self.num_ws = 2 * len(self.resolutions)

    def noise_layers(self) -> list[SynthesisLayer]:
        """The convolutions with a noise input, in the order of the forward pass (b4.conv1, b8.conv0, ...)."""
        return [m for m in self.modules() if isinstance(m, SynthesisLayer)]

    def forward(self, ws: torch.Tensor, noise: list[torch.Tensor] | None = None) -> torch.Tensor:
        """`noise`: per-image maps for every `noise_layers` entry (None: the constants)."""
        x = img = None
        first = 0
        for res in self.resolutions:
            block = getattr(self, f"b{res}")
            maps = (None, None) if noise is None else noise[first:first + block.num_conv]
            x, img = block(x, img, ws[:, first:first + block.num_conv + 1], maps)
            first += block.num_conv
        return img


class StyleGAN2(Generator):
    """latent (N, *latent_shape) -> image (N, 3, R, R) in about [-1, 1]; see the module docstring."""

    def __init__(self, layout: str, channels: dict[int, int], z_dim: int = 512, w_dim: int = 512,
                 mapping_layers: int = 8, conv_clamp: float | None = None, latent_space: str = "w_plus") -> None:
        super().__init__()
        self.layout = layout
        self.resolution = max(channels)
        self.z_dim, self.w_dim = z_dim, w_dim
        self.mapping = Mapping(z_dim, w_dim, mapping_layers)
        self.synthesis = Synthesis(w_dim, channels, layout == "rosinality", conv_clamp)
        self.num_ws = self.synthesis.num_ws
        self.noise_resolutions = [layer.noise_const.shape[-1] for layer in self.synthesis.noise_layers()]
        self.freeze_for_ia(name for name, _ in self.named_parameters() if name.startswith("mapping."))  # never adapted
        self.use_latent(latent_space)
        self.use_noise("fixed", 0.0)

    def use_latent(self, space: str) -> "StyleGAN2":
        """Choose the latent CSGM and IA optimise: `z`, `w` or `w_plus`."""
        super().use_latent(space)
        self.latent_space = space
        return self

    def use_noise(self, mode: str, weight: float) -> "StyleGAN2":
        """`fixed`: the constant noise maps; `optimised`: the maps follow the latent, flattened after it, and
        `weight` x `noise_regularisation` joins the objective (NVlabs' projector uses 1e5 with an LPIPS loss)."""
        if mode not in NOISE_MODES:
            raise UserError(f"generator.noise must be one of {', '.join(NOISE_MODES)}, got {mode!r}")
        self.noise_optimised, self.noise_weight = mode == "optimised", float(weight)
        return self

    def latent_spaces(self) -> dict[str, tuple[int, ...]]:
        return {"z": (self.z_dim,), "w": (self.w_dim,), "w_plus": (self.num_ws, self.w_dim)}

    def noise_sizes(self) -> list[int]:
        return [r * r for r in self.noise_resolutions]

    @property
    def latent_shape(self) -> tuple[int, ...]:
        shape = self.latent_spaces()[self.latent_space]
        return (math.prod(shape) + sum(self.noise_sizes()),) if self.noise_optimised else shape

    @property
    def prior_shape(self) -> tuple[int, ...]:
        return (self.z_dim,)

    def start_latents(self, draws: torch.Tensor) -> torch.Tensor:
        """CSGM starts (N, restarts, z_dim) standard-normal draws -> latents: z itself; in w/w+, the first
        restart starts at the mean latent `w_avg` (the checkpoint's), the others at mapped draws."""
        if self.latent_space == "z":
            return self._with_noise(draws)
        n, restarts = draws.shape[:2]
        with torch.no_grad():
            w = self.mapping(draws.flatten(0, 1).to(self.mapping.w_avg.device)).view(n, restarts, self.w_dim)
            w[:, 0] = self.mapping.w_avg
        return self._in_latent_space(w)

    def sample_latents(self, draws: torch.Tensor) -> torch.Tensor:
        """Latents of generator samples for standard-normal draws (N, z_dim): z mapped to w (w/w+)."""
        if self.latent_space == "z":
            return self._with_noise(draws)
        with torch.no_grad():
            w = self.mapping(draws)
        return self._in_latent_space(w)

    def _in_latent_space(self, w: torch.Tensor) -> torch.Tensor:
        """w (..., w_dim) as a latent of the current space: itself in w, one copy per layer in w_plus."""
        if self.latent_space != "w_plus":
            return self._with_noise(w)
        return self._with_noise(w.unsqueeze(-2).expand(*w.shape[:-1], self.num_ws, self.w_dim).clone())

    def _with_noise(self, latent: torch.Tensor) -> torch.Tensor:
        """Latents (..., *space shape) with the constant noise maps appended when the noise is optimised."""
        if not self.noise_optimised:
            return latent
        flat = latent.flatten(-len(self.latent_spaces()[self.latent_space]))
        noise = torch.cat([layer.noise_const.flatten() for layer in self.synthesis.noise_layers()]).to(flat)
        return torch.cat([flat, noise.expand(*flat.shape[:-1], -1)], dim=-1)

    def _split(self, latent: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor] | None]:
        """A batch of latents (N, *latent_shape) -> the space's latents and the noise maps (N, 1, r, r) per layer."""
        if not self.noise_optimised:
            return latent, None
        shape = self.latent_spaces()[self.latent_space]
        parts = latent.split([math.prod(shape), *self.noise_sizes()], dim=1)
        return parts[0].reshape(-1, *shape), [p.reshape(-1, 1, r, r) for p, r in zip(parts[1:], self.noise_resolutions)]

    def latent_penalty(self, latent: torch.Tensor) -> torch.Tensor | None:
        """noise_weight x the noise maps' `noise_regularisation`, per image; None when the noise is fixed."""
        if not self.noise_optimised or self.noise_weight == 0:
            return None
        return self.noise_weight * sum(noise_regularisation(maps) for maps in self._split(latent)[1])

    def project_latent_(self, latent: torch.Tensor) -> None:
        """Optimised noise maps back to zero mean and unit mean square after each step (the projector does this)."""
        if not self.noise_optimised:
            return
        with torch.no_grad():
            at = math.prod(self.latent_spaces()[self.latent_space])
            for size in self.noise_sizes():
                normalise_noise_(latent[:, at:at + size])  # a view: latents are (N, latent_numel) here
                at += size

    def describe(self) -> str:
        if not self.noise_optimised:
            return super().describe()
        return f"{super().describe()} + {sum(self.noise_sizes())} optimised noise values"

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        latent, noise = self._split(latent)
        if self.latent_space == "z":
            latent = self.mapping(latent)
        if latent.dim() == 2:
            latent = latent.unsqueeze(1).expand(-1, self.num_ws, -1)
        return self.synthesis(latent, noise)
