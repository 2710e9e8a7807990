//! Detection post-processing, after the model's forward pass: non-maximum suppression with
//! `torchvision.ops.nms`/`batched_nms` semantics (the same float32 IoU, the same ties, the same
//! order of the kept indices, the same class offsets), Ultralytics' `non_max_suppression` (a
//! confidence filter on the best class score, xywh → xyxy, class-aware or agnostic NMS,
//! `max_nms` and `max_det`), YOLOv1's grid decoding (the paper's S×S×(B·5+C) tensor), the
//! input image as each detector expects it (YOLOv1: a plain resize; Ultralytics: a letterbox
//! with grey padding) and the boxes mapped back onto the image. Pure functions: the CLI
//! (`run --detect`) reads the files and prints; [`draw`] paints the boxes. docs/DETECTION.md
//! states the conventions; tests/detect.rs checks them against torchvision and Ultralytics.

use std::cmp::Ordering;

use crate::error::Diagnostic;
use crate::report::{new_table, Format};

pub mod draw;

/// A box as `[x1, y1, x2, y2]`.
pub type Box4 = [f32; 4];

/// Most candidate boxes NMS compares (each with each: the pass is quadratic), which is also
/// Ultralytics' default `max_nms`; the most detections `max_det` may ask for.
pub const MAX_NMS_BOXES: usize = 30_000;

/// Most bytes a Segment head's masks may hold (one byte per input pixel per detection, up to
/// `--max-det` detections): 2 GiB.
pub const MAX_MASK_BYTES: u64 = 1 << 31;

/// Ultralytics' per-class coordinate offset (`max_wh`, pixels) for class-aware NMS.
pub const ULTRALYTICS_MAX_WH: f32 = 7680.0;

/// The grey (114, 114, 114) Ultralytics pads a letterboxed image with.
pub const LETTERBOX_GREY: u8 = 114;

/// Descending order as `torch.sort(descending=True)` has it: NaN before every number, equal
/// scores (0.0 and -0.0 included) kept in input order by the stable sort.
fn descending(a: f32, b: f32) -> Ordering {
    match (a.is_nan(), b.is_nan()) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Less,
        (false, true) => Ordering::Greater,
        _ => b.partial_cmp(&a).unwrap_or(Ordering::Equal),
    }
}

/// The indices of `scores` sorted by descending score, stable.
fn order_descending(scores: &[f32]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&i, &j| descending(scores[i], scores[j]));
    order
}

/// The indices of `scores` in the order `torch.sort(descending=True)` (and `argsort`) gives
/// them on the CPU: PyTorch sorts (value, index) pairs with libstdc++'s `std::sort`, which is
/// not stable, so equal scores come out in the order its introsort leaves them. This is that
/// algorithm step for step (median-of-three quicksort down to runs of 16, heapsort past
/// 2·⌊log₂ n⌋ levels, then insertion sort), with PyTorch's comparator (NaN first, then `>`).
pub fn torch_argsort_descending(scores: &[f32]) -> Vec<usize> {
    let mut v: Vec<(f32, usize)> = scores.iter().copied().zip(0..).collect();
    introsort::sort(&mut v);
    v.into_iter().map(|(_, i)| i).collect()
}

/// libstdc++'s `std::sort` (bits/stl_algo.h, bits/stl_heap.h) on (score, index) pairs.
mod introsort {
    type E = (f32, usize);

    /// PyTorch's `KeyValueCompDesc`: `a` goes before `b`.
    fn comp(a: &E, b: &E) -> bool {
        (a.0.is_nan() && !b.0.is_nan()) || a.0 > b.0
    }

    const THRESHOLD: usize = 16;

    pub fn sort(v: &mut [E]) {
        let n = v.len();
        if n > 1 {
            let lg = (usize::BITS - 1 - n.leading_zeros()) as usize;
            introsort_loop(v, 0, n, 2 * lg);
            final_insertion_sort(v, 0, n);
        }
    }

    fn introsort_loop(v: &mut [E], first: usize, mut last: usize, mut depth: usize) {
        while last - first > THRESHOLD {
            if depth == 0 {
                make_heap(v, first, last);
                sort_heap(v, first, last);
                return;
            }
            depth -= 1;
            let cut = partition_pivot(v, first, last);
            introsort_loop(v, cut, last, depth);
            last = cut;
        }
    }

    fn partition_pivot(v: &mut [E], first: usize, last: usize) -> usize {
        let mid = first + (last - first) / 2;
        move_median_to_first(v, first, first + 1, mid, last - 1);
        unguarded_partition(v, first + 1, last, first)
    }

    fn move_median_to_first(v: &mut [E], result: usize, a: usize, b: usize, c: usize) {
        let pick = if comp(&v[a], &v[b]) {
            if comp(&v[b], &v[c]) {
                b
            } else if comp(&v[a], &v[c]) {
                c
            } else {
                a
            }
        } else if comp(&v[a], &v[c]) {
            a
        } else if comp(&v[b], &v[c]) {
            c
        } else {
            b
        };
        v.swap(result, pick);
    }

    fn unguarded_partition(v: &mut [E], mut first: usize, mut last: usize, pivot: usize) -> usize {
        loop {
            while comp(&v[first], &v[pivot]) {
                first += 1;
            }
            last -= 1;
            while comp(&v[pivot], &v[last]) {
                last -= 1;
            }
            if first >= last {
                return first;
            }
            v.swap(first, last);
            first += 1;
        }
    }

    fn final_insertion_sort(v: &mut [E], first: usize, last: usize) {
        if last - first > THRESHOLD {
            insertion_sort(v, first, first + THRESHOLD);
            for i in first + THRESHOLD..last {
                unguarded_linear_insert(v, i);
            }
        } else {
            insertion_sort(v, first, last);
        }
    }

