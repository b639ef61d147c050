//! A small, deterministic YAML writer that keeps comments.
//!
//! Serializers drop comments, and generated workflows need them: `# v4.2.2` after a pinned SHA,
//! a reason after every permission, a header that says where the file comes from. So the
//! generator builds a [`Node`] tree and this module prints it in one fixed style: two-space
//! indentation, block mappings, literal blocks (`|`) for multi-line strings, flow sequences for
//! short lists of scalars, and plain scalars wherever YAML reads them back as the same string.

use anyhow::{Result, bail};

/// A YAML value with optional comments.
#[derive(Debug, Clone, PartialEq)]
pub enum Node {
    /// A string; quoted only when a plain scalar would read back differently.
    Str(String),
    /// A scalar written verbatim (numbers, booleans).
    Raw(String),
    /// A block mapping, in order.
    Map(Vec<Entry>),
    /// A sequence.
    Seq(Vec<Node>),
}

/// One `key: value` of a mapping.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// The key.
    pub key: String,
    /// The value.
    pub value: Node,
    /// A comment at the end of the key's line.
    pub comment: Option<String>,
    /// Comment lines written above the key.
    pub above: Vec<String>,
    /// An empty line before the entry (ignored for the first entry of a sequence item).
    pub blank_before: bool,
}

impl Entry {
    /// A plain entry.
    pub fn new(key: impl Into<String>, value: Node) -> Self {
        Entry {
            key: key.into(),
            value,
            comment: None,
            above: Vec::new(),
            blank_before: false,
        }
    }

    /// Adds a trailing comment.
    pub fn comment(mut self, c: impl Into<String>) -> Self {
        self.comment = Some(c.into());
        self
    }

    /// Adds comment lines above the key.
    pub fn above(mut self, lines: impl IntoIterator<Item = String>) -> Self {
        self.above.extend(lines);
        self
    }

    /// Puts an empty line before the entry.
    pub fn spaced(mut self) -> Self {
        self.blank_before = true;
        self
    }
}

impl Node {
    /// A string node.
    pub fn str(s: impl Into<String>) -> Node {
        Node::Str(s.into())
    }

    /// A boolean node.
    pub fn bool(b: bool) -> Node {
        Node::Raw(b.to_string())
    }

    /// An integer node.
    pub fn int(n: u64) -> Node {
        Node::Raw(n.to_string())
    }

    /// Converts a parsed YAML value, keeping mapping order.
    pub fn from_yaml(v: &yaml_serde::Value) -> Result<Node> {
        use yaml_serde::Value as V;
        Ok(match v {
            V::Null => Node::Raw("null".into()),
            V::Bool(b) => Node::bool(*b),
            V::Number(n) => Node::Raw(n.to_string()),
            V::String(s) => Node::Str(s.clone()),
            V::Sequence(items) => Node::Seq(
                items
                    .iter()
                    .map(Node::from_yaml)
                    .collect::<Result<Vec<_>>>()?,
            ),
            V::Mapping(m) => {
                let mut entries = Vec::new();
                for (k, v) in m {
                    let key = match k {
                        V::String(s) => s.clone(),
                        V::Bool(b) => b.to_string(),
                        V::Number(n) => n.to_string(),
                        other => bail!("unsupported mapping key {other:?}: use a string"),
                    };
                    entries.push(Entry::new(key, Node::from_yaml(v)?));
                }
                Node::Map(entries)
            }
            V::Tagged(t) => bail!("YAML tags are not supported here (found !{})", t.tag),
        })
    }
}

/// Renders a document: the `header` lines as comments, then the node (a mapping).
pub fn document(header: &[String], root: &Node) -> Result<String> {
    let mut out = String::new();
    for line in header {
        comment_line(&mut out, "", line)?;
    }
    match root {
        Node::Map(entries) => write_map(&mut out, entries, 0, None)?,
        _ => bail!("a document must be a mapping"),
    }
    Ok(out)
}

fn comment_line(out: &mut String, indent: &str, text: &str) -> Result<()> {
    if text.contains(['\n', '\r']) {
        bail!("a comment cannot span lines: {text:?}");
    }
    if text.is_empty() {
        out.push_str(indent);
        out.push_str("#\n");
    } else {
        out.push_str(indent);
        out.push_str("# ");
        out.push_str(text);
        out.push('\n');
    }
    Ok(())
}

fn trailing(comment: &Option<String>) -> Result<String> {
    match comment {
        None => Ok(String::new()),
        Some(c) if c.contains(['\n', '\r']) => bail!("a comment cannot span lines: {c:?}"),
        Some(c) => Ok(format!("  # {c}")),
    }
}

