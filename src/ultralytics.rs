//! The Ultralytics model-YAML frontend: reads a file in Ultralytics' format (`nc`, `scales`,
//! `backbone:` and `head:` lists of `[from, repeats, module, args]`) and translates it, with
//! Ultralytics' own arithmetic (`parse_model`: the scale's depth, width and max channels,
//! `make_divisible(c·width, 8)`, `max(round(n·depth), 1)`, autopad, BatchNorm eps 1e-3 and
//! momentum 0.03 (a classifier's: 1e-5 and 0.1), SiLU or the file's `activation`), into
//! archscope's own format: one block per module kind, one node per
//! Ultralytics layer (`m0`, `m1`, … in its order), so every command reads it like a zoo model
//! and `convert` writes it out. It also keeps what Ultralytics prints about the model: the
//! per-module table (`from`, `n`, `params`, `module`, `arguments`) and the number of layers
//! `model.info()` counts (its distinct leaf modules). Errors point into the original file.
//! See docs/ULTRALYTICS.md.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::analysis::Analysis;
use crate::error::{did_you_mean, Diagnostic};
use crate::yaml::{emit, Document, Emit, YNode, YValue, YamlPath};

/// The modules this frontend translates, as a file names them.
pub const MODULES: &[&str] = &[
    "Conv",
    "DWConv",
    "Focus",
    "Bottleneck",
    "C3",
    "C2",
    "C2f",
    "C3k2",
    "C2PSA",
    "SPP",
    "SPPF",
    "Concat",
    "nn.Upsample",
    "nn.ConvTranspose2d",
    "nn.MaxPool2d",
    "nn.ZeroPad2d",
    "Detect",
    "Segment",
    "Pose",
    "Classify",
];

/// Top-level keys of an Ultralytics model file that this frontend reads.
const KEYS: &[&str] = &[
    "nc",
    "scales",
    "depth_multiple",
    "width_multiple",
    "kpt_shape",
    "backbone",
    "head",
    "ch",
    "reg_max",
    "activation",
];

/// Most layers (`backbone` + `head` rows) one file may list.
pub const MAX_LAYERS: usize = 1024;
/// Largest channel count, class count or repeat count a file may give (after scaling).
pub const MAX_COUNT: i64 = 1 << 20;

/// How to read a file: the scale (`n`, `s`, …) and an `nc` that replaces the file's, and the
/// input's height and width (Ultralytics' default 640×640).
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// The name the model is known by (the file stem: `yolov8n`).
    pub name: String,
    pub scale: Option<String>,
    pub nc: Option<i64>,
    pub input: Option<(u64, u64)>,
}

/// One row of Ultralytics' per-module table.
#[derive(Debug, Clone)]
pub struct Row {
    pub index: usize,
    pub from: String,
    pub n: i64,
    /// The module's Python type (`ultralytics.nn.modules.block.C2f`).
    pub module: String,
    /// The arguments it was built with, as Python prints the list.
    pub arguments: String,
    /// The archscope layer path of the module (its parameters are those of the layers under it).
    pub path: String,
}

/// A translated model.
#[derive(Debug, Clone)]
pub struct Model {
    /// Ultralytics' name for it (`YOLOv8n`: the file stem, `yolo` → `YOLO`).
    pub title: String,
    /// The scale used, when the file has `scales`.
    pub scale: Option<String>,
    /// A note to show the user (the scale assumed, as Ultralytics warns).
    pub warning: Option<String>,
    /// The archscope YAML text of the model.
    pub text: String,
    pub rows: Vec<Row>,
    /// The number of layers `model.info()` prints: distinct leaf modules.
    pub layers: u64,
    /// The strides of the detection levels (empty for a classifier).
    pub strides: Vec<u64>,
    /// What Ultralytics' thop (ultralytics-thop 2.x, which `get_flops` runs) counts per sample
    /// beyond archscope's `--convention thop` (thop 0.1.1) on this model: the attention
    /// products it counts as functional matmuls, minus the nearest upsampling it charges 0
    /// for, and the transposed convolution counted over its input instead of its output.
    pub thop_adjust: i64,
}

/// Whether a parsed file is in Ultralytics' format: a mapping with `backbone` and `head`.
pub fn is_ultralytics(root: &YNode) -> bool {
    root.get("backbone").is_some() && root.get("head").is_some()
}

/// The scale letter Ultralytics reads from a file name (`yolov8n-seg.yaml` → `n`,
/// `yolo11s.yaml` → `s`), and the name of the file it loads instead (`yolov8-seg.yaml`,
/// `yolo11.yaml`): a digit followed by one of `nslmx` in the stem, the letter removed.
pub fn scale_from_name(file: &str) -> Option<(char, String)> {
    let (dir, base) = match file.rfind('/') {
        Some(i) => (&file[..=i], &file[i + 1..]),
        None => ("", file),
    };
    let (stem, ext) = match base.rfind('.') {
        Some(i) => (&base[..i], &base[i..]),
        None => (base, ""),
    };
    let lower = stem;
    let at = lower.find("yolo")?;
    let b = lower.as_bytes();
    let mut i = at + 4;
    if lower[i..].starts_with("e-") {
        i += 2;
    }
    if b.get(i) == Some(&b'v') {
        i += 1;
    }
    let digits = b[i..].iter().take_while(|c| c.is_ascii_digit()).count();
    if digits == 0 {
        return None;
    }
    let j = i + digits;
    let c = *b.get(j)? as char;
    if !"nslmx".contains(c) {
        return None;
    }
    let unified = format!("{dir}{}{}{ext}", &stem[..j], &stem[j + 1..]);
    Some((c, unified))
}

/// A value of a module's argument list, as Python would hold it after `parse_model`.
#[derive(Debug, Clone, PartialEq)]
enum Arg {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    List(Vec<Arg>),
}

impl Arg {
    fn py(&self) -> String {
        match self {
            Arg::None => "None".into(),
            Arg::Bool(b) => if *b { "True" } else { "False" }.into(),
            Arg::Int(i) => i.to_string(),
            Arg::Float(f) => py_float(*f),
            Arg::Str(s) => format!("'{s}'"),
            Arg::List(v) => format!("[{}]", v.iter().map(Arg::py).collect::<Vec<_>>().join(", ")),
        }
    }
}

fn py_float(f: f64) -> String {
    if f.fract() == 0.0 && f.abs() < 1e16 {
        format!("{f:.1}")
    } else {
        format!("{f}")
    }
}

fn err(msg: impl Into<String>, at: &YamlPath) -> Diagnostic {
    Diagnostic::new(msg).at(at)
}

/// Python's `round` (half to even) of a float, as an integer.
fn py_round(x: f64) -> i64 {
    x.round_ties_even() as i64
}

/// Ultralytics' `make_divisible(x, 8)`: `ceil(x / 8) * 8`.
fn make_divisible(x: f64) -> i64 {
    ((x / 8.0).ceil() * 8.0) as i64
}

fn gcd(a: i64, b: i64) -> i64 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// Reads `text` of `doc` as an Ultralytics model and translates it.
pub fn translate(doc: &Document, opts: &Options) -> Result<Model, Diagnostic> {
    let r = Translator::run(doc, opts);
    r.map_err(|d| doc.locate_diagnostic(d))
}

/// What one translated layer gives the next: its channels and its spatial size at the input
/// given and at Ultralytics' 256×256 stride probe.
#[derive(Clone, Copy)]
struct Feat {
    ch: i64,
    hw: (i64, i64),
    probe: (i64, i64),
}

struct Translator {
    blocks: BTreeMap<String, Emit>,
    nodes: Vec<Emit>,
    rows: Vec<Row>,
    leaves: u64,
    shared_act: bool,
    legacy: bool,
    strides: Vec<u64>,
    outputs: Vec<String>,
    thop_adjust: i64,
}

/// Spatial size after a window: PyTorch's floor((x + 2p - d(k-1) - 1)/s) + 1.
fn win(x: i64, k: i64, s: i64, p: i64) -> i64 {
    (x + 2 * p - (k - 1) - 1).div_euclid(s.max(1)) + 1
}

/// A value written into the translation: a number, or a string (a `$param` or `$(expr)`).
trait Val {
    fn e(self) -> Emit;
}
impl Val for i64 {
    fn e(self) -> Emit {
        Emit::Int(self)
    }
}
impl Val for &str {
    fn e(self) -> Emit {
        Emit::str(self)
    }
}
impl Val for String {
    fn e(self) -> Emit {
        Emit::Str(self)
    }
}

