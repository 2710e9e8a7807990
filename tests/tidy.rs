//! Tidy checks on the source tree, in the manner of rust-analyzer's tidy tests: the test reads
//! every `src/**/*.rs` as text and fails, naming the file, the line and the rule, on
//!
//! - an import against the module layering: each top-level module of `src/` (`src/x.rs` or
//!   `src/x/`) has a level in [`LEVELS`], bottom to top, and may use (`crate::y`, or
//!   `archscope::y` from the binary) only modules of its own level or below; modules of one
//!   level may use each other but never in a cycle (the cycle is named, one file:line per
//!   edge); a module missing from [`LEVELS`] is an error too;
//! - `serde_yaml` anywhere but `src/yaml.rs`;
//! - clap, files (`std::fs`), processes (`std::process`), the environment (`std::env`) or the
//!   standard streams (`print!`, `println!`, `eprint!`, `eprintln!`, `dbg!`, `stdout()`,
//!   `stderr()`) anywhere but the command line (`src/cli.rs` or `src/cli/`) and `src/main.rs`;
//! - an op name of the registry (`"conv2d"`, `"linear"`, `"batchnorm2d"`…, read from
//!   [`archscope::layers::all_names`]) as a string literal compared (`==`, `!=`, a `match` arm,
//!   `lookup("…")`) outside `src/layers/`: per-op facts live with the op;
//! - a module that does not open with a `//!` paragraph;
//! - a `tests/*.rs` file that is neither a module of `tests/suite.rs` nor a `[[test]]` of its
//!   own in Cargo.toml (with `autotests = false` it would never run).
//!
//! Comments and string contents are blanked before the code rules look at a file (a `//` in a
//! string, a `crate::` in a doc comment, do not count). The unit tests at the bottom feed each
//! rule a synthetic source tree that breaks it, so that every rule is shown to fail.

use std::collections::BTreeMap;
use std::path::Path;

/// The layering, bottom to top: a module may use modules of its own level or below. The crate
/// root (`lib.rs`, which declares and re-exports) is not a module here.
const LEVELS: &[&[&str]] = &[
    &["error"],
    &["geometry"],
    &["tensor"],
    &["kernels"],
    &["kernels_nd", "kernels_attn"],
    &["yaml"],
    &["expr"],
    &["layers"],
    &["spec"],
    &["graph"],
    &["zoo"],
    &["receptive"],
    &["analysis"],
    &["convention"],
    &["report"],
    &[
        "exec",
        "check",
        "compare",
        "audit",
        "train",
        "dot",
        "detect",
        "ultralytics",
    ],
    &["onnx"],
    &["html", "render"],
    &["cli"],
    &["main"],
];

/// Where the command line lives: the only files that may touch clap, files, processes, the
/// environment and the standard streams.
fn is_cli(path: &str) -> bool {
    path == "src/main.rs" || path == "src/cli.rs" || path.starts_with("src/cli/")
}

/// One source file: its path relative to the crate (`src/layers/conv.rs`) and its text.
struct Source {
    path: String,
    text: String,
}

/// A file with comments removed and string and character literals blanked (same length, same
/// line breaks), and its string literals.
struct Lexed {
    code: String,
    strings: Vec<Literal>,
}

/// A string literal: the line it starts on, its span in the blanked code, and its contents.
struct Literal {
    line: usize,
    start: usize,
    end: usize,
    content: String,
}

