"""Per-step parity fixtures for genlab's samplers, produced by Hugging Face diffusers.

Writes crates/genlab-sampling/tests/fixtures/sampler_parity.json, replayed by
crates/genlab-sampling/tests/parity_diffusers.rs.

Usage (from the repository root; scripts/setup-python.sh makes .venv from
scripts/requirements.txt):
    bash scripts/setup-python.sh
    .venv/bin/python scripts/reference/sampler_parity_fixtures.py

Everything is fixed: the schedule (genlab's default, linear betas 1e-4..0.02 over T = 1000;
diffusers' timestep t uses alphas_cumprod[t], the same index as genlab's), the input x_T
(seeded torch generator), the noise tensors (seeded, injected into the schedulers by
replacing their `randn_tensor`), and a fake model that both sides compute exactly:
    eps(x, t) = 0.5 * x * t / T + 0.1
where x is what the scheduler feeds the network (after `scale_model_input`) and t the
timestep it passes. For every step the fixture keeps the scheduler's input sample, the noise
it drew and its output, so the Rust test checks each step on its own.

Spacing: N = 10 steps is chosen so that diffusers' "linspace" spacing for Euler, Heun and
Euler-ancestral lands on integers: linspace(0, 999, 10) = 999, 888, ..., 0, which is exactly
genlab's `spaced_timesteps(10)`. DDPM and DPM-Solver++ get genlab's timesteps as custom
timesteps; DDIM (no custom timesteps) uses its default "leading" spacing 900, 800, ..., 0 and
steps to t - T/N, and DPM-Solver++ is also recorded with its default "linspace" spacing
(999, 899, ..., 100, then sigma = 0), so those steps are replayed on diffusers' timesteps.
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

T = 1000
STEPS = 10
SHAPE = (2, 3)
SEED = 0
SCHEDULE = dict(num_train_timesteps=T, beta_start=1e-4, beta_end=0.02, beta_schedule="linear")
GENLAB_TIMESTEPS = [round(j * (T - 1) / (STEPS - 1)) for j in range(STEPS)][::-1]
OUT = os.path.join(
    os.path.dirname(os.path.abspath(__file__)),
    "..", "..", "crates", "genlab-sampling", "tests", "fixtures", "sampler_parity.json",
)

gen = torch.Generator().manual_seed(SEED)
X_T = torch.randn(SHAPE, generator=gen, dtype=torch.float32)
NOISE = [torch.randn(SHAPE, generator=gen, dtype=torch.float32) for _ in range(2 * STEPS)]


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


def record(**kw):
    return {k: (vec(v) if isinstance(v, torch.Tensor) else v) for k, v in kw.items()}


def run_ddpm():
    s = DDPMScheduler(**SCHEDULE, clip_sample=False)
    s.set_timesteps(timesteps=GENLAB_TIMESTEPS)
    x, steps = X_T.clone(), []
    with InjectedNoise(scheduling_ddpm) as inj:
        for t in s.timesteps:
            t = int(t)
            out = s.step(fake_model(x, t), t, x).prev_sample
            steps.append(record(t=t, t_prev=int(s.previous_timestep(t)), x_in=x, noise=inj.take(), x_out=out))
            x = out
    return steps


def run_ddim(eta):
    s = DDIMScheduler(**SCHEDULE, clip_sample=False, set_alpha_to_one=True, steps_offset=0)
    s.set_timesteps(STEPS)  # "leading": 900, 800, ..., 0
    x, steps = X_T.clone(), []
    for i, t in enumerate(s.timesteps):
        t = int(t)
        z = NOISE[i] if eta > 0 else None
        out = s.step(fake_model(x, t), t, x, eta=eta, variance_noise=z).prev_sample
        t_prev = max(t - T // STEPS, -1)  # DDIMScheduler's prev_timestep; < 0 means alpha_bar = 1
        steps.append(record(t=t, t_prev=t_prev, x_in=x, noise=z, x_out=out))
        x = out
    return steps


def run_sigma_scheduler(cls, noise_module=None):
    """Euler / Euler-ancestral: one scheduler call per step."""
    s = cls(**SCHEDULE)
    s.set_timesteps(STEPS)
    x, steps = X_T * s.init_noise_sigma, []
    inj = InjectedNoise(noise_module) if noise_module else None
    if inj:
        inj.__enter__()
    try:
        for i, t in enumerate(s.timesteps):
            sigma, sigma_next = float(s.sigmas[i]), float(s.sigmas[i + 1])
            out = s.step(fake_model(s.scale_model_input(x, t), t), t, x).prev_sample
            z = inj.take() if inj else None
            steps.append(record(t=float(t), sigma=sigma, sigma_next=sigma_next, x_in=x, noise=z, x_out=out))
            x = out
    finally:
        if inj:
            inj.__exit__()
    return steps


def run_heun():
    """Heun: the scheduler interleaves timesteps (t0, t1, t1, t2, t2, ...); one genlab step is
    a first-order call plus, unless the next sigma is 0, the second-order call."""
    s = HeunDiscreteScheduler(**SCHEDULE)
    s.set_timesteps(STEPS)
    x, steps, start = X_T * s.init_noise_sigma, [], None
    for k, t in enumerate(s.timesteps):
        if s.state_in_first_order:
            i = s.step_index if s.step_index is not None else 0
            start = dict(t=float(t), sigma=float(s.sigmas[i]), sigma_next=float(s.sigmas[i + 1]), x_in=x)
        x = s.step(fake_model(s.scale_model_input(x, t), t), t, x).prev_sample
        # After a first-order call the scheduler waits for its second-order call, except on
        # the last call (the Euler step to sigma = 0).
        if s.state_in_first_order or k + 1 == len(s.timesteps):
            steps.append(record(**start, noise=None, x_out=x))
    return steps


def run_dpmpp_2m(custom):
    s = DPMSolverMultistepScheduler(**SCHEDULE, algorithm_type="dpmsolver++", solver_order=2)
    if custom:
        s.set_timesteps(timesteps=GENLAB_TIMESTEPS)
    else:
        s.set_timesteps(STEPS)
    x, steps = X_T.clone(), []
    for i, t in enumerate(s.timesteps):
        sigma, sigma_next = float(s.sigmas[i]), float(s.sigmas[i + 1])
        out = s.step(fake_model(x, int(t)), t, x).prev_sample
        steps.append(record(t=float(t), sigma=sigma, sigma_next=sigma_next, x_in=x, noise=None, x_out=out))
        x = out
    return steps


def main():
    torch.set_num_threads(1)
    fixture = {
        "generator": "scripts/reference/sampler_parity_fixtures.py",
        "versions": {
            "python": sys.version.split()[0],
            "torch": torch.__version__,
            "diffusers": diffusers.__version__,
            "numpy": np.__version__,
        },
        "seed": SEED,
        "num_train_timesteps": T,
        "beta_start": 1e-4,
        "beta_end": 0.02,
        "steps": STEPS,
        "shape": list(SHAPE),
        "model": "eps = 0.5 * x * t / T + 0.1",
        "x_t": vec(X_T),
        "schedulers": {
            "ddpm": run_ddpm(),
            "ddim_eta0": run_ddim(0.0),
            "ddim_eta1": run_ddim(1.0),
            "euler": run_sigma_scheduler(EulerDiscreteScheduler),
            "euler_ancestral": run_sigma_scheduler(
                EulerAncestralDiscreteScheduler, scheduling_euler_ancestral_discrete
            ),
            "heun": run_heun(),
            "dpmpp_2m": run_dpmpp_2m(custom=False),
            "dpmpp_2m_genlab_grid": run_dpmpp_2m(custom=True),
        },
    }
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w") as f:
        json.dump(fixture, f, indent=1)
    print(json.dumps(fixture["versions"]), "seed", SEED)
    for name, steps in fixture["schedulers"].items():
        print(f"{name}: {len(steps)} steps, timesteps {[s['t'] for s in steps]}")
    print(f"wrote {os.path.normpath(OUT)} ({os.path.getsize(OUT)} bytes)")


if __name__ == "__main__":
    main()
