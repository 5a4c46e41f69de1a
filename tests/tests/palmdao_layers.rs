//! palmdao's layers, checked on its source (ADR 0031; STYLE.md, "A shape for
//! a service that owns a domain"): no two of its modules import each other
//! in a circle, and only `store/` touches MongoDB (`palm_mongo`, `mongodb`,
//! `bson`). `#[path]` and `include!` are refused, since they hide a module
//! from the check.
//!
//! The checker parses every file reached from `lib.rs` and `main.rs` with
//! syn and never compiles the service. Granularity is the file module:
//! inline modules (`mod tests { … }`) count as their file. An edge A → B is
//! a path in A's code that names an item of B: `use crate::…`, `use
//! super::…`, `use self::…`, a child module used by name from its parent,
//! qualified paths in code, in macro arguments and in attribute arguments
//! (`deserialize_with = "…"`). A `mod b;` declaration alone is not an edge;
//! doc comments are not code. Paths are read as written: a name reached
//! through a re-export counts against the module that re-exports it.
//!
//! `PALM_LAYERS_SRC` points the check at another copy of the sources (a
//! worktree): `PALM_LAYERS_SRC=/path/to/services/palmdao/src cargo nextest
//! run -p palm-tests --test palmdao_layers`.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use proc_macro2::{Spacing, Span, TokenStream, TokenTree};
use syn::visit::{self, Visit};

/// A use of a MongoDB crate outside the store layer that is not MongoDB
/// access (a configuration type, say), named with its reason.
struct Allowed {
    /// Source file, relative to the crate's `src/`.
    file: &'static str,
    /// The path as written, or a prefix of it ending at a `::`.
    path: &'static str,
    reason: &'static str,
}

const MONGO_ALLOWED: &[Allowed] = &[Allowed {
    file: "settings.rs",
    path: "palm_mongo::MongoSettings",
    reason: "the `mongo` section of palmdao's Settings is palm_mongo's settings type \
             (reading configuration, not touching MongoDB; settings.rs is a leaf, so \
             it cannot take the type from `store`, which uses it)",
}];

/// What one crate must keep to, so the check can point at another service.
struct Rules {
    /// Crate roots, relative to `src/`.
    roots: &'static [&'static str],
    /// Crates only the store layer may name.
    store_crates: &'static [&'static str],
    /// The store layer's module under the crate root: `<it>.rs`, `<it>/…`.
    store: &'static str,
    allowed: &'static [Allowed],
}

const PALMDAO: Rules = Rules {
    roots: &["lib.rs", "main.rs"],
    store_crates: &["palm_mongo", "mongodb", "bson"],
    store: "store",
    allowed: MONGO_ALLOWED,
};

#[test]
fn palmdao_layers_have_no_circles_and_only_store_touches_mongodb() {
    let src = std::env::var_os("PALM_LAYERS_SRC").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../services/palmdao/src"),
        PathBuf::from,
    );
    let report = check(&Dir(src.clone()), &PALMDAO);
    assert!(
        report.is_clean(),
        "palmdao's layers (ADR 0031), sources in {}:\n{report}",
        src.display()
    );
}

// ---------------------------------------------------------------- sources

/// Where the checker reads files from: a directory, or inline text in the
/// checker's own tests. Paths are relative to `src/`, `/`-separated.
trait Sources {
    fn read(&self, path: &str) -> Option<String>;
    fn list(&self) -> Vec<String>;
}

struct Dir(PathBuf);

impl Sources for Dir {
    fn read(&self, path: &str) -> Option<String> {
        std::fs::read_to_string(self.0.join(path)).ok()
    }

    fn list(&self) -> Vec<String> {
        fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
            let Ok(entries) = std::fs::read_dir(dir) else {
                return;
            };
            for entry in entries.flatten() {
                let path = entry.path();
                if path.is_dir() {
                    walk(root, &path, out);
                } else if path.extension().is_some_and(|e| e == "rs")
                    && let Ok(relative) = path.strip_prefix(root)
                {
                    out.push(relative.to_string_lossy().replace('\\', "/"));
                }
            }
        }
        let mut out = Vec::new();
        walk(&self.0, &self.0, &mut out);
        out.sort();
        out
    }
}

impl Sources for BTreeMap<&str, &str> {
    fn read(&self, path: &str) -> Option<String> {
        self.get(path).map(|text| (*text).to_owned())
    }

    fn list(&self) -> Vec<String> {
        self.keys().map(|path| (*path).to_owned()).collect()
    }
}

