//! Every command on Ultralytics model files, run from the built binary as a user runs it, on
//! the files of tests/data/ultralytics/ (written for these tests in Ultralytics' format; never
//! copies of Ultralytics' AGPL files). Each figure is either Ultralytics' own, measured by
//! scripts/ultralytics_reference.py into tests/data/ultralytics_reference.json (parameters,
//! gradients, buffers, thop's MACs, GFLOPs), or derived by hand beside its assertion (receptive
//! fields, shapes, the edges of each `Concat`'s `from` list, the change of the parameters with
//! `nc`). `rf`'s fields are also measured by `check`, which runs the model in the executor. The
//! scale comes from the file name (`yolov8s.yaml` read as `yolov8.yaml` at scale s) or from
//! `--scale`, and `--nc` replaces the class count, on every command; bad files are refused
//! with their file:line:column on every command.

use crate::common;

use crate::common::{data_json, json};
use serde_json::Value;
use std::path::Path;

const V8: &str = "tests/data/ultralytics/v8_like.yaml";

/// Ultralytics' figures for one of our files (`v8_like.yaml:n`).
fn reference(key: &str) -> Value {
    let v = data_json("ultralytics_reference.json")["ours"][key].clone();
    assert!(v.is_object(), "no reference for {key}");
    v
}

fn n(v: &Value, k: &str) -> u64 {
    v[k].as_u64().unwrap_or_else(|| panic!("{k} in {v}"))
}

/// The layer `name` of a JSON listing (`rf`, `summary`, `check`).
fn layer<'a>(v: &'a Value, name: &str) -> &'a Value {
    v["layers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["name"] == name)
        .unwrap_or_else(|| panic!("no layer {name}"))
}

/// A scratch directory holding v8_like.yaml as `yolov8.yaml`, so that `yolov8n.yaml` and
/// `yolov8s.yaml` (which do not exist) are read as it is at scales n and s, as Ultralytics'
/// `YOLO("yolov8s.yaml")` reads its own file.
fn unified() -> common::Scratch {
    let dir = common::scratch("ultra_cmds");
    std::fs::copy(common::root().join(V8), dir.join("yolov8.yaml")).unwrap();
    dir
}

fn path(dir: &Path, file: &str) -> String {
    common::arg(&dir.join(file)).to_string()
}

// ---------------------------------------------------------------------------------------------
// rf and check: the v8-like backbone's receptive fields, by hand and measured.

/// v8_like at scale n (depth 0.33: C2f repeats 3 → 1, 6 → 2; every kernel odd with padding
/// k // 2, so every field is centred: start 0 until the first upsampling). Field size r and
/// jump j, layer by layer (a k×k kernel adds (k − 1)·j; a stride multiplies j):
///
/// | layer | what | r | j |
/// |---|---|---:|---:|
/// | m0 | Conv 3×3/2 | 1 + 2·1 = 3 | 2 |
/// | m1 | Conv 3×3/2 | 3 + 2·2 = 7 | 4 |
/// | m2.cv2 | C2f ×1: cv1 1×1, one bottleneck of two 3×3 (+2·4 each); the concat's widest path | 7 + 8 + 8 = 23 | 4 |
/// | m3 | Conv 3×3/2 | 23 + 2·4 = 31 | 8 |
/// | m4.m_0.cv2 | C2f ×2, first bottleneck | 31 + 16 + 16 = 63 | 8 |
/// | m4.cv2 | second bottleneck | 63 + 32 = 95 | 8 |
/// | m5 | Conv 3×3/2 | 95 + 2·8 = 111 | 16 |
/// | m6.cv2 | C2f ×1 | 111 + 32 + 32 = 175 | 16 |
/// | m7 | Conv 3×3/2 | 175 + 2·16 = 207 | 32 |
/// | m8.cv2 | C2f ×1 | 207 + 64 + 64 = 335 | 32 |
/// | m9.m0, m1, m2 | SPPF: cv1 1×1, then max pool 5×5/1 three times (+4·32 each) | 463, 591, 719 | 32 |
/// | m9.cv2 | the concat's widest path, 1×1 | 719 | 32 |
///
/// `check` measures, for the unit at the centre of each map (index size/2: centre
/// (size/2)·j = 320 on the 640 input), the rows and columns that reach it: 320 ± (r − 1)/2,
/// clipped to 0–639 (m9.cv2: 320 ± 359).
const BACKBONE: &[(&str, u64, u64)] = &[
    ("m0", 3, 2),
    ("m1", 7, 4),
    ("m2.cv2", 23, 4),
    ("m3", 31, 8),
    ("m4.m_0.cv2", 63, 8),
    ("m4.cv2", 95, 8),
    ("m5", 111, 16),
    ("m6.cv2", 175, 16),
    ("m7", 207, 32),
    ("m8.cv2", 335, 32),
    ("m9.m0", 463, 32),
    ("m9.m1", 591, 32),
    ("m9.m2", 719, 32),
    ("m9.cv2", 719, 32),
];

