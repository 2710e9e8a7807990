//! Receptive fields against PyTorch: the reference file measured them from gradients (see
//! ../shared/reference/README.md: positive weights, max→average pooling, the field = the input
//! pixels with a non-zero gradient of one unit). Every stage of every model with stage figures
//! must agree exactly, as must the final field; the CLI bar figures are checked through the
//! binary.

use crate::common::{
    arg, data_json, field_of, json, ok_text, scratch, yaml_analysis, zoo_analysis,
};
use archscope::receptive::q_f64;
use archscope::Analysis;
use serde_json::Value;

/// Our layer at the output of each of the reference's trunk stages (its `rf_after_stage`).
fn stage_layers(model: &str) -> Vec<String> {
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    match model {
        "lenet5" => s(&["c1", "c1.tanh", "s2", "c3", "c3.tanh", "s4"]),
        "alexnet" => s(&[
            "conv1",
            "conv1.relu",
            "pool1",
            "conv2",
            "conv2.relu",
            "pool2",
            "conv3",
            "conv3.relu",
            "conv4",
            "conv4.relu",
            "conv5",
            "conv5.relu",
            "pool5",
        ]),
        "vgg16" => {
            let mut v = Vec::new();
            for (stage, convs) in [(1, 2), (2, 2), (3, 3), (4, 3), (5, 3)] {
                for c in 0..convs {
                    v.push(format!("stage{stage}.conv.{c}"));
                    v.push(format!("stage{stage}.conv.{c}.relu"));
                }
                v.push(format!("stage{stage}.pool"));
            }
            v
        }
        "googlenet" => {
            let mut v = s(&[
                "conv1.relu",
                "pool1",
                "conv2.relu",
                "conv3.relu",
                "pool2",
                "inception3a.out",
                "inception3b.out",
                "pool3",
            ]);
            v.extend(
                ["4a", "4b", "4c", "4d", "4e"]
                    .iter()
                    .map(|b| format!("inception{b}.out")),
            );
            v.push("pool4".into());
            v.extend(s(&["inception5a.out", "inception5b.out"]));
            v
        }
        "resnet18" | "resnet50" => {
            let last: [usize; 4] = if model == "resnet18" {
                [1, 1, 1, 1]
            } else {
                [2, 3, 5, 2]
            };
            let mut v = s(&["conv1", "conv1.bn", "conv1.relu", "maxpool"]);
            v.extend((0..4).map(|i| format!("layer{}.{}.sum.relu", i + 1, last[i])));
            v
        }
        other => panic!("no stage mapping for {other}"),
    }
}

fn assert_field(model: &str, layer: &str, a: &Analysis, expect: &Value) {
    let f = field_of(a, layer);
    for (key, get) in [
        (
            "size",
            (|x: &archscope::receptive::Axis| x.size)
                as fn(&archscope::receptive::Axis) -> archscope::receptive::Q,
        ),
        ("jump", |x| x.jump),
        ("start", |x| x.start),
    ] {
        let got = [q_f64(&get(&f.axes[0])), q_f64(&get(&f.axes[1]))];
        let want = [
            expect[key][0].as_f64().unwrap(),
            expect[key][1].as_f64().unwrap(),
        ];
        assert_eq!(got, want, "{model}: {key} after {layer}");
    }
    assert!(f.aligned, "{model}: {layer}");
}

#[test]
fn fields_match_pytorch_gradients() {
    let r = data_json("torchvision.json");
    let mut checked = 0;
    for (model, m) in r["models"].as_object().unwrap() {
        let Some(rf) = m.get("rf") else { continue };
        let a = zoo_analysis(model);
        match m.get("rf_after_stage") {
            Some(stages) => {
                let names = stage_layers(model);
                let stages = stages.as_array().unwrap();
                assert_eq!(names.len(), stages.len(), "{model}");
                for (name, st) in names.iter().zip(stages) {
                    assert_field(model, name, &a, st);
                    checked += 1;
                }
                assert_field(model, names.last().unwrap(), &a, rf);
            }
            // vgg16_bn: only the final field; batch norm does not change it.
            None => assert_field(model, "stage5.pool", &a, rf),
        }
    }
    assert!(checked >= 80, "only {checked} stages checked");
}

fn rf_json(model: &str) -> Value {
    json(&["rf", model, "--format", "json"])
}

