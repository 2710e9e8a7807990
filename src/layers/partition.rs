//! MaxViT's partitions (torchvision `maxvit.WindowPartition` and `WindowDepartition`):
//! `window_partition` cuts an N×C×H×W map into non-overlapping p×p windows and lays them out
//! as N×(H/p·W/p)×p²×C — windows row-major, the p² positions of a window row-major, channels
//! last (`x.reshape(B, C, H/p, p, W/p, p).permute(0, 2, 4, 3, 5, 1).reshape(B, G, p², C)`);
//! `window_departition` puts N×(gh·gw)×p²×C back as N×C×(gh·p)×(gw·p). MaxViT's block
//! attention partitions with p = 7; its grid attention with p = H/7 and then swaps the two
//! middle axes (`transpose` with `functional: false`, torchvision's `SwapAxes`), so that each
//! sequence of 49 tokens is a 7×7 grid spread over the whole map. Neither computes anything:
//! 0 MACs and 0 FLOPs; each is a copy (torchvision's final `reshape` of a permuted tensor
//! copies it). A size that does not divide the map is a located error. The window and
//! position axes of the partitioned tensor hold map positions as digits of the map's axes
//! (`Role::Part`), so receptive fields follow every position through the partition, the swap
//! and the departition (docs/RECEPTIVE_FIELD.md).

use rayon::prelude::*;

use super::{
    mul, Arity, Attrs, Category, Counting, Kernel, Layer, Layout, Op, OpType, Role, Shape, Training,
};
use crate::error::Diagnostic;
use crate::kernels::Ctx;
use crate::tensor::Tensor;

pub const WINDOW_PARTITION: OpType = OpType {
    name: "window_partition",
    aliases: &[],
    keys: &["size"],
    arity: Arity::Exactly(1),
    fused_bn: None,
    defaults: &[],
    build: build_partition,
    summary: "cut N×C×H×W into `size`×`size` windows: N×(H/size·W/size)×size²×C (torchvision MaxViT's WindowPartition)",
};

pub const WINDOW_DEPARTITION: OpType = OpType {
    name: "window_departition",
    aliases: &[],
    keys: &["size", "grid"],
    arity: Arity::Exactly(1),
    fused_bn: None,
    defaults: &[],
    build: build_departition,
    summary: "put N×(gh·gw)×size²×C windows back as N×C×(gh·size)×(gw·size), `grid: [gh, gw]` (torchvision MaxViT's WindowDepartition)",
};

/// The sizes in 1..=64 that divide both `h` and `w`, for a help text.
fn dividing(h: u64, w: u64) -> String {
    let v: Vec<String> = (1..=h.min(w).min(64))
        .filter(|p| h.is_multiple_of(*p) && w.is_multiple_of(*p))
        .map(|p| p.to_string())
        .collect();
    v.join(", ")
}

#[derive(Debug, Clone, Copy)]
struct Partition {
    /// The window side p.
    size: u64,
    /// Windows per column and per row (H/p, W/p).
    grid: [u64; 2],
    channels: u64,
    /// Partition (N×C×H×W → N×G×p²×C) or departition (the inverse).
    inverse: bool,
}

