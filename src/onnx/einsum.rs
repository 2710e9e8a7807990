//! ONNX `Einsum` (a child module of the reader): an equation (`bhid,bhjd->bhij`, spaces and
//! `...` allowed, the output implicit when there is no `->`) parsed and checked against its
//! operands' ranks, read as archscope layers where it is a tensor contraction they express, and
//! computed on values for constant folding and the windowed-attention probes (`fold.rs`).
//!
//! What is read:
//! - two computed operands with at least one summed index: `permute` and `reshape` each
//!   operand to `batch… × M × K` and `batch… × K × N` (the indices in both operands and the
//!   output are the batch, those of one operand and the output are M or N, those of both
//!   operands and not the output are K), one `matmul`, then `reshape` and `permute` to the
//!   output's order (a layer only where it changes something). Each operand's first index is
//!   its batch and must be the output's first; a size-1 batch index broadcasts (matmul's rule).
//!   MACs: the matmul's, the product of every index's size: FlopCounterMode's count of
//!   torch.einsum, which runs such an equation as one `bmm` (docs/ONNX.md).
//! - a computed operand and a constant matrix with one summed index: a `linear` (no bias) on
//!   the computed operand permuted so that the summed index is last, then `permute` to the
//!   output's order; the constant is its weight.
//! - one computed operand whose output is a permutation of its indices: a `permute`.
//!
//! Anything else (an index repeated in one operand, summed out of one operand only, no summed
//! index, the batch moved, sizes that disagree, more than two operands) is an error naming the
//! node, the equation and what to write instead.

use std::collections::HashMap;

use super::fold::T;
use super::{excerpt, ilist, list, Diagnostic, NodeProto, Reader, Val};

const HELP: &str = "archscope reads an Einsum that is a contraction of two computed tensors (a batched matrix product with permutes), of a computed tensor by a constant matrix, or a permutation (docs/ONNX.md \"Einsum\"); write other products as MatMul, Mul and ReduceSum, or describe the layer in YAML";

/// A parsed equation: per operand and for the output, one label per axis (`...` expanded to
/// the digits `0`–`9`, right-aligned as ONNX broadcasts them).
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Equation {
    pub inputs: Vec<Vec<char>>,
    pub output: Vec<char>,
}

