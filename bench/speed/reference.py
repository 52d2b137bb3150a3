"""The reference recipe: the PyTorch DCGAN example's networks, init, optimizers and loop body.

Re-implemented once, here, for two users: row a of the throughput benchmark times it, and
`tests/training/test_step.py` checks that facegan's `train_step` computes the same update.
"""

from __future__ import annotations

import math
from itertools import pairwise

import torch
from torch import nn

from facegan.config.schema import ModelConfig


class RefGenerator(nn.Module):
    """The example's G: ConvT(nz→8·ngf, 4×4) then stride-2 ConvT-BN-ReLU blocks halving the width, Tanh.

    At 64 px the widths are 8, 4, 2, 1 × ngf — the PyTorch example's layer list; 32 px drops one block.
    """

    def __init__(self, nz: int, ngf: int, nc: int, size: int) -> None:
        super().__init__()
        mults = [2**i for i in reversed(range(int(math.log2(size)) - 2))]  # 64 px: [8, 4, 2, 1]
        layers: list[nn.Module] = [
            nn.ConvTranspose2d(nz, ngf * mults[0], 4, 1, 0, bias=False),
            nn.BatchNorm2d(ngf * mults[0]),
            nn.ReLU(True),
        ]
        for m_in, m_out in pairwise(mults):
            layers += [
                nn.ConvTranspose2d(ngf * m_in, ngf * m_out, 4, 2, 1, bias=False),
                nn.BatchNorm2d(ngf * m_out),
                nn.ReLU(True),
            ]
        layers += [nn.ConvTranspose2d(ngf * mults[-1], nc, 4, 2, 1, bias=False), nn.Tanh()]
        self.main = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.main(z)


class RefDiscriminator(nn.Module):
    """The example's D: Conv-LReLU, stride-2 Conv-BN-LReLU blocks doubling the width, Conv, Sigmoid."""

    def __init__(self, ndf: int, nc: int, size: int) -> None:
        super().__init__()
        mults = [2**i for i in range(int(math.log2(size)) - 2)]  # 64 px: [1, 2, 4, 8]
        layers: list[nn.Module] = [nn.Conv2d(nc, ndf, 4, 2, 1, bias=False), nn.LeakyReLU(0.2, inplace=True)]
        for m_in, m_out in pairwise(mults):
            layers += [
                nn.Conv2d(ndf * m_in, ndf * m_out, 4, 2, 1, bias=False),
                nn.BatchNorm2d(ndf * m_out),
                nn.LeakyReLU(0.2, inplace=True),
            ]
        # The recipe ends D in a Sigmoid and trains it with BCELoss on probabilities.
        layers += [nn.Conv2d(ndf * mults[-1], 1, 4, 1, 0, bias=False), nn.Sigmoid()]
        self.main = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.main(x)


def ref_weights_init(m: nn.Module) -> None:
    """The recipe's init, by class name: convs ~ N(0, 0.02), BatchNorm weight ~ N(1, 0.02), bias 0."""
    name = m.__class__.__name__
    if "Conv" in name:
        nn.init.normal_(m.weight.data, 0.0, 0.02)
    elif "BatchNorm" in name:
        nn.init.normal_(m.weight.data, 1.0, 0.02)
        nn.init.constant_(m.bias.data, 0)


def reference_step(
    net_g: nn.Module,
    net_d: nn.Module,
    opt_g: torch.optim.Optimizer,
    opt_d: torch.optim.Optimizer,
    criterion: nn.Module,
    real: torch.Tensor,
    noise: int | torch.Tensor,
) -> tuple[float, float, float, float, float]:
    """One iteration of the recipe's loop body; returns (Loss_D, Loss_G, D(x), D(G(z)) before, after).

    `net_d` outputs probabilities (the recipe's Sigmoid). `noise` is the latent batch, or its length
    nz to draw it where the recipe does, from the global RNG. Written the way the recipe reads,
    including its per-step `.item()` reads (each one a device sync) and D's weight gradients in the G
    step (the recipe never freezes D there).
    """
    device = real.device
    b = real.size(0)
    # (1) Update D: maximise log(D(x)) + log(1 - D(G(z)))
    net_d.zero_grad()
    label = torch.full((b,), 1.0, dtype=torch.float, device=device)
    output = net_d(real).view(-1)
    err_d_real = criterion(output, label)
    err_d_real.backward()
    d_x = output.mean().item()

    if isinstance(noise, int):
        noise = torch.randn(b, noise, 1, 1, device=device)
    fake = net_g(noise)
    label.fill_(0.0)
    output = net_d(fake.detach()).view(-1)
    err_d_fake = criterion(output, label)
    err_d_fake.backward()
    d_g_z1 = output.mean().item()
    err_d = err_d_real + err_d_fake
    opt_d.step()

    # (2) Update G: maximise log(D(G(z)))
    net_g.zero_grad()
    label.fill_(1.0)  # fake labels are real for the generator cost
    output = net_d(fake).view(-1)
    err_g = criterion(output, label)
    err_g.backward()
    d_g_z2 = output.mean().item()
    opt_g.step()
    return err_d.item(), err_g.item(), d_x, d_g_z1, d_g_z2


def reference_models(mc: ModelConfig, device: torch.device) -> tuple[nn.Module, nn.Module]:
    """The recipe's G and D with its init, on `device`."""
    net_g = RefGenerator(mc.latent_dim, mc.ngf, mc.channels, mc.size).to(device)
    net_d = RefDiscriminator(mc.ndf, mc.channels, mc.size).to(device)
    net_g.apply(ref_weights_init)
    net_d.apply(ref_weights_init)
    return net_g, net_d


def reference_optimizers(net_g: nn.Module, net_d: nn.Module) -> tuple[torch.optim.Adam, torch.optim.Adam]:
    """Adam(2e-4, β=(0.5, 0.999)) with torch's default implementation choice, as the recipe."""
    return (
        torch.optim.Adam(net_g.parameters(), lr=2e-4, betas=(0.5, 0.999)),
        torch.optim.Adam(net_d.parameters(), lr=2e-4, betas=(0.5, 0.999)),
    )
