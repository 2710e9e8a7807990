//! The segmentation models added with issue 13 — lraspp_mobilenet_v3_large,
//! deeplabv3_mobilenet_v3_large, fcn_resnet101, deeplabv3_resnet101 — beyond what every zoo
//! model gets (tests/reference.rs: figures and every layer against PyTorch; tests/exec.rs:
//! `check` and the state-dict names): under torchvision's own names, with every tensor set by
//! the reference formula, the zoo model computes PyTorch's output
//! (`tests/data/segmentation_values.json`, scripts/segmentation_values.py); and the receptive
//! fields of the dilated MobileNetV3-Large backbone and of LR-ASPP's head, derived by hand.

use crate::common;

use crate::common::{
    data_json, f32s, field_of, formula, formula_safetensors, ok_text, options_for,
    outputs_both_ways, u64s, usizes, zoo_analysis, zoo_net_with,
};
use archscope::exec;
use archscope::receptive::Q;

#[test]
fn pytorch_outputs_under_torchvision_names() {
    // Each model's torchvision state dict (tests/data/torchvision_weights.json), every tensor
    // set by `formula`, loads by name (`weights_names:`) with nothing missing or left over; on
    // the script's 1×3×64×64 formula input both executor paths give PyTorch's output at every
    // 61st value (the file's sample). A tensor in the wrong layer, a missing dilation, a wrong
    // padding or batch-norm epsilon, a gate or resize that differs from torchvision's would not.
    let doc = data_json("segmentation_values.json");
    let names = data_json("torchvision_weights.json");
    let input = u64s(&doc["input_shape"]);
    let shape = usizes(&doc["input_shape"]);
    let step = doc["step"].as_u64().unwrap() as usize;
    assert_eq!(step, 61);
    let x = exec::Tensor::new(shape.clone(), formula("input", &shape));
    let models = doc["models"].as_object().unwrap();
    assert_eq!(
        models.keys().collect::<Vec<_>>(),
        [
            "fcn_resnet101",
            "deeplabv3_resnet101",
            "deeplabv3_mobilenet_v3_large",
            "lraspp_mobilenet_v3_large"
        ]
    );
    let mut failed = Vec::new();
    for (name, m) in models {
        let net = zoo_net_with(name, &options_for(&input));
        let w = exec::load_safetensors(
            &net,
            &formula_safetensors(&names["models"][name]),
            "x.safetensors",
        )
        .unwrap_or_else(|d| panic!("{name}: {d}"));
        let want = f32s(&m["values"]);
        // 21 classes × 64 × 64 = 86,016 values; every 61st: ⌈86016 / 61⌉ = 1,411.
        assert_eq!(want.len(), 1411, "{name}");
        let scale = m["max_abs"].as_f64().unwrap() as f32;
        for (path, out) in outputs_both_ways(&net, &w, &x) {
            assert_eq!(out.shape, usizes(&m["output_shape"]), "{name} ({path})");
            assert_eq!(out.shape, [1, 21, 64, 64], "{name} ({path})");
            let got: Vec<f32> = out.data.iter().step_by(step).copied().collect();
            assert_eq!(got.len(), want.len(), "{name} ({path})");
            // A NaN difference counts as off (f32::max would skip it).
            let diffs: Vec<f32> = got.iter().zip(&want).map(|(a, b)| (a - b).abs()).collect();
            let off = diffs
                .iter()
                .filter(|d| d.is_nan() || **d > 1e-4 * scale)
                .count();
            if off > 0 {
                let worst = diffs.iter().copied().fold(0f32, f32::max);
                failed.push(format!(
                    "{name} ({path}): {off} values off, max |Δ| {worst} of {scale}"
                ));
            }
        }
    }
    assert!(failed.is_empty(), "{failed:#?}");
}

/// (size, jump, start) of a layer's field along the height (both axes are the same here).
fn hw(a: &archscope::Analysis, layer: &str) -> (Q, Q, Q) {
    let f = field_of(a, layer);
    assert_eq!(f.axes[0], f.axes[1], "{layer}");
    (f.axes[0].size, f.axes[0].jump, f.axes[0].start)
}

