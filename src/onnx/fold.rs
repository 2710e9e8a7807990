//! A small ONNX evaluator on f64 tensors (a child module of the reader): the value of one node
//! from its inputs' values, for the operators exporters use in shape arithmetic, masks and
//! attention (broadcasting arithmetic and comparisons, `Where`, `Shape`, `Reshape`,
//! `Transpose`, `Slice`, `Gather`, `Concat`, `Expand`, `ConstantOfShape`, `Range`,
//! `ScatterND`, `Pad`, `MatMul`, `Softmax`, reductions, …). Two uses: the reader folds a node
//! whose inputs are all constants with it (so that a subgraph depending only on constants and
//! shapes, such as the shifted-window mask `torch.onnx.export` computes at run time, becomes
//! a constant), and `swin.rs` computes a windowed-attention region of a `torch.onnx.export`
//! file on a probe input to compare it with the layer it reads it as. Integer tensors
//! (`int`) divide and cast as ONNX's integers do (truncation); float ones are computed in f64.
//! Bounded: every tensor made holds at most the caller's `limit` elements (an error
//! otherwise, before anything that size is allocated), a `MatMul` does at most 1024 × `limit`
//! multiply-adds; an operator or attribute outside this set is `Err` naming it.

use super::proto::{self, NodeProto};

/// A value: dims, elements in row-major order, and whether its element type is an integer
/// (or bool) type.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct T {
    pub dims: Vec<usize>,
    pub data: Vec<f64>,
    pub int: bool,
}

impl T {
    pub fn new(dims: Vec<usize>, data: Vec<f64>, int: bool) -> T {
        T { dims, data, int }
    }
    fn ints(&self) -> Vec<i64> {
        self.data.iter().map(|&v| v as i64).collect()
    }
}

fn numel(d: &[usize]) -> Option<usize> {
    // A tensor with a 0 among its sizes is empty, whatever its other sizes.
    if d.contains(&0) {
        return Some(0);
    }
    d.iter().try_fold(1usize, |a, &x| a.checked_mul(x))
}

fn strides(d: &[usize]) -> Vec<usize> {
    let mut s = vec![1usize; d.len()];
    for k in (0..d.len().saturating_sub(1)).rev() {
        // Saturating: a tensor with a 0 among its sizes may have others of any size (it
        // holds no element, and no stride of it is used).
        s[k] = s[k + 1].saturating_mul(d[k + 1]);
    }
    s
}

fn attr<'a>(n: &'a NodeProto, name: &str) -> Option<&'a proto::AttributeProto> {
    n.attribute.iter().find(|a| a.name.as_deref() == Some(name))
}
fn attr_i(n: &NodeProto, name: &str, default: i64) -> i64 {
    attr(n, name).and_then(|a| a.i).unwrap_or(default)
}
fn attr_ints(n: &NodeProto, name: &str) -> Option<Vec<i64>> {
    attr(n, name).map(|a| a.ints.clone())
}

/// An axis counted from the front (`Err` when outside `0..rank`).
fn axis(a: i64, rank: usize) -> Result<usize, String> {
    let r = rank as i64;
    let v = if a < 0 { a + r } else { a };
    if (0..r).contains(&v) {
        Ok(v as usize)
    } else {
        Err(format!("axis {a} of a rank-{rank} tensor"))
    }
}

/// NumPy broadcasting of several shapes (`Err` when two sizes differ and neither is 1).
fn broadcast(shapes: &[&[usize]]) -> Result<Vec<usize>, String> {
    let rank = shapes.iter().map(|s| s.len()).max().unwrap_or(0);
    let mut out = vec![1usize; rank];
    for s in shapes {
        for (k, &d) in s.iter().enumerate() {
            let o = &mut out[rank - s.len() + k];
            if *o == 1 {
                *o = d;
            } else if d != 1 && d != *o {
                return Err(format!("shapes {shapes:?} do not broadcast"));
            }
        }
    }
    Ok(out)
}

/// For each element of `out` (row-major), the index of the element of a tensor of shape `d`
/// broadcast to it.
fn bindex(d: &[usize], out: &[usize]) -> Vec<usize> {
    let total = numel(out).unwrap_or(0);
    let rank = out.len();
    let ds = strides(d);
    // Stride of each output axis in `d` (0 where broadcast).
    let mut st = vec![0usize; rank];
    for k in 0..d.len() {
        if d[k] != 1 {
            st[rank - d.len() + k] = ds[k];
        }
    }
    let os = strides(out);
    (0..total)
        .map(|i| {
            let mut r = i;
            let mut at = 0;
            for k in 0..rank {
                let q = r / os[k];
                r %= os[k];
                at += q * st[k];
            }
            at
        })
        .collect()
}

/// Element-wise `f` over broadcast inputs.
fn zip(ts: &[&T], limit: usize, f: impl Fn(&[f64]) -> f64) -> Result<Vec<f64>, String> {
    let shapes: Vec<&[usize]> = ts.iter().map(|t| t.dims.as_slice()).collect();
    let out = broadcast(&shapes)?;
    check(&out, limit)?;
    let idx: Vec<Vec<usize>> = ts.iter().map(|t| bindex(&t.dims, &out)).collect();
    let n = numel(&out).unwrap_or(0);
    let mut args = vec![0.0; ts.len()];
    Ok((0..n)
        .map(|i| {
            for (a, (t, ix)) in args.iter_mut().zip(ts.iter().zip(&idx)) {
                *a = t.data[ix[i]];
            }
            f(&args)
        })
        .collect())
}

fn check(dims: &[usize], limit: usize) -> Result<usize, String> {
    match numel(dims) {
        Some(n) if n <= limit => Ok(n),
        _ => Err(format!(
            "a tensor of shape {dims:?}: more than the {limit} elements archscope computes"
        )),
    }
}

/// Rounds to the element type: f32 for float tensors (ONNX's `float`), as is for integers.
fn f32r(v: f64) -> f64 {
    f64::from(v as f32)
}

/// Dims from a shape tensor (`Err` for a negative or huge entry).
fn sizes(t: &T) -> Result<Vec<usize>, String> {
    t.data
        .iter()
        .map(|&v| {
            if (0.0..1e15).contains(&v) {
                Ok(v as usize)
            } else {
                Err(format!("size {v}"))
            }
        })
        .collect()
}

fn transpose(t: &T, perm: &[usize]) -> T {
    let d = &t.dims;
    let out: Vec<usize> = perm.iter().map(|&p| d[p]).collect();
    let s = strides(d);
    let os = strides(&out);
    let n = t.data.len();
    let mut data = vec![0.0; n];
    for (i, v) in data.iter_mut().enumerate() {
        let mut r = i;
        let mut at = 0;
        for k in 0..out.len() {
            let q = r / os[k];
            r %= os[k];
            at += q * s[perm[k]];
        }
        *v = t.data[at];
    }
    T::new(out, data, t.int)
}

