//! The scaled-up torchvision classifiers of the zoo (EfficientNet-B1/B3/B7/V2-S, DenseNet-161,
//! ResNeXt-101 32×8d and 64×4d, Wide ResNet-101-2): torchvision's *published* parameters and
//! "GFLOPS" are reproduced at the input size of its weights, EfficientNet's, ConvNeXt's, Swin's and MaxViT's stochastic-depth
//! rates are torchvision's to the bit, `stochastic_depth`'s `depth:` key rejects a rate off its
//! schedule, and EfficientNet-B7, too slow for a ≤10 s `check` at its 600×600, passes `check`
//! at 224×224 and is within `check`'s memory and work bounds at 600×600.

use crate::common;

use crate::common::{build_error, checked, data_json, options_for, u64s, zoo_net, zoo_net_with};
use archscope::{analyze, exec, zoo, Dtype};

#[test]
fn torchvision_published_params_and_gflops_are_reproduced() {
    // tests/data/torchvision_zoo.json keeps, beside PyTorch's measurements, torchvision's own
    // published figures for the model's first weights (`num_params`, and `_ops`: "GFLOPS",
    // really GMACs, to 3 decimals), at the input size of those weights (EfficientNet-B7:
    // 600×600). Every model built exactly as torchvision publishes it (no builder keyword
    // arguments: not Inception-v3 and GoogLeNet without their auxiliary classifiers, nor FCN
    // and DeepLabV3, published at 520×520 with their auxiliary heads) must give them.
    let doc = data_json("torchvision_zoo.json");
    let mut compared = Vec::new();
    for (name, m) in doc["models"].as_object().unwrap() {
        if !m["builder_kwargs"].as_object().unwrap().is_empty() {
            continue;
        }
        let meta = &m["torchvision_meta"];
        let net = zoo::build(name, &options_for(&u64s(&m["input"])))
            .unwrap()
            .unwrap();
        let a = analyze(&net, Dtype::F32).unwrap();
        assert_eq!(
            a.totals.params,
            meta["num_params"].as_u64().unwrap(),
            "{name}: published parameters"
        );
        // `_ops` is GMACs rounded to 3 decimals: compare in millions of MACs.
        let published = (meta["gflops"].as_f64().unwrap() * 1000.0).round() as u64;
        let ours = (a.totals.macs as f64 / 1e6).round() as u64;
        assert_eq!(ours, published, "{name}: published GFLOPS ×1000");
        compared.push(name.as_str());
    }
    for name in [
        "efficientnet_b1",
        "efficientnet_b3",
        "efficientnet_b7",
        "efficientnet_v2_s",
        "densenet161",
        "resnext101_32x8d",
        "resnext101_64x4d",
        "wide_resnet101_2",
    ] {
        assert!(compared.contains(&name), "{name} was not compared");
    }
    // 58 torchvision models, less the eight built with keyword arguments (Inception-v3,
    // GoogLeNet and the six segmentation models).
    assert_eq!(compared.len(), 50);
}

/// torchvision's stochastic-depth rates, per model, in execution order: the `"p"` of the
/// `StochasticDepth` rows of tests/data/torchvision_zoo.json, read from the file's text and
/// parsed by Rust (correctly rounded: serde_json's default float parsing may be one unit in
/// the last place off). The script writes one model key per line at indent 2 and one layer row
/// per line.
fn torchvision_drop_rates() -> Vec<(String, Vec<f64>)> {
    let text =
        std::fs::read_to_string(common::root().join("tests/data/torchvision_zoo.json")).unwrap();
    let mut out: Vec<(String, Vec<f64>)> = Vec::new();
    for line in text.lines() {
        if let Some(name) = line
            .strip_prefix("  \"")
            .and_then(|r| r.strip_suffix("\": {"))
        {
            out.push((name.to_string(), Vec::new()));
        } else if line.contains("\"type\": \"StochasticDepth\"") {
            let p = line.split("\"p\": ").nth(1).unwrap();
            let p = p.trim_end_matches([',', '}']);
            out.last_mut().unwrap().1.push(p.parse().unwrap());
        }
    }
    out.retain(|(_, rates)| !rates.is_empty());
    out
}

