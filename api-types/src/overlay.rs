//! Overlay templates: `overlays = ["groups/{group}/apps", "hosts/{host}/apps"]` in
//! `[source]`.
//!
//! A template names a folder of the source tree, relative to its root, whose app
//! folders replace the same-named ones of earlier layers. `{host}` is the host's fleet
//! name and `{group}` expands once per group, in the host's group order. The check and
//! the expansion live here so `legerctl` (publish, set-desired) refuses and expands
//! exactly as legerd does.

/// The placeholders a template may use.
pub const PLACEHOLDERS: [&str; 2] = ["{host}", "{group}"];

/// Checks one template: relative, no `.`/`..` segment, only known placeholders, and a
/// fixed first folder (so the common layer can tell overlay folders from apps).
pub fn validate_template(t: &str) -> Result<(), String> {
    if t.trim().is_empty() {
        return Err("an overlay template is empty".to_owned());
    }
    if t.starts_with('/') {
        return Err(format!(
            "overlay {t:?} must be relative to the source root, e.g. \"hosts/{{host}}/apps\""
        ));
    }
    let trimmed = t.trim_end_matches('/');
    for seg in trimmed.split('/') {
        if seg.is_empty() || seg == "." || seg == ".." {
            return Err(format!(
                "overlay {t:?} has an empty, '.' or '..' folder; each layer must stay inside the source"
            ));
        }
        let mut rest = seg;
        while let Some(open) = rest.find('{') {
            let Some(close) = rest[open..].find('}') else {
                return Err(format!("overlay {t:?} has a '{{' without '}}'"));
            };
            let name = &rest[open..open + close + 1];
            if !PLACEHOLDERS.contains(&name) {
                return Err(format!(
                    "overlay {t:?} uses the unknown placeholder {name}; only {{host}} and {{group}} exist"
                ));
            }
            rest = &rest[open + close + 1..];
        }
        if rest.contains('}') {
            return Err(format!("overlay {t:?} has a '}}' without '{{'"));
        }
    }
    if trimmed.split('/').next().is_some_and(|s| s.contains('{')) {
        return Err(format!(
            "overlay {t:?} must start with a fixed folder (e.g. \"hosts/{{host}}/apps\"), so its folders are never mistaken for apps of the common layer"
        ));
    }
    Ok(())
}

/// The first folder of a template (`hosts` for `hosts/{host}/apps`): the common layer
/// never treats it as an app.
pub fn template_root(t: &str) -> &str {
    t.split('/').next().unwrap_or(t)
}

/// Expands templates into layer paths, in order: a `{group}` template gives one layer
/// per group (none when the host has no groups), `{host}` is replaced by `host`.
pub fn expand(templates: &[String], host: &str, groups: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    for t in templates {
        let t = t.trim_end_matches('/');
        if t.contains("{group}") {
            for g in groups {
                out.push(t.replace("{group}", g).replace("{host}", host));
            }
        } else {
            out.push(t.replace("{host}", host));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlay_expands_groups_in_order_then_host() {
        let t = vec![
            "groups/{group}/apps".to_owned(),
            "hosts/{host}/apps".to_owned(),
        ];
        assert_eq!(
            expand(&t, "web-03", &["eu".into(), "canary".into()]),
            ["groups/eu/apps", "groups/canary/apps", "hosts/web-03/apps"]
        );
        assert_eq!(expand(&t, "h", &[]), ["hosts/h/apps"]);
    }

    #[test]
    fn overlay_bad_templates_are_refused() {
        for (t, want) in [
            ("hosts/{hostname}/apps", "unknown placeholder {hostname}"),
            ("hosts/../apps", "'..'"),
            ("/hosts/{host}", "relative"),
            ("{host}/apps", "fixed folder"),
            ("hosts/{host", "without"),
            ("hosts/host}", "without"),
            ("", "empty"),
        ] {
            let e = validate_template(t).unwrap_err();
            assert!(e.contains(want), "{t:?}: {e}");
        }
        validate_template("hosts/{host}/apps").unwrap();
        validate_template("groups/g-{group}").unwrap();
    }
}