#[test]
fn cli_bar_figures() {
    // The issue's bar: resnet50 427/32/0 after its last stage, googlenet 379/32/22 after its
    // last inception block, alexnet 195/32/31 after its feature extractor.
    for (model, size, jump, start) in [
        ("resnet50", 427, 32, 0),
        ("googlenet", 379, 32, 22),
        ("alexnet", 195, 32, 31),
    ] {
        let v = rf_json(model);
        let f = &v["final"]["rf"];
        assert_eq!(f["size"], serde_json::json!([size, size]), "{model}");
        assert_eq!(f["jump"], serde_json::json!([jump, jump]), "{model}");
        assert_eq!(f["start"], serde_json::json!([start, start]), "{model}");
    }
    // At 224², ResNet-50's field covers the input inside layer3; everything after sees no more.
    let v = rf_json("resnet50");
    assert!(v["covers_input_from"]
        .as_str()
        .unwrap()
        .starts_with("layer3."));
    assert!(v["unproductive"].as_array().unwrap().len() > 10);
    // The summary JSON carries the field too.
    let s = json(&["summary", "alexnet", "--format", "json"]);
    let conv1 = &s["layers"][1];
    assert_eq!(conv1["rf"]["size"], serde_json::json!([11, 11]));
    assert_eq!(
        s["layers"].as_array().unwrap().last().unwrap()["rf"],
        Value::Null
    );
}

/// Size, jump, start and least size of the first axis of `layer`'s field, and whether it is
/// aligned.
fn axis(a: &Analysis, layer: &str) -> (f64, f64, f64, f64, bool) {
    let f = field_of(a, layer);
    let h = &f.axes[0];
    (
        q_f64(&h.size),
        q_f64(&h.jump),
        q_f64(&h.start),
        q_f64(&h.min_size),
        f.aligned,
    )
}

#[test]
fn decoder_fields_are_fractional_and_skips_aligned() {
    let a = yaml_analysis(
        r#"
inputs: {x: [1, 16, 16]}
nodes:
  - {id: up, op: deconv, out: 4, kernel: 4, stride: 2, padding: 1}
  - {id: near, op: upsample, in: x, scale: 2}
  - {id: cat, op: concat, in: [up, near]}
  - {id: conv, op: conv, out: 4, kernel: 3, padding: 1}
"#,
    );
    // Transposed 4/2/1: each output reads 2 neighbouring inputs (size 2), units are half a pixel
    // apart (jump 1/2), lattice start (1 − 3/2)/2 = −1/4.
    assert_eq!(axis(&a, "up"), (2.0, 0.5, -0.25, 2.0, true));
    // Nearest ×2: one input per unit, same lattice (half-pixel: (1/2 − 1)/2 = −1/4).
    assert_eq!(axis(&a, "near"), (1.0, 0.5, -0.25, 1.0, true));
    // The skip concat is aligned; size = the larger path, min = the smaller.
    assert_eq!(axis(&a, "cat"), (2.0, 0.5, -0.25, 1.0, true));
    // A 3×3 after it: +2 units of jump 1/2.
    assert_eq!(axis(&a, "conv"), (3.0, 0.5, -0.25, 2.0, true));
}

