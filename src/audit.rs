//! Design audit of a built network: budget checks for CI gates (parameters, MACs, FLOPs, peak
//! activation memory, minimum final receptive field) and design findings, each naming the
//! layer, why it matters and the fix, with the saving computed exactly where there is one.
//! Findings read layers only through the [`Layer`](crate::layers::Layer) trait (`weights`,
//! `window`, `norm`, `category`, `is_view`) and the analysis (shapes, fields); nothing here
//! matches on op names. The window and kernel rules work per spatial axis at every rank (1-D
//! samples; 2-D rows, columns and pixels; 3-D frames, rows, columns and voxels). Budget values parse with [`parse_quantity`] (K/M/G ×1000,
//! KiB/MiB/GiB ×1024, scientific notation; whole numbers only).

use serde_json::{json, Value};

use crate::analysis::Analysis;
use crate::error::Error;
use crate::geometry::unit_name;
use crate::graph::{NetNode, Network};
use crate::layers::{Category, Shape, WeightInfo, WeightedKind, Window};
use crate::receptive::{fmt_q, q_f64, Q};
use crate::report::{coverage, human_bytes, human_count};

/// What a budget value counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quantity {
    /// Parameters, MACs, FLOPs, pixels: `25M`, `4G`, `1.5K` (×1000).
    Count,
    /// Bytes: `2GiB`, `512MiB` (×1024), `2G`/`2GB` (×1000), `100B`.
    Bytes,
}

/// Parses `25M`, `4G`, `2.5G`, `2GiB`, `4096`, `2.5e7` (scientific notation, optionally with a
/// unit: `1.5e3K`), exactly: a value that is not a whole number (`1.5`, `1e-3`, `1.0005K`) is
/// refused, never rounded.
pub fn parse_quantity(text: &str, kind: Quantity) -> Result<u64, String> {
    let s = text.trim();
    // The number: digits, `.`, `_`, then an optional exponent `e`/`E` with an optional sign.
    let b = s.as_bytes();
    let mut split = b
        .iter()
        .position(|&c| !(c.is_ascii_digit() || c == b'.' || c == b'_'))
        .unwrap_or(b.len());
    let mut exp: i64 = 0;
    if split < b.len() && (b[split] == b'e' || b[split] == b'E') {
        let mut j = split + 1;
        if j < b.len() && (b[j] == b'+' || b[j] == b'-') {
            j += 1;
        }
        let digits = b[j..].iter().take_while(|c| c.is_ascii_digit()).count();
        if digits > 0 {
            exp = s[split + 1..j + digits]
                .parse()
                .map_err(|_| format!("`{text}`: the exponent is too large"))?;
            split = j + digits;
        }
    }
    let num_end = s[..split].find(['e', 'E']).unwrap_or(split);
    let (num, unit) = (s[..num_end].replace('_', ""), s[split..].trim());
    let mult: u64 = match (kind, unit) {
        (_, "") => 1,
        (_, "K" | "k") => 1_000,
        (_, "M") => 1_000_000,
        (_, "G") => 1_000_000_000,
        (_, "T") => 1_000_000_000_000,
        (Quantity::Bytes, "B") => 1,
        (Quantity::Bytes, "KB" | "kB") => 1_000,
        (Quantity::Bytes, "MB") => 1_000_000,
        (Quantity::Bytes, "GB") => 1_000_000_000,
        (Quantity::Bytes, "TB") => 1_000_000_000_000,
        (Quantity::Bytes, "KiB") => 1 << 10,
        (Quantity::Bytes, "MiB") => 1 << 20,
        (Quantity::Bytes, "GiB") => 1 << 30,
        (Quantity::Bytes, "TiB") => 1 << 40,
        _ => {
            return Err(format!(
                "`{text}`: unknown unit `{unit}`; use {}",
                match kind {
                    Quantity::Count =>
                        "K, M, G or T (×1000), e.g. 25M, or scientific notation, e.g. 2.5e7",
                    Quantity::Bytes => "KiB, MiB, GiB (×1024) or KB, MB, GB (×1000), e.g. 2GiB",
                }
            ))
        }
    };
    let bad =
        || format!("`{text}` is not a number with an optional unit (e.g. 25M, 2.5G, 2.5e7, 2GiB)");
    let (int, frac) = match num.split_once('.') {
        Some((i, f)) => (i.to_string(), f.to_string()),
        None => (num.clone(), String::new()),
    };
    if int.is_empty() && frac.is_empty()
        || !int.chars().all(|c| c.is_ascii_digit())
        || !frac.chars().all(|c| c.is_ascii_digit())
    {
        return Err(bad());
    }
    let too_large = || format!("`{text}` is too large");
    // value = digits · 10^(exp − decimals) · mult, exactly.
    let digits = format!("{int}{frac}");
    let digits = digits.trim_start_matches('0');
    let mut scale = exp - frac.len() as i64;
    if digits.len() > 38 {
        return Err(too_large());
    }
    let mut v: u128 = if digits.is_empty() {
        0
    } else {
        digits.parse().map_err(|_| bad())?
    };
    v = v.checked_mul(mult as u128).ok_or_else(too_large)?;
    while scale < 0 && v != 0 {
        if !v.is_multiple_of(10) {
            return Err(format!(
                "`{text}` is not a whole number; {} counts whole units",
                match kind {
                    Quantity::Count => "a budget",
                    Quantity::Bytes => "a memory budget",
                }
            ));
        }
        v /= 10;
        scale += 1;
    }
    while scale > 0 && v != 0 {
        v = v.checked_mul(10).ok_or_else(too_large)?;
        scale -= 1;
    }
    u64::try_from(v).map_err(|_| too_large())
}

