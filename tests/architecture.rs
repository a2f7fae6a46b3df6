//! The module graph of `src/` points one way (wiki/ARCHITECTURE.md, "Layers"): every
//! `crate::x` / `epusdt::x` reference in a module names a module of a strictly lower layer, or
//! itself. A new back edge, an unlisted module, a web framework in a pure layer or a source file
//! over the size limit fails this test, with the offending file and line.
use std::{
    collections::BTreeMap,
    fs,
    path::{Path, PathBuf},
};

/// Layer of every top-level module, lowest first. A module may use only modules of a lower
/// layer (and its own submodules).
const LAYERS: &[(&str, u8)] = &[
    ("secret", 0),
    ("redact", 0),
    ("domain", 0),
    ("config", 1),
    ("crypto", 2),
    ("store", 2),
    ("telemetry", 2),
    ("audit", 3),
    ("queue", 3),
    ("security", 4),
    ("protocol", 3),
    ("net", 5),
    ("service", 6),
    ("chain", 7),
    ("state", 8),
    ("http", 9),
    ("jobs", 9),
    ("telegram", 9),
    ("app", 10),
    ("cli", 11),
    ("main", 12),
];

/// Crates a module of these layers must not name: they are pure (no HTTP framework, no
/// database driver where it does not belong).
const FORBIDDEN: &[(&str, &[&str])] = &[
    (
        "domain",
        &["axum", "sea_orm", "reqwest", "tokio", "apalis", "redis"],
    ),
    ("secret", &["axum", "sea_orm"]),
    ("redact", &["axum", "sea_orm"]),
    ("config", &["axum", "sea_orm", "reqwest"]),
    ("crypto", &["axum", "sea_orm"]),
    ("store", &["axum"]),
    ("audit", &["axum"]),
    ("queue", &["axum"]),
    ("security", &["axum"]),
    ("protocol", &["axum", "sea_orm"]),
    ("service", &["axum"]),
    ("chain", &["axum"]),
];

/// Source files may not grow past this many lines (split them by concern instead).
const MAX_LINES: usize = 600;

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).expect("read src/") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// `src/a/b.rs` → `a`; `src/a.rs` → `a`; `src/lib.rs` → None (the crate root only declares).
fn module_of(src: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src).expect("under src");
    let first = rel
        .components()
        .next()?
        .as_os_str()
        .to_string_lossy()
        .to_string();
    let name = first.trim_end_matches(".rs").to_string();
    (name != "lib").then_some(name)
}

/// Strips `//` comments and string literals well enough for path scanning.
fn code_only(line: &str) -> String {
    let mut out = String::new();
    let mut in_str = false;
    let mut prev = ' ';
    let chars: Vec<char> = line.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if !in_str && c == '/' && chars.get(i + 1) == Some(&'/') {
            break;
        }
        if c == '"' && prev != '\\' {
            in_str = !in_str;
        } else if !in_str {
            out.push(c);
        }
        prev = c;
        i += 1;
    }
    out
}

