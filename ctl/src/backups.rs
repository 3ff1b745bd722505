//! `legerctl backups` and `legerctl restore`: the table of backups, which backup a
//! restore uses, and the pin a restore writes into `desired.toml`.
//!
//! **Why a restore pins:** legerd heals drift. Right after a restore the host runs
//! the backup's revision while the source still offers a newer one, so the next pass
//! would put the newer files back. Pinning the backup's revision holds the host there
//! until `legerctl unpin`.

use leger_api_types::BackupInfo;

/// Picks the backup to restore from `list` (newest first, as legerd serves it): the
/// one named `id`, or the newest. The error says what to run instead.
pub fn choose<'a>(
    list: &'a [BackupInfo],
    app: &str,
    id: Option<&str>,
) -> Result<&'a BackupInfo, String> {
    let mine = list.iter().filter(|b| b.app == app);
    match id {
        None => mine.into_iter().next().ok_or_else(|| {
            format!(
                "there is no backup of app {app}; legerd backs an app up before it changes or removes it (see `legerctl backups`)"
            )
        }),
        Some(id) => mine.into_iter().find(|b| b.id == id).ok_or_else(|| {
            format!("there is no backup {id} of app {app}; see `legerctl backups {app}`")
        }),
    }
}

/// The backup table for people; scripts use `--json`.
pub fn render(list: &[BackupInfo]) -> String {
    if list.is_empty() {
        return "no backups\n".to_owned();
    }
    let id_w = list.iter().map(|b| b.id.len()).max().unwrap_or(0).max(6);
    let app_w = list.iter().map(|b| b.app.len()).max().unwrap_or(0).max(3);
    let mut out = format!(
        "{:<id_w$}  {:<app_w$}  {:<14}  {:<20}  {:>5}  {:>9}  VOLUMES\n",
        "BACKUP", "APP", "REVISION", "CREATED", "FILES", "SIZE"
    );
    for b in list {
        let rev: String = b.revision.chars().take(14).collect();
        let volumes = if b.volumes.is_empty() {
            "-".to_owned()
        } else {
            b.volumes.join(", ")
        };
        out.push_str(&format!(
            "{:<id_w$}  {:<app_w$}  {:<14}  {:<20}  {:>5}  {:>9}  {}\n",
            b.id,
            b.app,
            rev,
            b.created,
            b.files.len(),
            human_size(b.size),
            volumes
        ));
    }
    out
}

fn human_size(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(id: &str, app: &str, volumes: &[&str], size: u64) -> BackupInfo {
        BackupInfo {
            id: id.into(),
            app: app.into(),
            revision: "0123456789abcdef0123456789abcdef01234567".into(),
            created: "2025-03-04T05:06:07Z".into(),
            files: vec!["web.container".into(), "web.volume".into()],
            volumes: volumes.iter().map(|v| (*v).to_owned()).collect(),
            size,
        }
    }

    #[test]
    fn backups_table_lists_every_backup() {
        let list = [
            b(
                "20250304T050607Z-0123456789ab",
                "web",
                &["systemd-web"],
                3 * 1024 * 1024,
            ),
            b("20250303T000000Z-0123456789ab", "db", &[], 900),
        ];
        let text = render(&list);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert!(
            lines[0].starts_with("BACKUP") && lines[0].ends_with("VOLUMES"),
            "{text}"
        );
        assert!(
            lines[1].contains("20250304T050607Z-0123456789ab")
                && lines[1].contains("web")
                && lines[1].contains("3.0 MiB")
                && lines[1].ends_with("systemd-web"),
            "{text}"
        );
        assert!(
            lines[2].contains("900 B") && lines[2].ends_with('-'),
            "{text}"
        );
        assert_eq!(render(&[]), "no backups\n");
    }

    #[test]
    fn backups_choose_newest_or_named() {
        let list = [
            b("2", "web", &[], 1),
            b("1", "web", &[], 1),
            b("3", "db", &[], 1),
        ];
        assert_eq!(choose(&list, "web", None).unwrap().id, "2");
        assert_eq!(choose(&list, "web", Some("1")).unwrap().id, "1");
        let e = choose(&list, "web", Some("3")).unwrap_err();
        assert!(e.contains("no backup 3 of app web"), "{e}");
        let e = choose(&list, "cache", None).unwrap_err();
        assert!(e.contains("no backup of app cache"), "{e}");
    }
}