// ---------------------------------------------------------------- the tree

/// One crate's modules, found by following `mod` declarations from a root.
#[derive(Default)]
struct Tree {
    /// Every module (file or inline) by path (`crate::api::proposals`).
    modules: BTreeMap<String, Module>,
    /// Each file module's parsed file.
    files: Vec<(String, syn::File)>,
    problems: Vec<Finding>,
}

struct Module {
    /// Under `#[cfg(test)]`.
    test: bool,
    /// The file module this module's code lives in (itself for a file).
    file_module: String,
    /// The file, relative to `src/`.
    file: String,
    children: BTreeSet<String>,
}

fn load(sources: &dyn Sources, root: &str) -> Tree {
    let mut tree = Tree::default();
    let Some(text) = sources.read(root) else {
        return tree;
    };
    match syn::parse_file(&text) {
        Ok(file) => {
            tree.add("crate", "crate", root, false);
            tree.walk(sources, &file.items, "crate", "crate", root, "");
            tree.files.push(("crate".to_owned(), file));
        }
        Err(error) => tree.problems.push(Finding::parse(root, &error)),
    }
    tree
}

impl Tree {
    fn add(&mut self, module: &str, file_module: &str, file: &str, test: bool) {
        self.modules.insert(
            module.to_owned(),
            Module {
                test,
                file_module: file_module.to_owned(),
                file: file.to_owned(),
                children: BTreeSet::new(),
            },
        );
        if let Some((parent, name)) = module.rsplit_once("::")
            && let Some(parent) = self.modules.get_mut(parent)
        {
            parent.children.insert(name.to_owned());
        }
    }

    /// `dir` is where `mod x;` in this scope looks for `x.rs` / `x/mod.rs`.
    fn walk(
        &mut self,
        sources: &dyn Sources,
        items: &[syn::Item],
        scope: &str,
        file_module: &str,
        file: &str,
        dir: &str,
    ) {
        for item in items {
            let syn::Item::Mod(declared) = item else {
                continue;
            };
            let name = ident(&declared.ident);
            let module = format!("{scope}::{name}");
            let child_dir = format!("{dir}{name}/");
            let test =
                self.modules.get(scope).is_some_and(|m| m.test) || is_cfg_test(&declared.attrs);
            match &declared.content {
                Some((_, items)) => {
                    self.add(&module, file_module, file, test);
                    self.walk(sources, items, &module, file_module, file, &child_dir);
                }
                // Reported as a trick by the visitor; not followed.
                None if declared.attrs.iter().any(|a| a.path().is_ident("path")) => {}
                None => {
                    let candidates = [format!("{dir}{name}.rs"), format!("{dir}{name}/mod.rs")];
                    let Some((path, text)) = candidates
                        .iter()
                        .find_map(|path| sources.read(path).map(|text| (path, text)))
                    else {
                        self.problems.push(Finding {
                            file: file.to_owned(),
                            line: line(declared.ident.span()),
                            what: format!(
                                "`mod {name};`: neither {} nor {}",
                                candidates[0], candidates[1]
                            ),
                        });
                        continue;
                    };
                    match syn::parse_file(&text) {
                        Ok(parsed) => {
                            self.add(&module, &module, path, test);
                            self.walk(sources, &parsed.items, &module, &module, path, &child_dir);
                            self.files.push((module, parsed));
                        }
                        Err(error) => self.problems.push(Finding::parse(path, &error)),
                    }
                }
            }
        }
    }

    /// The file module that owns the item a path names, when the path is
    /// `crate::`, `super::`, `self::` or starts with a child module's name.
    fn resolve(&self, scope: &str, segments: &[String]) -> Option<&str> {
        let mut absolute: Vec<&str> = match segments.first()?.as_str() {
            "crate" => vec!["crate"],
            "self" => scope.split("::").collect(),
            "super" => {
                let mut at: Vec<&str> = scope.split("::").collect();
                let up = segments.iter().take_while(|s| *s == "super").count();
                at.truncate(at.len().saturating_sub(up));
                if at.is_empty() {
                    return None;
                }
                at
            }
            first if self.modules.get(scope)?.children.contains(first) => {
                scope.split("::").collect()
            }
            _ => return None,
        };
        let rest = segments
            .iter()
            .skip_while(|s| matches!(s.as_str(), "crate" | "self" | "super"));
        absolute.extend(rest.map(String::as_str));
        (1..=absolute.len()).rev().find_map(|n| {
            self.modules
                .get(&absolute[..n].join("::"))
                .map(|module| module.file_module.as_str())
        })
    }