/// Parses `eq` for operands of ranks `ranks`.
pub(super) fn parse(eq: &str, ranks: &[usize]) -> Result<Equation, String> {
    let s: String = eq.chars().filter(|c| !c.is_whitespace()).collect();
    let (lhs, rhs) = match s.split_once("->") {
        Some((l, r)) => (l, Some(r)),
        None => (s.as_str(), None),
    };
    let terms: Vec<&str> = lhs.split(',').collect();
    if terms.len() != ranks.len() {
        return Err(format!(
            "the equation has {} operand terms; the node has {} inputs",
            terms.len(),
            ranks.len()
        ));
    }
    // Letters of each term, and where its ellipsis is.
    let split = |t: &str| -> Result<(Vec<char>, Option<usize>), String> {
        let mut letters = Vec::new();
        let mut ell = None;
        let mut rest = t;
        while !rest.is_empty() {
            if let Some(r) = rest.strip_prefix("...") {
                if ell.is_some() {
                    return Err(format!("term `{t}` has two ellipses"));
                }
                ell = Some(letters.len());
                rest = r;
                continue;
            }
            let c = rest.chars().next().unwrap_or(' ');
            if !c.is_ascii_alphabetic() {
                return Err(format!(
                    "term `{t}` holds `{c}`: labels are the letters a–z and A–Z, and `...`"
                ));
            }
            letters.push(c);
            rest = &rest[c.len_utf8()..];
        }
        Ok((letters, ell))
    };
    let mut inputs = Vec::new();
    let mut ell_rank = 0usize;
    let mut parsed = Vec::new();
    for (t, &rank) in terms.iter().zip(ranks) {
        let (letters, ell) = split(t)?;
        let e = match ell {
            Some(_) if rank >= letters.len() => rank - letters.len(),
            None if rank == letters.len() => 0,
            _ => {
                return Err(format!(
                    "term `{t}` has {} labels for an operand of rank {rank}",
                    letters.len()
                ))
            }
        };
        if e > 10 {
            return Err(format!("term `{t}`'s ellipsis covers {e} axes; at most 10"));
        }
        ell_rank = ell_rank.max(e);
        parsed.push((letters, ell, e));
    }
    let digits: Vec<char> = ('0'..='9').collect();
    // An ellipsis of e axes takes the last e of the longest one's labels (right-aligned).
    let fill = |e: usize| digits[ell_rank - e..ell_rank].to_vec();
    for (letters, ell, e) in &parsed {
        let mut v = letters.clone();
        if let Some(at) = ell {
            v.splice(*at..*at, fill(*e));
        }
        inputs.push(v);
    }
    let output = match rhs {
        Some(r) => {
            let (letters, ell) = split(r)?;
            let mut v = letters;
            if let Some(at) = ell {
                v.splice(at..at, fill(ell_rank));
            } else if ell_rank > 0 && parsed.iter().any(|p| p.2 > 0) {
                return Err(
                    "the output has no `...` where the operands have broadcast axes".into(),
                );
            }
            for (k, c) in v.iter().enumerate() {
                if v[..k].contains(c) {
                    return Err(format!("the output repeats label `{c}`"));
                }
                if !inputs.iter().any(|t| t.contains(c)) {
                    return Err(format!("output label `{c}` is in no operand"));
                }
            }
            v
        }
        None => {
            // Implicit: the broadcast axes, then the labels used once, in alphabetical order.
            let mut v = fill(ell_rank);
            let mut once: Vec<char> = Vec::new();
            for c in inputs.iter().flatten().filter(|c| c.is_ascii_alphabetic()) {
                if inputs.iter().flatten().filter(|d| *d == c).count() == 1 {
                    once.push(*c);
                }
            }
            once.sort_unstable();
            v.extend(once);
            v
        }
    };
    Ok(Equation { inputs, output })
}

/// Each label's size (the largest: a size of 1 broadcasts), or which label disagrees.
fn sizes(eq: &Equation, dims: &[&[usize]]) -> Result<HashMap<char, usize>, String> {
    let mut s: HashMap<char, usize> = HashMap::new();
    for (t, d) in eq.inputs.iter().zip(dims) {
        for (&c, &n) in t.iter().zip(d.iter()) {
            let e = s.entry(c).or_insert(n);
            if *e != n && n != 1 && *e != 1 {
                return Err(format!("label `{c}` has sizes {} and {n}", *e));
            }
            *e = (*e).max(n);
        }
    }
    Ok(s)
}

/// The value of the Einsum of `ins` (any equation, every index summed that is not in the
/// output); at most `limit` elements made and `limit` × 1024 products.
pub(super) fn eval(eq_text: &str, ins: &[&T], limit: usize) -> Result<T, String> {
    let ranks: Vec<usize> = ins.iter().map(|t| t.dims.len()).collect();
    let eq = parse(eq_text, &ranks)?;
    let dims: Vec<&[usize]> = ins.iter().map(|t| t.dims.as_slice()).collect();
    let size = sizes(&eq, &dims)?;
    let out_dims: Vec<usize> = eq.output.iter().map(|c| size[c]).collect();
    let count = out_dims
        .iter()
        .try_fold(1usize, |a, &x| a.checked_mul(x))
        .filter(|&c| c <= limit)
        .ok_or_else(|| format!("an Einsum output of {out_dims:?}: more than the {limit} elements archscope computes"))?;
    // Every label, output ones first, then the summed ones.
    let mut all = eq.output.clone();
    for c in eq.inputs.iter().flatten() {
        if !all.contains(c) {
            all.push(*c);
        }
    }
    let extent: Vec<usize> = all.iter().map(|c| size[c]).collect();
    let work = extent.iter().try_fold(1usize, |a, &x| a.checked_mul(x));
    if work.is_none_or(|w| w > limit.saturating_mul(1024)) {
        return Err(format!(
            "an Einsum of more than the {} products archscope computes ({limit} elements × 1024)",
            limit.saturating_mul(1024)
        ));
    }
    // Per operand and label position: the stride of that label in the operand (0 where the
    // operand broadcasts it or lacks it).
    let strides: Vec<Vec<usize>> = ins
        .iter()
        .zip(&eq.inputs)
        .map(|(t, labels)| {
            let mut st = vec![0usize; all.len()];
            let mut s = 1usize;
            for (label, &d) in labels.iter().zip(&t.dims).rev() {
                let at = all.iter().position(|c| c == label).unwrap_or(0);
                if d != 1 {
                    st[at] += s;
                }
                s *= d;
            }
            st
        })
        .collect();
    let mut data = vec![0f64; count];
    let mut idx = vec![0usize; all.len()];
    let n_out = eq.output.len();
    let total: usize = extent.iter().product();
    for _ in 0..total {
        let o = extent
            .iter()
            .zip(&idx)
            .take(n_out)
            .fold(0usize, |o, (e, i)| o * e + i);
        let mut p = 1f64;
        for (t, st) in ins.iter().zip(&strides) {
            let at: usize = idx.iter().zip(st).map(|(i, s)| i * s).sum();
            p *= t.data[at];
        }
        data[o] += p;
        for k in (0..all.len()).rev() {
            idx[k] += 1;
            if idx[k] < extent[k] {
                break;
            }
            idx[k] = 0;
        }
    }
    Ok(T::new(out_dims, data, ins.iter().all(|t| t.int)))
}

