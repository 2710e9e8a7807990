//! Residual adds fused into the kernel that computes one of their operands (the inference
//! plan's `Plan::residual`, `kernels::Epilogue`): the sum of two tensors of its output's shape
//! is computed by the later operand's producer, which adds the other one after its bias and
//! before the activation fused after the sum. Checked three ways:
//!
//! - against the definition in f64 (proptest over the convolutions that compute the sum: 1×1
//!   and 3×3, short and long reductions, strides 1 and 2, grouped and depthwise, a 1×1 map's
//!   matrix-vector product; batches of one and two; no activation, ReLU or SiLU after the sum;
//!   the shortcut computed before or after the main path), and Winograd on a layer large
//!   enough to take it;
//! - the product kernels' own residual (`Epilogue::add`, added tile by tile: the direct
//!   product in registers, `gemm`'s tiles, the implicit product as it copies its rows out,
//!   Winograd's planes), bit for bit against the kernel without it plus the add and the
//!   activation after it;
//! - bit for bit against the same plan with the fusion undone (`unfused` below), on those
//!   models and on producers that cannot add in their tiles (pools, a merge, a batch norm in
//!   place), where the executor adds right after the kernel;
//! - on zoo models: how many adds the plan fuses (counted by hand from each architecture
//!   below), the same bits as the unfused plan, and `run`'s profile naming the layer that
//!   absorbed each sum.

use crate::common;
use archscope::exec;
use archscope::graph::Network;
use proptest::prelude::*;

/// `plan` with every fused residual add undone: the sum runs again as a layer of its own
/// (accumulating into a dying input), and the activation fused after it goes back to it.
fn unfused(net: &Network, plan: &exec::Plan) -> exec::Plan {
    let mut p = plan.clone();
    for k in 0..net.nodes.len() {
        if !(p.passthrough[k] && net.nodes[k].layer.is_sum()) {
            continue;
        }
        let r = p.root(net, k);
        assert!(
            p.residual[r].is_some(),
            "a passed-on sum has a residual root"
        );
        p.residual[r] = None;
        p.fused[k] = p.fused[r].take();
        p.passthrough[k] = false;
        p.through[k] = 0;
    }
    p
}

/// The fused adds of a plan: (the sum's name, the name of the layer that computes it).
fn fused_sums(net: &Network, plan: &exec::Plan) -> Vec<(String, String)> {
    (0..net.nodes.len())
        .filter(|&k| plan.passthrough[k] && net.nodes[k].layer.is_sum())
        .map(|k| {
            (
                net.nodes[k].name.clone(),
                net.nodes[plan.root(net, k)].name.clone(),
            )
        })
        .collect()
}

/// The network's outputs through `plan`, and through the same plan with the fusion undone;
/// asserts they are the same bits.
fn same_bits_unfused(net: &Network, w: &exec::Weights, x: &[exec::Tensor]) -> exec::Plan {
    let plan = exec::plan(net, w);
    let fused = exec::run_planned(net, w, &plan, x, None).unwrap();
    let plain = exec::run_planned(net, w, &unfused(net, &plan), x, None).unwrap();
    for (a, b) in fused.outputs.iter().zip(&plain.outputs) {
        assert_eq!(a.shape, b.shape);
        for (i, (u, v)) in a.data.iter().zip(&b.data).enumerate() {
            assert!(
                u.to_bits() == v.to_bits() || (u.is_nan() && v.is_nan()),
                "{}: element {i}: {u} fused, {v} unfused",
                net.name
            );
        }
    }
    plan
}

