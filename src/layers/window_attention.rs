//! Shifted-window multi-head self-attention (`shifted_window_attention`), torchvision's
//! `ShiftedWindowAttention` (Swin V1) and `ShiftedWindowAttentionV2` (Swin V2) on an N×H×W×C
//! (channels-last) map: the map padded at the bottom and right to a multiple of the window
//! (torchvision's `F.pad`, only with `pad: true`: without it a window that does not divide the
//! map is an error), cyclically rolled by −shift (the shift set to 0 on an axis where the window
//! covers the padded map), cut into windows of wh×ww tokens, `qkv` (C→3C), per head Q·Kᵀ plus
//! the relative position bias (V1: a learned (2wh−1)(2ww−1)×heads table; V2: the continuous
//! position bias MLP `cpb_mlp` on log-spaced coordinates, 16·sigmoid) and the −100 mask between
//! regions of a shifted window, softmax, ·V, `proj` (C→C), then rolled back and cropped.
//! V2 uses cosine attention scaled by exp(min(logit_scale, ln 100)) and zeroes the key third of
//! the qkv bias. Parameters and buffers carry torchvision's state-dict names. MACs: the qkv and
//! proj products, Q·Kᵀ and attention·V in every window, and V2's `cpb_mlp`
//! (docs/COUNTING.md); each profiler's charge was measured with the tool
//! (`scripts/swin_reference.py`).

use rayon::prelude::*;

use super::Convention;
use super::{
    add, mul, Arity, AttentionSplit, AttrDefault, Attrs, Category, Collapsed, Cost, Counting,
    Geometry, Kernel, Layer, Op, OpType, Params, Role, Saved, Shape, Training,
};
use crate::error::Diagnostic;
use crate::kernels::{matmul, vectorised, Ctx};
use crate::kernels_attn::{probs_times_values, softmax_row};
use crate::tensor::{Init, Tensor, WeightKind, WeightSpec, MAX_TENSOR_ELEMENTS};

pub const SHIFTED_WINDOW_ATTENTION: OpType = OpType {
    name: "shifted_window_attention",
    aliases: &[],
    keys: &["heads", "window", "shift", "v2", "pad", "qkv_bias", "proj_bias"],
    arity: Arity::Exactly(1),
    fused_bn: None,
    defaults: &[
        ("window", AttrDefault::Axes(None)),
        ("shift", AttrDefault::Axes(Some(0))),
        ("v2", AttrDefault::Bool(false)),
        ("pad", AttrDefault::Bool(false)),
        ("qkv_bias", AttrDefault::Bool(true)),
        ("proj_bias", AttrDefault::Bool(true)),
    ],
    build,
    summary: "Swin's shifted-window multi-head self-attention on N×H×W×C (torchvision ShiftedWindowAttention, V2 with `v2: true`)",
};

/// Hidden width of V2's continuous position bias MLP (torchvision: `nn.Linear(2, 512)`).
const CPB_HIDDEN: u64 = 512;
/// The attention logit added between tokens of different regions of a shifted window.
const MASK: f32 = -100.0;

#[derive(Debug)]
struct WindowAttention {
    dim: u64,
    heads: u64,
    window: [u64; 2],
    /// The shift as written.
    shift: [u64; 2],
    /// The shift applied: 0 on an axis where the window covers the padded map.
    eff_shift: [u64; 2],
    /// The input map and the padded map (multiples of the window).
    map: [u64; 2],
    padded: [u64; 2],
    v2: bool,
    qkv_bias: bool,
    proj_bias: bool,
}

fn build(a: &mut Attrs) -> Result<Box<dyn Layer>, Diagnostic> {
    let x = a.input().clone();
    let heads = a.req_positive("heads", "3")?;
    let window = a.req_pair("window", "7")?;
    let shift = a.pair0("shift")?.unwrap_or([0, 0]);
    let v2 = a.bool("v2", false)?;
    let pad = a.bool("pad", false)?;
    let qkv_bias = a.bool("qkv_bias", true)?;
    let proj_bias = a.bool("proj_bias", true)?;
    if x.rank() != 4 {
        return Err(Diagnostic::new(format!(
            "shifted_window_attention needs an N×H×W×C (channels-last) input, got {x} (rank {})",
            x.rank()
        ))
        .help("Swin runs on channels-last maps: after a convolution's N×C×H×W output, write `{op: permute, dims: [0, 2, 3, 1]}`"));
    }
    // Channels last: the last axis holds the features and the two before it the map
    // (layout.rs); an N×C×H×W map would attend over its columns.
    let lay = a.input_layout(0);
    let positional = |r: &Role| matches!(r, Role::Space(_));
    if positional(&lay.0[3]) || !positional(&lay.0[1]) || !positional(&lay.0[2]) {
        return Err(Diagnostic::new(format!(
            "shifted_window_attention needs a channels-last N×H×W×C map, and this input {x} is laid out {}: its windows would cut the wrong axes",
            lay.letters(2)
        ))
        .help("permute it first: `{op: permute, dims: [0, 2, 3, 1]}` (torchvision's Permute([0, 2, 3, 1]) after the patch embedding)"));
    }
    let (map, dim) = ([x.0[1], x.0[2]], x.0[3]);
    if !dim.is_multiple_of(heads) {
        let fits: Vec<String> = (1..=dim.min(64))
            .filter(|h| dim.is_multiple_of(*h))
            .map(|h| h.to_string())
            .collect();
        return Err(a
            .error(
                "heads",
                format!("{heads} heads do not divide the {dim} channels of the input {x}"),
            )
            .help(format!(
                "each head takes C/heads channels: choose heads among {} (or change the channels)",
                fits.join(", ")
            )));
    }
    for ax in 0..2 {
        if shift[ax] >= window[ax] {
            return Err(a
                .error(
                    "shift",
                    format!(
                        "a shift of {} is not smaller than the window's {} on the {}",
                        shift[ax],
                        window[ax],
                        ["height", "width"][ax]
                    ),
                )
                .help(format!(
                    "Swin shifts by half the window: write `shift: {}` (or 0 for the unshifted blocks)",
                    window[ax] / 2
                )));
        }
        if v2 && window[ax] < 2 {
            return Err(a
                .error("window", format!("v2 needs a window of at least 2 on each axis, got {}×{}", window[0], window[1]))
                .help("the continuous position bias divides the relative coordinates by window − 1: use a window of 2 or more"));
        }
    }
    let padded = [
        map[0].div_ceil(window[0]) * window[0],
        map[1].div_ceil(window[1]) * window[1],
    ];
    if padded != map && !pad {
        let what = if !map[0].is_multiple_of(window[0]) && !map[1].is_multiple_of(window[1]) {
            "divides neither side".to_string()
        } else if !map[0].is_multiple_of(window[0]) {
            format!("does not divide the height {}", map[0])
        } else {
            format!("does not divide the width {}", map[1])
        };
        return Err(a
            .error(
                "window",
                format!(
                    "the {}×{} window {what} of the {}×{} map",
                    window[0], window[1], map[0], map[1]
                ),
            )
            .help(format!(
                "write `pad: true` to pad the map to {}×{} at the bottom and right as torchvision's ShiftedWindowAttention does, or choose a window (or input size) that divides the map",
                padded[0], padded[1]
            )));
    }
    let eff_shift = [
        if window[0] >= padded[0] { 0 } else { shift[0] },
        if window[1] >= padded[1] { 0 } else { shift[1] },
    ];
    // Sizes the kernel allocates: the window bias table and the attention rows.
    mul(&[window[0], window[1], window[0], window[1], heads])?;
    Ok(Box::new(WindowAttention {
        dim,
        heads,
        window,
        shift,
        eff_shift,
        map,
        padded,
        v2,
        qkv_bias,
        proj_bias,
    }))
}

