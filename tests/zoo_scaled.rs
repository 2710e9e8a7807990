//! The scaled-up torchvision classifiers of the zoo (EfficientNet-B1/B3/B7/V2-S, DenseNet-161,
//! ResNeXt-101 32×8d and 64×4d, Wide ResNet-101-2): torchvision's *published* parameters and
//! "GFLOPS" are reproduced at the input size of its weights, EfficientNet's stochastic-depth
//! rates are torchvision's to the bit, `stochastic_depth`'s `depth:` key rejects a rate off its
//! schedule, and the models too slow for a ≤10 s `check` at full size pass `check` at a smaller
//! input (every layer's figures are size-independent rules, so a smaller input runs the same
//! code on every layer; the full-size counts are compared with PyTorch in tests/reference.rs).

mod common;

use archscope::{analyze, zoo, Dtype};
use common::{build_error, checked, data_json, options_for, u64s, zoo_net, zoo_net_with};

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
    // 38 torchvision models, less the four built with keyword arguments.
    assert_eq!(compared.len(), 34);
}

#[test]
fn efficientnet_drop_rates_are_torchvisions() {
    // torchvision's rates (its `StochasticDepth.p`, recorded by scripts/torch_reference.py)
    // against the rate each zoo model's `stochastic_depth` layer computes from
    // `p: 0.2, depth: [k, n]`, in execution order, compared as f64 bit patterns.
    let doc = data_json("torchvision_zoo.json");
    let mut models = 0;
    for (name, m) in doc["models"].as_object().unwrap() {
        let want: Vec<f64> = m["layers"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|l| l["type"] == "StochasticDepth")
            .map(|l| l["p"].as_f64().unwrap())
            .collect();
        if want.is_empty() {
            continue;
        }
        models += 1;
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
        for (k, (g, w)) in got.iter().zip(&want).enumerate() {
            assert_eq!(g.to_bits(), w.to_bits(), "{name}: layer {k}: {g} vs {w}");
        }
        // The rates grow along the network (torchvision's linear schedule).
        assert!(want.windows(2).all(|w| w[0] < w[1]), "{name}");
    }
    // EfficientNet-B0, B1, B3, B7 and V2-S.
    assert_eq!(models, 5);
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
    let label = net.nodes.iter().find(|n| n.name == "drop").unwrap().layer.label();
    assert_eq!(label, format!("stochastic depth {} row", 0.2 * 3.0 / 16.0));
}

/// `check` at a smaller input than the model's own, for the models whose full-size `check`
/// takes well over the ~10 s of a test group on two cores (tests/exec.rs lists them in a
/// group of their own that points here). The analysis at the full size is compared with
/// PyTorch layer by layer in tests/reference.rs.
fn passes_check_at(name: &str, side: u64) {
    let net = zoo_net_with(name, &options_for(&[1, 3, side, side]));
    let report = checked(&net);
    assert_eq!(report.rf_skipped, None, "{name}");
    assert!(report.rf_compared() > 0, "{name}");
}

#[test]
fn efficientnet_b7_passes_check_at_160() {
    // 37.7 GMACs at its 600×600; 2.7 GMACs at 160×160, where the last stages still see a 5×5
    // map (160 / 32).
    passes_check_at("efficientnet_b7", 160);
}

#[test]
fn resnext101_32x8d_passes_check_at_128() {
    passes_check_at("resnext101_32x8d", 128);
}

#[test]
fn resnext101_64x4d_passes_check_at_128() {
    passes_check_at("resnext101_64x4d", 128);
}

#[test]
fn wide_resnet101_2_passes_check_at_128() {
    passes_check_at("wide_resnet101_2", 128);
}
