//! Every executor kernel against a naive, obviously-correct reference (plain loops written
//! from PyTorch's definitions), on random shapes, strides, paddings, dilations, groups and
//! ceil modes (proptest). One-layer models are built through the public YAML front end.

use crate::common::{data_json, net, usizes};
use archscope::exec::{self, Tensor};
use archscope::{BuildOptions, Network};
use proptest::prelude::*;

/// Builds `inputs: {x: shape}` → one layer `layer` (a YAML flow mapping) and runs it with
/// seeded weights on a seeded input. Returns (input, weights of the layer, output), or the
/// build error's message when the model does not build.
fn one_layer(shape: &[usize], layer: &str) -> Result<(Tensor, Vec<Tensor>, Tensor), String> {
    let dims: Vec<String> = shape[1..].iter().map(|d| d.to_string()).collect();
    let yaml = format!(
        "inputs: {{x: [{}]}}\nnodes:\n  - {layer}\n",
        dims.join(", ")
    );
    let net = Network::from_yaml(
        "k.yaml",
        &yaml,
        &BuildOptions {
            batch: shape[0] as u64,
            ..Default::default()
        },
    )
    .map_err(|e| e.to_string())?;
    let w = exec::init_weights(&net, 7).unwrap();
    let x = exec::random_input(&net, 3).unwrap();
    let r = exec::run(&net, &w, &x, None).unwrap();
    // The inference plan (in place, max pool without indices…) gives the same bits.
    let planned = exec::run_planned(&net, &w, &exec::plan(&net, &w), &x, None).unwrap();
    for (a, b) in r.outputs[0].data.iter().zip(&planned.outputs[0].data) {
        assert!(
            a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan()),
            "{layer}: {a} as written, {b} planned"
        );
    }
    Ok((x[0].clone(), w.per_node[1].clone(), r.outputs[0].clone()))
}

type OneLayer = (Tensor, Vec<Tensor>, Tensor);

/// [`one_layer`] for a generated configuration the test has classified by hand: `refusal`
/// is empty for a valid one, which must build (a refusal fails the test), or lists the
/// phrases of which the error of an invalid one must contain one (building it fails the
/// test). Returns the run of a valid configuration, None for a refused one.
fn generated(
    shape: &[usize],
    layer: &str,
    refusal: &[&str],
) -> Result<Option<OneLayer>, TestCaseError> {
    match one_layer(shape, layer) {
        Ok(r) if refusal.is_empty() => Ok(Some(r)),
        Ok(_) => Err(TestCaseError::fail(format!(
            "{layer} on {shape:?} built, but it should be refused ({refusal:?})"
        ))),
        Err(e) if refusal.is_empty() => Err(TestCaseError::fail(format!(
            "{layer} on {shape:?} is valid but was refused: {e}"
        ))),
        Err(e) => {
            prop_assert!(
                refusal.iter().any(|why| e.contains(why)),
                "{} on {:?}: refused with `{}`, expected one of {:?}",
                layer,
                shape,
                e,
                refusal
            );
            Ok(None)
        }
    }
}

fn close(a: &[f32], b: &[f32]) -> Result<(), TestCaseError> {
    prop_assert_eq!(a.len(), b.len());
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        // Equal infinities (a max-pool window that lies wholly in the padding gives -inf, as
        // in PyTorch) are equal, though their difference is NaN.
        prop_assert!(
            x == y || (x - y).abs() <= 1e-4 * (1.0 + y.abs()),
            "element {}: {} vs {}",
            i,
            x,
            y
        );
    }
    Ok(())
}

