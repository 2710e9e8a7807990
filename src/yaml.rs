//! The one module that touches `serde_yaml`. It parses a document into a plain tree of
//! [`YNode`]s, each knowing its [`YamlPath`] (`nodes[3].kernel`), rejects the YAML features the
//! format forbids (anchors, aliases, merge keys, tags, several documents), and turns a path back
//! into file:line:column on demand by re-reading the text with a seeking deserializer whose
//! deliberate error carries the parser's position. Nothing here knows about layers.
//!
//! Untrusted text is bounded before and while it is parsed: its size, its characters and line
//! breaks, and its flow nesting are checked by a scan that runs before libyaml sees it; the
//! tree is built straight from serde_yaml's events, checking nesting, duplicate keys (reported
//! where the second one is), integers beyond 64 bits and a value budget that an alias would
//! exceed. See docs/FORMAT.md, "Limits".

use std::cell::{Cell, RefCell};
use std::collections::HashSet;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use crate::error::{Diagnostic, SourceLoc};
pub use crate::error::{Step, YamlPath};

/// A YAML value, as the format sees it.
#[derive(Debug, Clone, PartialEq)]
pub enum YValue {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Seq(Vec<YNode>),
    Map(Vec<(String, YNode)>),
}

/// A value with the path it was found at.
#[derive(Debug, Clone, PartialEq)]
pub struct YNode {
    pub value: YValue,
    pub path: YamlPath,
}

impl YNode {
    /// A node made by the program (e.g. a default), located where `path` says.
    pub fn synthetic(value: YValue, path: YamlPath) -> YNode {
        YNode { value, path }
    }
    pub fn kind(&self) -> &'static str {
        match &self.value {
            YValue::Null => "null",
            YValue::Bool(_) => "a boolean",
            YValue::Int(_) => "an integer",
            YValue::Float(_) => "a float",
            YValue::Str(_) => "a string",
            YValue::Seq(_) => "a list",
            YValue::Map(_) => "a mapping",
        }
    }
    pub fn get(&self, key: &str) -> Option<&YNode> {
        match &self.value {
            YValue::Map(m) => m.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }
    /// Values in this node, itself included (lists and mappings counted with their contents).
    pub fn size(&self) -> usize {
        1 + match &self.value {
            YValue::Seq(v) => v.iter().map(YNode::size).sum(),
            YValue::Map(m) => m.iter().map(|(_, x)| x.size()).sum(),
            _ => 0,
        }
    }
    pub fn as_str(&self) -> Option<&str> {
        match &self.value {
            YValue::Str(s) => Some(s),
            _ => None,
        }
    }
}

impl fmt::Display for YNode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.value {
            YValue::Null => write!(f, "null"),
            YValue::Bool(b) => write!(f, "{b}"),
            YValue::Int(i) => write!(f, "{i}"),
            YValue::Float(x) => write!(f, "{x}"),
            YValue::Str(s) => f.write_str(&crate::error::excerpt(s)),
            YValue::Seq(v) => {
                write!(f, "[")?;
                for (i, x) in v.iter().enumerate() {
                    if i > 0 {
                        write!(f, ", ")?;
                    }
                    write!(f, "{x}")?;
                }
                write!(f, "]")
            }
            YValue::Map(m) => {
                write!(f, "{{")?;
                for (i, (k, x)) in m.iter().enumerate() {
                    if i > 0 {
                        write!(f, ", ")?;
                    }
                    write!(f, "{k}: {x}")?;
                }
                write!(f, "}}")
            }
        }
    }
}

/// A parsed source file: its name, its text and its tree.
#[derive(Debug, Clone)]
pub struct Document {
    pub file: String,
    pub text: String,
    pub root: YNode,
}

/// Largest source accepted, in bytes (a hand-written architecture is a few KiB; the largest
/// in the zoo is 6 KiB).
pub const MAX_SOURCE_BYTES: usize = 4 << 20;
/// Deepest nesting of lists and mappings accepted.
pub const MAX_NESTING: usize = 64;

impl Document {
    /// Parses `text` (named `file` in messages).
    pub fn parse(file: &str, text: &str) -> Result<Document, Diagnostic> {
        let loc = |line: usize, column: usize| SourceLoc {
            file: file.to_string(),
            line,
            column,
        };
        if text.len() > MAX_SOURCE_BYTES {
            let mut d = Diagnostic::new(format!(
                "the file is {} bytes; archscope reads architecture files of at most {} bytes ({} MiB)",
                text.len(),
                MAX_SOURCE_BYTES,
                MAX_SOURCE_BYTES >> 20
            ))
            .help("describe repeated structure with a block and `repeat: N` instead of writing it out");
            d.loc = Some(loc(1, 1));
            return Err(d);
        }
        if text.trim().is_empty() {
            let mut d = Diagnostic::new("the file is empty").help(
                "an architecture file needs at least `inputs:` and `nodes:`; see docs/FORMAT.md",
            );
            d.loc = Some(loc(1, 1));
            return Err(d);
        }
        lexical_checks(text).map_err(|(line, col, msg, help)| {
            let mut d = Diagnostic::new(msg).help(help);
            d.loc = Some(loc(line, col));
            d
        })?;
        let ctx = Build {
            nodes: Cell::new(0),
            // Every value takes at least one byte of text (`-` and its implicit null two
            // values for one byte): more values than that can only come from aliases.
            budget: 2 * text.len() + 2,
            failure: RefCell::new(None),
        };
        let seed = NodeSeed {
            ctx: &ctx,
            path: YamlPath::default(),
            depth: 0,
        };
        let root = seed
            .deserialize(serde_yaml::Deserializer::from_str(text))
            .map_err(|e| {
                let mut d = match ctx.failure.take() {
                    Some(d) => d,
                    None => syntax_error(file, &e.to_string()),
                };
                if let Some(l) = e.location() {
                    d.loc = Some(loc(l.line(), l.column()));
                    // The path locates the first of two duplicate keys; the error, the second.
                    if let Some(first) = d.at.take() {
                        if let Some(f) = locate_key_in(file, text, &first) {
                            d = d.note(format!("first given at {f}"));
                        }
                    }
                } else if d.at.is_none() {
                    d.loc = Some(loc(1, 1));
                }
                d
            })?;
        if root.value == YValue::Null {
            let mut d = Diagnostic::new(
                "the file holds no YAML value: only comments and blank lines",
            )
            .help("an architecture file needs at least `inputs:` and `nodes:`; see docs/FORMAT.md");
            d.loc = Some(loc(1, 1));
            return Err(d);
        }
        Ok(Document {
            file: file.to_string(),
            text: text.to_string(),
            root,
        })
    }

