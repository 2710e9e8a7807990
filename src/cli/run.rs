//! `archscope run`: the model's forward pass on random, `.npy` or image input and random or
//! `.safetensors` weights, timed over `--repeat` passes of the inference plan; with
//! `--detect` (`super::detect`), the output decoded into boxes, printed and drawn.

use anyhow::{bail, Context, Result};

use super::common::{load_one, read_capped, ModelArgs};
use super::detect::{self, DetectArgs, Detector};
use super::out;
use super::values::{some_of, VIEW_FORMATS};
use crate::audit::{parse_quantity, Quantity};
use crate::exec::{self, Plan, RunResult, Weights};
use crate::render::{self, RunProfile};
use crate::report::Format;
use crate::tensor::Tensor;
use crate::{analyze, Dtype, Network};

/// Most forward passes `run --repeat` makes.
const MAX_REPEAT_RUNS: u64 = 1000;

// The flags of `run`.
#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    model: ModelArgs,
    /// Weights from a .safetensors file (tensor names: layer path + .weight, .bias, …).
    #[arg(long)]
    weights: Option<String>,
    /// Input image (PNG/JPEG), resized and normalised to the model's input.
    #[arg(long, conflicts_with = "npy")]
    image: Option<String>,
    /// Input tensor from a .npy file (float32/float64, C order): the model's input shape
    /// with or without its batch dimension (then copied to every sample).
    #[arg(long)]
    npy: Option<String>,
    /// Forward passes to time, 1 to 1000 (the latency is their median).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=MAX_REPEAT_RUNS))]
    repeat: u64,
    /// Most memory the executor may hold at once (weights, activations, scratch), e.g.
    /// 8GiB; at most 1TiB.
    #[arg(long, default_value = "3GiB")]
    memory_budget: String,
    /// Seed of the random weights and input.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Write an image-shaped output (N×1×H×W or N×3×H×W) as a PNG, or any output as a
    /// .npy array when the file name ends in .npy; with --detect and --image, a PNG of the
    /// image with the boxes drawn.
    #[arg(long)]
    save_output: Option<String>,
    #[command(flatten)]
    detect: DetectArgs,
    #[arg(long, value_parser = some_of(VIEW_FORMATS), default_value = "table")]
    format: Format,
}