/// Budgets to check; `None` skips one.
#[derive(Debug, Clone, Copy, Default)]
pub struct Budgets {
    pub max_params: Option<u64>,
    pub max_macs: Option<u64>,
    pub max_flops: Option<u64>,
    /// Peak activation memory of an inference pass, bytes.
    pub max_peak_memory: Option<u64>,
    /// Minimum final receptive field (trunk output), pixels (samples, voxels), on every axis.
    pub min_rf: Option<u64>,
}

/// One budget check.
#[derive(Debug, Clone, PartialEq)]
pub struct Check {
    /// `max_params`, `max_macs`, `max_flops`, `max_peak_memory`, `min_rf`.
    pub name: &'static str,
    pub limit: u64,
    /// The model's figure (`None`: no spatial field — the field is global, and passes).
    pub actual: Option<f64>,
    pub passed: bool,
}

/// A design finding.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    /// A stable identifier: `bias-before-norm`, `border-drop`, `skipped-pixels`, `ceil-mode`,
    /// `misaligned-merge`, `small-receptive-field`, `unproductive-layers`,
    /// `channels-not-multiple-of-8`, `dropout-before-batchnorm`, `fc-heavy`, `large-kernel`,
    /// `bottleneck`.
    pub kind: &'static str,
    pub layer: String,
    pub message: String,
    pub why: String,
    pub fix: String,
    /// Parameters the fix saves.
    pub saving_params: Option<u64>,
    /// MACs the fix saves (for the analysed batch).
    pub saving_macs: Option<u64>,
}

/// The audit of one model at one setting.
#[derive(Debug, Clone)]
pub struct Audit {
    pub model: String,
    pub input: Vec<u64>,
    pub checks: Vec<Check>,
    pub findings: Vec<Finding>,
}

impl Audit {
    /// True when every budget is met (findings are advice, not failures).
    pub fn passed(&self) -> bool {
        self.checks.iter().all(|c| c.passed)
    }
}

/// "N weights instead of M (−d, p%), X fewer MACs" for a replacement design (new < old
/// weights).
fn savings_text((old_params, new_params): (u64, u64), (old_macs, new_macs): (u64, u64)) -> String {
    format!(
        "{new_params} weights instead of {old_params} (−{}, {}), {} fewer MACs",
        old_params - new_params,
        pct(old_params - new_params, old_params),
        human_count(old_macs.saturating_sub(new_macs))
    )
}

/// `f` with the weights and MACs a replacement design saves.
fn with_savings(
    mut f: Finding,
    (old_params, new_params): (u64, u64),
    (old_macs, new_macs): (u64, u64),
) -> Finding {
    f.saving_params = Some(old_params - new_params);
    f.saving_macs = Some(old_macs.saturating_sub(new_macs));
    f
}

fn finding(kind: &'static str, layer: &str, message: String, why: &str, fix: String) -> Finding {
    Finding {
        kind,
        layer: layer.to_string(),
        message,
        why: why.to_string(),
        fix,
        saving_params: None,
        saving_macs: None,
    }
}

fn pct(part: u64, whole: u64) -> String {
    if whole == 0 {
        "0%".into()
    } else {
        format!("{:.1}%", 100.0 * part as f64 / whole as f64)
    }
}

/// Audits `net` (analysed as `a`) against `budgets`.
pub fn audit(net: &Network, a: &Analysis, budgets: &Budgets) -> Result<Audit, Error> {
    let t = &a.totals;
    let mut checks = Vec::new();
    let mut max = |name, limit: Option<u64>, actual: u64| {
        if let Some(l) = limit {
            checks.push(Check {
                name,
                limit: l,
                actual: Some(actual as f64),
                passed: actual <= l,
            });
        }
    };
    max("max_params", budgets.max_params, t.params);
    max("max_macs", budgets.max_macs, t.macs);
    max("max_flops", budgets.max_flops, t.flops);
    max(
        "max_peak_memory",
        budgets.max_peak_memory,
        t.peak_activation_bytes,
    );
    let cov = coverage(a);
    if let Some(min) = budgets.min_rf {
        let field = cov.last.and_then(|i| a.layers[i].rf.as_ref());
        // The smallest size over the spatial axes.
        let actual = field.map(|f| {
            f.axes
                .iter()
                .map(|a| q_f64(&a.size))
                .fold(f64::INFINITY, f64::min)
        });
        checks.push(Check {
            name: "min_rf",
            limit: min,
            actual,
            passed: actual.is_none_or(|v| v >= min as f64),
        });
    }
    let findings = Findings::new(net, a).all();
    Ok(Audit {
        model: a.model.clone(),
        input: a.inputs.first().map(|s| s.0.clone()).unwrap_or_default(),
        checks,
        findings,
    })
}

struct Findings<'a> {
    net: &'a Network,
    a: &'a Analysis,
    /// Per layer: whether a weighted layer follows it on some path.
    weighted_after: Vec<bool>,
    out: Vec<Finding>,
}

