//! A systemd-style INI parser that keeps line numbers, so every later diagnostic can
//! point at the line a user has to fix.

use crate::model::QuadletKind;

use super::Diagnostic;

/// One `Key=Value` assignment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The key, trimmed.
    pub key: String,
    /// The value, trimmed, with continuation lines joined by a space.
    pub value: String,
    /// 1-based line where the key starts.
    pub line: u32,
}

/// One `[Section]` with its entries in file order. A section name may appear more
/// than once in a file; systemd merges them, and so do the lookups on [`QuadletFile`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Section {
    /// The name between the brackets.
    pub name: String,
    /// 1-based line of the `[Section]` header.
    pub line: u32,
    /// Assignments in file order, repeated keys kept.
    pub entries: Vec<Entry>,
}

/// A parsed quadlet file. It knows its kind and stem so callers never re-derive them
/// from the path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuadletFile {
    /// The path the file was parsed under, used in diagnostics (`web/web.container`).
    pub file: String,
    /// The base name quadlet knows it by (`web.container`): references between
    /// quadlets use it, whatever folder the file sits in.
    pub name: String,
    /// The kind, from the extension.
    pub kind: QuadletKind,
    /// The base name without the extension (`web`).
    pub stem: String,
    /// Sections in file order.
    pub sections: Vec<Section>,
}

impl QuadletFile {
    /// Every entry of `section` (all occurrences of the section), in file order.
    pub fn entries<'a, 's>(
        &'a self,
        section: &'s str,
    ) -> impl Iterator<Item = &'a Entry> + use<'a, 's> {
        self.sections
            .iter()
            .filter(move |s| s.name == section)
            .flat_map(|s| s.entries.iter())
    }

    /// The last value of `key` in `section`, as systemd and quadlet read single-valued
    /// keys (a later assignment overrides an earlier one).
    pub fn get(&self, section: &str, key: &str) -> Option<&str> {
        self.get_entry(section, key).map(|e| e.value.as_str())
    }

    /// The last entry of `key` in `section`, with its line.
    pub fn get_entry(&self, section: &str, key: &str) -> Option<&Entry> {
        self.entries(section).filter(|e| e.key == key).last()
    }

    /// Every value of a list-valued `key` in `section`, in order. An empty assignment
    /// (`Key=`) clears the values before it, as in systemd and quadlet.
    pub fn get_all(&self, section: &str, key: &str) -> Vec<&Entry> {
        let mut out = Vec::new();
        for e in self.entries(section).filter(|e| e.key == key) {
            if e.value.is_empty() {
                out.clear();
            } else {
                out.push(e);
            }
        }
        out
    }

    /// The unit quadlet generates: `ServiceName=` in the main section overrides the
    /// default name derived from the file name, as podman 5.4 does for every kind.
    pub fn unit_name(&self) -> String {
        match self.get(self.kind.section(), "ServiceName") {
            Some(name) if !name.is_empty() => format!("{name}.service"),
            _ => self.kind.default_unit_name(&self.stem),
        }
    }
}

