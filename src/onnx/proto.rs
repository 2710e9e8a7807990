//! ONNX's protobuf messages as Rust types, and the few helpers both directions share: decoding
//! a `ModelProto` from bytes (a truncated or malformed file is a located [`Diagnostic`] naming
//! the byte offset prost reports), encoding one, and moving tensor data between
//! [`TensorProto`] and plain `f32`/`i64` vectors. The types are prost's, generated from the
//! vendored `src/onnx/proto/onnx.proto` (ONNX, Apache-2.0) by `scripts/regen_onnx_proto.sh`
//! (protox + prost-build, no system `protoc`) and committed as `proto_gen.rs.in` (not `.rs`: it is no module of its own), so the build
//! needs the `prost` crate alone.

use prost::Message;

use crate::error::Diagnostic;

#[allow(clippy::all, clippy::pedantic, missing_docs, rustdoc::all)]
#[rustfmt::skip]
mod generated {
    include!("proto_gen.rs.in");
}

pub use generated::*;

/// `TensorProto.data_type` values archscope reads and writes.
pub mod dtype {
    pub const FLOAT: i32 = 1;
    pub const UINT8: i32 = 2;
    pub const INT8: i32 = 3;
    pub const INT32: i32 = 6;
    pub const INT64: i32 = 7;
    pub const BOOL: i32 = 9;
    pub const FLOAT16: i32 = 10;
    pub const DOUBLE: i32 = 11;
    pub const BFLOAT16: i32 = 16;
}

/// The ONNX IR version archscope writes (ONNX 1.16+ reads it; onnxruntime ≥ 1.18).
pub const IR_VERSION: i64 = 9;

/// Decodes a model; `file` names it in the message. On a failure the message gives the byte
/// offset and field path where the wire format breaks ([`locate_decode_error`]), prost's own
/// words as a note, and what to do.
pub fn decode_model(file: &str, bytes: &[u8]) -> Result<ModelProto, Diagnostic> {
    ModelProto::decode(bytes).map_err(|e| {
        let help = "export the model again (torch.onnx.export, tf2onnx …) and check it with `python -m onnx.checker` or Netron";
        match locate_decode_error(bytes) {
            Some((at, path, what)) => Diagnostic::new(format!(
                "{file}: not a readable ONNX model ({} bytes): at byte {at}, {path}: {what}",
                bytes.len()
            ))
            .note(format!("protobuf's decoder says: {e}"))
            .help(help),
            None => Diagnostic::new(format!(
                "{file}: not a readable ONNX model ({} bytes): {e}",
                bytes.len()
            ))
            .note("the protobuf ends early (a truncated file) or holds bytes that are no ModelProto")
            .help(help),
        }
    })
}

/// Encodes a model into protobuf bytes.
pub fn encode_model(model: &ModelProto) -> Vec<u8> {
    model.encode_to_vec()
}

/// A float tensor with `dims`, its data as little-endian `raw_data` (what exporters write).
pub fn tensor_f32(name: &str, dims: &[i64], data: &[f32]) -> TensorProto {
    let mut raw = Vec::with_capacity(data.len() * 4);
    for v in data {
        raw.extend_from_slice(&v.to_le_bytes());
    }
    TensorProto {
        name: Some(name.to_string()),
        dims: dims.to_vec(),
        data_type: Some(dtype::FLOAT),
        raw_data: Some(raw),
        ..Default::default()
    }
}

/// An int64 tensor with `dims` (shapes, axes, pads), as `raw_data`.
pub fn tensor_i64(name: &str, dims: &[i64], data: &[i64]) -> TensorProto {
    let mut raw = Vec::with_capacity(data.len() * 8);
    for v in data {
        raw.extend_from_slice(&v.to_le_bytes());
    }
    TensorProto {
        name: Some(name.to_string()),
        dims: dims.to_vec(),
        data_type: Some(dtype::INT64),
        raw_data: Some(raw),
        ..Default::default()
    }
}

/// Elements a tensor's `dims` declare (`None`: a negative dimension or an overflow).
pub fn element_count(t: &TensorProto) -> Option<u64> {
    t.dims.iter().try_fold(1u64, |acc, &d| {
        u64::try_from(d).ok().and_then(|d| acc.checked_mul(d))
    })
}

