//! What several commands share: the model argument and its setting (`--input`, `--batch`,
//! sweeps of them), reading a model from a file or the zoo, reading a binary file under a
//! byte cap, and `--depth`.

use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};

use crate::audit::{parse_quantity, Quantity};
use crate::convention::recount;
use crate::error::did_you_mean;
use crate::layers::Convention;
use crate::yaml::Document;
use crate::{analyze, graph, ultralytics, zoo, Analysis, BuildOptions, Dtype, Network};

#[derive(clap::Args)]
pub struct ModelArgs {
    /// A YAML architecture file, or the name of an embedded zoo model (see `archscope zoo`).
    pub model: String,
    #[command(flatten)]
    pub setting: SettingArgs,
}

#[derive(clap::Args)]
pub struct SettingArgs {
    /// Input size per sample: the whole shape (CxHxW, CxL, CxDxHxW), the spatial sizes alone
    /// (HxW, L, DxHxW: keeps the model's channels) or S (a square image). A comma-separated list (224,320,448) sweeps several sizes where the command allows it.
    #[arg(long)]
    pub input: Option<String>,
    /// Batch size; a comma-separated list (1,8,32) sweeps several where the command allows it.
    #[arg(long, default_value = "1")]
    pub batch: String,
    /// An Ultralytics model file's scale (n, s, m, l, x), instead of the one its name gives.
    #[arg(long)]
    pub scale: Option<String>,
    /// An Ultralytics model file's number of classes, instead of its `nc`.
    #[arg(long)]
    pub nc: Option<u64>,
}

/// Most settings (input sizes × batches) one sweep may list; each builds the model anew.
const MAX_SETTINGS: usize = 64;

/// One input size (None: the model's own) and batch.
#[derive(Clone)]
pub struct Setting {
    pub input: Option<Vec<u64>>,
    pub batch: u64,
    /// An Ultralytics file's scale and class count (`--scale`, `--nc`).
    pub scale: Option<String>,
    pub nc: Option<u64>,
}

impl SettingArgs {
    /// Every combination of the listed input sizes and batches, sizes outermost.
    pub fn settings(&self) -> Result<Vec<Setting>> {
        // Counted before anything is parsed or built: 20,000 values cost no memory.
        let sizes = self.input.as_deref().map_or(1, |s| s.split(',').count());
        let batches = self.batch.split(',').count();
        if sizes.saturating_mul(batches) > MAX_SETTINGS {
            bail!(
                "--input and --batch give {sizes} × {batches} = {} settings; a sweep has at most {MAX_SETTINGS}\n   \
                 help: sweep fewer sizes or batches at once (several commands can cover more)",
                sizes.saturating_mul(batches)
            );
        }
        let inputs: Vec<Option<Vec<u64>>> = match &self.input {
            None => vec![None],
            Some(s) => s
                .split(',')
                .map(|p| parse_input(p.trim()).map(Some))
                .collect::<Result<_>>()?,
        };
        let batches = self
            .batch
            .split(',')
            .map(|b| {
                b.trim()
                    .parse::<u64>()
                    .ok()
                    .filter(|&b| b > 0)
                    .ok_or_else(|| {
                        anyhow!(
                            "--batch {}: expected positive integers like 32 or 1,8,32",
                            self.batch
                        )
                    })
            })
            .collect::<Result<Vec<u64>>>()?;
        Ok(inputs
            .iter()
            .flat_map(|i| {
                batches.iter().map(move |&batch| Setting {
                    input: i.clone(),
                    batch,
                    scale: self.scale.clone(),
                    nc: self.nc,
                })
            })
            .collect())
    }

    /// The single setting of a command that does not sweep.
    pub fn single(&self, command: &str) -> Result<Setting> {
        let mut s = self.settings()?;
        if s.len() != 1 {
            bail!("`{command}` takes one --input and one --batch (sweeps work with summary and compare)");
        }
        Ok(s.remove(0))
    }
}

