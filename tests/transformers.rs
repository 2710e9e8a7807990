//! The attention and channels-last models of the zoo against what PyTorch measures, beyond the
//! per-model comparison of `tests/reference.rs` (which covers vit_b_16, vit_b_32, vit_l_16,
//! convnext_tiny and convnext_small row by row):
//!
//! * GPT-2 small (`models/gpt2.yaml`) against Hugging Face transformers'
//!   `GPT2LMHeadModel(GPT2Config())`, measured by `scripts/gpt2_reference.py` into
//!   `tests/data/gpt2_reference.json`: parameters with the tied embedding counted once, buffers,
//!   MACs at 1,024 tokens, every leaf module's output shape, parameters and MACs, the attention's
//!   MACs per block, the per-token figures `summary` reports (FLOPs and KV-cache bytes per
//!   token), the state-dict names a weights file holds, and the logits under formula weights;
//! * torchvision's published figures for these models (`torchvision_meta` in
//!   `tests/data/torchvision_zoo.json`: parameters and "GFLOPS", really GMACs);
//! * `run` with torchvision's state-dict names and formula weights against PyTorch's logits
//!   (`tests/data/transformer_weights_values.json`, `scripts/torchvision_weights.py reference`);
//! * `check` on the models too large to check at full size in tests/exec.rs's groups (ViT-L/16
//!   at 64×64, GPT-2 at 16 tokens), each saying why.

use crate::common;

use crate::common::{
    analysis, checked, data_json, formula, options_for, u64s, usizes, zoo_net, zoo_net_with,
};
use archscope::{exec, BuildOptions, Network};
use serde_json::Value;

// ---- GPT-2 against transformers ---------------------------------------------------------------

fn gpt2() -> Value {
    data_json("gpt2_reference.json")
}

fn u64_of(v: &Value) -> u64 {
    v.as_u64()
        .unwrap_or_else(|| panic!("not a whole number: {v}"))
}

/// GPT-2 at `tokens` tokens, batch 1.
fn gpt2_net(tokens: u64) -> Network {
    zoo_net_with("gpt2", &options_for(&[1, tokens]))
}

#[test]
fn gpt2_totals_match_transformers() {
    let r = gpt2();
    let m = &r["measured"];
    // The reference is GPT-2 small at its full context, as the zoo file declares it.
    assert_eq!(u64s(&m["input"]), [1, 1024]);
    let a = analysis(&zoo_net("gpt2"));
    // PyTorch yields the tied wte/lm_head weight once: 124,439,808 (issue #13's figure).
    assert_eq!(u64_of(&m["params"]), 124_439_808);
    assert_eq!(a.totals.params, u64_of(&m["params"]));
    assert_eq!(a.totals.trainable, u64_of(&m["trainable"]));
    assert_eq!(a.totals.buffers, u64_of(&m["buffers"]));
    // FlopCounterMode's total // 2: every Conv1D, lm_head and the attention's two matmuls
    // over the full L×L scores (a causal attention is not halved).
    assert_eq!(a.totals.macs, u64_of(&m["macs"]));
    assert_eq!(a.outputs.len(), 1);
    assert_eq!(a.outputs[0].1 .0, u64s(&m["output"]));
}

/// transformers' module type → the `torch_type` of the archscope layer that stands for it.
fn our_type(theirs: &str) -> &str {
    match theirs {
        // NewGELUActivation is F.gelu(approximate="tanh")'s formula: archscope's `gelu` with
        // `approximate: tanh`, whose PyTorch module is nn.GELU.
        "NewGELUActivation" => "GELU",
        t => t,
    }
}

