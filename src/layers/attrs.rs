//! Typed, located access to a layer's attributes. Each getter substitutes `$` expressions (with
//! `in_ch` and friends bound), checks the type and range, records the key as used, and returns
//! an error pointing at the value. Unknown keys are reported by the graph builder afterwards.

use std::rc::Rc;

use super::{Layout, Shape};
use crate::error::Diagnostic;
use crate::expr::{substitute, Env};
use crate::yaml::{YNode, YValue, YamlPath};

/// Padding on the four sides of a 2-D input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pad4 {
    pub top: u64,
    pub left: u64,
    pub bottom: u64,
    pub right: u64,
}

impl Pad4 {
    pub fn symmetric(h: u64, w: u64) -> Pad4 {
        Pad4 {
            top: h,
            left: w,
            bottom: h,
            right: w,
        }
    }
    pub fn is_symmetric(&self) -> bool {
        self.top == self.bottom && self.left == self.right
    }
    pub fn label(&self) -> String {
        if self.is_symmetric() {
            super::pair_label([self.top, self.left])
        } else {
            format!(
                "[{},{},{},{}]",
                self.top, self.left, self.bottom, self.right
            )
        }
    }
}

/// A padding as written: explicit, or PyTorch's "same" (resolved once the kernel is known).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PaddingSpec {
    Explicit(Pad4),
    Same,
}

/// What a layer builds with when one of its attributes is left out, declared with the op
/// ([`super::OpType::defaults`], next to the builder that applies it), so that a writer
/// (`archscope convert`) leaves out a value equal to it and writes a per-axis value once.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum AttrDefault {
    Int(i64),
    /// A real number (compared as parsed: `1e-5` is `1.0e-5`, an integer `1` is `1.0`).
    Float(f64),
    Bool(bool),
    /// One word of a fixed set (`approximate: none`).
    Word(&'static str),
    /// A per-axis value: one number for every axis, or one per axis; `Some(n)`: `n` on every
    /// axis when left out, `None`: no default (`kernel`, required).
    Axes(Option<u64>),
    /// A per-axis value whose default is the value of another key (a pooling's `stride`:
    /// its `kernel`).
    AxesOf(&'static str),
    /// A convolution's padding (`n`, one per axis, `[top, left, bottom, right]`, `valid`,
    /// `same`): none when left out.
    Padding,
}

impl AttrDefault {
    /// Whether `v`, written for this key, builds the layer as leaving the key out does;
    /// `sibling` gives the layer's other attributes (for [`AttrDefault::AxesOf`]). Exact: a
    /// value is the default only when it parses to it (`padding: [0, 0]` and `valid` are
    /// `padding: 0`; `eps: 1.0e-5` is `1e-5`, `1.00001e-5` is not); anything unsure is not.
    pub fn is_default(&self, v: &YValue, sibling: impl Fn(&str) -> Option<YValue>) -> bool {
        match (*self, v) {
            (AttrDefault::Int(d), YValue::Int(i)) => *i == d,
            (AttrDefault::Float(d), YValue::Float(x)) => x.to_bits() == d.to_bits(),
            (AttrDefault::Float(d), YValue::Int(i)) => (*i as f64).to_bits() == d.to_bits(),
            (AttrDefault::Bool(d), YValue::Bool(b)) => *b == d,
            (AttrDefault::Word(d), YValue::Str(s)) => s == d,
            (AttrDefault::Axes(Some(d)), v) => {
                i64::try_from(d).is_ok_and(|d| every_axis(v) == Some(d))
            }
            (AttrDefault::Padding, YValue::Str(s)) => s == "valid",
            (AttrDefault::Padding, v) => every_axis(v) == Some(0),
            (AttrDefault::AxesOf(key), v) => match sibling(key) {
                Some(YValue::Str(k)) => matches!(v, YValue::Str(s) if *s == k),
                Some(k) => {
                    let (a, b) = (axis_values(v), axis_values(&k));
                    match (a, b) {
                        (Some(a), Some(b)) if a.len() == b.len() => a == b,
                        (Some(a), Some(b)) if b.len() == 1 => a.iter().all(|x| *x == b[0]),
                        (Some(a), Some(b)) if a.len() == 1 => b.iter().all(|x| *x == a[0]),
                        _ => false,
                    }
                }
                None => false,
            },
            _ => false,
        }
    }

    /// Whether the key takes one number for every axis (`kernel: 3` for `[3, 3]`).
    pub fn per_axis(&self) -> bool {
        matches!(
            self,
            AttrDefault::Axes(_) | AttrDefault::AxesOf(_) | AttrDefault::Padding
        )
    }
}

/// The integers of a number or a list of numbers (None for anything else).
fn axis_values(v: &YValue) -> Option<Vec<i64>> {
    match v {
        YValue::Int(i) => Some(vec![*i]),
        YValue::Seq(items) if !items.is_empty() => items
            .iter()
            .map(|x| match x.value {
                YValue::Int(i) => Some(i),
                _ => None,
            })
            .collect(),
        _ => None,
    }
}

/// The one value of a number, or of a list of equal numbers.
fn every_axis(v: &YValue) -> Option<i64> {
    let a = axis_values(v)?;
    a.iter().all(|x| *x == a[0]).then_some(a[0])
}

/// The attributes of one layer being built.
pub struct Attrs<'a> {
    pub op: &'static str,
    /// Path of the node's mapping in the document (for "missing key" errors).
    pub node_path: YamlPath,
    values: Vec<(String, YNode)>,
    env: Rc<Env>,
    /// Indices into `values` of the keys asked for.
    used: Vec<usize>,
    /// Shapes of the layer's inputs, in order.
    pub inputs: &'a [Shape],
    /// Op names of the layers producing each input.
    pub input_ops: &'a [&'static str],
    /// Layouts of the inputs, in order (set by the graph builder with
    /// [`Attrs::with_layouts`]; read through [`Attrs::input_layout`]).
    layouts: &'a [Layout],
}

