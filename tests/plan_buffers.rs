//! The buffers `archscope run` keeps from pass to pass (`exec::Plan::buffers`,
//! `exec::run_pooled`), and the kernels around the convolutions that the plan changed: no two
//! live tensors ever share memory (tracked layer by layer over two passes of the ten models
//! of issue #19's bar), a pass on kept buffers gives the same bits as one on fresh buffers,
//! the keeper's byte accounting, and the pooling kernels' register blocks against a naive
//! loop on planes wide enough to use them (max and average, strides 1 to 3, padding,
//! dilation, ceil mode), writing into a concatenation's slice too.

use crate::common::{net, options_for, zoo_net_with};
use archscope::exec::{self, Recycler, Tensor};
use archscope::{BuildOptions, Network};

/// Same bits (NaNs equal).
fn same_bits(a: &[f32], b: &[f32]) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|(x, y)| x.to_bits() == y.to_bits() || (x.is_nan() && y.is_nan()))
}

/// Two passes of `net` on one set of kept buffers, the memory of every tensor the layers
/// produce tracked from the layer that makes it to the layer after which the executor frees
/// it (`Liveness::frees`): a new output may share memory only with an input it reads that
/// dies at that layer (computed in place, a folded or fused layer passing its input on, a
/// concatenation growing the one before it). Returns the outputs of both passes.
fn tracked_passes(net: &Network, w: &exec::Weights, x: &[Tensor]) -> Vec<Vec<Tensor>> {
    let plan = exec::plan(net, w);
    let mut buffers = plan.buffers();
    let liveness = net.topology.executed();
    let mut outputs = Vec::new();
    for pass in 0..2 {
        // (layer, first byte, end byte) of every tensor alive.
        let mut live: Vec<(usize, usize, usize)> = Vec::new();
        let mut hook = |k: usize, outs: &[Tensor]| {
            let node = &net.nodes[k];
            for t in outs.iter().filter(|t| !t.data.is_empty()) {
                let a = t.data.as_ptr() as usize;
                let b = a + 4 * t.data.len();
                for &(s, sa, sb) in &live {
                    if sa < b && a < sb {
                        let read_here = node.inputs.iter().any(|&(src, _)| src == s);
                        let dies_here = liveness.frees(k).contains(&s);
                        assert!(
                            read_here && dies_here,
                            "pass {pass}: the output of `{}` shares memory with the live output of `{}`",
                            node.name,
                            net.nodes[s].name
                        );
                    }
                }
                live.push((k, a, b));
            }
            let freed = liveness.frees(k);
            live.retain(|&(s, _, _)| !freed.contains(&s));
        };
        let r = exec::run_pooled(net, w, &plan, x, Some(&mut hook), &mut buffers).unwrap();
        assert!(buffers.held() <= plan.recycle_bytes);
        outputs.push(r.outputs);
    }
    outputs
}

/// The ten models of issue #19's bar, at a reduced input (inception_v3's smallest is 75×75).
const BAR: &[(&str, u64)] = &[
    ("resnet50", 96),
    ("vgg16", 64),
    ("googlenet", 96),
    ("inception_v3", 128),
    ("densenet121", 96),
    ("resnext50_32x4d", 96),
    ("squeezenet1_1", 96),
    ("shufflenet_v2_x1_0", 96),
    ("mobilenet_v3_small", 96),
    ("efficientnet_b0", 96),
];

#[test]
fn kept_buffers_never_alias_a_live_tensor_and_change_no_bit() {
    for &(name, side) in BAR {
        let net = zoo_net_with(name, &options_for(&[1, 3, side, side]));
        let w = exec::init_weights(&net, 5).unwrap();
        let x = exec::random_input(&net, 5).unwrap();
        let passes = tracked_passes(&net, &w, &x);
        // A pass on fresh buffers (the plan's own, made for the one pass).
        let fresh = exec::run_planned(&net, &w, &exec::plan(&net, &w), &x, None).unwrap();
        for outs in &passes {
            assert_eq!(outs.len(), fresh.outputs.len(), "{name}");
            for (a, b) in outs.iter().zip(&fresh.outputs) {
                assert_eq!(a.shape, b.shape, "{name}");
                assert!(
                    same_bits(&a.data, &b.data),
                    "{name}: a pass on kept buffers changed the output"
                );
            }
        }
    }
}