fn build_partition(a: &mut Attrs) -> Result<Box<dyn Layer>, Diagnostic> {
    let x = a.input().clone();
    let size = a.req_positive("size", "7")?;
    if x.rank() != 4 || !a.input_layout(0).is_channels_first() {
        // N×C×·×· is what a departition gives when its windows were not where the partition
        // put them: a grid attention's swap that was not undone before departitioning.
        let scrambled =
            a.input_layout(0).0 == [Role::Batch, Role::Channel, Role::Other, Role::Other];
        return Err(a
            .error(
                "size",
                format!(
                    "window_partition needs an N×C×H×W map, got {x} laid out {}",
                    a.input_layout(0).letters(2)
                ),
            )
            .help(if scrambled {
                "this map's height and width are not the image's: if it comes from a window_departition, swap the windows back before it (a grid attention's `transpose, dims: [-2, -3]` is undone by another before the departition)"
            } else {
                "partition the output of a convolution (or a departition), before any permute"
            }));
    }
    let [c, h, w] = [x.0[1], x.0[2], x.0[3]];
    if !h.is_multiple_of(size) || !w.is_multiple_of(size) {
        return Err(a
            .error(
                "size",
                format!("a partition size of {size} does not divide the {h}×{w} map of the input {x}"),
            )
            .help(format!(
                "choose a size that divides both sides ({}), or an input size whose maps are multiples of {size} (MaxViT-T: 224×224, every stage's map a multiple of 7)",
                dividing(h, w)
            )));
    }
    // The window rows the kernel writes, each p²·C.
    mul(&[x.0[0], h, w, c])?;
    Ok(Box::new(Partition {
        size,
        grid: [h / size, w / size],
        channels: c,
        inverse: false,
    }))
}

fn build_departition(a: &mut Attrs) -> Result<Box<dyn Layer>, Diagnostic> {
    let x = a.input().clone();
    let size = a.req_positive("size", "7")?;
    let grid = a.req_pair("grid", "[8, 8]")?;
    if x.rank() != 4 {
        return Err(a
            .error(
                "size",
                format!("window_departition needs an N×G×P×C input (windows, positions, channels), got {x} (rank {})", x.rank()),
            )
            .help("departition the output of a `window_partition` (after its attention and MLP)"));
    }
    let [g, p, c] = [x.0[1], x.0[2], x.0[3]];
    let windows = mul(&[grid[0], grid[1]])?;
    if windows != g {
        return Err(a
            .error(
                "grid",
                format!(
                    "a grid of {}×{} windows is {windows}, but the input {x} holds {g}",
                    grid[0], grid[1]
                ),
            )
            .help("write the windows per column and per row of the map that was partitioned: `grid: [H/size, W/size]`"));
    }
    if mul(&[size, size])? != p {
        return Err(a
            .error(
                "size",
                format!("windows of {size}×{size} hold {} positions, but the input {x} has {p} per window", size * size),
            )
            .help("write the `size` the map was partitioned with: its square is the input's third dimension"));
    }
    mul(&[x.0[0], g, p, c])?;
    Ok(Box::new(Partition {
        size,
        grid,
        channels: c,
        inverse: true,
    }))
}

impl Partition {
    fn map(&self) -> [u64; 2] {
        [self.grid[0] * self.size, self.grid[1] * self.size]
    }

    /// The roles of the partitioned tensor's window and position dimensions: window
    /// `⌊y/p⌋·gw + ⌊x/p⌋`, position `(y mod p)·p + x mod p` of map pixel `(y, x)`.
    fn roles(&self) -> [Role; 2] {
        let p = self.size;
        [
            Role::Part(vec![(0, p, self.grid[0]), (1, p, self.grid[1])]),
            Role::Part(vec![(0, 1, p), (1, 1, p)]),
        ]
    }
}

