//! Issue 7, "Decisions": compare, sweeps, audit, train and conventions as a user runs them.
//! Every figure is derived by hand next to its assertion (or comes from the PyTorch reference
//! files), never from archscope itself.

use crate::common::{
    analysis, archscope, arg, assert_rejected, data_json, json, ok_text, reached_verdict, root,
    scratch, stderr,
};
use archscope::audit::{audit, parse_quantity, Budgets, Quantity};
use archscope::{BuildOptions, Network};
use serde_json::Value;

const PLANTED: &str = "tests/data/audit/planted.yaml";

#[test]
fn train_resnet50_imagenet_bar() {
    let v = json(&[
        "train",
        "resnet50",
        "--dataset-size",
        "1281167",
        "--batch",
        "256",
        "--epochs",
        "90",
        "--format",
        "json",
    ]);
    // ⌈1281167 / 256⌉ = 5005 (5004 full batches + 143 images); 90 epochs.
    assert_eq!(v["iterations_per_epoch"], 5005);
    assert_eq!(v["iterations_per_epoch_drop_last"], 5004);
    assert_eq!(v["total_iterations"], 5005 * 90);
    let m = &v["memory"];
    for k in [
        "weights",
        "gradients",
        "optimizer_state",
        "activations",
        "total",
    ] {
        assert!(m[k].as_u64().is_some(), "memory.{k}");
    }
    // SGD (the default) keeps no state; gradients are one f32 per parameter.
    assert_eq!(m["optimizer_state"], 0);
    assert_eq!(m["gradients"], 25_557_032u64 * 4);
    // The table form names the same figure.
    let text = ok_text(&[
        "train",
        "resnet50",
        "--dataset-size",
        "1281167",
        "--batch",
        "256",
        "--epochs",
        "90",
    ]);
    assert!(text.contains("5005 (drop_last: 5004)"), "{text}");
}

#[test]
fn train_600_epochs_of_imagenet_exceeds_64_bits_and_is_exact() {
    // The long ResNet-50 recipes (600 epochs of ImageNet-1k at batch 256) need more than 2^64
    // training FLOPs: the figure must be the exact integer, not an overflow error.
    let text = ok_text(&[
        "train",
        "resnet50",
        "--dataset-size",
        "1281167",
        "--batch",
        "256",
        "--epochs",
        "600",
        "--throughput",
        "100",
        "--format",
        "json",
    ]);
    let v: Value = serde_json::from_str(&text).unwrap();
    // Per iteration at batch 256 (docs/TRAINING.md): forward 2,120,733,550,592 + backward
    // 4,174,961,567,744 = 6,295,695,118,336 FLOPs = 256 × 24,592,559,056 per image.
    let fwd = v["flops_per_iteration"]["forward"].as_u64().unwrap();
    let bwd = v["flops_per_iteration"]["backward"].as_u64().unwrap();
    assert_eq!((fwd, bwd), (2_120_733_550_592, 4_174_961_567_744));
    // Every image of every epoch: 24,592,559,056 × 1,281,167 × 600
    //   = 24,592,559,056 × 768,700,200 = 18,904,305,064,859,011,200 > 2^64 = 18,446,744,073,709,551,616.
    let exact: u128 = 24_592_559_056 * 1_281_167 * 600;
    assert_eq!(exact, 18_904_305_064_859_011_200);
    assert!(exact > u64::MAX as u128);
    assert!(
        text.contains("\"training_flops\": 18904305064859011200,"),
        "{text}"
    );
    // drop_last: ⌊1,281,167 / 256⌋ = 5004 full batches of 6,295,695,118,336 FLOPs, × 600
    //   = 18,902,195,023,292,006,400.
    assert!(
        text.contains("\"training_flops_drop_last\": 18902195023292006400,"),
        "{text}"
    );
    assert_eq!(v["total_iterations"], 5005 * 600);
    // Wall time at 100 TFLOP/s: 18,904,305,064,859,011,200 / 10^14 = 189,043.05 s.
    let secs = v["wall_time_s"].as_f64().unwrap();
    assert!((secs - 189_043.050_648_590_1).abs() < 1e-6, "{secs}");
    // The table names the figure: 18.90 E.
    let table = ok_text(&[
        "train",
        "resnet50",
        "--dataset-size",
        "1281167",
        "--batch",
        "256",
        "--epochs",
        "600",
    ]);
    assert!(table.contains("18.90 E"), "{table}");
    assert!(table.contains("18904305064859011200"), "{table}");
}

