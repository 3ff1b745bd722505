//! The FleetLock protocol client (zincati's, spoken by airlock and fleetlock):
//! `POST {url}/v1/pre-reboot` takes a slot, `POST {url}/v1/steady-state` gives it
//! back, both with the header `fleet-lock-protocol: true` and the body
//! `{"client_params":{"id":…,"group":…}}`. 200 means yes; an error is a 4xx/5xx with
//! `{"kind","value"}`.

use serde::{Deserialize, Serialize};

use super::lock::{LockError, REQUEST_TIMEOUT};

/// A client for one FleetLock server, one host id and one group.
#[derive(Debug, Clone)]
pub struct FleetLockClient {
    url: String,
    id: String,
    group: String,
    http: reqwest::Client,
}

/// The request body.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Request {
    /// `client_params`.
    pub client_params: ClientParams,
}

/// Who asks.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ClientParams {
    /// The node id (legerd sends its fleet host name).
    pub id: String,
    /// The lock group.
    pub group: String,
}

/// The body of an error answer.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ErrorBody {
    /// A machine-readable kind, e.g. `failed_lock`.
    pub kind: String,
    /// A human message.
    pub value: String,
}

impl FleetLockClient {
    /// A client for `url` (without a trailing slash).
    pub fn new(url: &str, id: &str, group: &str) -> Self {
        let http = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .connect_timeout(REQUEST_TIMEOUT)
            // A redirect is not an answer of the protocol; following one could turn a
            // login page's 200 into a go-ahead.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("a plain reqwest client always builds");
        FleetLockClient {
            url: url.trim_end_matches('/').to_owned(),
            id: id.to_owned(),
            group: group.to_owned(),
            http,
        }
    }

    /// The same server and group for another host id, sharing this client's HTTP
    /// connection pool. Why: a simulation of thousands of hosts in one process must
    /// not open a pool (and file descriptors) per host.
    pub fn for_host(&self, id: &str) -> Self {
        FleetLockClient {
            id: id.to_owned(),
            ..self.clone()
        }
    }

    /// `FleetLock server <url>`.
    pub fn describe(&self) -> String {
        format!("FleetLock server {}", self.url)
    }

    /// Asks for a slot.
    pub async fn pre_reboot(&self) -> Result<(), LockError> {
        self.call("pre-reboot").await
    }

    /// Gives the slot back.
    pub async fn steady_state(&self) -> Result<(), LockError> {
        self.call("steady-state").await
    }

    async fn call(&self, op: &str) -> Result<(), LockError> {
        let body = Request {
            client_params: ClientParams {
                id: self.id.clone(),
                group: self.group.clone(),
            },
        };
        let response = self
            .http
            .post(format!("{}/v1/{op}", self.url))
            .header("fleet-lock-protocol", "true")
            .json(&body)
            .send()
            .await
            .map_err(|e| LockError::Unreachable {
                service: self.describe(),
                reason: error_chain(&e),
            })?;
        let status = response.status();
        let bytes = response.bytes().await.map_err(|e| LockError::Unreachable {
            service: self.describe(),
            reason: error_chain(&e),
        })?;
        judge(&self.describe(), status.as_u16(), &bytes)
    }
}

/// Reads an answer: exactly 200 with an empty or JSON body is a yes; a 4xx/5xx with
/// `{kind,value}` is a refusal; everything else is a protocol error, never a yes. A 200
/// whose body is not JSON (a login page, a proxy's placeholder) is a web server that is
/// not a FleetLock server, so it must not let a restart through.
pub fn judge(service: &str, status: u16, body: &[u8]) -> Result<(), LockError> {
    let protocol = |problem: String| LockError::Protocol {
        service: service.to_owned(),
        protocol: "FleetLock",
        problem,
        hint: "check fleet.lock.url (it must point at a FleetLock server such as airlock)",
    };
    match status {
        200 if body.trim_ascii().is_empty()
            || serde_json::from_slice::<serde_json::Value>(body).is_ok() =>
        {
            Ok(())
        }
        200 => Err(protocol(format!(
            "HTTP 200 with a body that is not JSON (it starts {:?})",
            preview(body)
        ))),
        400..=599 => match serde_json::from_slice::<ErrorBody>(body) {
            Ok(e) => Err(LockError::Refused {
                service: service.to_owned(),
                kind: e.kind,
                value: e.value,
            }),
            Err(_) => Err(protocol(format!(
                "HTTP {status} without a {{\"kind\",\"value\"}} body (it starts {:?})",
                preview(body)
            ))),
        },
        other => Err(protocol(format!(
            "HTTP {other}; the protocol answers 200 or an error status"
        ))),
    }
}

fn preview(body: &[u8]) -> String {
    String::from_utf8_lossy(&body[..body.len().min(60)]).into_owned()
}

/// reqwest's error with its causes, which carry the useful part ("connection refused").
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fleetlock_judge_only_200_is_a_yes() {
        assert_eq!(judge("s", 200, b""), Ok(()));
        assert_eq!(judge("s", 200, b"{}\n"), Ok(()));
        let e = judge(
            "s",
            409,
            br#"{"kind":"failed_lock","value":"all 1 slots taken"}"#,
        );
        assert_eq!(
            e,
            Err(LockError::Refused {
                service: "s".into(),
                kind: "failed_lock".into(),
                value: "all 1 slots taken".into()
            })
        );
        for (status, body) in [
            (204, &b""[..]),
            (302, b""),
            (404, b"<html>not found</html>"),
            (500, b"{\"error\":\"x\"}"),
            (200, b"<html>Sign in</html>"),
            (409, b""),
            (409, b"{\"kind\":\"failed_lock\"}"),
            (503, b"Service Unavailable"),
        ] {
            let e = judge("s", status, body).unwrap_err();
            assert!(matches!(e, LockError::Protocol { .. }), "{status}: {e}");
            assert!(
                e.to_string()
                    .contains("did not answer in the FleetLock protocol")
            );
        }
    }

    #[test]
    fn fleetlock_request_body_is_the_protocols() {
        let body = Request {
            client_params: ClientParams {
                id: "web-03".into(),
                group: "default".into(),
            },
        };
        assert_eq!(
            serde_json::to_string(&body).unwrap(),
            r#"{"client_params":{"id":"web-03","group":"default"}}"#
        );
    }
}
