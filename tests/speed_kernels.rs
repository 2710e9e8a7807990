//! The kernels and plan steps written for speed (issue #19) against naive references written
//! from PyTorch's definitions, on random shapes (proptest): the depthwise convolution at every
//! stride (stride 1 over the flattened padded plane, or straight from the input where there is
//! no left padding, on wide planes too; larger strides over phase planes, the row kernel for
//! dilated strided ones; kernels of up to 7×7 taps by register blocks, larger ones
//! tap by tap) with its fused bias and activation; global average pooling; broadcasting add and
//! multiply, row by row; and a squeeze-and-excitation gate, whose plan scales the gated tensor
//! in place although the pooling read it first. Every model is also run as written and through
//! the inference plan, which must give the same bits.

use crate::common;

use archscope::exec::{self, Tensor};
use proptest::prelude::*;

/// [`common::run_as_written_and_planned`] with this file's seeds (weights 11, input 5).
fn run_model(
    batch: usize,
    inputs: &[(&str, Vec<usize>)],
    nodes: &[String],
    bitwise: bool,
) -> (Vec<Tensor>, Vec<Vec<Tensor>>, Tensor, Tensor) {
    common::run_as_written_and_planned(batch, inputs, nodes, bitwise, (11, 5))
}

fn close(got: &[f32], want: &[f64]) -> Result<(), TestCaseError> {
    prop_assert_eq!(got.len(), want.len());
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        prop_assert!(
            (f64::from(g) - w).abs() <= 1e-5 * (1.0 + w.abs()),
            "element {}: {} vs {}",
            i,
            g,
            w
        );
    }
    Ok(())
}

fn silu(v: f64) -> f64 {
    v / (1.0 + (-v).exp())
}

fn hardswish(v: f64) -> f64 {
    v * (v + 3.0).clamp(0.0, 6.0) / 6.0
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    /// Depthwise convolution (groups = channels), with a bias or a batch norm folded in by the
    /// plan, and a fused activation, against the direct definition in f64.
    #[test]
    fn depthwise(n in 1usize..3, c in 1usize..12, h in 1usize..20, w in 1usize..20,
                 kh in 1usize..9, kw in 1usize..9, sy in 1usize..4, sx in 1usize..4,
                 pt in 0usize..3, pl in 0usize..3, pb in 0usize..3, pr in 0usize..3,
                 d in 1usize..3, act in 0usize..3, bn in any::<bool>()) {
        depthwise_case(n, c, [h, w], [kh, kw], [sy, sx], [pt, pl, pb, pr], d, act, bn)?;
    }

    /// Stride-1 depthwise convolutions on wide planes, half of them without left padding:
    /// those take the direct kernel (no padded copy: the interior straight from the input, as
    /// one flattened range when the output rows are as wide as the input's, else row by row;
    /// border rows and columns apart), with padding on the other sides (up to 4), dilation,
    /// kernels up to 9×9, against the same f64 definition.
    #[test]
    fn depthwise_stride1_wide(c in 1usize..5, h in 1usize..30, w in 20usize..80,
                 kh in 1usize..10, kw in 1usize..10,
                 pt in 0usize..5, pl in prop_oneof![Just(0usize), 1usize..5], pb in 0usize..5,
                 pr in 0usize..5,
                 d in 1usize..4, act in 0usize..3, bn in any::<bool>()) {
        depthwise_case(1, c, [h, w], [kh, kw], [1, 1], [pt, pl, pb, pr], d, act, bn)?;
    }

    /// Global average pooling (vectorised running sums, planes grouped into tasks) against
    /// the mean in f64, on planes from 1×1 to 64×64 and up to 300 channels (tasks of one
    /// plane to many).
    #[test]
    fn global_average_pool(n in 1usize..3, c in 1usize..300, h in 1usize..64, w in 1usize..64) {
        let (x, _, y, planned) = run_model(
            n,
            &[("x", vec![c, h, w])],
            &["{id: p, op: global_avgpool}".to_string()],
            true,
        );
        prop_assert_eq!(&y.shape, &vec![n, c, 1, 1]);
        let plane = h * w;
        let want: Vec<f64> = x[0]
            .data
            .chunks(plane)
            .map(|p| p.iter().map(|&v| f64::from(v)).sum::<f64>() / plane as f64)
            .collect();
        close(&y.data, &want)?;
        close(&planned.data, &want)?;
    }

    /// Add and multiply with NumPy broadcasting (size-1 and missing leading axes on either
    /// side), against index arithmetic per element.
    #[test]
    fn broadcast_merges(dims in prop::collection::vec(1usize..6, 2..5), mask_a in 0u32..32,
                        mask_b in 0u32..32, product in any::<bool>()) {
        let rank = dims.len();
        // Each input has every axis, some set to 1 — but the batch, which the format gives
        // every model input alike.
        let pick = |mask: u32| -> Vec<usize> {
            dims.iter().enumerate().map(|(i, &v)| if i > 0 && mask >> i & 1 == 1 { 1 } else { v }).collect()
        };
        let (a_dims, b_dims) = (pick(mask_a), pick(mask_b));
        let op = if product { "multiply" } else { "add" };
        let (xs, _, y, _) = run_model(
            a_dims[0],
            &[("a", a_dims[1..].to_vec()), ("b", b_dims[1..].to_vec())],
            &[format!("{{op: {op}, in: [a, b]}}")],
            true,
        );
        let out: Vec<usize> = (0..rank).map(|i| a_dims[i].max(b_dims[i])).collect();
        prop_assert_eq!(&y.shape, &out);
        let at = |t: &Tensor, idx: &[usize]| {
            let mut off = 0;
            for (i, &d) in t.shape.iter().enumerate() {
                off = off * d + if d == 1 { 0 } else { idx[i] };
            }
            f64::from(t.data[off])
        };
        let mut want = Vec::new();
        let mut idx = vec![0usize; rank];
        for _ in 0..y.data.len() {
            let (p, q) = (at(&xs[0], &idx), at(&xs[1], &idx));
            want.push(f64::from(if product { (p * q) as f32 } else { (p + q) as f32 }));
            for a in (0..rank).rev() {
                idx[a] += 1;
                if idx[a] < out[a] {
                    break;
                }
                idx[a] = 0;
            }
        }
        close(&y.data, &want)?;
    }
}