#[test]
fn dilated_mobilenet_v3_large_fields() {
    // Hand derivation (each depthwise k×k convolution at stride s, dilation d adds
    // (k − 1)·d·J to the size and multiplies the jump J by s; 1×1 layers and the
    // squeeze-excitation gates change neither; every padding is (k − 1)·d/2, so every start is
    // 0): stem 3×3/2: 3, J 2. bneck1 3×3: 3 + 2·2 = 7. bneck2 3×3/2: 11, J 4. bneck3: 19.
    // bneck4 5×5/2: 19 + 4·4 = 35, J 8 (the low-level features). bneck5, 6 5×5: 67, 99.
    // bneck7 3×3/2: 115, J 16. bneck8–12 3×3: 147, 179, 211, 243, 275. Then the dilated stage
    // (torchvision `dilated=True`): bneck13's stride removed, J stays 16, and each 5×5 at
    // dilation 2 spans 9 pixels of its input: + 8·16 = 128 per block: 403, 531, 659.
    // (Undilated, bneck13 would be 5×5/2: 275 + 4·16 = 339 at J 32.)
    for model in ["lraspp_mobilenet_v3_large", "deeplabv3_mobilenet_v3_large"] {
        let a = zoo_analysis(model);
        let q = Q::from;
        assert_eq!(hw(&a, "bneck4.project.bn"), (q(35), q(8), q(0)), "{model}");
        assert_eq!(hw(&a, "bneck12.sum"), (q(275), q(16), q(0)), "{model}");
        assert_eq!(
            hw(&a, "bneck13.project.bn"),
            (q(403), q(16), q(0)),
            "{model}"
        );
        assert_eq!(hw(&a, "bneck15.sum"), (q(659), q(16), q(0)), "{model}");
        assert_eq!(
            hw(&a, "lastconv.hardswish"),
            (q(659), q(16), q(0)),
            "{model}"
        );
        // Output stride 16: 224 / 16 = 14.
        let last = common::layer(&a, "lastconv.hardswish");
        assert_eq!(last.outputs[0].0, [1, 960, 14, 14], "{model}");
    }
}

#[test]
fn lraspp_merges_a_resized_path_half_a_unit_off() {
    // The high path (`gate`, field 659, J 16, start 0) is resized bilinearly 14 → 28 with
    // align_corners=False: output pixel i reads input coordinate (i + ½)·14/28 − ½ = i/2 − ¼,
    // whose centre is 16·(i/2 − ¼) = 8i − 4: J 8, start −4; bilinear reads two neighbours, so
    // the size grows by one input jump: 659 + 16 = 675. The low path (`low_classifier` on
    // bneck4: 35, J 8, start 0) is centred on 8i. torchvision's `low_classifier(low) +
    // high_classifier(x)` thus adds features 4 pixels (half a low-level unit) apart: the
    // field of `sum` is not aligned, and the audit says so. Its size is the larger, 675; the
    // final resize 28 → 224 (ρ = 1/8) gives J 1, start 0 + (1/8 − 1)/2·8 = −7/2 (input 0's
    // lattice) and size 675 + 8 = 683.
    let a = zoo_analysis("lraspp_mobilenet_v3_large");
    let q = Q::from;
    assert_eq!(hw(&a, "gate"), (q(659), q(16), q(0)));
    assert_eq!(hw(&a, "resize"), (q(675), q(8), q(-4)));
    assert_eq!(hw(&a, "low_classifier"), (q(35), q(8), q(0)));
    let sum = field_of(&a, "sum");
    assert!(!sum.aligned);
    assert_eq!(
        sum.misalignment.as_deref(),
        Some("input 1: jump 8, start -4 vs input 0: jump 8, start 0 (height)")
    );
    assert_eq!(sum.axes[0].size, q(675));
    assert_eq!(hw(&a, "upsample"), (q(683), q(1), Q::new(-7, 2)));
    let audit = ok_text(&["audit", "lraspp_mobilenet_v3_large"]);
    assert!(audit.contains("[misaligned-merge] sum"), "{audit}");
    // The gate is global context (a pooled path), not a misalignment.
    assert!(field_of(&a, "gate").aligned && field_of(&a, "gate").global_context);
}
