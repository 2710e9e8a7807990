//! Tensors in and out of files, as bytes (the CLI does the file IO): `.npy` arrays (f32/f64,
//! little-endian, C order), images (PNG/JPEG through the `image` crate, resized and normalised
//! for the model's input), and image-shaped outputs written back as PNG.

use super::Tensor;
use crate::error::Diagnostic;

/// ImageNet normalisation used by torchvision's classification weights.
const MEAN: [f32; 3] = [0.485, 0.456, 0.406];
const STD: [f32; 3] = [0.229, 0.224, 0.225];

/// Longest `.npy` header read, in bytes (NumPy itself refuses headers over 10,000 bytes unless
/// told otherwise; its version 2 format allows 4 GiB).
pub const MAX_NPY_HEADER: usize = 1 << 16;

/// Most bytes a `.npy` file for an input of shape `want` (batch first) can hold: the largest
/// header, and every element of `want` as float64 (the widest dtype read). A batch-less array
/// is smaller still. The CLI reads no more than this plus one byte.
pub fn npy_byte_limit(want: &[usize]) -> u64 {
    let n = want.iter().map(|&d| d as u64).product::<u64>();
    (12 + MAX_NPY_HEADER as u64).saturating_add(n.saturating_mul(8))
}

/// Reads a `.npy` array of f32 or f64 (little-endian, C order).
pub fn read_npy(bytes: &[u8], file: &str) -> Result<Tensor, Diagnostic> {
    let bad = |why: &str| {
        Diagnostic::new(format!("{file} is not a readable .npy array: {why}"))
            .help("write it with numpy.save (float32 or float64, C order)")
    };
    if bytes.get(..6) != Some(&b"\x93NUMPY"[..]) {
        // A prefix of the signature is a cut file, anything else not an .npy file.
        if bytes.is_empty() {
            return Err(bad("the file is empty (0 bytes)"));
        }
        if bytes.len() < 6 && b"\x93NUMPY".starts_with(bytes) {
            return Err(bad(&format!(
                "the file ends at byte {} inside the .npy signature `\\x93NUMPY` (bytes 0–5)",
                bytes.len()
            )));
        }
        return Err(bad(
            "it does not start with the .npy signature `\\x93NUMPY` (byte 0)",
        ));
    }
    if bytes.len() < 8 {
        return Err(bad(&format!(
            "the file ends at byte {} inside the format version (bytes 6–7)",
            bytes.len()
        )));
    }
    let (hlen, start) = match bytes[6] {
        1 if bytes.len() >= 10 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 if bytes.len() >= 12 => (
            u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
            12,
        ),
        v @ (1..=3) => {
            return Err(bad(&format!(
                "the file ends at byte {} inside the header length (bytes 8–{})",
                bytes.len(),
                if v == 1 { 9 } else { 11 }
            )))
        }
        v => {
            return Err(bad(&format!(
                "format version {v} at byte 6 (1, 2 and 3 exist)"
            )))
        }
    };
    if hlen > MAX_NPY_HEADER {
        return Err(bad(&format!(
            "the header length at byte 8 is {hlen} bytes; archscope reads headers of at most {MAX_NPY_HEADER}"
        )));
    }
    let header = std::str::from_utf8(bytes.get(start..start + hlen).ok_or_else(|| {
        bad(&format!(
            "the header is {hlen} bytes from byte {start}, but the file ends at byte {}",
            bytes.len()
        ))
    })?)
    .map_err(|e| {
        bad(&format!(
            "the header is not text (byte {})",
            start + e.valid_up_to()
        ))
    })?;
    let field = |key: &str| -> Option<&str> {
        let i = header.find(&format!("'{key}'"))?;
        let rest = &header[i + key.len() + 2..];
        let rest = rest.trim_start().strip_prefix(':')?.trim_start();
        Some(rest)
    };
    let descr = field("descr").ok_or_else(|| bad("no descr"))?;
    let width = if descr.starts_with("'<f4'") {
        4
    } else if descr.starts_with("'<f8'") {
        8
    } else {
        return Err(bad(
            "only little-endian float32/float64 arrays are read ('<f4', '<f8')",
        ));
    };
    if field("fortran_order").is_some_and(|v| v.starts_with("True")) {
        return Err(bad(
            "Fortran-ordered arrays are not read; save with np.ascontiguousarray",
        ));
    }
    let shape_text = field("shape").ok_or_else(|| bad("no shape"))?;
    let inner = shape_text
        .strip_prefix('(')
        .and_then(|s| s.split(')').next())
        .ok_or_else(|| bad("bad shape"))?;
    let shape: Vec<usize> = inner
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<usize>().map_err(|_| bad("bad shape")))
        .collect::<Result<_, _>>()?;
    let n = shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .filter(|&n| n <= super::MAX_TENSOR_ELEMENTS)
        .ok_or_else(|| {
            bad(&format!(
                "the shape {shape:?} has more than 2^32 elements, the executor's limit"
            ))
        })?;
    let data_bytes = &bytes[start + hlen..];
    // n ≤ 2^32 and width ≤ 8: the product fits.
    if data_bytes.len() != n * width {
        return Err(bad(&format!(
            "the header (shape {}, {width}-byte floats) announces {} data bytes from byte {}, but the file holds {}",
            dims_text(&shape),
            n * width,
            start + hlen,
            data_bytes.len()
        )));
    }
    let data = if width == 4 {
        data_bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect()
    } else {
        data_bytes
            .chunks_exact(8)
            .map(|b| f64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]) as f32)
            .collect()
    };
    Ok(Tensor::new(shape, data))
}

