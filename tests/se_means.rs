//! The squeeze-and-excitation gate's pool computed by the depthwise convolution before it
//! (`Plan::means`, `Ctx::means`: the interleaved kernel sums each channel's finished outputs
//! while its rows are in L1, and the global average pool does not run). Against the
//! definition in f64 on random shapes (proptest): 1 to 40 channels (under sixteen the plane
//! kernel runs and the pool runs as written; whole and partial groups of sixteen), maps of
//! 1×1 to 23×23 and wide ones up to 119×119 (several bands of rows), kernels 1×1 to 5×5,
//! strides 1–3, padding 0–2, batches of one and two, a bias or a folded batch norm, no
//! activation, SiLU, hard-swish or ReLU; the pool alone and the whole gate (the tensor scaled
//! by the sigmoid of the pooled means). The plan must ask the depthwise layer for the means;
//! as written and through the plan both are held to the f64 definition. The zoo's gates:
//! every one of efficientnet_b0 (16) and mobilenet_v3_small (9) is asked of its block's
//! depthwise convolution.

use crate::common;
use archscope::{exec, BuildOptions, Network};
use proptest::prelude::*;

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

fn act_f64(act: usize, v: f64) -> f64 {
    match act {
        1 => v / (1.0 + (-v).exp()),
        2 => v * (v + 3.0).clamp(0.0, 6.0) / 6.0,
        3 => v.max(0.0),
        _ => v,
    }
}

/// A depthwise convolution (`k`×`k`, stride `s`, padding `p`), an optional batch norm and
/// activation, then a global average pool, and with `gate` the input of the pool scaled by the
/// sigmoid of its means; as written and planned, against f64.
#[allow(clippy::too_many_arguments)]
fn case(
    n: usize,
    c: usize,
    [h, w]: [usize; 2],
    k: usize,
    s: usize,
    p: usize,
    act: usize,
    bn: bool,
    gate: bool,
) -> Result<(), TestCaseError> {
    prop_assume!(h + 2 * p >= k && w + 2 * p >= k);
    let mut nodes = vec![format!(
        "{{id: dw, op: conv, out: {c}, groups: {c}, kernel: {k}, stride: {s}, padding: {p}, bias: {}}}",
        !bn
    )];
    if bn {
        nodes.push("{id: bn, op: batchnorm}".to_string());
    }
    let last = if act > 0 {
        let name = ["", "silu", "hardswish", "relu"][act];
        nodes.push(format!("{{id: act, op: {name}}}"));
        "act"
    } else if bn {
        "bn"
    } else {
        "dw"
    };
    nodes.push("{id: pool, op: global_avgpool}".to_string());
    if gate {
        nodes.push("{id: gate, op: sigmoid}".to_string());
        nodes.push(format!("{{id: scale, op: multiply, in: [{last}, gate]}}"));
    }
    let yaml = format!(
        "inputs: {{x: [{c}, {h}, {w}]}}\nnodes:\n{}\n",
        nodes
            .iter()
            .map(|l| format!("  - {l}"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    let net = Network::from_yaml(
        "se.yaml",
        &yaml,
        &BuildOptions {
            batch: n as u64,
            ..Default::default()
        },
    )
    .unwrap_or_else(|e| panic!("{yaml}\n{e}"));
    let wts = exec::init_weights(&net, 13).unwrap();
    let x = exec::random_input(&net, 17).unwrap();
    let plan = exec::plan(&net, &wts);
    let (dw, pool) = (
        net.nodes.iter().position(|nd| nd.name == "dw").unwrap(),
        net.nodes.iter().position(|nd| nd.name == "pool").unwrap(),
    );
    prop_assert_eq!(
        plan.means[dw],
        Some(pool),
        "the plan asks the depthwise layer"
    );
    let written = exec::run(&net, &wts, &x, None).unwrap();
    let planned = exec::run_planned(&net, &wts, &plan, &x, None).unwrap();
    // The definition: the activated depthwise output in f64, its means, the gate.
    let (x, f) = (&x[0].data, &wts.per_node[dw][0].data);
    let bias = (!bn).then(|| &wts.per_node[dw][1].data);
    let (oh, ow) = ((h + 2 * p - k) / s + 1, (w + 2 * p - k) / s + 1);
    let mut y = Vec::with_capacity(n * c * oh * ow);
    for b in 0..n {
        for ch in 0..c {
            for oy in 0..oh {
                for ox in 0..ow {
                    let mut acc = bias.map_or(0.0, |v| f64::from(v[ch]));
                    for ky in 0..k {
                        for kx in 0..k {
                            let iy = (oy * s + ky) as isize - p as isize;
                            let ix = (ox * s + kx) as isize - p as isize;
                            if iy >= 0 && ix >= 0 && (iy as usize) < h && (ix as usize) < w {
                                let v = x[((b * c + ch) * h + iy as usize) * w + ix as usize];
                                acc += f64::from(f[(ch * k + ky) * k + kx]) * f64::from(v);
                            }
                        }
                    }
                    // The seeded batch norm is the identity up to its ε: x / √(1 + 1e-5).
                    if bn {
                        acc /= (1.0f64 + 1e-5).sqrt();
                    }
                    y.push(act_f64(act, acc));
                }
            }
        }
    }
    let plane = oh * ow;
    let means: Vec<f64> = y
        .chunks(plane)
        .map(|pl| pl.iter().sum::<f64>() / plane as f64)
        .collect();
    let want: Vec<f64> = if gate {
        y.iter()
            .enumerate()
            .map(|(i, &v)| v / (1.0 + (-means[i / plane]).exp()))
            .collect()
    } else {
        means
    };
    close(&written.outputs[0].data, &want)?;
    close(&planned.outputs[0].data, &want)?;
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn se_means(n in 1usize..3, c in 1usize..41, h in 1usize..24, w in 1usize..24,
                k in 1usize..6, s in 1usize..4, p in 0usize..3, act in 0usize..4,
                bn in any::<bool>(), gate in any::<bool>()) {
        case(n, c, [h, w], k, s, p, act, bn, gate)?;
    }

    /// Maps of 40 to 119 rows and columns: several bands of rows and 16-column chunks per row,
    /// row sums over up to 119 positions.
    #[test]
    fn se_means_wide(c in 16usize..34, h in 40usize..120, w in 40usize..120,
                     k in prop_oneof![Just(3usize), Just(5usize)], s in 1usize..3,
                     act in 0usize..4, gate in any::<bool>()) {
        case(1, c, [h, w], k, s, k / 2, act, false, gate)?;
    }
}

/// Every squeeze-and-excitation pool of the two mobile models of issue #19's bar is asked of
/// the depthwise convolution before it (the classifiers' pools are asked of the 1×1
/// convolution before them, whose kernel leaves them to run as written).
#[test]
fn zoo_gates_pooled_by_the_depthwise() {
    for (name, gates) in [("efficientnet_b0", 16), ("mobilenet_v3_small", 9)] {
        let net = common::zoo_net(name);
        let wts = exec::init_weights(&net, 0).unwrap();
        let plan = exec::plan(&net, &wts);
        let pooled: Vec<(&str, &str)> = (0..net.nodes.len())
            .filter_map(|k| plan.means[k].map(|p| (&net.nodes[k].name[..], &net.nodes[p].name[..])))
            .filter(|(_, pool)| pool.ends_with(".se.avgpool"))
            .collect();
        assert_eq!(pooled.len(), gates, "{name}: {pooled:?}");
        for (dw, pool) in pooled {
            assert_eq!(
                dw,
                format!("{}.depthwise", pool.trim_end_matches(".se.avgpool")),
                "{name}"
            );
        }
    }
}