    /// File, line and column of the value at `path`, if it can be found in the text.
    pub fn locate(&self, path: &YamlPath) -> Option<SourceLoc> {
        locate_in(&self.file, &self.text, path)
    }

    /// Fills in the diagnostic's file:line:column from its YAML path.
    pub fn locate_diagnostic(&self, mut d: Diagnostic) -> Diagnostic {
        if d.loc.is_none() {
            if let Some(at) = &d.at {
                d.loc = self.locate(at);
            }
        }
        d
    }
}

fn locate_in(file: &str, text: &str, path: &YamlPath) -> Option<SourceLoc> {
    seek(file, text, path, false)
}

/// Where the key that ends `path` is written (not its value).
fn locate_key_in(file: &str, text: &str, path: &YamlPath) -> Option<SourceLoc> {
    seek(file, text, path, true)
}

fn seek(file: &str, text: &str, path: &YamlPath, key: bool) -> Option<SourceLoc> {
    if path.is_root() {
        return Some(SourceLoc {
            file: file.to_string(),
            line: 1,
            column: 1,
        });
    }
    let steps = path.steps();
    let de = serde_yaml::Deserializer::from_str(text);
    let err = Seek(&steps, key).deserialize(de).err()?;
    let l = err.location()?;
    Some(SourceLoc {
        file: file.to_string(),
        line: l.line(),
        column: l.column(),
    })
}

/// A YAML syntax error from libyaml's message, `PROBLEM at line L column C[, CONTEXT at line
/// L2 column C2]`: the problem's position becomes the diagnostic's location (from the error
/// itself), the context's a note.
fn syntax_error(file: &str, msg: &str) -> Diagnostic {
    let (problem, context) = match msg.split_once(", ") {
        Some((p, c)) if !c.is_empty() => (p, Some(c)),
        _ => (msg, None),
    };
    let (problem, _) = split_position(problem);
    let mut d = Diagnostic::new(format!("invalid YAML: {problem}"));
    if let Some(c) = context {
        d = match split_position(c) {
            (what, Some((line, column))) => d.note(format!("{what}: {file}:{line}:{column}")),
            (what, None) => d.note(what.to_string()),
        };
    }
    d.help("check the indentation, colons, quotes and brackets there")
}

/// `what at line L column C` → (`what`, (L, C)).
fn split_position(s: &str) -> (&str, Option<(usize, usize)>) {
    if let Some((what, pos)) = s.rsplit_once(" at line ") {
        if let Some((l, c)) = pos.split_once(" column ") {
            if let (Ok(l), Ok(c)) = (l.trim().parse(), c.trim().parse()) {
                return (what, Some((l, c)));
            }
        }
    }
    (s, None)
}

/// The state shared by the seeds that build a [`YNode`] tree straight from serde_yaml's
/// events: values built so far against the budget, and the diagnostic of a failure (the
/// error handed to serde_yaml only carries its position back).
struct Build {
    nodes: Cell<usize>,
    budget: usize,
    failure: RefCell<Option<Diagnostic>>,
}

impl Build {
    fn fail<E: de::Error>(&self, d: Diagnostic) -> E {
        let msg = d.message.clone();
        *self.failure.borrow_mut() = Some(d);
        E::custom(msg)
    }
    fn count<E: de::Error>(&self) -> Result<(), E> {
        let n = self.nodes.get() + 1;
        self.nodes.set(n);
        if n > self.budget {
            return Err(self.fail(
                Diagnostic::new(
                    "the document expands to more values than its text holds: YAML aliases are not part of the format",
                )
                .help("write the values out, or make a block with parameters and `use:` it"),
            ));
        }
        Ok(())
    }
}

/// Builds the value at `path`, `depth` collections deep.
struct NodeSeed<'c> {
    ctx: &'c Build,
    path: YamlPath,
    depth: usize,
}

impl<'de> DeserializeSeed<'de> for NodeSeed<'_> {
    type Value = YNode;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<YNode, D::Error> {
        d.deserialize_any(self)
    }
}

impl NodeSeed<'_> {
    fn leaf<E: de::Error>(self, value: YValue) -> Result<YNode, E> {
        self.ctx.count()?;
        Ok(YNode {
            value,
            path: self.path,
        })
    }
    fn too_large<E: de::Error>(&self, n: &dyn fmt::Display) -> E {
        self.ctx.fail(
            Diagnostic::new(format!("the number {n} is too large"))
                .help("numbers must fit in a signed 64-bit integer (at most 9223372036854775807)"),
        )
    }
    fn enter<E: de::Error>(&self) -> Result<(), E> {
        self.ctx.count()?;
        if self.depth >= MAX_NESTING {
            return Err(self.ctx.fail(
                Diagnostic::new(format!(
                    "lists and mappings nested deeper than {MAX_NESTING} levels"
                ))
                .help(
                    "an architecture needs a few levels; describe depth with blocks and `repeat:`",
                ),
            ));
        }
        Ok(())
    }
}

