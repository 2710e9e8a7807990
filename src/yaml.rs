//! The one module that touches `serde_yaml`. It parses a document into a plain tree of
//! [`YNode`]s, each knowing its [`YamlPath`] (`nodes[3].kernel`), rejects the YAML features the
//! format forbids (anchors, aliases, merge keys, tags, several documents), and turns a path back
//! into file:line:column on demand by re-reading the text with a seeking deserializer whose
//! deliberate error carries the parser's position. Nothing here knows about layers.

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use crate::error::{Diagnostic, SourceLoc};

/// One step of a path into the document.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Step {
    Key(String),
    Index(usize),
}

/// A path from the document root to a value, e.g. `blocks.bottleneck.nodes[2].stride`.
/// Shared (cloning is a reference-count increment): every value of an expanded model keeps one.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct YamlPath(pub std::sync::Arc<[Step]>);

impl YamlPath {
    fn child(&self, step: Step) -> YamlPath {
        let mut p = self.0.to_vec();
        p.push(step);
        YamlPath(p.into())
    }
    pub fn key(&self, k: &str) -> YamlPath {
        self.child(Step::Key(k.to_string()))
    }
    pub fn index(&self, i: usize) -> YamlPath {
        self.child(Step::Index(i))
    }
}

impl fmt::Display for YamlPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return write!(f, "(document)");
        }
        for (i, s) in self.0.iter().enumerate() {
            match s {
                Step::Key(k) if i == 0 => write!(f, "{k}")?,
                Step::Key(k) => write!(f, ".{k}")?,
                Step::Index(n) => write!(f, "[{n}]")?,
            }
        }
        Ok(())
    }
}

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
            YValue::Str(s) => write!(f, "{s}"),
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