impl<'a> Findings<'a> {
    fn new(net: &'a Network, a: &'a Analysis) -> Findings<'a> {
        let weighted_after = net
            .topology
            .followed_by(|c| net.nodes[c].layer.weight_info().is_some());
        Findings {
            net,
            a,
            weighted_after,
            out: Vec::new(),
        }
    }

    fn name(&self, k: usize) -> &str {
        &self.net.nodes[k].name
    }

    fn all(mut self) -> Vec<Finding> {
        for k in 0..self.net.nodes.len() {
            self.bias_before_norm(k);
            self.dropout_before_bn(k);
            self.border_and_ceil(k);
            self.misaligned(k);
            self.channels(k);
            self.large_kernel(k);
            self.bottleneck(k);
        }
        self.fc_heavy();
        self.field();
        self.out
    }

    fn bias_before_norm(&mut self, k: usize) {
        let node = &self.net.nodes[k];
        let Some(w) = node.layer.weight_info() else {
            return;
        };
        let cons = self.net.topology.consumers(k);
        if !w.bias
            || cons.is_empty()
            || !cons.iter().all(|&c| {
                self.net.nodes[c]
                    .layer
                    .norm()
                    .is_some_and(|n| n.removes_channel_mean)
            })
        {
            return;
        }
        let norm = self.name(cons[0]).to_string();
        let mut f = finding(
            "bias-before-norm",
            &node.name,
            format!(
                "`{}` adds a bias of {} values that `{norm}` subtracts again with the channel mean",
                node.name, w.out_ch
            ),
            "a normalisation that removes each channel's mean cancels any per-channel constant added before it: the bias parameters learn nothing (their gradient is zero) and cost an add per output element",
            format!(
                "set `bias: false` on `{}` (the norm's β is the bias): {} fewer parameters",
                node.name, w.out_ch
            ),
        );
        f.saving_params = Some(w.out_ch);
        self.out.push(f);
    }

    fn dropout_before_bn(&mut self, k: usize) {
        let node = &self.net.nodes[k];
        if node.layer.category() != Category::Regularization {
            return;
        }
        if let Some(&c) = self.net.topology.consumers(k).iter().find(|&&c| {
            self.net.nodes[c]
                .layer
                .norm()
                .is_some_and(|n| n.running_stats)
        }) {
            let bn = self.name(c).to_string();
            self.out.push(finding(
                "dropout-before-batchnorm",
                &node.name,
                format!("`{}` feeds the batch norm `{bn}` directly", node.name),
                "dropout rescales activations by 1/(1−p) in training and not at inference, so the running variance the batch norm collects in training is not the variance it sees at inference (the \"variance shift\", Li et al. 2019): accuracy drops at test time",
                format!("move `{}` after the last batch norm (e.g. just before the classifier), or drop it", node.name),
            ));
        }
    }

    fn border_and_ceil(&mut self, k: usize) {
        let node = &self.net.nodes[k];
        let Some(w) = node.layer.window() else {
            return;
        };
        let x = &node.in_shapes[0];
        let rank = w.kernel.rank();
        if x.rank() != rank + 2 {
            return;
        }
        let label = node.layer.label();
        let ins: Vec<u64> = x.0[2..].to_vec();
        let unit = unit_name(rank, true);
        let geo: Vec<AxisFit> = (0..rank)
            .map(|ax| AxisFit::new(&w, ax, ins[ax], (w.pad_begin[ax], w.pad_end[ax])))
            .collect();
        if w.ceil {
            if geo.iter().any(|g| g.ceil_out != g.floor_out) {
                let ceil: Vec<u64> = geo.iter().map(|g| g.ceil_out).collect();
                let floor: Vec<u64> = geo.iter().map(|g| g.floor_out).collect();
                let pads = and_list(
                    geo.iter()
                        .enumerate()
                        .map(|(ax, g)| format!("{} by {}", end_side(rank, ax), g.ceil_extra_pad))
                        .collect(),
                );
                self.out.push(finding(
                    "ceil-mode",
                    &node.name,
                    format!(
                        "`{}` ({label}) uses ceil mode: {} → {}, where floor mode gives {}",
                        node.name, dims(&ins), dims(&ceil), dims(&floor)
                    ),
                    "TensorFlow/Keras (and TFLite) have no ceil mode: a port of this model gets different shapes from this layer on unless it pads explicitly; frameworks also differ on whether the extra window may start in the padding",
                    format!(
                        "for TensorFlow/Keras, pad {pads} (with −∞ for max pooling; excluded from the average for average pooling) and use floor mode (\"valid\")"
                    ),
                ));
            }
            return;
        }
        let eff: Vec<u64> = (0..rank)
            .map(|ax| w.dilation[ax] * (w.kernel[ax] - 1) + 1)
            .collect();
        if (0..rank).any(|ax| eff[ax] < w.stride[ax]) {
            // Windows smaller than the stride leave gaps between them everywhere, not only at
            // the border.
            let read: u64 = (0..rank).map(|ax| eff[ax].min(w.stride[ax])).product();
            let step: u64 = w.stride.iter().product();
            let window = if rank == 1 {
                format!("{}-sample", w.kernel[0])
            } else {
                w.kernel.dims()
            };
            let (why, pool) = if rank == 2 {
                (
                    "the pixels between windows influence no output: a strided 1×1 projection discards three quarters of its input (the ResNet-D observation)".to_string(),
                    format!("{0}×{0}/{0}", w.stride[0].max(w.stride[1])),
                )
            } else {
                (
                    format!("the {unit} between windows influence no output: a strided {} projection discards them (the ResNet-D observation on images)", cube(1, rank)),
                    format!("{0}/{0}", w.stride.dims()),
                )
            };
            self.out.push(finding(
                "skipped-pixels",
                &node.name,
                format!(
                    "`{}` ({label}) has a {window} window and stride {}: it reads {read} of every {step} input {unit}",
                    node.name, w.stride.dims()
                ),
                &why,
                format!(
                    "average-pool {pool} first and make this layer stride 1 (ResNet-D), or give it a window at least as large as the stride"
                ),
            ));
            return;
        }
        let unread: Vec<u64> = geo.iter().map(|g| g.unread).collect();
        if unread.iter().all(|&u| u == 0) {
            return;
        }
        let total: u64 = ins.iter().product();
        let kept: u64 = (0..rank).map(|ax| ins[ax] - unread[ax]).product();
        let lost = total - kept;
        let sizes: Vec<String> = geo
            .iter()
            .enumerate()
            .map(|(ax, g)| {
                let s = if g.unread == 0 {
                    g.input.to_string()
                } else {
                    format!("{} or {}", g.fit_down, g.fit_up)
                };
                format!("{s} ({})", crate::geometry::axis_name(rank, ax))
            })
            .collect();
        let per_axis = |v: &dyn Fn(&AxisFit) -> u64| {
            and_list(
                geo.iter()
                    .enumerate()
                    .map(|(ax, g)| format!("{} {}", v(g), axis_units(rank, ax)))
                    .collect(),
            )
        };
        let why = match rank {
            1 => "those samples influence no output: features at the end of the signal are lost, and shifting the input changes the result",
            2 => "those pixels influence no output: features at the bottom and right border are lost, and shifting the image changes the result",
            _ => "those voxels influence no output: features in the last frames and at the bottom and right border are lost, and shifting the input changes the result",
        };
        let mut f = finding(
            "border-drop",
            &node.name,
            format!(
                "`{}` ({label}) on a {} input never reads its last {} ({} of its input {unit}): ⌊(size + padding − window)/stride⌋ windows stop short of the border",
                node.name, dims(&ins), per_axis(&|g| g.unread), pct(lost, total)
            ),
            why,
            format!(
                "feed this layer {} — change --input or earlier strides — or add end padding of {} so the last window reaches the border",
                sizes.join(" × "), per_axis(&|g| g.pad_to_cover)
            ),
        );
        f.saving_params = None;
        self.out.push(f);
    }

    fn misaligned(&mut self, k: usize) {
        let node = &self.net.nodes[k];
        let Some(f) = &self.a.layers[k].rf else {
            return;
        };
        // Only inputs whose values meet here (not one that lends only its size).
        let merged: Vec<usize> = node.value_inputs().map(|(_, (s, _))| s).collect();
        if f.aligned || merged.len() < 2 {
            return;
        }
        // Report where the misalignment arises, not every layer downstream of it.
        let inherited = merged
            .iter()
            .any(|&s| self.a.layers[s].rf.as_ref().is_some_and(|g| !g.aligned));
        if inherited {
            return;
        }
        self.out.push(finding(
            "misaligned-merge",
            &node.name,
            format!(
                "`{}` merges paths whose fields are not aligned: {}",
                node.name,
                f.misalignment.clone().unwrap_or_default()
            ),
            "a unit combines features centred on different input positions on each path (off by a fraction of the jump), which blurs localisation — it matters for segmentation and detection",
            "give both paths the same total offset: odd kernels with padding (k−1)/2, or matching padding on strided layers and on the shortcut (e.g. a strided 1×1 projection instead of a crop)".to_string(),
        ));
    }

    fn channels(&mut self, k: usize) {
        let node = &self.net.nodes[k];
        let Some(w) = node.layer.weight_info() else {
            return;
        };
        let from_input = node
            .inputs
            .iter()
            .all(|&(s, _)| self.net.nodes[s].layer.is_input());
        let last = !self.weighted_after[k];
        let mut bad = Vec::new();
        if !from_input && w.in_ch % 8 != 0 {
            bad.push(format!("{} input", w.in_ch));
        }
        if !last && w.out_ch % 8 != 0 {
            bad.push(format!("{} output", w.out_ch));
        }
        if bad.is_empty() {
            return;
        }
        let up = |c: u64| c.div_ceil(8) * 8;
        self.out.push(finding(
            "channels-not-multiple-of-8",
            &node.name,
            format!("`{}` has {} channels, not a multiple of 8", node.name, bad.join(" and ")),
            "tensor-core kernels (f16, bf16, int8 on GPUs and NPUs) work on channel tiles of 8 or more; other counts are padded or fall back to slower kernels",
            format!(
                "use {} input / {} output channels (rounded up to multiples of 8)",
                up(w.in_ch),
                up(w.out_ch)
            ),
        ));
    }

    fn large_kernel(&mut self, k: usize) {
        let node = &self.net.nodes[k];
        let Some(w) = node.layer.weight_info() else {
            return;
        };
        // A cube kernel k×…×k at any rank: n stacked 3×…×3 kernels see the same field.
        let rank = w.kernel.rank();
        let kk = w.kernel[0];
        let p = w.pad_begin[0];
        if w.kind != WeightedKind::Conv
            || !w.kernel.all(kk)
            || kk < 5
            || kk % 2 == 0
            || !w.stride.all(1)
            || !w.dilation.all(1)
            || w.pad_begin != w.pad_end
            || !w.pad_begin.all(p)
            || node.in_shapes[0].rank() != rank + 2
        {
            return;
        }
        let (k3, kc) = (cube(3, rank), cube(kk, rank));
        let n = (kk - 1) / 2;
        if p > n {
            return;
        }
        // n stacked 3×3 convolutions see the same k×k field. Widths: C_in → m → … → m → C_out
        // with m = min(C_in, C_out); the first p of them pad by 1, the others by 0, so the
        // output size is unchanged.
        let m = w.in_ch.min(w.out_ch);
        let x = &node.in_shapes[0].0;
        let (batch, mut sizes) = (x[0], x[2..].to_vec());
        let (mut new_params, mut new_macs) = (0u64, 0u64);
        let mut widths = vec![w.in_ch];
        for i in 0..n {
            let cin = *widths.last().expect("not empty");
            let cout = if i + 1 == n { w.out_ch } else { m };
            let pad = u64::from(i < p);
            sizes.iter_mut().for_each(|s| *s = *s + 2 * pad - 2);
            let weights = 3u64.pow(rank as u32) * cin * cout / w.groups;
            new_params += weights;
            new_macs += weights * batch * sizes.iter().product::<u64>();
            widths.push(cout);
        }
        let old_params = kk.pow(rank as u32) * w.in_ch * w.out_ch / w.groups;
        let old_macs = torchvision_macs(node);
        if new_params >= old_params {
            return;
        }
        let chain = widths
            .iter()
            .map(|c| c.to_string())
            .collect::<Vec<_>>()
            .join("→");
        // Depthwise and grouped convolutions keep their groups in the stack: each 3×3 of a
        // depthwise stack is depthwise (9 weights per channel).
        let depthwise = w.groups > 1 && w.groups == w.in_ch && w.in_ch == w.out_ch;
        let (what, fix) = if depthwise {
            (
                format!(
                    "`{}` is a depthwise {kc} convolution on {} channels ({} weights)",
                    node.name, w.in_ch, old_params
                ),
                format!(
                    "{n} stacked depthwise {k3} convolutions on {} channels (an activation between them): {}",
                    w.in_ch,
                    savings_text((old_params, new_params), (old_macs, new_macs))
                ),
            )
        } else if w.groups > 1 {
            (
                format!(
                    "`{}` is a {kc} convolution {}→{} in {} groups ({} weights)",
                    node.name, w.in_ch, w.out_ch, w.groups, old_params
                ),
                format!(
                    "{n} stacked {k3} convolutions {chain}, each in {} groups (a ReLU between them): {}",
                    w.groups,
                    savings_text((old_params, new_params), (old_macs, new_macs))
                ),
            )
        } else {
            (
                format!(
                    "`{}` is a {kc} convolution {}→{} ({} weights)",
                    node.name, w.in_ch, w.out_ch, old_params
                ),
                format!(
                    "{n} stacked {k3} convolutions {chain} (a ReLU between them): {}",
                    savings_text((old_params, new_params), (old_macs, new_macs))
                ),
            )
        };
        let f = finding(
            "large-kernel",
            &node.name,
            what,
            &if depthwise {
                format!("a stack of depthwise {k3} convolutions sees the same field with fewer weights and MACs ({} instead of {} per channel and {} for {}); the depthwise layer is a small part of its block's cost, and the stack adds a pass over the activations, so the saving is small", 2 * 3u64.pow(rank as u32), 5u64.pow(rank as u32), unit_name(rank, false), cube(5, rank))
            } else {
                format!("a stack of {k3} convolutions sees the same field with fewer weights and more non-linearities (VGG, Inception-v3)")
            },
            fix,
        );
        self.out.push(with_savings(
            f,
            (old_params, new_params),
            (old_macs, new_macs),
        ));
    }

    fn bottleneck(&mut self, k: usize) {
        let node = &self.net.nodes[k];
        let Some(w) = node.layer.weight_info() else {
            return;
        };
        if w.kind != WeightedKind::Conv
            || !w.kernel.all(3)
            || node.in_shapes[0].rank() != w.kernel.rank() + 2
            || w.groups != 1
            || w.in_ch < 256
            || w.out_ch < 256
            || self.after_reduction(k)
        {
            return;
        }
        let rank = w.kernel.rank();
        let (k1, k3, nine) = (cube(1, rank), cube(3, rank), 3u64.pow(rank as u32));
        let r = w.in_ch.min(w.out_ch) / 4;
        let (x, y) = (&node.in_shapes[0].0, &node.out_shapes[0].0);
        let in_px = x[0] * x[2..].iter().product::<u64>();
        let out_px = y[0] * y[2..].iter().product::<u64>();
        let old_params = nine * w.in_ch * w.out_ch;
        let new_params = w.in_ch * r + nine * r * r + r * w.out_ch;
        let old_macs = out_px * old_params;
        // The 1×1 reduction runs at the input resolution, the 3×3 (with the stride) and the
        // expansion at the output resolution.
        // With a large stride the reduction at the input resolution can cost more than u64
        // holds: no finding then (such a design is not one to suggest a bottleneck for).
        let Some(new_macs) = in_px
            .checked_mul(w.in_ch)
            .and_then(|v| v.checked_mul(r))
            .and_then(|v| v.checked_add(out_px.checked_mul(nine * r * r + r * w.out_ch)?))
        else {
            return;
        };
        if new_params >= old_params {
            return;
        }
        let f = finding(
            "bottleneck",
            &node.name,
            format!(
                "`{}` is a {k3} convolution {}→{} ({} weights, {} MACs)",
                node.name,
                w.in_ch,
                w.out_ch,
                human_count(old_params),
                human_count(old_macs)
            ),
            &format!("most of a wide {k3} convolution's cost mixes channels; a {k1} reduction, the {k3} on fewer channels and a {k1} expansion (ResNet's bottleneck) keep the field and the output shape for a fraction of the cost"),
            format!(
                "{k1} {}→{r}, {k3} {r}→{r}, {k1} {r}→{}: {}",
                w.in_ch,
                w.out_ch,
                savings_text((old_params, new_params), (old_macs, new_macs))
            ),
        );
        self.out.push(with_savings(
            f,
            (old_params, new_params),
            (old_macs, new_macs),
        ));
    }

    /// Whether `k`'s input comes (through single-input layers without weights) from a 1×1
    /// convolution that reduces the channels: it is already the middle of a bottleneck.
    fn after_reduction(&self, k: usize) -> bool {
        let mut cur = k;
        loop {
            let n = &self.net.nodes[cur];
            let Some(&(src, _)) = n.inputs.first() else {
                return false;
            };
            if n.inputs.len() != 1 && cur != k {
                return false;
            }
            let s = &self.net.nodes[src];
            match s.layer.weight_info() {
                Some(w) => return w.kernel.all(1) && w.out_ch < w.in_ch,
                None if s.inputs.len() == 1 => cur = src,
                None => return false,
            }
        }
    }

    fn fc_heavy(&mut self) {
        let total = self.a.totals.params;
        // A model without a spatial trunk (an MLP) is fully connected by design.
        let cov = coverage(self.a);
        if cov.last.is_none() {
            return;
        }
        // N×C and the trunk's spatial axes.
        let map_rank = cov.input.len() + 2;
        // The head: fully-connected layers on feature vectors (N×F). Linear layers applied per
        // token or position (a transformer's, on N×L×C) are not a head on a flattened map.
        let fcs: Vec<(usize, WeightInfo)> = self
            .net
            .nodes
            .iter()
            .enumerate()
            .filter(|(_, n)| n.in_shapes.first().is_some_and(|s| s.rank() == 2))
            .filter_map(|(k, n)| n.layer.weight_info().map(|w| (k, w)))
            .filter(|(_, w)| w.kind == WeightedKind::Linear)
            .collect();
        let fc_params: u64 = fcs
            .iter()
            .map(|&(k, _)| self.a.layers[k].params.total())
            .sum();
        if total == 0 || fc_params * 2 <= total {
            return;
        }
        let Some(&(k, ref w)) = fcs.first() else {
            return;
        };
        let name = self.name(k).to_string();
        let own = self.a.layers[k].params.total();
        // The spatial map the first fully-connected layer flattens.
        let mut src = k;
        let map: Option<Shape> = loop {
            let Some(&(s, slot)) = self.net.nodes[src].inputs.first() else {
                break None;
            };
            let shape = &self.net.nodes[s].out_shapes[slot];
            if shape.rank() == map_rank {
                // A feature map of the trunk, not the model's input.
                break (!self.net.nodes[s].layer.is_input()).then(|| shape.clone());
            }
            if !self.net.nodes[s].layer.is_view() {
                break None;
            }
            src = s;
        };
        let mut f = finding(
            "fc-heavy",
            &name,
            format!(
                "fully-connected layers hold {} of the parameters ({} of {}); `{name}` alone has {}",
                pct(fc_params, total),
                human_count(fc_params),
                human_count(total),
                human_count(own)
            ),
            "a fully-connected head on a flattened feature map (AlexNet, VGG) is most of the model's size and memory traffic and overfits; global average pooling before a single classifier (NiN, GoogLeNet, ResNet) keeps the accuracy with a fraction of the weights",
            "pool the feature map globally before the classifier".to_string(),
        );
        if let Some(m) = map.filter(|m| m.0[2..].iter().product::<u64>() > 1) {
            let (c, hw) = (m.0[1], m.0[2..].iter().product::<u64>());
            let bias = u64::from(w.bias) * w.out_ch;
            let new = c * w.out_ch + bias;
            let saving = own.saturating_sub(new);
            let macs = self.a.layers[k].outputs[0].0[0] * (c * hw - c) * w.out_ch;
            if saving == 0 {
                self.out.push(f);
                return;
            }
            f.fix = format!(
                "global average pooling of the {c}×{} map before `{name}` makes its input {c} features instead of {}: {} parameters instead of {} (−{}, {} of the model), {} fewer MACs",
                dims(&m.0[2..]), c * hw, new, own, saving, pct(saving, total), human_count(macs)
            );
            f.saving_params = Some(saving);
            f.saving_macs = Some(macs);
        }
        self.out.push(f);
    }

    fn field(&mut self) {
        let cov = coverage(self.a);
        let rank = cov.input.len();
        let ih = cov.input.first().copied().unwrap_or(0);
        let dims = cov
            .input
            .iter()
            .map(|d| d.to_string())
            .collect::<Vec<_>>()
            .join("×");
        // What one input unit is called.
        let unit = unit_name(rank, true);
        // After the last spatial layer the model may go on with a sequence of tokens (N×C×L
        // after an image, a patch embedding followed by attention or token mixing): its
        // context is not the trunk's field, so a small patch field is no finding.
        let tokens_follow = cov.last.is_some_and(|i| {
            self.a.layers[i + 1..]
                .iter()
                .any(|l| l.outputs.first().is_some_and(|s| s.rank() == 3 && rank > 1))
        });
        if let Some(i) = cov.last.filter(|_| !tokens_follow) {
            let f = self.a.layers[i].rf.as_ref().expect("has a field");
            let small = f.axes.len() == rank
                && f.axes
                    .iter()
                    .zip(&cov.input)
                    .any(|(a, &n)| a.size * Q::from(2) < Q::from(n as i64));
            // The axis the field covers least (the first on a tie): its share and its size.
            let ax = (0..f.axes.len().min(rank))
                .min_by(|&a, &b| {
                    let ra = q_f64(&f.axes[a].size) / cov.input[a].max(1) as f64;
                    let rb = q_f64(&f.axes[b].size) / cov.input[b].max(1) as f64;
                    ra.total_cmp(&rb)
                })
                .unwrap_or(0);
            let h = &f.axes[ax].size;
            let ih = cov.input.get(ax).copied().unwrap_or(ih);
            if ih > 0 && small {
                let name = self.a.layers[i].name.clone();
                let sizes = f
                    .axes
                    .iter()
                    .map(|a| fmt_q(&a.size))
                    .collect::<Vec<_>>()
                    .join("×");
                self.out.push(finding(
                    "small-receptive-field",
                    &name,
                    format!(
                        "the trunk's last spatial layer `{name}` sees {sizes} {unit} of the {dims} input ({} of its {})",
                        pct((q_f64(h) * 1000.0) as u64, ih * 1000),
                        crate::geometry::axis_name(rank, ax)
                    ),
                    "no unit relates parts of the image farther apart than its field: objects larger than it are recognised only by local texture",
                    format!("add downsampling or dilated/larger kernels until the field reaches about {ih} {unit}, or feed smaller inputs"),
                ));
            }
        }
        if let Some(c) = cov.covers_from {
            if cov.unproductive.is_empty() {
                return;
            }
            let macs: u64 = cov
                .unproductive
                .iter()
                .map(|&i| self.a.layers[i].macs)
                .sum();
            let name = self.a.layers[c].name.clone();
            let whole = self.a.layers[c].rf.as_ref().is_some_and(|f| f.whole);
            let f = self.a.layers[cov.last.unwrap_or(c)]
                .rf
                .as_ref()
                .map(|f| {
                    // Every axis of a signal's or a video's field (an image's: its height).
                    if rank == 2 || f.axes.iter().all(|a| a.size == f.axes[0].size) {
                        fmt_q(&f.axes[0].size)
                    } else {
                        f.axes
                            .iter()
                            .map(|a| fmt_q(&a.size))
                            .collect::<Vec<_>>()
                            .join("×")
                    }
                })
                .unwrap_or_default();
            let mut fd = finding(
                "unproductive-layers",
                &name,
                format!(
                    "from `{name}` on, {}: the {} later spatial layers ({} MACs, {} of the total) add {} context at this resolution",
                    // A token-mixing layer's units each see all of the input; a convolutional
                    // field as large as the input is centred on its unit, so a border unit's
                    // field still reaches past the edge and sees only part of it.
                    if whole {
                        format!("every unit sees the whole {dims} input")
                    } else {
                        format!("the receptive field is as large as the {dims} input (a unit at the border still sees only part of it)")
                    },
                    cov.unproductive.len(),
                    human_count(macs),
                    pct(macs, self.a.totals.macs),
                    if whole { "no" } else { "little" }
                ),
                "once the field covers the input, further spatial kernels only mix features that are already global; their field growth is wasted (capacity remains)",
                format!("run at a larger input (the final field is {f} {unit}) or make the last stages shallower"),
            );
            fd.saving_macs = None;
            self.out.push(fd);
        }
    }
}

