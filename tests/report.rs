//! `archscope report`: the HTML page, through the built binary. Byte-identical output for the
//! same input, the size of the largest zoo page, escaping of user text, and — in a real
//! browser (headless Chromium, skipped with a loud message when none is installed) — that the
//! page runs without a console error, shows the totals and rows of `summary --format json`
//! and `--depth 1 --format csv`, and that folding, sorting, search, click-through and the
//! memory timeline work (the page's own `#selftest` script exercises them and writes what it
//! saw into the DOM, which `--dump-dom` hands back). Screenshots go to
//! `target/report-screens/`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::common::{assert_rejected, chromium, have_dot, json, no_browser, ok, root, scratch};
use serde_json::Value;

/// Writes the report of `args` (models and flags) to `dir/file` and returns the path.
fn report(dir: &Path, file: &str, args: &[&str]) -> PathBuf {
    let path = dir.join(file);
    let mut all = vec!["report"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["-o", path.to_str().unwrap()]);
    ok(&all);
    path
}

#[test]
fn same_input_same_bytes() {
    let dir = scratch("determinism");
    let a = std::fs::read(report(&dir, "a.html", &["resnet50", "--depth", "1"])).unwrap();
    let b = std::fs::read(report(&dir, "b.html", &["resnet50", "--depth", "1"])).unwrap();
    assert!(a == b, "two reports of resnet50 differ");
    let args = [
        "alexnet",
        "googlenet",
        "--optimizer",
        "adam",
        "--batch",
        "8",
    ];
    let a = std::fs::read(report(&dir, "c.html", &args)).unwrap();
    let b = std::fs::read(report(&dir, "d.html", &args)).unwrap();
    assert!(a == b, "two comparison reports differ");
    // Everything inline: no address to fetch anything from.
    let text = String::from_utf8(a).unwrap();
    for needle in ["src=\"http", "href=\"http", "url(", "@import", "<link"] {
        assert!(!text.contains(needle), "the page refers to {needle}");
    }
}

#[test]
fn resnet152_page_is_well_under_two_megabytes() {
    let dir = scratch("size");
    let len = std::fs::metadata(report(&dir, "r152.html", &["resnet152"]))
        .unwrap()
        .len();
    // 1.07 MB with the diagram (Graphviz installed), about 0.7 MB without.
    assert!(len < 1_500_000, "resnet152's page is {len} bytes");
    have_dot("resnet152's page size was measured without its diagram");
}

/// A model whose name is markup: every place it appears must show it as text.
const HOSTILE: &str = "format: \"archscope/1\"\n\
name: \"</title><script>alert('x')</script> \\\"q\\\" & <b>bold</b>\"\n\
inputs:\n  image: [3, 32, 32]\n\
nodes:\n  - {id: conv1, op: conv, out: 8, kernel: 3, padding: 1, act: relu}\n  - {op: global_avgpool}\n  - {op: flatten}\n  - {id: fc, op: linear, out: 10}\n";
const HOSTILE_NAME: &str = "</title><script>alert('x')</script> \"q\" & <b>bold</b>";

#[test]
fn names_from_files_are_escaped() {
    let dir = scratch("escape");
    let model = dir.join("hostile.yaml");
    std::fs::write(&model, HOSTILE).unwrap();
    let page = report(&dir, "h.html", &[model.to_str().unwrap()]);
    let text = std::fs::read_to_string(page).unwrap();
    assert!(
        !text.contains("<script>alert"),
        "the name reached the page unescaped"
    );
    assert!(
        !text.contains("<b>bold"),
        "the name reached the page unescaped"
    );
    assert!(text.contains("&lt;/title&gt;&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &quot;q&quot; &amp; &lt;b&gt;bold&lt;/b&gt;"));
    // The page's own script is the only one.
    assert_eq!(text.matches("<script").count(), 1);
    // In a comparison too (the bubble chart and the table carry the name).
    let page = report(&dir, "hc.html", &[model.to_str().unwrap(), "alexnet"]);
    let text = std::fs::read_to_string(page).unwrap();
    assert!(!text.contains("<script>alert") && !text.contains("<b>bold"));
    assert_eq!(text.matches("<script").count(), 1);
}

#[test]
fn bad_report_settings_are_errors() {
    assert_rejected(
        &[
            "report",
            "alexnet",
            "--dtype",
            "int8",
            "--optimizer",
            "adam",
            "-o",
            "/dev/null",
        ],
        "training memory is planned for f32, f16 or bf16",
    );
    assert_rejected(
        &[
            "report",
            "alexnet",
            "vgg11",
            "--baseline",
            "vgg16",
            "-o",
            "/dev/null",
        ],
        "--baseline vgg16 is not one of the reported models",
    );
    assert_rejected(
        &["report", "alexnet", "--input", "224,320", "-o", "/dev/null"],
        "`report` takes one --input and one --batch",
    );
}

