//! Relative-position multi-head self-attention over partitioned tokens
//! (`relative_position_attention`), torchvision's `maxvit.RelativePositionalMultiHeadAttention`:
//! on an N×G×P×D tensor (G windows or grids of P = size² tokens, D features: what
//! `window_partition` makes), `to_qkv` (D→3D, bias), per head of `head_dim` features
//! Q·(K·D^−½)ᵀ — torchvision scales K by the *feature* width D, not the head's — plus a learned
//! relative position bias ((2·size−1)²×heads table indexed by torchvision's
//! `relative_position_index`, a size²×size² buffer), softmax, ·V, heads side by side, `merge`
//! (D→D, bias). Parameters and buffers carry torchvision's state-dict names. MACs: the to_qkv
//! and merge products (4·D² per token) and Q·Kᵀ plus attention·V in every group (2·P²·D);
//! what each profiler charges was measured with the tool on the module
//! (`scripts/maxvit_reference.py`, tests/maxvit.rs).

use rayon::prelude::*;

use super::window_attention::relative_position_index;
use super::Convention;
use super::{
    add, mul, Arity, Attrs, Category, Cost, Counting, Kernel, Layer, Op, OpType, Params, Saved,
    Shape, Training,
};
use crate::error::Diagnostic;
use crate::kernels::{matmul, vectorised, Ctx};
use crate::kernels_attn::{probs_times_values, softmax_row};
use crate::tensor::{Init, Tensor, WeightKind, WeightSpec, MAX_TENSOR_ELEMENTS};

pub const RELATIVE_POSITION_ATTENTION: OpType = OpType {
    name: "relative_position_attention",
    aliases: &[],
    keys: &["head_dim", "size"],
    arity: Arity::Exactly(1),
    fused_bn: None,
    defaults: &[],
    build,
    summary: "multi-head self-attention with a learned relative position bias over N×G×size²×D partitioned tokens (torchvision MaxViT's RelativePositionalMultiHeadAttention)",
};

#[derive(Debug)]
struct RelAttention {
    /// Features D and heads (D / head_dim).
    dim: u64,
    heads: u64,
    /// The partition side: P = size² tokens per group.
    size: u64,
    /// Groups per sample (G).
    groups: u64,
}

fn build(a: &mut Attrs) -> Result<Box<dyn Layer>, Diagnostic> {
    let x = a.input().clone();
    let head_dim = a.req_positive("head_dim", "32")?;
    let size = a.req_positive("size", "7")?;
    if x.rank() != 4 {
        return Err(a
            .error(
                "size",
                format!(
                    "relative_position_attention needs an N×G×P×D input (groups, tokens, features), got {x} (rank {})",
                    x.rank()
                ),
            )
            .help("partition the map first: `{op: window_partition, size: 7}` makes N×G×49×C"));
    }
    let lay = a.input_layout(0);
    if lay.0[3].is_positional() {
        return Err(a
            .error(
                "size",
                format!(
                    "relative_position_attention reads features on the last axis, and this input {x} (laid out {}) has input positions there",
                    lay.letters(2)
                ),
            )
            .help("partition the N×C×H×W map with `window_partition`, which puts the channels last"));
    }
    let (groups, p, dim) = (x.0[1], x.0[2], x.0[3]);
    if !dim.is_multiple_of(head_dim) {
        return Err(a
            .error(
                "head_dim",
                format!("a head size of {head_dim} does not divide the {dim} features of the input {x}"),
            )
            .help(format!(
                "each head takes head_dim features: choose a head_dim that divides {dim} (MaxViT: 32)"
            )));
    }
    let l = mul(&[size, size])?;
    if l != p {
        return Err(a
            .error(
                "size",
                format!(
                    "a partition size of {size} makes {l} tokens per group, but the input {x} has {p}"
                ),
            )
            .help("write the partition's size (its square is the input's third dimension): torchvision's max_seq_len is size²"));
    }
    // The bias table and the per-head bias the kernel allocates.
    let heads = dim / head_dim;
    mul(&[l, l, heads])?;
    Ok(Box::new(RelAttention {
        dim,
        heads,
        size,
        groups,
    }))
}

