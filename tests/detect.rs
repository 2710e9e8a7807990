//! Detection post-processing (`archscope::detect`, `run --detect`): NMS and batched NMS equal
//! torchvision's, and the confidence filter + NMS equal Ultralytics' `non_max_suppression`, on
//! the random inputs of tests/data/nms_reference.json (scripts/nms_reference.py: ties,
//! duplicate and empty boxes, thresholds 0 and 1, both of torchvision's batched paths,
//! scores exactly at the threshold, more candidates than max_nms); YOLOv1's grid decoding
//! and the letterbox by hand; the command line's output and its refusals.

use crate::common::*;
use archscope::detect::{
    self, batched_nms, nms, non_max_suppression, Box4, NmsParams, Placement, Yolov1Grid,
};
use serde_json::Value;

fn f32s(v: &Value) -> Vec<f32> {
    v.as_array()
        .expect("an array")
        .iter()
        .map(|x| x.as_f64().expect("a number") as f32)
        .collect()
}

fn boxes(v: &Value) -> Vec<Box4> {
    f32s(v)
        .chunks(4)
        .map(|c| [c[0], c[1], c[2], c[3]])
        .collect()
}

fn reference() -> Value {
    data_json("nms_reference.json")
}

#[test]
fn nms_keeps_what_torchvision_keeps() {
    let r = reference();
    let cases = r["nms"].as_array().unwrap();
    assert_eq!(cases.len(), 8);
    for c in cases {
        let keep = nms(
            &boxes(&c["boxes"]),
            &f32s(&c["scores"]),
            c["iou"].as_f64().unwrap(),
        );
        assert_eq!(keep, usizes(&c["keep"]), "seed {}", c["seed"]);
    }
}

#[test]
fn batched_nms_keeps_what_torchvision_keeps_on_both_paths() {
    let r = reference();
    let cases = r["batched_nms"].as_array().unwrap();
    // 50, 400 and 1000 boxes take the coordinate trick; 1001 and 1500 one NMS per class.
    let sizes: Vec<usize> = cases
        .iter()
        .map(|c| c["scores"].as_array().unwrap().len())
        .collect();
    assert_eq!(sizes, [50, 400, 1000, 1001, 1500, 1500]);
    for c in cases {
        let keep = batched_nms(
            &boxes(&c["boxes"]),
            &f32s(&c["scores"]),
            &usizes(&c["classes"]),
            c["iou"].as_f64().unwrap(),
        );
        assert_eq!(keep, usizes(&c["keep"]), "seed {}", c["seed"]);
    }
}

#[test]
fn non_max_suppression_equals_ultralytics() {
    let r = reference();
    let cases = r["non_max_suppression"].as_array().unwrap();
    assert_eq!(cases.len(), 8);
    for c in cases {
        let p = NmsParams {
            conf: c["conf"].as_f64().unwrap(),
            iou: c["iou"].as_f64().unwrap(),
            agnostic: c["agnostic"].as_bool().unwrap(),
            max_det: c["max_det"].as_u64().unwrap() as usize,
            max_nms: c["max_nms"].as_u64().unwrap() as usize,
        };
        p.validate().unwrap();
        let nc = c["nc"].as_u64().unwrap() as usize;
        let anchors = c["anchors"].as_u64().unwrap() as usize;
        let dets = non_max_suppression(&f32s(&c["pred"]), anchors, nc, &p);
        let seed = &c["seed"];
        let anchor: Vec<usize> = dets.iter().map(|d| d.anchor).collect();
        assert_eq!(anchor, usizes(&c["anchor"]), "seed {seed}");
        let class: Vec<usize> = dets.iter().map(|d| d.class).collect();
        assert_eq!(class, usizes(&c["class"]), "seed {seed}");
        let score: Vec<f32> = dets.iter().map(|d| d.score).collect();
        assert_eq!(score, f32s(&c["score"]), "seed {seed}");
        for (d, want) in dets.iter().zip(boxes(&c["xyxy"])) {
            for k in 0..4 {
                assert!(
                    (d.xyxy[k] - want[k]).abs() <= 1e-6 * want[k].abs().max(1.0),
                    "seed {seed} anchor {}: {:?} vs {want:?}",
                    d.anchor,
                    d.xyxy
                );
            }
        }
    }
}