    fn is_local_module(&self, scope: &str, name: &str) -> bool {
        self.modules
            .get(scope)
            .is_some_and(|module| module.children.contains(name))
    }
}

fn ident(ident: &syn::Ident) -> String {
    let name = ident.to_string();
    name.strip_prefix("r#").map_or(name.clone(), str::to_owned)
}

fn line(span: Span) -> usize {
    span.start().line
}

// ---------------------------------------------------------------- references

#[derive(Clone)]
struct Edge {
    from: String,
    to: String,
    file: String,
    line: usize,
    path: String,
    test: bool,
}

struct CrateRef {
    file: String,
    module: String,
    line: usize,
    path: String,
    test: bool,
}

#[derive(Clone)]
struct Finding {
    file: String,
    line: usize,
    what: String,
}

impl Finding {
    fn parse(file: &str, error: &syn::Error) -> Self {
        Finding {
            file: file.to_owned(),
            line: line(error.span()),
            what: format!("does not parse: {error}"),
        }
    }
}

struct Refs<'t> {
    tree: &'t Tree,
    store_crates: &'t [&'t str],
    /// Current module (file or inline) and whether it is `#[cfg(test)]`.
    scope: Vec<(String, bool)>,
    file_module: String,
    file: String,
    edges: Vec<Edge>,
    crate_refs: Vec<CrateRef>,
    tricks: Vec<Finding>,
}

impl Refs<'_> {
    fn scope(&self) -> (&str, bool) {
        self.scope
            .last()
            .map_or(("crate", false), |(module, test)| (module.as_str(), *test))
    }

    fn path(&mut self, leading_colon: bool, segments: &[String], line: usize) {
        let Some(first) = segments.first() else {
            return;
        };
        let (scope, test) = self.scope();
        let text = format!(
            "{}{}",
            if leading_colon { "::" } else { "" },
            segments.join("::")
        );
        if !leading_colon && let Some(to) = self.tree.resolve(scope, segments) {
            if to != self.file_module {
                self.edges.push(Edge {
                    from: self.file_module.clone(),
                    to: to.to_owned(),
                    file: self.file.clone(),
                    line,
                    path: text,
                    test,
                });
            }
            return;
        }
        let external = leading_colon || !self.tree.is_local_module(scope, first);
        if external && self.store_crates.contains(&first.as_str()) {
            self.crate_refs.push(CrateRef {
                file: self.file.clone(),
                module: self.file_module.clone(),
                line,
                path: text,
                test,
            });
        }
    }

    fn use_tree(&mut self, prefix: &mut Vec<String>, leading_colon: bool, tree: &syn::UseTree) {
        match tree {
            syn::UseTree::Path(path) => {
                prefix.push(ident(&path.ident));
                self.use_tree(prefix, leading_colon, &path.tree);
                prefix.pop();
            }
            syn::UseTree::Name(name) => self.use_leaf(prefix, leading_colon, &name.ident),
            syn::UseTree::Rename(rename) => self.use_leaf(prefix, leading_colon, &rename.ident),
            syn::UseTree::Glob(glob) => {
                let mut path = prefix.clone();
                path.push("*".to_owned());
                self.path(leading_colon, &path, line(glob.star_token.span));
            }
            syn::UseTree::Group(group) => {
                for tree in &group.items {
                    self.use_tree(prefix, leading_colon, tree);
                }
            }
        }
    }

    fn use_leaf(&mut self, prefix: &[String], leading_colon: bool, leaf: &syn::Ident) {
        let mut path = prefix.to_vec();
        // `use a::b::{self}` names `a::b`.
        if leaf != "self" || path.is_empty() {
            path.push(ident(leaf));
        }
        self.path(leading_colon, &path, line(leaf.span()));
    }

    /// Paths inside macro or attribute arguments, which syn keeps as tokens.
    /// With `strings`, a string literal that parses as a path counts too
    /// (`#[serde(deserialize_with = "limits::integer")]`).
    fn tokens(&mut self, tokens: TokenStream, strings: bool) {
        let tokens: Vec<TokenTree> = tokens.into_iter().collect();
        let mut i = 0;
        while i < tokens.len() {
            let is_sep = |at: usize| {
                matches!((tokens.get(at), tokens.get(at + 1)),
                    (Some(TokenTree::Punct(a)), Some(TokenTree::Punct(b)))
                    if a.as_char() == ':' && a.spacing() == Spacing::Joint && b.as_char() == ':')
            };
            let after_path = i > 0 && matches!(&tokens[i - 1], TokenTree::Ident(_));
            let leading_colon = is_sep(i) && !after_path;
            let start = if leading_colon { i + 2 } else { i };
            if let Some(TokenTree::Ident(first)) = tokens.get(start) {
                let mut segments = vec![first.to_string()];
                let mut at = start + 1;
                while is_sep(at) {
                    let Some(TokenTree::Ident(next)) = tokens.get(at + 2) else {
                        break;
                    };
                    segments.push(next.to_string());
                    at += 3;
                }
                if segments.len() > 1 || leading_colon {
                    self.path(leading_colon, &segments, line(first.span()));
                }
                i = at.max(i + 1);
                continue;
            }
            match &tokens[i] {
                TokenTree::Group(group) => self.tokens(group.stream(), strings),
                TokenTree::Literal(literal) if strings => {
                    let literal_line = line(literal.span());
                    let parsed =
                        syn::parse2::<syn::LitStr>(TokenTree::Literal(literal.clone()).into())
                            .ok()
                            .and_then(|text| syn::parse_str::<syn::Path>(&text.value()).ok());
                    if let Some(path) = parsed
                        && path.segments.len() > 1
                    {
                        let segments: Vec<String> =
                            path.segments.iter().map(|s| ident(&s.ident)).collect();
                        self.path(path.leading_colon.is_some(), &segments, literal_line);
                    }
                }
                _ => {}
            }
            i += 1;
        }
    }
}

