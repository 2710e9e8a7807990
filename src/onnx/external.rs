//! ONNX "external data": tensors whose bytes live in a file beside the model
//! (`TensorProto.data_location = EXTERNAL`, keys `location`, `offset`, `length`), as
//! `torch.onnx.export(..., dynamo=True)` writes every weight by default (`model.onnx.data`) and
//! as any model over protobuf's 2 GiB must. [`resolve`] walks the model's tensors (initializers
//! and tensor attributes, sub-graphs included), checks each reference — the location a relative
//! path without `..`, the offset and length numbers, the length equal to what the tensor's dims
//! and data type need, the total within [`MAX_EXTERNAL_BYTES`] — and asks the caller's reader
//! for exactly those bytes, which become the tensor's `raw_data`. No IO here: the CLI's reader
//! opens the file relative to the model's folder.

use super::proto::{tensor_proto, AttributeProto, GraphProto, ModelProto, TensorProto};
use crate::error::Diagnostic;

/// Most bytes of external data one model may read, over all its tensors (8 GiB): more than any
/// model whose weights fit the executor's largest memory budget as f32 needs at 2 bytes per
/// element, and a bound on what a file can make archscope read.
pub const MAX_EXTERNAL_BYTES: u64 = 8 << 30;

/// Most tensors with external data one model may have.
pub const MAX_EXTERNAL_TENSORS: usize = 1 << 20;

/// One tensor's external data, checked: `length` bytes of `location` from `offset`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExternalRef {
    /// The tensor's name (for messages).
    pub tensor: String,
    /// A relative path from the model's folder, `/`-separated, without `.` or `..` steps.
    pub location: String,
    pub offset: u64,
    pub length: u64,
}

/// Reads one reference's bytes (exactly `length` of them), or says why it cannot (the message
/// names the file and what is wrong; [`resolve`] adds the tensor and the help line).
pub type ExternalReader<'a> = dyn FnMut(&ExternalRef) -> Result<Vec<u8>, String> + 'a;

/// Bytes per element of an ONNX data type, for the fixed-size types.
fn element_bytes(dtype: i32) -> Option<u64> {
    use tensor_proto::DataType as D;
    let d = D::try_from(dtype).ok()?;
    Some(match d {
        D::Float | D::Int32 | D::Uint32 => 4,
        D::Double | D::Int64 | D::Uint64 | D::Complex64 => 8,
        D::Complex128 => 16,
        D::Float16 | D::Bfloat16 | D::Int16 | D::Uint16 => 2,
        D::Uint8 | D::Int8 | D::Bool => 1,
        D::Float8e4m3fn | D::Float8e4m3fnuz | D::Float8e5m2 | D::Float8e5m2fnuz | D::Float8e8m0 => {
            1
        }
        _ => return None,
    })
}

fn is_external(t: &TensorProto) -> bool {
    t.data_location == Some(tensor_proto::DataLocation::External as i32)
        || !t.external_data.is_empty()
}

const HELP: &str = "an ONNX model's external data is a file beside the model named by a relative path (onnx.save(model, path, save_as_external_data=True, location=\"model.onnx.data\")); keep the .onnx and its data file together, or save the model with its weights inside (onnx.save(onnx.load(path), new_path, save_as_external_data=False) below 2 GiB)";

/// Checks one tensor's external-data keys; `name` for messages.
fn reference(file: &str, t: &TensorProto) -> Result<ExternalRef, Diagnostic> {
    let name = t.name.clone().unwrap_or_default();
    let err = |what: String| Diagnostic::new(format!("{file}: tensor `{name}`: {what}")).help(HELP);
    let mut location = None;
    let mut offset = None;
    let mut length = None;
    for e in &t.external_data {
        let key = e.key.as_deref().unwrap_or("");
        let value = e.value.as_deref().unwrap_or("");
        let number = |v: &str| {
            v.parse::<u64>().map_err(|_| {
                err(format!(
                    "external data `{key}` is `{v}`, not a whole number of bytes"
                ))
            })
        };
        let slot = match key {
            "location" => {
                location = Some(value.to_string());
                continue;
            }
            "offset" => &mut offset,
            "length" => &mut length,
            // A SHA-1 of the data: not verified (no hashing here); the length is.
            "checksum" => continue,
            other => {
                return Err(err(format!(
                    "external data key `{other}` is not one ONNX defines (location, offset, length, checksum)"
                )))
            }
        };
        if slot.is_some() {
            return Err(err(format!("external data key `{key}` is given twice")));
        }
        *slot = Some(number(value)?);
    }
    let Some(location) = location else {
        return Err(err(
            "its data is marked external but no `location` names the file".into(),
        ));
    };
    check_location(&location).map_err(|w| {
        err(format!(
            "external data location `{}` {w}",
            location.escape_debug()
        ))
    })?;
    let dtype = t.data_type.unwrap_or(0);
    let Some(size) = element_bytes(dtype) else {
        return Err(err(format!(
            "its external data has data type {dtype} ({}), which has no fixed size per element",
            super::proto::dtype_name(dtype)
        )));
    };
    let need = super::proto::element_count(t)
        .and_then(|n| n.checked_mul(size))
        .ok_or_else(|| err("its dims are negative or their product overflows".into()))?;
    if let Some(l) = length {
        if l != need {
            return Err(err(format!(
                "external data `length` is {l} bytes, but its dims {:?} of {} need {need}",
                t.dims,
                super::proto::dtype_name(dtype)
            )));
        }
    }
    let offset = offset.unwrap_or(0);
    if offset.checked_add(need).is_none() {
        return Err(err(format!(
            "external data offset {offset} plus {need} bytes overflows"
        )));
    }
    Ok(ExternalRef {
        tensor: name.clone(),
        location,
        offset,
        length: need,
    })
}