#[test]
fn the_keeper_matches_by_capacity_and_holds_no_more_than_its_cap() {
    // Cap 1,000 bytes = 250 floats, at most 3 buffers.
    let mut r = Recycler::new(1000, 3);
    r.give(vec![1.0; 100]);
    assert_eq!((r.kept(), r.held()), (1, 400));
    // 40 floats: the 100-float buffer is more than twice as large: not lent.
    assert!(r.take(40).is_none());
    // 60 floats: lent, cut to 60; its 40 unused floats stay counted until it comes back.
    let b = r.take(60).unwrap();
    assert_eq!(b.len(), 60);
    assert_eq!((r.kept(), r.held()), (0, 160));
    r.give(b);
    assert_eq!((r.kept(), r.held()), (1, 400));
    // Longer than it was: the new elements are zeros, the old ones its stale values.
    let b = r.take(80).unwrap();
    assert_eq!((b.len(), b[59], b[60], b[79]), (80, 1.0, 0.0, 0.0));
    r.give(b);
    // The least capacity that fits is lent.
    r.give(vec![2.0; 50]);
    assert_eq!(r.held(), 600);
    assert_eq!(r.take(50).unwrap()[0], 2.0);
    r.end_pass();
    // The 50-float buffer was never given back: after the pass it holds nothing.
    assert_eq!((r.kept(), r.held()), (1, 400));
    // Over the cap, the oldest buffers go first: 400 + 800 > 1,000.
    r.give(vec![3.0; 200]);
    assert_eq!((r.kept(), r.held()), (1, 800));
    assert_eq!(r.take(200).unwrap()[0], 3.0);
    // At most 3 buffers.
    for v in 0..4 {
        r.give(vec![v as f32; 10]);
    }
    assert_eq!((r.kept(), r.held()), (3, 120));
    assert_eq!(r.take(10).unwrap()[0], 3.0);
    // A buffer larger than the cap is not kept.
    r.give(vec![0.0; 300]);
    assert_eq!((r.kept(), r.held()), (2, 80));
    // Buffers that end two passes unused are let go.
    r.end_pass();
    assert_eq!((r.kept(), r.held()), (2, 80));
    r.end_pass();
    assert_eq!((r.kept(), r.held()), (0, 0));
}

/// One pooling layer on an `N×C×H×W` input: its output as written and with the plan (which
/// must be the same bits), and the input.
fn pooled(shape: [usize; 4], layer: &str) -> (Tensor, Tensor) {
    let yaml = format!(
        "inputs: {{x: [{}, {}, {}]}}\nnodes:\n  - {layer}\n",
        shape[1], shape[2], shape[3]
    );
    let net = Network::from_yaml(
        "p.yaml",
        &yaml,
        &BuildOptions {
            batch: shape[0] as u64,
            ..Default::default()
        },
    )
    .unwrap_or_else(|e| panic!("{layer}: {e}"));
    let w = exec::init_weights(&net, 1).unwrap();
    let x = exec::random_input(&net, 9).unwrap();
    let plain = exec::run(&net, &w, &x, None).unwrap();
    let planned = exec::run_planned(&net, &w, &exec::plan(&net, &w), &x, None).unwrap();
    assert!(
        same_bits(&plain.outputs[0].data, &planned.outputs[0].data),
        "{layer}"
    );
    (x[0].clone(), plain.outputs[0].clone())
}

/// PyTorch's max_pool2d / avg_pool2d by plain loops: taps in (ky, kx) order, a larger value
/// or a NaN replacing the best, sums from 0 in that order, divided by the count of taps in
/// the padded input (count_include_pad) or in the input; 0 for a window wholly in padding.
#[allow(clippy::too_many_arguments)]
fn naive_pool(
    x: &Tensor,
    oh: usize,
    ow: usize,
    max: bool,
    k: usize,
    s: usize,
    p: usize,
    d: usize,
    cip: bool,
) -> Vec<f32> {
    let (n, c, h, w) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3]);
    let mut want = Vec::new();
    for bc in 0..n * c {
        for oy in 0..oh {
            for ox in 0..ow {
                let (mut best, mut sum, mut valid, mut padded) = (f32::NEG_INFINITY, 0.0f32, 0, 0);
                for ky in 0..k {
                    for kx in 0..k {
                        let iy = (oy * s + ky * d) as isize - p as isize;
                        let ix = (ox * s + kx * d) as isize - p as isize;
                        if iy < (h + p) as isize && ix < (w + p) as isize {
                            padded += 1;
                        }
                        if iy >= 0 && ix >= 0 && (iy as usize) < h && (ix as usize) < w {
                            let v = x.data[(bc * h + iy as usize) * w + ix as usize];
                            if v > best || v.is_nan() {
                                best = v;
                            }
                            sum += v;
                            valid += 1;
                        }
                    }
                }
                want.push(if max {
                    best
                } else if valid == 0 {
                    0.0
                } else {
                    sum / if cip { padded } else { valid } as f32
                });
            }
        }
    }
    want
}