/// Blanks comments and literals. Handles `//` and nested `/* */` comments, `"…"` strings with
/// escapes, raw strings `r#"…"#`, byte strings, and character literals as opposed to
/// lifetimes.
fn lex(text: &str) -> Lexed {
    let c: Vec<char> = text.chars().collect();
    let mut code = String::with_capacity(text.len());
    let mut strings = Vec::new();
    let mut line = 1;
    let mut i = 0;
    // Blanks c[from..to] into `code`, keeping line breaks.
    let blank = |code: &mut String, line: &mut usize, from: usize, to: usize| {
        for &ch in &c[from..to] {
            if ch == '\n' {
                code.push('\n');
                *line += 1;
            } else {
                code.push(' ');
            }
        }
    };
    while i < c.len() {
        let ch = c[i];
        let next = c.get(i + 1).copied();
        if ch == '/' && next == Some('/') {
            let end = c[i..]
                .iter()
                .position(|&x| x == '\n')
                .map_or(c.len(), |p| i + p);
            blank(&mut code, &mut line, i, end);
            i = end;
        } else if ch == '/' && next == Some('*') {
            let mut depth = 0;
            let mut j = i;
            while j < c.len() {
                if c[j] == '/' && c.get(j + 1) == Some(&'*') {
                    depth += 1;
                    j += 2;
                } else if c[j] == '*' && c.get(j + 1) == Some(&'/') {
                    depth -= 1;
                    j += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    j += 1;
                }
            }
            blank(&mut code, &mut line, i, j);
            i = j;
        } else if ch == '"'
            || ((ch == 'r' || ch == 'b')
                && !c
                    .get(i.wrapping_sub(1))
                    .is_some_and(|p| p.is_alphanumeric() || *p == '_')
                && string_start(&c, i).is_some())
        {
            let (open, hashes, raw) = if ch == '"' {
                (i + 1, 0, false)
            } else {
                string_start(&c, i).unwrap()
            };
            let start_line = line;
            let mut j = open;
            let mut content = String::new();
            loop {
                if j >= c.len() {
                    break;
                }
                if !raw && c[j] == '\\' {
                    content.push(c[j]);
                    if let Some(&e) = c.get(j + 1) {
                        content.push(e);
                    }
                    j += 2;
                    continue;
                }
                if c[j] == '"' && (0..hashes).all(|h| c.get(j + 1 + h) == Some(&'#')) {
                    j += 1 + hashes;
                    break;
                }
                content.push(c[j]);
                j += 1;
            }
            let j = j.min(c.len());
            code.push('"');
            let at = code.len() - 1;
            blank(&mut code, &mut line, i + 1, j);
            strings.push(Literal {
                line: start_line,
                start: at,
                end: code.len(),
                content,
            });
            i = j;
        } else if ch == '\'' {
            // A character literal ('x', '\n', '\u{1F600}', '"') or a lifetime ('a).
            let end = if next == Some('\\') {
                c[(i + 3).min(c.len())..]
                    .iter()
                    .position(|&x| x == '\'')
                    .map(|p| i + 3 + p + 1)
            } else if c.get(i + 2) == Some(&'\'') {
                Some(i + 3)
            } else {
                None
            };
            match end {
                Some(e) => {
                    code.push('\'');
                    blank(&mut code, &mut line, i + 1, e);
                    i = e;
                }
                None => {
                    code.push(ch);
                    i += 1;
                }
            }
        } else {
            if ch == '\n' {
                line += 1;
            }
            code.push(ch);
            i += 1;
        }
    }
    Lexed { code, strings }
}

/// If a (raw or byte) string starts at `i` (`r"`, `r#"`, `b"`, `br#"`): the index after its
/// opening quote, its number of `#`s and whether it is raw.
fn string_start(c: &[char], i: usize) -> Option<(usize, usize, bool)> {
    let mut j = i;
    if c.get(j) == Some(&'b') {
        j += 1;
    }
    let raw = c.get(j) == Some(&'r');
    if raw {
        j += 1;
    }
    let mut hashes = 0;
    while raw && c.get(j) == Some(&'#') {
        hashes += 1;
        j += 1;
    }
    (j > i && c.get(j) == Some(&'"')).then_some((j + 1, hashes, raw))
}

/// The line of byte offset `at` in `code`.
fn line_of(code: &str, at: usize) -> usize {
    code[..at].matches('\n').count() + 1
}

/// The top-level module a file belongs to: `src/graph.rs` → `graph`, `src/exec/io.rs` →
/// `exec`, `src/main.rs` → `main`; `None` for the crate root.
fn module_of(path: &str) -> Option<String> {
    let rest = path.strip_prefix("src/")?;
    let first = rest.split('/').next()?;
    let name = first.strip_suffix(".rs").unwrap_or(first);
    (name != "lib").then(|| name.to_string())
}

fn is_ident(ch: char) -> bool {
    ch.is_alphanumeric() || ch == '_'
}

