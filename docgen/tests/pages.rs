//! The man pages say everything the code accepts: every legerctl subcommand has a page
//! and appears in legerctl(1), every flag of legerd appears in legerd(8), and every key
//! the parsers of desired.toml, leger.toml and the config drop-ins accept appears in its
//! hand-written page. The key lists come from the parsers themselves (the "expected one
//! of" list serde gives for an unknown key), so a new key without documentation fails here.

use std::path::{Path, PathBuf};

use leger_config::{Environment, Mode, Settings};

fn repo_file(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(rel)
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The keys a `deny_unknown_fields` parser accepts in `table` (`""` for the top level),
/// read from the error it gives for a key it does not know.
fn accepted_keys(parse: &dyn Fn(&str) -> Option<String>, table: &str) -> Vec<String> {
    let doc = if table.is_empty() {
        "zz_not_a_key = 1\n".to_owned()
    } else {
        format!("{table}\nzz_not_a_key = 1\n")
    };
    let err = parse(&doc).unwrap_or_else(|| panic!("{table}: an unknown key was accepted"));
    let expected = err
        .split("expected")
        .nth(1)
        .unwrap_or_else(|| panic!("{table}: no key list in {err:?}"));
    let keys: Vec<String> = expected
        .split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect();
    assert!(!keys.is_empty(), "{table}: no keys in {err:?}");
    keys
}

/// The sections a page has, without brackets: `secrets.sources` for `.SH [[secrets.sources]]`.
fn sections(page: &str) -> Vec<&str> {
    page.lines()
        .filter_map(|l| l.strip_prefix(".SH "))
        .map(|s| s.trim_matches(['[', ']']))
        .collect()
}

/// A key is documented when the page has it as a bold term (`.B key` or `\fBkey\fR`),
/// or, for a key holding a table, as a section of its own (`[secrets.names]`).
fn assert_documented(page: &str, page_name: &str, table: &str, key: &str) {
    let escaped = key.replace('-', "\\-");
    let sub_table = format!("{}.{key}", table.trim_matches(['[', ']']));
    let found = [key, escaped.as_str()]
        .iter()
        .any(|k| page.contains(&format!(".B {k}\n")) || page.contains(&format!("\\fB{k}\\fR")))
        || sections(page).contains(&sub_table.as_str());
    assert!(found, "{page_name} does not document the key {key:?}");
}

/// Checks every key of `tables` (`""` for the top level). A top-level key must be one of
/// `top_keys` (a plain key, documented as a bold term) or hold one of `tables`.
fn assert_tables_documented(
    page_file: &str,
    parse: &dyn Fn(&str) -> Option<String>,
    tables: &[&str],
    top_keys: &[&str],
) {
    let page = read(&repo_file(page_file));
    for table in tables {
        let name = table.trim_matches(['[', ']']);
        assert!(
            table.is_empty() || sections(&page).iter().any(|s| s.starts_with(name)),
            "{page_file} has no section {table}"
        );
        for key in accepted_keys(parse, table) {
            // A top-level key is either a plain key, documented like any other, or a
            // table, which has its own section and is checked above.
            if table.is_empty() && top_keys.contains(&key.as_str()) {
                assert_documented(&page, page_file, table, &key);
            } else if table.is_empty() {
                assert!(
                    tables
                        .iter()
                        .any(|t| t.trim_matches(['[', ']']).starts_with(&key)),
                    "{page_file}: the table [{key}] is not checked by this test; add it \
                     (or, for a plain top-level key, add it to the top-level keys)"
                );
            } else {
                assert_documented(&page, page_file, table, &key);
            }
        }
    }
}

#[test]
fn legerd_conf_page_documents_every_config_key() {
    let parse = |doc: &str| {
        toml::from_str::<leger_config::Fragment>(doc)
            .err()
            .map(|e| e.to_string())
    };
    let tables = [
        "",
        "[paths]",
        "[api]",
        "[systemd]",
        "[reconcile]",
        "[limits]",
        "[quadlet]",
        "[metrics]",
        "[health]",
        "[backups]",
        "[fleet]",
        "[fleet.lock]",
    ];
    assert_tables_documented("docs/man/legerd.conf.5", &parse, &tables, &[]);
}

#[test]
fn desired_toml_page_documents_every_key() {
    let parse = |doc: &str| {
        leger_api_types::desired::DesiredState::from_toml_str(doc)
            .err()
            .map(|e| e.to_string())
    };
    let tables = [
        "",
        "[source]",
        "[policy]",
        "[secrets]",
        "[[secrets.sources]]",
    ];
    assert_tables_documented("docs/man/desired.toml.5", &parse, &tables, &[]);
}

#[test]
fn leger_toml_page_documents_every_key() {
    let parse = |doc: &str| leger_api_types::app_config::AppConfig::from_toml_str(doc).err();
    let tables = ["", "[health]", "[secrets]", "[volumes]"];
    let top_keys = ["enabled", "backup_failure", "backup_volumes"];
    assert_tables_documented("docs/man/leger.toml.5", &parse, &tables, &top_keys);
}

#[test]
fn shipped_default_config_equals_legerds_built_in_defaults() {
    let env = Environment::default();
    let shipped = leger_config::load(Mode::System, &[repo_file("contrib/config")], &env)
        .expect("contrib/config/10-defaults.toml loads");
    let built_in = Settings::defaults(Mode::System, &env).unwrap();
    assert_eq!(
        shipped, built_in,
        "10-defaults.toml drifted from legerd's defaults"
    );
}

#[test]
fn generated_pages_cover_every_subcommand_and_flag() {
    let out = tempfile::tempdir().unwrap();
    let files = leger_docgen::generate(out.path()).unwrap();
    let main_page = read(&out.path().join("man/man1/legerctl.1"));

    let ctl = leger_docgen::legerctl_command();
    let mut checked = 0;
    fn walk(cmd: &clap::Command, prefix: &str, main_page: &str, out: &Path, checked: &mut usize) {
        for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
            let name = format!("{prefix}-{}", sub.get_name());
            let page = read(&out.join(format!("man/man1/{name}.1")));
            for arg in sub.get_arguments().filter(|a| !a.is_hide_set()) {
                if let Some(long) = arg.get_long() {
                    let flag = format!("\\-\\-{}", long.replace('-', "\\-"));
                    assert!(page.contains(&flag), "{name}.1 lacks --{long}");
                }
            }
            if prefix == "legerctl" {
                let sub_name = sub.get_name().replace('-', "\\-");
                assert!(main_page.contains(&sub_name), "legerctl.1 lacks {name}");
            }
            *checked += 1;
            walk(sub, &name, main_page, out, checked);
        }
    }
    walk(&ctl, "legerctl", &main_page, out.path(), &mut checked);
    assert!(
        checked >= 20,
        "only {checked} subcommand pages: did the walk miss some?"
    );

    let legerd_page = read(&out.path().join("man/man8/legerd.8"));
    for arg in leger_docgen::legerd_command().get_arguments() {
        if let Some(long) = arg.get_long() {
            let flag = format!("\\-\\-{}", long.replace('-', "\\-"));
            assert!(legerd_page.contains(&flag), "legerd.8 lacks --{long}");
        }
    }

    for shell_file in ["bash/legerctl.bash", "zsh/_legerctl", "fish/legerctl.fish"] {
        let text = read(&out.path().join("completions").join(shell_file));
        assert!(
            text.contains("set-desired"),
            "{shell_file} lacks set-desired"
        );
    }
    assert!(files.len() > checked, "generate() reports what it wrote");
}