#[test]
fn rf_of_the_v8_like_backbone_is_derived_by_hand_and_measured_by_check() {
    let rf = json(&["rf", V8, "--scale", "n", "--format", "json"]);
    for &(name, size, jump) in BACKBONE {
        let f = &layer(&rf, name)["rf"];
        assert_eq!(f["size"], serde_json::json!([size, size]), "{name}: size");
        assert_eq!(f["jump"], serde_json::json!([jump, jump]), "{name}: jump");
        assert_eq!(f["start"], serde_json::json!([0, 0]), "{name}: start");
        assert_eq!(f["aligned"], true, "{name}");
    }
    // Nearest ×2 upsampling of m9 (jump 32, start 0): output unit u repeats input unit ⌊u/2⌋,
    // centred at 32·⌊u/2⌋; as a lattice, jump 16 and start -8 (the mean of 0 and -16). m11
    // concatenates it with m6 (jump 16, start 0): not aligned.
    let up = &layer(&rf, "m10")["rf"];
    assert_eq!(up["jump"], serde_json::json!([16, 16]));
    assert_eq!(up["start"], serde_json::json!([-8, -8]));
    assert_eq!(layer(&rf, "m11")["rf"]["aligned"], false);
    // m9.m2 is the first layer whose field (719) reaches the input's 640.
    assert_eq!(rf["covers_input_from"], "m9.m2");

    let check = json(&["check", V8, "--scale", "n", "--format", "json"]);
    assert_eq!(check["failures"], 0, "check agrees on every layer");
    for &(name, size, _) in BACKBONE {
        let half = (size - 1) / 2;
        let (lo, hi) = (320u64.saturating_sub(half), (320 + half).min(639));
        let want = format!("rows {lo}–{hi}, cols {lo}–{hi}");
        let r = &layer(&check, name)["rf"];
        assert_eq!(r["measured"], want.as_str(), "{name}: measured field");
        assert_eq!(r["analysed"], want.as_str(), "{name}: analysed field");
        assert_eq!(r["ok"], true, "{name}");
    }
}

// ---------------------------------------------------------------------------------------------
// dot: Ultralytics' layers as nodes, each `from` list as edges.

