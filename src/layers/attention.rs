//! Attention: `multi_head_attention` (torch.nn.MultiheadAttention with `batch_first=True`:
//! input projections, `softmax(Q·Kᵀ/√d + mask)·V` per head, output projection) and
//! `scaled_dot_product_attention` (torch.nn.functional.scaled_dot_product_attention on
//! q, k, v and an optional additive mask). Both count the two attention products,
//! `L·S·(E + Ev)` MACs per (sample, head), as PyTorch's FlopCounterMode does, and say what each
//! profiler charges (docs/COUNTING.md, "Attention", measured by
//! scripts/attention_reference.py). Their kernel is `kernels_attn::attention`.

use super::Collapsed;
use super::{
    add, mul, per_element, weighted_training, Arity, AttentionSplit, AttrDefault, Attrs, Category,
    Convention, Cost, Counting, Geometry, Kernel, Layer, Op, OpType, Params, Saved, Shape,
    Training,
};
use crate::error::Diagnostic;
use crate::kernels::{matmul, Ctx};
use crate::kernels_attn::{self, Dims, Mask, Strided};
use crate::tensor::{Init, Tensor, WeightKind, WeightSpec};

pub const MULTI_HEAD_ATTENTION: OpType = OpType {
    name: "multi_head_attention",
    aliases: &["mha", "multihead_attention"],
    keys: &[
        "heads",
        "bias",
        "dropout",
        "causal",
        "kdim",
        "vdim",
        "need_weights",
        "add_bias_kv",
        "add_zero_attn",
    ],
    arity: Arity::AtLeast(1),
    fused_bn: None,
    defaults: &[
        ("bias", AttrDefault::Bool(true)),
        ("causal", AttrDefault::Bool(false)),
        ("need_weights", AttrDefault::Bool(true)),
        ("add_bias_kv", AttrDefault::Bool(false)),
        ("add_zero_attn", AttrDefault::Bool(false)),
        ("dropout", AttrDefault::Float(0.0)),
    ],
    build: build_mha,
    summary: "multi-head attention (torch.nn.MultiheadAttention, batch_first) on N×L×E: in: x (self-attention), [x, mask], [q, k, v] or [q, k, v, mask]",
};

pub const SCALED_DOT_PRODUCT_ATTENTION: OpType = OpType {
    name: "scaled_dot_product_attention",
    aliases: &["sdpa"],
    keys: &["causal", "scale", "dropout", "gqa", "mask"],
    arity: Arity::AtLeast(3),
    fused_bn: None,
    defaults: &[
        ("causal", AttrDefault::Bool(false)),
        ("gqa", AttrDefault::Bool(false)),
        ("dropout", AttrDefault::Float(0.0)),
        ("mask", AttrDefault::Word("additive")),
    ],
    build: build_sdpa,
    summary: "softmax(q·kᵀ·scale + mask)·v (F.scaled_dot_product_attention) on N×…×L×E: in: [q, k, v] or [q, k, v, mask] (`mask: keys`: an N×S mask of the keys, 0 for padding)",
};

/// A dropout probability: used in training only (identity at inference), in [0, 1).
fn dropout(a: &mut Attrs) -> Result<f64, Diagnostic> {
    let p = a.float("dropout", 0.0)?;
    if !(0.0..1.0).contains(&p) {
        return Err(a
            .error(
                "dropout",
                format!("`dropout: {p}` is not a probability below 1"),
            )
            .help(
                "write a probability in [0, 1), e.g. `dropout: 0.1`; it applies in training only",
            ));
    }
    Ok(p)
}

/// The divisors of `n` (for a head count's fix): the first 12, then `…` if there are more.
/// Found in pairs `(d, n/d)` with `d ≤ √n`, so a huge embedding costs at most √n steps.
fn divisors(n: u64) -> String {
    let mut all: Vec<u64> = Vec::new();
    let mut d = 1u64;
    while d.saturating_mul(d) <= n {
        if n.is_multiple_of(d) {
            all.push(d);
            all.push(n / d);
        }
        d += 1;
    }
    all.sort_unstable();
    all.dedup();
    let mut shown: Vec<String> = all.iter().take(12).map(|d| d.to_string()).collect();
    if all.len() > 12 {
        shown.push("…".to_string());
    }
    shown.join(", ")
}

/// Elements of a buffer the attention kernel allocates (`what`: the projections, one pair's
/// scores), checked against the executor's limit before anything is allocated.
fn buffer(what: &str, factors: &[usize]) -> Result<usize, Diagnostic> {
    factors
        .iter()
        .try_fold(1usize, |a, &b| a.checked_mul(b))
        .filter(|&n| n <= crate::tensor::MAX_TENSOR_ELEMENTS)
        .ok_or_else(|| {
            Diagnostic::new(format!(
                "the attention's {what} ({}) would have more than 2^32 elements, more than the executor allocates",
                factors
                    .iter()
                    .map(|f| f.to_string())
                    .collect::<Vec<_>>()
                    .join("×")
            ))
            .help("run with shorter sequences (a smaller --input)")
        })
}

/// Checks the buffers of one attention call before it runs.
fn check_buffers(d: &Dims) -> Result<(), Diagnostic> {
    buffer("scores of one head", &[d.l, d.s])?;
    buffer("scratch of one head", &[kernels_attn::scratch_per_pair(d)])?;
    Ok(())
}

/// Attention takes its positions from dimension −2 and its features from the last one: an
/// error when the last dimension of input `k` (`what`: query, key, value) is input positions
/// (a spatial axis or flattened tokens) while dimension −2 is not — the embedding on the wrong
/// axis, as an `N×C×L` signal or the `N×C×T(H·W)` tokens of a patch convolution flattened but
/// not transposed (ViT's `x.flatten(2).transpose(1, 2)` without the transpose): it would attend
/// over the channels with the positions as features. A layout that says nothing (`Other`
/// axes, a tensor of positions on both axes) is not refused.
fn wrong_axis_error(a: &Attrs, op: &str, k: usize, what: &str) -> Result<(), Diagnostic> {
    let x = &a.inputs[k];
    let lay = a.input_layout(k);
    let r = x.rank();
    if r < 3 || lay.rank() != r {
        return Ok(());
    }
    let (last, before) = (&lay.0[r - 1], &lay.0[r - 2]);
    if !last.is_positional() || before.is_positional() {
        return Ok(());
    }
    let spatial = lay.spatial_hint();
    let (n_pos, n_feat) = (x.0[r - 1], x.0[r - 2]);
    let d = Diagnostic::new(format!(
        "{op} attends over dimension {} and takes the features from the last one, and its {what} {} is laid out {}: the last dimension is {} — it would attend over the {n_feat} {} as positions with the {n_pos} position{} as features",
        r - 2,
        x.per_sample(),
        lay.letters(spatial),
        last.describe(spatial),
        if *before == super::Role::Channel { "channels" } else { "units of dimension -2" },
        if n_pos == 1 { "" } else { "s" },
    ))
    .at(&a.node_path);
    Err(d.help(format!(
        "put the features last first: `{{op: transpose, dims: [{}, {}]}}` (a patch convolution's N×C×H×W map: `{{op: flatten, start_dim: 2}}` then `{{op: transpose, dims: [1, 2]}}`, as torchvision's ViT does)",
        r - 2,
        r - 1
    )))
}

// ---------------------------------------------------------------------------------------------
// multi_head_attention

#[derive(Debug)]
struct Mha {
    embed: u64,
    heads: u64,
    kdim: u64,
    vdim: u64,
    bias: bool,
    causal: bool,
    need_weights: bool,
    dropout: f64,
    /// Whether the call is self-attention on one tensor (`in: x` or `[x, mask]`).
    self_attention: bool,
    /// The mask input's index, if any.
    mask: Option<usize>,
    /// A mask of rank 3 ((N·heads)×L×S) rather than 2 (L×S).
    mask_per_head: bool,
    /// `add_bias_kv`: a learned key and value (`bias_k`, `bias_v`, 1×1×E each) appended to
    /// the projected keys and values of every sample.
    bias_kv: bool,
    /// `add_zero_attn`: a zero key and value appended after those (PyTorch's order).
    zero_attn: bool,
    /// Parameters (computed with checked arithmetic at build).
    params: u64,
}

