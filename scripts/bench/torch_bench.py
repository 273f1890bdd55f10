"""Benchmark: the PyTorch side of genlab's training/sampling benchmark (`genlab bench`).

Five CPU f32 workloads, built to be identical to genlab's Rust versions:
  mlp         Linear(2,256) SiLU Linear(256,256) SiLU Linear(256,2), batch 512, Adam step
  conv        conv 1->32 (3x3), conv 32->64 (3x3 s2), convT 64->32 (4x4 s2), + skip, conv 32->1
              on [64,1,28,28], Adam step
  unet-train  the genlab DDPM U-Net, MNIST config (base 16, mult [1,2,2], 1 res block,
              attention at the lowest level, 1 head, 8 groups; 280,177 parameters), batch 32,
              eps-MSE + Adam + EMA(0.998)
  ddim50      the same U-Net, eval/inference_mode, one 50-step DDIM (eta 0) run on batch 64
  attention   genlab's AttentionBlock (64 channels, 1 head) on [64,64,14,14], fwd + bwd
  cfg-step    the U-Net with a class embedding (11 x 64, added to the time embedding before
              its last SiLU; 280,881 parameters): one classifier-free guided DDIM step
              (w = 3, a one-step grid t = 999 -> x0) on 64 samples of digit 3, i.e. one
              network call on the batch of 128 (labels and null label), inference_mode
  clip-step   genlab's CLIP MNIST preset: ViT image tower (7x7 patches of 28x28 as a bias-free
              linear patch embedding, class token, position embedding, ln_pre, 4 pre-norm
              blocks of width 96 / 4 heads / MLP 384 with exact GELU, ln_post on the class
              token), causal text tower (49,408 x 64 token embedding, 32 x 64 positions, 3
              pre-norm blocks of width 64 / 4 heads, ln_final, end-token pooling), bias-free
              projections to 64, learned logit scale; batch 256 of 16-token captions:
              symmetric InfoNCE, backward, Adam
  simclr-step  one `genlab ssl train --method simclr --data mnist` step (genlab-labels'
              bench workload): two views of a fixed batch of 256 uniform 1x28x28 images, each
              made inside the step by genlab's SimCLR augmentation written batched
              (`simclr_views`: per-image random resized crop, area 30-100%, aspect 3/4-4/3,
              bilinear as one affine_grid + grid_sample, then with probability 0.8 contrast
              0.6-1.4 and brightness +-0.4 clamped to [0, 1]); the digit encoder (x*2-1,
              conv 1->32, 32->32 s2, 32->64, 64->64 s2, all 3x3 + ReLU, Linear 3136->128 +
              ReLU) on each view, the 128-128-64 ReLU projection head, NT-Xent at tau 0.5
              over the 512 projections (cross-entropy of the self-masked cosine similarities),
              backward, Adam. The classifier's 128->10 head is allocated, unused and without
              gradient, as genlab's ssl trainer allocates it (492,586 parameters in all).
              check_simclr_twin.py checks the batched crop against augment.rs's formula.
  flow-train  genlab's MNIST flow preset (165,830 parameters): variational dequantisation,
              2 scales x 8 Glow steps (ActNorm, LU 1x1 conv, affine coupling whose 3x3-1x1-3x3
              64-channel conditioner reads one half of the channels and writes the other),
              a split prior, batch 64 of 8-bit pixels: NLL, backward, Adam
  xattn-unet-train  diffusers' UNet2DConditionModel (diffusers==0.42.1, its default attention
              processor) with genlab's CondUNetConfig::default(): 4 -> 4 channels, levels
              (32, 64, 64) all CrossAttn*Block2D, 1 layer per block, 4 heads, context width
              64, 8 groups; batch 32 of 4x7x14 latents (upsample_size path) with 8 context
              tokens: eps-MSE + Adam + EMA(0.998). crates/genlab-nn/tests/cond_unet.rs checks
              that genlab's network computes the same function as this one.
  sd15-unet-step  diffusers' UNet2DConditionModel with Stable Diffusion 1.5's config
              (block_out_channels (320, 640, 1280, 1280), 2 layers per block, CrossAttn x3 +
              plain last level, 8 heads, cross_attention_dim 768, 32 groups, eps 1e-5;
              859,520,964 parameters, PyTorch's default init), eval + inference_mode, one
              forward on a 1x4x64x64 latent with a 77x768 context (batch 1, no CFG)
  sd-vae-decode-512  diffusers' AutoencoderKL with SD's VAE config ((128, 256, 512, 512),
              2 layers per block, 4 latent channels, 32 groups): decode() of a 4x64x64
              latent to 3x512x512 (post_quant_conv included), inference_mode
  sd15-txt2img  20 DDIMScheduler.from_config(SD 1.5's scheduler JSON) steps of the
              sd15-unet-step U-Net with guidance 7.5 (one batch-2 call per step on random
              uncond/cond 77x768 contexts; no text encoder), then AutoencoderKL.decode of
              latents / 0.18215: one 512x512 image, inference_mode; 0 warm-up, 1 timed run
  dit-train   genlab's DiT-S/4 (crates/genlab-nn/src/dit.rs, DitConfig::size("s", 4): width 192,
              6 blocks, 3 heads, MLP 768 with tanh GELU, adaLN-Zero, fixed 2-D sine-cosine
              positions, 49 tokens of 4x4 patches) with an 11 x 192 class embedding added to
              the time embedding (as genlab's Ddpm with num_classes 10; 4,167,568 parameters);
              batch 32 of 1x28x28: eps-MSE + Adam + EMA(0.998)
  video-dit-train  genlab's video DiT for Moving MNIST clips [8, 1, 32, 32]: DiT-XS/4 (width
              128, 4 blocks, 4 heads), 2-frame tubelets, joint attention over 4 x 8 x 8 = 256
              spacetime tokens, sine-cosine space + time positions (1,278,112 parameters);
              batch 16, unconditional: eps-MSE + Adam + EMA(0.998)
The DiT (`DitTorch`) is written to compute the same function as genlab's Dit, which matches
diffusers' DiTTransformer2DModel to 1e-6 (scripts/reference/dit_fixture.py, crates/genlab-nn/
tests/dit.rs); its attention is F.scaled_dot_product_attention, PyTorch's fused fast path
(flash / memory-efficient kernels that never store the [N, N] scores), what a PyTorch user
gets, with or without --sdpa.
The U-Net mirrors crates/genlab-nn/src/{unet,resblock,attention,resample,norm,embedding}.rs;
the flow mirrors crates/genlab-models/src/flow/{model,multiscale,actnorm,inv_linear,
affine_coupling,masks,var_dequantize}.rs, written the way a PyTorch user would (the coupling
splits the channels with chunk() where genlab multiplies by a mask).

Timing: warm-up (3 iterations; ddim50: 1), then iterations timed one by one until at least
--min-time seconds and 5 iterations (ddim50: 3) have run; the MEDIAN iteration time is
reported (rate = 1 / median, steps/s; ddim50: runs/s). Each workload runs in its own
subprocess (`--single NAME`), so peak_rss_mib (ru_maxrss at the end) is per workload;
rss_before_mib is VmRSS after building model and data, before the first iteration.

Run:  .venv/bin/python scripts/bench/torch_bench.py --threads 1 [--workload all|NAME]
          [--min-time 5] [--json]
(--json: one JSON object per line, the schema `genlab bench --json` prints; otherwise a
table). scripts/bench/compare.py runs both sides and prints the comparison.
"""
import argparse
import json
import math
import os
import subprocess
import sys
import time

