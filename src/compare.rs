//! Side-by-side comparison of models (or of one model at several input sizes and batches):
//! one [`Entry`] per analysis with parameters, MACs, FLOPs, parameter memory, peak activation
//! memory, depth (weighted layers: those with MACs), the final receptive field of the trunk and
//! MACs per parameter, ratios to a baseline entry of the same setting, sorting, the table /
//! Markdown / CSV / JSON renderings, and an SVG chart (MACs against parameters, bubble area
//! proportional to peak activation memory) drawn with plotters into a string. No IO.

use comfy_table::{Cell, CellAlignment};
use plotters::prelude::*;
use serde_json::{json, Value};

use crate::analysis::{Analysis, Dtype};
use crate::convention::Convention;
use crate::error::{Diagnostic, Error};
use crate::receptive::{q_f64, q_json, Q};
use crate::report::{self, human_bytes, human_count, Format};

/// One compared model at one setting.
#[derive(Debug, Clone)]
pub struct Entry {
    pub name: String,
    /// Shape of the first input, batch first.
    pub input: Vec<u64>,
    pub params: u64,
    pub macs: u64,
    pub flops: u64,
    pub param_bytes: u64,
    pub peak_activation_bytes: u64,
    /// Weighted layers (convolutions, transposed convolutions, linear): layers with MACs.
    pub depth: usize,
    /// Final receptive field of the trunk (the last layer with a spatial field), `[h, w]`;
    /// `None` when the model has no spatial layer.
    pub rf: Option<Vec<Q>>,
    /// Whether a merge on the way was not aligned (the field is then approximate).
    pub rf_aligned: bool,
    /// Which setting of a sweep this is: the k-th entry of a model is its k-th setting.
    pub setting: usize,
}

impl Entry {
    /// The summary of one analysis. Depth counts layers with MACs under the torchvision
    /// convention (conv, transposed conv, linear), whatever convention `a` holds.
    pub fn new(a: &Analysis) -> Entry {
        let cov = report::coverage(a);
        // A model whose only spatial tensor is its input (an MLP on an image) has no trunk
        // field (`coverage` leaves inputs out): every unit sees the whole input.
        let field = cov.last.and_then(|i| a.layers[i].rf.as_ref());
        Entry {
            name: a.model.clone(),
            input: a.inputs.first().map(|s| s.0.clone()).unwrap_or_default(),
            params: a.totals.params,
            macs: a.totals.macs,
            flops: a.totals.flops,
            param_bytes: a.totals.param_bytes,
            peak_activation_bytes: a.totals.peak_activation_bytes,
            depth: a.layers.iter().filter(|l| l.weighted).count(),
            rf: field.map(|f| f.axes.iter().map(|a| a.size).collect()),
            rf_aligned: field.is_none_or(|f| f.aligned),
            setting: 0,
        }
    }

    /// MACs per parameter (how often each weight is used per pass), if there are parameters.
    pub fn macs_per_param(&self) -> Option<f64> {
        (self.params > 0).then(|| self.macs as f64 / self.params as f64)
    }

    fn batch(&self) -> u64 {
        self.input.first().copied().unwrap_or(1)
    }

    fn setting(&self) -> String {
        format!(
            "{} b{}",
            self.input[1.min(self.input.len())..]
                .iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join("×"),
            self.batch()
        )
    }
}

/// What the rows are ordered by (ascending; names alphabetically; ties keep the given order).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortKey {
    Macs,
    Params,
    Flops,
    /// Peak activation memory.
    Memory,
    Depth,
    /// Final receptive-field area; models without a spatial field last.
    Rf,
    Name,
}

/// Ratios of an entry to the baseline entry of the same input size and batch.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Ratios {
    pub params: Option<f64>,
    pub macs: Option<f64>,
    pub flops: Option<f64>,
    pub peak_activation_bytes: Option<f64>,
    pub depth: Option<f64>,
}

fn ratio(a: u64, b: u64) -> Option<f64> {
    (b > 0).then(|| a as f64 / b as f64)
}

/// A comparison: entries, optionally a baseline model name, and the figures' conventions.
#[derive(Debug, Clone)]
pub struct Comparison {
    pub entries: Vec<Entry>,
    pub baseline: Option<String>,
    pub dtype: Dtype,
    pub convention: Convention,
}