fn net_of(batch: usize, input: [usize; 3], nodes: &[String]) -> Network {
    let yaml = format!(
        "name: model\ninputs: {{x: [{}, {}, {}]}}\nnodes:\n{}\n",
        input[0],
        input[1],
        input[2],
        nodes
            .iter()
            .map(|l| format!("  - {l}"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    Network::from_yaml(
        "model.yaml",
        &yaml,
        &archscope::graph::BuildOptions {
            batch: batch as u64,
            ..Default::default()
        },
    )
    .unwrap_or_else(|e| panic!("{yaml}\n{e}"))
}

/// A convolution of `x` (`n × c × h × w`) in f64 by definition: `w` is `co × c/g × k × k`.
#[allow(clippy::too_many_arguments)]
fn conv_f64(
    x: &[f32],
    [n, c, h, wd]: [usize; 4],
    w: &[f32],
    bias: &[f32],
    co: usize,
    (k, s, p, g): (usize, usize, usize, usize),
) -> Vec<f64> {
    let (oh, ow) = ((h + 2 * p - k) / s + 1, (wd + 2 * p - k) / s + 1);
    let (cg, og) = (c / g, co / g);
    let mut out = vec![0f64; n * co * oh * ow];
    for b in 0..n {
        for o in 0..co {
            let gi = o / og;
            for oy in 0..oh {
                for ox in 0..ow {
                    let mut acc = f64::from(bias[o]);
                    for ci in 0..cg {
                        for ky in 0..k {
                            for kx in 0..k {
                                let iy = (oy * s + ky) as isize - p as isize;
                                let ix = (ox * s + kx) as isize - p as isize;
                                if iy < 0 || ix < 0 || iy >= h as isize || ix >= wd as isize {
                                    continue;
                                }
                                let xv = x
                                    [((b * c + gi * cg + ci) * h + iy as usize) * wd + ix as usize];
                                let wv = w[((o * cg + ci) * k + ky) * k + kx];
                                acc += f64::from(xv) * f64::from(wv);
                            }
                        }
                    }
                    out[((b * co + o) * oh + oy) * ow + ox] = acc;
                }
            }
        }
    }
    out
}

fn act_f64(v: f64, act: usize) -> f64 {
    match act {
        1 => v.max(0.0),
        2 => v / (1.0 + (-v).exp()),
        _ => v,
    }
}

const ACTS: [&str; 3] = ["none", "relu", "silu"];

/// `sum = act(main(x) + short(x))`, `main` a k×k convolution (stride `s`, padding `(k−1)/2`,
/// `g` groups), `short` a 1×1 one of the same stride, both with a bias; `short` first when
/// `short_first` (the plan fuses the sum into the later one). Checks the plan fused the sum
/// into the later convolution, the output against f64, and the same bits unfused.
#[allow(clippy::too_many_arguments)]
fn check_residual_conv(
    n: usize,
    [c, h, wd]: [usize; 3],
    co: usize,
    (k, s, g): (usize, usize, usize),
    act: usize,
    short_first: bool,
) -> Result<(), TestCaseError> {
    let p = (k - 1) / 2;
    let main = format!(
        "{{id: main, op: conv, in: x, out: {co}, kernel: {k}, stride: {s}, padding: {p}, groups: {g}, bias: true}}"
    );
    let short =
        format!("{{id: short, op: conv, in: x, out: {co}, kernel: 1, stride: {s}, bias: true}}");
    let sum = format!(
        "{{id: sum, op: add, in: [main, short], act: {}}}",
        ACTS[act]
    );
    let nodes = if short_first {
        vec![short, main, sum]
    } else {
        vec![main, short, sum]
    };
    let net = net_of(n, [c, h, wd], &nodes);
    let w = exec::init_weights(&net, 5).unwrap();
    let x = exec::random_input(&net, 9).unwrap();
    let plan = same_bits_unfused(&net, &w, &x);
    let later = if short_first { "main" } else { "short" };
    prop_assert_eq!(
        fused_sums(&net, &plan),
        vec![("sum".to_string(), later.to_string())]
    );
    let y = exec::run_planned(&net, &w, &plan, &x, None).unwrap();
    let idx = |name: &str| net.nodes.iter().position(|nd| nd.name == name).unwrap();
    let (wm, ws) = (&w.per_node[idx("main")], &w.per_node[idx("short")]);
    let dims = [n, c, h, wd];
    let a = conv_f64(&x[0].data, dims, &wm[0].data, &wm[1].data, co, (k, s, p, g));
    let b = conv_f64(&x[0].data, dims, &ws[0].data, &ws[1].data, co, (1, s, 0, 1));
    let got = &y.outputs[0].data;
    prop_assert_eq!(got.len(), a.len());
    for (i, ((&g, &u), &v)) in got.iter().zip(&a).zip(&b).enumerate() {
        let want = act_f64(u + v, act);
        prop_assert!(
            (f64::from(g) - want).abs() <= 1e-4 * (1.0 + want.abs()),
            "element {}: {} vs {}",
            i,
            g,
            want
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// 1×1 and 3×3 products, stride 1 or 2, ungrouped, grouped or depthwise, short
    /// reductions (the direct kernel) and long ones (`gemm`).
    #[test]
    fn residual_into_products(n in 1usize..3, c in 1usize..40, long in any::<bool>(),
                              co in 1usize..40, h in 1usize..14, wd in 1usize..14,
                              k3 in any::<bool>(), s in 1usize..3, grouping in 0usize..3,
                              act in 0usize..3, short_first in any::<bool>()) {
        let c = if long { c + 130 } else { c };
        let k = if k3 { 3 } else { 1 };
        // Ungrouped, two groups, or depthwise (as many outputs as inputs).
        let (g, co) = match grouping {
            1 if c % 2 == 0 => (2, 2 * co),
            2 => (c, c),
            _ => (1, co),
        };
        check_residual_conv(n, [c, h, wd], co, (k, s, g), act, short_first)?;
    }

    /// A 1×1 map (the squeeze-and-excitation products' matrix-vector path) and a
    /// single-column or single-row map.
    #[test]
    fn residual_into_thin_maps(n in 1usize..3, c in 1usize..70, co in 1usize..70,
                               h in 1usize..3, act in 0usize..3) {
        check_residual_conv(n, [c, h, 1], co, (1, 1, 1), act, true)?;
        check_residual_conv(n, [c, 1, h], co, (3, 1, 1), act, false)?;
    }
}

/// Winograd F(2×2, 3×3) (256 channels in and out, 10×10 = 100 outputs: the smallest layer
/// that takes it) adds the residual as it finishes each plane.
#[test]
fn residual_into_winograd() {
    check_residual_conv(1, [256, 10, 10], 256, (3, 1, 1), 1, true).unwrap();
    let net = net_of(
        1,
        [256, 10, 10],
        &[
            "{id: short, op: conv, in: x, out: 256, kernel: 1, bias: true}".to_string(),
            "{id: main, op: conv, in: x, out: 256, kernel: 3, padding: 1, bias: true}".to_string(),
            "{id: sum, op: add, in: [main, short]}".to_string(),
        ],
    );
    let w = exec::init_weights(&net, 5).unwrap();
    let plan = exec::plan(&net, &w);
    // The prepared weights carry the transformed filters: the forward pass runs Winograd.
    assert_eq!(plan.weights[2].as_ref().map(|v| v.len()), Some(3));
}

/// Producers that cannot add in their tiles: a max pool (which takes an activation only), a
/// product (accumulating into a dying input, then adding the residual), a batch norm computed in
/// place on its dying input, a depthwise convolution — the executor adds right after the
/// kernel, in order; the same bits as the unfused plan and within rounding of the layers as
/// written.
#[test]
fn residual_after_other_producers() {
    let cases: [(&str, Vec<&str>, &str); 4] = [
        (
            "pool",
            vec![
                "{id: c, op: conv, in: x, out: 8, kernel: 3, padding: 1}",
                "{id: short, op: conv, in: x, out: 8, kernel: 1}",
                "{id: pool, op: maxpool, in: c, kernel: 3, stride: 1, padding: 1}",
                "{id: sum, op: add, in: [pool, short], act: relu}",
            ],
            "pool",
        ),
        (
            "merge",
            vec![
                "{id: a, op: conv, in: x, out: 8, kernel: 1}",
                "{id: b, op: conv, in: x, out: 8, kernel: 3, padding: 1}",
                "{id: c, op: conv, in: x, out: 8, kernel: 1, stride: 1}",
                "{id: ab, op: multiply, in: [a, b]}",
                "{id: sum, op: add, in: [ab, c], act: silu}",
            ],
            "ab",
        ),
        (
            "batch norm in place",
            vec![
                "{id: c, op: conv, in: x, out: 8, kernel: 3, padding: 1}",
                "{id: m, op: maxpool, in: c, kernel: 3, stride: 1, padding: 1}",
                "{id: bn, op: batchnorm, in: c}",
                "{id: sum, op: add, in: [bn, m], act: relu}",
            ],
            "bn",
        ),
        (
            "depthwise",
            vec![
                "{id: short, op: conv, in: x, out: 24, kernel: 1}",
                "{id: dw, op: conv, in: x, out: 24, groups: 24, kernel: 3, padding: 1}",
                "{id: sum, op: add, in: [dw, short], act: relu}",
            ],
            "dw",
        ),
    ];
    for (what, nodes, root) in cases {
        let nodes: Vec<String> = nodes.iter().map(|s| s.to_string()).collect();
        for n in [1, 2] {
            let c = if what == "depthwise" { 24 } else { 5 };
            let net = net_of(n, [c, 9, 7], &nodes);
            let w = exec::init_weights(&net, 3).unwrap();
            let x = exec::random_input(&net, 4).unwrap();
            let plan = same_bits_unfused(&net, &w, &x);
            let sums = fused_sums(&net, &plan);
            assert!(
                sums.contains(&("sum".to_string(), root.to_string())),
                "{what}: {sums:?}"
            );
            let planned = exec::run_planned(&net, &w, &plan, &x, None).unwrap();
            let written = exec::run(&net, &w, &x, None).unwrap();
            for (a, b) in planned.outputs[0].data.iter().zip(&written.outputs[0].data) {
                assert!(
                    (a - b).abs() <= 1e-5 * (1.0 + b.abs()),
                    "{what}: {a} vs {b}"
                );
            }
        }
    }
}

/// A sum that cannot be fused stays a layer: its operand read elsewhere too, an operand
/// computed by the layer that also reads the other one (`x + f(x)`), broadcasting, three
/// inputs.
#[test]
fn sums_left_as_layers() {
    let cases: [(&str, Vec<&str>); 4] = [
        (
            "operands read elsewhere",
            vec![
                "{id: a, op: conv, in: x, out: 6, kernel: 1}",
                "{id: b, op: conv, in: x, out: 6, kernel: 1}",
                "{id: sum, op: add, in: [a, b]}",
                "{id: out, op: concat, in: [sum, a, b]}",
            ],
        ),
        (
            "x + f(x)",
            vec![
                "{id: a, op: conv, in: x, out: 6, kernel: 1}",
                "{id: f, op: conv, in: a, out: 6, kernel: 3, padding: 1}",
                "{id: sum, op: add, in: [f, a]}",
            ],
        ),
        (
            "broadcast",
            vec![
                "{id: a, op: conv, in: x, out: 6, kernel: 1}",
                "{id: p, op: global_avgpool, in: x}",
                "{id: g, op: conv, in: p, out: 6, kernel: 1}",
                "{id: sum, op: add, in: [a, g]}",
            ],
        ),
        (
            "three inputs",
            vec![
                "{id: a, op: conv, in: x, out: 6, kernel: 1}",
                "{id: b, op: conv, in: x, out: 6, kernel: 1}",
                "{id: c, op: conv, in: x, out: 6, kernel: 1}",
                "{id: sum, op: add, in: [a, b, c]}",
            ],
        ),
    ];
    for (what, nodes) in cases {
        let nodes: Vec<String> = nodes.iter().map(|s| s.to_string()).collect();
        let net = net_of(1, [6, 5, 5], &nodes);
        let w = exec::init_weights(&net, 3).unwrap();
        let x = exec::random_input(&net, 4).unwrap();
        let plan = same_bits_unfused(&net, &w, &x);
        assert!(fused_sums(&net, &plan).is_empty(), "{what}");
        assert!(plan.residual.iter().all(Option::is_none), "{what}");
        let planned = exec::run_planned(&net, &w, &plan, &x, None).unwrap();
        let written = exec::run(&net, &w, &x, None).unwrap();
        for (a, b) in planned.outputs[0].data.iter().zip(&written.outputs[0].data) {
            assert!(
                (a - b).abs() <= 1e-5 * (1.0 + b.abs()),
                "{what}: {a} vs {b}"
            );
        }
    }
}

/// The zoo's residual networks: every residual add fused, counted by hand from each
/// architecture — resnet18 2 + 2 + 2 + 2 basic blocks, resnet50 3 + 4 + 6 + 3 bottlenecks;
/// mobilenet_v2's inverted residuals with stride 1 and equal channels, (n − 1) of each row
/// of its table plus none of the first (t, c, n, s = 1,16,1,1 · 6,24,2,2 · 6,32,3,2 ·
/// 6,64,4,2 · 6,96,3,1 · 6,160,3,2 · 6,320,1,1): 0 + 1 + 2 + 3 + 2 + 2 + 0 = 10;
/// efficientnet_b0's stages of 1, 2, 2, 3, 3, 4, 1 blocks: 0 + 1 + 1 + 2 + 2 + 3 + 0 = 9
/// (each after its `stochastic_depth`, an identity the plan hands on); mobilenet_v3_small's
/// eleven blocks, those with stride 1 and equal channels (24→24, 40→40 twice, 48→48, 96→96
/// twice): 6. The outputs are the same bits as the unfused plan's.
#[test]
fn zoo_residual_adds_fused() {
    for (name, input, adds, first) in [
        ("resnet18", 224, 8, ("layer1.0.sum", "layer1.0.conv2")),
        ("resnet50", 64, 16, ("layer1.1.sum", "layer1.1.conv3")),
        ("mobilenet_v2", 64, 10, ("block2.1.sum", "block2.1.project")),
        (
            "efficientnet_b0",
            64,
            9,
            ("stage2.rest.sum", "stage2.rest.project"),
        ),
        (
            "mobilenet_v3_small",
            64,
            6,
            ("bneck3.sum", "bneck3.project"),
        ),
    ] {
        let net = common::zoo_net_with(name, &common::options_for(&[1, 3, input, input]));
        let w = exec::init_weights(&net, 0).unwrap();
        let x = exec::random_input(&net, 0).unwrap();
        let plan = same_bits_unfused(&net, &w, &x);
        let sums = fused_sums(&net, &plan);
        let all = net
            .nodes
            .iter()
            .filter(|n| n.layer.is_sum() && n.inputs.len() == 2)
            .count();
        assert_eq!((sums.len(), all), (adds, adds), "{name}: {sums:?}");
        let (s, r) = first;
        assert!(
            sums.contains(&(s.to_string(), r.to_string())),
            "{name}: {sums:?}"
        );
    }
}

/// `run`'s profile shows each fused sum as computed in the layer that absorbed it, and the
/// ReLU after it there too.
#[test]
fn profile_names_the_absorbing_layer() {
    let v = common::json(&[
        "run", "resnet18", "--input", "64", "--repeat", "1", "--format", "json",
    ]);
    for (layer, into) in [
        ("layer1.1.sum", "layer1.1.conv2"),
        ("layer4.0.sum", "layer4.0.downsample"),
    ] {
        let l = common::json_layer(&v, layer);
        assert_eq!(l["computed_in"], into, "{l}");
    }
}

/// `conv_gemm` (the direct product, `gemm`, the implicit stride-1 product, im2col) and
/// `conv_winograd` with a residual in their epilogue: the same bits as the kernel without it,
/// then `+ r` and the activation.
fn kernel_residual(
    (c, m, h, w): (usize, usize, usize, usize),
    kind: usize,
    act: usize,
    bias: bool,
    parallel: bool,
) -> Result<(), TestCaseError> {
    use archscope::kernels::{self, Epilogue, Pointwise, Window2d};
    let (k, s) = [(1, 1), (3, 1), (3, 2), (3, 1)][kind];
    let p = (k - 1) / 2;
    let (oh, ow) = ((h + 2 * p - k) / s + 1, (w + 2 * p - k) / s + 1);
    let win = Window2d {
        kernel: [k, k],
        stride: [s, s],
        pad: [p, p],
        dilation: [1, 1],
        input: [h, w],
        output: [oh, ow],
    };
    let val = |i: usize, seed: usize| ((i * 2_654_435_761 + seed * 97) % 1000) as f32 / 500.0 - 1.0;
    let x: Vec<f32> = (0..c * h * w).map(|i| val(i, 1)).collect();
    let wt: Vec<f32> = (0..m * c * k * k)
        .map(|i| val(i, 2) / (c * k * k) as f32)
        .collect();
    let b: Vec<f32> = (0..m).map(|i| val(i, 3)).collect();
    let res: Vec<f32> = (0..m * oh * ow).map(|i| val(i, 4)).collect();
    let bias = bias.then_some(&b[..]);
    let act = [None, Some(Pointwise::Relu), Some(Pointwise::Silu)][act];
    let (mut fused, mut plain) = (vec![f32::NAN; m * oh * ow], vec![f32::NAN; m * oh * ow]);
    let epi = Epilogue {
        add: Some(&res),
        act,
    };
    if kind == 3 {
        let u = kernels::winograd_filters(&wt, m, c);
        kernels::conv_winograd(
            &x,
            c,
            [h, w],
            [p, p],
            &u,
            m,
            [oh, ow],
            bias,
            epi,
            &mut fused,
        );
        kernels::conv_winograd(
            &x,
            c,
            [h, w],
            [p, p],
            &u,
            m,
            [oh, ow],
            bias,
            None::<Pointwise>,
            &mut plain,
        );
    } else {
        kernels::conv_gemm(&x, c, &win, &wt, m, bias, epi, &mut fused, parallel);
        kernels::conv_gemm(
            &x,
            c,
            &win,
            &wt,
            m,
            bias,
            None::<Pointwise>,
            &mut plain,
            parallel,
        );
    }
    for (v, r) in plain.iter_mut().zip(&res) {
        *v += r;
    }
    if let Some(f) = act {
        f.apply(&mut plain);
    }
    for (i, (a, b)) in fused.iter().zip(&plain).enumerate() {
        prop_assert!(a.to_bits() == b.to_bits(), "element {}: {} vs {}", i, a, b);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn kernels_add_the_residual_in_their_tiles(c in 1usize..200, m in 1usize..80,
                                               h in 1usize..30, w in 1usize..30,
                                               kind in 0usize..4, act in 0usize..3,
                                               bias in any::<bool>(), parallel in any::<bool>()) {
        kernel_residual((c, m, h, w), kind, act, bias, parallel)?;
    }
}
