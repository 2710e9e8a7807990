//! The Ultralytics model-YAML frontend (docs/ULTRALYTICS.md) against the installed
//! `ultralytics` package: tests/data/ultralytics_reference.json, written by
//! scripts/ultralytics_reference.py, holds what Ultralytics builds from the model files of
//! tests/data/ultralytics/ (written for these tests in Ultralytics' format, not copies of
//! Ultralytics' AGPL files): `model.info()`'s layers, parameters, gradients and GFLOPs, thop's
//! MACs at 640×640 measured directly, parse_model's per-module parameters, the strides and the
//! eval-mode output shapes. archscope must give every figure exactly. When the environment
//! variable ULTRALYTICS_CFG names the package's `cfg/models` folder, Ultralytics' own files
//! (v3-tiny, v5n/s, v8n/s/m, v8n-seg/cls/pose, 11n/s/m, 11n-seg/cls/pose) are checked the same
//! way against the `official` figures.

use crate::common;

use std::path::Path;

use crate::common::{data_json, root};
use archscope::convention::recount;
use archscope::ultralytics::{self, Options};
use archscope::yaml::Document;
use archscope::{analyze, graph, Analysis, BuildOptions, Convention, Dtype};
use serde_json::Value;

/// Translates `file` (scale `scale`) and analyses it at 640×640 with thop's MACs.
fn analyse(file: &Path, scale: Option<&str>) -> (ultralytics::Model, Analysis) {
    let text = std::fs::read_to_string(file).unwrap();
    let doc = Document::parse(&file.display().to_string(), &text).unwrap();
    assert!(ultralytics::is_ultralytics(&doc.root));
    let stem = file.file_stem().unwrap().to_string_lossy().into_owned();
    let opts = Options {
        name: stem,
        scale: scale.map(str::to_string),
        nc: None,
        input: None,
    };
    let m =
        ultralytics::translate(&doc, &opts).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    let tdoc =
        Document::parse("translated.yaml", &m.text).unwrap_or_else(|e| panic!("{e}\n{}", m.text));
    let net = graph::build_network(&tdoc, &BuildOptions::default())
        .unwrap_or_else(|e| panic!("{}: {e}\n{}", file.display(), m.text));
    let mut a = analyze(&net, Dtype::F32).unwrap();
    recount(&net, &mut a, Convention::Thop).unwrap();
    (m, a)
}

/// Every figure of `want` (one model of the reference JSON) against archscope's.
fn compare(what: &str, m: &ultralytics::Model, a: &Analysis, want: &Value) {
    let info = ultralytics::info(m, a);
    let n = |k: &str| want[k].as_u64().unwrap_or_else(|| panic!("{what}: {k}"));
    assert_eq!(info.parameters, n("parameters"), "{what}: parameters");
    assert_eq!(info.gradients, n("gradients"), "{what}: gradients");
    assert_eq!(
        info.layers,
        n("layers"),
        "{what}: layers (model.info's leaf modules)"
    );
    assert_eq!(
        info.thop_macs,
        n("thop_macs_640"),
        "{what}: thop MACs at 640"
    );
    // get_flops extrapolates thop from stride-sized proxies; it prints 0.0 when it fails
    // (a Focus stem: it takes the first weight's input channels, 12, for the image's).
    let printed = want["gflops_printed"].as_str().unwrap();
    if printed != "0.0" {
        assert_eq!(
            format!("{:.1}", info.gflops),
            printed,
            "{what}: GFLOPs as printed"
        );
        let g = want["gflops"].as_f64().unwrap();
        assert!(
            (info.gflops - g).abs() < 1e-6,
            "{what}: GFLOPs {} vs Ultralytics {g}",
            info.gflops
        );
    }
    let rows = want["modules"].as_array().unwrap();
    assert_eq!(m.rows.len(), rows.len(), "{what}: modules");
    for ((r, p), w) in m.rows.iter().zip(&info.row_params).zip(rows) {
        assert_eq!(
            *p,
            w["params"].as_u64().unwrap(),
            "{what}: params of module {}",
            r.index
        );
        assert_eq!(
            r.module,
            w["module"].as_str().unwrap(),
            "{what}: type of module {}",
            r.index
        );
        assert_eq!(
            r.from,
            w["from"].as_str().unwrap(),
            "{what}: from of module {}",
            r.index
        );
    }
    let strides: Vec<u64> = want["strides"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_u64().unwrap())
        .collect();
    assert_eq!(m.strides, strides, "{what}: strides");
    // The eval-mode outputs: the head's decoded tensor (and Segment's prototypes).
    let last = &m.rows.last().unwrap().path;
    let want_out = want["outputs"].as_array().unwrap();
    let out_of = |suffix: &str| -> Vec<u64> {
        let name = format!("{last}.{suffix}");
        let l = a
            .layers
            .iter()
            .find(|l| l.name == name)
            .unwrap_or_else(|| panic!("{what}: no layer {name}"));
        let mut v = vec![1];
        v.extend(&l.outputs[0].0[1..]);
        v
    };
    let task = want["task"].as_str().unwrap();
    let first = if task == "classify" {
        out_of("softmax")
    } else {
        out_of("out")
    };
    let w0: Vec<u64> = want_out[0]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap())
        .collect();
    assert_eq!(first, w0, "{what}: output shape");
    if task == "segment" {
        let w1: Vec<u64> = want_out[1]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap())
            .collect();
        assert_eq!(out_of("proto"), w1, "{what}: prototype shape");
    }
}