WORKLOADS = ["mlp", "conv", "unet-train", "ddim50", "attention", "flow-train", "cfg-step",
             "clip-step", "xattn-unet-train", "dit-train", "video-dit-train", "simclr-step",
             "sd15-unet-step", "sd-vae-decode-512", "sd15-txt2img"]
# Minutes per run: left out of `all`, run by name or as the group `sd` (as genlab bench).
SD_WORKLOADS = ["sd15-unet-step", "sd-vae-decode-512", "sd15-txt2img"]
# SD 1.5's U-Net and VAE configurations (crates/genlab-train/src/bench/sd15_unet_step.rs,
# sd_vae_decode.rs) and its scheduler_config.json.
SD15_UNET = dict(
    in_channels=4, out_channels=4, block_out_channels=(320, 640, 1280, 1280),
    down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
    up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
    layers_per_block=2, cross_attention_dim=768, attention_head_dim=8, norm_num_groups=32,
    norm_eps=1e-5, flip_sin_to_cos=True, freq_shift=0, sample_size=64,
)
SD_VAE = dict(
    in_channels=3, out_channels=3, block_out_channels=(128, 256, 512, 512),
    down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
    layers_per_block=2, latent_channels=4, norm_num_groups=32, sample_size=512,
)
SD15_SCHEDULER = {
    "_class_name": "PNDMScheduler", "beta_end": 0.012, "beta_schedule": "scaled_linear",
    "beta_start": 0.00085, "num_train_timesteps": 1000, "set_alpha_to_one": False,
    "skip_prk_steps": True, "steps_offset": 1, "trained_betas": None, "clip_sample": False,
}
# Parameter count of genlab's U-Net in the MNIST config (what `genlab` reports for it).
UNET_MNIST_PARAMS = 280177
# ... and with the class embedding of the 10 digits and the null label (11 x 64).
UNET_COND_PARAMS = UNET_MNIST_PARAMS + 11 * 64
# Parameter count of genlab's MNIST flow preset (what `genlab bench` reports for it).
FLOW_MNIST_PARAMS = 165830
# Parameter count of genlab's CondUNetConfig::default() (what `genlab bench` reports).
XATTN_UNET_PARAMS = 1763396
# Parameter counts of genlab's dit-train and video-dit-train networks (what `genlab bench`
# reports for them).
DIT_S4_COND_PARAMS = 4167568
VIDEO_DIT_XS4_PARAMS = 1278112
# Parameter count of genlab's simclr-step (encoder, its unused 128->10 classifier head, the
# 128-128-64 projection head).
SIMCLR_PARAMS = 492586
THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


# ----------------------------------------------------------------------------------------
# Models (torch is imported lazily, after the thread environment variables are set)
# ----------------------------------------------------------------------------------------


