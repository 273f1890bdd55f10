"""Checks that torch_bench.py's DitTorch (the twin of the dit-train / video-dit-train
workloads) computes the function of genlab's Dit: it loads the diffusers-derived fixture of
crates/genlab-nn/tests/fixtures/dit (scripts/reference/dit_fixture.py: DiTTransformer2DModel
converted to genlab's names, which crates/genlab-nn/tests/dit.rs matches to 1e-6) into
DitTorch and compares the outputs.

Usage:  .venv/bin/python scripts/bench/check_dit_twin.py
"""
import pathlib
import sys

import torch
from safetensors.torch import load_file

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import torch_bench  # noqa: E402

FIX = pathlib.Path(__file__).resolve().parents[2] / "crates/genlab-nn/tests/fixtures/dit"
# f32 forward passes of the same function in two orders of summation.
TOL = 1e-5


def main():
    M = torch_bench.build_modules(torch)
    w, io = load_file(FIX / "weights.safetensors"), load_file(FIX / "io.safetensors")
    net = M["DitTorch"]((2, 8, 8), width=16, depth=2, heads=2, patch=2).eval()
    rename = {"x_embed": "x_embed", "t_embed.lin1": "t_lin1", "t_embed.lin2": "t_lin2",
              "final.ada": "final_ada", "final.linear": "final_linear"}
    sd = {}
    for k, v in w.items():
        stem, kind = k.rsplit(".", 1)
        if stem in rename:
            sd[f"{rename[stem]}.{kind}"] = v
        else:  # blocks.i.{ada, attn.qkv, attn.out, mlp.fc1, mlp.fc2}
            sd[stem.replace("attn.", "").replace("mlp.", "") + "." + kind] = v
    sd["pos"] = net.pos
    net.load_state_dict(sd, strict=True)
    with torch.no_grad():
        out = net(io["x"], io["t"], io["extra"])
    diff = (out - io["out"]).abs().max().item()
    print(f"DitTorch vs diffusers' DiTTransformer2DModel (genlab's fixture): max |diff| {diff:.2e}")
    assert diff < TOL, diff


if __name__ == "__main__":
    main()