#[test]
fn our_files_equal_ultralytics_figures() {
    let doc = data_json("ultralytics_reference.json");
    let ours = doc["ours"].as_object().unwrap();
    // 8 files; v5_like, v8_like and v11_like at two scales each.
    assert_eq!(
        ours.len(),
        11,
        "the reference covers every test file and scale"
    );
    for (key, want) in ours {
        let (file, scale) = match key.split_once(':') {
            Some((f, s)) => (f, Some(s)),
            None => (key.as_str(), None),
        };
        let path = root().join("tests/data/ultralytics").join(file);
        let (m, a) = analyse(&path, scale);
        compare(key, &m, &a, want);
    }
}

#[test]
fn ultralytics_own_files_when_installed() {
    // Optional: ULTRALYTICS_CFG=…/site-packages/ultralytics/cfg/models.
    let Ok(dir) = std::env::var("ULTRALYTICS_CFG") else {
        return;
    };
    let doc = data_json("ultralytics_reference.json");
    // The bar, every one of them recorded: v3-tiny, v5 n/s, v8 n/s/m for detect,
    // segment and classify (and v8n-pose), 11 n/s/m for detect, segment, classify and pose.
    let mut bar = vec![
        "yolov3-tiny.yaml".to_string(),
        "yolov5n.yaml".into(),
        "yolov5s.yaml".into(),
    ];
    for t in ["", "-seg", "-cls"] {
        for s in ["n", "s", "m"] {
            bar.push(format!("yolov8{s}{t}.yaml"));
        }
    }
    bar.push("yolov8n-pose.yaml".into());
    for t in ["", "-seg", "-cls", "-pose"] {
        for s in ["n", "s", "m"] {
            bar.push(format!("yolo11{s}{t}.yaml"));
        }
    }
    assert_eq!(bar.len(), 25);
    let official = doc["official"].as_object().unwrap();
    for b in &bar {
        assert!(official.contains_key(b), "{b} is not in the reference");
    }
    let mut checked = Vec::new();
    for (name, want) in official {
        // yolov8n.yaml is yolov8.yaml at scale n; yolov3-tiny.yaml has no scale.
        let (scale, unified) = ultralytics::scale_from_name(name)
            .map(|(c, u)| (Some(c.to_string()), u))
            .unwrap_or((None, name.clone()));
        let sub = ["v3", "v5", "v6", "v8", "11", "26"]
            .iter()
            .map(|d| Path::new(&dir).join(d).join(&unified))
            .find(|p| p.exists())
            .or_else(|| {
                ["v3", "v5", "v6", "v8", "11", "26"]
                    .iter()
                    .map(|d| Path::new(&dir).join(d).join(name))
                    .find(|p| p.exists())
            })
            .unwrap_or_else(|| panic!("{name} not under {dir}"));
        let (m, a) = analyse(&sub, scale.as_deref());
        compare(name, &m, &a, want);
        checked.push(name.clone());
    }
    eprintln!("Ultralytics' own files checked: {}", checked.join(", "));
}

