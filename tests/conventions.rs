//! Every `--convention` preset must reproduce its tool's headline figure exactly, on every zoo
//! model and setting that `tests/data/conventions.json` holds. The figures come from running
//! fvcore, ptflops, thop, torchinfo and PyTorch's FlopCounterMode on the real torchvision
//! models (`scripts/convention_reference.py`), never from archscope.

use std::path::PathBuf;

use archscope::convention::{recount, Convention};
use archscope::{analyze, zoo, BuildOptions, Dtype};
use serde_json::Value;

fn reference() -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/conventions.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn presets_equal_the_tools() {
    let r = reference();
    let models = r["models"].as_object().unwrap();
    assert!(models.len() >= 6, "too few models in conventions.json");
    let mut checked = 0;
    for (name, runs) in models {
        for run in runs.as_array().unwrap() {
            let input: Vec<u64> = run["input"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_u64().unwrap())
                .collect();
            let opts = BuildOptions {
                batch: input[0],
                input: Some(input[1..].to_vec()),
                ..Default::default()
            };
            let net = zoo::build(name, &opts).unwrap().unwrap();
            let base = analyze(&net, Dtype::F32).unwrap();
            for c in Convention::ALL {
                let Some(want) = run.get(c.name()) else {
                    continue;
                };
                let mut a = base.clone();
                recount(&net, &mut a, c).unwrap();
                assert_eq!(
                    a.totals.macs,
                    want.as_u64().unwrap(),
                    "{name} {input:?}: {} (archscope {} vs tool {})",
                    c.name(),
                    a.totals.macs,
                    want
                );
                // The per-layer figures add up to the total.
                assert_eq!(a.layers.iter().map(|l| l.macs).sum::<u64>(), a.totals.macs);
                checked += 1;
            }
        }
    }
    // 9 models × 5 tools at 224², plus 4 models × 4 tools at batch 2, 320².
    assert!(checked >= 9 * 5 + 4 * 4, "only {checked} figures checked");
}

#[test]
fn torchvision_convention_is_the_default() {
    let net = zoo::build("resnet50", &BuildOptions::default())
        .unwrap()
        .unwrap();
    let a = analyze(&net, Dtype::F32).unwrap();
    let mut b = a.clone();
    recount(&net, &mut b, Convention::Torchvision).unwrap();
    assert_eq!(a.totals.macs, b.totals.macs);
    assert_eq!(a.totals.macs, 4_089_184_256);
}
