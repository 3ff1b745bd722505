//! The checks podman's generator makes on values, done offline so a laptop catches
//! what the host would refuse. Each follows a refusal in podman's
//! `pkg/systemd/quadlet/quadlet.go` (5.4 to 6.0), and quotes it so a user who has seen
//! the generator's words recognises them.

use crate::model::QuadletKind;

use super::{Diagnostic, KeyTable, PodmanVersion, QuadletFile};

/// The first podman whose generator reads `File=%h/...` in `[Build]` as absolute
/// (podman commit 936a01e, "consider File path that starts with a systemd specifier as
/// absolute"); older ones refuse it without `SetWorkingDirectory=`.
const SPECIFIER_FILE_ABSOLUTE: PodmanVersion = PodmanVersion::new(5, 7, 0, Some(1));

/// Every value problem in `q`, for the podman of `table` (a few refusals changed
/// between releases).
pub fn check(q: &QuadletFile, table: &KeyTable) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    let main = q.kind.section();
    let line = |key: &str| q.get_all(main, key).last().map(|e| e.line);
    let set = |key: &str| q.get_all(main, key).iter().any(|e| !e.value.is_empty());
    let count = |key: &str| q.get_all(main, key).len();
    let mut push = |at: Option<u32>, message: String| {
        out.push(Diagnostic::new(&q.file, at, message));
    };
    match q.kind {
        QuadletKind::Container => {
            if set("Group") && !set("User") {
                push(
                    line("Group"),
                    "Group= without User= (the generator says \"invalid Group set without User\"): add User= or remove Group=".into(),
                );
            }
            if q.get(main, "ReloadCmd").is_some() && q.get(main, "ReloadSignal").is_some() {
                push(
                    line("ReloadSignal"),
                    "ReloadCmd= and ReloadSignal= exclude each other: keep one of them".into(),
                );
            }
            for e in q.get_all(main, "Pod") {
                if !e.value.is_empty() && !e.value.ends_with(".pod") {
                    push(
                        Some(e.line),
                        format!(
                            "Pod={} is not a .pod quadlet: quadlet joins only pods it makes, so name a .pod file",
                            e.value
                        ),
                    );
                }
            }
            for e in q.get_all(main, "Mount") {
                for mount in super::references::split_args(&e.value) {
                    if let Some(kind) = mount_without_source(&mount) {
                        push(
                            Some(e.line),
                            format!(
                                "Mount={mount}: a {kind} mount needs source= (or src=): add it"
                            ),
                        );
                    }
                }
            }
        }
        QuadletKind::Build => {
            if !set("File") && !set("SetWorkingDirectory") {
                push(
                    None,
                    "no File= or SetWorkingDirectory= in [Build]: podman needs one to know what to build".into(),
                );
            }
            if let Some(file) = q.get_all(main, "File").last()
                && !set("SetWorkingDirectory")
                && is_relative_path(&file.value)
            {
                push(
                    Some(file.line),
                    format!(
                        "File={} is relative, which podman resolves only with SetWorkingDirectory=: add SetWorkingDirectory=unit (the quadlet's folder) or use an absolute path",
                        file.value
                    ),
                );
            }
            if let Some(file) = q.get_all(main, "File").last()
                && !set("SetWorkingDirectory")
                && starts_with_specifier(&file.value)
                && table.version() < SPECIFIER_FILE_ABSOLUTE
            {
                push(
                    Some(file.line),
                    format!(
                        "File={} starts with a systemd specifier, which podman before 5.7 reads as a relative path (the generator says \"relative path in File key requires SetWorkingDirectory key to be set\"); {}: add SetWorkingDirectory=, use a plain absolute path, or upgrade podman",
                        file.value,
                        table.running()
                    ),
                );
            }
        }
        QuadletKind::Kube
            if q.get_all(main, "RemapUsers")
                .last()
                .is_some_and(|e| e.value == "manual") =>
        {
            push(
                line("RemapUsers"),
                "RemapUsers=manual is not supported in a .kube file: use auto or keep-id".into(),
            );
        }
        QuadletKind::Network => {
            let (subnets, gateways, ranges) = (count("Subnet"), count("Gateway"), count("IPRange"));
            if subnets == 0 && (gateways > 0 || ranges > 0) {
                let key = if gateways > 0 { "Gateway" } else { "IPRange" };
                push(
                    line(key),
                    format!(
                        "{key}= without Subnet=: podman cannot set a gateway or range without a subnet, so add Subnet="
                    ),
                );
            } else {
                for (key, n) in [("Gateway", gateways), ("IPRange", ranges)] {
                    if n > subnets {
                        push(
                            line(key),
                            format!(
                                "{n} {key}= lines but {subnets} Subnet=: each gateway or range belongs to one subnet, so add a Subnet= or remove a {key}="
                            ),
                        );
                    }
                }
            }
        }
        QuadletKind::Volume => {
            let driver = q.get(main, "Driver").unwrap_or_default();
            if driver == "image" {
                if q.get(main, "Image").is_none() {
                    push(
                        line("Driver"),
                        "Driver=image needs Image=: name the image the volume is made from".into(),
                    );
                }
            } else {
                for key in ["Type", "Options"] {
                    if set(key) && !set("Device") {
                        push(
                            line(key),
                            format!(
                                "{key}= without Device=: podman uses {key}= only to mount a device, so add Device= or remove {key}="
                            ),
                        );
                    }
                }
            }
        }
        _ => {}
    }
    if matches!(
        q.kind,
        QuadletKind::Container | QuadletKind::Pod | QuadletKind::Kube
    ) {
        let explicit = ["UserNS", "UIDMap", "GIDMap", "SubUIDMap", "SubGIDMap"]
            .into_iter()
            .find(|k| set(k));
        let deprecated = ["RemapUid", "RemapGid", "RemapUsers"]
            .into_iter()
            .find(|k| count(k) > 0);
        if let (Some(explicit), Some(deprecated)) = (explicit, deprecated) {
            push(
                line(deprecated),
                format!(
                    "the deprecated {deprecated}= is combined with {explicit}=: podman refuses both at once, so keep {explicit}= and remove the Remap* keys"
                ),
            );
        }
    }
    out
}