// ---------------------------------------------------------------------------------------------
// In a browser.

/// Runs headless Chromium with `args` on `url`; returns (stdout, stderr). Output goes through
/// files and only the browser process is waited for (its helpers may hold a pipe open).
fn browse(bin: &Path, dir: &Path, tag: &str, args: &[&str], url: &str) -> (String, String) {
    let profile = dir.join(format!("profile-{tag}"));
    let _ = std::fs::remove_dir_all(&profile);
    let out_path = dir.join(format!("{tag}.out"));
    let err_path = dir.join(format!("{tag}.err"));
    let mut child = Command::new(bin)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            "--enable-logging=stderr",
            "--v=0",
            "--virtual-time-budget=5000",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .arg(url)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(std::fs::File::create(&err_path).unwrap())
        .spawn()
        .expect("start chromium");
    // A guard against a hung browser, not a timing assertion: kill it after two minutes.
    let mut waited = 0;
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if waited > 1200 {
            let _ = child.kill();
            panic!("chromium did not finish on {url}");
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
        waited += 1;
    }
    (
        std::fs::read_to_string(&out_path).unwrap_or_default(),
        std::fs::read_to_string(&err_path).unwrap_or_default(),
    )
}

/// Unescapes the text of an element as `--dump-dom` serialises it.
fn unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&nbsp;", "\u{a0}")
        .replace("&amp;", "&")
}

/// Loads `page#selftest`, checks the console, and returns what the page's self-test wrote.
fn selftest(bin: &Path, dir: &Path, tag: &str, page: &Path) -> Value {
    let url = format!("file://{}#selftest", page.display());
    let (dom, err) = browse(bin, dir, tag, &["--dump-dom"], &url);
    // Console messages reach stderr as `…:CONSOLE(line)] "…"` lines; the page logs nothing, so
    // any such line is an error or a warning of the page.
    let console: Vec<&str> = err
        .lines()
        .filter(|l| l.contains(":CONSOLE") || l.contains("Uncaught"))
        .collect();
    assert!(
        console.is_empty(),
        "console messages on {tag}: {console:#?}"
    );
    let start = dom
        .find("<pre id=\"selftest\"")
        .unwrap_or_else(|| panic!("no self-test element in the DOM of {tag}:\n{}", &err));
    let body = &dom[start..];
    let open = body.find('>').unwrap() + 1;
    let close = body.find("</pre>").unwrap();
    let text = unescape(&body[open..close]);
    let v: Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("self-test output of {tag} is not JSON ({e}): {text}"));
    assert_eq!(v["errors"], Value::Array(vec![]), "errors on {tag}");
    v
}

fn screenshot(bin: &Path, dir: &Path, tag: &str, page: &Path, height: u32) -> PathBuf {
    let shots = root().join("target/report-screens");
    std::fs::create_dir_all(&shots).unwrap();
    let png = shots.join(format!("{tag}.png"));
    let _ = std::fs::remove_file(&png);
    browse(
        bin,
        dir,
        &format!("{tag}-shot"),
        &[
            &format!("--screenshot={}", png.display()),
            &format!("--window-size=1280,{height}"),
        ],
        &format!("file://{}", page.display()),
    );
    let bytes = std::fs::read(&png).expect("a screenshot");
    assert!(
        bytes.starts_with(b"\x89PNG\r\n\x1a\n") && bytes.len() > 20_000,
        "{png:?}"
    );
    png
}

fn human_or_dash(v: u64, f: fn(u64) -> String) -> String {
    if v == 0 {
        "-".into()
    } else {
        f(v)
    }
}

