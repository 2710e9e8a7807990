//! The inference plan's rules for small models (issue #19's fourth pass): a channel shuffle
//! computed by the concatenation it alone reads (`exec::Plan::shuffled`: one copy instead of
//! two), an activation fused into a concatenation whose producers write into it, `split` and
//! `concat` writing into kept buffers, and the pool's other workers kept warm during a pass
//! (`exec::Plan::warm`). Each rule is checked against the layer-by-layer reference
//! (`exec::run`, every layer as written) on small graphs built for its edge cases (unequal
//! inputs, groups other than 2, batch 2, a fused activation, the shuffled result written
//! into a later concatenation), over two passes on one set of kept buffers (whose stale
//! values a kernel that skipped an element would leave), and on the small zoo models.

use crate::common::{options_for, zoo_net_with};
use archscope::exec::{self, Tensor};
use archscope::{BuildOptions, Network};

/// Same bits (NaNs equal).
fn same_bits(a: &[f32], b: &[f32]) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|(x, y)| x.to_bits() == y.to_bits() || (x.is_nan() && y.is_nan()))
}

fn built(yaml: &str, batch: u64) -> Network {
    Network::from_yaml(
        "m.yaml",
        yaml,
        &BuildOptions {
            batch,
            ..Default::default()
        },
    )
    .unwrap_or_else(|e| panic!("{e}"))
}

fn index(net: &Network, name: &str) -> usize {
    net.nodes
        .iter()
        .position(|n| n.name == name)
        .unwrap_or_else(|| panic!("no layer `{name}`"))
}

/// Runs `net` as written and with its plan, twice on one set of kept buffers: every output
/// of both planned passes must be the same bits as the reference's (the rules only move
/// values: copies, and the same activation on the same values). Returns the plan and the
/// reference's result.
fn against_reference(net: &Network, seed: u64) -> (exec::Plan, exec::RunResult) {
    let w = exec::init_weights(net, seed).unwrap();
    let x = exec::random_input(net, seed).unwrap();
    let plain = exec::run(net, &w, &x, None).unwrap();
    let plan = exec::plan(net, &w);
    let mut buffers = plan.buffers();
    for pass in 0..2 {
        let r = exec::run_pooled(net, &w, &plan, &x, None, &mut buffers).unwrap();
        assert_eq!(r.outputs.len(), plain.outputs.len());
        for (a, b) in plain.outputs.iter().zip(&r.outputs) {
            assert_eq!(a.shape, b.shape, "pass {pass}");
            assert!(same_bits(&a.data, &b.data), "pass {pass}: bits differ");
        }
    }
    (plan, plain)
}

/// Three convolutions of 6, 10 and 8 channels into one 24-channel concatenation, shuffled
/// in `groups` groups, then a ReLU: the shuffle is computed by the concatenation and the
/// ReLU fused into it.
fn shuffled_yaml(groups: u32) -> String {
    format!(
        "inputs: {{x: [3, 5, 7]}}\nnodes:\n  - {{id: a, op: conv, in: x, out: 6, kernel: 1}}\n  - {{id: b, op: conv, in: x, out: 10, kernel: 3, padding: 1}}\n  - {{id: c, op: conv, in: x, out: 8, kernel: 1}}\n  - {{id: cat, op: concat, in: [a, b, c]}}\n  - {{id: sh, op: channel_shuffle, in: cat, groups: {groups}}}\n  - {{id: r, op: relu, in: sh}}\n"
    )
}

#[test]
fn a_shuffle_is_computed_by_its_concatenation_in_any_groups_and_batch() {
    // Groups 2, 3, 4, 6 and 24 divide the 24 channels (24: the identity permutation; 3:
    // input `b`'s channels land in all three groups), at batch 1 and 2.
    for groups in [2, 3, 4, 6, 24] {
        for batch in [1, 2] {
            let net = built(&shuffled_yaml(groups), batch);
            let (plan, plain) = against_reference(&net, u64::from(groups) + batch);
            let (cat, sh, r) = (index(&net, "cat"), index(&net, "sh"), index(&net, "r"));
            assert_eq!(plan.shuffled[cat], Some(groups as usize), "groups {groups}");
            assert!(plan.passthrough[sh] && plan.passthrough[r]);
            assert!(plan.assembled[cat].is_none());
            // The reference's ReLU leaves no negative value: the fused one ran.
            assert!(plain.outputs[0].data.iter().all(|&v| v >= 0.0));
            assert_eq!(plain.outputs[0].shape, vec![batch as usize, 24, 5, 7]);
        }
    }
}