/// torchvision's `relative_position_index`: for tokens i = (a1, b1) and j = (a2, b2) of a
/// window (row-major), `(a1 − a2 + wh − 1)·(2ww − 1) + (b1 − b2 + ww − 1)`.
pub(super) fn relative_position_index([wh, ww]: [usize; 2]) -> Vec<f32> {
    let l = wh * ww;
    let mut idx = Vec::with_capacity(l * l);
    for i in 0..l {
        for j in 0..l {
            let (a1, b1, a2, b2) = (i / ww, i % ww, j / ww, j % ww);
            idx.push(((a1 + wh - 1 - a2) * (2 * ww - 1) + (b1 + ww - 1 - b2)) as f32);
        }
    }
    idx
}

/// torchvision's V2 `relative_coords_table` (1×(2wh−1)×(2ww−1)×2): each relative offset
/// divided by window − 1, times 8, then sign(v)·log2(|v| + 1)/3, in float32 as PyTorch does.
fn relative_coords_table([wh, ww]: [usize; 2]) -> Vec<f32> {
    let f = |d: i64, w: usize| -> f32 {
        let v = d as f32 / (w as f32 - 1.0) * 8.0;
        // torch.sign(0) is 0.
        let sign = if v == 0.0 { 0.0 } else { v.signum() };
        sign * (v.abs() + 1.0).log2() / 3.0
    };
    let mut t = Vec::with_capacity((2 * wh - 1) * (2 * ww - 1) * 2);
    for dh in -(wh as i64 - 1)..wh as i64 {
        for dw in -(ww as i64 - 1)..ww as i64 {
            t.push(f(dh, wh));
            t.push(f(dw, ww));
        }
    }
    t
}

/// The region label torchvision's mask gives position `p` of a padded axis of length `n` with
/// window `w` and shift `s` (its three slices `[0, n−w)`, `[n−w, n−s)`, `[n−s, n)`; with `s = 0`
/// the last slice, `[−0:]`, is the whole axis, so every position shares one label).
fn region(p: usize, n: usize, w: usize, s: usize) -> usize {
    if s == 0 || p >= n - s {
        2
    } else if p >= n - w {
        1
    } else {
        0
    }
}

impl WindowAttention {
    fn l(&self) -> u64 {
        self.window[0] * self.window[1]
    }
    fn table_rows(&self) -> u64 {
        (2 * self.window[0] - 1) * (2 * self.window[1] - 1)
    }
    fn windows_per_sample(&self) -> u64 {
        (self.padded[0] / self.window[0]) * (self.padded[1] / self.window[1])
    }
    /// Tokens of the padded maps of the batch, windows of the batch, and attention logits.
    fn sizes(&self, n: u64) -> Result<(u64, u64, u64), Diagnostic> {
        let tokens = mul(&[n, self.padded[0], self.padded[1]])?;
        let windows = mul(&[n, self.windows_per_sample()])?;
        let logits = mul(&[windows, self.heads, self.l(), self.l()])?;
        Ok((tokens, windows, logits))
    }
    /// V2's continuous position bias MLP: MACs on the table's (2wh−1)(2ww−1) coordinates.
    fn cpb_macs(&self) -> Result<u64, Diagnostic> {
        if self.v2 {
            mul(&[self.table_rows(), CPB_HIDDEN, 2 + self.heads])
        } else {
            Ok(0)
        }
    }
    /// qkv and proj products, and Q·Kᵀ plus attention·V in every window.
    fn macs(&self, n: u64) -> Result<u64, Diagnostic> {
        let (tokens, windows, _) = self.sizes(n)?;
        let c = self.dim;
        add(&[
            mul(&[tokens, 4, c, c])?,
            mul(&[windows, 2, self.l(), self.l(), c])?,
            self.cpb_macs()?,
        ])
    }
    fn shifted(&self) -> bool {
        self.eff_shift != [0, 0]
    }
}