#[test]
fn every_module_is_exercised_by_a_test_file() {
    let mut seen = std::collections::BTreeSet::new();
    for e in std::fs::read_dir(root().join("tests/data/ultralytics")).unwrap() {
        let text = std::fs::read_to_string(e.unwrap().path()).unwrap();
        for m in ultralytics::MODULES {
            if text.contains(&format!(", {m}, [")) {
                seen.insert(*m);
            }
        }
    }
    let missing: Vec<&&str> = ultralytics::MODULES
        .iter()
        .filter(|m| !seen.contains(**m))
        .collect();
    assert!(missing.is_empty(), "modules no test file uses: {missing:?}");
}

#[test]
fn scale_comes_from_the_file_name_as_ultralytics_takes_it() {
    assert_eq!(
        ultralytics::scale_from_name("yolov8n.yaml"),
        Some(('n', "yolov8.yaml".into()))
    );
    assert_eq!(
        ultralytics::scale_from_name("cfg/yolov8s-seg.yaml"),
        Some(('s', "cfg/yolov8-seg.yaml".into()))
    );
    assert_eq!(
        ultralytics::scale_from_name("yolo11m-pose.yaml"),
        Some(('m', "yolo11-pose.yaml".into()))
    );
    assert_eq!(ultralytics::scale_from_name("yolov3-tiny.yaml"), None);
    assert_eq!(ultralytics::scale_from_name("resnet18.yaml"), None);
}

fn translate_err(text: &str) -> String {
    let doc = Document::parse("bad.yaml", text).unwrap();
    let e = ultralytics::translate(
        &doc,
        &Options {
            name: "bad".into(),
            ..Default::default()
        },
    )
    .unwrap_err();
    e.to_string()
}

#[test]
fn an_unknown_module_is_a_located_error_listing_the_known_ones() {
    let e = translate_err("nc: 2\nbackbone:\n  - [-1, 1, Conv, [16, 3, 2]]\n  - [-1, 1, C2F, [16]]\nhead:\n  - [-1, 1, Classify, [nc]]\n");
    assert!(e.contains("unknown Ultralytics module `C2F`"), "{e}");
    assert!(e.contains("bad.yaml:4:13"), "{e}");
    assert!(e.contains("did you mean `C2f`?"), "{e}");
    assert!(e.contains("C3k2, C2PSA, SPP, SPPF"), "{e}");
}

#[test]
fn bad_rows_are_located_errors() {
    let e = translate_err("nc: 2\nbackbone:\n  - [3, 1, Conv, [16, 3, 2]]\nhead: []\n");
    assert!(
        e.contains("`from` 3 is not an earlier layer") && e.contains("bad.yaml:3:6"),
        "{e}"
    );
    let doc = Document::parse(
        "bad.yaml",
        "nc: 2\nscales:\n  n: [0.33, 0.25, 1024]\nbackbone:\n  - [-1, 1, Conv, [16]]\nhead: []\n",
    )
    .unwrap();
    let e = ultralytics::translate(
        &doc,
        &Options {
            name: "x".into(),
            scale: Some("q".into()),
            ..Default::default()
        },
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("no scale `q`") && e.contains("its scales: n"),
        "{e}"
    );
    let e =
        translate_err("nc: 2\nbackbone:\n  - [-1, 1, Conv, [16, 3, 2]]\nhead: []\nanchors: 3\n");
    assert!(
        e.contains("unknown key `anchors`") && e.contains("bad.yaml:5:10"),
        "{e}"
    );
    let e = translate_err("nc: 2\nbackbone:\n  - [-1, 1, Conv, [16, 3.5, 2]]\nhead: []\n");
    assert!(e.contains("argument 2 (kernel) is 3.5"), "{e}");
}

#[test]
fn c2f_concatenates_views_of_its_split() {
    // C2f's chunk is a view in PyTorch: the split that feeds its concat allocates nothing, so
    // the growing concat costs one output, not copies of the halves.
    let (_, a) = analyse(
        &root().join("tests/data/ultralytics/v8_like.yaml"),
        Some("n"),
    );
    let split = a.layers.iter().find(|l| l.name == "m2.split").unwrap();
    assert_eq!(split.activation_bytes, 0, "the split is a view");
}