#[test]
fn the_shuffled_concatenation_copies_each_value_once() {
    // As written: the concatenation copies its 24 channels of 5×7 (the shuffle's own copy is
    // not a concatenation's). Planned: the shuffled concatenation copies the same values
    // once, in the shuffled order; the shuffle copies nothing.
    let net = built(&shuffled_yaml(2), 1);
    let w = exec::init_weights(&net, 1).unwrap();
    let x = exec::random_input(&net, 1).unwrap();
    let plain = exec::run(&net, &w, &x, None).unwrap();
    let planned = exec::run_planned(&net, &w, &exec::plan(&net, &w), &x, None).unwrap();
    assert_eq!(plain.concat_copied, 4 * 24 * 5 * 7);
    assert_eq!(planned.concat_copied, 4 * 24 * 5 * 7);
}

#[test]
fn a_shuffle_of_a_concatenation_read_elsewhere_too_is_not_fused() {
    // `cat` is also read by `side`: the shuffle cannot take it over; the concatenation is
    // assembled from its producers as before, the shuffle copies.
    let yaml = "inputs: {x: [3, 5, 7]}\nnodes:\n  - {id: a, op: conv, in: x, out: 4, kernel: 1}\n  - {id: b, op: conv, in: x, out: 4, kernel: 1}\n  - {id: cat, op: concat, in: [a, b]}\n  - {id: sh, op: channel_shuffle, in: cat, groups: 2}\n  - {id: side, op: relu, in: cat}\n  - {id: sum, op: add, in: [sh, side]}\n";
    let net = built(yaml, 1);
    let (plan, _) = against_reference(&net, 5);
    let (cat, sh) = (index(&net, "cat"), index(&net, "sh"));
    assert_eq!(plan.shuffled[cat], None);
    assert!(!plan.passthrough[sh]);
    assert!(plan.assembled[cat].is_some());
}

#[test]
fn a_shuffled_concatenation_may_feed_another_concatenation() {
    // The shuffled (and ReLU'd) result is the first input of `out`, which it alone feeds:
    // the plan has the shuffled concatenation write into `out`'s buffer. At batch 2 the
    // slices are not one block.
    for batch in [1, 2] {
        let yaml = format!(
            "{}  - {{id: d, op: conv, in: x, out: 5, kernel: 1}}\n  - {{id: out, op: concat, in: [r, d]}}\n",
            shuffled_yaml(4)
        );
        let net = built(&yaml, batch);
        let (plan, plain) = against_reference(&net, 7 + batch);
        let (cat, out) = (index(&net, "cat"), index(&net, "out"));
        assert_eq!(plan.shuffled[cat], Some(4));
        assert_eq!(plan.into[cat], Some((out, 0)));
        assert_eq!(plain.outputs[0].shape, vec![batch as usize, 29, 5, 7]);
    }
}

#[test]
fn an_activation_after_an_assembled_concatenation_is_applied() {
    // Both convolutions write into the concatenation's buffer; the ReLU after it is fused
    // into the concatenation, which applies it to the assembled whole (the reference has no
    // negative value left).
    let yaml = "inputs: {x: [3, 6, 6]}\nnodes:\n  - {id: a, op: conv, in: x, out: 4, kernel: 1}\n  - {id: b, op: conv, in: x, out: 3, kernel: 3, padding: 1}\n  - {id: cat, op: concat, in: [a, b]}\n  - {id: r, op: relu, in: cat}\n";
    for batch in [1, 2] {
        let net = built(yaml, batch);
        let (plan, plain) = against_reference(&net, 11);
        let (cat, r) = (index(&net, "cat"), index(&net, "r"));
        assert!(plan.assembled[cat].is_some());
        assert!(plan.passthrough[r] && plan.fused[cat].is_some());
        assert!(plain.outputs[0].data.contains(&0.0));
        assert!(plain.outputs[0].data.iter().all(|&v| v >= 0.0));
    }
}