impl Op for WindowAttention {
    fn op(&self) -> &'static str {
        "shifted_window_attention"
    }
    fn label(&self) -> String {
        let w = super::pair_label(self.window);
        let mut s = format!("window attention {w}");
        if self.shift != [0, 0] {
            s.push_str(&format!(" shift {}", super::pair_label(self.shift)));
            if self.eff_shift != self.shift {
                s.push_str(&format!(
                    " (applied {}: the window covers the map)",
                    super::pair_label(self.eff_shift)
                ));
            }
        }
        s.push_str(&format!(", {} heads×{}", self.heads, self.dim / self.heads));
        if self.v2 {
            s.push_str(", v2");
        }
        s
    }
    fn category(&self) -> Category {
        Category::Attention
    }
    fn attention(&self, inputs: &[Shape]) -> Result<Option<AttentionSplit>, Diagnostic> {
        let n = inputs[0].0[0];
        let (tokens, windows, _) = self.sizes(n)?;
        let (c, l) = (self.dim, self.l());
        // Per window, the heads together: L·L·(C/heads)·heads = L²·C for each product.
        let product = mul(&[windows, l, l, c])?;
        Ok(Some(AttentionSplit {
            heads: self.heads,
            head_dim: c / self.heads,
            queries: l,
            keys: l,
            windows: self.windows_per_sample(),
            projections: mul(&[tokens, 4, c, c])?,
            scores: product,
            values: product,
            other: self.cpb_macs()?,
        }))
    }
    fn output_shapes(&self, inputs: &[Shape]) -> Result<Vec<Shape>, Diagnostic> {
        let x = &inputs[0];
        if x.rank() != 4 || [x.0[1], x.0[2]] != self.map || x.0[3] != self.dim {
            return Err(Diagnostic::new(format!(
                "shifted_window_attention was built for N×{}×{}×{}, got {x}",
                self.map[0], self.map[1], self.dim
            )));
        }
        Ok(vec![x.clone()])
    }
    fn params(&self) -> Params {
        let c = self.dim;
        let h = self.heads;
        let l = self.l();
        let t = self.table_rows();
        let mut p =
            4 * c * c + if self.qkv_bias { 3 * c } else { 0 } + if self.proj_bias { c } else { 0 };
        let mut b = l * l;
        if self.v2 {
            p += h + CPB_HIDDEN * 3 + CPB_HIDDEN * h;
            b += 2 * t;
        } else {
            p += t * h;
        }
        Params {
            trainable: p,
            frozen: 0,
            buffers: b,
        }
    }
    fn cost(&self, inputs: &[Shape], _outputs: &[Shape]) -> Result<Cost, Diagnostic> {
        let n = inputs[0].0[0];
        let macs = self.macs(n)?;
        let (tokens, _, logits) = self.sizes(n)?;
        let c = self.dim;
        let bias = add(&[
            if self.qkv_bias {
                mul(&[tokens, 3 * c])?
            } else {
                0
            },
            if self.proj_bias {
                mul(&[tokens, c])?
            } else {
                0
            },
        ])?;
        // Per logit: the position bias add (1), the mask add when shifted (1), softmax (4);
        // V1 scales q (1 per element), V2 normalises q and k (3 per element: square, add,
        // divide; a square root per row) and multiplies each logit by its head's scale.
        let per_logit = 5 + u64::from(self.shifted()) + u64::from(self.v2);
        let scale = if self.v2 {
            add(&[
                mul(&[tokens, 6, c])?,
                mul(&[tokens, 2, self.heads])?,
                // cpb_mlp: hidden bias and ReLU (2 per hidden unit), 16·sigmoid (5 per entry);
                // the logit scale's clamp and exp (2 per head).
                mul(&[self.table_rows(), 2 * CPB_HIDDEN + 5 * self.heads])?,
                2 * self.heads,
            ])?
        } else {
            mul(&[tokens, c])?
        };
        Ok(Cost {
            macs,
            flops: add(&[mul(&[2, macs])?, bias, mul(&[logits, per_logit])?, scale])?,
        })
    }
    fn geometry(&self, _inputs: &[Shape]) -> Geometry {
        // Every output token depends on the tokens of its (shifted) window only.
        Geometry::Partition {
            window: self.window.into(),
            shift: self.eff_shift.into(),
        }
    }
    fn torch_type(&self) -> Option<&'static str> {
        Some(if self.v2 {
            "ShiftedWindowAttentionV2"
        } else {
            "ShiftedWindowAttention"
        })
    }
}

// Positions of the tensors in `weights()`.
const QKV_W: usize = 0;
const PROJ_W: usize = 1;