/// The permutation taking `from`'s order to `to`'s (both the same labels).
fn perm(from: &[char], to: &[char]) -> Vec<i64> {
    to.iter()
        .map(|c| from.iter().position(|d| d == c).unwrap_or(0) as i64)
        .collect()
}

fn is_identity(p: &[i64]) -> bool {
    p.iter().enumerate().all(|(k, &v)| v == k as i64)
}

impl<'a> Reader<'a> {
    fn einsum_err(&self, i: usize, n: &NodeProto, eq: &str, msg: impl Into<String>) -> Diagnostic {
        self.err(i, n, format!("Einsum `{}`: {}", excerpt(eq), msg.into()))
            .help(HELP)
    }

    /// Emits a `permute` of `x` (shape `shape`) by `p` unless it is the identity; returns the
    /// new reference and shape.
    fn einsum_permute(
        &mut self,
        i: usize,
        n: &NodeProto,
        x: String,
        shape: Vec<u64>,
        p: &[i64],
    ) -> (String, Vec<u64>) {
        if is_identity(p) {
            return (x, shape);
        }
        let out: Vec<u64> = p.iter().map(|&k| shape[k as usize]).collect();
        let base = self.base(n, None, "permute");
        let id = self.emit(
            i,
            n,
            &base,
            format!("op: permute, in: {x}, dims: {}", ilist(p)),
        );
        (id, out)
    }

    /// Emits a `reshape` of `x` to `out` unless the shape is already that.
    fn einsum_reshape(
        &mut self,
        i: usize,
        n: &NodeProto,
        x: String,
        shape: Vec<u64>,
        out: Vec<u64>,
    ) -> (String, Vec<u64>) {
        if shape == out {
            return (x, shape);
        }
        let base = self.base(n, None, "reshape");
        let id = self.emit(
            i,
            n,
            &base,
            format!("op: reshape, in: {x}, shape: {}", list(&out[1..])),
        );
        (id, out)
    }

