//! Integer expressions on block parameters: `$name` substitutes a parameter's value, `$(expr)`
//! evaluates arithmetic (`+ - * // / % ( )`, comparisons, `&& || !`, and the functions `min`,
//! `max`, `abs`, `if`, `ceil_div`, `make_divisible`). All arithmetic is checked: overflow,
//! division by zero and an inexact `/` are errors, never wrapped or rounded values.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;

use crate::error::Diagnostic;
use crate::yaml::{YNode, YValue};

/// Variables visible to an expression: block parameters, model parameters, and the values the
/// builder binds per layer (`in_ch`, `in_h`, `in_w`, `index`).
#[derive(Debug, Default)]
pub struct Env {
    /// A handful of names per scope: a list beats a hash map here …
    vars: Vec<(String, YNode)>,
    /// … until a scope grows past [`INDEX_FROM`] names (a model with thousands of
    /// `params`), when lookups go through this index so that binding stays linear.
    index: Option<HashMap<String, usize>>,
    parent: Option<Rc<Env>>,
    /// Values of parameters (given as expressions) already evaluated with this scope as the
    /// scope of use: each is evaluated once per scope, so a parameter used three times by the
    /// next, thirty deep, costs thirty evaluations rather than 3^30.
    memo: RefCell<HashMap<String, EVal>>,
    /// Tokens evaluated so far under this scope, kept at the root scope (see [`MAX_EXPR_WORK`]).
    work: Cell<u64>,
}

/// Names in one scope beyond which [`Env`] indexes them.
const INDEX_FROM: usize = 32;

impl Env {
    pub fn new(parent: Option<Rc<Env>>) -> Env {
        Env {
            vars: Vec::new(),
            index: None,
            parent,
            memo: RefCell::new(HashMap::new()),
            work: Cell::new(0),
        }
    }
    /// The outermost scope, which keeps the work count.
    fn root(&self) -> &Env {
        let mut e = self;
        while let Some(p) = &e.parent {
            e = p;
        }
        e
    }
    /// Charges `tokens` to the work budget.
    fn charge(&self, tokens: usize) -> Result<(), Diagnostic> {
        let root = self.root();
        let w = root.work.get().saturating_add(tokens as u64 + 1);
        root.work.set(w);
        if w > MAX_EXPR_WORK {
            return Err(Diagnostic::new(format!(
                "the model's expressions take more than {MAX_EXPR_WORK} steps to evaluate in total (bytes of expression text read, over every layer and every parameter followed)"
            ))
            .help("compute large or much-used parameters once, as plain numbers, or simplify the expressions"));
        }
        Ok(())
    }
    fn position(&self, name: &str) -> Option<usize> {
        match &self.index {
            Some(ix) => ix.get(name).copied(),
            None => self.vars.iter().position(|(k, _)| k == name),
        }
    }
    pub fn set(&mut self, name: &str, value: YNode) {
        self.memo.get_mut().clear();
        match self.position(name) {
            Some(i) => self.vars[i].1 = value,
            None => {
                self.vars.push((name.to_string(), value));
                let last = self.vars.len() - 1;
                match &mut self.index {
                    Some(ix) => {
                        ix.insert(name.to_string(), last);
                    }
                    None if self.vars.len() > INDEX_FROM => {
                        self.index = Some(
                            self.vars
                                .iter()
                                .enumerate()
                                .map(|(i, (k, _))| (k.clone(), i))
                                .collect(),
                        );
                    }
                    None => {}
                }
            }
        }
    }
    pub fn get(&self, name: &str) -> Option<&YNode> {
        self.position(name)
            .map(|i| &self.vars[i].1)
            .or_else(|| self.parent.as_ref().and_then(|p| p.get(name)))
    }
    fn names(&self) -> Vec<String> {
        let mut v: Vec<String> = self.vars.iter().map(|(k, _)| k.clone()).collect();
        if let Some(p) = &self.parent {
            v.extend(p.names());
        }
        v.sort();
        v.dedup();
        v
    }
}

/// The value of an expression.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EVal {
    Int(i64),
    Bool(bool),
}