#[test]
fn dot_draws_each_layer_and_the_edges_of_every_from_list() {
    let dot = common::ok_text(&["dot", V8, "--scale", "n", "--collapse", "blocks"]);
    // One node per Ultralytics layer: model.K is mK (23 rows in the file).
    for k in 0..=22 {
        assert!(dot.contains(&format!("\n  \"m{k}\"[label=")), "node m{k}");
    }
    // Block nodes name the module kind and its arguments after scaling (width 0.25: C2f
    // [128, True] at m2 is c = 32·0.5 = 16 hidden channels, out 32).
    assert!(dot.contains("c2f_n1_shortcut (15 layers)"), "{dot}");
    assert!(dot.contains("c: 16, out: 32"), "{dot}");
    assert!(dot.contains("sppf_k5_5_5"), "{dot}");
    // Each Concat's and Detect's `from` list as edges, with the shapes at 640 (scale n: width
    // 0.25, so 1024 → 256, 512 → 128, 256 → 64, 128 → 32 channels; strides 8, 16, 32 give
    // maps of 80, 40 and 20). The earlier layer of a Concat arrives as a shortcut (dashed).
    let edges = [
        // [[-1, 6], Concat] at 11: the upsampled m9 and m6.
        ("m10", "m11", " 256×40×40 ", false),
        ("m6", "m11", " 128×40×40 ", true),
        // [[-1, 4], Concat] at 14.
        ("m13", "m14", " 128×80×80 ", false),
        ("m4", "m14", " 64×80×80 ", true),
        // [[-1, 12], Concat] at 17.
        ("m16", "m17", " 64×40×40 ", false),
        ("m12", "m17", " 128×40×40 ", true),
        // [[-1, 9], Concat] at 20.
        ("m19", "m20", " 128×20×20 ", false),
        ("m9", "m20", " 256×20×20 ", true),
        // [[15, 18, 21], Detect] at 22.
        ("m15", "m22", " 64×80×80 ", false),
        ("m18", "m22", " 128×40×40 ", false),
        ("m21", "m22", " 256×20×20 ", false),
    ];
    for (a, b, shape, dashed) in edges {
        let e = format!(
            "\"{a}\" -> \"{b}\" [label=\"{shape}\"{}]",
            if dashed { " style=dashed" } else { "" }
        );
        assert!(dot.contains(&e), "edge {e}\n{dot}");
    }
    // The output: 4 + nc = 24 rows over 80² + 40² + 20² = 8400 anchors.
    assert!(dot.contains("\"m22\" -> \"output:m22\" [label=\" 24×8400 \"]"));
    let edge_count = dot.matches(" -> ").count();
    // image → m0; each of m1…m21 from its previous layer (21); the 4 Concats' second inputs;
    // Detect's 3 inputs; the output: 1 + 21 + 4 + 3 + 1 = 30 edges, no other.
    assert_eq!(edge_count, 30, "{dot}");

    // Unfolded, the nodes are Ultralytics' submodules (`_` for `.`): the Detect head's box
    // branch of level 0 ends in cv2.0.2, its DFL is dfl.conv.
    let full = common::ok_text(&["dot", V8, "--scale", "n"]);
    for node in [
        "m2.m_0.cv1",
        "m22.cv2_0_2",
        "m22.cv3_2_2",
        "m22.dfl_conv",
        "m9.m2",
    ] {
        assert!(full.contains(&format!("\"{node}\"")), "node {node}");
    }
}

// ---------------------------------------------------------------------------------------------
// compare: two scales of one file, named the way Ultralytics names them.

#[test]
fn compare_of_two_scales_gives_ultralytics_parameters_and_thop_macs() {
    let dir = unified();
    let v = json(&[
        "compare",
        &path(&dir, "yolov8n.yaml"),
        &path(&dir, "yolov8s.yaml"),
        "--convention",
        "thop",
        "--format",
        "json",
    ]);
    let models = v["models"].as_array().unwrap();
    assert_eq!(models.len(), 2);
    // thop 0.1.1 (archscope's thop convention) charges one MAC per output element of a nearest
    // upsampling, which ultralytics-thop, the one get_flops runs, does not: two upsamplings
    // m10 (1024·w channels at 40×40) and m13 (512·w at 80×80).
    for (m, key, width) in [
        (&models[0], "v8_like.yaml:n", 0.25),
        (&models[1], "v8_like.yaml:s", 0.5),
    ] {
        let want = reference(key);
        assert_eq!(
            m["name"].as_str().unwrap(),
            if width == 0.25 { "yolov8n" } else { "yolov8s" }
        );
        assert_eq!(n(m, "params"), n(&want, "parameters"), "{key}: parameters");
        let up = (1024.0 * width) as u64 * 40 * 40 + (512.0 * width) as u64 * 80 * 80;
        assert_eq!(
            n(m, "macs"),
            n(&want, "thop_macs_640") + up,
            "{key}: thop MACs"
        );
        // Ultralytics' GFLOPs as printed: 2 × its MACs / 1e9.
        let gflops = 2.0 * (n(m, "macs") - up) as f64 / 1e9;
        assert_eq!(
            format!("{gflops:.1}"),
            want["gflops_printed"].as_str().unwrap()
        );
    }
}

// ---------------------------------------------------------------------------------------------
// audit: the findings, named exactly; budgets at Ultralytics' parameter count.