impl Mha {
    fn separate(&self) -> bool {
        self.kdim != self.embed || self.vdim != self.embed
    }
    fn head_dim(&self) -> u64 {
        self.embed / self.heads
    }
    /// Keys and values appended to the S of the inputs (`add_bias_kv`, `add_zero_attn`).
    fn extra_keys(&self) -> u64 {
        u64::from(self.bias_kv) + u64::from(self.zero_attn)
    }
    /// (N, L, S) of a call: S the keys attended to, the input's plus those `add_bias_kv`
    /// and `add_zero_attn` append.
    fn sizes(&self, inputs: &[Shape]) -> (u64, u64, u64) {
        let (n, l, s) = self.input_sizes(inputs);
        (n, l, s + self.extra_keys())
    }
    /// (N, L, S) of the inputs (S: the key input's positions).
    fn input_sizes(&self, inputs: &[Shape]) -> (u64, u64, u64) {
        let q = &inputs[0];
        let k = if self.self_attention { q } else { &inputs[1] };
        (q.0[0], q.0[1], k.0[1])
    }
    /// MACs of the projections and of the attention products.
    fn macs(&self, inputs: &[Shape]) -> Result<(u64, u64), Diagnostic> {
        let (n, l, s_in) = self.input_sizes(inputs);
        let (_, _, s) = self.sizes(inputs);
        let e = self.embed;
        let proj = add(&[
            mul(&[n, l, e, e])?,
            mul(&[n, s_in, self.kdim, e])?,
            mul(&[n, s_in, self.vdim, e])?,
            mul(&[n, l, e, e])?,
        ])?;
        let attn = mul(&[2, n, l, s, e])?;
        Ok((proj, attn))
    }

    /// The rest of either form: the mask, [`super::onnx::attention`] on the split heads
    /// `q`, `k`, `v`, the heads merged back to N×L×E and the output projection (`wo`, `bo`).
    /// `dims` is `[n, l, s, e, h]`: batch, query and key lengths, embedding, heads.
    fn onnx_attend(
        &self,
        em: &mut super::onnx::Emit,
        [q, k, v]: [&str; 3],
        [n, l, s, e, h]: [i64; 5],
        wo: &str,
        bo: Option<&str>,
    ) -> Result<(), Diagnostic> {
        use super::onnx::ints;
        let d = e / h;
        let mask = match self.mask {
            Some(m) if self.mask_per_head => Some(em.reshape(&em.input(m), &[n, h, l, s])),
            Some(m) => Some(em.input(m)),
            None => None,
        };
        let att = em.tmp("attention");
        super::onnx::attention(
            em,
            q,
            k,
            v,
            4,
            (l as u64, s as u64),
            mask.as_deref(),
            self.causal,
            1.0 / (d as f32).sqrt(),
            &att,
        );
        let merged = em.step("Transpose", &[&att], vec![ints("perm", &[0, 2, 1, 3])]);
        let merged = em.reshape(&merged, &[n, l, e]);
        let wot = em.step("Transpose", &[wo], vec![ints("perm", &[1, 0])]);
        let out = em.output(0);
        match bo {
            Some(b) => {
                let y = em.step("MatMul", &[&merged, &wot], vec![]);
                em.node("Add", &[&y, b], &[&out], vec![]);
            }
            None => {
                em.node("MatMul", &[&merged, &wot], &[&out], vec![]);
            }
        }
        Ok(())
    }
}

fn build_mha(a: &mut Attrs) -> Result<Box<dyn Layer>, Diagnostic> {
    let n_in = a.inputs.len();
    if !matches!(n_in, 1..=4) {
        return Err(Diagnostic::new(format!(
            "multi_head_attention takes 1 to 4 inputs, got {n_in}"
        ))
        .at(&a.node_path)
        .help("write `in: x` (self-attention), `in: [x, mask]`, `in: [q, k, v]` or `in: [q, k, v, mask]`"));
    }
    let self_attention = n_in <= 2;
    let mask = match n_in {
        2 => Some(1),
        4 => Some(3),
        _ => None,
    };
    for (i, s) in a
        .inputs
        .iter()
        .enumerate()
        .take(if self_attention { 1 } else { 3 })
    {
        if s.rank() != 3 {
            let what = ["query", "key", "value"][i];
            return Err(Diagnostic::new(format!(
                "multi_head_attention needs N×L×E inputs (batch first), and its {what} is {s} (rank {})",
                s.rank()
            ))
            .help("reshape the tokens to N×L×E first, e.g. `{op: flatten, start_dim: 2}` then `{op: transpose, dims: [1, 2]}` after a patch convolution"));
        }
    }
    for (i, what) in ["query", "key", "value"]
        .iter()
        .enumerate()
        .take(if self_attention { 1 } else { 3 })
    {
        wrong_axis_error(a, "multi_head_attention", i, what)?;
    }
    let q = a.inputs[0].clone();
    let embed = q.0[2];
    let heads = a.req_positive("heads", "8")?;
    if !embed.is_multiple_of(heads) {
        return Err(a
            .error(
                "heads",
                format!("{heads} heads do not divide the embedding of {embed} features (each head takes embedding/heads of them)"),
            )
            .help(format!("use a head count that divides {embed}: {}", divisors(embed))));
    }
    let kdim = a.positive("kdim")?.unwrap_or(embed);
    let vdim = a.positive("vdim")?.unwrap_or(embed);
    let bias = a.bool("bias", true)?;
    let causal = a.bool("causal", false)?;
    let need_weights = a.bool("need_weights", true)?;
    let bias_kv = a.bool("add_bias_kv", false)?;
    let zero_attn = a.bool("add_zero_attn", false)?;
    if causal && (bias_kv || zero_attn) {
        let key = if bias_kv {
            "add_bias_kv"
        } else {
            "add_zero_attn"
        };
        return Err(a
            .error(key, format!("`{key}` with `causal: true`: PyTorch pads the attention mask so that every query sees the appended key, which a causal attention does not"))
            .help("give the causal mask as an input (`in: [x, mask]`, −inf above the diagonal) instead of `causal: true`, or leave the extra keys out"));
    }
    let dropout = dropout(a)?;
    let (l, s) = if self_attention {
        if kdim != embed || vdim != embed {
            return Err(a
                .error(
                    if kdim != embed { "kdim" } else { "vdim" },
                    format!("self-attention reads keys and values from the query itself ({embed} features), so kdim and vdim are {embed}"),
                )
                .help("remove `kdim`/`vdim`, or give the keys and values as inputs: `in: [q, k, v]`"));
        }
        (q.0[1], q.0[1])
    } else {
        let (k, v) = (&a.inputs[1], &a.inputs[2]);
        for (what, t) in [("key", k), ("value", v)] {
            if t.0[0] != q.0[0] {
                return Err(Diagnostic::new(format!(
                    "the {what} {t} has batch {} but the query {q} has batch {}",
                    t.0[0], q.0[0]
                ))
                .help("query, key and value are N×L×E, N×S×kdim and N×S×vdim with the same N"));
            }
        }
        if k.0[1] != v.0[1] {
            return Err(Diagnostic::new(format!(
                "the key {k} has {} positions but the value {v} has {}: each key needs its value",
                k.0[1], v.0[1]
            ))
            .help("give key and value tensors of the same length S (N×S×kdim and N×S×vdim)"));
        }
        for (what, key, t, want) in [("key", "kdim", k, kdim), ("value", "vdim", v, vdim)] {
            if t.0[2] != want {
                return Err(a
                    .error(
                        key,
                        format!(
                            "the {what} {t} has {} features but `{key}` is {want}{}",
                            t.0[2],
                            if want == embed {
                                " (the embedding, by default)"
                            } else {
                                ""
                            }
                        ),
                    )
                    .help(format!("write `{key}: {}`", t.0[2])));
            }
        }
        (q.0[1], k.0[1])
    };
    let mut mask_per_head = false;
    if let Some(m) = mask {
        if causal {
            return Err(a
                .error("causal", "a causal attention with an explicit mask: give one of them")
                .help("drop the mask input (`causal: true` masks the later keys), or drop `causal: true` and put the causal mask into the mask you give"));
        }
        let ms = &a.inputs[m];
        let n = q.0[0];
        let ok2 = ms.0 == [l, s];
        let ok3 = ms.rank() == 3 && ms.0[1..] == [l, s] && Some(ms.0[0]) == n.checked_mul(heads);
        if !ok2 && !ok3 {
            return Err(Diagnostic::new(format!(
                "the attention mask is {ms}, but this attention has L×S = {l}×{s} scores per head ({n} samples × {heads} heads)"
            ))
            .help(format!(
                "give an additive float mask of {l}×{s} (the same for every sample and head) or {}×{l}×{s} (one per sample and head, as PyTorch's (N·heads)×L×S)",
                n.saturating_mul(heads)
            )));
        }
        mask_per_head = ok3 && !ok2;
    }
    let params = add(&[
        mul(&[2, embed, embed])?,
        mul(&[embed, kdim])?,
        mul(&[embed, vdim])?,
        if bias { mul(&[4, embed])? } else { 0 },
        if bias_kv { mul(&[2, embed])? } else { 0 },
    ])?;
    Ok(Box::new(Mha {
        params,
        embed,
        heads,
        kdim,
        vdim,
        bias,
        causal,
        need_weights,
        dropout,
        self_attention,
        mask,
        mask_per_head,
        bias_kv,
        zero_attn,
    }))
}

