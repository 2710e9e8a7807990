//! Tensor layouts: what each dimension of a tensor means. A [`Layout`] gives every dimension a
//! [`Role`] — the batch, the channels (features), spatial axis `k` of the model input, input
//! spatial axes flattened into tokens, a sequence of tokens that are not input positions,
//! positions of a partitioned map (MaxViT's windows, as digits of the map's axes), or
//! something else (attention heads, a head's size, channels mixed with space). The graph
//! builder computes one per layer output at build time ([`super::Op::layouts`]; the model input
//! is `[Batch, Channel, Space(0), …]`), so that a layer can tell an `N×C×H×W` tensor from a
//! channels-last `N×H×W×C` one (`linear` refuses to mix a spatial axis, [`super::Attrs::input_layout`]),
//! receptive fields follow spatial axes through permutes and reshapes, and reports show
//! tokens as tokens. The pure rules every op shares (flatten, permute, reshape, broadcasting
//! merge) live here, each op calling the one it needs from its own `layouts`.

use std::fmt;

use super::Shape;

/// One digit of a [`Role::Part`] dimension: `(k, d, n)` is `⌊c/d⌋ mod n` of the coordinate `c`
/// along spatial axis `k` of the map (in units of the map, as for [`Role::Space`]).
pub type Digit = (u8, u64, u64);

/// What one dimension of a tensor means.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Role {
    /// The batch (always dimension 0).
    Batch,
    /// Channels or features: each unit along it sees the same input positions.
    Channel,
    /// Spatial axis `k` of the model input (0 height, 1 width of an image; 0 length of a
    /// signal; 0 depth, 1 height, 2 width of a volume), possibly strided or resampled.
    Space(u8),
    /// The listed input spatial axes flattened row-major into one axis (ViT's 196 = 14×14
    /// patch tokens: `Tokens(vec![0, 1])`).
    Tokens(Vec<u8>),
    /// A token axis whose units are not input positions: tokens after a class token is
    /// concatenated, or a language model's token ids.
    Sequence,
    /// Positions of a partitioned map (MaxViT's `window_partition`: the window index, the
    /// position inside a window): a mixed-radix number whose digits, most significant first,
    /// are [`Digit`]s of the map's spatial axes. Every unit along it is one map position;
    /// the windows of a 56×56 map cut into 8×8 windows are `Part([(0, 8, 7), (1, 8, 7)])`
    /// (`⌊y/8⌋·7 + ⌊x/8⌋`), the positions inside a window `Part([(0, 1, 8), (1, 1, 8)])`
    /// (`(y mod 8)·8 + x mod 8`).
    Part(Vec<Digit>),
    /// Anything else: attention heads, a head's size, channels merged with space, a learned
    /// tensor's axes.
    Other,
}

impl Role {
    /// Whether it is an axis of input positions (`Space`, `Tokens` or `Part`).
    pub fn is_positional(&self) -> bool {
        matches!(self, Role::Space(_) | Role::Tokens(_) | Role::Part(_))
    }

    /// The input spatial axes this dimension runs along, in row-major order (`[k]` for
    /// `Space(k)`, the list for `Tokens`, none otherwise).
    pub fn spatial_axes(&self) -> Vec<u8> {
        match self {
            Role::Space(k) => vec![*k],
            Role::Tokens(v) => v.clone(),
            Role::Part(d) => d.iter().map(|&(k, _, _)| k).collect(),
            _ => Vec::new(),
        }
    }

    /// A short name for diagrams and messages, for a model input with `spatial` spatial axes:
    /// `N`, `C`, `H`, `W`, `D`, `L`, `T(H·W)` for tokens, `S` for a sequence, `·` for other.
    pub fn letter(&self, spatial: usize) -> String {
        match self {
            Role::Batch => "N".into(),
            Role::Channel => "C".into(),
            Role::Space(k) => axis_letter(spatial, *k).into(),
            Role::Tokens(v) => format!(
                "T({})",
                v.iter()
                    .map(|k| axis_letter(spatial, *k))
                    .collect::<Vec<_>>()
                    .join("·")
            ),
            Role::Sequence => "S".into(),
            Role::Part(d) => format!("P({})", part_letters(spatial, d)),
            Role::Other => "·".into(),
        }
    }