    fn insertion_sort(v: &mut [E], first: usize, last: usize) {
        if first == last {
            return;
        }
        for i in first + 1..last {
            if comp(&v[i], &v[first]) {
                let val = v[i];
                v.copy_within(first..i, first + 1);
                v[first] = val;
            } else {
                unguarded_linear_insert(v, i);
            }
        }
    }

    fn unguarded_linear_insert(v: &mut [E], mut last: usize) {
        let val = v[last];
        let mut next = last - 1;
        while comp(&val, &v[next]) {
            v[last] = v[next];
            last = next;
            next -= 1;
        }
        v[last] = val;
    }

    fn make_heap(v: &mut [E], first: usize, last: usize) {
        let len = last - first;
        if len < 2 {
            return;
        }
        let mut parent = (len - 2) / 2;
        loop {
            let value = v[first + parent];
            adjust_heap(v, first, parent, len, value);
            if parent == 0 {
                return;
            }
            parent -= 1;
        }
    }

    fn sort_heap(v: &mut [E], first: usize, mut last: usize) {
        while last - first > 1 {
            last -= 1;
            let value = v[last];
            v[last] = v[first];
            adjust_heap(v, first, 0, last - first, value);
        }
    }

    fn adjust_heap(v: &mut [E], first: usize, mut hole: usize, len: usize, value: E) {
        let top = hole;
        let mut child = hole;
        while child < (len - 1) / 2 {
            child = 2 * (child + 1);
            if comp(&v[first + child], &v[first + child - 1]) {
                child -= 1;
            }
            v[first + hole] = v[first + child];
            hole = child;
        }
        if len & 1 == 0 && child == (len - 2) / 2 {
            child = 2 * (child + 1);
            v[first + hole] = v[first + child - 1];
            hole = child - 1;
        }
        // __push_heap
        let mut parent = hole.wrapping_sub(1) / 2;
        while hole > top && comp(&v[first + parent], &value) {
            v[first + hole] = v[first + parent];
            hole = parent;
            parent = hole.wrapping_sub(1) / 2;
        }
        v[first + hole] = value;
    }
}

/// C++'s `std::max(a, b)`: `b` only when `a < b` (so a NaN `b` loses, a NaN `a` wins).
fn cmax(a: f32, b: f32) -> f32 {
    if a < b {
        b
    } else {
        a
    }
}

/// C++'s `std::min(a, b)`: `b` only when `b < a`.
fn cmin(a: f32, b: f32) -> f32 {
    if b < a {
        b
    } else {
        a
    }
}

/// `torchvision.ops.nms`: the indices of the boxes kept, by decreasing score. Boxes are taken
/// in decreasing score order (ties in input order); a box is dropped when its IoU with a kept
/// box is greater than `iou_threshold`. The IoU is computed in float32 as torchvision's CPU
/// kernel does (`inter / (area_i + area_j - inter)`, widths clamped at 0) and compared in
/// float64 with the threshold; a NaN IoU (two empty boxes) suppresses nothing. `boxes` and
/// `scores` have one entry per box (the shorter length counts).
pub fn nms(boxes: &[Box4], scores: &[f32], iou_threshold: f64) -> Vec<usize> {
    let n = boxes.len().min(scores.len());
    let (boxes, scores) = (&boxes[..n], &scores[..n]);
    let areas: Vec<f32> = boxes
        .iter()
        .map(|b| (b[2] - b[0]) * (b[3] - b[1]))
        .collect();
    let order = order_descending(scores);
    let mut suppressed = vec![false; n];
    let mut keep = Vec::new();
    for (pos, &i) in order.iter().enumerate() {
        if suppressed[i] {
            continue;
        }
        keep.push(i);
        let bi = boxes[i];
        let area_i = areas[i];
        for &j in &order[pos + 1..] {
            if suppressed[j] {
                continue;
            }
            let bj = boxes[j];
            let xx1 = cmax(bi[0], bj[0]);
            let yy1 = cmax(bi[1], bj[1]);
            let xx2 = cmin(bi[2], bj[2]);
            let yy2 = cmin(bi[3], bj[3]);
            let w = cmax(0.0, xx2 - xx1);
            let h = cmax(0.0, yy2 - yy1);
            let inter = w * h;
            let iou = inter / (area_i + areas[j] - inter);
            if f64::from(iou) > iou_threshold {
                suppressed[j] = true;
            }
        }
    }
    keep
}

/// `torchvision.ops.batched_nms` on the CPU: NMS within each class (`classes[i]` is box `i`'s),
/// the kept indices by decreasing score. Like torchvision, up to 1000 boxes (4000 coordinates)
/// go through the coordinate trick, more through one NMS per class; the two can keep different
/// boxes where float32 rounding of the offset coordinates changes an IoU.
pub fn batched_nms(boxes: &[Box4], scores: &[f32], classes: &[usize], iou: f64) -> Vec<usize> {
    if boxes.len() * 4 > 4000 {
        batched_nms_per_class(boxes, scores, classes, iou)
    } else {
        batched_nms_offset(boxes, scores, classes, iou)
    }
}