/// IEEE half to single precision.
pub fn f16_to_f32(h: u16) -> f32 {
    let sign = u32::from(h >> 15) << 31;
    let exp = u32::from((h >> 10) & 0x1f);
    let frac = u32::from(h & 0x3ff);
    let bits = match (exp, frac) {
        (0, 0) => sign,
        (0, f) => {
            // Subnormal: normalise.
            let mut e: i32 = -14;
            let mut f = f;
            while f & 0x400 == 0 {
                f <<= 1;
                e -= 1;
            }
            sign | (((e + 127) as u32) << 23) | ((f & 0x3ff) << 13)
        }
        (0x1f, 0) => sign | 0x7f80_0000,
        (0x1f, f) => sign | 0x7f80_0000 | (f << 13),
        (e, f) => sign | ((e + 112) << 23) | (f << 13),
    };
    f32::from_bits(bits)
}

/// Why a tensor's data cannot be read as numbers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DataError {
    /// Stored in a file beside the model (`data_location: EXTERNAL`).
    External,
    /// A data type archscope does not read (its `TensorProto.DataType` number).
    Type(i32),
    /// The data holds `found` elements where the dims declare `expected` (or `raw_data`'s
    /// byte length is no multiple of the element size).
    Count { expected: u64, found: u64 },
    /// A dimension is negative, or the element count overflows.
    Dims,
}

impl DataError {
    /// One line saying what is wrong with tensor `name`.
    pub fn describe(&self, name: &str) -> String {
        match self {
            DataError::External => format!("tensor `{name}` keeps its data in an external file"),
            DataError::Type(t) => format!("tensor `{name}` has data type {t} ({})", dtype_name(*t)),
            DataError::Count { expected, found } => {
                format!("tensor `{name}` declares {expected} elements but holds {found}")
            }
            DataError::Dims => format!("tensor `{name}` has a negative or overflowing dimension"),
        }
    }
}

/// ONNX's name of a `TensorProto.DataType` number.
pub fn dtype_name(t: i32) -> &'static str {
    tensor_proto::DataType::try_from(t)
        .map(|d| d.as_str_name())
        .unwrap_or("unknown")
}

fn is_external(t: &TensorProto) -> bool {
    t.data_location == Some(tensor_proto::DataLocation::External as i32)
        || !t.external_data.is_empty()
}

/// The tensor's elements as `f32` (FLOAT, FLOAT16, DOUBLE, BFLOAT16 and the integer types,
/// from `raw_data` or the typed fields). `max_elements` caps what is decoded.
pub fn tensor_to_f32(t: &TensorProto) -> Result<Vec<f32>, DataError> {
    if is_external(t) {
        return Err(DataError::External);
    }
    let n = element_count(t).ok_or(DataError::Dims)?;
    let dt = t.data_type.unwrap_or(0);
    let out: Vec<f32> = if let Some(raw) = &t.raw_data {
        let size = match dt {
            dtype::FLOAT | dtype::INT32 => 4,
            dtype::FLOAT16 | dtype::BFLOAT16 => 2,
            dtype::DOUBLE | dtype::INT64 => 8,
            dtype::UINT8 | dtype::INT8 | dtype::BOOL => 1,
            other => return Err(DataError::Type(other)),
        };
        if raw.len() as u64 != n.saturating_mul(size) {
            return Err(DataError::Count {
                expected: n,
                found: raw.len() as u64 / size,
            });
        }
        match dt {
            dtype::FLOAT => raw
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
            dtype::INT32 => raw
                .chunks_exact(4)
                .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f32)
                .collect(),
            dtype::FLOAT16 => raw
                .chunks_exact(2)
                .map(|c| f16_to_f32(u16::from_le_bytes([c[0], c[1]])))
                .collect(),
            dtype::BFLOAT16 => raw
                .chunks_exact(2)
                .map(|c| f32::from_bits(u32::from(u16::from_le_bytes([c[0], c[1]])) << 16))
                .collect(),
            dtype::DOUBLE => raw
                .chunks_exact(8)
                .map(|c| f64::from_le_bytes(c.try_into().unwrap_or([0; 8])) as f32)
                .collect(),
            dtype::INT64 => raw
                .chunks_exact(8)
                .map(|c| i64::from_le_bytes(c.try_into().unwrap_or([0; 8])) as f32)
                .collect(),
            dtype::INT8 => raw.iter().map(|&b| f32::from(b as i8)).collect(),
            _ => raw.iter().map(|&b| f32::from(b)).collect(),
        }
    } else {
        match dt {
            dtype::FLOAT => t.float_data.clone(),
            dtype::DOUBLE => t.double_data.iter().map(|&v| v as f32).collect(),
            dtype::INT64 => t.int64_data.iter().map(|&v| v as f32).collect(),
            // int32_data carries INT32, INT8, UINT8, BOOL, and FLOAT16/BFLOAT16 as bit patterns.
            dtype::INT32 | dtype::INT8 | dtype::UINT8 | dtype::BOOL => {
                t.int32_data.iter().map(|&v| v as f32).collect()
            }
            dtype::FLOAT16 => t.int32_data.iter().map(|&v| f16_to_f32(v as u16)).collect(),
            dtype::BFLOAT16 => t
                .int32_data
                .iter()
                .map(|&v| f32::from_bits((v as u32 & 0xffff) << 16))
                .collect(),
            other => return Err(DataError::Type(other)),
        }
    };
    if out.len() as u64 != n {
        return Err(DataError::Count {
            expected: n,
            found: out.len() as u64,
        });
    }
    Ok(out)
}