/// The top-level modules a file uses, each with the line of one use: every `crate::x` and
/// `crate::{x, y::z}` (and `archscope::…` in the binary).
fn uses(path: &str, code: &str) -> Vec<(String, usize)> {
    let mut out = Vec::new();
    let roots: &[&str] = if path == "src/main.rs" || is_cli(path) {
        &["crate::", "archscope::"]
    } else {
        &["crate::"]
    };
    for root in roots {
        for (at, _) in code.match_indices(root) {
            if code[..at]
                .chars()
                .next_back()
                .is_some_and(|p| is_ident(p) || p == ':')
            {
                continue;
            }
            let after = &code[at + root.len()..];
            if let Some(group) = after.strip_prefix('{') {
                // `crate::{a, b::c, d::{e, f}}`: the first name of each item at depth 0.
                let mut depth = 0;
                let mut item_start = true;
                for (k, ch) in group.char_indices() {
                    match ch {
                        '{' => depth += 1,
                        '}' if depth == 0 => break,
                        '}' => depth -= 1,
                        ',' if depth == 0 => item_start = true,
                        c if item_start && is_ident(c) => {
                            let name: String =
                                group[k..].chars().take_while(|&x| is_ident(x)).collect();
                            let l = line_of(code, at + root.len() + 1 + k);
                            if name != "self" {
                                out.push((name, l));
                            }
                            item_start = false;
                        }
                        _ => {}
                    }
                }
            } else {
                let name: String = after.chars().take_while(|&x| is_ident(x)).collect();
                if !name.is_empty() {
                    out.push((name, line_of(code, at)));
                }
            }
        }
    }
    out
}

/// A failure: file, line, rule, and what is wrong.
fn fail(path: &str, line: usize, rule: &str, what: String) -> String {
    format!("{path}:{line}: [{rule}] {what}")
}

/// The layering rule and the cycle rule over all files.
fn check_layering(files: &[(String, Lexed)], levels: &[&[&str]]) -> Vec<String> {
    let level = |m: &str| levels.iter().position(|l| l.contains(&m));
    let mut errors = Vec::new();
    let modules: Vec<String> = files.iter().filter_map(|(p, _)| module_of(p)).collect();
    // Edges between distinct top-level modules, each with the first place it is made.
    let mut edges: BTreeMap<(String, String), (String, usize)> = BTreeMap::new();
    for (path, lexed) in files {
        let Some(from) = module_of(path) else {
            continue;
        };
        if level(&from).is_none() {
            errors.push(fail(
                path,
                1,
                "layering",
                format!("the module `{from}` has no level: add it to LEVELS in tests/tidy.rs (and to the code map in ARCHITECTURE.md)"),
            ));
            continue;
        }
        for (to, line) in uses(path, &lexed.code) {
            if to == from || !modules.contains(&to) {
                continue;
            }
            let (Some(lf), Some(lt)) = (level(&from), level(&to)) else {
                continue;
            };
            if lt > lf {
                errors.push(fail(
                    path,
                    line,
                    "layering",
                    format!("`{from}` uses `{to}`, a module above it (LEVELS in tests/tidy.rs): move what it needs down, or pass it in"),
                ));
            }
            edges
                .entry((from.clone(), to))
                .or_insert((path.clone(), line));
        }
    }
    if let Some(cycle) = find_cycle(&edges) {
        let names: Vec<&str> = cycle.iter().map(|(f, _)| f.as_str()).collect();
        let mut chain = names.join(" → ");
        chain.push_str(&format!(" → {}", names[0]));
        let places: Vec<String> = cycle
            .iter()
            .map(|(f, t)| {
                let (p, l) = &edges[&(f.clone(), t.clone())];
                format!("{p}:{l} ({f} uses {t})")
            })
            .collect();
        let (p, l) = &edges[&cycle[0]];
        errors.push(fail(
            p,
            *l,
            "cycle",
            format!(
                "import cycle among top-level modules: {chain}; {}",
                places.join(", ")
            ),
        ));
    }
    errors
}

