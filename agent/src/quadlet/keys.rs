//! The keys podman 5.4's quadlet generator accepts in each kind's main section.
//!
//! Why hand-kept tables: legerd refuses a bad revision before installing anything, and
//! the generator may be missing on the host (or a different version), so the tables
//! are the baseline check. They were measured against podman 5.4.2's generator on the
//! test bed, one file per (kind, key) run through `quadlet -dryrun`, keeping the keys
//! that did not fail with `unsupported key`. Newer podman sources (5.5+) accept more
//! (`Memory=`, `ReloadCmd=`, `Retry=` in `[Container]`, `Label=` in `[Pod]`, ...);
//! 5.4.2 rejects those, so they are not here.

use crate::model::QuadletKind;

/// Keys of the `[Quadlet]` section, common to every kind.
pub const QUADLET_SECTION_KEYS: &[&str] = &["DefaultDependencies"];

/// `[Container]` keys.
const CONTAINER_KEYS: &[&str] = &[
    "AddCapability",
    "AddDevice",
    "AddHost",
    "Annotation",
    "AutoUpdate",
    "CgroupsMode",
    "ContainerName",
    "ContainersConfModule",
    "DNS",
    "DNSOption",
    "DNSSearch",
    "DropCapability",
    "Entrypoint",
    "Environment",
    "EnvironmentFile",
    "EnvironmentHost",
    "Exec",
    "ExposeHostPort",
    "GIDMap",
    "GlobalArgs",
    "Group",
    "GroupAdd",
    "HealthCmd",
    "HealthInterval",
    "HealthLogDestination",
    "HealthMaxLogCount",
    "HealthMaxLogSize",
    "HealthOnFailure",
    "HealthRetries",
    "HealthStartPeriod",
    "HealthStartupCmd",
    "HealthStartupInterval",
    "HealthStartupRetries",
    "HealthStartupSuccess",
    "HealthStartupTimeout",
    "HealthTimeout",
    "HostName",
    "IP",
    "IP6",
    "Image",
    "Label",
    "LogDriver",
    "LogOpt",
    "Mask",
    "Mount",
    "Network",
    "NetworkAlias",
    "NoNewPrivileges",
    "Notify",
    "PidsLimit",
    "Pod",
    "PodmanArgs",
    "PublishPort",
    "Pull",
    "ReadOnly",
    "ReadOnlyTmpfs",
    "RemapGid",
    "RemapUid",
    "RemapUidSize",
    "RemapUsers",
    "Rootfs",
    "RunInit",
    "SeccompProfile",
    "Secret",
    "SecurityLabelDisable",
    "SecurityLabelFileType",
    "SecurityLabelLevel",
    "SecurityLabelNested",
    "SecurityLabelType",
    "ServiceName",
    "ShmSize",
    "StartWithPod",
    "StopSignal",
    "StopTimeout",
    "SubGIDMap",
    "SubUIDMap",
    "Sysctl",
    "Timezone",
    "Tmpfs",
    "UIDMap",
    "Ulimit",
    "Unmask",
    "User",
    "UserNS",
    "VolatileTmp",
    "Volume",
    "WorkingDir",
];

/// `[Volume]` keys.
const VOLUME_KEYS: &[&str] = &[
    "ContainersConfModule",
    "Copy",
    "Device",
    "Driver",
    "GlobalArgs",
    "Group",
    "Image",
    "Label",
    "Options",
    "PodmanArgs",
    "ServiceName",
    "Type",
    "User",
    "VolumeName",
];

/// `[Network]` keys.
const NETWORK_KEYS: &[&str] = &[
    "ContainersConfModule",
    "DNS",
    "DisableDNS",
    "Driver",
    "Gateway",
    "GlobalArgs",
    "IPAMDriver",
    "IPRange",
    "IPv6",
    "Internal",
    "Label",
    "NetworkName",
    "Options",
    "PodmanArgs",
    "ServiceName",
    "Subnet",
];

