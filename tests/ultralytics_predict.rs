//! `archscope run --detect` on Ultralytics-format Detect, Pose and Segment models against
//! Ultralytics' own `model.predict` on the same weights and images
//! (tests/data/ultralytics_predict/reference.json, written by
//! scripts/ultralytics_predict_reference.py from our tiny detect.yaml, pose.yaml and seg.yaml):
//! the same detections in the same order (class; score and box in the image's pixels within
//! 1e-4 relative; detections whose scores tie within 1e-6 relative may come in another order
//! within their run of ties), a Pose model's key points (x, y in the image's pixels and visibility within
//! 1e-4 relative), a Segment model's masks (the same pixel count per detection, and the masks'
//! IoU at least 0.99), for `model.predict`'s rect letterbox and the full one, several
//! confidence and IoU thresholds, agnostic NMS and `max_det`.

use serde_json::Value;

use crate::common::{data_json, json, ok, scratch};

/// Relative tolerance of scores, coordinates and visibilities (coordinates near 0 compared
/// against 1: a box clipped to the image edge is 0 exactly on both sides).
const REL: f64 = 1e-4;

/// Scores this close (relative; a float32 ulp at 0.6 is 1e-7 of it) are a tie.
const TIE: f64 = 1e-6;

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= REL * b.abs().max(1.0)
}

fn f64s(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .iter()
        .map(|x| x.as_f64().unwrap_or(f64::NAN))
        .collect()
}

/// A run-length code (start, length, …) as the set of pixels inside.
fn pixels(rle: &Value) -> Vec<usize> {
    let r = f64s(rle);
    r.chunks(2)
        .flat_map(|c| (c[0] as usize)..(c[0] as usize + c[1] as usize))
        .collect()
}

/// The IoU of two masks given as sorted pixel lists.
fn iou(a: &[usize], b: &[usize]) -> f64 {
    let (mut i, mut j, mut inter) = (0, 0, 0usize);
    while i < a.len() && j < b.len() {
        match a[i].cmp(&b[j]) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                inter += 1;
                i += 1;
                j += 1;
            }
        }
    }
    let union = a.len() + b.len() - inter;
    if union == 0 {
        1.0
    } else {
        inter as f64 / union as f64
    }
}

/// The `archscope run` arguments of one reference case.
fn args(doc: &Value, case: &Value) -> Vec<String> {
    let model = case["model"].as_str().unwrap();
    let image = case["image"].as_str().unwrap();
    let imgsz = doc["imgsz"].as_u64().unwrap();
    let mut a: Vec<String> = vec![
        "run".into(),
        doc["models"][model]["yaml"].as_str().unwrap().into(),
        "--input".into(),
        format!("{imgsz}x{imgsz}"),
        "--weights".into(),
        doc["models"][model]["weights"].as_str().unwrap().into(),
        "--image".into(),
        doc["images"][image]["file"].as_str().unwrap().into(),
        "--detect".into(),
        "--conf".into(),
        case["conf"].to_string(),
        "--iou".into(),
        case["iou"].to_string(),
        "--max-det".into(),
        case["max_det"].to_string(),
        "--format".into(),
        "json".into(),
    ];
    if case["agnostic"].as_bool().unwrap() {
        a.push("--agnostic-nms".into());
    }
    if !case["rect"].as_bool().unwrap() {
        a.push("--full-letterbox".into());
    }
    a
}