    /// A phrase for messages: `the batch`, `the channels`, `the width (spatial axis 1)`,
    /// `tokens (height × width flattened)`, `a token sequence`, `a non-spatial axis`.
    pub fn describe(&self, spatial: usize) -> String {
        match self {
            Role::Batch => "the batch".into(),
            Role::Channel => "the channels".into(),
            Role::Space(k) => format!(
                "the {} (spatial axis {k})",
                crate::geometry::axis_name(spatial.max(1), *k as usize)
            ),
            Role::Tokens(v) => format!(
                "tokens ({} flattened)",
                v.iter()
                    .map(|k| crate::geometry::axis_name(spatial.max(1), *k as usize))
                    .collect::<Vec<_>>()
                    .join(" × ")
            ),
            Role::Sequence => "a token sequence".into(),
            Role::Part(d) => format!(
                "positions of a partitioned map ({})",
                part_letters(spatial, d)
            ),
            Role::Other => "a non-spatial axis".into(),
        }
    }
}

/// A [`Role::Part`]'s digits for messages: `H/8·W/8` (windows), `H%8·W%8` (positions in a
/// window): a divided coordinate `/d`, a coordinate modulo `n` (divisor 1) `%n`.
fn part_letters(spatial: usize, digits: &[Digit]) -> String {
    digits
        .iter()
        .map(|&(k, d, n)| {
            let l = axis_letter(spatial, k);
            if d == 1 {
                format!("{l}%{n}")
            } else {
                format!("{l}/{d}")
            }
        })
        .collect::<Vec<_>>()
        .join("·")
}

/// The letter of spatial axis `k` of a model input with `spatial` spatial axes.
fn axis_letter(spatial: usize, k: u8) -> &'static str {
    match crate::geometry::axis_name(spatial.max(1), k as usize) {
        "length" => "L",
        "depth" => "D",
        "height" => "H",
        _ => "W",
    }
}

/// The role of every dimension of a tensor, batch first.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Layout(pub Vec<Role>);

impl Layout {
    /// A model input of `rank` dimensions (batch included): `[Batch, Channel, Space(0), …]`
    /// (`[Batch, Channel]` for a flat input).
    pub fn input(rank: usize) -> Layout {
        let mut v = Vec::with_capacity(rank);
        if rank >= 1 {
            v.push(Role::Batch);
        }
        if rank >= 2 {
            v.push(Role::Channel);
        }
        for k in 0..rank.saturating_sub(2) {
            v.push(Role::Space(k as u8));
        }
        Layout(v)
    }

    /// A tensor of `rank` dimensions of which nothing is known but the batch:
    /// `[Batch, Other, …]`.
    pub fn opaque(rank: usize) -> Layout {
        let mut v = vec![Role::Other; rank];
        if let Some(first) = v.first_mut() {
            *first = Role::Batch;
        }
        Layout(v)
    }

    pub fn rank(&self) -> usize {
        self.0.len()
    }

    /// The dimension holding spatial axis `k` alone (`Space(k)`), if any.
    pub fn dim_of_space(&self, k: u8) -> Option<usize> {
        self.0.iter().position(|r| *r == Role::Space(k))
    }

    /// Whether the tensor keeps the model input's arrangement `N×C×(spatial axes in order)`,
    /// the layout every CNN layer works on.
    pub fn is_channels_first(&self) -> bool {
        self.0.len() >= 2
            && self.0[0] == Role::Batch
            && self.0[1] == Role::Channel
            && self.0[2..]
                .iter()
                .enumerate()
                .all(|(i, r)| *r == Role::Space(i as u8))
    }

    /// The layout after `torch.permute(dims)` (`dims` a permutation of `0..rank`; an index out
    /// of range gives `Other`).
    pub fn permute(&self, dims: &[usize]) -> Layout {
        Layout(
            dims.iter()
                .map(|&d| self.0.get(d).cloned().unwrap_or(Role::Other))
                .collect(),
        )
    }

    /// The layout after `flatten(start, end)` of a tensor of shape `shape`: dimensions
    /// `start..=end` merged by [`merge_roles`].
    pub fn flatten(&self, start: usize, end: usize, shape: &Shape) -> Layout {
        if start >= end || end >= self.0.len() || shape.rank() != self.0.len() {
            return self.clone();
        }
        let mut v = self.0[..start].to_vec();
        v.push(merge_roles(&self.0[start..=end], &shape.0[start..=end]));
        v.extend_from_slice(&self.0[end + 1..]);
        Layout(v)
    }

