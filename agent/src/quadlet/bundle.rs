//! `.quadlets` bundle files (podman 5.8+): several quadlets in one file, separated by
//! lines of `---`, each beginning with `# FileName=<name>`.
//!
//! Why legerd splits them itself: the generator never reads bundles (only
//! `podman quadlet install` does), so a bundle in an app folder is turned into the
//! files it holds, each validated and installed like any other quadlet. That also
//! makes bundles work on a host whose podman predates them. As in podman,
//! `FileName=` is the name without extension; the extension comes from the first
//! quadlet section of the part (`[Container]` makes `.container`).

use crate::model::QuadletKind;

use super::Diagnostic;

/// The extension of a bundle file.
pub const BUNDLE_EXTENSION: &str = "quadlets";

/// One quadlet taken out of a bundle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BundlePart {
    /// Its file name, `FileName=` plus the extension of its kind (`web.container`).
    pub name: String,
    /// Its text, exactly the bundle's lines, so line `n` of the part is line
    /// `first_line + n - 1` of the bundle.
    pub text: String,
    /// The bundle line the part starts on (1-based).
    pub first_line: u32,
}

/// Whether `name` is a bundle file.
pub fn is_bundle(name: &str) -> bool {
    name.rsplit_once('.')
        .is_some_and(|(stem, ext)| !stem.is_empty() && ext == BUNDLE_EXTENSION)
}

/// Splits the bundle `file` (its path, for diagnostics) into its quadlets. Every
/// problem is reported, at the bundle's line, next to the parts that did split, so
/// those are checked too and one push can fix everything.
pub fn split(file: &str, bytes: &[u8]) -> (Vec<BundlePart>, Vec<Diagnostic>) {
    let mut errors = Vec::new();
    let mut parts: Vec<BundlePart> = Vec::new();
    for (first_line, raw) in sections(bytes) {
        let at = |offset: u32| Some(first_line + offset);
        let Ok(text) = std::str::from_utf8(raw) else {
            errors.push(Diagnostic::new(
                file,
                at(0),
                "this section of the bundle is not valid UTF-8 text: save the bundle as UTF-8",
            ));
            continue;
        };
        if text.trim().is_empty() {
            errors.push(Diagnostic::new(
                file,
                at(0),
                "empty section in the bundle: remove the extra --- line",
            ));
            continue;
        }
        let mut file_name = None;
        let mut kind = None;
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if let Some(comment) = line.strip_prefix('#')
                && file_name.is_none()
                && let Some(name) = comment.trim().strip_prefix("FileName=")
            {
                file_name = Some((name.trim(), i as u32));
            }
            if kind.is_none()
                && let Some(section) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']'))
            {
                kind = QuadletKind::from_file_name(&format!("x.{}", section.to_ascii_lowercase()));
            }
        }
        let Some((name, name_line)) = file_name else {
            errors.push(Diagnostic::new(
                file,
                at(0),
                "this section of the bundle has no '# FileName=<name>' line: add one naming the quadlet (without extension)",
            ));
            continue;
        };
        if let Some(problem) = bad_file_name(name) {
            errors.push(Diagnostic::new(
                file,
                at(name_line),
                format!("FileName={name} {problem}"),
            ));
            continue;
        }
        let Some(kind) = kind else {
            errors.push(Diagnostic::new(
                file,
                at(0),
                format!("the section '{name}' has no quadlet section such as [Container] or [Volume]: podman takes the file's kind from it"),
            ));
            continue;
        };
        let full = format!("{name}.{}", kind.extension());
        if let Some(dup) = parts.iter().find(|p| p.name == full) {
            errors.push(Diagnostic::new(
                file,
                at(name_line),
                format!(
                    "{full} is also defined at line {} of the bundle: give each section its own FileName=",
                    dup.first_line
                ),
            ));
            continue;
        }
        parts.push(BundlePart {
            name: full,
            text: text.to_owned(),
            first_line,
        });
    }
    (parts, errors)
}