#[test]
fn train_adam_memory_and_wall_time() {
    let v = json(&[
        "train",
        "resnet50",
        "--dataset-size",
        "1000",
        "--batch",
        "32",
        "--epochs",
        "1",
        "--optimizer",
        "adam",
        "--throughput",
        "100",
        "--format",
        "json",
    ]);
    let m = &v["memory"];
    // Adam: two moments per trainable parameter, 4 bytes each.
    assert_eq!(m["optimizer_state"], 2 * 25_557_032u64 * 4);
    // Parameters and the 53,120 batch-norm buffers.
    assert_eq!(m["weights"], (25_557_032u64 + 53_120) * 4);
    // Saved activations at batch 32: scripts/training_memory.py measured 2,749,657,348 bytes of
    // tensors saved by autograd (torch 2.15, CPU), which include the batch norms' running
    // statistics (212,480 bytes, counted here as weights) and the loss's int64 targets and
    // scalar weight (260 bytes): 2,749,444,608 remain.
    assert_eq!(m["activations"], 2_749_657_348u64 - 212_480 - 260);
    // The total is the peak of the simulated step: the sum of what is alive at that moment.
    let live = &m["peak"]["live"];
    let at_peak: u64 = live
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(m["peak"]["bytes"], at_peak);
    assert_eq!(m["total"], at_peak);
    // Weights (rounded to 512-byte blocks: at least the exact bytes) and Adam's state are alive
    // all step long.
    assert!(live["weights"].as_u64().unwrap() >= m["weights"].as_u64().unwrap());
    assert!(live["optimizer_state"].as_u64().unwrap() >= 2 * 25_557_032 * 4);
    // 1000 samples, 32 per batch: 32 iterations (31 with drop_last); FLOPs for 1000 samples.
    assert_eq!(v["iterations_per_epoch"], 32);
    assert_eq!(v["total_iterations_drop_last"], 31);
    let per_iter = v["flops_per_iteration"]["forward"].as_u64().unwrap()
        + v["flops_per_iteration"]["backward"].as_u64().unwrap();
    assert_eq!(v["training_flops"].as_u64().unwrap(), per_iter / 32 * 1000);
    let secs = v["wall_time_s"].as_f64().unwrap();
    assert!((secs - v["training_flops"].as_f64().unwrap() / 100e12).abs() < 1e-9);
}

#[test]
fn compare_bar_with_chart() {
    let dir = scratch("compare");
    let chart = dir.join("c.svg");
    let text = ok_text(&[
        "compare",
        "alexnet",
        "vgg16",
        "googlenet",
        "resnet50",
        "--baseline",
        "alexnet",
        "--chart",
        arg(&chart),
    ]);
    for name in ["alexnet", "vgg16", "googlenet", "resnet50"] {
        assert!(text.contains(name), "{text}");
    }
    let svg = std::fs::read_to_string(&chart).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("googlenet · "));
    std::fs::remove_dir_all(&dir).unwrap();

    let v = json(&[
        "compare",
        "alexnet",
        "vgg16",
        "resnet50",
        "--baseline",
        "alexnet",
        "--sort",
        "params",
        "--format",
        "json",
    ]);
    let models = v["models"].as_array().unwrap();
    let names: Vec<&str> = models.iter().map(|m| m["name"].as_str().unwrap()).collect();
    // torchvision: resnet50 25,557,032 < alexnet 61,100,840 < vgg16 138,357,544 parameters.
    assert_eq!(names, ["resnet50", "alexnet", "vgg16"]);
    let r = &models[0];
    assert_eq!(r["params"], 25_557_032);
    assert_eq!(r["macs"], 4_089_184_256u64);
    // Depth: 53 convolutions + 1 linear; final field 427 (tests/rf.rs, PyTorch gradients).
    assert_eq!(r["depth"], 54);
    assert_eq!(r["rf"], serde_json::json!([427, 427]));
    let ratio = r["ratios"]["params"].as_f64().unwrap();
    assert!((ratio - 25_557_032.0 / 61_100_840.0).abs() < 1e-12);
    assert_eq!(models[1]["ratios"]["macs"], 1.0);
    // A baseline that is not compared is a usage error.
    assert_rejected(
        &["compare", "alexnet", "--baseline", "vgg16"],
        "--baseline vgg16 is not one of the compared models",
    );
}