impl Op for Mha {
    fn op(&self) -> &'static str {
        "multi_head_attention"
    }
    fn label(&self) -> String {
        format!(
            "attention {}, {} heads×{}{}",
            self.embed,
            self.heads,
            self.head_dim(),
            if self.causal { ", causal" } else { "" }
        ) + if self.bias_kv { ", bias k/v" } else { "" }
            + if self.zero_attn { ", zero attn" } else { "" }
            + &if self.dropout > 0.0 {
                format!(", dropout {}", self.dropout)
            } else {
                String::new()
            }
    }
    fn category(&self) -> Category {
        Category::Attention
    }
    fn output_shapes(&self, inputs: &[Shape]) -> Result<Vec<Shape>, Diagnostic> {
        Ok(vec![inputs[0].clone()])
    }
    fn params(&self) -> Params {
        Params {
            trainable: self.params,
            ..Default::default()
        }
    }
    fn cost(&self, inputs: &[Shape], outputs: &[Shape]) -> Result<Cost, Diagnostic> {
        let (proj, attn) = self.macs(inputs)?;
        let (n, l, s) = self.sizes(inputs);
        let e = self.embed;
        let scores = mul(&[n, self.heads, l, s])?;
        let macs = add(&[proj, attn])?;
        // Biases of the four projections; Q scaled (1 per element); softmax 4 per score; the
        // mask (explicit or causal) 1 add per score.
        let s_in = self.input_sizes(inputs).2;
        let bias = if self.bias {
            add(&[mul(&[n, l + 2 * s_in, e])?, per_element(&outputs[0], 1)?])?
        } else {
            0
        };
        let masked = if self.mask.is_some() || self.causal {
            scores
        } else {
            0
        };
        Ok(Cost {
            macs,
            flops: add(&[
                mul(&[2, macs])?,
                bias,
                mul(&[n, l, e])?,
                mul(&[4, scores])?,
                masked,
            ])?,
        })
    }
    fn geometry(&self, _inputs: &[Shape]) -> Geometry {
        Geometry::Global
    }
    fn torch_type(&self) -> Option<&'static str> {
        Some("MultiheadAttention")
    }
    fn attention(&self, inputs: &[Shape]) -> Result<Option<AttentionSplit>, Diagnostic> {
        let (proj, _) = self.macs(inputs)?;
        let (n, l, s) = self.sizes(inputs);
        // Each product over the heads together: L·S·(E/heads)·heads = L·S·E per sample.
        let product = mul(&[n, l, s, self.embed])?;
        Ok(Some(AttentionSplit {
            heads: self.heads,
            head_dim: self.head_dim(),
            queries: l,
            keys: s,
            windows: 1,
            projections: proj,
            scores: product,
            values: product,
            other: 0,
        }))
    }
    fn kv_cache_per_token(&self, _inputs: &[Shape]) -> u64 {
        // A causal decoder keeps each past token's projected key and value: E each.
        if self.causal {
            2 * self.embed
        } else {
            0
        }
    }
}

impl Mha {
    /// Self-attention with the packed in-projection, written as PyTorch's exporters write it
    /// (and as the ONNX reader reads it back into one layer, src/onnx/attention.rs): one
    /// `MatMul` by `in_proj_weightᵀ`, the `Add` of `in_proj_bias`, a `Split` into q, k and v,
    /// heads split by `Reshape`/`Transpose`, [`super::onnx::attention`], heads merged, the output
    /// projection.
    fn onnx_packed(&self, em: &mut super::onnx::Emit) -> Result<(), Diagnostic> {
        use super::onnx::{int, ints};
        let (e, h) = (self.embed as i64, self.heads as i64);
        let d = e / h;
        let x = em.input(0);
        let qd = em.in_dims(0);
        let (n, l) = (qd[0], qd[1]);
        let mut wi = 0;
        let mut next = |em: &super::onnx::Emit| {
            wi += 1;
            em.weight(wi - 1)
        };
        let w = next(em);
        let bias_in = self.bias.then(|| next(em));
        let wo = next(em);
        let bo = self.bias.then(|| next(em));
        let wt = em.step("Transpose", &[&w], vec![ints("perm", &[1, 0])]);
        let mut y = em.step("MatMul", &[&x, &wt], vec![]);
        if let Some(b) = &bias_in {
            y = em.step("Add", &[&y, b], vec![]);
        }
        let sizes = em.ints("split", &[e, e, e]);
        let parts: Vec<String> = (0..3).map(|_| em.tmp("qkv")).collect();
        let refs: Vec<&str> = parts.iter().map(String::as_str).collect();
        em.node("Split", &[&y, &sizes], &refs, vec![int("axis", 2)]);
        let heads = |em: &mut super::onnx::Emit, t: &str| {
            let t = em.reshape(t, &[n, l, h, d]);
            em.step("Transpose", &[&t], vec![ints("perm", &[0, 2, 1, 3])])
        };
        let q = heads(em, &parts[0]);
        let k = heads(em, &parts[1]);
        let v = heads(em, &parts[2]);
        self.onnx_attend(em, [&q, &k, &v], [n, l, l, e, h], &wo, bo.as_deref())
    }
}

