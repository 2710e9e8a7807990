//! The working buffers of the attention kernels are declared through `Kernel::workspace`, so
//! that `exec::check_memory` stays an upper bound: each layer's forward pass runs on two rayon
//! threads under a counting global allocator, and the bytes it held at its peak beyond its
//! inputs, weights and output must lie within the declared workspace (hand-derived beside each
//! case) plus a small allowance for shape vectors and the thread pool's bookkeeping. The
//! `gemm` crate's packing buffers, allocated per product, are part of the declaration
//! (`kernels::gemm_packing`); the L2 slab it keeps per thread for the thread's life (no
//! layer's) is allocated by unmeasured passes on the calling thread and on every thread of the
//! pool. One test in this binary, so that no other test
//! allocates while it measures.

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
fn declared_workspace_covers_what_the_attention_kernels_allocate() {
    // (inputs, layer, hand-derived workspace in elements, the least the kernel must have
    // allocated at once beyond its output, in elements). Two threads: the (sample, head) pairs
    // run as two tasks, each with one scratch of L·S scores + L·d query + d·S keys.
    let cases: &[(&str, &str, u64, usize)] = &[
        // Self-attention on 64×32 (declared channels first, 32×64, and transposed), 4 heads of
        // 8: Q, K, V and the heads' output 4·64·32 = 8,192; per task (two), the scratch
        // 64·64 + 64·8 + 8·64 = 5,120 and gemm's packing for the larger product, attention·V
        // (m = 64, n = 8, k = 64): k·(max(n↑16, 128·16) + m↑64) + 64 = 64·(2,048 + 64) + 64 =
        // 135,232 (Q·Kᵀ: 8·(2,048 + 64) + 64 = 16,960); 2·(5,120 + 135,232) = 280,704, more
        // than a projection's packing (32·(2,048 + 64) + 64 = 67,648). All four buffers live
        // at once with one scratch at least: 8,192 + 5,120.
        (
            "{x_cl: [32, 64]}",
            "{id: a, op: multi_head_attention, heads: 4, need_weights: false}",
            8_192 + 280_704,
            8_192 + 5_120,
        ),
        // SDPA on 4 heads of 64×16 with a 64×64 mask broadcast over the heads: per task
        // (two), the scratch 64·64 + 64·16 + 16·64 = 6,144 and the packing of attention·V
        // (m = 64, n = 16, k = 64): 64·(2,048 + 64) + 64 = 135,232; and the mask's 4 offsets
        // (8 elements): 2·(6,144 + 135,232) + 8.
        (
            "{q: [4, 64, 16], k: [4, 64, 16], v: [4, 64, 16], m: [1, 64, 64]}",
            "{id: a, op: sdpa, in: [q, k, v, m]}",
            2 * (6_144 + 135_232) + 8,
            6_144,
        ),
    ];
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build()
        .unwrap();
    for &(inputs, layer, declared, least) in cases {
        // A token input declared channels first (`x_cl`) is transposed to N×L×E first.
        let tokens = if inputs.contains("x_cl") {
            "  - {id: x, op: transpose, in: x_cl, dims: [1, 2]}\n"
        } else {
            ""
        };
        let yaml = format!("inputs: {inputs}\nnodes:\n{tokens}  - {layer}\n");
        let net = Network::from_yaml("w.yaml", &yaml, &BuildOptions::default())
            .unwrap_or_else(|e| panic!("{layer}: {e}"));
        let k = net.nodes.iter().position(|n| n.name == "a").unwrap();
        let node = &net.nodes[k];
        let w = exec::init_weights(&net, 1).unwrap();
        let xs: Vec<exec::Tensor> = node
            .in_shapes
            .iter()
            .map(|s| {
                let dims: Vec<usize> = s.0.iter().map(|&d| d as usize).collect();
                let n = dims.iter().product::<usize>();
                exec::Tensor::new(dims, (0..n).map(|i| (i % 7) as f32 * 0.1).collect())
            })
            .collect();
        let refs: Vec<&exec::Tensor> = xs.iter().collect();
        let got = pool.install(|| node.layer.workspace(&node.in_shapes, &node.out_shapes));
        assert_eq!(got, declared, "{layer}: declared workspace");
        let aux_in = vec![None; refs.len()];
        let extra = pool.install(|| {
            let ctx = || Ctx {
                macs: 0,
                aux_in: &aux_in,
                aux_out: None,
                want_aux: false,
                epilogue: Default::default(),
                recycled: None,
                into: None,
                means: None,
            };
            // Warm-up, unmeasured, on this thread and on every thread of the pool: whichever
            // thread the measured pass then hands a product to has its `gemm` packing memory
            // already (one warm-up pass alone left the measure depending on rayon's scheduling).
            node.layer
                .forward(&refs, &w.per_node[k], &mut ctx())
                .unwrap();
            rayon::broadcast(|_| {
                node.layer
                    .forward(&refs, &w.per_node[k], &mut ctx())
                    .unwrap();
            });
            // Five measured passes, each within the declaration (gemm's packing buffers,
            // allocated per product, are declared), each holding at least the buffers the
            // kernel must have.
            (0..5)
                .map(|_| {
                    let mut c = ctx();
                    let before = NOW.load(SeqCst);
                    PEAK.store(before, SeqCst);
                    let outs = node.layer.forward(&refs, &w.per_node[k], &mut c).unwrap();
                    let peak = PEAK.load(SeqCst);
                    let out_bytes: usize = outs.iter().map(|t| 4 * t.data.len()).sum();
                    drop(outs);
                    peak - before - out_bytes
                })
                .collect::<Vec<usize>>()
        });
        let (most, fewest) = (*extra.iter().max().unwrap(), *extra.iter().min().unwrap());
        assert!(
            most <= 4 * declared as usize + SLACK,
            "{layer}: held {most} bytes beyond its output, declared {} (+{SLACK})",
            4 * declared
        );
        assert!(
            fewest >= 4 * least,
            "{layer}: held only {fewest} bytes beyond its output, expected at least {}",
            4 * least
        );
    }
}
