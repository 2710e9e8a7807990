//! The executor end to end: every zoo model runs and agrees with the static analysis
//! (`check`, receptive fields included); a deliberately broken analysis is caught, naming the
//! layer and the figure; the inference plan (batch norms folded, in-place activations) gives
//! the same outputs; Sobel finds a known edge through the CLI.

use crate::common::{
    analysis, arg, checked, data_json, f32_bytes, formula, layer_index, ok, options_for, scratch,
    u64s, usizes, zoo_names, zoo_net, zoo_net_with,
};
use archscope::{check, exec};

/// `check` on each model: every figure of every layer agrees, receptive fields included.
fn zoo_passes_check(models: &[&str]) {
    for name in models {
        let report = checked(&zoo_net(name));
        // Every zoo model takes an image, a clip or a signal, so receptive fields are measured
        // and compared (tests/rf_check.rs checks which layers and the figures).
        assert_eq!(report.rf_skipped, None, "{name}");
        assert!(report.rf_compared() > 0, "{name}");
    }
}

/// The zoo in groups of a few seconds each (one test per group, so that tests run side by
/// side and none runs long); `the_check_groups_cover_the_zoo` proves they cover every model.
const CHECK_GROUPS: &[&[&str]] = &[
    &["resnet18", "resnet34", "resnet50", "resnet101", "resnet152"],
    &[
        "resnext50_32x4d",
        "wide_resnet50_2",
        "resnet50_v2",
        "alexnet",
    ],
    &["vgg11", "vgg11_bn", "vgg13", "vgg13_bn"],
    &["vgg16", "vgg16_bn", "vgg19", "vgg19_bn"],
    &[
        "densenet121",
        "densenet169",
        "densenet201",
        "googlenet",
        "inception_v3",
    ],
    &[
        "mobilenet_v1",
        "mobilenet_v2",
        "mobilenet_v3_small",
        "mobilenet_v3_large",
        "efficientnet_b0",
        "shufflenet_v2_x1_0",
        "squeezenet1_0",
        "squeezenet1_1",
        "lenet5",
        "mlp3",
        "sobel",
    ],
    &["fcn_resnet50", "deeplabv3_resnet50"],
    &["unet"],
    &["yolov1"],
    &[
        "regnet_x_400mf",
        "regnet_y_400mf",
        "regnet_y_1_6gf",
        "mnasnet0_5",
        "mnasnet1_0",
        "shufflenet_v2_x0_5",
        "shufflenet_v2_x2_0",
    ],
    &["regnet_y_16gf"],
    // Video and audio: checked on shorter clips in tests/video_audio.rs.
    &["r3d_18", "mc3_18", "r2plus1d_18", "wav2letter"],
    &["fcn_resnet101", "deeplabv3_resnet101"],
    &["lraspp_mobilenet_v3_large", "deeplabv3_mobilenet_v3_large"],
    &["efficientnet_b1", "efficientnet_b3", "densenet161"],
    &["efficientnet_v2_s"],
    &["resnext101_32x8d", "resnext101_64x4d"],
    &["wide_resnet101_2"],
    // 37.7 GMACs at its 600×600, about 14 CPU-seconds of `check`: checked at 224×224 in
    // tests/zoo_scaled.rs (and within `check`'s bounds at 600×600, tested there).
    &["efficientnet_b7"],
    &["swin_t", "swin_v2_t"],
    &["vit_b_16"],
    &["vit_b_32", "convnext_tiny"],
    &["convnext_small"],
    &["maxvit_t"],
    // ViT-L/16 (61.6 GMACs) and GPT-2 (146 GMACs at 1,024 tokens): checked at 64×64 and at
    // 16 tokens in tests/transformers.rs.
    &["vit_l_16", "gpt2"],
];

/// The check group whose first model is `first` (tests name their group by it, not by an index,
/// so that adding a group never renumbers the others).
fn group(first: &str) -> &'static [&'static str] {
    CHECK_GROUPS
        .iter()
        .find(|g| g.first() == Some(&first))
        .unwrap_or_else(|| panic!("no check group starts with {first}"))
}

#[test]
fn the_check_groups_cover_the_zoo() {
    let mut grouped: Vec<&str> = CHECK_GROUPS
        .iter()
        .flat_map(|g| g.iter().copied())
        .collect();
    grouped.sort_unstable();
    let mut zoo = zoo_names();
    zoo.sort_unstable();
    assert_eq!(grouped, zoo);
}

