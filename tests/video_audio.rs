//! The zoo's video and audio models against PyTorch: tests/data/video_audio_reference.json
//! (scripts/video_audio_reference.py; torchvision's r3d_18, mc3_18, r2plus1d_18 and
//! torchaudio's Wav2Letter) gives their parameters, buffers, MACs, output shapes, every
//! weighted layer's output shape, parameters and MACs in execution order, and their receptive
//! fields per axis as PyTorch's gradients measure them (after each stage and at the end). Every
//! figure must be equal. `check` passes on each (its MACs tallied by the N-D kernels, its
//! receptive fields measured per axis on indicator clips and signals).

use crate::common::{
    analysis, checked, data_json, f32s, formula, formula_safetensors, options_for,
    outputs_both_ways, u64s as dims, usizes, zoo_net_with,
};
use archscope::receptive::Q;
use archscope::{analyze, exec, zoo, BuildOptions, Dtype};
use serde_json::Value;

fn reference() -> Value {
    data_json("video_audio_reference.json")
}

/// A reference rational (an integer, or a float that is a multiple of 1/2^k) as exact.
fn q(v: &Value) -> Q {
    if let Some(i) = v.as_i64() {
        return Q::from(i);
    }
    let f = v.as_f64().unwrap();
    let den = 1i64 << 20;
    let num = (f * den as f64).round() as i64;
    assert_eq!(num as f64 / den as f64, f, "not a dyadic rational: {f}");
    Q::new(num, den)
}

const MODELS: [&str; 4] = ["r3d_18", "mc3_18", "r2plus1d_18", "wav2letter"];

#[test]
fn totals_and_layers_match_pytorch() {
    let r = reference();
    let models = r["models"].as_object().unwrap();
    assert_eq!(
        models.keys().map(String::as_str).collect::<Vec<_>>().len(),
        MODELS.len()
    );
    for name in MODELS {
        let m = &models[name];
        let input = dims(&m["input"]);
        let net = zoo_net_with(name, &options_for(&input));
        let a = analysis(&net);
        assert_eq!(a.inputs[0].0, input, "{name}: input");
        assert_eq!(
            a.totals.params,
            m["params"].as_u64().unwrap(),
            "{name}: params"
        );
        assert_eq!(
            a.totals.trainable,
            m["trainable"].as_u64().unwrap(),
            "{name}: trainable"
        );
        assert_eq!(
            a.totals.buffers,
            m["buffers"].as_u64().unwrap(),
            "{name}: buffers"
        );
        assert_eq!(a.totals.macs, m["macs"].as_u64().unwrap(), "{name}: MACs");
        assert_eq!(a.outputs[0].1 .0, dims(&m["output"]), "{name}: output");
        // Every layer with parameters, in execution order: output shape, parameters, MACs.
        let ours: Vec<_> = a.layers.iter().filter(|l| l.params.total() > 0).collect();
        let theirs: Vec<&Value> = m["layers"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|l| l["params"].as_u64().unwrap() > 0)
            .collect();
        assert_eq!(ours.len(), theirs.len(), "{name}: weighted layers");
        for (o, t) in ours.iter().zip(&theirs) {
            let what = format!("{name}: {} vs {}", o.name, t["name"]);
            assert_eq!(o.outputs[0].0, dims(&t["out"]), "{what}: shape");
            assert_eq!(
                o.params.total(),
                t["params"].as_u64().unwrap(),
                "{what}: params"
            );
            if let Some(macs) = t.get("macs") {
                assert_eq!(o.macs, macs.as_u64().unwrap(), "{what}: MACs");
            }
        }
    }
}

/// Our layer at the output of the reference's module `stage`: the layer whose PyTorch
/// tensor names it is (`weights_names:`, e.g. wav2letter's `acoustic_model.1.20` is
/// `classifier`), else the last layer under our block of that name (`layer4`), else the last
/// layer whose tensors are under the module.
fn stage_end(net: &archscope::Network, a: &archscope::Analysis, stage: &str) -> usize {
    if let Some(k) = net.tensor_prefix.iter().position(|p| p == stage) {
        return k;
    }
    let under = format!("{stage}.");
    a.layers
        .iter()
        .rposition(|l| l.name == stage || l.name.starts_with(&under))
        // A block whose paths differ from PyTorch's (r2plus1d's `stem_s`, `stem_t`): the last
        // layer whose tensors are under the module.
        .or_else(|| {
            net.tensor_prefix
                .iter()
                .rposition(|p| p.starts_with(&under))
        })
        .unwrap_or_else(|| panic!("no layer `{stage}`"))
}