impl Comparison {
    /// Builds a comparison of analyses; `baseline` must name one of the models.
    pub fn new(analyses: &[Analysis], baseline: Option<&str>) -> Result<Comparison, Error> {
        let mut entries: Vec<Entry> = analyses.iter().map(Entry::new).collect();
        for i in 0..entries.len() {
            entries[i].setting = entries[..i]
                .iter()
                .filter(|e| e.name == entries[i].name)
                .count();
        }
        if let Some(b) = baseline {
            if !entries.iter().any(|e| e.name == b) {
                let names: Vec<&str> = entries.iter().map(|e| e.name.as_str()).collect();
                let mut d = Diagnostic::new(format!(
                    "the baseline `{b}` is not among the compared models ({})",
                    names.join(", ")
                ));
                if let Some(s) = crate::error::did_you_mean(b, names.iter().copied()) {
                    d = d.help(format!("did you mean `{s}`?"));
                }
                return Err(d.into());
            }
        }
        Ok(Comparison {
            entries,
            baseline: baseline.map(str::to_string),
            dtype: analyses.first().map(|a| a.dtype).unwrap_or_default(),
            convention: analyses.first().map(|a| a.convention).unwrap_or_default(),
        })
    }

    /// Orders the entries by `key` (stable).
    pub fn sort(&mut self, key: SortKey) {
        let area = |e: &Entry| e.rf.as_ref().map(|v| v.iter().map(q_f64).product::<f64>());
        match key {
            SortKey::Macs => self.entries.sort_by_key(|e| e.macs),
            SortKey::Params => self.entries.sort_by_key(|e| e.params),
            SortKey::Flops => self.entries.sort_by_key(|e| e.flops),
            SortKey::Memory => self.entries.sort_by_key(|e| e.peak_activation_bytes),
            SortKey::Depth => self.entries.sort_by_key(|e| e.depth),
            SortKey::Name => self.entries.sort_by(|a, b| a.name.cmp(&b.name)),
            SortKey::Rf => self.entries.sort_by(|a, b| match (area(a), area(b)) {
                (Some(x), Some(y)) => x.total_cmp(&y),
                (Some(_), None) => std::cmp::Ordering::Less,
                (None, Some(_)) => std::cmp::Ordering::Greater,
                (None, None) => std::cmp::Ordering::Equal,
            }),
        }
    }

    /// Ratios of entry `i` to the baseline's entry for the same setting (the same position in
    /// the sweep; each model at its own input size when none is given), if there is one.
    pub fn ratios(&self, i: usize) -> Option<Ratios> {
        let name = self.baseline.as_ref()?;
        let e = &self.entries[i];
        let b = self
            .entries
            .iter()
            .find(|b| &b.name == name && b.setting == e.setting)?;
        Some(Ratios {
            params: ratio(e.params, b.params),
            macs: ratio(e.macs, b.macs),
            flops: ratio(e.flops, b.flops),
            peak_activation_bytes: ratio(e.peak_activation_bytes, b.peak_activation_bytes),
            depth: ratio(e.depth as u64, b.depth as u64),
        })
    }

    /// Whether the entries differ in input size or batch (then labels carry the setting).
    fn sweeps(&self) -> bool {
        self.entries.windows(2).any(|w| w[0].input != w[1].input)
            || self
                .entries
                .iter()
                .any(|e| self.entries.iter().filter(|o| o.name == e.name).count() > 1)
    }
}

fn rf_text(e: &Entry) -> String {
    match &e.rf {
        None => "global".into(),
        Some(v) => {
            let mut s = crate::report::axes_q(v).replace(", ", "×");
            if !e.rf_aligned {
                s.push('*');
            }
            s
        }
    }
}

fn times(r: Option<f64>) -> String {
    r.map(|v| format!("×{v:.2}")).unwrap_or_else(|| "-".into())
}

/// Renders a comparison.
pub fn render(c: &Comparison, format: Format) -> String {
    match format {
        Format::Json => serde_json::to_string_pretty(&json_value(c)).expect("serialisable") + "\n",
        Format::Csv => csv(c),
        Format::Table | Format::Markdown => table(c, format == Format::Markdown),
    }
}

