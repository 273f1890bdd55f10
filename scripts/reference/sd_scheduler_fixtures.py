"""Whole-run and per-step parity fixtures for genlab samplers configured from Stable
Diffusion scheduler JSONs (`genlab_sampling::scheduler_json`), produced by diffusers.

Writes crates/genlab-sampling/tests/fixtures/sd_scheduler_parity.json, replayed by
crates/genlab-sampling/tests/parity_scheduler_json.rs.

Usage (from the repository root; scripts/setup-python.sh makes .venv from
scripts/requirements.txt):
    .venv/bin/python scripts/reference/sd_scheduler_fixtures.py

For each scheduler JSON below (SD 1.5's verbatim; SD 2.x's v-prediction one with a
"trailing" and with a "leading" spacing) and each of 4, 7 and 20 steps, every diffusers
scheduler genlab maps onto (DDIM, DDPM, Euler, Euler-ancestral, Heun, DPM-Solver++(2M)) is
built with `Scheduler.from_config(json)` exactly as a user would swap schedulers on a
pipeline, and run from the same x_T (latents = x_T * init_noise_sigma, as the pipelines do)
with the fake network of scripts/reference/sampler_parity_fixtures.py:
    out(x, t) = 0.5 * x * t / T + 0.1
(read as eps or v according to prediction_type), where x is what the scheduler feeds the
network (after `scale_model_input`) and t the timestep it passes. Noise of the stochastic
schedulers is injected from a seeded list. Per step the fixture keeps the timestep, sigma,
the sample going in, the noise and the sample coming out; the last x_out is the run's result.
"""

import json
import os
import sys

import numpy as np
import torch
import diffusers
from diffusers import (
    DDIMScheduler,
    DDPMScheduler,
    DPMSolverMultistepScheduler,
    EulerAncestralDiscreteScheduler,
    EulerDiscreteScheduler,
    HeunDiscreteScheduler,
)
from diffusers.schedulers import scheduling_ddpm, scheduling_euler_ancestral_discrete

SEED = 0
SHAPE = (2, 3)
STEPS = [4, 7, 20]
OUT = os.path.join(
    os.path.dirname(os.path.abspath(__file__)),
    "..", "..", "crates", "genlab-sampling", "tests", "fixtures", "sd_scheduler_parity.json",
)