/// `2×3×4` (`scalar` for no dimensions).
pub fn dims_text(shape: &[usize]) -> String {
    if shape.is_empty() {
        return "()".into();
    }
    shape
        .iter()
        .map(|d| d.to_string())
        .collect::<Vec<_>>()
        .join("×")
}

/// Fits an array read from `file` to a model input of shape `want` (batch first): the same
/// shape, or the shape without its batch dimension (then copied to every sample of the
/// batch). Anything else is an error naming both shapes.
pub fn fit_input(t: Tensor, want: &[usize], file: &str, input: &str) -> Result<Tensor, Diagnostic> {
    if t.shape == want {
        return Ok(t);
    }
    if want.len() == t.shape.len() + 1 && t.shape == want[1..] {
        // want[0] × numel(t) = numel(want) ≤ 2^32: checked when the input was made.
        let data = t.data.repeat(want[0]);
        return Ok(Tensor::new(want.to_vec(), data));
    }
    Err(Diagnostic::new(format!(
        "{file} holds an array of shape {}, but the model's input `{input}` is {} ({} per sample)",
        dims_text(&t.shape),
        dims_text(want),
        dims_text(&want[1..]),
    ))
    .help(format!(
        "save an array of shape {} or {}, or change the model's input with --input and --batch",
        dims_text(want),
        dims_text(&want[1..])
    )))
}

/// Encodes a tensor as a `.npy` array of little-endian float32 (C order).
pub fn write_npy(t: &Tensor) -> Vec<u8> {
    let dims: Vec<String> = t.shape.iter().map(|d| d.to_string()).collect();
    let shape = if dims.len() == 1 {
        format!("({},)", dims[0])
    } else {
        format!("({})", dims.join(", "))
    };
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {shape}, }}");
    while !(10 + header.len() + 1).is_multiple_of(64) {
        header.push(' ');
    }
    header.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    for v in &t.data {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out
}

/// Decodes an image and turns it into a `batch×C×H×W` input: resized (bilinear) to H×W,
/// scaled to [0, 1]; 3 channels are normalised with ImageNet's mean and std (torchvision's
/// weights expect it), 1 channel is the luma.
pub fn read_image(bytes: &[u8], file: &str, shape: &[usize]) -> Result<Tensor, Diagnostic> {
    let [n, c, h, w] = match shape {
        [n, c, h, w] => [*n, *c, *h, *w],
        _ => {
            return Err(Diagnostic::new(format!(
                "{file}: an image feeds an N×C×H×W model input, and this model's is {}",
                dims_text(shape)
            ))
            .help("feed this model a .npy array with --npy"))
        }
    };
    let img = decode_image(bytes, file)?;
    let resized = img.resize_exact(w as u32, h as u32, image::imageops::FilterType::Triangle);
    let mut one = vec![0.0f32; c * h * w];
    match c {
        1 => {
            let g = resized.to_luma8();
            for (i, p) in g.pixels().enumerate() {
                one[i] = f32::from(p.0[0]) / 255.0;
            }
        }
        3 => {
            let rgb = resized.to_rgb8();
            for (i, p) in rgb.pixels().enumerate() {
                for ch in 0..3 {
                    one[ch * h * w + i] = (f32::from(p.0[ch]) / 255.0 - MEAN[ch]) / STD[ch];
                }
            }
        }
        _ => {
            return Err(Diagnostic::new(format!(
                "{file}: an image gives 1 or 3 channels; the model's input has {c}"
            ))
            .help("feed this model a .npy array with --npy"))
        }
    }
    let data = one.repeat(n);
    Ok(Tensor::new(shape.to_vec(), data))
}