/// A squeeze-and-excitation block as the zoo writes it: the gated tensor is read by the pooling
/// first and dies at the product, which the plan computes in place. The gate's output is
/// checked against the block computed by hand from the layers' weights.
#[test]
fn squeeze_excitation_in_place() {
    let nodes = [
        "{id: pool, op: global_avgpool, in: x}".to_string(),
        "{id: fc1, op: conv, out: 4, kernel: 1, act: relu}".to_string(),
        "{id: fc2, op: conv, out: 16, kernel: 1, act: hardsigmoid}".to_string(),
        "{id: scale, op: multiply, in: [x, fc2]}".to_string(),
    ];
    let (x, w, y, _) = run_model(2, &[("x", vec![16, 9, 7])], &nodes, true);
    let x = &x[0];
    // Nodes: x, pool, fc1, fc1.relu, fc2, fc2.hardsigmoid, scale.
    let (w1, b1, w2, b2) = (&w[2][0].data, &w[2][1].data, &w[4][0].data, &w[4][1].data);
    let plane = 9 * 7;
    for n in 0..2 {
        let pooled: Vec<f64> = (0..16)
            .map(|c| {
                let s = &x.data[(n * 16 + c) * plane..(n * 16 + c + 1) * plane];
                s.iter().map(|&v| f64::from(v)).sum::<f64>() / plane as f64
            })
            .collect();
        let hidden: Vec<f64> = (0..4)
            .map(|o| {
                let v = f64::from(b1[o])
                    + (0..16)
                        .map(|c| f64::from(w1[o * 16 + c]) * pooled[c])
                        .sum::<f64>();
                v.max(0.0)
            })
            .collect();
        for c in 0..16 {
            let g = f64::from(b2[c])
                + (0..4)
                    .map(|o| f64::from(w2[c * 4 + o]) * hidden[o])
                    .sum::<f64>();
            let gate = (g + 3.0).clamp(0.0, 6.0) / 6.0;
            for i in 0..plane {
                let e = (n * 16 + c) * plane + i;
                let want = f64::from(x.data[e]) * gate;
                let got = f64::from(y.data[e]);
                assert!(
                    (got - want).abs() <= 1e-5 * (1.0 + want.abs()),
                    "{e}: {got} vs {want}"
                );
            }
        }
    }
}

