//! The library's error type. Every user-facing failure is a [`Diagnostic`]: what is wrong,
//! where (file:line:column and/or the layer path and its block instance), and what to write
//! instead. The library never prints; the CLI renders a diagnostic once, at the top. A location
//! is a [`SourceLoc`] (file:line:column) or a [`YamlPath`] into the document (`nodes[3].kernel`),
//! which `yaml::Document::locate` turns into a `SourceLoc`.

use std::fmt;
use std::sync::Arc;

/// Where something came from in the source file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceLoc {
    pub file: String,
    pub line: usize,
    pub column: usize,
}

impl fmt::Display for SourceLoc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file, self.line, self.column)
    }
}

/// A located, actionable error message.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Diagnostic {
    /// One line: what is wrong.
    pub message: String,
    /// Where in the file (filled in by the graph builder from `at`).
    pub loc: Option<SourceLoc>,
    /// The YAML path of the offending value, before it is turned into `loc`.
    pub at: Option<YamlPath>,
    /// Expanded layer path, e.g. `conv4.17.c2`.
    pub layer: Option<String>,
    /// The block instance the layer belongs to, e.g. `conv4.17 = bottleneck(mid: 256)`.
    pub instance: Option<String>,
    /// Further facts (the shapes that disagree, …).
    pub notes: Vec<String>,
    /// What to write instead.
    pub help: Option<String>,
}

impl Diagnostic {
    pub fn new(message: impl Into<String>) -> Self {
        Diagnostic {
            message: message.into(),
            ..Default::default()
        }
    }
    pub fn at(mut self, path: &YamlPath) -> Self {
        if self.at.is_none() {
            self.at = Some(path.clone());
        }
        self
    }
    pub fn help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }
    pub fn note(mut self, note: impl Into<String>) -> Self {
        self.notes.push(note.into());
        self
    }
    pub fn layer(mut self, layer: &str) -> Self {
        if self.layer.is_none() {
            self.layer = Some(layer.to_string());
        }
        self
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        line(f, &self.message)?;
        if let Some(loc) = &self.loc {
            write!(f, "\n  --> {loc}")?;
        } else if let Some(at) = &self.at {
            f.write_str("\n  --> at ")?;
            line(f, &at.to_string())?;
        }
        if let Some(layer) = &self.layer {
            write!(f, "\n   = in layer `{layer}`")?;
        }
        if let Some(inst) = &self.instance {
            f.write_str("\n   = in block instance ")?;
            line(f, inst)?;
        }
        for n in &self.notes {
            f.write_str("\n   = ")?;
            line(f, n)?;
        }
        if let Some(h) = &self.help {
            f.write_str("\n   help: ")?;
            line(f, h)?;
        }
        Ok(())
    }
}

/// The library's error: a diagnostic for bad input (the only kind there is: the library does
/// no IO).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Error(pub Box<Diagnostic>);

impl Error {
    pub fn diagnostic(&self) -> &Diagnostic {
        &self.0
    }
}