/// Largest image file read, in bytes (64 MiB).
pub const MAX_IMAGE_BYTES: u64 = 64 << 20;

/// Longest side of an image decoded, in pixels.
pub const MAX_IMAGE_SIDE: u32 = 16384;

/// Most pixels of an image decoded: 2^26 (64 Mpx, 256 MiB as RGBA8).
pub const MAX_IMAGE_PIXELS: u64 = 1 << 26;

/// Most bytes the image decoder may allocate at once (the decoded image included).
const MAX_IMAGE_ALLOC: u64 = 512 << 20;

/// Decodes a PNG or JPEG from `bytes`, refusing images over [`MAX_IMAGE_SIDE`] a side or
/// [`MAX_IMAGE_PIXELS`] pixels before their pixels are decoded. Errors say what is wrong in
/// words, with the sizes.
pub fn decode_image(bytes: &[u8], file: &str) -> Result<image::DynamicImage, Diagnostic> {
    use image::error::{ImageError, LimitErrorKind};
    let what = |e: ImageError| -> Diagnostic {
        let why = match &e {
            ImageError::Unsupported(_) => {
                "it is not a PNG or JPEG image (archscope reads those two)".to_string()
            }
            ImageError::Limits(l) => match l.kind() {
                LimitErrorKind::InsufficientMemory => format!(
                    "decoding it needs more than the {} MiB the decoder may allocate",
                    MAX_IMAGE_ALLOC >> 20
                ),
                _ => format!(
                    "it is over the decoder's limits ({MAX_IMAGE_SIDE} pixels a side, {} MiB)",
                    MAX_IMAGE_ALLOC >> 20
                ),
            },
            ImageError::IoError(io) => format!("the data ends early or cannot be read ({io})"),
            other => format!("it is damaged: {}", one_line(&other.to_string())),
        };
        Diagnostic::new(format!("cannot read the image {file}: {why}"))
            .help("give a valid PNG or JPEG file")
    };
    let reader = image::ImageReader::new(std::io::Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| what(ImageError::IoError(e)))?;
    let format = reader.format().ok_or_else(|| {
        Diagnostic::new(format!(
            "cannot read the image {file}: its first bytes are neither a PNG nor a JPEG signature"
        ))
        .help("give a PNG or JPEG file")
    })?;
    if !matches!(format, image::ImageFormat::Png | image::ImageFormat::Jpeg) {
        return Err(Diagnostic::new(format!(
            "cannot read the image {file}: it is {format:?}; archscope reads PNG and JPEG"
        ))
        .help("convert it to PNG"));
    }
    let (w, h) = image::ImageReader::with_format(std::io::Cursor::new(bytes), format)
        .into_dimensions()
        .map_err(what)?;
    if w > MAX_IMAGE_SIDE || h > MAX_IMAGE_SIDE || u64::from(w) * u64::from(h) > MAX_IMAGE_PIXELS {
        return Err(Diagnostic::new(format!(
            "the image {file} is {w}×{h} pixels; archscope reads images of at most {MAX_IMAGE_SIDE} pixels a side and {MAX_IMAGE_PIXELS} pixels (64 Mpx) in all"
        ))
        .help("downscale it first (the model's input is resized from it anyway)"));
    }
    let mut reader = image::ImageReader::with_format(std::io::Cursor::new(bytes), format);
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(MAX_IMAGE_SIDE);
    limits.max_image_height = Some(MAX_IMAGE_SIDE);
    limits.max_alloc = Some(MAX_IMAGE_ALLOC);
    reader.limits(limits);
    reader.decode().map_err(what)
}