#[test]
fn compare_and_summary_sweeps() {
    let v = json(&[
        "summary", "resnet18", "--input", "224,320", "--batch", "1,8", "--format", "json",
    ]);
    let runs = v.as_array().unwrap();
    assert_eq!(runs.len(), 4);
    // torchvision resnet18: 1,814,073,344 MACs at 224²; 7,403,315,200 at batch 2 and 320²
    // (tests/data/conventions.json), so 3,701,657,600 per 320² image.
    let macs: Vec<u64> = runs
        .iter()
        .map(|r| r["totals"]["macs"].as_u64().unwrap())
        .collect();
    assert_eq!(
        macs,
        [
            1_814_073_344,
            8 * 1_814_073_344,
            3_701_657_600,
            8 * 3_701_657_600
        ]
    );
    assert_eq!(runs[3]["input"], serde_json::json!([8, 3, 320, 320]));
    let v = json(&[
        "compare",
        "resnet18",
        "alexnet",
        "--batch",
        "1,2",
        "--baseline",
        "resnet18",
        "--format",
        "json",
    ]);
    let models = v["models"].as_array().unwrap();
    assert_eq!(models.len(), 4);
    // Ratios are taken against the baseline at the same batch.
    assert_eq!(models[1]["batch"], 2);
    assert_eq!(models[1]["ratios"]["macs"], 1.0);
    // The table sweep names each setting.
    let text = ok_text(&["summary", "lenet5", "--batch", "1,4"]);
    assert!(text.contains("2 settings"), "{text}");
    // A sweep where the command takes one setting is a usage error.
    assert_rejected(
        &["rf", "resnet18", "--input", "224,320"],
        "`rf` takes one --input and one --batch (sweeps work with summary and compare)",
    );
}

#[test]
fn conventions_on_the_command_line() {
    // tests/data/conventions.json: resnet50 at 224², batch 1.
    let r = data_json("conventions.json");
    let want = &r["models"]["resnet50"][0];
    for tool in ["torchvision", "fvcore", "ptflops", "thop", "torchinfo"] {
        let v = json(&[
            "summary",
            "resnet50",
            "--convention",
            tool,
            "--format",
            "json",
        ]);
        assert_eq!(v["totals"]["macs"], want[tool], "{tool}");
        assert_eq!(v["convention"], tool);
    }
    let v = json(&[
        "compare",
        "resnet50",
        "--convention",
        "thop",
        "--format",
        "json",
    ]);
    assert_eq!(v["models"][0]["macs"], want["thop"]);
    // Depth does not depend on the convention.
    assert_eq!(v["models"][0]["depth"], 54);
}

fn planted() -> (Network, archscope::Analysis) {
    let text = std::fs::read_to_string(root().join(PLANTED)).unwrap();
    let net = Network::from_yaml(PLANTED, &text, &BuildOptions::default()).unwrap();
    let a = analysis(&net);
    (net, a)
}