#[test]
fn zoo_passes_check_resnets() {
    zoo_passes_check(group("resnet18"));
}

#[test]
fn zoo_passes_check_resnet_variants_and_alexnet() {
    zoo_passes_check(group("resnext50_32x4d"));
}

#[test]
fn zoo_passes_check_vgg11_13() {
    zoo_passes_check(group("vgg11"));
}

#[test]
fn zoo_passes_check_vgg16_19() {
    zoo_passes_check(group("vgg16"));
}

#[test]
fn zoo_passes_check_densenets_and_inceptions() {
    zoo_passes_check(group("densenet121"));
}

#[test]
fn zoo_passes_check_mobile_and_small() {
    zoo_passes_check(group("mobilenet_v1"));
}

#[test]
fn zoo_passes_check_segmentation() {
    zoo_passes_check(group("fcn_resnet50"));
}

#[test]
fn zoo_passes_check_unet() {
    zoo_passes_check(group("unet"));
}

#[test]
fn zoo_passes_check_yolov1() {
    zoo_passes_check(group("yolov1"));
}

#[test]
fn zoo_passes_check_regnets_mnasnets_shufflenets() {
    zoo_passes_check(group("regnet_x_400mf"));
}

#[test]
fn zoo_passes_check_regnet_y_16gf() {
    zoo_passes_check(group("regnet_y_16gf"));
}

#[test]
fn zoo_passes_check_segmentation_resnet101() {
    zoo_passes_check(group("fcn_resnet101"));
}

#[test]
fn zoo_passes_check_segmentation_mobilenet() {
    zoo_passes_check(group("lraspp_mobilenet_v3_large"));
}

#[test]
fn zoo_passes_check_efficientnet_b1_b3_and_densenet161() {
    zoo_passes_check(group("efficientnet_b1"));
}

#[test]
fn zoo_passes_check_efficientnet_v2_s() {
    zoo_passes_check(group("efficientnet_v2_s"));
}

#[test]
fn zoo_passes_check_resnext101s() {
    zoo_passes_check(group("resnext101_32x8d"));
}

#[test]
fn zoo_passes_check_wide_resnet101_2() {
    zoo_passes_check(group("wide_resnet101_2"));
}

#[test]
fn zoo_passes_check_swin() {
    zoo_passes_check(group("swin_t"));
}

#[test]
fn zoo_passes_check_vit_b_16() {
    zoo_passes_check(group("vit_b_16"));
}

#[test]
fn zoo_passes_check_vit_b_32_and_convnext_tiny() {
    zoo_passes_check(group("vit_b_32"));
}

#[test]
fn zoo_passes_check_convnext_small() {
    zoo_passes_check(group("convnext_small"));
}

#[test]
fn zoo_passes_check_maxvit_t() {
    zoo_passes_check(group("maxvit_t"));
}

