//! The library's enums as clap values: `clap::ValueEnum` for `Format`, `Dtype`, `Convention`,
//! `SortKey`, `Optimizer`, `Collapse` and `RankDir` (here, in the same crate as the enums, so the
//! orphan rule allows it and the CLI needs no mirror enums), and the parsers of flags that
//! accept only some of an enum's values (`train --dtype`, `check`/`run --format`). Each name and
//! help line is what `--help` shows.

use clap::builder::{PossibleValue, PossibleValuesParser, TypedValueParser};
use clap::ValueEnum;

use crate::compare::SortKey;
use crate::dot::{Collapse, RankDir};
use crate::layers::Convention;
use crate::report::Format;
use crate::train::Optimizer;
use crate::Dtype;

impl ValueEnum for Format {
    fn value_variants<'a>() -> &'a [Self] {
        &[Format::Table, Format::Markdown, Format::Csv, Format::Json]
    }
    fn to_possible_value(&self) -> Option<PossibleValue> {
        Some(PossibleValue::new(match self {
            Format::Table => "table",
            Format::Markdown => "markdown",
            Format::Csv => "csv",
            Format::Json => "json",
        }))
    }
}

impl ValueEnum for Dtype {
    fn value_variants<'a>() -> &'a [Self] {
        &[Dtype::F32, Dtype::F16, Dtype::Bf16, Dtype::Int8]
    }
    fn to_possible_value(&self) -> Option<PossibleValue> {
        Some(PossibleValue::new(match self {
            Dtype::F32 => "f32",
            Dtype::F16 => "f16",
            Dtype::Bf16 => "bf16",
            Dtype::Int8 => "int8",
        }))
    }
}

impl ValueEnum for Convention {
    fn value_variants<'a>() -> &'a [Self] {
        &[
            Convention::Torchvision,
            Convention::Fvcore,
            Convention::Ptflops,
            Convention::Thop,
            Convention::Torchinfo,
        ]
    }
    fn to_possible_value(&self) -> Option<PossibleValue> {
        Some(PossibleValue::new(match self {
            Convention::Torchvision => "torchvision",
            Convention::Fvcore => "fvcore",
            Convention::Ptflops => "ptflops",
            Convention::Thop => "thop",
            Convention::Torchinfo => "torchinfo",
        }))
    }
}

impl ValueEnum for SortKey {
    fn value_variants<'a>() -> &'a [Self] {
        &[
            SortKey::Macs,
            SortKey::Params,
            SortKey::Flops,
            SortKey::Memory,
            SortKey::Depth,
            SortKey::Rf,
            SortKey::Name,
        ]
    }
    fn to_possible_value(&self) -> Option<PossibleValue> {
        Some(PossibleValue::new(match self {
            SortKey::Macs => "macs",
            SortKey::Params => "params",
            SortKey::Flops => "flops",
            SortKey::Memory => "memory",
            SortKey::Depth => "depth",
            SortKey::Rf => "rf",
            SortKey::Name => "name",
        }))
    }
}

impl ValueEnum for Optimizer {
    fn value_variants<'a>() -> &'a [Self] {
        &[
            Optimizer::Sgd,
            Optimizer::Momentum,
            Optimizer::Nesterov,
            Optimizer::Adagrad,
            Optimizer::Rmsprop,
            Optimizer::Adam,
            Optimizer::Adamw,
        ]
    }
    fn to_possible_value(&self) -> Option<PossibleValue> {
        Some(PossibleValue::new(match self {
            Optimizer::Sgd => "sgd",
            Optimizer::Momentum => "momentum",
            Optimizer::Nesterov => "nesterov",
            Optimizer::Adagrad => "adagrad",
            Optimizer::Rmsprop => "rmsprop",
            Optimizer::Adam => "adam",
            Optimizer::Adamw => "adamw",
        }))
    }
}

impl ValueEnum for Collapse {
    fn value_variants<'a>() -> &'a [Self] {
        &[Collapse::None, Collapse::Blocks, Collapse::Repeats]
    }
    fn to_possible_value(&self) -> Option<PossibleValue> {
        Some(match self {
            Collapse::None => {
                PossibleValue::new("none").help("Every layer a node, block instances as clusters")
            }
            Collapse::Blocks => {
                PossibleValue::new("blocks").help("One node per top-level block instance")
            }
            Collapse::Repeats => PossibleValue::new("repeats").help(
                "One node per run of repeated block instances (`layer3` for `layer3.0` … `layer3.5`)",
            ),
        })
    }
}

impl ValueEnum for RankDir {
    fn value_variants<'a>() -> &'a [Self] {
        &[RankDir::TopBottom, RankDir::LeftRight]
    }
    fn to_possible_value(&self) -> Option<PossibleValue> {
        Some(match self {
            RankDir::TopBottom => PossibleValue::new("TB").alias("tb").help("Top to bottom"),
            RankDir::LeftRight => PossibleValue::new("LR").alias("lr").help("Left to right"),
        })
    }
}

/// A parser accepting only `allowed` of a `ValueEnum`'s values (listed in that order in
/// `--help`): `train --dtype` takes no `int8`, `check` and `run` write no CSV.
pub fn some_of<E: ValueEnum + Clone + Send + Sync + 'static>(
    allowed: &'static [E],
) -> impl TypedValueParser<Value = E> {
    PossibleValuesParser::new(allowed.iter().filter_map(ValueEnum::to_possible_value)).try_map(
        move |name| {
            // The parser above accepted only the names of `allowed`: never the error.
            allowed
                .iter()
                .find(|e| e.to_possible_value().is_some_and(|p| p.get_name() == name))
                .cloned()
                .ok_or_else(|| format!("`{name}` is not one of the accepted values"))
        },
    )
}

/// `train --dtype`: the element types a training step is planned in.
pub const TRAIN_DTYPES: &[Dtype] = &[Dtype::F32, Dtype::F16, Dtype::Bf16];

/// `check` and `run --format`: a table with lines of text around it has no CSV form.
pub const VIEW_FORMATS: &[Format] = &[Format::Table, Format::Markdown, Format::Json];

/// `train --format`.
pub const TRAIN_FORMATS: &[Format] = &[Format::Table, Format::Json];