fn write_map(
    out: &mut String,
    entries: &[Entry],
    indent: usize,
    first: Option<&str>,
) -> Result<()> {
    let pad = " ".repeat(indent);
    for (i, e) in entries.iter().enumerate() {
        let lead = match (i, first) {
            (0, Some(prefix)) => prefix.to_owned(),
            _ => {
                if e.blank_before && !out.is_empty() {
                    out.push('\n');
                }
                for line in &e.above {
                    comment_line(out, &pad, line)?;
                }
                pad.clone()
            }
        };
        if i == 0 && first.is_some() && !e.above.is_empty() {
            bail!("comments above the first key of a sequence item are not supported");
        }
        out.push_str(&lead);
        out.push_str(&key(&e.key));
        out.push(':');
        write_value(out, &e.value, indent, &e.comment)?;
    }
    Ok(())
}

/// Writes a value after `key:` (the key sits at `indent`).
fn write_value(out: &mut String, v: &Node, indent: usize, comment: &Option<String>) -> Result<()> {
    let c = trailing(comment)?;
    match v {
        Node::Str(s) if s.contains('\n') => {
            let (indicator, body) = literal(s, indent + 2);
            out.push(' ');
            out.push_str(&indicator);
            out.push_str(&c);
            out.push('\n');
            out.push_str(&body);
        }
        Node::Str(_) | Node::Raw(_) => {
            out.push(' ');
            out.push_str(&scalar(v, false));
            out.push_str(&c);
            out.push('\n');
        }
        Node::Map(entries) if entries.is_empty() => {
            out.push_str(" {}");
            out.push_str(&c);
            out.push('\n');
        }
        Node::Seq(items) if items.is_empty() => {
            out.push_str(" []");
            out.push_str(&c);
            out.push('\n');
        }
        Node::Seq(items) if flow_friendly(items) => {
            out.push(' ');
            out.push_str(&flow_seq(items));
            out.push_str(&c);
            out.push('\n');
        }
        Node::Map(entries) => {
            out.push_str(&c);
            out.push('\n');
            write_map(out, entries, indent + 2, None)?;
        }
        Node::Seq(items) => {
            out.push_str(&c);
            out.push('\n');
            write_seq(out, items, indent + 2)?;
        }
    }
    Ok(())
}

fn write_seq(out: &mut String, items: &[Node], indent: usize) -> Result<()> {
    let pad = " ".repeat(indent);
    for item in items {
        match item {
            Node::Map(entries) if !entries.is_empty() => {
                let prefix = format!("{pad}- ");
                write_map(out, entries, indent + 2, Some(&prefix))?;
            }
            Node::Str(s) if s.contains('\n') => {
                let (indicator, body) = literal(s, indent + 2);
                out.push_str(&format!("{pad}- {indicator}\n{body}"));
            }
            Node::Seq(_) => bail!("nested sequences are not supported"),
            other => {
                let text = match other {
                    Node::Map(_) => "{}".to_owned(),
                    _ => scalar(other, false),
                };
                out.push_str(&format!("{pad}- {text}\n"));
            }
        }
    }
    Ok(())
}

fn flow_friendly(items: &[Node]) -> bool {
    items
        .iter()
        .all(|n| matches!(n, Node::Raw(_)) || matches!(n, Node::Str(s) if !s.contains('\n')))
        && flow_seq(items).len() <= 60
}

fn flow_seq(items: &[Node]) -> String {
    let parts: Vec<String> = items.iter().map(|n| scalar(n, true)).collect();
    format!("[{}]", parts.join(", "))
}

/// A literal block scalar: the indicator (`|`, `|-`, `|+`, with an indentation indicator when
/// the first line starts with a space) and the indented body.
fn literal(s: &str, indent: usize) -> (String, String) {
    let chomp = if !s.ends_with('\n') {
        "-"
    } else if s.ends_with("\n\n") {
        "+"
    } else {
        ""
    };
    let ind = if s.starts_with(' ') { "2" } else { "" };
    let pad = " ".repeat(indent);
    let mut body = String::new();
    let text = s.strip_suffix('\n').unwrap_or(s);
    for line in text.split('\n') {
        if line.is_empty() {
            body.push('\n');
        } else {
            body.push_str(&pad);
            body.push_str(line);
            body.push('\n');
        }
    }
    (format!("|{ind}{chomp}"), body)
}

fn key(k: &str) -> String {
    let plain = !k.is_empty()
        && k.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b'/'))
        && !k.starts_with(['-', '.'])
        // GitHub's own spelling: `on:` (a YAML 1.2 string; only YAML 1.1 reads it as a boolean).
        && (k == "on" || !is_special(k));
    if plain { k.to_owned() } else { quote(k) }
}

