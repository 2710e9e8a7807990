//! `weights_names:` targets with a `*` inside a component and a `-`: torchvision's RegNet names
//! its blocks `trunk_output.block1.block1-0`, a component that holds both a fixed part and the
//! repeat index of the layer path. The names here are written out by hand beside each assertion.

use crate::common::{build_error, net};

/// Two stages of two repeated convolutions (with batch norm); the rules put each repeat index
/// inside a `blockK-I` component, as RegNet's state dict does.
const MODEL: &str = "inputs: {x: [3, 8, 8]}
defaults:
  conv: {bias: false, bn: true}
nodes:
  - {id: block1, op: conv, out: 4, kernel: 3, padding: 1, repeat: 2}
  - {id: block2, op: conv, out: 4, kernel: 3, padding: 1, repeat: 2}
weights_names:
  \"block1.*.bn\": \"trunk_output.block1.block1-*.f.1\"
  \"block1.*\":    \"trunk_output.block1.block1-*.f.0\"
  \"*.*.bn\":      \"trunk_output.*.*-x.1\"
  \"*.*\":         \"t.x*y*z.0\"
";

#[test]
fn a_star_inside_a_target_component_takes_the_matched_component() {
    let n = net(MODEL);
    let names: Vec<(&str, &str)> = n
        .nodes
        .iter()
        .zip(&n.tensor_prefix)
        .filter(|(node, _)| !node.layer.weights().is_empty())
        .map(|(node, p)| (node.name.as_str(), p.as_str()))
        .collect();
    assert_eq!(
        names,
        vec![
            // block1.I → block1-I (the `*` between `block1-` and the end)
            ("block1.0", "trunk_output.block1.block1-0.f.0"),
            ("block1.0.bn", "trunk_output.block1.block1-0.f.1"),
            ("block1.1", "trunk_output.block1.block1-1.f.0"),
            ("block1.1.bn", "trunk_output.block1.block1-1.f.1"),
            // `*.*.bn` on block2.0.bn: the stars take `block2`, then `0`, in order
            ("block2.0", "t.xblock2y0z.0"),
            ("block2.0.bn", "trunk_output.block2.0-x.1"),
            ("block2.1", "t.xblock2y1z.0"),
            ("block2.1.bn", "trunk_output.block2.1-x.1"),
        ]
    );
}

#[test]
fn the_stars_inside_target_components_are_counted() {
    // `*.*.bn` matches two components; `t.*-*-*` would place three.
    let text = MODEL.replace("\"trunk_output.*.*-x.1\"", "\"t.*-*-*\"");
    let e = build_error("m.yaml", &text).to_string();
    assert!(
        e.contains("`*.*.bn` has 2 `*` but its tensor name `t.*-*-*` has 3"),
        "{e}"
    );
    assert!(e.contains("m.yaml:10:"), "{e}");
}

#[test]
fn a_target_component_takes_letters_digits_underscore_dash_and_stars_only() {
    let text = MODEL.replace("\"t.x*y*z.0\"", "\"t.x*y*z.0+\"");
    let e = build_error("m.yaml", &text).to_string();
    assert!(
        e.contains("`t.x*y*z.0+` is not a valid tensor-name prefix: component `0+`"),
        "{e}"
    );
}
