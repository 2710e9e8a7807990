//! Anchor-point decoding of a YOLO head (Ultralytics' `Detect` and `Pose` in eval mode):
//! `dist2bbox`, the four DFL distances (left, top, right, bottom, in grid units) around each
//! anchor point turned into an xywh box in input pixels, and `keypoint_decode`, Pose's
//! key-point offsets turned into pixels (with the visibility through a sigmoid). The anchor
//! points and strides are Ultralytics' `make_anchors(feats, stride, 0.5)`: per level `l` of
//! `heights[l]`×`widths[l]` cells, in row-major order, the cell centre (x + 0.5, y + 0.5) and
//! the level's stride. They are constants of the layer (computed from its attributes), not
//! parameters or buffers: Ultralytics keeps them as plain tensor attributes, which
//! `parameters()` and `model.info()` do not count.

use super::{
    mul, Arity, Attrs, Category, Collapsed, Cost, Counting, Kernel, Layer, Op, OpType, Shape,
};
use crate::error::Diagnostic;
use crate::kernels::{exp_f32, Ctx};
use crate::tensor::Tensor;

pub const DIST2BBOX: OpType = OpType {
    name: "dist2bbox",
    aliases: &[],
    keys: &["heights", "widths", "strides"],
    arity: Arity::Exactly(1),
    fused_bn: None,
    defaults: &[],
    build: build_boxes,
    summary: "YOLO box decoding (Ultralytics' make_anchors + dist2bbox(xywh) × stride): N×4×A distances (l, t, r, b) around each level's cell centres → N×4×A boxes (cx, cy, w, h) in pixels; levels `heights`, `widths`, `strides`",
};

pub const KEYPOINT_DECODE: OpType = OpType {
    name: "keypoint_decode",
    aliases: &[],
    keys: &["heights", "widths", "strides", "dims"],
    arity: Arity::Exactly(1),
    fused_bn: None,
    defaults: &[],
    build: build_keypoints,
    summary: "YOLO key-point decoding (Ultralytics' Pose.kpts_decode): N×(K·dims)×A offsets → x, y = (v·2 + cell) × stride, visibility = sigmoid (dims 3); levels `heights`, `widths`, `strides`",
};

/// Most levels one layer decodes.
pub const MAX_LEVELS: usize = 64;

/// FLOPs per anchor of `dist2bbox`: x1y1 = a − lt and x2y2 = a + rb (4), the centre
/// (x1y1 + x2y2) / 2 (4), wh = x2y2 − x1y1 (2), times the stride (4).
const BOX_FLOPS: u64 = 14;

#[derive(Debug, Clone)]
struct Decode {
    /// `None`: boxes; `Some(d)`: key points of `d` values each (2: x, y; 3: and visibility).
    keypoint_dims: Option<u64>,
    /// Per level: height, width (cells) and stride (pixels).
    levels: Vec<(u64, u64, u64)>,
}

impl Decode {
    fn anchors(&self) -> u64 {
        self.levels.iter().map(|(h, w, _)| h * w).sum()
    }

    /// Each anchor's cell column and row (as `make_anchors` gives them before the 0.5 offset)
    /// and its stride, in order.
    fn cells(&self) -> Vec<(f32, f32, f32)> {
        let mut v = Vec::with_capacity(self.anchors() as usize);
        for &(h, w, s) in &self.levels {
            for y in 0..h {
                for x in 0..w {
                    v.push((x as f32, y as f32, s as f32));
                }
            }
        }
        v
    }
}

