"""Records Gymnasium's and PettingZoo MPE's transitions for genlab-rl's parity tests.

Usage: .venv/bin/python scripts/reference/rl_env_fixtures.py
Writes crates/genlab-rl/tests/fixtures/envs.json: for each classic-control task, episodes
replayed from set start states with fixed action sequences (every observation, reward and
termination flag); for each toy-text task its whole transition table and initial-state
distribution (FrozenLake 4x4 and 8x8, slippery and not, CliffWalking, Taxi); for
simple_spread (N=3) episodes from set positions with discrete and continuous actions.
crates/genlab-rl/tests/env_parity.rs compares every number to 1e-6 (the fixture is
committed: the tests need no Python).
"""

import json
from pathlib import Path

import gymnasium as gym
import mpe2
import numpy as np
from mpe2 import simple_spread_v3

OUT = Path(__file__).resolve().parents[2] / "crates/genlab-rl/tests/fixtures/envs.json"
STEPS = 120


def classic(name, gym_id, states, action_fn, steps=STEPS):
    """Episodes of `gym_id` (unwrapped: no time limit) from each state in `states`."""
    rng = np.random.default_rng(1234)
    out = []
    for k, state in enumerate(states):
        env = gym.make(gym_id).unwrapped
        env.reset(seed=k)
        env.state = np.array(state, dtype=np.float64)
        rec = {"env": name, "state": [float(v) for v in state], "actions": [], "obs": [],
               "rewards": [], "terminated": []}
        for _ in range(steps):
            a = action_fn(rng)
            obs, r, term, trunc, _ = env.step(a)
            rec["actions"].append(a.tolist() if isinstance(a, np.ndarray) else int(a))
            rec["obs"].append([float(v) for v in obs])
            rec["rewards"].append(float(r))
            rec["terminated"].append(bool(term))
            if term:
                break
        out.append(rec)
    return out


def table(name, gym_id, **kwargs):
    env = gym.make(gym_id, **kwargs).unwrapped
    p = [[[[float(pr), int(s), float(r), bool(t)] for (pr, s, r, t) in env.P[s][a]]
          for a in range(env.action_space.n)] for s in range(env.observation_space.n)]
    return {"env": name, "kwargs": kwargs, "P": p,
            "initial": [float(v) for v in env.initial_state_distrib]}


def spread(continuous, positions, steps=25):
    rng = np.random.default_rng(7 if continuous else 8)
    out = []
    for k, (agents, landmarks, vels) in enumerate(positions):
        env = simple_spread_v3.parallel_env(N=3, continuous_actions=continuous, max_cycles=25)
        env.reset(seed=k)
        world = env.unwrapped.world
        for i, a in enumerate(world.agents):
            a.state.p_pos = np.array(agents[i], dtype=np.float64)
            a.state.p_vel = np.array(vels[i], dtype=np.float64)
        for i, lm in enumerate(world.landmarks):
            lm.state.p_pos = np.array(landmarks[i], dtype=np.float64)
        state = []
        for i in range(3):
            state += list(agents[i]) + list(vels[i])
        for i in range(3):
            state += list(landmarks[i])
        state.append(0.0)
        rec = {"continuous": continuous, "state": state, "actions": [], "obs": [], "rewards": [],
               "truncated": []}
        for _ in range(steps):
            if continuous:
                acts = {f"agent_{i}": rng.uniform(0, 1, 5).astype(np.float32) for i in range(3)}
                flat = [float(v) for i in range(3) for v in acts[f"agent_{i}"]]
            else:
                acts = {f"agent_{i}": int(rng.integers(0, 5)) for i in range(3)}
                flat = [float(acts[f"agent_{i}"]) for i in range(3)]
            obs, rew, term, trunc, _ = env.step(acts)
            rec["actions"].append(flat)
            rec["obs"].append([float(v) for i in range(3) for v in obs[f"agent_{i}"]])
            rec["rewards"].append([float(rew[f"agent_{i}"]) for i in range(3)])
            rec["truncated"].append(bool(trunc["agent_0"]))
            if trunc["agent_0"]:
                break
        out.append(rec)
    return out


def main():
    pi = np.pi
    eps = []
    eps += classic("cartpole", "CartPole-v1",
                   [[0.01, -0.02, 0.03, 0.04], [0.0, 0.0, 0.0, 0.0], [2.3, 1.0, 0.15, 0.5],
                    [-1.0, -0.5, -0.1, 1.5]],
                   lambda r: int(r.integers(0, 2)))
    eps += classic("acrobot", "Acrobot-v1",
                   [[0.05, -0.03, 0.02, 0.01], [3.0, -3.1, 5.0, -10.0], [pi - 0.01, 0.0, 12.0, 28.0],
                    [-1.0, 2.0, -3.0, 4.0]],
                   lambda r: int(r.integers(0, 3)))
    eps += classic("mountain-car", "MountainCar-v0",
                   [[-0.5, 0.0], [-1.15, -0.05], [0.45, 0.06], [-0.3, 0.01]],
                   lambda r: int(r.integers(0, 3)))
    # Actions outside [-1, 1] exercise the clipped path.
    eps += classic("mountain-car-continuous", "MountainCarContinuous-v0",
                   [[-0.5, 0.0], [-1.15, -0.05], [0.40, 0.06], [-0.3, 0.01]],
                   lambda r: r.uniform(-1.5, 1.5, 1).astype(np.float32))
    eps += classic("pendulum", "Pendulum-v1",
                   [[0.5, 0.1], [pi, 0.0], [-3.0, 7.9], [10.0, -8.0]],
                   lambda r: r.uniform(-2.5, 2.5, 1).astype(np.float32), steps=200)
    tables = [
        table("frozen-lake", "FrozenLake-v1"),
        table("frozen-lake-dry", "FrozenLake-v1", is_slippery=False),
        table("frozen-lake-8x8", "FrozenLake8x8-v1"),
        table("cliff-walking", "CliffWalking-v1"),
        table("taxi", "Taxi-v3"),
    ]
    near = [
        ([[0.0, 0.0], [0.2, 0.1], [-0.1, 0.25]], [[0.5, 0.5], [-0.5, 0.2], [0.1, -0.7]],
         [[0.0, 0.0], [0.0, 0.0], [0.0, 0.0]]),
        ([[0.9, -0.9], [-0.8, 0.7], [0.1, 0.05]], [[0.3, 0.3], [-0.9, -0.2], [0.6, -0.4]],
         [[0.3, -0.2], [0.0, 0.5], [-1.0, 0.0]]),
    ]
    sp = spread(False, near) + spread(True, near)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    doc = {
        "versions": {"gymnasium": gym.__version__, "mpe2": getattr(mpe2, "__version__", "?"),
                     "numpy": np.__version__},
        "classic": eps, "tables": tables, "spread": sp,
    }
    OUT.write_text(json.dumps(doc, separators=(",", ":")))
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