/// torchvision's `_batched_nms_coordinate_trick`: every box shifted by
/// `class · (max coordinate + 1)` (float32) so that boxes of different classes never overlap,
/// then one [`nms`].
pub fn batched_nms_offset(
    boxes: &[Box4],
    scores: &[f32],
    classes: &[usize],
    iou: f64,
) -> Vec<usize> {
    let n = boxes.len().min(scores.len()).min(classes.len());
    if n == 0 {
        return Vec::new();
    }
    // `boxes.max()`: NaN when any coordinate is NaN.
    let mut max = f32::NEG_INFINITY;
    for &v in boxes[..n].iter().flatten() {
        if v.is_nan() || max.is_nan() {
            max = f32::NAN;
        } else if v > max {
            max = v;
        }
    }
    let shifted: Vec<Box4> = boxes[..n]
        .iter()
        .zip(&classes[..n])
        .map(|(b, &c)| {
            let off = c as f32 * (max + 1.0);
            [b[0] + off, b[1] + off, b[2] + off, b[3] + off]
        })
        .collect();
    nms(&shifted, &scores[..n], iou)
}

/// torchvision's `_batched_nms_vanilla`: one [`nms`] per class (classes in increasing order),
/// then the kept indices (in increasing index order) sorted by decreasing score with PyTorch's
/// unstable sort ([`torch_argsort_descending`]).
pub fn batched_nms_per_class(
    boxes: &[Box4],
    scores: &[f32],
    classes: &[usize],
    iou: f64,
) -> Vec<usize> {
    let n = boxes.len().min(scores.len()).min(classes.len());
    let mut ids: Vec<usize> = classes[..n].to_vec();
    ids.sort_unstable();
    ids.dedup();
    let mut kept = vec![false; n];
    for id in ids {
        let members: Vec<usize> = (0..n).filter(|&i| classes[i] == id).collect();
        let b: Vec<Box4> = members.iter().map(|&i| boxes[i]).collect();
        let s: Vec<f32> = members.iter().map(|&i| scores[i]).collect();
        for k in nms(&b, &s, iou) {
            kept[members[k]] = true;
        }
    }
    let keep: Vec<usize> = (0..n).filter(|&i| kept[i]).collect();
    // `keep_indices[scores[keep_indices].sort(descending=True)[1]]`: PyTorch's unstable sort.
    let kept_scores: Vec<f32> = keep.iter().map(|&i| scores[i]).collect();
    torch_argsort_descending(&kept_scores)
        .into_iter()
        .map(|k| keep[k])
        .collect()
}

/// The settings of Ultralytics' `non_max_suppression` that `run --detect` exposes.
#[derive(Debug, Clone, PartialEq)]
pub struct NmsParams {
    /// Confidence threshold: a candidate's best class score must be greater (0 to 1).
    pub conf: f64,
    /// IoU threshold: a box whose IoU with a kept box of its class is greater is dropped (0 to 1).
    pub iou: f64,
    /// One NMS over all classes instead of one per class.
    pub agnostic: bool,
    /// Most detections kept per image (1 to [`MAX_NMS_BOXES`]).
    pub max_det: usize,
    /// Most candidates NMS compares, the best-scored ones (1 to [`MAX_NMS_BOXES`]).
    pub max_nms: usize,
}

impl Default for NmsParams {
    /// Ultralytics' defaults of `non_max_suppression`: conf 0.25, IoU 0.45, class-aware,
    /// 300 detections, 30000 candidates.
    fn default() -> Self {
        NmsParams {
            conf: 0.25,
            iou: 0.45,
            agnostic: false,
            max_det: 300,
            max_nms: MAX_NMS_BOXES,
        }
    }
}

impl NmsParams {
    /// Refuses thresholds outside [0, 1] (Ultralytics asserts the same) and counts outside
    /// 1..=[`MAX_NMS_BOXES`], naming the flag.
    pub fn validate(&self) -> Result<(), Diagnostic> {
        for (flag, v, what) in [
            ("--conf", self.conf, "a confidence threshold"),
            ("--iou", self.iou, "an IoU threshold"),
        ] {
            if !(0.0..=1.0).contains(&v) {
                return Err(Diagnostic::new(format!(
                    "{flag} {v} is outside [0, 1]: it is {what}, compared with scores and IoUs that lie in [0, 1]"
                ))
                .help(format!("give {flag} a number from 0 to 1, e.g. {flag} {}", if flag == "--conf" { "0.25" } else { "0.45" })));
            }
        }
        for (flag, v) in [("--max-det", self.max_det), ("--max-nms", self.max_nms)] {
            if !(1..=MAX_NMS_BOXES).contains(&v) {
                return Err(Diagnostic::new(format!(
                    "{flag} {v} is outside 1 to {MAX_NMS_BOXES} (NMS compares every candidate with every other, so their number is bounded)"
                ))
                .help(format!("give {flag} a count from 1 to {MAX_NMS_BOXES}")));
            }
        }
        Ok(())
    }
}

/// One detection: the anchor (column of the prediction) it came from, its box in the
/// model input's pixels (xyxy), its score and class.
#[derive(Debug, Clone, PartialEq)]
pub struct Detection {
    pub anchor: usize,
    pub xyxy: Box4,
    pub score: f32,
    pub class: usize,
    /// The anchor's values after its class scores (Ultralytics' `extra` columns: a Pose head's
    /// key points in input pixels, a Segment head's mask coefficients), as the model gave them.
    pub extra: Vec<f32>,
    /// Its key points (x, y in the image's pixels, and the visibility when the head gives one),
    /// once [`Placement::keypoints`] has mapped them.
    pub keypoints: Vec<[f32; 3]>,
    /// Its mask (Segment), once [`process_mask`] has made it.
    pub mask: Option<Mask>,
}