impl Kernel for Mha {
    /// The projections (`MatMul` by the transposed weights, `Add` of the biases), heads split
    /// by `Reshape`/`Transpose`, [`super::onnx::attention`] per head, heads merged, the output
    /// projection.
    fn onnx(&self, em: &mut super::onnx::Emit) -> Result<(), Diagnostic> {
        use super::onnx::ints;
        let (e, h) = (self.embed as i64, self.heads as i64);
        let d = e / h;
        let xq = em.input(0);
        let (xk, xv) = if self.self_attention {
            (xq.clone(), xq.clone())
        } else {
            (em.input(1), em.input(2))
        };
        let qd = em.in_dims(0);
        let kd = em.in_dims(if self.self_attention { 0 } else { 1 });
        let (n, l, s) = (qd[0], qd[1], kd[1]);
        let mut wi = 0;
        let mut next = |em: &super::onnx::Emit| {
            wi += 1;
            em.weight(wi - 1)
        };
        if self.self_attention && !self.separate() && !self.bias_kv && !self.zero_attn {
            return self.onnx_packed(em);
        }
        let (wq, wk, wv) = if self.separate() {
            (next(em), next(em), next(em))
        } else {
            let w = next(em);
            let parts: Vec<String> = (0..3)
                .map(|i| {
                    let t = em.tmp("w");
                    super::onnx::slice(em, &w, &[0], &[i * e], &[(i + 1) * e], &[1], &t);
                    t
                })
                .collect();
            (parts[0].clone(), parts[1].clone(), parts[2].clone())
        };
        let bias_in = self.bias.then(|| next(em));
        let wo = next(em);
        let bo = self.bias.then(|| next(em));
        let project = |em: &mut super::onnx::Emit, x: &str, w: &str, i: i64, len: i64| {
            let wt = em.step("Transpose", &[w], vec![ints("perm", &[1, 0])]);
            let mut y = em.step("MatMul", &[x, &wt], vec![]);
            if let Some(b) = &bias_in {
                let bi = em.tmp("b");
                super::onnx::slice(em, b, &[0], &[i * e], &[(i + 1) * e], &[1], &bi);
                y = em.step("Add", &[&y, &bi], vec![]);
            }
            let y = em.reshape(&y, &[n, len, h, d]);
            em.step("Transpose", &[&y], vec![ints("perm", &[0, 2, 1, 3])])
        };
        let q = project(em, &xq, &wq, 0, l);
        let k = project(em, &xk, &wk, 1, s);
        let v = project(em, &xv, &wv, 2, s);
        self.onnx_attend(em, [&q, &k, &v], [n, l, s, e, h], &wo, bo.as_deref())
    }
    fn collapsed(&self) -> Collapsed {
        // Every query attends to every key (a mask only removes pairs).
        Collapsed::Mix
    }
    fn weights(&self) -> Vec<WeightSpec> {
        let (e, k, v) = (self.embed as usize, self.kdim as usize, self.vdim as usize);
        let w = |name, shape: Vec<usize>| WeightSpec {
            name,
            init: Init::Kaiming { fan_in: shape[1] },
            shape,
            kind: WeightKind::Trainable,
        };
        let b = |name, len| WeightSpec {
            name,
            shape: vec![len],
            kind: WeightKind::Trainable,
            init: Init::Zeros,
        };
        let mut out = if self.separate() {
            vec![
                w("q_proj_weight", vec![e, e]),
                w("k_proj_weight", vec![e, k]),
                w("v_proj_weight", vec![e, v]),
            ]
        } else {
            vec![w("in_proj_weight", vec![3 * e, e])]
        };
        if self.bias {
            out.push(b("in_proj_bias", 3 * e));
        }
        if self.bias_kv {
            for name in ["bias_k", "bias_v"] {
                out.push(WeightSpec {
                    name,
                    shape: vec![1, 1, e],
                    kind: WeightKind::Trainable,
                    init: Init::Normal { std: 0.02 },
                });
            }
        }
        out.push(w("out_proj.weight", vec![e, e]));
        if self.bias {
            out.push(b("out_proj.bias", e));
        }
        out
    }
    fn forward(
        &self,
        inputs: &[&Tensor],
        weights: &[Tensor],
        ctx: &mut Ctx,
    ) -> Result<Vec<Tensor>, Diagnostic> {
        let (e, h) = (self.embed as usize, self.heads as usize);
        let d = e / h;
        let xq = inputs[0];
        let (xk, xv) = if self.self_attention {
            (xq, xq)
        } else {
            (inputs[1], inputs[2])
        };
        let (n, l, s_in) = (xq.shape[0], xq.shape[1], xk.shape[1]);
        let s = s_in + self.extra_keys() as usize;
        // Weights in `weights()` order.
        let (wq, wk, wv, mut rest): (&[f32], &[f32], &[f32], usize) = if self.separate() {
            (&weights[0].data, &weights[1].data, &weights[2].data, 3)
        } else {
            let w = &weights[0].data;
            (&w[..e * e], &w[e * e..2 * e * e], &w[2 * e * e..], 1)
        };
        let in_bias = self.bias.then(|| {
            rest += 1;
            &weights[rest - 1].data
        });
        let bias_kv = self.bias_kv.then(|| {
            rest += 2;
            (&weights[rest - 2].data, &weights[rest - 1].data)
        });
        let wo = &weights[rest].data;
        let bo = self.bias.then(|| &weights[rest + 1].data);
        let project = |x: &Tensor, w: &[f32], fin: usize, bias: Option<&[f32]>, macs: &mut u64| {
            let rows = x.numel() / fin.max(1);
            let mut y = vec![0f32; rows * e];
            *macs += matmul(rows, e, fin, &x.data, fin, 1, w, 1, fin, &mut y, false);
            if let Some(b) = bias {
                for row in y.chunks_mut(e) {
                    row.iter_mut().zip(b).for_each(|(v, b)| *v += b);
                }
            }
            y
        };
        let dims = Dims {
            pairs: n * h,
            l,
            s,
            e: d,
            ev: d,
            group: 1,
        };
        buffer("projected keys", &[n, s, e])?;
        check_buffers(&dims)?;
        let mut macs = 0u64;
        let bias_part = |i: usize| in_bias.map(|b| &b[i * e..(i + 1) * e]);
        let q = project(xq, wq, e, bias_part(0), &mut macs);
        let mut k = project(xk, wk, self.kdim as usize, bias_part(1), &mut macs);
        let mut v = project(xv, wv, self.vdim as usize, bias_part(2), &mut macs);
        if s != s_in {
            // Each sample's S projected keys, then bias_k, then a zero key (and so for values).
            let extend = |x: &[f32], extra: Option<&[f32]>| -> Vec<f32> {
                let mut out = Vec::with_capacity(n * s * e);
                for sample in x.chunks(s_in * e) {
                    out.extend_from_slice(sample);
                    if let Some(b) = extra {
                        out.extend_from_slice(b);
                    }
                    if self.zero_attn {
                        out.resize(out.len() + e, 0.0);
                    }
                }
                out
            };
            k = extend(&k, bias_kv.map(|b| b.0.as_slice()));
            v = extend(&v, bias_kv.map(|b| b.1.as_slice()));
        }
        // A mask padded with a zero column per appended key, as PyTorch pads it.
        let padded: Option<Vec<f32>> = self.mask.filter(|_| s != s_in).map(|m| {
            let mut out = Vec::with_capacity(inputs[m].data.len() / s_in.max(1) * s);
            for row in inputs[m].data.chunks(s_in) {
                out.extend_from_slice(row);
                out.resize(out.len() + (s - s_in), 0.0);
            }
            out
        });
        let mask = self.mask.map(|m| {
            let t = inputs[m];
            Mask {
                data: padded.as_deref().unwrap_or(&t.data),
                offsets: (0..n * h)
                    .map(|b| if self.mask_per_head { b * l * s } else { 0 })
                    .collect(),
                row: s,
                col: 1,
            }
        });
        let mut att = vec![0f32; n * l * e];
        let heads = |rows: usize| Strided {
            heads: h,
            outer: rows * e,
            head: d,
            row: e,
        };
        macs += kernels_attn::attention(
            &dims,
            (&q, heads(l)),
            (&k, heads(s)),
            (&v, heads(s)),
            mask.as_ref(),
            self.causal,
            1.0 / (d as f32).sqrt(),
            (&mut att, heads(l)),
        );
        let mut out = ctx.output(&xq.shape);
        macs += matmul(n * l, e, e, &att, e, 1, wo, 1, e, &mut out.data, false);
        if let Some(b) = bo {
            for row in out.data.chunks_mut(e) {
                row.iter_mut().zip(b).for_each(|(y, b)| *y += b);
            }
        }
        ctx.macs += macs;
        Ok(vec![out])
    }
    fn workspace(&self, inputs: &[Shape], _outputs: &[Shape]) -> u64 {
        let (n, l, s) = self.sizes(inputs);
        let e = self.embed;
        let d = (self.head_dim()) as usize;
        let pairs = n.saturating_mul(self.heads);
        // Q and the heads' output (N·L·E each), K and V (N·S·E each), the attention scratch,
        // and with a mask its offsets (one usize, two f32 elements, per pair).
        let q = n.saturating_mul(l).saturating_mul(e);
        let kv = n.saturating_mul(s).saturating_mul(e);
        let offsets = if self.mask.is_some() {
            pairs.saturating_mul(2)
        } else {
            0
        };
        // With appended keys: the mask padded to L×S (per head, with a mask of rank 3).
        let padded = match self.mask {
            Some(_) if self.extra_keys() > 0 => l
                .saturating_mul(s)
                .saturating_mul(if self.mask_per_head { pairs } else { 1 }),
            _ => 0,
        };
        // Then the most of: the attention's scratch, or gemm's packing buffers for one of
        // the four projections (each a call of its own, with the buffers above alive).
        let attention = kernels_attn::workspace(&Dims {
            pairs: pairs as usize,
            l: l as usize,
            s: s as usize,
            e: d,
            ev: d,
            group: 1,
        });
        let s_in = self.input_sizes(inputs).2;
        let (rows_q, rows_k) = (
            n.saturating_mul(l) as usize,
            n.saturating_mul(s_in) as usize,
        );
        let e_us = e as usize;
        let packing = [
            crate::kernels::gemm_packing(rows_q, e_us, e_us),
            crate::kernels::gemm_packing(rows_k, e_us, self.kdim as usize),
            crate::kernels::gemm_packing(rows_k, e_us, self.vdim as usize),
        ]
        .into_iter()
        .max()
        .unwrap_or(0);
        q.saturating_mul(2)
            .saturating_add(kv.saturating_mul(2))
            .saturating_add(offsets)
            .saturating_add(padded)
            .saturating_add(attention.max(packing))
    }
}