fn is_cfg_test(attrs: &[syn::Attribute]) -> bool {
    attrs.iter().any(|attr| {
        attr.path().is_ident("cfg")
            && matches!(&attr.meta, syn::Meta::List(list) if list.tokens.to_string() == "test")
    })
}

impl<'ast> Visit<'ast> for Refs<'_> {
    fn visit_item_mod(&mut self, item: &'ast syn::ItemMod) {
        for attr in &item.attrs {
            self.visit_attribute(attr);
        }
        if let Some((_, items)) = &item.content {
            let (scope, test) = self.scope();
            let module = format!("{scope}::{}", ident(&item.ident));
            self.scope.push((module, test || is_cfg_test(&item.attrs)));
            for item in items {
                self.visit_item(item);
            }
            self.scope.pop();
        }
    }

    fn visit_item_use(&mut self, item: &'ast syn::ItemUse) {
        for attr in &item.attrs {
            self.visit_attribute(attr);
        }
        self.use_tree(&mut Vec::new(), item.leading_colon.is_some(), &item.tree);
    }

    fn visit_item_extern_crate(&mut self, item: &'ast syn::ItemExternCrate) {
        self.path(false, &[ident(&item.ident)], line(item.ident.span()));
    }

    // `#[cfg(test)] fn …` and `#[cfg(test)] impl …` outside a test module.
    fn visit_item(&mut self, item: &'ast syn::Item) {
        let attrs: &[syn::Attribute] = match item {
            syn::Item::Fn(item) => &item.attrs,
            syn::Item::Impl(item) => &item.attrs,
            syn::Item::Use(item) => &item.attrs,
            syn::Item::Const(item) => &item.attrs,
            syn::Item::Static(item) => &item.attrs,
            syn::Item::Struct(item) => &item.attrs,
            syn::Item::Enum(item) => &item.attrs,
            _ => &[],
        };
        if is_cfg_test(attrs) && !matches!(item, syn::Item::Mod(_)) {
            let (scope, _) = self.scope();
            self.scope.push((scope.to_owned(), true));
            visit::visit_item(self, item);
            self.scope.pop();
        } else {
            visit::visit_item(self, item);
        }
    }

    fn visit_path(&mut self, path: &'ast syn::Path) {
        if path.segments.len() > 1 || path.leading_colon.is_some() {
            let segments: Vec<String> = path.segments.iter().map(|s| ident(&s.ident)).collect();
            if let Some(first) = path.segments.first() {
                self.path(
                    path.leading_colon.is_some(),
                    &segments,
                    line(first.ident.span()),
                );
            }
        }
        visit::visit_path(self, path);
    }

    // `pub(crate)`, `pub(super)`, `pub(in crate::x)` grant access; they use nothing.
    fn visit_visibility(&mut self, _: &'ast syn::Visibility) {}

    fn visit_macro(&mut self, mac: &'ast syn::Macro) {
        if mac
            .path
            .segments
            .last()
            .is_some_and(|s| s.ident == "include")
        {
            self.tricks.push(Finding {
                file: self.file.clone(),
                line: line(mac.bang_token.span),
                what: "`include!` pulls in code this check cannot see".to_owned(),
            });
        }
        self.tokens(mac.tokens.clone(), false);
        visit::visit_macro(self, mac);
    }

    fn visit_attribute(&mut self, attr: &'ast syn::Attribute) {
        if attr.path().is_ident("doc") {
            return;
        }
        if attr.path().is_ident("path") {
            self.tricks.push(Finding {
                file: self.file.clone(),
                line: line(attr.pound_token.span),
                what: "`#[path]` moves a module where this check does not follow".to_owned(),
            });
        }
        if let syn::Meta::List(list) = &attr.meta {
            self.tokens(list.tokens.clone(), true);
        }
        visit::visit_attribute(self, attr);
    }
}

