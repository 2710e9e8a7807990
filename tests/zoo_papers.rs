//! Zoo models that torchvision lacks, checked against their papers' figures and against
//! parameter counts derived here layer by layer (the derivation is the independent source).

use crate::common;

use crate::common::{analysis, zoo_analysis};
use archscope::{zoo, BuildOptions, Network};

/// A 3×3 (or k×k) convolution with bias: k²·in·out + out.
fn conv(k: u64, i: u64, o: u64) -> u64 {
    k * k * i * o + o
}

#[test]
fn unet_as_in_the_paper() {
    let a = zoo_analysis("unet");
    // Fig. 1: a 572×572 tile gives a 388×388 map of 2 classes.
    assert_eq!(a.outputs[0].1 .0, vec![1, 2, 388, 388]);
    let enc = conv(3, 1, 64)
        + conv(3, 64, 64)
        + conv(3, 64, 128)
        + conv(3, 128, 128)
        + conv(3, 128, 256)
        + conv(3, 256, 256)
        + conv(3, 256, 512)
        + conv(3, 512, 512)
        + conv(3, 512, 1024)
        + conv(3, 1024, 1024);
    // Each decoder stage: a 2×2 up-convolution halving the channels, then two 3×3 convolutions
    // on the concatenation (twice the channels in).
    let dec = |c: u64| conv(2, 2 * c, c) + conv(3, 2 * c, c) + conv(3, c, c);
    let params = enc + dec(512) + dec(256) + dec(128) + dec(64) + conv(1, 64, 2);
    assert_eq!(a.totals.params, params);
    assert_eq!(params, 31_030_658);
    // The skip crops: 64² → 56², 136² → 104², 280² → 200², 568² → 392².
    for (layer, size) in [
        ("up4.crop", 56),
        ("up3.crop", 104),
        ("up2.crop", 200),
        ("up1.crop", 392),
    ] {
        let l = common::layer(&a, layer);
        assert_eq!(&l.outputs[0].0[2..], &[size, size], "{layer}");
    }
}

#[test]
fn mobilenet_v1_as_in_the_paper() {
    let a = zoo_analysis("mobilenet_v1");
    // Table 8: 1.0 MobileNet-224 has 569 million mult-adds and 4.2 million parameters.
    assert_eq!((a.totals.macs as f64 / 1e6).round(), 569.0);
    assert_eq!((a.totals.params as f64 / 1e5).round() / 10.0, 4.2);
    // Exactly: the strided stem, 13 depthwise-separable units (depthwise 9·c + BN 2c, pointwise
    // c·o + BN 2o, no biases), and the classifier.
    let units = [
        (32, 64),
        (64, 128),
        (128, 128),
        (128, 256),
        (256, 256),
        (256, 512),
        (512, 512),
        (512, 512),
        (512, 512),
        (512, 512),
        (512, 512),
        (512, 1024),
        (1024, 1024),
    ];
    let params: u64 = 27 * 32
        + 2 * 32
        + units
            .iter()
            .map(|&(c, o)| 9 * c + 2 * c + c * o + 2 * o)
            .sum::<u64>()
        + 1024 * 1000
        + 1000;
    assert_eq!(a.totals.params, params);
    // The width multiplier α = 0.75 (Table 6): 325 million mult-adds, 2.6 million parameters.
    let text = zoo::source("mobilenet_v1")
        .unwrap()
        .replace("alpha: 100", "alpha: 75");
    let net = Network::from_yaml("mobilenet_v1.yaml", &text, &BuildOptions::default()).unwrap();
    let a = analysis(&net);
    assert_eq!((a.totals.macs as f64 / 1e6).round(), 325.0);
    assert_eq!((a.totals.params as f64 / 1e5).round() / 10.0, 2.6);
}

#[test]
fn yolov1_as_in_the_paper() {
    let a = zoo_analysis("yolov1");
    // Fig. 3: 448×448 in, a 7×7×30 tensor out (flat here).
    assert_eq!(a.outputs[0].1 .0, vec![1, 7 * 7 * 30]);
    let c = |k: u64, i: u64, o: u64| conv(k, i, o);
    let params = c(7, 3, 64)
        + c(3, 64, 192)
        + c(1, 192, 128)
        + c(3, 128, 256)
        + c(1, 256, 256)
        + c(3, 256, 512)
        + 4 * (c(1, 512, 256) + c(3, 256, 512))
        + c(1, 512, 512)
        + c(3, 512, 1024)
        + 2 * (c(1, 1024, 512) + c(3, 512, 1024))
        + 4 * c(3, 1024, 1024)
        + (7 * 7 * 1024 * 4096 + 4096)
        + (4096 * 1470 + 1470);
    assert_eq!(a.totals.params, params);
    // 24 convolutional layers and 2 fully connected ones.
    assert_eq!(a.layers.iter().filter(|l| l.op == "conv2d").count(), 24);
    assert_eq!(a.layers.iter().filter(|l| l.op == "linear").count(), 2);
}

#[test]
fn resnet50_v2_is_resnet50_with_batch_norms_moved() {
    let v1 = zoo_analysis("resnet50");
    let v2 = zoo_analysis("resnet50_v2");
    // Same convolutions and classifier: the same MACs.
    assert_eq!(v1.totals.macs, v2.totals.macs);
    // Batch-norm channels. v1: the stem, after every convolution of every bottleneck, and after
    // each projection. v2: before every convolution of a unit (the unit's input, then twice its
    // width), and once after the last unit; none on the stem or the projections.
    let stages: [(u64, usize); 4] = [(64, 3), (128, 4), (256, 6), (512, 3)];
    let mut bn_v1 = 64;
    let mut bn_v2 = 2048;
    let mut in_ch = 64;
    for (w, blocks) in stages {
        bn_v1 += 4 * w; // the projection of the first unit
        for _ in 0..blocks {
            bn_v1 += w + w + 4 * w;
            bn_v2 += in_ch + w + w;
            in_ch = 4 * w;
        }
    }
    assert_eq!(v2.totals.params, v1.totals.params - 2 * bn_v1 + 2 * bn_v2);
    assert_eq!(v2.totals.buffers, 2 * bn_v2);
}

#[test]
fn sobel_is_fixed() {
    let a = zoo_analysis("sobel");
    assert_eq!((a.totals.params, a.totals.trainable), (18, 0));
    assert_eq!(a.outputs[0].1 .0, vec![1, 1, 224, 224]);
}