impl Kernel for WindowAttention {
    /// torchvision's forward written out: `Pad` to the padded map, the roll by −shift
    /// (`Slice`, `Concat`), the windows (`Reshape`, `Transpose`), `qkv` (`MatMul`, `Add`), the
    /// heads split, Q·Kᵀ (V1 with q scaled; V2 cosine, `ReduceL2`, times exp(min(logit_scale,
    /// ln 100))), the position bias (`Gather` of the table, or of V2's `cpb_mlp` output and
    /// 16·sigmoid), the constant −100 mask between regions of shifted windows, `Softmax`, ·V,
    /// `proj`, the windows merged, rolled back and cropped.
    fn onnx(&self, e: &mut super::onnx::Emit) -> Result<(), Diagnostic> {
        use super::onnx::{int, ints, slice};
        let x = e.input(0);
        let n = e.in_dims(0)[0];
        let c = self.dim as i64;
        let heads = self.heads as i64;
        let d = c / heads;
        let [wh, ww] = [self.window[0] as i64, self.window[1] as i64];
        let l = wh * ww;
        let [h, w] = [self.map[0] as i64, self.map[1] as i64];
        let [hp, wp] = [self.padded[0] as i64, self.padded[1] as i64];
        let [s0, s1] = [self.eff_shift[0] as i64, self.eff_shift[1] as i64];
        let (nwh, nww) = (hp / wh, wp / ww);
        let nw = nwh * nww;
        let b = n * nw;
        // Weights in `weights()` order.
        let mut k = 2;
        let mut next = |on: bool, e: &super::onnx::Emit| {
            on.then(|| {
                k += 1;
                e.weight(k - 1)
            })
        };
        let qkv_b = next(self.qkv_bias, e);
        let proj_b = next(self.proj_bias, e);
        let v2 = if self.v2 {
            Some((
                next(true, e).expect("listed"),
                next(true, e).expect("listed"),
                next(true, e).expect("listed"),
                next(true, e).expect("listed"),
                next(true, e).expect("listed"),
            ))
        } else {
            None
        };
        let table = if self.v2 { None } else { next(true, e) };
        let index = next(true, e).expect("listed");

        let mut y = x;
        if (hp, wp) != (h, w) {
            let p = e.ints("pads", &[0, 0, 0, 0, 0, hp - h, wp - w, 0]);
            y = e.step(
                "Pad",
                &[&y, &p],
                vec![super::onnx::string("mode", "constant")],
            );
        }
        // Rolls y by −s along `axis` of length `len` (shifted[p] = y[(p + s) mod len]).
        let roll = |e: &mut super::onnx::Emit, y: String, axis: i64, len: i64, s: i64| {
            if s == 0 {
                return y;
            }
            let a = e.tmp("tail");
            let bb = e.tmp("head");
            slice(e, &y, &[axis], &[s], &[len], &[1], &a);
            slice(e, &y, &[axis], &[0], &[s], &[1], &bb);
            e.step("Concat", &[&a, &bb], vec![int("axis", axis)])
        };
        y = roll(e, y, 1, hp, s0);
        y = roll(e, y, 2, wp, s1);
        let y = e.reshape(&y, &[n, nwh, wh, nww, ww, c]);
        let y = e.step("Transpose", &[&y], vec![ints("perm", &[0, 1, 3, 2, 4, 5])]);
        let xw = e.reshape(&y, &[b, l, c]);
        let wq = e.weight(QKV_W);
        let wqt = e.step("Transpose", &[&wq], vec![ints("perm", &[1, 0])]);
        let mut qkv = e.step("MatMul", &[&xw, &wqt], vec![]);
        if let Some(bias) = &qkv_b {
            let bias = if self.v2 {
                let mut keep = vec![1f32; 3 * c as usize];
                keep[c as usize..2 * c as usize].fill(0.0);
                let m = e.floats("key_bias_off", &[3 * c], keep);
                e.step("Mul", &[bias, &m], vec![])
            } else {
                bias.clone()
            };
            qkv = e.step("Add", &[&qkv, &bias], vec![]);
        }
        let qkv = e.reshape(&qkv, &[b, l, 3, heads, d]);
        let qkv = e.step("Transpose", &[&qkv], vec![ints("perm", &[2, 0, 3, 1, 4])]);
        let part = |e: &mut super::onnx::Emit, i: i64| {
            let ix = e.tmp("part");
            e.consts.push(super::onnx::Const {
                name: ix.clone(),
                dims: vec![],
                data: super::onnx::ConstData::I64(vec![i]),
            });
            e.step("Gather", &[&qkv, &ix], vec![int("axis", 0)])
        };
        let (mut q, mut kk, v) = (part(e, 0), part(e, 1), part(e, 2));
        let t = self.table_rows() as i64;
        let logits;
        let bias_rows;
        if let Some((logit_scale, w0, b0, w2, coords)) = &v2 {
            for z in [&mut q, &mut kk] {
                let norm = super::onnx::reduce(e, "ReduceL2", z, &[-1], true);
                let tiny = e.scalar("eps", 1e-12);
                let norm = e.step("Max", &[&norm, &tiny], vec![]);
                *z = e.step("Div", &[z, &norm], vec![]);
            }
            let kt = e.step("Transpose", &[&kk], vec![ints("perm", &[0, 1, 3, 2])]);
            let prod = e.step("MatMul", &[&q, &kt], vec![]);
            let cap = e.scalar("ln100", 100f32.ln());
            let ls = e.step("Min", &[logit_scale, &cap], vec![]);
            let sc = e.step("Exp", &[&ls], vec![]);
            logits = e.step("Mul", &[&prod, &sc], vec![]);
            let co = e.reshape(coords, &[t, 2]);
            let w0t = e.step("Transpose", &[w0], vec![ints("perm", &[1, 0])]);
            let hid = e.step("MatMul", &[&co, &w0t], vec![]);
            let hid = e.step("Add", &[&hid, b0], vec![]);
            let hid = e.step("Relu", &[&hid], vec![]);
            let w2t = e.step("Transpose", &[w2], vec![ints("perm", &[1, 0])]);
            bias_rows = e.step("MatMul", &[&hid, &w2t], vec![]);
        } else {
            let sc = e.scalar("scale", (d as f32).powf(-0.5));
            let qs = e.step("Mul", &[&q, &sc], vec![]);
            let kt = e.step("Transpose", &[&kk], vec![ints("perm", &[0, 1, 3, 2])]);
            logits = e.step("MatMul", &[&qs, &kt], vec![]);
            bias_rows = table.expect("V1 has a table");
        }
        // table[index[i·L + j]][h] → heads × L × L.
        let ix = e.step("Cast", &[&index], vec![int("to", 7)]);
        let gathered = e.step("Gather", &[&bias_rows, &ix], vec![int("axis", 0)]);
        let gathered = e.step("Transpose", &[&gathered], vec![ints("perm", &[1, 0])]);
        let mut bias = e.reshape(&gathered, &[heads, l, l]);
        if self.v2 {
            let sig = e.step("Sigmoid", &[&bias], vec![]);
            let sixteen = e.scalar("sixteen", 16.0);
            bias = e.step("Mul", &[&sig, &sixteen], vec![]);
        }
        let mut att = e.step("Add", &[&logits, &bias], vec![]);
        if self.shifted() {
            let (lu, wwu, whu) = (l as usize, ww as usize, wh as usize);
            let mut mask = vec![0f32; (nw * l * l) as usize];
            for win in 0..nw as usize {
                let (r0, c0) = ((win / nww as usize) * whu, (win % nww as usize) * wwu);
                let label = |tok: usize| {
                    region(r0 + tok / wwu, hp as usize, whu, s0 as usize) * 3
                        + region(c0 + tok % wwu, wp as usize, wwu, s1 as usize)
                };
                for i in 0..lu {
                    for j in 0..lu {
                        if label(i) != label(j) {
                            mask[(win * lu + i) * lu + j] = MASK;
                        }
                    }
                }
            }
            let m = e.floats("shift_mask", &[nw, 1, l, l], mask);
            let a5 = e.reshape(&att, &[n, nw, heads, l, l]);
            let a5 = e.step("Add", &[&a5, &m], vec![]);
            att = e.reshape(&a5, &[b, heads, l, l]);
        }
        let p = e.step("Softmax", &[&att], vec![int("axis", -1)]);
        let o = e.step("MatMul", &[&p, &v], vec![]);
        let o = e.step("Transpose", &[&o], vec![ints("perm", &[0, 2, 1, 3])]);
        let o = e.reshape(&o, &[b, l, c]);
        let wp_ = e.weight(PROJ_W);
        let wpt = e.step("Transpose", &[&wp_], vec![ints("perm", &[1, 0])]);
        let mut o = e.step("MatMul", &[&o, &wpt], vec![]);
        if let Some(pb) = &proj_b {
            o = e.step("Add", &[&o, pb], vec![]);
        }
        let o = e.reshape(&o, &[n, nwh, nww, wh, ww, c]);
        let o = e.step("Transpose", &[&o], vec![ints("perm", &[0, 1, 3, 2, 4, 5])]);
        let mut o = e.reshape(&o, &[n, hp, wp, c]);
        // The roll undone: by +s, i.e. −(len − s).
        o = roll(e, o, 1, hp, (hp - s0) % hp);
        o = roll(e, o, 2, wp, (wp - s1) % wp);
        let out = e.output(0);
        if (hp, wp) != (h, w) {
            slice(e, &o, &[1, 2], &[0, 0], &[h, w], &[1, 1], &out);
        } else {
            e.node("Identity", &[&o], &[&out], vec![]);
        }
        Ok(())
    }
    fn collapsed(&self) -> Collapsed {
        Collapsed::Partition {
            window: self.window.into(),
            shift: self.eff_shift.into(),
        }
    }
    fn weights(&self) -> Vec<WeightSpec> {
        let c = self.dim as usize;
        let h = self.heads as usize;
        let t = self.table_rows() as usize;
        let win = [self.window[0] as usize, self.window[1] as usize];
        let l = win[0] * win[1];
        let p = WeightKind::Trainable;
        let spec = |name, shape, kind, init| WeightSpec {
            name,
            shape,
            kind,
            init,
        };
        let mut w = vec![
            spec("qkv.weight", vec![3 * c, c], p, Init::Kaiming { fan_in: c }),
            spec("proj.weight", vec![c, c], p, Init::Kaiming { fan_in: c }),
        ];
        if self.qkv_bias {
            w.push(spec("qkv.bias", vec![3 * c], p, Init::Zeros));
        }
        if self.proj_bias {
            w.push(spec("proj.bias", vec![c], p, Init::Zeros));
        }
        if self.v2 {
            let hidden = CPB_HIDDEN as usize;
            w.push(spec(
                "logit_scale",
                vec![h, 1, 1],
                p,
                Init::Constant(10f32.ln()),
            ));
            w.push(spec(
                "cpb_mlp.0.weight",
                vec![hidden, 2],
                p,
                Init::Kaiming { fan_in: 2 },
            ));
            w.push(spec("cpb_mlp.0.bias", vec![hidden], p, Init::Zeros));
            w.push(spec(
                "cpb_mlp.2.weight",
                vec![h, hidden],
                p,
                Init::Kaiming { fan_in: hidden },
            ));
            w.push(spec(
                "relative_coords_table",
                vec![1, 2 * win[0] - 1, 2 * win[1] - 1, 2],
                WeightKind::Buffer,
                Init::Fixed(relative_coords_table(win)),
            ));
        } else {
            w.push(spec(
                "relative_position_bias_table",
                vec![t, h],
                p,
                Init::Zeros,
            ));
        }
        w.push(spec(
            "relative_position_index",
            vec![l * l],
            WeightKind::Buffer,
            Init::Fixed(relative_position_index(win)),
        ));
        w
    }