fn at(t: &Tensor, n: usize, c: usize, y: usize, x: usize) -> f32 {
    let s = &t.shape;
    t.data[((n * s[1] + c) * s[2] + y) * s[3] + x]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn conv2d(n in 1usize..3, cg in 1usize..4, og in 1usize..4, g in 1usize..4, h in 1usize..12, w in 1usize..12,
              kh in 1usize..5, kw in 1usize..5, s in 1usize..4, pt in 0usize..3, pl in 0usize..3, pb in 0usize..3,
              pr in 0usize..3, d in 1usize..3, bias in any::<bool>()) {
        check_conv(n, cg, og, g, h, w, [kh, kw], s, [pt, pl, pb, pr], d, bias)?;
    }

    #[test]
    fn conv_transpose2d(n in 1usize..3, cg in 1usize..4, og in 1usize..4, g in 1usize..3, h in 1usize..8, w in 1usize..8,
                        k in 1usize..5, s in 1usize..4, p in 0usize..3, d in 1usize..3, op in 0usize..3) {
        let (cin, cout) = (cg * g, og * g);
        let layer = format!("{{op: deconv, out: {cout}, kernel: {k}, stride: {s}, padding: {p}, dilation: {d}, output_padding: {op}, groups: {g}}}");
        // Invalid: output_padding ≥ max(stride, dilation) (PyTorch), or padding 2p that
        // removes the whole output (i − 1)·s + d·(k − 1) + 1 + output_padding.
        let mut refusal = Vec::new();
        if op >= s.max(d) { refusal.push("output_padding"); }
        if (h.min(w) - 1) * s + d * (k - 1) + 1 + op <= 2 * p { refusal.push("removes the whole output"); }
        let Some((x, wts, y)) = generated(&[n, cin, h, w], &layer, &refusal)? else { return Ok(()) };
        let (oh, ow) = (y.shape[2], y.shape[3]);
        let mut want = vec![0.0f32; n * cout * oh * ow];
        for b in 0..n { for ci in 0..cin { for iy in 0..h { for ix in 0..w {
            let gi = ci / cg;
            for oo in 0..og { for ky in 0..k { for kx in 0..k {
                let oy = (iy * s + ky * d) as isize - p as isize;
                let ox = (ix * s + kx * d) as isize - p as isize;
                if oy >= 0 && ox >= 0 && (oy as usize) < oh && (ox as usize) < ow {
                    let o = gi * og + oo;
                    want[((b * cout + o) * oh + oy as usize) * ow + ox as usize] +=
                        wts[0].data[((ci * og + oo) * k + ky) * k + kx] * at(&x, b, ci, iy, ix);
                }
            }}}
        }}}}
        for b in 0..n { for o in 0..cout { for i in 0..oh * ow { want[(b * cout + o) * oh * ow + i] += wts[1].data[o]; } } }
        close(&y.data, &want)?;
    }

    #[test]
    fn pooling(max in any::<bool>(), h in 1usize..12, w in 1usize..12, k in 1usize..5, s in 1usize..4, p in 0usize..3,
               d in 1usize..3, ceil in any::<bool>(), cip in any::<bool>()) {
        let layer = if max {
            format!("{{op: maxpool, kernel: {k}, stride: {s}, padding: {p}, dilation: {d}, ceil: {ceil}}}")
        } else {
            format!("{{op: avgpool, kernel: {k}, stride: {s}, padding: {p}, ceil: {ceil}, count_include_pad: {cip}}}")
        };
        let d = if max { d } else { 1 };
        // Invalid (PyTorch): padding over half the window span d·(k − 1) + 1, or a window
        // longer than the padded input.
        let eff = d * (k - 1) + 1;
        let mut refusal = Vec::new();
        if 2 * p > eff { refusal.push("more than half the kernel"); }
        if h.min(w) + 2 * p < eff { refusal.push("the pooling window spans"); }
        let Some((x, _, y)) = generated(&[2, 3, h, w], &layer, &refusal)? else { return Ok(()) };
        let (oh, ow) = (y.shape[2], y.shape[3]);
        let mut want = Vec::new();
        for b in 0..2 { for c in 0..3 { for oy in 0..oh { for ox in 0..ow {
            let (mut best, mut sum, mut valid, mut inside_padded) = (f32::NEG_INFINITY, 0.0f32, 0, 0);
            for ky in 0..k { for kx in 0..k {
                let iy = (oy * s + ky * d) as isize - p as isize;
                let ix = (ox * s + kx * d) as isize - p as isize;
                // Positions inside the padded input count for count_include_pad.
                if iy < (h + p) as isize && ix < (w + p) as isize { inside_padded += 1; }
                if iy >= 0 && ix >= 0 && (iy as usize) < h && (ix as usize) < w {
                    let v = at(&x, b, c, iy as usize, ix as usize);
                    best = best.max(v);
                    sum += v;
                    valid += 1;
                }
            }}
            want.push(if max { best } else if valid == 0 { 0.0 } else { sum / if cip { inside_padded } else { valid } as f32 });
        }}}}
        close(&y.data, &want)?;
    }

    #[test]
    fn adaptive_pooling(max in any::<bool>(), h in 1usize..12, w in 1usize..12, oh in 1usize..6, ow in 1usize..6) {
        let op = if max { "adaptive_maxpool2d" } else { "adaptive_avgpool2d" };
        // Every size is valid (PyTorch's windows overlap when the output is the larger).
        let Some((x, _, y)) = generated(&[1, 2, h, w], &format!("{{op: {op}, size: [{oh}, {ow}]}}"), &[])? else { return Ok(()) };
        let mut want = Vec::new();
        for c in 0..2 { for i in 0..oh { for j in 0..ow {
            let (ys, ye) = (i * h / oh, ((i + 1) * h).div_ceil(oh));
            let (xs, xe) = (j * w / ow, ((j + 1) * w).div_ceil(ow));
            let vals: Vec<f32> = (ys..ye).flat_map(|a| (xs..xe).map(move |b| (a, b))).map(|(a, b)| at(&x, 0, c, a, b)).collect();
            want.push(if max { vals.iter().copied().fold(f32::NEG_INFINITY, f32::max) } else { vals.iter().sum::<f32>() / vals.len() as f32 });
        }}}
        close(&y.data, &want)?;
    }

    #[test]
    fn bilinear_upsampling(h in 1usize..8, w in 1usize..8, oh in 1usize..16, ow in 1usize..16, align in any::<bool>()) {
        let Some((x, _, y)) = generated(&[1, 1, h, w], &format!("{{op: upsample, size: [{oh}, {ow}], mode: bilinear, align_corners: {align}}}"), &[])? else { return Ok(()) };
        let src = |o: usize, out: usize, inp: usize| -> f64 {
            if align { if out > 1 { o as f64 * (inp - 1) as f64 / (out - 1) as f64 } else { 0.0 } }
            else { ((o as f64 + 0.5) * inp as f64 / out as f64 - 0.5).max(0.0) }
        };
        let mut want = Vec::new();
        for i in 0..oh { for j in 0..ow {
            let (sy, sx) = (src(i, oh, h), src(j, ow, w));
            let (y0, x0) = ((sy.floor() as usize).min(h - 1), (sx.floor() as usize).min(w - 1));
            let (y1, x1) = ((y0 + 1).min(h - 1), (x0 + 1).min(w - 1));
            let (ly, lx) = ((sy - y0 as f64) as f32, (sx - x0 as f64) as f32);
            want.push((1.0 - ly) * ((1.0 - lx) * at(&x, 0, 0, y0, x0) + lx * at(&x, 0, 0, y0, x1))
                + ly * ((1.0 - lx) * at(&x, 0, 0, y1, x0) + lx * at(&x, 0, 0, y1, x1)));
        }}
        close(&y.data, &want)?;
    }

    #[test]
    fn linear_and_broadcast(n in 1usize..4, i in 1usize..20, o in 1usize..20) {
        let Some((x, wts, y)) = generated(&[n, i], &format!("{{op: linear, out: {o}}}"), &[])? else { return Ok(()) };
        let mut want = Vec::new();
        for b in 0..n { for j in 0..o {
            want.push(wts[1].data[j] + (0..i).map(|k| x.data[b * i + k] * wts[0].data[j * i + k]).sum::<f32>());
        }}
        close(&y.data, &want)?;
    }
}