/// `%h/...`: a systemd specifier, not a `%%` escape.
fn starts_with_specifier(path: &str) -> bool {
    path.starts_with('%') && !path.starts_with("%%")
}

/// A path podman resolves against a build context: not absolute, not a URL, not
/// starting with a systemd specifier (`%h/...`).
fn is_relative_path(path: &str) -> bool {
    let specifier = starts_with_specifier(path);
    let url = path.starts_with("http://")
        || path.starts_with("https://")
        || path.starts_with("git://")
        || path.starts_with("github.com/");
    !path.is_empty() && !path.starts_with('/') && !specifier && !url
}

/// The type of a `--mount` value that needs a source and has none. Without `type=`
/// podman means a volume, which may be anonymous.
fn mount_without_source(mount: &str) -> Option<String> {
    let mut kind = "volume";
    let mut has_source = false;
    for token in mount.split(',') {
        let (k, v) = token.split_once('=').unwrap_or((token, ""));
        match k.trim() {
            "type" => kind = v.trim(),
            "source" | "src" => has_source |= !v.trim().is_empty(),
            _ => {}
        }
    }
    let needs = matches!(kind, "bind" | "glob" | "image" | "artifact");
    (needs && !has_source).then(|| kind.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quadlet::parse;

    fn check_text(file: &str, text: &str) -> Vec<String> {
        check_for(file, text, &KeyTable::newest())
    }

    fn check_for(file: &str, text: &str, table: &KeyTable) -> Vec<String> {
        check(&parse(file, text).unwrap(), table)
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn check_refuses_group_without_user() {
        assert_eq!(
            check_text("a/w.container", "[Container]\nImage=x\nGroup=10\n"),
            vec![
                "a/w.container:3: Group= without User= (the generator says \"invalid Group set without User\"): add User= or remove Group="
            ]
        );
        assert!(check_text("a/w.container", "[Container]\nImage=x\nUser=1\nGroup=10\n").is_empty());
        // A volume's Group= is a gid and needs no User=.
        assert!(check_text("a/v.volume", "[Volume]\nGroup=10\n").is_empty());
    }

    #[test]
    fn check_counts_gateways_and_ranges_against_subnets() {
        let d = check_text("a/n.network", "[Network]\nGateway=10.0.0.1\n");
        assert_eq!(d.len(), 1);
        assert!(
            d[0].starts_with("a/n.network:2: Gateway= without Subnet="),
            "{d:?}"
        );
        let d = check_text(
            "a/n.network",
            "[Network]\nSubnet=10.0.0.0/24\nIPRange=10.0.0.0/26\nIPRange=10.0.0.64/26\n",
        );
        assert_eq!(d.len(), 1);
        assert!(d[0].contains("2 IPRange= lines but 1 Subnet="), "{d:?}");
        assert!(
            check_text(
                "a/n.network",
                "[Network]\nSubnet=10.0.0.0/24\nGateway=10.0.0.1\n"
            )
            .is_empty()
        );
    }

    #[test]
    fn check_volume_device_and_image_driver() {
        let d = check_text("a/v.volume", "[Volume]\nOptions=nodev\n");
        assert!(
            d[0].starts_with("a/v.volume:2: Options= without Device="),
            "{d:?}"
        );
        assert!(
            check_text(
                "a/v.volume",
                "[Volume]\nDevice=/dev/sdb\nType=ext4\nOptions=nodev\n"
            )
            .is_empty()
        );
        let d = check_text("a/v.volume", "[Volume]\nDriver=image\n");
        assert!(d[0].contains("Driver=image needs Image="), "{d:?}");
        assert!(check_text("a/v.volume", "[Volume]\nDriver=image\nImage=x.image\n").is_empty());
    }

    #[test]
    fn check_follows_generator_refusals_seen_in_podman_tests() {
        let d = check_text(
            "a/w.container",
            "[Container]\nImage=x\nReloadCmd=/bin/true\nReloadSignal=SIGHUP\nPod=test-pod\nMount=type=image,destination=/p,ro\n",
        );
        assert_eq!(d.len(), 3, "{d:?}");
        assert!(d[0].contains(":4: ReloadCmd= and ReloadSignal= exclude each other"));
        assert!(d[1].contains(":5: Pod=test-pod is not a .pod quadlet"));
        assert!(
            d[2].contains(":6: Mount=type=image,destination=/p,ro: a image mount needs source=")
        );
        assert!(
            check_text(
                "a/w.container",
                "[Container]\nImage=x\nMount=type=tmpfs,destination=/t\nMount=destination=/anon\n"
            )
            .is_empty()
        );
        assert!(
            check_text("a/b.build", "[Build]\nImageTag=x\n")[0]
                .contains("no File= or SetWorkingDirectory=")
        );
        assert!(
            check_text("a/k.kube", "[Kube]\nYaml=k.yml\nRemapUsers=manual\n")[0]
                .contains("RemapUsers=manual")
        );
    }

    #[test]
    fn check_refuses_remap_with_explicit_mappings() {
        let d = check_text("a/p.pod", "[Pod]\nUserNS=auto\nRemapUsers=auto\n");
        assert_eq!(d.len(), 1);
        assert!(
            d[0].starts_with("a/p.pod:3: the deprecated RemapUsers="),
            "{d:?}"
        );
        assert!(check_text("a/p.pod", "[Pod]\nRemapUsers=auto\n").is_empty());
    }

    #[test]
    fn check_follows_podman_5_7_reading_a_specifier_file_as_absolute() {
        // podman's own test file no-workingdirectory-systemd-specifier.build: the real
        // 5.4.2 generator refuses it, 5.8.6 accepts it.
        let text = "[Build]\nImageTag=localhost/example\nFile=%h/images/example.Containerfile\n";
        let host = |v: &str| {
            KeyTable::for_version(
                PodmanVersion::parse(v).unwrap(),
                crate::quadlet::Basis::Host,
            )
            .unwrap()
        };
        assert_eq!(
            check_for("a/b.build", text, &host("5.4.2")),
            vec![
                "a/b.build:3: File=%h/images/example.Containerfile starts with a systemd specifier, which podman before 5.7 reads as a relative path (the generator says \"relative path in File key requires SetWorkingDirectory key to be set\"); this host runs 5.4.2: add SetWorkingDirectory=, use a plain absolute path, or upgrade podman"
            ]
        );
        assert!(check_for("a/b.build", text, &host("5.7.0")).is_empty());
        assert!(check_for("a/b.build", text, &host("5.8.6")).is_empty());
        let with_dir = format!("{text}SetWorkingDirectory=unit\n");
        assert!(check_for("a/b.build", &with_dir, &host("5.4.2")).is_empty());
        let escaped = "[Build]\nImageTag=x\nFile=/srv/%%h.Containerfile\n";
        assert!(check_for("a/b.build", escaped, &host("5.4.2")).is_empty());
    }
}
