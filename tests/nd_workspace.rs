//! The working buffers the 1-D/3-D kernels allocate are declared through `Kernel::workspace`,
//! so that `exec::check_memory` stays an upper bound: each layer's forward pass runs on two
//! rayon threads under a counting global allocator, and the bytes it held at its peak beyond
//! its input, weights and output must lie within the declared workspace (hand-derived beside
//! each case) plus a small allowance for shape vectors and the thread pool's bookkeeping. The
//! `gemm` crate's packing memory, allocated once per thread on its first product and kept, is
//! measured away by a first, unmeasured pass.
//! One test in this binary, so that no other test allocates while it measures.

mod common;

use std::sync::atomic::Ordering::SeqCst;

use archscope::exec;
use archscope::kernels::Ctx;
use archscope::{BuildOptions, Network};

#[path = "common/counting_alloc.rs"]
mod counting_alloc;
use counting_alloc::{NOW, PEAK, SLACK};

#[global_allocator]
static ALLOC: counting_alloc::Counting = counting_alloc::Counting;

#[test]
fn declared_workspace_covers_what_the_kernels_allocate() {
    // (input shape with batch, layer, hand-derived workspace in elements, the least the
    // kernel must have allocated at once beyond its output, in elements, want_aux).
    let cases: &[(&[usize], &str, u64, usize, bool)] = &[
        // conv3d 8→8, 3×3×3, padding 1 on 8×16×16: k = 8·27 = 216, n = 2048 ≥ 256·2 threads:
        // column tiles of ⌈(2^19/(4·216) = 606)/16⌉·16 = 608, 4 tiles on 2 threads, one 216×608
        // buffer each: 2·216·608 = 262,656 (at least one of them allocated).
        (
            &[1, 8, 8, 16, 16],
            "{op: conv3d, out: 8, kernel: 3, padding: 1}",
            262_656,
            216 * 608,
            false,
        ),
        // The same, reflect-padded: the padded input 8·10·18·18 = 25,920 as well, convolved
        // unpadded (10×18×18 → 8×16×16: the same tiles): 262,656 + 25,920.
        (
            &[1, 8, 8, 16, 16],
            "{op: conv3d, out: 8, kernel: 3, padding: 1, padding_mode: reflect}",
            288_576,
            25_920 + 216 * 608,
            false,
        ),
        // Small image: 32 channels, 3×3×3 (k = 864) on 4×8×8 → n = 256 < 256·2 and
        // 16·256·864 ≥ 2^18 MACs: one im2col of the image, 864·256 = 221,184.
        (
            &[1, 32, 4, 8, 8],
            "{op: conv3d, out: 16, kernel: 3, padding: 1}",
            221_184,
            221_184,
            false,
        ),
        // conv1d 4→6, kernel 5 on 3000 samples: k = 20, n = 2996, 6·2996·20 = 359,520 MACs:
        // columns ⌈(2^19/80 = 6553)/16⌉·16 = 6560 > n, so one tile of 2996: 20·2996 = 59,920.
        (
            &[1, 4, 3000],
            "{op: conv1d, out: 6, kernel: 5}",
            59_920,
            59_920,
            false,
        ),
        // 1×1×1 stride 1: the GEMM reads the input, no buffer.
        (
            &[1, 16, 4, 8, 8],
            "{op: conv3d, out: 16, kernel: 1}",
            0,
            0,
            false,
        ),
        // conv_transpose3d 4→6, 3×3×3/2 on 3×4×4: the col2im buffer 6·27 × 48 = 7,776.
        (
            &[1, 4, 3, 4, 4],
            "{op: conv_transpose3d, out: 6, kernel: 3, stride: 2}",
            7_776,
            7_776,
            false,
        ),
        // maxpool3d 2×2×2/2 on 2×4×8×8 with its indices: one u32 per output, 2·2·4·4 = 64.
        (&[1, 2, 4, 8, 8], "{op: maxpool3d, kernel: 2}", 64, 64, true),
    ];
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build()
        .unwrap();
    for &(shape, layer, declared, least, want_aux) in cases {
        let dims: Vec<String> = shape[1..].iter().map(|d| d.to_string()).collect();
        let yaml = format!(
            "inputs: {{x: [{}]}}\nnodes:\n  - {layer}\n",
            dims.join(", ")
        );
        let net = Network::from_yaml("w.yaml", &yaml, &BuildOptions::default())
            .unwrap_or_else(|e| panic!("{layer}: {e}"));
        let node = &net.nodes[1];
        let w = exec::init_weights(&net, 1).unwrap();
        let x = exec::random_input(&net, 2).unwrap();
        let got = pool.install(|| node.layer.workspace(&node.in_shapes, &node.out_shapes));
        assert_eq!(got, declared, "{layer}: declared workspace");
        let aux_in = [None];
        // Once unmeasured: the `gemm` crate packs its operands in per-thread memory it
        // allocates on a thread's first product and keeps (not per layer; see the module
        // documentation of the executor's memory budget).
        // The unmeasured pass runs on each of the pool's threads at once, so that each thread
        // runs products itself and keeps its `gemm` packing memory before the measured pass
        // (one pass alone may run every tile on one thread when the other is descheduled: then
        // the other thread's first product, in the measured pass, would be counted).
        pool.broadcast(|_| {
            let aux_in = [None];
            let mut warm = Ctx {
                macs: 0,
                aux_in: &aux_in,
                aux_out: None,
                want_aux,
                epilogue: Default::default(),
                recycled: None,
                into: None,
                means: None,
            };
            node.layer
                .forward(&[&x[0]], &w.per_node[1], &mut warm)
                .unwrap();
        });
        let (extra, out_bytes) = pool.install(|| {
            let mut ctx = Ctx {
                macs: 0,
                aux_in: &aux_in,
                aux_out: None,
                want_aux,
                epilogue: Default::default(),
                recycled: None,
                into: None,
                means: None,
            };
            let before = NOW.load(SeqCst);
            PEAK.store(before, SeqCst);
            let outs = node
                .layer
                .forward(&[&x[0]], &w.per_node[1], &mut ctx)
                .unwrap();
            let peak = PEAK.load(SeqCst);
            let out_bytes: usize = outs.iter().map(|t| 4 * t.data.len()).sum();
            drop(ctx);
            (peak - before - out_bytes, out_bytes)
        });
        assert!(
            extra <= 4 * declared as usize + SLACK,
            "{layer}: held {extra} bytes beyond its {out_bytes}-byte output, declared {} (+{SLACK})",
            4 * declared
        );
        assert!(
            extra >= 4 * least,
            "{layer}: held only {extra} bytes beyond its output, expected at least {}",
            4 * least
        );
    }
}