/// The value(s) of node `n` from its inputs (`None`: an absent optional input). `opset`: the
/// model's (Softmax's default axis, where inputs or attributes hold axes). Every tensor made
/// holds at most `limit` elements.
pub(super) fn eval(
    n: &NodeProto,
    ins: &[Option<&T>],
    opset: i64,
    limit: usize,
) -> Result<Vec<T>, String> {
    let op = n.op_type.as_deref().unwrap_or("");
    let get = |k: usize| -> Result<&T, String> {
        ins.get(k)
            .copied()
            .flatten()
            .ok_or_else(|| format!("`{op}` without its input {k}"))
    };
    let opt = |k: usize| ins.get(k).copied().flatten();
    let one = |t: T| -> Result<Vec<T>, String> {
        check(&t.dims, limit)?;
        Ok(vec![t])
    };
    match op {
        "Identity" | "Dropout" => one(get(0)?.clone()),
        "Constant" => {
            let a = n.attribute.first().ok_or("Constant without a value")?;
            match a.name.as_deref() {
                Some("value") => {
                    let t = a.t.as_ref().ok_or("Constant without a tensor")?;
                    let c = proto::element_count(t).ok_or("a negative dimension")?;
                    check(&[usize::try_from(c).unwrap_or(usize::MAX)], limit)?;
                    let data = proto::tensor_to_f64(t).map_err(|e| e.describe("value"))?;
                    let dims = t.dims.iter().map(|&d| d.max(0) as usize).collect();
                    one(T::new(dims, data, is_int_type(t.data_type.unwrap_or(1))))
                }
                Some("value_float") => {
                    one(T::new(vec![], vec![f64::from(a.f.unwrap_or(0.0))], false))
                }
                Some("value_int") => one(T::new(vec![], vec![a.i.unwrap_or(0) as f64], true)),
                Some("value_ints") => one(T::new(
                    vec![a.ints.len()],
                    a.ints.iter().map(|&v| v as f64).collect(),
                    true,
                )),
                Some("value_floats") => one(T::new(
                    vec![a.floats.len()],
                    a.floats.iter().map(|&v| f64::from(v)).collect(),
                    false,
                )),
                other => Err(format!("Constant with `{}`", other.unwrap_or(""))),
            }
        }
        "Shape" => {
            let d = &get(0)?.dims;
            let r = d.len() as i64;
            let fix = |v: i64| (if v < 0 { v + r } else { v }).clamp(0, r) as usize;
            let (s, e) = (fix(attr_i(n, "start", 0)), fix(attr_i(n, "end", r)));
            let data: Vec<f64> = d[s..e.max(s)].iter().map(|&x| x as f64).collect();
            one(T::new(vec![data.len()], data, true))
        }
        "Size" => one(T::new(vec![], vec![get(0)?.data.len() as f64], true)),
        // Cast to the second input's element type (known from it when it is computed too).
        "CastLike" => {
            let (x, int) = (get(0)?, ins.get(1).copied().flatten().map(|t| t.int));
            let int = int.unwrap_or(x.int);
            let data = if int {
                x.data.iter().map(|&v| v.trunc()).collect()
            } else {
                x.data.iter().map(|&v| f32r(v)).collect()
            };
            one(T::new(x.dims.clone(), data, int))
        }
        "Cast" => {
            let x = get(0)?;
            let to = attr_i(n, "to", 1) as i32;
            let data: Vec<f64> = match to {
                proto::dtype::FLOAT | proto::dtype::FLOAT16 | proto::dtype::BFLOAT16 => {
                    x.data.iter().map(|&v| f32r(v)).collect()
                }
                proto::dtype::DOUBLE => x.data.clone(),
                proto::dtype::BOOL => x
                    .data
                    .iter()
                    .map(|&v| f64::from(u8::from(v != 0.0)))
                    .collect(),
                t if is_int_type(t) => x.data.iter().map(|&v| v.trunc()).collect(),
                t => return Err(format!("Cast to ONNX type {t}")),
            };
            one(T::new(x.dims.clone(), data, is_int_type(to)))
        }
        "Reshape" => {
            let x = get(0)?;
            let t = get(1)?.ints();
            let zero_copies = attr_i(n, "allowzero", 0) == 0;
            let mut out = Vec::with_capacity(t.len());
            let mut infer = None;
            for (k, &v) in t.iter().enumerate() {
                match v {
                    0 if zero_copies => {
                        out.push(*x.dims.get(k).ok_or("Reshape copies a missing dim")?)
                    }
                    -1 if infer.is_none() => {
                        infer = Some(k);
                        out.push(1);
                    }
                    v if v >= 0 => out.push(v as usize),
                    v => return Err(format!("Reshape to {v}")),
                }
            }
            let known = numel(&out).ok_or("Reshape overflows")?;
            if let Some(k) = infer {
                if known == 0 || x.data.len() % known != 0 {
                    return Err(format!("Reshape of {:?} to {t:?}", x.dims));
                }
                out[k] = x.data.len() / known;
            }
            if numel(&out) != Some(x.data.len()) {
                return Err(format!("Reshape of {:?} to {t:?}", x.dims));
            }
            one(T::new(out, x.data.clone(), x.int))
        }
        "Flatten" => {
            let x = get(0)?;
            let a = axis(attr_i(n, "axis", 1), x.dims.len() + 1)?;
            let lead = numel(&x.dims[..a]).unwrap_or(0);
            let rest = numel(&x.dims[a..]).unwrap_or(0);
            one(T::new(vec![lead, rest], x.data.clone(), x.int))
        }
        "Squeeze" | "Unsqueeze" => {
            let x = get(0)?;
            let axes = match attr_ints(n, "axes") {
                Some(a) => a,
                None => opt(1).map(T::ints).unwrap_or_default(),
            };
            let dims = if op == "Squeeze" {
                let ax: Vec<usize> = axes
                    .iter()
                    .map(|&a| axis(a, x.dims.len()))
                    .collect::<Result<_, _>>()?;
                if let Some(&a) = ax.iter().find(|&&a| x.dims[a] != 1) {
                    return Err(format!("Squeeze of axis {a}, of size {}", x.dims[a]));
                }
                x.dims
                    .iter()
                    .enumerate()
                    .filter(|(k, &d)| {
                        !(if ax.is_empty() {
                            d == 1
                        } else {
                            ax.contains(k)
                        })
                    })
                    .map(|(_, &d)| d)
                    .collect()
            } else {
                let rank = x.dims.len() + axes.len();
                let ax: Vec<usize> = axes
                    .iter()
                    .map(|&a| axis(a, rank))
                    .collect::<Result<_, _>>()?;
                let mut it = x.dims.iter();
                (0..rank)
                    .map(|k| {
                        if ax.contains(&k) {
                            1
                        } else {
                            *it.next().unwrap_or(&1)
                        }
                    })
                    .collect()
            };
            one(T::new(dims, x.data.clone(), x.int))
        }
        "Transpose" => {
            let x = get(0)?;
            let r = x.dims.len();
            let perm: Vec<usize> = match attr_ints(n, "perm") {
                Some(p) => p.iter().map(|&a| axis(a, r)).collect::<Result<_, _>>()?,
                None => (0..r).rev().collect(),
            };
            let mut seen = perm.clone();
            seen.sort_unstable();
            if seen != (0..r).collect::<Vec<_>>() {
                return Err(format!("Transpose perm {perm:?}"));
            }
            one(transpose(x, &perm))
        }
        "Concat" => {
            let parts: Vec<&T> = ins.iter().flatten().copied().collect();
            let first = parts.first().ok_or("Concat of nothing")?;
            let a = axis(attr_i(n, "axis", 0), first.dims.len())?;
            let mut out = first.dims.clone();
            out[a] = 0;
            for p in &parts {
                if p.dims.len() != first.dims.len()
                    || p.dims
                        .iter()
                        .enumerate()
                        .any(|(k, &d)| k != a && d != first.dims[k])
                {
                    return Err(format!("Concat of {:?} and {:?}", first.dims, p.dims));
                }
                out[a] = out[a].saturating_add(p.dims[a]);
            }
            check(&out, limit)?;
            let outer = numel(&out[..a]).unwrap_or(0);
            let mut data = Vec::with_capacity(numel(&out).unwrap_or(0));
            for o in 0..outer {
                for p in &parts {
                    let chunk = numel(&p.dims[a..]).unwrap_or(0);
                    data.extend_from_slice(&p.data[o * chunk..(o + 1) * chunk]);
                }
            }
            one(T::new(out, data, first.int))
        }
        "Split" => {
            let x = get(0)?;
            let a = axis(attr_i(n, "axis", 0), x.dims.len())?;
            let len = x.dims[a];
            let parts: Vec<usize> = match attr_ints(n, "split").or_else(|| opt(1).map(T::ints)) {
                Some(v) => v.iter().map(|&s| s.max(0) as usize).collect(),
                None => {
                    let k = n.output.len().max(1);
                    let each = len.div_ceil(k);
                    (0..k)
                        .map(|i| each.min(len.saturating_sub(i * each)))
                        .collect()
                }
            };
            if parts.iter().try_fold(0usize, |a, &p| a.checked_add(p)) != Some(len) {
                return Err(format!("Split of {len} into {parts:?}"));
            }
            let mut start = 0;
            let mut outs = Vec::new();
            for p in parts {
                outs.push(slice_axis(x, a, start, p, 1));
                start += p;
            }
            Ok(outs)
        }
        "Slice" => {
            let x = get(0)?;
            let r = x.dims.len();
            let (starts, ends, axes, steps) = if opset < 10 {
                (
                    attr_ints(n, "starts").unwrap_or_default(),
                    attr_ints(n, "ends").unwrap_or_default(),
                    attr_ints(n, "axes"),
                    None,
                )
            } else {
                (
                    get(1)?.ints(),
                    get(2)?.ints(),
                    opt(3).map(T::ints),
                    opt(4).map(T::ints),
                )
            };
            let axes = axes.unwrap_or_else(|| (0..starts.len() as i64).collect());
            let mut y = x.clone();
            for (k, &ax) in axes.iter().enumerate() {
                let a = axis(ax, r)?;
                let len = y.dims[a] as i64;
                let step = steps.as_ref().and_then(|s| s.get(k).copied()).unwrap_or(1);
                if step == 0 {
                    return Err("Slice step 0".into());
                }
                let (s, e) = (
                    starts.get(k).copied().unwrap_or(0),
                    ends.get(k).copied().unwrap_or(len),
                );
                let fix =
                    |v: i64, lo: i64, hi: i64| (if v < 0 { v + len } else { v }).clamp(lo, hi);
                let (s, e) = if step > 0 {
                    (fix(s, 0, len), fix(e, 0, len))
                } else {
                    (fix(s, -1, len - 1), fix(e, -1, len - 1))
                };
                // ⌈span / |step|⌉, without overflow for any step.
                let span = if step > 0 { e - s } else { s - e }.max(0) as u64;
                let count = if span == 0 {
                    0
                } else {
                    (span - 1) / step.unsigned_abs() + 1
                };
                y = slice_axis(&y, a, s.max(0) as usize, count as usize, step);
            }
            one(y)
        }
        "Gather" => {
            let x = get(0)?;
            let idx = get(1)?;
            let a = axis(attr_i(n, "axis", 0), x.dims.len())?;
            let len = x.dims[a] as i64;
            let mut out: Vec<usize> = x.dims[..a].to_vec();
            out.extend(&idx.dims);
            out.extend(&x.dims[a + 1..]);
            check(&out, limit)?;
            let outer = numel(&x.dims[..a]).unwrap_or(0);
            let inner = numel(&x.dims[a + 1..]).unwrap_or(0);
            let mut data = Vec::with_capacity(numel(&out).unwrap_or(0));
            for o in 0..outer {
                for &v in &idx.data {
                    let k = v as i64;
                    let k = if k < 0 { k + len } else { k };
                    if !(0..len).contains(&k) {
                        return Err(format!("Gather index {v} of an axis of {len}"));
                    }
                    let at = (o * len as usize + k as usize) * inner;
                    data.extend_from_slice(&x.data[at..at + inner]);
                }
            }
            one(T::new(out, data, x.int))
        }
        "GatherND" => {
            // Each index row (its last axis, k long) picks a slice of the first k axes
            // (`batch_dims` 0 only: torch's advanced indexing as the dynamo exporter writes it).
            let x = get(0)?;
            let idx = get(1)?;
            if attr_i(n, "batch_dims", 0) != 0 {
                return Err("GatherND with batch_dims other than 0".into());
            }
            let Some((&k, rows)) = idx.dims.split_last() else {
                return Err("GatherND of a rank-0 index".into());
            };
            if k == 0 || k > x.dims.len() {
                return Err(format!(
                    "GatherND index rows of {k} on a tensor of rank {}",
                    x.dims.len()
                ));
            }
            let mut out: Vec<usize> = rows.to_vec();
            out.extend(&x.dims[k..]);
            check(&out, limit)?;
            let inner = numel(&x.dims[k..]).unwrap_or(0);
            let st = strides(&x.dims[..k]);
            let mut data = Vec::with_capacity(numel(&out).unwrap_or(0));
            for row in idx.data.chunks(k) {
                let mut at = 0usize;
                for (a, &v) in row.iter().enumerate() {
                    let len = x.dims[a] as i64;
                    let i = v as i64;
                    let i = if i < 0 { i + len } else { i };
                    if !(0..len).contains(&i) {
                        return Err(format!("GatherND index {v} of an axis of {len}"));
                    }
                    at += i as usize * st[a];
                }
                data.extend_from_slice(&x.data[at * inner..(at + 1) * inner]);
            }
            one(T::new(out, data, x.int))
        }
        "Expand" => {
            let x = get(0)?;
            let s = sizes(get(1)?)?;
            let out = broadcast(&[&x.dims, &s])?;
            check(&out, limit)?;
            let ix = bindex(&x.dims, &out);
            one(T::new(out, ix.iter().map(|&i| x.data[i]).collect(), x.int))
        }
        "Tile" => {
            let x = get(0)?;
            let reps = sizes(get(1)?)?;
            if reps.len() != x.dims.len() {
                return Err("Tile repeats of another rank".into());
            }
            let out: Vec<usize> = x
                .dims
                .iter()
                .zip(&reps)
                .map(|(d, r)| d.saturating_mul(*r))
                .collect();
            check(&out, limit)?;
            let os = strides(&out);
            let xs = strides(&x.dims);
            let total = numel(&out).unwrap_or(0);
            let data = (0..total)
                .map(|i| {
                    let mut r = i;
                    let mut at = 0;
                    for k in 0..out.len() {
                        let q = r / os[k];
                        r %= os[k];
                        at += (q % x.dims[k]) * xs[k];
                    }
                    x.data[at]
                })
                .collect();
            one(T::new(out, data, x.int))
        }
        "ConstantOfShape" => {
            let s = sizes(get(0)?)?;
            let (v, int) = match attr(n, "value").and_then(|a| a.t.as_ref()) {
                Some(t) => (
                    proto::tensor_to_f64(t)
                        .map_err(|e| e.describe("value"))?
                        .first()
                        .copied()
                        .unwrap_or(0.0),
                    is_int_type(t.data_type.unwrap_or(1)),
                ),
                None => (0.0, false),
            };
            let c = check(&s, limit)?;
            one(T::new(s, vec![v; c], int))
        }
        "Range" => {
            let (s, l, d) = (get(0)?, get(1)?, get(2)?);
            let (s0, l0, d0) = (
                *s.data.first().ok_or("Range start")?,
                *l.data.first().ok_or("Range limit")?,
                *d.data.first().ok_or("Range delta")?,
            );
            if d0 == 0.0 {
                return Err("Range with delta 0".into());
            }
            let count = ((l0 - s0) / d0).ceil().max(0.0);
            if count > limit as f64 {
                return Err(format!(
                    "a Range of {count} elements: more than the {limit} elements archscope computes"
                ));
            }
            let data = (0..count as usize).map(|k| s0 + k as f64 * d0).collect();
            one(T::new(vec![count as usize], data, s.int))
        }
        "ScatterND" => {
            let (x, idx, upd) = (get(0)?, get(1)?, get(2)?);
            if attr(n, "reduction")
                .and_then(|a| a.s.as_deref())
                .is_some_and(|s| s != b"none")
            {
                return Err("ScatterND with a reduction".into());
            }
            let q = *idx.dims.last().ok_or("ScatterND indices of rank 0")?;
            if q > x.dims.len() || q == 0 {
                return Err(format!(
                    "ScatterND indices of depth {q} into rank {}",
                    x.dims.len()
                ));
            }
            let chunk = numel(&x.dims[q..]).unwrap_or(0);
            let xs = strides(&x.dims);
            let mut data = x.data.clone();
            let rows = idx.data.len() / q;
            if rows.checked_mul(chunk) != Some(upd.data.len()) {
                return Err("ScatterND updates of another size".into());
            }
            for r in 0..rows {
                let mut at = 0;
                for (k, (&d, &stride)) in x.dims.iter().zip(&xs).take(q).enumerate() {
                    let v = idx.data[r * q + k] as i64;
                    let len = d as i64;
                    let v = if v < 0 { v + len } else { v };
                    if !(0..len).contains(&v) {
                        return Err(format!("ScatterND index {v} of an axis of {len}"));
                    }
                    at += v as usize * stride;
                }
                data[at..at + chunk].copy_from_slice(&upd.data[r * chunk..(r + 1) * chunk]);
            }
            one(T::new(x.dims.clone(), data, x.int))
        }
        "Pad" => {
            let x = get(0)?;
            let mode = attr(n, "mode")
                .and_then(|a| a.s.clone())
                .unwrap_or_else(|| b"constant".to_vec());
            if mode != b"constant" {
                return Err(format!("Pad mode `{}`", String::from_utf8_lossy(&mode)));
            }
            if opt(3).is_some() {
                return Err("Pad with axes".into());
            }
            let pads = match attr_ints(n, "pads") {
                Some(p) => p,
                None => get(1)?.ints(),
            };
            let r = x.dims.len();
            if pads.len() != 2 * r || pads.iter().any(|&p| p < 0) {
                return Err(format!("Pad {pads:?} of a rank-{r} tensor"));
            }
            let value = opt(2).and_then(|t| t.data.first().copied()).unwrap_or(0.0);
            let out: Vec<usize> = (0..r)
                .map(|k| {
                    usize::try_from(pads[k])
                        .ok()
                        .and_then(|a| x.dims[k].checked_add(a))
                        .zip(usize::try_from(pads[k + r]).ok())
                        .and_then(|(a, b)| a.checked_add(b))
                        .unwrap_or(usize::MAX)
                })
                .collect();
            let c = check(&out, limit)?;
            let mut data = vec![value; c];
            let os = strides(&out);
            let xs = strides(&x.dims);
            for (i, &v) in x.data.iter().enumerate() {
                let mut rr = i;
                let mut at = 0;
                for k in 0..r {
                    let q = rr / xs[k];
                    rr %= xs[k];
                    at += (q + pads[k] as usize) * os[k];
                }
                data[at] = v;
            }
            one(T::new(out, data, x.int))
        }
        "MatMul" => {
            let (a, b) = (get(0)?, get(1)?);
            if a.dims.len() < 2 || b.dims.len() < 2 {
                return Err("MatMul of a vector".into());
            }
            let (m, k) = (a.dims[a.dims.len() - 2], a.dims[a.dims.len() - 1]);
            let (k2, nn) = (b.dims[b.dims.len() - 2], b.dims[b.dims.len() - 1]);
            if k != k2 {
                return Err(format!("MatMul of {:?} by {:?}", a.dims, b.dims));
            }
            let lead = broadcast(&[&a.dims[..a.dims.len() - 2], &b.dims[..b.dims.len() - 2]])?;
            let mut out = lead.clone();
            out.extend([m, nn]);
            let work = check(&out, limit)?.saturating_mul(k);
            if work > limit.saturating_mul(1024) {
                return Err(format!(
                    "a MatMul of {work} multiply-adds: more than the {} archscope computes ({limit} elements × 1024)",
                    limit.saturating_mul(1024)
                ));
            }
            if m == 0 || nn == 0 {
                // No element (and the leading sizes, which may be of any size, not walked).
                return one(T::new(out, Vec::new(), a.int && b.int));
            }
            let ia = bindex(&a.dims[..a.dims.len() - 2], &lead);
            let ib = bindex(&b.dims[..b.dims.len() - 2], &lead);
            let mut data = vec![0.0; numel(&out).unwrap_or(0)];
            for (bi, (&pa, &pb)) in ia.iter().zip(&ib).enumerate() {
                let (xa, xb) = (&a.data[pa * m * k..], &b.data[pb * k * nn..]);
                let y = &mut data[bi * m * nn..(bi + 1) * m * nn];
                for i in 0..m {
                    for p in 0..k {
                        let v = xa[i * k + p];
                        if v == 0.0 {
                            continue;
                        }
                        let row = &xb[p * nn..(p + 1) * nn];
                        for (o, w) in y[i * nn..(i + 1) * nn].iter_mut().zip(row) {
                            *o += v * w;
                        }
                    }
                }
            }
            one(T::new(out, data, a.int && b.int))
        }
        "Einsum" => {
            let eq = attr(n, "equation")
                .and_then(|a| a.s.as_ref())
                .map(|s| String::from_utf8_lossy(s).into_owned())
                .unwrap_or_default();
            let ts = (0..ins.len())
                .map(get)
                .collect::<Result<Vec<&T>, String>>()?;
            one(super::einsum::eval(&eq, &ts, limit)?)
        }
        "Softmax" => {
            let x = get(0)?;
            let r = x.dims.len();
            let a = axis(attr_i(n, "axis", if opset >= 13 { -1 } else { 1 }), r)?;
            if opset < 13 && a != r - 1 {
                return Err("Softmax of opset < 13 over a non-last axis".into());
            }
            let mut t = x.clone();
            let inner = numel(&x.dims[a + 1..]).unwrap_or(0);
            let len = x.dims[a];
            let outer = numel(&x.dims[..a]).unwrap_or(0);
            for o in 0..outer {
                for i in 0..inner {
                    let at = |j: usize| (o * len + j) * inner + i;
                    let mx = (0..len)
                        .map(|j| x.data[at(j)])
                        .fold(f64::NEG_INFINITY, f64::max);
                    let s: f64 = (0..len).map(|j| (x.data[at(j)] - mx).exp()).sum();
                    for j in 0..len {
                        t.data[at(j)] = (x.data[at(j)] - mx).exp() / s;
                    }
                }
            }
            one(t)
        }
        "ReduceSum" | "ReduceMean" | "ReduceMax" | "ReduceMin" | "ReduceL2" | "ReduceSumSquare" => {
            let x = get(0)?;
            let r = x.dims.len();
            let axes = match attr_ints(n, "axes") {
                Some(a) => Some(a),
                None => opt(1).map(T::ints),
            };
            let axes: Vec<usize> = match axes {
                Some(a) if !a.is_empty() => {
                    a.iter().map(|&v| axis(v, r)).collect::<Result<_, _>>()?
                }
                _ if attr_i(n, "noop_with_empty_axes", 0) == 1 => return one(x.clone()),
                _ => (0..r).collect(),
            };
            let keep = attr_i(n, "keepdims", 1) == 1;
            let kept: Vec<usize> = (0..r)
                .map(|k| if axes.contains(&k) { 1 } else { x.dims[k] })
                .collect();
            let c = check(&kept, limit)?;
            let ix = bindex(&kept, &x.dims);
            let (init, f): (f64, fn(f64, f64) -> f64) = match op {
                "ReduceMax" => (f64::NEG_INFINITY, f64::max),
                "ReduceMin" => (f64::INFINITY, f64::min),
                "ReduceL2" | "ReduceSumSquare" => (0.0, |a, v| a + v * v),
                _ => (0.0, |a, v| a + v),
            };
            let mut acc = vec![init; c];
            for (i, &v) in x.data.iter().enumerate() {
                acc[ix[i]] = f(acc[ix[i]], v);
            }
            let count = (x.data.len() / c.max(1)) as f64;
            for v in &mut acc {
                match op {
                    "ReduceMean" => *v /= count,
                    "ReduceL2" => *v = v.sqrt(),
                    _ => {}
                }
            }
            let dims = if keep {
                kept
            } else {
                (0..r)
                    .filter(|k| !axes.contains(k))
                    .map(|k| x.dims[k])
                    .collect()
            };
            one(T::new(dims, acc, x.int))
        }
        "Clip" => {
            let x = get(0)?;
            let (lo, hi) = if opset < 11 {
                (
                    attr(n, "min")
                        .and_then(|a| a.f)
                        .map_or(f64::NEG_INFINITY, f64::from),
                    attr(n, "max")
                        .and_then(|a| a.f)
                        .map_or(f64::INFINITY, f64::from),
                )
            } else {
                (
                    opt(1)
                        .and_then(|t| t.data.first().copied())
                        .unwrap_or(f64::NEG_INFINITY),
                    opt(2)
                        .and_then(|t| t.data.first().copied())
                        .unwrap_or(f64::INFINITY),
                )
            };
            let data = x.data.iter().map(|&v| v.max(lo).min(hi)).collect();
            one(T::new(x.dims.clone(), data, x.int))
        }
        "Not" => {
            let x = get(0)?;
            one(T::new(
                x.dims.clone(),
                x.data
                    .iter()
                    .map(|&v| f64::from(u8::from(v == 0.0)))
                    .collect(),
                true,
            ))
        }
        "Neg" | "Sqrt" | "Exp" | "Log" | "Abs" | "Floor" | "Ceil" | "Reciprocal" | "Sigmoid"
        | "Relu" | "Tanh" | "Sign" | "Round" => {
            let x = get(0)?;
            let f = |v: f64| match op {
                "Neg" => -v,
                "Sqrt" => v.sqrt(),
                "Exp" => v.exp(),
                "Log" => v.ln(),
                "Abs" => v.abs(),
                "Floor" => v.floor(),
                "Ceil" => v.ceil(),
                "Reciprocal" => 1.0 / v,
                "Sigmoid" => 1.0 / (1.0 + (-v).exp()),
                "Relu" => v.max(0.0),
                "Tanh" => v.tanh(),
                "Round" => v.round_ties_even(),
                _ => {
                    if v == 0.0 {
                        0.0
                    } else {
                        v.signum()
                    }
                }
            };
            let data = x.data.iter().map(|&v| f(v)).collect();
            one(T::new(x.dims.clone(), data, x.int))
        }
        "Add" | "Sub" | "Mul" | "Div" | "Pow" | "Mod" | "Max" | "Min" | "Equal" | "Less"
        | "Greater" | "LessOrEqual" | "GreaterOrEqual" | "And" | "Or" | "Xor" => {
            let parts: Vec<&T> = ins.iter().flatten().copied().collect();
            if parts.len() == 1 && matches!(op, "Max" | "Min") {
                // The maximum of one tensor is itself (the dynamo exporter's index check).
                return one(parts[0].clone());
            }
            if parts.len() < 2 || (parts.len() > 2 && !matches!(op, "Max" | "Min")) {
                return Err(format!("`{op}` of {} inputs", parts.len()));
            }
            let int = parts[0].int;
            let fmod = attr_i(n, "fmod", 0) == 1;
            let b = |c: bool| f64::from(u8::from(c));
            let data = zip(&parts, limit, |v| {
                let (x, y) = (v[0], v[1]);
                match op {
                    "Add" => x + y,
                    "Sub" => x - y,
                    "Mul" => x * y,
                    "Div" if int => {
                        if y == 0.0 {
                            f64::NAN
                        } else {
                            (x / y).trunc()
                        }
                    }
                    "Div" => x / y,
                    "Pow" => x.powf(y),
                    "Mod" if fmod => x % y,
                    "Mod" => {
                        if y == 0.0 {
                            f64::NAN
                        } else {
                            x - (x / y).floor() * y
                        }
                    }
                    "Max" => v.iter().copied().fold(f64::NEG_INFINITY, f64::max),
                    "Min" => v.iter().copied().fold(f64::INFINITY, f64::min),
                    "Equal" => b(x == y),
                    "Less" => b(x < y),
                    "Greater" => b(x > y),
                    "LessOrEqual" => b(x <= y),
                    "GreaterOrEqual" => b(x >= y),
                    "And" => b(x != 0.0 && y != 0.0),
                    "Or" => b(x != 0.0 || y != 0.0),
                    _ => b((x != 0.0) != (y != 0.0)),
                }
            })?;
            let dims = broadcast(&parts.iter().map(|t| t.dims.as_slice()).collect::<Vec<_>>())?;
            let boolean = matches!(
                op,
                "Equal"
                    | "Less"
                    | "Greater"
                    | "LessOrEqual"
                    | "GreaterOrEqual"
                    | "And"
                    | "Or"
                    | "Xor"
            );
            let data = if int || boolean {
                data
            } else {
                data.into_iter().map(f32r).collect()
            };
            one(T::new(dims, data, int || boolean))
        }
        "Where" => {
            let (c, x, y) = (get(0)?, get(1)?, get(2)?);
            let data = zip(&[c, x, y], limit, |v| if v[0] != 0.0 { v[1] } else { v[2] })?;
            let dims = broadcast(&[&c.dims, &x.dims, &y.dims])?;
            one(T::new(dims, data, x.int))
        }
        _ => Err(format!(
            "archscope does not compute the ONNX operator `{op}`"
        )),
    }
}

