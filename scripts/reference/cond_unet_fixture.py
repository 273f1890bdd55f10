"""Reference outputs of diffusers' UNet2DConditionModel for crates/genlab-nn/src/cond_unet.rs
(test: crates/genlab-nn/tests/cond_unet.rs).

Two tiny networks, built with random weights (seeded; every parameter that the default
initialisation leaves constant, the norms' weights and biases and zero biases, gets N(0, 0.1^2)
added so that each one matters), in eval mode on the CPU in float32:

  a: Stable Diffusion 1.x's arrangement: three levels (8, 16, 16) with cross-attention on the
     first two (CrossAttnDownBlock2D x2, DownBlock2D; UpBlock2D, CrossAttnUpBlock2D x2),
     1x1-conv projections, flip_sin_to_cos=True, freq_shift=0, 2 heads, context width 8,
     4 GroupNorm groups, a 2x4x7x14 sample (7x14 -> 4x7 -> 2x4 and back through
     upsample_size).
  b: the other options: two levels (8, 16), both with cross-attention, linear projections
     (SD 2.x), heads per level (2, 4), 2 transformer layers per block, 2 resnets per level,
     flip_sin_to_cos=False, freq_shift=1, num_class_embeds=3, a 2x4x7x7 sample.

Each is run on the same inputs without and with encoder_attention_mask (the second example
keeps 3 of its 5 tokens). Writes, under crates/genlab-nn/tests/fixtures/cond_unet/:
  {a,b}_weights.safetensors  the state_dict, diffusers' names
  {a,b}_io.safetensors       sample, timestep [2], context [2,5,8], mask [2,5] (1 real),
                             class [2] (b only, float), out, out_masked
with the library versions in the safetensors metadata.

Usage:  .venv/bin/python scripts/reference/cond_unet_fixture.py
Pinned: diffusers==0.42.1, torch==2.15.0, safetensors==0.8.0 (requirements.txt).
"""
import json
import pathlib

import diffusers
import torch
from diffusers import UNet2DConditionModel
from safetensors.torch import save_file

OUT = pathlib.Path(__file__).resolve().parents[2] / "crates/genlab-nn/tests/fixtures/cond_unet"

CONFIGS = {
    "a": dict(
        sample=(2, 4, 7, 14),
        kw=dict(
            in_channels=4,
            out_channels=4,
            block_out_channels=(8, 16, 16),
            down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
            up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
            layers_per_block=1,
            cross_attention_dim=8,
            attention_head_dim=2,
            norm_num_groups=4,
            flip_sin_to_cos=True,
            freq_shift=0,
        ),
    ),
    "b": dict(
        sample=(2, 4, 7, 7),
        kw=dict(
            in_channels=4,
            out_channels=4,
            block_out_channels=(8, 16),
            down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
            layers_per_block=2,
            transformer_layers_per_block=2,
            cross_attention_dim=8,
            attention_head_dim=(2, 4),
            norm_num_groups=4,
            use_linear_projection=True,
            flip_sin_to_cos=False,
            freq_shift=1,
            num_class_embeds=3,
        ),
    ),
}


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    versions = {"diffusers": diffusers.__version__, "torch": torch.__version__}
    for name, spec in CONFIGS.items():
        torch.manual_seed(0 if name == "a" else 1)
        net = UNet2DConditionModel(**spec["kw"]).eval()
        with torch.no_grad():
            for p in net.parameters():
                if p.numel() == 1 or torch.all(p == p.flatten()[0]):
                    p.add_(0.1 * torch.randn_like(p))
        sd = {k: v.detach().contiguous().float() for k, v in net.state_dict().items()}
        n = sum(v.numel() for v in sd.values())
        sample = torch.randn(spec["sample"])
        t = torch.tensor([10.0, 700.0])
        ctx = torch.randn(2, 5, 8)
        mask = torch.tensor([[1.0] * 5, [1.0, 1.0, 1.0, 0.0, 0.0]])
        extra = {}
        io = {"sample": sample, "timestep": t, "context": ctx, "mask": mask}
        if spec["kw"].get("num_class_embeds"):
            labels = torch.tensor([0, 2])
            extra["class_labels"] = labels
            io["class"] = labels.float()
        with torch.no_grad():
            io["out"] = net(sample, t, encoder_hidden_states=ctx, **extra).sample
            io["out_masked"] = net(
                sample, t, encoder_hidden_states=ctx, encoder_attention_mask=mask, **extra
            ).sample
        meta = {"versions": json.dumps(versions), "config": json.dumps(spec["kw"])}
        save_file(sd, OUT / f"{name}_weights.safetensors", metadata=meta)
        save_file({k: v.contiguous() for k, v in io.items()}, OUT / f"{name}_io.safetensors", metadata=meta)
        print(name, n, "parameters", tuple(io["out"].shape),
              float((io["out"] - io["out_masked"]).abs().max()))


if __name__ == "__main__":
    main()