#[test]
fn pooling_register_blocks_agree_with_a_naive_loop() {
    // 70 columns: rows of 18 to 70 outputs, so that every configuration has columns in
    // register blocks of 16 and columns tap by tap at both edges.
    let shape = [2, 3, 11, 70];
    let mut cases = 0;
    for max in [true, false] {
        for k in 1..=4usize {
            for s in 1..=3usize {
                for d in 1..=(if max { 2 } else { 1 }) {
                    // Padding up to half the window's span d·(k − 1) + 1.
                    for p in 0..=(d * (k - 1)).div_ceil(2) {
                        for ceil in [false, true] {
                            for cip in [false, true] {
                                if max && cip {
                                    continue;
                                }
                                let layer = if max {
                                    format!("{{op: maxpool, kernel: {k}, stride: {s}, padding: {p}, dilation: {d}, ceil: {ceil}}}")
                                } else {
                                    format!("{{op: avgpool, kernel: {k}, stride: {s}, padding: {p}, ceil: {ceil}, count_include_pad: {cip}}}")
                                };
                                let (x, y) = pooled(shape, &layer);
                                let (oh, ow) = (y.shape[2], y.shape[3]);
                                let want = naive_pool(&x, oh, ow, max, k, s, p, d, cip);
                                assert!(same_bits(&y.data, &want), "{layer}");
                                cases += 1;
                            }
                        }
                    }
                }
            }
        }
    }
    // Max: k·s·d·padding·ceil; average: k·s·padding·ceil·count_include_pad (by hand:
    // paddings 0..=(d(k−1)+1)/2 are 1, 2, 2, 3 for k = 1..4 at d = 1 and 1, 2, 3, 4 at d = 2).
    assert_eq!(cases, 3 * 2 * (8 + 10) + 3 * 2 * 2 * 8);
}

#[test]
fn a_max_pool_writes_its_channels_into_the_concatenation() {
    // Inception's reduction modules: a max-pool branch beside convolutions, read by the
    // concatenation alone. With a fused ReLU: the pool applies it as it writes its slice.
    let net = net("inputs: {x: [3, 20, 40]}\nnodes:\n  - {id: a, op: conv, in: x, out: 4, kernel: 3, stride: 2}\n  - {id: m, op: maxpool, in: x, kernel: 3, stride: 2}\n  - {id: r, op: relu, in: m}\n  - {id: cat, op: concat, in: [a, r]}\n");
    let w = exec::init_weights(&net, 2).unwrap();
    let x = exec::random_input(&net, 2).unwrap();
    let plan = exec::plan(&net, &w);
    let m = net.nodes.iter().position(|n| n.name == "m").unwrap();
    let cat = net.nodes.iter().position(|n| n.name == "cat").unwrap();
    // Its slice starts after the convolution's 4 channels of 9×19.
    assert_eq!(plan.into[m], Some((cat, 4 * 9 * 19)));
    let plain = exec::run(&net, &w, &x, None).unwrap();
    let fast = exec::run_planned(&net, &w, &plan, &x, None).unwrap();
    assert_eq!(plain.outputs[0].shape, vec![1, 7, 9, 19]);
    assert!(same_bits(&plain.outputs[0].data, &fast.outputs[0].data));
    // As written, the concatenation copies both inputs (7 channels of 9×19); planned,
    // nothing.
    assert_eq!(plain.concat_copied, 4 * 7 * 9 * 19);
    assert_eq!(fast.concat_copied, 0);
}

#[test]
fn a_batch_norm_on_a_live_input_maps_it_in_one_pass() {
    // The norm's input is read again after it (DenseNet: the concatenation that the next
    // one extends), so it cannot run in place; the plan maps it (and the fused ReLU) from the
    // input into a buffer of its own: within rounding of the layer as written.
    let net = net("inputs: {x: [6, 9, 9]}\nnodes:\n  - {id: bn, op: batchnorm, in: x}\n  - {id: r, op: relu, in: bn}\n  - {id: c, op: conv, in: r, out: 6, kernel: 1}\n  - {id: sum, op: add, in: [c, x]}\n");
    let mut w = exec::init_weights(&net, 4).unwrap();
    // An affine map and running statistics away from the identity: (γ, β, mean, var) per
    // channel.
    let bn = net.nodes.iter().position(|n| n.name == "bn").unwrap();
    for (i, t) in w.per_node[bn].iter_mut().enumerate() {
        for (ch, v) in t.data.iter_mut().enumerate() {
            *v = [1.5, -0.25, 0.1, 2.0][i] + 0.125 * ch as f32;
        }
    }
    let x = exec::random_input(&net, 4).unwrap();
    let plain = exec::run(&net, &w, &x, None).unwrap();
    let plan = exec::plan(&net, &w);
    let relu = net.nodes.iter().position(|n| n.name == "r").unwrap();
    assert!(plan.passthrough[relu], "the ReLU is fused into the norm");
    let fast = exec::run_planned(&net, &w, &plan, &x, None).unwrap();
    let scale = plain.outputs[0]
        .data
        .iter()
        .fold(0f32, |m, v| m.max(v.abs()));
    for (a, b) in plain.outputs[0].data.iter().zip(&fast.outputs[0].data) {
        assert!((a - b).abs() <= 1e-5 * scale, "{a} vs {b}");
    }
}
