//! The built binary as a user runs it: figures, formats and exit codes.

use crate::common::{
    archscope, arg, assert_rejected, bad_corpus, build_error, command, data_json, json, json_layer,
    npy_bytes, ok_text, output, read_saved_npy, refused, root, scratch, succeeded,
};
use serde_json::Value;

/// The entry of `model` in `tests/data/torchvision.json` (PyTorch's figures).
fn reference(model: &str) -> Value {
    data_json("torchvision.json")["models"][model].clone()
}

#[test]
fn summary_resnet50_json_matches_torchvision() {
    let r = reference("resnet50");
    let v = json(&["summary", "resnet50", "--format", "json"]);
    assert_eq!(v["model"], "resnet50");
    assert_eq!(v["input"], r["input"]);
    assert_eq!(v["totals"]["params"], r["params"]);
    assert_eq!(v["totals"]["trainable"], r["trainable"]);
    assert_eq!(v["totals"]["buffers"], r["buffers"]);
    assert_eq!(v["totals"]["macs"], r["macs"]);
    assert_eq!(v["outputs"][0]["shape"], r["output"]);
    // Parameter memory is 4 bytes per parameter in f32, 2 in f16.
    assert_eq!(
        v["totals"]["param_bytes"].as_u64().unwrap(),
        4 * r["params"].as_u64().unwrap()
    );
    let half = json(&["summary", "resnet50", "--format", "json", "--dtype", "f16"]);
    assert_eq!(
        half["totals"]["param_bytes"].as_u64().unwrap(),
        2 * r["params"].as_u64().unwrap()
    );
    // The documented per-layer keys.
    let conv1 = &v["layers"][1];
    for key in [
        "name",
        "op",
        "inputs",
        "output",
        "params",
        "trainable",
        "buffers",
        "macs",
        "flops",
        "activation_bytes",
    ] {
        assert!(conv1.get(key).is_some(), "missing {key}");
    }
    assert_eq!(conv1["output"], serde_json::json!([1, 64, 112, 112]));
    assert_eq!(conv1["activation_bytes"], 64 * 112 * 112 * 4);
}

#[test]
fn batch_and_input_size() {
    let r = reference("resnet18");
    let macs = r["macs"].as_u64().unwrap();
    // MACs are linear in the batch; parameters do not change.
    let v = json(&["summary", "resnet18", "--batch", "8", "--format", "json"]);
    assert_eq!(v["totals"]["macs"].as_u64().unwrap(), 8 * macs);
    assert_eq!(v["totals"]["params"], r["params"]);
    assert_eq!(v["outputs"][0]["shape"], serde_json::json!([8, 1000]));
    // 320²: the stem gives ⌊(320 + 6 - 7)/2⌋ + 1 = 160.
    for input in ["3x320x320", "320x320", "320"] {
        let v = json(&["summary", "resnet18", "--input", input, "--format", "json"]);
        assert_eq!(
            v["layers"][1]["output"],
            serde_json::json!([1, 64, 160, 160]),
            "{input}"
        );
    }
}

#[test]
fn table_markdown_csv_and_depth() {
    let text = ok_text(&["summary", "resnet50"]);
    assert!(text.contains("25557032") && text.contains("4089184256"));
    assert!(text.contains("25.56 M"));
    let text = ok_text(&["summary", "resnet50", "--depth", "1"]);
    assert!(text.contains("bottleneck ×6"), "{text}");
    assert!(!text.contains("layer3.0.conv1"));
    let md = ok_text(&["summary", "alexnet", "--format", "markdown"]);
    assert!(md.contains("| Layer"));
    let csv = ok_text(&["summary", "lenet5", "--format", "csv"]);
    let mut lines = csv.lines();
    assert_eq!(
        lines.next().unwrap(),
        "layer,op,output,params,macs,flops,activation_bytes,rf_height,rf_width,rf_aligned"
    );
    // LeNet-5's c1: 6·(1·25) + 6 = 156 parameters, 28²·6·25 = 117600 MACs, a 5×5 field.
    assert!(
        csv.lines().any(|l| l.starts_with("c1,")
            && l.contains(",156,117600,")
            && l.ends_with(",5,5,true")),
        "{csv}"
    );
}

