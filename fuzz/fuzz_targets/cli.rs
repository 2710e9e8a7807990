//! Fuzz target over command lines: the bytes choose a subcommand, a model and up to six flags
//! with values — values from a dictionary of plausible and extreme ones (`0`, `18446744073709551615`,
//! `1,8,32`, `3x224x224`, `25M`, …) or raw bytes — and the library's command line
//! (`archscope::cli::main_from`, what the binary's `main` calls) parses them and runs the
//! library behind them. Nothing may panic, and the exit code must be 0, 1 or 2
//! (docs/FORMAT.md, "Errors").
//!
//! Files stay inside a temporary directory: the target works there, and every flag that takes
//! a path (`--weights`, `--npy`, `--image`, `--save-output`, `-o`, `--chart`) is given one of a
//! fixed set of names in it, some of which exist (a tiny model, its weights, an array). Models are
//! that tiny model, a missing file, or small zoo models (larger ones only for the static
//! commands). Run with `-close_fd_mask=3`: the commands print to stdout and stderr.

#![no_main]

use std::sync::Once;

use libfuzzer_sys::fuzz_target;

static SETUP: Once = Once::new();

/// A temporary directory with the files the command lines may name; the process works there.
fn setup() {
    SETUP.call_once(|| {
        let dir = std::env::temp_dir().join(format!("archscope-fuzz-cli-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("tiny.yaml"), include_str!("../seeds/tiny.yaml")).unwrap();
        std::fs::write(
            dir.join("w.safetensors"),
            include_bytes!("../seeds/safetensors/tiny_f32.safetensors"),
        )
        .unwrap();
        std::fs::write(
            dir.join("in.npy"),
            include_bytes!("../seeds/npy/f4_1x3x8x8.npy"),
        )
        .unwrap();
        std::fs::write(dir.join("bad.npy"), b"\x93NUMPY garbage").unwrap();
        std::env::set_current_dir(&dir).unwrap();
    });
}

struct Bytes<'a>(&'a [u8]);

impl Bytes<'_> {
    fn u8(&mut self) -> u8 {
        match self.0.split_first() {
            Some((b, rest)) => {
                self.0 = rest;
                *b
            }
            None => 0,
        }
    }
    fn below(&mut self, n: usize) -> usize {
        self.u8() as usize % n
    }
    fn pick<'s>(&mut self, from: &[&'s str]) -> &'s str {
        from[self.below(from.len())]
    }
    /// Up to 24 raw bytes as a string (lossy UTF-8).
    fn raw(&mut self) -> String {
        let n = self.below(25).min(self.0.len());
        let (s, rest) = self.0.split_at(n);
        self.0 = rest;
        String::from_utf8_lossy(s).into_owned()
    }
}

const COMMANDS: &[(&str, &[&str])] = &[
    (
        "summary",
        &[
            "--input",
            "--batch",
            "--format",
            "--depth",
            "--dtype",
            "--convention",
        ],
    ),
    (
        "compare",
        &[
            "--input",
            "--batch",
            "--sort",
            "--baseline",
            "--format",
            "--chart",
            "--dtype",
            "--convention",
        ],
    ),
    (
        "audit",
        &[
            "--input",
            "--batch",
            "--max-params",
            "--max-macs",
            "--max-flops",
            "--max-peak-memory",
            "--min-rf",
            "--format",
            "--dtype",
            "--convention",
        ],
    ),
    (
        "train",
        &[
            "--dataset-size",
            "--batch",
            "--epochs",
            "--input",
            "--optimizer",
            "--dtype",
            "--throughput",
            "--format",
        ],
    ),
    ("rf", &["--input", "--batch", "--format"]),
    ("check", &["--input", "--batch", "--seed", "--format"]),
    (
        "run",
        &[
            "--input",
            "--batch",
            "--weights",
            "--image",
            "--npy",
            "--repeat",
            "--seed",
            "--save-output",
            "--format",
        ],
    ),
    (
        "dot",
        &[
            "--input",
            "--batch",
            "-o",
            "--format",
            "--collapse",
            "--rankdir",
            "--show",
            "--no-fuse",
        ],
    ),
    ("zoo", &["--format"]),
    ("ops", &[]),
];

