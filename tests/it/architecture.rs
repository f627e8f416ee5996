//! The module graph, read from the sources: the web shell stays on top, and no two folders
//! import each other.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Every `crate::<folder>` a file names, by the top-level folder (or file) it lives in.
fn imports() -> BTreeMap<String, BTreeMap<String, BTreeSet<String>>> {
    let mut graph: BTreeMap<String, BTreeMap<String, BTreeSet<String>>> = BTreeMap::new();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut stack = vec![src.clone()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let rel = path
                .strip_prefix(&src)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            let top = rel
                .split('/')
                .next()
                .unwrap()
                .trim_end_matches(".rs")
                .to_owned();
            let text = std::fs::read_to_string(&path).unwrap();
            let mut named = BTreeSet::new();
            let mut rest = text.as_str();
            while let Some(at) = rest.find("crate::") {
                rest = &rest[at + "crate::".len()..];
                if let Some(group) = rest.strip_prefix('{') {
                    // `use crate::{a::X, b};`
                    let inner = &group[..group.find('}').unwrap_or(group.len())];
                    for item in inner.split(',') {
                        let name: String = item
                            .trim()
                            .chars()
                            .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                            .collect();
                        named.insert(name);
                    }
                } else {
                    let name: String = rest
                        .chars()
                        .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_')
                        .collect();
                    named.insert(name);
                }
            }
            for name in named.into_iter().filter(|n| !n.is_empty() && *n != top) {
                graph
                    .entry(top.clone())
                    .or_default()
                    .entry(name)
                    .or_default()
                    .insert(rel.clone());
            }
        }
    }
    graph
}

#[test]
fn nothing_below_the_front_ends_names_the_web_shell() {
    let graph = imports();
    let offenders: Vec<String> = graph
        .iter()
        .filter(|(from, _)| *from != "web" && *from != "cli" && *from != "main" && *from != "lib")
        .filter_map(|(from, to)| to.get("web").map(|files| format!("{from}: {files:?}")))
        .collect();
    assert!(
        offenders.is_empty(),
        "modules below web/ and cli/ name crate::web: {offenders:?}"
    );
}

/// The folders reachable from `start` that also reach it: its strongly connected component.
fn knot(
    graph: &BTreeMap<String, BTreeMap<String, BTreeSet<String>>>,
    start: &str,
) -> BTreeSet<String> {
    let reach = |from: &str| {
        let mut seen = BTreeSet::from([from.to_owned()]);
        let mut todo = vec![from.to_owned()];
        while let Some(n) = todo.pop() {
            for next in graph.get(&n).map(|m| m.keys()).into_iter().flatten() {
                if seen.insert(next.clone()) {
                    todo.push(next.clone());
                }
            }
        }
        seen
    };
    let forward = reach(start);
    forward
        .into_iter()
        .filter(|n| reach(n).contains(start))
        .collect()
}

#[test]
fn no_cycle_crosses_folders() {
    let graph = imports();
    // The layers (docs/ARCHITECTURE.md): web/cli → broker → core (workflow, policy, audit, ssh,
    // ...) + store → model. Shared vocabulary lives in `model`, below the store, so nothing
    // needs to import upwards.
    let knots: Vec<BTreeSet<String>> = graph
        .keys()
        .map(|folder| knot(&graph, folder))
        .filter(|k| k.len() > 1)
        .collect();
    assert!(
        knots.is_empty(),
        "folders that import each other: {knots:?}"
    );
}

#[test]
fn the_store_the_pure_core_and_the_vocabulary_import_nothing_above_them() {
    let graph = imports();
    let below_the_store = ["model", "error", "clock", "crypto", "duration", "text"];
    for (folder, allowed) in [
        ("model", &below_the_store[..]),
        // The pure core: decisions without I/O, which the store persists.
        ("policy", &below_the_store[..]),
        (
            "workflow",
            &[&below_the_store[..], &["policy"]].concat()[..],
        ),
        (
            "store",
            &[&below_the_store[..], &["workflow", "policy"]].concat()[..],
        ),
    ] {
        let named: Vec<&String> = graph
            .get(folder)
            .map(|m| {
                m.keys()
                    .filter(|k| !allowed.contains(&k.as_str()))
                    .collect()
            })
            .unwrap_or_default();
        assert!(named.is_empty(), "{folder} names {named:?}");
    }
}

#[test]
fn pages_do_not_import_api_handlers() {
    let pages = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/web/pages");
    let offenders: Vec<String> = std::fs::read_dir(&pages)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| std::fs::read_to_string(p).unwrap().contains("web::api"))
        .map(|p| p.display().to_string())
        .collect();
    assert!(
        offenders.is_empty(),
        "pages name API handler modules (move shared code below both): {offenders:?}"
    );
}

/// Test modules take what they share from the shared ones (the typed client and seeds in
/// `helpers`, `fixtures`, and the harnesses of real components), never from each other.
#[test]
fn test_modules_borrow_nothing_from_each_other() {
    let shared = [
        "helpers",
        "fixtures",
        "db_fixtures",
        "sshd",
        "browser",
        "on_both_backends",
        "on_both_backends_threaded",
    ];
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it");
    let mut offenders = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let me = path.file_stem().unwrap().to_string_lossy().into_owned();
        if me == "architecture" {
            continue; // it names modules in its own checks
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let mut rest = text.as_str();
        while let Some(at) = rest.find("crate::") {
            rest = &rest[at + "crate::".len()..];
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                .collect();
            if !name.is_empty() && name != me && !shared.contains(&name.as_str()) {
                offenders.push(format!("{me} → {name}"));
            }
        }
    }
    assert!(offenders.is_empty(), "{offenders:?}");
}
