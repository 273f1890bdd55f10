//! CliffWalking-v1: walk along a cliff edge from start to goal (Sutton & Barto,
//! *Reinforcement Learning: An Introduction*, 2nd ed. 2018, Example 6.6).
//!
//! Gymnasium 1.2's `cliffwalking.py`: a 4 x 12 grid, start at the bottom-left, goal at the
//! bottom-right, the cells between them are the cliff; actions up, right, down, left;
//! reward -1 per step and -100 for stepping into the cliff, which sends the agent back to
//! the start without ending the episode; no time limit.

use crate::envs::tabular::{tabular_env, Outcome, Table};

const ROWS: usize = 4;
const COLS: usize = 12;

pub struct CliffWalking {
    pub table: Table,
}

impl Default for CliffWalking {
    fn default() -> Self {
        Self::new()
    }
}

impl CliffWalking {
    pub fn new() -> Self {
        let start = 3 * COLS;
        let mut t = Table::new(ROWS * COLS, 4);
        t.initial[start] = 1.0;
        let deltas: [(i64, i64); 4] = [(-1, 0), (0, 1), (1, 0), (0, -1)];
        for s in 0..ROWS * COLS {
            let (r, c) = ((s / COLS) as i64, (s % COLS) as i64);
            for (a, (dr, dc)) in deltas.iter().enumerate() {
                let nr = (r + dr).clamp(0, ROWS as i64 - 1) as usize;
                let nc = (c + dc).clamp(0, COLS as i64 - 1) as usize;
                let cliff = nr == 3 && (1..COLS - 1).contains(&nc);
                t.p[s][a].push(if cliff {
                    Outcome {
                        prob: 1.0,
                        next: start,
                        reward: -100.0,
                        terminated: false,
                    }
                } else {
                    Outcome {
                        prob: 1.0,
                        next: nr * COLS + nc,
                        reward: -1.0,
                        terminated: (nr, nc) == (ROWS - 1, COLS - 1),
                    }
                });
            }
        }
        Self { table: t }
    }
}

tabular_env!(CliffWalking, "cliff-walking");
