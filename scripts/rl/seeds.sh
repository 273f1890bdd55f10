#!/usr/bin/env bash
# Trains every target of docs/rl.md over 5 seeds, evaluates each run's deterministic policy
# (100 episodes) and draws the curves with bands. Usage:
#   bash scripts/rl/seeds.sh OUT_DIR [TASK...]
# TASK is one of the names below (default: all). Needs a release build (cargo build --release).
# Each run writes OUT_DIR/TASK/seedN (run directory) and OUT_DIR/TASK/seedN.eval.json;
# OUT_DIR/TASK.svg and OUT_DIR/TASK.json hold the report. Runs are sequential, one thread.
set -euo pipefail
out=${1:?usage: seeds.sh OUT_DIR [TASK...]}
shift
G=${GENLAB:-target/release/genlab}
SEEDS=${SEEDS:-"0 1 2 3 4"}
# task: algo env steps [extra flags]
declare -A T=(
  [dqn-cartpole]="dqn cartpole 50000"
  [ppo-cartpole]="ppo cartpole 100000"
  [a2c-cartpole]="a2c cartpole 500000"
  [reinforce-cartpole]="reinforce cartpole 500000"
  [a3c-cartpole]="a3c cartpole 500000"
  [td3-pendulum]="td3 pendulum 20000"
  [ddpg-pendulum]="ddpg pendulum 20000"
  [dqn-acrobot]="dqn acrobot 100000"
  [dqn-mountain-car]="dqn mountain-car 120000"
  [q-learning-frozen-lake]="q-learning frozen-lake 300000"
  [sarsa-frozen-lake]="sarsa frozen-lake 300000"
  [maddpg-simple-spread]="maddpg simple-spread 300000"
  [independent-simple-spread]="independent simple-spread 300000"
)
tasks=("$@")
[ ${#tasks[@]} -eq 0 ] && tasks=(dqn-cartpole ppo-cartpole a2c-cartpole reinforce-cartpole a3c-cartpole \
  td3-pendulum ddpg-pendulum dqn-acrobot dqn-mountain-car q-learning-frozen-lake sarsa-frozen-lake \
  maddpg-simple-spread independent-simple-spread)
for task in "${tasks[@]}"; do
  read -r algo env steps <<<"${T[$task]}"
  mkdir -p "$out/$task"
  runs=()
  for s in $SEEDS; do
    d="$out/$task/seed$s"
    rm -rf "$d"
    start=$(date +%s.%N)
    # One checkpoint at the end: checkpoints hold the replay buffer.
    $G rl train --algo "$algo" --env "$env" --steps "$steps" --seed "$s" --out "$d" --quiet --ckpt-every "$steps"
    end=$(date +%s.%N)
    echo "{\"task\": \"$task\", \"seed\": $s, \"train_seconds\": $(echo "$end - $start" | bc | sed "s/^\./0./")}" > "$d.time.json"
    # Evaluation episodes from seed 1000 + s: start states the run never trained on.
    eps=100; [ "$env" = frozen-lake ] && eps=1000
    $G rl eval --ckpt "$d" --episodes $eps --seed $((1000 + s)) --json "$d.eval.json"
    runs+=("$d")
  done
  $G rl report "${runs[@]}" --out "$out/$task.svg" --json "$out/$task.json"
done