def build_modules(torch):
    """Defines the genlab-equivalent modules; returns them in a namespace dict."""
    nn = torch.nn
    F = torch.nn.functional

    def candle_init_(module):
        """candle_nn's initialisation: weights ~ N(0, 2/fan_in) (Kaiming normal, fan-in, ReLU
        gain), biases ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in)); GroupNorm stays 1 / 0.
        fan_in as torch computes it (ConvTranspose2d [C_in, C_out, k, k]: C_out*k*k)."""
        for m in module.modules():
            if isinstance(m, (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)):
                fan_in, _ = nn.init._calculate_fan_in_and_fan_out(m.weight)
                with torch.no_grad():
                    m.weight.normal_(0.0, math.sqrt(2.0 / fan_in))
                    if m.bias is not None:
                        bound = 1.0 / math.sqrt(fan_in)
                        m.bias.uniform_(-bound, bound)
        return module

    GN_EPS = 1e-5

    def conv3x3(c_in, c_out):
        return nn.Conv2d(c_in, c_out, 3, stride=1, padding=1)

    class Mlp(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = nn.Sequential(
                nn.Linear(2, 256), nn.SiLU(), nn.Linear(256, 256), nn.SiLU(), nn.Linear(256, 2)
            )

        def forward(self, x):
            return self.net(x)

    class ConvNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(1, 32, 3, stride=1, padding=1)
            self.conv2 = nn.Conv2d(32, 64, 3, stride=2, padding=1)
            self.up = nn.ConvTranspose2d(64, 32, 4, stride=2, padding=1)
            self.conv3 = nn.Conv2d(32, 1, 3, stride=1, padding=1)

        def forward(self, x):
            h1 = F.silu(self.conv1(x))  # [B, 32, 28, 28]
            h2 = F.silu(self.conv2(h1))  # [B, 64, 14, 14]
            h3 = F.silu(self.up(h2))  # [B, 32, 28, 28]
            return self.conv3(h3 + h1)  # [B, 1, 28, 28]

    class AttentionBlock(nn.Module):
        """attention.rs: x + proj(softmax(q^T k / sqrt(d)) v), qkv = conv1x1(GroupNorm(x))."""

        def __init__(self, channels, heads, groups, sdpa=False):
            super().__init__()
            assert channels % heads == 0
            self.channels, self.heads, self.sdpa = channels, heads, sdpa
            self.norm = nn.GroupNorm(groups, channels, eps=GN_EPS)
            self.qkv = nn.Conv2d(channels, 3 * channels, 1)
            self.proj = nn.Conv2d(channels, channels, 1)

        def forward(self, x):
            b, c, h, w = x.shape
            heads, d, n = self.heads, c // self.heads, h * w
            # [B, 3C, H, W] -> [B, 3, heads, d, N]  (channel = part*C + head*d + j)
            qkv = self.qkv(self.norm(x)).reshape(b, 3, heads, d, n)
            q = qkv[:, 0].reshape(b * heads, d, n).transpose(1, 2)  # [B*heads, N, d]
            k = qkv[:, 1].reshape(b * heads, d, n)  # [B*heads, d, N]
            v = qkv[:, 2].reshape(b * heads, d, n).transpose(1, 2)  # [B*heads, N, d]
            if self.sdpa:
                out = F.scaled_dot_product_attention(q, k.transpose(1, 2), v)
            else:
                scores = torch.bmm(q, k) * (1.0 / math.sqrt(d))  # [B*heads, N, N]
                attn = torch.softmax(scores, dim=-1)
                out = torch.bmm(attn, v)  # [B*heads, N, d]
            # [B*heads, N, d] -> [B*heads, d, N] -> [B, C, H, W]  (channel = head*d + j)
            out = out.transpose(1, 2).reshape(b, c, h, w)
            return x + self.proj(out)

    class ResBlock(nn.Module):
        """resblock.rs: skip(x) + conv2(silu(gn2(conv1(silu(gn1(x))) + temb(t))))."""

        def __init__(self, c_in, c_out, temb_dim, groups):
            super().__init__()
            self.norm1 = nn.GroupNorm(groups, c_in, eps=GN_EPS)
            self.conv1 = conv3x3(c_in, c_out)
            self.temb = nn.Linear(temb_dim, c_out)
            self.norm2 = nn.GroupNorm(groups, c_out, eps=GN_EPS)
            self.conv2 = conv3x3(c_out, c_out)
            self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else None

        def forward(self, x, temb):
            h = self.conv1(F.silu(self.norm1(x)))
            h = h + self.temb(temb)[:, :, None, None]
            h = self.conv2(F.silu(self.norm2(h)))
            skip = self.skip(x) if self.skip is not None else x
            return skip + h

    class Downsample(nn.Module):
        def __init__(self, ch):
            super().__init__()
            self.conv = nn.Conv2d(ch, ch, 3, stride=2, padding=1)

        def forward(self, x):
            return self.conv(x)

    class Upsample(nn.Module):
        def __init__(self, ch):
            super().__init__()
            self.conv = conv3x3(ch, ch)

        def forward(self, x, out_h, out_w):
            x = F.interpolate(x, scale_factor=2.0, mode="nearest")
            if x.shape[2] != out_h or x.shape[3] != out_w:
                x = x[:, :, :out_h, :out_w]
            return self.conv(x)

    def timestep_embedding(t, dim, max_period=10000.0):
        """embedding.rs: [B] -> [B, dim] f32, cat[cos, sin], arguments in f64."""
        half = dim // 2
        freqs = torch.tensor(
            [math.exp(-math.log(max_period) * i / half) for i in range(half)], dtype=torch.float64
        )
        args = t.to(torch.float64)[:, None] * freqs[None, :]
        return torch.cat([torch.cos(args), torch.sin(args)], dim=1).to(torch.float32)

    class UNet(nn.Module):
        """unet.rs, module for module (same parameters, same order of operations)."""

        def __init__(self, base=16, mult=(1, 2, 2), num_res_blocks=1, attention_at_lowest=True,
                     heads=1, groups=8, in_channels=1, out_channels=1, sdpa=False,
                     num_classes=0):
            super().__init__()
            self.base = base
            temb_dim = 4 * base
            # ddpm.rs: the class embedding (K + 1 rows, the last is "no label"), created
            # after the network.
            self.num_classes = num_classes
            levels = [base * m for m in mult]
            lowest = len(levels) - 1

            def attn_at(i):
                return attention_at_lowest and i == lowest

            self.time_lin1 = nn.Linear(base, temb_dim)
            self.time_lin2 = nn.Linear(temb_dim, temb_dim)
            self.conv_in = conv3x3(in_channels, base)

            skips = [base]
            ch = base
            self.down_res = nn.ModuleList()
            self.down_attn = nn.ModuleList()
            self.downsample = nn.ModuleList()
            for i, c in enumerate(levels):
                res, attn = nn.ModuleList(), nn.ModuleList()
                for _ in range(num_res_blocks):
                    res.append(ResBlock(ch, c, temb_dim, groups))
                    ch = c
                    if attn_at(i):
                        attn.append(AttentionBlock(c, heads, groups, sdpa))
                    skips.append(ch)
                if i != lowest:
                    self.downsample.append(Downsample(ch))
                    skips.append(ch)
                self.down_res.append(res)
                self.down_attn.append(attn)

            self.mid_res1 = ResBlock(ch, ch, temb_dim, groups)
            self.mid_attn = AttentionBlock(ch, heads, groups, sdpa) if attention_at_lowest else None
            self.mid_res2 = ResBlock(ch, ch, temb_dim, groups)

            # Decoder, stored from the lowest level up.
            self.up_res = nn.ModuleList()
            self.up_attn = nn.ModuleList()
            self.upsample = nn.ModuleList()
            for i in reversed(range(len(levels))):
                c = levels[i]
                res, attn = nn.ModuleList(), nn.ModuleList()
                for _ in range(num_res_blocks + 1):
                    skip_ch = skips.pop()
                    res.append(ResBlock(ch + skip_ch, c, temb_dim, groups))
                    ch = c
                    if attn_at(i):
                        attn.append(AttentionBlock(c, heads, groups, sdpa))
                if i != 0:
                    self.upsample.append(Upsample(ch))
                self.up_res.append(res)
                self.up_attn.append(attn)
            assert not skips

            self.out_norm = nn.GroupNorm(groups, ch, eps=GN_EPS)
            self.out_conv = conv3x3(ch, out_channels)
            if num_classes:
                self.label_emb = nn.Embedding(num_classes + 1, temb_dim)

        def forward(self, x, t, y=None):
            temb = timestep_embedding(t, self.base)
            temb = self.time_lin2(F.silu(self.time_lin1(temb)))
            if y is not None:
                temb = temb + self.label_emb(y)  # unet.rs forward_with: added before the SiLU
            temb = F.silu(temb)

            h = self.conv_in(x)
            skips = [h]
            for i, (res, attn) in enumerate(zip(self.down_res, self.down_attn)):
                for j, block in enumerate(res):
                    h = block(h, temb)
                    if j < len(attn):
                        h = attn[j](h)
                    skips.append(h)
                if i < len(self.downsample):
                    h = self.downsample[i](h)
                    skips.append(h)

            h = self.mid_res1(h, temb)
            if self.mid_attn is not None:
                h = self.mid_attn(h)
            h = self.mid_res2(h, temb)

            for k, (res, attn) in enumerate(zip(self.up_res, self.up_attn)):
                for j, block in enumerate(res):
                    h = block(torch.cat([h, skips.pop()], dim=1), temb)
                    if j < len(attn):
                        h = attn[j](h)
                if k < len(self.upsample):
                    sh, sw = skips[-1].shape[2], skips[-1].shape[3]
                    h = self.upsample[k](h, sh, sw)

            return self.out_conv(F.silu(self.out_norm(h)))

    # ---- the MNIST flow preset (crates/genlab-models/src/flow) ----
    HEAD_GAIN = 0.05  # masks.rs: the conditioner's last layer starts small

    class CondNet(nn.Module):
        """CouplingNet::Cnn: 3x3 conv, 1x1 convs, ReLU between, 3x3 head to k*c_out."""

        def __init__(self, c_in, c_out, k, hidden=(64, 64)):
            super().__init__()
            convs, ci = [], c_in
            for i, h in enumerate(hidden):
                ks = 3 if i == 0 else 1
                convs.append(nn.Conv2d(ci, h, ks, padding=ks // 2))
                ci = h
            self.convs = nn.ModuleList(convs)
            self.head = nn.Conv2d(ci, k * c_out, 3, padding=1)
            self.k = k

        def small_head_(self):
            with torch.no_grad():
                fan_in = self.head.in_channels * 9
                self.head.weight.normal_(0.0, HEAD_GAIN / math.sqrt(fan_in))
                self.head.bias.zero_()

        def forward(self, x):
            for conv in self.convs:
                x = F.relu(conv(x))
            y = self.head(x)
            b, _, h, w = y.shape
            return y.view(b, self.k, -1, h, w)

    def soft_clamp(s, c):
        return c * torch.tanh(s / c)

    class ActNorm(nn.Module):
        def __init__(self, c):
            super().__init__()
            self.bias = nn.Parameter(torch.zeros(1, c, 1, 1))
            self.logs = nn.Parameter(torch.zeros(1, c, 1, 1))

        def data_init_(self, x):
            with torch.no_grad():
                mean = x.mean(dim=(0, 2, 3), keepdim=True)
                std = x.std(dim=(0, 2, 3), keepdim=True, unbiased=False)
                self.bias.copy_(-mean)
                self.logs.copy_(-torch.log(std + 1e-6))

        def forward(self, x):
            hw = x.shape[2] * x.shape[3]
            return (x + self.bias) * self.logs.exp(), self.logs.sum() * hw

    class InvConv1x1(nn.Module):
        """Glow's LU-parametrised 1x1 convolution: W = P L (U + diag(sign exp(log|s|)))."""

        def __init__(self, n):
            super().__init__()
            q, _ = torch.linalg.qr(torch.randn(n, n, dtype=torch.float64))
            p, l, u = torch.linalg.lu(q)
            s = torch.diagonal(u)
            self.register_buffer("perm", p.float())
            self.register_buffer("l0", l.float())
            self.register_buffer("u0", torch.triu(u, 1).float())
            self.register_buffer("sign", torch.sign(s).float())
            self.register_buffer("logs0", torch.log(s.abs()).float())
            self.register_buffer("lmask", torch.tril(torch.ones(n, n), -1))
            self.register_buffer("umask", torch.triu(torch.ones(n, n), 1))
            self.register_buffer("eye", torch.eye(n))
            self.lower = nn.Parameter(torch.zeros(n, n))
            self.upper = nn.Parameter(torch.zeros(n, n))
            self.log_scale = nn.Parameter(torch.zeros(n))

        def forward(self, x):
            log_s = self.logs0 + self.log_scale
            l = (self.l0 + self.lower) * self.lmask + self.eye
            u = (self.u0 + self.upper) * self.umask + torch.diag(self.sign * log_s.exp())
            w = self.perm @ l @ u
            n = w.shape[0]
            return F.conv2d(x, w.view(n, n, 1, 1)), log_s.sum() * (x.shape[2] * x.shape[3])

    class Coupling(nn.Module):
        """Affine coupling with a channel mask and a halved conditioner: the conditioning
        half (the first unless parity) gives (s, t) for the other."""

        def __init__(self, c, parity, clamp=2.0):
            super().__init__()
            self.net = CondNet(c // 2, c // 2, 2)
            self.net.small_head_()
            self.parity, self.clamp = parity, clamp

        def forward(self, x):
            a, b = x.chunk(2, dim=1)
            if self.parity:
                a, b = b, a
            p = self.net(a)
            s = soft_clamp(p[:, 0], self.clamp)
            b = b * s.exp() + p[:, 1]
            y = torch.cat([b, a] if self.parity else [a, b], dim=1)
            return y, s.flatten(1).sum(1)

    def squeeze(x):
        b, c, h, w = x.shape
        x = x.view(b, c, h // 2, 2, w // 2, 2).permute(0, 1, 3, 5, 2, 4)
        return x.reshape(b, 4 * c, h // 2, w // 2)

    class Glow(nn.Module):
        """The image preset: variational dequantisation, then 2 scales (squeeze, 8 steps of
        ActNorm + 1x1 conv + coupling, a split-prior coupling and a factor-out on the first)."""

        def __init__(self, c=1, scales=2, steps=8, levels=256):
            super().__init__()
            self.deq = CondNet(c, c, 2)
            self.deq.small_head_()
            self.levels = levels
            self.scales = nn.ModuleList()
            for s in range(scales):
                c *= 4
                layers = nn.ModuleList()
                for i in range(steps):
                    layers.extend([ActNorm(c), InvConv1x1(c), Coupling(c, i % 2 == 1)])
                if s + 1 < scales:
                    layers.append(Coupling(c, False))  # the split prior
                    c //= 2
                self.scales.append(layers)

        def prepare(self, x):
            """Pixels in [0, 1] -> (flow input, -log q(u | k) - D ln L) per example."""
            k = torch.round(x * (self.levels - 1))
            p = self.deq(k / (self.levels - 1) - 0.5)
            mu, s = p[:, 0], soft_clamp(p[:, 1], 3.0)
            e = torch.randn_like(x)
            h = mu + s.exp() * e
            u = torch.sigmoid(h)
            per = -0.5 * e * e - 0.5 * math.log(2 * math.pi) - s + F.softplus(h) + F.softplus(-h)
            log_q = per.flatten(1).sum(1)
            d = x[0].numel()
            return (k + u) / self.levels - 0.5, -log_q - d * math.log(self.levels)

        def forward(self, x, init=False):
            h, c = self.prepare(x)
            ld = torch.zeros(x.shape[0])
            zs = []
            for i, layers in enumerate(self.scales):
                h = squeeze(h)
                for layer in layers:
                    if init and isinstance(layer, ActNorm):
                        layer.data_init_(h)
                    h, l = layer(h)
                    ld = ld + l
                if i + 1 < len(self.scales):
                    h, out = h.chunk(2, dim=1)
                    zs.append(out.flatten(1))
            zs.append(h.flatten(1))
            z = torch.cat(zs, dim=1)
            log_pz = -0.5 * (z * z).sum(1) - 0.5 * z.shape[1] * math.log(2 * math.pi)
            return -(log_pz + ld + c).mean()

    class Block(nn.Module):
        """genlab-nn transformer.rs, pre-norm: x + out(attn(ln1 x)), x + fc2(gelu(fc1(ln2 x)))."""

        def __init__(self, dim, heads):
            super().__init__()
            self.heads = heads
            self.ln1, self.ln2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
            self.qkv, self.out = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)
            self.fc1, self.fc2 = nn.Linear(dim, 4 * dim), nn.Linear(4 * dim, dim)

        def forward(self, x, causal=False):
            b, n, c = x.shape
            q, k, v = self.qkv(self.ln1(x)).view(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
            a = F.scaled_dot_product_attention(q, k, v, is_causal=causal)
            x = x + self.out(a.transpose(1, 2).reshape(b, n, c))
            return x + self.fc2(F.gelu(self.fc1(self.ln2(x))))

    class Clip(nn.Module):
        """genlab-models clip/mod.rs with the MNIST preset (ClipConfig::default())."""

        def __init__(self, width_img=96, layers_img=4, width_txt=64, layers_txt=3, heads=4,
                     vocab=49408, context=32, embed=64, patch=7):
            super().__init__()
            self.patch = patch
            n = (28 // patch) ** 2
            self.patch_embed = nn.Linear(patch * patch, width_img, bias=False)
            self.class_token = nn.Parameter(0.02 * torch.randn(width_img))
            self.pos_img = nn.Parameter(0.02 * torch.randn(n + 1, width_img))
            self.ln_pre, self.ln_post = nn.LayerNorm(width_img), nn.LayerNorm(width_img)
            self.vblocks = nn.ModuleList([Block(width_img, heads) for _ in range(layers_img)])
            self.token_embed = nn.Parameter(0.02 * torch.randn(vocab, width_txt))
            self.pos_txt = nn.Parameter(0.01 * torch.randn(context, width_txt))
            self.tblocks = nn.ModuleList([Block(width_txt, heads) for _ in range(layers_txt)])
            self.ln_final = nn.LayerNorm(width_txt)
            self.visual_proj = nn.Parameter(width_img ** -0.5 * torch.randn(width_img, embed))
            self.text_proj = nn.Parameter(width_txt ** -0.5 * torch.randn(width_txt, embed))
            self.logit_scale = nn.Parameter(torch.tensor([math.log(1 / 0.07)]))

        def forward(self, x, ids, eot):
            b, p = x.shape[0], self.patch
            patches = x.unfold(2, p, p).unfold(3, p, p).reshape(b, 1, -1, p * p).squeeze(1)
            z = torch.cat([self.class_token.expand(b, 1, -1), self.patch_embed(patches)], 1)
            z = self.ln_pre(z + self.pos_img)
            for blk in self.vblocks:
                z = blk(z)
            img = self.ln_post(z[:, 0]) @ self.visual_proj
            n = ids.shape[1]
            t = self.token_embed[ids] + self.pos_txt[:n]
            for blk in self.tblocks:
                t = blk(t, causal=True)
            txt = self.ln_final(t)[torch.arange(b), eot] @ self.text_proj
            img, txt = F.normalize(img, dim=-1), F.normalize(txt, dim=-1)
            logits = self.logit_scale.clamp(0, math.log(100)).exp() * img @ txt.t()
            target = torch.arange(b)
            return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.t(), target))

    def sincos_1d(pos, dim):
        """DiT / MAE get_1d_sincos_pos_embed_from_grid: [len(pos), dim], sin then cos (f64)."""
        omega = 10000.0 ** (-torch.arange(dim // 2, dtype=torch.float64) / (dim // 2))
        a = pos.to(torch.float64)[:, None] * omega[None]
        return torch.cat([a.sin(), a.cos()], 1)

    class DitBlockTorch(nn.Module):
        """genlab-nn dit.rs DitBlock (joint attention, no cross-attention): adaLN-Zero."""

        def __init__(self, d, heads, mlp_ratio):
            super().__init__()
            self.heads = heads
            self.ada = nn.Linear(d, 6 * d)
            self.qkv, self.out = nn.Linear(d, 3 * d), nn.Linear(d, d)
            self.fc1, self.fc2 = nn.Linear(d, mlp_ratio * d), nn.Linear(mlp_ratio * d, d)

        def forward(self, x, c_act):
            b, n, d = x.shape
            sa, ca, ga, sm, cm, gm = self.ada(c_act)[:, None].chunk(6, dim=-1)
            h = F.layer_norm(x, (d,), eps=1e-6) * (1 + ca) + sa
            q, k, v = self.qkv(h).view(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
            a = F.scaled_dot_product_attention(q, k, v)
            x = x + ga * self.out(a.transpose(1, 2).reshape(b, n, d))
            h = F.layer_norm(x, (d,), eps=1e-6) * (1 + cm) + sm
            return x + gm * self.fc2(F.gelu(self.fc1(h), approximate="tanh"))

    class DitTorch(nn.Module):
        """genlab-nn dit.rs Dit for images [C, H, W] or videos [T, C, H, W] (tubelets, joint
        attention), sine-cosine positions, no cross-attention; `extra` [B, D] is added to the
        time embedding (the DDPM's class embedding). genlab's initialisation: Xavier-uniform
        transformer weights with zero biases, N(0, 0.02^2) timestep MLP, zero adaLN and output
        layers."""

        def __init__(self, shape, width, depth, heads, patch, tubelet=1, mlp_ratio=4, freq_dim=256):
            super().__init__()
            self.shape, self.p, self.tub, self.freq_dim = list(shape), patch, tubelet, freq_dim
            t, c, h, w = ([1] + self.shape)[-4:]
            gt, gh, gw = t // tubelet, h // patch, w // patch
            self.grid, d = (gt, gh, gw), width
            rows = sincos_1d(torch.arange(gh), d // 2)
            cols = sincos_1d(torch.arange(gw), d // 2)
            space = torch.cat([cols[None, :, :].expand(gh, gw, d // 2),
                               rows[:, None, :].expand(gh, gw, d // 2)], -1).reshape(gh * gw, d)
            pos = space[None].expand(gt, gh * gw, d)
            if gt > 1:
                pos = pos + sincos_1d(torch.arange(gt), d)[:, None, :]
            self.register_buffer("pos", pos.reshape(gt * gh * gw, d).float())
            k = tubelet * c * patch * patch
            self.x_embed = nn.Linear(k, d)
            self.t_lin1, self.t_lin2 = nn.Linear(freq_dim, d), nn.Linear(d, d)
            self.blocks = nn.ModuleList(DitBlockTorch(d, heads, mlp_ratio) for _ in range(depth))
            self.final_ada, self.final_linear = nn.Linear(d, 2 * d), nn.Linear(d, k)
            with torch.no_grad():
                for m in self.modules():
                    if isinstance(m, nn.Linear):
                        nn.init.xavier_uniform_(m.weight)
                        nn.init.zeros_(m.bias)
                for m in (self.t_lin1, self.t_lin2):
                    m.weight.normal_(0.0, 0.02)
                for m in [blk.ada for blk in self.blocks] + [self.final_ada, self.final_linear]:
                    nn.init.zeros_(m.weight)

        def forward(self, x, t, extra=None):
            b, p, tub = x.shape[0], self.p, self.tub
            t_, c, h, w = ([1] + list(x.shape[1:]))[-4:]
            gt, gh, gw = self.grid
            # [B, (T,) C, H, W] -> [B gt, tub C, gh, p, gw, p] -> [B, gt gh gw, tub C p p]
            tok = x.reshape(b * gt, tub * c, gh, p, gw, p).permute(0, 2, 4, 1, 3, 5)
            z = self.x_embed(tok.reshape(b, gt * gh * gw, tub * c * p * p)) + self.pos
            half = self.freq_dim // 2
            freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float64) / half)
            a = t.to(torch.float64)[:, None] * freqs[None]
            temb = torch.cat([a.cos(), a.sin()], 1).float()
            cvec = self.t_lin2(F.silu(self.t_lin1(temb)))
            if extra is not None:
                cvec = cvec + extra
            c_act = F.silu(cvec)
            for blk in self.blocks:
                z = blk(z, c_act)
            d = z.shape[-1]
            shift, scale = self.final_ada(c_act)[:, None].chunk(2, dim=-1)
            out = self.final_linear(F.layer_norm(z, (d,), eps=1e-6) * (1 + scale) + shift)
            # [B, gt gh gw, tub C p p] -> [B gt, tub C, gh p, gw p] -> the input's shape
            out = out.reshape(b * gt, gh, gw, tub * c, p, p).permute(0, 3, 1, 4, 2, 5)
            return out.reshape(x.shape)

    class SimClr(nn.Module):
        """genlab-labels' SimCLR (ssl/simclr.rs, ssl/nt_xent.rs) on genlab-nn's digit
        Classifier (classifier.rs) without its head; `head` is that unused classifier head."""

        def __init__(self, channels=(32, 64), features=128, projection=(128, 64), tau=0.5):
            super().__init__()
            c0, c1 = channels
            self.convs = nn.ModuleList([
                nn.Conv2d(1, c0, 3, 1, 1), nn.Conv2d(c0, c0, 3, 2, 1),
                nn.Conv2d(c0, c1, 3, 1, 1), nn.Conv2d(c1, c1, 3, 2, 1)])
            self.fc = nn.Linear(c1 * 7 * 7, features)
            self.head = nn.Linear(features, 10)
            self.projection = nn.Sequential(
                nn.Linear(features, projection[0]), nn.ReLU(),
                nn.Linear(projection[0], projection[1]))
            self.tau = tau

        def features(self, x):
            h = x * 2.0 - 1.0
            for conv in self.convs:
                h = F.relu(conv(h))
            return F.relu(self.fc(h.flatten(1)))

        def forward(self, v1, v2):
            z = torch.cat([self.projection(self.features(v)) for v in (v1, v2)])
            z = F.normalize(z, dim=1, eps=1e-6)
            n2 = z.shape[0]
            sim = (z @ z.t()) / self.tau
            sim = sim.masked_fill(torch.eye(n2, dtype=torch.bool), -1e9)
            pair = (torch.arange(n2) + n2 // 2) % n2
            return F.cross_entropy(sim, pair)

    return dict(candle_init_=candle_init_, Mlp=Mlp, ConvNet=ConvNet,
                AttentionBlock=AttentionBlock, UNet=UNet, Glow=Glow, Clip=Clip, DitTorch=DitTorch,
                SimClr=SimClr)


def simclr_views(torch, x):
    """One SimCLR view of each image of x [B, C, H, W] in [0, 1], batched: genlab's
    augment::simclr (random resized crop of 30-100% of the area at aspect 3/4-4/3, bilinear
    with pixel centres aligned and the border repeated, then with probability 0.8 contrast
    a in [0.6, 1.4] and brightness b in [-0.4, 0.4]: clamp(a (x - 0.5) + 0.5 + b, 0, 1))."""
    F = torch.nn.functional
    b, _, h, w = x.shape
    u = torch.rand(b, 7)
    area = (0.3 + 0.7 * u[:, 0]) * (h * w)
    ratio = torch.exp(math.log(0.75) + u[:, 1] * (math.log(4 / 3) - math.log(0.75)))
    ch = torch.sqrt(area / ratio).clamp(max=h)
    cw = torch.sqrt(area * ratio).clamp(max=w)
    top, left = u[:, 2] * (h - ch), u[:, 3] * (w - cw)
    theta = torch.zeros(b, 2, 3)
    theta[:, 0, 0], theta[:, 0, 2] = cw / w, (2 * left + cw) / w - 1
    theta[:, 1, 1], theta[:, 1, 2] = ch / h, (2 * top + ch) / h - 1
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    v = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    a = (0.6 + 0.8 * u[:, 5]).view(b, 1, 1, 1)
    bright = (0.8 * u[:, 6] - 0.4).view(b, 1, 1, 1)
    jittered = (a * (v - 0.5) + 0.5 + bright).clamp(0.0, 1.0)
    return torch.where((u[:, 4] < 0.8).view(b, 1, 1, 1), jittered, v)


def n_params(module):
    return sum(p.numel() for p in module.parameters())


# ----------------------------------------------------------------------------------------
# Workloads: each returns (step function, parameter count, warm-up, minimum iterations)
# ----------------------------------------------------------------------------------------


def make_workload(torch, name, sdpa=False):
    M = build_modules(torch)
    init = M["candle_init_"]
    nn_mod = torch.nn
    torch.manual_seed(0)

    def adam(params):
        return torch.optim.Adam(params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)

    def unet():
        net = init(M["UNet"](sdpa=sdpa))
        count = n_params(net)
        assert count == UNET_MNIST_PARAMS, f"U-Net has {count} parameters, genlab's has {UNET_MNIST_PARAMS}"
        return net

    if name in ("mlp", "conv"):
        shape = [512, 2] if name == "mlp" else [64, 1, 28, 28]
        x, y = torch.randn(shape), torch.randn(shape)
        net = init(M["Mlp"]() if name == "mlp" else M["ConvNet"]())
        opt = adam(net.parameters())

        def step():
            opt.zero_grad(set_to_none=True)
            loss = torch.mean((net(x) - y) ** 2)
            loss.backward()
            opt.step()

        return step, n_params(net), 3, 5

    if name == "unet-train":
        x, eps = torch.randn(32, 1, 28, 28), torch.randn(32, 1, 28, 28)
        t = torch.randint(0, 1000, (32,)).to(torch.float32)
        net = unet()
        params = list(net.parameters())
        opt = adam(params)
        ema = [p.detach().clone() for p in params]

        def step():
            opt.zero_grad(set_to_none=True)
            loss = torch.mean((net(x, t) - eps) ** 2)
            loss.backward()
            opt.step()
            with torch.no_grad():
                torch._foreach_lerp_(ema, params, 1.0 - 0.998)

        return step, n_params(net), 3, 5

    if name == "ddim50":
        x_t = torch.randn(64, 1, 28, 28)
        net = unet().eval()
        T, k = 1000, 50
        betas = [1e-4 + (0.02 - 1e-4) * i / (T - 1) for i in range(T)]  # f64, genlab's formula
        alpha_bar, acc = [], 1.0
        for b in betas:
            acc *= 1.0 - b
            alpha_bar.append(acc)
        # round half away from zero like Rust's f64::round (no ties occur here anyway)
        ts = [int(math.floor(j * (T - 1) / (k - 1) + 0.5)) for j in range(k)]
        ts = [v for i, v in enumerate(ts) if i == 0 or v != ts[i - 1]][::-1]
        pairs = [(t, alpha_bar[t], alpha_bar[ts[i + 1]] if i + 1 < len(ts) else 1.0)
                 for i, t in enumerate(ts)]
        assert len(pairs) == 50 and pairs[0][0] == 999 and pairs[-1][0] == 0
        tvecs = {t: torch.full((64,), float(t), dtype=torch.float32) for t, _, _ in pairs}

        def step():
            with torch.inference_mode():
                x = x_t
                for t, a_t, a_prev in pairs:
                    eps = net(x, tvecs[t])
                    x0 = (x - math.sqrt(1.0 - a_t) * eps) / math.sqrt(a_t)
                    x = math.sqrt(a_prev) * x0 + math.sqrt(1.0 - a_prev) * eps
            return x

        return step, n_params(net), 1, 3

    if name == "cfg-step":
        b, w, T = 64, 3.0, 1000
        x_t = torch.randn(b, 1, 28, 28)
        net = init(M["UNet"](sdpa=sdpa, num_classes=10)).eval()
        count = n_params(net)
        assert count == UNET_COND_PARAMS, f"the U-Net has {count} parameters, genlab's has {UNET_COND_PARAMS}"
        betas = [1e-4 + (0.02 - 1e-4) * i / (T - 1) for i in range(T)]
        a_t = 1.0
        for beta in betas:
            a_t *= 1.0 - beta
        # labels then null labels, one call (guidance.rs ClassifierFree)
        y = torch.cat([torch.full((b,), 3), torch.full((b,), 10)])
        t = torch.full((2 * b,), float(T - 1), dtype=torch.float32)

        def step():
            with torch.inference_mode():
                out = net(torch.cat([x_t, x_t]), t, y)
                c, u = out[:b], out[b:]
                eps = u + w * (c - u)
                x0 = (x_t - math.sqrt(1.0 - a_t) * eps) / math.sqrt(a_t)
                return x0  # the one-step grid ends at x0 (alpha_bar_prev = 1)

        return step, count, 3, 5

    if name == "xattn-unet-train":
        from diffusers import UNet2DConditionModel

        net = UNet2DConditionModel(
            in_channels=4,
            out_channels=4,
            block_out_channels=(32, 64, 64),
            down_block_types=("CrossAttnDownBlock2D",) * 3,
            up_block_types=("CrossAttnUpBlock2D",) * 3,
            layers_per_block=1,
            cross_attention_dim=64,
            attention_head_dim=4,  # diffusers' name for the number of heads in SD configs
            norm_num_groups=8,
            flip_sin_to_cos=True,
            freq_shift=0,
        ).train()
        count = n_params(net)
        assert count == XATTN_UNET_PARAMS, \
            f"the U-Net has {count} parameters, genlab's has {XATTN_UNET_PARAMS}"
        x, eps = torch.randn(32, 4, 7, 14), torch.randn(32, 4, 7, 14)
        ctx = torch.randn(32, 8, 64)
        t = torch.randint(0, 1000, (32,)).to(torch.float32)
        params = list(net.parameters())
        opt = adam(params)
        ema = [p.detach().clone() for p in params]

        def step():
            opt.zero_grad(set_to_none=True)
            loss = torch.mean((net(x, t, encoder_hidden_states=ctx).sample - eps) ** 2)
            loss.backward()
            opt.step()
            with torch.no_grad():
                torch._foreach_lerp_(ema, params, 1.0 - 0.998)

        return step, count, 3, 5

    if name in ("dit-train", "video-dit-train"):
        if name == "dit-train":
            b, shape = 32, (1, 28, 28)
            net = M["DitTorch"](shape, width=192, depth=6, heads=3, patch=4)
            emb = torch.nn.Embedding(11, 192)  # the digits and the null label, N(0, 1)
            expected = DIT_S4_COND_PARAMS
        else:
            b, shape = 16, (8, 1, 32, 32)
            net = M["DitTorch"](shape, width=128, depth=4, heads=4, patch=4, tubelet=2)
            emb = None
            expected = VIDEO_DIT_XS4_PARAMS
        net.train()
        params = list(net.parameters()) + (list(emb.parameters()) if emb is not None else [])
        count = sum(p.numel() for p in params)
        assert count == expected, f"the DiT has {count} parameters, genlab's has {expected}"
        x, eps = torch.randn(b, *shape), torch.randn(b, *shape)
        t = torch.randint(0, 1000, (b,)).to(torch.float32)
        labels = torch.randint(0, 11, (b,))
        opt = adam(params)
        ema = [p.detach().clone() for p in params]

        def step():
            opt.zero_grad(set_to_none=True)
            extra = emb(labels) if emb is not None else None
            loss = torch.mean((net(x, t, extra) - eps) ** 2)
            loss.backward()
            opt.step()
            with torch.no_grad():
                torch._foreach_lerp_(ema, params, 1.0 - 0.998)

        return step, count, 3 if name == "dit-train" else 2, 5

    if name in ("sd15-unet-step", "sd15-txt2img"):
        from diffusers import UNet2DConditionModel

        unet = UNet2DConditionModel(**SD15_UNET).eval()
        count = n_params(unet)
    if name == "sd15-unet-step":
        x, ctx = torch.randn(1, 4, 64, 64), torch.randn(1, 77, 768)
        t = torch.tensor([981.0])

        def step():
            with torch.inference_mode():
                return unet(x, t, encoder_hidden_states=ctx).sample

        return step, count, 1, 3

    if name in ("sd-vae-decode-512", "sd15-txt2img"):
        from diffusers import AutoencoderKL

        vae = AutoencoderKL(**SD_VAE).eval()
    if name == "sd-vae-decode-512":
        z = torch.randn(1, 4, 64, 64)

        def step():
            with torch.inference_mode():
                return vae.decode(z).sample

        return step, n_params(vae.decoder) + n_params(vae.post_quant_conv), 1, 3

    if name == "sd15-txt2img":
        from diffusers import DDIMScheduler

        sched = DDIMScheduler.from_config(SD15_SCHEDULER)
        ctx = torch.randn(2, 77, 768)
        x_t = torch.randn(1, 4, 64, 64)
        count += n_params(vae.decoder) + n_params(vae.post_quant_conv)

        def step():
            with torch.inference_mode():
                sched.set_timesteps(20)
                x = x_t * sched.init_noise_sigma
                for t in sched.timesteps:
                    out = unet(torch.cat([x, x]), t, encoder_hidden_states=ctx).sample
                    u, c = out.chunk(2)
                    x = sched.step(u + 7.5 * (c - u), t, x).prev_sample
                return vae.decode(x / 0.18215).sample

        return step, count, 0, 1

    if name == "attention":
        x = torch.randn(64, 64, 14, 14)
        block = init(M["AttentionBlock"](64, 1, 8, sdpa))

        def step():
            block.zero_grad(set_to_none=True)
            loss = torch.mean(block(x) ** 2)
            loss.backward()

        return step, n_params(block), 3, 5

    if name == "flow-train":
        glow = M["Glow"]()
        for m in glow.modules():  # candle's init for the hidden convs, small heads kept
            if isinstance(m, nn_mod.Conv2d) and m.out_channels == 64:
                init(m)
        count = n_params(glow)
        assert count == FLOW_MNIST_PARAMS, f"the flow has {count} parameters, genlab's has {FLOW_MNIST_PARAMS}"
        x = torch.randint(0, 256, (64, 1, 28, 28)).to(torch.float32) / 255.0
        with torch.no_grad():
            glow(x, init=True)  # ActNorm's data-dependent init, outside the timing
        opt = adam(glow.parameters())

        def step():
            opt.zero_grad(set_to_none=True)
            loss = glow(x)
            loss.backward()
            opt.step()

        return step, count, 3, 5

    if name == "clip-step":
        b, n = 256, 16
        net = init(M["Clip"]())
        x = torch.rand(b, 1, 28, 28)
        ids = torch.randint(0, 49406, (b, n))
        ids[:, 0], ids[:, -1] = 49406, 49407
        eot = torch.full((b,), n - 1)
        opt = adam(net.parameters())

        def step():
            opt.zero_grad(set_to_none=True)
            loss = net(x, ids, eot)
            loss.backward()
            opt.step()

        return step, n_params(net), 2, 5

    if name == "simclr-step":
        b = 256
        net = init(M["SimClr"]())
        count = n_params(net)
        assert count == SIMCLR_PARAMS, f"SimCLR has {count} parameters, genlab's has {SIMCLR_PARAMS}"
        x = torch.rand(b, 1, 28, 28)
        opt = adam(net.parameters())

        def step():
            opt.zero_grad(set_to_none=True)
            loss = net(simclr_views(torch, x), simclr_views(torch, x))
            loss.backward()
            opt.step()

        return step, count, 2, 5

    raise ValueError(f"unknown workload {name!r}")


def vmrss_mib():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def run_single(name, threads, min_time, sdpa):
    """Child process: run one workload, print one JSON object on stdout."""
    for var in THREAD_ENV:
        os.environ[var] = str(threads)
    import resource

    import torch

    torch.set_num_threads(threads)
    torch.set_num_interop_threads(1)

    step, params, warmup, min_iters = make_workload(torch, name, sdpa)
    rss_before = vmrss_mib()
    for _ in range(warmup):
        step()
    times = []
    start = time.perf_counter()
    while len(times) < min_iters or time.perf_counter() - start < min_time:
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    times.sort()
    n = len(times)
    median = times[n // 2]  # the upper median for even n, exactly as genlab bench takes it
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB -> MiB
    rec = {
        "impl": "pytorch",
        "version": torch.__version__,
        "workload": name,
        "threads": threads,
        "unit": "runs/s" if name in ("ddim50", "sd-vae-decode-512", "sd15-txt2img") else "steps/s",
        "rate": 1.0 / median,
        "median_s": median,
        "iters": n,
        "params": params,
        "peak_rss_mib": round(peak, 1),
        "rss_before_mib": round(rss_before, 1),
    }
    if sdpa:
        rec["variant"] = "sdpa"
    print(json.dumps(rec), flush=True)


def run_parent(args):
    names = {"all": [w for w in WORKLOADS if w not in SD_WORKLOADS],
             "sd": SD_WORKLOADS}.get(args.workload) or args.workload.split(",")
    for n in names:
        if n not in WORKLOADS:
            sys.exit(f"unknown workload {n!r}; expected one of {', '.join(WORKLOADS)} or all")
    env = dict(os.environ)
    for var in THREAD_ENV:
        env[var] = str(args.threads)
    records, failed = [], []
    for name in names:
        cmd = [sys.executable, os.path.abspath(__file__), "--single", name,
               "--threads", str(args.threads), "--min-time", str(args.min_time)]
        if args.sdpa:
            cmd.append("--sdpa")
        proc = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, text=True)
        rec = None
        for line in proc.stdout.splitlines():
            line = line.strip()
            if line.startswith("{"):
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError:
                    pass
        if proc.returncode != 0 or rec is None:
            print(f"torch_bench: workload {name} failed (exit {proc.returncode})", file=sys.stderr)
            failed.append(name)
            continue
        records.append(rec)
        if args.json:
            print(json.dumps(rec), flush=True)
    if not args.json:
        hdr = f"{'workload':<11} {'thr':>3} {'rate':>10} {'unit':<8} {'median ms':>10} " \
              f"{'iters':>5} {'params':>8} {'peak MiB':>9} {'before MiB':>10}"
        print(hdr)
        for r in records:
            print(f"{r['workload']:<11} {r['threads']:>3} {r['rate']:>10.3f} {r['unit']:<8} "
                  f"{1e3 * r['median_s']:>10.2f} {r['iters']:>5} {r['params']:>8} "
                  f"{r['peak_rss_mib']:>9.1f} {r['rss_before_mib']:>10.1f}")
        if records:
            print(f"(pytorch {records[0]['version']})")
    if failed:
        sys.exit(1)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--workload", default="all",
                    help=f"all, or one (or a comma-separated list) of {', '.join(WORKLOADS)}")
    ap.add_argument("--min-time", type=float, default=5.0)
    ap.add_argument("--json", action="store_true", help="one JSON object per line")
    ap.add_argument("--sdpa", action="store_true",
                    help="use F.scaled_dot_product_attention instead of bmm/softmax/bmm "
                         "(not genlab's formulation; for reference only)")
    ap.add_argument("--single", metavar="NAME", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.threads < 1:
        sys.exit("--threads must be at least 1")
    if args.single:
        if args.single not in WORKLOADS:
            sys.exit(f"unknown workload {args.single!r}")
        run_single(args.single, args.threads, args.min_time, args.sdpa)
    else:
        run_parent(args)


if __name__ == "__main__":
    main()