/// `text` on one line, cut to 200 characters (decoder messages can be long).
fn one_line(text: &str) -> String {
    let flat: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    match flat.char_indices().nth(200) {
        Some((i, _)) => format!("{}…", &flat[..i]),
        None => flat,
    }
}

/// Encodes sample 0 of an N×C×H×W tensor with 1 or 3 channels as a PNG, scaled from its
/// [min, max] to [0, 255].
pub fn write_png(t: &Tensor) -> Result<Vec<u8>, Diagnostic> {
    let [_, c, h, w] = match t.shape[..] {
        [n, c, h, w] if n >= 1 => [n, c, h, w],
        _ => {
            return Err(Diagnostic::new(format!(
                "the output is {}, not image-shaped (N×C×H×W), so it cannot be a PNG",
                dims_text(&t.shape)
            ))
            .help("save it as a .npy array (a file name ending in .npy)"))
        }
    };
    if c != 1 && c != 3 {
        return Err(Diagnostic::new(format!(
            "the output has {c} channels; a picture needs 1 or 3"
        ))
        .help("save it as a .npy array (a file name ending in .npy)"));
    }
    let plane = &t.data[..c * h * w];
    // Scaled from the finite values' range; +inf is white, -inf and NaN black.
    let s = super::Stats::of(plane);
    let (lo, hi) = (s.min.unwrap_or(0.0), s.max.unwrap_or(0.0));
    let scale = if hi > lo { 255.0 / (hi - lo) } else { 0.0 };
    let px = |v: f32| {
        if v == f32::INFINITY {
            255
        } else if v.is_finite() {
            ((v - lo) * scale).round().clamp(0.0, 255.0) as u8
        } else {
            0
        }
    };
    let mut out = Vec::new();
    let enc = image::codecs::png::PngEncoder::new(&mut out);
    use image::ImageEncoder;
    let (buf, color) = if c == 1 {
        (
            plane.iter().map(|&v| px(v)).collect::<Vec<u8>>(),
            image::ExtendedColorType::L8,
        )
    } else {
        let mut buf = Vec::with_capacity(3 * h * w);
        for i in 0..h * w {
            for ch in 0..3 {
                buf.push(px(plane[ch * h * w + i]));
            }
        }
        (buf, image::ExtendedColorType::Rgb8)
    };
    enc.write_image(&buf, w as u32, h as u32, color)
        .map_err(|e| Diagnostic::new(format!("cannot encode PNG: {e}")))?;
    Ok(out)
}

/// Largest safetensors header read, in bytes (the format's own reader stops at 100 MB).
pub const MAX_SAFETENSORS_HEADER: u64 = 100_000_000;

/// The header entries of a safetensors file, in file order (a JSON object read entry by entry,
/// so that a name given twice is seen: a map would keep only the last).
struct Entries(Vec<(String, serde_json::Value)>);

impl<'de> serde::Deserialize<'de> for Entries {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Entries;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object of tensors")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut m: A,
            ) -> Result<Entries, A::Error> {
                let mut v = Vec::new();
                while let Some(e) = m.next_entry::<String, serde_json::Value>()? {
                    v.push(e);
                }
                Ok(Entries(v))
            }
        }
        d.deserialize_map(V)
    }
}

/// Bytes per element of a safetensors dtype, or None for a name the format does not have.
fn safetensors_dtype_size(dtype: &str) -> Option<u64> {
    Some(match dtype {
        "BOOL" | "U8" | "I8" | "F8_E5M2" | "F8_E4M3" => 1,
        "I16" | "U16" | "F16" | "BF16" => 2,
        "I32" | "U32" | "F32" => 4,
        "I64" | "U64" | "F64" => 8,
        _ => return None,
    })
}