/// A location must be a relative path inside the model's folder: not empty, no leading `/` or
/// `\`, no drive letter, no `.`/`..` step, no NUL, no backslash (ONNX paths are `/`-separated).
fn check_location(loc: &str) -> Result<(), &'static str> {
    if loc.is_empty() {
        return Err("is empty");
    }
    if loc.contains('\0') {
        return Err("holds a NUL character");
    }
    if loc.starts_with('/') || loc.contains('\\') || loc.as_bytes().get(1) == Some(&b':') {
        return Err("is not a relative `/`-separated path (archscope reads external data only from the model's folder and below)");
    }
    if loc
        .split('/')
        .any(|s| s.is_empty() || s == "." || s == "..")
    {
        return Err("has an empty, `.` or `..` step (archscope reads external data only from the model's folder and below)");
    }
    Ok(())
}

fn tensors_of<'m>(g: &'m mut GraphProto, out: &mut Vec<&'m mut TensorProto>) {
    fn attr<'m>(a: &'m mut AttributeProto, out: &mut Vec<&'m mut TensorProto>) {
        if let Some(t) = a.t.as_mut() {
            out.push(t);
        }
        out.extend(a.tensors.iter_mut());
        if let Some(g) = a.g.as_mut() {
            tensors_of(g, out);
        }
        for g in a.graphs.iter_mut() {
            tensors_of(g, out);
        }
    }
    out.extend(g.initializer.iter_mut());
    for n in g.node.iter_mut() {
        for a in n.attribute.iter_mut() {
            attr(a, out);
        }
    }
}

