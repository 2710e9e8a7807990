//! Every `--convention` preset must reproduce its tool's headline figure exactly, on every zoo
//! model that torchvision has (the 58 models of `tests/data/torchvision_zoo.json`), each at two
//! input sizes at batch 1 (224² and 320²; Inception-v3 299² and 342²; the EfficientNets B1, B3,
//! B7 and V2-S 224² and their weights' size, 240², 300², 600², 384²; Swin-V2-T 256² and 320²), plus four models at
//! batch 2 — except the three ViTs and MaxViT-T, whose position embedding or partitions fix
//! their input: 224² at batch 1 and at batch 2. The figures come from running fvcore, ptflops, thop, torchinfo and PyTorch's
//! FlopCounterMode on the real torchvision models (`scripts/convention_reference.py`), never
//! from archscope.

use std::collections::BTreeSet;

/// Models measured at one size, at batch 1 and 2: torchvision asserts the input size a ViT's
/// position embedding was built for, and builds MaxViT's partitions for one input size.
const ONE_SIZE: [&str; 4] = ["vit_b_16", "vit_b_32", "vit_l_16", "maxvit_t"];

use crate::common::{analysis, data_json, options_for, u64s, zoo_net, zoo_net_with};
use archscope::convention::{recount, Convention};

/// The tool versions the figures hold for (docs/COUNTING.md names them).
#[test]
fn reference_versions() {
    let r = data_json("conventions.json");
    let v = &r["produced_with"];
    assert_eq!(v["torch"], "2.15.0+cu132");
    assert_eq!(v["torchvision"], "0.29.2+cu132");
    assert_eq!(v["fvcore"], "0.1.5.post20221221");
    assert_eq!(v["ptflops"], "0.7.5");
    assert_eq!(v["thop"], "0.1.1-2209072238");
    assert_eq!(v["torchinfo"], "1.8.0");
}

#[test]
fn the_reference_covers_every_torchvision_zoo_model_at_two_sizes() {
    let r = data_json("conventions.json");
    let zoo_models: BTreeSet<String> = data_json("torchvision_zoo.json")["models"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    let models: BTreeSet<String> = r["models"].as_object().unwrap().keys().cloned().collect();
    assert_eq!(models, zoo_models);
    assert_eq!(models.len(), 58);
    for (name, runs) in r["models"].as_object().unwrap() {
        let batch1: BTreeSet<Vec<u64>> = runs
            .as_array()
            .unwrap()
            .iter()
            .filter(|run| run["input"][0] == 1)
            .map(|run| u64s(&run["input"])[2..].to_vec())
            .collect();
        if ONE_SIZE.contains(&name.as_str()) {
            assert_eq!(batch1.len(), 1, "{name}: one size at batch 1");
            let batch2 = runs
                .as_array()
                .unwrap()
                .iter()
                .filter(|run| run["input"][0] == 2);
            assert_eq!(batch2.count(), 1, "{name}: and at batch 2");
        } else {
            assert_eq!(batch1.len(), 2, "{name}: two sizes at batch 1");
        }
        for run in runs.as_array().unwrap() {
            for c in Convention::ALL {
                // ptflops always runs batch 1; every other tool is measured at every setting.
                let needed = c != Convention::Ptflops || run["input"][0] == 1;
                assert_eq!(
                    run.get(c.name()).is_some(),
                    needed,
                    "{name} {}: {}",
                    run["input"],
                    c.name()
                );
            }
        }
    }
}

#[test]
fn presets_equal_the_tools() {
    let r = data_json("conventions.json");
    let models = r["models"].as_object().unwrap();
    let mut checked = 0;
    let mut wrong = Vec::new();
    for (name, runs) in models {
        for run in runs.as_array().unwrap() {
            let input = u64s(&run["input"]);
            let net = zoo_net_with(name, &options_for(&input));
            let base = analysis(&net);
            for c in Convention::ALL {
                let Some(want) = run.get(c.name()) else {
                    continue;
                };
                let mut a = base.clone();
                recount(&net, &mut a, c).unwrap();
                let want = want.as_u64().unwrap();
                if a.totals.macs != want {
                    wrong.push(format!(
                        "{name} {input:?} {}: archscope {} vs tool {want} ({:+})",
                        c.name(),
                        a.totals.macs,
                        a.totals.macs as i128 - want as i128
                    ));
                }
                // The per-layer figures add up to the total.
                assert_eq!(a.layers.iter().map(|l| l.macs).sum::<u64>(), a.totals.macs);
                checked += 1;
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    // 54 models × 2 sizes × 5 tools at batch 1, plus 4 models × 4 tools (no ptflops) at batch 2;
    // the 3 ViTs × 5 tools at batch 1 and × 4 at batch 2.
    assert_eq!(checked, 54 * 2 * 5 + 4 * 4 + 4 * (5 + 4), "figures checked");
}

#[test]
fn torchvision_convention_is_the_default() {
    let net = zoo_net("resnet50");
    let a = analysis(&net);
    let mut b = a.clone();
    recount(&net, &mut b, Convention::Torchvision).unwrap();
    assert_eq!(a.totals.macs, b.totals.macs);
    assert_eq!(a.totals.macs, 4_089_184_256);
}