impl Counting for Mha {
    fn forward_cublas(&self) -> bool {
        true
    }
    fn convention_cost(
        &self,
        c: Convention,
        inputs: &[Shape],
        outputs: &[Shape],
    ) -> Result<u64, Diagnostic> {
        let (n, l, s) = self.sizes(inputs);
        let (e, h) = (self.embed, self.heads);
        let (proj, _) = self.macs(inputs)?;
        let masked = self.mask.is_some() || self.causal;
        match c {
            Convention::Torchvision => Ok(self.cost(inputs, outputs)?.macs),
            // fvcore (traced with gradients on): the projections' aten::linear; with
            // need_weights, the explicit products: aten::bmm for attention·V, and for Q·Kᵀ
            // too when no mask is added (with one it is aten::baddbmm, which fvcore does not
            // count). Without need_weights PyTorch calls scaled_dot_product_attention: 0.
            Convention::Fvcore => {
                let av = mul(&[n, l, s, e])?;
                let products = match (self.need_weights, masked) {
                    (false, _) => 0,
                    (true, true) => av,
                    (true, false) => 2 * av,
                };
                add(&[proj, products])
            }
            // ptflops: its nn.MultiheadAttention hook (per sample, × N), with its own rules
            // (keys projected kdim→kdim, values vdim→vdim, the output projection vdim→vdim
            // plus a bias always), and, with need_weights, the functions it patches inside:
            // torch.bmm/baddbmm (+ the mask's elements) and F.softmax.
            Convention::Ptflops => {
                let (kd, vd) = (self.kdim, self.vdim);
                // The hook reads the key input's length: the appended keys are not in it.
                let si = self.input_sizes(inputs).2;
                let hook = add(&[
                    l * e,
                    mul(&[l, e, e])?,
                    mul(&[si, kd, kd])?,
                    mul(&[si, vd, vd])?,
                    if self.bias { mul(&[l + 2 * si, e])? } else { 0 },
                    mul(&[h, l, si, e / h + 1 + vd / h])?,
                    mul(&[l, vd, vd + 1])?,
                ])?;
                let functional = if self.need_weights {
                    let mask = match (self.mask, self.causal) {
                        (Some(_), _) if self.mask_per_head => mul(&[h, l, s])?,
                        (Some(_), _) | (None, true) => l * s,
                        (None, false) => 0,
                    };
                    add(&[mul(&[h, l, s, 2 * (e / h) + 1])?, mask])?
                } else {
                    0
                };
                mul(&[n, add(&[hook, functional])?])
            }
            // thop and torchinfo: no rule for nn.MultiheadAttention (its out_proj module is
            // never called): 0.
            Convention::Thop | Convention::Torchinfo => Ok(0),
        }
    }
    fn training(
        &self,
        inputs: &[Shape],
        outputs: &[Shape],
        input_grad: bool,
        dtype_bytes: u64,
    ) -> Result<Training, Diagnostic> {
        let (n, l, s) = self.sizes(inputs);
        let (e, h) = (self.embed, self.heads);
        let (proj, attn) = self.macs(inputs)?;
        let c = self.cost(inputs, outputs)?;
        let scores = mul(&[n, h, l, s])?;
        // The projections: the linear rule (input and weight gradients 2·MACs each in FLOPs,
        // bias gradients a sum of the output gradient).
        let lin = weighted_training(
            Cost {
                macs: proj,
                flops: 0,
            },
            outputs,
            input_grad,
            true,
            false,
        )?;
        // Over the rows projected (the S keys given); bias_k and bias_v sum theirs over the
        // batch.
        let rows_k = self.input_sizes(inputs).2;
        let bias_grads = add(&[
            if self.bias {
                add(&[mul(&[n, l + 2 * rows_k, e])?, mul(&[n, l, e])?])?
            } else {
                0
            },
            if self.bias_kv { mul(&[2, n, e])? } else { 0 },
        ])?;
        // The attention core: four products (dQ = dS·K, dK = dSᵀ·Q, dP = dO·Vᵀ, dV = Pᵀ·dO),
        // each the MACs of one forward product, and the softmax's backward, 3 per score.
        let core = add(&[mul(&[2, attn])?, mul(&[3, scores])?])?;
        // Saved (measured on the CPU: scripts/attention_reference.py `saved_for_backward`,
        // docs/TRAINING.md): each projection's input — the input itself at batch 1, else the
        // contiguous copy batch_first's transpose makes (N·L·E, N·S·kdim, N·S·vdim) — the
        // projections Q, K, V (one packed storage for self-attention) and the heads' output
        // (out_proj's input); then, by path:
        // - fused (need_weights false, no mask): a log-sum-exp per query row and head (f32);
        // - math inside scaled_dot_product_attention (need_weights false, a mask): Q and K
        //   scaled (N·L·E + N·S·E) and the softmax's output (one per score);
        // - need_weights: Q scaled and the softmax's output, and Q itself no longer for
        //   cross-attention (only its scaled copy is used); F.dropout's mask with `dropout`.
        let dt = |x: u64| mul(&[x, dtype_bytes]);
        let (kd, vd) = (self.kdim, self.vdim);
        let s_in = self.input_sizes(inputs).2;
        let copies = if n == 1 {
            0
        } else if self.self_attention {
            mul(&[n, l, e])?
        } else {
            add(&[mul(&[n, l, e])?, mul(&[n, s_in, kd])?, mul(&[n, s_in, vd])?])?
        };
        let q_elems = mul(&[n, l, e])?;
        let kv_elems = mul(&[2, n, s, e])?;
        let mut elems = add(&[copies, q_elems, kv_elems, q_elems])?;
        let mut extra_raw = 0u64;
        if self.extra_keys() > 0 {
            // Keys and values appended (`add_bias_kv`, `add_zero_attn`): torch.cat makes new
            // K and V of S' = S + 1 or S + 2 rows (N·S'·E each), which the products save in
            // place of the projections' (measured: scripts/attention_reference.py's four
            // cases). The fused path still keeps q's storage — the packed N·L·3E projection
            // for self-attention, Q alone for cross-attention — and a log-sum-exp; the
            // explicit products (need_weights, or a mask) keep Q scaled, K scaled or K, V
            // and the softmax's output instead, never the projections.
            let proj_q = if self.self_attention {
                add(&[q_elems, mul(&[2, n, s_in, e])?])?
            } else {
                q_elems
            };
            elems = if self.need_weights || self.mask.is_some() {
                if self.need_weights && self.dropout > 0.0 {
                    extra_raw = scores;
                }
                add(&[copies, kv_elems, q_elems, q_elems, scores])?
            } else {
                extra_raw = mul(&[n, h, l, 4])?;
                add(&[copies, proj_q, kv_elems, q_elems])?
            };
        } else if self.need_weights {
            elems = add(&[elems, q_elems, scores])?;
            if !self.self_attention {
                elems -= q_elems;
            }
            if self.dropout > 0.0 {
                extra_raw = scores;
            }
        } else if self.mask.is_some() {
            elems = add(&[elems, q_elems, mul(&[n, s, e])?, scores])?;
        } else {
            extra_raw = mul(&[n, h, l, 4])?;
        }
        let saved_inputs = match (n, self.self_attention) {
            (1, true) => vec![0],
            (1, false) => vec![0, 1, 2],
            _ => vec![],
        };
        Ok(Training {
            forward_flops: c.flops,
            backward_flops: add(&[lin.backward_flops, bias_grads, core])?,
            saved: Saved {
                inputs: saved_inputs,
                output: false,
                extra_bytes: add(&[dt(elems)?, extra_raw])?,
            },
            view: false,
            grad_views: vec![],
            cublas: true,
        })
    }
}

