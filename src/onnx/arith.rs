//! The ONNX reader's arithmetic with a constant or a learned tensor: `Add`, `Sub`, `Mul`, `Div`
//! and `Pow` of a computed tensor and a tensor the file holds (either order), read as a `scalar`
//! layer (a number, or a tensor of its shape broadcast against the input) or, for `Add`/`Mul` by
//! a learned tensor of several elements, as a `parameter` layer and `add`/`multiply`.
//!
//! What PyTorch counts the tensor as (nothing, a buffer or a parameter) follows one rule, in
//! this order, because the exporters write the three alike (measured by scripts/onnx_arith.py):
//! 1. an initializer whose value_info carries torch.export's
//!    `pkg.torch.export.graph_signature.InputSpec.kind` (the dynamo exporter writes it; so does
//!    `archscope export` for buffers) is what that says: `PARAMETER` a parameter, `BUFFER` a
//!    buffer, `CONSTANT_TENSOR` (a plain tensor attribute) a constant;
//! 2. a `Constant` node's output, a value folded here, dynamo's lifted numbers (`val_N`, and any
//!    undeclared initializer of one element in a file that declares kinds, such as
//!    `scalar_tensor_default`) and any initializer named with a `/` (archscope's constants,
//!    `layer/…`) is a constant;
//! 3. any other initializer is a parameter: TorchScript writes parameters and registered
//!    buffers alike, under their state_dict names, and the exporters' folded results
//!    (`onnx::Mul_15`, dynamo's `mul`, `embedding_1`) are computed from either; the file cannot
//!    tell a buffer from a parameter there (docs/ONNX.md).

use super::*;

/// The value_info metadata key under which torch.export's exporter names an initializer's kind.
pub(crate) const KIND_KEY: &str = "pkg.torch.export.graph_signature.InputSpec.kind";

/// Per initializer that arithmetic has read as a learned tensor or a buffer, the layer that
/// holds it (a `parameter`, or the `scalar` of its first reader): a later reader of the same
/// tensor (an exporter shares one initializer) uses that `parameter`, or reads its values as a
/// constant, so that it is counted once.
pub(super) type Learned = HashMap<String, (String, bool)>;

/// Whether a graph input declares itself a parameter or a buffer (a graph-only
/// `archscope export`: its weights are graph inputs).
pub(super) fn declared_weight(v: &proto::ValueInfoProto) -> bool {
    v.metadata_props.iter().any(|p| {
        p.key.as_deref() == Some(KIND_KEY)
            && matches!(p.value.as_deref(), Some("PARAMETER" | "BUFFER"))
    })
}

/// What the tensor operand counts as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Constant,
    Buffer,
    Parameter,
}

impl Kind {
    fn key(self) -> &'static str {
        match self {
            Kind::Constant => "",
            Kind::Buffer => ", kind: buffer",
            Kind::Parameter => ", kind: parameter",
        }
    }
}

