//! The house's layering, checked from the sources: the binary's modules import each other one way
//! (no circle), `src/` reaches the core library only through its front-end doors, and the root
//! crate does not depend on the actor runtime.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// What `src/` may use of the core library: settings, the daemon and simulate runner, the offline
/// identity facade, and the IPC API types and client.
const FRONT_END_DOORS: &[&str] = &["settings", "daemon", "offline", "api", "client"];

/// Each module of `src/` with its non-test source (a `#[cfg(test)]` module may use more); a module
/// split into a folder (`src/prompt/*.rs`) is one module, the text of all its files.
fn src_modules() -> BTreeMap<String, String> {
    let mut out = BTreeMap::<String, String>::new();
    let non_test = |p: &Path| {
        let text = std::fs::read_to_string(p).unwrap();
        match text.find("#[cfg(test)]") {
            Some(i) => text[..i].to_string(),
            None => text,
        }
    };
    for e in std::fs::read_dir(Path::new(ROOT).join("src")).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_stem().unwrap().to_string_lossy().into_owned();
        if p.is_dir() {
            for f in std::fs::read_dir(&p).unwrap() {
                let f = f.unwrap().path();
                if f.extension().is_some_and(|x| x == "rs") {
                    out.entry(name.clone()).or_default().push_str(&non_test(&f));
                }
            }
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.entry(name).or_default().push_str(&non_test(&p));
        }
    }
    out
}

/// The identifiers that follow `prefix` in `code` (`crate::format::time` → `format`).
fn uses_after(code: &str, prefix: &str) -> BTreeSet<String> {
    code.match_indices(prefix)
        .map(|(i, _)| {
            code[i + prefix.len()..]
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect::<String>()
        })
        .filter(|m| !m.is_empty())
        .collect()
}

#[test]
fn the_binarys_modules_import_each_other_one_way() {
    let modules = src_modules();
    let graph: BTreeMap<String, BTreeSet<String>> = modules
        .iter()
        .map(|(m, code)| {
            let deps = uses_after(code, "crate::")
                .into_iter()
                .filter(|d| d != m && modules.contains_key(d))
                .collect();
            (m.clone(), deps)
        })
        .collect();
    // Depth-first search; a module met again on the current path closes a circle.
    fn visit(
        m: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) {
        if done.contains(m) {
            return;
        }
        if let Some(i) = path.iter().position(|p| p == m) {
            panic!("import circle: {} -> {m}", path[i..].join(" -> "));
        }
        path.push(m.to_string());
        for d in &graph[m] {
            visit(d, graph, path, done);
        }
        path.pop();
        done.insert(m.to_string());
    }
    let mut done = BTreeSet::new();
    for m in graph.keys() {
        visit(m, &graph, &mut Vec::new(), &mut done);
    }
    assert!(graph["ctx"].is_disjoint(
        &["commands", "prompt", "core_process"]
            .map(String::from)
            .into()
    ));
}

#[test]
fn the_binary_uses_only_the_core_librarys_front_end_doors() {
    for (m, code) in src_modules() {
        for used in uses_after(&code, "pgpchat_actors::") {
            assert!(
                FRONT_END_DOORS.contains(&used.as_str()),
                "src/{m}.rs uses pgpchat_actors::{used}; a front-end uses only {FRONT_END_DOORS:?}"
            );
        }
    }
}

#[test]
fn the_root_crate_does_not_depend_on_the_actor_runtime() {
    let manifest = std::fs::read_to_string(Path::new(ROOT).join("Cargo.toml")).unwrap();
    let start = manifest
        .find("\n[dependencies]")
        .expect("a [dependencies] table");
    let table = &manifest[start + 1..];
    let table = &table[..table[1..].find("\n[").map_or(table.len(), |i| i + 1)];
    for line in table.lines().skip(1) {
        let name = line.split(['=', '.', ' ']).next().unwrap_or("");
        assert!(
            !["actix", "actix-rt"].contains(&name),
            "the binary depends on {name}: it should run the core through pgpchat_actors::daemon"
        );
    }
    // tokio is the web front-end's own runtime (its HTTP server and the library's async client);
    // nothing else of the binary uses it, so the core still runs only through the daemon door.
    for (module, code) in src_modules() {
        assert!(
            module == "web" || !code.contains("tokio::"),
            "src/{module} uses tokio: only the web front-end (src/web/) has a runtime of its own"
        );
    }
}
