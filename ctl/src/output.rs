//! `--output human|json|yaml` on every read command.
//!
//! JSON and YAML are documents: each carries `apiVersion` and `kind`, and a list is
//! wrapped as `items`, so a script can check what it reads. The legacy `--json` flag
//! prints legerd's answer exactly as before (lists as bare arrays), for scripts written
//! against it. YAML comes from `yaml_serde`, the YAML organization's maintained fork of
//! the deprecated `serde_yaml`.

use anyhow::{Context, Result};
use clap::{Args, ValueEnum};
use leger_api_types::API_VERSION;
use serde_json::{Map, Value};

/// How a read command prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum Format {
    /// Tables and text for people.
    #[default]
    Human,
    /// A JSON document with apiVersion and kind.
    Json,
    /// The same document as YAML.
    Yaml,
}

/// `--output` and the legacy `--json`, flattened into each read command.
#[derive(Debug, Clone, Args)]
pub struct OutputArg {
    /// Print as human (default), json or yaml; JSON and YAML documents carry apiVersion
    /// and kind, lists are under `items`.
    #[arg(short = 'o', long, value_enum, value_name = "FORMAT", default_value_t = Format::Human)]
    pub output: Format,
    /// Print legerd's JSON answer as it is (lists as bare arrays), as before --output.
    #[arg(long, conflicts_with = "output")]
    pub json: bool,
}

impl OutputArg {
    /// Human output only: no flag asked for a machine format.
    pub fn human(&self) -> bool {
        !self.json && self.output == Format::Human
    }
}

/// Makes `body` a document of `kind`: an object gets `apiVersion` and `kind` (kept
/// when it has them already), a list goes under `items`.
pub fn document(kind: &str, body: Value) -> Value {
    let mut doc = Map::new();
    doc.insert("apiVersion".into(), Value::String(API_VERSION.into()));
    doc.insert("kind".into(), Value::String(kind.into()));
    match body {
        Value::Object(fields) => {
            for (k, v) in fields {
                doc.insert(k, v);
            }
        }
        other => {
            doc.insert("items".into(), other);
        }
    }
    Value::Object(doc)
}

/// The document as JSON (pretty) or YAML text, ending in a newline.
pub fn to_text(format: Format, doc: &Value) -> Result<String> {
    Ok(match format {
        Format::Yaml => yaml_serde::to_string(doc).context("cannot write the document as YAML")?,
        _ => {
            let mut s = serde_json::to_string_pretty(doc).expect("a JSON value always serializes");
            s.push('\n');
            s
        }
    })
}

/// What to print for legerd's answer `body` (JSON), as `out` asks: the answer as it is
/// (`--json`), a document of `kind` (`--output json|yaml`), or `human(body)`.
pub fn print_read(
    out: &OutputArg,
    kind: &str,
    body: &str,
    human: impl FnOnce(&str) -> Result<String>,
) -> Result<String> {
    if out.json {
        return Ok(format!("{}\n", body.trim_end()));
    }
    match out.output {
        Format::Human => human(body),
        f => {
            let v: Value = serde_json::from_str(body)
                .context("legerd sent an answer that is not JSON; is it a matching legerd?")?;
            to_text(f, &document(kind, v))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn lists_go_under_items_and_objects_get_api_version_and_kind() {
        let list = document("PassList", json!([{"id": 1}]));
        assert_eq!(list["apiVersion"], API_VERSION);
        assert_eq!(list["kind"], "PassList");
        assert_eq!(list["items"][0]["id"], 1);
        let pass = document("Pass", json!({"id": 7, "outcome": "failed"}));
        assert_eq!(
            (pass["kind"].as_str(), pass["id"].as_i64()),
            (Some("Pass"), Some(7))
        );
        // A document that has them already keeps its own kind.
        let status = document(
            "AgentStatus",
            json!({"apiVersion": "leger.run/v1", "kind": "Other"}),
        );
        assert_eq!(
            (status["apiVersion"].as_str(), status["kind"].as_str()),
            (Some("leger.run/v1"), Some("Other"))
        );
    }

    #[test]
    fn yaml_and_json_carry_the_same_document() {
        let doc = document("Pass", json!({"id": 7, "error": "line 1\nline 2"}));
        let yaml = to_text(Format::Yaml, &doc).unwrap();
        assert!(yaml.contains("apiVersion: leger.run/v1alpha1"), "{yaml}");
        assert!(yaml.contains("kind: Pass"), "{yaml}");
        let back: Value = yaml_serde::from_str(&yaml).unwrap();
        assert_eq!(back, doc);
        let json = to_text(Format::Json, &doc).unwrap();
        assert_eq!(serde_json::from_str::<Value>(&json).unwrap(), doc);
    }

    #[test]
    fn print_read_picks_raw_document_or_human() {
        let raw = OutputArg {
            output: Format::Human,
            json: true,
        };
        assert_eq!(
            print_read(&raw, "PassList", "[]\n", |_| unreachable!()).unwrap(),
            "[]\n"
        );
        let yaml = OutputArg {
            output: Format::Yaml,
            json: false,
        };
        let text = print_read(&yaml, "PassList", "[]", |_| unreachable!()).unwrap();
        assert!(
            text.contains("kind: PassList") && text.contains("items: []"),
            "{text}"
        );
        let human = OutputArg {
            output: Format::Human,
            json: false,
        };
        assert!(human.human());
        assert_eq!(
            print_read(&human, "X", "[]", |b| Ok(format!("<{b}>"))).unwrap(),
            "<[]>"
        );
        assert!(print_read(&yaml, "X", "not json", |_| unreachable!()).is_err());
    }
}