#[test]
fn yolov1_grid_decoding_by_hand() {
    // S = 2, B = 1, C = 2: 7 values a cell, 28 in all; only cell (row 1, col 0) says anything.
    let g = Yolov1Grid::from_output(28, 2, 1).unwrap();
    assert_eq!(g, Yolov1Grid { s: 2, b: 1, c: 2 });
    let mut out = vec![0.0f32; 28];
    // Cell index row·S + col = 2: x 0.5, y 0.25, √w 0.5, √h 0.2, confidence 0.8, Pr 0.25, 0.75.
    out[14..21].copy_from_slice(&[0.5, 0.25, 0.5, 0.2, 0.8, 0.25, 0.75]);
    let pred = detect::decode_yolov1(&out, g, 100, 200);
    // Input 100 wide, 200 high: centre ((0 + 0.5)/2·100, (1 + 0.25)/2·200) = (25, 125),
    // size (0.5²·100, 0.2²·200) = (25, 8); class scores 0.25·0.8 = 0.2 and 0.75·0.8 = 0.6.
    let dets = non_max_suppression(&pred, 4, 2, &NmsParams::default());
    assert_eq!(dets.len(), 1);
    let d = &dets[0];
    assert_eq!((d.anchor, d.class), (2, 1));
    assert!((d.score - 0.6).abs() < 1e-6);
    for (got, want) in d.xyxy.iter().zip([12.5, 121.0, 37.5, 129.0]) {
        assert!((got - want).abs() < 1e-4, "{:?}", d.xyxy);
    }
    // 1470 values with the paper's S = 7, B = 2: C = 1470/49 − 10 = 20.
    assert_eq!(Yolov1Grid::from_output(1470, 7, 2).unwrap().c, 20);
    let e = Yolov1Grid::from_output(1000, 7, 2).unwrap_err().to_string();
    assert!(
        e.contains("1000 values per sample, not S²·(5B + C) = 49·(10 + C)"),
        "{e}"
    );
}

#[test]
fn letterbox_placement_by_hand() {
    // 500×375 into 640×640: r = min(640/375, 640/500) = 1.28, 640×480, (640 − 480)/2 = 80
    // rows above: round(79.9) = 80.
    let p = Placement::letterbox(500, 375, 640, 640);
    assert_eq!((p.new_w, p.new_h, p.left, p.top), (640, 480, 0, 80));
    // 333×500 into 640×640: r = 1.28, round(426.24) = 426 wide, (640 − 426)/2 = 107 left.
    let p = Placement::letterbox(333, 500, 640, 640);
    assert_eq!((p.new_w, p.new_h, p.left, p.top), (426, 640, 107, 0));
    // Back onto the image: (x − 107) / (426/333), clipped to [0, 333].
    let b = p.to_image([107.0, 0.0, 533.0, 700.0]);
    assert_eq!(b, [0.0, 0.0, 333.0, 500.0]);
    // 51 columns in: 51 / (426/333) = 39.866…
    let b = p.to_image([158.0, 64.0, 158.0, 64.0]);
    assert!(
        (b[0] - 51.0 * 333.0 / 426.0).abs() < 1e-4 && (b[1] - 50.0).abs() < 1e-4,
        "{b:?}"
    );
}

#[test]
fn thresholds_and_counts_are_checked() {
    let bad = |p: NmsParams| p.validate().unwrap_err().to_string();
    let e = bad(NmsParams {
        conf: -0.1,
        ..NmsParams::default()
    });
    assert!(e.contains("--conf -0.1 is outside [0, 1]"), "{e}");
    let e = bad(NmsParams {
        conf: 1.5,
        ..NmsParams::default()
    });
    assert!(e.contains("--conf 1.5 is outside [0, 1]"), "{e}");
    let e = bad(NmsParams {
        iou: f64::NAN,
        ..NmsParams::default()
    });
    assert!(e.contains("--iou NaN is outside [0, 1]"), "{e}");
    let e = bad(NmsParams {
        max_det: 0,
        ..NmsParams::default()
    });
    assert!(e.contains("--max-det 0 is outside 1 to 30000"), "{e}");
    let e = bad(NmsParams {
        max_nms: 30_001,
        ..NmsParams::default()
    });
    assert!(e.contains("--max-nms 30001 is outside 1 to 30000"), "{e}");
    // A grid side or box count over 1024 (or 0).
    let e = Yolov1Grid::from_output(1470, 1025, 2)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("a YOLOv1 grid of 1025×1025 cells with 2 boxes each: both must be 1 to 1024"),
        "{e}"
    );
    let e = Yolov1Grid::from_output(1470, 7, 0).unwrap_err().to_string();
    assert!(e.contains("both must be 1 to 1024"), "{e}");
}

// ---------------------------------------------------------------------------------------------
// The command line.

#[test]
fn run_detect_refusals() {
    assert_rejected(
        &["run", "lenet5", "--detect", "--conf", "-0.5"],
        "--conf -0.5 is outside [0, 1]",
    );
    assert_rejected(
        &["run", "lenet5", "--detect", "--conf", "1.5"],
        "--conf 1.5 is outside [0, 1]",
    );
    assert_rejected(
        &["run", "lenet5", "--detect", "--iou", "7"],
        "--iou 7 is outside [0, 1]",
    );
    assert_rejected(
        &["run", "lenet5", "--detect", "--max-det", "30001"],
        "--max-det 30001 is outside 1 to 30000",
    );
    // Flags of --detect without it: clap's usage error.
    assert_rejected(&["run", "lenet5", "--conf", "0.5"], "--detect");
    // A classifier: its N×1000 output is no YOLOv1 grid.
    let e = assert_rejected(
        &["run", "resnet18", "--detect"],
        "the output has 1000 values per sample, not S²·(5B + C)",
    );
    assert!(e.contains("help: "), "{e}");
    // LeNet-5 reads one channel.
    assert_rejected(
        &["run", "lenet5", "--detect"],
        "--detect decodes a detector that reads one N×3×H×W image",
    );
}