#[test]
fn drop_rates_are_torchvisions() {
    // torchvision's rates (its `StochasticDepth.p`, recorded by scripts/torch_reference.py)
    // against the rate each zoo model's `stochastic_depth` layer computes from
    // `p: 0.2, depth: [k, n]` (MaxViT: `linspace: [k, n]`, NumPy's schedule), in execution
    // order, compared as f64 bit patterns.
    let all = torchvision_drop_rates();
    for (name, want) in &all {
        let net = zoo_net(name);
        let got: Vec<f64> = net
            .nodes
            .iter()
            .filter(|n| n.layer.torch_type() == Some("StochasticDepth"))
            .map(|n| {
                let label = n.layer.label();
                let p = label
                    .strip_prefix("stochastic depth ")
                    .and_then(|r| r.strip_suffix(" row"))
                    .unwrap_or_else(|| panic!("{name} {}: label {label}", n.name));
                p.parse().unwrap()
            })
            .collect();
        assert_eq!(got.len(), want.len(), "{name}: stochastic-depth layers");
        for (k, (g, w)) in got.iter().zip(want).enumerate() {
            assert_eq!(g.to_bits(), w.to_bits(), "{name}: layer {k}: {g} vs {w}");
        }
        // The rates grow along the network (torchvision's linear schedule; Swin's two
        // residual branches of a block share theirs).
        assert!(want.windows(2).all(|w| w[0] <= w[1]), "{name}");
        assert!(want.first() < want.last(), "{name}");
    }
    let names: Vec<&str> = all.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "efficientnet_b0",
            "efficientnet_b1",
            "efficientnet_b3",
            "efficientnet_b7",
            "efficientnet_v2_s",
            "convnext_tiny",
            "convnext_small",
            "swin_t",
            "swin_v2_t",
            "maxvit_t"
        ]
    );
}

#[test]
fn a_drop_rate_off_the_schedule_is_rejected() {
    let yaml = |depth: &str| {
        format!(
            "inputs: {{x: [8, 4, 4]}}\nnodes:\n  - {{op: conv, out: 8, kernel: 3, padding: 1}}\n  \
             - {{id: drop, op: stochastic_depth, p: 0.2, depth: {depth}}}\n"
        )
    };
    let err = build_error("m.yaml", &yaml("[17, 16]")).to_string();
    assert!(
        err.contains("`depth: [17, 16]`: block 17 is outside 0..=16"),
        "{err}"
    );
    assert!(err.contains("m.yaml:4:"), "{err}");
    assert!(err.contains("write `depth: [k, n]`"), "{err}");
    let err = build_error("m.yaml", &yaml("[3, 0]")).to_string();
    assert!(err.contains("`depth` must be at least 1, got 0"), "{err}");
    let err = build_error("m.yaml", &yaml("3")).to_string();
    assert!(
        err.contains("`depth` takes [block, blocks], found an integer (3)")
            || err.contains("`depth` takes [block, blocks], found"),
        "{err}"
    );
    // On the schedule: block 3 of 16 drops with 0.2·3/16, computed as torchvision does.
    let net = common::net(&yaml("[3, 16]"));
    let label = net
        .nodes
        .iter()
        .find(|n| n.name == "drop")
        .unwrap()
        .layer
        .label();
    assert_eq!(label, format!("stochastic depth {} row", 0.2 * 3.0 / 16.0));
}

#[test]
fn efficientnet_b7_passes_check_at_224() {
    // 37.7 GMACs at its own 600×600, about 14 CPU-seconds of `check` — more than a test may
    // take on two cores (tests/exec.rs lists it in a group of its own that points here). At
    // 224×224 (5.2 GMACs) every layer runs the same kernels and rules; the last stages still
    // see a 7×7 map. The analysis at 600×600 is compared with PyTorch layer by layer in
    // tests/reference.rs.
    let net = zoo_net_with("efficientnet_b7", &options_for(&[1, 3, 224, 224]));
    let report = checked(&net);
    assert_eq!(report.rf_skipped, None);
    assert!(report.rf_compared() > 0);
}

#[test]
fn efficientnet_b7_fits_checks_bounds_at_600() {
    // What `archscope check efficientnet_b7` computes before it runs anything, at the model's
    // own 600×600: the memory of the pass (weights, the activations alive at each layer and
    // their scratch, against exec::MEMORY_BUDGET, 3 GiB) and the work of the receptive-field
    // measurement (against exec::reach::MAX_REACH_WORK, 2^36). Both fit, so `archscope check`
    // runs it as it is (docs/FORMAT.md "Limits").
    let net = zoo_net("efficientnet_b7");
    let need = exec::check_memory(&net, exec::MEMORY_BUDGET, 0).unwrap();
    // The weights alone: 66,347,960 parameters and 310,720 buffer values (PyTorch's counts,
    // tests/data/torchvision_zoo.json), 4 bytes each.
    assert_eq!(need.weights, (66_347_960 + 310_720) * 4);
    assert!(need.total() <= exec::MEMORY_BUDGET);
    exec::reach::check_work(&net, None).unwrap();
}