/// `16×112×112`: sizes joined by `×`.
fn dims(v: &[u64]) -> String {
    v.iter()
        .map(|d| d.to_string())
        .collect::<Vec<_>>()
        .join("×")
}

/// A cube kernel `k` on each of `rank` axes: `3×3` (2-D), `3×3×3` (3-D), `3-wide` (1-D).
fn cube(k: u64, rank: usize) -> String {
    if rank == 1 {
        format!("{k}-wide")
    } else {
        dims(&vec![k; rank])
    }
}

/// What the units along spatial axis `ax` are called: samples (1-D), rows and columns (2-D),
/// frames, rows and columns (3-D).
fn axis_units(rank: usize, ax: usize) -> &'static str {
    match (rank, ax) {
        (1, _) => "samples",
        (3, 0) => "frames",
        (3, 1) | (2, 0) => "rows",
        _ => "columns",
    }
}

/// Where end padding goes on spatial axis `ax`: the end (1-D), the bottom and the right (2-D),
/// and the last frames (3-D).
fn end_side(rank: usize, ax: usize) -> &'static str {
    match (rank, ax) {
        (1, _) => "the end",
        (3, 0) => "the last frames",
        (3, 1) | (2, 0) => "the bottom",
        _ => "the right",
    }
}

/// `a`, `a and b`, `a, b and c`.
fn and_list(items: Vec<String>) -> String {
    match items.split_last() {
        None => String::new(),
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} and {last}", rest.join(", ")),
    }
}