/// The tensor's elements as `i64` (the integer types, and floats that hold whole numbers):
/// shapes, axes, pads, slice bounds.
pub fn tensor_to_i64(t: &TensorProto) -> Result<Vec<i64>, DataError> {
    if is_external(t) {
        return Err(DataError::External);
    }
    let n = element_count(t).ok_or(DataError::Dims)?;
    let dt = t.data_type.unwrap_or(0);
    let out: Vec<i64> = match (dt, &t.raw_data) {
        (dtype::INT64, Some(raw)) => {
            if raw.len() as u64 != n.saturating_mul(8) {
                return Err(DataError::Count {
                    expected: n,
                    found: raw.len() as u64 / 8,
                });
            }
            raw.chunks_exact(8)
                .map(|c| i64::from_le_bytes(c.try_into().unwrap_or([0; 8])))
                .collect()
        }
        (dtype::INT64, None) => t.int64_data.clone(),
        (dtype::INT32 | dtype::INT8 | dtype::UINT8 | dtype::BOOL, None) => {
            t.int32_data.iter().map(|&v| i64::from(v)).collect()
        }
        _ => tensor_to_f32(t)?.into_iter().map(|v| v as i64).collect(),
    };
    if out.len() as u64 != n {
        return Err(DataError::Count {
            expected: n,
            found: out.len() as u64,
        });
    }
    Ok(out)
}

/// The tensor's elements as `f64`: INT64 exactly (shape arithmetic), the other types through
/// [`tensor_to_f32`].
pub fn tensor_to_f64(t: &TensorProto) -> Result<Vec<f64>, DataError> {
    if t.data_type == Some(dtype::INT64) {
        Ok(tensor_to_i64(t)?.iter().map(|&v| v as f64).collect())
    } else {
        Ok(tensor_to_f32(t)?.iter().map(|&v| f64::from(v)).collect())
    }
}

/// What one field of a message holds on the wire, for [`locate_decode_error`].
#[derive(Clone, Copy)]
enum Wire {
    Varint,
    Fixed32,
    Fixed64,
    /// Bytes, or a message not walked into.
    Bytes,
    /// UTF-8 text.
    Str,
    /// A message walked into.
    Msg(&'static Schema),
}

/// A message's name and its fields (tag, name, what the wire holds, repeated: a numeric field
/// may then be packed, a message field is shown with its index).
struct Schema {
    name: &'static str,
    fields: &'static [(u32, &'static str, Wire, bool)],
}

use Wire::{Bytes as B, Fixed32 as F32, Fixed64 as F64, Msg as M, Str as S, Varint as V};