/// Largest source accepted, in bytes (a hand-written architecture is a few KiB).
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
            return Err(Diagnostic::new(format!(
                "the file is {} bytes; archscope reads architecture files of at most {} bytes",
                text.len(),
                MAX_SOURCE_BYTES
            ))
            .help("describe repeated structure with a block and `repeat: N` instead of writing it out"));
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
        let value: serde_yaml::Value = serde_yaml::from_str(text).map_err(|e| {
            let msg = strip_location(&e.to_string());
            let mut d = match msg.split_once("duplicate entry with key ") {
                Some((_, key)) => Diagnostic::new(format!("duplicate key {key} in one mapping"))
                    .help("keep one of them (archscope never lets the last one silently win)"),
                None => Diagnostic::new(format!("invalid YAML: {msg}"))
                    .help("check indentation, colons and brackets on that line"),
            };
            if let Some(l) = e.location() {
                d.loc = Some(loc(l.line(), l.column()));
            }
            d
        })?;
        let root = convert(&value, YamlPath::default(), 0)?;
        let doc = Document {
            file: file.to_string(),
            text: text.to_string(),
            root,
        };
        Ok(doc)
    }

    /// File, line and column of the value at `path`, if it can be found in the text.
    pub fn locate(&self, path: &YamlPath) -> Option<SourceLoc> {
        if path.0.is_empty() {
            return Some(SourceLoc {
                file: self.file.clone(),
                line: 1,
                column: 1,
            });
        }
        let de = serde_yaml::Deserializer::from_str(&self.text);
        let err = Seek(&path.0).deserialize(de).err()?;
        let l = err.location()?;
        Some(SourceLoc {
            file: self.file.clone(),
            line: l.line(),
            column: l.column(),
        })
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

fn strip_location(msg: &str) -> String {
    match msg.find(" at line ") {
        Some(i) => msg[..i].to_string(),
        None => msg.to_string(),
    }
}

fn convert(v: &serde_yaml::Value, path: YamlPath, depth: usize) -> Result<YNode, Diagnostic> {
    use serde_yaml::Value as V;
    if depth > MAX_NESTING {
        return Err(Diagnostic::new(format!("nesting deeper than {MAX_NESTING} levels")).at(&path));
    }
    let value = match v {
        V::Null => YValue::Null,
        V::Bool(b) => YValue::Bool(*b),
        V::Number(n) => {
            if let Some(i) = n.as_i64() {
                YValue::Int(i)
            } else if n.is_u64() {
                return Err(Diagnostic::new(format!("the number {n} is too large"))
                    .at(&path)
                    .help("sizes must fit in a signed 64-bit integer"));
            } else {
                YValue::Float(n.as_f64().unwrap_or(f64::NAN))
            }
        }
        V::String(s) => YValue::Str(s.clone()),
        V::Sequence(items) => YValue::Seq(
            items
                .iter()
                .enumerate()
                .map(|(i, x)| convert(x, path.index(i), depth + 1))
                .collect::<Result<_, _>>()?,
        ),
        V::Mapping(m) => {
            let mut out = Vec::with_capacity(m.len());
            for (k, x) in m {
                let key = match k {
                    V::String(s) => s.clone(),
                    other => {
                        return Err(Diagnostic::new(format!(
                            "mapping keys must be plain names, found {}",
                            serde_yaml::to_string(other).unwrap_or_default().trim()
                        ))
                        .at(&path))
                    }
                };
                let child = convert(x, path.key(&key), depth + 1)?;
                out.push((key, child));
            }
            YValue::Map(out)
        }
        V::Tagged(t) => {
            return Err(Diagnostic::new(format!(
                "YAML tags such as `{}` are not part of the format",
                t.tag
            ))
            .at(&path)
            .help("remove the tag"))
        }
    };
    Ok(YNode { value, path })
}

/// Rejects anchors, aliases, merge keys, tags and multiple documents, which the format forbids
/// (they hide structure and invite alias bombs). A light scan over each line outside quotes and
/// comments. Returns (line, column, message, help).
fn lexical_checks(text: &str) -> Result<(), (usize, usize, String, String)> {
    for (ln, line) in text.lines().enumerate() {
        let ln = ln + 1;
        let indent: String = line.chars().take_while(|c| c.is_whitespace()).collect();
        if let Some(col) = indent.find('\t') {
            return Err((
                ln,
                col + 1,
                "a tab in the indentation: YAML indents with spaces only".into(),
                "replace the tab with spaces".into(),
            ));
        }
        if line.starts_with("---") && ln > 1 || line.starts_with("...") {
            return Err((
                ln,
                1,
                "more than one YAML document in the file".into(),
                "keep one architecture per file".into(),
            ));
        }
        let mut quote: Option<char> = None;
        let mut prev = ' ';
        for (col, c) in line.chars().enumerate() {
            if let Some(q) = quote {
                if c == q {
                    quote = None;
                }
                prev = c;
                continue;
            }
            match c {
                '"' | '\'' if matches!(prev, ' ' | '[' | '{' | ',' | ':' | '-') || col == 0 => {
                    quote = Some(c)
                }
                '#' if prev == ' ' || col == 0 => break,
                '&' | '*' | '!' if matches!(prev, ' ' | '[' | '{' | ',') || col == 0 => {
                    let next = line[line.char_indices().nth(col).map(|(i, _)| i).unwrap_or(0)..]
                        .chars()
                        .nth(1)
                        .unwrap_or(' ');
                    if next.is_alphanumeric() || next == '_' || (c == '!' && next == '!') {
                        let what = match c {
                            '&' => "YAML anchors (`&name`)",
                            '*' => "YAML aliases (`*name`)",
                            _ => "YAML tags (`!tag`)",
                        };
                        return Err((
                            ln,
                            col + 1,
                            format!("{what} are not part of the format"),
                            "write the value out, or make a block with parameters and `use:` it"
                                .into(),
                        ));
                    }
                }
                '<' if line[line.char_indices().nth(col).map(|(i, _)| i).unwrap_or(0)..]
                    .starts_with("<<:") =>
                {
                    return Err((
                        ln,
                        col + 1,
                        "YAML merge keys (`<<:`) are not part of the format".into(),
                        "use `defaults:` for shared settings, or a block".into(),
                    ));
                }
                _ => {}
            }
            prev = c;
        }
    }
    Ok(())
}

/// A deserializer seed that walks to `path` and fails there: serde_yaml attaches the position of
/// the value being read to the error, which is exactly the location sought.
struct Seek<'a>(&'a [Step]);

impl<'de> DeserializeSeed<'de> for Seek<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(SeekVisitor(self.0))
    }
}

struct SeekVisitor<'a>(&'a [Step]);

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
            let target = matches!(&self.0[0], Step::Index(j) if *j == i);
            let more = if target {
                a.next_element_seed(Seek(&self.0[1..]))?.is_some()
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
        while let Some(k) = a.next_key::<String>()? {
            if matches!(&self.0[0], Step::Key(kk) if *kk == k) {
                a.next_value_seed(Seek(&self.0[1..]))?;
            } else {
                a.next_value::<IgnoredAny>()?;
            }
        }
        Ok(())
    }
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
        for bad in [
            "a: &x 1\nb: *x\n",
            "a: {k: 1}\nb:\n  <<: {k: 2}\n",
            "a: !!int 3\n",
        ] {
            let e = Document::parse("m.yaml", bad).unwrap_err();
            assert!(e.loc.is_some(), "{bad}");
        }
        // `*` inside an expression or a quoted string is fine.
        Document::parse("m.yaml", "a: $(x * 2)\nb: \"*x\"\n").unwrap();
    }

    #[test]
    fn syntax_errors_are_located() {
        let e = Document::parse("m.yaml", "a: [1, 2\nb: 3\n").unwrap_err();
        assert!(e.loc.is_some());
        assert!(e.message.starts_with("invalid YAML"));
    }
}