/// Ultralytics' `non_max_suppression` (`multi_label=False`, no class filter) on one image's
/// prediction: `pred` is `(4 + nc + extra) × anchors`, row-major, rows `cx, cy, w, h` (input
/// pixels) then the `nc` class scores (the layout of a Detect head's eval output, one sample),
/// then the `extra` rows each detection carries along (key points, mask coefficients).
/// Keeps the anchors whose best class score is greater than `conf` (float32 comparison; a
/// NaN score drops the anchor), takes the first best class, converts xywh to xyxy, keeps the
/// `max_nms` best-scored (PyTorch's unstable `argsort`), shifts boxes by `class · 7680` unless agnostic, runs
/// [`nms`] and keeps the first `max_det`. The detections come by decreasing score.
pub fn non_max_suppression(
    pred: &[f32],
    anchors: usize,
    nc: usize,
    p: &NmsParams,
) -> Vec<Detection> {
    let conf = p.conf as f32;
    let mut cands: Vec<Detection> = Vec::new();
    if nc == 0 || pred.len() < (4 + nc) * anchors {
        return cands;
    }
    let at = |row: usize, a: usize| pred[row * anchors + a];
    for a in 0..anchors {
        // `amax` (NaN if any score is NaN), then `max(1)` (the first best).
        let mut best = at(4, a);
        let mut class = 0;
        let mut nan = best.is_nan();
        for c in 1..nc {
            let v = at(4 + c, a);
            nan |= v.is_nan();
            if v > best {
                best = v;
                class = c;
            }
        }
        if nan || best <= conf {
            continue;
        }
        let (cx, cy) = (at(0, a), at(1, a));
        let (hw, hh) = (at(2, a) / 2.0, at(3, a) / 2.0);
        let rows = pred.len() / anchors;
        cands.push(Detection {
            anchor: a,
            xyxy: [cx - hw, cy - hh, cx + hw, cy + hh],
            score: best,
            class,
            extra: (4 + nc..rows).map(|r| at(r, a)).collect(),
            keypoints: Vec::new(),
            mask: None,
        });
    }
    if cands.len() > p.max_nms {
        let scores: Vec<f32> = cands.iter().map(|d| d.score).collect();
        let order = torch_argsort_descending(&scores);
        cands = order[..p.max_nms]
            .iter()
            .map(|&i| cands[i].clone())
            .collect();
    }
    let shifted: Vec<Box4> = cands
        .iter()
        .map(|d| {
            let off = if p.agnostic {
                0.0
            } else {
                d.class as f32 * ULTRALYTICS_MAX_WH
            };
            [
                d.xyxy[0] + off,
                d.xyxy[1] + off,
                d.xyxy[2] + off,
                d.xyxy[3] + off,
            ]
        })
        .collect();
    let scores: Vec<f32> = cands.iter().map(|d| d.score).collect();
    let mut keep = nms(&shifted, &scores, p.iou);
    keep.truncate(p.max_det);
    keep.into_iter().map(|i| cands[i].clone()).collect()
}

/// YOLOv1's output grid: S×S cells, B boxes a cell, C classes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Yolov1Grid {
    pub s: usize,
    pub b: usize,
    pub c: usize,
}

/// Most cells a side and boxes a cell `--grid` and `--boxes-per-cell` accept.
pub const MAX_YOLOV1_GRID: usize = 1024;

impl Yolov1Grid {
    /// The grid of a flat output of `values` per sample, with S and B given: C is what is left,
    /// `values / S² − 5B`, which must be a whole number of at least 1.
    pub fn from_output(values: usize, s: usize, b: usize) -> Result<Yolov1Grid, Diagnostic> {
        if s == 0 || b == 0 || s > MAX_YOLOV1_GRID || b > MAX_YOLOV1_GRID {
            return Err(Diagnostic::new(format!(
                "a YOLOv1 grid of {s}×{s} cells with {b} boxes each: both must be 1 to {MAX_YOLOV1_GRID}"
            ))
            .help("give --grid and --boxes-per-cell as the model has them (the paper: 7 and 2)"));
        }
        let cells = s * s;
        let per_cell = values / cells;
        if !values.is_multiple_of(cells) || per_cell <= 5 * b {
            return Err(Diagnostic::new(format!(
                "the output has {values} values per sample, not S²·(5B + C) = {cells}·({} + C) for a YOLOv1 grid of S = {s}, B = {b} and some C ≥ 1",
                5 * b
            ))
            .note("--detect reads a flat output as YOLOv1's S×S×(B·5 + C) tensor (docs/DETECTION.md)")
            .help("give the model's grid with --grid S --boxes-per-cell B, or run a detection model (yolov1, an Ultralytics Detect model)"));
        }
        Ok(Yolov1Grid {
            s,
            b,
            c: per_cell - 5 * b,
        })
    }

    /// Values per cell, `5B + C`.
    pub fn per_cell(&self) -> usize {
        5 * self.b + self.c
    }
}

/// Decodes one sample of YOLOv1's output into the prediction layout
/// [`non_max_suppression`] reads, `(4 + C) × (S²·B)`: candidate `(row·S + col)·B + k` is box
/// `k` of cell (row, col). The flat output is the S×S×(5B + C) tensor in row-major order;
/// each cell holds B boxes of `x, y, w, h, confidence`, then C class probabilities
/// Pr(class | object). As in the paper (§2, §2.2): x, y are the centre's offset within its
/// cell, w, h the square roots of the box's width and height relative to the image (the
/// network predicts √w, √h), and a box's class-specific score is Pr(class | object) ·
/// confidence. Centres and sizes come out in input pixels (`in_w` × `in_h`).
pub fn decode_yolov1(out: &[f32], g: Yolov1Grid, in_w: usize, in_h: usize) -> Vec<f32> {
    let n = g.s * g.s * g.b;
    let mut pred = vec![0.0f32; (4 + g.c) * n];
    let (sf, wf, hf) = (g.s as f32, in_w as f32, in_h as f32);
    for row in 0..g.s {
        for col in 0..g.s {
            let cell = &out[(row * g.s + col) * g.per_cell()..][..g.per_cell()];
            let probs = &cell[5 * g.b..];
            for k in 0..g.b {
                let a = (row * g.s + col) * g.b + k;
                let bx = &cell[5 * k..5 * k + 5];
                pred[a] = (col as f32 + bx[0]) / sf * wf;
                pred[n + a] = (row as f32 + bx[1]) / sf * hf;
                pred[2 * n + a] = bx[2] * bx[2] * wf;
                pred[3 * n + a] = bx[3] * bx[3] * hf;
                for (c, &pr) in probs.iter().enumerate() {
                    pred[(4 + c) * n + a] = pr * bx[4];
                }
            }
        }
    }
    pred
}

