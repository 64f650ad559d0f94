//! The core's modules form no circle (issue 20): reads tm-core's own source, collects the
//! `crate::…` and `super::…` paths each module uses, and fails, naming the circle and the
//! lines that make it, when one module reaches itself through the others.
//!
//! A module is a file under `src/` at the granularity the crate is organised by: a
//! top-level file (`ports`, `cursor`), or one level into a directory (`domain::route`,
//! `services::resolve`, `adapters::kafka` with everything under it, `metrics` for its
//! `mod.rs`). Comments are skipped (an intra-doc link imports nothing), and so is
//! `#[cfg(test)]` code: it is not part of the crate, and a test may build its fixtures
//! with a module above the one it tests.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Where one module uses another: the first place seen.
#[derive(Clone, Debug)]
struct Site {
    file: String,
    line: usize,
}

/// Modules and, per module, the modules it uses.
type Graph = BTreeMap<String, BTreeMap<String, Site>>;

/// Blanks comments, string and character literals out of `src` (keeping the line
/// breaks, so line numbers still hold), so neither a doc link nor a `"crate::"` in a
/// message nor a `{` in a format string is read as code.
fn code_only(src: &str) -> String {
    let b: Vec<char> = src.chars().collect();
    let mut out = String::with_capacity(src.len());
    let blank = |c: char, out: &mut String| out.push(if c == '\n' { '\n' } else { ' ' });
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        let next = b.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < b.len() && b[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            while i < b.len() {
                if b[i] == '/' && b.get(i + 1) == Some(&'*') {
                    depth += 1;
                    out.push_str("  ");
                    i += 2;
                } else if b[i] == '*' && b.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    out.push_str("  ");
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    blank(b[i], &mut out);
                    i += 1;
                }
            }
        } else if c == 'r' && (next == Some('"') || next == Some('#')) && starts_literal(&b, i) {
            // A raw string: r"…", r#"…"#, br#"…"#, with as many hashes closing as opening.
            let mut j = i + 1;
            while b.get(j) == Some(&'#') {
                j += 1;
            }
            if b.get(j) != Some(&'"') {
                out.push(c);
                i += 1;
                continue;
            }
            let hashes = j - i - 1;
            out.push('"');
            j += 1;
            loop {
                match b.get(j) {
                    None => break,
                    Some('"') if (1..=hashes).all(|k| b.get(j + k) == Some(&'#')) => {
                        j += hashes + 1;
                        break;
                    }
                    Some(&ch) => blank(ch, &mut out),
                }
                j += 1;
            }
            out.push('"');
            i = j;
        } else if c == '"' {
            out.push('"');
            i += 1;
            while i < b.len() && b[i] != '"' {
                if b[i] == '\\' {
                    blank(b[i], &mut out);
                    i += 1;
                }
                if i < b.len() {
                    blank(b[i], &mut out);
                    i += 1;
                }
            }
            out.push('"');
            i += 1;
        } else if c == '\'' && (next == Some('\\') || b.get(i + 2) == Some(&'\'')) {
            // A character literal ('x', '\n', '\u{1F600}'), not a lifetime ('a).
            out.push('\'');
            i += 1;
            if b.get(i) == Some(&'\\') {
                i += 1;
            }
            i += 1;
            while i < b.len() && b[i] != '\'' {
                i += 1;
            }
            out.push('\'');
            i += 1;
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

fn is_ident(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// Whether the `r` at `b[i]` begins a raw string literal rather than ends a name
/// (`r"…"`, `br"…"`, but not `for"` or `expr#`).
fn starts_literal(b: &[char], i: usize) -> bool {
    let free = |j: usize| j == 0 || !is_ident(b[j - 1]);
    free(i) || (b[i - 1] == 'b' && free(i - 1))
}

/// Blanks every item marked `#[cfg(test)]` (a `mod tests { … }`, a helper) out of code
/// that [`code_only`] already cleaned.
fn without_test_code(code: &str) -> String {
    const MARK: &str = "#[cfg(test)]";
    let mut out: Vec<char> = code.chars().collect();
    let text: String = out.iter().collect();
    let mut from = 0;
    while let Some(at) = text[from..].find(MARK).map(|p| p + from) {
        let start = text[..at].chars().count();
        let mut i = start + MARK.chars().count();
        let mut depth = 0usize;
        while i < out.len() {
            match out[i] {
                '{' => depth += 1,
                '}' => {
                    depth = depth.saturating_sub(1);
                    if depth == 0 {
                        break;
                    }
                }
                ';' if depth == 0 => break,
                _ => {}
            }
            i += 1;
        }
        let end = (i + 1).min(out.len());
        for c in &mut out[start..end] {
            if *c != '\n' {
                *c = ' ';
            }
        }
        from = at + MARK.len();
    }
    out.into_iter().collect()
}

/// Reads a use tree or path at `chars[*i..]` (after `crate::` or `super::`): the paths it
/// names, each as its segments. `a::b`, `a::{b, c::{d, e}}`, `a::*`, `a::{self, b}`,
/// and a path in an expression (`a::f(…)`, `a::T::<U>`), which ends at the first
/// character that cannot continue it.
fn paths(chars: &[char], i: &mut usize) -> Vec<Vec<String>> {
    let skip_ws = |i: &mut usize| {
        while *i < chars.len() && chars[*i].is_whitespace() {
            *i += 1;
        }
    };
    skip_ws(i);
    if chars.get(*i) == Some(&'{') {
        *i += 1;
        let mut all = Vec::new();
        loop {
            skip_ws(i);
            match chars.get(*i) {
                None => return all,
                Some('}') => {
                    *i += 1;
                    return all;
                }
                Some(',') => *i += 1,
                Some(_) => {
                    let before = *i;
                    all.extend(paths(chars, i));
                    if *i == before {
                        *i += 1;
                    }
                }
            }
        }
    }
    let start = *i;
    while *i < chars.len() && is_ident(chars[*i]) {
        *i += 1;
    }
    if *i == start {
        return vec![Vec::new()];
    }
    let seg: String = chars[start..*i].iter().collect();
    if seg == "self" {
        return vec![Vec::new()];
    }
    let after = *i;
    skip_ws(i);
    if chars.get(*i) == Some(&':') && chars.get(*i + 1) == Some(&':') {
        *i += 2;
        let rest = paths(chars, i);
        return rest
            .into_iter()
            .map(|mut p| {
                p.insert(0, seg.clone());
                p
            })
            .collect();
    }
    *i = after;
    vec![vec![seg]]
}

/// The module path of a source file (`src/domain/route.rs` → `domain::route`,
/// `src/metrics/mod.rs` → `metrics`, `src/lib.rs` → the root, no segment).
fn module_path(src: &Path, file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(src).expect("a file under src");
    let mut segs: Vec<String> = rel
        .with_extension("")
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if matches!(segs.last().map(String::as_str), Some("mod" | "lib")) {
        segs.pop();
    }
    segs
}

/// The paths a module's code uses from the crate, made absolute (`super::` resolved
/// against `module`), each with its line.
fn crate_paths(module: &[String], code: &str) -> Vec<(Vec<String>, usize)> {
    let chars: Vec<char> = code.chars().collect();
    let mut found = Vec::new();
    let mut line = 1;
    let mut i = 0;
    while i < chars.len() {
        if chars[i] == '\n' {
            line += 1;
        }
        let starts_word = i == 0 || !is_ident(chars[i - 1]);
        let rest = &chars[i..];
        let opens = |word: &str| {
            let w: Vec<char> = word.chars().collect();
            rest.starts_with(&w)
        };
        if starts_word && (opens("crate::") || opens("super::")) {
            let base: Vec<String> = if opens("crate::") {
                i += "crate::".len();
                Vec::new()
            } else {
                let mut b = module.to_vec();
                while chars[i..].starts_with(&['s', 'u', 'p', 'e', 'r', ':', ':']) {
                    b.pop();
                    i += "super::".len();
                }
                b
            };
            let at_line = line;
            let start = i;
            for p in paths(&chars, &mut i) {
                let mut full = base.clone();
                full.extend(p);
                found.push((full, at_line));
            }
            line += chars[start..i].iter().filter(|c| **c == '\n').count();
            continue;
        }
        i += 1;
    }
    found
}

/// The node a module belongs to: its first two segments.
fn node_of(module: &[String]) -> String {
    module
        .iter()
        .take(2)
        .cloned()
        .collect::<Vec<_>>()
        .join("::")
}

/// The node a used path lands in: the longest known node that prefixes it. `None` for an
/// item of the crate root (`crate::Error`).
fn target(nodes: &BTreeSet<String>, path: &[String]) -> Option<String> {
    (1..=path.len().min(2))
        .rev()
        .map(|n| path[..n].join("::"))
        .find(|n| nodes.contains(n))
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The module graph of the sources under `src`.
fn graph(src: &Path) -> Graph {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    files.sort();
    let modules: Vec<(PathBuf, Vec<String>)> = files
        .into_iter()
        .map(|f| {
            let m = module_path(src, &f);
            (f, m)
        })
        .collect();
    let nodes: BTreeSet<String> = modules
        .iter()
        .map(|(_, m)| node_of(m))
        .filter(|n| !n.is_empty())
        .collect();
    let mut graph = Graph::new();
    for (file, module) in &modules {
        let from = node_of(module);
        if from.is_empty() {
            continue;
        }
        let text = std::fs::read_to_string(file).expect("read a source file");
        let code = without_test_code(&code_only(&text));
        let edges = graph.entry(from.clone()).or_default();
        for (path, line) in crate_paths(module, &code) {
            if let Some(to) = target(&nodes, &path).filter(|to| *to != from) {
                edges.entry(to).or_insert_with(|| Site {
                    file: file.strip_prefix(src).unwrap().display().to_string(),
                    line,
                });
            }
        }
    }
    graph
}

/// Modules that all reach each other (a strongly connected component of more than one
/// module), and one circle through them.
#[derive(Debug, PartialEq)]
struct Tangle {
    /// Every module of the tangle.
    modules: BTreeSet<String>,
    /// A shortest circle from the first module back to it, the first module at both ends.
    circle: Vec<String>,
}

/// Every tangle of `graph`.
fn tangles(graph: &Graph) -> Vec<Tangle> {
    // Tarjan's algorithm; the graph is small, recursion is fine.
    struct State<'g> {
        graph: &'g Graph,
        index: BTreeMap<&'g str, usize>,
        low: BTreeMap<&'g str, usize>,
        stack: Vec<&'g str>,
        on_stack: BTreeSet<&'g str>,
        groups: Vec<Vec<&'g str>>,
    }
    fn visit<'g>(s: &mut State<'g>, v: &'g str) {
        let n = s.index.len();
        s.index.insert(v, n);
        s.low.insert(v, n);
        s.stack.push(v);
        s.on_stack.insert(v);
        for w in s.graph.get(v).into_iter().flat_map(|e| e.keys()) {
            let w = w.as_str();
            if !s.index.contains_key(w) {
                visit(s, w);
                let lw = s.low[w];
                let lv = s.low.get_mut(v).unwrap();
                *lv = (*lv).min(lw);
            } else if s.on_stack.contains(w) {
                let iw = s.index[w];
                let lv = s.low.get_mut(v).unwrap();
                *lv = (*lv).min(iw);
            }
        }
        if s.low[v] == s.index[v] {
            let mut group = Vec::new();
            while let Some(w) = s.stack.pop() {
                s.on_stack.remove(w);
                group.push(w);
                if w == v {
                    break;
                }
            }
            if group.len() > 1 {
                s.groups.push(group);
            }
        }
    }
    let mut s = State {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        groups: Vec::new(),
    };
    for v in graph.keys() {
        if !s.index.contains_key(v.as_str()) {
            visit(&mut s, v);
        }
    }
    // One circle through each group: a shortest way back to its first module.
    s.groups
        .into_iter()
        .map(|group| {
            let inside: BTreeSet<&str> = group.iter().copied().collect();
            let first = *inside.iter().next().unwrap();
            let mut came_from: BTreeMap<&str, &str> = BTreeMap::new();
            let mut queue = std::collections::VecDeque::from([first]);
            'search: while let Some(v) = queue.pop_front() {
                for w in graph[v].keys().map(String::as_str) {
                    if !inside.contains(w) {
                        continue;
                    }
                    if w == first {
                        came_from.insert(first, v);
                        break 'search;
                    }
                    if !came_from.contains_key(w) {
                        came_from.insert(w, v);
                        queue.push_back(w);
                    }
                }
            }
            let mut circle = vec![first.to_owned()];
            let mut at = came_from[first];
            while at != first {
                circle.push(at.to_owned());
                at = came_from[at];
            }
            circle.push(first.to_owned());
            circle.reverse();
            Tangle {
                modules: inside.iter().map(|m| m.to_string()).collect(),
                circle,
            }
        })
        .collect()
}