impl Op for Partition {
    fn op(&self) -> &'static str {
        if self.inverse {
            "window_departition"
        } else {
            "window_partition"
        }
    }
    fn label(&self) -> String {
        let [gh, gw] = self.grid;
        let p = self.size;
        if self.inverse {
            format!("departition {gh}×{gw} windows of {p}×{p}")
        } else {
            format!("partition into {gh}×{gw} windows of {p}×{p}")
        }
    }
    fn category(&self) -> Category {
        Category::Reshape
    }
    fn output_shapes(&self, inputs: &[Shape]) -> Result<Vec<Shape>, Diagnostic> {
        let x = &inputs[0];
        let n = x.0[0];
        let [h, w] = self.map();
        let (g, p, c) = (
            self.grid[0] * self.grid[1],
            self.size * self.size,
            self.channels,
        );
        let (want, out) = if self.inverse {
            (vec![n, g, p, c], vec![n, c, h, w])
        } else {
            (vec![n, c, h, w], vec![n, g, p, c])
        };
        if x.0 != want {
            return Err(Diagnostic::new(format!(
                "{} was built for {}, got {x}",
                self.op(),
                Shape(want)
            )));
        }
        Ok(vec![Shape(out)])
    }
    fn layouts(
        &self,
        inputs: &[Layout],
        _in_shapes: &[Shape],
        _out_shapes: &[Shape],
    ) -> Result<Vec<Layout>, Diagnostic> {
        // The windows and the positions in a window are map positions, as digits of the map's
        // axes (`Role::Part`); the departitioned map is N×C×H×W again when its input's windows
        // and positions are where the partition put them (otherwise the map is scrambled: its
        // axes are not the input's).
        let [windows, positions] = self.roles();
        let part = Layout(vec![Role::Batch, windows, positions, Role::Channel]);
        Ok(vec![if !self.inverse {
            part
        } else if inputs
            .first()
            .is_some_and(|l| l.0.get(1..3) == part.0.get(1..3))
        {
            Layout::input(4)
        } else {
            Layout(vec![Role::Batch, Role::Channel, Role::Other, Role::Other])
        }])
    }
    fn torch_type(&self) -> Option<&'static str> {
        Some(if self.inverse {
            "WindowDepartition"
        } else {
            "WindowPartition"
        })
    }
}

impl Kernel for Partition {
    fn collapsed(&self) -> super::Collapsed {
        // The same permutation of positions on the one-channel copy.
        super::Collapsed::Layer(Box::new(Partition {
            channels: 1,
            ..*self
        }))
    }
    /// torchvision's own reshape–permute–reshape: `Reshape`, `Transpose`, `Reshape`.
    fn onnx(&self, e: &mut super::onnx::Emit) -> Result<(), Diagnostic> {
        use super::onnx::ints;
        let x = e.input(0);
        let n = e.in_dims(0)[0];
        let (p, c) = (self.size as i64, self.channels as i64);
        let [gh, gw] = [self.grid[0] as i64, self.grid[1] as i64];
        let (split, perm, merged): (Vec<i64>, [i64; 6], Vec<i64>) = if self.inverse {
            (
                vec![n, gh, gw, p, p, c],
                [0, 5, 1, 3, 2, 4],
                vec![n, c, gh * p, gw * p],
            )
        } else {
            (
                vec![n, c, gh, p, gw, p],
                [0, 2, 4, 3, 5, 1],
                vec![n, gh * gw, p * p, c],
            )
        };
        let y = e.reshape(&x, &split);
        let y = e.step("Transpose", &[&y], vec![ints("perm", &perm)]);
        let out = e.output(0);
        let shape = e.ints("shape", &merged);
        e.node("Reshape", &[&y, &shape], &[&out], vec![]);
        Ok(())
    }
    fn forward(
        &self,
        inputs: &[&Tensor],
        _weights: &[Tensor],
        ctx: &mut Ctx,
    ) -> Result<Vec<Tensor>, Diagnostic> {
        let x = inputs[0];
        let n = x.shape[0];
        let p = self.size as usize;
        let [gh, gw] = [self.grid[0] as usize, self.grid[1] as usize];
        let (h, w, c) = (gh * p, gw * p, self.channels as usize);
        // Element (b, window (i, j), position (u, v), channel k) of the partitioned tensor is
        // x[b, k, i·p + u, j·p + v].
        let windowed = |b: usize, i: usize, j: usize, u: usize, v: usize, k: usize| {
            ((((b * gh + i) * gw + j) * p + u) * p + v) * c + k
        };
        let mapped = |b: usize, k: usize, y: usize, xx: usize| ((b * c + k) * h + y) * w + xx;
        if self.inverse {
            let mut out = ctx.output(&[n, c, h, w]);
            out.data
                .par_chunks_mut(h * w)
                .enumerate()
                .for_each(|(bk, plane)| {
                    let (b, k) = (bk / c, bk % c);
                    for (y, row) in plane.chunks_mut(w).enumerate() {
                        for (xx, o) in row.iter_mut().enumerate() {
                            *o = x.data[windowed(b, y / p, xx / p, y % p, xx % p, k)];
                        }
                    }
                });
            Ok(vec![out])
        } else {
            let mut out = ctx.output(&[n, gh * gw, p * p, c]);
            out.data
                .par_chunks_mut(p * p * c)
                .enumerate()
                .for_each(|(bg, win)| {
                    let (b, i, j) = (bg / (gh * gw), bg / gw % gh, bg % gw);
                    for (t, row) in win.chunks_mut(c).enumerate() {
                        let (y, xx) = (i * p + t / p, j * p + t % p);
                        for (k, o) in row.iter_mut().enumerate() {
                            *o = x.data[mapped(b, k, y, xx)];
                        }
                    }
                });
            Ok(vec![out])
        }
    }
}