    fn forward(
        &self,
        inputs: &[&Tensor],
        weights: &[Tensor],
        ctx: &mut Ctx,
    ) -> Result<Vec<Tensor>, Diagnostic> {
        let x = inputs[0];
        let c = self.dim as usize;
        let heads = self.heads as usize;
        let d = c / heads;
        let [wh, ww] = [self.window[0] as usize, self.window[1] as usize];
        let l = wh * ww;
        let [h, w] = [self.map[0] as usize, self.map[1] as usize];
        let [hp, wp] = [self.padded[0] as usize, self.padded[1] as usize];
        let [s0, s1] = [self.eff_shift[0] as usize, self.eff_shift[1] as usize];
        let n = x.shape[0];
        let (nwh, nww) = (hp / wh, wp / ww);
        let per_sample = nwh * nww;
        let windows = n * per_sample;
        let rows = windows * l;
        if rows.saturating_mul(3 * c) > MAX_TENSOR_ELEMENTS {
            return Err(Diagnostic::new(format!(
                "the qkv projection of {rows} window tokens × {} would exceed the executor's {MAX_TENSOR_ELEMENTS} elements",
                3 * c
            ))
            .help("run a smaller batch or input"));
        }

        // Named weights, in the order `weights()` lists them.
        let mut k = 2;
        let mut next = |on: bool| {
            on.then(|| {
                k += 1;
                &weights[k - 1]
            })
        };
        let qkv_b = next(self.qkv_bias);
        let proj_b = next(self.proj_bias);
        let (logit_scale, cpb0_w, cpb0_b, cpb2_w, coords, table) = if self.v2 {
            let ls = next(true);
            let w0 = next(true);
            let b0 = next(true);
            let w2 = next(true);
            let co = next(true);
            (ls, w0, b0, w2, co, None)
        } else {
            (None, None, None, None, None, next(true))
        };
        let index = next(true).expect("the index is always listed");

        // The per-head bias of every (query, key) pair of a window: table[index[i·L + j]][h].
        let t = self.table_rows() as usize;
        let table: Vec<f32> = match (table, coords) {
            (Some(tab), _) => tab.data.clone(),
            (None, Some(co)) => {
                // cpb_mlp: Linear(2, 512) → ReLU → Linear(512, heads, no bias), then 16·sigmoid
                // after the lookup.
                let hidden = CPB_HIDDEN as usize;
                let mut hid = vec![0f32; t * hidden];
                let (w0, b0, w2) = (cpb0_w.unwrap(), cpb0_b.unwrap(), cpb2_w.unwrap());
                ctx.macs += matmul(
                    t, hidden, 2, &co.data, 2, 1, &w0.data, 1, 2, &mut hid, false,
                );
                for row in hid.chunks_mut(hidden) {
                    for (v, b) in row.iter_mut().zip(&b0.data) {
                        *v = (*v + b).max(0.0);
                    }
                }
                let mut out = vec![0f32; t * heads];
                ctx.macs += matmul(
                    t, heads, hidden, &hid, hidden, 1, &w2.data, 1, hidden, &mut out, false,
                );
                out
            }
            (None, None) => unreachable!("V1 has a table, V2 coordinates"),
        };
        let mut bias = vec![0f32; heads * l * l];
        for (ij, &ix) in index.data.iter().enumerate() {
            if !(ix >= 0.0 && ix.fract() == 0.0 && (ix as usize) < t) {
                return Err(Diagnostic::new(format!(
                    "relative_position_index holds {ix} at position {ij}, outside the {t} rows of the position bias table"
                ))
                .help("the buffer must be the index torchvision computes for this window size: a checkpoint of another window size does not fit"));
            }
            let row = ix as usize;
            for hh in 0..heads {
                let v = table[row * heads + hh];
                bias[hh * l * l + ij] = if self.v2 {
                    16.0 / (1.0 + (-v).exp())
                } else {
                    v
                };
            }
        }
        let scales: Vec<f32> = match logit_scale {
            Some(ls) => ls.data.iter().map(|&v| v.min(100f32.ln()).exp()).collect(),
            None => vec![(d as f32).powf(-0.5); heads],
        };

        // Gather the windows of the rolled, padded map: row (n, window, token) holds input
        // position ((p + s0) mod Hp, (q + s1) mod Wp), zero where that is padding.
        let src = |r: usize| -> Option<usize> {
            let (b, rest) = (r / (per_sample * l), r % (per_sample * l));
            let (win, tok) = (rest / l, rest % l);
            let p = (win / nww) * wh + tok / ww;
            let q = (win % nww) * ww + tok % ww;
            let (y, xx) = ((p + s0) % hp, (q + s1) % wp);
            (y < h && xx < w).then(|| ((b * h + y) * w + xx) * c)
        };
        let mut xw = vec![0f32; rows * c];
        xw.par_chunks_mut(c).enumerate().for_each(|(r, row)| {
            if let Some(o) = src(r) {
                row.copy_from_slice(&x.data[o..o + c]);
            }
        });
        // qkv = xw · Wqkvᵀ + b (V2: the key third of the bias zeroed).
        let mut qkv = vec![0f32; rows * 3 * c];
        ctx.macs += matmul(
            rows,
            3 * c,
            c,
            &xw,
            c,
            1,
            &weights[QKV_W].data,
            1,
            c,
            &mut qkv,
            false,
        );
        if let Some(b) = qkv_b {
            let mut b = b.data.clone();
            if self.v2 {
                b[c..2 * c].fill(0.0);
            }
            qkv.par_chunks_mut(3 * c).for_each(|row| {
                row.iter_mut().zip(&b).for_each(|(v, b)| *v += b);
            });
        }
        if self.v2 {
            // F.normalize(q) and F.normalize(k) per head: x / max(‖x‖, 1e-12).
            qkv.par_chunks_mut(3 * c).for_each(|row| {
                for part in row[..2 * c].chunks_mut(d) {
                    let norm = part.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-12);
                    part.iter_mut().for_each(|v| *v /= norm);
                }
            });
        }