#[test]
fn audit_finds_every_planted_problem() {
    let (net, a) = planted();
    let r = audit(&net, &a, &Budgets::default()).unwrap();
    let get = |kind: &str, layer: &str| {
        r.findings
            .iter()
            .find(|f| f.kind == kind && f.layer == layer)
            .unwrap_or_else(|| panic!("no {kind} at {layer}: {:#?}", r.findings))
    };
    // c1: Conv2d(32, 64, 3) with bias before BatchNorm2d(64): 64 bias parameters wasted.
    assert_eq!(get("bias-before-norm", "c1").saving_params, Some(64));
    assert!(!r
        .findings
        .iter()
        .any(|f| f.kind == "bias-before-norm" && f.layer != "c1"));
    // stem: 3×3/2, no padding, on 64: ⌊61/2⌋ + 1 = 31 windows cover rows 0..62; row and
    // column 63 are never read: 64² − 63² = 127 pixels, 3.1%.
    let f = get("border-drop", "stem");
    assert!(
        f.message.contains("last 1 rows and 1 columns") && f.message.contains("3.1%"),
        "{}",
        f.message
    );
    // An input of 63 or 65 would fit: (63 − 3) and (65 − 3) are even.
    assert!(f.fix.contains("63 or 65"), "{}", f.fix);
    get("dropout-before-batchnorm", "drop");
    // c2: 7×7, 64→64: 49·64·64 = 200,704 weights; three 3×3 64→64: 3·9·64·64 = 110,592;
    // saving 90,112 weights, × 31·31 positions = 86,597,632 MACs.
    let f = get("large-kernel", "c2");
    assert_eq!(f.saving_params, Some(90_112));
    assert_eq!(f.saving_macs, Some(90_112 * 31 * 31));
    // c4: 3×3 256→256 = 589,824 weights; bottleneck r = 64: 256·64 + 9·64² + 64·256 = 69,632;
    // saving 520,192 weights and 961 · 520,192 MACs (all at 31×31, stride 1).
    let f = get("bottleneck", "c4");
    assert_eq!(f.saving_params, Some(520_192));
    assert_eq!(f.saving_macs, Some(961 * 520_192));
    // c5 outputs 12 channels; fc reads 12·31·31 = 11,532 features (not multiples of 8).
    get("channels-not-multiple-of-8", "c5");
    get("channels-not-multiple-of-8", "fc");
    // fc: 11,532·1000 + 1000 = 11,533,000 of the 12,362,932 parameters (stem 864 + BN 64,
    // c1 18,496 + 128, bn2 128, c2 200,704, c3 16,640, c4 589,824, c5 3,084, fc 11,533,000).
    // Global average pooling makes it 12·1000 + 1000 = 13,000: saving 11,520,000 parameters
    // and (11,532 − 12)·1000 MACs.
    assert_eq!(a.totals.params, 12_362_932);
    let f = get("fc-heavy", "fc");
    assert_eq!(f.saving_params, Some(11_520_000));
    assert_eq!(f.saving_macs, Some(11_520_000));
}