#[test]
fn split_and_concat_write_every_element_of_a_kept_buffer() {
    // Unequal pieces along channels and along the height, at batch 2, concatenated again in
    // another order and added: two passes on kept buffers (stale values) equal the reference.
    let yaml = "inputs: {x: [7, 6, 5]}\nnodes:\n  - {id: s, op: split, in: x, sizes: [2, 4, 1]}\n  - {id: h, op: split, in: x, dim: 2, sizes: [1, 5]}\n  - {id: c1, op: concat, in: [\"s:2\", \"s:0\", \"s:1\"]}\n  - {id: c2, op: concat, in: [\"h:1\", \"h:0\"], dim: 2}\n  - {id: sum, op: add, in: [c1, c2]}\n";
    let net = built(yaml, 2);
    let (_, plain) = against_reference(&net, 13);
    assert_eq!(plain.outputs[0].shape, vec![2, 7, 6, 5]);
}

/// The small models of issue #19's bar (and ShuffleNet's 0.5× variant), at a reduced input.
const SMALL: &[(&str, u64)] = &[
    ("shufflenet_v2_x1_0", 96),
    ("shufflenet_v2_x0_5", 64),
    ("squeezenet1_1", 96),
    ("mobilenet_v3_small", 96),
];

/// A zoo model's weights, input and plan.
fn small(name: &str, side: u64, batch: u64) -> (Network, exec::Weights, Vec<Tensor>, exec::Plan) {
    let net = zoo_net_with(name, &options_for(&[batch, 3, side, side]));
    let w = exec::init_weights(&net, 1).unwrap();
    let x = exec::random_input(&net, 1).unwrap();
    let plan = exec::plan(&net, &w);
    (net, w, x, plan)
}

#[test]
fn shufflenet_computes_every_shuffle_with_its_concatenation() {
    // 16 units (4 + 8 + 4), each ending in a concatenation of two halves and a shuffle in 2
    // groups, which the concatenation alone feeds.
    for name in ["shufflenet_v2_x1_0", "shufflenet_v2_x0_5"] {
        let (net, _, _, plan) = small(name, 64, 1);
        let shuffles = net
            .nodes
            .iter()
            .filter(|n| n.layer.shuffle_groups().is_some())
            .count();
        assert_eq!(shuffles, 16, "{name}");
        assert_eq!(plan.shuffled.iter().flatten().count(), 16, "{name}");
        assert!(plan.shuffled.iter().flatten().all(|&g| g == 2));
    }
}

#[test]
fn warm_workers_change_no_bit_of_the_small_models() {
    // Who runs a kernel's pieces does not change how they are split: the plan with its
    // workers kept warm gives the same bits as without, at batch 1 and 2; the planned
    // outputs are within rounding of the reference (the folded batch norms).
    for &(name, side) in SMALL {
        for batch in [1, 2] {
            let (net, w, x, plan) = small(name, side, batch);
            assert!(plan.warm);
            let cold = exec::Plan {
                warm: false,
                ..plan.clone()
            };
            let a = exec::run_planned(&net, &w, &plan, &x, None).unwrap();
            let b = exec::run_planned(&net, &w, &cold, &x, None).unwrap();
            assert!(
                same_bits(&a.outputs[0].data, &b.outputs[0].data),
                "{name} batch {batch}"
            );
            let plain = exec::run(&net, &w, &x, None).unwrap();
            let scale = plain.outputs[0]
                .data
                .iter()
                .fold(0f32, |m, v| m.max(v.abs()));
            let worst = plain.outputs[0]
                .data
                .iter()
                .zip(&a.outputs[0].data)
                .fold(0f32, |m, (p, q)| m.max((p - q).abs()));
            assert!(worst <= 1e-4 * scale.max(1.0), "{name}: {worst} of {scale}");
        }
    }
}

