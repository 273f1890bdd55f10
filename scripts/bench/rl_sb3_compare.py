"""Wall-clock of genlab-rl against stable-baselines3 on the same tasks, algorithms,
hyperparameters (rl-baselines3-zoo's) and step budgets, on this machine.

Usage:
  .venv/bin/python scripts/bench/rl_sb3_compare.py --tasks dqn-cartpole,ppo-cartpole,td3-pendulum \
      --seeds 0,1,2 [--genlab target/release/genlab] [--out rl_compare.json]

For every task and seed it trains once with SB3 (torch's default thread count, or
--torch-threads) and once with `genlab rl train` (one thread), then evaluates each final policy deterministically on
20 episodes. It reports, per run: the training wall-clock, the time and step at which the
running mean of the last 20 training-episode returns first reached the task's threshold
("time to the same return"), and the evaluation return. The ratio is SB3 time / genlab
time (> 1: genlab faster), for the whole run and to the threshold.
"""

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3 import DQN, PPO, TD3
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.noise import NormalActionNoise

RUNNING = 20  # episodes in the running mean (genlab's RUNNING_EPISODES)

TASKS = {
    # name: (gym id, genlab algo, genlab env, steps, threshold)
    "dqn-cartpole": ("CartPole-v1", "dqn", "cartpole", 50_000, 475.0),
    "ppo-cartpole": ("CartPole-v1", "ppo", "cartpole", 100_000, 475.0),
    "td3-pendulum": ("Pendulum-v1", "td3", "pendulum", 20_000, -200.0),
    "ddpg-pendulum": ("Pendulum-v1", "ddpg", "pendulum", 20_000, -200.0),
}


def sb3_model(task, seed):
    gym_id = TASKS[task][0]
    if task == "dqn-cartpole":
        env = make_vec_env(gym_id, n_envs=1, seed=seed)
        return DQN("MlpPolicy", env, learning_rate=2.3e-3, batch_size=64, buffer_size=100_000,
                   learning_starts=1000, gamma=0.99, target_update_interval=10, train_freq=256,
                   gradient_steps=128, exploration_fraction=0.16, exploration_final_eps=0.04,
                   policy_kwargs=dict(net_arch=[256, 256]), seed=seed, verbose=0)
    if task == "ppo-cartpole":
        env = make_vec_env(gym_id, n_envs=8, seed=seed)
        return PPO("MlpPolicy", env, n_steps=32, batch_size=256, gae_lambda=0.8, gamma=0.98,
                   n_epochs=20, ent_coef=0.0, learning_rate=lambda p: 1e-3 * p,
                   clip_range=lambda p: 0.2 * p, seed=seed, verbose=0)
    if task in ("td3-pendulum", "ddpg-pendulum"):
        env = make_vec_env(gym_id, n_envs=1, seed=seed)
        cls = TD3
        kw = dict(gamma=0.98, buffer_size=200_000, learning_starts=10_000,
                  action_noise=NormalActionNoise(np.zeros(1), 0.1 * np.ones(1)),
                  gradient_steps=1, train_freq=1, learning_rate=1e-3,
                  policy_kwargs=dict(net_arch=[400, 300]), seed=seed, verbose=0)
        if task == "ddpg-pendulum":
            from stable_baselines3 import DDPG
            cls = DDPG
        return cls("MlpPolicy", env, **kw)
    raise ValueError(task)


class Returns(BaseCallback):
    """Records (seconds since start, timesteps, return) of every finished training episode."""

    def __init__(self):
        super().__init__()
        self.t0 = time.perf_counter()
        self.episodes = []

    def _on_step(self):
        for info in self.locals.get("infos", []):
            ep = info.get("episode")
            if ep is not None:
                self.episodes.append((time.perf_counter() - self.t0, self.num_timesteps, float(ep["r"])))
        return True


