"""Tiny Stable Diffusion pipelines in diffusers' folder layout, with reference outputs, for
crates/genlab-models/src/pretrained/sd.rs (test: crates/genlab-models/tests/sd_pipeline.rs).

No real Stable Diffusion weights can be downloaded here, so the loader is proven on tiny
random networks saved in the exact upstream layouts. Two pipelines, built with random weights
(seeded; every parameter the default initialisation leaves constant, the norms and zero biases,
gets N(0, 0.1^2) added so that each one matters):

  sd1: Stable Diffusion 1.x's arrangement. UNet2DConditionModel (two levels 8, 16;
       CrossAttnDownBlock2D + DownBlock2D; 1x1-conv projections; 2 heads; context 16),
       AutoencoderKL (two levels 8, 16: f = 2; 4 latent channels; scaling_factor 0.18215),
       CLIPTextModel (2 layers, width 16, quick_gelu), a CLIP tokenizer whose vocabulary is
       CLIP's real byte alphabet plus its first 300 merges (pad token <|endoftext|>), and SD
       1.5's scheduler_config.json (PNDM, scaled_linear 0.00085..0.012, steps_offset 1,
       set_alpha_to_one false; no timestep_spacing key, as in the real file). All float32.
  sd2: Stable Diffusion 2.x's options. v_prediction, "trailing" spacing, linear projections,
       heads per level (2, 4), upcast_attention, gelu text encoder, pad token "!", and the
       U-Net and VAE saved in float16 (the `fp16` files real checkpoints ship).

Each folder is written with `save_pretrained` and read back with
`StableDiffusionPipeline.from_pretrained(..., torch_dtype=float32)`; the references come from
the pipeline as read back (float16 files are upcast, as genlab does). For each pipeline and
each scheduler (DDIMScheduler, EulerDiscreteScheduler, DPMSolverMultistepScheduler, each
`from_config` of the folder's scheduler, as users swap them) a 4-step txt2img at guidance 3
on two prompts (second: a negative prompt), with fixed initial latents, is recorded, plus the
components on their own: token ids, the text encoder's last hidden state, one U-Net call, the
VAE's posterior mean and a decode. Writes, under crates/genlab-models/tests/fixtures/sd/:
  sd1/, sd2/           the pipeline folders (model_index.json, unet/, vae/, text_encoder/,
                       tokenizer/, scheduler/)
  sd1_io.safetensors, sd2_io.safetensors   inputs and outputs (names in `reference`)
  sd1_single.safetensors, sd2_single.safetensors  the weights in the original (CompVis
                       LDM / Stability) single-file layout (`model.diffusion_model.*`,
                       `first_stage_model.*`, and `cond_stage_model.transformer.*` for 1.x,
                       OpenCLIP's `cond_stage_model.model.*` for 2.x), written from this
                       script's own name table and checked against diffusers' converters
  cases.json           prompts, guidance, steps, sizes, versions

Usage:  .venv/bin/python scripts/reference/sd_pipeline_fixture.py
Pinned: diffusers==0.42.1, transformers==5.25.0, torch==2.15.0 (scripts/requirements.txt).
"""
import gzip
import json
import os
import pathlib
import shutil

import diffusers
import numpy as np
import open_clip
import torch
import transformers
from diffusers import (
    AutoencoderKL,
    DDIMScheduler,
    DPMSolverMultistepScheduler,
    EulerDiscreteScheduler,
    PNDMScheduler,
    StableDiffusionPipeline,
    UNet2DConditionModel,
)
from safetensors.torch import save_file
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

OUT = pathlib.Path(__file__).resolve().parents[2] / "crates/genlab-models/tests/fixtures/sd"
MERGES = 300
STEPS = 4
GUIDANCE = 3.0
SIZE = 16  # image side; latents 8x8 (f = 2)
PROMPTS = ["a red square on a blue field", "two cats"]
NEGATIVE = ["", "blurry"]
SCHEDULERS = {
    "ddim": DDIMScheduler,
    "euler": EulerDiscreteScheduler,
    "dpm++2m": DPMSolverMultistepScheduler,
}


def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(
        range(ord("®"), ord("ÿ") + 1)
    )
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return [chr(c) for c in cs]


