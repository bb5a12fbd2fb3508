"""Evaluation protocols (`protocol` in params.yaml): how noise is added and how PSNR and LPIPS are computed.

standard (default): zero-mean Gaussian noise with std noise/255 on [0, 1] images; PSNR with peak 1 on outputs
    clipped to [0, 1]; LPIPS AlexNet v0.1 on [-1, 1] inputs; restarts and iterations as in params.yaml.
paper_code: what the replication's code actually did (../shared/reference/seed-replication-code.md §2, §4, §5),
    so that its numbers can be compared like for like:
    - noise uniform on [0, noise/255), added to y (positive mean);
    - PSNR as torchmetrics 0.10 `PeakSignalNoiseRatio()` without data_range: its min/max target states start at 0,
      so the range is max(target, 0) - min(target, 0) = max(target) for images in [0, 1]; outputs unclipped;
    - LPIPS fed the [0, 1] images as they are (no rescaling to [-1, 1], no clipping);
    - a single CSGM start, and 500 IA steps for the FFT tasks;
    - the paper's IA: one absolute step lr_g for every weight, no stopping (ia.lr_g_scaling and ia.stop_tau are
      ignored).
The replication's random per-call blur sigma is a bug; it is available only as the explicit task setting
`sigma: random` (see iagan/operators/deblur_gaussian.py), under either protocol.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

PROTOCOLS = ("standard", "paper_code")


@dataclass(frozen=True)
class Protocol:
    name: str = "standard"

    @property
    def paper_code(self) -> bool:
        return self.name == "paper_code"

    def noise(self, shape, level: float, seed: int) -> torch.Tensor:
        """The noise e of y = A x + e for one image (float64), `level` in /255 units."""
        rng = torch.Generator().manual_seed(seed)
        if self.paper_code:
            return (level / 255.0) * torch.rand(shape, generator=rng, dtype=torch.float64)
        return (level / 255.0) * torch.randn(shape, generator=rng, dtype=torch.float64)

    def observe(self, op, x: torch.Tensor, level: float, seeds: list[int]) -> torch.Tensor:
        """y = A x + e on the [0, 1] scale (float64), one seeded noise draw per image; `level` in /255 units."""
        clean = op.A(x.to(torch.float64))
        if level == 0:
            return clean
        return clean + torch.stack([self.noise(clean.shape[1:], level, s) for s in seeds])

    def restarts(self, configured: int) -> int:
        return 1 if self.paper_code else configured

    def ia_iters(self, configured: int, operator: str) -> int:
        return 500 if self.paper_code and operator == "cs_fft" else configured

    def lr_g_scaling(self, configured: str) -> str:
        return "none" if self.paper_code else configured

    def stop_tau(self, configured: float | None) -> float | None:
        return None if self.paper_code else configured

    def scores(self, x: torch.Tensor, truth: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-image PSNR and LPIPS of reconstructions x against the ground truth, as this protocol computes them."""
        from iagan.metrics import lpips_distance, psnr, psnr_torchmetrics_010

        if self.paper_code:
            return psnr_torchmetrics_010(x, truth), lpips_distance(x, truth, unscaled=True)
        return psnr(x, truth), lpips_distance(x, truth)

    def summary(self) -> str:
        """One line for the report, above every table."""
        if self.paper_code:
            return ("Protocol `paper_code` (the replication's code): uniform noise U[0, noise/255) added to y; PSNR as "
                    "torchmetrics 0.10 with range max(original) on unclipped outputs; LPIPS AlexNet v0.1 fed [0, 1] "
                    "images unscaled; one CSGM start; 500 IA steps for FFT; IA with the absolute step lr_g and no "
                    "stopping.")
        return ("Protocol `standard`: zero-mean Gaussian noise, std noise/255 on [0, 1] images; PSNR with peak 1 on "
                "outputs clipped to [0, 1]; LPIPS AlexNet v0.1 on [-1, 1] inputs.")