    /// The layout after a reshape (view, unflatten, squeeze, unsqueeze) from `from` to `to`
    /// (both batch first, the same number of elements). The dimensions are matched into the
    /// smallest groups whose products agree, in order: a dimension kept is one group of one
    /// and keeps its role; dimensions merged take [`merge_roles`]; a dimension split takes
    /// [`split_role`]; a size-1 dimension that appears is `Other`. The batch stays.
    pub fn reshape(&self, from: &Shape, to: &Shape) -> Layout {
        if from.rank() != self.0.len() {
            return Layout::opaque(to.rank());
        }
        let (a, b) = (&from.0, &to.0);
        let mut out: Vec<Role> = Vec::with_capacity(b.len());
        let (mut i, mut j) = (0usize, 0usize);
        while i < a.len() || j < b.len() {
            // Size-1 dimensions on either side carry no data: a new one is `Other`, a removed
            // one vanishes.
            if j < b.len() && b[j] == 1 && (i >= a.len() || a[i] != 1) {
                out.push(if j == 0 { Role::Batch } else { Role::Other });
                j += 1;
                continue;
            }
            if i < a.len() && a[i] == 1 && (j >= b.len() || b[j] != 1) {
                i += 1;
                continue;
            }
            if i >= a.len() || j >= b.len() {
                // Products disagree: nothing known about the rest.
                for _ in j..b.len() {
                    out.push(Role::Other);
                }
                break;
            }
            // One group: grow the side with the smaller product until they agree.
            let (i0, j0) = (i, j);
            let (mut pa, mut pb) = (a[i] as u128, b[j] as u128);
            i += 1;
            j += 1;
            while pa != pb {
                if pa < pb && i < a.len() {
                    pa *= a[i] as u128;
                    i += 1;
                } else if pb < pa && j < b.len() {
                    pb *= b[j] as u128;
                    j += 1;
                } else {
                    break;
                }
            }
            let (ins, outs) = (&self.0[i0..i], &b[j0..j]);
            let merged = merge_roles(ins, &a[i0..i]);
            if outs.len() == 1 {
                out.push(merged);
            } else {
                out.extend(split_role(&merged, outs));
            }
        }
        // The batch is dimension 0 whenever it is kept whole.
        if out.len() == b.len() && a.first() == b.first() && !out.is_empty() {
            out[0] = Role::Batch;
        }
        out.truncate(b.len());
        while out.len() < b.len() {
            out.push(Role::Other);
        }
        Layout(out)
    }

    /// The layout of a broadcasting merge (add, multiply) with output rank `rank`: the inputs
    /// aligned from the last dimension, as broadcasting aligns them; each dimension takes the
    /// role the inputs that know it agree on (`Other` and size-1 broadcast dimensions — a
    /// learned tensor's, a gate's — defer to the others), `Other` where they disagree.
    pub fn broadcast(inputs: &[Layout], shapes: &[Shape], rank: usize) -> Layout {
        let mut v = Vec::with_capacity(rank);
        for d in 0..rank {
            let mut role: Option<Role> = None;
            let mut fallback: Option<Role> = None;
            let mut conflict = false;
            for (l, s) in inputs.iter().zip(shapes) {
                let Some(k) = (l.rank() + d).checked_sub(rank) else {
                    continue;
                };
                let r = &l.0[k];
                let size = s.0.get(k).copied().unwrap_or(1);
                // A batch role away from dimension 0 is a learned tensor's leading axis
                // ([768, 1, 1] against N×C×H×W), which says nothing.
                let mute = *r == Role::Other || (*r == Role::Batch && d > 0);
                if mute || (size == 1 && rank > 1 && d > 0) {
                    fallback.get_or_insert_with(|| r.clone());
                    continue;
                }
                match &role {
                    None => role = Some(r.clone()),
                    Some(x) if x == r => {}
                    Some(_) => conflict = true,
                }
            }
            v.push(if conflict {
                Role::Other
            } else {
                role.or(fallback).unwrap_or(Role::Other)
            });
        }
        if let Some(first) = v.first_mut() {
            *first = Role::Batch;
        }
        Layout(v)
    }

