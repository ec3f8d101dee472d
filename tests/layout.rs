//! The module boundaries the code relies on, checked on the source itself.
//!
//! `src/providers/` holds the provider translations: pure functions of
//! bytes and JSON (requests, answers, streams, error bodies) that need
//! neither the web framework, the HTTP client nor the database. Issue 11
//! found `error <-> providers` importing each other; the boundary is now one
//! way (the rest of the server depends on the providers, never the
//! reverse), and this test keeps it so. The providers stay a module of the
//! `switchyard` crate rather than a crate of their own because the
//! workspace's top level is fixed (`src`, `actors`, `tests`, ...); this test
//! is what a crate boundary would have given for free.
//!
//! Files are parsed with `syn`, so every path counts (imports, paths in
//! code, attributes, macro names) and comments and strings do not.

use anyhow::{Context, Result, ensure};
use std::path::{Path, PathBuf};
use syn::visit::{self, Visit};

/// External crates the providers must not use, by path root (a root and
/// its `_` family: `actix` covers `actix_web`, `actix_http`, `actix_rt`).
const FORBIDDEN_CRATES: &[&str] = &["actix", "awc", "diesel", "deadpool"];

/// The modules of this crate the providers may use: themselves, and
/// `config` for `ProviderKind`. Everything else (`db`, `http`, `error`,
/// `gateway`, `admin`, ...) is the server around them.
const ALLOWED_CRATE_MODULES: &[&str] = &["providers", "config"];

/// Collects the paths of one file that cross the boundary.
struct Boundary {
    /// Path segments of the module being read: `providers` is 1,
    /// `providers::anthropic::stream` 3, its `mod tests` 4. That many
    /// leading `super`s leave `providers`.
    depth: usize,
    found: Vec<String>,
}

impl Boundary {
    fn check(&mut self, segments: &[String], is_import: bool) {
        let Some(first) = segments.first() else {
            return;
        };
        let supers = segments.iter().take_while(|s| *s == "super").count();
        let crossing = if first == "crate" {
            segments
                .get(1)
                .is_some_and(|module| !ALLOWED_CRATE_MODULES.contains(&module.as_str()))
        } else if supers > 0 {
            supers >= self.depth
        } else {
            // A lone `awc` in code would be a local name, not the crate.
            (is_import || segments.len() > 1)
                && FORBIDDEN_CRATES.iter().any(|root| {
                    first == root
                        || first
                            .strip_prefix(root)
                            .is_some_and(|rest| rest.starts_with('_'))
                })
        };
        if crossing {
            self.found.push(segments.join("::"));
        }
    }

    /// Every full path a `use` tree names.
    fn check_use(&mut self, tree: &syn::UseTree, prefix: &mut Vec<String>) {
        match tree {
            syn::UseTree::Path(path) => {
                prefix.push(path.ident.to_string());
                self.check_use(&path.tree, prefix);
                prefix.pop();
            }
            syn::UseTree::Name(name) => self.check_leaf(prefix, &name.ident),
            syn::UseTree::Rename(rename) => self.check_leaf(prefix, &rename.ident),
            syn::UseTree::Glob(_) => {
                let path = prefix.clone();
                self.check(&path, true);
            }
            syn::UseTree::Group(group) => {
                for tree in &group.items {
                    self.check_use(tree, prefix);
                }
            }
        }
    }

    fn check_leaf(&mut self, prefix: &[String], ident: &syn::Ident) {
        let mut path = prefix.to_vec();
        // `use super::{self, x}` names the prefix itself.
        if ident != "self" {
            path.push(ident.to_string());
        }
        self.check(&path, true);
    }
}

impl<'ast> Visit<'ast> for Boundary {
    fn visit_item_mod(&mut self, item: &'ast syn::ItemMod) {
        self.depth += 1;
        visit::visit_item_mod(self, item);
        self.depth -= 1;
    }

    fn visit_item_use(&mut self, item: &'ast syn::ItemUse) {
        self.check_use(&item.tree, &mut Vec::new());
    }

    fn visit_item_extern_crate(&mut self, item: &'ast syn::ItemExternCrate) {
        self.check(&[item.ident.to_string()], true);
    }