fn table(c: &Comparison, markdown: bool) -> String {
    let mut t = crate::report::new_table(markdown);
    let dt = format!("{:?}", c.dtype).to_lowercase();
    let macs = if c.convention == Convention::Torchvision {
        "MACs".to_string()
    } else {
        format!("MACs ({})", c.convention.name())
    };
    let mut header = vec![
        "Model".to_string(),
        "Input".into(),
        "Batch".into(),
        "Params".into(),
        macs,
        "FLOPs".into(),
        format!("Param mem ({dt})"),
        format!("Peak act. mem ({dt})"),
        "Depth".into(),
        "RF".into(),
        "MACs/param".into(),
    ];
    if c.baseline.is_some() {
        header.extend(["×Params", "×MACs", "×FLOPs", "×Peak mem"].map(String::from));
    }
    t.set_header(header);
    for (i, e) in c.entries.iter().enumerate() {
        let right = |s: String| Cell::new(s).set_alignment(CellAlignment::Right);
        let mut row = vec![
            crate::report::text_cell(&e.name, markdown),
            Cell::new(
                e.input[1.min(e.input.len())..]
                    .iter()
                    .map(|d| d.to_string())
                    .collect::<Vec<_>>()
                    .join("×"),
            ),
            right(e.batch().to_string()),
            right(human_count(e.params)),
            right(human_count(e.macs)),
            right(human_count(e.flops)),
            right(human_bytes(e.param_bytes)),
            right(human_bytes(e.peak_activation_bytes)),
            right(e.depth.to_string()),
            right(rf_text(e)),
            right(
                e.macs_per_param()
                    .map(|v| format!("{v:.1}"))
                    .unwrap_or_else(|| "-".into()),
            ),
        ];
        if c.baseline.is_some() {
            let r = c.ratios(i);
            row.extend([
                right(times(r.and_then(|r| r.params))),
                right(times(r.and_then(|r| r.macs))),
                right(times(r.and_then(|r| r.flops))),
                right(times(r.and_then(|r| r.peak_activation_bytes))),
            ]);
        }
        t.add_row(row);
    }
    let mut out = format!("{t}\n");
    if c.entries.iter().any(|e| !e.rf_aligned) {
        out += "* a merge on the way is not aligned: the field is the largest over its paths\n";
    }
    out
}

fn csv(c: &Comparison) -> String {
    // One size column per axis of the deepest field (height and width at least; a 3-D model
    // adds `rf_depth`), sizes right-aligned: a 1-D model's length is in `rf_width`.
    let columns = c
        .entries
        .iter()
        .filter_map(|e| e.rf.as_ref().map(|v| v.len()))
        .max()
        .unwrap_or(2)
        .max(2);
    let mut out = format!(
        "model,input,batch,params,macs,flops,param_bytes,peak_activation_bytes,depth,{},rf_aligned,macs_per_param",
        report::axis_columns("rf", columns)
    );
    if c.baseline.is_some() {
        out += ",params_ratio,macs_ratio,flops_ratio,peak_memory_ratio";
    }
    out.push('\n');
    let f = |v: Option<f64>| v.map(|x| format!("{x:.4}")).unwrap_or_default();
    for (i, e) in c.entries.iter().enumerate() {
        out += &format!(
            "{},{},{},{},{},{},{},{},{},{},{}",
            crate::report::csv_field(&e.name),
            e.input[1.min(e.input.len())..]
                .iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join("x"),
            e.batch(),
            e.params,
            e.macs,
            e.flops,
            e.param_bytes,
            e.peak_activation_bytes,
            e.depth,
            report::rf_csv(e.rf.as_deref(), e.rf_aligned, columns),
            f(e.macs_per_param())
        );
        if c.baseline.is_some() {
            let r = c.ratios(i);
            out += &format!(
                ",{},{},{},{}",
                f(r.and_then(|r| r.params)),
                f(r.and_then(|r| r.macs)),
                f(r.and_then(|r| r.flops)),
                f(r.and_then(|r| r.peak_activation_bytes))
            );
        }
        out.push('\n');
    }
    out
}

