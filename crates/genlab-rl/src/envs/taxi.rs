//! Taxi-v3: pick a passenger up at one of four stands and drop them at another (Dietterich,
//! "Hierarchical reinforcement learning with the MAXQ value function decomposition", JAIR
//! 2000, arXiv:cs/9905014).
//!
//! Gymnasium 1.2's `taxi.py` (dry roads, a patient passenger): a 5 x 5 grid with walls,
//! 500 states encoded ((row * 5 + col) * 5 + passenger) * 4 + destination, actions south,
//! north, east, west, pickup, dropoff; reward -1 per step, +20 for a delivery (which ends
//! the episode), -10 for an illegal pickup or dropoff; 200-step limit.

use crate::envs::tabular::{tabular_env, Outcome, Table};

const MAP: [&str; 7] = [
    "+---------+",
    "|R: | : :G|",
    "| : | : : |",
    "| : : : : |",
    "| | : | : |",
    "|Y| : |B: |",
    "+---------+",
];
pub const LOCS: [(usize, usize); 4] = [(0, 0), (0, 4), (4, 0), (4, 3)];

pub struct Taxi {
    pub table: Table,
}

impl Default for Taxi {
    fn default() -> Self {
        Self::new()
    }
}

pub fn encode(row: usize, col: usize, pass: usize, dest: usize) -> usize {
    ((row * 5 + col) * 5 + pass) * 4 + dest
}

impl Taxi {
    // The loops mirror Gymnasium's over (row, col, passenger, destination).
    #[allow(clippy::needless_range_loop)]
    pub fn new() -> Self {
        let desc: Vec<&[u8]> = MAP.iter().map(|r| r.as_bytes()).collect();
        let mut t = Table::new(500, 6);
        for row in 0..5 {
            for col in 0..5 {
                for pass in 0..5 {
                    for dest in 0..4 {
                        let s = encode(row, col, pass, dest);
                        if pass < 4 && pass != dest {
                            t.initial[s] += 1.0;
                        }
                        for a in 0..6 {
                            let (mut nr, mut nc, mut np) = (row, col, pass);
                            let mut reward = -1.0;
                            let mut terminated = false;
                            let here = (row, col);
                            match a {
                                0 => nr = (row + 1).min(4),
                                1 => nr = row.saturating_sub(1),
                                2 if desc[1 + row][2 * col + 2] == b':' => nc = (col + 1).min(4),
                                3 if desc[1 + row][2 * col] == b':' => nc = col.saturating_sub(1),
                                4 => {
                                    if pass < 4 && here == LOCS[pass] {
                                        np = 4;
                                    } else {
                                        reward = -10.0;
                                    }
                                }
                                5 => {
                                    if here == LOCS[dest] && pass == 4 {
                                        np = dest;
                                        terminated = true;
                                        reward = 20.0;
                                    } else if let (Some(i), 4) =
                                        (LOCS.iter().position(|&l| l == here), pass)
                                    {
                                        np = i;
                                    } else {
                                        reward = -10.0;
                                    }
                                }
                                _ => {}
                            }
                            t.p[s][a].push(Outcome {
                                prob: 1.0,
                                next: encode(nr, nc, np, dest),
                                reward,
                                terminated,
                            });
                        }
                    }
                }
            }
        }
        let total: f64 = t.initial.iter().sum();
        for v in &mut t.initial {
            *v /= total;
        }
        Self { table: t }
    }
}

tabular_env!(Taxi, "taxi");