// ---------------------------------------------------------------------------------------------
// scaled_dot_product_attention

#[derive(Debug)]
struct Sdpa {
    /// Heads and head size of the query (N×heads×L×E: (heads, E)), for the label; None for
    /// a rank-3 call.
    heads: Option<(u64, u64)>,
    causal: bool,
    /// `scale:` as written; None: 1/√E.
    scale: Option<f64>,
    dropout: f64,
    gqa: bool,
    masked: bool,
    /// `mask: keys`: the fourth input is an N×S mask of the keys (transformers'
    /// `attention_mask`: a key is attended where it is not 0), combined with `causal`.
    keys: bool,
}

/// The sizes of an SDPA call: (query pairs, L, S, E, Ev, query heads, key heads).
fn sdpa_sizes(inputs: &[Shape]) -> (u64, u64, u64, u64, u64) {
    let (q, k, v) = (&inputs[0].0, &inputs[1].0, &inputs[2].0);
    let r = q.len();
    let pairs = q[..r - 2].iter().product();
    (pairs, q[r - 2], k[k.len() - 2], q[r - 1], v[v.len() - 1])
}

fn build_sdpa(a: &mut Attrs) -> Result<Box<dyn Layer>, Diagnostic> {
    let n_in = a.inputs.len();
    if n_in > 4 {
        return Err(Diagnostic::new(format!(
            "scaled_dot_product_attention takes 3 or 4 inputs, got {n_in}"
        ))
        .at(&a.node_path)
        .help("write `in: [q, k, v]` or `in: [q, k, v, mask]`"));
    }
    let (q, k, v) = (
        a.inputs[0].clone(),
        a.inputs[1].clone(),
        a.inputs[2].clone(),
    );
    for (what, t) in [("query", &q), ("key", &k), ("value", &v)] {
        if t.rank() < 3 {
            return Err(Diagnostic::new(format!(
                "scaled_dot_product_attention needs N×…×L×E inputs, and its {what} is {t} (rank {})",
                t.rank()
            ))
            .help("give it tensors of rank 3 (N×L×E) or more (N×heads×L×E)"));
        }
    }
    for (i, what) in ["query", "key", "value"].iter().enumerate() {
        wrong_axis_error(a, "scaled_dot_product_attention", i, what)?;
    }
    let causal = a.bool("causal", false)?;
    let gqa = a.bool("gqa", false)?;
    let dropout = dropout(a)?;
    let scale = match a.raw("scale")? {
        None => None,
        Some(_) => {
            let s = a.float("scale", 1.0)?;
            if s <= 0.0 {
                return Err(a
                    .error("scale", format!("`scale: {s}` must be positive"))
                    .help("write the factor the scores are multiplied by, e.g. `scale: 0.125` (default 1/√E)"));
            }
            Some(s)
        }
    };
    let r = q.rank();
    let (l, e) = (q.0[r - 2], q.0[r - 1]);
    let s = k.0[k.rank() - 2];
    let same_rank = k.rank() == r && v.rank() == r;
    let lead_ok = |t: &Shape| -> bool {
        if gqa && r >= 4 {
            let (hq, hk) = (q.0[r - 3], t.0[r - 3]);
            t.0[..r - 3] == q.0[..r - 3] && hk > 0 && hq.is_multiple_of(hk)
        } else {
            t.0[..r - 2] == q.0[..r - 2]
        }
    };
    if !same_rank || !lead_ok(&k) || !lead_ok(&v) || k.0[..r - 2] != v.0[..r - 2] {
        return Err(Diagnostic::new(format!(
            "the query {q}, key {k} and value {v} do not share their leading dimensions"
        ))
        .help(if gqa {
            "with `gqa: true`, key and value are N×Hkv×S×E with Hkv dividing the query's heads; the other leading sizes equal".to_string()
        } else {
            format!("give N×…×L×E, N×…×S×E and N×…×S×Ev with the same leading sizes ({}); for fewer key/value heads write `gqa: true`", Shape(q.0[..r - 2].to_vec()))
        }));
    }
    if k.0[r - 1] != e {
        return Err(Diagnostic::new(format!(
            "the query {q} has {e} features per position but the key {k} has {}: scores are their dot products",
            k.0[r - 1]
        ))
        .help("give the query and the key the same last dimension E"));
    }
    if v.0[r - 2] != s {
        return Err(Diagnostic::new(format!(
            "the key {k} has {s} positions but the value {v} has {}: each key needs its value",
            v.0[r - 2]
        ))
        .help("give key and value the same length S"));
    }
    let masked = n_in == 4;
    let keys = a.choice("mask", &["additive", "keys"], "additive")? == "keys";
    if keys {
        let Some(m) = a.inputs.get(3) else {
            return Err(a
                .error("mask", "`mask: keys` without a mask input")
                .help("give the N×S mask of the keys as the fourth input: `in: [q, k, v, mask]`"));
        };
        let n = q.0[0];
        if m.0 != [n, s] {
            return Err(Diagnostic::new(format!(
                "the key mask is {m}, but this attention has {n} samples of {s} keys"
            ))
            .help(format!(
                "give a mask of {n}×{s}: one value per sample and key, 0 for a key left out (transformers' attention_mask)"
            )));
        }
    } else if masked {
        if causal {
            return Err(a
                .error("causal", "a causal attention with an explicit mask: give one of them (PyTorch refuses both)")
                .help("drop the mask input (`causal: true` masks the later keys), or drop `causal: true` and put the causal mask into the mask you give"));
        }
        let m = &a.inputs[3];
        let mut target = q.0[..r - 2].to_vec();
        target.extend([l, s]);
        let fits = m.rank() <= target.len()
            && m.0
                .iter()
                .rev()
                .zip(target.iter().rev())
                .all(|(&a, &b)| a == b || a == 1);
        if !fits {
            return Err(Diagnostic::new(format!(
                "the attention mask {m} does not broadcast to the scores {}",
                Shape(target.clone())
            ))
            .help(format!(
                "give an additive float mask whose sizes, aligned from the right, are those of {} or 1 (e.g. {l}×{s} for all samples and heads)",
                Shape(target)
            )));
        }
    }
    Ok(Box::new(Sdpa {
        heads: (r >= 4).then(|| (q.0[r - 3], e)),
        causal,
        scale,
        dropout,
        gqa,
        masked,
        keys,
    }))
}

impl Sdpa {
    fn macs(&self, inputs: &[Shape]) -> Result<u64, Diagnostic> {
        let (pairs, l, s, e, ev) = sdpa_sizes(inputs);
        mul(&[pairs, l, s, add(&[e, ev])?])
    }
}