#[test]
fn unpool_restores_max_positions() {
    // max-pool 2×2 then unpool: each window's maximum goes back where it was, zeros elsewhere.
    let yaml = "inputs: {x: [1, 4, 4]}\nnodes:\n  - {id: pool, op: maxpool, kernel: 2}\n  - {id: up, op: max_unpool2d, in: [pool, pool], kernel: 2}\n";
    let net = net(yaml);
    let w = exec::init_weights(&net, 0).unwrap();
    let x = Tensor::new(
        vec![1, 1, 4, 4],
        (0..16).map(|i| ((i * 7) % 16) as f32).collect(),
    );
    let r = exec::run(&net, &w, std::slice::from_ref(&x), None).unwrap();
    let y = &r.outputs[0];
    for wy in 0..2 {
        for wx in 0..2 {
            let cells: Vec<(usize, f32)> = (0..4)
                .map(|t| {
                    let (yy, xx) = (wy * 2 + t / 2, wx * 2 + t % 2);
                    (yy * 4 + xx, x.data[yy * 4 + xx])
                })
                .collect();
            let (best, v) =
                cells
                    .iter()
                    .copied()
                    .fold((0, f32::MIN), |a, b| if b.1 > a.1 { b } else { a });
            for (p, _) in cells {
                assert_eq!(y.data[p], if p == best { v } else { 0.0 });
            }
        }
    }
}

