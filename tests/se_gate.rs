//! The squeeze-and-excitation gate's products: a convolution with a 1×1 kernel on a 1×1 map
//! (after a global average pool) runs as one matrix-vector product per image and group
//! (`layers::conv`), then the bias and the fused activation. Against the definition in f64
//! on random shapes (proptest): 1 to 3 groups, 1 to 40 input and output channels per group,
//! pooled maps of 1×1 to 9×9, batches of one and two, a bias or a folded batch norm, no
//! activation, SiLU, sigmoid or hard-sigmoid; run as written and through the inference plan
//! (the same bits without the batch norm, which the plan folds).

use crate::common;
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

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn se_products(n in 1usize..3, g in 1usize..4, cg in 1usize..41, og in 1usize..41,
                   h in 1usize..10, w in 1usize..10, act in 0usize..4, bn in any::<bool>()) {
        let (c, co) = (g * cg, g * og);
        let mut nodes = vec![
            "{id: pool, op: global_avgpool}".to_string(),
            format!("{{id: fc, op: conv, out: {co}, groups: {g}, kernel: 1, bias: {}}}", !bn),
        ];
        if bn {
            nodes.push("{id: bn, op: batchnorm}".to_string());
        }
        let act_name = ["identity", "silu", "sigmoid", "hardsigmoid"][act];
        if act > 0 {
            nodes.push(format!("{{id: act, op: {act_name}}}"));
        }
        let (x, wts, y, planned) =
            common::run_as_written_and_planned(n, &[("x", vec![c, h, w])], &nodes, !bn, (3, 7));
        prop_assert_eq!(&y.shape, &vec![n, co, 1, 1]);
        let (x, f) = (&x[0], &wts[2][0].data);
        let bias = (!bn).then(|| &wts[2][1].data);
        let plane = h * w;
        let mut want = Vec::new();
        for b in 0..n {
            let mean: Vec<f64> = (0..c)
                .map(|ch| {
                    let p = &x.data[(b * c + ch) * plane..(b * c + ch + 1) * plane];
                    p.iter().map(|&v| f64::from(v)).sum::<f64>() / plane as f64
                })
                .collect();
            for o in 0..co {
                let gi = o / og;
                let mut acc = bias.map_or(0.0, |v| f64::from(v[o]));
                for k in 0..cg {
                    acc += f64::from(f[o * cg + k]) * mean[gi * cg + k];
                }
                // The seeded batch norm is the identity up to its ε: x / √(1 + 1e-5).
                if bn {
                    acc /= (1.0f64 + 1e-5).sqrt();
                }
                let sig = |v: f64| 1.0 / (1.0 + (-v).exp());
                want.push(match act {
                    1 => acc * sig(acc),
                    2 => sig(acc),
                    3 => (acc + 3.0).clamp(0.0, 6.0) / 6.0,
                    _ => acc,
                });
            }
        }
        close(&y.data, &want)?;
        close(&planned.data, &want)?;
    }
}