#[test]
fn audit_budgets_gate_ci() {
    // 12,362,932 parameters: over 10M fails with exit 1, under 20M passes.
    let out = archscope(&["audit", PLANTED, "--max-params", "10M"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("FAIL max_params") && text.contains("[bias-before-norm] c1"),
        "{text}"
    );
    let text = ok_text(&[
        "audit",
        PLANTED,
        "--max-params",
        "20M",
        "--max-peak-memory",
        "2GiB",
    ]);
    assert!(
        text.contains("ok   max_params: 12.36 M (12362932) ≤ 20.00 M")
            && text.contains("ok   max_peak_memory: "),
        "{text}"
    );
    // resnet50 at 224²: 4,089,184,256 MACs > 4G; final field 427 ≥ 400.
    let v = archscope(&[
        "audit",
        "resnet50",
        "--max-macs",
        "4G",
        "--min-rf",
        "400",
        "--format",
        "json",
    ]);
    assert_eq!(v.status.code(), Some(1), "{}", stderr(&v));
    let v: Value = serde_json::from_slice(&v.stdout).unwrap();
    assert_eq!(v["passed"], false);
    assert_eq!(v["budgets"][0]["name"], "max_macs");
    assert_eq!(v["budgets"][0]["passed"], false);
    assert_eq!(v["budgets"][1]["actual"], 427.0);
    assert_eq!(v["budgets"][1]["passed"], true);
    // Bad budget values are usage errors, naming the flag and what is wrong.
    for (bad, needle) in [
        (
            ["--max-params", "25X"],
            "--max-params `25X`: unknown unit `X`; use K, M, G or T (×1000)",
        ),
        (
            ["--max-peak-memory", "lots"],
            "--max-peak-memory `lots`: unknown unit `lots`; use KiB, MiB, GiB (×1024)",
        ),
        (
            ["--max-macs", "1.2.3G"],
            "--max-macs `1.2.3G` is not a number with an optional unit",
        ),
    ] {
        assert_rejected(&["audit", "resnet50", bad[0], bad[1]], needle);
    }
}

#[test]
fn quantities() {
    assert_eq!(parse_quantity("25M", Quantity::Count), Ok(25_000_000));
    assert_eq!(parse_quantity("4G", Quantity::Count), Ok(4_000_000_000));
    assert_eq!(parse_quantity("2.5G", Quantity::Count), Ok(2_500_000_000));
    assert_eq!(parse_quantity("1500", Quantity::Count), Ok(1500));
    assert_eq!(parse_quantity("2GiB", Quantity::Bytes), Ok(2 << 30));
    assert_eq!(parse_quantity("512MiB", Quantity::Bytes), Ok(512 << 20));
    assert_eq!(parse_quantity("1.5KiB", Quantity::Bytes), Ok(1536));
    assert_eq!(parse_quantity("2GB", Quantity::Bytes), Ok(2_000_000_000));
    // Refused, each with what is wrong: a byte unit for a count, no digits, a sign (not a
    // number's digit, so read as a unit), and 99,999,999,999·10^12 ≈ 10^23 > 2^64 ≈ 1.8·10^19.
    for (bad, want) in [
        (
            "2GiB",
            "`2GiB`: unknown unit `GiB`; use K, M, G or T (×1000), e.g. 25M, or scientific notation, e.g. 2.5e7",
        ),
        (
            "M",
            "`M` is not a number with an optional unit (e.g. 25M, 2.5G, 2.5e7, 2GiB)",
        ),
        (
            "-1",
            "`-1`: unknown unit `-1`; use K, M, G or T (×1000), e.g. 25M, or scientific notation, e.g. 2.5e7",
        ),
        ("99999999999T", "`99999999999T` is too large"),
    ] {
        assert_eq!(
            parse_quantity(bad, Quantity::Count),
            Err(want.to_string()),
            "{bad}"
        );
    }
    // Scientific notation, exactly: 2.5·10⁷, 1.5·10³·1000, 2·10⁷; 0.5·10¹ = 5.
    assert_eq!(parse_quantity("2.5e7", Quantity::Count), Ok(25_000_000));
    assert_eq!(parse_quantity("1.5e3K", Quantity::Count), Ok(1_500_000));
    assert_eq!(parse_quantity("2E+7", Quantity::Count), Ok(20_000_000));
    assert_eq!(parse_quantity("0.5e1", Quantity::Count), Ok(5));
    assert_eq!(parse_quantity("1e3MiB", Quantity::Bytes), Ok(1000 << 20));
    // Not whole numbers: refused, never rounded (1.0005K = 1000.5; 1e-3; 1.5).
    for bad in ["1.0005K", "1e-3", "1.5", "2.5e0"] {
        let e = parse_quantity(bad, Quantity::Count).unwrap_err();
        assert!(e.contains("is not a whole number"), "{bad}: {e}");
    }
    assert!(parse_quantity("1e30", Quantity::Count)
        .unwrap_err()
        .contains("too large"));
    // Through the command line: 25,557,032 parameters ≤ 2.6e7, > 2.5e7.
    let text = ok_text(&["audit", "resnet50", "--max-params", "2.6e7"]);
    assert!(
        text.contains("ok   max_params: 25.56 M (25557032) ≤ 26.00 M"),
        "{text}"
    );
    let out = archscope(&["audit", "resnet50", "--max-params", "2.5e7"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("FAIL max_params: 25.56 M (25557032) > 25.00 M"),
        "{text}"
    );
}

/// `audit … --format json`, which passes or fails its budgets (exit 0 or 1), parsed.
fn audit_json(args: &[&str]) -> Value {
    serde_json::from_slice(&reached_verdict(&args, archscope(args))).unwrap()
}

fn findings<'a>(v: &'a Value, kind: &str) -> Vec<&'a Value> {
    v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["kind"] == kind)
        .collect()
}

#[test]
fn audit_knows_models_without_a_spatial_trunk() {
    // mlp3 flattens its 28×28 input at once: no layer has a spatial field, so there is no
    // "last spatial layer" to find small, and its fully-connected layers are the model, not a
    // head on a feature map.
    let v = audit_json(&["audit", "mlp3", "--min-rf", "100", "--format", "json"]);
    assert!(findings(&v, "small-receptive-field").is_empty(), "{v:#}");
    assert!(findings(&v, "fc-heavy").is_empty(), "{v:#}");
    // The field is global: the budget passes with no figure.
    assert_eq!(v["budgets"][0]["actual"], Value::Null);
    assert_eq!(v["budgets"][0]["passed"], true);
    let rf = ok_text(&["rf", "mlp3"]);
    assert!(!rf.contains("Final field"), "{rf}");
}

