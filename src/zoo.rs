//! The embedded model zoo: the YAML files of `models/`, compiled into the binary so that
//! `archscope summary resnet50` works anywhere. Each entry is an ordinary architecture file,
//! also usable as a template.

use crate::error::Error;
use crate::graph::{BuildOptions, Network};

/// (name, YAML text), in the order `archscope zoo` lists them.
pub const MODELS: &[(&str, &str)] = &[
    ("lenet5", include_str!("../models/lenet5.yaml")),
    ("mlp3", include_str!("../models/mlp3.yaml")),
    ("alexnet", include_str!("../models/alexnet.yaml")),
    ("vgg11", include_str!("../models/vgg11.yaml")),
    ("vgg11_bn", include_str!("../models/vgg11_bn.yaml")),
    ("vgg13", include_str!("../models/vgg13.yaml")),
    ("vgg13_bn", include_str!("../models/vgg13_bn.yaml")),
    ("vgg16", include_str!("../models/vgg16.yaml")),
    ("vgg16_bn", include_str!("../models/vgg16_bn.yaml")),
    ("vgg19", include_str!("../models/vgg19.yaml")),
    ("vgg19_bn", include_str!("../models/vgg19_bn.yaml")),
    ("googlenet", include_str!("../models/googlenet.yaml")),
    ("inception_v3", include_str!("../models/inception_v3.yaml")),
    ("resnet18", include_str!("../models/resnet18.yaml")),
    ("resnet34", include_str!("../models/resnet34.yaml")),
    ("resnet50", include_str!("../models/resnet50.yaml")),
    ("resnet101", include_str!("../models/resnet101.yaml")),
    ("resnet152", include_str!("../models/resnet152.yaml")),
    (
        "resnext50_32x4d",
        include_str!("../models/resnext50_32x4d.yaml"),
    ),
    (
        "resnext101_32x8d",
        include_str!("../models/resnext101_32x8d.yaml"),
    ),
    (
        "resnext101_64x4d",
        include_str!("../models/resnext101_64x4d.yaml"),
    ),
    (
        "wide_resnet50_2",
        include_str!("../models/wide_resnet50_2.yaml"),
    ),
    (
        "wide_resnet101_2",
        include_str!("../models/wide_resnet101_2.yaml"),
    ),
    ("densenet121", include_str!("../models/densenet121.yaml")),
    ("densenet161", include_str!("../models/densenet161.yaml")),
    ("densenet169", include_str!("../models/densenet169.yaml")),
    ("densenet201", include_str!("../models/densenet201.yaml")),
    (
        "squeezenet1_0",
        include_str!("../models/squeezenet1_0.yaml"),
    ),
    (
        "squeezenet1_1",
        include_str!("../models/squeezenet1_1.yaml"),
    ),
    ("mobilenet_v2", include_str!("../models/mobilenet_v2.yaml")),
    (
        "mobilenet_v3_small",
        include_str!("../models/mobilenet_v3_small.yaml"),
    ),
    (
        "mobilenet_v3_large",
        include_str!("../models/mobilenet_v3_large.yaml"),
    ),
    (
        "shufflenet_v2_x0_5",
        include_str!("../models/shufflenet_v2_x0_5.yaml"),
    ),
    (
        "shufflenet_v2_x1_0",
        include_str!("../models/shufflenet_v2_x1_0.yaml"),
    ),
    (
        "shufflenet_v2_x2_0",
        include_str!("../models/shufflenet_v2_x2_0.yaml"),
    ),
    ("mnasnet0_5", include_str!("../models/mnasnet0_5.yaml")),
    ("mnasnet1_0", include_str!("../models/mnasnet1_0.yaml")),
    (
        "regnet_x_400mf",
        include_str!("../models/regnet_x_400mf.yaml"),
    ),
    (
        "regnet_y_400mf",
        include_str!("../models/regnet_y_400mf.yaml"),
    ),
    (
        "regnet_y_1_6gf",
        include_str!("../models/regnet_y_1_6gf.yaml"),
    ),
    (
        "regnet_y_16gf",
        include_str!("../models/regnet_y_16gf.yaml"),
    ),
    (
        "efficientnet_b0",
        include_str!("../models/efficientnet_b0.yaml"),
    ),
    (
        "efficientnet_b1",
        include_str!("../models/efficientnet_b1.yaml"),
    ),
    (
        "efficientnet_b3",
        include_str!("../models/efficientnet_b3.yaml"),
    ),
    (
        "efficientnet_b7",
        include_str!("../models/efficientnet_b7.yaml"),
    ),
    (
        "efficientnet_v2_s",
        include_str!("../models/efficientnet_v2_s.yaml"),
    ),
    ("fcn_resnet50", include_str!("../models/fcn_resnet50.yaml")),
    (
        "deeplabv3_resnet50",
        include_str!("../models/deeplabv3_resnet50.yaml"),
    ),
    (
        "fcn_resnet101",
        include_str!("../models/fcn_resnet101.yaml"),
    ),
    (
        "deeplabv3_resnet101",
        include_str!("../models/deeplabv3_resnet101.yaml"),
    ),
    (
        "deeplabv3_mobilenet_v3_large",
        include_str!("../models/deeplabv3_mobilenet_v3_large.yaml"),
    ),
    (
        "lraspp_mobilenet_v3_large",
        include_str!("../models/lraspp_mobilenet_v3_large.yaml"),
    ),
    ("vit_b_16", include_str!("../models/vit_b_16.yaml")),
    ("vit_b_32", include_str!("../models/vit_b_32.yaml")),
    ("vit_l_16", include_str!("../models/vit_l_16.yaml")),
    (
        "convnext_tiny",
        include_str!("../models/convnext_tiny.yaml"),
    ),
    (
        "convnext_small",
        include_str!("../models/convnext_small.yaml"),
    ),
    ("resnet50_v2", include_str!("../models/resnet50_v2.yaml")),
    ("mobilenet_v1", include_str!("../models/mobilenet_v1.yaml")),
    ("unet", include_str!("../models/unet.yaml")),
    ("yolov1", include_str!("../models/yolov1.yaml")),
    ("sobel", include_str!("../models/sobel.yaml")),
    ("r3d_18", include_str!("../models/r3d_18.yaml")),
    ("mc3_18", include_str!("../models/mc3_18.yaml")),
    ("r2plus1d_18", include_str!("../models/r2plus1d_18.yaml")),
    ("wav2letter", include_str!("../models/wav2letter.yaml")),
    ("swin_t", include_str!("../models/swin_t.yaml")),
    ("swin_v2_t", include_str!("../models/swin_v2_t.yaml")),
    ("maxvit_t", include_str!("../models/maxvit_t.yaml")),
    ("gpt2", include_str!("../models/gpt2.yaml")),
];

/// The YAML text of a zoo model.
pub fn source(name: &str) -> Option<&'static str> {
    MODELS.iter().find(|(n, _)| *n == name).map(|(_, t)| *t)
}

/// Builds a zoo model.
pub fn build(name: &str, opts: &BuildOptions) -> Option<Result<Network, Error>> {
    source(name).map(|text| Network::from_yaml(&format!("models/{name}.yaml"), text, opts))
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_zoo_model_builds() {
        for (name, _) in super::MODELS {
            let net = super::build(name, &Default::default()).unwrap();
            assert!(net.is_ok(), "{name}: {}", net.unwrap_err());
        }
    }
}
