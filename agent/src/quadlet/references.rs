//! What a quadlet uses besides itself: other quadlets (volumes, networks, pods,
//! images), companion files next to it, and podman secrets.
//!
//! legerd needs this to install exactly the files a quadlet uses (never a stray
//! README), to restart a unit when something it uses changes, and to tell which
//! secrets must exist. The rules follow podman 5.4's generator: a relative path in a
//! file-valued key is resolved against the quadlet file's folder; a `Volume=`/`Mount=`
//! source is a host path only when it starts with `.` or `/`; a value ending in
//! `.volume`, `.network`, ... names another quadlet by its base name.

use std::collections::BTreeSet;

use crate::model::QuadletKind;

use super::QuadletFile;

/// Everything one quadlet file refers to.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct References {
    /// Quadlet files (base names, `data.volume`) whose resources this one uses:
    /// volumes, networks, pods, images, builds, a container whose network it joins.
    /// A change to one of them changes what this unit runs with.
    pub quadlets: BTreeSet<String>,
    /// The same references with where each was written (`path` is the quadlet's base
    /// name), so a reference to a quadlet that exists nowhere can be reported there.
    pub quadlet_refs: Vec<FileRef>,
    /// Quadlet files named in `[Unit]` dependency keys (`After=db.container`). They
    /// order units but do not change what this one runs, so they are kept apart.
    pub ordering: BTreeSet<String>,
    /// Relative host paths in file-valued keys, as written: companions to install.
    pub files: Vec<FileRef>,
    /// Podman secret names from `Secret=`.
    pub secrets: BTreeSet<String>,
}

/// A relative path a quadlet refers to, with where it was written so an error about
/// it can point there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileRef {
    /// The path as written (`./conf`, `app.env`), relative to the quadlet's folder.
    pub path: String,
    /// The key it came from (`EnvironmentFile`).
    pub key: String,
    /// The line of that key.
    pub line: u32,
}

/// `[Unit]` keys whose quadlet-file values quadlet translates to unit names.
pub(crate) const UNIT_DEPENDENCY_KEYS: [&str; 15] = [
    "After",
    "Before",
    "BindsTo",
    "Conflicts",
    "OnFailure",
    "OnSuccess",
    "PartOf",
    "PropagatesReloadTo",
    "PropagatesStopTo",
    "ReloadPropagatedFrom",
    "Requires",
    "Requisite",
    "StopPropagatedFrom",
    "Upholds",
    "Wants",
];

/// Lists what `q` refers to. Absolute paths, URLs and paths starting with a systemd
/// specifier (`%h/...`) are not companions: they are not files legerd installs.
pub fn references(q: &QuadletFile) -> References {
    let mut r = References::default();
    let main = q.kind.section();

    for key in UNIT_DEPENDENCY_KEYS {
        for e in q.get_all("Unit", key) {
            for word in e.value.split_whitespace() {
                if QuadletKind::from_file_name(word).is_some() {
                    r.ordering.insert(word.to_string());
                    // Quadlet must translate it to a unit name, so it must exist too.
                    r.quadlet_refs.push(FileRef {
                        path: word.to_string(),
                        key: key.to_string(),
                        line: e.line,
                    });
                }
            }
        }
    }

    for e in q.get_all(main, "Image") {
        if has_ext(&e.value, &["image", "build"]) {
            push_quadlet(&mut r, &e.value, "Image", e.line);
        }
    }
    for e in q.get_all(main, "Network") {
        let name = e.value.split(':').next().unwrap_or_default();
        if has_ext(name, &["network", "container"]) {
            push_quadlet(&mut r, name, "Network", e.line);
        }
    }
    for e in q.get_all(main, "Pod") {
        if has_ext(&e.value, &["pod"]) {
            push_quadlet(&mut r, &e.value, "Pod", e.line);
        }
    }
    for e in q.get_all(main, "Volume") {
        let parts: Vec<&str> = e.value.splitn(3, ':').collect();
        if parts.len() >= 2 {
            storage_source(&mut r, parts[0], &["volume", "artifact"], "Volume", e.line);
        }
    }
    for e in q.get_all(main, "Mount") {
        for mount in split_args(&e.value) {
            mount_source(&mut r, &mount, e.line);
        }
    }

    for e in q.get_all(main, "EnvironmentFile") {
        for path in split_args(&e.value) {
            push_relative(&mut r, &path, "EnvironmentFile", e.line);
        }
    }
    for e in q.get_all(main, "ContainersConfModule") {
        // podman resolves modules itself; only explicit ./ and ../ paths are files
        // shipped with the quadlet.
        if e.value.starts_with("./") || e.value.starts_with("../") {
            push_file(&mut r, &e.value, "ContainersConfModule", e.line);
        }
    }
    for e in q.get_all(main, "Secret") {
        for arg in split_args(&e.value) {
            if let Some(name) = secret_name(&arg) {
                r.secrets.insert(name);
            }
        }
    }

    match q.kind {
        QuadletKind::Kube => {
            if let Some(e) = q.get_entry(main, "Yaml") {
                push_relative(&mut r, &e.value, "Yaml", e.line);
            }
            for e in q.get_all(main, "ConfigMap") {
                for path in split_args(&e.value) {
                    push_relative(&mut r, &path, "ConfigMap", e.line);
                }
            }
        }
        QuadletKind::Build => {
            if let Some(e) = q.get_entry(main, "File")
                && !is_url(&e.value)
            {
                push_relative(&mut r, &e.value, "File", e.line);
            }
            if let Some(e) = q.get_entry(main, "SetWorkingDirectory") {
                let v = e.value.to_ascii_lowercase();
                if !matches!(v.as_str(), "yaml" | "file" | "unit") && !is_url(&e.value) {
                    push_relative(&mut r, &e.value, "SetWorkingDirectory", e.line);
                }
            }
        }
        _ => {}
    }
    r
}