impl Sdpa {
    /// The additive mask of a mask of the keys (input 3, N×S), as transformers' export
    /// computes it: a pair is left out where its key's value is 0 (`Equal`) or, when causal,
    /// the key comes after the query; left out, the lowest f32 (`Where`), else 0; shaped
    /// N×1…×L×S (N×1…×1×S without the causal rule) to broadcast over the heads.
    fn onnx_key_mask(&self, em: &mut super::onnx::Emit, qd: &[i64], l: i64, s: i64) -> String {
        let r = qd.len();
        let m = em.input(3);
        let zero = em.scalar("zero", 0.0);
        let mut out_of = em.step("Equal", &[&m, &zero], vec![]);
        let mut shape = vec![qd[0]];
        shape.extend(std::iter::repeat_n(1, r - 2));
        shape.push(s);
        if self.causal {
            let off = em.step("Cast", &[&out_of], vec![super::onnx::int("to", 1)]);
            let off = em.reshape(&off, &shape);
            let mut later = vec![0f32; (l * s) as usize];
            for i in 0..l {
                for j in i + 1..s {
                    later[(i * s + j) as usize] = 1.0;
                }
            }
            let later = em.floats("later", &[l, s], later);
            let both = em.step("Add", &[&off, &later], vec![]);
            out_of = em.step("Greater", &[&both, &zero], vec![]);
        } else {
            out_of = em.reshape(&out_of, &shape);
        }
        let lowest = em.scalar("lowest", f32::MIN);
        em.step("Where", &[&out_of, &lowest, &zero], vec![])
    }
}

impl Op for Sdpa {
    fn op(&self) -> &'static str {
        "scaled_dot_product_attention"
    }
    fn label(&self) -> String {
        let mut s = match self.heads {
            Some((h, d)) => format!("attention, {h} heads×{d}"),
            None => "attention".to_string(),
        };
        if self.causal {
            s.push_str(", causal");
        }
        if self.keys {
            s.push_str(", key mask");
        } else if self.masked {
            s.push_str(", masked");
        }
        if let Some(x) = self.scale {
            s.push_str(&format!(", scale {x}"));
        }
        if self.gqa {
            s.push_str(", grouped");
        }
        if self.dropout > 0.0 {
            s.push_str(&format!(", dropout {}", self.dropout));
        }
        s
    }
    fn category(&self) -> Category {
        Category::Attention
    }
    fn output_shapes(&self, inputs: &[Shape]) -> Result<Vec<Shape>, Diagnostic> {
        let mut out = inputs[0].0.clone();
        let r = out.len();
        out[r - 1] = inputs[2].0[r - 1];
        Ok(vec![Shape(out)])
    }
    fn cost(&self, inputs: &[Shape], _outputs: &[Shape]) -> Result<Cost, Diagnostic> {
        let (pairs, l, s, e, _) = sdpa_sizes(inputs);
        let macs = self.macs(inputs)?;
        let scores = mul(&[pairs, l, s])?;
        let masked = if self.masked || self.causal {
            scores
        } else {
            0
        };
        Ok(Cost {
            macs,
            flops: add(&[
                mul(&[2, macs])?,
                mul(&[pairs, l, e])?,
                mul(&[4, scores])?,
                masked,
            ])?,
        })
    }
    fn geometry(&self, _inputs: &[Shape]) -> Geometry {
        Geometry::Global
    }
    fn attention(&self, inputs: &[Shape]) -> Result<Option<AttentionSplit>, Diagnostic> {
        let (pairs, l, s, e, ev) = sdpa_sizes(inputs);
        let q = &inputs[0].0;
        // The query's heads: the dimension before L×E of an N×heads×L×E call, else 1.
        let heads = if q.len() >= 4 { q[q.len() - 3] } else { 1 };
        Ok(Some(AttentionSplit {
            heads,
            head_dim: e,
            queries: l,
            keys: s,
            windows: 1,
            projections: 0,
            scores: mul(&[pairs, l, s, e])?,
            values: mul(&[pairs, l, s, ev])?,
            other: 0,
        }))
    }
    fn kv_cache_per_token(&self, inputs: &[Shape]) -> u64 {
        // Per position of the keys: every key head's E and every value head's Ev.
        if !self.causal {
            return 0;
        }
        let (k, v) = (&inputs[1].0, &inputs[2].0);
        let per = |t: &[u64]| -> u64 {
            let r = t.len();
            t[1..r - 2].iter().product::<u64>() * t[r - 1]
        };
        per(k) + per(v)
    }
}

impl Kernel for Sdpa {
    /// [`super::onnx::attention`] on the three inputs (key and value heads repeated for
    /// grouped-query attention).
    fn onnx(&self, em: &mut super::onnx::Emit) -> Result<(), Diagnostic> {
        let (q, mut k, mut v) = (em.input(0), em.input(1), em.input(2));
        let (qd, kd, vd) = (em.in_dims(0), em.in_dims(1), em.in_dims(2));
        let r = qd.len();
        let (l, s, e) = (qd[r - 2], kd[r - 2], qd[r - 1]);
        if r >= 4 && qd[r - 3] != kd[r - 3] {
            let (hq, hk) = (qd[r - 3], kd[r - 3]);
            let g = hq / hk.max(1);
            for (t, dims) in [(&mut k, &kd), (&mut v, &vd)] {
                let mut split = dims[..r - 2].to_vec();
                split.push(1);
                split.extend(&dims[r - 2..]);
                let y = em.reshape(t, &split);
                let mut wide = split.clone();
                wide[r - 2] = g;
                let ws = em.ints("shape", &wide);
                let y = em.step("Expand", &[&y, &ws], vec![]);
                let mut merged = dims.clone();
                merged[r - 3] = hq;
                *t = em.reshape(&y, &merged);
            }
        }
        let mut mask = em.inputs.get(3).cloned();
        if self.keys {
            mask = Some(self.onnx_key_mask(em, &qd, l, s));
        }
        let scale = self.scale.map_or(1.0 / (e as f32).sqrt(), |x| x as f32);
        let out = em.output(0);
        super::onnx::attention(
            em,
            &q,
            &k,
            &v,
            r,
            (l as u64, s as u64),
            mask.as_deref(),
            self.causal && !self.keys,
            scale,
            &out,
        );
        Ok(())
    }
    fn collapsed(&self) -> Collapsed {
        // Every query attends to every key (a mask only removes pairs).
        Collapsed::Mix
    }
    fn forward(
        &self,
        inputs: &[&Tensor],
        _weights: &[Tensor],
        ctx: &mut Ctx,
    ) -> Result<Vec<Tensor>, Diagnostic> {
        let (q, k, v) = (inputs[0], inputs[1], inputs[2]);
        let r = q.shape.len();
        let (l, e) = (q.shape[r - 2], q.shape[r - 1]);
        let (s, ev) = (k.shape[r - 2], v.shape[r - 1]);
        let pairs: usize = q.shape[..r - 2].iter().product();
        let (hq, hk) = if r >= 4 {
            (q.shape[r - 3], k.shape[r - 3])
        } else {
            (1, 1)
        };
        let strided = |heads: usize, rows: usize, cols: usize| Strided {
            heads,
            outer: heads * rows * cols,
            head: rows * cols,
            row: cols,
        };
        let mut out_shape = q.shape.clone();
        out_shape[r - 1] = ev;
        // A mask of the keys (`mask: keys`) as the additive mask it stands for: per sample,
        // one row for every query, or L×S with the causal rule in it.
        let causal_rows = self.keys && self.causal;
        let keyed: Option<Vec<f32>> = match inputs.get(3) {
            Some(m) if self.keys => {
                let n = q.shape[0];
                buffer("mask of the keys", &[n, if causal_rows { l } else { 1 }, s])?;
                Some(kernels_attn::key_mask(&m.data, n, l, s, causal_rows))
            }
            _ => None,
        };
        let mut out = ctx.output(&out_shape);
        let per_sample = pairs / q.shape[0].max(1);
        let keyed_mask = keyed.as_ref().map(|data| Mask {
            data,
            offsets: (0..pairs)
                .map(|b| (b / per_sample.max(1)) * if causal_rows { l * s } else { s })
                .collect(),
            row: if causal_rows { s } else { 0 },
            col: 1,
        });
        // The mask broadcast over the leading dimensions: the offset of each pair's L×S block.
        let mask = inputs.get(3).filter(|_| !self.keys).map(|m| {
            let mr = m.shape.len();
            let mut target: Vec<usize> = q.shape[..r - 2].to_vec();
            target.extend([l, s]);
            // Strides of the mask aligned to `target` (0 along a broadcast or missing axis).
            let mut strides = vec![0usize; target.len()];
            let mut acc = 1usize;
            for i in (0..mr).rev() {
                let t = target.len() - mr + i;
                strides[t] = if m.shape[i] == 1 { 0 } else { acc };
                acc *= m.shape[i];
            }
            let lead = &target[..r - 2];
            let offsets = (0..pairs)
                .map(|mut b| {
                    let mut off = 0;
                    for (i, &size) in lead.iter().enumerate().rev() {
                        off += (b % size) * strides[i];
                        b /= size;
                    }
                    off
                })
                .collect();
            Mask {
                data: &m.data,
                offsets,
                row: strides[r - 2],
                col: strides[r - 1],
            }
        });
        let scale = self.scale.map_or(1.0 / (e as f32).sqrt(), |x| x as f32);
        let dims = Dims {
            pairs,
            l,
            s,
            e,
            ev,
            group: hq / hk.max(1),
        };
        check_buffers(&dims)?;
        ctx.macs += kernels_attn::attention(
            &dims,
            (&q.data, strided(hq, l, e)),
            (&k.data, strided(hk, s, e)),
            (&v.data, strided(hk, s, ev)),
            mask.as_ref().or(keyed_mask.as_ref()),
            self.causal && !self.keys,
            scale,
            (&mut out.data, strided(hq, l, ev)),
        );
        Ok(vec![out])
    }
    fn workspace(&self, inputs: &[Shape], _outputs: &[Shape]) -> u64 {
        let (pairs, l, s, e, ev) = sdpa_sizes(inputs);
        // The attention scratch, and with a mask its offsets (one usize, two f32 elements,
        // per pair).
        let offsets = if self.masked {
            pairs.saturating_mul(2)
        } else {
            0
        };
        // A mask of the keys becomes an additive one: N×S, or N×L×S when causal.
        let keyed = if self.keys {
            let rows = if self.causal { l } else { 1 };
            inputs[0].0[0].saturating_mul(rows).saturating_mul(s)
        } else {
            0
        };
        offsets
            .saturating_add(keyed)
            .saturating_add(kernels_attn::workspace(&Dims {
                pairs: pairs as usize,
                l: l as usize,
                s: s as usize,
                e: e as usize,
                ev: ev as usize,
                group: 1,
            }))
    }
}