/// Python's `round`: halves to even.
fn py_round(x: f64) -> f64 {
    x.round_ties_even()
}

/// How an image is resized into the model input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resize {
    /// The `image` crate's triangle (bilinear, area-aware when shrinking) filter: YOLOv1.
    Triangle,
    /// OpenCV's `cv2.resize(..., interpolation=INTER_LINEAR)` on 8-bit pixels, bit for bit
    /// ([`resize_linear_cv2`]): what Ultralytics' `LetterBox` calls.
    Cv2Linear,
}

/// How an image of `w × h` pixels becomes a model input of `in_w × in_h`, and back.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Placement {
    /// The image's size.
    pub w: u32,
    pub h: u32,
    /// The size it is resized to, inside the input.
    pub new_w: u32,
    pub new_h: u32,
    /// The padding before it, left and top (the rest pads the right and bottom).
    pub left: u32,
    pub top: u32,
    /// The resampling filter.
    pub resize: Resize,
}

impl Placement {
    /// A plain resize to the whole input (YOLOv1, as Darknet feeds it).
    pub fn stretch(w: u32, h: u32, in_w: u32, in_h: u32) -> Placement {
        Placement {
            w,
            h,
            new_w: in_w,
            new_h: in_h,
            left: 0,
            top: 0,
            resize: Resize::Triangle,
        }
    }

    /// Ultralytics' `LetterBox` (centred, scale-up allowed, padded to the whole input): the
    /// scale `r = min(in_h / h, in_w / w)`, the resized size `max(round(w·r), 1)` ×
    /// `max(round(h·r), 1)`, the padding split with `round(d/2 − 0.1)` before (Python rounding).
    pub fn letterbox(w: u32, h: u32, in_w: u32, in_h: u32) -> Placement {
        let r = (f64::from(in_h) / f64::from(h)).min(f64::from(in_w) / f64::from(w));
        let new_w = (py_round(f64::from(w) * r) as u32).clamp(1, in_w);
        let new_h = (py_round(f64::from(h) * r) as u32).clamp(1, in_h);
        let dw = f64::from(in_w - new_w) / 2.0;
        let dh = f64::from(in_h - new_h) / 2.0;
        Placement {
            w,
            h,
            new_w,
            new_h,
            left: py_round(dw - 0.1) as u32,
            top: py_round(dh - 0.1) as u32,
            resize: Resize::Cv2Linear,
        }
    }

    /// `model.predict`'s letterbox (`LetterBox(auto=True)`, Ultralytics' "rect" inference for
    /// a PyTorch model): an image of `w × h` scaled as for an `in_w × in_h` input
    /// ([`Placement::letterbox`]), then padded only up to the next multiple of `stride` on
    /// each side (split as there). Returns the placement and the input's width and height.
    /// Boxes go back onto the image as `scale_boxes` maps them, by [`Placement::letterbox`] of
    /// the image into that size, which recomputes the scale from it.
    pub fn letterbox_rect(
        w: u32,
        h: u32,
        in_w: u32,
        in_h: u32,
        stride: u32,
    ) -> (Placement, u32, u32) {
        let mut p = Placement::letterbox(w, h, in_w, in_h);
        let s = stride.max(1);
        let (dw, dh) = ((in_w - p.new_w) % s, (in_h - p.new_h) % s);
        p.left = py_round(f64::from(dw) / 2.0 - 0.1) as u32;
        p.top = py_round(f64::from(dh) / 2.0 - 0.1) as u32;
        (p, p.new_w + dw, p.new_h + dh)
    }

    /// The scale of each axis as Ultralytics' `scale_boxes`/`scale_coords` take it (the
    /// resized side over the image's, in double precision, applied to float32 values).
    fn gains(&self) -> (f32, f32) {
        (
            (f64::from(self.new_w) / f64::from(self.w)) as f32,
            (f64::from(self.new_h) / f64::from(self.h)) as f32,
        )
    }

    /// A point in input pixels mapped onto the image and clipped to it (`scale_coords`).
    pub fn point_to_image(&self, x: f32, y: f32) -> (f32, f32) {
        let (gx, gy) = self.gains();
        (
            ((x - self.left as f32) / gx).clamp(0.0, self.w as f32),
            ((y - self.top as f32) / gy).clamp(0.0, self.h as f32),
        )
    }

    /// A Pose detection's key points (`extra`: `k` points of `dims` values, x and y in input
    /// pixels) mapped onto the image as Ultralytics' `PosePredictor` does (`scale_coords`:
    /// minus the padding, over the scale, clipped); the visibility kept (NaN when `dims` is 2).
    pub fn keypoints(&self, extra: &[f32], k: usize, dims: usize) -> Vec<[f32; 3]> {
        (0..k)
            .filter_map(|i| extra.get(i * dims..(i + 1) * dims))
            .map(|v| {
                let (x, y) = self.point_to_image(v[0], v[1]);
                [x, y, if dims == 3 { v[2] } else { f32::NAN }]
            })
            .collect()
    }