/// One `conv` node of the translation: an Ultralytics `Conv` (convolution, batch norm and
/// SiLU, the translation's defaults) with `id`, `out` and `kernel`, and, written after them in
/// this order, what differs: input, stride, padding, groups, no activation, or a plain
/// `nn.Conv2d` with a bias (the heads' last convolutions).
struct ConvNode(Vec<(&'static str, Emit)>);

fn conv(id: impl Val, out: impl Val, k: impl Val) -> ConvNode {
    ConvNode(vec![
        ("id", id.e()),
        ("op", Emit::str("conv")),
        ("out", out.e()),
        ("kernel", k.e()),
    ])
}

impl ConvNode {
    /// Reads `x` (default: the previous node).
    fn input(mut self, x: impl Val) -> Self {
        self.0.insert(2, ("in", x.e()));
        self
    }
    fn stride(mut self, s: i64) -> Self {
        if s != 1 {
            self.0.push(("stride", Emit::Int(s)));
        }
        self
    }
    fn padding(mut self, p: impl Val) -> Self {
        let p = p.e();
        if p != Emit::Int(0) {
            self.0.push(("padding", p));
        }
        self
    }
    fn groups(mut self, g: impl Val) -> Self {
        let g = g.e();
        if g != Emit::Int(1) {
            self.0.push(("groups", g));
        }
        self
    }
    /// `act=False`: an Identity after the batch norm.
    fn linear(mut self) -> Self {
        self.0.push(("act", Emit::str("none")));
        self
    }
    /// `act` as given: the default SiLU, or none.
    fn act(self, act: bool) -> Self {
        if act {
            self
        } else {
            self.linear()
        }
    }
    /// A plain `nn.Conv2d(…, 1)` with a bias, no batch norm, no activation.
    fn plain(mut self) -> Self {
        self.0.extend([
            ("bias", Emit::Bool(true)),
            ("bn", Emit::Bool(false)),
            ("act", Emit::str("none")),
        ]);
        self
    }
    fn with(mut self, key: &'static str, v: Emit) -> Self {
        self.0.push((key, v));
        self
    }
    fn node(self) -> Emit {
        flow(self.0)
    }
}

/// One layer `{id, op, …}` of the translation, on one line.
fn op_node(id: impl Into<String>, op: &str, rest: Vec<(&'static str, Emit)>) -> Emit {
    let mut v = vec![("id", Emit::Str(id.into())), ("op", Emit::str(op))];
    v.extend(rest);
    flow(v)
}

fn flow(pairs: Vec<(&str, Emit)>) -> Emit {
    Emit::map(pairs).flow()
}

fn strs(v: &[&str]) -> Emit {
    Emit::Seq(v.iter().map(|s| Emit::str(*s)).collect())
}

fn ints(v: &[i64]) -> Emit {
    Emit::Seq(v.iter().map(|&i| Emit::Int(i)).collect())
}

impl Translator {
    fn run(doc: &Document, opts: &Options) -> Result<Model, Diagnostic> {
        let root = &doc.root;
        let YValue::Map(top) = &root.value else {
            return Err(err("an Ultralytics model file is a mapping", &root.path));
        };
        for (k, v) in top {
            if !KEYS.contains(&k.as_str()) {
                let mut d = err(
                    format!("unknown key `{k}` in an Ultralytics model file"),
                    &v.path,
                )
                .note(format!("the keys read: {}", KEYS.join(", ")));
                if let Some(s) = did_you_mean(k, KEYS.iter().copied()) {
                    d = d.help(format!("did you mean `{s}`?"));
                }
                return Err(d);
            }
        }
        let file_nc = match root.get("nc") {
            Some(n) => Some((int_of(n, "nc")?, n)),
            None => None,
        };
        // `--nc` replaces the file's; a bad count is located at the file's `nc:` (or, from
        // the flag, at the file's start, naming the flag).
        let (nc, nc_at, nc_what) = match (opts.nc, file_nc) {
            (Some(n), _) => (n, &root.path, format!("--nc {n}")),
            (None, Some((n, node))) => (n, &node.path, format!("nc {n}")),
            (None, None) => {
                return Err(
                    err("the file gives no `nc` (number of classes)", &root.path)
                        .help("write `nc: 80` at the top level, or pass --nc"),
                )
            }
        };
        if !(1..=MAX_COUNT).contains(&nc) {
            return Err(err(
                format!("{nc_what}: the number of classes is 1 to {MAX_COUNT}"),
                nc_at,
            )
            .help("write the number of classes the head predicts, e.g. `nc: 80` (COCO)"));
        }
        let act = match root.get("activation") {
            Some(a) => Some(activation_of(a)?),
            None => None,
        };
        let ch = match root.get("ch") {
            Some(c) => int_of(c, "ch")?,
            None => 3,
        };
        if !(1..=MAX_COUNT).contains(&ch) {
            return Err(err(
                format!("ch {ch}: the input channels are 1 to {MAX_COUNT}"),
                &root.path,
            ));
        }
        let reg_max = match root.get("reg_max") {
            Some(c) => int_of(c, "reg_max")?,
            None => 16,
        };
        if !(2..=64).contains(&reg_max) {
            return Err(err(format!("reg_max {reg_max}: write 2 to 64 (Ultralytics uses 16; 1, no DFL, is not supported)"), &root.path));
        }
        let kpt_shape = match root.get("kpt_shape") {
            Some(k) => Some(arg_of(k)?),
            None => None,
        };
        let (mut depth, mut width, mut max_ch) = (1.0f64, 1.0f64, f64::INFINITY);
        if let Some(d) = root.get("depth_multiple") {
            depth = float_of(d)?;
        }
        if let Some(w) = root.get("width_multiple") {
            width = float_of(w)?;
        }
        let mut scale = None;
        let mut warning = None;
        if let Some(scales) = root.get("scales") {
            let YValue::Map(m) = &scales.value else {
                return Err(err(
                    "`scales` is a mapping of scale name to [depth, width, max_channels]",
                    &scales.path,
                ));
            };
            if m.is_empty() {
                return Err(err("`scales` lists no scale", &scales.path));
            }
            let name = match &opts.scale {
                Some(s) => s.clone(),
                None => {
                    let first = m[0].0.clone();
                    warning = Some(format!(
                        "no model scale given (a file name like yolov8n.yaml or --scale); assuming scale '{first}', as Ultralytics does"
                    ));
                    first
                }
            };
            let Some((_, row)) = m.iter().find(|(k, _)| *k == name) else {
                let names: Vec<&str> = m.iter().map(|(k, _)| k.as_str()).collect();
                return Err(err(format!("the file has no scale `{name}`"), &scales.path)
                    .help(format!("its scales: {}", names.join(", "))));
            };
            let v = fixed_list(row, 3, "a scale is [depth, width, max_channels]")?;
            depth = float_of(&v[0])?;
            width = float_of(&v[1])?;
            max_ch = float_of(&v[2])?;
            scale = Some(name);
        }
        for (x, what, node) in [(depth, "depth", root), (width, "width", root)] {
            if !(x > 0.0 && x <= 16.0) {
                return Err(err(
                    format!("the {what} multiple {x} is not in (0, 16]"),
                    &node.path,
                ));
            }
        }
        let (ih, iw) = opts.input.unwrap_or((640, 640));
        let mut t = Translator {
            blocks: BTreeMap::new(),
            nodes: Vec::new(),
            rows: Vec::new(),
            leaves: 0,
            shared_act: false,
            legacy: true,
            strides: Vec::new(),
            outputs: Vec::new(),
            thop_adjust: 0,
        };
        let mut rows: Vec<&YNode> = Vec::new();
        for part in ["backbone", "head"] {
            let p = root.get(part).expect("checked by is_ultralytics");
            let YValue::Seq(v) = &p.value else {
                return Err(err(
                    format!("`{part}` is a list of [from, repeats, module, args]"),
                    &p.path,
                ));
            };
            rows.extend(v.iter());
        }
        if rows.is_empty() {
            return Err(err("`backbone` and `head` list no layer", &root.path));
        }
        if rows.len() > MAX_LAYERS {
            return Err(err(
                format!(
                    "{} layers; a file may list at most {MAX_LAYERS}",
                    rows.len()
                ),
                &root.path,
            ));
        }
        // C3k2 anywhere makes the Detect head the non-legacy one (parse_model's `legacy`).
        for r in &rows {
            if let YValue::Seq(v) = &r.value {
                if v.get(2).and_then(YNode::as_str) == Some("C3k2") {
                    t.legacy = false;
                }
            }
        }
        // Ultralytics' task is its last layer's module (guess_model_task); only DetectionModel
        // and its subclasses run initialize_weights (BatchNorm eps 1e-3, momentum 0.03): a
        // ClassificationModel keeps PyTorch's BatchNorm2d defaults (1e-5, 0.1).
        let classifier = rows.last().and_then(|r| match &r.value {
            YValue::Seq(v) => v.get(2).and_then(YNode::as_str),
            _ => None,
        }) == Some("Classify");
        let (bn_eps, bn_momentum) = if classifier {
            (1e-5, 0.1)
        } else {
            (0.001, 0.03)
        };
        let env = Env {
            nc,
            kpt_shape,
            reg_max,
            depth,
            width,
            max_ch,
            scale: scale.clone(),
        };
        let input = Feat {
            ch,
            hw: (ih as i64, iw as i64),
            probe: (256, 256),
        };
        let mut feats: Vec<Feat> = Vec::new();
        for (i, r) in rows.iter().enumerate() {
            let f = t.layer(i, r, &env, input, &feats)?;
            feats.push(f);
        }
        if t.shared_act {
            t.leaves += 1;
        }
        let title = opts.name.replace("yolo", "YOLO");
        let name: String = opts
            .name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let name = if name.starts_with(|c: char| c.is_ascii_alphabetic()) {
            name
        } else {
            format!("m_{name}")
        };
        let mut top = vec![
            ("format", Emit::str(crate::spec::FORMAT)),
            ("name", Emit::str(&name)),
            (
                "inputs",
                Emit::map(vec![("image", ints(&[ch, ih as i64, iw as i64]).flow())]),
            ),
            (
                "defaults",
                Emit::map(vec![
                    (
                        "conv",
                        flow(vec![
                            ("bias", Emit::Bool(false)),
                            ("bn", Emit::Bool(true)),
                            ("act", act.unwrap_or_else(|| Emit::str("silu"))),
                        ]),
                    ),
                    (
                        "batchnorm2d",
                        flow(vec![
                            ("eps", Emit::Float(bn_eps)),
                            ("momentum", Emit::Float(bn_momentum)),
                        ]),
                    ),
                ]),
            ),
        ];
        if !t.blocks.is_empty() {
            top.push(("blocks", Emit::Map(t.blocks.into_iter().collect())));
        }
        top.push(("nodes", Emit::Seq(t.nodes)));
        if !t.outputs.is_empty() {
            let o: Vec<&str> = t.outputs.iter().map(String::as_str).collect();
            top.push((
                "outputs",
                if o.len() == 1 {
                    Emit::str(o[0])
                } else {
                    strs(&o).flow()
                },
            ));
        }
        let mut text = emit("", &Emit::map(top.clone()));
        // Tensor names as Ultralytics' state dict has them (`model.2.cv1.conv.weight`), so
        // that `run --weights` reads a file written from `model.state_dict()` as it is.
        if let Some(rules) = state_dict_names(&text) {
            if rules.len() > crate::spec::MAX_WEIGHTS_NAMES {
                let w = format!(
                    "{} layers with weights: more than the {} `weights_names` rules a model may have, so `run --weights` reads them under archscope's layer paths, not Ultralytics' state-dict names",
                    rules.len(),
                    crate::spec::MAX_WEIGHTS_NAMES
                );
                warning = Some(match warning {
                    Some(x) => format!("{x}; {w}"),
                    None => w,
                });
            } else if !rules.is_empty() {
                let map = rules.into_iter().map(|(k, v)| (k, Emit::Str(v))).collect();
                top.push(("weights_names", Emit::Map(map)));
                text = emit("", &Emit::map(top));
            }
        }
        Ok(Model {
            title,
            scale,
            warning,
            text,
            rows: t.rows,
            layers: t.leaves,
            strides: t.strides,
            thop_adjust: t.thop_adjust,
        })
    }
}

struct Env {
    nc: i64,
    kpt_shape: Option<Arg>,
    reg_max: i64,
    depth: f64,
    width: f64,
    max_ch: f64,
    scale: Option<String>,
}

/// The `n` values of the list `node`, which `what` describes (`a layer is [from, …]`).
fn fixed_list<'a>(node: &'a YNode, n: usize, what: &str) -> Result<&'a [YNode], Diagnostic> {
    match &node.value {
        YValue::Seq(v) if v.len() == n => Ok(v),
        YValue::Seq(v) => Err(err(
            format!("{what}; this one has {} values", v.len()),
            &node.path,
        )),
        _ => Err(err(what, &node.path)),
    }
}

fn int_of(n: &YNode, what: &str) -> Result<i64, Diagnostic> {
    match n.value {
        YValue::Int(i) => Ok(i),
        _ => Err(err(
            format!("`{what}` is a whole number, not {}", n.kind()),
            &n.path,
        )),
    }
}

fn float_of(n: &YNode) -> Result<f64, Diagnostic> {
    match n.value {
        YValue::Int(i) => Ok(i as f64),
        YValue::Float(f) => Ok(f),
        _ => Err(err(format!("expected a number, not {}", n.kind()), &n.path)),
    }
}

/// The `activation:` key (`nn.ReLU()`, `torch.nn.LeakyReLU(0.1)`): Ultralytics replaces
/// `Conv.default_act`, the one activation module every default `Conv` shares, by it. Read as
/// Ultralytics' restricted loader reads it (`[torch.]nn.Class(literal arguments)`); the class
/// is the archscope op of the same name (`ReLU` → `relu`, `LeakyReLU` → `leaky_relu`), whose
/// one positional argument may be LeakyReLU's `negative_slope`. Anything else is an error.
fn activation_of(n: &YNode) -> Result<Emit, Diagnostic> {
    let YValue::Str(s) = &n.value else {
        return Err(err(
            format!(
                "`activation` is a string like `nn.ReLU()`, not {}",
                n.kind()
            ),
            &n.path,
        ));
    };
    let bad = |why: String| {
        err(
            format!("activation `{}`: {why}", crate::error::excerpt(s)),
            &n.path,
        )
        .help("write a torch.nn activation with no arguments, e.g. `nn.ReLU()`, `nn.SiLU()`, `nn.Hardswish()`, or `nn.LeakyReLU(0.1)`")
    };
    let t = s.trim();
    let body = t.strip_prefix("torch.").unwrap_or(t);
    let Some(body) = body.strip_prefix("nn.") else {
        return Err(bad("not a `torch.nn` class".into()));
    };
    let Some((class, rest)) = body.split_once('(') else {
        return Err(bad("not a call (`nn.ReLU()`)".into()));
    };
    let Some(args) = rest.strip_suffix(')') else {
        return Err(bad("not a call (`nn.ReLU()`)".into()));
    };
    let args = args.trim();
    let op = crate::layers::lookup(&class.to_ascii_lowercase())
        .filter(|o| matches!(o.arity, crate::layers::Arity::Exactly(1)) && !o.is_input())
        .filter(|o| o.keys.contains(&"functional"))
        .ok_or_else(|| bad(format!("`nn.{class}` is not an activation archscope has")))?;
    // The one positional argument read is a slope, for the op that takes one (LeakyReLU).
    if op.keys.contains(&"slope") && !args.is_empty() {
        let slope: f64 = args
            .strip_prefix("negative_slope=")
            .unwrap_or(args)
            .trim()
            .parse()
            .map_err(|_| bad(format!("the slope `{args}` is not a number")))?;
        if !slope.is_finite() {
            return Err(bad(format!("the slope `{args}` is not finite")));
        }
        return Ok(flow(vec![
            ("op", Emit::str(op.name)),
            ("slope", Emit::Float(slope)),
        ]));
    }
    if !args.is_empty() {
        return Err(bad(format!(
            "its arguments `{args}` are not read (only LeakyReLU's slope is)"
        )));
    }
    Ok(Emit::str(op.name))
}

/// A YAML argument as `parse_model` holds it: strings that are Python literals (`None`) read
/// as those; `nc`, `kpt_shape` and `reg_max` resolved later.
fn arg_of(n: &YNode) -> Result<Arg, Diagnostic> {
    Ok(match &n.value {
        YValue::Null => Arg::None,
        YValue::Bool(b) => Arg::Bool(*b),
        YValue::Int(i) => Arg::Int(*i),
        YValue::Float(f) => Arg::Float(*f),
        YValue::Str(s) if s == "None" => Arg::None,
        YValue::Str(s) if s == "True" => Arg::Bool(true),
        YValue::Str(s) if s == "False" => Arg::Bool(false),
        YValue::Str(s) => Arg::Str(s.clone()),
        YValue::Seq(v) => Arg::List(v.iter().map(arg_of).collect::<Result<_, _>>()?),
        YValue::Map(_) => return Err(err("a module argument cannot be a mapping", &n.path)),
    })
}

/// Python type names of the modules, for the table.
fn py_type(m: &str) -> String {
    match m {
        "Conv" | "DWConv" | "Focus" | "Concat" => format!("ultralytics.nn.modules.conv.{m}"),
        "Detect" | "Segment" | "Pose" | "Classify" => format!("ultralytics.nn.modules.head.{m}"),
        "nn.Upsample" => "torch.nn.modules.upsampling.Upsample".into(),
        "nn.MaxPool2d" => "torch.nn.modules.pooling.MaxPool2d".into(),
        "nn.ConvTranspose2d" => "torch.nn.modules.conv.ConvTranspose2d".into(),
        "nn.ZeroPad2d" => "torch.nn.modules.padding.ZeroPad2d".into(),
        _ => format!("ultralytics.nn.modules.block.{m}"),
    }
}

/// A located argument list with Python's positional defaults.
struct Args<'a> {
    v: Vec<Arg>,
    path: &'a YamlPath,
    module: &'a str,
}