#[test]
fn zoo_and_ops() {
    let v = json(&["zoo", "--format", "json"]);
    let names: Vec<&str> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    for m in [
        "lenet5",
        "mlp3",
        "alexnet",
        "vgg16",
        "vgg16_bn",
        "googlenet",
        "resnet18",
        "resnet50",
    ] {
        assert!(names.contains(&m), "{m}");
    }
    let ops = ok_text(&["ops"]);
    assert!(ops.contains("conv_transpose2d") && ops.contains("max_unpool2d"));
}

#[test]
fn bad_input_exits_2_with_location() {
    let err = assert_rejected(
        &["summary", "tests/data/bad/channel_mismatch_add.yaml"],
        "error: add inputs disagree in channels",
    );
    assert!(
        err.contains("tests/data/bad/channel_mismatch_add.yaml:5:5"),
        "{err}"
    );
    assert!(err.contains("1×1 convolution"), "{err}");
    for (args, needle) in [
        (
            vec!["summary", "resnet5"],
            "did you mean the zoo model `resnet50`",
        ),
        (
            vec!["summary", "no/such/file.yaml"],
            "no file or zoo model named `no/such/file.yaml`",
        ),
        (
            vec!["summary", "resnet50", "--input", "3x0x224"],
            "--input 3x0x224: expected positive integers like 3x224x224",
        ),
        (
            vec!["summary", "resnet50", "--batch", "0"],
            "--batch 0: expected positive integers like 32",
        ),
        (
            vec!["summary"],
            "the following required arguments were not provided:\n  <MODEL>",
        ),
        (vec!["frobnicate"], "unrecognized subcommand 'frobnicate'"),
    ] {
        assert_rejected(&args, needle);
    }
    // Every file of the corpus: exit 2 and, word for word, the message the library gives
    // (tests/errors.rs snapshots it), under `error: `.
    for path in bad_corpus() {
        let rel = path.strip_prefix(root()).unwrap().to_str().unwrap();
        let want = build_error(rel, &std::fs::read_to_string(&path).unwrap());
        let out = archscope(&["summary", rel]);
        let err = refused(&rel, &out, "");
        assert_eq!(err, format!("error: {want}\n"), "{rel}");
    }
}

#[test]
fn check_measures_receptive_fields() {
    // lenet5 on 32×32: c1, an unpadded 5×5 convolution (28×28), unit i reads rows i..i+4; s2
    // averages 2×2 (14×14), unit i reads c1 2i, 2i+1, so rows 2i..2i+5; c3, 5×5 (10×10), reads
    // s2 i..i+4, so rows 2i..2i+13; s4, 2×2 (5×5), reads c3 2i, 2i+1, so rows 4i..4i+15. Central
    // units: c1 (14, 14) rows 14–18, s2 (7, 7) 14–19, c3 (5, 5) 10–23, s4 (2, 2) 8–23. Flattened
    // layers have no field to compare.
    let v = json(&["check", "lenet5", "--format", "json"]);
    let rf = |name: &str| json_layer(&v, name)["rf"].clone();
    for (name, rows) in [
        ("c1", "14–18"),
        ("s2", "14–19"),
        ("c3", "10–23"),
        ("s4", "8–23"),
    ] {
        let want = format!("rows {rows}, cols {rows}");
        assert_eq!(
            rf(name),
            serde_json::json!({"analysed": want, "measured": want, "ok": true}),
            "{name}"
        );
    }
    assert_eq!(rf("c5")["measured"], "—");
    let out = archscope(&["check", "lenet5"]);
    let err = String::from_utf8(out.stderr.clone()).unwrap();
    let table = String::from_utf8(succeeded(&"check lenet5", out)).unwrap();
    assert!(table.contains("Receptive field (measured)"), "{table}");
    assert!(table.contains("rows 8–23, cols 8–23"), "{table}");
    assert!(err.contains("compared on 7 of 13 layers"), "{err}");
}