/// Parses one `--input` setting: 1 to 4 positive sizes (`CxDxHxW` at most), completed against
/// the model by [`archscope::graph::complete_input`].
pub fn parse_input(s: &str) -> Result<Vec<u64>> {
    let parts: Vec<&str> = s.split(['x', 'X', '×']).map(str::trim).collect();
    let dims = parts
        .iter()
        .map(|p| p.parse::<u64>().ok().filter(|&d| d > 0))
        .collect::<Option<Vec<u64>>>()
        .ok_or_else(|| {
            anyhow!("--input {s}: expected positive integers like 3x224x224, 224x224, 224 or 3x16x112x112 (a comma separates sweep values)")
        })?;
    match dims.len() {
        1..=4 => Ok(dims),
        _ => bail!(
            "--input {s}: give at most 4 sizes: the channels and up to 3 spatial sizes (CxDxHxW)"
        ),
    }
}

/// `--depth N`: a whole number, at least 1 (one rule for `summary` and `report`).
pub fn parse_depth(s: &str) -> std::result::Result<u64, String> {
    match s.parse::<u64>() {
        Ok(0) => Err("the depth is at least 1 (1 folds the layers into the top-level blocks; leave --depth out for every layer)".into()),
        Ok(d) => Ok(d),
        Err(_) => Err(format!("`{s}` is not a depth: write a whole number, 1 or more")),
    }
}

/// `--depth` as the renderers take it.
pub fn depth(d: Option<u64>) -> Option<usize> {
    d.map(|d| usize::try_from(d).unwrap_or(usize::MAX))
}

/// A count or size flag (`--max-params 25M`, `--max-peak-memory 2GiB`), when given.
pub fn quantity(flag: &str, v: &Option<String>, kind: Quantity) -> Result<Option<u64>> {
    v.as_ref()
        .map(|s| parse_quantity(s, kind).map_err(|e| anyhow!("{flag} {e}")))
        .transpose()
}

/// Builds and analyses `model` at `setting`, with MACs under `convention`.
pub fn analysis(
    model: &str,
    setting: &Setting,
    dtype: Dtype,
    convention: Convention,
) -> Result<(Network, Analysis)> {
    let net = load(model, setting)?;
    let mut a = analyze(&net, dtype)?;
    recount(&net, &mut a, convention)?;
    Ok((net, a))
}

/// Loads a model for a command that takes one --input and one --batch.
pub fn load_one(model: &ModelArgs, command: &str) -> Result<Network> {
    let setting = model.setting.single(command)?;
    load(&model.model, &setting)
}

/// Loads a model from a file or the zoo at a setting (the YAML parsed once, an `--input`
/// completed against it by the library).
pub fn load(model: &str, setting: &Setting) -> Result<Network> {
    if setting.batch == 0 {
        bail!("--batch must be at least 1");
    }
    if is_onnx_file(model) {
        return Ok(load_onnx(model, setting)?.0);
    }
    let (doc, _) = load_doc(model, setting)?;
    let opts = BuildOptions {
        batch: setting.batch,
        input: match &setting.input {
            Some(dims) => Some(graph::complete_input(&doc, dims)?),
            None => None,
        },
        ..Default::default()
    };
    Ok(graph::build_network(&doc, &opts)?)
}

/// Whether `model` names an ONNX file: by its extension, or by its first bytes (a protobuf,
/// not text) for a file named otherwise.
pub fn is_onnx_file(model: &str) -> bool {
    let path = Path::new(model);
    if !path.is_file() {
        return false;
    }
    if path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("onnx"))
    {
        return true;
    }
    let mut head = [0u8; 64];
    let n = std::fs::File::open(path)
        .and_then(|mut f| std::io::Read::read(&mut f, &mut head))
        .unwrap_or(0);
    crate::onnx::looks_like_onnx(&head[..n])
}

/// Reads an ONNX file and the external data files its tensors name (relative to the model's
/// folder; each reference checked by `onnx::external::resolve` before it is read here).
pub fn import_onnx(model: &str, batch: u64, input: Option<&[u64]>) -> Result<crate::onnx::Import> {
    let bytes = read_capped(
        model,
        crate::onnx::MAX_ONNX_BYTES,
        "archscope reads from an ONNX file",
    )?;
    let dir = std::path::Path::new(model)
        .parent()
        .map(std::path::Path::to_path_buf)
        .unwrap_or_default();
    let mut read = |r: &crate::onnx::external::ExternalRef| read_external(&dir, r);
    Ok(crate::onnx::import_external(
        model, &bytes, batch, input, &mut read,
    )?)
}