impl<'a> Attrs<'a> {
    pub fn new(
        op: &'static str,
        node_path: YamlPath,
        values: Vec<(String, YNode)>,
        env: Rc<Env>,
        inputs: &'a [Shape],
        input_ops: &'a [&'static str],
    ) -> Self {
        Attrs {
            op,
            node_path,
            values,
            env,
            used: Vec::new(),
            inputs,
            input_ops,
            layouts: &[],
        }
    }

    /// The same attributes with the inputs' layouts (the graph builder's call).
    pub fn with_layouts(mut self, layouts: &'a [Layout]) -> Self {
        self.layouts = layouts;
        self
    }

    /// The layout of input `k` (what each of its dimensions means: batch, channels, spatial
    /// axes, tokens…). Where no layouts were given (a layer built alone, in unit tests), the
    /// model-input layout of that input's rank, `[Batch, Channel, Space(0), …]`.
    pub fn input_layout(&self, k: usize) -> Layout {
        match self.layouts.get(k) {
            Some(l) => l.clone(),
            None => Layout::input(self.inputs.get(k).map_or(0, |s| s.rank())),
        }
    }

    /// Keys given but never asked for.
    pub fn unused(&self) -> Vec<&(String, YNode)> {
        self.values
            .iter()
            .enumerate()
            .filter(|(i, _)| !self.used.contains(i))
            .map(|(_, kv)| kv)
            .collect()
    }

    /// The substituted value of `key`, if given.
    pub fn raw(&mut self, key: &str) -> Result<Option<YNode>, Diagnostic> {
        match self.values.iter().position(|(k, _)| k == key) {
            Some(i) => {
                self.used.push(i);
                Ok(Some(substitute(&self.values[i].1, &self.env, &[])?))
            }
            None => Ok(None),
        }
    }

    /// An error located at `key`'s value (or at the node when the key is absent).
    pub fn error(&self, key: &str, msg: impl Into<String>) -> Diagnostic {
        let path = self
            .values
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.path.clone())
            .unwrap_or_else(|| self.node_path.clone());
        Diagnostic::new(msg).at(&path)
    }

    fn missing(&self, key: &str, example: &str) -> Diagnostic {
        Diagnostic::new(format!("{} needs `{key}`", self.op))
            .at(&self.node_path)
            .help(format!("add `{key}: {example}`"))
    }

    /// An integer (any sign).
    pub fn int(&mut self, key: &str) -> Result<Option<i64>, Diagnostic> {
        match self.raw(key)? {
            None => Ok(None),
            Some(v) => int_of(&v, key).map(Some),
        }
    }

    /// A positive integer.
    pub fn positive(&mut self, key: &str) -> Result<Option<u64>, Diagnostic> {
        match self.raw(key)? {
            None => Ok(None),
            Some(v) => positive_of(&v, key).map(Some),
        }
    }

    /// A required positive integer.
    pub fn req_positive(&mut self, key: &str, example: &str) -> Result<u64, Diagnostic> {
        self.positive(key)?
            .ok_or_else(|| self.missing(key, example))
    }

    /// A non-negative integer.
    pub fn non_negative(&mut self, key: &str) -> Result<Option<u64>, Diagnostic> {
        match self.raw(key)? {
            None => Ok(None),
            Some(v) => {
                let i = int_of(&v, key)?;
                u64::try_from(i).map(Some).map_err(|_| {
                    Diagnostic::new(format!("`{key}` must be 0 or more, got {i}"))
                        .at(&v.path)
                        .help("write 0 or a positive whole number")
                })
            }
        }
    }

    /// `n` or `[h, w]`, each positive.
    pub fn pair(&mut self, key: &str) -> Result<Option<[u64; 2]>, Diagnostic> {
        let Some(v) = self.raw(key)? else {
            return Ok(None);
        };
        match &v.value {
            YValue::Seq(items) if items.len() == 2 => Ok(Some([
                positive_of(&items[0], key)?,
                positive_of(&items[1], key)?,
            ])),
            YValue::Seq(items) => Err(Diagnostic::new(format!(
                "`{key}` takes one number or [height, width]; got a list of {}",
                items.len()
            ))
            .at(&v.path)
            .help(format!("write `{key}: 3` or `{key}: [3, 3]`"))),
            _ => {
                let n = positive_of(&v, key)?;
                Ok(Some([n, n]))
            }
        }
    }

    /// A required `n` or `[h, w]`.
    pub fn req_pair(&mut self, key: &str, example: &str) -> Result<[u64; 2], Diagnostic> {
        self.pair(key)?.ok_or_else(|| self.missing(key, example))
    }

    /// `n` or `[h, w]`, each 0 or more.
    pub fn pair0(&mut self, key: &str) -> Result<Option<[u64; 2]>, Diagnostic> {
        let Some(v) = self.raw(key)? else {
            return Ok(None);
        };
        let nn = |x: &YNode| -> Result<u64, Diagnostic> {
            let i = int_of(x, key)?;
            u64::try_from(i).map_err(|_| {
                Diagnostic::new(format!("`{key}` must be 0 or more, got {i}"))
                    .at(&x.path)
                    .help("write 0 or a positive whole number")
            })
        };
        match &v.value {
            YValue::Seq(items) if items.len() == 2 => Ok(Some([nn(&items[0])?, nn(&items[1])?])),
            YValue::Seq(items) => Err(Diagnostic::new(format!(
                "`{key}` takes one number or [height, width]; got a list of {}",
                items.len()
            ))
            .at(&v.path)
            .help(format!("write `{key}: 3` or `{key}: [3, 3]`"))),
            _ => {
                let n = nn(&v)?;
                Ok(Some([n, n]))
            }
        }
    }

    /// Padding: `n`, `[h, w]`, `[top, left, bottom, right]`, `same` or `valid`.
    pub fn padding(&mut self, key: &str, allow_same: bool) -> Result<PaddingSpec, Diagnostic> {
        let Some(v) = self.raw(key)? else {
            return Ok(PaddingSpec::Explicit(Pad4::default()));
        };
        let nn = |x: &YNode| -> Result<u64, Diagnostic> {
            let i = int_of(x, key)?;
            u64::try_from(i).map_err(|_| {
                Diagnostic::new(format!("padding must be 0 or more, got {i}")).at(&x.path)
            })
        };
        match &v.value {
            YValue::Str(s) if s == "valid" => Ok(PaddingSpec::Explicit(Pad4::default())),
            YValue::Str(s) if s == "same" && allow_same => Ok(PaddingSpec::Same),
            YValue::Seq(items) if items.len() == 2 => Ok(PaddingSpec::Explicit(Pad4::symmetric(
                nn(&items[0])?,
                nn(&items[1])?,
            ))),
            YValue::Seq(items) if items.len() == 4 => Ok(PaddingSpec::Explicit(Pad4 {
                top: nn(&items[0])?,
                left: nn(&items[1])?,
                bottom: nn(&items[2])?,
                right: nn(&items[3])?,
            })),
            YValue::Int(_) => {
                let n = nn(&v)?;
                Ok(PaddingSpec::Explicit(Pad4::symmetric(n, n)))
            }
            _ => Err(Diagnostic::new(format!("`{key}: {v}` is not a padding"))
                .at(&v.path)
                .help(if allow_same {
                    "write a number, [h, w], [top, left, bottom, right], `same` or `valid`"
                } else {
                    "write a number, [h, w] or [top, left, bottom, right]"
                })),
        }
    }

    /// A boolean (`true`/`false` only).
    pub fn bool(&mut self, key: &str, default: bool) -> Result<bool, Diagnostic> {
        match self.raw(key)? {
            None => Ok(default),
            Some(v) => bool_of(&v, key),
        }
    }

    /// A real number (rates, slopes, epsilons).
    pub fn float(&mut self, key: &str, default: f64) -> Result<f64, Diagnostic> {
        match self.raw(key)? {
            None => Ok(default),
            Some(v) => match v.value {
                YValue::Float(x) if x.is_finite() => Ok(x),
                YValue::Int(i) => Ok(i as f64),
                _ => Err(Diagnostic::new(format!(
                    "`{key}` takes a number, found {} ({v})",
                    v.kind()
                ))
                .at(&v.path)),
            },
        }
    }

    /// A list of real numbers (fixed weight values).
    pub fn float_list(&mut self, key: &str) -> Result<Option<Vec<f64>>, Diagnostic> {
        let Some(v) = self.raw(key)? else {
            return Ok(None);
        };
        match &v.value {
            YValue::Seq(items) => {
                items
                    .iter()
                    .map(|x| match x.value {
                        YValue::Float(f) if f.is_finite() => Ok(f),
                        YValue::Int(i) => Ok(i as f64),
                        _ => Err(Diagnostic::new(format!("`{key}` takes numbers, found {x}"))
                            .at(&x.path)),
                    })
                    .collect::<Result<_, _>>()
                    .map(Some)
            }
            _ => Err(Diagnostic::new(format!("`{key}` takes a list of numbers")).at(&v.path)),
        }
    }

    /// One of a fixed set of words.
    pub fn choice(
        &mut self,
        key: &str,
        options: &[&'static str],
        default: &'static str,
    ) -> Result<&'static str, Diagnostic> {
        match self.raw(key)? {
            None => Ok(default),
            Some(v) => {
                let s = v.as_str().unwrap_or("");
                options.iter().copied().find(|o| *o == s).ok_or_else(|| {
                    let mut d = Diagnostic::new(format!(
                        "`{key}: {v}` is not one of {}",
                        options.join(", ")
                    ))
                    .at(&v.path);
                    if let Some(m) = crate::error::did_you_mean(s, options.iter().copied()) {
                        d = d.help(format!("did you mean `{m}`?"));
                    }
                    d
                })
            }
        }
    }

    /// A list of positive integers.
    pub fn int_list(&mut self, key: &str) -> Result<Option<Vec<u64>>, Diagnostic> {
        let Some(v) = self.raw(key)? else {
            return Ok(None);
        };
        match &v.value {
            YValue::Seq(items) => items
                .iter()
                .map(|x| positive_of(x, key))
                .collect::<Result<_, _>>()
                .map(Some),
            _ => Err(
                Diagnostic::new(format!("`{key}` takes a list of sizes, e.g. [64, 64]"))
                    .at(&v.path),
            ),
        }
    }

    /// A dimension index (negative counts from the end), resolved against `rank`.
    pub fn dim(&mut self, key: &str, default: i64, rank: usize) -> Result<usize, Diagnostic> {
        let d = self.int(key)?.unwrap_or(default);
        let r = rank as i64;
        let idx = if d < 0 { d + r } else { d };
        if idx < 0 || idx >= r {
            return Err(self.error(
                key,
                format!("`{key}: {d}` is out of range for a rank-{rank} tensor"),
            ));
        }
        Ok(idx as usize)
    }

    /// The first input (every op that uses this has arity ≥ 1, checked before building).
    pub fn input(&self) -> &Shape {
        &self.inputs[0]
    }
}

