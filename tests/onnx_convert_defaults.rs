//! `archscope convert` writes readable YAML (docs/ONNX.md, "convert"): no attribute equal to
//! its layer type's default. Checked on the converted committed files below, independently of
//! the code that leaves defaults out: removing any attribute a layer line writes changes the
//! built network (else it was the default and should not be written), and adding back any
//! default the layer type declares ([`archscope::layers::OpType::defaults`]) that the line
//! leaves out builds the same network (the declared default is what the builder uses), or is
//! refused there (a key that does not apply, as `align_corners` on a nearest upsample). And
//! converted layer lines read as the zoo's hand-written ones for the same layers: resnet18's
//! stem, basic-block convolutions, pooling and head (from torch.onnx.export of torchvision's
//! resnet18), resnet50's bottleneck convolutions (from `archscope export` of the zoo's).

use crate::common::zoo_net;
use crate::onnx_convert::{converted, opts};
use archscope::layers::{lookup, AttrDefault};
use archscope::onnx::export::{export_bytes, ExportOptions};
use archscope::onnx::{self, convert};
use archscope::Network;

/// Converted committed files whose every layer line is checked: the torchvision models of
/// issue #17 and ones with the other ops the reader writes (attention, windows, splits, YOLO's
/// pools and upsampling, GPT-2's embedding).
const FILES: &[&str] = &[
    "resnet18_graph.onnx",
    "mobilenet_v2_graph.onnx",
    "efficientnet_b0_graph.onnx",
    "googlenet_graph.onnx",
    "inception_v3_graph.onnx",
    "convnext_tiny_graph.onnx",
    "vit_tiny.onnx",
    "swin_tiny.onnx",
    "maxvit_tiny.onnx",
    "yolo_v8_like_n_predecode_graph.onnx",
    "gpt_tiny.onnx",
    "tiny_resnet.onnx",
];

/// Keys of a layer line that are not the layer's attributes (wiring, block use).
const NOT_ATTRIBUTES: &[&str] = &["id", "op", "in", "when", "use", "repeat", "with", "first"];

