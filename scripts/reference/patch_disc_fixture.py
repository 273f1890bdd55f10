"""Reference fixture for genlab's PatchGAN discriminator and VQGAN hinge losses
(crates/genlab-nn/src/patch_discriminator.rs).

The network is taming-transformers' `NLayerDiscriminator` (Esser et al. 2021,
arXiv:2012.09841; taming/modules/discriminator/model.py) written out here with GroupNorm in
place of BatchNorm (then taming's `use_bias` is true: every conv has a bias): conv 4x4 s2 p1
+ LeakyReLU(0.2); for n in 1..n_layers conv 4x4 s2 p1 (ndf*min(2^(n-1),8) ->
ndf*min(2^n,8)) + norm + LeakyReLU; conv 4x4 s1 p1 + norm + LeakyReLU; conv 4x4 s1 p1 -> 1.
Weights are PyTorch's default initialisation from a fixed seed, with the GroupNorm affine
parameters randomised so that they matter. The losses are taming's `hinge_d_loss`
(0.5 * (mean relu(1 - real) + mean relu(1 + fake))) and the generator's -mean(fake).

Writes crates/genlab-nn/tests/fixtures/patch_disc.json: the config, the weights (genlab's
names), a real and a fake batch (2x1x28x56), the logits of both, the two losses, and the
gradients of the discriminator loss with respect to the fake batch and to `conv.1.weight`.

Run from the repository root:  .venv/bin/python scripts/reference/patch_disc_fixture.py
"""

import json
import os

import torch
from torch import nn

OUT = os.path.join("crates", "genlab-nn", "tests", "fixtures", "patch_disc.json")
NDF, N_LAYERS, GROUPS, C_IN = 4, 2, 2, 1


def build():
    names, layers = [], []
    layers += [nn.Conv2d(C_IN, NDF, 4, 2, 1), nn.LeakyReLU(0.2)]
    names += ["conv.0", None]
    mult = 1
    for n in range(1, N_LAYERS):
        prev, mult = mult, min(2**n, 8)
        layers += [nn.Conv2d(NDF * prev, NDF * mult, 4, 2, 1), nn.GroupNorm(GROUPS, NDF * mult), nn.LeakyReLU(0.2)]
        names += [f"conv.{n}", f"norm.{n}", None]
    prev, mult = mult, min(2**N_LAYERS, 8)
    layers += [nn.Conv2d(NDF * prev, NDF * mult, 4, 1, 1), nn.GroupNorm(GROUPS, NDF * mult), nn.LeakyReLU(0.2)]
    names += [f"conv.{N_LAYERS}", f"norm.{N_LAYERS}", None]
    layers += [nn.Conv2d(NDF * mult, 1, 4, 1, 1)]
    names += ["out"]
    return nn.Sequential(*layers), names


def flat(t):
    return [float(v) for v in t.detach().double().flatten().tolist()]


def main():
    torch.manual_seed(0)
    net, names = build()
    with torch.no_grad():
        for m in net:
            if isinstance(m, nn.GroupNorm):
                m.weight.copy_(1.0 + 0.3 * torch.randn_like(m.weight))
                m.bias.copy_(0.2 * torch.randn_like(m.bias))
    weights = {}
    for name, m in zip(names, net):
        if name is None:
            continue
        weights[f"{name}.weight"] = {"shape": list(m.weight.shape), "values": flat(m.weight)}
        weights[f"{name}.bias"] = {"shape": list(m.bias.shape), "values": flat(m.bias)}
    real = torch.rand(2, C_IN, 28, 56)
    fake = torch.rand(2, C_IN, 28, 56).requires_grad_(True)
    lr, lf = net(real), net(fake)
    d_loss = 0.5 * (torch.relu(1.0 - lr).mean() + torch.relu(1.0 + lf).mean())
    g_loss = -lf.mean()
    conv1 = net[names.index("conv.1")].weight
    g_fake, g_conv1 = torch.autograd.grad(d_loss, [fake, conv1])
    doc = {
        "versions": {"torch": torch.__version__},
        "config": {"channels": NDF, "layers": N_LAYERS, "groups": GROUPS, "c_in": C_IN},
        "weights": weights,
        "real": {"shape": list(real.shape), "values": flat(real)},
        "fake": {"shape": list(fake.shape), "values": flat(fake)},
        "real_logits": {"shape": list(lr.shape), "values": flat(lr)},
        "fake_logits": {"shape": list(lf.shape), "values": flat(lf)},
        "d_loss": float(d_loss.detach()),
        "g_loss": float(g_loss.detach()),
        "grad_fake": flat(g_fake),
        "grad_conv1_weight": flat(g_conv1),
    }
    with open(OUT, "w") as f:
        json.dump(doc, f)
    print(f"wrote {OUT}: logits {list(lf.shape)}, d_loss {float(d_loss.detach()):.6f}")


if __name__ == "__main__":
    main()