/// A tangle: its circle, each step with the line that makes it, then the other uses
/// between its modules (each one more strand to cut).
fn describe(graph: &Graph, tangle: &Tangle) -> String {
    let mut text = tangle.circle.join(" → ");
    let steps: BTreeSet<(&str, &str)> = tangle
        .circle
        .windows(2)
        .map(|w| (w[0].as_str(), w[1].as_str()))
        .collect();
    let others = tangle.modules.iter().flat_map(|from| {
        graph[from]
            .keys()
            .filter(|to| tangle.modules.contains(*to))
            .map(move |to| (from.as_str(), to.as_str()))
    });
    let uses = tangle
        .circle
        .windows(2)
        .map(|w| (w[0].as_str(), w[1].as_str()))
        .chain(others.filter(|e| !steps.contains(e)));
    for (from, to) in uses {
        let site = &graph[from][to];
        text.push_str(&format!(
            "\n    {from} uses {to} at src/{}:{}",
            site.file, site.line
        ));
    }
    text
}

#[test]
fn no_module_of_the_core_reaches_itself_through_the_others() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let graph = graph(&src);
    assert!(
        graph.contains_key("ports") && graph["services::resolve"].contains_key("ports"),
        "the reader found the modules and their uses: {graph:?}"
    );
    let found = tangles(&graph);
    assert!(
        found.is_empty(),
        "modules of tm-core use each other in a circle:\n{}",
        found
            .iter()
            .map(|c| describe(&graph, c))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

#[test]
fn the_reader_sees_every_form_of_use_and_skips_comments_strings_and_tests() {
    let src = r##"
//! Docs naming [`crate::hidden::Doc`].
use super::health::{self, HealthView};
use crate::{Error, domain::{names::EndpointId, timefmt::Timestamp}};
fn f() {
    let s = "crate::hidden::Str {";
    let r = r#"crate::hidden::Raw"#;
    let c = '{'; let b = br#"{"k": "crate::hidden::Byte"}"#; let e = '\'';
    crate::metrics::figures().negative(x);
    let v = super::super::ports::Consistency::Strong;
}
#[cfg(test)]
mod tests {
    use crate::hidden::Test;
    fn g() { let x = "}"; }
}
fn after<'a>(x: &'a str) { crate::after::Used::<u8>::new(); }
"##;
    let module = vec!["domain".to_owned(), "route".to_owned()];
    let code = without_test_code(&code_only(src));
    let used: Vec<(String, usize)> = crate_paths(&module, &code)
        .into_iter()
        .map(|(p, line)| (p.join("::"), line))
        .collect();
    let want = [
        ("domain::health", 3),
        ("domain::health::HealthView", 3),
        ("Error", 4),
        ("domain::names::EndpointId", 4),
        ("domain::timefmt::Timestamp", 4),
        ("metrics::figures", 9),
        ("ports::Consistency::Strong", 10),
        ("after::Used", 17),
    ];
    let want: Vec<(String, usize)> = want.iter().map(|(p, l)| (p.to_string(), *l)).collect();
    assert_eq!(used, want);
}