        // Attention per window and head, into yw (rows × C, head h in columns h·d…).
        let mut yw = vec![0f32; rows * c];
        let shifted = self.shifted();
        let attn_macs: u64 = yw
            .par_chunks_mut(l * c)
            .enumerate()
            .map(|(wi, out)| {
                let win = wi % per_sample;
                let (r0, c0) = ((win / nww) * wh, (win % nww) * ww);
                let label = |tok: usize| {
                    region(r0 + tok / ww, hp, wh, s0) * 3 + region(c0 + tok % ww, wp, ww, s1)
                };
                let labels: Vec<usize> = if shifted {
                    (0..l).map(label).collect()
                } else {
                    Vec::new()
                };
                let base = &qkv[wi * l * 3 * c..(wi + 1) * l * 3 * c];
                let mut logits = vec![0f32; l * l];
                let mut q = vec![0f32; l * d];
                let mut macs = 0u64;
                for hh in 0..heads {
                    // Q (scaled in V1, as torchvision scales q before the product).
                    for i in 0..l {
                        let row = &base[i * 3 * c + hh * d..i * 3 * c + hh * d + d];
                        if self.v2 {
                            q[i * d..(i + 1) * d].copy_from_slice(row);
                        } else {
                            for (o, v) in q[i * d..(i + 1) * d].iter_mut().zip(row) {
                                *o = v * scales[hh];
                            }
                        }
                    }
                    // logits (L×L) = Q (L×d) · Kᵀ, K rows at stride 3C.
                    macs += matmul(
                        l,
                        l,
                        d,
                        &q,
                        d,
                        1,
                        &base[c + hh * d..],
                        1,
                        3 * c,
                        &mut logits,
                        false,
                    );
                    let hb = &bias[hh * l * l..(hh + 1) * l * l];
                    for i in 0..l {
                        let row = &mut logits[i * l..(i + 1) * l];
                        for j in 0..l {
                            let mut v = row[j];
                            if self.v2 {
                                v *= scales[hh];
                            }
                            v += hb[i * l + j];
                            if shifted && labels[i] != labels[j] {
                                v += MASK;
                            }
                            row[j] = v;
                        }
                        vectorised(
                            #[inline(always)]
                            || softmax_row(row),
                        );
                    }
                    // out[:, h·d…] = P · V (rows at stride C).
                    let mut o = vec![0f32; l * d];
                    macs += probs_times_values(&logits, base, out, &mut o, (l, d, c, hh));
                }
                macs
            })
            .sum();
        ctx.macs += attn_macs;
        drop(qkv);

        // proj, then every token back to its place (the roll undone, the padding cropped).
        ctx.macs += matmul(
            rows,
            c,
            c,
            &yw,
            c,
            1,
            &weights[PROJ_W].data,
            1,
            c,
            &mut xw,
            false,
        );
        if let Some(b) = proj_b {
            xw.par_chunks_mut(c).for_each(|row| {
                row.iter_mut().zip(&b.data).for_each(|(v, b)| *v += b);
            });
        }
        let mut out = ctx.output(&x.shape);
        // Each output position is written by exactly one window row.
        let mut dest = vec![usize::MAX; n * h * w];
        for r in 0..rows {
            if let Some(o) = src(r) {
                dest[o / c] = r;
            }
        }
        out.data
            .par_chunks_mut(c)
            .zip(dest.par_iter())
            .for_each(|(row, &r)| row.copy_from_slice(&xw[r * c..(r + 1) * c]));
        Ok(vec![out])
    }

    fn workspace(&self, inputs: &[Shape], _outputs: &[Shape]) -> u64 {
        // The gathered windows and their projection (rows × C each), qkv (rows × 3C), the
        // bias (heads × L²), the output index; per thread at most a window's logits.
        let n = inputs[0].0[0];
        let Ok((tokens, _, _)) = self.sizes(n) else {
            return u64::MAX;
        };
        let l = self.l();
        let c = self.dim;
        let hidden = if self.v2 {
            self.table_rows() * (CPB_HIDDEN + self.heads)
        } else {
            self.table_rows() * self.heads
        };
        tokens
            .saturating_mul(5 * c)
            .saturating_add(self.heads * l * l)
            .saturating_add(inputs[0].0[0] * self.map[0] * self.map[1] * 2)
            .saturating_add(hidden)
            .saturating_add(rayon::current_num_threads() as u64 * (l * l + 2 * l * c))
    }
}