/// `r.length` bytes at `r.offset` of the file `r.location` in `dir`.
fn read_external(
    dir: &std::path::Path,
    r: &crate::onnx::external::ExternalRef,
) -> std::result::Result<Vec<u8>, String> {
    use std::io::{Read, Seek, SeekFrom};
    let path = dir.join(&r.location);
    let shown = path.display();
    let mut f = std::fs::File::open(&path).map_err(|e| format!("cannot open {shown}: {e}"))?;
    let meta = f
        .metadata()
        .map_err(|e| format!("cannot read {shown}: {e}"))?;
    if !meta.is_file() {
        return Err(format!("{shown} is not a regular file"));
    }
    let end = r.offset.saturating_add(r.length);
    if end > meta.len() {
        return Err(format!(
            "{shown} holds {} bytes, and the tensor's bytes end at {end}",
            meta.len()
        ));
    }
    let len = usize::try_from(r.length).map_err(|_| "too large for this machine".to_string())?;
    let mut buf = Vec::new();
    buf.try_reserve_exact(len)
        .map_err(|_| format!("cannot allocate {len} bytes"))?;
    f.seek(SeekFrom::Start(r.offset))
        .and_then(|_| f.take(r.length).read_to_end(&mut buf))
        .map_err(|e| format!("cannot read {shown}: {e}"))?;
    if buf.len() != len {
        return Err(format!(
            "{shown} ended after {} of the tensor's {len} bytes",
            buf.len()
        ));
    }
    Ok(buf)
}

/// Reads and builds an ONNX model (`--input` replaces the single input's shape as for YAML);
/// also returns the import (its YAML text and the initializers' weights).
pub fn load_onnx(model: &str, setting: &Setting) -> Result<(Network, crate::onnx::Import)> {
    // A file with symbolic input sizes takes --input's while it is read (its shape constants
    // fold from them); one with fixed sizes is resized as a YAML model is.
    let imp = import_onnx(model, setting.batch, setting.input.as_deref())?;
    let input = match &setting.input {
        // Sized while read (its symbols bound): the YAML has the sizes already.
        Some(_) if imp.input_sized => None,
        Some(dims) => {
            let doc = Document::parse(model, &imp.yaml).map_err(crate::Error::from)?;
            Some(graph::complete_input(&doc, dims)?)
        }
        None => None,
    };
    let opts = BuildOptions {
        batch: setting.batch,
        input,
        ..Default::default()
    };
    let net = crate::onnx::build_imported(model, &imp, &opts)?;
    Ok((net, imp))
}

/// The model's document: the file or zoo model parsed, or, for an Ultralytics model file
/// (`backbone` and `head` lists), its translation (with what Ultralytics prints about it).
pub fn load_doc(model: &str, setting: &Setting) -> Result<(Document, Option<ultralytics::Model>)> {
    // Ultralytics reads `yolov8n.yaml`, when no such file exists, as `yolov8.yaml` at scale `n`.
    let named = ultralytics::scale_from_name(model);
    let (file, text) = match &named {
        Some((_, unified)) if !Path::new(model).exists() && Path::new(unified).exists() => (
            unified.clone(),
            read_model_file(Path::new(unified), unified)?,
        ),
        Some((_, unified)) if !Path::new(model).exists() && zoo::source(model).is_none() => {
            // `YOLO("yolov8n.yaml")` finds the file in the ultralytics package; archscope
            // ships none of Ultralytics' (AGPL-3.0) files, so the user names the path.
            bail!(
                "no file `{}` or `{}`\n   help: archscope does not ship Ultralytics' model files; give the path of the one in the installed package, …/site-packages/ultralytics/cfg/models/VERSION/{} (VERSION: v3, v5, v8, 11, …)",
                crate::error::excerpt(model),
                crate::error::excerpt(unified),
                crate::error::excerpt(
                    Path::new(model)
                        .file_name()
                        .map(|f| f.to_string_lossy().into_owned())
                        .unwrap_or_default()
                        .as_str()
                )
            )
        }
        _ => read_model(model)?,
    };
    let doc = Document::parse(&file, &text).map_err(crate::Error::from)?;
    if !ultralytics::is_ultralytics(&doc.root) {
        return Ok((doc, None));
    }
    let input = match setting.input.as_deref() {
        None => None,
        Some([s]) => Some((*s, *s)),
        Some([.., h, w]) => Some((*h, *w)),
        Some(_) => bail!("--input for an Ultralytics model: give HxW or S"),
    };
    let stem = Path::new(model)
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let opts = ultralytics::Options {
        name: stem,
        scale: setting
            .scale
            .clone()
            .or_else(|| named.map(|(c, _)| c.to_string())),
        nc: setting.nc.map(|n| i64::try_from(n).unwrap_or(i64::MAX)),
        input,
    };
    let m = ultralytics::translate(&doc, &opts).map_err(|d| crate::Error(Box::new(d)))?;
    if let Some(w) = &m.warning {
        // A command may load the model more than once (summary --ultralytics, compare of a
        // file with itself): each warning is said once per run.
        static SAID: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
        let mut said = SAID.lock().unwrap_or_else(|e| e.into_inner());
        if !said.contains(w) {
            eprintln!("warning: {w}");
            said.push(w.clone());
        }
    }
    let doc =
        Document::parse(&format!("{file} (translated)"), &m.text).map_err(crate::Error::from)?;
    Ok((doc, Some(m)))
}