impl RelAttention {
    fn l(&self) -> u64 {
        self.size * self.size
    }
    fn table_rows(&self) -> u64 {
        (2 * self.size - 1) * (2 * self.size - 1)
    }
    /// Tokens, groups and attention logits of a batch of `n`.
    fn sizes(&self, n: u64) -> Result<(u64, u64, u64), Diagnostic> {
        let groups = mul(&[n, self.groups])?;
        let tokens = mul(&[groups, self.l()])?;
        let logits = mul(&[groups, self.heads, self.l(), self.l()])?;
        Ok((tokens, groups, logits))
    }
    /// The to_qkv and merge products, and Q·Kᵀ plus attention·V in every group.
    fn macs(&self, n: u64) -> Result<u64, Diagnostic> {
        let (tokens, groups, _) = self.sizes(n)?;
        add(&[
            mul(&[tokens, 4, self.dim, self.dim])?,
            mul(&[groups, 2, self.l(), self.l(), self.dim])?,
        ])
    }
}

impl Op for RelAttention {
    fn op(&self) -> &'static str {
        "relative_position_attention"
    }
    fn label(&self) -> String {
        format!(
            "relative attention {s}×{s}, {} heads×{}",
            self.heads,
            self.dim / self.heads,
            s = self.size
        )
    }
    fn category(&self) -> Category {
        Category::Convolution
    }
    fn output_shapes(&self, inputs: &[Shape]) -> Result<Vec<Shape>, Diagnostic> {
        let x = &inputs[0];
        if x.rank() != 4 || x.0[1] != self.groups || x.0[2] != self.l() || x.0[3] != self.dim {
            return Err(Diagnostic::new(format!(
                "relative_position_attention was built for N×{}×{}×{}, got {x}",
                self.groups,
                self.l(),
                self.dim
            )));
        }
        Ok(vec![x.clone()])
    }
    fn params(&self) -> Params {
        let d = self.dim;
        Params {
            trainable: 4 * d * d + 4 * d + self.table_rows() * self.heads,
            frozen: 0,
            buffers: self.l() * self.l(),
        }
    }
    fn cost(&self, inputs: &[Shape], _outputs: &[Shape]) -> Result<Cost, Diagnostic> {
        let n = inputs[0].0[0];
        let macs = self.macs(n)?;
        let (tokens, _, logits) = self.sizes(n)?;
        // The qkv and merge biases (4 per token and feature), K's scale (1 per key element),
        // per logit the position bias add (1) and the softmax (4).
        Ok(Cost {
            macs,
            flops: add(&[
                mul(&[2, macs])?,
                mul(&[tokens, 5, self.dim])?,
                mul(&[logits, 5])?,
            ])?,
        })
    }
    fn geometry(&self, _inputs: &[Shape]) -> super::Geometry {
        // Every token of a group (dimension 2) sees the group's tokens, group by group.
        super::Geometry::Attend { dim: 2 }
    }
    fn torch_type(&self) -> Option<&'static str> {
        Some("RelativePositionalMultiHeadAttention")
    }
}

// Positions of the tensors in `weights()`.
const QKV_W: usize = 0;
const QKV_B: usize = 1;
const MERGE_W: usize = 2;
const MERGE_B: usize = 3;
const TABLE: usize = 4;
const INDEX: usize = 5;