impl Args<'_> {
    /// Argument `i` (`what` it is) holds `a`, not the `expected` kind.
    fn wrong(&self, i: usize, what: &str, a: &Arg, expected: &str) -> Diagnostic {
        let what = if what.is_empty() {
            String::new()
        } else {
            format!(" ({what})")
        };
        err(
            format!(
                "{}: argument {i}{what} is {}, expected {expected}",
                self.module,
                a.py()
            ),
            self.path,
        )
    }
    fn int(&self, i: usize, default: Option<i64>, what: &str) -> Result<i64, Diagnostic> {
        match self.v.get(i) {
            Some(Arg::Int(x)) => Ok(*x),
            Some(Arg::None) | None if default.is_some() => Ok(default.unwrap_or(0)),
            Some(a) => Err(self.wrong(i, what, a, "a whole number")),
            None => Err(err(
                format!("{}: argument {} ({what}) is missing", self.module, i),
                self.path,
            )),
        }
    }
    fn opt_int(&self, i: usize) -> Result<Option<i64>, Diagnostic> {
        match self.v.get(i) {
            None | Some(Arg::None) => Ok(None),
            Some(Arg::Int(x)) => Ok(Some(*x)),
            Some(a) => Err(self.wrong(i, "", a, "a whole number or None")),
        }
    }
    fn boolean(&self, i: usize, default: bool, what: &str) -> Result<bool, Diagnostic> {
        match self.v.get(i) {
            None => Ok(default),
            Some(Arg::Bool(b)) => Ok(*b),
            Some(a) => Err(self.wrong(i, what, a, "True or False")),
        }
    }
    fn float(&self, i: usize, default: f64, what: &str) -> Result<f64, Diagnostic> {
        match self.v.get(i) {
            None => Ok(default),
            Some(Arg::Float(f)) => Ok(*f),
            Some(Arg::Int(x)) => Ok(*x as f64),
            Some(a) => Err(self.wrong(i, what, a, "a number")),
        }
    }
    fn at_most(&self, n: usize, names: &str) -> Result<(), Diagnostic> {
        if self.v.len() > n {
            return Err(err(
                format!(
                    "{} takes at most {n} arguments here ({names}); this row gives {}",
                    self.module,
                    self.v.len()
                ),
                self.path,
            ));
        }
        Ok(())
    }
}

fn check_count(x: i64, what: &str, path: &YamlPath) -> Result<i64, Diagnostic> {
    if (1..=MAX_COUNT).contains(&x) {
        Ok(x)
    } else {
        Err(err(format!("{what} {x} is not in 1..={MAX_COUNT}"), path))
    }
}

