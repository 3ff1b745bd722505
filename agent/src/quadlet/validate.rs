//! Checks a parsed quadlet against what the target podman's generator accepts: the
//! sections a kind may hold, the keys of its main section, the keys it cannot do
//! without, and the value checks the generator makes ([`super::values`]).

use crate::model::QuadletKind;

use super::keys::{KeyTable, Support};
use super::{Diagnostic, QuadletFile};

/// Sections systemd owns; their keys are systemd's to check, not ours.
const SYSTEMD_SECTIONS: [&str; 3] = ["Unit", "Service", "Install"];

/// Validates sections, main-section keys, required keys and values for the podman
/// `table` stands for. Returns every problem found; an empty list means the file is
/// fine as far as legerd can tell.
pub fn validate(q: &QuadletFile, table: &KeyTable) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    let main = q.kind.section();
    let ext = q.kind.extension();
    match table.section(main) {
        Support::Yes => {}
        Support::Newer(v) => {
            out.push(Diagnostic::new(
                &q.file,
                None,
                format!(
                    "a .{ext} file needs podman ≥ {}; {}: upgrade podman or remove the file",
                    v.short(),
                    table.running()
                ),
            ));
            return out;
        }
        Support::Removed(_) | Support::Never => {
            out.push(Diagnostic::new(
                &q.file,
                None,
                format!("podman {} does not know .{ext} files", table.version()),
            ));
            return out;
        }
    }
    for section in &q.sections {
        let name = section.name.as_str();
        if name == main || name == "Quadlet" {
            for e in &section.entries {
                if let Some(message) = key_message(table, name, &e.key) {
                    out.push(Diagnostic::new(&q.file, Some(e.line), message));
                }
            }
        } else if !(SYSTEMD_SECTIONS.contains(&name) || name.starts_with("X-")) {
            out.push(Diagnostic::new(
                &q.file,
                Some(section.line),
                format!(
                    "unknown section [{name}]: a .{ext} file may hold [{main}], [Unit], [Service], [Install], [Quadlet] and X-* sections"
                ),
            ));
        }
    }
    out.extend(required_keys(q));
    out.extend(super::values::check(q, table));
    out
}

/// Why `key` is refused in `[section]`, or `None` when the target podman accepts it.
fn key_message(table: &KeyTable, section: &str, key: &str) -> Option<String> {
    match table.key(section, key) {
        Support::Yes => None,
        Support::Newer(v) => Some(format!(
            "{key}= in [{section}] needs podman ≥ {}; {}: upgrade podman or remove the key",
            v.short(),
            table.running()
        )),
        Support::Removed(v) => Some(format!(
            "{key}= in [{section}] was removed after podman {v}; {}: remove the key",
            table.running()
        )),
        Support::Never => {
            let mut msg = format!(
                "unknown key '{key}' in [{section}]: no podman release's quadlet supports it"
            );
            if let Some(best) = closest(key, &KeyTable::all_keys(section)) {
                msg.push_str(&format!("; did you mean '{best}'?"));
            }
            Some(msg)
        }
    }
}

fn has_value(q: &QuadletFile, key: &str) -> bool {
    q.get(q.kind.section(), key).is_some_and(|v| !v.is_empty())
}

fn required_keys(q: &QuadletFile) -> Vec<Diagnostic> {
    let main = q.kind.section();
    let missing = |what: &str| {
        Diagnostic::new(
            &q.file,
            None,
            format!("no {what} in [{main}]: quadlet cannot generate a unit without it"),
        )
    };
    match q.kind {
        QuadletKind::Container => {
            let image = has_value(q, "Image");
            let rootfs = has_value(q, "Rootfs");
            match (image, rootfs) {
                (false, false) => vec![missing("Image= or Rootfs=")],
                (true, true) => vec![Diagnostic::new(
                    &q.file,
                    q.get_entry(main, "Rootfs").map(|e| e.line),
                    "Image= and Rootfs= conflict: keep only one of them",
                )],
                _ => vec![],
            }
        }
        QuadletKind::Kube if !has_value(q, "Yaml") => vec![missing("Yaml=")],
        QuadletKind::Image if !has_value(q, "Image") => vec![missing("Image=")],
        QuadletKind::Build if !has_value(q, "ImageTag") => vec![missing("ImageTag=")],
        QuadletKind::Artifact if !has_value(q, "Artifact") => vec![missing("Artifact=")],
        _ => vec![],
    }
}

/// The known key closest to `key`, when it is close enough to be a likely typo:
/// same letters in another case, or at most a third of the letters edited (at least 1).
fn closest<'a>(key: &str, known: &[&'a str]) -> Option<&'a str> {
    let lower = key.to_ascii_lowercase();
    let limit = (key.chars().count() / 3).max(1);
    known
        .iter()
        .map(|k| (edit_distance(&lower, &k.to_ascii_lowercase()), *k))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, k)| (*d, *k))
        .map(|(_, k)| k)
}

