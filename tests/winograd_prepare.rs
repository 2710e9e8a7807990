//! The inference plan makes Winograd's transformed filters (`Kernel::prepare`, which sees the
//! layer's shapes) for exactly the convolutions whose forward pass runs Winograd on them: 3×3,
//! stride 1, undilated, ungrouped, 256 channels or more in and out, on output maps of at least
//! 100 positions — and for no other (before, resnet50's 7×7 layer4 convolutions held transformed
//! filters that no pass read). The layers are derived by hand from the architectures below.

use crate::common::zoo_net;
use archscope::exec;
use archscope::Network;

/// The layers whose plan weights carry transformed filters (a third tensor of shape
/// `[16, out, in]`), in order, and those filters' bytes.
fn prepared(net: &Network) -> (Vec<String>, u64) {
    let w = exec::init_weights(net, 0).unwrap();
    let plan = exec::plan(net, &w);
    let mut names = Vec::new();
    let mut bytes = 0;
    for (k, node) in net.nodes.iter().enumerate() {
        let Some(ws) = plan.weights[k].as_ref() else {
            continue;
        };
        // (A one-dimensional third tensor is the blocked kernel's filter panels.)
        if let Some(u) = ws.get(2).filter(|u| u.shape.len() == 3) {
            let (i, o) = (
                node.in_shapes[0].0[1] as usize,
                node.out_shapes[0].0[1] as usize,
            );
            assert_eq!(u.shape, vec![16, o, i], "{}", node.name);
            names.push(node.name.clone());
            bytes += 4 * u.numel() as u64;
        }
    }
    (names, bytes)
}

#[test]
fn resnet50_prepares_only_the_14x14_layers() {
    // ResNet-50 (torchvision v1.5, stride on the 3×3): layer3.{1..5}.conv2 are 3×3 256 → 256
    // at stride 1 on 14×14 = 196 positions; layer3.0.conv2 has stride 2; layer4's 512 → 512
    // ones are on 7×7 = 49 positions, under 100; layer1/2's have 64 and 128 channels. Filters:
    // 5 × 16·256·256 floats = 20,971,520 bytes (layer4.1/4.2 would add 2 × 16·512·512·4 =
    // 33,554,432 bytes that no pass reads).
    let (names, bytes) = prepared(&zoo_net("resnet50"));
    let want: Vec<String> = (1..=5).map(|i| format!("layer3.{i}.conv2")).collect();
    assert_eq!(names, want);
    assert_eq!(bytes, 20_971_520);
}

#[test]
fn vgg16_prepares_its_256_and_512_channel_layers() {
    // VGG-16: stage3.conv.0 is 128 → 256 (under 256 in); stage3.conv.{1,2} 256 → 256 on
    // 56×56, stage4.conv.0 256 → 512 and stage4.conv.{1,2} 512 → 512 on 28×28,
    // stage5.conv.{0,1,2} 512 → 512 on 14×14 = 196 positions. Filters:
    // 16·(2·256·256 + 512·256 + 5·512·512)·4 bytes = 16·(131,072 + 131,072 + 1,310,720)·4
    // = 100,663,296.
    let (names, _) = prepared(&zoo_net("vgg16"));
    let want = [
        "stage3.conv.1",
        "stage3.conv.2",
        "stage4.conv.0",
        "stage4.conv.1",
        "stage4.conv.2",
        "stage5.conv.0",
        "stage5.conv.1",
        "stage5.conv.2",
    ];
    assert_eq!(names, want);
    assert_eq!(prepared(&zoo_net("vgg16")).1, 100_663_296);
}

#[test]
fn the_map_size_threshold_is_the_forward_pass_own() {
    // One 3×3 256 → 256 convolution, padding 1: on 10×10 (100 output positions) the plan
    // prepares it and the planned output is the Winograd one, which rounds differently from
    // the direct product; on 9×11 (99) it is not prepared and the planned output is the
    // direct one, bit for bit.
    for (h, w, winograd) in [(10, 10, true), (9, 11, false)] {
        let nodes = ["{id: c, op: conv, in: x, out: 256, kernel: 3, padding: 1}".to_string()];
        let (_, _, written, planned) = crate::common::run_as_written_and_planned(
            1,
            &[("x", vec![256, h, w])],
            &nodes,
            !winograd,
            (3, 4),
        );
        let yaml = format!(
            "inputs: {{x: [256, {h}, {w}]}}\nnodes:\n  - {{id: c, op: conv, in: x, out: 256, kernel: 3, padding: 1}}\n"
        );
        let net = Network::from_yaml("m.yaml", &yaml, &Default::default()).unwrap();
        let (names, _) = prepared(&net);
        assert_eq!(names.len(), usize::from(winograd), "{h}×{w}");
        let scale = written.data.iter().fold(0f32, |m, v| m.max(v.abs()));
        let worst = written
            .data
            .iter()
            .zip(&planned.data)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(worst <= 1e-5 * scale, "{h}×{w}: {worst} of {scale}");
        // Winograd rounds differently: some output differs in its last bits.
        assert_eq!(
            written
                .data
                .iter()
                .zip(&planned.data)
                .any(|(a, b)| a.to_bits() != b.to_bits()),
            winograd,
            "{h}×{w}"
        );
    }
}