impl Counting for WindowAttention {
    fn convention_cost(
        &self,
        c: Convention,
        inputs: &[Shape],
        outputs: &[Shape],
    ) -> Result<u64, Diagnostic> {
        let n = inputs[0].0[0];
        let (_, windows, _) = self.sizes(n)?;
        let l2 = self.l() * self.l();
        let (h, ch, t) = (self.heads, self.dim, self.table_rows());
        // Measured with each tool on one module (scripts/swin_reference.py); the qkv and proj
        // `nn.Linear` modules are never called (torchvision calls F.linear with their weights),
        // so no module hook fires for them.
        match c {
            // FlopCounterMode and fvcore: every product (F.linear, matmul, `@`), bias excluded.
            Convention::Torchvision | Convention::Fvcore => Ok(self.cost(inputs, outputs)?.macs),
            // ptflops patches Tensor.matmul and F.softmax (not F.linear as called here, nor
            // `@`): V1 charges Q·Kᵀ, attention·V and the softmax's numel; V2's Q·Kᵀ is written
            // `@`, so only attention·V and the softmax, plus the cpb_mlp modules (Linear(2,
            // 512) with its bias per output, the ReLU module and its F.relu: twice, Linear(512,
            // heads)).
            Convention::Ptflops => {
                if self.v2 {
                    add(&[mul(&[windows, l2, ch + h])?, mul(&[t, CPB_HIDDEN, 5 + h])?])
                } else {
                    mul(&[windows, l2, 2 * ch + h])
                }
            }
            // thop: modules only; V2's cpb_mlp Linear layers (in·out per coordinate).
            Convention::Thop => mul(&[t, CPB_HIDDEN, if self.v2 { 2 + h } else { 0 }]),
            // torchinfo: a called module's parameters × output_size[0], which is 1 for the
            // cpb_mlp's 1×(2wh−1)×(2ww−1)×2 coordinates.
            Convention::Torchinfo => Ok(if self.v2 { CPB_HIDDEN * (3 + h) } else { 0 }),
        }
    }

    fn forward_cublas(&self) -> bool {
        true
    }