/// Names archscope binds itself, with what each means: a model or block parameter may not take
/// one (the builtin would hide it, or it would hide the builtin; either way a value written in
/// the file would be silently ignored).
pub const BUILTIN_NAMES: &[(&str, &str)] = &[
    ("in", "a block's input (`$in`)"),
    ("in0", "a block's first input (`$in0`)"),
    ("in1", "a block's second input (`$in1`)"),
    ("in2", "a block's third input (`$in2`)"),
    ("in3", "a block input (`$in3`)"),
    ("in4", "a block input (`$in4`)"),
    ("in5", "a block input (`$in5`)"),
    ("in6", "a block input (`$in6`)"),
    ("in7", "a block input (`$in7`)"),
    ("in_ch", "the channels entering each layer"),
    ("in_l", "the length entering each layer (N×C×L)"),
    ("in_d", "the depth entering each layer (N×C×D×H×W)"),
    ("in_h", "the height entering each layer"),
    ("in_w", "the width entering each layer"),
    ("index", "the repeat index of the block instance"),
    ("true", "the boolean true in expressions"),
    ("false", "the boolean false in expressions"),
];

/// What the builtin `name` means, if it is one.
pub fn builtin(name: &str) -> Option<&'static str> {
    BUILTIN_NAMES
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, what)| *what)
}

/// Whether a string is an expression (`$name` or `$(…)`).
pub fn is_expr(s: &str) -> bool {
    s.starts_with('$')
}

/// Replaces `$name` / `$(expr)` strings in `node` (recursively in lists) by their values.
/// References such as `$in` are left to the graph builder (`keep` names them).
pub fn substitute(node: &YNode, env: &Env, keep: &[&str]) -> Result<YNode, Diagnostic> {
    substitute_at(node, env, keep, &[])
}

/// Deepest chain of parameters defined by other parameters (`a: $b`, `b: $(c * 2)`, …); a
/// longer one is almost surely a parameter defined in terms of itself.
pub const MAX_PARAM_CHAIN: usize = 32;
/// Deepest nesting of parentheses, function calls and unary operators in one expression.
pub const MAX_EXPR_NESTING: usize = 64;
/// Most values (counting nested ones) in a list after substitution: lists of parameters made
/// of lists of parameters would otherwise grow exponentially with the depth.
pub const MAX_LIST_VALUES: usize = 4096;
/// Most bytes of expression text evaluated in all of a model's expressions together (every layer, every
/// parameter followed): about a second of work. A zoo model needs a few thousand.
pub const MAX_EXPR_WORK: u64 = 50_000_000;

/// `chain` extended by `name`, or the error if `name` is already on it (a parameter defined
/// in terms of itself) or the chain is too long.
fn follow_param(chain: &[String], name: &str) -> Result<Vec<String>, Diagnostic> {
    if chain.iter().any(|c| c == name) || chain.len() >= MAX_PARAM_CHAIN {
        let mut path: Vec<&str> = chain.iter().map(String::as_str).collect();
        path.push(name);
        let start = path.iter().position(|c| *c == name).unwrap_or(0);
        return Err(if start + 1 < path.len() {
            Diagnostic::new(format!(
                "parameter `{name}` is defined in terms of itself: {}",
                path[start..].join(" → ")
            ))
            .help(format!(
                "give `{name}` a value that does not depend on itself, e.g. a number"
            ))
        } else {
            Diagnostic::new(format!(
                "parameter `{name}` is defined through more than {MAX_PARAM_CHAIN} other parameters"
            ))
            .help(format!(
                "define it more directly: at most {MAX_PARAM_CHAIN} parameters may stand for one another"
            ))
        });
    }
    let mut next = chain.to_vec();
    next.push(name.to_string());
    Ok(next)
}