    /// Reads an `Einsum` node (see the module's documentation).
    pub(super) fn einsum(&mut self, i: usize, n: &NodeProto) -> Result<(), Diagnostic> {
        let eq_text = super::attr_s(n, "equation").unwrap_or_default();
        let mut vals = Vec::new();
        for k in 0..n.input.len() {
            vals.push(self.need(i, n, k)?.clone());
        }
        let dims_of = |v: &Val| -> Vec<u64> {
            match v {
                Val::Act { shape, .. } => shape.clone(),
                Val::Const { dims, .. } | Val::Shaped { dims } => dims.clone(),
            }
        };
        let ranks: Vec<usize> = vals.iter().map(|v| dims_of(v).len()).collect();
        let eq = parse(&eq_text, &ranks).map_err(|m| self.einsum_err(i, n, &eq_text, m))?;
        let dims: Vec<Vec<usize>> = vals
            .iter()
            .map(|v| dims_of(v).iter().map(|&d| d as usize).collect())
            .collect();
        for (t, labels) in eq.inputs.iter().enumerate() {
            for (k, c) in labels.iter().enumerate() {
                if labels[..k].contains(c) {
                    return Err(self.einsum_err(i, n, &eq_text, format!("operand {t} repeats label `{c}` (a diagonal), which archscope's layers do not take")));
                }
            }
        }
        let dref: Vec<&[usize]> = dims.iter().map(Vec::as_slice).collect();
        let size = sizes(&eq, &dref).map_err(|m| self.einsum_err(i, n, &eq_text, m))?;
        let computed: Vec<bool> = vals.iter().map(|v| matches!(v, Val::Act { .. })).collect();
        let shown = |l: &[char]| l.iter().collect::<String>();
        let out_dims: Vec<u64> = eq.output.iter().map(|c| size[c] as u64).collect();
        match (vals.len(), computed.as_slice()) {
            (1, [true]) => {
                let (x, shape) = self.act(i, n, 0)?;
                let l = &eq.inputs[0];
                if l.len() != eq.output.len() {
                    return Err(self.einsum_err(i, n, &eq_text, format!("it sums label(s) out of one operand ({} → {}), which archscope's layers do not", shown(l), shown(&eq.output))));
                }
                let p = perm(l, &eq.output);
                if p.first() != Some(&0) {
                    return Err(self.einsum_err(
                        i,
                        n,
                        &eq_text,
                        "it moves the batch (the operand's first axis)",
                    ));
                }
                let (r, s) = self.einsum_permute(i, n, x, shape, &p);
                self.set_out(n, 0, r, s);
                Ok(())
            }
            (2, [true, true]) => self.einsum_matmul(i, n, &eq_text, &eq, &size, out_dims),
            (2, [true, false]) | (2, [false, true]) => {
                let c = usize::from(computed[0]);
                self.einsum_linear(i, n, &eq_text, &eq, &size, c, out_dims)
            }
            (2, _) => Err(self.einsum_err(
                i,
                n,
                &eq_text,
                "both operands are constants that archscope does not fold here",
            )),
            (k, _) => Err(self.einsum_err(
                i,
                n,
                &eq_text,
                format!("{k} operands: archscope reads an Einsum of one or two"),
            )),
        }
    }