#[test]
fn convert_writes_archscope_yaml_that_reads_back_to_the_same_figures() {
    let dir = common::scratch("ultra_convert");
    let out = dir.join("v8.archscope.yaml");
    common::ok(&[
        "convert",
        "tests/data/ultralytics/v8_like.yaml",
        "--scale",
        "n",
        "-o",
        common::arg(&out),
    ]);
    let text = std::fs::read_to_string(&out).unwrap();
    assert!(
        text.starts_with("# Translated by `archscope convert`"),
        "{text}"
    );
    assert!(
        text.contains("\nblocks:\n") && text.contains("use: bottleneck"),
        "written as blocks"
    );
    let doc = Document::parse("v8.archscope.yaml", &text).unwrap();
    assert!(!ultralytics::is_ultralytics(&doc.root));
    let net = graph::build_network(&doc, &BuildOptions::default()).unwrap();
    let mut a = analyze(&net, Dtype::F32).unwrap();
    recount(&net, &mut a, Convention::Thop).unwrap();
    let (m, direct) = analyse(
        &root().join("tests/data/ultralytics/v8_like.yaml"),
        Some("n"),
    );
    assert_eq!(
        a.totals, direct.totals,
        "the converted file gives the translation's figures"
    );
    let names = |x: &Analysis| x.layers.iter().map(|l| l.name.clone()).collect::<Vec<_>>();
    assert_eq!(names(&a), names(&direct));
    // and Ultralytics' own: parameters, gradients, thop's MACs as get_flops counts them.
    let want = &data_json("ultralytics_reference.json")["ours"]["v8_like.yaml:n"];
    let info = ultralytics::info(&m, &a);
    assert_eq!(info.parameters, want["parameters"].as_u64().unwrap());
    assert_eq!(info.gradients, want["gradients"].as_u64().unwrap());
    assert_eq!(info.thop_macs, want["thop_macs_640"].as_u64().unwrap());
}

#[test]
fn summary_prints_ultralytics_table_and_info_line() {
    let text = common::ok_text(&[
        "summary",
        "tests/data/ultralytics/v8_like.yaml",
        "--scale",
        "n",
        "--ultralytics",
        "--depth",
        "1",
    ]);
    let want = &data_json("ultralytics_reference.json")["ours"]["v8_like.yaml:n"];
    // Ultralytics: "v8_like summary: 125 layers, 2,932,572 parameters, 2,932,556 gradients, 7.9 GFLOPs"
    let line = format!(
        "v8_like summary: {} layers, {} parameters, {} gradients, {} GFLOPs",
        want["layers"],
        common::commas(want["parameters"].as_u64().unwrap()),
        common::commas(want["gradients"].as_u64().unwrap()),
        want["gflops_printed"].as_str().unwrap()
    );
    assert!(text.contains(&line), "{line}\n{text}");
    assert!(text.contains("ultralytics.nn.modules.block.C2f"), "{text}");
}

/// `train` takes an Ultralytics file's `--scale` like the other commands: its gradient memory
/// is 4 bytes per trainable parameter, which at scale s is Ultralytics' own "gradients" figure
/// (tests/data/ultralytics_reference.json, `v8_like.yaml:s`), and without the flag the scale
/// Ultralytics assumes, n.
#[test]
fn train_takes_the_scale() {
    let reference = data_json("ultralytics_reference.json");
    for (flags, key) in [
        (&["--scale", "s"][..], "v8_like.yaml:s"),
        (&[][..], "v8_like.yaml:n"),
    ] {
        let mut args = vec![
            "train",
            "tests/data/ultralytics/v8_like.yaml",
            "--dataset-size",
            "1000",
            "--batch",
            "8",
            "--epochs",
            "1",
            "--format",
            "json",
        ];
        args.extend_from_slice(flags);
        let v = common::json(&args);
        let gradients = reference["ours"][key]["gradients"].as_u64().unwrap();
        assert_eq!(
            v["memory"]["gradients"].as_u64(),
            Some(4 * gradients),
            "{key}"
        );
    }
}