fn build_levels(a: &mut Attrs, keypoint_dims: Option<u64>) -> Result<Decode, Diagnostic> {
    let op = if keypoint_dims.is_some() {
        "keypoint_decode"
    } else {
        "dist2bbox"
    };
    let mut list = |key: &str| -> Result<Vec<u64>, Diagnostic> {
        let v = a.int_list(key)?.ok_or_else(|| {
            a.error(key, format!("{op} needs `{key}`, one per level"))
                .help("e.g. `heights: [80, 40, 20], widths: [80, 40, 20], strides: [8, 16, 32]`")
        })?;
        if v.is_empty() || v.len() > MAX_LEVELS {
            return Err(a.error(
                key,
                format!("`{key}` lists {} levels; write 1 to {MAX_LEVELS}", v.len()),
            ));
        }
        if v.iter().any(|&x| x > 1 << 20) {
            return Err(a.error(key, format!("`{key}`: a size is at most {}", 1 << 20)));
        }
        Ok(v)
    };
    let (h, w, s) = (list("heights")?, list("widths")?, list("strides")?);
    if h.len() != w.len() || h.len() != s.len() {
        return Err(a.error(
            "strides",
            format!(
                "`heights`, `widths` and `strides` give {}, {} and {} levels; give each level all three",
                h.len(),
                w.len(),
                s.len()
            ),
        ));
    }
    let d = Decode {
        keypoint_dims,
        levels: h
            .into_iter()
            .zip(w)
            .zip(s)
            .map(|((h, w), s)| (h, w, s))
            .collect(),
    };
    let x = a.input();
    let channels_ok = match keypoint_dims {
        None => x.rank() == 3 && x.0[1] == 4,
        Some(k) => x.rank() == 3 && x.0[1] > 0 && x.0[1].is_multiple_of(k),
    };
    if !channels_ok {
        return Err(Diagnostic::new(match keypoint_dims {
            None => format!("dist2bbox takes N×4×anchors distances (left, top, right, bottom); its input is {x}"),
            Some(k) => format!("keypoint_decode takes N×(keypoints·{k})×anchors; its input is {x}"),
        })
        .help("reshape the branch's output to N×C×(h·w) and concatenate the levels along dim 2"));
    }
    if x.0[2] != d.anchors() {
        return Err(Diagnostic::new(format!(
            "{op}: the input has {} anchors, but the levels ({}) have {}",
            x.0[2],
            d.levels
                .iter()
                .map(|(h, w, _)| format!("{h}×{w}"))
                .collect::<Vec<_>>()
                .join(" + "),
            d.anchors()
        ))
        .help("list the levels' heights and widths in the order their anchors are concatenated"));
    }
    Ok(d)
}

fn build_boxes(a: &mut Attrs) -> Result<Box<dyn Layer>, Diagnostic> {
    Ok(Box::new(build_levels(a, None)?))
}

fn build_keypoints(a: &mut Attrs) -> Result<Box<dyn Layer>, Diagnostic> {
    let dims = a.positive("dims")?.unwrap_or(3);
    if !(2..=3).contains(&dims) {
        return Err(a
            .error(
                "dims",
                format!("`dims: {dims}`: a key point has 2 (x, y) or 3 (x, y, visibility) values"),
            )
            .help("write `dims: 3` (Ultralytics' kpt_shape [17, 3]) or `dims: 2`"));
    }
    Ok(Box::new(build_levels(a, Some(dims))?))
}

impl Op for Decode {
    fn op(&self) -> &'static str {
        if self.keypoint_dims.is_some() {
            "keypoint_decode"
        } else {
            "dist2bbox"
        }
    }
    fn label(&self) -> String {
        let s: Vec<String> = self.levels.iter().map(|l| l.2.to_string()).collect();
        format!("{} /{}", self.op(), s.join(","))
    }
    fn category(&self) -> Category {
        Category::Merge
    }
    fn anchor_decode(&self) -> Option<super::AnchorDecode> {
        Some(super::AnchorDecode {
            strides: self.levels.iter().map(|l| l.2).collect(),
            keypoint_dims: self.keypoint_dims,
        })
    }
    fn output_shapes(&self, inputs: &[Shape]) -> Result<Vec<Shape>, Diagnostic> {
        Ok(vec![inputs[0].clone()])
    }
    fn cost(&self, inputs: &[Shape], _outputs: &[Shape]) -> Result<Cost, Diagnostic> {
        let x = &inputs[0];
        let (n, c, anchors) = (x.0[0], x.0[1], x.0[2]);
        let flops = match self.keypoint_dims {
            None => mul(&[n, anchors, BOX_FLOPS])?,
            Some(d) => {
                // x and y: v·2, + cell, × stride (3 each); visibility: a sigmoid (4).
                let points = c / d;
                let per = 2 * 3 + if d == 3 { 4 } else { 0 };
                mul(&[n, anchors, points, per])?
            }
        };
        Ok(Cost { macs: 0, flops })
    }
}