/// One model section of the page against `summary --format json`, `--depth 1 --format csv`,
/// `compare` and `audit` of the same model.
fn check_section(s: &Value, model: &str, diagram: bool) {
    use archscope::report::{human_bytes, human_count};
    let j = json(&["summary", model, "--format", "json"]);
    assert_eq!(s["model"], j["model"]);
    // The totals shown equal the JSON's.
    for key in [
        "params",
        "macs",
        "flops",
        "param_bytes",
        "peak_activation_bytes",
        "activation_bytes",
    ] {
        assert_eq!(s["totals"][key], j["totals"][key], "{model}: total {key}");
    }
    let c = json(&["compare", model, "--format", "json"]);
    // One value per spatial axis; the page shows one when they agree, else all joined by ×.
    let rf: Vec<String> = c["models"][0]["rf"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| format!("{}", v.as_f64().unwrap()))
        .collect();
    let rf = if rf.iter().all(|x| *x == rf[0]) {
        rf[0].clone()
    } else {
        rf.join("×")
    };
    assert_eq!(s["totals"]["rf"], rf, "{model}: final field");

    // Every layer's row, as shown, against the JSON.
    let layers = j["layers"].as_array().unwrap();
    let rows = s["layers"].as_array().unwrap();
    assert_eq!(
        rows.len(),
        layers.len(),
        "{model}: rows with every layer open"
    );
    for (r, l) in rows.iter().zip(layers) {
        let name = l["name"].as_str().unwrap();
        assert_eq!(r["name"], l["name"]);
        assert_eq!(r["op"], l["label"], "{name}");
        let u = |k: &str| l[k].as_u64().unwrap();
        let shown = if u("params") == 0 {
            "-".to_string()
        } else {
            u("params").to_string()
        };
        assert_eq!(r["params"], shown, "{name}");
        assert_eq!(r["macs"].as_u64(), Some(u("macs")), "{name}");
        assert_eq!(
            r["macs_text"],
            human_or_dash(u("macs"), human_count),
            "{name}"
        );
        assert_eq!(r["flops"].as_u64(), Some(u("flops")), "{name}");
        assert_eq!(
            r["flops_text"],
            human_or_dash(u("flops"), human_count),
            "{name}"
        );
        assert_eq!(r["mem"].as_u64(), Some(u("activation_bytes")), "{name}");
        assert_eq!(
            r["mem_text"],
            human_or_dash(u("activation_bytes"), human_bytes),
            "{name}"
        );
    }

    // Folded at depth 1: the rows of `summary --depth 1`.
    let csv =
        String::from_utf8(ok(&["summary", model, "--depth", "1", "--format", "csv"])).unwrap();
    // One field column per spatial axis (rf_length; rf_height, rf_width; rf_depth, …).
    let axes = csv
        .lines()
        .next()
        .unwrap()
        .split(',')
        .filter(|h| h.starts_with("rf_") && *h != "rf_aligned")
        .count();
    // The last row is the totals (empty name, op `total`), which the table does not fold.
    // Each row from the end: rf_aligned, the field's axes (last first), activation_bytes,
    // flops, macs, params, then the rest (name, op, output).
    let folded: Vec<Vec<&str>> = csv
        .lines()
        .skip(1)
        .filter(|l| !l.starts_with(",total,"))
        .map(|l| l.rsplitn(axes + 6, ',').collect())
        .collect();
    let fold1 = s["fold1"].as_array().unwrap();
    assert_eq!(fold1.len(), folded.len(), "{model}: rows at depth 1");
    for (r, f) in fold1.iter().zip(&folded) {
        let name = f[axes + 5].split(',').next().unwrap();
        assert_eq!(r["name"], name);
        let at = |k: usize| f[axes + k];
        let shown = if at(4) == "0" { "-" } else { at(4) };
        assert_eq!(r["params"], shown, "{name}");
        assert_eq!(r["macs"].as_u64(), at(3).parse::<u64>().ok(), "{name}");
        assert_eq!(r["flops"].as_u64(), at(2).parse::<u64>().ok(), "{name}");
        assert_eq!(r["mem"].as_u64(), at(1).parse::<u64>().ok(), "{name}");
        // The page's field: `global`, one value (every axis equal) or the axes joined by `×`,
        // with `*` when not aligned.
        let field: Vec<&str> = f[1..=axes].iter().rev().copied().collect();
        let t = if field[0].is_empty() {
            "global".to_string()
        } else if field.iter().all(|x| *x == field[0]) {
            field[0].to_string()
        } else {
            field.join("×")
        };
        let rf = if t == "global" || f[0] == "true" {
            t
        } else {
            t + "*"
        };
        assert_eq!(r["rf"], rf.as_str(), "{name}");
    }
    let names1: Vec<&str> = fold1.iter().map(|r| r["name"].as_str().unwrap()).collect();

    // Sorting: the same rows by MACs, descending then ascending; "network order" restores.
    for (key, desc) in [("sort_desc", true), ("sort_asc", false)] {
        let v = s[key].as_array().unwrap();
        let macs: Vec<u64> = v.iter().map(|x| x[1].as_u64().unwrap()).collect();
        let sorted = macs
            .windows(2)
            .all(|w| if desc { w[0] >= w[1] } else { w[0] <= w[1] });
        assert!(sorted, "{model}: {key} {macs:?}");
        let mut got: Vec<&str> = v.iter().map(|x| x[0].as_str().unwrap()).collect();
        let mut want = names1.clone();
        got.sort_unstable();
        want.sort_unstable();
        assert_eq!(got, want, "{model}: {key} holds the folded rows");
    }
    assert_eq!(s["sort_header"], "ascending");
    let reset: Vec<&str> = s["after_reset"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_str().unwrap())
        .collect();
    assert_eq!(reset, names1, "{model}: network order restored");

    // Opening a group shows its children under it; closing hides them again.
    let t = &s["toggle"];
    let before = t["before"].as_u64().unwrap() as usize;
    let children: Vec<&str> = t["children"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_str().unwrap())
        .collect();
    let opened: Vec<&str> = t["opened"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_str().unwrap())
        .collect();
    assert!(!children.is_empty());
    // The fold's rows: the opened group gives way to its children, in its place.
    assert_eq!(
        opened.len(),
        before - 1 + children.len(),
        "{model}: opened {}",
        t["name"]
    );
    let at = names1
        .iter()
        .position(|n| *n == t["name"].as_str().unwrap())
        .unwrap();
    assert_eq!(&opened[at..at + children.len()], &children[..]);
    assert_eq!(opened[..at], names1[..at]);
    assert_eq!(t["closed"].as_u64(), Some(before as u64));

    // Search: the layers whose name holds the query, and nothing without it.
    let q = s["search"]["query"].as_str().unwrap();
    let found: Vec<&str> = s["search"]["names"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_str().unwrap())
        .collect();
    assert!(
        found
            .iter()
            .all(|n| n.to_lowercase().contains(&q.to_lowercase())),
        "{model}: search {q}"
    );
    for l in layers {
        let n = l["name"].as_str().unwrap();
        if n.to_lowercase().contains(&q.to_lowercase()) {
            assert!(found.contains(&n), "{model}: search {q} misses {n}");
        }
    }

    // Click-through, when there is a diagram.
    if diagram {
        let c = &s["click"];
        assert_eq!(c["node"], true, "{model}: a node for {}", c["layer"]);
        assert_eq!(c["row"], c["layer"], "{model}: node → row");
        assert_eq!(c["row_visible"], true);
        assert_eq!(c["node_marked"], c["layer"], "{model}: row → node");
        if !s["cluster"].is_null() {
            let path = s["cluster"]["path"].as_str().unwrap();
            let hidden = s["cluster"]["hidden"].as_array().unwrap();
            assert!(
                !hidden.is_empty(),
                "{model}: collapsing {path} hides its nodes"
            );
            assert!(hidden
                .iter()
                .all(|n| n.as_str().unwrap().starts_with(&format!("{path}."))));
            assert_eq!(s["cluster"]["hidden_after"], 0);
        }
    } else {
        assert!(s["no_diagram"].as_str().unwrap().contains("not installed"));
    }

    // The memory timeline at its peak: the tensors listed as alive add up to the peak.
    let peak = j["totals"]["peak_activation_bytes"].as_u64().unwrap();
    assert_eq!(s["peak"]["live"].as_u64(), Some(peak), "{model}");
    assert_eq!(s["peak"]["alive_sum"].as_u64(), Some(peak), "{model}");
    assert!(s["peak"]["panel"]
        .as_str()
        .unwrap()
        .starts_with("Alive while"));

    // Each audit finding links to its own layer's row.
    let a = json(&["audit", model, "--format", "json"]);
    let findings = s["findings"].as_array().unwrap();
    assert_eq!(findings.len(), a["findings"].as_array().unwrap().len());
    for (f, want) in findings.iter().zip(a["findings"].as_array().unwrap()) {
        assert_eq!(f[0], want["layer"]);
        assert_eq!(f[1], want["layer"]);
    }
}