/// A cycle in the module graph, as its edges in order, if there is one (depth-first search in
/// name order, so the cycle reported is always the same).
fn find_cycle(
    edges: &BTreeMap<(String, String), (String, usize)>,
) -> Option<Vec<(String, String)>> {
    let mut adj: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (f, t) in edges.keys() {
        adj.entry(f).or_default().push(t);
        adj.entry(t).or_default();
    }
    // 0 unseen, 1 on the stack, 2 done.
    let mut state: BTreeMap<&str, u8> = adj.keys().map(|&k| (k, 0)).collect();
    fn dfs<'a>(
        n: &'a str,
        adj: &BTreeMap<&'a str, Vec<&'a str>>,
        state: &mut BTreeMap<&'a str, u8>,
        stack: &mut Vec<&'a str>,
    ) -> Option<Vec<(String, String)>> {
        state.insert(n, 1);
        stack.push(n);
        for &m in &adj[n] {
            match state[m] {
                1 => {
                    let start = stack.iter().position(|&s| s == m).unwrap();
                    let ring: Vec<&str> = stack[start..].to_vec();
                    return Some(
                        (0..ring.len())
                            .map(|k| (ring[k].to_string(), ring[(k + 1) % ring.len()].to_string()))
                            .collect(),
                    );
                }
                0 => {
                    if let Some(c) = dfs(m, adj, state, stack) {
                        return Some(c);
                    }
                }
                _ => {}
            }
        }
        stack.pop();
        state.insert(n, 2);
        None
    }
    let keys: Vec<&str> = adj.keys().copied().collect();
    for k in keys {
        if state[k] == 0 {
            let mut stack = Vec::new();
            if let Some(c) = dfs(k, &adj, &mut state, &mut stack) {
                return Some(c);
            }
        }
    }
    None
}

/// Whether `word` occurs in `code` at `at` as a whole path or macro name (not inside a longer
/// identifier).
fn whole_word(code: &str, at: usize, word: &str) -> bool {
    let before = code[..at].chars().next_back();
    let after = code[at + word.len()..].chars().next();
    !before.is_some_and(is_ident) && !after.is_some_and(|c| is_ident(c) && !word.ends_with(':'))
}

/// The rules on what only one place may touch.
fn check_confined(files: &[(String, Lexed)]) -> Vec<String> {
    let mut errors = Vec::new();
    for (path, lexed) in files {
        let code = &lexed.code;
        if path != "src/yaml.rs" {
            for (at, _) in code.match_indices("serde_yaml") {
                if whole_word(code, at, "serde_yaml") {
                    errors.push(fail(
                        path,
                        line_of(code, at),
                        "serde_yaml",
                        "only src/yaml.rs uses serde_yaml (the YAML library is swappable there alone)".into(),
                    ));
                }
            }
        }
        if !is_cli(path) {
            for word in [
                "clap",
                "std::fs",
                "std::process",
                "std::env",
                "print!",
                "println!",
                "eprint!",
                "eprintln!",
                "dbg!",
                "stdout()",
                "stderr()",
            ] {
                for (at, _) in code.match_indices(word) {
                    if whole_word(code, at, word) {
                        errors.push(fail(
                            path,
                            line_of(code, at),
                            "io",
                            format!("`{word}` outside the command line: only src/cli/ and src/main.rs touch clap, files, processes, the environment and the standard streams; the library returns values and errors"),
                        ));
                    }
                }
            }
        }
    }
    errors
}

/// An op name compared as a string literal outside `src/layers/`.
fn check_op_names(files: &[(String, Lexed)], names: &[&str]) -> Vec<String> {
    let mut errors = Vec::new();
    for (path, lexed) in files {
        if path.starts_with("src/layers/") {
            continue;
        }
        let code = &lexed.code;
        for lit in &lexed.strings {
            let content = &lit.content;
            if !names.contains(&content.as_str()) {
                continue;
            }
            // The code around the literal (blanked literals are spaces, so skip whitespace).
            let before = code[..lit.start].trim_end();
            let after = code[lit.end..].trim_start();
            let compared = before.ends_with("==")
                || before.ends_with("!=")
                || (before.ends_with('|') && !before.ends_with("||"))
                || before.ends_with("lookup(")
                || before.ends_with("contains(&")
                || after.starts_with("==")
                || after.starts_with("!=")
                || after.starts_with("=>")
                || (after.starts_with('|') && !after.starts_with("||"));
            if compared {
                errors.push(fail(
                    path,
                    lit.line,
                    "op-name",
                    format!("the op name \"{content}\" compared outside src/layers/: declare the fact on the op (its OpType entry or a trait method) and read it here"),
                ));
            }
        }
    }
    errors
}