/// `run --npy` takes the model's input shape with or without its batch dimension, at every
/// rank and in float32 or float64 (issue 14: a batch-less 3×32×32 array made resnet18 panic,
/// a flat array made a relu-only model panic, and a batch-less array to a model without
/// convolutions gave all zeros and a `.npy` whose header claimed more data than it held).
#[test]
fn npy_input_with_or_without_batch() {
    let dir = scratch("npy");
    let p = |name: &str| dir.join(name).to_str().unwrap().to_string();
    // resnet18 at 32×32: a batch-less array and the same array with its batch of 1 give the
    // same output, bit for bit.
    let values: Vec<f64> = (0..3 * 32 * 32)
        .map(|i| ((i * 37) % 101) as f64 / 50.0 - 1.0)
        .collect();
    std::fs::write(p("x3.npy"), npy_bytes(&[3, 32, 32], &values, "<f4")).unwrap();
    std::fs::write(p("x4.npy"), npy_bytes(&[1, 3, 32, 32], &values, "<f4")).unwrap();
    std::fs::write(p("x4d.npy"), npy_bytes(&[1, 3, 32, 32], &values, "<f8")).unwrap();
    for (input, saved) in [
        ("x3.npy", "y3.npy"),
        ("x4.npy", "y4.npy"),
        ("x4d.npy", "y4d.npy"),
    ] {
        ok_text(&[
            "run",
            "resnet18",
            "--input",
            "32",
            "--npy",
            &p(input),
            "--save-output",
            &p(saved),
        ]);
    }
    let (s3, y3) = read_saved_npy(&dir.join("y3.npy"));
    let (s4, y4) = read_saved_npy(&dir.join("y4.npy"));
    let (_, y4d) = read_saved_npy(&dir.join("y4d.npy"));
    assert_eq!(s3, vec![1, 1000]);
    assert_eq!(s4, vec![1, 1000]);
    assert_eq!(y3, y4);
    // The values are exact in f32, so the float64 file gives the same input.
    assert_eq!(y4, y4d);
    // A relu-only model of a flat input: a flat 12-value array, at batch 1 and batch 3 (the
    // array copied to every sample); by hand, max(0, v) of each value.
    let model = p("relu.yaml");
    std::fs::write(&model, "inputs: {x: [12]}\nnodes:\n  - {id: r, op: relu}\n").unwrap();
    let flat: Vec<f64> = (0..12).map(|i| i as f64 - 5.5).collect();
    std::fs::write(p("flat.npy"), npy_bytes(&[12], &flat, "<f4")).unwrap();
    for batch in ["1", "3"] {
        ok_text(&[
            "run",
            &model,
            "--batch",
            batch,
            "--npy",
            &p("flat.npy"),
            "--save-output",
            &p("r.npy"),
        ]);
        let (shape, y) = read_saved_npy(&dir.join("r.npy"));
        let b: usize = batch.parse().unwrap();
        assert_eq!(shape, vec![b, 12]);
        let want: Vec<f32> = (0..b)
            .flat_map(|_| flat.iter().map(|&v| v.max(0.0) as f32))
            .collect();
        assert_eq!(y, want);
    }
    // A model without convolutions (max pool 2×2, then relu) fed a batch-less 1×4×4 array at
    // batch 2: each sample's output is the max of each 2×2 block, by hand.
    let model = p("pool.yaml");
    std::fs::write(
        &model,
        "inputs: {x: [1, 4, 4]}\nnodes:\n  - {id: p, op: maxpool, kernel: 2}\n  - {id: r, op: relu}\n",
    )
    .unwrap();
    let img: Vec<f64> = (0..16).map(|i| i as f64).collect();
    std::fs::write(p("img.npy"), npy_bytes(&[1, 4, 4], &img, "<f4")).unwrap();
    ok_text(&[
        "run",
        &model,
        "--batch",
        "2",
        "--npy",
        &p("img.npy"),
        "--save-output",
        &p("pool_out.npy"),
    ]);
    let (shape, y) = read_saved_npy(&dir.join("pool_out.npy"));
    assert_eq!(shape, vec![2, 1, 2, 2]);
    // Blocks {0,1,4,5} → 5, {2,3,6,7} → 7, {8,9,12,13} → 13, {10,11,14,15} → 15.
    assert_eq!(y, vec![5.0, 7.0, 13.0, 15.0, 5.0, 7.0, 13.0, 15.0]);
    // An array that fits neither shape: a located error naming both.
    let err = assert_rejected(
        &["run", &model, "--npy", &p("flat.npy")],
        "holds an array of shape 12, but the model's input `x` is 1×1×4×4 (1×4×4 per sample)",
    );
    assert!(
        err.contains("help: save an array of shape 1×1×4×4 or 1×4×4"),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// With several model outputs, `run` describes each and says which one the top-5 and
/// `--save-output` use (the first), rather than dropping the others silently.
#[test]
fn run_names_each_of_several_outputs() {
    let dir = scratch("outputs");
    let model = dir.join("two.yaml");
    std::fs::write(
        &model,
        "inputs: {x: [4]}\nnodes:\n  - {id: a, op: relu}\n  - {id: b, op: sigmoid, in: x}\noutputs: [b, a]\n",
    )
    .unwrap();
    let saved = dir.join("o.npy");
    let text = ok_text(&[
        "run",
        model.to_str().unwrap(),
        "--save-output",
        saved.to_str().unwrap(),
    ]);
    assert!(text.contains("output 1 of 2 `b` 1×4: "), "{text}");
    assert!(text.contains("output 2 of 2 `a` 1×4: "), "{text}");
    assert!(text.contains("top-5 classes of `b`: "), "{text}");
    assert!(
        text.contains(&format!("wrote {} (output 1 `b`)\n", saved.display())),
        "{text}"
    );
    // The saved output is b's: sigmoid values lie in (0, 1), and the relu's would include 0.
    let (shape, y) = read_saved_npy(&saved);
    assert_eq!(shape, vec![1, 4]);
    assert!(y.iter().all(|&v| v > 0.0 && v < 1.0), "{y:?}");
    let v: Value = serde_json::from_str(&ok_text(&[
        "run",
        model.to_str().unwrap(),
        "--format",
        "json",
    ]))
    .unwrap();
    assert_eq!(v["output"]["name"], "b");
    assert_eq!(v["other_outputs"][0]["name"], "a");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Output statistics count NaN and infinities apart and give min, max and mean over the finite
/// values (issue 14: `min inf, max -inf, mean NaN`); relu keeps NaN as PyTorch does.
#[test]
fn run_statistics_count_nan_and_inf() {
    let dir = scratch("nan");
    let model = dir.join("relu.yaml");
    std::fs::write(&model, "inputs: {x: [5]}\nnodes:\n  - {id: r, op: relu}\n").unwrap();
    let npy = dir.join("x.npy");
    std::fs::write(
        &npy,
        npy_bytes(&[5], &[1.0, f64::NAN, -2.0, f64::INFINITY, 3.0], "<f4"),
    )
    .unwrap();
    let text = ok_text(&[
        "run",
        model.to_str().unwrap(),
        "--npy",
        npy.to_str().unwrap(),
    ]);
    // relu → [1, NaN, 0, inf, 3]: finite 1, 0, 3 → min 0, max 3, mean 4/3.
    assert!(
        text.contains("output 1×5: min 0.0000, max 3.0000, mean 1.3333 (over the 3 finite values); 1 NaN, 1 +inf\n"),
        "{text}"
    );
    let v: Value = serde_json::from_str(&ok_text(&[
        "run",
        model.to_str().unwrap(),
        "--npy",
        npy.to_str().unwrap(),
        "--format",
        "json",
    ]))
    .unwrap();
    assert_eq!(v["output"]["nan"], 1);
    assert_eq!(v["output"]["pos_inf"], 1);
    assert_eq!(v["output"]["neg_inf"], 0);
    assert_eq!(v["output"]["finite"], 3);
    assert_eq!(v["output"]["max"], 3.0);
    // Nothing finite at all.
    std::fs::write(&npy, npy_bytes(&[5], &[f64::NAN; 5], "<f4")).unwrap();
    let text = ok_text(&[
        "run",
        model.to_str().unwrap(),
        "--npy",
        npy.to_str().unwrap(),
    ]);
    assert!(
        text.contains("output 1×5: no finite values; 5 NaN\n"),
        "{text}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A PNG holds one picture: with a batch, `run` says that it drew sample 1; an output that is
/// not image-shaped is an error pointing to `.npy`.
#[test]
fn save_output_png_says_what_it_drew() {
    let dir = scratch("png");
    let png = dir.join("e.png");
    let text = ok_text(&[
        "run",
        "sobel",
        "--batch",
        "2",
        "--input",
        "1x32x32",
        "--save-output",
        png.to_str().unwrap(),
    ]);
    assert!(
        text.contains(&format!("wrote {} (sample 1 of 2)\n", png.display())),
        "{text}"
    );
    let err = assert_rejected(
        &["run", "mlp3", "--save-output", arg(&png)],
        "the output is 1×10, not image-shaped (N×C×H×W), so it cannot be a PNG",
    );
    assert!(err.contains("help: save it as a .npy array"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The fields of one CSV line (RFC 4180 quoting).
fn csv_fields(line: &str) -> Vec<String> {
    let (mut out, mut cur, mut quoted) = (Vec::new(), String::new(), false);
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                cur.push('"');
                chars.next();
            }
            ('"', _) => quoted = !quoted,
            (',', false) => out.push(std::mem::take(&mut cur)),
            _ => cur.push(c),
        }
    }
    out.push(cur);
    out
}

/// The values `--format` lists in `archscope COMMAND --help`.
fn listed_formats(command: &str) -> Vec<String> {
    let help = ok_text(&[command, "--help"]);
    let line = help
        .lines()
        .skip_while(|l| !l.trim_start().starts_with("--format"))
        .find(|l| l.contains("[possible values:"))
        .unwrap_or_else(|| panic!("{command}: no format list in\n{help}"));
    let list = line.split("[possible values:").nth(1).unwrap();
    list.trim_end_matches(']')
        .trim_end_matches("]")
        .split(',')
        .map(|v| v.trim().trim_end_matches(']').to_string())
        .collect()
}

#[test]
fn every_listed_format_is_written() {
    for (command, args) in [
        ("summary", vec!["lenet5"]),
        ("compare", vec!["lenet5", "mlp3"]),
        ("rf", vec!["lenet5"]),
        ("check", vec!["lenet5"]),
        ("run", vec!["lenet5"]),
        ("zoo", vec![]),
        ("audit", vec!["lenet5"]),
        (
            "train",
            vec![
                "lenet5",
                "--dataset-size",
                "100",
                "--batch",
                "10",
                "--epochs",
                "1",
            ],
        ),
    ] {
        let formats = listed_formats(command);
        assert!(!formats.is_empty(), "{command}");
        for f in &formats {
            let mut a = vec![command];
            a.extend(args.iter().copied());
            a.extend(["--format", f]);
            let text = ok_text(&a);
            assert!(text.ends_with('\n'), "{a:?} has no final newline");
            let boxed = text.contains('┆');
            match f.as_str() {
                "json" => {
                    serde_json::from_str::<Value>(&text).unwrap_or_else(|e| panic!("{a:?}: {e}"));
                }
                "csv" => {
                    assert!(!boxed && !text.contains('|'), "{a:?}:\n{text}");
                    let cols = text.lines().next().unwrap().split(',').count();
                    assert!(cols > 2, "{a:?}");
                    // Every row has the header's number of fields.
                    for l in text.lines() {
                        assert_eq!(csv_fields(l).len(), cols, "{a:?}: {l}");
                    }
                }
                "markdown" => assert!(!boxed && text.contains("| "), "{a:?}:\n{text}"),
                "table" | "text" => {}
                other => panic!("{command}: unexpected format {other}"),
            }
        }
    }
    // A format a command does not write is refused by the parser before anything runs.
    for command in ["check", "run"] {
        let out = archscope(&[command, "lenet5", "--format", "csv"]);
        refused(&command, &out, "invalid value 'csv'");
        assert!(out.stdout.is_empty());
    }
}

#[test]
fn json_numbers_are_numbers() {
    // check: counts are numbers, shapes arrays. LeNet-5's c1: 156 parameters, 117,600 MACs,
    // output 1×6×28×28.
    let v = json(&["check", "lenet5", "--format", "json"]);
    let c1 = json_layer(&v, "c1");
    assert_eq!(c1["params"]["analysed"], 156);
    assert_eq!(c1["params"]["measured"], 156);
    assert_eq!(c1["macs"]["measured"], 117_600);
    assert_eq!(c1["buffers"]["analysed"], 0);
    assert_eq!(c1["shape"]["analysed"], serde_json::json!([[1, 6, 28, 28]]));
    assert!(c1["params"]["analysed"].is_u64());
    // Receptive fields are integers where integral, in compare, summary and rf alike: ResNet-50's
    // final field is 427 (tests/rf.rs has it from PyTorch gradients).
    let c = json(&["compare", "resnet50", "--format", "json"]);
    assert!(c["models"][0]["rf"][0].is_u64(), "{}", c["models"][0]["rf"]);
    assert_eq!(c["models"][0]["rf"], serde_json::json!([427, 427]));
    let s = json(&["summary", "resnet50", "--format", "json"]);
    let last = s["layers"]
        .as_array()
        .unwrap()
        .iter()
        .rev()
        .find(|l| !l["rf"].is_null())
        .unwrap();
    assert!(last["rf"]["size"][0].is_u64(), "{}", last["rf"]);
    // A fraction stays a decimal: the 2×2/2 pool of LeNet-5 starts at (2 − 1)/2 = 0.5 past c1's
    // start 2: s2's start is 2.5.
    let s2 = s2_start();
    assert_eq!(s2, 2.5);
    // audit's figures: an integral field is an integer.
    let a = json(&["audit", "resnet50", "--min-rf", "400", "--format", "json"]);
    assert!(a["budgets"][0]["actual"].is_u64(), "{}", a["budgets"][0]);
}

fn s2_start() -> f64 {
    let v = json(&["rf", "lenet5", "--format", "json"]);
    json_layer(&v, "s2")["rf"]["start"][0].as_f64().unwrap()
}

#[test]
fn csv_columns_hold_one_kind_of_value() {
    // compare: the receptive field in rf_height/rf_width (numbers) and rf_aligned, never `451*`.
    let csv = ok_text(&["compare", "resnet50", "mlp3", "--format", "csv"]);
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let col = |name: &str| header.iter().position(|h| *h == name).unwrap();
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    assert_eq!(rows[0][col("rf_height")], "427");
    assert_eq!(rows[0][col("rf_width")], "427");
    assert_eq!(rows[0][col("rf_aligned")], "true");
    // mlp3 has no spatial trunk: the field is global, all three empty.
    assert_eq!(
        (rows[1][col("rf_height")], rows[1][col("rf_aligned")]),
        ("", "")
    );
    // A misaligned merge: `false` in its own column, the size a plain number.
    let dir = scratch("csv");
    let file = dir.join("misaligned.yaml");
    std::fs::write(
        &file,
        "inputs: {x: [1, 16, 16]}\nnodes:\n  - {id: a, op: conv, in: x, out: 2, kernel: 3, padding: 1}\n  - {id: b, op: conv, in: x, out: 2, kernel: 2, padding: [0, 0, 1, 1]}\n  - {id: cat, op: concat, in: [a, b]}\n",
    )
    .unwrap();
    let f = file.to_str().unwrap();
    let csv = ok_text(&["compare", f, "--format", "csv"]);
    // cat: the larger path's 3×3 field, not aligned (start 0 against 1/2).
    assert!(csv.lines().nth(1).unwrap().contains(",3,3,false,"), "{csv}");
    // summary CSV too, and its last row is the totals: LeNet-5's 61,706 parameters and
    // 416,520 MACs (tests/data/torchvision.json), with an empty layer name and op `total`.
    let csv = ok_text(&["summary", f, "--format", "csv"]);
    assert!(
        csv.lines()
            .any(|l| l.starts_with("cat,") && l.ends_with(",3,3,false")),
        "{csv}"
    );
    let r = reference("lenet5");
    let csv = ok_text(&["summary", "lenet5", "--format", "csv"]);
    let total = csv.lines().last().unwrap();
    assert!(
        total.starts_with(&format!(",total,10,{},{},", r["params"], r["macs"])),
        "{total}"
    );
    // With --depth the totals row is the same.
    let folded = ok_text(&["summary", "lenet5", "--format", "csv", "--depth", "1"]);
    assert_eq!(folded.lines().last().unwrap(), total);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn depth_is_one_rule_across_formats() {
    // resnet50 --depth 1: stem conv1 (+bn, relu), maxpool, layer1..layer4 (one row per repeat
    // run), avgpool, flatten, fc, and the input: the same rows in CSV and JSON.
    let csv = ok_text(&["summary", "resnet50", "--depth", "1", "--format", "csv"]);
    let csv_rows: Vec<&str> = csv
        .lines()
        .skip(1)
        .filter(|l| !l.starts_with(",total,"))
        .map(|l| l.split(',').next().unwrap())
        .collect();
    let v = json(&["summary", "resnet50", "--depth", "1", "--format", "json"]);
    let json_rows: Vec<&str> = v["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(csv_rows, json_rows);
    assert_eq!(
        json_rows,
        [
            "image", "conv1", "maxpool", "layer1", "layer2", "layer3", "layer4", "avgpool",
            "flatten", "fc"
        ]
    );
    // layer3: 6 bottlenecks; the folded rows' parameters sum to the model's 25,557,032.
    let sum: u64 = v["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["params"].as_u64().unwrap())
        .sum();
    assert_eq!(sum, reference("resnet50")["params"].as_u64().unwrap());
    // Every layer is still listed.
    assert!(v["layers"].as_array().unwrap().len() > json_rows.len());
    // Without --depth there are no folded rows.
    assert!(json(&["summary", "resnet50", "--format", "json"])
        .get("rows")
        .is_none());
    // --depth 0 is refused before anything runs, by one rule for summary and report.
    for cmd in [
        &["summary", "resnet50", "--depth", "0"][..],
        &[
            "report",
            "resnet50",
            "--depth",
            "0",
            "-o",
            "/tmp/archscope-depth0.html",
        ],
    ] {
        let out = archscope(cmd);
        refused(&cmd, &out, "the depth is at least 1");
        assert!(out.stdout.is_empty());
    }
}

/// The width of the widest table line (box-drawing lines) in `text`, in characters.
fn table_width(text: &str) -> usize {
    text.lines()
        .filter(|l| l.starts_with(['┌', '│', '╞', '├', '└']))
        .map(|l| l.chars().count())
        .max()
        .unwrap_or(0)
}

/// The stdout of `archscope ARGS` with `COLUMNS` set to `columns`.
fn with_columns(columns: &str, args: &[&str]) -> String {
    let out = output(command(args).env("COLUMNS", columns));
    String::from_utf8(succeeded(&(columns, args), out)).unwrap()
}

#[test]
fn tables_fit_80_and_120_columns() {
    let commands: [&[&str]; 7] = [
        &["ops"],
        &["rf", "resnet50"],
        &[
            "compare",
            "resnet50",
            "alexnet",
            "vgg16",
            "--baseline",
            "alexnet",
        ],
        &["summary", "resnet50"],
        &["summary", "resnet50", "--input", "224,320"],
        &["zoo"],
        &["check", "lenet5"],
    ];
    for args in commands {
        let full = ok_text(args);
        for width in [80usize, 120] {
            let text = with_columns(&width.to_string(), args);
            let w = table_width(&text);
            assert!(w <= width, "{args:?} at {width}: {w} wide\n{text}");
            // Figures are never cut: every number of the full table is still there.
            if full.lines().count() < 400 {
                for l in full.lines().filter(|l| l.starts_with('│')) {
                    for cell in l.split(['│', '┆']).map(str::trim) {
                        // A number, a shape or a ratio, with an optional unit (`25.56 M`).
                        let mut parts = cell.split(' ');
                        let figure = parts.next().is_some_and(|n| {
                            n.starts_with(|c: char| c.is_ascii_digit())
                                && n.chars().all(|c| c.is_ascii_digit() || ".×*/,".contains(c))
                        }) && parts
                            .all(|u| u.len() <= 3 && u.chars().all(|c| c.is_ascii_alphabetic()));
                        if figure {
                            assert!(text.contains(cell), "{args:?} at {width}: `{cell}` lost");
                        }
                    }
                }
            }
        }
        // Without COLUMNS and not on a terminal, full width (deterministic, as before).
        assert_eq!(with_columns("", args), full);
    }
    // Long text is cut with `…`: ops' descriptions at 80 columns.
    assert!(with_columns("80", &["ops"]).contains('…'));
    // The compare with a baseline is 15 figure columns: at 80 it is shown as several tables,
    // each led by the model column.
    let text = with_columns(
        "80",
        &["compare", "resnet50", "alexnet", "--baseline", "alexnet"],
    );
    assert!(text.matches("│ Model").count() >= 2, "{text}");
}

#[test]
fn run_names_each_sample_and_ends_its_lines() {
    let text = ok_text(&["run", "lenet5", "--batch", "3"]);
    for n in 0..3 {
        assert!(
            text.contains(&format!("top-5 classes of sample {n}: ")),
            "{text}"
        );
    }
    assert!(text.ends_with('\n'));
    // The latency line is a line of its own: the message after it starts a new line.
    let dir = scratch("run");
    let npy = dir.join("out.npy");
    let text = ok_text(&["run", "lenet5", "--save-output", arg(&npy)]);
    assert!(text.lines().any(|l| l.starts_with("wrote ")), "{text}");
    let v = json(&["run", "lenet5", "--batch", "2", "--format", "json"]);
    assert_eq!(v["output"]["top5_per_sample"].as_array().unwrap().len(), 2);
    assert_eq!(v["output"]["top5"], v["output"]["top5_per_sample"][0]);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn the_macs_column_names_its_convention() {
    let text = ok_text(&["summary", "lenet5", "--convention", "thop"]);
    let header = text.lines().nth(2).unwrap();
    assert!(header.contains("MACs (thop)"), "{header}");
    let text = ok_text(&["summary", "lenet5"]);
    assert!(!text.contains("MACs ("), "{text}");
}

#[test]
fn readme_says_how_to_install() {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    // Near the top: within the first 40 lines.
    let head: Vec<&str> = readme.lines().take(40).collect();
    assert!(
        head.iter().any(|l| l.contains("cargo install --path .")),
        "{}",
        head.join("\n")
    );
}

/// When Graphviz's `dot` fails without a word on stderr (a 199k-layer graph killed for memory,
/// issue 14), the message says how it ended and what to do, not "failed to render the svg:"
/// and nothing. A stand-in `dot` on PATH dies by SIGKILL, or exits 1 with a message.
#[cfg(unix)]
#[test]
fn dot_failures_say_how_dot_ended() {
    use std::os::unix::fs::PermissionsExt;
    let dir = scratch("fakedot");
    let fake = dir.join("dot");
    let run = |script: &str| {
        std::fs::write(&fake, script).unwrap();
        std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
        let path = format!(
            "{}:{}",
            dir.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let out = output(command(&["dot", "lenet5", "--format", "svg"]).env("PATH", path));
        refused(&script, &out, "`dot` ")
    };
    let killed = run("#!/bin/sh\n[ \"$1\" = -V ] && exit 0\ncat >/dev/null\nkill -9 $$\n");
    assert!(
        killed.contains("`dot` was killed (signal 9, SIGKILL")
            && killed.contains("with no message on stderr")
            && killed.contains("the graph has 13 layers")
            && killed.contains("--collapse blocks"),
        "{killed}"
    );
    let failed = run("#!/bin/sh\n[ \"$1\" = -V ] && exit 0\ncat >/dev/null\necho 'Error: trouble in layout' >&2\nexit 3\n");
    assert!(
        failed.contains(
            "`dot` exited with status 3 while rendering the svg: Error: trouble in layout"
        ),
        "{failed}"
    );
}