#[test]
fn warm_passes_run_side_by_side_and_in_a_pool_of_three() {
    // Three passes at once from three threads share the global pool (each pass's warm
    // workers may run the others' jobs, or wait inside them, for at most the idle bound),
    // and passes in a pool of three threads keep two workers warm: every result is the
    // same bits as one pass alone.
    let (net, w, x, plan) = small("shufflenet_v2_x1_0", 64, 1);
    let alone = exec::run_planned(&net, &w, &plan, &x, None).unwrap();
    let side_by_side: Vec<Vec<Tensor>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..3)
            .map(|_| {
                s.spawn(|| {
                    let mut buffers = plan.buffers();
                    let mut last = Vec::new();
                    for _ in 0..3 {
                        last = exec::run_pooled(&net, &w, &plan, &x, None, &mut buffers)
                            .unwrap()
                            .outputs;
                    }
                    last
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for outs in &side_by_side {
        assert!(same_bits(&alone.outputs[0].data, &outs[0].data));
    }
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(3)
        .build()
        .unwrap();
    let in_pool = pool.install(|| {
        let mut buffers = plan.buffers();
        (0..3)
            .map(|_| {
                exec::run_pooled(&net, &w, &plan, &x, None, &mut buffers)
                    .unwrap()
                    .outputs
            })
            .collect::<Vec<_>>()
    });
    for outs in &in_pool {
        assert!(same_bits(&alone.outputs[0].data, &outs[0].data));
    }
}

/// PyTorch's max pool of one `h×w` plane without padding or dilation, by a plain loop: taps
/// in (ky, kx) order, a larger value or a NaN replacing the best.
fn naive_max(x: &[f32], h: usize, w: usize, k: [usize; 2], s: [usize; 2]) -> Vec<f32> {
    let (oh, ow) = ((h - k[0]) / s[0] + 1, (w - k[1]) / s[1] + 1);
    let mut out = Vec::new();
    for oy in 0..oh {
        for ox in 0..ow {
            let mut best = f32::NEG_INFINITY;
            for ky in 0..k[0] {
                for kx in 0..k[1] {
                    let v = x[(oy * s[0] + ky) * w + ox * s[1] + kx];
                    if v > best || v.is_nan() {
                        best = v;
                    }
                }
            }
            out.push(best);
        }
    }
    out
}

#[test]
fn strided_max_pools_keep_pytorchs_choice_among_ties_and_nans() {
    // The separable max pool (rows first) must pick the tap PyTorch's (ky, kx) order picks:
    // the first of equal values (+0 and −0 differ in their bits) and the last NaN (NaNs of
    // distinct payloads). Values from a small set so that ties are frequent; windows 3×3/2
    // (SqueezeNet's), 2×3/(1, 3) and 3×2/(3, 2), all inside the 9×41 plane.
    let specials = [
        0.0f32,
        -0.0,
        1.0,
        -1.0,
        f32::NEG_INFINITY,
        f32::from_bits(0x7fc0_0001),
        f32::from_bits(0xffc0_0002),
        f32::from_bits(0x7fc0_0003),
    ];
    let (h, w) = (9usize, 41usize);
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let data: Vec<f32> = (0..2 * h * w)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            // Mostly 0, −0, ±1; a NaN or −∞ one time in eight.
            let r = (state >> 32) as usize;
            if r.is_multiple_of(8) {
                specials[4 + r / 8 % 4]
            } else {
                specials[r / 8 % 4]
            }
        })
        .collect();
    for (k, s) in [([3, 3], [2, 2]), ([2, 3], [1, 3]), ([3, 2], [3, 2])] {
        let yaml = format!(
            "inputs: {{x: [2, {h}, {w}]}}\nnodes:\n  - {{id: p, op: maxpool, in: x, kernel: [{}, {}], stride: [{}, {}]}}\n",
            k[0], k[1], s[0], s[1]
        );
        let net = built(&yaml, 1);
        let w8 = exec::init_weights(&net, 1).unwrap();
        let x = vec![Tensor::new(vec![1, 2, h, w], data.clone())];
        let plan = exec::plan(&net, &w8);
        for r in [
            exec::run(&net, &w8, &x, None).unwrap(),
            exec::run_planned(&net, &w8, &plan, &x, None).unwrap(),
        ] {
            let mut want = naive_max(&data[..h * w], h, w, k, s);
            want.extend(naive_max(&data[h * w..], h, w, k, s));
            let got = &r.outputs[0].data;
            assert_eq!(got.len(), want.len());
            let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<u32>>();
            assert_eq!(bits(got), bits(&want), "{k:?}/{s:?}");
            // The pools saw ties of ±0 and NaNs of several payloads.
            assert!(want.iter().any(|v| v.to_bits() == 0x8000_0000));
            assert!(want.iter().any(|v| v.to_bits() == 0x7fc0_0003));
        }
    }
}
