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
    /// N×(4+nc)×anchors: boxes (cx, cy, w, h in input pixels) and class scores.
    Ultralytics { nc: usize, anchors: usize },
}

/// What `run --detect` needs from its flags and the model, checked before anything runs.
pub struct Detector {
    pub head: Head,
    pub params: NmsParams,
    /// The input's width and height.
    pub in_w: usize,
    pub in_h: usize,
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
            [_, channels, anchors] if channels > 4 => Head::Ultralytics {
                nc: channels - 4,
                anchors,
            },
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
        Ok(Some(Detector {
            head,
            params,
            in_w,
            in_h,
        }))
    }
}

impl Detector {
    /// How an image of `w × h` becomes this detector's input: a plain resize for YOLOv1 (as
    /// Darknet feeds it), Ultralytics' letterbox for its heads.
    pub fn placement(&self, w: u32, h: u32) -> Placement {
        let (iw, ih) = (self.in_w as u32, self.in_h as u32);
        match self.head {
            Head::Yolov1(_) => Placement::stretch(w, h, iw, ih),
            Head::Ultralytics { .. } => Placement::letterbox(w, h, iw, ih),
        }
    }

    /// Every sample's detections, boxes in the input's pixels, or mapped onto the image by
    /// `placement`.
    pub fn detections(&self, out: &Tensor, placement: Option<&Placement>) -> Vec<Vec<Detection>> {
        let n = out.shape.first().copied().unwrap_or(0);
        let per = out.data.len().checked_div(n).unwrap_or(0);
        (0..n)
            .map(|k| {
                let sample = &out.data[k * per..(k + 1) * per];
                let mut dets = match self.head {
                    Head::Yolov1(g) => {
                        let pred = detect::decode_yolov1(sample, g, self.in_w, self.in_h);
                        detect::non_max_suppression(&pred, g.s * g.s * g.b, g.c, &self.params)
                    }
                    Head::Ultralytics { nc, anchors } => {
                        detect::non_max_suppression(sample, anchors, nc, &self.params)
                    }
                };
                if let Some(p) = placement {
                    for d in &mut dets {
                        d.xyxy = p.to_image(d.xyxy);
                    }
                }
                dets
            })
            .collect()
    }
}

/// The `--image` decoded (RGB) and the model input made from it as `det` expects: its
/// placement, the image, and the N×3×H×W input.
pub fn image_input(
    det: &Detector,
    file: &str,
    shape: &[usize],
) -> Result<(Placement, image::RgbImage, Tensor)> {
    let bytes = read_capped(
        file,
        exec::io::MAX_IMAGE_BYTES,
        "an image file may have (64 MiB)",
    )?;
    let rgb = exec::io::decode_image(&bytes, file)?.to_rgb8();
    let p = det.placement(rgb.width(), rgb.height());
    let data = p.input(&rgb, shape[0], det.in_w, det.in_h);
    Ok((p, rgb, Tensor::new(shape.to_vec(), data)))
}