// ---------------------------------------------------------------- circles

/// Tarjan's strongly connected components with more than one node.
fn circles(
    nodes: &BTreeSet<String>,
    edges: &BTreeMap<String, BTreeSet<String>>,
) -> Vec<Vec<String>> {
    struct State<'a> {
        edges: &'a BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on_stack: BTreeSet<&'a str>,
        found: Vec<Vec<String>>,
    }
    fn connect<'a>(state: &mut State<'a>, node: &'a str) {
        let index = state.index.len();
        state.index.insert(node, index);
        state.low.insert(node, index);
        state.stack.push(node);
        state.on_stack.insert(node);
        for next in state.edges.get(node).into_iter().flatten() {
            let next = next.as_str();
            if !state.index.contains_key(next) {
                connect(state, next);
                let low = state.low[node].min(state.low[next]);
                state.low.insert(node, low);
            } else if state.on_stack.contains(next) {
                let low = state.low[node].min(state.index[next]);
                state.low.insert(node, low);
            }
        }
        if state.low[node] == state.index[node] {
            let mut component = Vec::new();
            while let Some(member) = state.stack.pop() {
                state.on_stack.remove(member);
                component.push(member.to_owned());
                if member == node {
                    break;
                }
            }
            if component.len() > 1 {
                component.sort();
                state.found.push(component);
            }
        }
    }
    let mut state = State {
        edges,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        found: Vec::new(),
    };
    for node in nodes {
        if !state.index.contains_key(node.as_str()) {
            connect(&mut state, node);
        }
    }
    state.found.sort();
    state.found
}

/// A shortest circle through `start` inside `members`, for the message.
fn shortest_circle(
    start: &str,
    members: &BTreeSet<&str>,
    edges: &BTreeMap<String, BTreeSet<String>>,
) -> Vec<String> {
    let mut came_from: BTreeMap<&str, &str> = BTreeMap::new();
    let mut queue = VecDeque::from([start]);
    while let Some(node) = queue.pop_front() {
        for next in edges.get(node).into_iter().flatten() {
            let next = next.as_str();
            if !members.contains(next) {
                continue;
            }
            if next == start {
                let mut back = vec![start.to_owned()];
                let mut at = node;
                while at != start {
                    back.push(at.to_owned());
                    at = came_from[at];
                }
                back.push(start.to_owned());
                back.reverse();
                return back;
            }
            if !came_from.contains_key(next) {
                came_from.insert(next, node);
                queue.push_back(next);
            }
        }
    }
    Vec::new()
}

// ---------------------------------------------------------------- the check

/// A strongly connected component of one crate root's module graph.
struct Circle {
    root: String,
    /// Modules and their files.
    members: Vec<(String, String)>,
    /// The shortest circle through each member, repeats dropped.
    examples: Vec<Vec<String>>,
    /// Every edge between two members.
    edges: Vec<Edge>,
}

#[derive(Default)]
struct Report {
    circles: Vec<Circle>,
    store_refs: Vec<CrateRef>,
    tricks: Vec<Finding>,
    problems: Vec<Finding>,
    stale_allowed: Vec<&'static Allowed>,
    unreached: Vec<String>,
    store: &'static str,
}