const FILE_FLAGS: &[&str] = &[
    "--weights",
    "--image",
    "--npy",
    "--save-output",
    "-o",
    "--chart",
];
const FILES: &[&str] = &[
    "w.safetensors",
    "in.npy",
    "bad.npy",
    "tiny.yaml",
    "missing",
    "out.svg",
    "out.png",
    "out.npy",
    "out.dot",
    "out",
    "",
];
const SMALL_MODELS: &[&str] = &[
    "tiny.yaml",
    "lenet5",
    "mlp3",
    "sobel",
    "missing.yaml",
    "nosuchmodel",
];
const STATIC_MODELS: &[&str] = &["resnet18", "mobilenet_v2", "googlenet", "unet", "yolov1"];
const VALUES: &[&str] = &[
    "0",
    "1",
    "2",
    "3",
    "-1",
    "7",
    "64",
    "224",
    "1000",
    "100000",
    "4294967296",
    "9223372036854775807",
    "9223372036854775808",
    "18446744073709551615",
    "18446744073709551616",
    "1,8,32",
    "1,,2",
    ",",
    "3x224x224",
    "1x32x32",
    "32x32",
    "3x0x5",
    "3x4294967296x2",
    "224,320",
    "0x0",
    "x",
    "3x",
    "25M",
    "4G",
    "2GiB",
    "1.5M",
    "1e3",
    "0.5",
    "NaN",
    "inf",
    "-0",
    "table",
    "markdown",
    "csv",
    "json",
    "text",
    "dot",
    "svg",
    "png",
    "blocks",
    "repeats",
    "none",
    "TB",
    "LR",
    "params,macs,flops,rf,memory,shape",
    "f32",
    "f16",
    "bf16",
    "int8",
    "torchvision",
    "fvcore",
    "ptflops",
    "thop",
    "torchinfo",
    "adam",
    "adamw",
    "sgd",
    "params",
    "macs",
    "name",
    "lenet5",
    "tiny.yaml",
    " ",
    "é",
    "\u{1b}[2J",
];

fuzz_target!(|data: &[u8]| {
    setup();
    let mut b = Bytes(data);
    let (command, flags) = COMMANDS[b.below(COMMANDS.len())];
    let mut args: Vec<String> = vec!["archscope".into(), command.into()];
    let runs = matches!(command, "run" | "check");
    match command {
        "zoo" | "ops" => {}
        "compare" => {
            for _ in 0..=b.below(3) {
                let models = if b.below(2) == 0 {
                    SMALL_MODELS
                } else {
                    STATIC_MODELS
                };
                args.push(b.pick(models).into());
            }
        }
        _ => {
            let models = if runs || b.below(2) == 0 {
                SMALL_MODELS
            } else {
                STATIC_MODELS
            };
            args.push(b.pick(models).into());
        }
    }
    for _ in 0..b.below(7) {
        if flags.is_empty() {
            break;
        }
        let flag = b.pick(flags);
        args.push(flag.into());
        if flag == "--no-fuse" {
            continue;
        }
        args.push(if FILE_FLAGS.contains(&flag) {
            b.pick(FILES).into()
        } else if b.below(4) == 0 {
            b.raw()
        } else {
            b.pick(VALUES).into()
        });
    }
    // `--repeat N` runs N passes: a huge N is a long run, not a finding here (the executor's
    // own cap is tested in tests/limits.rs).
    if args
        .windows(2)
        .any(|w| w[0] == "--repeat" && w[1].trim().parse::<u64>().map_or(false, |n| n > 16))
    {
        return;
    }
    let code = archscope::cli::main_from(args.clone());
    assert!(matches!(code, 0..=2), "exit code {code} for {args:?}");
});