#[test]
fn audit_names_its_findings_and_holds_budgets_at_ultralytics_figures() {
    let v = json(&["audit", V8, "--scale", "n", "--format", "json"]);
    let found: Vec<(String, String)> = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["kind"].as_str().unwrap().to_string(),
                f["layer"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    // m11 concatenates the upsampled m9 (start -8, see the rf test) with m6 (start 0); m9.m2
    // is the first layer whose field (719) reaches 640, and the 127 spatial layers after it
    // are counted as adding no context at this input.
    assert_eq!(
        found,
        [
            ("misaligned-merge".to_string(), "m11".to_string()),
            ("unproductive-layers".to_string(), "m9.m2".to_string())
        ]
    );
    assert!(v["findings"][0]["message"]
        .as_str()
        .unwrap()
        .contains("jump 16, start 0 vs input 0: jump 16, start -8"));
    // A convolutional field as large as the input is centred on its unit: m9.m2's corner unit
    // (centre 0 at jump 32, half-width (719 − 1)/2 = 359) sees rows 0–359 only, so the
    // message must not say every unit sees the whole input (as it does after attention).
    let msg = v["findings"][1]["message"].as_str().unwrap();
    assert!(
        msg.contains("the receptive field is as large as the 640×640 input (a unit at the border still sees only part of it)")
            && !msg.contains("every unit"),
        "{msg}"
    );
    assert!(v["findings"][1]["fix"]
        .as_str()
        .unwrap()
        .contains("the final field is 1183 pixels"));
    // A parameter budget of exactly Ultralytics' count passes; one less fails (exit 1).
    let p = n(&reference("v8_like.yaml:n"), "parameters");
    let at = p.to_string();
    let below = (p - 1).to_string();
    common::ok(&["audit", V8, "--scale", "n", "--max-params", &at]);
    let o = common::archscope(&["audit", V8, "--scale", "n", "--max-params", &below]);
    assert_eq!(o.status.code(), Some(1), "{}", common::stderr(&o));
}

// ---------------------------------------------------------------------------------------------
// train: parameters, gradients, optimizer state and buffers as Ultralytics has them.

#[test]
fn train_figures_equal_ultralytics_parameters_gradients_and_buffers() {
    for key in ["v8_like.yaml:s", "v11_like.yaml:n", "v8_like_seg.yaml:n"] {
        let want = reference(key);
        let (file, scale) = key.split_once(':').unwrap();
        let file = format!("tests/data/ultralytics/{file}");
        let v = json(&[
            "train",
            &file,
            "--scale",
            scale,
            "--dataset-size",
            "1000",
            "--batch",
            "8",
            "--epochs",
            "1",
            "--optimizer",
            "adamw",
            "--format",
            "json",
        ]);
        let mem = &v["memory"];
        let (params, grads) = (n(&want, "parameters"), n(&want, "gradients"));
        // model.buffers(): per BatchNorm, running mean and variance (float32, C each) and
        // num_batches_tracked (one int64): buffers = 2C + B, bytes = 8C + 8B, so
        // B = (bytes − 4·buffers) / 4. archscope keeps the statistics (8C bytes), not the
        // counters (docs/COUNTING.md).
        let (buffers, bytes) = (n(&want, "buffers"), n(&want, "buffer_bytes"));
        let bn = (bytes - 4 * buffers) / 4;
        let stats_bytes = 4 * (buffers - bn);
        assert_eq!(
            n(mem, "weights"),
            4 * params + stats_bytes,
            "{key}: weights"
        );
        // A gradient for each trainable parameter (DFL's fixed 16 weights have none).
        assert_eq!(n(mem, "gradients"), 4 * grads, "{key}: gradients");
        // AdamW: two moments per trainable parameter.
        assert_eq!(n(mem, "optimizer_state"), 8 * grads, "{key}: AdamW state");
    }
}

// ---------------------------------------------------------------------------------------------
// convert: the written file reads back to the same figures, for every test file.

#[test]
fn convert_reads_back_to_the_same_figures_on_every_test_file() {
    let dir = common::scratch("ultra_convert_all");
    let refs = data_json("ultralytics_reference.json");
    let ours = refs["ours"].as_object().unwrap();
    // Every test file is in the reference (at one scale or two).
    let files: std::collections::BTreeSet<String> =
        std::fs::read_dir(common::root().join("tests/data/ultralytics"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
    let keyed: std::collections::BTreeSet<String> = ours
        .keys()
        .map(|k| k.split(':').next().unwrap().to_string())
        .collect();
    assert_eq!(files, keyed, "every test file has reference figures");
    for (key, want) in ours {
        let (file, scale) = match key.split_once(':') {
            Some((f, s)) => (f, Some(s)),
            None => (key.as_str(), None),
        };
        let src = format!("tests/data/ultralytics/{file}");
        let out = dir.join(format!("{}.archscope.yaml", key.replace([':', '.'], "_")));
        let mut args = vec!["convert", src.as_str(), "-o", common::arg(&out)];
        let mut sargs = vec!["summary", src.as_str(), "--format", "json"];
        if let Some(s) = scale {
            args.extend(["--scale", s]);
            sargs.extend(["--scale", s]);
        }
        common::ok(&args);
        let text = std::fs::read_to_string(&out).unwrap();
        let header = match scale {
            Some(s) => format!("from the Ultralytics model file {src} at scale {s}."),
            None => format!("from the Ultralytics model file {src}."),
        };
        assert!(
            text.lines().next().unwrap().ends_with(&header),
            "{key}: {}",
            text.lines().next().unwrap()
        );
        let back = json(&["summary", common::arg(&out), "--format", "json"]);
        let direct = json(&sargs);
        assert_eq!(back["totals"], direct["totals"], "{key}: totals");
        assert_eq!(back["outputs"], direct["outputs"], "{key}: outputs");
        assert_eq!(
            n(&back["totals"], "params"),
            n(want, "parameters"),
            "{key}: parameters"
        );
        assert_eq!(
            n(&back["totals"], "trainable"),
            n(want, "gradients"),
            "{key}: gradients"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// summary's flags on Ultralytics files.

#[test]
fn summary_ultralytics_json_input_and_nc() {
    let want = reference("v8_like.yaml:n");
    let v = json(&[
        "summary",
        V8,
        "--scale",
        "n",
        "--ultralytics",
        "--format",
        "json",
    ]);
    let u = &v["ultralytics"];
    for (k, r) in [
        ("layers", "layers"),
        ("parameters", "parameters"),
        ("gradients", "gradients"),
        ("thop_macs", "thop_macs_640"),
    ] {
        assert_eq!(n(u, k), n(&want, r), "{k}");
    }
    assert_eq!(u["gflops_printed"], want["gflops_printed"]);
    assert_eq!(u["strides"], want["strides"]);
    let rows = u["modules"].as_array().unwrap();
    let wrows = want["modules"].as_array().unwrap();
    assert_eq!(rows.len(), wrows.len());
    for (r, w) in rows.iter().zip(wrows) {
        assert_eq!(r["params"], w["params"]);
        assert_eq!(r["from"], w["from"]);
        assert_eq!(r["module"], w["module"]);
    }
    // The rest is archscope's summary, one JSON document.
    assert_eq!(n(&v["totals"], "params"), n(&want, "parameters"));
    // CSV cannot hold the table: refused, with what to use instead.
    common::assert_rejected(
        &[
            "summary",
            V8,
            "--scale",
            "n",
            "--ultralytics",
            "--format",
            "csv",
        ],
        "use --format json",
    );
    // At 320×320 every map of this all-convolution model is exactly half as high and wide
    // (640 and 320 are both multiples of the largest stride, 32), so thop's MACs are a
    // quarter of those at 640.
    let v = json(&[
        "summary",
        V8,
        "--scale",
        "n",
        "--ultralytics",
        "--input",
        "320",
        "--format",
        "json",
    ]);
    assert_eq!(
        n(&v["ultralytics"], "thop_macs"),
        n(&want, "thop_macs_640") / 4
    );
    assert_eq!(n(&want, "thop_macs_640") % 4, 0);
    // --nc 3: the table's Detect row is built with 3 classes, and the summary line changes by
    // the class branches' last convolutions only: each level's cv3.l.2 is Conv2d(c3, nc, 1)
    // with a bias, c3 = max(64, min(nc, 100)) = 64, so 65 parameters per class per level:
    // 3 · 65 · (3 − 20) = −3315.
    let text = common::ok_text(&["summary", V8, "--scale", "n", "--nc", "3", "--ultralytics"]);
    assert!(text.contains("[3, 16, None, [64, 128, 256]]"), "{text}");
    let p = n(&want, "parameters") - 3315;
    assert!(
        text.contains(&format!(
            "v8_like summary: 125 layers, {} parameters",
            common::commas(p)
        )),
        "{text}"
    );
    // --ultralytics on a file that is not one: said, not ignored.
    common::assert_rejected(
        &["summary", "resnet18", "--ultralytics"],
        "not an Ultralytics model file",
    );
}

// ---------------------------------------------------------------------------------------------
// The scale from the file name, --scale and --nc, on every command.

#[test]
fn every_command_takes_the_scale_from_the_name_or_the_flag_and_the_nc_flag() {
    let dir = unified();
    let s = reference("v8_like.yaml:s");
    let (params_s, grads_s) = (n(&s, "parameters"), n(&s, "gradients"));
    // v8_like at scale s with --nc 3: c3 = max(128, min(3, 100)) = 128 (ch[0] = 256·0.5), so
    // each level's last class convolution loses 129 · (20 − 3) parameters: 3 · 129 · 17 = 6579.
    let params_s_nc3 = params_s - 6579;
    let named = path(&dir, "yolov8s.yaml");
    let ways: [(&str, Vec<&str>); 2] = [
        ("file name", vec![named.as_str()]),
        ("--scale", vec![V8, "--scale", "s"]),
    ];
    for (how, model) in &ways {
        for nc in [None, Some("3")] {
            let (params, classes) = match nc {
                None => (params_s, 20),
                Some(_) => (params_s_nc3, 3),
            };
            let with = |cmd: &[&str]| -> Vec<String> {
                let mut v: Vec<String> = vec![cmd[0].to_string()];
                v.extend(model.iter().map(|s| s.to_string()));
                if let Some(c) = nc {
                    v.extend(["--nc".to_string(), c.to_string()]);
                }
                v.extend(cmd[1..].iter().map(|s| s.to_string()));
                v
            };
            let run = |cmd: &[&str]| -> Value {
                let args = with(cmd);
                let a: Vec<&str> = args.iter().map(String::as_str).collect();
                json(&a)
            };
            let what = format!("{how}, nc {classes}");
            // summary
            let v = run(&["summary", "--format", "json"]);
            assert_eq!(n(&v["totals"], "params"), params, "summary, {what}");
            // compare
            let v = run(&["compare", "--format", "json"]);
            assert_eq!(n(&v["models"][0], "params"), params, "compare, {what}");
            // rf: the head's output is 4 + nc rows over 8400 anchors; at scale s the SPPF
            // ends with 1024 · 0.5 = 512 channels.
            let v = run(&["rf", "--format", "json"]);
            assert_eq!(
                layer(&v, "m22.out")["output"],
                serde_json::json!([1, 4 + classes, 8400]),
                "rf, {what}"
            );
            assert_eq!(layer(&v, "m9.cv2")["output"][1], 512, "rf, {what}");
            // audit: a budget of exactly the parameters passes
            let at = params.to_string();
            let v = run(&["audit", "--max-params", &at, "--format", "json"]);
            assert_eq!(v["passed"], true, "audit, {what}");
            // train: gradients (the class convolutions are trainable: −6579 with --nc 3)
            let v = run(&[
                "train",
                "--dataset-size",
                "8",
                "--batch",
                "8",
                "--epochs",
                "1",
                "--format",
                "json",
            ]);
            let grads = grads_s - (params_s - params);
            assert_eq!(n(&v["memory"], "gradients"), 4 * grads, "train, {what}");
            // check at 64×64 (anchors 8² + 4² + 2² = 84), no field measurement: the executor's
            // parameters, summed over the layers
            let v = run(&[
                "check",
                "--input",
                "64",
                "--rf-sample",
                "0",
                "--format",
                "json",
            ]);
            let measured: u64 = v["layers"]
                .as_array()
                .unwrap()
                .iter()
                .map(|l| l["params"]["measured"].as_u64().unwrap())
                .sum();
            assert_eq!(measured, params, "check, {what}");
            assert_eq!(
                layer(&v, "m22.out")["shape"]["measured"],
                serde_json::json!([[1, 4 + classes, 84]]),
                "check, {what}"
            );
            // dot: the title's parameter count and the output edge
            let args = with(&["dot"]);
            let a: Vec<&str> = args.iter().map(String::as_str).collect();
            let dot = common::ok_text(&a);
            assert!(
                dot.contains(&format!(
                    "\"m22.out\" -> \"output:m22\" [label=\" {}×8400 \"]",
                    4 + classes
                )),
                "dot, {what}"
            );
            // convert: the file written reads back to the parameters
            let out = dir.join(format!("c_{}_{classes}.yaml", how.replace(' ', "_")));
            let args = with(&["convert", "-o", common::arg(&out)]);
            let a: Vec<&str> = args.iter().map(String::as_str).collect();
            common::ok(&a);
            let v = json(&["summary", common::arg(&out), "--format", "json"]);
            assert_eq!(n(&v["totals"], "params"), params, "convert, {what}");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Bad files and flags: refused by every command, located in the file.

#[test]
fn bad_files_are_refused_by_every_command_with_their_location() {
    let dir = common::scratch("ultra_cmds_bad");
    let base = std::fs::read_to_string(common::root().join(V8)).unwrap();
    // Each case: the file's text, what the message says, where (line:column, 1-based, of the
    // offending value in that text).
    let line_of = |text: &str, needle: &str| -> usize {
        text.lines()
            .position(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("{needle}"))
            + 1
    };
    let unknown = base.replace("- [-1, 3, C2f, [512]]", "- [-1, 3, C2g, [512]]");
    let bad_from = base.replace(
        "- [[-1, 6], 1, Concat, [1]]",
        "- [[-1, 26], 1, Concat, [1]]",
    );
    let nc0 = base.replace("nc: 20", "nc: 0");
    let relu = base.replace("nc: 20", "nc: 20\nactivation: nn.Softmax2d()");
    let cases = [
        (
            "unknown.yaml",
            unknown.clone(),
            "unknown Ultralytics module `C2g`".to_string(),
            format!("unknown.yaml:{}:13", line_of(&unknown, "C2g")),
        ),
        (
            "from.yaml",
            bad_from.clone(),
            "layer 11: `from` 26 is not an earlier layer".to_string(),
            format!("from.yaml:{}:11", line_of(&bad_from, "[-1, 26]")),
        ),
        (
            "nc0.yaml",
            nc0.clone(),
            "nc 0: the number of classes is 1 to".to_string(),
            format!("nc0.yaml:{}:5", line_of(&nc0, "nc: 0")),
        ),
        (
            "act.yaml",
            relu.clone(),
            "activation `nn.Softmax2d()`".to_string(),
            format!("act.yaml:{}:13", line_of(&relu, "activation:")),
        ),
    ];
    for (file, text, msg, at) in &cases {
        let p = dir.join(file);
        std::fs::write(&p, text).unwrap();
        for cmd in [
            "summary", "rf", "dot", "compare", "audit", "check", "train", "convert", "run",
        ] {
            let mut args = vec![cmd, common::arg(&p), "--scale", "n"];
            if cmd == "train" {
                args.extend(["--dataset-size", "8", "--batch", "8", "--epochs", "1"]);
            }
            if cmd == "convert" {
                args.extend(["-o", "-"]);
            }
            let e = common::assert_rejected(&args, msg);
            assert!(e.contains(at.as_str()), "{cmd} {file}: no {at} in\n{e}");
        }
    }
    // A scale the table does not have, by flag and by file name: located at `scales:`.
    let s_line = line_of(&base, "n: [0.33");
    for cmd in [
        "summary", "rf", "dot", "compare", "audit", "check", "convert",
    ] {
        let mut args = vec![cmd, V8, "--scale", "x"];
        if cmd == "convert" {
            args.extend(["-o", "-"]);
        }
        let e = common::assert_rejected(&args, "the file has no scale `x`");
        assert!(e.contains(&format!("{V8}:{s_line}:3")), "{cmd}: {e}");
        assert!(e.contains("its scales: n, s"), "{cmd}: {e}");
    }
    let d = unified();
    let e = common::assert_rejected(
        &["summary", &path(&d, "yolov8m.yaml")],
        "the file has no scale `m`",
    );
    assert!(e.contains("yolov8.yaml:"), "{e}");
    // --nc 0: the flag is named (there is no line of the file to point at).
    for cmd in ["summary", "rf", "train"] {
        let mut args = vec![cmd, V8, "--scale", "n", "--nc", "0"];
        if cmd == "train" {
            args.extend(["--dataset-size", "8", "--batch", "8", "--epochs", "1"]);
        }
        common::assert_rejected(&args, "--nc 0: the number of classes is 1 to");
    }
}

// ---------------------------------------------------------------------------------------------
// `activation:`: Ultralytics' replacement of Conv's default SiLU.

#[test]
fn the_activation_key_replaces_the_default_activation_of_every_conv() {
    // p6_like.yaml says `activation: nn.ReLU()`; it has no C2PSA (whose attention convolutions
    // have none), so every Ultralytics Conv (a convolution with a batch norm) ends in a ReLU,
    // and no SiLU is left. Its parameters, layers and MACs are Ultralytics' own
    // (tests/ultralytics.rs, `p6_like.yaml:n`).
    let v = json(&[
        "summary",
        "tests/data/ultralytics/p6_like.yaml",
        "--format",
        "json",
    ]);
    let layers = v["layers"].as_array().unwrap();
    let names: std::collections::BTreeSet<&str> =
        layers.iter().map(|l| l["name"].as_str().unwrap()).collect();
    let mut bns = 0;
    for l in layers {
        let name = l["name"].as_str().unwrap();
        assert_ne!(l["op"], "silu", "{name}");
        if l["op"] == "batchnorm2d" {
            bns += 1;
            let conv = name.strip_suffix(".bn").unwrap();
            assert!(
                names.contains(format!("{conv}.relu").as_str()),
                "{conv}.relu"
            );
        }
    }
    let relus = layers.iter().filter(|l| l["op"] == "relu").count();
    assert_eq!(relus, bns, "one ReLU per Conv");
    // Ultralytics' restricted reader: `[torch.]nn.Class(literal arguments)`; LeakyReLU's slope.
    let dir = common::scratch("ultra_act");
    let base = std::fs::read_to_string(common::root().join(V8)).unwrap();
    let p = dir.join("leaky.yaml");
    std::fs::write(
        &p,
        base.replace("nc: 20", "nc: 20\nactivation: torch.nn.LeakyReLU(0.1)"),
    )
    .unwrap();
    let text = common::ok_text(&["convert", common::arg(&p), "--scale", "n", "-o", "-"]);
    assert!(
        text.contains("act: {op: leaky_relu, slope: 0.1}"),
        "{}",
        &text[..2000.min(text.len())]
    );
    for (act, says) in [
        (
            "nn.ReLU(inplace=True)",
            "its arguments `inplace=True` are not read",
        ),
        ("F.relu", "not a `torch.nn` class"),
        (
            "nn.Linear(3, 4)",
            "`nn.Linear` is not an activation archscope has",
        ),
        ("nn.LeakyReLU(a)", "the slope `a` is not a number"),
    ] {
        std::fs::write(
            &p,
            base.replace("nc: 20", &format!("nc: 20\nactivation: {act}")),
        )
        .unwrap();
        let e = common::assert_rejected(&["summary", common::arg(&p), "--scale", "n"], says);
        // v8_like.yaml opens with two comment lines: `activation:` is line 4.
        assert!(e.contains("leaky.yaml:4:13"), "{e}");
        assert!(e.contains("help: write a torch.nn activation"), "{e}");
    }
}

/// `yolov8n.yaml` where neither it nor `yolov8.yaml` exists: Ultralytics finds its own file in
/// its package; archscope ships none of them (AGPL-3.0), and says where to find it.
#[test]
fn a_missing_ultralytics_file_says_where_the_package_keeps_them() {
    let dir = common::scratch("ultra_missing");
    let e = common::assert_rejected(
        &["summary", &path(&dir, "yolo11n.yaml")],
        "archscope does not ship Ultralytics' model files",
    );
    assert!(e.contains("yolo11.yaml"), "{e}");
    assert!(
        e.contains("ultralytics/cfg/models/VERSION/yolo11n.yaml"),
        "{e}"
    );
}

/// A file with `scales` read with no scale takes the first, as Ultralytics does, and says so
/// once, though `summary --ultralytics` reads the model twice (the table, the summary).
#[test]
fn the_assumed_scale_is_said_once() {
    let o = common::archscope(&["summary", V8, "--ultralytics"]);
    let err = common::stderr(&o);
    assert_eq!(o.status.code(), Some(0), "{err}");
    assert_eq!(err.matches("no model scale given").count(), 1, "{err}");
    assert!(
        err.contains("assuming scale 'n', as Ultralytics does"),
        "{err}"
    );
}

/// `report` on an Ultralytics file: the page gives Ultralytics' parameter count, in full.
#[test]
fn report_gives_ultralytics_parameters() {
    let dir = common::scratch("ultra_report");
    let out = dir.join("v8.html");
    let named = {
        std::fs::copy(common::root().join(V8), dir.join("yolov8.yaml")).unwrap();
        path(&dir, "yolov8s.yaml")
    };
    common::ok(&["report", &named, "-o", common::arg(&out)]);
    let html = std::fs::read_to_string(&out).unwrap();
    let p = n(&reference("v8_like.yaml:s"), "parameters");
    assert!(
        html.contains(&common::commas(p)),
        "no {} in the page",
        common::commas(p)
    );
}