pub fn run(args: Args) -> Result<i32> {
    let budget = memory_budget(&args.memory_budget)?;
    let onnx = super::common::is_onnx_file(&args.model.model);
    let (mut net, onnx_weights) = if onnx {
        let setting = args.model.setting.single("run")?;
        let (net, imp) = super::common::load_onnx(&args.model.model, &setting)?;
        let w = match &args.weights {
            Some(_) => None,
            None => crate::onnx::weights(&net, &imp)?,
        };
        (net, w)
    } else {
        (load_one(&args.model, "run")?, None)
    };
    if args.detect.full_letterbox && args.image.is_none() {
        bail!("--full-letterbox places the --image in the input; give --image (with --npy or random input there is no letterbox)");
    }
    let mut detector = args.detect.detector(&net)?;
    // --detect's image, read first: an Ultralytics model is built at the size of
    // `model.predict`'s rect letterbox of it (unless --full-letterbox or an ONNX file's fixed
    // input), the --input (or the model's own) being the size it is scaled to fit.
    let rgb = match (&args.image, &detector) {
        (Some(file), Some(_)) => Some(detect::read_rgb(file)?),
        _ => None,
    };
    let mut fed = None;
    if let (Some(det), Some(img)) = (&detector, &rgb) {
        if det.rect() && !onnx {
            let (p, w, h) = crate::detect::Placement::letterbox_rect(
                img.width(),
                img.height(),
                det.in_w as u32,
                det.in_h as u32,
                detect::rect_stride(&net),
            );
            if (w as usize, h as usize) != (det.in_w, det.in_h) {
                let mut setting = args.model.setting.single("run")?;
                setting.input = Some(vec![u64::from(h), u64::from(w)]);
                net = super::common::load(&args.model.model, &setting).with_context(|| {
                    format!(
                        "--detect builds the model at {h}×{w}, model.predict's rect letterbox of the {}×{} image (give --full-letterbox to feed the input at its own size)",
                        img.width(),
                        img.height()
                    )
                })?;
                detector = args.detect.detector(&net)?;
            }
            fed = Some(p);
        }
    }
    let a = analyze(&net, Dtype::F32)?;
    // What the pass needs, from the network alone, before anything is allocated.
    exec::check_memory(&net, budget, 0)?;
    // An ONNX file's own initializers, unless --weights replaces them.
    let w = match onnx_weights {
        Some(w) => w,
        None => weights(&net, &args)?,
    };
    let (inputs, picture) = inputs(&net, &args, detector.as_ref(), rgb, fed)?;
    let mut plan = exec::plan(&net, &w);
    // The plan's copies of the weights and its concatenation buffers counted too; dead
    // buffers are kept for reuse only within what the budget leaves.
    let need = exec::check_memory(&net, budget, plan.extra_bytes())?;
    plan.recycle_bytes = budget - need.total();
    let (result, layer_secs, times_ms) = passes(&net, &w, &plan, &inputs, args.repeat)?;
    let detections = detector
        .as_ref()
        .map(|d| d.detections(&result.outputs, picture.as_ref().map(|(p, _)| p)));
    if let Some(file) = &args.save_output {
        let output = &result.outputs[0];
        let bytes = if file.ends_with(".npy") {
            exec::io::write_npy(output)
        } else if let (Some(dets), Some((_, img))) = (&detections, &picture) {
            let mut img = img.clone();
            if let Some((p, _)) = &picture {
                crate::detect::draw::draw_masks(&mut img, &dets[0], p);
            }
            crate::detect::draw::draw(&mut img, &dets[0]);
            crate::detect::draw::draw_keypoints(&mut img, &dets[0]);
            crate::detect::draw::png(&img)?
        } else if detections.is_some() {
            bail!("--detect --save-output {file} draws the boxes on the --image; give --image, or a file name ending in .npy for the raw output");
        } else {
            exec::io::write_png(output)?
        };
        std::fs::write(file, bytes).with_context(|| format!("cannot write {file}"))?;
    }
    let profile = RunProfile {
        net: &net,
        analysis: &a,
        plan: &plan,
        result: &result,
        input: &inputs[0].shape,
        layer_secs: &layer_secs,
        times_ms: &times_ms,
        saved: args.save_output.as_deref(),
    };
    let report = render::run_report(&profile, args.format);
    match &detections {
        None => out(report)?,
        Some(dets) if args.format == Format::Json => {
            // One JSON document: the run's, with the detections added.
            let mut v: serde_json::Value = serde_json::from_str(&report)?;
            let d: serde_json::Value =
                serde_json::from_str(&crate::detect::render(dets, Format::Json))?;
            if let Some(o) = v.as_object_mut() {
                o.insert("detections".into(), d);
            }
            out(serde_json::to_string_pretty(&v)? + "\n")?
        }
        Some(dets) => out(report + "\n" + &crate::detect::render(dets, args.format))?,
    }
    Ok(0)
}

/// Parses `--memory-budget`: bytes, at least 1 MiB, at most `exec::MAX_MEMORY_BUDGET`.
fn memory_budget(text: &str) -> Result<u64> {
    use exec::MAX_MEMORY_BUDGET;
    let b = parse_quantity(text, Quantity::Bytes)
        .map_err(|e| anyhow::anyhow!("--memory-budget {e}"))?;
    if !(1 << 20..=MAX_MEMORY_BUDGET).contains(&b) {
        bail!("--memory-budget {text} is {b} bytes; give 1MiB to 1TiB ({MAX_MEMORY_BUDGET} bytes)");
    }
    Ok(b)
}