    /// A box in input pixels mapped onto the image (Ultralytics' `scale_boxes`: minus the
    /// padding, divided by the scale of each axis) and clipped to it (`clip_boxes`).
    pub fn to_image(&self, b: Box4) -> Box4 {
        let (gx, gy) = self.gains();
        let (px, py) = (self.left as f32, self.top as f32);
        let (w, h) = (self.w as f32, self.h as f32);
        [
            ((b[0] - px) / gx).clamp(0.0, w),
            ((b[1] - py) / gy).clamp(0.0, h),
            ((b[2] - px) / gx).clamp(0.0, w),
            ((b[3] - py) / gy).clamp(0.0, h),
        ]
    }

    /// The model input (N×3×in_h×in_w, RGB scaled to [0, 1], no mean or std, as both Darknet
    /// and Ultralytics feed it) from an RGB image: resized bilinearly to `new_w × new_h`, placed
    /// at (`left`, `top`) on grey [`LETTERBOX_GREY`]; sample 0 copied to each of `n`.
    pub fn input(&self, rgb: &image::RgbImage, n: usize, in_w: usize, in_h: usize) -> Vec<f32> {
        let resized = match self.resize {
            Resize::Triangle => image::imageops::resize(
                rgb,
                self.new_w,
                self.new_h,
                image::imageops::FilterType::Triangle,
            ),
            Resize::Cv2Linear => resize_linear_cv2(rgb, self.new_w, self.new_h),
        };
        let grey = f32::from(LETTERBOX_GREY) / 255.0;
        let plane = in_w * in_h;
        let mut one = vec![grey; 3 * plane];
        for (x, y, p) in resized.enumerate_pixels() {
            let (ix, iy) = ((x + self.left) as usize, (y + self.top) as usize);
            if ix < in_w && iy < in_h {
                for ch in 0..3 {
                    one[ch * plane + iy * in_w + ix] = f32::from(p.0[ch]) / 255.0;
                }
            }
        }
        one.repeat(n)
    }
}

/// OpenCV's bilinear coefficients of one axis, as `resize` computes them for 8-bit images:
/// per destination index the first source index (unclipped) and the two weights in 11-bit
/// fixed point. `clamp` (the horizontal axis) moves an index outside the image onto its edge
/// with the whole weight there; the vertical axis keeps the fraction and clips the rows.
fn cv2_coeffs(src: u32, dst: u32, clamp: bool) -> Vec<(i64, i32, i32)> {
    const ONE: f32 = 2048.0; // INTER_RESIZE_COEF_SCALE
    let scale = 1.0 / (f64::from(dst) / f64::from(src));
    (0..dst)
        .map(|d| {
            let mut f = ((f64::from(d) + 0.5) * scale - 0.5) as f32;
            let mut s = f.floor() as i64;
            f -= s as f32;
            if clamp && s < 0 {
                (f, s) = (0.0, 0);
            }
            if clamp && s >= i64::from(src) - 1 {
                (f, s) = (0.0, i64::from(src) - 1);
            }
            // saturate_cast<short>: round half to even.
            let w0 = ((1.0 - f) * ONE).round_ties_even() as i32;
            let w1 = (f * ONE).round_ties_even() as i32;
            (s, w0, w1)
        })
        .collect()
}

/// `cv2.resize(img, (w, h), interpolation=cv2.INTER_LINEAR)` on an 8-bit RGB image, bit for
/// bit as OpenCV computes it on x86: a horizontal pass in 11-bit fixed point, then the
/// vertical pass as its SIMD kernel rounds it (`((S0>>4)·b0 >> 16) + ((S1>>4)·b1 >> 16)`,
/// plus 2, shifted right by 2). An exact halving (which OpenCV hands to INTER_AREA) gives the
/// same values. scripts/ultralytics_predict_reference.py checks it against OpenCV.
pub fn resize_linear_cv2(img: &image::RgbImage, w: u32, h: u32) -> image::RgbImage {
    let (sw, sh) = (img.width(), img.height());
    if (sw, sh) == (w, h) || w == 0 || h == 0 || sw == 0 || sh == 0 {
        return if (sw, sh) == (w, h) {
            img.clone()
        } else {
            image::RgbImage::new(w, h)
        };
    }
    let xs = cv2_coeffs(sw, w, true);
    let ys = cv2_coeffs(sh, h, false);
    let last_x = i64::from(sw) - 1;
    // The horizontal pass of every source row.
    let src = img.as_raw();
    let row_len = 3 * w as usize;
    let mut rows = vec![0i32; sh as usize * row_len];
    for y in 0..sh as usize {
        let line = &src[y * 3 * sw as usize..(y + 1) * 3 * sw as usize];
        let out = &mut rows[y * row_len..(y + 1) * row_len];
        for (x, &(s, a0, a1)) in xs.iter().enumerate() {
            let s0 = s as usize;
            let s1 = (s + 1).min(last_x) as usize;
            for c in 0..3 {
                out[3 * x + c] =
                    i32::from(line[3 * s0 + c]) * a0 + i32::from(line[3 * s1 + c]) * a1;
            }
        }
    }
    let mut out = image::RgbImage::new(w, h);
    let buf: &mut [u8] = &mut out;
    let last_y = i64::from(sh) - 1;
    for (y, &(s, b0, b1)) in ys.iter().enumerate() {
        let r0 = s.clamp(0, last_y) as usize;
        let r1 = (s + 1).clamp(0, last_y) as usize;
        let (s0, s1) = (
            &rows[r0 * row_len..][..row_len],
            &rows[r1 * row_len..][..row_len],
        );
        for (i, o) in buf[y * row_len..(y + 1) * row_len].iter_mut().enumerate() {
            let v = (((s0[i] >> 4) * b0) >> 16) + (((s1[i] >> 4) * b1) >> 16);
            *o = ((v + 2) >> 2).clamp(0, 255) as u8;
        }
    }
    out
}