/// Levenshtein distance over chars.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quadlet::parse;

    fn check(file: &str, text: &str) -> Vec<Diagnostic> {
        check_for("5.4.2", file, text)
    }

    fn check_for(version: &str, file: &str, text: &str) -> Vec<Diagnostic> {
        let v = crate::quadlet::PodmanVersion::parse(version).unwrap();
        let table = KeyTable::for_version(v, crate::quadlet::Basis::Host).unwrap();
        validate(&parse(file, text).unwrap(), &table)
    }

    #[test]
    fn validate_accepts_a_good_container() {
        let text = "[Unit]\nAnything=goes\n[Container]\nImage=localhost/web:1\nPublishPort=8080:80\n[Service]\nRestart=always\n[Install]\nWantedBy=default.target\n[Quadlet]\nDefaultDependencies=no\n[X-Mine]\nFoo=bar\n";
        assert_eq!(check("web/web.container", text), vec![]);
    }

    #[test]
    fn validate_reports_unknown_key_with_line_and_suggestion() {
        let d = check(
            "web/web.container",
            "[Container]\nImage=x\nPublishPrt=80:80\nimage=y\nTotallyUnrelated=1\n",
        );
        assert_eq!(d.len(), 3, "{d:?}");
        assert_eq!(d[0].line, Some(3));
        assert!(
            d[0].message
                .contains("unknown key 'PublishPrt' in [Container]")
        );
        assert!(
            d[0].message.contains("did you mean 'PublishPort'?"),
            "{}",
            d[0]
        );
        assert!(d[1].message.contains("did you mean 'Image'?"), "{}", d[1]);
        assert_eq!(d[2].line, Some(5));
        assert!(!d[2].message.contains("did you mean"), "{}", d[2]);
    }

    #[test]
    fn validate_reports_unknown_section() {
        let d = check("a/a.volume", "[Volume]\n[Volumes]\nDriver=local\n");
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].line, Some(2));
        assert!(
            d[0].message.contains("unknown section [Volumes]"),
            "{}",
            d[0]
        );
        assert!(
            d[0].message
                .contains("[Volume], [Unit], [Service], [Install], [Quadlet] and X-*")
        );
    }

    #[test]
    fn validate_checks_quadlet_section_keys() {
        let d = check("a/a.volume", "[Quadlet]\nDefaultDependency=no\n");
        assert_eq!(d.len(), 1);
        assert!(
            d[0].message.contains("did you mean 'DefaultDependencies'?"),
            "{}",
            d[0]
        );
    }

    #[test]
    fn validate_requires_the_keys_each_kind_needs() {
        let d = check("a/web.container", "[Container]\nExec=true\n");
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].line, None);
        assert!(
            d[0].message.contains("no Image= or Rootfs= in [Container]"),
            "{}",
            d[0]
        );
        assert_eq!(
            check("a/web.container", "[Container]\nRootfs=/srv/root\n"),
            vec![]
        );
        assert_eq!(
            check("a/web.container", "[Container]\nImage=x\nRootfs=/r\n").len(),
            1
        );
        assert!(check("a/k.kube", "[Kube]\n")[0].message.contains("Yaml="));
        assert!(
            check("a/i.image", "[Image]\n")[0]
                .message
                .contains("Image=")
        );
        assert!(
            check("a/b.build", "[Build]\nFile=/x\n")[0]
                .message
                .contains("ImageTag=")
        );
        // An empty value does not count.
        assert_eq!(check("a/i.image", "[Image]\nImage=\n").len(), 1);
        assert_eq!(check("a/n.network", ""), vec![]);
    }

    #[test]
    fn validate_names_both_versions_for_a_newer_key() {
        let text = "[Container]\nImage=x\nReloadCmd=/bin/true\n";
        let d = check("a/w.container", text);
        assert_eq!(
            d,
            vec![Diagnostic::new(
                "a/w.container",
                Some(3),
                "ReloadCmd= in [Container] needs podman ≥ 5.5; this host runs 5.4.2: upgrade podman or remove the key"
            )]
        );
        assert_eq!(check_for("5.8.6", "a/w.container", text), vec![]);
        // [Pod] Label= arrived in 5.6.
        let d = check_for("5.5.2", "a/p.pod", "[Pod]\nLabel=a=b\n");
        assert!(
            d[0].message
                .contains("needs podman ≥ 5.6; this host runs 5.5.2"),
            "{}",
            d[0]
        );
    }

    #[test]
    fn validate_artifacts_only_where_podman_has_them() {
        let text = "[Artifact]\nArtifact=quay.io/x/y:1\n";
        let d = check("a/model.artifact", text);
        assert_eq!(d.len(), 1);
        assert_eq!(
            d[0].message,
            "a .artifact file needs podman ≥ 5.7; this host runs 5.4.2: upgrade podman or remove the file"
        );
        assert_eq!(check_for("5.7.0", "a/model.artifact", text), vec![]);
        let d = check_for("5.7.0", "a/model.artifact", "[Artifact]\nQuiet=true\n");
        assert!(
            d[0].message.contains("no Artifact= in [Artifact]"),
            "{}",
            d[0]
        );
    }

    #[test]
    fn edit_distance_counts_edits() {
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("same", "same"), 0);
    }
}