/// The weights of `--weights` (read under the cap the model's tensors set), else seeded random
/// ones.
fn weights(net: &Network, args: &Args) -> Result<Weights> {
    Ok(match &args.weights {
        Some(file) => {
            let limit = exec::safetensors_byte_limit(net);
            let bytes = read_capped(
                file,
                limit,
                "a .safetensors file of this model's weights can hold (every tensor in f64, and its header)",
            )?;
            exec::load_safetensors(net, &bytes, file)?
        }
        None => exec::init_weights(net, args.seed)?,
    })
}

/// An `--image` read for `--detect`: how it was placed in the input, and its pixels.
type Picture = (crate::detect::Placement, image::RgbImage);

/// The inputs fed: seeded random ones, the first replaced by `--image` or `--npy`; with
/// `--detect`, the image (`rgb`, already read) as the detector expects it, or as `fed`
/// places it (the rect letterbox), kept with the placement that maps boxes back onto it.
fn inputs(
    net: &Network,
    args: &Args,
    detector: Option<&Detector>,
    rgb: Option<image::RgbImage>,
    fed: Option<crate::detect::Placement>,
) -> Result<(Vec<Tensor>, Option<Picture>)> {
    let mut inputs = exec::random_input(net, args.seed)?;
    if inputs.len() != 1 && (args.image.is_some() || args.npy.is_some()) {
        bail!(
            "--image and --npy feed a model with one input; this one has {}",
            inputs.len()
        );
    }
    let mut picture = None;
    if let (Some(img), Some(det)) = (rgb, detector) {
        let map = det.placement(img.width(), img.height());
        let p = fed.unwrap_or(map);
        let data = p.input(&img, inputs[0].shape[0], det.in_w, det.in_h);
        inputs[0] = Tensor::new(inputs[0].shape.clone(), data);
        picture = Some((map, img));
    } else if let Some(file) = &args.image {
        let bytes = read_capped(
            file,
            exec::io::MAX_IMAGE_BYTES,
            "an image file may have (64 MiB)",
        )?;
        inputs[0] = exec::io::read_image(&bytes, file, &inputs[0].shape)?;
    }
    if let Some(file) = &args.npy {
        let input_name = net
            .nodes
            .iter()
            .find(|n| n.layer.is_input())
            .map_or("", |n| n.name.as_str());
        let want = inputs[0].shape.clone();
        let bytes = read_capped(
            file,
            exec::io::npy_byte_limit(&want),
            "a .npy array for this model's input can hold (its header, and every element in float64)",
        )?;
        let t = exec::io::read_npy(&bytes, file)?;
        inputs[0] = exec::io::fit_input(t, &want, file, input_name)?;
    }
    Ok((inputs, picture))
}

/// `repeat` forward passes (a progress bar on a terminal's stderr when there are several):
/// the last pass's result, each layer's fastest time in seconds, each pass's wall time in
/// milliseconds.
fn passes(
    net: &Network,
    w: &Weights,
    plan: &Plan,
    inputs: &[Tensor],
    repeat: u64,
) -> Result<(RunResult, Vec<f64>, Vec<f64>)> {
    let bar = (repeat > 1 && std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .then(|| indicatif::ProgressBar::new(repeat));
    let mut times = Vec::with_capacity(repeat as usize);
    let mut layer_secs = vec![f64::INFINITY; net.nodes.len()];
    let mut result = None;
    // Buffers kept from pass to pass: after the first, a pass allocates nothing.
    let mut buffers = plan.buffers();
    for _ in 0..repeat {
        let start = std::time::Instant::now();
        let r = exec::run_pooled(net, w, plan, inputs, None, &mut buffers)?;
        times.push(start.elapsed().as_secs_f64() * 1e3);
        for (k, l) in r.layers.iter().enumerate() {
            layer_secs[k] = layer_secs[k].min(l.seconds);
        }
        result = Some(r);
        if let Some(b) = &bar {
            b.inc(1);
        }
    }
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    Ok((result.expect("repeat ≥ 1"), layer_secs, times))
}