fn has_ext(value: &str, exts: &[&str]) -> bool {
    !value.contains('/')
        && value
            .rsplit_once('.')
            .is_some_and(|(stem, ext)| !stem.is_empty() && exts.contains(&ext))
}

/// A `Volume=`/`Mount=` source: a quadlet when it ends in one of `exts`, a companion
/// when it starts with `.` (quadlet resolves only those against the file's folder).
fn storage_source(r: &mut References, source: &str, exts: &[&str], key: &str, line: u32) {
    if source.starts_with('.') {
        push_file(r, source, key, line);
    } else if has_ext(source, exts) {
        push_quadlet(r, source, key, line);
    }
}

fn push_quadlet(r: &mut References, name: &str, key: &str, line: u32) {
    r.quadlets.insert(name.to_string());
    r.quadlet_refs.push(FileRef {
        path: name.to_string(),
        key: key.to_string(),
        line,
    });
}

fn mount_source(r: &mut References, mount: &str, line: u32) {
    let mut mount_type = None;
    let mut source = None;
    for token in mount.split(',') {
        let (k, v) = token.split_once('=').unwrap_or((token, ""));
        match k.trim() {
            "type" => mount_type = Some(v.trim()),
            "source" | "src" => source = Some(v.trim()),
            _ => {}
        }
    }
    let resolves =
        mount_type.is_none_or(|t| matches!(t, "volume" | "bind" | "glob" | "image" | "artifact"));
    if let (true, Some(source)) = (resolves, source)
        && !source.is_empty()
    {
        storage_source(r, source, &["volume", "image", "artifact"], "Mount", line);
    }
}

/// Pushes `path` when it is relative the way quadlet's `getAbsolutePath` sees it.
fn push_relative(r: &mut References, path: &str, key: &str, line: u32) {
    let is_specifier = path.starts_with('%') && !path.starts_with("%%");
    if !path.is_empty() && !path.starts_with('/') && !is_specifier {
        push_file(r, path, key, line);
    }
}

fn push_file(r: &mut References, path: &str, key: &str, line: u32) {
    r.files.push(FileRef {
        path: path.to_string(),
        key: key.to_string(),
        line,
    });
}

/// Quadlet's URL test for build files and contexts.
fn is_url(v: &str) -> bool {
    v.starts_with("http") || v.starts_with("git://") || v.contains("github.com/")
}

/// The secret name of a `--secret` argument: `source=`/`src=` when given, else the
/// first field without `=`.
fn secret_name(arg: &str) -> Option<String> {
    let fields: Vec<&str> = arg.split(',').map(str::trim).collect();
    fields
        .iter()
        .find_map(|f| f.strip_prefix("source=").or_else(|| f.strip_prefix("src=")))
        .or_else(|| fields.iter().copied().find(|f| !f.contains('=')))
        .filter(|n| !n.is_empty())
        .map(str::to_string)
}