fn substitute_at(
    node: &YNode,
    env: &Env,
    keep: &[&str],
    chain: &[String],
) -> Result<YNode, Diagnostic> {
    match &node.value {
        YValue::Str(s) if is_expr(s) => {
            if keep
                .iter()
                .any(|k| s == &format!("${k}") || s.starts_with(&format!("${k}.")))
            {
                return Ok(node.clone());
            }
            if let Some(name) = s.strip_prefix('$').filter(|n| !n.starts_with('(')) {
                if !is_ident(name) {
                    return Err(
                        Diagnostic::new(format!("`{s}` is not a parameter reference"))
                            .at(&node.path)
                            .help(
                                "write `$name` for a parameter or `$(expression)` for arithmetic",
                            ),
                    );
                }
                return match env.get(name) {
                    Some(v) => {
                        // The value keeps the location of the reference, where the user looks.
                        let mut v = match &v.value {
                            YValue::Str(_) | YValue::Seq(_) => {
                                let chain =
                                    follow_param(chain, name).map_err(|d| d.at(&node.path))?;
                                substitute_at(v, env, keep, &chain)?
                            }
                            _ => v.clone(),
                        };
                        relocate(&mut v, node);
                        Ok(v)
                    }
                    None => Err(unknown_var(name, env).at(&node.path)),
                };
            }
            let inner = s
                .strip_prefix("$(")
                .and_then(|r| r.strip_suffix(')'))
                .ok_or_else(|| {
                    Diagnostic::new(format!("unbalanced expression `{s}`"))
                        .at(&node.path)
                        .help("write `$(expression)`, e.g. `$(mid * 4)`")
                })?;
            let v = eval_at(inner, env, chain).map_err(|d| d.at(&node.path))?;
            Ok(YNode {
                value: match v {
                    EVal::Int(i) => YValue::Int(i),
                    EVal::Bool(b) => YValue::Bool(b),
                },
                path: node.path.clone(),
            })
        }
        YValue::Seq(items) => {
            let items: Vec<YNode> = items
                .iter()
                .map(|x| substitute_at(x, env, keep, chain))
                .collect::<Result<_, _>>()?;
            let size: usize = items.iter().map(YNode::size).sum();
            if size > MAX_LIST_VALUES {
                return Err(Diagnostic::new(format!(
                    "a list holds more than {MAX_LIST_VALUES} values once its parameters are substituted"
                ))
                .at(&node.path)
                .help("a list parameter made of other list parameters grows with every level: write the list out"));
            }
            Ok(YNode {
                value: YValue::Seq(items),
                path: node.path.clone(),
            })
        }
        _ => Ok(node.clone()),
    }
}

fn relocate(v: &mut YNode, at: &YNode) {
    v.path = at.path.clone();
    if let YValue::Seq(items) = &mut v.value {
        for (i, x) in items.iter_mut().enumerate() {
            x.path = at.path.index(i);
        }
    }
}

fn unknown_var(name: &str, env: &Env) -> Diagnostic {
    let names = env.names();
    let mut d = Diagnostic::new(format!("unknown parameter `{name}`"));
    if let Some(s) = crate::error::did_you_mean(name, names.iter().map(|s| s.as_str())) {
        d = d.help(format!("did you mean `{s}`?"));
    } else if names.is_empty() {
        d = d.help("declare it under the block's `params:` (or the model's `params:`)");
    } else {
        d = d.help(format!("known here: {}", names.join(", ")));
    }
    d
}

pub fn is_ident(s: &str) -> bool {
    let mut c = s.chars();
    matches!(c.next(), Some(ch) if ch.is_ascii_alphabetic() || ch == '_')
        && c.all(|ch| ch.is_ascii_alphanumeric() || ch == '_')
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Int(i64),
    Ident(String),
    Op(&'static str),
}

fn lex(src: &str) -> Result<Vec<Tok>, Diagnostic> {
    const OPS: [&str; 19] = [
        "//", "==", "!=", "<=", ">=", "&&", "||", "+", "-", "*", "/", "%", "(", ")", ",", "<", ">",
        "!", "?",
    ];
    let b = src.as_bytes();
    let mut i = 0;
    let mut out = Vec::new();
    while i < b.len() {
        let c = b[i] as char;
        if c.is_ascii_whitespace() {
            i += 1;
        } else if c.is_ascii_digit() {
            let st = i;
            while i < b.len() && (b[i] as char).is_ascii_digit() {
                i += 1;
            }
            if i < b.len() && (b[i] == b'.' || b[i].is_ascii_alphabetic()) {
                return Err(
                    Diagnostic::new(format!("`{}` is not an integer", &src[st..=i]))
                        .help("expressions use integers only"),
                );
            }
            let n: i64 = src[st..i]
                .parse()
                .map_err(|_| Diagnostic::new(format!("the number {} is too large", &src[st..i])))?;
            out.push(Tok::Int(n));
        } else if c.is_ascii_alphabetic() || c == '_' {
            let st = i;
            while i < b.len() && ((b[i] as char).is_ascii_alphanumeric() || b[i] == b'_') {
                i += 1;
            }
            out.push(Tok::Ident(src[st..i].to_string()));
        } else if let Some(op) = OPS.iter().find(|op| src[i..].starts_with(**op)) {
            if *op == "?" {
                return Err(Diagnostic::new("`? :` is not supported in expressions")
                    .help("write `if(condition, a, b)`"));
            }
            out.push(Tok::Op(op));
            i += op.len();
        } else {
            return Err(Diagnostic::new(format!("unexpected character `{c}` in expression `{src}`"))
                .help("expressions use integers, parameter names, + - * // / % ( ), comparisons and min/max/if"));
        }
    }
    Ok(out)
}

struct Parser<'a> {
    toks: Vec<Tok>,
    pos: usize,
    env: &'a Env,
    src: &'a str,
    /// Parameters followed to get here.
    chain: &'a [String],
    /// Current nesting of parentheses, calls and unary operators.
    nesting: usize,
}