    /// Two computed operands: permute/reshape to a batched matrix product.
    fn einsum_matmul(
        &mut self,
        i: usize,
        n: &NodeProto,
        eq_text: &str,
        eq: &Equation,
        size: &HashMap<char, usize>,
        out_dims: Vec<u64>,
    ) -> Result<(), Diagnostic> {
        let (la, lb, lo) = (&eq.inputs[0], &eq.inputs[1], &eq.output);
        for (t, l) in [la, lb].iter().enumerate() {
            let other = if t == 0 { lb } else { la };
            if let Some(c) = l.iter().find(|c| !other.contains(c) && !lo.contains(c)) {
                return Err(self.einsum_err(i, n, eq_text, format!("label `{c}` of operand {t} is in neither the other operand nor the output: it is summed out of one operand, which archscope's matmul does not do")));
            }
        }
        let batch: Vec<char> = lo
            .iter()
            .filter(|c| la.contains(c) && lb.contains(c))
            .copied()
            .collect();
        let ms: Vec<char> = lo.iter().filter(|c| !lb.contains(c)).copied().collect();
        let ns: Vec<char> = lo.iter().filter(|c| !la.contains(c)).copied().collect();
        let ks: Vec<char> = la
            .iter()
            .filter(|c| lb.contains(c) && !lo.contains(c))
            .copied()
            .collect();
        if ks.is_empty() {
            return Err(self.einsum_err(i, n, eq_text, "no label is summed: it is an elementwise or outer product, not a contraction (write it as Mul)"));
        }
        if la.first() != lo.first() || lb.first() != lo.first() || !batch.contains(&lo[0]) {
            return Err(self.einsum_err(i, n, eq_text, format!(
                "archscope keeps the batch first: each operand's first label must be the output's first ({})",
                lo.first().map_or(String::new(), |c| format!("`{c}`"))
            )));
        }
        // Only batch labels may broadcast (size 1 in one operand).
        let (a, sa) = self.act(i, n, 0)?;
        let (b, sb) = self.act(i, n, 1)?;
        let (dims_a, dims_b) = (sa.clone(), sb.clone());
        for (l, d) in [(la, &dims_a), (lb, &dims_b)] {
            for (c, &s) in l.iter().zip(d.iter()) {
                if s as usize != size[c] && !batch.contains(c) {
                    return Err(self.einsum_err(i, n, eq_text, format!("label `{c}` has size {s} in one operand and {} in the other; only the batch labels broadcast", size[c])));
                }
            }
        }
        let prod = |l: &[char]| l.iter().map(|c| size[c] as u64).product::<u64>();
        let sized = |l: &[char], d: &[u64], from: &[char]| -> Vec<u64> {
            l.iter()
                .map(|c| d[from.iter().position(|x| x == c).unwrap_or(0)])
                .collect()
        };
        // A: batch × m × k; B: batch × k × n (the batch in the output's order).
        let order_a: Vec<char> = batch.iter().chain(&ms).chain(&ks).copied().collect();
        let order_b: Vec<char> = batch.iter().chain(&ks).chain(&ns).copied().collect();
        let (a, sa) = self.einsum_permute(i, n, a, sa, &perm(la, &order_a));
        let (b, sb) = self.einsum_permute(i, n, b, sb, &perm(lb, &order_b));
        let mut ta = sized(&batch, &dims_a, la);
        ta.extend([prod(&ms), prod(&ks)]);
        let mut tb = sized(&batch, &dims_b, lb);
        tb.extend([prod(&ks), prod(&ns)]);
        let (a, _) = self.einsum_reshape(i, n, a, sa, ta);
        let (b, _) = self.einsum_reshape(i, n, b, sb, tb);
        let mut mm: Vec<u64> = batch.iter().map(|c| size[c] as u64).collect();
        mm.extend([prod(&ms), prod(&ns)]);
        let base = self.base(n, None, "einsum");
        let id = self.emit(i, n, &base, format!("op: matmul, in: [{a}, {b}]"));
        let order_o: Vec<char> = batch.iter().chain(&ms).chain(&ns).copied().collect();
        let unflat: Vec<u64> = order_o.iter().map(|c| size[c] as u64).collect();
        let (r, s) = self.einsum_reshape(i, n, id, mm, unflat);
        let (r, s) = self.einsum_permute(i, n, r, s, &perm(&order_o, lo));
        debug_assert_eq!(s, out_dims);
        self.set_out(n, 0, r, s);
        Ok(())
    }

