//! The bad-input corpus: every file in `tests/data/bad/` must fail to build with a located,
//! actionable message (snapshotted), and never panic. Exit codes are checked in `tests/cli.rs`.

use std::path::PathBuf;

use archscope::{analyze, BuildOptions, Dtype, Network};

#[test]
fn bad_inputs_give_located_messages() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/bad");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert!(files.len() >= 30);
    for path in files {
        let name = path.file_stem().unwrap().to_string_lossy().to_string();
        let text = std::fs::read_to_string(&path).unwrap();
        let file = format!("bad/{name}.yaml");
        let result = Network::from_yaml(&file, &text, &BuildOptions::default())
            .and_then(|net| analyze(&net, Dtype::F32).map(|_| ()));
        let err = match result {
            Ok(()) => panic!("{name}: expected an error"),
            Err(e) => e,
        };
        let d = err.diagnostic();
        // Every message says where: a file position or a layer path.
        assert!(
            d.loc.is_some() || d.layer.is_some(),
            "{name}: no location in\n{err}"
        );
        if let Some(loc) = &d.loc {
            assert_eq!(loc.file, file, "{name}");
            assert!(
                loc.line >= 1 && loc.line <= text.lines().count().max(1),
                "{name}: line {} out of range",
                loc.line
            );
        }
        insta::assert_snapshot!(name, err.to_string());
    }
}