static MODEL: Schema = Schema {
    name: "ModelProto",
    fields: &[
        (1, "ir_version", V, false),
        (8, "opset_import", M(&OPSET), true),
        (2, "producer_name", S, false),
        (3, "producer_version", S, false),
        (4, "domain", S, false),
        (5, "model_version", V, false),
        (6, "doc_string", S, false),
        (7, "graph", M(&GRAPH), false),
        (14, "metadata_props", M(&ENTRY), true),
        (20, "training_info", M(&TRAINING), true),
        (25, "functions", M(&FUNCTION), true),
        (26, "configuration", M(&DEVICE_CONFIG), true),
    ],
};
static OPSET: Schema = Schema {
    name: "OperatorSetIdProto",
    fields: &[(1, "domain", S, false), (2, "version", V, false)],
};
static ENTRY: Schema = Schema {
    name: "StringStringEntryProto",
    fields: &[(1, "key", S, false), (2, "value", S, false)],
};
static GRAPH: Schema = Schema {
    name: "GraphProto",
    fields: &[
        (1, "node", M(&NODE), true),
        (2, "name", S, false),
        (5, "initializer", M(&TENSOR), true),
        (15, "sparse_initializer", M(&SPARSE), true),
        (10, "doc_string", S, false),
        (11, "input", M(&VALUE_INFO), true),
        (12, "output", M(&VALUE_INFO), true),
        (13, "value_info", M(&VALUE_INFO), true),
        (14, "quantization_annotation", M(&ANNOTATION), true),
        (16, "metadata_props", M(&ENTRY), true),
    ],
};
static NODE: Schema = Schema {
    name: "NodeProto",
    fields: &[
        (1, "input", S, false),
        (2, "output", S, false),
        (3, "name", S, false),
        (4, "op_type", S, false),
        (7, "domain", S, false),
        (8, "overload", S, false),
        (5, "attribute", M(&ATTRIBUTE), true),
        (6, "doc_string", S, false),
        (9, "metadata_props", M(&ENTRY), true),
        (10, "device_configurations", M(&NODE_DEVICE), true),
    ],
};
static ATTRIBUTE: Schema = Schema {
    name: "AttributeProto",
    fields: &[
        (1, "name", S, false),
        (21, "ref_attr_name", S, false),
        (13, "doc_string", S, false),
        (20, "type", V, false),
        (2, "f", F32, false),
        (3, "i", V, false),
        (4, "s", B, false),
        (5, "t", M(&TENSOR), false),
        (6, "g", M(&GRAPH), false),
        (22, "sparse_tensor", M(&SPARSE), false),
        (14, "tp", M(&TYPE), false),
        (7, "floats", F32, true),
        (8, "ints", V, true),
        (9, "strings", B, false),
        (10, "tensors", M(&TENSOR), true),
        (11, "graphs", M(&GRAPH), true),
        (23, "sparse_tensors", M(&SPARSE), true),
        (15, "type_protos", M(&TYPE), true),
    ],
};
static VALUE_INFO: Schema = Schema {
    name: "ValueInfoProto",
    fields: &[
        (1, "name", S, false),
        (2, "type", M(&TYPE), false),
        (3, "doc_string", S, false),
        (4, "metadata_props", M(&ENTRY), true),
    ],
};
static TYPE: Schema = Schema {
    name: "TypeProto",
    fields: &[
        (6, "denotation", S, false),
        (1, "tensor_type", M(&TYPE_TENSOR), false),
        (4, "sequence_type", M(&TYPE_ONE), false),
        (5, "map_type", M(&TYPE_MAP), false),
        (9, "optional_type", M(&TYPE_ONE), false),
        (8, "sparse_tensor_type", M(&TYPE_TENSOR), false),
        (7, "opaque_type", M(&OPAQUE), false),
    ],
};
static TYPE_TENSOR: Schema = Schema {
    name: "TypeProto.Tensor",
    fields: &[(1, "elem_type", V, false), (2, "shape", M(&SHAPE), false)],
};
static SHAPE: Schema = Schema {
    name: "TensorShapeProto",
    fields: &[(1, "dim", M(&DIM), true)],
};
static DIM: Schema = Schema {
    name: "TensorShapeProto.Dimension",
    fields: &[
        (1, "dim_value", V, false),
        (2, "dim_param", S, false),
        (3, "denotation", S, false),
    ],
};
static TENSOR: Schema = Schema {
    name: "TensorProto",
    fields: &[
        (1, "dims", V, true),
        (2, "data_type", V, false),
        (3, "segment", M(&SEGMENT), false),
        (4, "float_data", F32, true),
        (5, "int32_data", V, true),
        (6, "string_data", B, false),
        (7, "int64_data", V, true),
        (8, "name", S, false),
        (12, "doc_string", S, false),
        (9, "raw_data", B, false),
        (13, "external_data", M(&ENTRY), true),
        (14, "data_location", V, false),
        (10, "double_data", F64, true),
        (11, "uint64_data", V, true),
        (16, "metadata_props", M(&ENTRY), true),
    ],
};