impl Counting for Partition {
    fn training(
        &self,
        _inputs: &[Shape],
        _outputs: &[Shape],
        _input_grad: bool,
        _dtype_bytes: u64,
    ) -> Result<Training, Diagnostic> {
        // A copy: no FLOPs, nothing saved; the gradient is the inverse copy.
        Ok(Training::default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layers::testutil::build_laid;

    #[test]
    fn shapes_and_errors() {
        let (l, out) =
            build_laid("window_partition", "{size: 7}", &[&[1, 64, 56, 56]], &[]).unwrap();
        assert_eq!(out, vec![Shape(vec![1, 64, 49, 64])]);
        assert_eq!(l.torch_type(), Some("WindowPartition"));
        let e = build_laid("window_partition", "{size: 8}", &[&[1, 64, 28, 28]], &[]).unwrap_err();
        assert_eq!(
            e.message,
            "a partition size of 8 does not divide the 28×28 map of the input 1×64×28×28"
        );
        assert!(e.help.unwrap().contains("(1, 2, 4, 7, 14, 28)"));
        let (_, out) = build_laid(
            "window_departition",
            "{size: 8, grid: [7, 7]}",
            &[&[1, 49, 64, 64]],
            &[],
        )
        .unwrap();
        assert_eq!(out, vec![Shape(vec![1, 64, 56, 56])]);
        let e = build_laid(
            "window_departition",
            "{size: 8, grid: [7, 6]}",
            &[&[1, 49, 64, 64]],
            &[],
        )
        .unwrap_err();
        assert_eq!(
            e.message,
            "a grid of 7×6 windows is 42, but the input 1×49×64×64 holds 49"
        );
        let e = build_laid(
            "window_departition",
            "{size: 7, grid: [7, 7]}",
            &[&[1, 49, 64, 64]],
            &[],
        )
        .unwrap_err();
        assert!(e.message.contains("hold 49 positions"), "{}", e.message);
    }

    #[test]
    fn partition_then_departition_is_the_identity_and_torchvisions_order() {
        // 1×2×4×6, p = 2: window (i, j) position (u, v) channel k holds x[k, 2i+u, 2j+v].
        let x = Tensor::new(vec![1, 2, 4, 6], (0..48).map(|v| v as f32).collect());
        let (part, _) = build_laid("window_partition", "{size: 2}", &[&[1, 2, 4, 6]], &[]).unwrap();
        let mut ctx = Ctx::default();
        let y = part.forward(&[&x], &[], &mut ctx).unwrap().remove(0);
        assert_eq!(y.shape, vec![1, 6, 4, 2]);
        // Window (1, 2) = g 5, position (1, 0) = t 2, channel 1: x[1, 3, 4] = 24 + 3·6 + 4.
        assert_eq!(y.data[((5 * 4) + 2) * 2 + 1], 46.0);
        let (dep, _) = build_laid(
            "window_departition",
            "{size: 2, grid: [2, 3]}",
            &[&[1, 6, 4, 2]],
            &[],
        )
        .unwrap();
        let z = dep.forward(&[&y], &[], &mut ctx).unwrap().remove(0);
        assert_eq!(z.shape, x.shape);
        assert_eq!(z.data, x.data);
    }
}