/// A one-line flow mapping of the converted file (`  - {id: c, op: conv2d, out: 8}`): the text
/// before `{`, and its entries as (key, value text), split at top-level commas.
fn entries(line: &str) -> Option<(String, Vec<(String, String)>)> {
    let t = line.trim_start();
    if !t.starts_with("- {") || !line.ends_with('}') {
        return None;
    }
    let open = line.find('{')?;
    let inner = &line[open + 1..line.len() - 1];
    let (mut depth, mut quoted, mut start) = (0i32, false, 0usize);
    let mut parts = Vec::new();
    for (i, c) in inner.char_indices() {
        match c {
            '"' => quoted = !quoted,
            '[' | '{' if !quoted => depth += 1,
            ']' | '}' if !quoted => depth -= 1,
            ',' if !quoted && depth == 0 => {
                parts.push(inner[start..i].trim().to_string());
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(inner[start..].trim().to_string());
    let kv = parts
        .iter()
        .map(|p| {
            let (k, v) = p.split_once(": ").expect("key: value");
            (k.to_string(), v.to_string())
        })
        .collect();
    Some((line[..open].to_string(), kv))
}

fn line_of(prefix: &str, kv: &[(String, String)]) -> String {
    let body: Vec<String> = kv.iter().map(|(k, v)| format!("{k}: {v}")).collect();
    format!("{prefix}{{{}}}", body.join(", "))
}

fn value<'a>(kv: &'a [(String, String)], key: &str) -> Option<&'a str> {
    kv.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

/// Every layer of the built network: its path, the layer as built (every field) and its output
/// shapes; None when the text does not build.
fn built(text: &str) -> Option<Vec<String>> {
    let net = Network::from_yaml("edited.yaml", text, &opts(1)).ok()?;
    Some(
        net.nodes
            .iter()
            .map(|n| format!("{} {:?} {:?}", n.name, n.layer, n.out_shapes))
            .collect(),
    )
}

/// The text with line `i` replaced.
fn with_line(lines: &[&str], i: usize, new: &str) -> String {
    let mut v: Vec<&str> = lines.to_vec();
    v[i] = new;
    v.join("\n") + "\n"
}

/// A declared default as YAML text for a line `kv` (None: no value to write).
fn default_text(d: AttrDefault, kv: &[(String, String)]) -> Option<String> {
    Some(match d {
        AttrDefault::Int(i) => i.to_string(),
        AttrDefault::Float(f) => format!("{f:?}"),
        AttrDefault::Bool(b) => b.to_string(),
        AttrDefault::Word(w) => w.to_string(),
        AttrDefault::Axes(Some(n)) => n.to_string(),
        AttrDefault::Axes(None) => return None,
        AttrDefault::AxesOf(k) => value(kv, k)?.to_string(),
        AttrDefault::Padding => "0".to_string(),
    })
}

/// The keys the file's `defaults:` section sets for `op` (those are written whatever their
/// value: the section changes what leaving them out means).
fn section_keys(text: &str, op: &str) -> Vec<String> {
    let Some(start) = text.find("\ndefaults:\n") else {
        return Vec::new();
    };
    text[start + 11..]
        .lines()
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| {
            let (name, map) = l.trim().split_once(": {")?;
            (name == op).then(|| {
                map.trim_end_matches('}')
                    .split(", ")
                    .filter_map(|kv| kv.split_once(": ").map(|(k, _)| k.to_string()))
                    .collect::<Vec<_>>()
            })
        })
        .flatten()
        .collect()
}

/// Attributes that change nothing at a converted file's input size but are not their type's
/// default: they matter at other sizes. `pad: true` lets a window attention pad a map its
/// window does not divide (`windows_need_pad_true_where_the_window_does_not_divide`); a
/// slice's `end` equal to its dimension's length here (Swin's patch merging, `x[:, 0::2]`)
/// is another length at another input size (`*`: any value).
const NOT_DEFAULT_ELSEWHERE: &[(&str, &str, &str)] = &[
    ("shifted_window_attention", "pad", "true"),
    ("slice", "end", "*"),
];

#[test]
fn no_written_attribute_is_its_types_default() {
    let mut checked = 0;
    let mut wrong = Vec::new();
    for file in FILES {
        let (_, _, c) = converted(file, 1);
        let base = built(&c.text).unwrap_or_else(|| panic!("{file}: does not build"));
        let lines: Vec<&str> = c.text.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            let Some((prefix, kv)) = entries(line) else {
                continue;
            };
            let Some(op) = value(&kv, "op") else { continue };
            let op = lookup(op).expect("known op").name;
            for j in 0..kv.len() {
                let (k, v) = (&kv[j].0, &kv[j].1);
                if NOT_ATTRIBUTES.contains(&k.as_str())
                    || NOT_DEFAULT_ELSEWHERE
                        .iter()
                        .any(|&(o, key, val)| o == op && key == k && (val == "*" || val == v))
                {
                    continue;
                }
                let mut less = kv.clone();
                less.remove(j);
                let text = with_line(&lines, i, &line_of(&prefix, &less));
                if built(&text).as_ref() == Some(&base) {
                    wrong.push(format!("{file}: `{k}: {v}` of `{}`", line.trim()));
                }
                checked += 1;
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "written, yet the layer builds the same without them:\n{}",
        wrong.join("\n")
    );
    // The files write hundreds of attributes (not an empty check).
    assert!(checked > 300, "{checked} attributes checked");
}

#[test]
fn windows_need_pad_true_where_the_window_does_not_divide() {
    let yaml = |pad: &str| {
        format!(
            "format: archscope/1\nname: w\ninputs:\n  x: [16, 6, 6]\nnodes:\n  - {{id: p, op: permute, dims: [0, 2, 3, 1]}}\n  - {{id: attn, op: shifted_window_attention, heads: 2, window: 4{pad}}}\n"
        )
    };
    assert!(built(&yaml(", pad: true")).is_some());
    let e = Network::from_yaml("w.yaml", &yaml(""), &opts(1)).unwrap_err();
    assert!(
        e.to_string()
            .contains("the 4×4 window divides neither side of the 6×6 map"),
        "{e}"
    );
}

#[test]
fn every_left_out_default_builds_the_same_layer() {
    let (mut same, mut refused) = (0, 0);
    for file in FILES {
        let (_, _, c) = converted(file, 1);
        let base = built(&c.text).unwrap_or_else(|| panic!("{file}: does not build"));
        let lines: Vec<&str> = c.text.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            let Some((prefix, kv)) = entries(line) else {
                continue;
            };
            let Some(op) = value(&kv, "op") else { continue };
            let t = lookup(op).unwrap_or_else(|| panic!("{file}: unknown op {op}"));
            let pinned = section_keys(&c.text, t.name);
            for &(key, d) in t.defaults {
                if value(&kv, key).is_some() || pinned.iter().any(|k| k == key) {
                    continue;
                }
                let Some(v) = default_text(d, &kv) else {
                    continue;
                };
                let mut more = kv.clone();
                more.push((key.to_string(), v.clone()));
                let text = with_line(&lines, i, &line_of(&prefix, &more));
                match built(&text) {
                    Some(b) => {
                        assert_eq!(
                            b,
                            base,
                            "{file}: `{key}: {v}` on `{}` builds another layer than leaving it out",
                            line.trim()
                        );
                        same += 1;
                    }
                    None => refused += 1,
                }
            }
        }
    }
    assert!(
        same > 300,
        "{same} defaults built the same ({refused} refused)"
    );
    assert!(refused * 10 < same, "{refused} refused, {same} the same");
}

/// The attributes of a layer line as the zoo writes them: `op` by its registered name, quotes
/// and the `act: none` of a layer whose defaults give an activation dropped, and the file's
/// `defaults:` for the type (`conv: {bias: false, bn: true, act: relu}`) applied.
fn normalised(line: &str, section: &[(String, String)]) -> Vec<(String, String)> {
    let (_, kv) = entries(line).unwrap_or_else(|| panic!("not a layer line: {line}"));
    let mut out: Vec<(String, String)> = section.to_vec();
    for (k, v) in kv {
        if k == "id" {
            continue;
        }
        let v = v.trim_matches('"').to_string();
        let v = if k == "op" {
            lookup(&v).expect("known op").name.to_string()
        } else {
            v
        };
        out.retain(|(x, _)| *x != k);
        out.push((k, v));
    }
    out.retain(|(k, v)| !(k == "act" && v == "none"));
    out.sort();
    out
}

/// The line of layer `id` in the nodes (or block nodes) of a file.
fn layer_line<'a>(text: &'a str, id: &str) -> &'a str {
    text.lines()
        .find(|l| l.trim_start().starts_with(&format!("- {{id: {id}, ")))
        .unwrap_or_else(|| panic!("no layer {id} in\n{text}"))
}