    /// The layout of a concatenation along `dim` (all inputs of one rank): outside `dim`, as
    /// [`Layout::broadcast`]; along it, the role the inputs share (channels with channels, a
    /// spatial axis with itself), or — when tokens or a sequence meet something else (a class
    /// token, a learned tensor) — a [`Role::Sequence`], whose units are no longer all input
    /// positions; anything else mixed is `Other`.
    pub fn concat(inputs: &[Layout], shapes: &[Shape], dim: usize) -> Layout {
        let rank = inputs.first().map_or(0, |l| l.rank());
        let mut out = Layout::broadcast(inputs, shapes, rank);
        let along: Vec<&Role> = inputs.iter().filter_map(|l| l.0.get(dim)).collect();
        if let (Some(first), Some(slot)) = (along.first(), out.0.get_mut(dim)) {
            *slot = if along.iter().all(|r| r == first) {
                (*first).clone()
            } else if along
                .iter()
                .any(|r| matches!(r, Role::Tokens(_) | Role::Sequence))
            {
                Role::Sequence
            } else {
                Role::Other
            };
        }
        out
    }

    /// `N×C×H×W`, `N×T(H·W)×C`, `N×H×W×C`: the letters of [`Role::letter`].
    pub fn letters(&self, spatial: usize) -> String {
        self.0
            .iter()
            .map(|r| r.letter(spatial))
            .collect::<Vec<_>>()
            .join("×")
    }

    /// The number of spatial axes of the model input these roles refer to, at least: one more
    /// than the largest axis named (0 when none is).
    pub fn spatial_hint(&self) -> usize {
        self.0
            .iter()
            .flat_map(|r| r.spatial_axes())
            .map(|k| k as usize + 1)
            .max()
            .unwrap_or(0)
    }
}

impl fmt::Display for Layout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.letters(self.spatial_hint()))
    }
}

/// The role of dimensions merged into one (flatten, reshape), with their sizes. Spatial axes
/// of size 1 carry no position and are left out (a globally pooled `C×1×1` flattens to
/// channels; a one-channel image `1×H×W` still flattens to channels mixed with space); of the
/// rest: one dimension keeps its role; spatial axes and tokens become tokens over their
/// axes in order (row-major: `H, W` → `Tokens([0, 1])`); channels with channels stay channels;
/// sequences with sequences stay a sequence; anything mixed (channels with space, the batch
/// with anything) is `Other`.
pub fn merge_roles(roles: &[Role], sizes: &[u64]) -> Role {
    let kept: Vec<&Role> = roles
        .iter()
        .zip(sizes.iter().chain(std::iter::repeat(&2)))
        .filter(|(r, &s)| s != 1 || !r.is_positional())
        .map(|(r, _)| r)
        .collect();
    let kept: Vec<&Role> = if kept.is_empty() {
        // All of size 1: the first meaningful role (a 1×1 map of channels is channels).
        roles.iter().take(1).collect()
    } else {
        kept
    };
    match kept.as_slice() {
        [] => Role::Other,
        [one] => (*one).clone(),
        many => {
            if many.iter().any(|r| matches!(r, Role::Part(_))) {
                // Partitioned positions merged row-major: their digits in order (a spatial
                // axis of `n` units is the digit `(k, 1, n)`); anything else mixed is `Other`.
                let mut digits = Vec::new();
                for (i, r) in roles.iter().enumerate() {
                    let n = sizes.get(i).copied().unwrap_or(2);
                    match r {
                        Role::Part(d) => digits.extend_from_slice(d),
                        Role::Space(k) if n > 1 => digits.push((*k, 1, n)),
                        _ if n == 1 => {}
                        _ => return Role::Other,
                    }
                }
                Role::Part(digits)
            } else if many.iter().all(|r| r.is_positional()) {
                Role::Tokens(many.iter().flat_map(|r| r.spatial_axes()).collect())
            } else if many.iter().all(|r| **r == Role::Channel) {
                Role::Channel
            } else if many.iter().all(|r| **r == Role::Sequence) {
                Role::Sequence
            } else {
                Role::Other
            }
        }
    }
}

/// The roles of one dimension split into dimensions of sizes `sizes` (reshape, unflatten):
/// tokens over `k` axes split into `k` dimensions (of more than one unit each, size-1 ones
/// `Other`) become those spatial axes again, in order (this assumes the split restores the
/// sizes that were flattened, which a row-major flatten followed by its inverse does);
/// channels split into channel groups are `Other` (heads × head size); everything else is
/// `Other`.
pub fn split_role(role: &Role, sizes: &[u64]) -> Vec<Role> {
    let big: Vec<usize> = (0..sizes.len()).filter(|&i| sizes[i] != 1).collect();
    let mut out = vec![Role::Other; sizes.len()];
    match role {
        Role::Tokens(axes) if axes.len() == big.len() => {
            for (i, &k) in big.iter().zip(axes) {
                out[*i] = Role::Space(k);
            }
        }
        r if big.len() == 1 => out[big[0]] = r.clone(),
        Role::Part(digits) => {
            // Consecutive digits whose counts multiply out to each dimension's size.
            let mut at = 0;
            for &i in &big {
                let (mut prod, from) = (1u64, at);
                while prod < sizes[i] && at < digits.len() {
                    prod = prod.saturating_mul(digits[at].2);
                    at += 1;
                }
                if prod != sizes[i] {
                    return vec![Role::Other; sizes.len()];
                }
                out[i] = Role::Part(digits[from..at].to_vec());
            }
        }
        _ => {}
    }
    out
}