/// A 96×64 PNG: a gradient, in a scratch directory.
fn picture(dir: &std::path::Path) -> std::path::PathBuf {
    let img = image::RgbImage::from_fn(96, 64, |x, y| {
        image::Rgb([(x * 2) as u8, (y * 3) as u8, 90])
    });
    let path = dir.join("street.png");
    img.save(&path).unwrap();
    path
}

/// A small detector with YOLOv1's head: a 3×32×32 input, two convolutions, and a linear
/// layer to the S×S×(5B + C) grid of S = 3, B = 2, C = 4: 9·14 = 126 values (the zoo's
/// yolov1 has 270 million weights: too slow to initialise for a test).
const TINY_YOLO: &str = r#"
format: "archscope/1"
name: tiny_yolo
inputs:
  image: [3, 32, 32]
nodes:
  - {id: c1, op: conv, out: 8, kernel: 3, stride: 2, padding: 1, act: relu}
  - {id: c2, op: conv, out: 8, kernel: 3, stride: 2, padding: 1, act: relu}
  - {op: flatten}
  - {id: head, op: linear, out: 126, act: sigmoid}
"#;

#[test]
fn run_detect_yolov1_head_prints_and_draws_boxes() {
    let dir = scratch("yolov1");
    let pic = picture(&dir);
    let model = dir.join("tiny_yolo.yaml");
    std::fs::write(&model, TINY_YOLO).unwrap();
    let m = arg(&model);
    let drawn = dir.join("boxes.png");
    let grid = ["--grid", "3", "--boxes-per-cell", "2"];
    // Random weights: every box of the 3·3·2 = 18 whose best class score passes --conf 0.
    let mut a = vec![
        "run",
        m,
        "--detect",
        "--conf",
        "0",
        "--image",
        arg(&pic),
        "--format",
        "json",
    ];
    a.extend(grid);
    let mut with_png = a.clone();
    with_png.extend(["--save-output", arg(&drawn)]);
    let all = json(&with_png);
    let dets = all["detections"].as_array().unwrap();
    assert!(!dets.is_empty() && dets.len() <= 18, "{}", dets.len());
    let mut last = f64::INFINITY;
    for d in dets {
        let s = d["score"].as_f64().unwrap();
        assert!(s > 0.0 && s <= last, "scores by decreasing value: {d}");
        last = s;
        let b = f32s(&d["box"]);
        // Mapped onto the 96×64 image and clipped to it.
        assert!(
            b[0] >= 0.0 && b[2] <= 96.0 && b[1] >= 0.0 && b[3] <= 64.0,
            "{d}"
        );
        assert!(d["class"].as_u64().unwrap() < 4);
        assert!(d["anchor"].as_u64().unwrap() < 18);
    }
    // The drawn PNG is the image, boxes painted on it.
    let png = image::open(&drawn).unwrap().to_rgb8();
    assert_eq!(png.dimensions(), (96, 64));
    let original = image::open(&pic).unwrap().to_rgb8();
    assert_ne!(png.as_raw(), original.as_raw());
    // --max-det 2 keeps the first two of the same list.
    let mut b = a.clone();
    b.extend(["--max-det", "2"]);
    let two = json(&b);
    let two = two["detections"].as_array().unwrap();
    assert_eq!(two.len(), 2.min(dets.len()));
    assert_eq!(two[..], dets[..two.len()]);
    // The table says how many.
    let mut t = vec![
        "run",
        m,
        "--detect",
        "--conf",
        "0",
        "--max-det",
        "2",
        "--image",
        arg(&pic),
    ];
    t.extend(grid);
    let text = ok_text(&t);
    assert!(
        text.contains(&format!("detections: {}", two.len())),
        "{text}"
    );
    // The zoo's grid (7, 2) does not fit 126 values.
    let e = assert_rejected(
        &["run", m, "--detect"],
        "the output has 126 values per sample, not S²·(5B + C) = 49·(10 + C)",
    );
    assert!(e.contains("--grid S --boxes-per-cell B"), "{e}");
    // Without --image, the PNG has nothing to be drawn on.
    let mut n = vec!["run", m, "--detect", "--save-output", arg(&drawn)];
    n.extend(grid);
    assert_rejected(&n, "draws the boxes on the --image; give --image");
}

#[test]
fn argsort_orders_ties_as_pytorch_does() {
    // torch.argsort(descending=True) on the CPU is unstable (libstdc++'s introsort): on arrays
    // full of ties (all equal, repeating patterns, sorted runs both ways, NaNs (null in the
    // JSON), ±0, organ-pipe and sawtooth orders) the order must be PyTorch's, index for index.
    let r = reference();
    let cases = r["argsort"].as_array().unwrap();
    assert_eq!(cases.len(), 9);
    for (k, c) in cases.iter().enumerate() {
        let scores: Vec<f32> = c["scores"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().map_or(f32::NAN, |x| x as f32))
            .collect();
        assert_eq!(
            detect::torch_argsort_descending(&scores),
            usizes(&c["order"]),
            "case {k}"
        );
    }
}
