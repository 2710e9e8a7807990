//! The working buffers of the attention kernels are declared through `Kernel::workspace`, so
//! that `exec::check_memory` stays an upper bound: each layer's forward pass runs on two rayon
//! threads under a counting global allocator, and the bytes it held at its peak beyond its
//! inputs, weights and output must lie within the declared workspace (hand-derived beside each
//! case) plus a small allowance for shape vectors and the thread pool's bookkeeping. The
//! `gemm` crate's packing memory, allocated once per thread on its first product and kept, is
//! measured away by a first, unmeasured pass. One test in this binary, so that no other test
//! allocates while it measures.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};

use archscope::exec;
use archscope::kernels::Ctx;
use archscope::{BuildOptions, Network};

/// Bytes allocated now, and the most at once since the last reset.
static NOW: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

struct Counting;

// SAFETY: every call is forwarded to the system allocator unchanged; only counters are kept.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(l) };
        if !p.is_null() {
            let now = NOW.fetch_add(l.size(), SeqCst) + l.size();
            PEAK.fetch_max(now, SeqCst);
        }
        p
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        unsafe { System.dealloc(p, l) };
        NOW.fetch_sub(l.size(), SeqCst);
    }
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        let p = unsafe { System.alloc_zeroed(l) };
        if !p.is_null() {
            let now = NOW.fetch_add(l.size(), SeqCst) + l.size();
            PEAK.fetch_max(now, SeqCst);
        }
        p
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        let q = unsafe { System.realloc(p, l, new) };
        if !q.is_null() {
            NOW.fetch_sub(l.size(), SeqCst);
            let now = NOW.fetch_add(new, SeqCst) + new;
            PEAK.fetch_max(now, SeqCst);
        }
        q
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// Allowance for the small allocations of a forward pass besides its buffers (shape vectors,
/// rayon's job bookkeeping).
const SLACK: usize = 16 << 10;

#[test]
fn declared_workspace_covers_what_the_attention_kernels_allocate() {
    // (inputs, layer, hand-derived workspace in elements, the least the kernel must have
    // allocated at once beyond its output, in elements). Two threads: the (sample, head) pairs
    // run as two tasks, each with one scratch of L·S scores + L·d query + d·S keys.
    let cases: &[(&str, &str, u64, usize)] = &[
        // Self-attention on 64×32, 4 heads of 8: Q, K, V and the heads' output 4·64·32 =
        // 8,192; scratch 2·(64·64 + 64·8 + 8·64) = 10,240. All four buffers live at once with
        // one scratch at least: 8,192 + 5,120.
        (
            "{x: [64, 32]}",
            "{id: a, op: multi_head_attention, heads: 4, need_weights: false}",
            8_192 + 10_240,
            8_192 + 5_120,
        ),
        // SDPA on 4 heads of 64×16 with a 64×64 mask broadcast over the heads: scratch
        // 2·(64·64 + 64·16 + 16·64) = 12,288, and the mask's 4 offsets (8 elements).
        (
            "{q: [4, 64, 16], k: [4, 64, 16], v: [4, 64, 16], m: [1, 64, 64]}",
            "{id: a, op: sdpa, in: [q, k, v, m]}",
            12_288 + 8,
            6_144,
        ),
    ];
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build()
        .unwrap();
    for &(inputs, layer, declared, least) in cases {
        let yaml = format!("inputs: {inputs}\nnodes:\n  - {layer}\n");
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
                epilogue: None,
                recycled: None,
            };
            node.layer
                .forward(&refs, &w.per_node[k], &mut ctx())
                .unwrap();
            let mut c = ctx();
            let before = NOW.load(SeqCst);
            PEAK.store(before, SeqCst);
            let outs = node.layer.forward(&refs, &w.per_node[k], &mut c).unwrap();
            let peak = PEAK.load(SeqCst);
            let out_bytes: usize = outs.iter().map(|t| 4 * t.data.len()).sum();
            peak - before - out_bytes
        });
        assert!(
            extra <= 4 * declared as usize + SLACK,
            "{layer}: held {extra} bytes beyond its output, declared {} (+{SLACK})",
            4 * declared
        );
        assert!(
            extra >= 4 * least,
            "{layer}: held only {extra} bytes beyond its output, expected at least {}",
            4 * least
        );
    }
}
