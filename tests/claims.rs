//! The map names only what exists: every path of the crate that ARCHITECTURE.md, README.md or
//! docs/VIDEO_AUDIO.md names (`src/…`, `tests/…`, `scripts/…`, `models/…`, `docs/…`,
//! `examples/…`, `fuzz/…`) is a file or folder of the tree — a path with `*` matches at least
//! one, a placeholder such as `src/layers/<family>.rs` is skipped — and every test file the
//! map's table of `tests/` lists by its bare name is in `tests/`. The unit test at the bottom
//! shows the scanner finds paths in the forms the documents write them.
//!
//! And the sets the README's "every … of the zoo" sentences speak of are the zoo: each zoo
//! model is measured by exactly one PyTorch reference file — `tests/data/torchvision_zoo.json`
//! (the 58 torchvision image models: "Verified against PyTorch", the profiler conventions, the
//! state-dict names), `tests/data/video_audio_reference.json` (the 3 torchvision video models
//! and torchaudio's Wav2Letter) or `tests/data/gpt2_reference.json` (transformers' GPT-2) — or
//! is one that no PyTorch library builds.

use std::path::Path;

use std::collections::BTreeSet;

use crate::common::{data_json, root, zoo_names};

/// The zoo models no PyTorch library builds (from papers, or small hand-written ones), checked
/// against hand derivations instead (`tests/zoo_papers.rs` for the papers' models).
const NOT_IN_PYTORCH: [&str; 7] = [
    "lenet5",
    "mlp3",
    "mobilenet_v1",
    "resnet50_v2",
    "sobel",
    "unet",
    "yolov1",
];

/// The top folders of the tree a document may name a path under.
const TOPS: [&str; 7] = [
    "src/",
    "tests/",
    "scripts/",
    "models/",
    "docs/",
    "examples/",
    "fuzz/",
];

/// Every token of `text` that starts with one of [`TOPS`] (after a character that cannot be
/// part of a path) and runs over path characters, a trailing `.` or `,` dropped.
fn paths_in(text: &str) -> Vec<String> {
    let is_path_char =
        |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '/' | '*' | '<' | '>');
    let mut out = Vec::new();
    let bytes: Vec<char> = text.chars().collect();
    let mut i = 0;
    while i < bytes.len() {
        let before_ok = i == 0 || !is_path_char(bytes[i - 1]);
        let rest: String = bytes[i..bytes.len().min(i + 9)].iter().collect();
        if before_ok && TOPS.iter().any(|t| rest.starts_with(t)) {
            let mut j = i;
            while j < bytes.len() && is_path_char(bytes[j]) {
                j += 1;
            }
            let p: String = bytes[i..j].iter().collect();
            out.push(p.trim_end_matches(['.', ',']).to_string());
            i = j;
        } else {
            i += 1;
        }
    }
    out
}

/// Whether `pattern` (relative to the crate root; `*` within the last component only) names
/// something that exists.
fn exists(pattern: &str) -> bool {
    let full = root().join(pattern);
    if !pattern.contains('*') {
        return full.exists();
    }
    let (dir, name) = pattern.rsplit_once('/').expect("a pattern with a folder");
    assert!(
        !dir.contains('*'),
        "`*` only in the last component: {pattern}"
    );
    let (head, tail) = name.split_once('*').expect("one `*`");
    let Ok(entries) = std::fs::read_dir(root().join(dir)) else {
        return false;
    };
    entries.flatten().any(|e| {
        let n = e.file_name().to_string_lossy().into_owned();
        n.len() >= head.len() + tail.len() && n.starts_with(head) && n.ends_with(tail)
    })
}

#[test]
fn every_path_the_documents_name_exists() {
    let mut checked = 0;
    let mut missing = Vec::new();
    for doc in ["ARCHITECTURE.md", "README.md", "docs/VIDEO_AUDIO.md"] {
        let text = std::fs::read_to_string(root().join(doc)).unwrap();
        for p in paths_in(&text) {
            if p.contains('<') || p.ends_with('/') && p.len() <= 9 {
                continue;
            }
            checked += 1;
            if !exists(&p) {
                missing.push(format!("{doc}: {p}"));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "named but not in the tree: {missing:#?}"
    );
    // The map alone names over a hundred paths; far fewer means the scanner broke.
    assert!(checked > 100, "only {checked} paths found");
}

#[test]
fn every_test_file_of_the_map_exists() {
    let text = std::fs::read_to_string(root().join("ARCHITECTURE.md")).unwrap();
    let row = text
        .lines()
        .find(|l| l.starts_with("| `tests/` |"))
        .expect("the map's row for tests/");
    let names: Vec<&str> = row
        .split('`')
        .skip(1)
        .step_by(2)
        .filter(|n| n.ends_with(".rs") && !n.contains('/'))
        .collect();
    assert!(names.len() >= 20, "only {} files in {row}", names.len());
    let missing: Vec<&&str> = names
        .iter()
        .filter(|n| !Path::new(&root().join("tests").join(n)).is_file())
        .collect();
    assert!(missing.is_empty(), "listed but not in tests/: {missing:?}");
}

#[test]
fn every_zoo_model_has_one_source_of_truth() {
    let models = |file: &str| -> BTreeSet<String> {
        data_json(file)["models"]
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect()
    };
    let image = models("torchvision_zoo.json");
    let video_audio = models("video_audio_reference.json");
    // gpt2_reference.json measures one model, GPT-2 small (`models/gpt2.yaml`).
    assert_eq!(
        data_json("gpt2_reference.json")["model"],
        "GPT2LMHeadModel(GPT2Config())"
    );
    let language: BTreeSet<String> = ["gpt2".to_string()].into();
    let papers: BTreeSet<String> = NOT_IN_PYTORCH.iter().map(|s| s.to_string()).collect();
    assert_eq!(image.len(), 58, "the README's \"all 58\"");
    assert_eq!(
        video_audio.len(),
        4,
        "r3d_18, mc3_18, r2plus1d_18, wav2letter"
    );
    let zoo: BTreeSet<String> = zoo_names().into_iter().map(String::from).collect();
    for name in &zoo {
        let homes = [&image, &video_audio, &language, &papers]
            .iter()
            .filter(|set| set.contains(name))
            .count();
        assert_eq!(homes, 1, "{name}: in {homes} of the four sets, not one");
    }
    let measured: BTreeSet<String> = image
        .iter()
        .chain(&video_audio)
        .chain(&language)
        .chain(&papers)
        .cloned()
        .collect();
    assert_eq!(
        measured, zoo,
        "a reference names a model the zoo lacks, or the reverse"
    );
    assert_eq!(zoo.len(), 70);
}

#[test]
fn the_scanner_finds_paths_as_the_documents_write_them() {
    let text = "See `src/graph/topology.rs`, tests/data/video_audio_*.json and (docs/FORMAT.md). \
                Not xsrc/a.rs; `src/layers/<family>.rs`.";
    assert_eq!(
        paths_in(text),
        [
            "src/graph/topology.rs",
            "tests/data/video_audio_*.json",
            "docs/FORMAT.md",
            "src/layers/<family>.rs",
        ]
    );
    assert!(exists("tests/data/video_audio_*.json"));
    assert!(!exists("tests/data/no_such_*.json"));
    assert!(!exists("src/no_such_module.rs"));
}