fn scalar(n: &Node, flow: bool) -> String {
    match n {
        Node::Raw(r) => r.clone(),
        Node::Str(s) => {
            if plain_ok(s, flow) {
                s.clone()
            } else {
                quote(s)
            }
        }
        _ => unreachable!("scalar() is only called on scalars"),
    }
}

fn is_special(s: &str) -> bool {
    matches!(
        s.to_ascii_lowercase().as_str(),
        "true" | "false" | "yes" | "no" | "y" | "n" | "on" | "off" | "null" | "~" | ".inf" | ".nan"
    )
}

/// Whether `s` can be written as a plain scalar and read back as the same string.
fn plain_ok(s: &str, flow: bool) -> bool {
    let Some(first) = s.chars().next() else {
        return false;
    };
    if s.trim() != s || is_special(s) {
        return false;
    }
    if "-?:,[]{}#&*!|>'\"%@`".contains(first) {
        return false;
    }
    // Anything that starts like a number is quoted, so `25.11` stays a string.
    let second = s.chars().nth(1);
    if first.is_ascii_digit()
        || (matches!(first, '.' | '+') && second.is_some_and(|c| c.is_ascii_digit()))
    {
        return false;
    }
    if s.contains(": ") || s.contains(" #") || s.ends_with(':') {
        return false;
    }
    if s.chars().any(|c| c.is_control()) {
        return false;
    }
    if flow && s.contains([',', '[', ']', '{', '}']) {
        return false;
    }
    true
}

fn quote(s: &str) -> String {
    if !s.contains('\'') && !s.chars().any(|c| c.is_control()) {
        format!("'{s}'")
    } else {
        // A JSON string is a valid YAML double-quoted scalar.
        serde_json::to_string(s).expect("strings always serialize")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(n: &Node) -> yaml_serde::Value {
        let doc = document(&[], &Node::Map(vec![Entry::new("k", n.clone())])).unwrap();
        let v: yaml_serde::Value = yaml_serde::from_str(&doc).unwrap();
        v["k"].clone()
    }

    #[test]
    fn tricky_strings_read_back_unchanged() {
        for s in [
            "25.11",
            "13.4.0",
            "true",
            "on",
            "a: b",
            "x #y",
            "${{ fromJson(needs.plan.outputs.matrix) }}",
            "'quoted'",
            "it's",
            "- dash",
            "",
            " lead",
            "tab\there",
            "{brace",
            "%percent",
            "@at",
            "*star",
        ] {
            let v = roundtrip(&Node::str(s));
            assert_eq!(v.as_str(), Some(s), "{s:?}");
        }
    }

    #[test]
    fn multi_line_strings_keep_their_newlines() {
        for s in [
            "a\nb\n",
            "a\nb",
            "a\n\nb\n",
            "a\nb\n\n",
            "  indented\nx\n",
            "x\n  y\n",
        ] {
            let v = roundtrip(&Node::str(s));
            assert_eq!(v.as_str(), Some(s), "{s:?}");
        }
    }

    #[test]
    fn flow_sequences_quote_flow_indicators() {
        let n = Node::Seq(vec![Node::str("a,b"), Node::str("c"), Node::str("[d]")]);
        let v = roundtrip(&n);
        let items: Vec<&str> = v
            .as_sequence()
            .unwrap()
            .iter()
            .map(|x| x.as_str().unwrap())
            .collect();
        assert_eq!(items, ["a,b", "c", "[d]"]);
    }

    #[test]
    fn comments_and_nesting_are_written_in_block_style() {
        let doc = document(
            &["generated".into()],
            &Node::Map(vec![
                Entry::new(
                    "permissions",
                    Node::Map(vec![
                        Entry::new("contents", Node::str("read")).comment("checkout"),
                    ]),
                ),
                Entry::new(
                    "steps",
                    Node::Seq(vec![Node::Map(vec![
                        Entry::new("name", Node::str("x")),
                        Entry::new("run", Node::str("echo a\necho b\n")),
                    ])]),
                )
                .spaced(),
            ]),
        )
        .unwrap();
        assert_eq!(
            doc,
            "# generated\npermissions:\n  contents: read  # checkout\n\nsteps:\n  - name: x\n    run: |\n      echo a\n      echo b\n"
        );
    }

    #[test]
    fn multi_line_comments_are_rejected() {
        let n = Node::Map(vec![Entry::new("a", Node::str("b")).comment("x\ny")]);
        assert!(document(&[], &n).is_err());
    }
}