#[test]
fn gpt2_layers_match_transformers_module_by_module() {
    let r = gpt2();
    let rows = r["measured"]["layers"].as_array().unwrap();
    let net = zoo_net("gpt2");
    let a = analysis(&net);
    let types: Vec<&str> = rows
        .iter()
        .map(|l| our_type(l["type"].as_str().unwrap()))
        .collect();
    let ours: Vec<_> = net
        .nodes
        .iter()
        .zip(&a.layers)
        .filter(|(n, _)| n.layer.torch_type().is_some_and(|t| types.contains(&t)))
        .collect();
    assert_eq!(ours.len(), rows.len(), "number of leaf modules");
    for ((node, stats), row) in ours.iter().zip(rows) {
        let what = format!("{} vs {}", stats.name, row["name"]);
        // Every layer path is transformers' module name (no `weights_names:` needed).
        assert_eq!(stats.name, row["name"].as_str().unwrap(), "{what}");
        assert_eq!(
            node.layer.torch_type().unwrap(),
            our_type(row["type"].as_str().unwrap()),
            "{what}"
        );
        assert_eq!(stats.outputs[0].0, u64s(&row["out"]), "{what}: output");
        if row.get("tied").is_some() {
            // lm_head holds wte's weight: PyTorch counts it in the module (38,597,376) but once
            // in the model; archscope counts it at the embedding and none at the head.
            assert_eq!(stats.params.total(), 0, "{what}: tied");
            let wte = a
                .layers
                .iter()
                .find(|l| l.name == "transformer.wte")
                .unwrap();
            assert_eq!(wte.params.total(), u64_of(&row["params"]), "{what}");
        } else {
            assert_eq!(
                stats.params.total(),
                u64_of(&row["params"]),
                "{what}: params"
            );
        }
        if let Some(macs) = row.get("macs") {
            assert_eq!(stats.macs, u64_of(macs), "{what}: MACs");
        }
    }
}

#[test]
fn gpt2_attention_macs_are_the_sdpa_matmuls() {
    // Each GPT2Attention call: c_attn and c_proj (`aten.addmm`, rows of the test above) and
    // F.scaled_dot_product_attention, which FlopCounterMode charges 2·L²·E = 2·1024²·768 =
    // 1,610,612,736 MACs (Q·Kᵀ and attention·V over the full score matrix).
    let r = gpt2();
    let rows = r["measured"]["attention"].as_array().unwrap();
    assert_eq!(rows.len(), 12);
    let a = analysis(&zoo_net("gpt2"));
    for row in rows {
        let name = row["name"].as_str().unwrap();
        let sdpa = u64_of(&row["macs_by_op"]["aten._scaled_dot_product_flash_attention_for_cpu"]);
        assert_eq!(sdpa, 2 * 1024 * 1024 * 768);
        let ours = a
            .layers
            .iter()
            .find(|l| l.name == format!("{name}.attention"))
            .unwrap_or_else(|| panic!("no {name}.attention"));
        assert_eq!(ours.macs, sdpa, "{name}");
        // And the whole call: the projections plus the attention.
        let call: u64 = a
            .layers
            .iter()
            .filter(|l| l.name.starts_with(&format!("{name}.")))
            .map(|l| l.macs)
            .sum();
        assert_eq!(call, u64_of(&row["macs"]), "{name}");
    }
}

#[test]
fn gpt2_per_token_figures_match_transformers() {
    // `summary`'s per-token figures, from the analysis: FlopCounterMode's FLOPs over the 1,024
    // tokens (2 per MAC: 284,812,800), and the KV cache transformers keeps for generation
    // (its cache tensors' bytes over the tokens: 2 × 12 layers × 768 × 4 bytes = 73,728).
    let r = gpt2();
    let m = &r["measured"];
    let a = analysis(&zoo_net("gpt2"));
    let t = a.per_token().expect("GPT-2 reads tokens");
    assert_eq!(t.tokens, 1024);
    assert_eq!(u64_of(&m["flops_per_token"]), 284_812_800);
    assert_eq!(2.0 * t.macs, u64_of(&m["flops_per_token"]) as f64);
    assert_eq!(t.kv_cache_bytes, u64_of(&m["kv_cache"]["bytes_per_token"]));
    assert_eq!(t.kv_cache_bytes, 2 * 12 * 768 * 4);
    // transformers' cache after the 1,024-token pass: 75,497,472 bytes.
    assert_eq!(u64_of(&m["kv_cache"]["bytes"]), 75_497_472);
    assert_eq!(t.kv_cache_bytes * 1024, u64_of(&m["kv_cache"]["bytes"]));
    // Per sample: batch 4 keeps the same per-token figures.
    let a4 = analysis(&zoo_net_with(
        "gpt2",
        &BuildOptions {
            batch: 4,
            ..Default::default()
        },
    ));
    assert_eq!(a4.per_token(), Some(t));
    // In float16 the cache is half as large.
    let half = archscope::analyze(&zoo_net("gpt2"), archscope::Dtype::F16).unwrap();
    assert_eq!(half.per_token().unwrap().kv_cache_bytes, 2 * 12 * 768 * 2);
    // The summary prints them (JSON and text).
    let j = common::json(&["summary", "gpt2", "--format", "json"]);
    assert_eq!(j["per_token"]["tokens"], 1024);
    assert_eq!(j["per_token"]["macs"].as_f64(), Some(142_406_400.0));
    assert_eq!(
        j["per_token"]["flops"].as_f64(),
        Some(a.totals.flops as f64 / 1024.0)
    );
    assert_eq!(
        j["per_token"]["kv_cache_bytes"],
        u64_of(&m["kv_cache"]["bytes_per_token"])
    );
    let text = common::ok_text(&["summary", "gpt2"]);
    assert!(text.contains("MACs per token (1024 tokens)"), "{text}");
    assert!(text.contains("KV cache per token (f32)"), "{text}");
    assert!(text.contains("73728"), "{text}");
    // An image model has no tokens: no per-token figures, in the analysis or the JSON.
    assert!(analysis(&zoo_net("resnet18")).per_token().is_none());
    let j = common::json(&["summary", "resnet18", "--format", "json"]);
    assert!(j.get("per_token").is_none());
}