impl Translator {
    /// One Ultralytics layer: reads the row, appends the archscope node (and the blocks it
    /// uses), the table row and the leaf-module count; returns what it outputs.
    fn layer(
        &mut self,
        i: usize,
        r: &YNode,
        env: &Env,
        input: Feat,
        feats: &[Feat],
    ) -> Result<Feat, Diagnostic> {
        let v = fixed_list(r, 4, "a layer is [from, repeats, module, args]")?;
        let id = format!("m{i}");
        // from
        let resolve = |x: i64, at: &YamlPath| -> Result<usize, Diagnostic> {
            let j = if x < 0 { i as i64 + x } else { x };
            if j < -1 || j >= i as i64 || (j == -1 && x >= 0) {
                return Err(err(format!("layer {i}: `from` {x} is not an earlier layer"), at)
                    .help("-1 is the previous layer, -2 the one before, a number ≥ 0 a layer by its index"));
            }
            Ok(if j < 0 { usize::MAX } else { j as usize })
        };
        let (froms, multi): (Vec<usize>, bool) = match &v[0].value {
            YValue::Int(x) => (vec![resolve(*x, &v[0].path)?], false),
            YValue::Seq(s) if !s.is_empty() => (
                s.iter()
                    .map(|n| match n.value {
                        YValue::Int(x) => resolve(x, &n.path),
                        _ => Err(err(
                            format!("a `from` entry is a layer index, not {}", n.kind()),
                            &n.path,
                        )),
                    })
                    .collect::<Result<_, _>>()?,
                true,
            ),
            _ => {
                return Err(err(
                    format!(
                        "`from` is a layer index or a list of them, not {}",
                        v[0].kind()
                    ),
                    &v[0].path,
                ))
            }
        };
        let feat_of = |j: usize| if j == usize::MAX { input } else { feats[j] };
        let ref_of = |j: usize| {
            if j == usize::MAX {
                "image".to_string()
            } else {
                format!("m{j}")
            }
        };
        let from_text = match &v[0].value {
            YValue::Int(x) => x.to_string(),
            YValue::Seq(s) => format!(
                "[{}]",
                s.iter()
                    .map(|n| n.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            _ => unreachable!(),
        };
        let n0 = int_of(&v[1], "repeats")?;
        if !(1..=MAX_COUNT).contains(&n0) {
            return Err(err(
                format!("repeats {n0} is not in 1..={MAX_COUNT}"),
                &v[1].path,
            ));
        }
        let Some(module) = v[2].as_str() else {
            return Err(err(
                format!("the module is a name like C2f, not {}", v[2].kind()),
                &v[2].path,
            ));
        };
        if !MODULES.contains(&module) {
            let mut d = err(format!("unknown Ultralytics module `{module}`"), &v[2].path).note(
                format!("the modules archscope translates: {}", MODULES.join(", ")),
            );
            // A name that differs only in case (`C2F`) means that module, not the nearest
            // by edit distance (`C2`).
            let same_letters = MODULES
                .iter()
                .copied()
                .find(|m| m.eq_ignore_ascii_case(module));
            if let Some(s) = same_letters.or_else(|| did_you_mean(module, MODULES.iter().copied()))
            {
                d = d.help(format!("did you mean `{s}`?"));
            }
            return Err(d);
        }
        let YValue::Seq(raw) = &v[3].value else {
            return Err(err(
                format!("the arguments are a list, not {}", v[3].kind()),
                &v[3].path,
            ));
        };
        let mut args: Vec<Arg> = raw.iter().map(arg_of).collect::<Result<_, _>>()?;
        for a in args.iter_mut() {
            if let Arg::Str(s) = a {
                match s.as_str() {
                    "nc" => *a = Arg::Int(env.nc),
                    "reg_max" => *a = Arg::Int(env.reg_max),
                    "kpt_shape" => {
                        *a = env.kpt_shape.clone().ok_or_else(|| {
                            err(
                                "`kpt_shape` is used but the file does not set it",
                                &v[3].path,
                            )
                            .help("write `kpt_shape: [17, 3]` at the top level")
                        })?
                    }
                    _ => {}
                }
            }
        }
        let n = if n0 > 1 {
            py_round(n0 as f64 * env.depth).max(1)
        } else {
            n0
        };
        let single = |what: &str| -> Result<usize, Diagnostic> {
            if multi && froms.len() != 1 {
                return Err(err(
                    format!("{what} takes one input; `from` lists {}", froms.len()),
                    &v[0].path,
                ));
            }
            Ok(froms[0])
        };
        let base = matches!(
            module,
            "Conv"
                | "DWConv"
                | "Focus"
                | "Bottleneck"
                | "C3"
                | "C2"
                | "C2f"
                | "C3k2"
                | "C2PSA"
                | "SPP"
                | "SPPF"
                | "nn.ConvTranspose2d"
                | "Classify"
        );
        let repeat_mod = matches!(module, "C3" | "C2" | "C2f" | "C3k2" | "C2PSA");
        let apath = &v[3].path;
        let mut n_seq = n; // copies in an nn.Sequential
        let (mut c1, mut c2) = (0, 0);
        let mut full: Vec<Arg> = args.clone();
        if base {
            let f = single(module)?;
            c1 = feat_of(f).ch;
            let a0 = match args.first() {
                Some(Arg::Int(x)) => *x,
                _ => {
                    return Err(err(
                        format!("{module}: the first argument is the output channels"),
                        apath,
                    ))
                }
            };
            c2 = if module == "Classify" {
                a0
            } else {
                make_divisible((a0 as f64).min(env.max_ch) * env.width)
            };
            check_count(c2, &format!("{module} output channels"), apath)?;
            full = vec![Arg::Int(c1), Arg::Int(c2)];
            full.extend(args[1..].iter().cloned());
            if repeat_mod {
                full.insert(2, Arg::Int(n));
                n_seq = 1;
            }
            if module == "C3k2" && matches!(env.scale.as_deref(), Some("m" | "l" | "x")) {
                if full.len() > 3 {
                    full[3] = Arg::Bool(true);
                } else {
                    full.push(Arg::Bool(true));
                }
            }
        }
        let a = Args {
            v: full.clone(),
            path: apath,
            module,
        };
        let start = self.nodes.len();
        let start_leaves = self.leaves;
        let out: Feat;
        match module {
            "Conv" | "DWConv" => {
                a.at_most(if module == "Conv" { 8 } else { 6 }, "c1, c2, k, s, …")?;
                let k = a.int(2, Some(1), "kernel")?;
                let s = a.int(3, Some(1), "stride")?;
                let (p, g, d, act) = if module == "Conv" {
                    (
                        a.opt_int(4)?,
                        a.int(5, Some(1), "groups")?,
                        a.int(6, Some(1), "dilation")?,
                        a.boolean(7, true, "act")?,
                    )
                } else {
                    (
                        None,
                        gcd(c1, c2),
                        a.int(4, Some(1), "dilation")?,
                        a.boolean(5, true, "act")?,
                    )
                };
                if d != 1 {
                    return Err(err(
                        format!("{module}: dilation {d} is not supported (only 1)"),
                        apath,
                    ));
                }
                check_count(k, "kernel", apath)?;
                check_count(s, "stride", apath)?;
                if g < 1 || c1 % g != 0 || c2 % g != 0 {
                    return Err(err(
                        format!("{module}: groups {g} must divide {c1} and {c2}"),
                        apath,
                    ));
                }
                if n_seq > 1 && c1 != c2 {
                    return Err(err(format!("{module} repeated {n_seq} times needs equal in and out channels ({c1} → {c2})"), apath));
                }
                let p = p.unwrap_or(k / 2);
                let mut node = conv(id.as_str(), c2, k)
                    .input(ref_of(froms[0]))
                    .stride(s)
                    .padding(p)
                    .groups(g)
                    .act(act);
                if n_seq > 1 {
                    node = node.with("repeat", Emit::Int(n_seq));
                }
                self.nodes.push(node.node());
                self.conv_leaves(act, n_seq);
                let mut f = feat_of(froms[0]);
                for _ in 0..n_seq {
                    f = Feat {
                        ch: c2,
                        hw: (win(f.hw.0, k, s, p), win(f.hw.1, k, s, p)),
                        probe: (win(f.probe.0, k, s, p), win(f.probe.1, k, s, p)),
                    };
                }
                out = f;
            }
            "Focus" => {
                a.at_most(7, "c1, c2, k, s, p, g, act")?;
                let k = a.int(2, Some(1), "kernel")?;
                let s = a.int(3, Some(1), "stride")?;
                let p = a.opt_int(4)?.unwrap_or(k / 2);
                let g = a.int(5, Some(1), "groups")?;
                let act = a.boolean(6, true, "act")?;
                if n_seq > 1 {
                    return Err(err("Focus cannot be repeated", &v[1].path));
                }
                let mut nodes = vec![];
                for (name, h0, w0) in [("s00", 0, 0), ("s10", 1, 0), ("s01", 0, 1), ("s11", 1, 1)] {
                    nodes.push(op_node(
                        format!("{name}h"),
                        "slice",
                        vec![
                            ("in", Emit::str("$in")),
                            ("dim", Emit::Int(2)),
                            ("start", Emit::Int(h0)),
                            ("end", Emit::str("$in_h")),
                            ("step", Emit::Int(2)),
                        ],
                    ));
                    nodes.push(op_node(
                        name,
                        "slice",
                        vec![
                            ("dim", Emit::Int(3)),
                            ("start", Emit::Int(w0)),
                            ("end", Emit::str("$in_w")),
                            ("step", Emit::Int(2)),
                        ],
                    ));
                }
                nodes.push(op_node(
                    "cat",
                    "concat",
                    vec![("in", strs(&["s00", "s10", "s01", "s11"]))],
                ));
                nodes.push(
                    conv("conv", "$out", k)
                        .stride(s)
                        .padding(p)
                        .groups(g)
                        .act(act)
                        .node(),
                );
                let bname = format!(
                    "focus_k{k}_s{s}_p{p}_g{g}{}",
                    if act { "" } else { "_linear" }
                );
                self.block(&bname, &["out"], nodes);
                self.use_node(
                    &id,
                    &bname,
                    &[ref_of(froms[0])],
                    vec![("out", Emit::Int(c2))],
                );
                self.conv_leaves(act, 1);
                let f = feat_of(froms[0]);
                let half = |x: i64| (x + 1) / 2;
                out = Feat {
                    ch: c2,
                    hw: (win(half(f.hw.0), k, s, p), win(half(f.hw.1), k, s, p)),
                    probe: (win(half(f.probe.0), k, s, p), win(half(f.probe.1), k, s, p)),
                };
            }
            "Bottleneck" => {
                a.at_most(6, "c1, c2, shortcut, g, k, e")?;
                let shortcut = a.boolean(2, true, "shortcut")?;
                let g = a.int(3, Some(1), "groups")?;
                if g != 1 {
                    return Err(err(
                        "Bottleneck: groups other than 1 are not supported",
                        apath,
                    ));
                }
                if a.v.len() > 4 {
                    return Err(err(
                        "Bottleneck: only (c2, shortcut, g) are supported as arguments",
                        apath,
                    ));
                }
                let e = 0.5;
                let hidden = (c2 as f64 * e) as i64;
                if n_seq > 1 && c1 != c2 {
                    return Err(err(format!("Bottleneck repeated {n_seq} times needs equal in and out channels ({c1} → {c2})"), apath));
                }
                self.bottleneck_block();
                let mut node = vec![
                    ("id", Emit::str(&id)),
                    ("use", Emit::str("bottleneck")),
                    ("in", Emit::str(ref_of(froms[0]))),
                ];
                if n_seq > 1 {
                    node.push(("repeat", Emit::Int(n_seq)));
                }
                node.push((
                    "with",
                    flow(vec![
                        ("hidden", Emit::Int(hidden)),
                        ("out", Emit::Int(c2)),
                        ("k1", Emit::Int(3)),
                        ("k2", Emit::Int(3)),
                        ("add", Emit::Bool(shortcut && c1 == c2)),
                    ]),
                ));
                self.nodes.push(flow(node));
                self.conv_leaves(true, 2 * n_seq);
                out = Feat {
                    ch: c2,
                    ..feat_of(froms[0])
                };
            }
            "C3" => {
                a.at_most(6, "c1, c2, n, shortcut, g, e")?;
                let shortcut = a.boolean(3, true, "shortcut")?;
                if a.int(4, Some(1), "groups")? != 1 {
                    return Err(err("C3: groups other than 1 are not supported", apath));
                }
                let e = a.float(5, 0.5, "e")?;
                let hidden = (c2 as f64 * e) as i64;
                check_count(hidden, "C3 hidden channels", apath)?;
                let c3 = self.c3_block(n);
                self.use_node(
                    &id,
                    &c3,
                    &[ref_of(froms[0])],
                    vec![
                        ("hidden", Emit::Int(hidden)),
                        ("out", Emit::Int(c2)),
                        ("k1", Emit::Int(1)),
                        ("k2", Emit::Int(3)),
                        ("add", Emit::Bool(shortcut)),
                    ],
                );
                self.conv_leaves(true, 3 + 2 * n as u64 as i64);
                out = Feat {
                    ch: c2,
                    ..feat_of(froms[0])
                };
            }
            "C2" => {
                // C2: cv1 to 2c, chunk(2) into a and b, m (an nn.Sequential of n bottlenecks
                // with 3×3 kernels and e = 1) on a, then cv2 over cat(m(a), b).
                a.at_most(6, "c1, c2, n, shortcut, g, e")?;
                let shortcut = a.boolean(3, true, "shortcut")?;
                if a.int(4, Some(1), "groups")? != 1 {
                    return Err(err("C2: groups other than 1 are not supported", apath));
                }
                let c = (c2 as f64 * a.float(5, 0.5, "e")?) as i64;
                check_count(c, "C2 hidden channels", apath)?;
                let bname = format!("c2_n{n}{}", if shortcut { "_shortcut" } else { "" });
                if !self.blocks.contains_key(&bname) {
                    self.bottleneck_block();
                    let mut nodes = vec![
                        conv("cv1", "$(2 * c)", 1).node(),
                        op_node("split", "split", vec![("parts", Emit::Int(2))]),
                    ];
                    for j in 0..n {
                        let mut node = vec![
                            ("id", Emit::str(format!("m_{j}"))),
                            ("use", Emit::str("bottleneck")),
                        ];
                        if j == 0 {
                            node.push(("in", Emit::str("split:0")));
                        }
                        node.push((
                            "with",
                            flow(vec![
                                ("hidden", Emit::str("$c")),
                                ("out", Emit::str("$c")),
                                ("k1", Emit::Int(3)),
                                ("k2", Emit::Int(3)),
                                ("add", Emit::Bool(shortcut)),
                            ]),
                        ));
                        nodes.push(flow(node));
                    }
                    let last = format!("m_{}", n - 1);
                    nodes.push(op_node(
                        "cat",
                        "concat",
                        vec![("in", strs(&[&last, "split:1"]))],
                    ));
                    nodes.push(conv("cv2", "$out", 1).node());
                    self.block(&bname, &["c", "out"], nodes);
                }
                self.use_node(
                    &id,
                    &bname,
                    &[ref_of(froms[0])],
                    vec![("c", Emit::Int(c)), ("out", Emit::Int(c2))],
                );
                self.conv_leaves(true, 2 + 2 * n);
                out = Feat {
                    ch: c2,
                    ..feat_of(froms[0])
                };
            }
            "C2f" | "C3k2" => {
                let (shortcut, e, c3k) = if module == "C2f" {
                    a.at_most(6, "c1, c2, n, shortcut, g, e")?;
                    if a.int(4, Some(1), "groups")? != 1 {
                        return Err(err("C2f: groups other than 1 are not supported", apath));
                    }
                    (
                        a.boolean(3, false, "shortcut")?,
                        a.float(5, 0.5, "e")?,
                        false,
                    )
                } else {
                    a.at_most(5, "c1, c2, n, c3k, e")?;
                    (true, a.float(4, 0.5, "e")?, a.boolean(3, false, "c3k")?)
                };
                let c = (c2 as f64 * e) as i64;
                check_count(c, &format!("{module} hidden channels"), apath)?;
                let bname = if module == "C2f" {
                    format!("c2f_n{n}{}", if shortcut { "_shortcut" } else { "" })
                } else {
                    format!("c3k2_n{n}{}", if c3k { "_c3k" } else { "" })
                };
                if !self.blocks.contains_key(&bname) {
                    let mut nodes = vec![
                        conv("cv1", "$(2 * c)", 1).node(),
                        op_node("split", "split", vec![("parts", Emit::Int(2))]),
                    ];
                    let mut cat = vec!["split:0".to_string(), "split:1".to_string()];
                    for j in 0..n {
                        // Ultralytics' ModuleList `m`: m.0, m.1, … (`_` reads as `.`).
                        let mid = format!("m_{j}");
                        let mut node = vec![("id", Emit::str(&mid))];
                        if c3k {
                            let c3 = self.c3_block(2);
                            node.push(("use", Emit::str(c3)));
                        } else {
                            self.bottleneck_block();
                            node.push(("use", Emit::str("bottleneck")));
                        }
                        if j == 0 {
                            node.push(("in", Emit::str("split:1")));
                        }
                        let with = if c3k {
                            vec![
                                ("hidden", Emit::str("$(c // 2)")),
                                ("out", Emit::str("$c")),
                                ("k1", Emit::Int(3)),
                                ("k2", Emit::Int(3)),
                                ("add", Emit::Bool(true)),
                            ]
                        } else if module == "C2f" {
                            vec![
                                ("hidden", Emit::str("$c")),
                                ("out", Emit::str("$c")),
                                ("k1", Emit::Int(3)),
                                ("k2", Emit::Int(3)),
                                ("add", Emit::Bool(shortcut)),
                            ]
                        } else {
                            vec![
                                ("hidden", Emit::str("$(c // 2)")),
                                ("out", Emit::str("$c")),
                                ("k1", Emit::Int(3)),
                                ("k2", Emit::Int(3)),
                                ("add", Emit::Bool(true)),
                            ]
                        };
                        node.push(("with", flow(with)));
                        nodes.push(flow(node));
                        cat.push(mid);
                    }
                    let cat: Vec<&str> = cat.iter().map(String::as_str).collect();
                    nodes.push(op_node("cat", "concat", vec![("in", strs(&cat))]));
                    nodes.push(conv("cv2", "$out", 1).node());
                    self.block(&bname, &["c", "out"], nodes);
                }
                self.use_node(
                    &id,
                    &bname,
                    &[ref_of(froms[0])],
                    vec![("c", Emit::Int(c)), ("out", Emit::Int(c2))],
                );
                let per = if c3k { 3 + 2 * 2 } else { 2 };
                self.conv_leaves(true, 2 + per * n);
                out = Feat {
                    ch: c2,
                    ..feat_of(froms[0])
                };
            }
            "C2PSA" => {
                a.at_most(4, "c1, c2, n, e")?;
                if c1 != c2 {
                    return Err(err(format!("C2PSA keeps its channels: in {c1}, out {c2} (Ultralytics asserts c1 == c2)"), apath));
                }
                let e = a.float(3, 0.5, "e")?;
                let c = (c1 as f64 * e) as i64;
                check_count(c, "C2PSA hidden channels", apath)?;
                let heads = (c / 64).max(1);
                let hd = c / heads;
                let kd = (hd as f64 * 0.5) as i64;
                if hd * heads != c || kd < 1 {
                    return Err(err(
                        format!("C2PSA: {c} hidden channels do not split into {heads} heads"),
                        apath,
                    ));
                }
                let f = feat_of(froms[0]);
                let bname = self.psa_blocks(heads, kd, hd, c);
                let mut nodes = vec![
                    conv("cv1", "$(2 * c)", 1).node(),
                    op_node("split", "split", vec![("parts", Emit::Int(2))]),
                ];
                // Ultralytics' nn.Sequential `m`: m.0, m.1, … (`_` reads as `.`).
                for j in 0..n {
                    let mut node = vec![
                        ("id", Emit::str(format!("m_{j}"))),
                        ("use", Emit::str(&bname)),
                    ];
                    if j == 0 {
                        node.push(("in", Emit::str("split:1")));
                    }
                    node.push((
                        "with",
                        flow(vec![("h", Emit::str("$h")), ("w", Emit::str("$w"))]),
                    ));
                    nodes.push(flow(node));
                }
                let last = format!("m_{}", n - 1);
                nodes.extend([
                    op_node("cat", "concat", vec![("in", strs(&["split:0", &last]))]),
                    conv("cv2", "$(2 * c)", 1).node(),
                ]);
                let outer = format!("c2psa_c{c}_n{n}");
                self.block(&outer, &["c", "h", "w"], nodes);
                self.use_node(
                    &id,
                    &outer,
                    &[ref_of(froms[0])],
                    vec![
                        ("c", Emit::Int(c)),
                        ("h", Emit::Int(f.hw.0)),
                        ("w", Emit::Int(f.hw.1)),
                    ],
                );
                // cv1, cv2; per PSABlock: attention qkv, proj, pe (conv, bn, an Identity each), the FFN's
                // two convs (conv and bn each, the second's Identity).
                self.conv_leaves(true, 2);
                self.leaves += n as u64 * (3 * 3 + 2 + 3);
                self.shared_act = true;
                // thop 2.x counts Attention's two matmuls (q·k and v·attn): heads·N²·(kd + hd).
                let tokens = f.hw.0 * f.hw.1;
                self.thop_adjust += n * heads * tokens * tokens * (kd + hd);
                out = Feat { ch: c2, ..f };
            }
            "SPP" | "SPPF" => {
                let f = feat_of(froms[0]);
                let hidden = c1 / 2;
                check_count(hidden, &format!("{module} hidden channels"), apath)?;
                let (pools, act1): (Vec<i64>, bool) = if module == "SPP" {
                    a.at_most(3, "c1, c2, k")?;
                    let ks = match a.v.get(2) {
                        None => vec![5, 9, 13],
                        Some(Arg::List(l)) => l
                            .iter()
                            .map(|x| match x {
                                Arg::Int(k) => check_count(*k, "SPP kernel", apath),
                                _ => Err(err("SPP: the kernels are whole numbers", apath)),
                            })
                            .collect::<Result<_, _>>()?,
                        Some(x) => {
                            return Err(err(
                                format!(
                                    "SPP: the kernels are a list like [5, 9, 13], not {}",
                                    x.py()
                                ),
                                apath,
                            ))
                        }
                    };
                    (ks, true)
                } else {
                    a.at_most(
                        3,
                        "c1, c2, k (the legacy SPPF: n and shortcut are not supported)",
                    )?;
                    let k = check_count(a.int(2, Some(5), "kernel")?, "SPPF kernel", apath)?;
                    (vec![k; 3], true)
                };
                let mut nodes = vec![conv("cv1", "$hidden", 1).node()];
                let mut cat = vec!["cv1".to_string()];
                for (j, k) in pools.iter().enumerate() {
                    let mut p = vec![
                        ("id", Emit::str(format!("m{j}"))),
                        ("op", Emit::str("maxpool")),
                    ];
                    if module == "SPP" {
                        p.push(("in", Emit::str("cv1")));
                    }
                    p.extend([
                        ("kernel", Emit::Int(*k)),
                        ("stride", Emit::Int(1)),
                        ("padding", Emit::Int(k / 2)),
                    ]);
                    nodes.push(flow(p));
                    cat.push(format!("m{j}"));
                }
                let cat: Vec<&str> = cat.iter().map(String::as_str).collect();
                nodes.push(op_node("cat", "concat", vec![("in", strs(&cat))]));
                nodes.push(conv("cv2", "$out", 1).node());
                let ks: Vec<String> = pools.iter().map(i64::to_string).collect();
                let bname = format!("{}_k{}", module.to_ascii_lowercase(), ks.join("_"));
                self.block(&bname, &["hidden", "out"], nodes);
                self.use_node(
                    &id,
                    &bname,
                    &[ref_of(froms[0])],
                    vec![("hidden", Emit::Int(hidden)), ("out", Emit::Int(c2))],
                );
                let _ = act1;
                self.conv_leaves(true, 2);
                self.leaves += if module == "SPP" {
                    pools.len() as u64
                } else {
                    1
                };
                out = Feat { ch: c2, ..f };
            }
            "Concat" => {
                if args.len() > 1 || !matches!(args.first(), None | Some(Arg::Int(1))) {
                    return Err(err(
                        "Concat: only the channel dimension (1) is supported",
                        apath,
                    ));
                }
                let ins: Vec<String> = froms.iter().map(|&j| ref_of(j)).collect();
                let ins: Vec<&str> = ins.iter().map(String::as_str).collect();
                self.nodes
                    .push(op_node(&id, "concat", vec![("in", strs(&ins))]));
                self.leaves += 1;
                let f0 = feat_of(froms[0]);
                let ch = froms.iter().map(|&j| feat_of(j).ch).sum();
                out = Feat { ch, ..f0 };
                full = args.clone();
            }
            "nn.Upsample" => {
                let f = single("nn.Upsample")?;
                let (size, scale, mode) = (args.first(), args.get(1), args.get(2));
                if !matches!(size, None | Some(Arg::None)) || args.len() > 3 {
                    return Err(err(
                        "nn.Upsample: only [None, scale, mode] is supported",
                        apath,
                    ));
                }
                let s = match scale {
                    Some(Arg::Int(s)) => check_count(*s, "nn.Upsample scale", apath)?,
                    Some(Arg::Float(x)) if x.fract() == 0.0 && *x >= 1.0 => *x as i64,
                    _ => {
                        return Err(err(
                            "nn.Upsample: the scale is a whole number like 2",
                            apath,
                        ))
                    }
                };
                let mode = match mode {
                    None => "nearest".to_string(),
                    Some(Arg::Str(m)) if m == "nearest" => m.clone(),
                    Some(x) => {
                        return Err(err(
                            format!("nn.Upsample: mode {} is not supported (nearest)", x.py()),
                            apath,
                        ))
                    }
                };
                self.nodes.push(op_node(
                    &id,
                    "upsample",
                    vec![
                        ("in", Emit::str(ref_of(f))),
                        ("scale", Emit::Int(s)),
                        ("mode", Emit::str(mode)),
                    ],
                ));
                self.leaves += n_seq as u64;
                let x = feat_of(f);
                out = Feat {
                    ch: x.ch,
                    hw: (x.hw.0 * s, x.hw.1 * s),
                    probe: (x.probe.0 * s, x.probe.1 * s),
                };
                // thop 2.x: nearest upsampling costs 0 (0.1.1: one per output element).
                self.thop_adjust -= out.ch * out.hw.0 * out.hw.1;
            }
            "nn.ConvTranspose2d" => {
                // PyTorch's own module (bias, no batch norm or activation), its output
                // channels scaled like a Conv's (parse_model's base_modules).
                a.at_most(5, "in_channels, out_channels, kernel_size, stride, padding")?;
                let k = check_count(a.int(2, None, "kernel")?, "kernel", apath)?;
                let s = check_count(a.int(3, Some(1), "stride")?, "stride", apath)?;
                let p = a.int(4, Some(0), "padding")?;
                if p < 0 || 2 * p >= k {
                    return Err(err(
                        format!(
                            "nn.ConvTranspose2d: padding {p} must be less than half the kernel {k}"
                        ),
                        apath,
                    ));
                }
                if n_seq > 1 {
                    return Err(err("nn.ConvTranspose2d cannot be repeated", &v[1].path));
                }
                self.nodes.push(op_node(
                    &id,
                    "conv_transpose2d",
                    vec![
                        ("in", Emit::str(ref_of(froms[0]))),
                        ("out", Emit::Int(c2)),
                        ("kernel", Emit::Int(k)),
                        ("stride", Emit::Int(s)),
                        ("padding", Emit::Int(p)),
                    ],
                ));
                self.leaves += 1;
                let x = feat_of(froms[0]);
                let up = |h: i64| (h - 1) * s - 2 * p + k;
                out = Feat {
                    ch: c2,
                    hw: (up(x.hw.0), up(x.hw.1)),
                    probe: (up(x.probe.0), up(x.probe.1)),
                };
                // thop 2.x counts a transposed convolution over its input (0.1.1: over its
                // output): c1·c2·k² per input position instead of per output position.
                self.thop_adjust += c1 * c2 * k * k * (x.hw.0 * x.hw.1 - out.hw.0 * out.hw.1);
            }
            "nn.MaxPool2d" => {
                let f = single("nn.MaxPool2d")?;
                let a = Args {
                    v: args.clone(),
                    path: apath,
                    module,
                };
                a.at_most(3, "kernel_size, stride, padding")?;
                let k = check_count(a.int(0, None, "kernel")?, "kernel", apath)?;
                let s = check_count(a.opt_int(1)?.unwrap_or(k), "stride", apath)?;
                let p = a.int(2, Some(0), "padding")?;
                if p < 0 || 2 * p > k {
                    return Err(err(
                        format!("nn.MaxPool2d: padding {p} is more than half the kernel {k}"),
                        apath,
                    ));
                }
                self.nodes.push(op_node(
                    &id,
                    "maxpool",
                    vec![
                        ("in", Emit::str(ref_of(f))),
                        ("kernel", Emit::Int(k)),
                        ("stride", Emit::Int(s)),
                        ("padding", Emit::Int(p)),
                    ],
                ));
                self.leaves += 1;
                let x = feat_of(f);
                out = Feat {
                    ch: x.ch,
                    hw: (win(x.hw.0, k, s, p), win(x.hw.1, k, s, p)),
                    probe: (win(x.probe.0, k, s, p), win(x.probe.1, k, s, p)),
                };
            }
            "nn.ZeroPad2d" => {
                let f = single("nn.ZeroPad2d")?;
                let pads = match args.as_slice() {
                    [Arg::List(l)] if l.len() == 4 => l
                        .iter()
                        .map(|x| match x {
                            Arg::Int(p) if (0..=MAX_COUNT).contains(p) => Ok(*p),
                            _ => Err(err(
                                "nn.ZeroPad2d: the paddings are whole numbers ≥ 0",
                                apath,
                            )),
                        })
                        .collect::<Result<Vec<i64>, _>>()?,
                    [Arg::Int(p)] if (0..=MAX_COUNT).contains(p) => vec![*p; 4],
                    _ => {
                        return Err(err(
                            "nn.ZeroPad2d: write [[left, right, top, bottom]] or [p]",
                            apath,
                        ))
                    }
                };
                // torch: (left, right, top, bottom); archscope: [top, left, bottom, right].
                self.nodes.push(op_node(
                    &id,
                    "zero_pad2d",
                    vec![
                        ("in", Emit::str(ref_of(f))),
                        (
                            "padding",
                            ints(&[pads[2], pads[0], pads[3], pads[1]]).flow(),
                        ),
                    ],
                ));
                self.leaves += 1;
                let x = feat_of(f);
                out = Feat {
                    ch: x.ch,
                    hw: (x.hw.0 + pads[2] + pads[3], x.hw.1 + pads[0] + pads[1]),
                    probe: (x.probe.0 + pads[2] + pads[3], x.probe.1 + pads[0] + pads[1]),
                };
            }
            "Classify" => {
                a.at_most(6, "c1, c2, k, s, p, g")?;
                let k = a.int(2, Some(1), "kernel")?;
                let s = a.int(3, Some(1), "stride")?;
                let p = a.opt_int(4)?.unwrap_or(k / 2);
                let g = a.int(5, Some(1), "groups")?;
                if froms.len() != 1 {
                    return Err(err("Classify: one input is supported", &v[0].path));
                }
                let nodes = vec![
                    conv("conv", 1280, k).stride(s).padding(p).groups(g).node(),
                    op_node("pool", "global_avgpool", vec![]),
                    op_node("flatten", "flatten", vec![]),
                    op_node("drop", "dropout", vec![("p", Emit::Float(0.0))]),
                    op_node("linear", "linear", vec![("out", Emit::str("$out"))]),
                    op_node(
                        "softmax",
                        "softmax",
                        vec![("dim", Emit::Int(1)), ("functional", Emit::Bool(true))],
                    ),
                ];
                let bname = format!("classify_k{k}_s{s}_p{p}_g{g}");
                self.block(&bname, &["out"], nodes);
                self.use_node(
                    &id,
                    &bname,
                    &[ref_of(froms[0])],
                    vec![("out", Emit::Int(c2))],
                );
                self.conv_leaves(true, 1);
                self.leaves += 3;
                self.outputs = vec![id.clone()];
                out = Feat {
                    ch: c2,
                    hw: (1, 1),
                    probe: (1, 1),
                };
            }
            "Detect" | "Segment" | "Pose" => {
                let mut hargs = args.clone();
                if module == "Segment" {
                    // Segment(nc, nm, npr): npr scales like a width.
                    let npr = match hargs.get(2) {
                        Some(Arg::Int(x)) => *x,
                        None => 256,
                        Some(x) => {
                            return Err(err(
                                format!("Segment: npr is a whole number, not {}", x.py()),
                                apath,
                            ))
                        }
                    };
                    while hargs.len() < 3 {
                        hargs.push(Arg::Int(if hargs.len() == 1 { 32 } else { 256 }));
                    }
                    hargs[2] = Arg::Int(make_divisible((npr as f64).min(env.max_ch) * env.width));
                }
                let chs: Vec<i64> = froms.iter().map(|&j| feat_of(j).ch).collect();
                hargs.extend([
                    Arg::Int(env.reg_max),
                    Arg::None,
                    Arg::List(chs.iter().map(|&c| Arg::Int(c)).collect()),
                ]);
                full = hargs.clone();
                out = self.head(
                    &id,
                    module,
                    &hargs,
                    &froms.iter().map(|&j| ref_of(j)).collect::<Vec<_>>(),
                    &froms.iter().map(|&j| feat_of(j)).collect::<Vec<_>>(),
                    env,
                    apath,
                )?;
            }
            _ => unreachable!("every module of MODULES is handled"),
        }
        let _ = start;
        let params_path = id.clone();
        self.rows.push(Row {
            index: i,
            from: from_text,
            n,
            module: py_type(module),
            arguments: Arg::List(full).py(),
            path: params_path,
        });
        let _ = start_leaves;
        if out.hw.0 < 1 || out.hw.1 < 1 {
            return Err(err(
                format!("layer {i} ({module}): the map is empty at this input size"),
                &r.path,
            ));
        }
        Ok(out)
    }

    /// Leaf modules of `count` Ultralytics `Conv`s: conv and bn each, and the activation — the
    /// one SiLU instance every default `Conv` shares (counted once), or an Identity each.
    fn conv_leaves(&mut self, act: bool, count: i64) {
        self.leaves += 2 * count as u64;
        if act {
            self.shared_act = true;
        } else {
            self.leaves += count as u64;
        }
    }

    fn block(&mut self, name: &str, params: &[&str], nodes: Vec<Emit>) {
        if self.blocks.contains_key(name) {
            return;
        }
        let ps = Emit::Map(
            params
                .iter()
                .map(|p| (p.to_string(), Emit::str("required")))
                .collect(),
        )
        .flow();
        self.blocks.insert(
            name.to_string(),
            Emit::map(vec![("params", ps), ("nodes", Emit::Seq(nodes))]),
        );
    }

    fn use_node(&mut self, id: &str, block: &str, ins: &[String], with: Vec<(&str, Emit)>) {
        let inp = if ins.len() == 1 {
            Emit::str(&ins[0])
        } else {
            Emit::Seq(ins.iter().map(Emit::str).collect())
        };
        self.nodes.push(flow(vec![
            ("id", Emit::str(id)),
            ("use", Emit::str(block)),
            ("in", inp),
            ("with", flow(with)),
        ]));
    }

    fn bottleneck_block(&mut self) {
        self.block(
            "bottleneck",
            &["hidden", "out", "k1", "k2", "add"],
            vec![
                conv("cv1", "$hidden", "$k1").padding("$(k1 // 2)").node(),
                conv("cv2", "$out", "$k2").padding("$(k2 // 2)").node(),
                op_node(
                    "add",
                    "add",
                    vec![("in", strs(&["cv2", "$in"])), ("when", Emit::str("$add"))],
                ),
            ],
        );
    }

    /// C3 (and C3k) with `n` bottlenecks, named `m_0`, `m_1`, … as Ultralytics' nn.Sequential
    /// `m` names them (`m.0`, …); returns the block's name.
    fn c3_block(&mut self, n: i64) -> String {
        self.bottleneck_block();
        let name = format!("c3_n{n}");
        let mut nodes = vec![conv("cv1", "$hidden", 1).node()];
        for j in 0..n {
            nodes.push(flow(vec![
                ("id", Emit::str(format!("m_{j}"))),
                ("use", Emit::str("bottleneck")),
                (
                    "with",
                    flow(vec![
                        ("hidden", Emit::str("$hidden")),
                        ("out", Emit::str("$hidden")),
                        ("k1", Emit::str("$k1")),
                        ("k2", Emit::str("$k2")),
                        ("add", Emit::str("$add")),
                    ]),
                ),
            ]));
        }
        let last = format!("m_{}", n - 1);
        nodes.extend([
            conv("cv2", "$hidden", 1).input("$in").node(),
            op_node("cat", "concat", vec![("in", strs(&[&last, "cv2"]))]),
            conv("cv3", "$out", 1).node(),
        ]);
        self.block(&name, &["hidden", "out", "k1", "k2", "add"], nodes);
        name
    }

    /// PSABlock and its Attention for `heads` heads of key size `kd` and value size `hd`
    /// (`c` channels); returns the PSABlock's block name.
    fn psa_blocks(&mut self, heads: i64, kd: i64, hd: i64, c: i64) -> String {
        let att = format!("attention_h{heads}_k{kd}_v{hd}");
        let per = 2 * kd + hd;
        let mut nodes = vec![conv("qkv", c + 2 * heads * kd, 1).linear().node()];
        // v as the positional encoding sees it: each head's value channels, in head order.
        let mut vs = vec![];
        for j in 0..heads {
            let name = format!("v{j}");
            nodes.push(op_node(
                &name,
                "slice",
                vec![
                    ("in", Emit::str("qkv")),
                    ("dim", Emit::Int(1)),
                    ("start", Emit::Int(j * per + 2 * kd)),
                    ("end", Emit::Int((j + 1) * per)),
                ],
            ));
            vs.push(name);
        }
        let v_map = if heads > 1 {
            let v: Vec<&str> = vs.iter().map(String::as_str).collect();
            nodes.push(op_node("v", "concat", vec![("in", strs(&v))]));
            "v".to_string()
        } else {
            vs[0].clone()
        };
        nodes.extend([
            conv("pe", c, 3)
                .input(v_map.as_str())
                .padding(1)
                .groups(c)
                .linear()
                .node(),
            op_node(
                "heads",
                "reshape",
                vec![
                    ("in", Emit::str("qkv")),
                    ("shape", ints(&[heads, per, -1]).flow()),
                ],
            ),
            op_node(
                "qkv_split",
                "split",
                vec![("dim", Emit::Int(2)), ("sizes", ints(&[kd, kd, hd]).flow())],
            ),
        ]);
        // q, k and v as N×heads×tokens×dim.
        for (j, name) in ["q", "k", "vt"].iter().enumerate() {
            nodes.push(op_node(
                *name,
                "transpose",
                vec![
                    ("in", Emit::str(format!("qkv_split:{j}"))),
                    ("dims", ints(&[2, 3]).flow()),
                ],
            ));
        }
        nodes.extend([
            op_node(
                "attn",
                "scaled_dot_product_attention",
                vec![("in", strs(&["q", "k", "vt"]))],
            ),
            op_node("back", "transpose", vec![("dims", ints(&[2, 3]).flow())]),
            op_node(
                "map",
                "reshape",
                vec![(
                    "shape",
                    Emit::Seq(vec![Emit::Int(c), Emit::str("$h"), Emit::str("$w")]).flow(),
                )],
            ),
            op_node("sum", "add", vec![("in", strs(&["map", "pe"]))]),
            conv("proj", c, 1).linear().node(),
        ]);
        self.block(&att, &["h", "w"], nodes);
        let psa = format!("psa_block_c{c}");
        self.block(
            &psa,
            &["h", "w"],
            vec![
                flow(vec![
                    ("id", Emit::str("attn")),
                    ("use", Emit::str(&att)),
                    (
                        "with",
                        flow(vec![("h", Emit::str("$h")), ("w", Emit::str("$w"))]),
                    ),
                ]),
                op_node("add1", "add", vec![("in", strs(&["attn", "$in"]))]),
                // Ultralytics' nn.Sequential `ffn`: ffn.0, ffn.1.
                conv("ffn_0", 2 * c, 1).node(),
                conv("ffn_1", c, 1).linear().node(),
                op_node("add2", "add", vec![("in", strs(&["ffn_1", "add1"]))]),
            ],
        );
        psa
    }

    /// Detect, Segment or Pose on `ins`: per level the box branch (cv2, 4·reg_max channels),
    /// the class branch (cv3) and the task branch (cv4), flattened and concatenated over the
    /// levels; DFL (a fixed 1×1 convolution over softmax-ed bins) on the box distances; the
    /// class scores through a sigmoid.
    #[allow(clippy::too_many_arguments)]
    fn head(
        &mut self,
        id: &str,
        module: &str,
        args: &[Arg],
        ins: &[String],
        feats: &[Feat],
        env: &Env,
        apath: &YamlPath,
    ) -> Result<Feat, Diagnostic> {
        let nc = match args.first() {
            Some(Arg::Int(x)) => check_count(*x, "nc", apath)?,
            _ => {
                return Err(err(
                    format!("{module}: the first argument is the number of classes (nc)"),
                    apath,
                ))
            }
        };
        let reg_max = env.reg_max;
        let ch = feats.iter().map(|f| f.ch).collect::<Vec<_>>();
        let nl = ch.len() as i64;
        let c2 = 16.max(ch[0] / 4).max(reg_max * 4);
        let c3 = ch[0].max(nc.min(100));
        let mut extra: Option<(String, i64, i64)> = None; // (name, channels, branch width)
        let mut nm = 0;
        let mut npr = 0;
        let mut kpt = (0, 0);
        match module {
            "Segment" => {
                nm = match args.get(1) {
                    Some(Arg::Int(x)) => check_count(*x, "nm", apath)?,
                    _ => 32,
                };
                npr = match args.get(2) {
                    Some(Arg::Int(x)) => check_count(*x, "npr", apath)?,
                    _ => 256,
                };
                extra = Some(("mc".into(), nm, (ch[0] / 4).max(nm)));
            }
            "Pose" => {
                kpt = match args.get(1) {
                    Some(Arg::List(l)) => match l.as_slice() {
                        [Arg::Int(a), Arg::Int(b)]
                            if (1..=1000).contains(a) && (2..=3).contains(b) =>
                        {
                            (*a, *b)
                        }
                        _ => return Err(err("Pose: kpt_shape is [keypoints, 2 or 3]", apath)),
                    },
                    None => (17, 3),
                    Some(x) => {
                        return Err(err(
                            format!("Pose: kpt_shape is [keypoints, dims], not {}", x.py()),
                            apath,
                        ))
                    }
                };
                let nk = kpt.0 * kpt.1;
                extra = Some(("kpts".into(), nk, (ch[0] / 4).max(nk)));
            }
            _ => {}
        }
        // Per level, as Ultralytics' ModuleLists name them (`_` reads as `.`): the box branch
        // cv2.l (Conv 3×3, Conv 3×3, Conv2d to 4·reg_max), the class branch cv3.l (the same
        // to nc, or, in the current head, DWConv 3×3 + Conv 1×1 twice, then the Conv2d), the
        // task branch cv4.l; each flattened to N×C×(h·w).
        // The strides as Ultralytics measures them (a 256×256 probe), and each level's grid at
        // the analysed input: the anchors the decoding layers are built with.
        self.strides = feats
            .iter()
            .map(|f| (256 / f.probe.0.max(1)) as u64)
            .collect();
        let strides: Vec<i64> = self.strides.iter().map(|&s| s as i64).collect();
        let heights: Vec<i64> = feats.iter().map(|f| f.hw.0).collect();
        let widths: Vec<i64> = feats.iter().map(|f| f.hw.1).collect();
        let levels = |mut v: Vec<(&'static str, Emit)>| {
            v.extend([
                ("heights", ints(&heights).flow()),
                ("widths", ints(&widths).flow()),
                ("strides", ints(&strides).flow()),
            ]);
            v
        };
        let mut nodes = vec![];
        let mut boxes = vec![];
        let mut scores = vec![];
        let mut extras = vec![];
        let flat = |id: String, c: i64| {
            flow(vec![
                ("id", Emit::Str(id)),
                ("op", Emit::str("reshape")),
                ("shape", ints(&[c, -1]).flow()),
            ])
        };
        // Conv 3×3, Conv 3×3, Conv2d 1×1 (`mid` channels, then `out`) on level `l`'s input.
        let branch = |nodes: &mut Vec<Emit>, name: &str, l: usize, mid: i64, out: i64| {
            nodes.extend([
                conv(format!("{name}_{l}_0"), mid, 3)
                    .input(format!("$in{l}"))
                    .padding(1)
                    .node(),
                conv(format!("{name}_{l}_1"), mid, 3).padding(1).node(),
                conv(format!("{name}_{l}_2"), out, 1).plain().node(),
            ]);
        };
        for (l, &cl) in ch.iter().enumerate() {
            branch(&mut nodes, "cv2", l, c2, 4 * reg_max);
            nodes.push(flat(format!("box_{l}"), 4 * reg_max));
            boxes.push(format!("box_{l}"));
            if self.legacy {
                branch(&mut nodes, "cv3", l, c3, nc);
            } else {
                nodes.extend([
                    conv(format!("cv3_{l}_0_0"), cl, 3)
                        .input(format!("$in{l}"))
                        .padding(1)
                        .groups(cl)
                        .node(),
                    conv(format!("cv3_{l}_0_1"), c3, 1).node(),
                    conv(format!("cv3_{l}_1_0"), c3, 3)
                        .padding(1)
                        .groups(c3)
                        .node(),
                    conv(format!("cv3_{l}_1_1"), c3, 1).node(),
                    conv(format!("cv3_{l}_2"), nc, 1).plain().node(),
                ]);
            }
            nodes.push(flat(format!("cls_{l}"), nc));
            scores.push(format!("cls_{l}"));
            if let Some((name, out, mid)) = &extra {
                branch(&mut nodes, "cv4", l, *mid, *out);
                nodes.push(flat(format!("{name}_{l}"), *out));
                extras.push(format!("{name}_{l}"));
            }
        }
        let cat = |v: &Vec<String>| Emit::Seq(v.iter().map(Emit::str).collect());
        nodes.push(op_node(
            "boxes",
            "concat",
            vec![("in", cat(&boxes)), ("dim", Emit::Int(2))],
        ));
        nodes.push(op_node(
            "scores",
            "concat",
            vec![("in", cat(&scores)), ("dim", Emit::Int(2))],
        ));
        // DFL: softmax over the reg_max bins of each side, then their expectation (a 1×1
        // convolution with the fixed weights 0, 1, …, reg_max-1).
        let bins: Vec<i64> = (0..reg_max).collect();
        nodes.extend([
            op_node(
                "dfl_bins",
                "reshape",
                vec![
                    ("in", Emit::str("boxes")),
                    ("shape", ints(&[4, reg_max, -1]).flow()),
                ],
            ),
            op_node("dfl_t", "transpose", vec![("dims", ints(&[1, 2]).flow())]),
            op_node(
                "dfl_softmax",
                "softmax",
                vec![("dim", Emit::Int(1)), ("functional", Emit::Bool(true))],
            ),
            // Ultralytics' `dfl.conv`.
            conv("dfl_conv", 1, 1)
                .with("bn", Emit::Bool(false))
                .linear()
                .with("trainable", Emit::Bool(false))
                .with("weight_values", ints(&bins).flow())
                .node(),
            op_node("dist", "reshape", vec![("shape", ints(&[4, -1]).flow())]),
            // make_anchors + dist2bbox (xywh) × stride, as Detect._inference decodes them.
            flow(levels(vec![
                ("id", Emit::str("dbox")),
                ("op", Emit::str("dist2bbox")),
            ])),
            op_node(
                "cls",
                "sigmoid",
                vec![
                    ("in", Emit::str("scores")),
                    ("functional", Emit::Bool(true)),
                ],
            ),
        ]);
        let mut out_cat = vec!["dbox".to_string(), "cls".to_string()];
        if !extras.is_empty() {
            let name = extra.as_ref().map(|e| e.0.clone()).unwrap_or_default();
            nodes.push(op_node(
                &name,
                "concat",
                vec![("in", cat(&extras)), ("dim", Emit::Int(2))],
            ));
            if module == "Pose" {
                // Pose.kpts_decode: x, y to pixels around the cells, visibility sigmoid.
                let mut n = levels(vec![
                    ("id", Emit::str("kpts_decoded")),
                    ("op", Emit::str("keypoint_decode")),
                ]);
                n.push(("dims", Emit::Int(kpt.1)));
                nodes.push(flow(n));
                out_cat.push("kpts_decoded".into());
            } else {
                out_cat.push(name);
            }
        }
        nodes.push(op_node(
            "out",
            "concat",
            vec![("in", cat(&out_cat)), ("dim", Emit::Int(1))],
        ));
        let mut leaves = 0u64;
        // cv2: 2 Conv + Conv2d per level; cv3 likewise (legacy) or 4 Conv + Conv2d; dfl.conv.
        let conv_count =
            nl * (2 + if self.legacy { 2 } else { 4 }) + if extra.is_some() { 2 * nl } else { 0 };
        leaves += (2 * nl + if extra.is_some() { nl } else { 0 }) as u64 + 1;
        let mut block_out = "out".to_string();
        if module == "Segment" {
            // Proto on the first level: Conv 3×3, ConvTranspose2d(2, 2), Conv 3×3, Conv 1×1.
            nodes.extend([
                conv("proto_cv1", npr, 3).input("$in0").padding(1).node(),
                op_node(
                    "proto_upsample",
                    "conv_transpose2d",
                    vec![
                        ("out", Emit::Int(npr)),
                        ("kernel", Emit::Int(2)),
                        ("stride", Emit::Int(2)),
                    ],
                ),
                conv("proto_cv2", npr, 3).padding(1).node(),
                // Ultralytics' `proto.cv3` (the model's second output, named `proto` here).
                conv("proto", nm, 1).node(),
            ]);
            leaves += 1;
            self.conv_leaves(true, 3);
            // thop 2.x counts ConvTranspose2d(2, 2) over its input (0.1.1: over its output, 4×).
            let (h0, w0) = feats[0].hw;
            self.thop_adjust -= 3 * npr * npr * 4 * h0 * w0;
            block_out = "out".into();
        }
        self.conv_leaves(true, conv_count);
        self.leaves += leaves;
        let bname = module.to_ascii_lowercase();
        let mut b = Emit::map(vec![
            ("nodes", Emit::Seq(nodes)),
            ("output", Emit::str(&block_out)),
        ]);
        if let Emit::Map(m) = &mut b {
            m.insert(
                0,
                (
                    "description".into(),
                    Emit::str(format!("Ultralytics {module}: {nl} levels, {nc} classes")),
                ),
            );
        }
        self.blocks.insert(format!("{bname}_{id}"), b);
        let inp = Emit::Seq(ins.iter().map(Emit::str).collect());
        self.nodes.push(flow(vec![
            ("id", Emit::str(id)),
            ("use", Emit::str(format!("{bname}_{id}"))),
            ("in", inp),
        ]));
        self.outputs = vec![id.to_string()];
        if module == "Segment" {
            self.outputs.push(format!("{id}.proto"));
        }
        let anchors: i64 = feats.iter().map(|f| f.hw.0 * f.hw.1).sum();
        Ok(Feat {
            ch: 4 + nc,
            hw: (1, anchors),
            probe: (1, 1),
        })
    }
}

/// Ultralytics' state-dict prefix of the translated layer at `path` (`conv_module`: a
/// convolution followed by its batch norm, `path.bn`: Ultralytics' `Conv`, whose convolution
/// is its `.conv`). Node `mK` is `model.K`; inside it an `_` in a node name reads as a `.`
/// (`cv2_0_1` is `cv2.0.1`, `m_0` is `m.0`), and the segment head's `proto` (the model's
/// second output) is `Proto.cv3`.
pub fn state_dict_name(path: &str, conv_module: bool) -> String {
    let mut parts = path.split('.');
    let top = parts.next().unwrap_or("");
    let mut out = format!("model.{}", top.strip_prefix('m').unwrap_or(top));
    let rest: Vec<&str> = parts.collect();
    for (i, c) in rest.iter().enumerate() {
        out.push('.');
        if i == 0 && *c == "proto" && rest.len() <= 2 {
            out.push_str("proto.cv3");
        } else {
            out.push_str(&c.replace('_', "."));
        }
    }
    if conv_module {
        out.push_str(".conv");
    }
    out
}

/// The `weights_names:` rules that give every layer with weights of the translation `text`
/// its Ultralytics state-dict name, in layer order; `None` when the translation does not build
/// (the command that reads it then says why).
fn state_dict_names(text: &str) -> Option<Vec<(String, String)>> {
    let doc = Document::parse("translation", text).ok()?;
    let net = crate::graph::build_network(&doc, &crate::graph::BuildOptions::default()).ok()?;
    let names: std::collections::HashSet<&str> =
        net.nodes.iter().map(|n| n.name.as_str()).collect();
    Some(
        net.nodes
            .iter()
            .filter(|n| !n.layer.weights().is_empty())
            .map(|n| {
                let module = names.contains(format!("{}.bn", n.name).as_str());
                (n.name.clone(), state_dict_name(&n.name, module))
            })
            .collect(),
    )
}

/// What `model.info()` prints, from archscope's analysis of the translated model (its MACs
/// counted under the thop convention).
#[derive(Debug, Clone, PartialEq)]
pub struct Info {
    pub layers: u64,
    pub parameters: u64,
    pub gradients: u64,
    /// thop's MACs (ultralytics-thop, as `get_flops` counts) of one forward pass at the
    /// analysed input.
    pub thop_macs: u64,
    /// Ultralytics' GFLOPs: 2 × thop's MACs / 1e9 (get_flops).
    pub gflops: f64,
    /// Parameters per table row.
    pub row_params: Vec<u64>,
}

/// The figures `model.info()` and `parse_model`'s table print, from `a` (an analysis of the
/// translated model whose MACs were recounted under the thop convention).
pub fn info(model: &Model, a: &Analysis) -> Info {
    let batch = a
        .layers
        .first()
        .and_then(|l| l.outputs.first())
        .and_then(|s| s.0.first())
        .copied()
        .unwrap_or(1);
    let row_params = model
        .rows
        .iter()
        .map(|r| {
            let dotted = format!("{}.", r.path);
            a.layers
                .iter()
                .filter(|l| l.name == r.path || l.name.starts_with(&dotted))
                .map(|l| l.params.total())
                .sum()
        })
        .collect();
    let thop = (a.totals.macs as i64 + model.thop_adjust * batch as i64).max(0) as u64;
    Info {
        layers: model.layers,
        parameters: a.totals.params,
        gradients: a.totals.trainable,
        thop_macs: thop,
        gflops: thop as f64 * 2.0 / 1e9,
        row_params,
    }
}

/// Python's `f"{n:,}"`.
fn commas(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The same figures as JSON (`summary --ultralytics --format json` puts them under
/// `ultralytics`): the summary line's layers, parameters, gradients and GFLOPs (as printed,
/// one decimal, and unrounded), thop's MACs, the scale, the strides and the per-module table.
pub fn info_json(model: &Model, info: &Info) -> serde_json::Value {
    let modules: Vec<serde_json::Value> = model
        .rows
        .iter()
        .zip(&info.row_params)
        .map(|(r, p)| {
            serde_json::json!({
                "index": r.index,
                "from": r.from,
                "n": r.n,
                "params": p,
                "module": r.module,
                "arguments": r.arguments,
                "path": r.path,
            })
        })
        .collect();
    serde_json::json!({
        "title": model.title,
        "scale": model.scale,
        "layers": info.layers,
        "parameters": info.parameters,
        "gradients": info.gradients,
        "gflops": info.gflops,
        "gflops_printed": format!("{:.1}", info.gflops),
        "thop_macs": info.thop_macs,
        "strides": model.strides,
        "modules": modules,
    })
}

/// Ultralytics' per-module table (as `parse_model` prints it) and its summary line (as
/// `model.info()` prints it at the analysed input).
pub fn render_info(model: &Model, info: &Info) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:>3}{:>20}{:>3}{:>10}  {:<45}{:<30}",
        "", "from", "n", "params", "module", "arguments"
    );
    for (r, p) in model.rows.iter().zip(&info.row_params) {
        let _ = writeln!(
            s,
            "{:>3}{:>20}{:>3}{:>10}  {:<45}{:<30}",
            r.index, r.from, r.n, p, r.module, r.arguments
        );
    }
    let _ = writeln!(
        s,
        "{} summary: {} layers, {} parameters, {} gradients, {:.1} GFLOPs",
        if model.title.is_empty() {
            "Model"
        } else {
            &model.title
        },
        commas(info.layers),
        commas(info.parameters),
        commas(info.gradients),
        info.gflops
    );
    let _ = writeln!(
        s,
        "thop MACs: {} (GFLOPs = 2 × MACs / 1e9)",
        commas(info.thop_macs)
    );
    s
}