# runwayml/stable-diffusion-v1-5, scheduler/scheduler_config.json (verbatim).
SD15 = {
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
# stabilityai/stable-diffusion-2-1 (768, v-prediction) style, with an explicit spacing.
SD2_V_TRAILING = dict(SD15, _class_name="DDIMScheduler", prediction_type="v_prediction",
                      timestep_spacing="trailing")
SD2_V_LEADING = dict(SD15, _class_name="EulerDiscreteScheduler", prediction_type="v_prediction",
                     timestep_spacing="leading")
CONFIGS = {"sd15": SD15, "sd2_v_trailing": SD2_V_TRAILING, "sd2_v_leading": SD2_V_LEADING}

gen = torch.Generator().manual_seed(SEED)
X_T = torch.randn(SHAPE, generator=gen, dtype=torch.float32)
NOISE = [torch.randn(SHAPE, generator=gen, dtype=torch.float32) for _ in range(64)]
T = 1000


def fake_model(x, t):
    return 0.5 * x * float(t) / T + 0.1


class InjectedNoise:
    """Replaces a scheduler module's randn_tensor with the fixed NOISE list, in order."""

    def __init__(self, module):
        self.module, self.i, self.last = module, 0, None

    def __enter__(self):
        self.orig = self.module.randn_tensor

        def fake(shape, **_kw):
            assert tuple(shape) == SHAPE, shape
            self.last = NOISE[self.i].clone()
            self.i += 1
            return self.last.clone()

        self.module.randn_tensor = fake
        return self

    def take(self):
        z, self.last = self.last, None
        return z

    def __exit__(self, *exc):
        self.module.randn_tensor = self.orig


def vec(t):
    return None if t is None else [float(v) for v in t.flatten().tolist()]


def rec(**kw):
    return {k: (vec(v) if isinstance(v, torch.Tensor) else v) for k, v in kw.items()}


def run_discrete(cls, cfg, n, module=None):
    """DDIM / DDPM: x is fed to the network unscaled; noise injected for DDPM."""
    s = cls.from_config(cfg)
    s.set_timesteps(n)
    x, steps = X_T * s.init_noise_sigma, []
    inj = InjectedNoise(module) if module else None
    if inj:
        inj.__enter__()
    try:
        for t in s.timesteps:
            t = int(t)
            out = s.step(fake_model(x, t), t, x).prev_sample
            steps.append(rec(t=t, x_in=x, noise=inj.take() if inj else None, x_out=out))
            x = out
    finally:
        if inj:
            inj.__exit__()
    return dict(init_noise_sigma=float(s.init_noise_sigma), steps=steps,
                final_alpha_cumprod=float(getattr(s, "final_alpha_cumprod", torch.tensor(1.0))))


def run_sigma(cls, cfg, n, module=None):
    """Euler / Euler-ancestral / DPM-Solver++: one scheduler call per step."""
    s = cls.from_config(cfg)
    s.set_timesteps(n)
    x, steps = X_T * s.init_noise_sigma, []
    inj = InjectedNoise(module) if module else None
    if inj:
        inj.__enter__()
    try:
        for i, t in enumerate(s.timesteps):
            sigma, sigma_next = float(s.sigmas[i]), float(s.sigmas[i + 1])
            x_in = x
            out = s.step(fake_model(s.scale_model_input(x, t), t), t, x).prev_sample
            steps.append(rec(t=float(t), sigma=sigma, sigma_next=sigma_next, x_in=x_in,
                             noise=inj.take() if inj else None, x_out=out))
            x = out
    finally:
        if inj:
            inj.__exit__()
    return dict(init_noise_sigma=float(s.init_noise_sigma), steps=steps)


def run_heun(cfg, n):
    s = HeunDiscreteScheduler.from_config(cfg)
    s.set_timesteps(n)
    x, steps, start = X_T * s.init_noise_sigma, [], None
    for k, t in enumerate(s.timesteps):
        if s.state_in_first_order:
            i = s.step_index if s.step_index is not None else 0
            start = dict(t=float(t), sigma=float(s.sigmas[i]), sigma_next=float(s.sigmas[i + 1]), x_in=x)
        x = s.step(fake_model(s.scale_model_input(x, t), t), t, x).prev_sample
        if s.state_in_first_order or k + 1 == len(s.timesteps):
            steps.append(rec(**start, noise=None, x_out=x))
    # The second-order call of each step runs at the next step's timestep.
    return dict(init_noise_sigma=float(s.init_noise_sigma), steps=steps)


def main():
    torch.set_num_threads(1)
    runs = {}
    for cname, cfg in CONFIGS.items():
        for n in STEPS:
            runs[f"{cname}/ddim/{n}"] = run_discrete(DDIMScheduler, cfg, n)
            runs[f"{cname}/ddpm/{n}"] = run_discrete(DDPMScheduler, cfg, n, scheduling_ddpm)
            runs[f"{cname}/euler/{n}"] = run_sigma(EulerDiscreteScheduler, cfg, n)
            runs[f"{cname}/euler-ancestral/{n}"] = run_sigma(
                EulerAncestralDiscreteScheduler, cfg, n, scheduling_euler_ancestral_discrete)
            runs[f"{cname}/heun/{n}"] = run_heun(cfg, n)
            runs[f"{cname}/dpm++2m/{n}"] = run_sigma(DPMSolverMultistepScheduler, cfg, n)
    fixture = {
        "generator": "scripts/reference/sd_scheduler_fixtures.py",
        "versions": {"python": sys.version.split()[0], "torch": torch.__version__,
                     "diffusers": diffusers.__version__, "numpy": np.__version__},
        "seed": SEED,
        "shape": list(SHAPE),
        "model": "out = 0.5 * x * t / T + 0.1",
        "x_t": vec(X_T),
        "configs": {k: json.dumps(v) for k, v in CONFIGS.items()},
        "runs": runs,
    }
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w") as f:
        json.dump(fixture, f, indent=0)
    print(json.dumps(fixture["versions"]))
    for name, r in runs.items():
        if name.endswith("/4") or name.endswith("/7"):
            print(name, "init", round(r["init_noise_sigma"], 4), "t", [round(s["t"], 3) for s in r["steps"]])
    print(f"wrote {os.path.normpath(OUT)} ({os.path.getsize(OUT)} bytes)")


if __name__ == "__main__":
    main()