impl Kernel for RelAttention {
    fn collapsed(&self) -> super::Collapsed {
        // The tokens of a group mix (dimension 2), every group on its own.
        super::Collapsed::Attend { dim: 2 }
    }
    /// torchvision's steps: `to_qkv` (`MatMul`, `Add`), heads split (`Reshape`, `Transpose`,
    /// `Gather`), K scaled by D^−½, Q·Kᵀ, the bias table gathered by the index buffer (`Cast`,
    /// `Gather`, `Transpose`) and added, `Softmax`, ·V, heads merged, `merge`.
    fn onnx(&self, e: &mut super::onnx::Emit) -> Result<(), Diagnostic> {
        use super::onnx::{int, ints};
        let x = e.input(0);
        let xd = e.in_dims(0);
        let (n, g, p) = (xd[0], xd[1], xd[2]);
        let (dd, h) = (self.dim as i64, self.heads as i64);
        let dh = dd / h;
        let (wq, bq, wm, bm, table, index) = (
            e.weight(0),
            e.weight(1),
            e.weight(2),
            e.weight(3),
            e.weight(4),
            e.weight(5),
        );
        let wqt = e.step("Transpose", &[&wq], vec![ints("perm", &[1, 0])]);
        let qkv = e.step("MatMul", &[&x, &wqt], vec![]);
        let qkv = e.step("Add", &[&qkv, &bq], vec![]);
        let qkv = e.reshape(&qkv, &[n, g, p, 3, h, dh]);
        let qkv = e.step(
            "Transpose",
            &[&qkv],
            vec![ints("perm", &[3, 0, 1, 4, 2, 5])],
        );
        let part = |e: &mut super::onnx::Emit, i: i64| {
            let ix = e.tmp("part");
            e.consts.push(super::onnx::Const {
                name: ix.clone(),
                dims: vec![],
                data: super::onnx::ConstData::I64(vec![i]),
            });
            e.step("Gather", &[&qkv, &ix], vec![int("axis", 0)])
        };
        let (q, k, v) = (part(e, 0), part(e, 1), part(e, 2));
        let sc = e.scalar("scale", (dd as f32).powf(-0.5));
        let k = e.step("Mul", &[&k, &sc], vec![]);
        let kt = e.step("Transpose", &[&k], vec![ints("perm", &[0, 1, 2, 4, 3])]);
        let logits = e.step("MatMul", &[&q, &kt], vec![]);
        let ix = e.step("Cast", &[&index], vec![int("to", 7)]);
        let gathered = e.step("Gather", &[&table, &ix], vec![int("axis", 0)]);
        let bias = e.step("Transpose", &[&gathered], vec![ints("perm", &[2, 0, 1])]);
        let att = e.step("Add", &[&logits, &bias], vec![]);
        let att = e.step("Softmax", &[&att], vec![int("axis", -1)]);
        let y = e.step("MatMul", &[&att, &v], vec![]);
        let y = e.step("Transpose", &[&y], vec![ints("perm", &[0, 1, 3, 2, 4])]);
        let y = e.reshape(&y, &[n, g, p, dd]);
        let wmt = e.step("Transpose", &[&wm], vec![ints("perm", &[1, 0])]);
        let y = e.step("MatMul", &[&y, &wmt], vec![]);
        let out = e.output(0);
        e.node("Add", &[&y, &bm], &[&out], vec![]);
        Ok(())
    }
    fn weights(&self) -> Vec<WeightSpec> {
        let d = self.dim as usize;
        let s = self.size as usize;
        let p = WeightKind::Trainable;
        let spec = |name, shape, kind, init| WeightSpec {
            name,
            shape,
            kind,
            init,
        };
        vec![
            spec(
                "to_qkv.weight",
                vec![3 * d, d],
                p,
                Init::Kaiming { fan_in: d },
            ),
            spec("to_qkv.bias", vec![3 * d], p, Init::Zeros),
            spec("merge.weight", vec![d, d], p, Init::Kaiming { fan_in: d }),
            spec("merge.bias", vec![d], p, Init::Zeros),
            spec(
                "relative_position_bias_table",
                vec![self.table_rows() as usize, self.heads as usize],
                p,
                Init::Zeros,
            ),
            spec(
                "relative_position_index",
                vec![s * s, s * s],
                WeightKind::Buffer,
                Init::Fixed(relative_position_index([s, s])),
            ),
        ]
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
        let l = self.l() as usize;
        let rows = x.data.len() / c;
        if rows.saturating_mul(3 * c) > MAX_TENSOR_ELEMENTS {
            return Err(Diagnostic::new(format!(
                "the to_qkv projection of {rows} tokens × {} would exceed the executor's {MAX_TENSOR_ELEMENTS} elements",
                3 * c
            ))
            .help("run a smaller batch or input"));
        }
        // The per-head bias of every (query, key) pair: table[index[i, j], h].
        let t = self.table_rows() as usize;
        let table = &weights[TABLE].data;
        let mut bias = vec![0f32; heads * l * l];
        for (ij, &ix) in weights[INDEX].data.iter().enumerate() {
            if !(ix >= 0.0 && ix.fract() == 0.0 && (ix as usize) < t) {
                return Err(Diagnostic::new(format!(
                    "relative_position_index holds {ix} at position {ij}, outside the {t} rows of the position bias table"
                ))
                .help("the buffer must be the index torchvision computes for this partition size: a checkpoint of another size does not fit"));
            }
            for hh in 0..heads {
                bias[hh * l * l + ij] = table[ix as usize * heads + hh];
            }
        }
        let scale = (c as f32).powf(-0.5);

        // qkv = x · Wᵀ + b.
        let mut qkv = vec![0f32; rows * 3 * c];
        ctx.macs += matmul(
            rows,
            3 * c,
            c,
            &x.data,
            c,
            1,
            &weights[QKV_W].data,
            1,
            c,
            &mut qkv,
            false,
        );
        let qb = &weights[QKV_B].data;
        qkv.par_chunks_mut(3 * c).for_each(|row| {
            row.iter_mut().zip(qb).for_each(|(v, b)| *v += b);
        });

        // Attention per group and head into y (rows × C, head h in columns h·d…).
        let mut y = vec![0f32; rows * c];
        let attn_macs: u64 = y
            .par_chunks_mut(l * c)
            .enumerate()
            .map(|(gi, out)| {
                let base = &qkv[gi * l * 3 * c..(gi + 1) * l * 3 * c];
                let mut logits = vec![0f32; l * l];
                let mut k = vec![0f32; l * d];
                let mut o = vec![0f32; l * d];
                let mut macs = 0u64;
                for hh in 0..heads {
                    // K · D^−½, as torchvision scales k before the product.
                    for j in 0..l {
                        let row = &base[j * 3 * c + c + hh * d..j * 3 * c + c + hh * d + d];
                        for (o, v) in k[j * d..(j + 1) * d].iter_mut().zip(row) {
                            *o = v * scale;
                        }
                    }
                    // logits (L×L) = Q (L×d, rows at stride 3C) · Kᵀ.
                    macs += matmul(
                        l,
                        l,
                        d,
                        &base[hh * d..],
                        3 * c,
                        1,
                        &k,
                        1,
                        d,
                        &mut logits,
                        false,
                    );
                    let hb = &bias[hh * l * l..(hh + 1) * l * l];
                    for (row, brow) in logits.chunks_mut(l).zip(hb.chunks(l)) {
                        row.iter_mut().zip(brow).for_each(|(v, b)| *v += b);
                        vectorised(
                            #[inline(always)]
                            || softmax_row(row),
                        );
                    }
                    // out[:, h·d…] = P · V (rows at stride C).
                    macs += probs_times_values(&logits, base, out, &mut o, (l, d, c, hh));
                }
                macs
            })
            .sum();
        ctx.macs += attn_macs;
        drop(qkv);

        // merge.
        let mut out = ctx.output(&x.shape);
        ctx.macs += matmul(
            rows,
            c,
            c,
            &y,
            c,
            1,
            &weights[MERGE_W].data,
            1,
            c,
            &mut out.data,
            false,
        );
        let mb = &weights[MERGE_B].data;
        out.data.par_chunks_mut(c).for_each(|row| {
            row.iter_mut().zip(mb).for_each(|(v, b)| *v += b);
        });
        Ok(vec![out])
    }