/// The inference plan (folded norms, fused hard-swish/SiLU/hard-sigmoid epilogues, SE gates
/// scaled in place, strided depthwise over phase planes, BN + ReLU in one pass) changes no
/// output of the mobile and concatenating families beyond rounding: the as-written pass is the
/// reference (each layer on its own, outputs in fresh tensors).
#[test]
fn the_plan_changes_no_output_of_the_mobile_and_concat_models() {
    for name in [
        "mobilenet_v3_small",
        "shufflenet_v2_x1_0",
        "squeezenet1_1",
        "mnasnet0_5",
    ] {
        let net = common::zoo_net(name);
        let w = exec::init_weights(&net, 2).unwrap();
        let x = exec::random_input(&net, 2).unwrap();
        let plain = exec::run(&net, &w, &x, None).unwrap();
        let fast = exec::run_planned(&net, &w, &exec::plan(&net, &w), &x, None).unwrap();
        let scale = plain.outputs[0]
            .data
            .iter()
            .fold(0f32, |m, v| m.max(v.abs()));
        assert!(scale > 0.0, "{name}: an all-zero output proves nothing");
        for (a, b) in plain.outputs[0].data.iter().zip(&fast.outputs[0].data) {
            assert!((a - b).abs() <= 1e-4 * scale, "{name}: {a} vs {b}");
        }
    }
}

/// One depthwise convolution (`c` channels of `h × w`, `kh × kw` taps, stride `[sy, sx]`,
/// padding `[top, left, bottom, right]`, dilation `d`), a bias or a batch norm, and activation
/// `act` (identity, SiLU, hard-swish), run as written and planned, against the direct
/// definition in f64.
#[allow(clippy::too_many_arguments)]
pub(crate) fn depthwise_case(
    n: usize,
    c: usize,
    [h, w]: [usize; 2],
    [kh, kw]: [usize; 2],
    [sy, sx]: [usize; 2],
    [pt, pl, pb, pr]: [usize; 4],
    d: usize,
    act: usize,
    bn: bool,
) -> Result<(), TestCaseError> {
    // The dilated kernel must fit in the padded input.
    prop_assume!(h + pt + pb > d * (kh - 1) && w + pl + pr > d * (kw - 1));
    let act_name = ["identity", "silu", "hardswish"][act];
    let mut nodes = vec![format!(
            "{{id: dw, op: conv, out: {c}, groups: {c}, kernel: [{kh}, {kw}], stride: [{sy}, {sx}], padding: [{pt}, {pl}, {pb}, {pr}], dilation: {d}, bias: {}}}",
            !bn
        )];
    if bn {
        nodes.push("{id: bn, op: batchnorm}".to_string());
    }
    if act > 0 {
        nodes.push(format!("{{id: act, op: {act_name}}}"));
    }
    let (x, wts, y, planned) = run_model(n, &[("x", vec![c, h, w])], &nodes, !bn);
    let (x, f) = (&x[0], &wts[1][0].data);
    let bias = (!bn).then(|| &wts[1][1].data);
    let (oh, ow) = (y.shape[2], y.shape[3]);
    let mut want = Vec::with_capacity(y.data.len());
    for b in 0..n {
        for ch in 0..c {
            for oy in 0..oh {
                for ox in 0..ow {
                    let mut acc = bias.map_or(0.0, |v| f64::from(v[ch]));
                    for ky in 0..kh {
                        for kx in 0..kw {
                            let iy = (oy * sy + ky * d) as isize - pt as isize;
                            let ix = (ox * sx + kx * d) as isize - pl as isize;
                            if iy >= 0 && ix >= 0 && (iy as usize) < h && (ix as usize) < w {
                                let v = x.data[((b * c + ch) * h + iy as usize) * w + ix as usize];
                                acc += f64::from(f[(ch * kh + ky) * kw + kx]) * f64::from(v);
                            }
                        }
                    }
                    // The seeded batch norm is the identity (γ 1, β 0, mean 0, var 1) up
                    // to its ε: x / √(1 + 1e-5).
                    if bn {
                        acc /= (1.0f64 + 1e-5).sqrt();
                    }
                    want.push(match act {
                        1 => silu(acc),
                        2 => hardswish(acc),
                        _ => acc,
                    });
                }
            }
        }
    }
    close(&y.data, &want)?;
    close(&planned.data, &want)?;
    Ok(())
}