/// The default layout rule ([`super::Op::layouts`]): a model input (no inputs) is
/// [`Layout::input`]; an output of the same rank as input 0 has input 0's layout (element-wise
/// ops, convolutions, pooling — global pooling keeps `N×C×1×1` —, norms, splits); an output of
/// another rank is [`Layout::opaque`] (an op that changes the rank knows better and says so).
pub fn default_layouts(inputs: &[Layout], out_shapes: &[Shape]) -> Vec<Layout> {
    out_shapes
        .iter()
        .map(|s| match inputs.first() {
            None => Layout::input(s.rank()),
            Some(l) if l.rank() == s.rank() => l.clone(),
            Some(_) => Layout::opaque(s.rank()),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use Role::*;

    fn s(v: &[u64]) -> Shape {
        Shape(v.to_vec())
    }

    #[test]
    fn vit_patch_tokens() {
        // conv 16×16/16 on 3×224×224 gives N×768×14×14; flatten(2) gives N×768×196 whose last
        // axis is the 14×14 grid row-major; transpose(1, 2) puts the tokens first.
        let l = Layout::input(4);
        assert_eq!(l.letters(2), "N×C×H×W");
        let f = l.flatten(2, 3, &s(&[1, 768, 14, 14]));
        assert_eq!(f, Layout(vec![Batch, Channel, Tokens(vec![0, 1])]));
        let t = f.permute(&[0, 2, 1]);
        assert_eq!(t.letters(2), "N×T(H·W)×C");
        // The class token concatenated along the tokens is not an input position; `Sequence`
        // comes from concat's rule, not from here.
    }

    #[test]
    fn cnn_head_flatten() {
        // Global pooling keeps N×512×1×1; flatten(1) of it is channels, of N×512×7×7 mixed.
        let l = Layout::input(4);
        assert_eq!(
            l.flatten(1, 3, &s(&[1, 512, 1, 1])),
            Layout(vec![Batch, Channel])
        );
        assert_eq!(
            l.flatten(1, 3, &s(&[1, 512, 7, 7])),
            Layout(vec![Batch, Other])
        );
    }

    #[test]
    fn one_channel_image_flattens_to_features() {
        // An MLP on a 1×28×28 image: channels (even one) with space, not tokens.
        let l = Layout::input(4);
        assert_eq!(
            l.flatten(1, 3, &s(&[1, 1, 28, 28])),
            Layout(vec![Batch, Other])
        );
    }

    #[test]
    fn reshape_groups() {
        // Attention: N×197×768 viewed as N×197×12×64 (heads × head size) and back.
        let l = Layout(vec![Batch, Sequence, Channel]);
        let h = l.reshape(&s(&[2, 197, 768]), &s(&[2, 197, 12, 64]));
        assert_eq!(h, Layout(vec![Batch, Sequence, Other, Other]));
        let back = h.reshape(&s(&[2, 197, 12, 64]), &s(&[2, 197, 768]));
        assert_eq!(back, Layout(vec![Batch, Sequence, Other]));
        // Tokens of a 14×14 grid unflattened into 14×14 are the two spatial axes again.
        let t = Layout(vec![Batch, Tokens(vec![0, 1]), Channel]);
        let g = t.reshape(&s(&[1, 196, 768]), &s(&[1, 14, 14, 768]));
        assert_eq!(g, Layout(vec![Batch, Space(0), Space(1), Channel]));
        // Unsqueeze: a new size-1 dimension is Other; squeezing it again restores the rest.
        let u = t.reshape(&s(&[1, 196, 768]), &s(&[1, 1, 196, 768]));
        assert_eq!(u, Layout(vec![Batch, Other, Tokens(vec![0, 1]), Channel]));
        assert_eq!(u.reshape(&s(&[1, 1, 196, 768]), &s(&[1, 196, 768])), t);
        // Batch 1: dimension 0 is still the batch.
        let b = Layout::input(4).reshape(&s(&[1, 8, 4, 4]), &s(&[1, 8, 16]));
        assert_eq!(b, Layout(vec![Batch, Channel, Tokens(vec![0, 1])]));
    }

    #[test]
    fn broadcast_merges() {
        // Position embedding [1, 197, 768] (a learned tensor: Other) added to the tokens.
        let x = Layout(vec![Batch, Sequence, Channel]);
        let p = Layout::opaque(3);
        let out = Layout::broadcast(
            &[p.clone(), x.clone()],
            &[s(&[1, 197, 768]), s(&[2, 197, 768])],
            3,
        );
        assert_eq!(out, x);
        // Layer scale [768, 1, 1] times N×768×14×14 (aligned from the end).
        let ls = Layout(vec![Batch, Other, Other]);
        let y = Layout::input(4);
        let out = Layout::broadcast(
            &[ls, y.clone()],
            &[s(&[768, 1, 1]), s(&[2, 768, 14, 14])],
            4,
        );
        assert_eq!(out, y);
        // Disagreeing roles: Other.
        let a = Layout(vec![Batch, Channel, Space(0), Space(1)]);
        let b = Layout(vec![Batch, Space(0), Space(1), Channel]);
        let out = Layout::broadcast(&[a, b], &[s(&[1, 8, 8, 8]), s(&[1, 8, 8, 8])], 4);
        assert_eq!(out, Layout(vec![Batch, Other, Other, Other]));
    }

    #[test]
    fn partitioned_positions() {
        // A 56×56 map cut into 8×8 windows: windows ⌊y/8⌋·7 + ⌊x/8⌋, positions
        // (y mod 8)·8 + x mod 8.
        let g = Part(vec![(0, 8, 7), (1, 8, 7)]);
        let p = Part(vec![(0, 1, 8), (1, 1, 8)]);
        let l = Layout(vec![Batch, g.clone(), p.clone(), Channel]);
        assert_eq!(l.letters(2), "N×P(H/8·W/8)×P(H%8·W%8)×C");
        assert!(g.is_positional());
        assert_eq!(g.spatial_axes(), vec![0, 1]);
        // Flattened row-major, the digits follow one another; split again, each dimension
        // takes the digits whose counts multiply out to its size.
        let f = l.flatten(1, 2, &s(&[1, 49, 64, 32]));
        assert_eq!(
            f,
            Layout(vec![
                Batch,
                Part(vec![(0, 8, 7), (1, 8, 7), (0, 1, 8), (1, 1, 8)]),
                Channel
            ])
        );
        assert_eq!(f.reshape(&s(&[1, 3136, 32]), &s(&[1, 49, 64, 32])), l);
        // A split that cuts a digit: nothing known.
        assert_eq!(
            f.reshape(&s(&[1, 3136, 32]), &s(&[1, 98, 32, 32])),
            Layout(vec![Batch, Other, Other, Channel])
        );
        // With channels: mixed, `Other`.
        assert_eq!(
            l.flatten(2, 3, &s(&[1, 49, 64, 32])),
            Layout(vec![Batch, g, Other])
        );
    }

    #[test]
    fn class_token_concat() {
        // A class token [1, 1, 768] expanded to N×1×768 (Other) before N×196×768 tokens.
        let cls = Layout::opaque(3);
        let tok = Layout(vec![Batch, Tokens(vec![0, 1]), Channel]);
        let out = Layout::concat(&[cls, tok], &[s(&[2, 1, 768]), s(&[2, 196, 768])], 1);
        assert_eq!(out, Layout(vec![Batch, Sequence, Channel]));
        // Channels with channels (a DenseNet concat) stay the input layout.
        let x = Layout::input(4);
        let out = Layout::concat(
            &[x.clone(), x.clone()],
            &[s(&[1, 8, 4, 4]), s(&[1, 16, 4, 4])],
            1,
        );
        assert_eq!(out, x);
    }

    #[test]
    fn names() {
        assert_eq!(Layout::input(3).letters(1), "N×C×L");
        assert_eq!(Layout::input(5).letters(3), "N×C×D×H×W");
        assert_eq!(Space(1).describe(2), "the width (spatial axis 1)");
        assert_eq!(
            Tokens(vec![0, 1]).describe(2),
            "tokens (height × width flattened)"
        );
        assert_eq!(Layout::input(2).to_string(), "N×C");
        assert!(Layout::input(4).is_channels_first());
        assert!(!Layout::input(4).permute(&[0, 2, 3, 1]).is_channels_first());
    }
}
