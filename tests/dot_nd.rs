//! `archscope dot` on the zoo's 3-D and 1-D networks: node labels name every axis of a kernel,
//! stride and padding that differ per axis (`3×7×7/1×2×2 p1×3×3`), one value where they agree,
//! and edges carry the per-axis shapes (`64×16×56×56`, `250×100`).

use crate::common::ok_text;

/// The edge labels of a `dot` output (` 64×16×56×56 `), in order.
fn edge_labels(dot: &str) -> Vec<&str> {
    dot.lines()
        .filter(|l| l.contains(" -> "))
        .filter_map(|l| l.split("[label=\"").nth(1))
        .filter_map(|l| l.split('"').next())
        .map(str::trim)
        .collect()
}

#[test]
fn dot_r3d_18_labels_every_axis() {
    let dot = ok_text(&["dot", "r3d_18"]);
    // torchvision's stem: Conv3d(3, 64, (3, 7, 7), stride (1, 2, 2), padding (1, 3, 3)).
    assert!(
        dot.contains("<td>conv 3×7×7/1×2×2 p1×3×3, 64</td>"),
        "{dot}"
    );
    // Its 3×3×3 convolutions: one value for the kernel and padding; layer2's first, stride 2.
    assert!(dot.contains("<td>conv 3×3×3 p1, 64</td>"));
    assert!(dot.contains("<td>conv 3×3×3/2 p1, 128</td>"));
    let edges = edge_labels(&dot);
    // The input 3×16×112×112; the stem: depth (16 + 2 − 3)/1 + 1 = 16, height and width
    // ⌊(112 + 6 − 7)/2⌋ + 1 = 56; layer2 halves each axis: 128×8×28×28; layer3 256×4×14×14;
    // layer4 512×2×7×7.
    for shape in [
        "3×16×112×112",
        "64×16×56×56",
        "128×8×28×28",
        "256×4×14×14",
        "512×2×7×7",
    ] {
        assert!(edges.contains(&shape), "no edge of {shape}: {edges:?}");
    }
}

#[test]
fn dot_wav2letter_labels_one_axis() {
    let dot = ok_text(&["dot", "wav2letter"]);
    assert!(dot.contains("<td>conv 250/160 p45, 250</td>"), "{dot}");
    assert!(dot.contains("<td>conv 48/2 p23, 250</td>"));
    let edges = edge_labels(&dot);
    // ⌊(16000 + 90 − 250)/160⌋ + 1 = 100 frames; ⌊(100 + 46 − 48)/2⌋ + 1 = 50; the 7-wide
    // ones keep 50; the 32-wide one with padding 16: 50 + 32 − 32 + 1 = 51.
    assert_eq!(&edges[..3], ["1×16000", "250×100", "250×50"]);
    assert!(edges.contains(&"2000×51"), "{edges:?}");
    assert!(edges.contains(&"40×51"), "{edges:?}");
}
