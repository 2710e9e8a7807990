//! `run --detect`: its flags, which decoding the model's output gets (YOLOv1's grid or an
//! Ultralytics Detect head's boxes and scores), the image fed as that detector expects it,
//! and the detections printed and drawn. The decoding and NMS are `archscope::detect`'s;
//! docs/DETECTION.md describes them.

use anyhow::{bail, Result};

use super::common::read_capped;
use crate::detect::{self, Detection, NmsParams, Placement, Yolov1Grid, MAX_NMS_BOXES};
use crate::exec;
use crate::tensor::Tensor;
use crate::{Diagnostic, Network};

/// A diagnostic as the CLI's error.
fn diag(d: Diagnostic) -> anyhow::Error {
    crate::Error::from(d).into()
}

// The flags of `run` that decode detections.
#[derive(clap::Args)]
pub struct DetectArgs {
    /// Decode the first output as detections (YOLOv1's S×S×(5B+C) grid, or an Ultralytics
    /// Detect head's N×(4+nc)×anchors), run NMS, and print class, score and box (xyxy, in the
    /// --image's pixels); --save-output boxes.png draws them on the image.
    #[arg(long)]
    pub detect: bool,
    /// Confidence threshold of --detect, 0 to 1: a box is kept when its best class score is
    /// greater.
    #[arg(
        long,
        default_value_t = 0.25,
        requires = "detect",
        allow_negative_numbers = true
    )]
    pub conf: f64,
    /// IoU threshold of --detect's NMS, 0 to 1: a box overlapping a better one of its class by
    /// more is dropped.
    #[arg(
        long,
        default_value_t = 0.45,
        requires = "detect",
        allow_negative_numbers = true
    )]
    pub iou: f64,
    /// Most detections --detect keeps per image (1 to 30000).
    #[arg(long, default_value_t = 300, requires = "detect")]
    pub max_det: usize,
    /// Most candidates --detect's NMS compares, the best-scored (1 to 30000).
    #[arg(long, default_value_t = MAX_NMS_BOXES, requires = "detect")]
    pub max_nms: usize,
    /// One NMS over all classes instead of one per class.
    #[arg(long, requires = "detect")]
    pub agnostic_nms: bool,
    /// Letterbox the --image into the whole --input (Ultralytics' LetterBox(auto=False), as
    /// for a fixed-shape export) instead of `model.predict`'s rect letterbox (padded only to a
    /// multiple of the stride, the model built at that size).
    #[arg(long, requires = "detect")]
    pub full_letterbox: bool,
    /// YOLOv1's grid side S (the paper's 7).
    #[arg(long, default_value_t = 7, requires = "detect")]
    pub grid: usize,
    /// YOLOv1's boxes per cell B (the paper's 2).
    #[arg(long, default_value_t = 2, requires = "detect")]
    pub boxes_per_cell: usize,
}

/// How the output is decoded.
#[derive(Debug, Clone, Copy)]
pub enum Head {
    /// A flat N×(S²·(5B+C)) output: YOLOv1's grid.
    Yolov1(Yolov1Grid),
    /// N×(4+nc+extra)×anchors: boxes (cx, cy, w, h in input pixels), class scores and what
    /// the head adds.
    Ultralytics {
        nc: usize,
        anchors: usize,
        extra: Extra,
    },
}

/// What an Ultralytics head adds after the class scores.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Extra {
    /// Detect: nothing.
    None,
    /// Pose: `k` key points of `dims` values (x, y in input pixels, and a visibility).
    Keypoints { k: usize, dims: usize },
    /// Segment: `nm` mask coefficients; the second output is the N×nm×mh×mw prototypes.
    Masks { nm: usize, mh: usize, mw: usize },
}

/// The stride `model.predict` rounds a rect letterbox to: Ultralytics' PyTorch backend takes
/// `max(model.stride.max(), 32)`, the head's largest stride (its box decoding's levels) or 32.
pub fn rect_stride(net: &Network) -> u32 {
    net.nodes
        .iter()
        .filter_map(|n| n.layer.anchor_decode())
        .flat_map(|d| d.strides)
        .max()
        .map_or(32, |s| s.clamp(32, u64::from(u32::MAX)) as u32)
}