/// `count` entries of axis `a` from `start` by `step` (a negative step counts down).
fn slice_axis(x: &T, a: usize, start: usize, count: usize, step: i64) -> T {
    let mut out = x.dims.clone();
    out[a] = count;
    let outer = numel(&x.dims[..a]).unwrap_or(0);
    let inner = numel(&x.dims[a + 1..]).unwrap_or(0);
    let len = x.dims[a];
    let mut data = Vec::with_capacity(outer * count * inner);
    for o in 0..outer {
        for j in 0..count {
            let k = (start as i64 + j as i64 * step) as usize;
            let at = (o * len + k) * inner;
            data.extend_from_slice(&x.data[at..at + inner]);
        }
    }
    T::new(out, data, x.int)
}

/// `SplitToSequence`'s parts (a sequence, which [`eval`] has no value for): `split` a scalar
/// (parts of that size, the last shorter), a list of sizes, or absent (one part per index,
/// the axis dropped unless `keepdims`).
pub(super) fn split_to_sequence(n: &NodeProto, ins: &[Option<&T>]) -> Result<Vec<T>, String> {
    let x = ins
        .first()
        .copied()
        .flatten()
        .ok_or("`SplitToSequence` without its input")?;
    let a = axis(attr_i(n, "axis", 0), x.dims.len())?;
    let len = x.dims[a];
    let split = ins.get(1).copied().flatten();
    let parts: Vec<usize> = match split {
        Some(t) if t.dims.is_empty() => {
            let each = t.ints().first().copied().unwrap_or(0);
            if each <= 0 {
                return Err(format!("SplitToSequence into parts of {each}"));
            }
            let each = each as usize;
            (0..len.div_ceil(each))
                .map(|i| each.min(len - i * each))
                .collect()
        }
        Some(t) => t.ints().iter().map(|&v| v.max(0) as usize).collect(),
        None => vec![1; len],
    };
    if parts.iter().try_fold(0usize, |a, &p| a.checked_add(p)) != Some(len) {
        return Err(format!("SplitToSequence of {len} into {parts:?}"));
    }
    let drop = split.is_none() && attr_i(n, "keepdims", 1) == 0;
    let mut start = 0;
    let mut outs = Vec::new();
    for p in parts {
        let mut t = slice_axis(x, a, start, p, 1);
        if drop {
            t.dims.remove(a);
        }
        outs.push(t);
        start += p;
    }
    Ok(outs)
}