/// A closure written straight into `kernels::vectorised` must be `#[inline(always)]`: otherwise
/// LLVM compiles its loop for baseline SSE instead of inside the AVX-512/AVX2 wrapper
/// (docs/EXECUTOR.md).
fn check_vectorised(files: &[(String, Lexed)]) -> Vec<String> {
    let mut errors = Vec::new();
    for (path, lexed) in files {
        let code = &lexed.code;
        for (at, _) in code.match_indices("vectorised(") {
            if !whole_word(code, at, "vectorised") {
                continue;
            }
            let arg = code[at + "vectorised(".len()..].trim_start();
            if arg.starts_with('|') || arg.starts_with("move ") || arg.starts_with("move|") {
                errors.push(fail(
                    path,
                    line_of(code, at),
                    "vectorised",
                    "a closure passed to `vectorised` without `#[inline(always)]` runs as baseline SSE: write `vectorised(#[inline(always)] || …)`".into(),
                ));
            }
        }
    }
    errors
}

/// Every module opens with a `//!` paragraph.
fn check_module_docs(sources: &[Source]) -> Vec<String> {
    sources
        .iter()
        .filter(|s| !s.text.trim_start().starts_with("//!"))
        .map(|s| {
            fail(
                &s.path,
                1,
                "module-doc",
                "the module does not open with a `//!` paragraph saying what it is for".into(),
            )
        })
        .collect()
}

/// Every rule over a set of sources.
fn check(sources: &[Source], levels: &[&[&str]], op_names: &[&str]) -> Vec<String> {
    let files: Vec<(String, Lexed)> = sources
        .iter()
        .map(|s| (s.path.clone(), lex(&s.text)))
        .collect();
    let mut errors = check_module_docs(sources);
    errors.extend(check_layering(&files, levels));
    errors.extend(check_confined(&files));
    errors.extend(check_op_names(&files, op_names));
    errors.extend(check_vectorised(&files));
    errors
}

fn read_tree(root: &Path, dir: &Path, out: &mut Vec<Source>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            read_tree(root, &p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            let rel = p
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .replace('\\', "/");
            out.push(Source {
                path: rel,
                text: std::fs::read_to_string(&p).unwrap(),
            });
        }
    }
}

#[test]
fn source_tree_is_tidy() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut sources = Vec::new();
    read_tree(root, &root.join("src"), &mut sources);
    assert!(
        sources.iter().any(|s| s.path == "src/layers/mod.rs") && sources.len() > 30,
        "the source tree was not found under {}",
        root.display()
    );
    // `bn` and `act` are also the generic keys of every node (`bn: true`, `act: relu`): as
    // literals they name those keys, which the graph builder reads, not ops.
    let names: Vec<&str> = archscope::layers::all_names()
        .filter(|n| !["bn", "act"].contains(n))
        .collect();
    let errors = check(&sources, LEVELS, &names);
    assert!(errors.is_empty(), "tidy:\n{}", errors.join("\n"));
}

/// The test files that would never run: with `autotests = false` (Cargo.toml), a
/// `tests/NAME.rs` runs only as a module of `tests/suite.rs` (`mod NAME;`) or as a `[[test]]`
/// of its own, so a new file in neither place would be silently skipped.
fn unregistered_tests(files: &[String], suite: &str, manifest: &str) -> Vec<String> {
    let mods: Vec<&str> = suite
        .lines()
        .filter_map(|l| l.trim().strip_prefix("mod ")?.strip_suffix(';'))
        .collect();
    let own: Vec<&str> = manifest
        .lines()
        .filter_map(|l| {
            let v = l
                .trim()
                .strip_prefix("path = \"tests/")?
                .strip_suffix(".rs\"")?;
            Some(v)
        })
        .collect();
    files
        .iter()
        .filter(|f| !mods.contains(&f.as_str()) && !own.contains(&f.as_str()))
        .map(|f| format!("tests/{f}.rs is neither a module of tests/suite.rs nor a [[test]] in Cargo.toml, so it never runs: add `mod {f};` to tests/suite.rs"))
        .collect()
}

