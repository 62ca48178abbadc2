//! The server crate's import order, checked: each folder of `src/` may use
//! only the folders below it, so the shape the crate's docs describe stays.
//!
//! ```text
//! member → http → services → raft → watch → peer → state → leaves
//! ```
//!
//! The leaves (`config`, `error`, `ids`, `metrics`, `schema`, `status`,
//! `tls`, `version`) may use each other but no folder. Uses inside one
//! folder are free. A use is any `crate::<module>` path outside a comment.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

const ORDER: &[&str] = &["member", "http", "services", "raft", "watch", "peer", "state"];
const LEAVES: &[&str] =
    &["config", "error", "ids", "metrics", "schema", "status", "tls", "version"];

/// The rank of a top-level module: folders by [`ORDER`], leaves lowest.
fn rank(module: &str) -> Option<usize> {
    if LEAVES.contains(&module) {
        return Some(0);
    }
    ORDER.iter().position(|m| *m == module).map(|i| ORDER.len() - i)
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level modules `source` refers to as `crate::<module>`.
fn uses(source: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for line in source.lines() {
        let code = line.split("//").next().unwrap_or_default();
        let mut rest = code;
        while let Some(at) = rest.find("crate::") {
            let after = &rest[at + "crate::".len()..];
            let name: String =
                after.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
            if !name.is_empty() {
                found.insert(name);
            }
            rest = after;
        }
    }
    found
}

#[test]
fn every_import_points_down_the_layers() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    let mut upward = Vec::new();
    for file in &files {
        let rel = file.strip_prefix(&src).unwrap();
        let top = rel.components().next().unwrap().as_os_str().to_string_lossy().to_string();
        let own = top.trim_end_matches(".rs").to_string();
        if own == "lib" {
            continue;
        }
        let own_rank = rank(&own).unwrap_or_else(|| {
            panic!("{} is in no layer: add it to ORDER or LEAVES", rel.display())
        });
        for used in uses(&std::fs::read_to_string(file).unwrap()) {
            if used == own || used == "Error" || used == "Result" {
                continue;
            }
            let used_rank = rank(&used).unwrap_or_else(|| {
                panic!("{} uses crate::{used}, which is in no layer", rel.display())
            });
            // Leaves may use each other; anything else only what is below it.
            if used_rank >= own_rank && !(own_rank == 0 && used_rank == 0) {
                upward.push(format!("{} uses crate::{used}", rel.display()));
            }
        }
    }
    assert!(upward.is_empty(), "imports against the layer order:\n{}", upward.join("\n"));
}

#[test]
fn the_checker_sees_uses_and_skips_comments() {
    let found = uses(
        "use crate::raft::handle::RaftHandle;\n// crate::http is mentioned\nlet x = crate::state::stores::Stores::open(a); // crate::member",
    );
    assert_eq!(found, BTreeSet::from(["raft".to_string(), "state".to_string()]));
    assert!(rank("member") > rank("http"));
    assert!(rank("state") > rank("status"));
}