/// A detection's binary mask, at the model input's resolution (as Ultralytics' `Results.masks`
/// has it without `retina_masks`).
#[derive(Debug, Clone, PartialEq)]
pub struct Mask {
    pub w: usize,
    pub h: usize,
    /// Row-major, 1 inside.
    pub bits: Vec<u8>,
}

impl Mask {
    /// Its pixels (inside).
    pub fn area(&self) -> usize {
        self.bits.iter().filter(|&&b| b != 0).count()
    }

    /// Its run-length code: the start (row-major index) and length of each run of ones.
    pub fn runs(&self) -> Vec<usize> {
        let mut out = Vec::new();
        let mut start = None;
        for (i, &b) in self.bits.iter().chain(std::iter::once(&0)).enumerate() {
            match (b != 0, start) {
                (true, None) => start = Some(i),
                (false, Some(s)) => {
                    out.extend([s, i - s]);
                    start = None;
                }
                _ => {}
            }
        }
        out
    }
}

/// Ultralytics' `process_mask(protos, coeffs, box, (in_h, in_w), upsample=True)` for one
/// detection: the mask logits `coeffs · protos` (`proto` is `nm × mh × mw`), upsampled
/// bilinearly to the input (`F.interpolate`, `align_corners=False`), thresholded at 0 (a
/// sigmoid above 0.5) and cropped to the box (input pixels; a column `c` is inside when
/// `x1 ≤ c < x2`, a row likewise).
#[allow(clippy::too_many_arguments)]
pub fn process_mask(
    proto: &[f32],
    nm: usize,
    mh: usize,
    mw: usize,
    coeffs: &[f32],
    b: Box4,
    in_w: usize,
    in_h: usize,
) -> Mask {
    let plane = mh * mw;
    let mut logits = vec![0.0f32; plane];
    for (k, &c) in coeffs.iter().enumerate().take(nm) {
        let p = &proto[k * plane..(k + 1) * plane];
        for (l, &v) in logits.iter_mut().zip(p) {
            *l += c * v;
        }
    }
    // PyTorch's upsample_bilinear2d source index: (dst + 0.5)·scale − 0.5, clamped at 0.
    let axis = |src: usize, dst: usize| -> Vec<(usize, usize, f32, f32)> {
        let scale = src as f32 / dst as f32;
        (0..dst)
            .map(|d| {
                let real = ((d as f32 + 0.5) * scale - 0.5).max(0.0);
                let i0 = (real as usize).min(src - 1);
                let i1 = (i0 + 1).min(src - 1);
                let l1 = real - i0 as f32;
                (i0, i1, 1.0 - l1, l1)
            })
            .collect()
    };
    let (ax, ay) = (axis(mw, in_w), axis(mh, in_h));
    let mut bits = vec![0u8; in_w * in_h];
    for (y, &(y0, y1, h0, h1)) in ay.iter().enumerate() {
        let yf = y as f32;
        if !(yf >= b[1] && yf < b[3]) {
            continue;
        }
        for (x, &(x0, x1, w0, w1)) in ax.iter().enumerate() {
            let xf = x as f32;
            if !(xf >= b[0] && xf < b[2]) {
                continue;
            }
            let v = h0 * (w0 * logits[y0 * mw + x0] + w1 * logits[y0 * mw + x1])
                + h1 * (w0 * logits[y1 * mw + x0] + w1 * logits[y1 * mw + x1]);
            bits[y * in_w + x] = u8::from(v > 0.0);
        }
    }
    Mask {
        w: in_w,
        h: in_h,
        bits,
    }
}