#[test]
fn every_test_file_runs() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files: Vec<String> = std::fs::read_dir(root.join("tests"))
        .unwrap()
        .filter_map(|e| {
            let name = e.unwrap().file_name().into_string().ok()?;
            Some(name.strip_suffix(".rs")?.to_string())
        })
        .filter(|n| n != "suite")
        .collect();
    files.sort();
    assert!(
        files.len() > 30 && files.iter().any(|f| f == "tidy"),
        "{files:?}"
    );
    let suite = std::fs::read_to_string(root.join("tests/suite.rs")).unwrap();
    let manifest = std::fs::read_to_string(root.join("Cargo.toml")).unwrap();
    let missing = unregistered_tests(&files, &suite, &manifest);
    assert!(missing.is_empty(), "{}", missing.join("\n"));
}

#[cfg(test)]
mod rules {
    use super::*;

    fn tree(files: &[(&str, &str)]) -> Vec<Source> {
        files
            .iter()
            .map(|(p, t)| Source {
                path: p.to_string(),
                text: t.to_string(),
            })
            .collect()
    }

    const LV: &[&[&str]] = &[
        &["a"],
        &["b", "c"],
        &["d", "yaml", "layers"],
        &["cli"],
        &["main"],
    ];

    #[test]
    fn a_test_file_in_neither_harness_is_named() {
        let files = vec!["a".to_string(), "b".to_string(), "c".to_string()];
        let suite = "mod common;\nmod a;\n";
        let manifest = "[[test]]\nname = \"c\"\npath = \"tests/c.rs\"\n";
        assert_eq!(
            unregistered_tests(&files, suite, manifest),
            vec!["tests/b.rs is neither a module of tests/suite.rs nor a [[test]] in Cargo.toml, so it never runs: add `mod b;` to tests/suite.rs".to_string()]
        );
    }

    #[test]
    fn a_vectorised_closure_without_inline_always_fails() {
        let src = tree(&[(
            "src/layers/x.rs",
            "//! x\nfn f() {\n    vectorised(|| g());\n    vectorised(\n        #[inline(always)]\n        || g(),\n    );\n    vectorised(named);\n}\n",
        )]);
        let e = check(&src, LV, &[]);
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(e[0].starts_with("src/layers/x.rs:3: [vectorised]"), "{e:?}");
    }

    #[test]
    fn a_cycle_is_named_with_its_places() {
        let src = tree(&[
            ("src/a.rs", "//! a\n"),
            ("src/b.rs", "//! b\nuse crate::c::X;\n"),
            ("src/c/mod.rs", "//! c\n\nfn f() {}\n"),
            ("src/c/inner.rs", "//! c inner\nuse crate::{a, b::Y};\n"),
        ]);
        let e = check(&src, LV, &[]);
        assert_eq!(
            e,
            vec![
                "src/b.rs:2: [cycle] import cycle among top-level modules: b → c → b; \
                  src/b.rs:2 (b uses c), src/c/inner.rs:2 (c uses b)"
                    .to_string()
            ]
        );
    }

    #[test]
    fn an_upward_import_and_an_unplaced_module_fail() {
        let src = tree(&[
            ("src/a.rs", "//! a\n\nfn f() -> crate::d::Z { todo!() }\n"),
            ("src/d.rs", "//! d\n"),
            ("src/zz.rs", "//! zz\n"),
            // A comment or a string naming a module is not a use.
            (
                "src/b.rs",
                "//! b\n// crate::d\nconst S: &str = \"crate::d::x\";\n",
            ),
        ]);
        let e = check(&src, LV, &[]);
        assert_eq!(e.len(), 2, "{e:?}");
        assert!(
            e[0].starts_with("src/a.rs:3: [layering] `a` uses `d`, a module above it"),
            "{e:?}"
        );
        assert!(
            e[1].starts_with("src/zz.rs:1: [layering] the module `zz` has no level"),
            "{e:?}"
        );
    }