impl From<Diagnostic> for Error {
    fn from(d: Diagnostic) -> Self {
        Error(Box::new(d))
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Longest piece of user text quoted whole in a message, in characters.
pub const MAX_QUOTED_CHARS: usize = 80;
/// Longest line of a rendered [`Diagnostic`], in bytes; longer ones are cut (a safety net
/// behind [`excerpt`], for text quoted without it).
pub const MAX_MESSAGE_LINE: usize = 1024;

/// `s` as quoted in a message: whole up to [`MAX_QUOTED_CHARS`] characters, else its start and
/// `…(N bytes)`, so that a 3 MB name is never echoed whole.
pub fn excerpt(s: &str) -> String {
    match s.char_indices().nth(MAX_QUOTED_CHARS) {
        Some((i, _)) => format!("{}…({} bytes)", &s[..i], s.len()),
        None => s.to_string(),
    }
}

/// A program's message as quoted in ours: at most 20 lines, each cut like a diagnostic's.
pub fn excerpt_lines(s: &str) -> String {
    let lines: Vec<&str> = s.lines().collect();
    let mut out: Vec<String> = lines
        .iter()
        .take(20)
        .map(|l| {
            let mut end = l.len().min(MAX_MESSAGE_LINE);
            while !l.is_char_boundary(end) {
                end -= 1;
            }
            if end < l.len() {
                format!("{}…({} bytes)", &l[..end], l.len())
            } else {
                l.to_string()
            }
        })
        .collect();
    if lines.len() > 20 {
        out.push(format!("…({} more lines)", lines.len() - 20));
    }
    out.join("\n")
}

/// One line of a rendered diagnostic, cut to [`MAX_MESSAGE_LINE`] bytes.
fn line(f: &mut fmt::Formatter<'_>, s: &str) -> fmt::Result {
    if s.len() <= MAX_MESSAGE_LINE {
        return f.write_str(s);
    }
    let mut end = MAX_MESSAGE_LINE;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    write!(f, "{}…({} bytes)", &s[..end], s.len())
}

/// Levenshtein distance, for "did you mean" hints.
pub fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// Longest word [`did_you_mean`] looks for a near miss of.
const MAX_SUGGESTED_LEN: usize = 64;

/// The closest candidate to `word`, if it is close enough to be a plausible typo.
pub fn did_you_mean<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let len = word.chars().count();
    // A name this long is no typo, and comparing it would cost its length squared.
    if len > MAX_SUGGESTED_LEN {
        return None;
    }
    let limit = (len / 3).max(1) + 1;
    let mut best: Option<(usize, &str)> = None;
    for c in candidates {
        // The distance is at least the difference in length: skip hopeless (and long)
        // candidates without comparing them.
        if c.len() > 4 * MAX_SUGGESTED_LEN || c.chars().count().abs_diff(len) > limit {
            continue;
        }
        let d = edit_distance(word, c);
        if best.is_none_or(|(bd, _)| d < bd) {
            best = Some((d, c));
        }
    }
    best.filter(|(d, _)| *d <= limit).map(|(_, c)| c)
}

impl std::error::Error for Diagnostic {}

/// One step of a path into the document.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Step {
    Key(String),
    Index(usize),
}

/// A path from the document root to a value, e.g. `blocks.bottleneck.nodes[2].stride`.
/// A shared linked list from the value back to the root: a child costs one small allocation
/// whatever its depth, and cloning is a reference-count increment (every value of an
/// expanded model keeps one).
#[derive(Debug, Clone, Default)]
pub struct YamlPath(Option<Arc<PathLink>>);

#[derive(Debug)]
struct PathLink {
    parent: YamlPath,
    step: Step,
}

impl YamlPath {
    pub(crate) fn child(&self, step: Step) -> YamlPath {
        YamlPath(Some(Arc::new(PathLink {
            parent: self.clone(),
            step,
        })))
    }
    pub fn key(&self, k: &str) -> YamlPath {
        self.child(Step::Key(k.to_string()))
    }
    pub fn index(&self, i: usize) -> YamlPath {
        self.child(Step::Index(i))
    }
    /// The steps from the root, in order.
    pub fn steps(&self) -> Vec<&Step> {
        let mut out = Vec::new();
        let mut cur = self;
        while let Some(link) = &cur.0 {
            out.push(&link.step);
            cur = &link.parent;
        }
        out.reverse();
        out
    }
    /// Whether this is the document itself.
    pub fn is_root(&self) -> bool {
        self.0.is_none()
    }
}

impl PartialEq for YamlPath {
    fn eq(&self, other: &Self) -> bool {
        match (&self.0, &other.0) {
            (None, None) => true,
            (Some(a), Some(b)) => Arc::ptr_eq(a, b) || (a.step == b.step && a.parent == b.parent),
            _ => false,
        }
    }
}

impl Eq for YamlPath {}

impl std::hash::Hash for YamlPath {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        self.steps().hash(h)
    }
}

impl fmt::Display for YamlPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_root() {
            return write!(f, "(document)");
        }
        for (i, s) in self.steps().into_iter().enumerate() {
            match s {
                Step::Key(k) if i == 0 => write!(f, "{k}")?,
                Step::Key(k) => write!(f, ".{k}")?,
                Step::Index(n) => write!(f, "[{n}]")?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn suggestions() {
        assert_eq!(edit_distance("kernal", "kernel"), 1);
        assert_eq!(did_you_mean("kernal", ["kernel", "stride"]), Some("kernel"));
        assert_eq!(did_you_mean("xyz", ["kernel", "stride"]), None);
        // Long words and long candidates cost nothing: no quadratic comparison.
        let long = "a".repeat(1_000_000);
        assert_eq!(did_you_mean(&long, [long.as_str()]), None);
        assert_eq!(
            did_you_mean("kernel", [long.as_str(), "kernal"]),
            Some("kernal")
        );
    }
}
