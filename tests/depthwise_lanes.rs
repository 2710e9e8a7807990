//! The channel-interleaved depthwise kernel (`kernels::depthwise`: sixteen channels of one
//! image per group, zero-padded bands of rows, 16×16 transposes in and out, blocks of up to
//! eight output positions in registers) against the direct definition in f64, on random shapes
//! (proptest): 16 to 40 channels (whole and partial groups of sixteen), every stride 1–3 per
//! axis, padding 0–3 per side, dilation 1–2, kernels 1×1 to 7×7, a bias or a folded batch norm,
//! no activation, SiLU or hard-swish, batches of one and two; and wide, tall planes that take
//! several bands of rows and several 16-column chunks per row. Every model is also run as
//! written and through the inference plan, which must give the same bits (without the batch
//! norm, which the plan folds). Planes of fewer than sixteen channels keep the plane kernel
//! (`tests/speed_kernels.rs`).

use crate::speed_kernels::depthwise_case;
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn depthwise_lanes(n in 1usize..3, c in 16usize..41, h in 1usize..24, w in 1usize..24,
                       kh in 1usize..8, kw in 1usize..8, sy in 1usize..4, sx in 1usize..4,
                       pt in 0usize..4, pl in 0usize..4, pb in 0usize..4, pr in 0usize..4,
                       d in 1usize..3, act in 0usize..3, bn in any::<bool>()) {
        depthwise_case(n, c, [h, w], [kh, kw], [sy, sx], [pt, pl, pb, pr], d, act, bn)?;
    }

    /// Planes of 40 to 120 columns and rows: bands of fewer rows than the output (the band
    /// holds about 32k floats), rows of several 16-column chunks and blocks of eight outputs.
    #[test]
    fn depthwise_lanes_wide(c in 16usize..34, h in 40usize..120, w in 40usize..120,
                            k in prop_oneof![Just(3usize), Just(5usize)], s in 1usize..3,
                            p in 0usize..3, act in 0usize..3) {
        depthwise_case(1, c, [h, w], [k, k], [s, s], [p, p, p, p], 1, act, false)?;
    }
}