#[test]
fn browser_model_page() {
    let Some(bin) = chromium() else {
        return no_browser("browser_model_page");
    };
    let diagram = have_dot("browser_model_page checked the page without its diagram");
    let dir = scratch("browser-model");
    let page = report(&dir, "resnet50.html", &["resnet50", "--depth", "1"]);
    let v = selftest(&bin, &dir, "resnet50", &page);
    let s = &v["sections"][0];
    assert_eq!(
        s["initial"], 10,
        "opened at --depth 1: the ten rows of the README's table"
    );
    check_section(s, "resnet50", diagram);
    screenshot(&bin, &dir, "resnet50", &page, 2400);
}

/// The page of a zoo model of another spatial rank, checked as resnet50's is (every row's
/// label — `conv 3×7×7/1×2×2 p1×3×3, 64 …` — and figures against `summary --format json`, the
/// depth-1 rows and their per-axis fields against the CSV, sorting, folding, search,
/// click-through, the memory timeline, the audit's links), and the field card's note, the
/// field chart's axis and legend in `unit`s (of the whole `input`).
fn browser_nd_page(model: &str, unit: &str, input: &str) {
    let Some(bin) = chromium() else {
        return no_browser(&format!("browser page of {model}"));
    };
    let diagram = have_dot(&format!(
        "the page of {model} was checked without its diagram"
    ));
    let dir = scratch(&format!("browser-{model}"));
    let page = report(&dir, &format!("{model}.html"), &[model]);
    let v = selftest(&bin, &dir, model, &page);
    check_section(&v["sections"][0], model, diagram);
    let text = std::fs::read_to_string(&page).unwrap();
    for want in [
        format!("<div class=\"x\">{unit}, input {input}</div>"),
        format!("input {unit} (log)"),
        format!("size ({unit})"),
        format!("jump ({unit} per unit)"),
    ] {
        assert!(text.contains(&want), "{model}: the page lacks {want}");
    }
    screenshot(&bin, &dir, model, &page, 2400);
}

