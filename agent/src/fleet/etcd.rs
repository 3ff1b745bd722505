//! Restart slots kept in etcd directly, with airlock's layout and semantics, for fleets
//! that already run etcd and want no FleetLock server.
//!
//! One key per group, `com.coreos.airlock/groups/<group>/v1/semaphore`, holds
//! `{"total_slots":N,"holders":[ids…]}`. It is created if missing (a transaction on
//! version 0), read, changed and written back in a transaction that compares the
//! version it read, so two hosts racing for the last slot cannot both win. A host that
//! already holds a slot gets it again (re-entrant), as with airlock.
//!
//! etcd is spoken through its v3 JSON gateway (`/v3/kv/range`, `/v3/kv/txn`) with
//! reqwest: the gRPC client crates would add tonic and prost to legerd for two calls.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::fleetlock::error_chain;
use super::lock::{LockError, REQUEST_TIMEOUT};

/// The semaphore document, as airlock writes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Semaphore {
    /// How many hosts of the group may hold a slot at once.
    pub total_slots: u64,
    /// Who holds one, sorted.
    pub holders: Vec<String>,
}

impl Semaphore {
    /// Adds `id` unless it already holds a slot; `Err` when every slot is taken.
    /// Returns whether the document changed.
    pub fn lock(&mut self, id: &str) -> Result<bool, String> {
        match self.holders.binary_search_by(|h| h.as_str().cmp(id)) {
            Ok(_) => Ok(false),
            Err(_) if self.holders.len() as u64 >= self.total_slots => Err(format!(
                "all {} semaphore slots currently locked (holders: {})",
                self.total_slots,
                self.holders.join(", ")
            )),
            Err(at) => {
                self.holders.insert(at, id.to_owned());
                Ok(true)
            }
        }
    }

    /// Removes `id` if it holds a slot; returns whether the document changed.
    pub fn unlock(&mut self, id: &str) -> bool {
        let before = self.holders.len();
        self.holders.retain(|h| h != id);
        self.holders.len() != before
    }
}

/// The semaphore of one group in one etcd cluster, used by one host.
#[derive(Debug, Clone)]
pub struct EtcdSemaphore {
    endpoints: Vec<String>,
    key: String,
    slots: u64,
    id: String,
    http: reqwest::Client,
}

/// How often a lost race for the key is retried within one request.
const CONFLICT_RETRIES: usize = 5;

#[derive(Deserialize)]
struct RangeResponse {
    #[serde(default)]
    kvs: Vec<KeyValue>,
}

#[derive(Deserialize)]
struct KeyValue {
    #[serde(default)]
    value: String,
    /// int64 as a string in the gateway's JSON; omitted when 0.
    #[serde(default)]
    version: Option<String>,
}

#[derive(Deserialize)]
struct TxnResponse {
    /// Omitted when false (proto3 JSON).
    #[serde(default)]
    succeeded: bool,
}