impl Counting for Sdpa {
    fn forward_cublas(&self) -> bool {
        true
    }
    fn convention_cost(
        &self,
        c: Convention,
        inputs: &[Shape],
        _outputs: &[Shape],
    ) -> Result<u64, Diagnostic> {
        match c {
            // FlopCounterMode's rule for aten::_scaled_dot_product_*: the two products, over
            // every key (a causal mask does not reduce it).
            Convention::Torchvision => self.macs(inputs),
            // fvcore has no handler for aten::scaled_dot_product_attention; ptflops patches
            // no such function; thop and torchinfo see no module: 0.
            _ => Ok(0),
        }
    }
    fn training(
        &self,
        inputs: &[Shape],
        outputs: &[Shape],
        input_grad: bool,
        dtype_bytes: u64,
    ) -> Result<Training, Diagnostic> {
        let (pairs, l, s, e, ev) = sdpa_sizes(inputs);
        let c = self.cost(inputs, outputs)?;
        let scores = mul(&[pairs, l, s])?;
        // Four products (2× the forward's MACs, 2 FLOPs each) and the softmax's backward (3
        // per score).
        let backward = if input_grad {
            add(&[mul(&[4, self.macs(inputs)?])?, mul(&[3, scores])?])?
        } else {
            0
        };
        // Saved (measured on the CPU, docs/TRAINING.md): the fused kernel (E = Ev, no mask,
        // no dropout) keeps q, k, v, its output and a log-sum-exp per query row (f32); the
        // math path keeps v, q and k scaled (pairs·L·E + pairs·S·E) and the softmax's output
        // (one per score), and a dropout mask (a byte per score) with `dropout`.
        let saved = if e == ev && !self.masked && self.dropout == 0.0 {
            Saved {
                inputs: vec![0, 1, 2],
                output: true,
                extra_bytes: mul(&[pairs, l, 4])?,
            }
        } else {
            let elems = add(&[mul(&[pairs, l, e])?, mul(&[pairs, s, e])?, scores])?;
            Saved {
                inputs: vec![2],
                output: false,
                extra_bytes: add(&[
                    mul(&[elems, dtype_bytes])?,
                    if self.dropout > 0.0 { scores } else { 0 },
                ])?,
            }
        };
        Ok(Training {
            forward_flops: c.flops,
            backward_flops: backward,
            saved,
            view: false,
            grad_views: vec![],
            cublas: true,
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::error::Diagnostic;
    use crate::layers::testutil::{build, build_laid};
    use crate::layers::{Convention, Layer, Layout, Role, Shape};

    /// Builds an attention on token inputs (`N×L×E`, laid out batch, sequence, features).
    fn tokens(
        op: &str,
        attrs: &str,
        inputs: &[&[u64]],
    ) -> Result<(Box<dyn Layer>, Vec<Shape>), Diagnostic> {
        let lay = Layout(vec![Role::Batch, Role::Sequence, Role::Channel]);
        build_laid(op, attrs, inputs, &vec![lay; inputs.len()])
    }

    #[test]
    fn vit_b_16_block_by_hand() {
        // E = 768, 12 heads, L = 197: in_proj 3·768² + 3·768, out_proj 768² + 768 parameters
        // = 2,362,368; MACs 4·197·768² (projections) + 2·197²·768 (Q·Kᵀ, A·V) = 524,391,936.
        let x = [1u64, 197, 768];
        let (l, out) = tokens(
            "multi_head_attention",
            "{heads: 12, need_weights: false}",
            &[&x],
        )
        .unwrap();
        assert_eq!(out[0].0, x.to_vec());
        assert_eq!(l.params().total(), 2_362_368);
        let c = l.cost(&[Shape(x.to_vec())], &out).unwrap();
        assert_eq!(c.macs, 4 * 197 * 768 * 768 + 2 * 197 * 197 * 768);
        assert_eq!(c.macs, 524_391_936);
        // Of which Q·Kᵀ and attention·V: 2·197²·768.
        assert_eq!(c.macs - 4 * 197 * 768 * 768, 59_610_624);
        // GPT-2's causal layer keeps K and V: 2·768 elements per token.
        let (l, _) = tokens("mha", "{heads: 12, causal: true}", &[&x]).unwrap();
        assert_eq!(l.kv_cache_per_token(&[Shape(x.to_vec())]), 1536);
    }

    #[test]
    fn sdpa_shapes_and_macs_by_hand() {
        // q 2×3×5×8, k 2×3×7×8, v 2×3×7×6 → 2×3×5×6; 6 pairs · 5·7·(8 + 6) = 2,940 MACs.
        let (l, out) = build("sdpa", "{}", &[&[2, 3, 5, 8], &[2, 3, 7, 8], &[2, 3, 7, 6]]).unwrap();
        assert_eq!(out[0].0, vec![2, 3, 5, 6]);
        let ins: Vec<Shape> = [[2u64, 3, 5, 8], [2, 3, 7, 8], [2, 3, 7, 6]]
            .iter()
            .map(|s| Shape(s.to_vec()))
            .collect();
        assert_eq!(l.cost(&ins, &out).unwrap().macs, 2940);
        assert_eq!(
            l.convention_cost(Convention::Fvcore, &ins, &out).unwrap(),
            0
        );
    }

    #[test]
    fn heads_must_divide_the_embedding() {
        let e = tokens("multi_head_attention", "{heads: 5}", &[&[1, 4, 12]]).unwrap_err();
        assert_eq!(
            e.message,
            "5 heads do not divide the embedding of 12 features (each head takes embedding/heads of them)"
        );
        assert_eq!(
            e.help.as_deref(),
            Some("use a head count that divides 12: 1, 2, 3, 4, 6, 12")
        );
        // 768 has 18 divisors: the first 12, then an ellipsis.
        assert_eq!(
            super::divisors(768),
            "1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, …"
        );
        // A prime embedding: 1 and itself, found in √n steps.
        assert_eq!(super::divisors(1_000_000_007), "1, 1000000007");
    }
}