/// The detections of each sample as text: a table (or Markdown table) of class, score and
/// the box in image pixels (and a Segment detection's mask area; a Pose detection's key points
/// in a second table), or JSON (`[{"sample", "class", "score", "box": [x1, y1, x2, y2],
/// "anchor"}]`, with `"keypoints": [[x, y, visibility], …]` or `"mask_area"`, `"mask_size":
/// [w, h]` and `"mask_rle"`: start and length of each run of ones, row-major).
pub fn render(per_sample: &[Vec<Detection>], format: Format) -> String {
    if format == Format::Json {
        let rows: Vec<serde_json::Value> = per_sample
            .iter()
            .enumerate()
            .flat_map(|(n, dets)| {
                dets.iter().map(move |d| {
                    let mut v = serde_json::json!({
                        "sample": n,
                        "class": d.class,
                        "score": d.score,
                        "box": d.xyxy,
                        "anchor": d.anchor,
                    });
                    if !d.keypoints.is_empty() {
                        // [x, y, visibility], or [x, y] when the head gives no visibility.
                        v["keypoints"] = d
                            .keypoints
                            .iter()
                            .map(|k| {
                                if k[2].is_nan() {
                                    serde_json::json!([k[0], k[1]])
                                } else {
                                    serde_json::json!(k)
                                }
                            })
                            .collect();
                    }
                    if let Some(m) = &d.mask {
                        v["mask_area"] = m.area().into();
                        v["mask_size"] = serde_json::json!([m.w, m.h]);
                        v["mask_rle"] = m.runs().into();
                    }
                    v
                })
            })
            .collect();
        return serde_json::to_string_pretty(&serde_json::Value::Array(rows)).unwrap_or_default()
            + "\n";
    }
    let mut text = String::new();
    for (n, dets) in per_sample.iter().enumerate() {
        let of = if per_sample.len() > 1 {
            format!(" of sample {n}")
        } else {
            String::new()
        };
        text += &format!("detections{of}: {}\n", dets.len());
        if dets.is_empty() {
            continue;
        }
        let masks = dets.iter().any(|d| d.mask.is_some());
        let mut t = new_table(format == Format::Markdown);
        let mut header = vec!["#", "class", "score", "x1", "y1", "x2", "y2"];
        if masks {
            header.push("mask px");
        }
        t.set_header(header);
        for (k, d) in dets.iter().enumerate() {
            let mut row = vec![
                k.to_string(),
                d.class.to_string(),
                format!("{:.4}", d.score),
                format!("{:.1}", d.xyxy[0]),
                format!("{:.1}", d.xyxy[1]),
                format!("{:.1}", d.xyxy[2]),
                format!("{:.1}", d.xyxy[3]),
            ];
            if let Some(m) = &d.mask {
                row.push(m.area().to_string());
            }
            t.add_row(row);
        }
        text += &format!("{t}\n");
        if masks {
            if let Some(m) = dets.iter().find_map(|d| d.mask.as_ref()) {
                text += &format!(
                    "mask px: the mask's pixels at the model input's {}×{} (Ultralytics' masks without retina_masks)\n",
                    m.w, m.h
                );
            }
        }
        if dets.iter().any(|d| !d.keypoints.is_empty()) {
            let mut t = new_table(format == Format::Markdown);
            t.set_header(vec!["#", "keypoint", "x", "y", "visibility"]);
            for (k, d) in dets.iter().enumerate() {
                for (i, p) in d.keypoints.iter().enumerate() {
                    t.add_row(vec![
                        k.to_string(),
                        i.to_string(),
                        format!("{:.1}", p[0]),
                        format!("{:.1}", p[1]),
                        if p[2].is_nan() {
                            "-".into()
                        } else {
                            format!("{:.4}", p[2])
                        },
                    ]);
                }
            }
            text += &format!("key points (image pixels):\n{t}\n");
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_overlapping_boxes_by_hand() {
        // Boxes 0 and 1 overlap by 5×10 = 50 of a 100 + 100 − 50 = 150 union: IoU 1/3.
        let boxes = [
            [0.0, 0.0, 10.0, 10.0],
            [5.0, 0.0, 15.0, 10.0],
            [20.0, 20.0, 30.0, 30.0],
        ];
        let scores = [0.5, 0.9, 0.7];
        assert_eq!(nms(&boxes, &scores, 0.3), vec![1, 2]);
        // 1/3 is not greater than 0.34: nothing suppressed, by decreasing score.
        assert_eq!(nms(&boxes, &scores, 0.34), vec![1, 2, 0]);
        // Different classes: no suppression at 0.3.
        assert_eq!(batched_nms(&boxes, &scores, &[0, 1, 0], 0.3), vec![1, 2, 0]);
    }

    #[test]
    fn cv2_resize_by_hand() {
        // 2 → 4 pixels: source x = (d + 0.5)/2 − 0.5 = −0.25 (clamped to 0), 0.25, 0.75, 1.25
        // (clamped to 1); weights (2048, 0), (1536, 512), (512, 1536), (2048, 0) in 1/2048.
        // 255·512 = 130560 → (130560 >> 4)·2048 >> 16 = 255 → (255 + 2) >> 2 = 64 (63.75);
        // 255·1536 → 765 → 191 (191.25). OpenCV 5.0 gives [0, 64, 191, 255].
        let img = image::RgbImage::from_fn(2, 1, |x, _| image::Rgb([255 * x as u8; 3]));
        let out = resize_linear_cv2(&img, 4, 1);
        let row: Vec<u8> = out.pixels().map(|p| p.0[0]).collect();
        assert_eq!(row, [0, 64, 191, 255]);
        // 3 → 2 rows of 10, 20, 40: source y = 0.25 and 1.75 (the fraction kept, rows clipped):
        // ((20480 >> 4)·1536 >> 16) + ((40960 >> 4)·512 >> 16) = 30 + 20 → (50 + 2) >> 2 = 13;
        // (40960 >> 4)·512 >> 16 = 20, (81920 >> 4)·1536 >> 16 = 120 → 35. OpenCV: [13, 35].
        let img = image::RgbImage::from_fn(1, 3, |_, y| image::Rgb([[10, 20, 40][y as usize]; 3]));
        let out = resize_linear_cv2(&img, 1, 2);
        let col: Vec<u8> = out.pixels().map(|p| p.0[0]).collect();
        assert_eq!(col, [13, 35]);
    }

    #[test]
    fn rect_letterbox_by_hand() {
        // 150×100 into 128×128: r = 0.8533, 128×85 (85.33); rows padded 43 mod 32 = 11, split
        // round(5.5 − 0.1) = 5 before: a 128×96 input.
        let (p, w, h) = Placement::letterbox_rect(150, 100, 128, 128, 32);
        assert_eq!(
            (p.new_w, p.new_h, p.left, p.top, w, h),
            (128, 85, 0, 5, 128, 96)
        );
    }

    #[test]
    fn mask_runs_by_hand() {
        let m = Mask {
            w: 4,
            h: 2,
            bits: vec![1, 1, 0, 0, 0, 1, 1, 1],
        };
        assert_eq!((m.area(), m.runs()), (5, vec![0, 2, 5, 3]));
    }

    #[test]
    fn letterbox_of_a_wide_image() {
        // 1280×720 into 640×640: r = 0.5, 640×360, 280 rows of padding split 140/140.
        let p = Placement::letterbox(1280, 720, 640, 640);
        assert_eq!((p.new_w, p.new_h, p.left, p.top), (640, 360, 0, 140));
        assert_eq!(
            p.to_image([0.0, 140.0, 640.0, 500.0]),
            [0.0, 0.0, 1280.0, 720.0]
        );
    }
}