/// Why a `FileName=` value cannot name a file in the app folder, if it cannot.
fn bad_file_name(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        Some("is empty: name the quadlet")
    } else if name.contains(['/', '\\']) || name == "." || name == ".." {
        Some("escapes the app folder: a bundle's quadlets stay in its folder, so use a plain name")
    } else if name.starts_with('.') {
        Some("starts with '.': hidden files are not installed, so use a plain name")
    } else if QuadletKind::from_file_name(name).is_some() || is_bundle(name) {
        Some(
            "carries an extension: FileName= is the name without extension, the section's kind adds it",
        )
    } else {
        None
    }
}

/// The bundle's sections, as (first line, bytes), split at lines that are `---`.
fn sections(bytes: &[u8]) -> Vec<(u32, &[u8])> {
    let mut out = Vec::new();
    let mut start = 0usize;
    let mut start_line = 1u32;
    let mut pos = 0usize;
    let mut line_no = 1u32;
    while pos < bytes.len() {
        let end = bytes[pos..]
            .iter()
            .position(|b| *b == b'\n')
            .map_or(bytes.len(), |i| pos + i);
        let line = &bytes[pos..end];
        if line.trim_ascii() == b"---" {
            out.push((start_line, &bytes[start..pos]));
            start = (end + 1).min(bytes.len());
            start_line = line_no + 1;
        }
        pos = end + 1;
        line_no += 1;
    }
    out.push((start_line, &bytes[start.min(bytes.len())..]));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shown(e: Vec<Diagnostic>) -> Vec<String> {
        e.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn split_takes_names_and_kinds_from_each_section() {
        let text = "# FileName=web\n[Container]\nImage=x\nVolume=data.volume:/d\n---\n# FileName=data\n[Volume]\n";
        let (parts, errors) = split("app/site.quadlets", text.as_bytes());
        assert_eq!(errors, vec![]);
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0].name, "web.container");
        assert_eq!(parts[0].first_line, 1);
        assert_eq!(parts[1].name, "data.volume");
        assert_eq!(parts[1].first_line, 6);
        assert_eq!(parts[1].text, "# FileName=data\n[Volume]\n");
    }

    #[test]
    fn split_refuses_escapes_duplicates_and_missing_names() {
        let text = "# FileName=../etc/evil\n[Container]\nImage=x\n---\n[Volume]\n---\n# FileName=a\n[Volume]\n---\n# FileName=a\n[Volume]\n---\n# FileName=b.container\n[Container]\n";
        let e = shown(split("app/x.quadlets", text.as_bytes()).1);
        assert_eq!(
            e,
            vec![
                "app/x.quadlets:1: FileName=../etc/evil escapes the app folder: a bundle's quadlets stay in its folder, so use a plain name",
                "app/x.quadlets:5: this section of the bundle has no '# FileName=<name>' line: add one naming the quadlet (without extension)",
                "app/x.quadlets:10: a.volume is also defined at line 7 of the bundle: give each section its own FileName=",
                "app/x.quadlets:13: FileName=b.container carries an extension: FileName= is the name without extension, the section's kind adds it",
            ]
        );
    }

    #[test]
    fn split_refuses_empty_and_non_utf8_sections() {
        let mut bytes =
            b"# FileName=a\n[Volume]\n---\n\n---\n# FileName=b\n[Volume]\nLabel=".to_vec();
        bytes.extend([0xff, 0xfe, b'\n']);
        let e = shown(split("app/x.quadlets", &bytes).1);
        assert_eq!(
            e,
            vec![
                "app/x.quadlets:4: empty section in the bundle: remove the extra --- line",
                "app/x.quadlets:6: this section of the bundle is not valid UTF-8 text: save the bundle as UTF-8",
            ]
        );
    }

    #[test]
    fn is_bundle_wants_a_stem() {
        assert!(is_bundle("site.quadlets"));
        assert!(!is_bundle(".quadlets"));
        assert!(!is_bundle("site.container"));
    }
}
