//! The Grafana dashboards in `contrib/monitoring` hold PromQL that nothing else parses:
//! `promtool check rules` only sees `alerts.yml`. This test turns every dashboard query
//! into a recording rule (Grafana's variables replaced by what they expand to) and has
//! the real `promtool` parse them, so a typo fails here rather than as an empty panel.
//! Which *names* the queries may use is checked by `metrics::tests` in the library.

use std::path::Path;
use std::process::Command;

/// Grafana's variables, replaced the way Grafana expands them for "All".
fn expand_variables(expr: &str) -> String {
    expr.replace("$__rate_interval", "5m")
        .replace("$__interval", "1m")
        .replace("$__range", "1h")
        .replace("${job}", ".*")
        .replace("${instance}", ".*")
        .replace("$job", ".*")
        .replace("$instance", ".*")
}

/// Every panel query of one dashboard, as `(panel title, expr)`.
fn queries(dashboard: &Path) -> Vec<(String, String)> {
    let text = std::fs::read_to_string(dashboard).unwrap();
    let d: serde_json::Value = serde_json::from_str(&text).unwrap();
    let mut out = Vec::new();
    for p in d["panels"].as_array().unwrap() {
        for t in p["targets"].as_array().into_iter().flatten() {
            if let Some(expr) = t["expr"].as_str() {
                out.push((
                    p["title"].as_str().unwrap_or("?").to_owned(),
                    expr.to_owned(),
                ));
            }
        }
    }
    out
}

/// YAML double-quoted string.
fn quoted(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

fn promtool_check(rules: &str, dir: &Path) -> std::process::Output {
    let file = dir.join("rules.yml");
    std::fs::write(&file, rules).unwrap();
    Command::new("promtool")
        .args(["check", "rules"])
        .arg(&file)
        .output()
        .expect("promtool is needed for this test (Debian package prometheus; .ci/run installs it)")
}

fn rules_for(queries: &[(String, String)]) -> String {
    let mut rules = String::from("groups:\n  - name: dashboard\n    rules:\n");
    for (i, (_, expr)) in queries.iter().enumerate() {
        rules.push_str(&format!(
            "      - record: leger_dashboard_query_{i}\n        expr: {}\n",
            quoted(&expand_variables(expr))
        ));
    }
    rules
}

#[test]
fn monitoring_dashboard_queries_are_valid_promql() {
    let dir = tempfile::tempdir().unwrap();
    let monitoring = Path::new(env!("CARGO_MANIFEST_DIR")).join("../contrib/monitoring");
    let mut checked = 0;
    for entry in std::fs::read_dir(&monitoring).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "json") {
            continue;
        }
        let qs = queries(&path);
        assert!(!qs.is_empty(), "{}: no queries", path.display());
        let out = promtool_check(&rules_for(&qs), dir.path());
        assert!(
            out.status.success(),
            "{}: promtool refused a query ({:?}):\n{}{}",
            path.display(),
            qs,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        checked += qs.len();
    }
    assert!(checked >= 20, "only {checked} queries checked");
}

/// The check above can fail: a broken query is refused.
#[test]
fn monitoring_broken_query_is_refused_by_promtool() {
    let dir = tempfile::tempdir().unwrap();
    let broken = [(
        "broken".to_owned(),
        "sum(legerd_fleet_lock_waiting{job=~\"$job\"}".to_owned(),
    )];
    let out = promtool_check(&rules_for(&broken), dir.path());
    assert!(!out.status.success(), "promtool accepted an unclosed sum(");
}