/// The name the model's messages give its file, and its text: a file when one of that name
/// exists (read under the parser's byte limit), else the zoo model.
fn read_model(model: &str) -> Result<(String, String)> {
    let path = Path::new(model);
    if path.exists() {
        return Ok((model.to_string(), read_model_file(path, model)?));
    }
    if let Some(text) = zoo::source(model) {
        return Ok((format!("models/{model}.yaml"), text.to_string()));
    }
    let names: Vec<&str> = zoo::MODELS.iter().map(|(n, _)| *n).collect();
    let hint = match did_you_mean(model, names.iter().copied()) {
        Some(s) => format!("did you mean the zoo model `{s}`?"),
        None => "`archscope zoo` lists the embedded models".to_string(),
    };
    bail!(
        "no file or zoo model named `{}`\n   help: {hint}",
        crate::error::excerpt(model)
    )
}

/// An architecture file's text: at most one byte more than the parser accepts is read, so a
/// huge (or endless) file costs no more memory than the limit; not UTF-8 is said with where.
fn read_model_file(path: &Path, model: &str) -> Result<String> {
    let limit = crate::yaml::MAX_SOURCE_BYTES as u64;
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| {
            std::io::Read::read_to_end(&mut std::io::Read::take(f, limit + 1), &mut bytes)
        })
        .with_context(|| format!("cannot read {model}"))?;
    if bytes.len() as u64 > limit {
        let size = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
        bail!(
            "the file is {} bytes; archscope reads architecture files of at most {limit} bytes ({} MiB)\n  --> {model}:1:1\n   \
             help: describe repeated structure with a block and `repeat: N` instead of writing it out",
            if size > limit { size.to_string() } else { format!("more than {limit}") },
            limit >> 20
        );
    }
    String::from_utf8(bytes).map_err(|e| {
        let valid = &e.as_bytes()[..e.utf8_error().valid_up_to()];
        let before = std::str::from_utf8(valid).unwrap_or_default();
        let line = before.matches('\n').count() + 1;
        let column = before.rsplit('\n').next().unwrap_or("").chars().count() + 1;
        anyhow!(
            "the file is not UTF-8 text: is it a binary file?\n  --> {model}:{line}:{column}\n   \
             help: an architecture is a YAML text file, in UTF-8"
        )
    })
}

/// Reads at most `limit` bytes of `file` (one more to tell that it is larger), so that a huge
/// file, a device such as /dev/zero or an endless pipe costs no more than the limit.
pub fn read_capped(file: &str, limit: u64, what: &str) -> Result<Vec<u8>> {
    // A regular file's size is known before reading: over the limit, nothing is read.
    if std::fs::metadata(file).is_ok_and(|m| m.is_file() && m.len() > limit) {
        bail!(
            "{file} is larger than {limit} bytes, the most {what}\n   help: check the file name (is it the file you meant?)"
        );
    }
    let mut bytes = Vec::new();
    std::fs::File::open(file)
        .and_then(|f| {
            std::io::Read::read_to_end(&mut std::io::Read::take(f, limit + 1), &mut bytes)
        })
        .with_context(|| format!("cannot read {file}"))?;
    if bytes.len() as u64 > limit {
        bail!(
            "{file} is larger than {limit} bytes, the most {what}\n   help: check the file name (is it the file you meant?)"
        );
    }
    Ok(bytes)
}