#[test]
fn misaligned_paths_are_reported() {
    let yaml = r#"
inputs: {x: [1, 16, 16]}
nodes:
  - {id: a, op: conv, in: x, out: 2, kernel: 3, padding: 1}
  - {id: b, op: conv, in: x, out: 2, kernel: 2, padding: [0, 0, 1, 1]}
  - {id: cat, op: concat, in: [a, b]}
"#;
    let a = yaml_analysis(yaml);
    // a: centred on its pixel (start 0); b: a 2×2 window padded after, centred half a pixel on.
    assert_eq!(axis(&a, "a"), (3.0, 1.0, 0.0, 3.0, true));
    assert_eq!(axis(&a, "b"), (2.0, 1.0, 0.5, 2.0, true));
    let (size, _, _, min, aligned) = axis(&a, "cat");
    assert_eq!((size, min, aligned), (3.0, 2.0, false));
    assert!(field_of(&a, "cat")
        .misalignment
        .as_ref()
        .unwrap()
        .contains("start 1/2"));
    // The CLI says so.
    let dir = scratch("misaligned");
    let file = dir.join("misaligned.yaml");
    std::fs::write(&file, yaml).unwrap();
    let text = ok_text(&["rf", arg(&file)]);
    assert!(text.contains("not aligned"), "{text}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn unet_crop_shifts_the_skip_onto_the_up_convolution() {
    use archscope::receptive::Q;
    let a = zoo_analysis("unet");
    // By hand, on the 572² input with unpadded 3×3 convolutions and 2×2/2 pools
    // (start += ((k−1)/2 − p)·J, J ×= s, size += (k−1)·J):
    // enc1 5/1/2 → pool1 6/2/5/2 → enc2 14/2/13/2 → pool2 16/4/15/2 → enc3 32/4/31/2 →
    // pool3 36/8/35/2 → enc4 (size 68, jump 8, start 67/2), 64×64.
    let enc4 = field_of(&a, "enc4.conv2.relu");
    assert_eq!(
        (enc4.axes[0].size, enc4.axes[0].jump, enc4.axes[0].start),
        (Q::from(68), Q::from(8), Q::new(67, 2))
    );
    // pool4 76/16/75/2 → bottom (140, 16, 139/2), 28×28; the 2×2/2 up-convolution moves the
    // start by (0 − 1/2)/2·16 = −4 and halves the jump: (140, 8, 131/2), 56×56.
    let up = field_of(&a, "up4.upconv");
    assert_eq!(
        (up.axes[0].size, up.axes[0].jump, up.axes[0].start),
        (Q::from(140), Q::from(8), Q::new(131, 2))
    );
    // The centre crop 64 → 56 starts at row (64 − 56)/2 = 4: start 67/2 + 4·8 = 131/2, the
    // up-convolution's. The crop's second input only lends its size: the crop keeps enc4's
    // size 68, and the concatenation is aligned (size 140, min 68).
    let crop = field_of(&a, "up4.crop");
    assert_eq!(
        (crop.axes[0].size, crop.axes[0].start, crop.aligned),
        (Q::from(68), Q::new(131, 2), true)
    );
    let cat = field_of(&a, "up4.cat");
    assert_eq!(
        (cat.axes[0].size, cat.axes[0].min_size, cat.aligned),
        (Q::from(140), Q::from(68), true)
    );
    // Every later merge too: each crop's start equals its up-convolution's.
    for up in ["up4", "up3", "up2", "up1"] {
        let c = field_of(&a, &format!("{up}.crop"));
        let u = field_of(&a, &format!("{up}.upconv"));
        assert_eq!(c.axes[0].start, u.axes[0].start, "{up}");
        assert_eq!(c.axes[0].jump, u.axes[0].jump, "{up}");
        assert!(field_of(&a, &format!("{up}.cat")).aligned, "{up}");
    }
    assert!(a
        .layers
        .iter()
        .all(|l| l.rf.as_ref().is_none_or(|f| f.aligned)));
    // Nothing downstream, in rf, compare or audit, says otherwise.
    assert!(!ok_text(&["rf", "unet"]).contains("not aligned"));
    assert!(!ok_text(&["audit", "unet"]).contains("misaligned-merge"));
    let c = ok_text(&["compare", "unet", "--format", "json"]);
    let v: Value = serde_json::from_str(&c).unwrap();
    assert_eq!(v["models"][0]["rf_aligned"], true);
}

#[test]
fn fcn_upsample_takes_only_its_size_from_the_image() {
    use archscope::receptive::Q;
    let a = zoo_analysis("fcn_resnet50");
    let cls = field_of(&a, "classifier").axes[0].clone();
    let up = field_of(&a, "upsample");
    // Bilinear 28 → 224 on the classifier's field (jump 8): ρ = 28/224 = 1/8, so
    // J = 8·1/8 = 1, S = S_cls + (1/8 − 1)/2·8 = S_cls − 7/2, size = size_cls + (2 − 1)·8.
    assert_eq!(cls.jump, Q::from(8));
    assert_eq!(up.axes[0].jump, Q::from(1));
    assert_eq!(up.axes[0].start, cls.start - Q::new(7, 2));
    assert_eq!(up.axes[0].size, cls.size + Q::from(8));
    // The image lends only its size: no misalignment against it.
    assert!(up.aligned && up.misalignment.is_none());
    assert!(!ok_text(&["rf", "fcn_resnet50"]).contains("not aligned"));
    assert!(!ok_text(&["audit", "fcn_resnet50"]).contains("misaligned-merge"));
    let row = ok_text(&["compare", "fcn_resnet50", "--format", "json"]);
    let v: Value = serde_json::from_str(&row).unwrap();
    assert_eq!(v["models"][0]["rf_aligned"], true);
    let summary = ok_text(&["summary", "fcn_resnet50"]);
    assert!(!summary.contains('*'), "{summary}");
}
