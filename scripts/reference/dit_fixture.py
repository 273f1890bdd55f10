"""Reference outputs of diffusers' DiTTransformer2DModel (the port of Peebles & Xie's DiT)
for crates/genlab-nn/src/dit.rs (test: crates/genlab-nn/tests/dit.rs).

One small class-conditional DiT (2 input channels, 8x8 samples, patch 2, 2 blocks, 2 heads
of 8, 4 classes + the null label), seeded random weights with N(0, 0.05^2) added to every
parameter (diffusers zero-initialises nothing here, but the added noise makes sure that
every tensor, biases included, matters), eval mode, CPU float32.

Two settings are changed from diffusers' defaults to the original DiT code
(facebookresearch/DiT models.py), which genlab follows:
  - the timestep embedding's frequencies exp(-ln(10000) i / half): diffusers'
    CombinedTimestepLabelEmbeddings uses downscale_freq_shift=1 (i / (half - 1)); set to 0;
  - norm_eps=1e-6 for the blocks' second LayerNorm (diffusers' default is 1e-5).
Every block gets the same timestep / class embedder weights (block 0's), as diffusers'
conversion of the original checkpoints does (DiT computes c once).

The state_dict is converted to genlab's names (crates/genlab-nn/src/dit.rs):
  pos_embed.proj (conv [D, C, p, p])             -> x_embed (weight reshaped to [D, C p p])
  transformer_blocks.0.norm1.emb.timestep_embedder.linear_{1,2} -> t_embed.lin{1,2}
  transformer_blocks.i.norm1.linear              -> blocks.i.ada
  transformer_blocks.i.attn1.to_{q,k,v}          -> blocks.i.attn.qkv (rows q, k, v)
  transformer_blocks.i.attn1.to_out.0            -> blocks.i.attn.out
  transformer_blocks.i.ff.net.0.proj / ff.net.2  -> blocks.i.mlp.fc1 / fc2
  proj_out_1                                     -> final.ada
  proj_out_2 (rows ordered (p, q, c))            -> final.linear (rows reordered to (c, p, q))
and the class embedding rows of the inputs' labels are saved as `extra` (genlab's DDPM owns
its label embedding and adds it to the time embedding, as CombinedTimestepLabelEmbeddings does).

Writes crates/genlab-nn/tests/fixtures/dit/{weights,io}.safetensors; io holds x [2, 2, 8, 8],
t [2], labels [2] (float), extra [2, 16], out [2, 2, 8, 8].

Usage:  .venv/bin/python scripts/reference/dit_fixture.py
Pinned: diffusers==0.42.1, torch==2.15.0, safetensors==0.8.0 (requirements.txt).
"""
import pathlib

import diffusers
import torch
from diffusers import DiTTransformer2DModel
from safetensors.torch import save_file

OUT = pathlib.Path(__file__).resolve().parents[2] / "crates/genlab-nn/tests/fixtures/dit"
C, S, P, HEADS, HEAD_DIM, LAYERS, CLASSES = 2, 8, 2, 2, 8, 2, 4


def main():
    torch.manual_seed(0)
    net = DiTTransformer2DModel(
        num_attention_heads=HEADS, attention_head_dim=HEAD_DIM, in_channels=C, out_channels=C,
        num_layers=LAYERS, sample_size=S, patch_size=P, num_embeds_ada_norm=CLASSES,
        norm_eps=1e-6,
    ).eval()
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.05 * torch.randn_like(p))
        emb0 = net.transformer_blocks[0].norm1.emb
        for blk in net.transformer_blocks:
            blk.norm1.emb.load_state_dict(emb0.state_dict())
            blk.norm1.emb.time_proj.downscale_freq_shift = 0
    d = HEADS * HEAD_DIM
    x = torch.randn(2, C, S, S)
    t = torch.tensor([3.0, 640.0])
    labels = torch.tensor([1, CLASSES])  # a class and the null label
    with torch.no_grad():
        out = net(x, timestep=t, class_labels=labels).sample
        extra = emb0.class_embedder.embedding_table(labels)
    sd = {k: v.detach().clone() for k, v in net.state_dict().items()}
    w = {
        "x_embed.weight": sd["pos_embed.proj.weight"].reshape(d, -1),
        "x_embed.bias": sd["pos_embed.proj.bias"],
        "final.ada.weight": sd["proj_out_1.weight"],
        "final.ada.bias": sd["proj_out_1.bias"],
    }
    pre = "transformer_blocks.0.norm1.emb.timestep_embedder."
    for i in (1, 2):
        for kind in ("weight", "bias"):
            w[f"t_embed.lin{i}.{kind}"] = sd[f"{pre}linear_{i}.{kind}"]
    # proj_out_2 rows are (p, q, c); genlab's are (c, p, q).
    perm = torch.arange(P * P * C).reshape(P, P, C).permute(2, 0, 1).reshape(-1)
    w["final.linear.weight"] = sd["proj_out_2.weight"][perm]
    w["final.linear.bias"] = sd["proj_out_2.bias"][perm]
    for i in range(LAYERS):
        b = f"transformer_blocks.{i}."
        g = f"blocks.{i}."
        for kind in ("weight", "bias"):
            w[g + "ada." + kind] = sd[b + "norm1.linear." + kind]
            w[g + "attn.qkv." + kind] = torch.cat(
                [sd[b + f"attn1.to_{n}.{kind}"] for n in "qkv"], 0)
            w[g + "attn.out." + kind] = sd[b + "attn1.to_out.0." + kind]
            w[g + "mlp.fc1." + kind] = sd[b + "ff.net.0.proj." + kind]
            w[g + "mlp.fc2." + kind] = sd[b + "ff.net.2." + kind]
    meta = {"diffusers": diffusers.__version__, "torch": torch.__version__}
    OUT.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in w.items()}, OUT / "weights.safetensors", meta)
    save_file({"x": x, "t": t, "labels": labels.float(), "extra": extra.contiguous(),
               "out": out.contiguous()}, OUT / "io.safetensors", meta)
    print("wrote", OUT, "max |out|", out.abs().max().item())


if __name__ == "__main__":
    main()