impl Kernel for Decode {
    fn collapsed(&self) -> Collapsed {
        // Each anchor's values from the same anchor's channels: the one-channel copy passes.
        Collapsed::Identity
    }
    fn forward(
        &self,
        inputs: &[&Tensor],
        _weights: &[Tensor],
        _ctx: &mut Ctx,
    ) -> Result<Vec<Tensor>, Diagnostic> {
        let x = inputs[0];
        let (n, c, na) = (x.shape[0], x.shape[1], x.shape[2]);
        let cells = self.cells();
        let mut out = vec![0f32; x.data.len()];
        for b in 0..n {
            let src = &x.data[b * c * na..(b + 1) * c * na];
            let dst = &mut out[b * c * na..(b + 1) * c * na];
            match self.keypoint_dims {
                None => {
                    for (i, &(cx, cy, s)) in cells.iter().enumerate() {
                        // As Ultralytics computes it in float32: anchors cell + 0.5.
                        let (ax, ay) = (cx + 0.5, cy + 0.5);
                        let (x1, y1) = (ax - src[i], ay - src[na + i]);
                        let (x2, y2) = (ax + src[2 * na + i], ay + src[3 * na + i]);
                        dst[i] = (x1 + x2) / 2.0 * s;
                        dst[na + i] = (y1 + y2) / 2.0 * s;
                        dst[2 * na + i] = (x2 - x1) * s;
                        dst[3 * na + i] = (y2 - y1) * s;
                    }
                }
                Some(d) => {
                    let d = d as usize;
                    for ch in 0..c {
                        let row = &src[ch * na..(ch + 1) * na];
                        let o = &mut dst[ch * na..(ch + 1) * na];
                        for (i, &(cx, cy, s)) in cells.iter().enumerate() {
                            // (v·2 + (anchor − 0.5)) × stride; anchor − 0.5 is the cell.
                            o[i] = match ch % d {
                                0 => (row[i] * 2.0 + ((cx + 0.5) - 0.5)) * s,
                                1 => (row[i] * 2.0 + ((cy + 0.5) - 0.5)) * s,
                                _ => 1.0 / (1.0 + exp_f32(-row[i])),
                            };
                        }
                    }
                }
            }
        }
        Ok(vec![Tensor::new(x.shape.clone(), out)])
    }
    /// Box decoding as Ultralytics' export writes it: the anchors and strides as constants,
    /// `Slice`, `Sub`/`Add`, `Div` by 2, `Concat`, `Mul`; key points likewise per coordinate.
    fn onnx(&self, e: &mut super::onnx::Emit) -> Result<(), Diagnostic> {
        let (x, out) = (e.input(0), e.output(0));
        let cells = self.cells();
        let na = cells.len() as i64;
        let strides = e.floats("strides", &[1, 1, na], cells.iter().map(|c| c.2).collect());
        match self.keypoint_dims {
            None => {
                let mut anchors: Vec<f32> = cells.iter().map(|c| c.0 + 0.5).collect();
                anchors.extend(cells.iter().map(|c| c.1 + 0.5));
                let a = e.floats("anchors", &[1, 2, na], anchors);
                let lt = e.tmp("lt");
                super::onnx::slice(e, &x, &[1], &[0], &[2], &[1], &lt);
                let rb = e.tmp("rb");
                super::onnx::slice(e, &x, &[1], &[2], &[4], &[1], &rb);
                let x1y1 = e.step("Sub", &[&a, &lt], vec![]);
                let x2y2 = e.step("Add", &[&a, &rb], vec![]);
                let sum = e.step("Add", &[&x1y1, &x2y2], vec![]);
                let two = e.scalar("two", 2.0);
                let c = e.step("Div", &[&sum, &two], vec![]);
                let wh = e.step("Sub", &[&x2y2, &x1y1], vec![]);
                let cat = e.step("Concat", &[&c, &wh], vec![super::onnx::int("axis", 1)]);
                e.node("Mul", &[&cat, &strides], &[&out], vec![]);
            }
            Some(d) => {
                // N×(K·d)×A as N×K×d×A: x and y scaled and shifted, visibility sigmoid.
                let dims = e.in_dims(0);
                let k = dims[1] / d as i64;
                let y = e.reshape(&x, &[dims[0], k, d as i64, na]);
                let mut cxy: Vec<f32> = cells.iter().map(|c| c.0).collect();
                cxy.extend(cells.iter().map(|c| c.1));
                let grid = e.floats("cells", &[1, 1, 2, na], cxy);
                let s4 = e.reshape(&strides, &[1, 1, 1, na]);
                let xy = e.tmp("xy");
                super::onnx::slice(e, &y, &[2], &[0], &[2], &[1], &xy);
                let two = e.scalar("two", 2.0);
                let m = e.step("Mul", &[&xy, &two], vec![]);
                let p = e.step("Add", &[&m, &grid], vec![]);
                let mut parts = vec![e.step("Mul", &[&p, &s4], vec![])];
                if d == 3 {
                    let v = e.tmp("vis");
                    super::onnx::slice(e, &y, &[2], &[2], &[3], &[1], &v);
                    parts.push(e.step("Sigmoid", &[&v], vec![]));
                }
                let refs: Vec<&str> = parts.iter().map(String::as_str).collect();
                let cat = e.step("Concat", &refs, vec![super::onnx::int("axis", 2)]);
                super::onnx::reshape_to_output(e, &cat, 0);
            }
        }
        Ok(())
    }
}