#[test]
fn a_circle_is_found_and_told_with_its_lines() {
    let mut graph = Graph::new();
    for (line, (from, to)) in [("a", "b"), ("b", "c"), ("c", "a"), ("c", "d")]
        .into_iter()
        .enumerate()
    {
        let site = Site {
            file: "x.rs".into(),
            line: line + 1,
        };
        graph
            .entry(from.into())
            .or_default()
            .insert(to.into(), site);
        graph.entry(to.into()).or_default();
    }
    graph.get_mut("b").unwrap().insert(
        "a".into(),
        Site {
            file: "y.rs".into(),
            line: 9,
        },
    );
    let found = tangles(&graph);
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].circle, ["a", "b", "a"]);
    assert_eq!(found[0].modules, ["a", "b", "c"].map(String::from).into());
    let told = describe(&graph, &found[0]);
    assert!(told.starts_with("a → b → a\n"), "{told}");
    for line in [
        "b uses a at src/y.rs:9",
        "b uses c at src/x.rs:2",
        "c uses a at src/x.rs:3",
    ] {
        assert!(told.contains(line), "{told}");
    }
    // WHEN both uses back to `a` go, nothing is tangled
    graph.get_mut("b").unwrap().remove("a");
    graph.get_mut("c").unwrap().remove("a");
    assert!(tangles(&graph).is_empty());
}