#[test]
fn normalisation_and_activations() {
    // Batch norm with its initial running statistics (mean 0, var 1) is x / sqrt(1 + eps).
    let (x, _, y) = one_layer(&[2, 3, 4, 4], "{op: bn}").unwrap();
    for (a, b) in x.data.iter().zip(&y.data) {
        assert!((b - a / (1.0f32 + 1e-5).sqrt()).abs() < 1e-6);
    }
    // Group norm: each (sample, group) has mean 0 and variance 1 after it.
    let (_, _, y) = one_layer(&[2, 4, 3, 3], "{op: groupnorm, groups: 2}").unwrap();
    for chunk in y.data.chunks(2 * 9) {
        let m: f32 = chunk.iter().sum::<f32>() / 18.0;
        let v: f32 = chunk.iter().map(|x| (x - m).powi(2)).sum::<f32>() / 18.0;
        assert!(m.abs() < 1e-5 && (v - 1.0).abs() < 1e-3, "{m} {v}");
    }
    // Softmax over classes sums to 1.
    let (_, _, y) = one_layer(&[3, 10], "{op: softmax}").unwrap();
    for row in y.data.chunks(10) {
        assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-5);
    }
    // Activations at known points.
    for (op, input, want) in [
        ("relu6", 7.0f32, 6.0f32),
        ("leaky_relu", -2.0, -0.02),
        ("hardswish", 1.0, 1.0 * 4.0 / 6.0),
        ("sigmoid", 0.0, 0.5),
        ("gelu", 1.0, 0.841_344_7),
        ("silu", 1.0, 0.731_058_6),
        ("softsign", 1.0, 0.5),
        ("elu", -1.0, (-1.0f32).exp_m1()),
        ("mish", 1.0, 0.865_098_4),
    ] {
        let yaml = format!("inputs: {{x: [1]}}\nnodes:\n  - {{op: {op}}}\n");
        let net = net(&yaml);
        let w = exec::init_weights(&net, 0).unwrap();
        let r = exec::run(&net, &w, &[Tensor::new(vec![1, 1], vec![input])], None).unwrap();
        assert!(
            (r.outputs[0].data[0] - want).abs() < 1e-5,
            "{op}({input}) = {} not {want}",
            r.outputs[0].data[0]
        );
    }
}

