//! Concatenations assembled in place by the inference plan (`exec::Plan::assembled`): the
//! producers write their channels straight into the concatenation's buffer (DenseNet's
//! growing concatenation keeps one buffer per block). The outputs are the same bits as the
//! plan that copies every input, and the bytes the concatenations copy are counted against
//! hand-derived figures.

use crate::common::{options_for, zoo_net_with};
use archscope::exec;

/// The plan without its concatenation assembly: every concatenation copies its inputs.
fn copying(plan: &exec::Plan) -> exec::Plan {
    let mut p = plan.clone();
    p.into.iter_mut().for_each(|x| *x = None);
    p.assembled.iter_mut().for_each(|x| *x = None);
    p.assembly_bytes = 0;
    p
}

/// Runs `name` at `input` (N, C, H, W) with the plan both ways: the outputs must be the same
/// bits; returns the bytes copied by the concatenations (copying plan, assembling plan).
fn both_ways(name: &str, input: &[u64]) -> (u64, u64) {
    let net = zoo_net_with(name, &options_for(input));
    let w = exec::init_weights(&net, 3).unwrap();
    let x = exec::random_input(&net, 3).unwrap();
    let plan = exec::plan(&net, &w);
    assert!(
        plan.assembled.iter().any(|a| a.is_some()),
        "{name}: no concatenation assembled"
    );
    let old = exec::run_planned(&net, &w, &copying(&plan), &x, None).unwrap();
    let new = exec::run_planned(&net, &w, &plan, &x, None).unwrap();
    assert_eq!(old.outputs.len(), new.outputs.len());
    for (a, b) in old.outputs.iter().zip(&new.outputs) {
        assert_eq!(a.shape, b.shape, "{name}");
        let same = a
            .data
            .iter()
            .zip(&b.data)
            .all(|(x, y)| x.to_bits() == y.to_bits());
        assert!(
            same,
            "{name}: the assembling plan changed the output's bits"
        );
    }
    // Every layer reports the shape it computed, in the buffer or not.
    for (k, (l, m)) in old.layers.iter().zip(&new.layers).enumerate() {
        assert_eq!(l.shapes, m.shapes, "{name}: layer {k}");
        assert_eq!(l.macs, m.macs, "{name}: layer {k}");
    }
    (old.concat_copied, new.concat_copied)
}

#[test]
fn densenet121_assembles_each_block_in_one_buffer() {
    // At 64×64: the stem (7×7/2) and its max pool (3×3/2) leave 16×16 for block 1, each
    // transition halves it (8×8, 4×4, 2×2). Blocks of 6, 12, 24, 16 layers add 32 channels
    // each to 64, 128, 256, 512.
    let (old, new) = both_ways("densenet121", &[1, 3, 64, 64]);
    // Copying: every concatenation copies its whole output, 4 bytes a value:
    // block 1: (96 + 128 + … + 256) = 1,056 channels × 256 positions;
    // block 2: 12·(160 + 512)/2 = 4,032 × 64; block 3: 24·(288 + 1,024)/2 = 15,744 × 16;
    // block 4: 16·(544 + 1,024)/2 = 12,544 × 4.
    let copying = 4 * (1056 * 256 + 4032 * 64 + 15744 * 16 + 12544 * 4);
    assert_eq!(old, copying);
    assert_eq!(copying, 3_321_856);
    // Assembling: each new layer's 32 channels are written by its convolution into the
    // block's buffer; only each block's input (read by its first layer too) is copied once:
    // 64 × 256, 128 × 64, 256 × 16, 512 × 4 values.
    assert_eq!(new, 4 * (64 * 256 + 128 * 64 + 256 * 16 + 512 * 4));
    assert_eq!(new, 122_880);
}

#[test]
fn densenet121_at_batch_2_places_the_new_channels() {
    // At batch 2 a block's earlier channels are not a prefix of one buffer, so no block grows
    // in place: each concatenation copies its input 0 (the previous concatenation), and the
    // convolution writes its 32 channels straight into both samples' slices.
    let (old, new) = both_ways("densenet121", &[2, 3, 64, 64]);
    assert_eq!(old, 2 * 3_321_856);
    // The copied input 0 of each concatenation is its output less 32 channels.
    let growth = 4 * 2 * 32 * (6 * 256 + 12 * 64 + 24 * 16 + 16 * 4);
    assert_eq!(new, old - growth);
}

#[test]
fn googlenet_branches_write_into_their_concatenation() {
    // Every branch of every inception module ends in a convolution (BN and ReLU folded and
    // fused into it), read by the concatenation alone: nothing is copied.
    let (old, new) = both_ways("googlenet", &[1, 3, 64, 64]);
    assert!(old > 0);
    assert_eq!(new, 0);
}

#[test]
fn squeezenet_fire_modules_write_into_their_concatenation() {
    // Both expand convolutions (ReLU fused) write their halves of the fire module's output.
    let (old, new) = both_ways("squeezenet1_1", &[1, 3, 64, 64]);
    assert!(old > 0);
    assert_eq!(new, 0);
}

#[test]
fn inception_v3_copies_nothing() {
    // At 299×299 every branch ends in a convolution but the max pools of the two reduction
    // modules (Mixed_6a: 288 channels at 17×17; Mixed_7a: 768 at 8×8), which write their
    // channels into their slices too: nothing is copied.
    let (old, new) = both_ways("inception_v3", &[1, 3, 299, 299]);
    assert!(old > 0);
    assert_eq!(new, 0);
}

#[test]
fn shufflenet_copies_each_unit_once_in_shuffled_order() {
    // Every unit's concatenation is read by its channel shuffle alone, so the plan computes
    // the two together (`Plan::shuffled`): each unit's output is copied once, in the
    // shuffled order, and assembled in place by no producer: 116 channels at 28×28 in 4
    // units, 232 at 14×14 in 8, 464 at 7×7 in 4, both ways.
    let net = zoo_net_with("shufflenet_v2_x1_0", &options_for(&[1, 3, 224, 224]));
    let w = exec::init_weights(&net, 3).unwrap();
    let x = exec::random_input(&net, 3).unwrap();
    let plan = exec::plan(&net, &w);
    assert!(plan.assembled.iter().all(|a| a.is_none()));
    let r = exec::run_planned(&net, &w, &plan, &x, None).unwrap();
    assert_eq!(
        r.concat_copied,
        4 * (4 * 116 * 784 + 8 * 232 * 196 + 4 * 464 * 49)
    );
    // The copying plan copies the same: the shuffled concatenations are not assembled
    // either way (before this rule, the assembled ones copied only the passed halves, and the
    // shuffles then copied every unit's output again).
    let copied = exec::run_planned(&net, &w, &copying(&plan), &x, None).unwrap();
    assert_eq!(copied.concat_copied, r.concat_copied);
    assert_eq!(copied.outputs[0].data, r.outputs[0].data);
}