/// Top-level modules named by one file: `crate::x…`, `epusdt::x…` (the binary), and the
/// first-level names of `use crate::{x, y::z}` groups.
fn references(text: &str) -> Vec<(usize, String)> {
    let mut refs = Vec::new();
    let mut group: Option<(usize, i32, bool)> = None; // (start line, depth, expecting a name)
    for (n, raw) in text.lines().enumerate() {
        let line = code_only(raw);
        for prefix in ["crate::", "epusdt::"] {
            let mut rest = line.as_str();
            while let Some(i) = rest.find(prefix) {
                let before = rest[..i].chars().last();
                let after = &rest[i + prefix.len()..];
                rest = after;
                if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
                    continue;
                }
                let name: String = after
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                if !name.is_empty() {
                    refs.push((n + 1, name));
                } else if after.starts_with('{') {
                    group = Some((n + 1, 0, true));
                }
            }
        }
        // Names at depth 1 of a `use crate::{…}` group (possibly over several lines).
        if let Some((_, ref mut depth, ref mut expecting)) = group {
            let start = line
                .find("crate::{")
                .map(|i| i + "crate::".len())
                .or_else(|| line.find("epusdt::{").map(|i| i + "epusdt::".len()))
                .unwrap_or(0);
            let mut ident = String::new();
            for c in line[start..].chars() {
                match c {
                    '{' => {
                        *depth += 1;
                        *expecting = *depth == 1;
                        ident.clear();
                    }
                    '}' => {
                        if *depth == 1 && *expecting && !ident.is_empty() {
                            refs.push((n + 1, std::mem::take(&mut ident)));
                        }
                        *depth -= 1;
                        ident.clear();
                    }
                    ',' if *depth == 1 => {
                        if *expecting && !ident.is_empty() {
                            refs.push((n + 1, std::mem::take(&mut ident)));
                        }
                        *expecting = true;
                        ident.clear();
                    }
                    ':' if *depth == 1 => {
                        if *expecting && !ident.is_empty() {
                            refs.push((n + 1, std::mem::take(&mut ident)));
                        }
                        *expecting = false;
                        ident.clear();
                    }
                    c if (c.is_alphanumeric() || c == '_') && *depth == 1 && *expecting => {
                        ident.push(c)
                    }
                    c if c.is_whitespace() => {}
                    _ => {
                        if *depth == 1 {
                            ident.clear();
                        }
                    }
                }
            }
            if *depth <= 0 {
                group = None;
            }
        }
    }
    refs.retain(|(_, name)| name != "self" && name != "super");
    refs
}

fn uses_crate(text: &str, krate: &str) -> Option<usize> {
    text.lines().position(|raw| {
        let line = code_only(raw);
        line.split(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
            .any(|tok| tok == krate || tok.starts_with(&format!("{krate}::")))
    })
}

#[test]
fn dependencies_point_down_and_files_stay_small() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let layers: BTreeMap<&str, u8> = LAYERS.iter().copied().collect();
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    assert!(
        files.len() > 20,
        "found only {} files under src/",
        files.len()
    );
    let mut problems = Vec::new();
    for file in &files {
        let Some(module) = module_of(&src, file) else {
            continue;
        };
        let rel = file.strip_prefix(src.parent().unwrap()).unwrap().display();
        let Some(&own) = layers.get(module.as_str()) else {
            problems.push(format!(
                "{rel}: module `{module}` has no layer in tests/architecture.rs (add it, and to wiki/ARCHITECTURE.md)"
            ));
            continue;
        };
        let text = fs::read_to_string(file).expect("read source");
        let lines = text.lines().count();
        if lines > MAX_LINES {
            problems.push(format!(
                "{rel}: {lines} lines (limit {MAX_LINES}): split it by concern"
            ));
        }
        for (line, target) in references(&text) {
            if target == module {
                continue;
            }
            match layers.get(target.as_str()) {
                // Not a module (a re-exported item such as `crate::App`): ignore.
                None => {}
                Some(&theirs) if theirs < own => {}
                Some(&theirs) => problems.push(format!(
                    "{rel}:{line}: `{module}` (layer {own}) uses `{target}` (layer {theirs}): a back edge"
                )),
            }
        }
        if let Some((_, crates)) = FORBIDDEN.iter().find(|(m, _)| *m == module) {
            for krate in *crates {
                if let Some(line) = uses_crate(&text, krate) {
                    problems.push(format!(
                        "{rel}:{}: `{module}` must not use `{krate}`",
                        line + 1
                    ));
                }
            }
        }
    }
    assert!(
        problems.is_empty(),
        "architecture check failed ({}):\n{}",
        problems.len(),
        problems.join("\n")
    );
}

#[test]
fn the_checker_sees_groups_and_paths() {
    let text = "use crate::{\n    audit::{A, B},\n    config::Config, domain,\n};\nfn f() { crate::http::x(); let s = \"crate::app\"; }\n// crate::cli\n";
    let names: Vec<String> = references(text).into_iter().map(|(_, n)| n).collect();
    assert_eq!(names, ["audit", "config", "domain", "http"]);
    assert_eq!(
        module_of(Path::new("src"), Path::new("src/http/merchant.rs")).as_deref(),
        Some("http")
    );
    assert_eq!(uses_crate("use axum::Router;", "axum"), Some(0));
    assert_eq!(uses_crate("let axumish = 1;", "axum"), None);
}