#[test]
fn receptive_fields_match_pytorch_per_axis() {
    let r = reference();
    let mut checked = 0;
    for name in MODELS {
        let m = &r["models"][name];
        let input = dims(&m["input"]);
        let net = zoo_net_with(name, &options_for(&input));
        let a = analysis(&net);
        let mut stages: Vec<&Value> = m["rf_after_stage"]
            .as_array()
            .map(|v| v.iter().collect())
            .unwrap_or_default();
        stages.push(&m["rf"]);
        for st in stages {
            let layer = st["after"].as_str().unwrap();
            let f = a.layers[stage_end(&net, &a, layer)]
                .rf
                .as_ref()
                .unwrap_or_else(|| panic!("{name}: `{layer}` has no field"));
            for key in ["size", "jump", "start"] {
                let want: Vec<Q> = st[key].as_array().unwrap().iter().map(q).collect();
                let got: Vec<Q> = f
                    .axes
                    .iter()
                    .map(|ax| match key {
                        "size" => ax.size,
                        "jump" => ax.jump,
                        _ => ax.start,
                    })
                    .collect();
                assert_eq!(got, want, "{name}: {key} after {layer}");
            }
            checked += 1;
        }
    }
    assert!(checked >= 8, "only {checked} fields checked");
}

#[test]
fn check_passes_on_each_model() {
    // Smaller clips and signals than the zoo's defaults keep the test short: 8 frames of
    // 56×56 (r3d_18's full 16×112×112 is 8× the work), one second of audio as in the zoo.
    for (name, input) in [
        ("r3d_18", vec![3, 8, 56, 56]),
        ("mc3_18", vec![3, 8, 56, 56]),
        ("r2plus1d_18", vec![3, 8, 56, 56]),
        ("wav2letter", vec![1, 16000]),
    ] {
        let opts = BuildOptions {
            input: Some(input),
            ..BuildOptions::default()
        };
        let net = zoo::build(name, &opts).unwrap().unwrap();
        let report = checked(&net);
        // Receptive fields are measured (per axis) and compared.
        assert_eq!(report.rf_skipped, None, "{name}");
        assert!(report.rf_compared() > 0, "{name}");
    }
}

#[test]
fn conventions_match_the_profilers() {
    // The reference's `conventions`: what torchvision's FlopCounterMode, fvcore, ptflops,
    // thop and torchinfo print for each model and input. ptflops and thop look rules up by
    // the module's exact type, so torchvision's `nn.Conv3d` subclasses (Conv3DSimple,
    // Conv3DNoTemporal) are not charged at all by them; archscope's conv3d is a Conv3d, and
    // matches the figures the script measured with those modules given their base class
    // (`ptflops_plain`, `thop_plain`, where the model has such subclasses).
    use archscope::Convention;
    let r = reference();
    let mut compared = 0;
    for name in MODELS {
        for c in r["models"][name]["conventions"].as_array().unwrap() {
            let input = dims(&c["input"]);
            let net = zoo_net_with(name, &options_for(&input));
            let base = analysis(&net);
            for conv in Convention::ALL {
                let key = conv.name();
                let Some(want) = c
                    .get(format!("{key}_plain"))
                    .or_else(|| c.get(key))
                    .and_then(Value::as_u64)
                else {
                    // ptflops runs batch 1 only: the script has no batch-2 figure for it.
                    assert!(key == "ptflops" && input[0] > 1, "{name}: no {key} figure");
                    continue;
                };
                let mut a = base.clone();
                archscope::convention::recount(&net, &mut a, conv).unwrap();
                let got = a.totals.macs;
                assert_eq!(got, want, "{name} {input:?}: {key}");
                compared += 1;
            }
        }
    }
    assert!(compared >= 20, "only {compared} figures compared");
}

// ---- PyTorch's state-dict names and outputs (scripts/video_audio_weights.py) ----

#[test]
fn pytorch_state_dicts_load_and_give_pytorch_outputs() {
    // Every model's state dict (PyTorch's names, shapes, dtypes), each tensor set by
    // `formula`, loads by name into the zoo model (`weights_names:`) with nothing missing or
    // left over; on the script's small input, the inference plan and the direct path give
    // PyTorch's output: a tensor in the wrong layer, a transposed filter or a kernel that
    // differs from PyTorch's would not.
    let names = data_json("video_audio_weights.json");
    let values = data_json("video_audio_weights_values.json");
    for name in MODELS {
        let v = &values["models"][name];
        let shape = usizes(&v["input_shape"]);
        let opts = BuildOptions {
            input: Some(shape[1..].iter().map(|&d| d as u64).collect()),
            ..BuildOptions::default()
        };
        let net = zoo::build(name, &opts).unwrap().unwrap();
        let w = exec::load_safetensors(
            &net,
            &formula_safetensors(&names["models"][name]),
            "x.safetensors",
        )
        .unwrap_or_else(|d| panic!("{name}: {d}"));
        let x = exec::Tensor::new(shape.clone(), formula("input", &shape));
        let want = f32s(&v["output"]);
        let scale = want.iter().fold(0f32, |m, v| m.max(v.abs()));
        let want_shape = usizes(&v["output_shape"]);
        for (path, out) in outputs_both_ways(&net, &w, &x) {
            assert_eq!(out.shape, want_shape, "{name} ({path})");
            let worst = out
                .data
                .iter()
                .zip(&want)
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            assert!(
                worst <= 1e-4 * scale,
                "{name} ({path}): max |Δ| {worst} of {scale}"
            );
        }
    }
}