/// Torchvision MACs of a layer, whatever convention the analysis holds.
fn torchvision_macs(node: &NetNode) -> u64 {
    node.layer
        .cost(&node.in_shapes, &node.out_shapes)
        .map(|c| c.macs)
        .unwrap_or(0)
}

/// How a sliding window covers one axis.
struct AxisFit {
    input: u64,
    floor_out: u64,
    ceil_out: u64,
    /// Real input rows (not padding) after the last window, in floor mode.
    unread: u64,
    /// The nearest input sizes at or below / above this one that leave nothing unread.
    fit_down: u64,
    fit_up: u64,
    /// End padding to add so that the last window reaches the border (floor mode).
    pad_to_cover: u64,
    /// End padding that makes floor mode give the ceil-mode size.
    ceil_extra_pad: u64,
}

impl AxisFit {
    fn new(w: &Window, ax: usize, input: u64, (pb, pe): (u64, u64)) -> AxisFit {
        let (k, s, d) = (w.kernel[ax], w.stride[ax], w.dilation[ax]);
        let eff = d * (k - 1) + 1;
        let span = pb + input + pe;
        let room = span.saturating_sub(eff);
        let floor_out = room / s + 1;
        // PyTorch's ceil mode: one more window when the floor leaves a remainder, unless it
        // would start in the end padding.
        let mut ceil_out = room.div_ceil(s) + 1;
        if (ceil_out - 1) * s >= input + pb {
            ceil_out -= 1;
        }
        let used = (floor_out - 1) * s + eff;
        let unread = (span - used).saturating_sub(pe);
        let rem = room % s;
        AxisFit {
            input,
            floor_out,
            ceil_out,
            unread,
            fit_down: input - rem,
            fit_up: input + (s - rem) % s,
            pad_to_cover: (s - rem) % s,
            ceil_extra_pad: ((ceil_out - 1) * s + eff).saturating_sub(span),
        }
    }
}