/// Runs every case of `model` and compares; returns (cases, detections, worst mask IoU,
/// detections found at another position of a run of tied scores).
fn check_model(model: &str) -> (usize, usize, f64, usize) {
    let doc = data_json("ultralytics_predict/reference.json");
    let (mut cases, mut dets, mut worst_iou, mut permuted) = (0, 0, 1.0f64, 0);
    for case in doc["cases"].as_array().unwrap() {
        if case["model"] != model {
            continue;
        }
        let a = args(&doc, case);
        let argv: Vec<&str> = a.iter().map(String::as_str).collect();
        let got = json(&argv);
        let what = format!("{argv:?}");
        // The model was fed the letterboxed image of the size Ultralytics fed.
        let image = case["image"].as_str().unwrap();
        let mode = if case["rect"].as_bool().unwrap() {
            "rect"
        } else {
            "full"
        };
        let want_in = &doc["images"][image][mode]["input"];
        let shape = f64s(&got["input"]);
        assert_eq!(
            &shape[shape.len() - 2..],
            &f64s(want_in)[..],
            "{what}: input {shape:?}"
        );
        let d = got["detections"].as_array().unwrap();
        let boxes = case["boxes"].as_array().unwrap();
        assert_eq!(d.len(), boxes.len(), "{what}: detections");
        let scores = f64s(&case["scores"]);
        let mut used = vec![false; d.len()];
        for k in 0..d.len() {
            // Ultralytics' detection k is ours at k, or, where scores tie to a few float32 ulps
            // (flat image regions give anchors the same score; our convolutions round in another
            // order than PyTorch's, so such ties may break the other way), at another position
            // of the same run of tied scores.
            let tied = |a: usize, b: usize| (scores[a] - scores[b]).abs() <= TIE * scores[a];
            let (mut lo, mut hi) = (k, k);
            while lo > 0 && tied(lo - 1, lo) {
                lo -= 1;
            }
            while hi + 1 < d.len() && tied(hi, hi + 1) {
                hi += 1;
            }
            let same = |j: usize| {
                let det = &d[j];
                det["class"].as_u64() == case["classes"][k].as_u64()
                    && close(det["score"].as_f64().unwrap(), scores[k])
                    && f64s(&det["box"])
                        .into_iter()
                        .zip(f64s(&boxes[k]))
                        .all(|(g, w)| close(g, w))
            };
            let j = (lo..=hi)
                .filter(|&j| !used[j])
                .find(|&j| same(j))
                .unwrap_or_else(|| {
                    panic!(
                        "{what}: Ultralytics' #{k} (class {}, score {}, box {}) is not among ours at {lo}..={hi}: {:?}",
                        case["classes"][k], scores[k], boxes[k], &d[lo..=hi]
                    )
                });
            used[j] = true;
            permuted += usize::from(j != k);
            let det = &d[j];
            if let Some(kp) = case.get("keypoints") {
                let want: Vec<Vec<f64>> = kp[k].as_array().unwrap().iter().map(f64s).collect();
                let have: Vec<Vec<f64>> = det["keypoints"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(f64s)
                    .collect();
                assert_eq!(have.len(), want.len(), "{what}: key points of #{k}");
                for (h, w) in have.iter().zip(&want) {
                    assert_eq!(h.len(), w.len(), "{what}: key point values of #{k}");
                    for (a, b) in h.iter().zip(w) {
                        assert!(close(*a, *b), "{what}: key points of #{k}: {h:?} vs {w:?}");
                    }
                }
            }
            if case.get("mask_area").is_some() {
                assert_eq!(
                    f64s(&det["mask_size"]),
                    f64s(&case["mask_shape"])
                        .into_iter()
                        .rev()
                        .collect::<Vec<_>>(),
                    "{what}: mask size of #{k}"
                );
                assert_eq!(
                    det["mask_area"].as_u64(),
                    case["mask_area"][k].as_u64(),
                    "{what}: mask area of #{k}"
                );
                let m = iou(&pixels(&det["mask_rle"]), &pixels(&case["mask_rle"][k]));
                assert!(m >= 0.99, "{what}: mask IoU of #{k}: {m}");
                worst_iou = worst_iou.min(m);
            }
        }
        cases += 1;
        dets += d.len();
    }
    (cases, dets, worst_iou, permuted)
}

#[test]
fn detect_matches_ultralytics_predict() {
    let (cases, dets, _, permuted) = check_model("detect");
    eprintln!("detect: {dets} detections, {permuted} at another position of a tie");
    // 3 images × 5 settings; the reference keeps 8 to 240 boxes per case.
    assert_eq!(cases, 15);
    // The figure docs/DETECTION.md states (the reference's boxes over the 15 cases).
    assert_eq!(dets, 1761, "detections compared");
}

#[test]
fn pose_keypoints_match_ultralytics_predict() {
    let (cases, dets, _, permuted) = check_model("pose");
    eprintln!("pose: {dets} detections, {permuted} at another position of a tie");
    assert_eq!(cases, 9);
    assert_eq!(dets, 743, "detections compared");
}

#[test]
fn segment_masks_match_ultralytics_predict() {
    let (cases, dets, worst, permuted) = check_model("seg");
    eprintln!("seg: {dets} detections, {permuted} at another position of a tie");
    assert_eq!(cases, 9);
    assert_eq!(dets, 261, "detections compared");
    // Every mask has exactly Ultralytics' pixel count; the IoU says the pixels are the same.
    assert_eq!(worst, 1.0, "worst mask IoU {worst}");
}

/// --save-output draws masks and key points: the PNG differs from the boxes-only drawing
/// where they are, and has the image's size.
#[test]
fn save_output_draws_masks_and_keypoints() {
    let doc = data_json("ultralytics_predict/reference.json");
    let dir = scratch("ultralytics_predict_draw");
    for model in ["seg", "pose"] {
        let case = doc["cases"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["model"] == model && c["image"] == "wide")
            .unwrap();
        let mut a = args(&doc, case);
        a.truncate(a.len() - 2); // no --format json
        let out = dir.join(format!("{model}.png"));
        a.extend(["--save-output".into(), out.display().to_string()]);
        let argv: Vec<&str> = a.iter().map(String::as_str).collect();
        ok(&argv);
        let drawn = image::open(&out).unwrap().to_rgb8();
        let orig = image::open(doc["images"]["wide"]["file"].as_str().unwrap())
            .unwrap()
            .to_rgb8();
        assert_eq!(drawn.dimensions(), orig.dimensions());
        assert_ne!(drawn, orig, "{model}: nothing drawn");
    }
}

/// The letterboxed input is OpenCV's to the pixel: for each image, `model.predict`'s rect
/// letterbox and the full one give the input size Ultralytics' `LetterBox` gives, and the same
/// uint8 pixels (the sum and a position-weighted sum of every RGB value, row-major HWC).
#[test]
fn letterbox_pixels_match_opencv() {
    use archscope::detect::Placement;
    let doc = data_json("ultralytics_predict/reference.json");
    let imgsz = doc["imgsz"].as_u64().unwrap() as u32;
    for (name, im) in doc["images"].as_object().unwrap() {
        let rgb = image::open(crate::common::root().join(im["file"].as_str().unwrap()))
            .unwrap()
            .to_rgb8();
        let (w, h) = rgb.dimensions();
        let (rect, rw, rh) = Placement::letterbox_rect(w, h, imgsz, imgsz, 32);
        let full = Placement::letterbox(w, h, imgsz, imgsz);
        for (mode, p, iw, ih) in [("rect", rect, rw, rh), ("full", full, imgsz, imgsz)] {
            let want = &im[mode];
            assert_eq!(
                vec![f64::from(ih), f64::from(iw)],
                f64s(&want["input"]),
                "{name} {mode}: input size"
            );
            let (iw, ih) = (iw as usize, ih as usize);
            let x = p.input(&rgb, 1, iw, ih);
            let plane = iw * ih;
            let (mut sum, mut weighted) = (0u64, 0u64);
            for i in 0..plane {
                for c in 0..3 {
                    let v = (x[c * plane + i] * 255.0).round() as u64;
                    sum += v;
                    weighted += v * ((3 * i + c) as u64 % 251 + 1);
                }
            }
            assert_eq!(Some(sum), want["sum"].as_u64(), "{name} {mode}: pixel sum");
            assert_eq!(
                Some(weighted),
                want["weighted"].as_u64(),
                "{name} {mode}: weighted pixel sum"
            );
        }
    }
}

/// A Segment head's masks are bounded before the model runs: 30,000 detections of a 640×640
/// mask would be 12,288,000,000 bytes, over the 2 GiB limit; the help names the largest
/// --max-det (2^31 / 409,600 = 5,242).
#[test]
fn mask_memory_is_bounded() {
    let d = "tests/data/ultralytics_predict";
    let e = crate::common::assert_rejected(
        &[
            "run",
            &format!("{d}/seg.yaml"),
            "--input",
            "640x640",
            "--detect",
            "--max-det",
            "30000",
        ],
        "would hold 12288000000 bytes of masks",
    );
    assert!(e.contains("--max-det 5242 or fewer"), "{e}");
}

/// --full-letterbox chooses between Ultralytics' two letterboxes of an --image: without an
/// image, or on a YOLOv1 head (a plain resize), it has nothing to choose and is refused.
#[test]
fn full_letterbox_refusals() {
    let d = "tests/data/ultralytics_predict";
    crate::common::assert_rejected(
        &[
            "run",
            &format!("{d}/detect.yaml"),
            "--input",
            "64x64",
            "--detect",
            "--full-letterbox",
        ],
        "--full-letterbox places the --image in the input; give --image",
    );
    let dir = scratch("full_letterbox_yolov1");
    let model = dir.join("yolov1_head.yaml");
    // A YOLOv1 grid of S = 1, B = 1, C = 1: 6 values.
    std::fs::write(
        &model,
        "format: \"archscope/1\"\nname: y1\ninputs:\n  image: [3, 8, 8]\nnodes:\n  - {op: flatten}\n  - {id: head, op: linear, out: 6}\n",
    )
    .unwrap();
    crate::common::assert_rejected(
        &[
            "run",
            crate::common::arg(&model),
            "--detect",
            "--grid",
            "1",
            "--boxes-per-cell",
            "1",
            "--full-letterbox",
            "--image",
            &format!("{d}/small.png"),
        ],
        "decodes as YOLOv1, whose image is resized to the whole input (no letterbox)",
    );
}