/// Whether `name` is dynamo's name for a number it lifted into an initializer (`val_12`).
fn lifted_number(name: &str) -> bool {
    name.strip_prefix("val_")
        .is_some_and(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
}

/// The tensor input `k` of `n` stands for: the initializer it holds (through an Identity), else
/// the input's own name.
fn tensor_of<'v>(n: &'v NodeProto, v: &'v Val, k: usize) -> &'v str {
    match v {
        Val::Const {
            init: Some(name), ..
        } => name,
        _ => &n.input[k],
    }
}

/// Whether a constant or a shaped weight holds one element.
fn one_element(v: &Val) -> bool {
    match v {
        Val::Const { dims, .. } | Val::Shaped { dims } => numel(dims) == 1,
        Val::Act { .. } => false,
    }
}

impl<'a> Reader<'a> {
    /// The kind the file declares for tensor `name` (rule 1), if it declares one.
    fn declared_kind(&self, name: &str) -> Option<&'a str> {
        let g = self.graph;
        g.value_info
            .iter()
            .chain(&g.input)
            .filter(|v| v.name.as_deref() == Some(name))
            .flat_map(|v| &v.metadata_props)
            .find(|p| p.key.as_deref() == Some(KIND_KEY))
            .and_then(|p| p.value.as_deref())
    }

    /// Whether the file declares any tensor's kind (a torch.export / dynamo file).
    fn declares_kinds(&self) -> bool {
        let g = self.graph;
        g.value_info
            .iter()
            .chain(&g.input)
            .flat_map(|v| &v.metadata_props)
            .any(|p| p.key.as_deref() == Some(KIND_KEY))
    }

    /// What input `k` of node `n` counts as, by the module's rule.
    fn kind_of(&self, n: &NodeProto, v: &Val, k: usize) -> Kind {
        let name = tensor_of(n, v, k);
        let init = match v {
            Val::Const { init: None, .. } => return Kind::Constant,
            Val::Const { .. } => true,
            // A weight known by its shape (a graph input, or a `parameter`'s output read
            // through an Identity): no constant's name rule.
            _ => false,
        };
        match self.declared_kind(name) {
            Some("PARAMETER") => Kind::Parameter,
            Some("BUFFER") => Kind::Buffer,
            Some("CONSTANT_TENSOR") => Kind::Constant,
            _ if init && (lifted_number(name) || name.contains('/')) => Kind::Constant,
            // A number dynamo lifted (`scalar_tensor_default`): one element left undeclared in a
            // file that declares its weights' kinds.
            _ if init && one_element(v) && self.declares_kinds() => Kind::Constant,
            _ => Kind::Parameter,
        }
    }

    /// `op` (`Add`, `Sub`, `Mul`, `Div`, `Pow`) of a computed tensor and a tensor the file holds
    /// (the caller has handled two computed tensors and the multi-node patterns).
    pub(super) fn arith(
        &mut self,
        i: usize,
        n: &NodeProto,
        op: &str,
        a: &Val,
        b: &Val,
    ) -> Result<(), Diagnostic> {
        let (r, shape, c, k) = match (a, b) {
            (Val::Act { r, shape }, c @ (Val::Const { .. } | Val::Shaped { .. })) => {
                (r.clone(), shape.clone(), c, 1)
            }
            (c @ (Val::Const { .. } | Val::Shaped { .. }), Val::Act { r, shape }) => {
                (r.clone(), shape.clone(), c, 0)
            }
            _ => return Err(self
                .err(i, n, format!("archscope cannot map this `{op}`: archscope reads arithmetic of a computed tensor with a computed tensor (`add`, `multiply`) or with a tensor the file holds (`scalar`), not {}", match op { "Sub" => "a subtraction of these inputs", "Div" => "a division of these inputs", "Pow" => "a power of these inputs", _ => "these inputs" }))
                .help("describe the model in YAML")),
        };
        let first = k == 0;
        let operator = match (op, first) {
            ("Add", _) => "add",
            ("Mul", _) => "mul",
            ("Sub", false) => "sub",
            ("Sub", true) => "rsub",
            ("Div", false) => "div",
            ("Div", true) => "rdiv",
            ("Pow", false) => "pow",
            _ => {
                return Err(self
                    .err(i, n, "archscope cannot map this `Pow`: a constant raised to a computed tensor")
                    .help("archscope reads a computed tensor raised to a constant (`x ** c`); describe the model in YAML"))
            }
        };
        let dims = match c {
            Val::Const { dims, .. } | Val::Shaped { dims } => dims.clone(),
            Val::Act { .. } => unreachable!("matched above"),
        };
        let kind = self.kind_of(n, c, k);
        // NumPy's broadcasting, aligned from the right; archscope's `scalar` keeps the input's
        // shape, so the constant may not enlarge it.
        let off = shape.len().checked_sub(dims.len());
        if let Some(j) =
            (0..dims.len()).find(|&j| off.is_none_or(|o| dims[j] != 1 && dims[j] != shape[o + j]))
        {
            let what = match off {
                None => format!(
                    "has {} dimensions and the computed tensor {}",
                    dims.len(),
                    shape.len()
                ),
                Some(o) => format!(
                    "is {} in its dimension {j} where the computed tensor ({}) has {}",
                    dims[j],
                    dims_text(&shape),
                    shape[o + j]
                ),
            };
            return Err(self
                .err(i, n, format!("this `{op}`'s tensor `{}` of shape {} {what}: archscope reads a tensor that broadcasts into the computed one (each dimension, from the right, 1 or the same), keeping its shape", excerpt(&n.input[k]), dims_text(&dims)))
                .help("expand the computed tensor explicitly before the arithmetic, or describe the model in YAML"));
        }
        let count = numel(&dims);
        if count > crate::layers::MAX_CONSTANT_ELEMENTS {
            return Err(self
                .err(i, n, format!("this `{op}`'s tensor `{}` has {count} elements; archscope's largest constant is 2^20 = {}", excerpt(&n.input[k]), crate::layers::MAX_CONSTANT_ELEMENTS))
                .help("describe the model in YAML with a `parameter` layer"));
        }
        let tname = tensor_of(n, c, k).to_string();
        let earlier = self.learned.get(&tname).cloned();
        // `Exp` of the tensor (learned_exp.rs): the layer applies its exponential.
        let exp = self.exp_of_learned(n, k);
        if kind == Kind::Parameter && count > 1 && (op == "Add" || op == "Mul") && !exp {
            // A learned tensor of several elements: a `parameter` layer and the op, as the zoo
            // writes a layer scale or a position embedding; one `parameter` for every reader.
            let pid = match earlier {
                Some((pid, true)) => pid,
                _ => {
                    let Some((wd, wdata)) = self.weight(i, n, k)? else {
                        return Err(self.err(i, n, format!("{op} has no input {k}")).help(AGAIN));
                    };
                    let pbase = sanitize(n.input[k].trim_end_matches(".weight"));
                    let pid =
                        self.emit(i, n, &pbase, format!("op: parameter, shape: {}", list(&wd)));
                    self.put_weight(&pid, "", &wd, wdata);
                    if earlier.is_none() {
                        self.learned.insert(tname, (pid.clone(), true));
                    }
                    pid
                }
            };
            let name = if op == "Add" { "add" } else { "multiply" };
            return self.layer(i, n, name, format!("op: {name}, in: [{r}, {pid}]"), shape);
        }
        let values: Option<Vec<f32>> = match self.weight(i, n, k)? {
            Some((_, v)) => v,
            None => None,
        };
        let exp_key = if exp { ", exp: true" } else { "" };
        // A buffer or parameter an earlier node has counted: its values, as a constant.
        let kind = match (kind, &earlier) {
            (Kind::Constant, _) | (_, None) => kind,
            (_, Some((layer, _))) => {
                if values.is_none() {
                    return Err(self
                        .err(i, n, format!("this `{op}` reads `{}` again (layer `{layer}` reads it first), and the file does not hold its values", excerpt(&tname)))
                        .help("export with the weights (export_params=True): a tensor read twice is counted once, at its first reader, and the others read its values"));
                }
                Kind::Constant
            }
        };
        if kind == Kind::Constant {
            let values = values.map(|v| {
                if exp {
                    v.iter().map(|x| x.exp()).collect()
                } else {
                    v
                }
            });
            let Some(values) = values else {
                return Err(self
                    .err(i, n, format!("this `{op}` reads the constant `{}`, whose values the file does not hold", excerpt(&n.input[k])))
                    .help("export with the weights (export_params=True), or describe the model in YAML"));
            };
            if let Some(j) = values
                .iter()
                .position(|v| !v.is_finite() || (operator == "div" && *v == 0.0))
            {
                let at = if values.len() > 1 {
                    format!(" (element {j})")
                } else {
                    String::new()
                };
                return Err(self
                    .err(i, n, format!("this `{op}`'s constant is {}{at}", values[j]))
                    .help("export with finite constants and no division by zero"));
            }
            // One number (of any rank that fits): `value: V`; a tensor: its values and shape.
            let body = if values.len() == 1 {
                format!("value: {}", yf(f64::from(values[0])))
            } else {
                let v: Vec<String> = values.iter().map(|&x| yf(f64::from(x))).collect();
                format!("value: [{}], shape: {}", v.join(", "), list(&dims))
            };
            return self.layer(
                i,
                n,
                "scalar",
                format!("op: scalar, in: {r}, operator: {operator}, {body}"),
                shape,
            );
        }
        // A buffer or a parameter: its values are the layer's weight (loaded under the layer's
        // own name), its shape the file's (a rank-0 number has none).
        let shape_key = if dims.is_empty() {
            String::new()
        } else {
            format!(", shape: {}", list(&dims))
        };
        let base = sanitize(&tname);
        let id = self.emit(
            i,
            n,
            &base,
            format!(
                "op: scalar, in: {r}, operator: {operator}{shape_key}{}{exp_key}",
                kind.key()
            ),
        );
        self.learned.insert(tname, (id.clone(), false));
        self.put_weight(&id, "", &dims, values);
        self.set_out(n, 0, id, shape);
        Ok(())
    }
}

/// Dimensions as `1×3×1×1` (`scalar` for rank 0).
fn dims_text(d: &[u64]) -> String {
    if d.is_empty() {
        return "scalar".to_string();
    }
    let p: Vec<String> = d.iter().map(u64::to_string).collect();
    p.join("×")
}