def write_tokenizer_files(d):
    """vocab.json + merges.txt: CLIP's byte alphabet and its first MERGES merges."""
    path = os.path.join(os.path.dirname(open_clip.__file__), "bpe_simple_vocab_16e6.txt.gz")
    lines = gzip.open(path).read().decode("utf-8").split("\n")
    merges = [tuple(m.split()) for m in lines[1 : 1 + MERGES]]
    alphabet = bytes_to_unicode()
    vocab = alphabet + [a + "</w>" for a in alphabet] + ["".join(m) for m in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    d.mkdir(parents=True, exist_ok=True)
    (d / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(vocab)}))
    (d / "merges.txt").write_text("#version: 0.2\n" + "\n".join(" ".join(m) for m in merges) + "\n")
    return len(vocab)


def perturb(module, gen):
    with torch.no_grad():
        for p in module.parameters():
            if p.numel() == 1 or float(p.std()) == 0.0:
                p.add_(0.1 * torch.randn(p.shape, generator=gen))


def build(name, gen):
    sd2 = name == "sd2"
    tmp = OUT / f"_{name}_tok"
    vocab_size = write_tokenizer_files(tmp)
    tok = CLIPTokenizer(
        vocab_file=str(tmp / "vocab.json"),
        merges_file=str(tmp / "merges.txt"),
        pad_token="!" if sd2 else "<|endoftext|>",
        model_max_length=77,
    )
    text = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=vocab_size,
            hidden_size=16,
            intermediate_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            max_position_embeddings=77,
            hidden_act="gelu" if sd2 else "quick_gelu",
            projection_dim=16,
            bos_token_id=vocab_size - 2,
            eos_token_id=vocab_size - 1 if sd2 else 2,
            pad_token_id=1,
        )
    )
    unet = UNet2DConditionModel(
        sample_size=SIZE // 2,
        in_channels=4,
        out_channels=4,
        layers_per_block=1,
        block_out_channels=(8, 16),
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=16,
        attention_head_dim=(2, 4) if sd2 else 2,
        use_linear_projection=sd2,
        upcast_attention=sd2,
        norm_num_groups=4,
    )
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
        block_out_channels=(8, 16),
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=4,
        sample_size=SIZE,
    )
    for m in (text, unet, vae):
        perturb(m, gen)
    sched = PNDMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        num_train_timesteps=1000,
        set_alpha_to_one=False,
        skip_prk_steps=True,
        steps_offset=1,
        prediction_type="v_prediction" if sd2 else "epsilon",
        timestep_spacing="trailing" if sd2 else "leading",
    )
    pipe = StableDiffusionPipeline(
        vae=vae,
        text_encoder=text,
        tokenizer=tok,
        unet=unet,
        scheduler=sched,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    d = OUT / name
    shutil.rmtree(d, ignore_errors=True)
    if sd2:
        # Real SD 2.x repositories ship float16 weights: save the U-Net and VAE so.
        pipe.unet.to(torch.float16)
        pipe.vae.to(torch.float16)
    pipe.save_pretrained(d, safe_serialization=True)
    # Real SD repositories ship the tokenizer as vocab.json + merges.txt (+ the special
    # tokens); transformers 5 writes tokenizer.json instead. Keep the upstream files only.
    tok_dir = d / "tokenizer"
    (tok_dir / "tokenizer.json").unlink()
    for f in ["vocab.json", "merges.txt"]:
        shutil.copy(tmp / f, tok_dir / f)
    (tok_dir / "special_tokens_map.json").write_text(
        json.dumps(
            {
                "bos_token": "<|startoftext|>",
                "eos_token": "<|endoftext|>",
                "pad_token": "!" if sd2 else "<|endoftext|>",
                "unk_token": "<|endoftext|>",
            },
            indent=2,
        )
    )
    shutil.rmtree(tmp)
    if not sd2:
        # SD 1.5's scheduler_config.json as published (no timestep_spacing or
        # prediction_type key: the PNDM defaults "leading" and "epsilon" apply).
        cfg = {
            "_class_name": "PNDMScheduler",
            "_diffusers_version": "0.6.0",
            "beta_end": 0.012,
            "beta_schedule": "scaled_linear",
            "beta_start": 0.00085,
            "num_train_timesteps": 1000,
            "set_alpha_to_one": False,
            "skip_prk_steps": True,
            "steps_offset": 1,
            "trained_betas": None,
            "clip_sample": False,
        }
        (d / "scheduler" / "scheduler_config.json").write_text(json.dumps(cfg, indent=2))
    return d


@torch.no_grad()
def references(name, d, gen):
    pipe = StableDiffusionPipeline.from_pretrained(
        d, torch_dtype=torch.float32, safety_checker=None, requires_safety_checker=False
    )
    pipe.set_progress_bar_config(disable=True)
    ref = {}
    ids = pipe.tokenizer(
        PROMPTS + NEGATIVE, padding="max_length", max_length=77, truncation=True,
        return_tensors="pt",
    ).input_ids
    ref["ids"] = ids.to(torch.int64)
    ref["text_hidden"] = pipe.text_encoder(ids)[0]
    # One U-Net call on the text states.
    sample = torch.randn((2, 4, SIZE // 2, SIZE // 2), generator=gen)
    t = torch.tensor([999.0, 250.0])
    ctx = ref["text_hidden"][:2]
    ref["unet_sample"], ref["unet_t"] = sample, t
    ref["unet_out"] = pipe.unet(sample, t, encoder_hidden_states=ctx).sample
    # VAE on its own.
    image = torch.rand((2, 3, SIZE, SIZE), generator=gen)
    ref["vae_image"] = image
    ref["vae_mean"] = pipe.vae.encode(image * 2 - 1).latent_dist.mean
    ref["vae_decoded"] = pipe.vae.decode(ref["vae_mean"]).sample
    latents = torch.randn((2, 4, SIZE // 2, SIZE // 2), generator=gen)
    ref["latents"] = latents
    base = pipe.scheduler.config
    for key, cls in SCHEDULERS.items():
        pipe.scheduler = cls.from_config(base)
        # diffusers scales the initial latents by init_noise_sigma inside the pipeline.
        out = pipe(
            prompt=PROMPTS,
            negative_prompt=NEGATIVE,
            num_inference_steps=STEPS,
            guidance_scale=GUIDANCE,
            height=SIZE,
            width=SIZE,
            latents=latents.clone(),
            output_type="np",
        ).images
        ref[f"image_{key}"] = torch.from_numpy(np.ascontiguousarray(out))  # [B, H, W, 3]
    ref = {k: v.contiguous().to(torch.int64 if k == "ids" else torch.float32) for k, v in ref.items()}
    save_file(ref, OUT / f"{name}_io.safetensors")


def ldm_names(cfg_unet, cfg_vae):
    """diffusers name prefix -> original LDM (CompVis) prefix, written from the LDM code's
    module tree (ldm/modules/diffusionmodules/openaimodel.py and model.py), with the
    sub-renames of each kind of block. Independent of genlab's Rust table; checked below
    against diffusers' own LDM -> diffusers converters."""
    pairs = []  # (diffusers prefix, ldm prefix, kind)
    levels = len(cfg_unet["block_out_channels"])
    n = cfg_unet["layers_per_block"]
    cross = [b.startswith("CrossAttn") for b in cfg_unet["down_block_types"]]
    u = "model.diffusion_model."
    pairs += [("time_embedding.linear_1", u + "time_embed.0", "same"),
              ("time_embedding.linear_2", u + "time_embed.2", "same"),
              ("conv_in", u + "input_blocks.0.0", "same"),
              ("conv_norm_out", u + "out.0", "same"), ("conv_out", u + "out.2", "same")]
    for i in range(levels):
        for j in range(n):
            k = 1 + i * (n + 1) + j
            pairs.append((f"down_blocks.{i}.resnets.{j}", u + f"input_blocks.{k}.0", "unet_res"))
            if cross[i]:
                pairs.append((f"down_blocks.{i}.attentions.{j}", u + f"input_blocks.{k}.1", "same"))
        if i < levels - 1:
            k = 1 + i * (n + 1) + n
            pairs.append((f"down_blocks.{i}.downsamplers.0.conv", u + f"input_blocks.{k}.0.op", "same"))
    pairs += [("mid_block.resnets.0", u + "middle_block.0", "unet_res"),
              ("mid_block.attentions.0", u + "middle_block.1", "same"),
              ("mid_block.resnets.1", u + "middle_block.2", "unet_res")]
    for i in range(levels):
        c = cross[levels - 1 - i]
        for j in range(n + 1):
            k = i * (n + 1) + j
            pairs.append((f"up_blocks.{i}.resnets.{j}", u + f"output_blocks.{k}.0", "unet_res"))
            if c:
                pairs.append((f"up_blocks.{i}.attentions.{j}", u + f"output_blocks.{k}.1", "same"))
        if i < levels - 1:
            k = i * (n + 1) + n
            pairs.append((f"up_blocks.{i}.upsamplers.0.conv", u + f"output_blocks.{k}.{2 if c else 1}.conv", "same"))
    unet = pairs
    v = "first_stage_model."
    L = len(cfg_vae["block_out_channels"])
    m = cfg_vae["layers_per_block"]
    pairs = [("quant_conv", v + "quant_conv", "same"), ("post_quant_conv", v + "post_quant_conv", "same")]
    for side in ["encoder", "decoder"]:
        pairs += [(f"{side}.conv_in", v + f"{side}.conv_in", "same"),
                  (f"{side}.conv_out", v + f"{side}.conv_out", "same"),
                  (f"{side}.conv_norm_out", v + f"{side}.norm_out", "same"),
                  (f"{side}.mid_block.resnets.0", v + f"{side}.mid.block_1", "vae_res"),
                  (f"{side}.mid_block.resnets.1", v + f"{side}.mid.block_2", "vae_res"),
                  (f"{side}.mid_block.attentions.0", v + f"{side}.mid.attn_1", "vae_attn")]
    for i in range(L):
        for j in range(m):
            pairs.append((f"encoder.down_blocks.{i}.resnets.{j}", v + f"encoder.down.{i}.block.{j}", "vae_res"))
        if i < L - 1:
            pairs.append((f"encoder.down_blocks.{i}.downsamplers.0.conv", v + f"encoder.down.{i}.downsample.conv", "same"))
        b = L - 1 - i
        for j in range(m + 1):
            pairs.append((f"decoder.up_blocks.{i}.resnets.{j}", v + f"decoder.up.{b}.block.{j}", "vae_res"))
        if i < L - 1:
            pairs.append((f"decoder.up_blocks.{i}.upsamplers.0.conv", v + f"decoder.up.{b}.upsample.conv", "same"))
    return unet, pairs


SUB = {
    "unet_res": [("norm1", "in_layers.0"), ("conv1", "in_layers.2"), ("time_emb_proj", "emb_layers.1"),
                 ("norm2", "out_layers.0"), ("conv2", "out_layers.3"), ("conv_shortcut", "skip_connection")],
    "vae_res": [("conv_shortcut", "nin_shortcut")],
    "vae_attn": [("group_norm", "norm"), ("to_q", "q"), ("to_k", "k"), ("to_v", "v"), ("to_out.0", "proj_out")],
}


def to_ldm(state, pairs):
    out = {}
    for key, t in state.items():
        for dp, lp, kind in pairs:
            if key.startswith(dp + "."):
                rest = key[len(dp) + 1:]
                for a, b in SUB.get(kind, []):
                    if rest.startswith(a + "."):
                        rest = b + rest[len(a):]
                        break
                if kind == "vae_attn" and t.dim() == 2:
                    t = t[:, :, None, None]  # LDM's attention projections are 1x1 convs
                out[lp + "." + rest] = t.contiguous()
                break
        else:
            raise KeyError(f"no LDM name for {key}")
    return out


def open_clip_layout(text, gen):
    """SD 2.x's text encoder as the original checkpoint stores it: OpenCLIP's names under
    cond_stage_model.model., q/k/v packed into in_proj, and one more residual block than
    diffusers keeps (SD 2.x reads the penultimate layer, so the last block is unused: random
    here, dropped by every loader)."""
    p = "cond_stage_model.model."
    sd = {("" if k.startswith("text_model.") else "text_model.") + k: v for k, v in text.state_dict().items()}
    out = {
        p + "token_embedding.weight": sd["text_model.embeddings.token_embedding.weight"],
        p + "positional_embedding": sd["text_model.embeddings.position_embedding.weight"],
        p + "ln_final.weight": sd["text_model.final_layer_norm.weight"],
        p + "ln_final.bias": sd["text_model.final_layer_norm.bias"],
    }
    n = text.config.num_hidden_layers
    width = text.config.hidden_size
    for i in range(n + 1):
        r = f"{p}transformer.resblocks.{i}."
        if i < n:
            h = f"text_model.encoder.layers.{i}."
            get = lambda k: sd[h + k]
        else:
            get = lambda k: torch.randn(sd["text_model.encoder.layers.0." + k].shape, generator=gen)
        out[r + "attn.in_proj_weight"] = torch.cat([get(f"self_attn.{q}_proj.weight") for q in "qkv"])
        out[r + "attn.in_proj_bias"] = torch.cat([get(f"self_attn.{q}_proj.bias") for q in "qkv"])
        for a, b in [("attn.out_proj", "self_attn.out_proj"), ("ln_1", "layer_norm1"),
                     ("ln_2", "layer_norm2"), ("mlp.c_fc", "mlp.fc1"), ("mlp.c_proj", "mlp.fc2")]:
            out[r + a + ".weight"] = get(b + ".weight")
            out[r + a + ".bias"] = get(b + ".bias")
    out[p + "text_projection"] = torch.randn((width, width), generator=gen)
    out[p + "logit_scale"] = torch.tensor(4.6052)
    return {k: v.contiguous() for k, v in out.items()}


@torch.no_grad()
def single_file(name, d, gen):
    """The pipeline's weights in the original single-file layout, verified against diffusers'
    converters (LDM -> diffusers must give back every tensor exactly)."""
    from diffusers.loaders import single_file_utils as sfu

    pipe = StableDiffusionPipeline.from_pretrained(d, torch_dtype=torch.float32, safety_checker=None)
    unet_pairs, vae_pairs = ldm_names(dict(pipe.unet.config), dict(pipe.vae.config))
    ckpt = {}
    ckpt.update(to_ldm(pipe.unet.state_dict(), unet_pairs))
    ckpt.update(to_ldm(pipe.vae.state_dict(), vae_pairs))
    if name == "sd1":
        for k, t in pipe.text_encoder.state_dict().items():
            ckpt["cond_stage_model.transformer." + k] = t.contiguous()
    else:
        ckpt.update(open_clip_layout(pipe.text_encoder, gen))
    back = sfu.convert_ldm_unet_checkpoint(ckpt, dict(pipe.unet.config))
    ref = pipe.unet.state_dict()
    assert back.keys() == ref.keys(), set(back) ^ set(ref)
    assert all(torch.equal(back[k], ref[k]) for k in ref)
    back = sfu.convert_ldm_vae_checkpoint(ckpt, dict(pipe.vae.config))
    ref = pipe.vae.state_dict()
    assert back.keys() == ref.keys(), set(back) ^ set(ref)
    assert all(torch.equal(back[k], ref[k]) for k in ref)
    bare = lambda m: {k.removeprefix("text_model."): v for k, v in m.items()}
    ref = bare(pipe.text_encoder.state_dict())
    if name == "sd1":
        back = sfu.convert_ldm_clip_checkpoint(ckpt)
        back = {k.removeprefix("cond_stage_model.transformer."): v for k, v in back.items()}
    else:
        back = sfu.convert_open_clip_checkpoint(pipe.text_encoder, ckpt)
    back = bare(back)
    missing = [k for k in ref if k not in back and not k.endswith("position_ids")]
    assert not missing, missing
    assert all(torch.equal(back[k], ref[k]) for k in ref if k in back)
    save_file(ckpt, OUT / f"{name}_single.safetensors", metadata={"format": "pt"})


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    gen = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    for name in ["sd1", "sd2"]:
        d = build(name, gen)
        references(name, d, gen)
        single_file(name, d, gen)
    cases = {
        "prompts": PROMPTS,
        "negative": NEGATIVE,
        "steps": STEPS,
        "guidance": GUIDANCE,
        "size": SIZE,
        "schedulers": list(SCHEDULERS),
        "versions": {
            "diffusers": diffusers.__version__,
            "transformers": transformers.__version__,
            "torch": torch.__version__,
        },
    }
    (OUT / "cases.json").write_text(json.dumps(cases, indent=2) + "\n")
    total = sum(p.stat().st_size for p in OUT.rglob("*") if p.is_file())
    print(f"wrote {OUT} ({total / 1e3:.0f} kB)")


if __name__ == "__main__":
    main()