static TYPE_ONE: Schema = Schema {
    name: "TypeProto.Sequence",
    fields: &[(1, "elem_type", M(&TYPE), false)],
};
static TYPE_MAP: Schema = Schema {
    name: "TypeProto.Map",
    fields: &[
        (1, "key_type", V, false),
        (2, "value_type", M(&TYPE), false),
    ],
};
static OPAQUE: Schema = Schema {
    name: "TypeProto.Opaque",
    fields: &[(1, "domain", S, false), (2, "name", S, false)],
};
static SEGMENT: Schema = Schema {
    name: "TensorProto.Segment",
    fields: &[(1, "begin", V, false), (2, "end", V, false)],
};
static SPARSE: Schema = Schema {
    name: "SparseTensorProto",
    fields: &[
        (1, "values", M(&TENSOR), false),
        (2, "indices", M(&TENSOR), false),
        (3, "dims", V, true),
    ],
};
static ANNOTATION: Schema = Schema {
    name: "TensorAnnotation",
    fields: &[
        (1, "tensor_name", S, false),
        (2, "quant_parameter_tensor_names", M(&ENTRY), true),
    ],
};
static TRAINING: Schema = Schema {
    name: "TrainingInfoProto",
    fields: &[
        (1, "initialization", M(&GRAPH), false),
        (2, "algorithm", M(&GRAPH), false),
        (3, "initialization_binding", M(&ENTRY), true),
        (4, "update_binding", M(&ENTRY), true),
    ],
};
static FUNCTION: Schema = Schema {
    name: "FunctionProto",
    fields: &[
        (1, "name", S, false),
        (4, "input", S, false),
        (5, "output", S, false),
        (6, "attribute", S, false),
        (11, "attribute_proto", M(&ATTRIBUTE), true),
        (7, "node", M(&NODE), true),
        (8, "doc_string", S, false),
        (9, "opset_import", M(&OPSET), true),
        (10, "domain", S, false),
        (13, "overload", S, false),
        (12, "value_info", M(&VALUE_INFO), true),
        (14, "metadata_props", M(&ENTRY), true),
    ],
};
static DEVICE_CONFIG: Schema = Schema {
    name: "DeviceConfigurationProto",
    fields: &[
        (1, "name", S, false),
        (2, "num_devices", V, false),
        (3, "device", S, false),
    ],
};
static NODE_DEVICE: Schema = Schema {
    name: "NodeDeviceConfigurationProto",
    fields: &[
        (1, "configuration_id", S, false),
        (2, "sharding_spec", M(&SHARDING), true),
        (3, "pipeline_stage", V, false),
    ],
};
static SHARDING: Schema = Schema {
    name: "ShardingSpecProto",
    fields: &[
        (1, "tensor_name", S, false),
        (2, "device", V, true),
        (3, "index_to_device_group_map", M(&INT_LIST), true),
        (4, "sharded_dim", M(&SHARDED_DIM), true),
    ],
};
static INT_LIST: Schema = Schema {
    name: "IntIntListEntryProto",
    fields: &[(1, "key", V, false), (2, "value", V, true)],
};
static SHARDED_DIM: Schema = Schema {
    name: "ShardedDimProto",
    fields: &[
        (1, "axis", V, false),
        (2, "simple_sharding", M(&SIMPLE_SHARDED), true),
    ],
};
static SIMPLE_SHARDED: Schema = Schema {
    name: "SimpleShardedDimProto",
    fields: &[
        (1, "dim_value", V, false),
        (2, "dim_param", S, false),
        (3, "num_shards", V, false),
    ],
};

/// Deepest nesting walked (prost's own recursion limit is 100).
const MAX_WALK_DEPTH: usize = 100;

/// Where in `bytes` a ModelProto stops being well-formed protobuf: the byte offset of the
/// first field that is truncated, has a wire type its field does not take, or holds text that
/// is not UTF-8, and the path of messages and fields that leads there
/// (`ModelProto.graph > GraphProto.node[3] > NodeProto.op_type`). `None` when the wire format
/// is sound as far as this walk knows (the messages it does not walk into are skipped whole).
pub fn locate_decode_error(bytes: &[u8]) -> Option<(usize, String, String)> {
    let mut path = Vec::new();
    walk(bytes, 0, bytes.len(), &MODEL, &mut path, 0).err()
}

