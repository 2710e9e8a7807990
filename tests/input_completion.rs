//! `graph::complete_input`: an `--input` as a command line gives it (CxHxW, HxW, S) completed
//! against the input the file declares, read from the one parsed document the network is then
//! built from. The expected shapes are written out by hand from the declared ones.

use archscope::graph::{build_network, complete_input};
use archscope::yaml::Document;
use archscope::BuildOptions;

const IMAGE: &str =
    "name: img\ninputs: {image: [3, 8, 8]}\nnodes:\n  - {op: conv, out: 4, kernel: 3}\n";
const VECTOR: &str = "name: vec\ninputs: {x: [16]}\nnodes:\n  - {op: linear, out: 4}\n";

fn doc(text: &str) -> Document {
    Document::parse("m.yaml", text).unwrap()
}

#[test]
fn spatial_sizes_keep_the_declared_channels() {
    let d = doc(IMAGE);
    // HxW: the declared 3 channels, then 20 × 30.
    assert_eq!(complete_input(&d, &[20, 30]).unwrap(), vec![3, 20, 30]);
    // S: a square of 20 with the declared channels.
    assert_eq!(complete_input(&d, &[20]).unwrap(), vec![3, 20, 20]);
    // CxHxW: as given, channels included.
    assert_eq!(complete_input(&d, &[1, 20, 30]).unwrap(), vec![1, 20, 30]);
}

#[test]
fn a_vector_input_takes_one_size() {
    let d = doc(VECTOR);
    assert_eq!(complete_input(&d, &[32]).unwrap(), vec![32]);
    let e = complete_input(&d, &[4, 8]).unwrap_err();
    assert_eq!(
        e.to_string(),
        "--input 4x8 does not fit the model's input 16\n   help: give 16 (the input is flat)"
    );
}

const WAVE: &str =
    "name: wave\ninputs: {wave: [1, 400]}\nnodes:\n  - {op: conv1d, out: 4, kernel: 3}\n";
const CLIP: &str =
    "name: clip\ninputs: {video: [3, 8, 32, 32]}\nnodes:\n  - {op: conv3d, out: 4, kernel: 3}\n";

#[test]
fn one_and_three_spatial_axes() {
    let w = doc(WAVE);
    // L: the declared single channel, then 1000 samples; C×L as given.
    assert_eq!(complete_input(&w, &[1000]).unwrap(), vec![1, 1000]);
    assert_eq!(complete_input(&w, &[2, 1000]).unwrap(), vec![2, 1000]);
    let e = complete_input(&w, &[2, 3, 4]).unwrap_err();
    assert_eq!(
        e.to_string(),
        "--input 2x3x4 does not fit the model's input 1x400\n   help: give C×L (1x400) or L (400)"
    );
    let c = doc(CLIP);
    // D×H×W with the declared 3 channels; C×D×H×W as given.
    assert_eq!(
        complete_input(&c, &[16, 64, 64]).unwrap(),
        vec![3, 16, 64, 64]
    );
    assert_eq!(
        complete_input(&c, &[1, 16, 64, 64]).unwrap(),
        vec![1, 16, 64, 64]
    );
    // One size is not a video clip: the message says what fits.
    let e = complete_input(&c, &[64]).unwrap_err();
    assert_eq!(
        e.to_string(),
        "--input 64 does not fit the model's input 3x8x32x32\n   help: give C×D×H×W (3x8x32x32) or D×H×W (8x32x32)"
    );
}

#[test]
fn the_completed_shape_builds_from_the_same_document() {
    let d = doc(IMAGE);
    let input = complete_input(&d, &[10]).unwrap();
    let opts = BuildOptions {
        batch: 2,
        input: Some(input),
        ..Default::default()
    };
    let net = build_network(&d, &opts).unwrap();
    // conv 3×3, no padding: 10 - 3 + 1 = 8 per side; batch 2, 4 channels.
    let a = archscope::analyze(&net, archscope::Dtype::F32).unwrap();
    assert_eq!(a.layers.last().unwrap().outputs[0].0, vec![2, 4, 8, 8]);
}