    fn workspace(&self, inputs: &[Shape], _outputs: &[Shape]) -> u64 {
        // qkv (T×3C) and the attention output (T×C), the bias (heads × L²); per thread a
        // group's logits, scaled keys and head output.
        let Ok((tokens, _, _)) = self.sizes(inputs[0].0[0]) else {
            return u64::MAX;
        };
        let l = self.l();
        tokens
            .saturating_mul(4 * self.dim)
            .saturating_add(self.heads * l * l)
            .saturating_add(rayon::current_num_threads() as u64 * (l * l + 2 * l * self.dim))
    }
}

impl Counting for RelAttention {
    fn convention_cost(
        &self,
        c: Convention,
        inputs: &[Shape],
        outputs: &[Shape],
    ) -> Result<u64, Diagnostic> {
        let n = inputs[0].0[0];
        let (tokens, _, logits) = self.sizes(n)?;
        let d = self.dim;
        let linear = mul(&[tokens, 4, d, d])?;
        // One einsum's MACs (Q·Kᵀ and attention·V have the same count).
        let einsum = mul(&[logits, d / self.heads])?;
        // Measured with each tool on the module (scripts/maxvit_reference.py): to_qkv and
        // merge are nn.Linear modules it calls, so every hook-based tool charges them; the
        // two products are `torch.einsum` calls.
        match c {
            // FlopCounterMode: the linears and both einsums (as bmm), bias excluded.
            Convention::Torchvision => Ok(self.cost(inputs, outputs)?.macs),
            // fvcore: the linears, and per einsum NumPy's `einsum_path` "optimized FLOP
            // count" (2 per MAC) as NumPy prints it, to four significant digits (`%.3e`),
            // halved and floored.
            Convention::Fvcore => {
                add(&[linear, mul(&[2, numpy_printed_half(mul(&[2, einsum])?)])?])
            }
            // ptflops: its Linear hook (input features × out features plus the bias, per
            // row), and F.softmax, which it patches (one per logit); it does not patch
            // torch.einsum, nor `*` and `+`.
            Convention::Ptflops => add(&[mul(&[tokens, 4 * d * (d + 1)])?, logits]),
            // thop (0.1.1, the version the presets follow): the Linear modules alone, in·out
            // per output row, bias excluded; it has no hook for functions.
            Convention::Thop => Ok(linear),
            // torchinfo: the Linear modules' weights and biases, once per sample (its
            // output_size[0]).
            Convention::Torchinfo => mul(&[n, 4 * d * (d + 1)]),
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
        let (tokens, _, logits) = self.sizes(n)?;
        let c = self.dim;
        // Backward: every product's two operand gradients, 2 FLOPs per MAC each; the bias
        // gradients; the softmax's Jacobian-vector product, 3 per logit.
        let backward = add(&[
            mul(&[4, cost.macs])?,
            mul(&[tokens, 4 * c])?,
            mul(&[3, logits])?,
        ])?;
        // What autograd keeps (measured: scripts/maxvit_reference.py, saved_tensors_hooks, each
        // storage once, parameters and buffers left out): to_qkv's input, the contiguous
        // copies of Q, the scaled K and V that the einsums fold into batched products, merge's
        // input (five T×D tensors), and the softmax's output. When the einsums' batch
        // dimensions fold without a copy — one head, or one group in the whole batch — Q and
        // V are views of qkv itself (T×3D) instead of two copies: six T×D.
        let (_, groups, _) = self.sizes(n)?;
        let per_token = if self.heads == 1 || groups == 1 { 6 } else { 5 };
        let kept = add(&[mul(&[tokens, per_token * c])?, logits])?;
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

/// What NumPy's `einsum_path` report shows for a FLOP count `v` (`%.3e`: four significant
/// digits, the exact value rounded half to even), halved and floored, as fvcore reads it.
fn numpy_printed_half(v: u64) -> u64 {
    let digits = v.checked_ilog10().map_or(1, |e| e + 1);
    if digits <= 4 {
        return v / 2;
    }
    let scale = 10u64.pow(digits - 4);
    let (mut q, r) = (v / scale, v % scale);
    if 2 * r > scale || (2 * r == scale && q % 2 == 1) {
        q += 1;
    }
    q * scale / 2
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layers::testutil::build_laid;
    use crate::layers::Layout;

    fn part(s: &[u64]) -> Vec<Layout> {
        vec![
            Layout(vec![
                crate::layers::Role::Batch,
                crate::layers::Role::Other,
                crate::layers::Role::Other,
                crate::layers::Role::Channel,
            ]);
            s.len().min(1)
        ]
    }

    #[test]
    fn maxvit_t_stage_one_by_hand() {
        // maxvit_t's first stage: 64 windows of 49 tokens, 64 features, head_dim 32: 2 heads.
        // Parameters: to_qkv 64·192 + 192, merge 64·64 + 64, the 13·13×2 table: 16,640 + 338;
        // buffer 49².
        let s = [1, 64, 49, 64];
        let (l, out) = build_laid(
            "relative_position_attention",
            "{head_dim: 32, size: 7}",
            &[&s],
            &part(&s),
        )
        .unwrap();
        assert_eq!(out, vec![Shape(s.to_vec())]);
        let p = l.params();
        assert_eq!(p.trainable, 64 * 192 + 192 + 64 * 64 + 64 + 169 * 2);
        assert_eq!(p.buffers, 2401);
        // MACs: 3136 tokens · 4·64² + 64 groups · 2·49²·64.
        let c = l.cost(&out, &out).unwrap();
        assert_eq!(c.macs, 3136 * 4 * 64 * 64 + 64 * 2 * 49 * 49 * 64);
    }

    #[test]
    fn fvcore_reads_numpys_printed_count() {
        // 2·614,656 = 1,229,312 prints as 1.229e+06: 614,500. 20,736 prints as 2.074e+04:
        // 10,370. Four digits or fewer print exactly; a tie rounds to even (2.0745e4 →
        // 2.074e4, 2.0755e4 → 2.076e4).
        assert_eq!(numpy_printed_half(1_229_312), 614_500);
        assert_eq!(numpy_printed_half(20_736), 10_370);
        assert_eq!(numpy_printed_half(5_184), 2_592);
        assert_eq!(numpy_printed_half(20_745), 10_370);
        assert_eq!(numpy_printed_half(20_755), 10_380);
        assert_eq!(numpy_printed_half(99_995), 50_000);
    }

    #[test]
    fn errors_say_what_to_write() {
        let s = [1, 64, 49, 64];
        let e = build_laid(
            "relative_position_attention",
            "{head_dim: 24, size: 7}",
            &[&s],
            &part(&s),
        )
        .unwrap_err();
        assert_eq!(
            e.message,
            "a head size of 24 does not divide the 64 features of the input 1×64×49×64"
        );
        let e = build_laid(
            "relative_position_attention",
            "{head_dim: 32, size: 8}",
            &[&s],
            &part(&s),
        )
        .unwrap_err();
        assert_eq!(
            e.message,
            "a partition size of 8 makes 64 tokens per group, but the input 1×64×49×64 has 49"
        );
        // An N×C×H×W map that was not partitioned.
        let e = build_laid(
            "relative_position_attention",
            "{head_dim: 32, size: 7}",
            &[&[1, 64, 49, 49]],
            &[],
        )
        .unwrap_err();
        assert!(
            e.message.contains("has input positions there"),
            "{}",
            e.message
        );
        assert!(e.help.unwrap().contains("window_partition"));
    }
}