pub fn int_of(v: &YNode, key: &str) -> Result<i64, Diagnostic> {
    match &v.value {
        YValue::Int(i) => Ok(*i),
        // `{x:?}` keeps the point: `3.0`, not `3`, which would read as the integer asked for.
        YValue::Float(x) if x.is_finite() && x.fract() == 0.0 && x.abs() < 9.2e18 => Err(
            Diagnostic::new(format!("`{key}` must be an integer, found the float {x:?}"))
                .at(&v.path)
                .help(format!(
                    "write {} (no decimal point or exponent)",
                    *x as i64
                )),
        ),
        YValue::Float(x) => Err(Diagnostic::new(format!(
            "`{key}` must be an integer, found the float {x:?}"
        ))
        .at(&v.path)
        .help("sizes are whole numbers")),
        YValue::Str(s) if s.trim().parse::<f64>().is_ok() => {
            let d = Diagnostic::new(format!(
                "`{key}` must be an integer, found the string \"{s}\""
            ))
            .at(&v.path);
            // YAML reads `010`, `+8` or `1e3` as text whether quoted or not: say what to
            // write, not just "without quotes".
            Err(match s.trim().parse::<i64>() {
                Ok(n) if n.to_string() == s.as_str() => {
                    d.help(format!("write {s} without quotes"))
                }
                Ok(n) => d
                    .note("YAML reads a number with leading zeros, a `+` sign or spaces as text, quoted or not")
                    .help(format!("write {n}")),
                Err(_) => d.help("write a whole number, e.g. 64, without quotes, a decimal point or an exponent"),
            })
        }
        YValue::Bool(b) => Err(
            Diagnostic::new(format!("`{key}` must be an integer, found {b}"))
                .at(&v.path)
                .help("write a whole number"),
        ),
        YValue::Seq(items) if items.len() == 1 => Err(Diagnostic::new(format!(
            "`{key}` must be an integer, found a list ({v})"
        ))
        .at(&v.path)
        .help(format!(
            "write the number without brackets: `{key}: {}`",
            items[0]
        ))),
        _ => Err(Diagnostic::new(format!(
            "`{key}` must be an integer, found {} ({v})",
            v.kind()
        ))
        .at(&v.path)
        .help("write a whole number")),
    }
}