#[test]
fn audit_knows_patch_embeddings() {
    // A patch embedding (16×16/16 convolution) followed by token mixing on N×768×196: the
    // linear layers that mix tokens are not a head on a flattened map, and the patch field is
    // not the model's context.
    let dir = scratch("patches");
    let file = dir.join("patches.yaml");
    std::fs::write(
        &file,
        r#"
name: patches
inputs: {image: [3, 224, 224]}
nodes:
  - {id: patch, op: conv, out: 768, kernel: 16, stride: 16}
  - {id: tokens, op: flatten, start_dim: 2}
  - {id: mix1, op: linear, out: 196}
  - {id: mix2, op: linear, out: 196}
  - {id: pool, op: flatten}
  - {id: head, op: linear, out: 1000}
"#,
    )
    .unwrap();
    let v = audit_json(&["audit", arg(&file), "--format", "json"]);
    assert!(findings(&v, "small-receptive-field").is_empty(), "{v:#}");
    // The head reads 768·196 = 150,528 features: 150,528·1000 + 1000 = 150,529,000 of the
    // 151,196,816 parameters (patch 3·16·16·768 + 768 = 590,592; mix1 and mix2
    // 2·(196² + 196) = 77,224): 99.6%. It is the layer named, never the patch embedding or a
    // token-mixing layer, and no pooling of the patch map is proposed.
    let fc = findings(&v, "fc-heavy");
    assert_eq!(fc.len(), 1, "{v:#}");
    assert_eq!(fc[0]["layer"], "head");
    assert!(
        fc[0]["message"]
            .as_str()
            .unwrap()
            .starts_with("fully-connected layers hold 99.6% "),
        "{}",
        fc[0]["message"]
    );
    assert!(!fc[0]["fix"].as_str().unwrap().contains("768×14×14"));
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn audit_large_kernel_knows_depthwise() {
    // MobileNetV3-Large bneck5: a depthwise 5×5 on 120 channels at 28×28 (224/8), stride 1,
    // padding 2: 25·120 = 3000 weights. Two depthwise 3×3 (padding 1 each, 28×28 kept):
    // 2·9·120 = 2160 weights; MACs 25·120·784 = 2,352,000 against 2·9·120·784 = 1,693,440,
    // saving 658,560.
    let v = audit_json(&["audit", "mobilenet_v3_large", "--format", "json"]);
    let lk = findings(&v, "large-kernel");
    let f = lk
        .iter()
        .find(|f| f["layer"] == "bneck5.depthwise")
        .unwrap_or_else(|| panic!("{v:#}"));
    assert_eq!(
        f["message"],
        "`bneck5.depthwise` is a depthwise 5×5 convolution on 120 channels (3000 weights)"
    );
    assert!(
        f["fix"]
            .as_str()
            .unwrap()
            .starts_with("2 stacked depthwise 3×3 convolutions on 120 channels"),
        "{}",
        f["fix"]
    );
    assert_eq!(f["saving"]["params"], 840);
    assert_eq!(f["saving"]["macs"], 658_560);
    // No finding calls a depthwise layer a dense convolution.
    for f in &lk {
        assert!(!f["fix"].as_str().unwrap().contains("→"), "{f:#}");
    }
    // EfficientNet-B0 stage 3's second block: depthwise 5×5 on 40·6 = 240 channels at 28×28:
    // 6000 weights against 2·9·240 = 4320; MACs 25·240·784 = 4,704,000 against
    // 18·240·784 = 3,386,880, saving 1,317,120.
    let v = audit_json(&["audit", "efficientnet_b0", "--format", "json"]);
    let lk = findings(&v, "large-kernel");
    let f = lk
        .iter()
        .find(|f| f["layer"] == "stage3.rest.depthwise")
        .unwrap_or_else(|| panic!("{v:#}"));
    assert_eq!(
        f["message"],
        "`stage3.rest.depthwise` is a depthwise 5×5 convolution on 240 channels (6000 weights)"
    );
    assert_eq!(f["saving"]["params"], 1680);
    assert_eq!(f["saving"]["macs"], 1_317_120);
    for f in &lk {
        assert!(
            f["message"].as_str().unwrap().contains("depthwise"),
            "{f:#}"
        );
    }
}