/// Evaluates the text of an expression (without the surrounding `$( )`).
pub fn eval(src: &str, env: &Env) -> Result<EVal, Diagnostic> {
    eval_at(src, env, &[])
}

fn eval_at(src: &str, env: &Env, chain: &[String]) -> Result<EVal, Diagnostic> {
    env.charge(src.len())?;
    let toks = lex(src)?;
    let mut p = Parser {
        toks,
        pos: 0,
        env,
        src,
        chain,
        nesting: 0,
    };
    let v = p.or()?;
    if p.pos != p.toks.len() {
        return Err(Diagnostic::new(format!(
            "unexpected `{}` in expression `{src}`",
            p.show(p.pos)
        )));
    }
    Ok(v)
}

fn overflow(src: &str) -> Diagnostic {
    Diagnostic::new(format!("arithmetic overflow in `{src}`"))
        .help("every value must fit in a signed 64-bit integer: check the parameters it uses")
}

impl Parser<'_> {
    fn show(&self, i: usize) -> String {
        match self.toks.get(i) {
            Some(Tok::Int(n)) => n.to_string(),
            Some(Tok::Ident(s)) => s.clone(),
            Some(Tok::Op(o)) => o.to_string(),
            None => "end".into(),
        }
    }
    fn eat(&mut self, op: &str) -> bool {
        if matches!(self.toks.get(self.pos), Some(Tok::Op(o)) if *o == op) {
            self.pos += 1;
            true
        } else {
            false
        }
    }
    fn int(&self, v: EVal) -> Result<i64, Diagnostic> {
        match v {
            EVal::Int(i) => Ok(i),
            EVal::Bool(_) => Err(Diagnostic::new(format!(
                "a boolean used as a number in `{}`",
                self.src
            ))),
        }
    }
    fn boolean(&self, v: EVal) -> Result<bool, Diagnostic> {
        match v {
            EVal::Bool(b) => Ok(b),
            EVal::Int(_) => Err(Diagnostic::new(format!(
                "a number used as a condition in `{}`",
                self.src
            ))
            .help("compare it, e.g. `stride > 1`")),
        }
    }
    fn or(&mut self) -> Result<EVal, Diagnostic> {
        let mut l = self.and()?;
        while self.eat("||") {
            let r = self.and()?;
            l = EVal::Bool(self.boolean(l)? || self.boolean(r)?);
        }
        Ok(l)
    }
    fn and(&mut self) -> Result<EVal, Diagnostic> {
        let mut l = self.cmp()?;
        while self.eat("&&") {
            let r = self.cmp()?;
            l = EVal::Bool(self.boolean(l)? && self.boolean(r)?);
        }
        Ok(l)
    }
    fn cmp(&mut self) -> Result<EVal, Diagnostic> {
        let l = self.add()?;
        for op in ["==", "!=", "<=", ">=", "<", ">"] {
            if self.eat(op) {
                let r = self.add()?;
                if matches!(op, "==" | "!=") {
                    let eq = l == r;
                    return Ok(EVal::Bool(if op == "==" { eq } else { !eq }));
                }
                let (a, b) = (self.int(l)?, self.int(r)?);
                return Ok(EVal::Bool(match op {
                    "<=" => a <= b,
                    ">=" => a >= b,
                    "<" => a < b,
                    _ => a > b,
                }));
            }
        }
        Ok(l)
    }
    fn add(&mut self) -> Result<EVal, Diagnostic> {
        let mut l = self.mul()?;
        loop {
            let plus = if self.eat("+") {
                true
            } else if self.eat("-") {
                false
            } else {
                return Ok(l);
            };
            let r = self.mul()?;
            let (a, b) = (self.int(l)?, self.int(r)?);
            let v = if plus {
                a.checked_add(b)
            } else {
                a.checked_sub(b)
            };
            l = EVal::Int(v.ok_or_else(|| overflow(self.src))?);
        }
    }
    fn mul(&mut self) -> Result<EVal, Diagnostic> {
        let mut l = self.unary()?;
        loop {
            let op = if self.eat("*") {
                "*"
            } else if self.eat("//") {
                "//"
            } else if self.eat("/") {
                "/"
            } else if self.eat("%") {
                "%"
            } else {
                return Ok(l);
            };
            let r = self.unary()?;
            let (a, b) = (self.int(l)?, self.int(r)?);
            if op != "*" && b == 0 {
                return Err(
                    Diagnostic::new(format!("division by zero in `{}`", self.src)).help(
                        "check the parameter it divides by (a block argument, or its default)",
                    ),
                );
            }
            let v = match op {
                "*" => a.checked_mul(b),
                "//" => a.checked_div_euclid(b).map(|q| {
                    if b < 0 && a.rem_euclid(b) != 0 {
                        q - 1
                    } else {
                        q
                    }
                }),
                "%" => a.checked_rem_euclid(b),
                _ => {
                    if a % b != 0 {
                        return Err(Diagnostic::new(format!(
                            "`{}` gives a non-integer size ({a} / {b})",
                            self.src
                        ))
                        .help("use `//` for floor division or `ceil_div(a, b)` to round up"));
                    }
                    a.checked_div(b)
                }
            };
            l = EVal::Int(v.ok_or_else(|| overflow(self.src))?);
        }
    }
    fn unary(&mut self) -> Result<EVal, Diagnostic> {
        if self.nesting >= MAX_EXPR_NESTING {
            return Err(Diagnostic::new(format!(
                "the expression nests parentheses, calls or signs more than {MAX_EXPR_NESTING} deep"
            ))
            .help("simplify it, or split it across parameters"));
        }
        self.nesting += 1;
        let v = self.unary_inner();
        self.nesting -= 1;
        v
    }
    fn unary_inner(&mut self) -> Result<EVal, Diagnostic> {
        if self.eat("-") {
            let v = self.unary()?;
            let i = self.int(v)?;
            return Ok(EVal::Int(
                i.checked_neg().ok_or_else(|| overflow(self.src))?,
            ));
        }
        if self.eat("!") {
            let v = self.unary()?;
            return Ok(EVal::Bool(!self.boolean(v)?));
        }
        self.primary()
    }
    fn primary(&mut self) -> Result<EVal, Diagnostic> {
        let tok = self.toks.get(self.pos).cloned();
        self.pos += 1;
        match tok {
            Some(Tok::Int(n)) => Ok(EVal::Int(n)),
            Some(Tok::Op("(")) => {
                let v = self.or()?;
                if !self.eat(")") {
                    return Err(Diagnostic::new(format!("missing `)` in `{}`", self.src)));
                }
                Ok(v)
            }
            Some(Tok::Ident(name)) => {
                if name == "true" {
                    return Ok(EVal::Bool(true));
                }
                if name == "false" {
                    return Ok(EVal::Bool(false));
                }
                if self.eat("(") {
                    let mut args = Vec::new();
                    if !self.eat(")") {
                        loop {
                            args.push(self.or()?);
                            if self.eat(")") {
                                break;
                            }
                            if !self.eat(",") {
                                return Err(Diagnostic::new(format!(
                                    "expected `,` or `)` in `{}`",
                                    self.src
                                )));
                            }
                        }
                    }
                    return self.call(&name, &args);
                }
                match self.env.get(&name) {
                    Some(YNode {
                        value: YValue::Int(i),
                        ..
                    }) => Ok(EVal::Int(*i)),
                    Some(YNode {
                        value: YValue::Bool(b),
                        ..
                    }) => Ok(EVal::Bool(*b)),
                    Some(YNode {
                        value: YValue::Str(s),
                        ..
                    }) if is_expr(s) => {
                        let inner = s
                            .strip_prefix("$(")
                            .and_then(|r| r.strip_suffix(')'))
                            .unwrap_or(&s[1..]);
                        if let Some(v) = self.env.memo.borrow().get(&name) {
                            return Ok(*v);
                        }
                        let chain = follow_param(self.chain, &name)?;
                        let v = eval_at(inner, self.env, &chain)?;
                        self.env.memo.borrow_mut().insert(name, v);
                        Ok(v)
                    }
                    Some(other) => Err(Diagnostic::new(format!(
                        "parameter `{name}` is {} ({other}); arithmetic needs an integer",
                        other.kind()
                    ))),
                    None => Err(unknown_var(&name, self.env)),
                }
            }
            _ => Err(Diagnostic::new(format!(
                "unexpected `{}` in expression `{}`",
                self.show(self.pos - 1),
                self.src
            ))),
        }
    }
    fn call(&self, name: &str, args: &[EVal]) -> Result<EVal, Diagnostic> {
        let arity = |n: usize| -> Result<(), Diagnostic> {
            if args.len() == n {
                Ok(())
            } else {
                Err(Diagnostic::new(format!(
                    "`{name}` takes {n} arguments, got {}",
                    args.len()
                )))
            }
        };
        match name {
            "min" | "max" => {
                if args.is_empty() {
                    return Err(Diagnostic::new(format!(
                        "`{name}` needs at least one argument"
                    )));
                }
                let ints: Vec<i64> = args
                    .iter()
                    .map(|a| self.int(*a))
                    .collect::<Result<_, _>>()?;
                let v = if name == "min" {
                    ints.iter().min()
                } else {
                    ints.iter().max()
                };
                Ok(EVal::Int(*v.unwrap_or(&0)))
            }
            "abs" => {
                arity(1)?;
                Ok(EVal::Int(
                    self.int(args[0])?
                        .checked_abs()
                        .ok_or_else(|| overflow(self.src))?,
                ))
            }
            "if" => {
                arity(3)?;
                Ok(if self.boolean(args[0])? {
                    args[1]
                } else {
                    args[2]
                })
            }
            "ceil_div" => {
                arity(2)?;
                let (a, b) = (self.int(args[0])?, self.int(args[1])?);
                if b <= 0 {
                    return Err(Diagnostic::new(format!(
                        "ceil_div by {b} in `{}`",
                        self.src
                    )));
                }
                Ok(EVal::Int(
                    a.checked_add(b - 1)
                        .ok_or_else(|| overflow(self.src))?
                        .div_euclid(b),
                ))
            }
            "make_divisible" => {
                // torchvision's _make_divisible(v, d): round to the nearest multiple of d, at
                // least d, and never below 90% of v.
                arity(2)?;
                let (v, d) = (self.int(args[0])?, self.int(args[1])?);
                if d <= 0 || v < 0 {
                    return Err(Diagnostic::new(format!(
                        "make_divisible({v}, {d}) needs v ≥ 0 and d > 0"
                    )));
                }
                let half = d / 2;
                let mut n = (v.checked_add(half).ok_or_else(|| overflow(self.src))? / d * d).max(d);
                if n * 10 < v * 9 {
                    n += d;
                }
                Ok(EVal::Int(n))
            }
            _ => Err(Diagnostic::new(format!("unknown function `{name}`"))
                .help("available: min, max, abs, if, ceil_div, make_divisible")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::yaml::YamlPath;

    fn env(vars: &[(&str, i64)]) -> Env {
        let mut e = Env::new(None);
        for (k, v) in vars {
            e.set(k, YNode::synthetic(YValue::Int(*v), YamlPath::default()));
        }
        e
    }

    #[test]
    fn arithmetic() {
        let e = env(&[("mid", 64), ("in_ch", 256)]);
        assert_eq!(eval("mid * 4", &e).unwrap(), EVal::Int(256));
        assert_eq!(eval("in_ch // 2 + 1", &e).unwrap(), EVal::Int(129));
        assert_eq!(eval("(mid + 1) * 2 - 3 % 2", &e).unwrap(), EVal::Int(129));
        assert_eq!(eval("-7 // 2", &e).unwrap(), EVal::Int(-4));
        assert_eq!(eval("max(mid, 100, 3)", &e).unwrap(), EVal::Int(100));
        assert_eq!(eval("if(mid > 32, 1, 2)", &e).unwrap(), EVal::Int(1));
        assert_eq!(eval("ceil_div(7, 2)", &e).unwrap(), EVal::Int(4));
        assert_eq!(
            eval("mid == 64 && !(in_ch < 3)", &e).unwrap(),
            EVal::Bool(true)
        );
        // torchvision MobileNetV2: _make_divisible(32 * 0.75, 8) = 24, (int(1280*1.4), 8) = 1792
        assert_eq!(eval("make_divisible(24, 8)", &e).unwrap(), EVal::Int(24));
        assert_eq!(
            eval("make_divisible(1792, 8)", &e).unwrap(),
            EVal::Int(1792)
        );
        assert_eq!(eval("make_divisible(3, 8)", &e).unwrap(), EVal::Int(8));
    }

    #[test]
    fn errors() {
        let e = env(&[("mid", 64)]);
        assert!(eval("mid / 3", &e)
            .unwrap_err()
            .message
            .contains("non-integer"));
        assert!(eval("mid // 0", &e)
            .unwrap_err()
            .message
            .contains("division by zero"));
        assert!(eval("9223372036854775807 + 1", &e)
            .unwrap_err()
            .message
            .contains("overflow"));
        assert!(eval("mdi * 2", &e)
            .unwrap_err()
            .help
            .unwrap()
            .contains("mid"));
        for (src, message) in [
            ("mid ? 1 : 2", "`? :` is not supported in expressions"),
            ("1.5 * mid", "`1.` is not an integer"),
            ("(mid", "missing `)` in `(mid`"),
        ] {
            assert_eq!(eval(src, &e).unwrap_err().message, message, "{src}");
        }
    }
}

#[cfg(test)]
mod hardening_tests {
    use super::*;
    use crate::yaml::YamlPath;

    fn s(v: &str) -> YNode {
        YNode::synthetic(YValue::Str(v.to_string()), YamlPath::default())
    }

    /// Once a stack overflow: nesting is bounded, with an error rather than a crash.
    #[test]
    fn deep_expressions_are_errors() {
        let e = Env::new(None);
        let ok = format!("{}1{}", "(".repeat(50), ")".repeat(50));
        assert_eq!(eval(&ok, &e).unwrap(), EVal::Int(1));
        for deep in [
            format!("{}1{}", "(".repeat(100_000), ")".repeat(100_000)),
            format!("{}1", "-".repeat(100_000)),
            format!("{}true", "!".repeat(100_000)),
            format!("{}1{}", "max(".repeat(100_000), ")".repeat(100_000)),
        ] {
            let err = eval(&deep, &e).unwrap_err();
            assert!(err.message.contains("more than 64 deep"), "{err}");
        }
    }

    /// Once a stack overflow: parameters defined in terms of themselves.
    #[test]
    fn parameter_loops_are_errors() {
        let mut e = Env::new(None);
        e.set("a", s("$b"));
        e.set("b", s("$(a + 1)"));
        e.set("c", s("$c"));
        let err = substitute(&s("$a"), &e, &[]).unwrap_err();
        assert!(err.message.contains("a → b → a"), "{err}");
        let err = substitute(&s("$c"), &e, &[]).unwrap_err();
        assert!(err.message.contains("c → c"), "{err}");
        let err = eval("b * 2", &e).unwrap_err();
        assert!(err.message.contains("b → a → b"), "{err}");
        // A chain that ends is fine.
        e.set("x", s("$y"));
        e.set("y", s("$(z * 2)"));
        e.set("z", YNode::synthetic(YValue::Int(4), YamlPath::default()));
        assert_eq!(substitute(&s("$x"), &e, &[]).unwrap().value, YValue::Int(8));
    }

    /// Many names in one scope: indexed, and the last binding of a name wins.
    #[test]
    fn large_scopes() {
        let mut e = Env::new(None);
        for i in 0..10_000 {
            e.set(
                &format!("p{i}"),
                YNode::synthetic(YValue::Int(i), YamlPath::default()),
            );
        }
        e.set("p7", YNode::synthetic(YValue::Int(-7), YamlPath::default()));
        assert_eq!(eval("p9999 + p7", &e).unwrap(), EVal::Int(9992));
        let child = Env::new(Some(Rc::new(e)));
        assert_eq!(eval("p5", &child).unwrap(), EVal::Int(5));
    }
}