/// Reads every external tensor of `model` through `read` into its `raw_data`; returns how many
/// there were. Every reference is checked before anything is read.
pub fn resolve(
    file: &str,
    model: &mut ModelProto,
    read: &mut ExternalReader<'_>,
) -> Result<usize, Diagnostic> {
    let Some(graph) = model.graph.as_mut() else {
        return Ok(0);
    };
    let mut all = Vec::new();
    tensors_of(graph, &mut all);
    let mut todo = Vec::new();
    let mut total = 0u64;
    for t in all.into_iter().filter(|t| is_external(t)) {
        if todo.len() >= MAX_EXTERNAL_TENSORS {
            return Err(Diagnostic::new(format!(
                "{file}: more than {MAX_EXTERNAL_TENSORS} tensors keep their data in external files, the most archscope reads"
            ))
            .help(HELP));
        }
        let r = reference(file, t)?;
        total = total.saturating_add(r.length);
        if total > MAX_EXTERNAL_BYTES {
            return Err(Diagnostic::new(format!(
                "{file}: tensor `{}` takes the external data past {MAX_EXTERNAL_BYTES} bytes (8 GiB), the most archscope reads for one model",
                r.tensor
            ))
            .help("inspect a smaller model, or export this one graph only (export_params=False): summary, rf, dot and audit need no weights"));
        }
        todo.push((t, r));
    }
    let n = todo.len();
    for (t, r) in todo {
        let bytes = read(&r).map_err(|why| {
            Diagnostic::new(format!(
                "{file}: tensor `{}`: cannot read its external data ({} bytes at offset {} of `{}`): {why}",
                r.tensor, r.length, r.offset, r.location
            ))
            .help(HELP)
        })?;
        if bytes.len() as u64 != r.length {
            return Err(Diagnostic::new(format!(
                "{file}: tensor `{}`: its external data reader returned {} bytes where {} were asked",
                r.tensor,
                bytes.len(),
                r.length
            ))
            .help(HELP));
        }
        t.raw_data = Some(bytes);
        t.external_data.clear();
        t.data_location = None;
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::onnx::proto::StringStringEntryProto;

    fn ext(name: &str, dims: &[i64], keys: &[(&str, &str)]) -> TensorProto {
        TensorProto {
            name: Some(name.into()),
            dims: dims.to_vec(),
            data_type: Some(1),
            data_location: Some(tensor_proto::DataLocation::External as i32),
            external_data: keys
                .iter()
                .map(|(k, v)| StringStringEntryProto {
                    key: Some((*k).into()),
                    value: Some((*v).into()),
                })
                .collect(),
            ..Default::default()
        }
    }

    fn model(ts: Vec<TensorProto>) -> ModelProto {
        ModelProto {
            graph: Some(GraphProto {
                initializer: ts,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn msg(ts: Vec<TensorProto>) -> String {
        let mut m = model(ts);
        let mut never =
            |_: &ExternalRef| -> Result<Vec<u8>, String> { panic!("read before the checks") };
        resolve("m.onnx", &mut m, &mut never)
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn reads_each_reference_exactly() {
        let mut m = model(vec![
            ext(
                "w",
                &[2, 3],
                &[
                    ("location", "m.onnx.data"),
                    ("offset", "16"),
                    ("length", "24"),
                ],
            ),
            ext("b", &[3], &[("location", "sub/b.bin")]),
        ]);
        let mut asked = Vec::new();
        let mut read = |r: &ExternalRef| {
            asked.push(r.clone());
            Ok(vec![7u8; r.length as usize])
        };
        assert_eq!(resolve("m.onnx", &mut m, &mut read).unwrap(), 2);
        assert_eq!(
            asked,
            vec![
                ExternalRef {
                    tensor: "w".into(),
                    location: "m.onnx.data".into(),
                    offset: 16,
                    length: 24
                },
                ExternalRef {
                    tensor: "b".into(),
                    location: "sub/b.bin".into(),
                    offset: 0,
                    length: 12
                },
            ]
        );
        let g = m.graph.unwrap();
        assert_eq!(g.initializer[0].raw_data.as_deref(), Some(&[7u8; 24][..]));
        assert!(
            g.initializer[0].external_data.is_empty() && g.initializer[0].data_location.is_none()
        );
    }

    #[test]
    fn bad_references_are_refused_before_reading() {
        let m = msg(vec![ext("w", &[2], &[("location", "../w.bin")])]);
        assert!(
            m.contains(
                "tensor `w`: external data location `../w.bin` has an empty, `.` or `..` step"
            ),
            "{m}"
        );
        let m = msg(vec![ext("w", &[2], &[("location", "/etc/passwd")])]);
        assert!(m.contains("is not a relative `/`-separated path"), "{m}");
        let m = msg(vec![ext("w", &[2], &[("location", "C:\\w.bin")])]);
        assert!(m.contains("is not a relative"), "{m}");
        let m = msg(vec![ext(
            "w",
            &[2, 3],
            &[("location", "d"), ("length", "20")],
        )]);
        assert!(
            m.contains("`length` is 20 bytes, but its dims [2, 3] of FLOAT need 24"),
            "{m}"
        );
        let m = msg(vec![ext("w", &[2], &[("location", "d"), ("offset", "-1")])]);
        assert!(
            m.contains("external data `offset` is `-1`, not a whole number of bytes"),
            "{m}"
        );
        let m = msg(vec![ext("w", &[2], &[("offset", "0")])]);
        assert!(m.contains("no `location` names the file"), "{m}");
        let m = msg(vec![ext(
            "w",
            &[2],
            &[("location", "d"), ("basepath", "x")],
        )]);
        assert!(m.contains("key `basepath` is not one ONNX defines"), "{m}");
        let m = msg(vec![ext(
            "w",
            &[2],
            &[("location", "d"), ("offset", "1"), ("offset", "2")],
        )]);
        assert!(m.contains("key `offset` is given twice"), "{m}");
        let m = msg(vec![ext(
            "w",
            &[2],
            &[("location", "d"), ("offset", &u64::MAX.to_string())],
        )]);
        assert!(m.contains("plus 8 bytes overflows"), "{m}");
        let mut s = ext("s", &[2], &[("location", "d")]);
        s.data_type = Some(8);
        let m = msg(vec![s]);
        assert!(
            m.contains("data type 8 (STRING), which has no fixed size"),
            "{m}"
        );
    }

    #[test]
    fn the_total_is_bounded_before_reading() {
        // 2^31 floats (8 GiB) plus one more: over the bound, refused at the second tensor.
        let m = msg(vec![
            ext("a", &[1 << 31], &[("location", "d")]),
            ext("b", &[1], &[("location", "d")]),
        ]);
        assert!(
            m.contains("tensor `b` takes the external data past 8589934592 bytes"),
            "{m}"
        );
    }

    #[test]
    fn a_short_reader_is_an_error() {
        let mut m = model(vec![ext("w", &[4], &[("location", "d")])]);
        let mut read = |_: &ExternalRef| Ok(vec![0u8; 3]);
        let e = resolve("m.onnx", &mut m, &mut read)
            .unwrap_err()
            .to_string();
        assert!(e.contains("returned 3 bytes where 16 were asked"), "{e}");
        let mut read = |_: &ExternalRef| Err("the file `d` is missing".to_string());
        let e = resolve("m.onnx", &mut m, &mut read)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("tensor `w`: cannot read its external data (16 bytes at offset 0 of `d`): the file `d` is missing"),
            "{e}"
        );
    }
}