impl EtcdSemaphore {
    /// The semaphore of `group` on `endpoints`, created with `slots` slots if missing.
    pub fn new(endpoints: Vec<String>, group: &str, slots: u32, id: &str) -> Self {
        let http = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .connect_timeout(REQUEST_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("a plain reqwest client always builds");
        EtcdSemaphore {
            endpoints,
            key: format!("com.coreos.airlock/groups/{group}/v1/semaphore"),
            slots: u64::from(slots),
            id: id.to_owned(),
            http,
        }
    }

    /// `etcd <endpoints> key <key>`.
    pub fn describe(&self) -> String {
        format!("etcd {} key {}", self.endpoints.join(","), self.key)
    }

    /// Takes a slot for this host.
    pub async fn lock(&self) -> Result<(), LockError> {
        let id = self.id.clone();
        self.update(move |s| {
            s.lock(&id).map_err(|value| LockError::Refused {
                service: String::new(),
                kind: "failed_lock".into(),
                value,
            })
        })
        .await
    }

    /// Gives this host's slot back.
    pub async fn unlock(&self) -> Result<(), LockError> {
        let id = self.id.clone();
        self.update(move |s| Ok(s.unlock(&id))).await
    }

    /// The current document, for tests and `legerctl`-side inspection.
    pub async fn read(&self) -> Result<Semaphore, LockError> {
        self.ensure().await?;
        self.get().await.map(|(s, _)| s)
    }

    async fn update(
        &self,
        change: impl Fn(&mut Semaphore) -> Result<bool, LockError>,
    ) -> Result<(), LockError> {
        self.ensure().await?;
        for _ in 0..CONFLICT_RETRIES {
            let (mut sem, version) = self.get().await?;
            let changed = change(&mut sem).map_err(|e| match e {
                LockError::Refused { kind, value, .. } => LockError::Refused {
                    service: self.describe(),
                    kind,
                    value,
                },
                other => other,
            })?;
            if !changed {
                return Ok(());
            }
            let value = serde_json::to_string(&sem).expect("a semaphore serializes");
            if self.put_if_version(&value, version).await? {
                return Ok(());
            }
        }
        Err(LockError::Unreachable {
            service: self.describe(),
            reason: format!("the key kept changing under {CONFLICT_RETRIES} attempts"),
        })
    }

    /// Creates the key with every slot free if it does not exist (version 0).
    async fn ensure(&self) -> Result<(), LockError> {
        let init = Semaphore {
            total_slots: self.slots,
            holders: Vec::new(),
        };
        let value = serde_json::to_string(&init).expect("a semaphore serializes");
        self.put_if_version(&value, 0).await.map(|_| ())
    }

    async fn get(&self) -> Result<(Semaphore, i64), LockError> {
        let r: RangeResponse = self
            .post("/v3/kv/range", json!({ "key": B64.encode(&self.key) }))
            .await?;
        let kv = r.kvs.into_iter().next().ok_or_else(|| {
            self.protocol("the semaphore key is missing right after it was created")
        })?;
        let version: i64 = kv
            .version
            .as_deref()
            .unwrap_or("0")
            .parse()
            .map_err(|_| self.protocol("the key's version is not a number"))?;
        let bytes = B64
            .decode(kv.value)
            .map_err(|_| self.protocol("the key's value is not base64"))?;
        let sem: Semaphore = serde_json::from_slice(&bytes).map_err(|e| {
            self.protocol(&format!(
                "the semaphore is not airlock's {{\"total_slots\",\"holders\"}} document ({e})"
            ))
        })?;
        Ok((sem, version))
    }

    async fn put_if_version(&self, value: &str, version: i64) -> Result<bool, LockError> {
        let key = B64.encode(&self.key);
        let body = json!({
            "compare": [{
                "key": key,
                "result": "EQUAL",
                "target": "VERSION",
                "version": version.to_string(),
            }],
            "success": [{ "request_put": { "key": key, "value": B64.encode(value) } }],
        });
        let r: TxnResponse = self.post("/v3/kv/txn", body).await?;
        Ok(r.succeeded)
    }

    /// POSTs to the first endpoint that answers.
    async fn post<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        body: serde_json::Value,
    ) -> Result<T, LockError> {
        let mut last = String::from("no endpoints");
        for endpoint in &self.endpoints {
            let response = match self
                .http
                .post(format!("{endpoint}{path}"))
                .json(&body)
                .send()
                .await
            {
                Ok(r) => r,
                Err(e) => {
                    last = format!("{endpoint}: {}", error_chain(&e));
                    continue;
                }
            };
            let status = response.status();
            let bytes = response.bytes().await.map_err(|e| LockError::Unreachable {
                service: self.describe(),
                reason: error_chain(&e),
            })?;
            if !status.is_success() {
                if status.is_server_error() {
                    last = format!("{endpoint}: HTTP {status}");
                    continue;
                }
                return Err(self.protocol(&format!(
                    "{endpoint}{path} answered HTTP {status}: {}",
                    String::from_utf8_lossy(&bytes[..bytes.len().min(120)])
                )));
            }
            return serde_json::from_slice(&bytes).map_err(|e| {
                self.protocol(&format!(
                    "{endpoint}{path} answered something else than etcd's JSON ({e})"
                ))
            });
        }
        Err(LockError::Unreachable {
            service: self.describe(),
            reason: last,
        })
    }

    fn protocol(&self, problem: &str) -> LockError {
        LockError::Protocol {
            service: self.describe(),
            protocol: "etcd v3 JSON gateway",
            problem: problem.to_owned(),
            hint: "check fleet.lock.etcd (each entry must be an etcd v3 client URL, e.g. http://10.0.0.1:2379)",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etcd_semaphore_is_reentrant_and_bounded() {
        let mut s = Semaphore {
            total_slots: 1,
            holders: vec![],
        };
        assert_eq!(s.lock("b"), Ok(true));
        assert_eq!(s.lock("b"), Ok(false), "the holder asks again");
        assert!(s.lock("a").unwrap_err().contains("all 1 semaphore slots"));
        assert!(s.unlock("b"));
        assert!(!s.unlock("b"));
        s.total_slots = 2;
        s.lock("c").unwrap();
        s.lock("a").unwrap();
        assert_eq!(s.holders, ["a", "c"]);
        assert_eq!(
            serde_json::to_string(&s).unwrap(),
            r#"{"total_slots":2,"holders":["a","c"]}"#
        );
    }
}