/// Renders an audit as text (`json: false`) or JSON.
pub fn render(audit: &Audit, json: bool) -> String {
    if json {
        return serde_json::to_string_pretty(&json_value(audit)).expect("serialisable") + "\n";
    }
    let input: Vec<String> = audit.input.iter().map(|d| d.to_string()).collect();
    let mut out = format!("audit of {} (input {})\n", audit.model, input.join("×"));
    if !audit.checks.is_empty() {
        out += "\nBudgets:\n";
        for c in &audit.checks {
            let (actual, limit) = match c.name {
                "max_peak_memory" => (
                    c.actual.map(|v| human_bytes(v as u64)).unwrap_or_default(),
                    human_bytes(c.limit),
                ),
                "min_rf" => (
                    c.actual
                        .map(|v| format!("{v}"))
                        .unwrap_or_else(|| "global".into()),
                    c.limit.to_string(),
                ),
                _ => (
                    c.actual
                        .map(|v| format!("{} ({})", human_count(v as u64), v as u64))
                        .unwrap_or_default(),
                    format!("{} ({})", human_count(c.limit), c.limit),
                ),
            };
            let op = if c.name.starts_with("min") {
                "≥"
            } else {
                "≤"
            };
            out += &format!(
                "  {} {}: {actual} {} {limit}\n",
                if c.passed { "ok  " } else { "FAIL" },
                c.name,
                if c.passed {
                    op
                } else if op == "≤" {
                    ">"
                } else {
                    "<"
                }
            );
        }
    }
    if audit.findings.is_empty() {
        out += "\nNo design findings.\n";
    } else {
        out += &format!("\nFindings ({}):\n", audit.findings.len());
        let mut explained: Vec<&str> = Vec::new();
        let mut whys: Vec<&str> = Vec::new();
        for f in &audit.findings {
            if !explained.contains(&f.kind) {
                explained.push(f.kind);
            }
            // A kind may explain itself differently (a depthwise large kernel).
            let why = if whys.contains(&f.why.as_str()) {
                format!("as for `{}` above", f.kind)
            } else {
                whys.push(&f.why);
                f.why.clone()
            };
            out += &format!(
                "\n[{}] {}\n  {}\n  why: {why}\n  fix: {}\n",
                f.kind, f.layer, f.message, f.fix
            );
        }
        out += "\nBy kind:\n";
        for kind in &explained {
            let of: Vec<&Finding> = audit.findings.iter().filter(|f| f.kind == *kind).collect();
            let params: u64 = of.iter().filter_map(|f| f.saving_params).sum();
            let macs: u64 = of.iter().filter_map(|f| f.saving_macs).sum();
            let mut line = format!("  {kind}: {}", of.len());
            if params > 0 || macs > 0 {
                line += &format!(
                    " (fixes save up to {} parameters, {} MACs, each measured alone)",
                    params,
                    human_count(macs)
                );
            }
            out += &line;
            out.push('\n');
        }
    }
    let failed = audit.checks.iter().filter(|c| !c.passed).count();
    out += &if audit.checks.is_empty() {
        "\nNo budgets given.\n".to_string()
    } else if failed == 0 {
        "\nAll budgets met.\n".to_string()
    } else {
        format!("\n{failed} budget(s) exceeded.\n")
    };
    out
}

/// The JSON document of an audit (stable keys).
pub fn json_value(audit: &Audit) -> Value {
    json!({
        "model": audit.model,
        "input": audit.input,
        "passed": audit.passed(),
        "budgets": audit.checks.iter().map(|c| json!({
            "name": c.name,
            "limit": c.limit,
            // Integers where integral (every figure but a fractional field).
            "actual": c.actual.map(|v| if v.fract() == 0.0 && v.abs() < 9.0e15 { json!(v as i64) } else { json!(v) }),
            "passed": c.passed,
        })).collect::<Vec<_>>(),
        "findings": audit.findings.iter().map(|f| json!({
            "kind": f.kind,
            "layer": f.layer,
            "message": f.message,
            "why": f.why,
            "fix": f.fix,
            "saving": {"params": f.saving_params, "macs": f.saving_macs},
        })).collect::<Vec<_>>(),
    })
}