impl<'de> Visitor<'de> for NodeSeed<'_> {
    type Value = YNode;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a YAML value")
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<YNode, E> {
        self.leaf(YValue::Bool(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<YNode, E> {
        self.leaf(YValue::Int(v))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<YNode, E> {
        match i64::try_from(v) {
            Ok(i) => self.leaf(YValue::Int(i)),
            Err(_) => Err(self.too_large(&v)),
        }
    }
    fn visit_i128<E: de::Error>(self, v: i128) -> Result<YNode, E> {
        match i64::try_from(v) {
            Ok(i) => self.leaf(YValue::Int(i)),
            Err(_) => Err(self.too_large(&v)),
        }
    }
    fn visit_u128<E: de::Error>(self, v: u128) -> Result<YNode, E> {
        match i64::try_from(v) {
            Ok(i) => self.leaf(YValue::Int(i)),
            Err(_) => Err(self.too_large(&v)),
        }
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<YNode, E> {
        self.leaf(YValue::Float(v))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<YNode, E> {
        if let Some(d) = unprintable(v) {
            return Err(self.ctx.fail(d));
        }
        self.leaf(YValue::Str(v.to_string()))
    }
    fn visit_unit<E: de::Error>(self) -> Result<YNode, E> {
        self.leaf(YValue::Null)
    }
    fn visit_none<E: de::Error>(self) -> Result<YNode, E> {
        self.leaf(YValue::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<YNode, D::Error> {
        d.deserialize_any(self)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut a: A) -> Result<YNode, A::Error> {
        self.enter()?;
        let mut items = Vec::new();
        loop {
            let seed = NodeSeed {
                ctx: self.ctx,
                path: self.path.index(items.len()),
                depth: self.depth + 1,
            };
            match a.next_element_seed(seed)? {
                Some(x) => items.push(x),
                None => break,
            }
        }
        Ok(YNode {
            value: YValue::Seq(items),
            path: self.path,
        })
    }
    fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<YNode, A::Error> {
        self.enter()?;
        let mut out: Vec<(String, YNode)> = Vec::new();
        let mut seen: HashSet<String> = HashSet::new();
        while let Some(key) = a.next_key_seed(KeySeed {
            ctx: self.ctx,
            map: &self.path,
            seen: &seen,
        })? {
            let value = a.next_value_seed(NodeSeed {
                ctx: self.ctx,
                path: self.path.key(&key),
                depth: self.depth + 1,
            })?;
            seen.insert(key.clone());
            out.push((key, value));
        }
        Ok(YNode {
            value: YValue::Map(out),
            path: self.path,
        })
    }
    fn visit_enum<A: de::EnumAccess<'de>>(self, a: A) -> Result<YNode, A::Error> {
        let (tag, _rest): (String, _) = a.variant()?;
        Err(self.ctx.fail(
            Diagnostic::new(format!(
                "YAML tags such as `!{tag}` are not part of the format"
            ))
            .help("remove the tag and write the plain value"),
        ))
    }
}

/// The one rule for text that reaches an output: a string or key holding a control character
/// other than newline and tab (C0, DEL, C1 — written as a YAML escape such as `"\e[2J"`,
/// `"\x1b]0;…\a"` or `"\0"`, since raw ones are refused before parsing) or a character that
/// reorders text on screen (the bidirectional overrides and isolates, U+202A–U+202E,
/// U+2066–U+2069) is refused where it is written. So no name, op name or value the file
/// gives can clear or retitle a terminal, disguise itself, or break a CSV, Markdown, JSON,
/// DOT or SVG output. Newlines and tabs may appear in free text (`description:`); names are
/// identifiers, and the model name is refused them in `spec`.
fn unprintable(s: &str) -> Option<Diagnostic> {
    let c = s.chars().find(|&c| {
        (c.is_control() && c != '\n' && c != '\t')
            || matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
    })?;
    let what = match c {
        '\0' => "the control character U+0000 (NUL)",
        '\u{1b}' => {
            "the control character U+001B (escape, which starts terminal control sequences)"
        }
        '\u{7}' => "the control character U+0007 (bell)",
        '\r' => "the control character U+000D (carriage return)",
        c if c.is_control() => "the control character",
        _ => "a bidirectional text control (it reorders what is shown):",
    };
    let code = if what.ends_with(')') {
        String::new()
    } else {
        format!(" U+{:04X}", u32::from(c))
    };
    Some(
        Diagnostic::new(format!(
            "the string \"{}\" holds {what}{code}",
            crate::error::excerpt(&s.escape_debug().to_string()),
        ))
        .help("remove it: names and values are printed to terminals and written into CSV, Markdown, JSON, DOT and SVG"),
    )
}

/// Reads a mapping key: a plain name, not seen before in the same mapping.
struct KeySeed<'c, 'm> {
    ctx: &'c Build,
    map: &'m YamlPath,
    seen: &'m HashSet<String>,
}

impl<'de> DeserializeSeed<'de> for KeySeed<'_, '_> {
    type Value = String;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<String, D::Error> {
        d.deserialize_any(self)
    }
}

impl KeySeed<'_, '_> {
    fn not_a_name<E: de::Error>(&self, found: &str) -> E {
        self.ctx.fail(
            Diagnostic::new(format!("mapping keys must be plain names, found {found}"))
                .help("use a name such as `kernel` as the key"),
        )
    }
}

impl<'de> Visitor<'de> for KeySeed<'_, '_> {
    type Value = String;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a mapping key")
    }
    fn visit_str<E: de::Error>(self, k: &str) -> Result<String, E> {
        self.ctx.count()?;
        if let Some(d) = unprintable(k) {
            return Err(self.ctx.fail(d));
        }
        if k == "<<" {
            return Err(self.ctx.fail(
                Diagnostic::new("YAML merge keys (`<<:`) are not part of the format")
                    .help("use `defaults:` for shared settings, or a block"),
            ));
        }
        if self.seen.contains(k) {
            let mut d = Diagnostic::new(format!("duplicate key `{k}` in one mapping"))
                .help("keep one of them (archscope never lets the last one silently win)");
            // Taken back by `Document::parse` to say where the first one is.
            d.at = Some(self.map.key(k));
            return Err(self.ctx.fail(d));
        }
        Ok(k.to_string())
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<String, E> {
        Err(self.not_a_name(&v.to_string()))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<String, E> {
        Err(self.not_a_name(&v.to_string()))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<String, E> {
        Err(self.not_a_name(&v.to_string()))
    }
    fn visit_i128<E: de::Error>(self, v: i128) -> Result<String, E> {
        Err(self.not_a_name(&v.to_string()))
    }
    fn visit_u128<E: de::Error>(self, v: u128) -> Result<String, E> {
        Err(self.not_a_name(&v.to_string()))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<String, E> {
        Err(self.not_a_name(&v.to_string()))
    }
    fn visit_unit<E: de::Error>(self) -> Result<String, E> {
        Err(self.not_a_name("null"))
    }
    fn visit_none<E: de::Error>(self) -> Result<String, E> {
        Err(self.not_a_name("null"))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, _: A) -> Result<String, A::Error> {
        Err(self.not_a_name("a list"))
    }
    fn visit_map<A: MapAccess<'de>>(self, _: A) -> Result<String, A::Error> {
        Err(self.not_a_name("a mapping"))
    }
    fn visit_enum<A: de::EnumAccess<'de>>(self, _: A) -> Result<String, A::Error> {
        Err(self.not_a_name("a tagged value"))
    }
}

/// Rejects anchors, aliases, merge keys, tags and multiple documents, which the format forbids
/// (they hide structure and invite alias bombs), control characters, and flow collections
/// (`[…]`, `{…}`) nested deeper than [`MAX_NESTING`] — libyaml's time grows with the square of
/// that depth (100,000 levels took 38 s), so it is bounded before the parser sees the text.
///
/// A light scanner, not a parser: it follows quoted scalars (across lines, as YAML does),
/// comments and block scalars (`|`, `>`), and knows where a node starts (where an anchor, an
/// alias, a tag or a quote can begin). Where it could misread a quote, it errs towards
/// counting more nesting, never less: every `[`/`{` outside comments counts, and only a
/// `]`/`}` outside quotes closes. The parse that follows is the real check, and the value
/// budget of [`Document::parse`] stops an alias that got past this scan from multiplying.
/// Returns (line, column, message, help).
fn lexical_checks(text: &str) -> Result<(), (usize, usize, String, String)> {
    let mut flow_depth = 0usize;
    // Indentation of the line that opened a block scalar, while inside one.
    let mut block_scalar: Option<usize> = None;
    // Inside a quoted scalar (which may continue on the next line), and after a backslash.
    let mut quote: Option<char> = None;
    let mut escaped = false;
    // A `---` opens the document only before any content (after comments, blank lines).
    let mut seen_content = false;
    let mut seen_start = false;
    for (ln, line) in text.lines().enumerate() {
        let ln = ln + 1;
        let indent = line.chars().take_while(|c| *c == ' ').count();
        if let Some(opener) = block_scalar {
            if line.trim().is_empty() || indent > opener {
                continue;
            }
            block_scalar = None;
        }
        // `lines` has taken off the `\r` of a `\r\n`. Any other line break libyaml knows (a
        // lone `\r`, NEL, LS, PS) would make its line numbers disagree with everyone
        // else's, so it is refused like the control characters.
        if let Some((col, c)) = line
            .chars()
            .enumerate()
            .find(|(_, c)| (c.is_control() && *c != '\t') || matches!(c, '\u{2028}' | '\u{2029}'))
        {
            let (msg, help) = if matches!(c, '\r' | '\u{85}' | '\u{2028}' | '\u{2029}') {
                (
                    format!(
                        "a line break other than \\n or \\r\\n (U+{:04X})",
                        u32::from(c)
                    ),
                    "save the file with Unix (\\n) or Windows (\\r\\n) line endings",
                )
            } else {
                (
                    format!(
                        "a control character (U+{:04X}) in the text: is this a binary file?",
                        u32::from(c)
                    ),
                    "an architecture is a YAML text file; remove the character",
                )
            };
            return Err((ln, col + 1, msg, help.into()));
        }
        if quote.is_none() {
            let tab = line
                .chars()
                .take_while(|c| c.is_whitespace())
                .position(|c| c == '\t');
            if let Some(col) = tab {
                return Err((
                    ln,
                    col + 1,
                    "a tab in the indentation: YAML indents with spaces only".into(),
                    "replace the tab with spaces".into(),
                ));
            }
            if line.starts_with('%') {
                return Err((
                    ln,
                    1,
                    "a YAML directive (`%YAML`, `%TAG`): directives are not part of the format"
                        .into(),
                    "remove the line (and a `---` right after it): archscope reads plain YAML without directives".into(),
                ));
            }
            let start = line.starts_with("---");
            if start && (seen_content || seen_start) || line.starts_with("...") {
                // A marker with nothing after it only opens (or closes) an empty document.
                let rest_empty = text.lines().skip(ln).all(|l| {
                    let t = l.trim();
                    t.is_empty() || t.starts_with('#')
                }) && line[3..].trim().is_empty();
                let (msg, help) = match (start, rest_empty) {
                    (true, true) => (
                        "a `---` line after the architecture starts a second, empty YAML document",
                        "remove the line: a file holds one architecture and needs no document markers",
                    ),
                    (false, true) => (
                        "a `...` line (YAML's end-of-document marker) is not part of the format",
                        "remove the line",
                    ),
                    _ => (
                        "more than one YAML document in the file",
                        "keep one architecture per file",
                    ),
                };
                return Err((ln, 1, msg.into(), help.into()));
            }
            if start {
                seen_start = true;
            } else if !line.trim().is_empty() && !line.trim_start().starts_with('#') {
                seen_content = true;
            }
        }
        // Where a node may start: a quote, an anchor, an alias or a tag begins a node only
        // here (after indentation, `- `, `? `, `: `, or `[`, `{`, `,` in a flow collection).
        let mut at_start = true;
        let mut prev_space = true;
        let mut chars = line.char_indices().enumerate().peekable();
        while let Some((col, (i, c))) = chars.next() {
            let next = chars.peek().map(|(_, (_, n))| *n);
            let spaced = next.is_none_or(|n| n == ' ' || n == '\t');
            if let Some(q) = quote {
                if matches!(c, '[' | '{') {
                    // Counted even when quoted: see above.
                    flow_depth += 1;
                }
                if escaped {
                    escaped = false;
                } else if q == '"' && c == '\\' {
                    escaped = true;
                } else if c == q {
                    if q == '\'' && next == Some('\'') {
                        // `''` is a quote inside a single-quoted scalar.
                        chars.next();
                    } else {
                        quote = None;
                    }
                }
                if flow_depth > MAX_NESTING {
                    return Err(too_deep(ln, col));
                }
                prev_space = false;
                continue;
            }
            match c {
                ' ' | '\t' => {
                    prev_space = true;
                    continue;
                }
                '#' if prev_space => break,
                '[' | '{' => {
                    flow_depth += 1;
                    if flow_depth > MAX_NESTING {
                        return Err(too_deep(ln, col));
                    }
                    at_start = true;
                }
                ']' | '}' => {
                    flow_depth = flow_depth.saturating_sub(1);
                    at_start = false;
                }
                ',' => at_start = flow_depth > 0,
                ':' => at_start = spaced || flow_depth > 0,
                '-' | '?' if at_start && spaced => {}
                '"' | '\'' if at_start => {
                    quote = Some(c);
                    at_start = false;
                }
                '&' | '*' | '!' if at_start => {
                    let follows = line[i + c.len_utf8()..].chars().next().unwrap_or(' ');
                    if follows.is_alphanumeric() || follows == '_' || (c == '!' && follows == '!') {
                        let (what, help) = match c {
                            '&' => ("YAML anchors (`&name`)", "write the value out, or make a block with parameters and `use:` it"),
                            '*' => ("YAML aliases (`*name`)", "write the value out, or make a block with parameters and `use:` it"),
                            _ => ("YAML tags (`!tag`)", "remove the tag and write the plain value"),
                        };
                        return Err((
                            ln,
                            col + 1,
                            format!("{what} are not part of the format"),
                            help.into(),
                        ));
                    }
                    at_start = false;
                }
                '<' if line[i..].starts_with("<<:") => {
                    return Err((
                        ln,
                        col + 1,
                        "YAML merge keys (`<<:`) are not part of the format".into(),
                        "use `defaults:` for shared settings, or a block".into(),
                    ));
                }
                _ => at_start = false,
            }
            prev_space = false;
        }
        if quote.is_none() && opens_block_scalar(line) {
            block_scalar = Some(indent);
        }
    }
    Ok(())
}

fn too_deep(ln: usize, col: usize) -> (usize, usize, String, String) {
    (
        ln,
        col + 1,
        format!("lists and mappings nested deeper than {MAX_NESTING} levels"),
        "an architecture needs a few levels; describe depth with blocks and `repeat:`".into(),
    )
}

/// Whether a line ends (before any comment) with a block scalar indicator: `key: |`, `- >-`.
fn opens_block_scalar(line: &str) -> bool {
    let code = match line.find(" #") {
        Some(i) => &line[..i],
        None => line,
    };
    let code = code.trim_end();
    let Some((before, last)) = code.rsplit_once(' ') else {
        return false;
    };
    let indicator = last.starts_with(['|', '>'])
        && last[1..]
            .chars()
            .all(|c| matches!(c, '-' | '+') || c.is_ascii_digit());
    indicator && (before.trim_end().ends_with(':') || before.trim_end().ends_with('-'))
}

/// A deserializer seed that walks to `path` and fails there: serde_yaml attaches the position of
/// the value being read to the error, which is exactly the location sought.
/// With `.1` set, a path ending in a key stops at the key itself rather than at its value.
struct Seek<'a>(&'a [&'a Step], bool);

impl<'de> DeserializeSeed<'de> for Seek<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(SeekVisitor(self.0, self.1))
    }
}

struct SeekVisitor<'a>(&'a [&'a Step], bool);

/// Reads a mapping key, failing (so that the error carries its position) if it is `.0`.
struct KeyStop<'a>(&'a str);

impl<'de> DeserializeSeed<'de> for KeyStop<'_> {
    type Value = String;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<String, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeyStop<'_> {
    type Value = String;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a key")
    }
    fn visit_str<E: de::Error>(self, k: &str) -> Result<String, E> {
        if k == self.0 {
            Err(E::custom("found"))
        } else {
            Ok(k.to_string())
        }
    }
}

impl SeekVisitor<'_> {
    fn here<E: de::Error>(&self) -> Result<(), E> {
        if self.0.is_empty() {
            Err(E::custom("found"))
        } else {
            Ok(())
        }
    }
}

impl<'de> Visitor<'de> for SeekVisitor<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any value")
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        self.here()
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        self.here()
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        self.here()
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        self.here()
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        self.here()
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        self.here()
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut a: A) -> Result<(), A::Error> {
        self.here()?;
        let mut i = 0;
        loop {
            let target = matches!(self.0[0], Step::Index(j) if *j == i);
            let more = if target {
                a.next_element_seed(Seek(&self.0[1..], self.1))?.is_some()
            } else {
                a.next_element::<IgnoredAny>()?.is_some()
            };
            if !more {
                return Ok(());
            }
            i += 1;
        }
    }
    fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<(), A::Error> {
        self.here()?;
        if let (true, [Step::Key(last)]) = (self.1, self.0) {
            while a.next_key_seed(KeyStop(last))?.is_some() {
                a.next_value::<IgnoredAny>()?;
            }
            return Ok(());
        }
        while let Some(k) = a.next_key::<String>()? {
            if matches!(self.0[0], Step::Key(kk) if *kk == k) {
                a.next_value_seed(Seek(&self.0[1..], self.1))?;
            } else {
                a.next_value::<IgnoredAny>()?;
            }
        }
        Ok(())
    }
}

/// A value to write as YAML (the `convert` commands' model description): [`emit`] renders it
/// in block style, with `Flow` values (a node, a shape) on one line.
#[derive(Debug, Clone, PartialEq)]
pub enum Emit {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    /// A string; quoted when YAML would read it as something else.
    Str(String),
    Seq(Vec<Emit>),
    Map(Vec<(String, Emit)>),
    /// The value written on one line (`{id: c1, op: conv, out: 16}`, `[3, 640, 640]`).
    Flow(Box<Emit>),
    /// A value preceded by a `#` comment line (in a block mapping or list).
    Commented(String, Box<Emit>),
}

impl Emit {
    pub fn str(s: impl Into<String>) -> Emit {
        Emit::Str(s.into())
    }
    pub fn flow(self) -> Emit {
        Emit::Flow(Box::new(self))
    }
    pub fn map(pairs: Vec<(&str, Emit)>) -> Emit {
        Emit::Map(pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
    }
}

/// Renders `value` as a YAML document: block style, `Flow` parts on one line, strings quoted
/// where a plain scalar would read as another type or break the syntax, `header` lines as `#`
/// comments first. What it writes reads back to the same tree (`Document::parse`).
pub fn emit(header: &str, value: &Emit) -> String {
    let mut out = String::new();
    for l in header.lines() {
        out.push_str(if l.is_empty() { "#" } else { "# " });
        out.push_str(l);
        out.push('\n');
    }
    block(&mut out, value, 0);
    if !out.ends_with('\n') {
        out.push('\n');
    }
    out
}

fn block(out: &mut String, v: &Emit, indent: usize) {
    let pad = " ".repeat(indent);
    match v {
        Emit::Map(m) if !m.is_empty() => {
            for (k, x) in m {
                let (comment, x) = peel(x);
                if let Some(c) = comment {
                    comment_lines(out, &pad, c);
                }
                out.push_str(&pad);
                out.push_str(&scalar_str(k));
                out.push(':');
                after_key(out, x, indent);
            }
        }
        Emit::Seq(s) if !s.is_empty() => {
            for x in s {
                let (comment, x) = peel(x);
                if let Some(c) = comment {
                    comment_lines(out, &pad, c);
                }
                out.push_str(&pad);
                out.push('-');
                match x {
                    Emit::Map(m) if !m.is_empty() => {
                        // The first pair on the dash's line, the rest indented under it.
                        out.push(' ');
                        let mut inner = String::new();
                        block(&mut inner, x, indent + 2);
                        out.push_str(inner.trim_start());
                    }
                    Emit::Seq(s) if !s.is_empty() => {
                        out.push('\n');
                        block(out, x, indent + 2);
                    }
                    _ => {
                        out.push(' ');
                        flow(out, x);
                        out.push('\n');
                    }
                }
            }
        }
        _ => {
            out.push_str(&pad);
            flow(out, v);
            out.push('\n');
        }
    }
}

fn after_key(out: &mut String, x: &Emit, indent: usize) {
    match x {
        Emit::Map(m) if !m.is_empty() => {
            out.push('\n');
            block(out, x, indent + 2);
        }
        Emit::Seq(s) if !s.is_empty() => {
            out.push('\n');
            block(out, x, indent + 2);
        }
        _ => {
            out.push(' ');
            flow(out, x);
            out.push('\n');
        }
    }
}

fn peel(v: &Emit) -> (Option<&str>, &Emit) {
    match v {
        Emit::Commented(c, x) => (Some(c.as_str()), x),
        _ => (None, v),
    }
}

fn comment_lines(out: &mut String, pad: &str, c: &str) {
    for l in c.lines() {
        out.push_str(pad);
        out.push_str(if l.is_empty() { "#" } else { "# " });
        out.push_str(l);
        out.push('\n');
    }
}

fn flow(out: &mut String, v: &Emit) {
    match v {
        Emit::Null => out.push_str("null"),
        Emit::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Emit::Int(i) => out.push_str(&i.to_string()),
        Emit::Float(x) => {
            let s = format!("{x:?}");
            out.push_str(&s);
        }
        Emit::Str(s) => out.push_str(&scalar_str(s)),
        Emit::Seq(s) => {
            out.push('[');
            for (i, x) in s.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                flow(out, x);
            }
            out.push(']');
        }
        Emit::Map(m) => {
            out.push('{');
            for (i, (k, x)) in m.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                out.push_str(&scalar_str(k));
                out.push_str(": ");
                flow(out, x);
            }
            out.push('}');
        }
        Emit::Flow(x) | Emit::Commented(_, x) => flow(out, x),
    }
}

