//! Tensors in and out of files, as bytes (the CLI does the file IO): `.npy` arrays (f32/f64,
//! little-endian, C order), images (PNG/JPEG through the `image` crate, resized and normalised
//! for the model's input), and image-shaped outputs written back as PNG.

use super::Tensor;
use crate::error::Diagnostic;

/// ImageNet normalisation used by torchvision's classification weights.
const MEAN: [f32; 3] = [0.485, 0.456, 0.406];
const STD: [f32; 3] = [0.229, 0.224, 0.225];

/// Reads a `.npy` array of f32 or f64 (little-endian, C order).
pub fn read_npy(bytes: &[u8], file: &str) -> Result<Tensor, Diagnostic> {
    let bad = |why: &str| Diagnostic::new(format!("{file} is not a readable .npy array: {why}"));
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Err(bad("no NUMPY magic"));
    }
    let (hlen, start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 if bytes.len() >= 12 => (
            u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
            12,
        ),
        v => return Err(bad(&format!("format version {v}"))),
    };
    let header = std::str::from_utf8(
        bytes
            .get(start..start + hlen)
            .ok_or_else(|| bad("truncated header"))?,
    )
    .map_err(|_| bad("header is not text"))?;
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
            "{} data bytes for shape {shape:?}",
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
                "an image input needs an N×C×H×W model input, not {shape:?}"
            )))
        }
    };
    let img = image::load_from_memory(bytes)
        .map_err(|e| Diagnostic::new(format!("cannot read the image {file}: {e}")))?;
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
                "an image gives 1 or 3 channels; the model's input has {c}"
            )))
        }
    }
    let data = one.repeat(n);
    Ok(Tensor::new(shape.to_vec(), data))
}

/// Encodes sample 0 of an N×C×H×W tensor with 1 or 3 channels as a PNG, scaled from its
/// [min, max] to [0, 255].
pub fn write_png(t: &Tensor) -> Result<Vec<u8>, Diagnostic> {
    let [_, c, h, w] = match t.shape[..] {
        [n, c, h, w] if n >= 1 => [n, c, h, w],
        _ => {
            return Err(Diagnostic::new(format!(
                "the output {:?} is not image-shaped (N×C×H×W)",
                t.shape
            )))
        }
    };
    if c != 1 && c != 3 {
        return Err(Diagnostic::new(format!(
            "the output has {c} channels; a picture needs 1 or 3"
        )));
    }
    let plane = &t.data[..c * h * w];
    let (lo, hi) = plane
        .iter()
        .fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), &v| {
            (a.min(v), b.max(v))
        });
    let scale = if hi > lo { 255.0 / (hi - lo) } else { 0.0 };
    let px = |v: f32| ((v - lo) * scale).round().clamp(0.0, 255.0) as u8;
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
        assert!(read_npy(b"nope", "x.npy").is_err());
    }

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
        let header = "{'descr': '<f8', 'fortran_order': False, 'shape': (4294967296, 2), }";
        assert!(read_npy(&npy_with_header(header, &[]), "x.npy").is_err());
    }

    #[test]
    fn npy_truncated_headers() {
        for bytes in [
            &b"\x93NUMPY\x01\x00"[..],
            &b"\x93NUMPY\x02\x00\xff\xff"[..],
            &b"\x93NUMPY\x01\x00\xff\xff{'descr'"[..],
        ] {
            assert!(read_npy(bytes, "x.npy").is_err());
        }
    }
}
