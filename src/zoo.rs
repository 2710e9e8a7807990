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
    ("vgg16", include_str!("../models/vgg16.yaml")),
    ("vgg16_bn", include_str!("../models/vgg16_bn.yaml")),
    ("googlenet", include_str!("../models/googlenet.yaml")),
    ("resnet18", include_str!("../models/resnet18.yaml")),
    ("resnet34", include_str!("../models/resnet34.yaml")),
    ("resnet50", include_str!("../models/resnet50.yaml")),
    ("resnet101", include_str!("../models/resnet101.yaml")),
    ("resnet152", include_str!("../models/resnet152.yaml")),
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
