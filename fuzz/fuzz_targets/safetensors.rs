//! Fuzz target: any bytes as a `.safetensors` weights file for a small fixed network
//! (`seeds/tiny.yaml`: conv + fused batch norm + ReLU, depthwise conv, PReLU, pooling,
//! linear). Loading must never panic; weights that load must have exactly the shapes the
//! layers declare, and a forward pass with them must run.

#![no_main]

use std::sync::OnceLock;

use archscope::exec::{self, Tensor};
use archscope::{BuildOptions, Network};
use libfuzzer_sys::fuzz_target;

fn net() -> &'static Network {
    static NET: OnceLock<Network> = OnceLock::new();
    NET.get_or_init(|| {
        Network::from_yaml(
            "tiny.yaml",
            include_str!("../seeds/tiny.yaml"),
            &BuildOptions::default(),
        )
        .expect("the fixed network builds")
    })
}

fn input() -> &'static Vec<Tensor> {
    static INPUT: OnceLock<Vec<Tensor>> = OnceLock::new();
    INPUT.get_or_init(|| exec::random_input(net(), 0).expect("a small input"))
}

fuzz_target!(|data: &[u8]| {
    let net = net();
    let Ok(w) = exec::load_safetensors(net, data, "fuzz.safetensors") else {
        return;
    };
    assert_eq!(w.per_node.len(), net.nodes.len());
    for (node, tensors) in net.nodes.iter().zip(&w.per_node) {
        let specs = node.layer.weights();
        assert_eq!(specs.len(), tensors.len(), "{}", node.name);
        for (s, t) in specs.iter().zip(tensors) {
            assert_eq!(s.shape, t.shape, "{}.{}", node.name, s.name);
            assert_eq!(t.data.len(), t.shape.iter().product::<usize>());
        }
    }
    let out = exec::run(net, &w, input(), None).expect("a forward pass with loaded weights");
    assert_eq!(out.outputs[0].shape, vec![1, 3]);
});