#[test]
fn reports_name_each_axis() {
    // docs/RECEPTIVE_FIELD.md: CSV columns per axis of the model's rank; an image model's
    // columns are unchanged (tests/cli.rs and the snapshots hold those).
    use archscope::report::{rf_report, summary, Format};
    let analysed = |name: &str| {
        let net = zoo::build(name, &BuildOptions::default()).unwrap().unwrap();
        analyze(&net, Dtype::F32).unwrap()
    };
    let video = analysed("r3d_18");
    let audio = analysed("wav2letter");
    let header = |s: String| s.lines().next().unwrap().to_string();
    assert!(header(rf_report(&video, Format::Csv)).starts_with(
        "layer,op,output,size_depth,size_height,size_width,jump_depth,jump_height,jump_width,"
    ));
    assert!(header(rf_report(&audio, Format::Csv))
        .starts_with("layer,op,output,size_length,jump_length,start_length,"));
    assert!(header(summary(&video, Format::Csv, None))
        .ends_with(",rf_depth,rf_height,rf_width,rf_aligned"));
    assert!(header(summary(&audio, Format::Csv, None)).ends_with(",rf_length,rf_aligned"));
    // The stem's field in the table: 3 frames, 7 rows, 7 columns.
    let table = rf_report(&video, Format::Markdown);
    let stem = table.lines().find(|l| l.contains("| stem ")).unwrap();
    let cells: Vec<&str> = stem.split('|').map(str::trim).collect();
    assert_eq!(cells[4..6], ["3, 7, 7", "1, 2, 2"], "{stem}");
}

#[test]
fn the_profilers_behave_as_the_doc_says() {
    // docs/VIDEO_AUDIO.md "Other profilers", sentence by sentence, against what the script
    // recorded the tools printing.
    let r = reference();
    for name in MODELS {
        let m = &r["models"][name];
        let runs = m["conventions"].as_array().unwrap();
        let inputs: Vec<Vec<u64>> = runs.iter().map(|c| dims(&c["input"])).collect();
        // At the model's input, at a second size (torchvision's resize size; three seconds of
        // audio), and at batch 2 of it.
        let second = if name == "wav2letter" {
            vec![1, 1, 48000]
        } else {
            vec![1, 3, 16, 128, 171]
        };
        let mut batch2 = second.clone();
        batch2[0] = 2;
        assert_eq!(inputs, [dims(&m["input"]), second, batch2], "{name}");
        let subclassed = name == "r3d_18" || name == "mc3_18";
        for c in runs.iter().filter(|c| c["input"][0] == 1) {
            let tv = c["torchvision"].as_u64().unwrap() as f64;
            for tool in ["ptflops", "thop"] {
                let share = c[tool].as_u64().unwrap() as f64 / tv;
                if subclassed {
                    // "print about 4 % of the models' MACs"; counted with the plain class.
                    assert!((0.035..0.045).contains(&share), "{name} {tool}: {share}");
                    let plain = c[format!("{tool}_plain")].as_u64().unwrap() as f64 / tv;
                    assert!(plain >= 1.0, "{name} {tool}_plain: {plain}");
                } else {
                    // "counted by every tool": nothing left out, no `_plain` needed.
                    assert!(share >= 1.0, "{name} {tool}: {share}");
                    assert!(c.get(format!("{tool}_plain")).is_none(), "{name}");
                }
            }
            // "thop also leaves their parameters out of its parameter count".
            let params = m["params"].as_u64().unwrap();
            assert_eq!(
                c["thop_params"].as_u64().unwrap() < params,
                subclassed,
                "{name}: thop params"
            );
            // What fvcore calls unsupported.
            let unsupported: Vec<&str> = c["fvcore_unsupported"]
                .as_object()
                .unwrap()
                .keys()
                .map(String::as_str)
                .collect();
            let want: &[&str] = if name == "wav2letter" {
                &["aten::log_softmax"]
            } else {
                &["aten::adaptive_avg_pool3d", "aten::add_"]
            };
            assert_eq!(unsupported, want, "{name}: fvcore");
        }
    }
}