/// What the head adds after its `channels − 4` leading rows: key points when a key-point
/// decoding layer (`keypoint_decode`) is in the model, mask coefficients when the model's
/// second output is N×nm×mh×mw prototypes.
fn extra_of(net: &Network, channels: usize) -> Extra {
    let keypoints = net.nodes.iter().find_map(|n| {
        let dims = n.layer.anchor_decode()?.keypoint_dims? as usize;
        Some((n, dims))
    });
    if let Some((n, dims)) = keypoints {
        let values = n.in_shapes[0].0.get(1).copied().unwrap_or(0) as usize;
        if dims > 0 && values > 0 && values.is_multiple_of(dims) && channels > 4 + values {
            return Extra::Keypoints {
                k: values / dims,
                dims,
            };
        }
    }
    if let Some(o) = net.outputs.get(1) {
        if let [_, nm, mh, mw] = net.nodes[o.node].out_shapes[o.slot].0[..] {
            if channels > 4 + nm as usize {
                return Extra::Masks {
                    nm: nm as usize,
                    mh: mh as usize,
                    mw: mw as usize,
                };
            }
        }
    }
    Extra::None
}

/// What `run --detect` needs from its flags and the model, checked before anything runs.
pub struct Detector {
    pub head: Head,
    pub params: NmsParams,
    /// The input's width and height.
    pub in_w: usize,
    pub in_h: usize,
    /// --full-letterbox.
    pub full_letterbox: bool,
}

impl DetectArgs {
    /// The detector for `net`, or none without --detect. Refuses thresholds outside [0, 1],
    /// counts outside 1..=30000, a model without one N×3×H×W input, and an output that is
    /// not a detection head.
    pub fn detector(&self, net: &Network) -> Result<Option<Detector>> {
        if !self.detect {
            return Ok(None);
        }
        let params = NmsParams {
            conf: self.conf,
            iou: self.iou,
            agnostic: self.agnostic_nms,
            max_det: self.max_det,
            max_nms: self.max_nms,
        };
        params.validate()?;
        let inputs: Vec<&crate::graph::NetNode> =
            net.nodes.iter().filter(|n| n.layer.is_input()).collect();
        let (in_w, in_h) = match inputs[..] {
            [n] => match n.out_shapes[0].0[..] {
                [_, 3, h, w] => (w as usize, h as usize),
                ref s => bail!(
                    "--detect decodes a detector that reads one N×3×H×W image; the input `{}` of {} is {}",
                    n.name,
                    net.name,
                    exec::io::dims_text(&s.iter().map(|&d| d as usize).collect::<Vec<_>>())
                ),
            },
            _ => bail!(
                "--detect decodes a detector that reads one N×3×H×W image; {} has {} inputs",
                net.name,
                inputs.len()
            ),
        };
        let out = &net.outputs[0];
        let shape: Vec<usize> = net.nodes[out.node].out_shapes[out.slot]
            .0
            .iter()
            .map(|&d| d as usize)
            .collect();
        let head = match shape[..] {
            [_, values] => Head::Yolov1(
                Yolov1Grid::from_output(values, self.grid, self.boxes_per_cell).map_err(|d| {
                    diag(d.note(format!(
                        "the output `{}` of {} is {}",
                        out.name,
                        net.name,
                        exec::io::dims_text(&shape)
                    )))
                })?,
            ),
            [_, channels, anchors] if channels > 4 => {
                let extra = extra_of(net, channels);
                let added = match extra {
                    Extra::None => 0,
                    Extra::Keypoints { k, dims } => k * dims,
                    Extra::Masks { nm, .. } => nm,
                };
                Head::Ultralytics {
                    nc: channels - 4 - added,
                    anchors,
                    extra,
                }
            }
            _ => {
                return Err(diag(
                    Diagnostic::new(format!(
                        "--detect: the output `{}` of {} is {}, not a detection head's: YOLOv1's N×(S²·(5B+C)) or an Ultralytics Detect head's N×(4+nc)×anchors",
                        out.name,
                        net.name,
                        exec::io::dims_text(&shape)
                    ))
                    .help("run --detect on a detection model (yolov1, an Ultralytics Detect model), or drop --detect"),
                ))
            }
        };
        if self.full_letterbox && matches!(head, Head::Yolov1(_)) {
            bail!("--full-letterbox chooses an Ultralytics head's letterbox; {} decodes as YOLOv1, whose image is resized to the whole input (no letterbox): drop --full-letterbox", net.name);
        }
        if let Head::Ultralytics {
            extra: Extra::Masks { .. },
            ..
        } = head
        {
            let bytes = (self.max_det as u64)
                .saturating_mul(in_w as u64)
                .saturating_mul(in_h as u64);
            if bytes > detect::MAX_MASK_BYTES {
                return Err(diag(
                    Diagnostic::new(format!(
                        "--max-det {} with masks of {in_w}×{in_h} (the input) would hold {bytes} bytes of masks; at most {} (detect::MAX_MASK_BYTES)",
                        self.max_det,
                        detect::MAX_MASK_BYTES
                    ))
                    .help(format!(
                        "give --max-det {} or fewer, or a smaller --input",
                        detect::MAX_MASK_BYTES / (in_w as u64 * in_h as u64).max(1)
                    )),
                ));
            }
        }
        Ok(Some(Detector {
            head,
            params,
            in_w,
            in_h,
            full_letterbox: self.full_letterbox,
        }))
    }
}