/// The JSON document of a comparison (stable keys).
pub fn json_value(c: &Comparison) -> Value {
    let models: Vec<Value> = c
        .entries
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let mut v = json!({
                "name": e.name,
                "input": e.input,
                "batch": e.batch(),
                "params": e.params,
                "macs": e.macs,
                "flops": e.flops,
                "param_bytes": e.param_bytes,
                "peak_activation_bytes": e.peak_activation_bytes,
                "depth": e.depth,
                "rf": e.rf.as_ref().map(|v| Value::Array(v.iter().map(q_json).collect())).unwrap_or(Value::Null),
                "rf_aligned": e.rf_aligned,
                "macs_per_param": e.macs_per_param(),
            });
            if let Some(r) = c.ratios(i) {
                v["ratios"] = json!({
                    "params": r.params,
                    "macs": r.macs,
                    "flops": r.flops,
                    "peak_activation_bytes": r.peak_activation_bytes,
                    "depth": r.depth,
                });
            }
            v
        })
        .collect();
    json!({
        "convention": c.convention,
        "dtype": c.dtype,
        "baseline": c.baseline,
        "models": models,
    })
}

/// `25000000.0` → `25M`: an axis label with at most three significant digits.
fn short_count(v: f64) -> String {
    let (s, u) = [(1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "K")]
        .into_iter()
        .find(|(s, _)| v >= *s)
        .unwrap_or((1.0, ""));
    let x = v / s;
    let t = if x >= 100.0 {
        format!("{x:.0}")
    } else if x >= 10.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.2}")
    };
    let t = if t.contains('.') {
        t.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        t
    };
    format!("{t}{u}")
}

fn chart_error<E: std::fmt::Display>(e: E) -> Error {
    Error::from(Diagnostic::new(format!("cannot draw the chart: {e}")))
}