/// The base name of a `/`-separated path.
pub(crate) fn base_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// Parses quadlet text. `file` names the file in diagnostics and gives the kind (by
/// extension) and stem. All syntax errors are returned, not only the first.
pub fn parse(file: &str, text: &str) -> Result<QuadletFile, Vec<Diagnostic>> {
    let name = base_name(file).to_string();
    let mut errors = Vec::new();
    let kind = QuadletKind::from_file_name(&name);
    if kind.is_none() {
        errors.push(Diagnostic::new(
            file,
            None,
            "not a quadlet file: the extension must be one of .container, .volume, .network, .pod, .kube, .image, .build",
        ));
    }
    let stem = name
        .rsplit_once('.')
        .map(|(s, _)| s.to_string())
        .unwrap_or_else(|| name.clone());

    // A NUL or another control character is never meaningful in a unit file: systemd
    // cuts a value at a NUL and the generator passes the rest on, so what runs is not
    // what was reviewed. Tab is whitespace; CR ends a line.
    for (i, line) in text.lines().enumerate() {
        if let Some((col, c)) = line
            .chars()
            .enumerate()
            .find(|(_, c)| c.is_control() && *c != '\t' && *c != '\r')
        {
            errors.push(Diagnostic::new(
                file,
                Some(i as u32 + 1),
                format!(
                    "control character U+{:04X} at column {}; quadlet files are plain text: remove it",
                    c as u32,
                    col + 1
                ),
            ));
        }
    }

    let mut sections: Vec<Section> = Vec::new();
    let mut lines = text.lines().enumerate().map(|(i, l)| (i as u32 + 1, l));
    while let Some((line_no, raw)) = lines.next() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if line.starts_with('[') {
            match line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                Some(name) if !name.is_empty() && !name.contains(['[', ']']) => {
                    sections.push(Section {
                        name: name.to_string(),
                        line: line_no,
                        entries: Vec::new(),
                    });
                }
                _ => errors.push(Diagnostic::new(
                    file,
                    Some(line_no),
                    format!("invalid section header '{line}': write it as [Name]"),
                )),
            }
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            errors.push(Diagnostic::new(
                file,
                Some(line_no),
                format!("'{line}' is neither a [Section], a Key=Value pair nor a comment"),
            ));
            continue;
        };
        // Continuation: a trailing backslash joins the next line with a space.
        // Comment lines inside a continuation are skipped, as systemd does.
        let mut value = value.trim().to_string();
        while let Some(stripped) = value.strip_suffix('\\') {
            let mut joined = stripped.trim_end().to_string();
            let mut next_text = None;
            for (_, next) in lines.by_ref() {
                let t = next.trim();
                if t.starts_with('#') || t.starts_with(';') {
                    continue;
                }
                next_text = Some(t.to_string());
                break;
            }
            match next_text {
                Some(t) => {
                    if !joined.is_empty() && !t.is_empty() {
                        joined.push(' ');
                    }
                    joined.push_str(&t);
                    value = joined;
                }
                None => {
                    value = joined;
                    break;
                }
            }
        }
        let key = key.trim();
        if key.is_empty() {
            errors.push(Diagnostic::new(
                file,
                Some(line_no),
                format!("'{line}' has an empty key: write Key=Value"),
            ));
            continue;
        }
        let Some(section) = sections.last_mut() else {
            errors.push(Diagnostic::new(
                file,
                Some(line_no),
                format!("key '{key}' comes before any [Section] header"),
            ));
            continue;
        };
        section.entries.push(Entry {
            key: key.to_string(),
            value,
            line: line_no,
        });
    }

    match kind {
        Some(kind) if errors.is_empty() => Ok(QuadletFile {
            file: file.to_string(),
            name,
            kind,
            stem,
            sections,
        }),
        _ => Err(errors),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_refuses_nul_and_control_characters_with_line_and_column() {
        for (text, code) in [
            ("[Container]\nImage=busybox\nEnvironment=A=x\0y\n", "U+0000"),
            (
                "[Container]\nImage=busybox\nEnvironment=A=\u{1b}[31m\n",
                "U+001B",
            ),
        ] {
            let e = parse("web/web.container", text).unwrap_err();
            assert_eq!(e.len(), 1, "{e:?}");
            assert_eq!(e[0].line, Some(3));
            assert!(e[0].message.contains(code), "{}", e[0].message);
        }
        assert!(parse("w.container", "[Container]\r\nImage=b\tx\r\n").is_ok());
    }

    #[test]
    fn parse_reads_sections_entries_and_lines() {
        let text = "# comment\n; other comment\n\n[Unit]\nDescription = Web server \n[Container]\nImage=localhost/web:1\nVolume=a:/a\nVolume=b:/b\n";
        let q = parse("web/web.container", text).unwrap();
        assert_eq!(q.kind, QuadletKind::Container);
        assert_eq!(q.stem, "web");
        assert_eq!(q.name, "web.container");
        assert_eq!(q.get("Unit", "Description"), Some("Web server"));
        let vols: Vec<_> = q
            .get_all("Container", "Volume")
            .iter()
            .map(|e| (e.value.as_str(), e.line))
            .collect();
        assert_eq!(vols, vec![("a:/a", 8), ("b:/b", 9)]);
        assert_eq!(q.sections[1].line, 6);
    }

    #[test]
    fn parse_joins_continuation_lines_and_skips_comments_inside() {
        let text = "[Container]\nImage=x\nExec=/bin/sh -c \\\n  # ignored\n  'sleep 1' \\\n  --flag\nUser=1\n";
        let q = parse("a.container", text).unwrap();
        let exec = q.get_entry("Container", "Exec").unwrap();
        assert_eq!(exec.value, "/bin/sh -c 'sleep 1' --flag");
        assert_eq!(exec.line, 3);
        assert_eq!(q.get_entry("Container", "User").unwrap().line, 7);
    }

    #[test]
    fn parse_reports_every_syntax_error_with_its_line() {
        let text = "Image=x\n[Container]\njust words\n=value\n[Broken\n";
        let errs = parse("app/a.container", text).unwrap_err();
        let lines: Vec<_> = errs.iter().map(|d| d.line).collect();
        assert_eq!(lines, vec![Some(1), Some(3), Some(4), Some(5)]);
        assert!(errs[0].message.contains("before any [Section]"));
        assert!(errs[1].message.contains("neither"));
        assert!(errs[2].message.contains("empty key"));
        assert_eq!(
            errs[1].to_string(),
            "app/a.container:3: 'just words' is neither a [Section], a Key=Value pair nor a comment"
        );
    }

    #[test]
    fn parse_refuses_unknown_extension() {
        let errs = parse("app/notes.txt", "[Container]\n").unwrap_err();
        assert_eq!(errs.len(), 1);
        assert_eq!(errs[0].line, None);
    }

    #[test]
    fn get_all_resets_on_empty_assignment() {
        let q = parse(
            "a.container",
            "[Container]\nImage=x\nVolume=a:/a\nVolume=\nVolume=c:/c\n",
        )
        .unwrap();
        let vols: Vec<_> = q
            .get_all("Container", "Volume")
            .iter()
            .map(|e| e.value.clone())
            .collect();
        assert_eq!(vols, vec!["c:/c"]);
    }

    #[test]
    fn unit_name_honours_service_name() {
        let q = parse("data.volume", "[Volume]\n").unwrap();
        assert_eq!(q.unit_name(), "data-volume.service");
        let q = parse("data.volume", "[Volume]\nServiceName=storage\n").unwrap();
        assert_eq!(q.unit_name(), "storage.service");
        let q = parse("web.container", "[Container]\nImage=x\n").unwrap();
        assert_eq!(q.unit_name(), "web.service");
        // ServiceName= outside the main section is not quadlet's.
        let q = parse(
            "web.container",
            "[Container]\nImage=x\n[X-Mine]\nServiceName=y\n",
        )
        .unwrap();
        assert_eq!(q.unit_name(), "web.service");
    }
}