    /// A computed operand by a constant matrix: a linear layer.
    #[allow(clippy::too_many_arguments)]
    fn einsum_linear(
        &mut self,
        i: usize,
        n: &NodeProto,
        eq_text: &str,
        eq: &Equation,
        size: &HashMap<char, usize>,
        c: usize,
        out_dims: Vec<u64>,
    ) -> Result<(), Diagnostic> {
        let x = 1 - c;
        let (lx, lw, lo) = (&eq.inputs[x], &eq.inputs[c], &eq.output);
        let shown = |l: &[char]| l.iter().collect::<String>();
        let ks: Vec<char> = lw
            .iter()
            .filter(|d| lx.contains(d) && !lo.contains(d))
            .copied()
            .collect();
        let js: Vec<char> = lw
            .iter()
            .filter(|d| !lx.contains(d) && lo.contains(d))
            .copied()
            .collect();
        let kept: Vec<char> = lx.iter().filter(|d| !ks.contains(d)).copied().collect();
        let fits = lw.len() == 2
            && ks.len() == 1
            && js.len() == 1
            && kept.iter().all(|d| lo.contains(d))
            && lo.len() == kept.len() + 1;
        if !fits {
            return Err(self.einsum_err(i, n, eq_text, format!(
                "operand {c} is a constant ({}): archscope reads a computed tensor by a constant matrix with one summed label (a linear layer, `{}` here would be `…k,kj->…j`)",
                shown(lw), shown(lo)
            )));
        }
        let (k, j) = (ks[0], js[0]);
        if lx.first() != lo.first() || lx.first() == Some(&k) {
            return Err(self.einsum_err(i, n, eq_text, "archscope keeps the batch first: the computed operand's first label must be the output's first"));
        }
        let Some((wd, w)) = self.weight(i, n, c)? else {
            return Err(self.einsum_err(i, n, eq_text, "the constant operand is missing"));
        };
        let (kk, jj) = (size[&k] as u64, size[&j] as u64);
        // The linear layer's weight is out × in (J × K).
        let w = w.map(|w| {
            if lw[0] == k {
                super::transpose2(&w, wd[0] as usize, wd[1] as usize)
            } else {
                w
            }
        });
        let (xr, xs) = self.act(i, n, x)?;
        // The computed operand with the summed label last, the others in the output's order.
        let rest: Vec<char> = lo.iter().filter(|d| **d != j).copied().collect();
        let order_x: Vec<char> = rest.iter().chain(std::iter::once(&k)).copied().collect();
        let (xr, xs) = self.einsum_permute(i, n, xr, xs, &perm(lx, &order_x));
        let base = self.base(n, n.input.get(c).map(String::as_str), "einsum");
        let id = self.emit(
            i,
            n,
            &base,
            format!("op: linear, in: {xr}, out: {jj}, bias: false"),
        );
        self.put_weight(&id, "weight", &[jj, kk], w);
        let mut ys = xs;
        if let Some(l) = ys.last_mut() {
            *l = jj;
        }
        let order_y: Vec<char> = rest.iter().chain(std::iter::once(&j)).copied().collect();
        let p = perm(&order_y, lo);
        if p.first() != Some(&0) {
            return Err(self.einsum_err(i, n, eq_text, "archscope keeps the batch first: the output's first label must be the computed operand's"));
        }
        let (r, s) = self.einsum_permute(i, n, id, ys, &p);
        debug_assert_eq!(s, out_dims);
        self.set_out(n, 0, r, s);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_spaces_ellipses_and_implicit_outputs() {
        let e = parse("B G H I D, B G H J D -> B G H I J", &[5, 5]).unwrap();
        assert_eq!(e.output, vec!['B', 'G', 'H', 'I', 'J']);
        // `...` right-aligned: the rank-4 operand's two broadcast axes are 0 and 1, the
        // rank-3 one's only 1.
        let e = parse("...ij,...jk", &[4, 3]).unwrap();
        assert_eq!(
            e.inputs,
            vec![vec!['0', '1', 'i', 'j'], vec!['1', 'j', 'k']]
        );
        assert_eq!(e.output, vec!['0', '1', 'i', 'k']);
        assert!(parse("ij,jk", &[2])
            .unwrap_err()
            .contains("2 operand terms"));
        assert!(parse("ijk,jk->ik", &[2, 2])
            .unwrap_err()
            .contains("3 labels"));
        assert!(parse("ij,jk->iq", &[2, 2])
            .unwrap_err()
            .contains("`q` is in no operand"));
    }

    #[test]
    fn evaluates_a_contraction_by_hand() {
        // [[1, 2], [3, 4]] · [[5, 6], [7, 8]]ᵀ over j: [[1·5 + 2·6, 1·7 + 2·8], [3·5 + 4·6, 3·7 + 4·8]].
        let a = T::new(vec![2, 2], vec![1., 2., 3., 4.], false);
        let b = T::new(vec![2, 2], vec![5., 6., 7., 8.], false);
        let y = eval("ij,kj->ik", &[&a, &b], 1 << 20).unwrap();
        assert_eq!(y.data, vec![17., 23., 39., 53.]);
        // A trace sums the diagonal: 1 + 4.
        let t = eval("ii->", &[&a], 1 << 20).unwrap();
        assert_eq!((t.dims.clone(), t.data), (vec![], vec![5.]));
        assert!(eval("ij,kj->ik", &[&a, &b], 3)
            .unwrap_err()
            .contains("more than the 3"));
    }
}