/// The tensors of `g` whose element type is an integer or bool type, from the initializers',
/// graph inputs' and `Constant`s' types and each operator's rule (`Cast`'s `to`, `Shape` and
/// the comparisons make integers; `Where` takes its second input's type; the others their
/// first input's).
pub(super) fn int_tensors(g: &proto::GraphProto) -> std::collections::HashSet<String> {
    let mut ints = std::collections::HashSet::new();
    for t in &g.initializer {
        if is_int_type(t.data_type.unwrap_or(1)) {
            ints.insert(t.name.clone().unwrap_or_default());
        }
    }
    for v in &g.input {
        let ty = v.r#type.as_ref().and_then(|t| match t.value.as_ref()? {
            proto::type_proto::Value::TensorType(tt) => tt.elem_type,
            _ => None,
        });
        if ty.is_some_and(is_int_type) {
            ints.insert(v.name.clone().unwrap_or_default());
        }
    }
    for n in &g.node {
        let op = n.op_type.as_deref().unwrap_or("");
        let input_int = |k: usize| n.input.get(k).is_some_and(|x| ints.contains(x));
        let int = match op {
            "Cast" => is_int_type(attr_i(n, "to", 1) as i32),
            "Shape" | "Size" | "NonZero" | "ArgMax" | "ArgMin" | "Equal" | "Less" | "Greater"
            | "LessOrEqual" | "GreaterOrEqual" | "Not" | "And" | "Or" | "Xor" | "IsNaN" => true,
            "Constant" => n
                .attribute
                .first()
                .is_some_and(|a| match a.name.as_deref() {
                    Some("value") => {
                        a.t.as_ref()
                            .is_some_and(|t| is_int_type(t.data_type.unwrap_or(1)))
                    }
                    Some("value_int" | "value_ints") => true,
                    _ => false,
                }),
            "ConstantOfShape" => attr(n, "value")
                .and_then(|a| a.t.as_ref())
                .is_some_and(|t| is_int_type(t.data_type.unwrap_or(1))),
            "Where" | "CastLike" => input_int(1),
            _ => input_int(0),
        };
        if int {
            for y in &n.output {
                ints.insert(y.clone());
            }
        }
    }
    ints
}