impl Counting for Decode {}

/// The anchors the layer decodes with, as `make_anchors` lists them (cell centres, stride):
/// for tests.
#[cfg(test)]
fn anchor_points(d: &Decode) -> Vec<(f32, f32, f32)> {
    d.cells()
        .into_iter()
        .map(|(x, y, s)| (x + 0.5, y + 0.5, s))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layers::testutil::build;

    fn run(d: &Decode, x: &Tensor) -> Vec<f32> {
        let mut ctx = Ctx::default();
        d.forward(&[x], &[], &mut ctx).unwrap().remove(0).data
    }

    #[test]
    fn anchors_are_cell_centres_level_by_level() {
        let d = Decode {
            keypoint_dims: None,
            levels: vec![(2, 3, 8), (1, 1, 16)],
        };
        // make_anchors: x = arange(w) + 0.5, y = arange(h) + 0.5, meshgrid "ij", row-major.
        assert_eq!(
            anchor_points(&d),
            vec![
                (0.5, 0.5, 8.0),
                (1.5, 0.5, 8.0),
                (2.5, 0.5, 8.0),
                (0.5, 1.5, 8.0),
                (1.5, 1.5, 8.0),
                (2.5, 1.5, 8.0),
                (0.5, 0.5, 16.0)
            ]
        );
    }

    #[test]
    fn shapes_and_errors() {
        let k = "{heights: [2, 1], widths: [3, 1], strides: [8, 16]}";
        let (_, o) = build("dist2bbox", k, &[&[2, 4, 7]]).unwrap();
        assert_eq!(o[0].0, vec![2, 4, 7]);
        let e = build("dist2bbox", k, &[&[2, 4, 8]]).unwrap_err();
        assert_eq!(
            e.message,
            "dist2bbox: the input has 8 anchors, but the levels (2×3 + 1×1) have 7"
        );
        let e = build("dist2bbox", k, &[&[2, 5, 7]]).unwrap_err();
        assert!(e.message.contains("N×4×anchors"), "{e}");
        let e = build("keypoint_decode", k, &[&[2, 10, 7]]).unwrap_err();
        assert!(e.message.contains("N×(keypoints·3)×anchors"), "{e}");
        let (_, o) = build("keypoint_decode", k, &[&[2, 51, 7]]).unwrap();
        assert_eq!(o[0].0, vec![2, 51, 7]);
        let e = build(
            "dist2bbox",
            "{heights: [2], widths: [3, 1], strides: [8, 16]}",
            &[&[2, 4, 7]],
        )
        .unwrap_err();
        assert!(e.message.contains("give 1, 2 and 2 levels"), "{e}");
    }

    #[test]
    fn decodes_as_dist2bbox_by_hand() {
        // One 1×2 level at stride 8: anchors (0.5, 0.5) and (1.5, 0.5). Anchor 1 with
        // distances l=1, t=0.5, r=2, b=1.5: x1y1 = (0.5, 0), x2y2 = (3.5, 2) → centre (2, 1),
        // size (3, 2) → × 8: (16, 8, 24, 16).
        let d = Decode {
            keypoint_dims: None,
            levels: vec![(1, 2, 8)],
        };
        let x = Tensor::new(vec![1, 4, 2], vec![0.0, 1.0, 0.0, 0.5, 0.0, 2.0, 0.0, 1.5]);
        assert_eq!(run(&d, &x), vec![4.0, 16.0, 4.0, 8.0, 0.0, 24.0, 0.0, 16.0]);
        // Key points (dims 3) at the same anchors: x = (v·2 + cell x)·8, visibility sigmoid(0).
        let k = Decode {
            keypoint_dims: Some(3),
            levels: vec![(1, 2, 8)],
        };
        let x = Tensor::new(vec![1, 3, 2], vec![0.5, -0.25, 1.0, 0.0, 0.0, 0.0]);
        assert_eq!(run(&k, &x), vec![8.0, 4.0, 16.0, 0.0, 0.5, 0.5]);
    }
}
