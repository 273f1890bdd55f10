//! FrozenLake-v1 (4x4, slippery by default): cross a frozen lake from S to G without
//! falling into a hole H.
//!
//! Gymnasium 1.2's `frozen_lake.py`: actions left, down, right, up; on slippery ice the
//! intended move happens with probability 1/3 and each perpendicular one with 1/3; reward 1
//! on reaching G, holes and the goal end the episode, 100-step limit (200 for 8x8).

use crate::envs::tabular::{tabular_env, Outcome, Table};

pub const MAP_4X4: [&str; 4] = ["SFFF", "FHFH", "FFFH", "HFFG"];
pub const MAP_8X8: [&str; 8] = [
    "SFFFFFFF", "FFFFFFFF", "FFFHFFFF", "FFFFFHFF", "FFFHFFFF", "FHHFFFHF", "FHFFHFHF", "FFFHFFFG",
];

pub struct FrozenLake {
    pub table: Table,
    pub map: Vec<Vec<u8>>,
}

impl FrozenLake {
    pub fn new(map: &[&str], slippery: bool) -> Self {
        let desc: Vec<Vec<u8>> = map.iter().map(|r| r.as_bytes().to_vec()).collect();
        let (nrow, ncol) = (desc.len(), desc[0].len());
        let mut t = Table::new(nrow * ncol, 4);
        let n_start = desc.iter().flatten().filter(|&&c| c == b'S').count() as f64;
        for (i, c) in desc.iter().flatten().enumerate() {
            if *c == b'S' {
                t.initial[i] = 1.0 / n_start;
            }
        }
        let inc = |row: usize, col: usize, a: usize| match a {
            0 => (row, col.saturating_sub(1)),
            1 => ((row + 1).min(nrow - 1), col),
            2 => (row, (col + 1).min(ncol - 1)),
            _ => (row.saturating_sub(1), col),
        };
        let (success, fail) = (1.0 / 3.0, (1.0 - 1.0 / 3.0) / 2.0);
        for row in 0..nrow {
            for col in 0..ncol {
                let s = row * ncol + col;
                for a in 0..4 {
                    let letter = desc[row][col];
                    let li = &mut t.p[s][a];
                    if letter == b'G' || letter == b'H' {
                        li.push(Outcome {
                            prob: 1.0,
                            next: s,
                            reward: 0.0,
                            terminated: true,
                        });
                        continue;
                    }
                    let moves: Vec<(usize, f64)> = if slippery {
                        [(a + 3) % 4, a, (a + 1) % 4]
                            .iter()
                            .map(|&b| (b, if b == a { success } else { fail }))
                            .collect()
                    } else {
                        vec![(a, 1.0)]
                    };
                    for (b, prob) in moves {
                        let (nr, nc) = inc(row, col, b);
                        let l = desc[nr][nc];
                        li.push(Outcome {
                            prob,
                            next: nr * ncol + nc,
                            reward: if l == b'G' { 1.0 } else { 0.0 },
                            terminated: l == b'G' || l == b'H',
                        });
                    }
                }
            }
        }
        Self {
            table: t,
            map: desc,
        }
    }
}

tabular_env!(FrozenLake, "frozen-lake");