/// Splits a value into whitespace-separated words, honouring `"..."` and `'...'`
/// quoting as quadlet's `LookupAllArgs` does.
pub(crate) fn split_args(value: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut quote: Option<char> = None;
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some('"'), '\\') => {
                if let Some(n) = chars.next() {
                    cur.push(n);
                }
            }
            (Some(_), c) => cur.push(c),
            (None, '"' | '\'') => {
                quote = Some(c);
                in_word = true;
            }
            (None, c) if c.is_whitespace() => {
                if in_word {
                    out.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            (None, c) => {
                cur.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        out.push(cur);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quadlet::parse;

    fn refs(file: &str, text: &str) -> References {
        references(&parse(file, text).unwrap())
    }

    fn set(items: &[&str]) -> BTreeSet<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    fn paths(r: &References) -> Vec<(&str, &str, u32)> {
        r.files
            .iter()
            .map(|f| (f.path.as_str(), f.key.as_str(), f.line))
            .collect()
    }

    #[test]
    fn references_container_quadlets_in_every_key_form() {
        let r = refs(
            "web.container",
            "[Unit]\nAfter=db.container network-online.target\nRequires=db.container\n[Container]\nImage=web.build\nVolume=data.volume:/data:Z\nVolume=named:/named\nVolume=/srv/abs:/abs\nMount=type=volume,source=cache.volume,destination=/cache\nMount=type=image,src=tools.image,dst=/tools\nMount=type=tmpfs,destination=/tmp\nNetwork=front.network:ip=10.0.0.2\nNetwork=host\nNetwork=sidecar.container\nPod=app.pod\n",
        );
        assert_eq!(
            r.quadlets,
            set(&[
                "app.pod",
                "cache.volume",
                "data.volume",
                "front.network",
                "sidecar.container",
                "tools.image",
                "web.build"
            ])
        );
        assert_eq!(r.ordering, set(&["db.container"]));
        assert!(r.files.is_empty(), "{:?}", r.files);
    }

    #[test]
    fn references_container_companion_files() {
        let r = refs(
            "web.container",
            "[Container]\nImage=x\nEnvironmentFile=web.env\nEnvironmentFile=/etc/abs.env\nEnvironmentFile=%h/spec.env\nVolume=./conf:/etc/conf:ro\nVolume=../shared:/shared\nMount=type=bind,source=./site,destination=/site\nMount=type=bind,source=/abs,destination=/abs\nContainersConfModule=./podman.conf\nContainersConfModule=module.conf\n",
        );
        assert_eq!(
            paths(&r),
            vec![
                ("./conf", "Volume", 6),
                ("../shared", "Volume", 7),
                ("./site", "Mount", 8),
                ("web.env", "EnvironmentFile", 3),
                ("./podman.conf", "ContainersConfModule", 10),
            ]
        );
    }

    #[test]
    fn references_secrets_by_name_or_source() {
        let r = refs(
            "web.container",
            "[Container]\nImage=x\nSecret=db-pass,type=env,target=DB_PASS\nSecret=source=api-key,type=mount\nSecret=tls\n",
        );
        assert_eq!(r.secrets, set(&["api-key", "db-pass", "tls"]));
    }

    #[test]
    fn references_kube_files_and_network() {
        let r = refs(
            "k.kube",
            "[Kube]\nYaml=./pod.yaml\nConfigMap=cm1.yaml cm2.yaml\nConfigMap=/etc/abs.yaml\nNetwork=net.network\n",
        );
        assert_eq!(r.quadlets, set(&["net.network"]));
        assert_eq!(
            paths(&r),
            vec![
                ("./pod.yaml", "Yaml", 2),
                ("cm1.yaml", "ConfigMap", 3),
                ("cm2.yaml", "ConfigMap", 3)
            ]
        );
    }

    #[test]
    fn references_build_files_context_and_secrets() {
        let r = refs(
            "b.build",
            "[Build]\nImageTag=localhost/b\nFile=Containerfile\nSetWorkingDirectory=./ctx\nSecret=token\nVolume=cache.volume:/cache\nNetwork=net.network\n",
        );
        assert_eq!(r.quadlets, set(&["cache.volume", "net.network"]));
        assert_eq!(
            paths(&r),
            vec![
                ("Containerfile", "File", 3),
                ("./ctx", "SetWorkingDirectory", 4)
            ]
        );
        assert_eq!(r.secrets, set(&["token"]));
        let r = refs(
            "b.build",
            "[Build]\nImageTag=b\nFile=https://example.org/Containerfile\nSetWorkingDirectory=unit\n",
        );
        assert!(r.files.is_empty());
    }

    #[test]
    fn references_volume_and_pod_quadlets() {
        let r = refs("v.volume", "[Volume]\nDriver=image\nImage=base.image\n");
        assert_eq!(r.quadlets, set(&["base.image"]));
        let r = refs(
            "p.pod",
            "[Pod]\nNetwork=net.network\nVolume=data.volume:/data\nVolume=./seed:/seed\n",
        );
        assert_eq!(r.quadlets, set(&["data.volume", "net.network"]));
        assert_eq!(paths(&r), vec![("./seed", "Volume", 4)]);
    }

    #[test]
    fn split_args_honours_quotes() {
        assert_eq!(
            split_args(r#"a "b c" 'd e' "h\"i""#),
            vec!["a", "b c", "d e", "h\"i"]
        );
        assert!(split_args("   ").is_empty());
    }
}