    fn training(
        &self,
        inputs: &[Shape],
        outputs: &[Shape],
        _input_grad: bool,
        dtype_bytes: u64,
    ) -> Result<Training, Diagnostic> {
        let n = inputs[0].0[0];
        let cost = self.cost(inputs, outputs)?;
        let (tokens, windows, logits) = self.sizes(n)?;
        let (c, h) = (self.dim, self.heads);
        // Backward: every product's two operand gradients (weight gradients included), 2
        // FLOPs per MAC each; the bias gradients (numel of the qkv and proj outputs); the
        // softmax's Jacobian-vector product, 3 per logit.
        let backward = add(&[
            mul(&[4, cost.macs])?,
            if self.qkv_bias {
                mul(&[tokens, 3 * c])?
            } else {
                0
            },
            if self.proj_bias {
                mul(&[tokens, c])?
            } else {
                0
            },
            mul(&[3, logits])?,
        ])?;
        // What autograd keeps, measured on the CPU (saved_tensors_hooks, each storage once,
        // parameters and buffers left out): V1 five T×C tensors (the windowed input, the
        // scaled Q and the Kᵀ and V that the 4-D matmuls fold into contiguous copies, proj's
        // input) and the softmax's output; V2 also qkv itself (T×3C, read by F.normalize),
        // per row of Q and of K its norm and the expanded divisor (4·T·heads), the logits
        // before the scale (a second A), the bias before 16·sigmoid (heads·L²), cpb_mlp's
        // hidden layer ((2wh−1)(2ww−1)×512) and the clamped scale (heads).
        // When the batch holds one window, the 4-D matmuls fold without copying: V1 keeps
        // qkv (T×3C, K and V are views of it) instead of the K and V copies, V2 drops the V
        // copy (it keeps qkv anyway).
        let one = windows == 1;
        let kept = if self.v2 {
            add(&[
                mul(&[tokens, if one { 7 } else { 8 } * c])?,
                mul(&[tokens, 4 * h])?,
                mul(&[2, logits])?,
                mul(&[h, self.l(), self.l()])?,
                mul(&[self.table_rows(), CPB_HIDDEN])?,
                h,
            ])?
        } else {
            add(&[mul(&[tokens, if one { 6 } else { 5 } * c])?, logits])?
        };
        Ok(Training {
            forward_flops: cost.flops,
            backward_flops: backward,
            saved: Saved {
                inputs: vec![],
                output: false,
                extra_bytes: mul(&[kept, dtype_bytes])?,
            },
            view: false,
            grad_views: vec![],
            cublas: true,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layers::testutil::build_laid;
    use crate::layers::Layout;

    /// Builds the op on a channels-last input (a model input permuted by [0, 2, 3, 1]); a
    /// rank-3 input as a model input.
    fn build(
        op: &str,
        attrs: &str,
        inputs: &[&[u64]],
    ) -> Result<(Box<dyn Layer>, Vec<Shape>), Diagnostic> {
        let laid: Vec<Layout> = inputs
            .iter()
            .map(|s| {
                let l = Layout::input(s.len());
                if s.len() == 4 {
                    l.permute(&[0, 2, 3, 1])
                } else {
                    l
                }
            })
            .collect();
        build_laid(op, attrs, inputs, &laid)
    }

    fn shapes(s: &[u64]) -> Vec<Shape> {
        vec![Shape(s.to_vec())]
    }

    #[test]
    fn swin_t_stage_one_by_hand() {
        // swin_t's first stage: 56×56×96, 3 heads, window 7, shift 3. Parameters: qkv
        // 96·288 + 288, proj 96·96 + 96, the 13·13×3 table = 37,248 + 507; buffer 49² = 2401.
        let (l, out) = build(
            "shifted_window_attention",
            "{heads: 3, window: 7, shift: 3}",
            &[&[1, 56, 56, 96]],
        )
        .unwrap();
        assert_eq!(out, shapes(&[1, 56, 56, 96]));
        let p = l.params();
        assert_eq!(p.trainable, 96 * 288 + 288 + 96 * 96 + 96 + 169 * 3);
        assert_eq!(p.buffers, 2401);
        // MACs: 3136 tokens · 4·96² + 64 windows · 2·49²·96.
        let c = l.cost(&out, &out).unwrap();
        assert_eq!(c.macs, 3136 * 4 * 96 * 96 + 64 * 2 * 49 * 49 * 96);
    }

    #[test]
    fn saved_for_backward_as_measured() {
        // Measured with torch.autograd.graph.saved_tensors_hooks on the CPU (float32, each
        // storage once, parameters and buffers left out): V1 C=8, window 4, shift 2, 1×8×8×8:
        // 4,608 elements; the same unshifted at batch 2: 9,216; C=12, 3 heads, window 3, shift
        // 1 on 1×7×10×12 (padded to 9×12): 9,396; V2 C=8, window 4, shift 2, 1×8×8×8: 34,306.
        for (attrs, x, elems) in [
            ("{heads: 2, window: 4, shift: 2}", vec![1, 8, 8, 8], 4608),
            ("{heads: 2, window: 4}", vec![2, 8, 8, 8], 9216),
            (
                "{heads: 3, window: 3, shift: 1, pad: true}",
                vec![1, 7, 10, 12],
                9396,
            ),
            (
                "{heads: 2, window: 4, shift: 2, v2: true}",
                vec![1, 8, 8, 8],
                34306,
            ),
        ] {
            let (l, out) = build("shifted_window_attention", attrs, &[&x]).unwrap();
            let t = l.training(&shapes(&x), &out, true, 4).unwrap();
            assert_eq!(t.saved.extra_bytes, 4 * elems, "{attrs}");
            assert!(t.saved.inputs.is_empty() && !t.saved.output);
        }
    }

    #[test]
    fn the_index_and_coordinates_are_torchvisions() {
        // 2×2 window: offsets (Δa, Δb) ∈ {−1, 0, 1}², index (Δa + 1)·3 + (Δb + 1).
        // Token 0 = (0,0) against tokens (0,0), (0,1), (1,0), (1,1): Δ = (0,0), (0,−1), (−1,0),
        // (−1,−1) → 4, 3, 1, 0.
        let idx = relative_position_index([2, 2]);
        assert_eq!(&idx[..4], &[4.0, 3.0, 1.0, 0.0]);
        assert_eq!(idx[15], 4.0);
        // V2, window 2: offsets −1, 0, 1 → ±8 → sign·log2(9)/3, 0.
        let t = relative_coords_table([2, 2]);
        let e = 9f32.log2() / 3.0;
        assert_eq!(&t[..4], &[-e, -e, -e, 0.0]);
        assert_eq!(t.len(), 9 * 2);
    }

    #[test]
    fn mask_regions_follow_torchvisions_slices() {
        // Padded axis 8, window 4, shift 2: slices [0, 4), [4, 6), [6, 8).
        let r: Vec<usize> = (0..8).map(|p| region(p, 8, 4, 2)).collect();
        assert_eq!(r, vec![0, 0, 0, 0, 1, 1, 2, 2]);
        // Shift 0 on this axis: the `[-0:]` slice is the whole axis, one label.
        assert!((0..8).all(|p| region(p, 8, 4, 0) == 2));
    }

    #[test]
    fn errors_say_what_to_write() {
        let e = build(
            "shifted_window_attention",
            "{heads: 5, window: 7}",
            &[&[1, 56, 56, 96]],
        )
        .unwrap_err();
        assert_eq!(
            e.message,
            "5 heads do not divide the 96 channels of the input 1×56×56×96"
        );
        assert!(e.help.unwrap().contains("1, 2, 3, 4, 6, 8, 12"));
        let e = build(
            "shifted_window_attention",
            "{heads: 3, window: 8}",
            &[&[1, 28, 28, 96]],
        )
        .unwrap_err();
        assert_eq!(
            e.message,
            "the 8×8 window divides neither side of the 28×28 map"
        );
        assert!(e
            .help
            .unwrap()
            .contains("`pad: true` to pad the map to 32×32"));
        let e = build(
            "shifted_window_attention",
            "{heads: 3, window: 7}",
            &[&[1, 56, 96]],
        )
        .unwrap_err();
        assert!(e.message.contains("channels-last"), "{}", e.message);
        let e = build(
            "shifted_window_attention",
            "{heads: 3, window: 7, shift: 7}",
            &[&[1, 56, 56, 96]],
        )
        .unwrap_err();
        assert!(e.help.unwrap().contains("`shift: 3`"));
        // An N×C×H×W map (a model input, not permuted).
        let e = build_laid(
            "shifted_window_attention",
            "{heads: 3, window: 7}",
            &[&[1, 96, 56, 56]],
            &[],
        )
        .unwrap_err();
        assert!(
            e.message.contains("needs a channels-last N×H×W×C map"),
            "{}",
            e.message
        );
        assert!(e.help.unwrap().contains("dims: [0, 2, 3, 1]"));
    }

    #[test]
    fn geometry_is_the_partition_with_the_applied_shift() {
        // 7×7 windows on a 7×7 map: the shift of 3 is dropped (torchvision).
        let (l, out) = build(
            "shifted_window_attention",
            "{heads: 3, window: 7, shift: 3}",
            &[&[1, 7, 7, 96]],
        )
        .unwrap();
        assert_eq!(
            l.geometry(&out),
            Geometry::Partition {
                window: [7, 7].into(),
                shift: [0, 0].into()
            }
        );
        let (l, out) = build(
            "shifted_window_attention",
            "{heads: 3, window: 7, shift: 3}",
            &[&[1, 14, 14, 96]],
        )
        .unwrap();
        assert_eq!(
            l.geometry(&out),
            Geometry::Partition {
                window: [7, 7].into(),
                shift: [3, 3].into()
            }
        );
    }
}