    fn visit_path(&mut self, path: &'ast syn::Path) {
        let segments: Vec<String> = path
            .segments
            .iter()
            .map(|segment| segment.ident.to_string())
            .collect();
        self.check(&segments, false);
        visit::visit_path(self, path);
    }
}

/// The crossing paths in one file's source, read as the module at `depth`.
fn violations(source: &str, depth: usize) -> Result<Vec<String>> {
    let file = syn::parse_file(source)?;
    let mut boundary = Boundary {
        depth,
        found: Vec::new(),
    };
    boundary.visit_file(&file);
    Ok(boundary.found)
}

/// Every `.rs` file below `dir`, with the depth of its module.
fn rust_files(dir: &Path, depth: usize, out: &mut Vec<(PathBuf, usize)>) -> Result<()> {
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        if path.is_dir() {
            rust_files(&path, depth + 1, out)?;
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            // `x/mod.rs` is the module `x`; `x/y.rs` is one level below it.
            let is_mod = path.file_name().is_some_and(|name| name == "mod.rs");
            out.push((path, if is_mod { depth } else { depth + 1 }));
        }
    }
    Ok(())
}

#[test]
fn providers_import_nothing_from_the_server_around_them() -> Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/providers");
    let mut files = Vec::new();
    rust_files(&root, 1, &mut files)?;
    // The split by concern keeps at least these; fewer means the walk broke.
    ensure!(
        files.len() >= 15,
        "only {} files found under {}",
        files.len(),
        root.display()
    );
    let mut report = Vec::new();
    for (path, depth) in &files {
        let source = std::fs::read_to_string(path)?;
        let name = path
            .strip_prefix(env!("CARGO_MANIFEST_DIR"))
            .unwrap_or(path)
            .display()
            .to_string();
        for crossing in violations(&source, *depth).with_context(|| format!("parsing {name}"))? {
            report.push(format!("{name}: {crossing}"));
        }
    }
    ensure!(
        report.is_empty(),
        "src/providers must not depend on the web framework, the HTTP client, the database or \
         the server's modules (convert at the call site instead):\n{}",
        report.join("\n")
    );
    Ok(())
}

#[test]
fn the_check_catches_each_kind_of_crossing() -> Result<()> {
    let crossing = [
        (
            "use actix_web::http::StatusCode;",
            "actix_web::http::StatusCode",
        ),
        ("use actix::prelude::*;", "actix::prelude"),
        ("use ::awc::Client;", "awc::Client"),
        (
            "use diesel_async::RunQueryDsl;",
            "diesel_async::RunQueryDsl",
        ),
        ("extern crate deadpool;", "deadpool"),
        ("use crate::error::ApiError;", "crate::error::ApiError"),
        ("use crate::{db::Db, providers::Wire};", "crate::db::Db"),
        ("use crate::http;", "crate::http"),
        ("use super::error::ApiError;", "super::error::ApiError"),
        (
            "fn f() { let c = awc::Client::default(); }",
            "awc::Client::default",
        ),
        (
            "fn f() -> crate::gateway::X { todo!() }",
            "crate::gateway::X",
        ),
        ("#[actix_web::main] fn f() {}", "actix_web::main"),
        ("fn f() { diesel::sql_query!(x); }", "diesel::sql_query"),
        // A test module one level down: `super::super` leaves `providers`.
        (
            "mod tests { use super::super::db::Db; }",
            "super::super::db::Db",
        ),
    ];
    for (source, path) in crossing {
        // Depth 1: the `providers` module itself.
        ensure!(
            violations(source, 1)? == [path],
            "{source}: {:?}",
            violations(source, 1)?
        );
    }

    let fine = [
        "use super::translate::TranslateError;",
        "use super::{self, Wire};",
        "use crate::providers::openai::Usage;",
        "use crate::config::ProviderKind;",
        "use serde_json::{Map, Value, json};",
        "// use actix_web::HttpResponse; (a comment)",
        "fn f() { let awc = 1; let s = \"crate::error::ApiError\"; }",
        "mod tests { use super::*; }",
        "fn f() { let actions = reaction::start(); }",
    ];
    for source in fine {
        ensure!(
            violations(source, 2)?.is_empty(),
            "{source}: {:?}",
            violations(source, 2)?
        );
    }
    Ok(())
}