/// Checks the layout of a safetensors file before its reader sees it, so that every fault is
/// said in words with the byte offset or tensor name: the 8-byte header length, the JSON
/// header (UTF-8, an object, each tensor's dtype, shape and data offsets), a tensor named
/// twice, and data offsets that must tile the data section exactly to the end of the file.
pub fn check_safetensors(bytes: &[u8], file: &str) -> Result<(), Diagnostic> {
    let bad = |why: String| {
        Diagnostic::new(format!("{file} is not a valid safetensors file: {why}")).help(
            "write it with safetensors' save_file (Python: safetensors.torch.save_file(model.state_dict(), path))",
        )
    };
    let len = bytes.len() as u64;
    if len < 8 {
        return Err(bad(format!(
            "it is {len} bytes; the file starts with an 8-byte header length"
        )));
    }
    let n = u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes"));
    if n > MAX_SAFETENSORS_HEADER {
        return Err(bad(format!(
            "the header length at byte 0 says {n} bytes, more than the {MAX_SAFETENSORS_HEADER} a header may have"
        )));
    }
    if n > len - 8 {
        return Err(bad(format!(
            "the header length at byte 0 says {n} bytes, but only {} follow (the file is truncated)",
            len - 8
        )));
    }
    let end = 8 + n as usize;
    let text = std::str::from_utf8(&bytes[8..end]).map_err(|e| {
        bad(format!(
            "the JSON header (bytes 8 to {end}) is not UTF-8 text at byte {}",
            8 + e.valid_up_to()
        ))
    })?;
    let entries: Entries = serde_json::from_str(text).map_err(|e| {
        // serde_json counts lines and columns (1-based) in the header.
        let line_start: usize = text
            .split_inclusive('\n')
            .take(e.line().saturating_sub(1))
            .map(str::len)
            .sum();
        let at = 8 + line_start + e.column().saturating_sub(1);
        bad(format!(
            "its JSON header (bytes 8 to {end}) does not parse at byte {at}: {}",
            one_line(&e.to_string())
        ))
    })?;
    let mut seen = std::collections::HashSet::new();
    let mut spans: Vec<(u64, u64, &str)> = Vec::new();
    for (name, v) in &entries.0 {
        if !seen.insert(name.as_str()) {
            return Err(bad(format!(
                "its header names the tensor `{}` twice (a reader would keep only the last)",
                one_line(name)
            )));
        }
        if name == "__metadata__" {
            let ok = v
                .as_object()
                .is_some_and(|m| m.values().all(serde_json::Value::is_string));
            if !ok {
                return Err(bad(
                    "its `__metadata__` is not an object of strings".to_string()
                ));
            }
            continue;
        }
        let shown = one_line(name);
        let tensor = |why: &str| bad(format!("tensor `{shown}`: {why}"));
        let obj = v.as_object().ok_or_else(|| {
            tensor("its entry is not an object with dtype, shape and data_offsets")
        })?;
        if let Some(k) = obj
            .keys()
            .find(|k| !matches!(k.as_str(), "dtype" | "shape" | "data_offsets"))
        {
            return Err(tensor(&format!(
                "unknown key `{}` (an entry has dtype, shape and data_offsets)",
                one_line(k)
            )));
        }
        let dtype = obj
            .get("dtype")
            .and_then(|d| d.as_str())
            .ok_or_else(|| tensor("no `dtype` string"))?;
        let size = safetensors_dtype_size(dtype).ok_or_else(|| {
            tensor(&format!(
                "the dtype `{}` is not one of safetensors' (F32, F16, BF16, F64, I64, …)",
                one_line(dtype)
            ))
        })?;
        let shape: Vec<u64> = obj
            .get("shape")
            .and_then(|s| s.as_array())
            .and_then(|a| a.iter().map(serde_json::Value::as_u64).collect())
            .ok_or_else(|| tensor("`shape` is not a list of non-negative integers"))?;
        let offsets: Vec<u64> = obj
            .get("data_offsets")
            .and_then(|s| s.as_array())
            .and_then(|a| a.iter().map(serde_json::Value::as_u64).collect())
            .filter(|o: &Vec<u64>| o.len() == 2)
            .ok_or_else(|| tensor("`data_offsets` is not a pair [begin, end] of byte offsets"))?;
        let (b, e) = (offsets[0], offsets[1]);
        let want = shape
            .iter()
            .try_fold(size, |a, &d| a.checked_mul(d))
            .ok_or_else(|| tensor(&format!("the shape {shape:?} holds more than 2^64 bytes")))?;
        if e < b || e - b != want {
            return Err(tensor(&format!(
                "{dtype} of shape {shape:?} is {want} bytes, but its data_offsets [{b}, {e}] span {}",
                if e < b { "a negative length".to_string() } else { format!("{} bytes", e - b) }
            )));
        }
        spans.push((b, e, name));
    }
    // The data section is the tensors' data back to back, from its byte 0 to the end of file.
    spans.sort_unstable();
    let data_start = end as u64;
    let mut at = 0;
    for &(b, e, name) in &spans {
        if b != at {
            return Err(bad(format!(
                "tensor `{}` starts at byte {} of the file (data offset {b}), but the data before it ends at byte {} ({})",
                one_line(name),
                data_start.saturating_add(b),
                data_start.saturating_add(at),
                if b > at { "a gap" } else { "an overlap" }
            )));
        }
        at = e;
    }
    let data_end = data_start.saturating_add(at);
    if data_end != len {
        return Err(bad(format!(
            "the tensors' data ends at byte {data_end}, but the file is {len} bytes ({})",
            if data_end > len {
                "truncated"
            } else {
                "trailing bytes after the last tensor"
            }
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn npy_roundtrip() {
        // A 2×3 float32 array as numpy writes it (version 1.0 header padded to 64 bytes).
        let header = "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }";
        let mut h = header.to_string();
        while !(10 + h.len() + 1).is_multiple_of(64) {
            h.push(' ');
        }
        h.push('\n');
        let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
        bytes.extend_from_slice(&(h.len() as u16).to_le_bytes());
        bytes.extend_from_slice(h.as_bytes());
        for v in [1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0] {
            bytes.extend_from_slice(&v.to_le_bytes());
        }
        let t = read_npy(&bytes, "x.npy").unwrap();
        assert_eq!(t.shape, vec![2, 3]);
        assert_eq!(write_npy(&t), bytes);
        assert_eq!(t.data, vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        let e = read_npy(b"nope", "x.npy").unwrap_err();
        assert_eq!(
            e.message,
            "x.npy is not a readable .npy array: it does not start with the .npy signature `\\x93NUMPY` (byte 0)"
        );
    }

    /// A safetensors file: the 8-byte little-endian header length, the header, the data.
    fn safetensors_with_header(header: &[u8], data: &[u8]) -> Vec<u8> {
        let mut b = (header.len() as u64).to_le_bytes().to_vec();
        b.extend_from_slice(header);
        b.extend_from_slice(data);
        b
    }

    /// A `.npy` file of version 1.0 with `header` as given, then `data`.
    fn npy_with_header(header: &str, data: &[u8]) -> Vec<u8> {
        let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
        bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
        bytes.extend_from_slice(header.as_bytes());
        bytes.extend_from_slice(data);
        bytes
    }

    /// Found by the `npy` fuzz target: a shape whose element count fits in `usize` but whose
    /// byte count does not made `n * width` overflow (a panic under overflow checks).
    #[test]
    fn npy_huge_shape_is_an_error() {
        let header =
            "{'descr': '<f4', 'fortran_order': False, 'shape': (1, 3, 8, 3057304865202095901), }";
        let e = read_npy(&npy_with_header(header, &[0xff; 64]), "x.npy").unwrap_err();
        assert!(e.message.contains("2^32 elements"), "{e}");
        // 2^32 · 2 elements: each dimension fits, their product is over the limit.
        let header = "{'descr': '<f8', 'fortran_order': False, 'shape': (4294967296, 2), }";
        let e = read_npy(&npy_with_header(header, &[]), "x.npy").unwrap_err();
        assert!(
            e.message
                .contains("the shape [4294967296, 2] has more than 2^32 elements"),
            "{e}"
        );
    }

    #[test]
    fn fit_input_with_or_without_batch() {
        // A batch-less 2×3 array fed to a batch of 4: copied to every sample.
        let t = Tensor::new(vec![2, 3], (0..6).map(|v| v as f32).collect());
        let fitted = fit_input(t.clone(), &[4, 2, 3], "x.npy", "x").unwrap();
        assert_eq!(fitted.shape, vec![4, 2, 3]);
        assert_eq!(fitted.data.len(), 24);
        assert_eq!(&fitted.data[18..], &t.data[..]);
        // With its batch: unchanged.
        let b = Tensor::new(vec![1, 2, 3], t.data.clone());
        assert_eq!(fit_input(b.clone(), &[1, 2, 3], "x.npy", "x").unwrap(), b);
        // A scalar model input per sample: shape [] fits [3].
        let s = Tensor::new(vec![], vec![7.0]);
        assert_eq!(fit_input(s, &[3], "x.npy", "x").unwrap().data, vec![7.0; 3]);
        // Transposed: neither shape.
        let e = fit_input(Tensor::new(vec![3, 2], t.data), &[4, 2, 3], "x.npy", "x").unwrap_err();
        assert_eq!(
            e.message,
            "x.npy holds an array of shape 3×2, but the model's input `x` is 4×2×3 (2×3 per sample)"
        );
    }

    #[test]
    fn stats_count_nonfinite_apart() {
        let s = crate::exec::Stats::of(&[1.0, f32::NAN, f32::NEG_INFINITY, 2.0, f32::INFINITY]);
        assert_eq!((s.finite, s.nan, s.pos_inf, s.neg_inf), (2, 1, 1, 1));
        assert_eq!((s.min, s.max, s.mean), (Some(1.0), Some(2.0), Some(1.5)));
        let none = crate::exec::Stats::of(&[f32::NAN]);
        assert_eq!((none.min, none.max, none.mean), (None, None, None));
    }

    proptest::proptest! {
        /// Any bytes, and any single-byte change or cut of a valid file: an error or success,
        /// never a panic (overflowing offsets included).
        #[test]
        fn safetensors_check_never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200),
                                          at in 0usize..200, v in proptest::prelude::any::<u8>(), cut in 0usize..200) {
            let _ = check_safetensors(&bytes, "x.safetensors");
            let header = br#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"__metadata__":{"k":"v"}}"#;
            let mut good = safetensors_with_header(header, &[0; 8]);
            assert!(check_safetensors(&good, "x.safetensors").is_ok());
            let i = at % good.len();
            good[i] = v;
            let _ = check_safetensors(&good, "x.safetensors");
            good.truncate(cut.min(good.len()));
            let _ = check_safetensors(&good, "x.safetensors");
        }
    }

    #[test]
    fn safetensors_huge_offsets_are_an_error() {
        let header = br#"{"a":{"dtype":"U8","shape":[18446744073709551615],"data_offsets":[0,18446744073709551615]}}"#;
        let b = safetensors_with_header(header, &[]);
        let e = check_safetensors(&b, "x.safetensors").unwrap_err();
        assert!(
            e.message
                .contains("the tensors' data ends at byte 18446744073709551615"),
            "{e}"
        );
    }

    #[test]
    fn npy_truncated_headers() {
        // Cut inside the signature (3 of its 6 bytes), after it (6), inside the version
        // (7); empty; eight bytes: version 1's 2-byte header length (bytes 8–9) is missing. Version
        // 2's header length is 4 bytes, cut after 2. Version 1's says 65,535 bytes from byte
        // 10, of which 8 are there. A file that is not a prefix of the signature has none.
        for (bytes, why) in [
            (
                &b"\x93NU"[..],
                "the file ends at byte 3 inside the .npy signature `\\x93NUMPY` (bytes 0–5)",
            ),
            (
                &b"\x93NUMPY"[..],
                "the file ends at byte 6 inside the format version (bytes 6–7)",
            ),
            (
                &b"\x93NUMPY\x01"[..],
                "the file ends at byte 7 inside the format version (bytes 6–7)",
            ),
            (
                &b"\x93NUMPY\x01\x00"[..],
                "the file ends at byte 8 inside the header length (bytes 8–9)",
            ),
            (
                &b"\x93NUMPX\x01\x00\x00\x00"[..],
                "it does not start with the .npy signature `\\x93NUMPY` (byte 0)",
            ),
            (&b""[..], "the file is empty (0 bytes)"),
            (
                &b"PK"[..],
                "it does not start with the .npy signature `\\x93NUMPY` (byte 0)",
            ),
            (
                &b"\x93NUMPY\x02\x00\xff\xff"[..],
                "the file ends at byte 10 inside the header length (bytes 8–11)",
            ),
            (
                &b"\x93NUMPY\x01\x00\xff\xff{'descr'"[..],
                "the header is 65535 bytes from byte 10, but the file ends at byte 18",
            ),
        ] {
            let e = read_npy(bytes, "x.npy").unwrap_err();
            assert_eq!(
                e.message,
                format!("x.npy is not a readable .npy array: {why}"),
                "{bytes:?}"
            );
        }
    }
}
