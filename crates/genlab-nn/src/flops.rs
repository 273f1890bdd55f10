//! Forward-pass FLOP counts from layer shapes: `2·m·n·k` per matrix product or convolution
//! (the multiply-adds). Elementwise work (normalisation, activations) is not counted, so a
//! rate computed from these is a lower bound on what the matrix kernels achieve.

/// `2·B·Σ in·out` for a stack of linear layers on a batch of `b`.
pub fn linear_flops(b: usize, layers: &[(usize, usize)]) -> f64 {
    layers.iter().map(|&(i, o)| 2.0 * (b * i * o) as f64).sum()
}

/// A k x k convolution from `c_in` to `c_out` channels over `positions` output positions
/// (for a transposed convolution: its input positions).
pub fn conv_flops(b: usize, c_in: usize, c_out: usize, k: usize, positions: usize) -> f64 {
    2.0 * (b * positions * c_in * c_out * k * k) as f64
}

/// The attention block on `n` positions of `c` channels: qkv and output 1x1 projections,
/// the scores `q kᵀ` and the weighted sum of values.
pub fn attention_flops(b: usize, c: usize, n: usize) -> f64 {
    conv_flops(b, c, 3 * c, 1, n) + conv_flops(b, c, c, 1, n) + 2.0 * 2.0 * (b * n * n * c) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_match_hand_products() {
        // 2 layers 3->4->5 on 2 rows: 2·2·(12 + 20) = 128.
        assert_eq!(linear_flops(2, &[(3, 4), (4, 5)]), 128.0);
        // 3x3 conv 2->4 channels over 10 positions, batch 1: 2·10·2·4·9 = 1440.
        assert_eq!(conv_flops(1, 2, 4, 3, 10), 1440.0);
        // c = 2, n = 3: qkv 2·3·2·6 = 72, out 2·3·2·2 = 24, scores and sum 4·9·2 = 72.
        assert_eq!(attention_flops(1, 2, 3), 168.0);
    }
}