/// The comparison as an SVG chart: MACs (y) against parameters (x), both on log axes, one
/// labelled bubble per entry whose area is proportional to its peak activation memory.
/// Text is emitted as SVG `<text>`, so no font is needed to draw it.
pub fn chart_svg(c: &Comparison) -> Result<String, Error> {
    const W: u32 = 960;
    const H: u32 = 640;
    let pts: Vec<(f64, f64, f64, String)> = c
        .entries
        .iter()
        .map(|e| {
            let label = if c.sweeps() {
                format!("{} ({})", e.name, e.setting())
            } else {
                e.name.clone()
            };
            (
                e.params.max(1) as f64,
                e.macs.max(1) as f64,
                e.peak_activation_bytes as f64,
                label,
            )
        })
        .collect();
    if pts.is_empty() {
        return Err(Diagnostic::new("nothing to chart").into());
    }
    let span = |v: &mut dyn Iterator<Item = f64>| {
        let (lo, hi) = v.fold((f64::MAX, f64::MIN), |(a, b), x| (a.min(x), b.max(x)));
        (lo / 3.0, hi * 3.0)
    };
    let (x0, x1) = span(&mut pts.iter().map(|p| p.0));
    let (y0, y1) = span(&mut pts.iter().map(|p| p.1));
    let max_mem = pts.iter().map(|p| p.2).fold(0.0, f64::max).max(1.0);
    let macs_label = if c.convention == Convention::Torchvision {
        "MACs".to_string()
    } else {
        format!("MACs ({})", c.convention.name())
    };
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (W, H)).into_drawing_area();
        root.fill(&WHITE).map_err(chart_error)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(
                format!(
                    "{macs_label} vs parameters — bubble area ∝ peak activation memory ({})",
                    format!("{:?}", c.dtype).to_lowercase()
                ),
                ("sans-serif", 20),
            )
            .margin(24)
            .x_label_area_size(48)
            .y_label_area_size(72)
            .build_cartesian_2d((x0..x1).log_scale(), (y0..y1).log_scale())
            .map_err(chart_error)?;
        chart
            .configure_mesh()
            .x_desc("Parameters")
            .y_desc(macs_label.as_str())
            .x_labels(8)
            .y_labels(8)
            .x_label_formatter(&|v| short_count(*v))
            .y_label_formatter(&|v| short_count(*v))
            .light_line_style(WHITE.mix(0.0))
            .draw()
            .map_err(chart_error)?;
        for (i, (x, y, mem, label)) in pts.iter().enumerate() {
            let colour = Palette99::pick(i);
            let r = (6.0 + 34.0 * (mem / max_mem).sqrt()).round() as i32;
            chart
                .draw_series(std::iter::once(Circle::new(
                    (*x, *y),
                    r,
                    colour.mix(0.45).filled(),
                )))
                .map_err(chart_error)?;
            chart
                .draw_series(std::iter::once(Circle::new(
                    (*x, *y),
                    r,
                    colour.stroke_width(1),
                )))
                .map_err(chart_error)?;
            chart
                .draw_series(std::iter::once(
                    EmptyElement::at((*x, *y))
                        + Text::new(
                            format!("{label} · {}", human_bytes(*mem as u64)),
                            (r + 4, -7),
                            ("sans-serif", 14).into_font().color(&BLACK),
                        ),
                ))
                .map_err(chart_error)?;
        }
        root.present().map_err(chart_error)?;
    }
    Ok(svg)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{analyze, zoo, BuildOptions};

    fn analysis(name: &str) -> Analysis {
        let net = zoo::build(name, &BuildOptions::default()).unwrap().unwrap();
        analyze(&net, Dtype::F32).unwrap()
    }

    #[test]
    fn depth_counts_weighted_layers() {
        // ResNet-50: 53 convolutions (1 stem + 16 blocks × 3 + 4 projections) and 1 linear.
        assert_eq!(Entry::new(&analysis("resnet50")).depth, 54);
        // VGG-16: 13 convolutions + 3 linear; AlexNet 5 + 3; LeNet-5 2 + 3.
        assert_eq!(Entry::new(&analysis("vgg16")).depth, 16);
        assert_eq!(Entry::new(&analysis("alexnet")).depth, 8);
        assert_eq!(Entry::new(&analysis("lenet5")).depth, 5);
    }

    #[test]
    fn ratios_and_sorting() {
        let a = [analysis("resnet50"), analysis("alexnet"), analysis("vgg16")];
        let mut c = Comparison::new(&a, Some("alexnet")).unwrap();
        c.sort(SortKey::Macs);
        let names: Vec<&str> = c.entries.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["alexnet", "resnet50", "vgg16"]);
        // torchvision MACs: 4,089,184,256 / 714,188,480.
        let r = c.ratios(1).unwrap();
        assert!((r.macs.unwrap() - 4_089_184_256f64 / 714_188_480f64).abs() < 1e-12);
        assert_eq!(c.ratios(0).unwrap().params, Some(1.0));
        let e = Comparison::new(&a, Some("alexnt")).unwrap_err();
        let d = e.diagnostic();
        assert_eq!(
            d.message,
            "the baseline `alexnt` is not among the compared models (resnet50, alexnet, vgg16)"
        );
        assert_eq!(d.help.as_deref(), Some("did you mean `alexnet`?"));
        // Final fields (tests/rf.rs has them from PyTorch gradients): AlexNet 195, ResNet-50 427.
        assert_eq!(c.entries[0].rf, Some(vec![Q::from(195), Q::from(195)]));
        assert_eq!(c.entries[1].rf, Some(vec![Q::from(427), Q::from(427)]));
    }

    #[test]
    fn models_at_their_own_inputs() {
        // LeNet-5 (32²) against the MLP (28²): ratios are taken at the same sweep position even
        // though the inputs differ. 203,530 / 61,706 parameters. The MLP flattens its input at
        // once: no trunk field.
        let a = [analysis("lenet5"), analysis("mlp3")];
        let c = Comparison::new(&a, Some("lenet5")).unwrap();
        let r = c.ratios(1).unwrap();
        assert!((r.params.unwrap() - 203_530.0 / 61_706.0).abs() < 1e-12);
        assert_eq!(c.entries[1].rf, None);
        assert_eq!(c.entries[0].rf, Some(vec![Q::from(16), Q::from(16)]));
    }

    #[test]
    fn chart_has_labels_and_bubbles() {
        let a = [analysis("alexnet"), analysis("resnet50")];
        let svg = chart_svg(&Comparison::new(&a, None).unwrap()).unwrap();
        assert!(svg.starts_with("<svg"));
        assert!(svg.contains("alexnet · ") && svg.contains("resnet50 · "));
        assert!(svg.matches("<circle").count() >= 4);
        assert!(svg.contains("Parameters"));
    }
}
