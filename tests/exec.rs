//! The executor end to end: every zoo model runs and agrees with the static analysis
//! (`check`, receptive fields included); a deliberately broken analysis is caught, naming the
//! layer and the figure; the inference plan (batch norms folded, in-place activations) gives
//! the same outputs; Sobel finds a known edge through the CLI.

use std::path::PathBuf;
use std::process::Command;

use archscope::{analyze, check, exec, zoo, BuildOptions, Dtype};

#[test]
fn every_zoo_model_passes_check() {
    for (name, _) in zoo::MODELS {
        let net = zoo::build(name, &BuildOptions::default()).unwrap().unwrap();
        let a = analyze(&net, Dtype::F32).unwrap();
        let w = exec::init_weights(&net, 0).unwrap();
        let report = check::check(&net, &a, &w, 0).unwrap();
        let bad: Vec<String> = report
            .rows
            .iter()
            .filter(|r| !r.ok())
            .map(|r| format!("{}: {:?}", r.name, r.mismatches()))
            .collect();
        assert!(bad.is_empty(), "{name}: {bad:?}");
        // Every zoo model takes an image, so receptive fields are measured and compared
        // (tests/rf_check.rs checks which layers and the figures).
        assert_eq!(report.rf_skipped, None, "{name}");
        assert!(report.rf_compared() > 0, "{name}");
    }
}

#[test]
fn seeded_weights_keep_resnet152_finite() {
    let net = zoo::build("resnet152", &BuildOptions::default())
        .unwrap()
        .unwrap();
    let w = exec::init_weights(&net, 0).unwrap();
    let x = exec::random_input(&net, 0).unwrap();
    let r = exec::run_planned(&net, &w, &exec::plan(&net, &w), &x, None).unwrap();
    let out = &r.outputs[0].data;
    assert!(out.iter().all(|v| v.is_finite()));
    // And not collapsed to a constant.
    assert!(out.iter().any(|&v| v != out[0]));
}

#[test]
fn a_broken_analysis_is_caught() {
    let net = zoo::build("resnet18", &BuildOptions::default())
        .unwrap()
        .unwrap();
    let mut a = analyze(&net, Dtype::F32).unwrap();
    let w = exec::init_weights(&net, 0).unwrap();
    let i = a
        .layers
        .iter()
        .position(|l| l.name == "layer2.0.conv1")
        .unwrap();
    a.layers[i].macs += 1;
    let j = a
        .layers
        .iter()
        .position(|l| l.name == "layer3.1.conv2.bn")
        .unwrap();
    a.layers[j].params.buffers = 0;
    let report = check::check(&net, &a, &w, 0).unwrap();
    assert_eq!(report.failures(), 2);
    assert_eq!(
        report.disagreements(),
        vec![
            ("layer2.0.conv1", vec!["MACs"]),
            ("layer3.1.conv2.bn", vec!["buffers"])
        ]
    );
}

#[test]
fn the_inference_plan_changes_no_output() {
    for name in [
        "resnet18",
        "googlenet",
        "mobilenet_v2",
        "densenet121",
        "efficientnet_b0",
    ] {
        let net = zoo::build(name, &BuildOptions::default()).unwrap().unwrap();
        let w = exec::init_weights(&net, 1).unwrap();
        let x = exec::random_input(&net, 1).unwrap();
        let plain = exec::run(&net, &w, &x, None).unwrap();
        let plan = exec::plan(&net, &w);
        assert!(
            plan.passthrough.iter().any(|&p| p),
            "{name}: nothing folded"
        );
        let fast = exec::run_planned(&net, &w, &plan, &x, None).unwrap();
        let scale = plain.outputs[0]
            .data
            .iter()
            .fold(0f32, |m, v| m.max(v.abs()));
        for (a, b) in plain.outputs[0].data.iter().zip(&fast.outputs[0].data) {
            assert!((a - b).abs() <= 1e-4 * scale, "{name}: {a} vs {b}");
        }
    }
}

#[test]
fn sobel_finds_a_known_edge() {
    // A white 16×16 square on black in a 32×32 picture: the gradient magnitude is zero away from
    // the square's border and largest on it.
    let dir = std::env::temp_dir().join(format!("archscope-sobel-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let img = image::GrayImage::from_fn(32, 32, |x, y| {
        image::Luma([if (8..24).contains(&x) && (8..24).contains(&y) {
            255
        } else {
            0
        }])
    });
    let input = dir.join("square.png");
    img.save(&input).unwrap();
    let output = dir.join("edges.png");
    let out = Command::new(env!("CARGO_BIN_EXE_archscope"))
        .args([
            "run",
            "sobel",
            "--input",
            "1x32x32",
            "--image",
            input.to_str().unwrap(),
            "--save-output",
            output.to_str().unwrap(),
        ])
        .current_dir(PathBuf::from(env!("CARGO_MANIFEST_DIR")))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let edges = image::open(&output).unwrap().to_luma8();
    assert_eq!(edges.dimensions(), (32, 32));
    let at = |x: u32, y: u32| edges.get_pixel(x, y).0[0];
    // Flat regions: outside, and the square's inside.
    for (x, y) in [(2, 2), (30, 30), (16, 16), (12, 20), (3, 16)] {
        assert_eq!(at(x, y), 0, "({x}, {y}) should be flat");
    }
    // The border of the square (both sides of each edge), away from the corners.
    for (x, y) in [
        (7, 16),
        (8, 16),
        (23, 16),
        (24, 16),
        (16, 7),
        (16, 8),
        (16, 23),
        (16, 24),
    ] {
        assert!(
            at(x, y) > 100,
            "({x}, {y}) should be on the edge: {}",
            at(x, y)
        );
    }
    // The strongest response is on the edge: |Gx| = 1+2+1 = 4 (of 1) at mid-edge; the corner
    // pixels, where both derivatives respond, are brightest (255).
    assert_eq!(edges.pixels().map(|p| p.0[0]).max(), Some(255));
    std::fs::remove_dir_all(&dir).ok();
}