/// A convolution layer against the naive loops (`pad` = top, left, bottom, right).
#[allow(clippy::too_many_arguments)]
fn check_conv(
    n: usize,
    cg: usize,
    og: usize,
    g: usize,
    h: usize,
    w: usize,
    [kh, kw]: [usize; 2],
    s: usize,
    [pt, pl, pb, pr]: [usize; 4],
    d: usize,
    bias: bool,
) -> Result<(), TestCaseError> {
    let (cin, cout) = (cg * g, og * g);
    let layer = format!("{{op: conv, out: {cout}, kernel: [{kh}, {kw}], stride: {s}, padding: [{pt}, {pl}, {pb}, {pr}], dilation: {d}, groups: {g}, bias: {bias}}}");
    // Invalid: a dilated kernel d·(k − 1) + 1 longer than the padded input.
    let refusal: &[&str] = if h + pt + pb < d * (kh - 1) + 1 || w + pl + pr < d * (kw - 1) + 1 {
        &["the kernel spans"]
    } else {
        &[]
    };
    let Some((x, wts, y)) = generated(&[n, cin, h, w], &layer, refusal)? else {
        return Ok(());
    };
    let (oh, ow) = (y.shape[2], y.shape[3]);
    let mut want = vec![0.0f32; n * cout * oh * ow];
    for b in 0..n {
        for o in 0..cout {
            for oy in 0..oh {
                for ox in 0..ow {
                    let gi = o / og;
                    let mut acc = if bias { wts[1].data[o] } else { 0.0 };
                    for ci in 0..cg {
                        for ky in 0..kh {
                            for kx in 0..kw {
                                let iy = (oy * s + ky * d) as isize - pt as isize;
                                let ix = (ox * s + kx * d) as isize - pl as isize;
                                if iy >= 0 && ix >= 0 && (iy as usize) < h && (ix as usize) < w {
                                    acc += wts[0].data[((o * cg + ci) * kh + ky) * kw + kx]
                                        * at(&x, b, gi * cg + ci, iy as usize, ix as usize);
                                }
                            }
                        }
                    }
                    want[((b * cout + o) * oh + oy) * ow + ox] = acc;
                }
            }
        }
    }
    close(&y.data, &want)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Sizes large enough for the tiled paths: several column tiles per thread (large images),
    /// row tiles over one im2col (small images, many channels), 1×1 convolutions reading the
    /// input directly.
    #[test]
    fn conv2d_tiled(cg in 1usize..24, og in 1usize..40, g in 1usize..3, h in 6usize..48, w in 6usize..48,
                    k in 1usize..4, s in 1usize..3, p in 0usize..2, d in 1usize..3, bias in any::<bool>()) {
        check_conv(1, cg, og, g, h, w, [k, k], s, [p, p, p, p], d, bias)?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// `padding_mode` reflect / replicate / circular against the naive loops, which map each
    /// tap outside the image back inside by PyTorch's definitions.
    #[test]
    fn conv2d_padding_modes(mode in 0usize..3, h in 2usize..9, w in 2usize..9, k in 1usize..4, s in 1usize..3,
                            pt in 0usize..3, pl in 0usize..3, pb in 0usize..3, pr in 0usize..3, d in 1usize..3) {
        let name = ["reflect", "replicate", "circular"][mode];
        let (cin, cout) = (2, 3);
        let layer = format!("{{op: conv, out: {cout}, kernel: {k}, stride: {s}, dilation: {d}, padding: [{pt}, {pl}, {pb}, {pr}], padding_mode: {name}}}");
        // Invalid: reflect padding ≥ the size, circular padding > the size (PyTorch), or a
        // dilated kernel longer than the padded input.
        let (most_h, most_w) = (pt.max(pb), pl.max(pr));
        let mut refusal = Vec::new();
        if (name == "reflect" && (most_h >= h || most_w >= w)) || (name == "circular" && (most_h > h || most_w > w)) {
            refusal.push("pads the");
        }
        if h + pt + pb < d * (k - 1) + 1 || w + pl + pr < d * (k - 1) + 1 { refusal.push("the kernel spans"); }
        let Some((x, wts, y)) = generated(&[1, cin, h, w], &layer, &refusal)? else { return Ok(()) };
        let map = |i: isize, len: usize| -> usize {
            let last = len as isize - 1;
            match name {
                "reflect" => if i < 0 { (-i) as usize } else if i > last { (2 * last - i) as usize } else { i as usize },
                "replicate" => i.clamp(0, last) as usize,
                _ => (((i % len as isize) + len as isize) % len as isize) as usize,
            }
        };
        let (oh, ow) = (y.shape[2], y.shape[3]);
        let mut want = vec![0.0f32; cout * oh * ow];
        for o in 0..cout { for oy in 0..oh { for ox in 0..ow {
            let mut acc = wts[1].data[o];
            for ci in 0..cin { for ky in 0..k { for kx in 0..k {
                let iy = map((oy * s + ky * d) as isize - pt as isize, h);
                let ix = map((ox * s + kx * d) as isize - pl as isize, w);
                acc += wts[0].data[((o * cin + ci) * k + ky) * k + kx] * at(&x, 0, ci, iy, ix);
            }}}
            want[(o * oh + oy) * ow + ox] = acc;
        }}}
        close(&y.data, &want)?;
    }
}

#[test]
fn padding_modes_by_hand() {
    // A 3×3 image 1…9 and a 3×3 filter that picks its top-left tap: output (0, 0) with padding
    // 1 reads pixel (−1, −1) — reflected to (1, 1) = 5, replicated to (0, 0) = 1, wrapped to
    // (2, 2) = 9; with zeros it is 0.
    for (mode, want) in [
        ("zeros", 0.0),
        ("reflect", 5.0),
        ("replicate", 1.0),
        ("circular", 9.0),
    ] {
        let yaml = format!(
            "inputs: {{x: [1, 3, 3]}}\nnodes:\n  - {{op: conv, out: 1, kernel: 3, padding: 1, bias: false, padding_mode: {mode}, weight_values: [1, 0, 0, 0, 0, 0, 0, 0, 0]}}\n"
        );
        let net = net(&yaml);
        let w = exec::init_weights(&net, 1).unwrap();
        let x = Tensor::new(vec![1, 1, 3, 3], (1..=9).map(|v| v as f32).collect());
        let y = exec::run(&net, &w, &[x], None).unwrap();
        assert_eq!(y.outputs[0].data[0], want, "{mode}");
    }
}

/// A value of `tests/data/nonfinite_reference.json`: a number, or "nan", "inf", "-inf".
fn nonfinite_value(v: &serde_json::Value) -> f32 {
    match v {
        serde_json::Value::String(s) if s == "nan" => f32::NAN,
        serde_json::Value::String(s) if s == "inf" => f32::INFINITY,
        serde_json::Value::String(s) if s == "-inf" => f32::NEG_INFINITY,
        v => v.as_f64().expect("a number") as f32,
    }
}

/// PyTorch's NaN/Inf semantics in every kernel: every activation (softmax and log-softmax
/// along dims 1 and -1), every pool but max-unpool (1-D, 2-D and 3-D), every norm (batchnorm3d
/// and instancenorm1d/3d included), the merges (add, multiply, concat), the channel magnitude,
/// every upsampling mode (linear and trilinear included), conv1d/conv3d in each padding
/// mode (with PyTorch's own weights from the JSON), and reshape, permute, matmul, SDPA,
/// multi-head and shifted-window attention, a parameter and an embedding table holding the
/// special values (PyTorch's tensors loaded by name). Each layer of `tests/data/nonfinite_reference.json` (written by
/// `scripts/nonfinite_reference.py` from PyTorch's own modules) runs on PyTorch's input, as
/// written and through the inference plan; NaN must come out exactly where PyTorch gives NaN,
/// infinities where it gives the same infinity, and finite values agree within rounding.
#[test]
fn nonfinite_values_follow_pytorch() {
    let doc = data_json("nonfinite_reference.json");
    let cases = doc["cases"].as_array().unwrap();
    assert!(cases.len() >= 153, "{} cases", cases.len());
    let mut failures = Vec::new();
    for case in cases {
        let op = case["op"].as_str().unwrap();
        let shape = usizes(&case["shape"]);
        let dims: Vec<String> = shape[1..].iter().map(|d| d.to_string()).collect();
        let yaml = format!("inputs: {{x: [{}]}}\nnodes:\n  - {op}\n", dims.join(", "));
        let net = Network::from_yaml(
            "nonfinite.yaml",
            &yaml,
            &BuildOptions {
                batch: shape[0] as u64,
                ..Default::default()
            },
        )
        .unwrap_or_else(|e| panic!("{op}: {e}"));
        let input: Vec<f32> = case["input"]
            .as_array()
            .unwrap()
            .iter()
            .map(nonfinite_value)
            .collect();
        let want: Vec<f32> = case["output"]
            .as_array()
            .unwrap()
            .iter()
            .map(nonfinite_value)
            .collect();
        let want_shape: Vec<usize> = case["output_shape"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d.as_u64().unwrap() as usize)
            .collect();
        let mut w = exec::init_weights(&net, 0).unwrap();
        // PyTorch's tensors for the first layer that has weights: a convolution's weight and
        // bias in archscope's order, or (with a `name`) each under its archscope weight name
        // (an attention's, a parameter's, an embedding's table).
        if let Some(ws) = case.get("weights").and_then(|v| v.as_array()) {
            let k = (0..net.nodes.len())
                .find(|&k| !w.per_node[k].is_empty())
                .unwrap_or_else(|| panic!("{op}: no layer with weights"));
            let specs = net.nodes[k].layer.weights();
            if ws.iter().all(|v| v.get("name").is_none()) {
                assert_eq!(ws.len(), w.per_node[k].len(), "{op}: weight tensors");
            }
            for (i, v) in ws.iter().enumerate() {
                let j = match v.get("name").and_then(|n| n.as_str()) {
                    Some(name) => specs
                        .iter()
                        .position(|s| s.name == name)
                        .unwrap_or_else(|| panic!("{op}: no weight `{name}`")),
                    None => i,
                };
                let t = &mut w.per_node[k][j];
                assert_eq!(t.shape, usizes(&v["shape"]), "{op}");
                t.data = v["values"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(nonfinite_value)
                    .collect();
            }
        }
        let x = vec![Tensor::new(shape.clone(), input)];
        let written = exec::run(&net, &w, &x, None).unwrap();
        let planned = exec::run_planned(&net, &w, &exec::plan(&net, &w), &x, None).unwrap();
        for (how, r) in [("as written", &written), ("planned", &planned)] {
            let got = &r.outputs[0];
            assert_eq!(got.shape, want_shape, "{op}");
            for (i, (&g, &e)) in got.data.iter().zip(&want).enumerate() {
                // The one place PyTorch disagrees with itself: exact GELU at +inf is +inf on
                // its scalar path (`F.gelu(torch.tensor([inf]))`) but NaN on its vectorised
                // path (`erf`'s polynomial gives inf·0), which a 96-element tensor takes.
                // archscope keeps the limit, +inf.
                let e = if op == "{op: gelu}" && x[0].data[i] == f32::INFINITY {
                    f32::INFINITY
                } else {
                    e
                };
                let ok = if e.is_nan() {
                    g.is_nan()
                } else if e.is_infinite() {
                    g == e
                } else {
                    g.is_finite() && (g - e).abs() <= 1e-5 * (1.0 + e.abs())
                };
                if !ok {
                    failures.push(format!("{op} ({how}), element {i}: {g}, PyTorch {e}"));
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} mismatches:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
