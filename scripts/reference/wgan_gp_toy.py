"""WGAN-GP on eight gaussians in PyTorch, with genlab's preset, to tell a settings problem
from a bug: if PyTorch with the same nets, optimiser, penalty and cadence also misses the
issue's coverage target, the settings are at fault; if it meets it, genlab has a bug.

Mirrors `genlab train --model gan --data eight-gaussians --set gan.loss=wgan-gp`:
G = MLP z -> 256 -> 256 -> 256 -> 2 (ReLU), critic = MLP 2 -> 256 x 3 -> 1 (LeakyReLU 0.2),
Adam(beta1 0.5, beta2 from the command line), batch 256, n_critic 5, lambda from the command
line, no gradient clipping and a constant rate (genlab's GAN preset; --clip and --warmup
add global-norm clipping per player and a linear warm-up counted in critic steps).
genlab samples from an EMA of the generator; this script from the generator itself.
Eight gaussians: radius 2, std 0.2; coverage = share of 2,000 samples within 3 std of the
nearest mode, and the smallest share any mode holds.

Usage: .venv/bin/python scripts/reference/wgan_gp_toy.py --steps 10000 --lam 10 --lr 2e-4 --z 16
"""

import argparse
import math

import torch
from torch import nn


def data(n, g):
    k = torch.randint(0, 8, (n,), generator=g)
    ang = k.float() * math.pi / 4
    mu = 2.0 * torch.stack([ang.cos(), ang.sin()], 1)
    return mu + 0.2 * torch.randn(n, 2, generator=g)


def coverage(x):
    ang = torch.arange(8).float() * math.pi / 4
    modes = 2.0 * torch.stack([ang.cos(), ang.sin()], 1)
    d = torch.cdist(x, modes)
    dmin, idx = d.min(1)
    ok = dmin <= 0.6
    shares = [((idx == m) & ok).float().mean().item() for m in range(8)]
    return ok.float().mean().item(), min(shares)


def mlp(sizes, act):
    layers = []
    for i in range(len(sizes) - 1):
        layers.append(nn.Linear(sizes[i], sizes[i + 1]))
        if i < len(sizes) - 2:
            layers.append(act())
    return nn.Sequential(*layers)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--steps", type=int, default=10000, help="critic steps")
    p.add_argument("--lam", type=float, default=10.0)
    p.add_argument("--lr", type=float, default=2e-4)
    p.add_argument("--beta2", type=float, default=0.9)
    p.add_argument("--z", type=int, default=16)
    p.add_argument("--clip", type=float, default=0.0, help="global grad-norm clip, 0 = off")
    p.add_argument("--warmup", type=int, default=0, help="linear warm-up steps, 0 = off")
    p.add_argument("--n-critic", type=int, default=5)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    torch.manual_seed(a.seed)
    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(a.seed)
    G = mlp([a.z, 256, 256, 256, 2], nn.ReLU)
    D = mlp([2, 256, 256, 256, 1], lambda: nn.LeakyReLU(0.2))
    og = torch.optim.Adam(G.parameters(), lr=a.lr, betas=(0.5, a.beta2))
    od = torch.optim.Adam(D.parameters(), lr=a.lr, betas=(0.5, a.beta2))
    for step in range(1, a.steps + 1):
        lr = a.lr * (min(1.0, step / a.warmup) if a.warmup > 0 else 1.0)
        for o in (og, od):
            for pg in o.param_groups:
                pg["lr"] = lr
        x = data(256, g)
        with torch.no_grad():
            fake = G(torch.randn(256, a.z, generator=g))
        e = torch.rand(256, 1, generator=g)
        xh = (e * x + (1 - e) * fake).requires_grad_(True)
        (gx,) = torch.autograd.grad(D(xh).sum(), xh, create_graph=True)
        gp = ((gx.norm(dim=1) - 1) ** 2).mean()
        dl = D(fake).mean() - D(x).mean() + a.lam * gp
        od.zero_grad()
        dl.backward()
        if a.clip > 0:
            nn.utils.clip_grad_norm_(D.parameters(), a.clip)
        od.step()
        if step % a.n_critic == 0:
            gl = -D(G(torch.randn(256, a.z, generator=g))).mean()
            og.zero_grad()
            gl.backward()
            if a.clip > 0:
                nn.utils.clip_grad_norm_(G.parameters(), a.clip)
            og.step()
        if step % 2000 == 0 or step == a.steps:
            with torch.no_grad():
                s = G(torch.randn(2000, a.z, generator=g))
            cov, small = coverage(s)
            print(f"step {step} d_loss {dl.item():.4f} gp {gp.item():.4f} "
                  f"within3std {100 * cov:.1f}% smallest {100 * small:.1f}%", flush=True)


if __name__ == "__main__":
    main()