#[test]
fn seeded_weights_keep_resnet152_finite() {
    let net = zoo_net("resnet152");
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
    let net = zoo_net("resnet18");
    let mut a = analysis(&net);
    let w = exec::init_weights(&net, 0).unwrap();
    let i = layer_index(&a, "layer2.0.conv1");
    a.layers[i].macs += 1;
    let j = layer_index(&a, "layer3.1.conv2.bn");
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
        let net = zoo_net(name);
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
    let dir = scratch("sobel");
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
    ok(&[
        "run",
        "sobel",
        "--input",
        "1x32x32",
        "--image",
        arg(&input),
        "--save-output",
        arg(&output),
    ]);
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

// ---- torchvision's own weights (scripts/torchvision_weights.py) ----

/// A safetensors file holding `tensors` (name, shape, dtype as torch names it), float ones
/// filled by `formula`, integer ones (`num_batches_tracked`) zero.
fn safetensors_file(tensors: &[(String, Vec<usize>, String)]) -> Vec<u8> {
    use safetensors::tensor::{Dtype, TensorView};
    let bytes: Vec<(String, Vec<usize>, Dtype, Vec<u8>)> = tensors
        .iter()
        .map(|(name, shape, dtype)| match dtype.as_str() {
            "float32" => {
                let b = f32_bytes(&formula(name, shape));
                (name.clone(), shape.clone(), Dtype::F32, b)
            }
            "int64" => {
                let n: usize = shape.iter().product();
                (name.clone(), shape.clone(), Dtype::I64, vec![0u8; 8 * n])
            }
            other => panic!("{name}: dtype {other} in the reference"),
        })
        .collect();
    let views: Vec<(String, TensorView)> = bytes
        .iter()
        .map(|(n, s, d, b)| (n.clone(), TensorView::new(*d, s.clone(), b).unwrap()))
        .collect();
    safetensors::serialize(views, &None).unwrap()
}

/// The header of a safetensors file holding `tensors` (name, shape, dtype as torch names it):
/// the format's documented layout, an 8-byte little-endian length and the JSON header padded
/// to a multiple of 8, written by hand; and the bytes of data after it.
fn safetensors_header(tensors: &[(String, Vec<usize>, String)]) -> (Vec<u8>, usize) {
    let mut header = serde_json::Map::new();
    let mut offset = 0usize;
    for (name, shape, dtype) in tensors {
        let (code, size) = match dtype.as_str() {
            "float32" => ("F32", 4),
            "int64" => ("I64", 8),
            other => panic!("{name}: dtype {other} in the reference"),
        };
        let bytes = size * shape.iter().product::<usize>();
        header.insert(
            name.clone(),
            serde_json::json!({"dtype": code, "shape": shape, "data_offsets": [offset, offset + bytes]}),
        );
        offset += bytes;
    }
    let mut text = serde_json::Value::Object(header).to_string();
    while !text.len().is_multiple_of(8) {
        text.push(' ');
    }
    let mut head = (text.len() as u64).to_le_bytes().to_vec();
    head.extend_from_slice(text.as_bytes());
    (head, offset)
}

/// Safetensors files whose every value is zero, written one after the other into one buffer
/// (`Zeros::file`): the buffer is allocated zeroed once, at the largest file's size, and each
/// file's header is written over the start of it, the bytes a longer earlier header left
/// zeroed again — so that the models' two billion and more values are neither allocated nor
/// zeroed again per model (page faults were most of these tests' time).
struct Zeros {
    buffer: Vec<u8>,
    /// Bytes at the start of `buffer` that the last header wrote.
    dirty: usize,
}

impl Zeros {
    fn new(largest: usize) -> Zeros {
        Zeros {
            buffer: vec![0u8; largest],
            dirty: 0,
        }
    }
    /// The file of `tensors`, every value zero.
    fn file(&mut self, tensors: &[(String, Vec<usize>, String)]) -> &[u8] {
        let (head, data) = safetensors_header(tensors);
        let len = head.len() + data;
        assert!(len <= self.buffer.len(), "a file larger than the buffer");
        self.buffer[..head.len()].copy_from_slice(&head);
        if self.dirty > head.len() {
            self.buffer[head.len()..self.dirty].fill(0);
        }
        self.dirty = head.len();
        &self.buffer[..len]
    }
}

/// (name, shape, dtype) of every tensor of a torchvision model's state dict.
type StateDict = Vec<(String, Vec<usize>, String)>;

/// The [`StateDict`] of a torchvision model in tests/data/torchvision_weights.json.
fn state_dict(m: &serde_json::Value) -> StateDict {
    m.as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t[0].as_str().unwrap().to_string(),
                usizes(&t[1]),
                t[2].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// Loads, for every torchvision model of the zoo whose index in `zoo_names()` is `part` modulo
/// 4, a safetensors file with exactly the tensors of its `state_dict()`; returns how many.
/// tests/data/torchvision_weights.json: the names, shapes and dtypes of each torchvision
/// model's `state_dict()` (scripts/torchvision_weights.py reference). A file with exactly
/// those tensors loads through `run --weights`' reader: none missing (an error), none left
/// over (an error too), and every layer gets tensors of its shapes. Four tests share the zoo,
/// so that none runs long.
fn loads_torchvision_state_dict_names(part: usize) -> usize {
    let doc = data_json("torchvision_weights.json");
    let models = doc["models"].as_object().unwrap();
    let mine: Vec<(&str, StateDict)> = zoo_names()
        .into_iter()
        .enumerate()
        .filter(|&(i, name)| i % 4 == part && models.contains_key(name))
        .map(|(_, name)| (name, state_dict(&models[name])))
        .collect();
    let largest = mine.iter().map(|(_, t)| {
        let (head, data) = safetensors_header(t);
        head.len() + data
    });
    let mut zeros = Zeros::new(largest.max().unwrap_or(0));
    let mut loaded_models = 0;
    for (name, tensors) in mine {
        loaded_models += 1;
        let file = zeros.file(&tensors);
        let net = zoo_net(name);
        let w = exec::load_safetensors(&net, file, "x.safetensors")
            .unwrap_or_else(|d| panic!("{name}: {d}"));
        // Every float tensor of the state dict is a weight of some layer, and so is every
        // integer one but batch norm's step counter (Swin's `relative_position_index` buffers
        // are int64).
        let weights = tensors
            .iter()
            .filter(|t| t.2 == "float32" || !t.0.ends_with("num_batches_tracked"))
            .count();
        let loaded: usize = w.per_node.iter().map(|v| v.len()).sum();
        assert_eq!(loaded, weights, "{name}");
    }
    loaded_models
}

#[test]
fn torchvision_state_dict_names_load_part_0() {
    // The four parts together cover every model the reference measured, and each is in the
    // zoo (torch_reference.py's list): 58 torchvision image models.
    let doc = data_json("torchvision_weights.json");
    let models = doc["models"].as_object().unwrap();
    assert_eq!(models.len(), 58);
    let in_zoo = zoo_names()
        .into_iter()
        .filter(|n| models.contains_key(*n))
        .count();
    assert_eq!(in_zoo, models.len());
    assert!(loads_torchvision_state_dict_names(0) > 0);
}

#[test]
fn torchvision_state_dict_names_load_part_1() {
    assert!(loads_torchvision_state_dict_names(1) > 0);
}

#[test]
fn torchvision_state_dict_names_load_part_2() {
    assert!(loads_torchvision_state_dict_names(2) > 0);
}

#[test]
fn torchvision_state_dict_names_load_part_3() {
    assert!(loads_torchvision_state_dict_names(3) > 0);
}

#[test]
fn torchvision_weights_land_where_pytorch_puts_them() {
    // tests/data/torchvision_weights_values.json: PyTorch's logits of torchvision's own model
    // with every state-dict tensor set by `formula` (by name) on a formula input. The same
    // tensors, under the same names, loaded by name into the zoo model and run by the
    // inference plan (what `run` uses), give the same logits: a tensor in the wrong layer, or
    // a running mean taken for a variance, would not.
    let doc = data_json("torchvision_weights_values.json");
    let names = data_json("torchvision_weights.json");
    let shape = usizes(&doc["input_shape"]);
    let x = exec::Tensor::new(shape.clone(), formula("input", &shape));
    let models = doc["models"].as_object().unwrap();
    assert_eq!(models.len(), 2);
    for (name, want) in models {
        let want: Vec<f32> = want
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap() as f32)
            .collect();
        let net = zoo_net_with(name, &options_for(&u64s(&doc["input_shape"])));
        let file = safetensors_file(&state_dict(&names["models"][name]));
        let w = exec::load_safetensors(&net, &file, "x.safetensors").unwrap();
        let r = exec::run_planned(
            &net,
            &w,
            &exec::plan(&net, &w),
            std::slice::from_ref(&x),
            None,
        )
        .unwrap();
        let got = &r.outputs[0].data;
        assert_eq!(got.len(), want.len(), "{name}");
        let scale = want.iter().fold(0f32, |m, v| m.max(v.abs()));
        let worst = got
            .iter()
            .zip(&want)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(worst <= 1e-4 * scale, "{name}: max |Δ| {worst} of {scale}");
    }
}

#[test]
fn a_missing_tensor_names_the_nearest_one_of_its_kind_and_shape() {
    // resnet18's torchvision state dict with `layer1.0.bn1.*` written as `layer1.0.bn_1.*`:
    // the zoo layer `layer1.0.conv1.bn` reads `layer1.0.bn1.weight` (its `weights_names:`
    // entry), misses it, and points at `layer1.0.bn_1.weight` — one character off in one
    // component — not at a tensor of another shape or kind.
    let doc = data_json("torchvision_weights.json");
    let tensors: Vec<_> = state_dict(&doc["models"]["resnet18"])
        .into_iter()
        .map(|(n, s, d)| (n.replace("layer1.0.bn1.", "layer1.0.bn_1."), s, d))
        .collect();
    let file = safetensors_file(&tensors);
    let net = zoo_net("resnet18");
    let err = exec::load_safetensors(&net, &file, "r18.safetensors").unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("r18.safetensors has no tensor `layer1.0.bn1.weight` (shape [64])"),
        "{text}"
    );
    assert_eq!(err.layer.as_deref(), Some("layer1.0.conv1.bn"));
    assert!(
        err.help
            .as_deref()
            .unwrap()
            .contains("nearest tensor of that shape is `layer1.0.bn_1.weight`"),
        "{:?}",
        err.help
    );
}