fn check(sources: &dyn Sources, rules: &Rules) -> Report {
    let mut report = Report {
        store: rules.store,
        ..Report::default()
    };
    let mut reached = BTreeSet::new();
    let mut seen_refs = BTreeSet::new();
    let mut used_allowed = BTreeSet::new();
    if rules.roots.iter().all(|root| sources.read(root).is_none()) {
        report.problems.push(Finding {
            file: rules.roots.join(", "),
            line: 0,
            what: "no crate root here (wrong PALM_LAYERS_SRC?)".to_owned(),
        });
    }
    for root in rules.roots {
        let tree = load(sources, root);
        report.problems.extend(tree.problems.iter().cloned());
        let mut refs = Refs {
            tree: &tree,
            store_crates: rules.store_crates,
            scope: Vec::new(),
            file_module: String::new(),
            file: String::new(),
            edges: Vec::new(),
            crate_refs: Vec::new(),
            tricks: Vec::new(),
        };
        for (module, file) in &tree.files {
            refs.scope = vec![(module.clone(), tree.modules[module].test)];
            refs.file_module.clone_from(module);
            refs.file.clone_from(&tree.modules[module].file);
            reached.insert(refs.file.clone());
            refs.visit_file(file);
        }
        let Refs {
            edges,
            crate_refs,
            tricks,
            ..
        } = refs;

        for found in crate_refs {
            let allowed = rules.allowed.iter().position(|a| {
                a.file == found.file
                    && (found.path == a.path || found.path.starts_with(&format!("{}::", a.path)))
            });
            if let Some(entry) = allowed {
                used_allowed.insert(entry);
            } else if found.file != format!("{}.rs", rules.store)
                && !found.file.starts_with(&format!("{}/", rules.store))
                && seen_refs.insert((found.file.clone(), found.line, found.path.clone()))
            {
                report.store_refs.push(found);
            }
        }
        for trick in tricks {
            if !report
                .tricks
                .iter()
                .any(|t| t.file == trick.file && t.line == trick.line)
            {
                report.tricks.push(trick);
            }
        }

        let nodes: BTreeSet<String> = tree
            .modules
            .values()
            .map(|m| m.file_module.clone())
            .collect();
        let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for edge in &edges {
            graph
                .entry(edge.from.clone())
                .or_default()
                .insert(edge.to.clone());
        }
        for members in circles(&nodes, &graph) {
            let set: BTreeSet<&str> = members.iter().map(String::as_str).collect();
            let mut examples: Vec<Vec<String>> = Vec::new();
            for member in &members {
                let mut circle = shortest_circle(member, &set, &graph);
                // The same circle from its smallest module, to drop repeats.
                circle.pop();
                if let Some(smallest) = (0..circle.len()).min_by_key(|&i| &circle[i]) {
                    circle.rotate_left(smallest);
                }
                if let Some(first) = circle.first().cloned() {
                    circle.push(first);
                }
                if !examples.contains(&circle) {
                    examples.push(circle);
                }
            }
            let inside: Vec<Edge> = edges
                .iter()
                .filter(|e| set.contains(e.from.as_str()) && set.contains(e.to.as_str()))
                .cloned()
                .collect();
            report.circles.push(Circle {
                root: (*root).to_owned(),
                members: members
                    .iter()
                    .map(|m| (m.clone(), tree.modules[m].file.clone()))
                    .collect(),
                examples,
                edges: inside,
            });
        }
    }
    report.stale_allowed = rules
        .allowed
        .iter()
        .enumerate()
        .filter(|(i, _)| !used_allowed.contains(i))
        .map(|(_, a)| a)
        .collect();
    report.unreached = sources
        .list()
        .into_iter()
        .filter(|file| !reached.contains(file))
        .collect();
    report
}

impl Report {
    fn is_clean(&self) -> bool {
        self.circles.is_empty()
            && self.store_refs.is_empty()
            && self.tricks.is_empty()
            && self.problems.is_empty()
            && self.stale_allowed.is_empty()
            && self.unreached.is_empty()
    }
}