def first_crossing(episodes, threshold):
    """(seconds, step) at which the running mean of RUNNING returns first reaches threshold."""
    rets = []
    for t, step, r in episodes:
        rets.append(r)
        if len(rets) >= RUNNING and np.mean(rets[-RUNNING:]) >= threshold:
            return t, step
    return None, None


def run_sb3(task, seed):
    gym_id, _, _, steps, thr = TASKS[task]
    model = sb3_model(task, seed)
    cb = Returns()
    t0 = time.perf_counter()
    model.learn(total_timesteps=steps, callback=cb)
    total = time.perf_counter() - t0
    ev = gym.make(gym_id)
    ev.reset(seed=1000 + seed)
    mean, std = evaluate_policy(model, ev, n_eval_episodes=20, deterministic=True)
    t_thr, s_thr = first_crossing(cb.episodes, thr)
    return dict(seconds=total, eval_mean=float(mean), eval_std=float(std),
                threshold_seconds=t_thr, threshold_step=s_thr)


def run_genlab(genlab, task, seed):
    _, algo, env, steps, thr = TASKS[task]
    with tempfile.TemporaryDirectory() as d:
        out = Path(d) / "run"
        t0 = time.perf_counter()
        subprocess.run([genlab, "rl", "train", "--algo", algo, "--env", env, "--steps", str(steps),
                        "--seed", str(seed), "--out", str(out), "--quiet",
                        "--ckpt-every", str(steps)], check=True, stdout=subprocess.DEVNULL)
        total = time.perf_counter() - t0
        eps = []
        for line in (out / "log.jsonl").read_text().splitlines():
            v = json.loads(line)
            if "return" in v:
                eps.append((v["elapsed_s"], v["step"], v["return"]))
        js = Path(d) / "eval.json"
        subprocess.run([genlab, "rl", "eval", "--ckpt", str(out), "--episodes", "20",
                        "--seed", str(1000 + seed), "--json", str(js)], check=True,
                       stdout=subprocess.DEVNULL)
        ev = json.loads(js.read_text())
    t_thr, s_thr = first_crossing(eps, thr)
    return dict(seconds=total, eval_mean=ev["mean"], eval_std=ev["std"],
                threshold_seconds=t_thr, threshold_step=s_thr)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tasks", default="dqn-cartpole,ppo-cartpole,td3-pendulum")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--genlab", default="target/release/genlab")
    ap.add_argument("--out", default="rl_compare.json")
    ap.add_argument("--torch-threads", type=int, default=0,
                    help="torch.set_num_threads (0: torch's default, the core count)")
    a = ap.parse_args()
    if a.torch_threads > 0:
        torch.set_num_threads(a.torch_threads)
    rows = []
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads", flush=True)
    for task in a.tasks.split(","):
        for seed in [int(s) for s in a.seeds.split(",")]:
            g = run_genlab(a.genlab, task, seed)
            s = run_sb3(task, seed)
            row = dict(task=task, seed=seed, genlab=g, sb3=s,
                       ratio_total=s["seconds"] / g["seconds"])
            if g["threshold_seconds"] and s["threshold_seconds"]:
                row["ratio_to_threshold"] = s["threshold_seconds"] / g["threshold_seconds"]
            rows.append(row)
            print(json.dumps(row), flush=True)
            Path(a.out).write_text(json.dumps(rows, indent=1))
    for task in a.tasks.split(","):
        r = [x for x in rows if x["task"] == task]
        tot = [x["ratio_total"] for x in r]
        thr = [x.get("ratio_to_threshold") for x in r if x.get("ratio_to_threshold")]
        print(f"{task}: whole run SB3/genlab {np.mean(tot):.2f}x (min {np.min(tot):.2f}); "
              f"to threshold {np.mean(thr) if thr else float('nan'):.2f}x over {len(thr)} seeds; "
              f"eval genlab {np.mean([x['genlab']['eval_mean'] for x in r]):.1f}, "
              f"SB3 {np.mean([x['sb3']['eval_mean'] for x in r]):.1f}")


if __name__ == "__main__":
    sys.exit(main())