/// `[Pod]` keys.
const POD_KEYS: &[&str] = &[
    "AddHost",
    "ContainersConfModule",
    "DNS",
    "DNSOption",
    "DNSSearch",
    "GIDMap",
    "GlobalArgs",
    "IP",
    "IP6",
    "Network",
    "NetworkAlias",
    "PodName",
    "PodmanArgs",
    "PublishPort",
    "RemapGid",
    "RemapUid",
    "RemapUidSize",
    "RemapUsers",
    "ServiceName",
    "ShmSize",
    "SubGIDMap",
    "SubUIDMap",
    "UIDMap",
    "UserNS",
    "Volume",
];

/// `[Kube]` keys.
const KUBE_KEYS: &[&str] = &[
    "AutoUpdate",
    "ConfigMap",
    "ContainersConfModule",
    "ExitCodePropagation",
    "GlobalArgs",
    "KubeDownForce",
    "LogDriver",
    "LogOpt",
    "Network",
    "PodmanArgs",
    "PublishPort",
    "RemapGid",
    "RemapUid",
    "RemapUidSize",
    "RemapUsers",
    "ServiceName",
    "SetWorkingDirectory",
    "UserNS",
    "Yaml",
];

/// `[Image]` keys.
const IMAGE_KEYS: &[&str] = &[
    "AllTags",
    "Arch",
    "AuthFile",
    "CertDir",
    "ContainersConfModule",
    "Creds",
    "DecryptionKey",
    "GlobalArgs",
    "Image",
    "ImageTag",
    "OS",
    "PodmanArgs",
    "ServiceName",
    "TLSVerify",
    "Variant",
];

/// `[Build]` keys.
const BUILD_KEYS: &[&str] = &[
    "Annotation",
    "Arch",
    "AuthFile",
    "ContainersConfModule",
    "DNS",
    "DNSOption",
    "DNSSearch",
    "Environment",
    "File",
    "ForceRM",
    "GlobalArgs",
    "GroupAdd",
    "ImageTag",
    "Label",
    "Network",
    "PodmanArgs",
    "Pull",
    "Secret",
    "ServiceName",
    "SetWorkingDirectory",
    "TLSVerify",
    "Target",
    "Variant",
    "Volume",
];

/// The keys `kind`'s main section may hold, sorted.
pub fn main_section_keys(kind: QuadletKind) -> &'static [&'static str] {
    match kind {
        QuadletKind::Container => CONTAINER_KEYS,
        QuadletKind::Volume => VOLUME_KEYS,
        QuadletKind::Network => NETWORK_KEYS,
        QuadletKind::Pod => POD_KEYS,
        QuadletKind::Kube => KUBE_KEYS,
        QuadletKind::Image => IMAGE_KEYS,
        QuadletKind::Build => BUILD_KEYS,
    }
}

/// Whether `key` is known in `kind`'s main section. Keys are case-sensitive, as in
/// quadlet.
pub fn is_known(kind: QuadletKind, key: &str) -> bool {
    main_section_keys(kind).binary_search(&key).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_tables_are_sorted_for_binary_search() {
        for kind in QuadletKind::ALL {
            let keys = main_section_keys(kind);
            let mut sorted = keys.to_vec();
            sorted.sort_unstable();
            assert_eq!(keys, sorted.as_slice(), "{kind:?}");
        }
    }

    #[test]
    fn key_tables_follow_podman_5_4() {
        assert!(is_known(QuadletKind::Container, "Image"));
        assert!(is_known(QuadletKind::Container, "HealthLogDestination"));
        assert!(is_known(QuadletKind::Kube, "Yaml"));
        assert!(is_known(QuadletKind::Build, "ImageTag"));
        // Added after 5.4: rejected by the 5.4.2 generator.
        assert!(!is_known(QuadletKind::Container, "Memory"));
        assert!(!is_known(QuadletKind::Pod, "Label"));
        assert!(!is_known(QuadletKind::Network, "NetworkDeleteOnStop"));
        // Case matters.
        assert!(!is_known(QuadletKind::Container, "image"));
    }
}