fn zoo_conv_defaults(zoo: &str) -> Vec<(String, String)> {
    let l = zoo
        .lines()
        .find(|l| l.trim_start().starts_with("conv: {"))
        .expect("the zoo file's conv defaults");
    let inner = l.trim().trim_start_matches("conv: {").trim_end_matches('}');
    inner
        .split(", ")
        .map(|kv| {
            let (k, v) = kv.split_once(": ").unwrap();
            (k.to_string(), v.to_string())
        })
        .collect()
}

#[test]
fn converted_lines_read_as_the_zoos() {
    let zoo18 =
        std::fs::read_to_string(crate::common::root().join("models/resnet18.yaml")).unwrap();
    let conv18 = zoo_conv_defaults(&zoo18);
    let (_, _, c) = converted("resnet18_graph.onnx", 1);
    // torch.onnx.export's layer ids and the zoo's, for the same layers.
    for (ours, zoos, conv) in [
        ("conv1", "conv1", true),
        ("maxpool", "maxpool", false),
        ("avgpool", "avgpool", false),
        ("fc", "fc", false),
    ] {
        let section = if conv { conv18.clone() } else { Vec::new() };
        assert_eq!(
            normalised(layer_line(&c.text, ours), &[]),
            normalised(layer_line(&zoo18, zoos), &section),
            "resnet18 `{ours}`:\n{}",
            c.text
        );
    }
    // The basic block's two convolutions: the zoo's `$width`, `$stride` are the converted
    // block's parameters of the same names.
    for id in ["conv1", "conv2"] {
        let ours = c
            .text
            .lines()
            .filter(|l| l.trim_start().starts_with(&format!("- {{id: {id}, ")))
            .find(|l| l.contains("$width"))
            .expect("the block's line");
        assert_eq!(
            normalised(ours, &[]),
            normalised(
                layer_line(&zoo18[zoo18.find("blocks:").unwrap()..], id),
                &conv18
            ),
            "resnet18 block `{id}`"
        );
    }
    // resnet50's bottleneck, through `archscope export` of the zoo's model and back.
    let zoo50 =
        std::fs::read_to_string(crate::common::root().join("models/resnet50.yaml")).unwrap();
    let conv50 = zoo_conv_defaults(&zoo50);
    let bytes = export_bytes(&zoo_net("resnet50"), None, ExportOptions::default()).unwrap();
    let imp = onnx::import_sized("resnet50.onnx", &bytes, 1, None).unwrap();
    let c50 = convert::convert("resnet50.onnx", &imp).unwrap();
    let block50 = &c50.text[c50.text.find("blocks:").unwrap()..];
    let zblock50 = &zoo50[zoo50.find("blocks:").unwrap()..];
    for id in ["conv1", "conv2"] {
        assert_eq!(
            normalised(layer_line(block50, id), &[]),
            normalised(layer_line(zblock50, id), &conv50),
            "resnet50 bottleneck `{id}`:\n{}",
            c50.text
        );
    }
    // The header says what was left out.
    assert!(c.text.contains(
        "# Left out: attributes equal to their layer type's default (`stride: 1`, `bias: true`,"
    ));
}