/// Whether ONNX element type `t` is an integer or bool type.
pub(super) fn is_int_type(t: i32) -> bool {
    matches!(t, 2..=7 | 9 | 12 | 13)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(op: &str, attrs: Vec<proto::AttributeProto>) -> NodeProto {
        NodeProto {
            op_type: Some(op.into()),
            attribute: attrs,
            output: vec!["y".into()],
            ..Default::default()
        }
    }
    fn ints(name: &str, v: &[i64]) -> proto::AttributeProto {
        proto::AttributeProto {
            name: Some(name.into()),
            ints: v.to_vec(),
            r#type: Some(7),
            ..Default::default()
        }
    }
    fn t(dims: &[usize], data: &[f64]) -> T {
        T::new(dims.to_vec(), data.to_vec(), false)
    }
    fn i(dims: &[usize], data: &[i64]) -> T {
        T::new(
            dims.to_vec(),
            data.iter().map(|&v| v as f64).collect(),
            true,
        )
    }

    #[test]
    fn broadcasting_arithmetic_by_hand() {
        // [[1, 2, 3], [4, 5, 6]] + [10, 20, 30] = [[11, 22, 33], [14, 25, 36]].
        let a = t(&[2, 3], &[1., 2., 3., 4., 5., 6.]);
        let b = t(&[3], &[10., 20., 30.]);
        let y = eval(&node("Add", vec![]), &[Some(&a), Some(&b)], 17, 100).unwrap();
        assert_eq!(y[0], t(&[2, 3], &[11., 22., 33., 14., 25., 36.]));
        // Integer division truncates; Mod with fmod 0 takes the divisor's sign (-7 mod 3 = 2).
        let q = eval(
            &node("Div", vec![]),
            &[Some(&i(&[2], &[7, -7])), Some(&i(&[], &[2]))],
            17,
            9,
        )
        .unwrap();
        assert_eq!(q[0].data, vec![3., -3.]);
        let m = eval(
            &node("Mod", vec![]),
            &[Some(&i(&[1], &[-7])), Some(&i(&[], &[3]))],
            17,
            9,
        )
        .unwrap();
        assert_eq!(m[0].data, vec![2.]);
    }

    #[test]
    fn shapes_and_indexing_by_hand() {
        let x = t(&[2, 3], &[0., 1., 2., 3., 4., 5.]);
        let y = eval(
            &node("Transpose", vec![ints("perm", &[1, 0])]),
            &[Some(&x)],
            17,
            100,
        )
        .unwrap();
        assert_eq!(y[0], t(&[3, 2], &[0., 3., 1., 4., 2., 5.]));
        // x[:, 1:] by Slice(starts [1], ends [huge], axes [1]).
        let s = eval(
            &node("Slice", vec![]),
            &[
                Some(&x),
                Some(&i(&[1], &[1])),
                Some(&i(&[1], &[i64::MAX])),
                Some(&i(&[1], &[1])),
            ],
            17,
            100,
        )
        .unwrap();
        assert_eq!(s[0], t(&[2, 2], &[1., 2., 4., 5.]));
        // ScatterND writes row 1 of a 2×2 zero tensor.
        let z = t(&[2, 2], &[0.; 4]);
        let sc = eval(
            &node("ScatterND", vec![]),
            &[
                Some(&z),
                Some(&i(&[1, 1], &[1])),
                Some(&t(&[1, 2], &[7., 8.])),
            ],
            17,
            100,
        )
        .unwrap();
        assert_eq!(sc[0].data, vec![0., 0., 7., 8.]);
        // Gather rows [1, 0] along axis 1.
        let g = eval(
            &node(
                "Gather",
                vec![proto::AttributeProto {
                    name: Some("axis".into()),
                    i: Some(1),
                    r#type: Some(2),
                    ..Default::default()
                }],
            ),
            &[Some(&x), Some(&i(&[2], &[1, 0]))],
            17,
            100,
        )
        .unwrap();
        assert_eq!(g[0], t(&[2, 2], &[1., 0., 4., 3.]));
        // GatherND of x (2×3) by rows [[1, 2], [0, 0]] picks x[1][2] = 5 and x[0][0] = 0; by
        // rows [[1]] the whole row 1; an index past the axis is an error.
        let gnd = |idx: &T| eval(&node("GatherND", vec![]), &[Some(&x), Some(idx)], 17, 100);
        assert_eq!(
            gnd(&i(&[2, 2], &[1, 2, 0, 0])).unwrap()[0],
            t(&[2], &[5., 0.])
        );
        assert_eq!(
            gnd(&i(&[1, 1], &[1])).unwrap()[0],
            t(&[1, 3], &[3., 4., 5.])
        );
        assert_eq!(
            gnd(&i(&[1, 2], &[0, 3])).unwrap_err(),
            "GatherND index 3 of an axis of 3"
        );
        // MatMul [[0,1,2],[3,4,5]] · [[1],[1],[1]] = [[3],[12]].
        let mm = eval(
            &node("MatMul", vec![]),
            &[Some(&x), Some(&t(&[3, 1], &[1., 1., 1.]))],
            17,
            100,
        )
        .unwrap();
        assert_eq!(mm[0], t(&[2, 1], &[3., 12.]));
    }

    #[test]
    fn a_matmuls_work_is_bounded() {
        // 4×2048 by 2048×4 under a limit of 16 elements: 16 outputs, each a sum of 2,048
        // products, 32,768 multiply-adds, over 1024 × 16 = 16,384: refused before computing.
        // 4×1024 by 1024×4 is 16,384, the bound itself: computed (each output 1,024 ones).
        // From the reader's own folding (every input at most the limit) the bound is never
        // reached: work² = lead·m·n·k² · lead·m·n ≤ |a|·|b|·|out| ≤ limit³, so work ≤
        // 1024 × limit for limit 2^20; it bounds the probe (swin_traced.rs), whose weights
        // are initializers of any size.
        let ones = |r: usize, c: usize| t(&[r, c], &vec![1.0; r * c]);
        let mm = |a: &T, b: &T| eval(&node("MatMul", vec![]), &[Some(a), Some(b)], 17, 16);
        let e = mm(&ones(4, 2048), &ones(2048, 4)).unwrap_err();
        assert!(
            e.contains("a MatMul of 32768 multiply-adds: more than the 16384 archscope computes (16 elements × 1024)"),
            "{e}"
        );
        assert_eq!(
            mm(&ones(4, 1024), &ones(1024, 4)).unwrap()[0],
            t(&[4, 4], &[1024.0; 16])
        );
    }

    #[test]
    fn extreme_steps_pads_and_ranges() {
        // A step of ±2^63 takes one element (the first from the start), without overflow.
        let x = i(&[4], &[10, 11, 12, 13]);
        let slice = |s: i64, e: i64, step: i64| {
            eval(
                &node("Slice", vec![]),
                &[
                    Some(&x),
                    Some(&i(&[1], &[s])),
                    Some(&i(&[1], &[e])),
                    Some(&i(&[1], &[0])),
                    Some(&i(&[1], &[step])),
                ],
                17,
                100,
            )
            .unwrap()
            .remove(0)
        };
        assert_eq!(slice(1, 4, i64::MAX), i(&[1], &[11]));
        assert_eq!(slice(2, -5, i64::MIN), i(&[1], &[12]));
        assert_eq!(slice(0, 4, 3), i(&[2], &[10, 13]));
        // Pads whose sum overflows: refused as too large, not wrapped.
        let e = eval(
            &node("Pad", vec![]),
            &[Some(&x), Some(&i(&[2], &[i64::MAX, i64::MAX]))],
            17,
            100,
        )
        .unwrap_err();
        assert!(
            e.contains("more than the 100 elements archscope computes"),
            "{e}"
        );
        // A Range of 101 elements under a limit of 100.
        let e = eval(
            &node("Range", vec![]),
            &[
                Some(&i(&[], &[0])),
                Some(&i(&[], &[101])),
                Some(&i(&[], &[1])),
            ],
            17,
            100,
        )
        .unwrap_err();
        assert!(
            e.contains("a Range of 101 elements: more than the 100 elements archscope computes"),
            "{e}"
        );
    }

    #[test]
    fn empty_tensors_with_huge_sizes() {
        // ConstantOfShape of [0, 10^14, 10^14] holds no element, so it is within any limit,
        // while its other sizes overflow any stride or index vector: Transpose, Concat, Tile
        // and MatMul (10^14 leading matrices of 0 rows) of it make empty tensors, without an
        // overflow or an allocation of that size.
        let big = 100_000_000_000_000;
        let cos = |d: &[i64]| {
            eval(
                &node("ConstantOfShape", vec![]),
                &[Some(&i(&[d.len()], d))],
                17,
                16,
            )
            .unwrap()
            .remove(0)
        };
        let z = cos(&[0, big, big]);
        let big = big as usize;
        assert_eq!((z.dims.clone(), z.data.len()), (vec![0, big, big], 0));
        let tr = eval(
            &node("Transpose", vec![ints("perm", &[2, 1, 0])]),
            &[Some(&z)],
            17,
            16,
        )
        .unwrap()
        .remove(0);
        assert_eq!((tr.dims, tr.data.len()), (vec![big, big, 0], 0));
        let axis1 = proto::AttributeProto {
            name: Some("axis".into()),
            i: Some(1),
            r#type: Some(2),
            ..Default::default()
        };
        let cat = eval(&node("Concat", vec![axis1]), &[Some(&z), Some(&z)], 17, 16)
            .unwrap()
            .remove(0);
        assert_eq!((cat.dims, cat.data.len()), (vec![0, 2 * big, big], 0));
        let tile = eval(
            &node("Tile", vec![]),
            &[Some(&z), Some(&i(&[3], &[1, 1000, 1000]))],
            17,
            16,
        )
        .unwrap()
        .remove(0);
        assert_eq!(tile.dims, vec![0, 1000 * big, 1000 * big]);
        let a = cos(&[big as i64, 0, 5]);
        let mm = eval(
            &node("MatMul", vec![]),
            &[Some(&a), Some(&t(&[5, 3], &[0.0; 15]))],
            17,
            16,
        )
        .unwrap()
        .remove(0);
        assert_eq!((mm.dims, mm.data.len()), (vec![big, 0, 3], 0));
        // Sizes that overflow when summed, and a Squeeze of a size other than 1: refused.
        let e = eval(
            &node("Split", vec![ints("split", &[i64::MAX, i64::MAX, 4])]),
            &[Some(&i(&[2], &[1, 2]))],
            17,
            16,
        )
        .unwrap_err();
        assert!(e.starts_with("Split of 2 into"), "{e}");
        let e = eval(
            &node("Squeeze", vec![ints("axes", &[0])]),
            &[Some(&i(&[2], &[1, 2]))],
            17,
            16,
        )
        .unwrap_err();
        assert_eq!(e, "Squeeze of axis 0, of size 2");
    }

    #[test]
    fn the_limit_is_checked_before_allocating() {
        let s = i(&[2], &[1 << 20, 1 << 20]);
        let e = eval(&node("ConstantOfShape", vec![]), &[Some(&s)], 17, 1 << 20).unwrap_err();
        assert!(e.contains("more than the 1048576 elements"), "{e}");
        let e = eval(&node("Erf", vec![]), &[Some(&s)], 17, 10).unwrap_err();
        assert!(
            e.contains("does not compute the ONNX operator `Erf`"),
            "{e}"
        );
    }
}