pub fn positive_of(v: &YNode, key: &str) -> Result<u64, Diagnostic> {
    let i = int_of(v, key)?;
    if i <= 0 {
        return Err(
            Diagnostic::new(format!("`{key}` must be at least 1, got {i}"))
                .at(&v.path)
                .help(format!(
                    "`{key}` is a size or a count: write a positive whole number"
                )),
        );
    }
    Ok(i as u64)
}

pub fn bool_of(v: &YNode, key: &str) -> Result<bool, Diagnostic> {
    match &v.value {
        YValue::Bool(b) => Ok(*b),
        YValue::Str(s)
            if matches!(
                s.as_str(),
                "yes" | "no" | "on" | "off" | "y" | "n" | "True" | "False" | "TRUE" | "FALSE"
            ) =>
        {
            Err(
                Diagnostic::new(format!("`{key}: {s}` is not a boolean in this format"))
                    .at(&v.path)
                    .help("write true or false"),
            )
        }
        _ => Err(Diagnostic::new(format!(
            "`{key}` must be true or false, found {} ({v})",
            v.kind()
        ))
        .at(&v.path)
        .help("write true or false")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::yaml::Document;

    /// The value of `x` in a one-key YAML mapping `{x: …}`, as parsed.
    fn v(text: &str) -> YValue {
        let doc = Document::parse("t.yaml", &format!("{{x: {text}}}")).unwrap();
        match doc.root.value {
            YValue::Map(m) => m[0].1.value.clone(),
            _ => unreachable!(),
        }
    }

    fn none(_: &str) -> Option<YValue> {
        None
    }

    #[test]
    fn a_default_is_what_parses_to_it() {
        let pad = AttrDefault::Padding;
        for yes in ["0", "[0, 0]", "[0, 0, 0, 0]", "valid"] {
            assert!(pad.is_default(&v(yes), none), "{yes}");
        }
        for no in ["1", "[0, 1]", "[0, 0, 1, 0]", "same"] {
            assert!(!pad.is_default(&v(no), none), "{no}");
        }
        let stride = AttrDefault::Axes(Some(1));
        assert!(stride.is_default(&v("[1, 1, 1]"), none));
        assert!(!stride.is_default(&v("[1, 2]"), none));
        assert!(!stride.is_default(&v("\"$stride\""), none));
        let eps = AttrDefault::Float(1e-5);
        assert!(eps.is_default(&v("1.0e-5"), none));
        assert!(eps.is_default(&v("0.00001"), none));
        assert!(!eps.is_default(&v("1.00001e-5"), none));
        assert!(!eps.is_default(&v("1e-3"), none));
        // An integer where a real number is read: the same value.
        assert!(AttrDefault::Float(1.0).is_default(&v("1"), none));
        assert!(!AttrDefault::Float(0.0).is_default(&v("-0.0"), none));
        assert!(AttrDefault::Bool(true).is_default(&v("true"), none));
        assert!(!AttrDefault::Bool(true).is_default(&v("false"), none));
        assert!(AttrDefault::Word("none").is_default(&v("none"), none));
        assert!(!AttrDefault::Word("none").is_default(&v("tanh"), none));
        assert!(AttrDefault::Int(1).is_default(&v("1"), none));
        assert!(!AttrDefault::Int(1).is_default(&v("-1"), none));
    }

    #[test]
    fn a_stride_like_the_kernel_is_the_default() {
        let s = AttrDefault::AxesOf("kernel");
        let k = |text: &'static str| move |key: &str| (key == "kernel").then(|| v(text));
        assert!(s.is_default(&v("2"), k("2")));
        assert!(s.is_default(&v("[2, 2]"), k("2")));
        assert!(s.is_default(&v("2"), k("[2, 2]")));
        assert!(!s.is_default(&v("2"), k("[2, 3]")));
        assert!(!s.is_default(&v("1"), k("3")));
        assert!(s.is_default(&v("\"$k\""), k("\"$k\"")));
        assert!(!s.is_default(&v("\"$s\""), k("\"$k\"")));
        assert!(!s.is_default(&v("2"), none));
    }
}