impl Detector {
    /// Whether `run` builds the model anew at `model.predict`'s rect letterbox size for an
    /// image (an Ultralytics head without --full-letterbox).
    pub fn rect(&self) -> bool {
        matches!(self.head, Head::Ultralytics { .. }) && !self.full_letterbox
    }

    /// How an image of `w × h` becomes this detector's input: a plain resize for YOLOv1 (as
    /// Darknet feeds it), Ultralytics' letterbox for its heads.
    pub fn placement(&self, w: u32, h: u32) -> Placement {
        let (iw, ih) = (self.in_w as u32, self.in_h as u32);
        match self.head {
            Head::Yolov1(_) => Placement::stretch(w, h, iw, ih),
            Head::Ultralytics { .. } => Placement::letterbox(w, h, iw, ih),
        }
    }

    /// Every sample's detections (the model's `outputs`), boxes and key points in the input's
    /// pixels, or mapped onto the image by `placement`; a Segment head's masks made from its
    /// prototypes (the second output) and the detections whose mask is empty dropped, as
    /// Ultralytics' `SegmentationPredictor` does.
    pub fn detections(
        &self,
        outputs: &[Tensor],
        placement: Option<&Placement>,
    ) -> Vec<Vec<Detection>> {
        let out = &outputs[0];
        let n = out.shape.first().copied().unwrap_or(0);
        let per = out.data.len().checked_div(n).unwrap_or(0);
        (0..n)
            .map(|k| {
                let sample = &out.data[k * per..(k + 1) * per];
                let (mut dets, extra) = match self.head {
                    Head::Yolov1(g) => {
                        let pred = detect::decode_yolov1(sample, g, self.in_w, self.in_h);
                        let d =
                            detect::non_max_suppression(&pred, g.s * g.s * g.b, g.c, &self.params);
                        (d, Extra::None)
                    }
                    Head::Ultralytics { nc, anchors, extra } => (
                        detect::non_max_suppression(sample, anchors, nc, &self.params),
                        extra,
                    ),
                };
                if let (Extra::Masks { nm, mh, mw }, Some(proto)) = (extra, outputs.get(1)) {
                    let plane = nm * mh * mw;
                    if let Some(p) = proto.data.get(k * plane..(k + 1) * plane) {
                        for d in &mut dets {
                            d.mask = Some(detect::process_mask(
                                p, nm, mh, mw, &d.extra, d.xyxy, self.in_w, self.in_h,
                            ));
                        }
                        dets.retain(|d| d.mask.as_ref().is_some_and(|m| m.area() > 0));
                    }
                }
                for d in &mut dets {
                    if let Extra::Keypoints { k, dims } = extra {
                        d.keypoints = match placement {
                            Some(p) => p.keypoints(&d.extra, k, dims),
                            None => d
                                .extra
                                .chunks_exact(dims)
                                .map(|v| [v[0], v[1], if dims == 3 { v[2] } else { f32::NAN }])
                                .collect(),
                        };
                    }
                    if let Some(p) = placement {
                        d.xyxy = p.to_image(d.xyxy);
                    }
                }
                dets
            })
            .collect()
    }
}

/// The `--image` decoded (RGB).
pub fn read_rgb(file: &str) -> Result<image::RgbImage> {
    let bytes = read_capped(
        file,
        exec::io::MAX_IMAGE_BYTES,
        "an image file may have (64 MiB)",
    )?;
    Ok(exec::io::decode_image(&bytes, file)?.to_rgb8())
}
