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

/// Decodes a model; `file` names it in the message. prost's error names what it was reading;
/// the message says the file is truncated or is not an ONNX model, and what to do.
pub fn decode_model(file: &str, bytes: &[u8]) -> Result<ModelProto, Diagnostic> {
    ModelProto::decode(bytes).map_err(|e| {
        Diagnostic::new(format!(
            "{file}: not a readable ONNX model ({} bytes): {e}",
            bytes.len()
        ))
        .note("the protobuf ends early (a truncated file) or holds bytes that are no ModelProto")
        .help("export the model again (torch.onnx.export, tf2onnx …) and check it with `python -m onnx.checker` or Netron")
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
