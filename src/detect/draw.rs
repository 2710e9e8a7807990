//! Paints detections onto the image they came from and encodes it as PNG: each box an outline
//! in its class's colour, with a filled tag above its top-left corner that reads the class
//! number and the score (digits in a built-in 3×5 pixel font, so no font file is needed); a
//! Segment detection's mask blended over the image in that colour, a Pose detection's key
//! points as dots.

use image::{Rgb, RgbImage};

use super::{Detection, Placement};
use crate::error::Diagnostic;

/// The colour of class `c`: hues a golden angle apart, full saturation, bright enough for the
/// black tag text.
pub fn class_colour(c: usize) -> Rgb<u8> {
    let hue = (c as f64 * 137.507_764) % 360.0;
    let (s, v) = (0.85, 0.95);
    let cc = v * s;
    let x = cc * (1.0 - ((hue / 60.0) % 2.0 - 1.0).abs());
    let m = v - cc;
    let (r, g, b) = match (hue / 60.0) as u32 {
        0 => (cc, x, 0.0),
        1 => (x, cc, 0.0),
        2 => (0.0, cc, x),
        3 => (0.0, x, cc),
        4 => (x, 0.0, cc),
        _ => (cc, 0.0, x),
    };
    let to = |u: f64| ((u + m) * 255.0).round() as u8;
    Rgb([to(r), to(g), to(b)])
}

/// The 3×5 glyphs of `0`–`9`, `.` and ` `: five rows of three bits, the high bit left.
fn glyph(ch: char) -> [u8; 5] {
    match ch {
        '0' => [0b111, 0b101, 0b101, 0b101, 0b111],
        '1' => [0b010, 0b110, 0b010, 0b010, 0b111],
        '2' => [0b111, 0b001, 0b111, 0b100, 0b111],
        '3' => [0b111, 0b001, 0b111, 0b001, 0b111],
        '4' => [0b101, 0b101, 0b111, 0b001, 0b001],
        '5' => [0b111, 0b100, 0b111, 0b001, 0b111],
        '6' => [0b111, 0b100, 0b111, 0b101, 0b111],
        '7' => [0b111, 0b001, 0b010, 0b010, 0b010],
        '8' => [0b111, 0b101, 0b111, 0b101, 0b111],
        '9' => [0b111, 0b101, 0b111, 0b001, 0b111],
        '.' => [0, 0, 0, 0, 0b010],
        _ => [0; 5],
    }
}

/// Fills the rectangle `[x0, x1) × [y0, y1)`, cut to the image.
fn fill(img: &mut RgbImage, x0: i64, y0: i64, x1: i64, y1: i64, colour: Rgb<u8>) {
    let (w, h) = (i64::from(img.width()), i64::from(img.height()));
    for y in y0.max(0)..y1.min(h) {
        for x in x0.max(0)..x1.min(w) {
            img.put_pixel(x as u32, y as u32, colour);
        }
    }
}

/// Draws `dets` (boxes in `img`'s pixels) on `img`: outlines `max(2, shorter side / 300)`
/// pixels thick, tags with `class score` in digits scaled to the line width.
pub fn draw(img: &mut RgbImage, dets: &[Detection]) {
    let side = img.width().min(img.height());
    let t = i64::from((side / 300).max(2));
    let scale = t;
    for d in dets {
        let colour = class_colour(d.class);
        let [x1, y1, x2, y2] = d.xyxy.map(|v| v.round() as i64);
        fill(img, x1, y1, x2 + 1, y1 + t, colour);
        fill(img, x1, y2 + 1 - t, x2 + 1, y2 + 1, colour);
        fill(img, x1, y1, x1 + t, y2 + 1, colour);
        fill(img, x2 + 1 - t, y1, x2 + 1, y2 + 1, colour);
        let label = format!("{} {:.2}", d.class, d.score);
        let (gw, gh) = (4 * scale, 7 * scale);
        let tag_w = gw * label.chars().count() as i64 + scale;
        // Above the box when there is room, else inside its top edge.
        let ty = if y1 - gh >= 0 { y1 - gh } else { y1 };
        fill(img, x1, ty, x1 + tag_w, ty + gh, colour);
        for (k, ch) in label.chars().enumerate() {
            let gx = x1 + scale + k as i64 * gw;
            for (row, bits) in glyph(ch).iter().enumerate() {
                for col in 0..3 {
                    if bits & (0b100 >> col) != 0 {
                        let px = gx + col * scale;
                        let py = ty + scale + row as i64 * scale;
                        fill(img, px, py, px + scale, py + scale, Rgb([0, 0, 0]));
                    }
                }
            }
        }
    }
}

/// Blends each detection's mask (at the model input's resolution) over `img` in its class's
/// colour, half and half: an image pixel takes the mask value of the input pixel its centre
/// falls on through `p` (the letterbox: times the scale, plus the padding).
pub fn draw_masks(img: &mut RgbImage, dets: &[Detection], p: &Placement) {
    let gx = f64::from(p.new_w) / f64::from(p.w);
    let gy = f64::from(p.new_h) / f64::from(p.h);
    for d in dets {
        let Some(m) = &d.mask else { continue };
        let colour = class_colour(d.class);
        for y in 0..img.height() {
            let my = ((f64::from(y) + 0.5) * gy + f64::from(p.top)).floor() as usize;
            if my >= m.h {
                continue;
            }
            for x in 0..img.width() {
                let mx = ((f64::from(x) + 0.5) * gx + f64::from(p.left)).floor() as usize;
                if mx < m.w && m.bits[my * m.w + mx] != 0 {
                    let px = img.get_pixel_mut(x, y);
                    for c in 0..3 {
                        px.0[c] = ((u16::from(px.0[c]) + u16::from(colour.0[c])) / 2) as u8;
                    }
                }
            }
        }
    }
}

/// Draws each detection's key points (image pixels) as filled squares in its class's colour
/// with a black rim, skipping those whose visibility is under 0.5 (as Ultralytics' plotting
/// does).
pub fn draw_keypoints(img: &mut RgbImage, dets: &[Detection]) {
    let side = img.width().min(img.height());
    let r = i64::from((side / 200).max(2));
    for d in dets {
        let colour = class_colour(d.class);
        for k in &d.keypoints {
            if k[2] < 0.5 {
                continue;
            }
            let (x, y) = (k[0].round() as i64, k[1].round() as i64);
            fill(
                img,
                x - r - 1,
                y - r - 1,
                x + r + 2,
                y + r + 2,
                Rgb([0, 0, 0]),
            );
            fill(img, x - r, y - r, x + r + 1, y + r + 1, colour);
        }
    }
}

/// `img` encoded as PNG.
pub fn png(img: &RgbImage) -> Result<Vec<u8>, Diagnostic> {
    let mut out = Vec::new();
    let enc = image::codecs::png::PngEncoder::new(&mut out);
    use image::ImageEncoder;
    enc.write_image(
        img.as_raw(),
        img.width(),
        img.height(),
        image::ExtendedColorType::Rgb8,
    )
    .map_err(|e| Diagnostic::new(format!("cannot encode PNG: {e}")))?;
    Ok(out)
}