fn tag(test: bool) -> &'static str {
    if test { " [cfg(test)]" } else { "" }
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut out = String::new();
        if !self.circles.is_empty() {
            let _ = writeln!(
                out,
                "\n{} circle(s) between modules (every module in a circle can reach every other):",
                self.circles.len()
            );
        }
        for (n, circle) in self.circles.iter().enumerate() {
            let Circle {
                root,
                members,
                examples,
                edges,
            } = circle;
            let _ = writeln!(
                out,
                "\ncircle {} ({root}), {} modules:",
                n + 1,
                members.len()
            );
            for (module, file) in members {
                let _ = writeln!(out, "  {module} ({file})");
            }
            let _ = writeln!(out, "  the shortest circle through each of them:");
            for example in examples {
                let _ = writeln!(out, "    {}", example.join(" -> "));
            }
            let _ = writeln!(out, "  edges inside the circle:");
            let mut by_pair: BTreeMap<(&str, &str), Vec<&Edge>> = BTreeMap::new();
            for edge in edges {
                by_pair
                    .entry((&edge.from, &edge.to))
                    .or_default()
                    .push(edge);
            }
            for ((from, to), edges) in by_pair {
                let _ = writeln!(out, "    {from} -> {to}");
                for edge in edges {
                    let _ = writeln!(
                        out,
                        "      {}:{}  {}{}",
                        edge.file,
                        edge.line,
                        edge.path,
                        tag(edge.test)
                    );
                }
            }
        }
        if !self.store_refs.is_empty() {
            let _ = writeln!(
                out,
                "\n{} reference(s) to MongoDB crates outside {}/:",
                self.store_refs.len(),
                self.store
            );
            let mut by_file: BTreeMap<(&str, &str), Vec<&CrateRef>> = BTreeMap::new();
            for found in &self.store_refs {
                by_file
                    .entry((&found.file, &found.module))
                    .or_default()
                    .push(found);
            }
            for ((file, module), found) in by_file {
                let _ = writeln!(out, "  {file} ({module}), {}:", found.len());
                for found in found {
                    let _ = writeln!(
                        out,
                        "    {file}:{}  {}{}",
                        found.line,
                        found.path,
                        tag(found.test)
                    );
                }
            }
        }
        for (title, findings) in [
            ("#[path] / include!", &self.tricks),
            ("unreadable modules", &self.problems),
        ] {
            if !findings.is_empty() {
                let _ = writeln!(out, "\n{title}:");
                for finding in findings {
                    let _ = writeln!(out, "  {}:{}  {}", finding.file, finding.line, finding.what);
                }
            }
        }
        if !self.stale_allowed.is_empty() {
            let _ = writeln!(out, "\nallowlist entries that match nothing (remove them):");
            for entry in &self.stale_allowed {
                let _ = writeln!(out, "  {}: {} ({})", entry.file, entry.path, entry.reason);
            }
        }
        if !self.unreached.is_empty() {
            let _ = writeln!(
                out,
                "\nfiles no `mod` declaration reaches (dead, or reached in a way this check cannot see):"
            );
            for file in &self.unreached {
                let _ = writeln!(out, "  {file}");
            }
        }
        f.write_str(&out)
    }
}

// ---------------------------------------------------------------- the checker's own tests

/// Checks inline sources with palmdao's rules but no allowlist.
fn check_inline(files: &[(&'static str, &'static str)]) -> Report {
    let sources: BTreeMap<&str, &str> = files.iter().copied().collect();
    check(
        &sources,
        &Rules {
            allowed: &[],
            ..PALMDAO
        },
    )
}

/// Checks inline sources with palmdao's rules and allowlist.
fn check_palmdao(files: &[(&'static str, &'static str)]) -> Report {
    let sources: BTreeMap<&str, &str> = files.iter().copied().collect();
    check(&sources, &PALMDAO)
}

fn circle_members(report: &Report) -> Vec<Vec<String>> {
    report
        .circles
        .iter()
        .map(|circle| circle.members.iter().map(|(m, _)| m.clone()).collect())
        .collect()
}

#[test]
fn a_two_module_circle_is_found_with_its_lines() {
    let report = check_inline(&[
        ("lib.rs", "mod a;\nmod b;\n"),
        ("a.rs", "use crate::b::B;\npub struct A;\n"),
        (
            "b.rs",
            "pub struct B;\n\nfn f() -> crate::a::A { crate::a::A }\n",
        ),
    ]);
    assert_eq!(
        circle_members(&report),
        [["crate::a".to_owned(), "crate::b".to_owned()]]
    );
    let text = report.to_string();
    assert!(text.contains("a.rs:1  crate::b::B"), "{text}");
    assert!(text.contains("b.rs:3  crate::a::A"), "{text}");
}

#[test]
fn a_parent_declaring_its_children_is_not_an_edge() {
    let report = check_inline(&[
        ("lib.rs", "pub mod api;\n"),
        ("api/mod.rs", "pub mod proposals;\n"),
        (
            "api/proposals.rs",
            "use super::AppState;\nuse crate::SERVICE;\n",
        ),
    ]);
    assert!(report.is_clean(), "{report}");
}