/// A varint at `*at` (at most 10 bytes, below `end`).
fn varint(bytes: &[u8], at: &mut usize, end: usize) -> Option<u64> {
    let mut v: u64 = 0;
    for k in 0..10 {
        let b = *bytes.get(*at).filter(|_| *at < end)?;
        *at += 1;
        if k == 9 && b > 1 {
            return None;
        }
        v |= u64::from(b & 0x7f) << (7 * k);
        if b & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

fn wire_name(w: u64) -> &'static str {
    match w {
        0 => "varint",
        1 => "64-bit",
        2 => "length-delimited",
        3 => "start-group",
        4 => "end-group",
        5 => "32-bit",
        _ => "invalid",
    }
}

fn walk(
    bytes: &[u8],
    start: usize,
    end: usize,
    schema: &'static Schema,
    path: &mut Vec<String>,
    depth: usize,
) -> Result<(), (usize, String, String)> {
    let fail = |at: usize, path: &[String], what: String| -> Result<(), (usize, String, String)> {
        Err((at, path.join(" > "), what))
    };
    if depth > MAX_WALK_DEPTH {
        return fail(
            start,
            path,
            format!("messages nested more than {MAX_WALK_DEPTH} deep"),
        );
    }
    let mut at = start;
    let mut counts: Vec<(u32, usize)> = Vec::new();
    while at < end {
        let field_at = at;
        let Some(key) = varint(bytes, &mut at, end) else {
            return fail(
                field_at,
                path,
                "a field key runs past the end (a truncated or damaged varint)".into(),
            );
        };
        let (tag, wt) = (key >> 3, key & 7);
        if key > u64::from(u32::MAX) || tag == 0 {
            return fail(
                field_at,
                path,
                format!("field number {tag} (a field number is 1 to 2^29-1)"),
            );
        }
        let tag = tag as u32;
        let known = schema.fields.iter().find(|f| f.0 == tag);
        let nth = match counts.iter_mut().find(|c| c.0 == tag) {
            Some(c) => {
                c.1 += 1;
                c.1 - 1
            }
            None => {
                counts.push((tag, 1));
                0
            }
        };
        let label = match known {
            Some((_, name, w, repeated)) if nth > 0 || (*repeated && matches!(w, M(_))) => {
                format!("{}.{name}[{nth}]", schema.name)
            }
            Some((_, name, ..)) => format!("{}.{name}", schema.name),
            None => format!("{}.<field {tag}>", schema.name),
        };
        path.push(label);
        if let Some(&(_, _, w, packed)) = known {
            let expected = match w {
                V => 0,
                F64 => 1,
                F32 => 5,
                _ => 2,
            };
            if wt != expected && !(packed && wt == 2) {
                return fail(
                    field_at,
                    path,
                    format!(
                        "the field is written as {} where ONNX's schema has it {}",
                        wire_name(wt),
                        wire_name(expected)
                    ),
                );
            }
        }
        match wt {
            0 => {
                if varint(bytes, &mut at, end).is_none() {
                    return fail(
                        field_at,
                        path,
                        "a varint runs past the end of its message".into(),
                    );
                }
            }
            1 | 5 => {
                let n = if wt == 1 { 8 } else { 4 };
                if end - at < n {
                    return fail(
                        field_at,
                        path,
                        format!(
                            "a {n}-byte value with {} bytes left in its message",
                            end - at
                        ),
                    );
                }
                at += n;
            }
            2 => {
                let len_at = at;
                let Some(len) = varint(bytes, &mut at, end) else {
                    return fail(
                        field_at,
                        path,
                        format!("its length (a varint at byte {len_at}) runs past the end of its message (the file is truncated or damaged)"),
                    );
                };
                if len > (end - at) as u64 {
                    return fail(
                        field_at,
                        path,
                        format!("the field declares {len} bytes where {} remain in its message (the file is truncated or damaged)", end - at),
                    );
                }
                let (s, e) = (at, at + len as usize);
                match known.map(|f| (f.2, f.3)) {
                    Some((M(child), _)) => walk(bytes, s, e, child, path, depth + 1)?,
                    Some((S, _)) if std::str::from_utf8(&bytes[s..e]).is_err() => {
                        return fail(s, path, "text that is not UTF-8".into());
                    }
                    Some((F32, true)) if len % 4 != 0 => {
                        return fail(
                            s,
                            path,
                            format!("packed 32-bit values in {len} bytes (no multiple of 4)"),
                        );
                    }
                    Some((F64, true)) if len % 8 != 0 => {
                        return fail(
                            s,
                            path,
                            format!("packed 64-bit values in {len} bytes (no multiple of 8)"),
                        );
                    }
                    Some((V, true)) => {
                        let mut p = s;
                        while p < e {
                            if varint(bytes, &mut p, e).is_none() {
                                return fail(
                                    p,
                                    path,
                                    "a packed varint runs past the end of its field".into(),
                                );
                            }
                        }
                    }
                    _ => {}
                }
                at = e;
            }
            3 => {
                // A group (proto2's old nesting): skip to its end-group key.
                let mut open = 1;
                while open > 0 {
                    let k_at = at;
                    let Some(k) = varint(bytes, &mut at, end) else {
                        return fail(k_at, path, "a group that never ends".into());
                    };
                    match k & 7 {
                        0 => {
                            varint(bytes, &mut at, end);
                        }
                        1 => at = (at + 8).min(end),
                        5 => at = (at + 4).min(end),
                        2 => {
                            let l = varint(bytes, &mut at, end).unwrap_or(u64::MAX);
                            if l > (end - at) as u64 {
                                return fail(
                                    k_at,
                                    path,
                                    "a group's field runs past the end".into(),
                                );
                            }
                            at += l as usize;
                        }
                        3 => open += 1,
                        4 => open -= 1,
                        _ => return fail(k_at, path, "an invalid wire type inside a group".into()),
                    }
                }
            }
            _ => {
                return fail(
                    field_at,
                    path,
                    format!("wire type {wt} ({})", wire_name(wt)),
                );
            }
        }
        path.pop();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_truncation() {
        let model = ModelProto {
            ir_version: Some(IR_VERSION),
            graph: Some(GraphProto {
                name: Some("g".into()),
                initializer: vec![tensor_f32("w", &[2, 2], &[1.0, -2.0, 3.5, 0.25])],
                ..Default::default()
            }),
            ..Default::default()
        };
        let bytes = encode_model(&model);
        let back = decode_model("m.onnx", &bytes).unwrap();
        assert_eq!(back, model);
        let w = &back.graph.as_ref().unwrap().initializer[0];
        assert_eq!(tensor_to_f32(w).unwrap(), vec![1.0, -2.0, 3.5, 0.25]);
        let err = decode_model("m.onnx", &bytes[..bytes.len() - 3]).unwrap_err();
        assert!(
            err.message.starts_with("m.onnx: not a readable ONNX model"),
            "{}",
            err.message
        );
    }

    #[test]
    fn half_precision() {
        // 0x3c00 = 1.0, 0xc000 = -2.0, 0x3555 ≈ 0.33325, 0x0001 = 2^-24 (smallest subnormal).
        assert_eq!(f16_to_f32(0x3c00), 1.0);
        assert_eq!(f16_to_f32(0xc000), -2.0);
        assert_eq!(f16_to_f32(0x3555), 0.333_251_95);
        assert_eq!(f16_to_f32(0x0001), 2f32.powi(-24));
        assert!(f16_to_f32(0x7c00).is_infinite());
    }

    #[test]
    fn typed_fields_and_counts() {
        let t = TensorProto {
            dims: vec![3],
            data_type: Some(dtype::INT64),
            int64_data: vec![1, -1, 7],
            ..Default::default()
        };
        assert_eq!(tensor_to_i64(&t).unwrap(), vec![1, -1, 7]);
        let bad = TensorProto {
            dims: vec![4],
            ..t.clone()
        };
        assert_eq!(
            tensor_to_i64(&bad).unwrap_err(),
            DataError::Count {
                expected: 4,
                found: 3
            }
        );
        let ext = TensorProto {
            data_location: Some(tensor_proto::DataLocation::External as i32),
            ..t
        };
        assert_eq!(tensor_to_f32(&ext).unwrap_err(), DataError::External);
    }
}