    #[test]
    fn io_and_serde_yaml_are_confined() {
        let src = tree(&[
            (
                "src/a.rs",
                "//! a\nfn f() { println!(\"x\"); let _ = std::fs::read(\"p\"); }\n",
            ),
            ("src/b.rs", "//! b\nuse serde_yaml::Value;\n"),
            ("src/yaml.rs", "//! y\nuse serde_yaml::Value;\n"),
            (
                "src/cli/run.rs",
                "//! r\nuse clap::Parser;\nfn f() { println!(\"ok\"); std::process::exit(2) }\n",
            ),
            (
                "src/main.rs",
                "//! m\nfn main() { std::process::exit(archscope::cli::main()) }\n",
            ),
            // Named in a string or a comment: fine.
            (
                "src/c.rs",
                "//! c\n// println!\nconst S: &str = \"clap std::fs\";\n",
            ),
        ]);
        let e = check(&src, LV, &[]);
        let rules: Vec<&str> = e.iter().map(|s| s.split(": ").next().unwrap()).collect();
        assert_eq!(rules, ["src/a.rs:2", "src/a.rs:2", "src/b.rs:2"], "{e:?}");
        assert!(
            e[0].contains("[io] `std::fs` outside the command line"),
            "{e:?}"
        );
        assert!(
            e[1].contains("[io] `println!` outside the command line"),
            "{e:?}"
        );
        assert!(
            e[2].contains("[serde_yaml] only src/yaml.rs uses serde_yaml"),
            "{e:?}"
        );
    }

    #[test]
    fn op_names_compared_outside_layers_fail() {
        let names = ["conv2d", "linear", "batchnorm2d"];
        let src = tree(&[
            ("src/a.rs", "//! a\nfn f(op: &str) -> bool {\n    op == \"linear\"\n}\n"),
            ("src/b.rs", "//! b\nfn f(op: &str) -> u8 {\n    match op {\n        \"conv2d\" | \"x\" => 1,\n        _ => 0,\n    }\n}\n"),
            ("src/c.rs", "//! c\nfn f() { let _ = lookup(\"batchnorm2d\"); }\n"),
            // Allowed: inside src/layers/, a literal that is not compared, another string.
            ("src/layers/conv.rs", "//! l\nfn f(op: &str) -> bool { op == \"conv2d\" }\n"),
            ("src/d.rs", "//! d\nconst K: &str = \"linear\";\nfn g(s: &str) -> bool { s == \"linears\" }\n"),
        ]);
        let e = check(&src, LV, &names);
        let at: Vec<&str> = e.iter().map(|s| s.split(" [").next().unwrap()).collect();
        assert_eq!(at, ["src/a.rs:3:", "src/b.rs:4:", "src/c.rs:2:"], "{e:?}");
        assert!(e[0].contains("[op-name] the op name \"linear\" compared outside src/layers/"));
    }

    #[test]
    fn a_module_without_its_paragraph_fails() {
        let src = tree(&[("src/a.rs", "// not a module doc\nfn f() {}\n")]);
        assert_eq!(
            check(&src, LV, &[]),
            ["src/a.rs:1: [module-doc] the module does not open with a `//!` paragraph saying what it is for"]
        );
    }

    #[test]
    fn the_lexer_blanks_comments_and_literals_but_not_lifetimes() {
        let l = lex("fn f<'a>(x: &'a str) -> char { /* crate::a */ let _ = r#\"crate::b \"q\"# ; '\"' }\n// crate::c\ncrate::d");
        assert!(
            !l.code.contains("crate::a")
                && !l.code.contains("crate::b")
                && !l.code.contains("crate::c")
        );
        assert!(l.code.contains("crate::d") && l.code.contains("&'a str"));
        assert_eq!(l.strings.len(), 1);
        assert_eq!(l.strings[0].content, "crate::b \"q");
        assert_eq!(line_of(&l.code, l.code.find("crate::d").unwrap()), 3);
    }
}