/// A string as a YAML scalar: plain when it reads back as the same string, else double-quoted
/// with escapes.
fn scalar_str(s: &str) -> String {
    let plain = !s.is_empty()
        && s.chars().all(|c| {
            c.is_ascii_alphanumeric()
                || matches!(c, '_' | '.' | '/' | '-' | '$' | '(' | ')' | '*' | '+')
        })
        && !s.starts_with(['-', '.', '$'])
        && !matches!(
            s.to_ascii_lowercase().as_str(),
            "null" | "true" | "false" | "yes" | "no" | "on" | "off" | "y" | "n" | "nan" | "inf"
        )
        && s.parse::<f64>().is_err()
        && s.parse::<i64>().is_err();
    if plain {
        return s.to_string();
    }
    let mut q = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => q.push_str("\\\""),
            '\\' => q.push_str("\\\\"),
            '\n' => q.push_str("\\n"),
            '\t' => q.push_str("\\t"),
            c if (c as u32) < 0x20 => q.push_str(&format!("\\x{:02x}", c as u32)),
            c => q.push(c),
        }
    }
    q.push('"');
    q
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locates_values() {
        let text =
            "name: x\nnodes:\n  - {id: a, op: conv, out: 64}\n  - id: b\n    kernel: [3, 3]\n";
        let doc = Document::parse("m.yaml", text).unwrap();
        let p = YamlPath::default().key("nodes").index(0).key("out");
        let l = doc.locate(&p).unwrap();
        assert_eq!((l.line, l.column), (3, 28));
        let p = YamlPath::default()
            .key("nodes")
            .index(1)
            .key("kernel")
            .index(1);
        let l = doc.locate(&p).unwrap();
        assert_eq!((l.line, l.column), (5, 17));
    }

    #[test]
    fn rejects_aliases_and_merge_keys() {
        for (bad, message, at) in [
            (
                "a: &x 1\nb: *x\n",
                "YAML anchors (`&name`) are not part of the format",
                (1, 4),
            ),
            (
                "a: {k: 1}\nb:\n  <<: {k: 2}\n",
                "YAML merge keys (`<<:`) are not part of the format",
                (3, 3),
            ),
            (
                "a: !!int 3\n",
                "YAML tags (`!tag`) are not part of the format",
                (1, 4),
            ),
        ] {
            let e = Document::parse("m.yaml", bad).unwrap_err();
            assert_eq!(e.message, message, "{bad}");
            assert_eq!(
                e.loc.as_ref().map(|l| (l.line, l.column)),
                Some(at),
                "{bad}"
            );
        }
        // `*` inside an expression or a quoted string is fine.
        Document::parse("m.yaml", "a: $(x * 2)\nb: \"*x\"\n").unwrap();
    }

    #[test]
    fn duplicate_keys_point_at_the_second() {
        let text = "a: 1\nnodes:\n  - id: x\n    out: 8\n    out: 16\n";
        let e = Document::parse("m.yaml", text).unwrap_err();
        let l = e.loc.as_ref().unwrap();
        assert_eq!((l.line, l.column), (5, 5), "{e}");
        assert_eq!(e.notes, vec!["first given at m.yaml:4:5".to_string()]);
        let e = Document::parse("m.yaml", "{k: 1, j: 2, k: 3}").unwrap_err();
        let l = e.loc.as_ref().unwrap();
        assert_eq!((l.line, l.column), (1, 14), "{e}");
    }

    #[test]
    fn scanner_follows_quotes_and_block_scalars() {
        for ok in [
            // Indicators inside quotes (escaped quotes, doubled single quotes, several lines).
            "a: \"x\\\" &y *z\"\nb: 'it''s &x'\n",
            "a: [\"x\n  &y [[\", 1]\n",
            // Plain scalars: `*` and quotes that do not start a node.
            "a: $(x * 2)\nb: x *y\nc: he said \"hi\n",
            // Block scalar content is text.
            "description: |\n  &x *y [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[\n  !tag\nb: 1\n",
        ] {
            Document::parse("m.yaml", ok).unwrap_or_else(|e| panic!("{ok:?}: {e}"));
        }
        for bad in [
            // An anchor after a quoted scalar that spans two lines.
            "a: [\"x\n\", &y [1], *y]\n",
            "- &a x\n",
            "a: {b: &c 1}\n",
            "a: !tag x\n",
        ] {
            let e = Document::parse("m.yaml", bad).unwrap_err();
            assert!(e.message.contains("not part of the format"), "{bad:?}: {e}");
        }
    }

    #[test]
    fn nesting_is_bounded_before_parsing() {
        // Quoted brackets still count towards the bound (never hidden from it).
        let deep = format!("a: {}{}\n", "[".repeat(200_000), "]".repeat(200_000));
        let e = Document::parse("m.yaml", &deep).unwrap_err();
        assert!(e.message.contains("nested deeper than 64"), "{e}");
        assert_eq!(e.loc.as_ref().map(|l| (l.line, l.column)), Some((1, 68)));
        let quoted = format!("a: [\"{}\", 1]\n", "[".repeat(100));
        // The list opens level 1 at column 4; the quoted brackets, from column 6, count too:
        // the 65th level opens at column 69.
        let e = Document::parse("m.yaml", &quoted).unwrap_err();
        assert_eq!(e.message, "lists and mappings nested deeper than 64 levels");
        assert_eq!(e.loc.as_ref().map(|l| (l.line, l.column)), Some((1, 69)));
        // Block nesting is bounded by the tree builder, at the value that is too deep.
        let mut block = String::from("a:\n");
        for i in 0..100 {
            block.push_str(&" ".repeat(2 * i + 2));
            block.push_str("-\n");
        }
        let e = Document::parse("m.yaml", &block).unwrap_err();
        assert!(e.message.contains("nested deeper than 64"), "{e}");
        assert_eq!(e.loc.as_ref().map(|l| l.line), Some(65));
    }

    #[test]
    fn values_too_large_or_not_text() {
        let e = Document::parse("m.yaml", "a: 18446744073709551616\n").unwrap_err();
        assert!(e.message.contains("too large"), "{e}");
        let e = Document::parse("m.yaml", "a: 9223372036854775808\n").unwrap_err();
        assert!(e.message.contains("too large"), "{e}");
        assert_eq!(
            Document::parse("m.yaml", "a: -9223372036854775808\n")
                .unwrap()
                .root
                .get("a")
                .unwrap()
                .value,
            YValue::Int(i64::MIN)
        );
        let e = Document::parse("m.yaml", "a: 1\nb: \u{0}\n").unwrap_err();
        assert_eq!(e.loc.as_ref().map(|l| (l.line, l.column)), Some((2, 4)));
        let e = Document::parse("m.yaml", "# only a comment\n").unwrap_err();
        assert!(e.message.contains("no YAML value"), "{e}");
        let e = Document::parse("m.yaml", "3: x\n").unwrap_err();
        assert!(e.message.contains("plain names"), "{e}");
    }

    /// Found by the `yaml_pipeline` fuzz target: libyaml counts a lone `\r` as a line break,
    /// so its line numbers pointed past the end of the text as everyone else counts lines.
    /// The one rule for printable text (issue 14): every control character but newline and
    /// tab — C0, DEL and C1, each written as a YAML escape — and every bidirectional control
    /// is refused in a value or a key, located at the string; newline and tab pass.
    #[test]
    fn control_characters_in_strings_are_refused() {
        let refused = (0u32..0x20)
            .chain(0x7f..0xa0)
            .chain(0x202a..=0x202e)
            .chain(0x2066..=0x2069)
            .filter(|&c| c != 0x0a && c != 0x09);
        let mut n = 0;
        for c in refused {
            for text in [
                format!("name: \"a\\U{c:08x}b\"\nx: 1\n"),
                format!("\"k\\U{c:08x}\": 1\n"),
            ] {
                let e = Document::parse("m.yaml", &text).unwrap_err();
                assert!(e.message.contains(&format!("U+{c:04X}")), "{c:x}: {e}");
                assert_eq!(e.loc.as_ref().unwrap().line, 1, "{c:x}: {e}");
                n += 1;
            }
        }
        assert_eq!(n, 2 * (32 - 2 + 33 + 5 + 4));
        let d = Document::parse("m.yaml", "description: \"two\\nlines\\tand a tab\"\n").unwrap();
        assert_eq!(
            d.root.get("description").unwrap().as_str(),
            Some("two\nlines\tand a tab")
        );
    }

    /// A `---` before any content opens the one document (after comments too); a directive,
    /// a trailing `---` or a `...` are named for what they are.
    #[test]
    fn document_markers_and_directives() {
        assert!(Document::parse("m.yaml", "# a comment\n\n---\nx: 1\n").is_ok());
        assert!(Document::parse("m.yaml", "---\nx: 1\n").is_ok());
        let e = Document::parse("m.yaml", "%YAML 1.2\n---\nx: 1\n").unwrap_err();
        assert!(e.message.contains("directive"), "{e}");
        let e = Document::parse("m.yaml", "x: 1\n---\n# end\n").unwrap_err();
        assert!(e.message.contains("second, empty YAML document"), "{e}");
        let e = Document::parse("m.yaml", "x: 1\n---\ny: 2\n").unwrap_err();
        assert!(e.message.contains("more than one YAML document"), "{e}");
        let e = Document::parse("m.yaml", "x: 1\n...\n").unwrap_err();
        assert!(e.message.contains("end-of-document marker"), "{e}");
    }

    #[test]
    fn line_breaks_other_than_lf_and_crlf_are_refused() {
        let crlf = "a: 1\r\nb: [1,\r\n  2, }\r\n";
        let e = Document::parse("m.yaml", crlf).unwrap_err();
        assert_eq!(e.loc.as_ref().map(|l| l.line), Some(3), "{e}");
        let doc = Document::parse("m.yaml", "a: 1\r\nb: 2\r\n").unwrap();
        let l = doc.locate(&YamlPath::default().key("b")).unwrap();
        assert_eq!((l.line, l.column), (2, 4));
        for bad in [
            "a: 1\rb: 2\n",
            "a: {b\r\r\r: 1}\n",
            "a: 1\u{85}b: 2\n",
            "a: 1\u{2028}\n",
        ] {
            let e = Document::parse("m.yaml", bad).unwrap_err();
            assert!(e.message.contains("line break other than"), "{bad:?}: {e}");
            assert_eq!(e.loc.as_ref().map(|l| l.line), Some(1), "{bad:?}");
        }
    }

    #[test]
    fn paths_are_shared_and_compare_by_steps() {
        let root = YamlPath::default();
        let a = root.key("nodes").index(3).key("out");
        let b = root.key("nodes").index(3).key("out");
        assert_eq!(a, b);
        assert_ne!(a, root.key("nodes").index(2).key("out"));
        assert_eq!(a.to_string(), "nodes[3].out");
        assert_eq!(root.to_string(), "(document)");
    }

    #[test]
    fn syntax_errors_are_located() {
        let e = Document::parse("m.yaml", "a: [1, 2\nb: 3\n").unwrap_err();
        assert!(e.loc.is_some());
        assert!(e.message.starts_with("invalid YAML"));
        // The context libyaml names (where the unclosed quote began) becomes a note.
        let e = Document::parse("m.yaml", "a: 1\nb: \"open\nc: 2\n").unwrap_err();
        assert_eq!(
            e.notes,
            vec!["while scanning a quoted scalar: m.yaml:2:4".to_string()],
            "{e}"
        );
    }

    /// What `emit` writes reads back as the same values, strings that look like other types
    /// quoted.
    #[test]
    fn emit_round_trips() {
        let v = Emit::map(vec![
            ("format", Emit::str("archscope/1")),
            ("name", Emit::str("yes")),
            (
                "inputs",
                Emit::map(vec![(
                    "image",
                    Emit::Seq(vec![Emit::Int(3), Emit::Int(64)]).flow(),
                )]),
            ),
            (
                "nodes",
                Emit::Seq(vec![
                    Emit::Commented(
                        "layer 0".into(),
                        Box::new(
                            Emit::map(vec![
                                ("id", Emit::str("c1")),
                                ("in", Emit::str("split:1")),
                                ("x", Emit::Float(0.5)),
                            ])
                            .flow(),
                        ),
                    ),
                    Emit::map(vec![
                        ("id", Emit::str("c2")),
                        ("with", Emit::map(vec![("a", Emit::Bool(true))])),
                    ]),
                    Emit::map(vec![("e", Emit::Seq(vec![]))]),
                ]),
            ),
        ]);
        let text = emit("a header\n\nline", &v);
        let doc = Document::parse("m.yaml", &text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert_eq!(
            doc.root.get("name").and_then(YNode::as_str),
            Some("yes"),
            "{text}"
        );
        assert_eq!(
            doc.root.get("format").and_then(YNode::as_str),
            Some("archscope/1")
        );
        let nodes = match &doc.root.get("nodes").unwrap().value {
            YValue::Seq(s) => s.clone(),
            _ => panic!("{text}"),
        };
        assert_eq!(nodes.len(), 3);
        assert_eq!(nodes[0].get("in").and_then(YNode::as_str), Some("split:1"));
        assert_eq!(
            nodes[0].get("x").map(|x| x.value.clone()),
            Some(YValue::Float(0.5))
        );
        assert_eq!(
            nodes[1]
                .get("with")
                .and_then(|w| w.get("a"))
                .map(|x| x.value.clone()),
            Some(YValue::Bool(true))
        );
        assert!(text.starts_with("# a header\n#\n# line\n"), "{text}");
        assert!(text.contains("  # layer 0\n"), "{text}");
    }
}