#[test]
fn browser_video_page() {
    // r3d_18's final field is 117×315×315 voxels of the 16×112×112 clip.
    browser_nd_page("r3d_18", "voxels", "16×112×112");
}

#[test]
fn browser_audio_page() {
    browser_nd_page("wav2letter", "samples", "16000");
}

#[test]
fn browser_comparison_page() {
    let Some(bin) = chromium() else {
        return no_browser("browser_comparison_page");
    };
    let dir = scratch("browser-compare");
    let models = ["alexnet", "vgg16", "googlenet", "resnet50"];
    let mut args: Vec<&str> = models.to_vec();
    args.extend(["--baseline", "alexnet"]);
    let page = report(&dir, "compare.html", &args);
    let v = selftest(&bin, &dir, "compare", &page);
    let mut cargs = vec!["compare"];
    cargs.extend(models);
    cargs.extend(["--baseline", "alexnet", "--format", "json"]);
    let c = json(&cargs);
    let rows = v["compare"].as_array().unwrap();
    assert_eq!(rows.len(), models.len());
    for (i, (r, m)) in rows.iter().zip(c["models"].as_array().unwrap()).enumerate() {
        assert_eq!(r["model"], m["name"]);
        assert_eq!(
            r["link"],
            format!("#m{i}"),
            "each model links to its section"
        );
        assert_eq!(v["sections"][i]["id"], format!("m{i}"));
        assert_eq!(v["sections"][i]["model"], m["name"]);
        let cell = |k: usize| r["values"][k].as_str().unwrap().to_string();
        assert_eq!(cell(2), m["params"].to_string());
        assert_eq!(cell(3), m["macs"].to_string());
        assert_eq!(cell(4), m["flops"].to_string());
        assert_eq!(cell(5), m["param_bytes"].to_string());
        assert_eq!(cell(6), m["peak_activation_bytes"].to_string());
        assert_eq!(cell(7), m["depth"].to_string());
        // ×MACs against the baseline.
        let want = m["ratios"]["macs"].as_f64().unwrap();
        assert_eq!(cell(11).parse::<f64>().unwrap(), want);
    }
    // Each section's totals.
    for (i, m) in models.iter().enumerate() {
        let j = json(&["summary", m, "--format", "json"]);
        for key in ["params", "macs", "flops", "peak_activation_bytes"] {
            assert_eq!(
                v["sections"][i]["totals"][key], j["totals"][key],
                "{m}: {key}"
            );
        }
    }
    screenshot(&bin, &dir, "compare", &page, 2000);
}

#[test]
fn browser_hostile_names_stay_text() {
    let Some(bin) = chromium() else {
        return no_browser("browser_hostile_names_stay_text");
    };
    let dir = scratch("browser-hostile");
    let model = dir.join("hostile.yaml");
    std::fs::write(&model, HOSTILE).unwrap();
    let page = report(&dir, "h.html", &[model.to_str().unwrap(), "alexnet"]);
    let v = selftest(&bin, &dir, "hostile", &page);
    assert_eq!(
        v["title"],
        format!("archscope report: {HOSTILE_NAME} · alexnet")
    );
    assert_eq!(v["sections"][0]["model"], HOSTILE_NAME);
    assert_eq!(v["compare"][0]["model"], HOSTILE_NAME);
    // The page's own script is the only one in the DOM after it ran.
    assert_eq!(v["scripts"], 1);
}