#[test]
fn a_parent_using_its_child_is_an_edge() {
    let report = check_inline(&[
        ("lib.rs", "pub mod api;\n"),
        (
            "api/mod.rs",
            "pub mod proposals;\npub struct AppState;\nfn router() { routes!(proposals::list); }\n",
        ),
        (
            "api/proposals.rs",
            "use super::AppState;\npub fn list() {}\n",
        ),
    ]);
    assert_eq!(
        circle_members(&report),
        [["crate::api".to_owned(), "crate::api::proposals".to_owned()]]
    );
    assert!(report.to_string().contains("api/mod.rs:3  proposals::list"));
}

#[test]
fn super_inside_a_test_module_is_the_file_itself() {
    let report = check_inline(&[
        ("lib.rs", "mod tally;\nuse tally::Tally;\n"),
        (
            "tally.rs",
            "pub struct Tally;\n#[cfg(test)]\nmod tests { use super::*; }\n",
        ),
    ]);
    assert!(report.is_clean(), "{report}");
}

#[test]
fn a_mongodb_path_in_api_is_found_and_the_same_in_store_is_fine() {
    let report = check_palmdao(&[
        ("lib.rs", "mod api;\nmod settings;\nmod store;\n"),
        ("settings.rs", "use palm_mongo::MongoSettings;\n"),
        (
            "api.rs",
            "fn f() {\n    let d = palm_mongo::mongodb::bson::doc! { \"a\": 1 };\n}\n",
        ),
        (
            "store/mod.rs",
            "pub mod proposals;\nuse mongodb::Database;\n",
        ),
        (
            "store/proposals.rs",
            "use palm_mongo::mongodb::bson::{Document, doc};\n",
        ),
    ]);
    assert_eq!(report.store_refs.len(), 1, "{report}");
    assert!(
        report
            .to_string()
            .contains("api.rs:2  palm_mongo::mongodb::bson::doc"),
        "{report}"
    );
    assert!(report.circles.is_empty() && report.stale_allowed.is_empty());
}

#[test]
fn mongodb_crates_inside_macros_and_attributes_are_found_but_not_in_doc_comments() {
    let report = check_palmdao(&[
        ("lib.rs", "mod jobs;\nmod settings;\n"),
        ("settings.rs", "use palm_mongo::MongoSettings;\n"),
        (
            "jobs.rs",
            "//! Uses `palm_mongo::lease`.\n\
             #[serde(with = \"bson::serde_helpers::uuid\")]\n\
             struct S;\n\
             fn f() { tracing::info!(x = ?mongodb::options::X); }\n",
        ),
    ]);
    let found: Vec<(usize, &str)> = report
        .store_refs
        .iter()
        .map(|r| (r.line, r.path.as_str()))
        .collect();
    assert_eq!(
        found,
        [(2, "bson::serde_helpers::uuid"), (4, "mongodb::options::X")]
    );
}

#[test]
fn the_allowlist_is_per_file_and_an_unused_entry_fails() {
    let report = check_palmdao(&[
        ("lib.rs", "mod api;\n"),
        ("api.rs", "use palm_mongo::MongoSettings;\n"),
    ]);
    assert_eq!(report.store_refs.len(), 1);
    assert_eq!(report.stale_allowed.len(), 1);
}

#[test]
fn path_attributes_include_and_unreached_files_are_refused() {
    let report = check_inline(&[
        (
            "lib.rs",
            "#[path = \"elsewhere.rs\"]\nmod a;\ninclude!(\"b.rs\");\n",
        ),
        ("elsewhere.rs", ""),
        ("b.rs", ""),
    ]);
    let lines: Vec<usize> = report.tricks.iter().map(|t| t.line).collect();
    assert_eq!(lines, [1, 3], "{report}");
    assert_eq!(report.unreached, ["b.rs", "elsewhere.rs"]);
}

#[test]
fn a_three_module_circle_is_one_component() {
    let report = check_inline(&[
        ("lib.rs", "mod a;\nmod b;\nmod c;\nmod d;\n"),
        ("a.rs", "use crate::b::X;\n"),
        ("b.rs", "use crate::c::X;\n"),
        ("c.rs", "use crate::{a::X, d::Y};\n"),
        ("d.rs", ""),
    ]);
    assert_eq!(
        circle_members(&report),
        [[
            "crate::a".to_owned(),
            "crate::b".to_owned(),
            "crate::c".to_owned()
        ]]
    );
    assert!(
        report
            .to_string()
            .contains("crate::a -> crate::b -> crate::c -> crate::a")
    );
}