/// (name, shape) of every tensor of a reference state dict, float32 ones only.
fn state_dict(v: &Value) -> Vec<(String, Vec<usize>)> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|t| {
            assert_eq!(t[2], "float32", "{t}");
            (t[0].as_str().unwrap().to_string(), usizes(&t[1]))
        })
        .collect()
}

/// A safetensors file holding `tensors`, each filled by `formula` from its name.
fn formula_file(tensors: &[(String, Vec<usize>)]) -> Vec<u8> {
    use safetensors::tensor::{Dtype, TensorView};
    let bytes: Vec<(String, Vec<usize>, Vec<u8>)> = tensors
        .iter()
        .map(|(n, s)| (n.clone(), s.clone(), common::f32_bytes(&formula(n, s))))
        .collect();
    let views: Vec<(String, TensorView)> = bytes
        .iter()
        .map(|(n, s, b)| {
            (
                n.clone(),
                TensorView::new(Dtype::F32, s.clone(), b).unwrap(),
            )
        })
        .collect();
    safetensors::serialize(views, &None).unwrap()
}

/// The largest |a − b| over two equally long lists.
fn worst(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0f32, f32::max)
}

fn f32s(v: &Value) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

#[test]
fn gpt2_reads_transformers_weights_and_gives_its_logits() {
    // transformers' state dict less the tied `lm_head.weight` (what `save_pretrained` writes),
    // every tensor set by `formula` from its name, loaded by name into the zoo model at 16
    // tokens and run: the logits agree with PyTorch's within 1e-4 of their largest magnitude.
    let r = gpt2();
    let tensors = state_dict(&r["state_dict"]);
    assert_eq!(tensors.len(), 148);
    assert_eq!(r["tied"]["lm_head.weight"], "transformer.wte.weight");
    let v = &r["values"];
    let tokens = u64_of(&v["tokens"]);
    let net = gpt2_net(tokens);
    let w = exec::load_safetensors(&net, &formula_file(&tensors), "gpt2.safetensors")
        .unwrap_or_else(|d| panic!("{d}"));
    let ids: Vec<f32> = v["ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| u64_of(x) as f32)
        .collect();
    let x = exec::Tensor::new(vec![1, tokens as usize], ids);
    let out = exec::run_planned(&net, &w, &exec::plan(&net, &w), &[x], None)
        .unwrap_or_else(|d| panic!("{d}"));
    let logits = &out.outputs[0];
    assert_eq!(logits.shape, [1, tokens as usize, 50257]);
    let head = u64_of(&v["vocab_head"]) as usize;
    let ours_head: Vec<f32> = logits
        .data
        .chunks(50257)
        .flat_map(|row| row[..head].iter().copied())
        .collect();
    let want_max = f32s(&v["logits_max"]);
    let scale = want_max.iter().fold(0f32, |m, v| m.max(v.abs()));
    let d = worst(&ours_head, &f32s(&v["logits_head"]));
    assert!(d <= 1e-4 * scale, "max |Δ| {d} of {scale}");
    let (ours_max, ours_argmax): (Vec<f32>, Vec<u64>) = logits
        .data
        .chunks(50257)
        .map(|row| {
            let (i, m) =
                row.iter().enumerate().fold(
                    (0, f32::MIN),
                    |(bi, bm), (i, &x)| if x > bm { (i, x) } else { (bi, bm) },
                );
            (m, i as u64)
        })
        .unzip();
    assert!(worst(&ours_max, &want_max) <= 1e-4 * scale);
    assert_eq!(ours_argmax, u64s(&v["logits_argmax"]));
}

#[test]
fn gpt2_passes_check_at_16_tokens() {
    // 16 tokens, not the 1,024 of the reference: the full context is 146 GMACs, minutes for
    // the executor; every layer runs the same code at any length (the position embedding reads
    // rows 0..L of its table), so a short sequence checks every shape, parameter and
    // kernel-counted MAC of every layer.
    let report = checked(&gpt2_net(16));
    assert!(!report.rows.is_empty());
}

// ---- torchvision's published figures -------------------------------------------------------

#[test]
fn torchvision_published_figures_are_reproduced() {
    // torchvision's weights meta: `num_params` and `_ops` ("GFLOPS", really GMACs, to three
    // decimals), for the first (IMAGENET1K_V1) weights of each model; archscope's totals at
    // 224×224 give them. ViT-B/16: 86,567,656 parameters and 17.564 G (issue #13).
    let zoo = data_json("torchvision_zoo.json");
    let models = [
        "vit_b_16",
        "vit_b_32",
        "vit_l_16",
        "convnext_tiny",
        "convnext_small",
    ];
    for name in models {
        let meta = &zoo["models"][name]["torchvision_meta"];
        let a = analysis(&zoo_net(name));
        assert_eq!(a.totals.params, u64_of(&meta["num_params"]), "{name}");
        let gmacs = format!("{:.3}", a.totals.macs as f64 / 1e9);
        assert_eq!(
            gmacs,
            format!("{:.3}", meta["gflops"].as_f64().unwrap()),
            "{name}"
        );
    }
    let vit = analysis(&zoo_net("vit_b_16"));
    assert_eq!(vit.totals.params, 86_567_656);
    assert_eq!(format!("{:.2}", vit.totals.macs as f64 / 1e9), "17.56");
}

#[test]
fn vit_attention_rows_split_into_projections_and_attention_matmuls() {
    // torch_reference.py's nn.MultiheadAttention rows split the call's MACs by aten op: the
    // projections (`aten.addmm`, 4·L·E² over L tokens of width E) and the two attention
    // matmuls inside SDPA (2·L²·E). ViT-B/16 (L = 197, E = 768): 464,781,312 + 59,610,624 =
    // 524,391,936 MACs, archscope's figure for the layer.
    let zoo = data_json("torchvision_zoo.json");
    for (name, l, e, blocks) in [
        ("vit_b_16", 197u64, 768u64, 12usize),
        ("vit_b_32", 50, 768, 12),
        ("vit_l_16", 197, 1024, 24),
    ] {
        let rows: Vec<&Value> = zoo["models"][name]["layers"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["type"] == "MultiheadAttention")
            .collect();
        assert_eq!(rows.len(), blocks, "{name}");
        let a = analysis(&zoo_net(name));
        for row in rows {
            let by_op = &row["macs_by_op"];
            assert_eq!(u64_of(&by_op["aten.addmm"]), 4 * l * e * e, "{name}");
            assert_eq!(
                u64_of(&by_op["aten._scaled_dot_product_flash_attention_for_cpu"]),
                2 * l * l * e,
                "{name}"
            );
            let ours = a.layers.iter().find(|x| x.name == row["name"]).unwrap();
            assert_eq!(ours.macs, 4 * l * e * e + 2 * l * l * e, "{name}");
        }
    }
    let a = analysis(&zoo_net("vit_b_16"));
    let first = a
        .layers
        .iter()
        .find(|x| x.name == "encoder.layers.encoder_layer_0.self_attention")
        .unwrap();
    assert_eq!(first.macs, 524_391_936);
}

#[test]
fn vit_b_16_profiler_figures_are_the_documented_ones() {
    // docs/TRANSFORMERS.md quotes what each tool prints for ViT-B/16 at 224² (measured into
    // tests/data/conventions.json); each preset gives it (all models: tests/conventions.rs).
    use archscope::convention::{recount, Convention};
    let doc = data_json("conventions.json");
    let run = &doc["models"]["vit_b_16"][0];
    assert_eq!(u64s(&run["input"]), [1, 3, 224, 224]);
    let net = zoo_net("vit_b_16");
    let base = analysis(&net);
    for (c, want) in [
        (Convention::Torchvision, 17_563_828_224u64),
        (Convention::Fvcore, 16_867_412_736),
        (Convention::Ptflops, 17_606_030_584),
        (Convention::Thop, 11_286_254_592),
        (Convention::Torchinfo, 173_232_616),
    ] {
        assert_eq!(u64_of(&run[c.name()]), want, "{}", c.name());
        let mut a = base.clone();
        recount(&net, &mut a, c).unwrap();
        assert_eq!(a.totals.macs, want, "{}", c.name());
    }
}

// ---- run with torchvision's names and formula weights ----------------------------------------

/// tests/data/transformer_weights_values.json: torchvision's `name` with every state-dict tensor
/// set by `formula`, on a formula input. The same tensors under torchvision's names
/// (tests/data/torchvision_weights.json) loaded into the zoo model and run by the inference plan
/// give the same logits within 1e-4 of their largest magnitude.
fn gives_torchvision_logits(name: &str) {
    let doc = data_json("transformer_weights_values.json");
    let names = data_json("torchvision_weights.json");
    let m = &doc["models"][name];
    let shape = usizes(&m["input_shape"]);
    let net = zoo_net_with(name, &options_for(&u64s(&m["input_shape"])));
    let tensors = state_dict(&names["models"][name]);
    let w = exec::load_safetensors(&net, &formula_file(&tensors), "x.safetensors")
        .unwrap_or_else(|d| panic!("{name}: {d}"));
    let x = exec::Tensor::new(shape.clone(), formula("input", &shape));
    let r = exec::run_planned(&net, &w, &exec::plan(&net, &w), &[x], None)
        .unwrap_or_else(|d| panic!("{name}: {d}"));
    let want = f32s(&m["logits"]);
    let scale = want.iter().fold(0f32, |m, v| m.max(v.abs()));
    let d = worst(&r.outputs[0].data, &want);
    assert!(d <= 1e-4 * scale, "{name}: max |Δ| {d} of {scale}");
}

#[test]
fn the_weights_values_file_holds_vit_b_32_and_convnext_tiny() {
    let doc = data_json("transformer_weights_values.json");
    let mut models: Vec<&String> = doc["models"].as_object().unwrap().keys().collect();
    models.sort();
    assert_eq!(models, ["convnext_tiny", "vit_b_32"]);
}

#[test]
fn vit_b_32_reads_torchvision_weights_and_gives_its_logits() {
    // At 224×224, the size its position embedding fixes.
    gives_torchvision_logits("vit_b_32");
}

#[test]
fn convnext_tiny_reads_torchvision_weights_and_gives_its_logits() {
    // At 64×64: channels-last layer norms and linears, layer scale, LayerNorm2d.
    gives_torchvision_logits("convnext_tiny");
}

// ---- check where tests/exec.rs's groups cannot ------------------------------------------------

#[test]
fn vit_l_16_passes_check_at_64() {
    // ViT-L/16 at 224×224 is 61.6 GMACs, too slow for one test (over 20 s on two cores); at
    // 64×64 (4×4 patches, 17 tokens) it is the same 24 blocks, every op and kernel the same,
    // with the position embedding built for 17 rows — as torchvision builds it for
    // image_size=64. The file's `image_size` parameter and its input change together.
    let text = archscope::zoo::source("vit_l_16").unwrap();
    let small = text
        .replace("image: [3, 224, 224]", "image: [3, 64, 64]")
        .replace("image_size: 224", "image_size: 64");
    assert_ne!(small, text);
    let net = Network::from_yaml("vit_l_16.yaml", &small, &BuildOptions::default())
        .unwrap_or_else(|e| panic!("{e}"));
    let a = analysis(&net);
    assert_eq!(
        a.layers
            .iter()
            .filter(|l| l.op == "multi_head_attention")
            .count(),
        24
    );
    checked(&net);
}
