//! A Rust client for the REST API (API.md §3), used by the CLI. Give it any members' REST
//! addresses: it finds the leader itself (`GET /v1/leader` on any endpoint), sends requests
//! there, follows `307` redirects, and retries `503` (nothing applied) with bounded backoff.
//!
//! Retry safety: every write carries a fresh `Idempotency-Key`, reused by all of its retries,
//! so a write retried after a lost answer or a `504` (outcome unknown) is applied at most once
//! (the server replays the first answer). Limits: `RetryPolicy::attempts_max` tries per call,
//! `redirects_max` redirects followed per try, `answer_bytes_max` bytes of answer read.

mod encode;
mod http;

use std::time::Duration;

use bytes::Bytes;
use serde_json::Value;

pub use encode::encode_path;
use http::{Answer, Transport};

/// How hard the client tries before reporting a failure.
#[derive(Clone, Debug)]
pub struct RetryPolicy {
    /// Tries per call, the first included.
    pub attempts_max: u32,
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
    /// Bound on one HTTP exchange (connect, send, answer).
    pub request_timeout: Duration,
}

impl Default for RetryPolicy {
    fn default() -> RetryPolicy {
        RetryPolicy {
            attempts_max: 10,
            backoff_initial: Duration::from_millis(50),
            backoff_max: Duration::from_millis(1000),
            request_timeout: Duration::from_secs(8),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("not found")]
    NotFound,
    /// Compare-and-set lost: the key's current revision (0 = absent).
    #[error("revision mismatch: current revision is {current_revision}")]
    Conflict { current_revision: u64, body: Value },
    /// No leader or quorum after every retry: nothing was applied.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// The last try's outcome is unknown: the write may or may not be applied.
    #[error("timed out; the outcome is unknown")]
    Timeout,
    /// Any other error answer.
    #[error("{status} {code}: {message}")]
    Http {
        status: u16,
        code: String,
        message: String,
    },
    #[error("bad endpoint list: {0}")]
    BadEndpoints(String),
}

/// What `put` answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PutResult {
    pub revision: u64,
    pub prev_revision: Option<u64>,
}

/// A value with its revisions (from GET's headers).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GetResult {
    pub value: Bytes,
    pub revision: u64,
    pub create_revision: u64,
}

/// One listed key (already decoded from UTF-8 or base64).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListItem {
    pub key: Bytes,
    pub value: Bytes,
    pub revision: u64,
    pub create_revision: u64,
}

pub struct Client {
    transport: Transport,
    policy: RetryPolicy,
}

impl Client {
    /// `endpoints`: REST "host:port" of one or more members.
    pub fn new(endpoints: Vec<String>, policy: RetryPolicy) -> Result<Client, ClientError> {
        if endpoints.is_empty() {
            return Err(ClientError::BadEndpoints("no endpoints given".into()));
        }
        if let Some(bad) = endpoints.iter().find(|e| e.is_empty() || e.contains('/')) {
            return Err(ClientError::BadEndpoints(format!("not host:port: {bad:?}")));
        }
        Ok(Client {
            transport: Transport::new(endpoints, policy.request_timeout),
            policy,
        })
    }

    pub async fn put(
        &self,
        key: &[u8],
        value: Bytes,
        if_revision: Option<u64>,
    ) -> Result<PutResult, ClientError> {
        let target = with_if_revision(format!("/v1/kv/{}", encode_path(key)), if_revision);
        let a = self.call("PUT", &target, value, true).await?;
        let j = a.json()?;
        Ok(PutResult {
            revision: j["revision"].as_u64().unwrap_or(0),
            prev_revision: j["prev_revision"].as_u64(),
        })
    }

    /// The key's value, or `None` when it does not exist.
    pub async fn get(&self, key: &[u8]) -> Result<Option<GetResult>, ClientError> {
        let target = format!("/v1/kv/{}", encode_path(key));
        match self.call("GET", &target, Bytes::new(), false).await {
            Ok(a) => Ok(Some(GetResult {
                revision: a.header_u64("x-revision"),
                create_revision: a.header_u64("x-create-revision"),
                value: a.body,
            })),
            Err(ClientError::NotFound) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Delete a key; `Ok(true)` when it existed.
    pub async fn delete(&self, key: &[u8], if_revision: Option<u64>) -> Result<bool, ClientError> {
        let target = with_if_revision(format!("/v1/kv/{}", encode_path(key)), if_revision);
        let a = self.call("DELETE", &target, Bytes::new(), true).await?;
        Ok(a.json()?["deleted"].as_bool().unwrap_or(false))
    }

    /// One page of keys under `prefix`; the flag says whether more remain.
    pub async fn list(
        &self,
        prefix: &[u8],
        limit: usize,
        start_after: Option<&[u8]>,
    ) -> Result<(Vec<ListItem>, bool), ClientError> {
        let mut target = format!("/v1/kv?prefix={}&limit={limit}", encode_path(prefix));
        if let Some(after) = start_after {
            target.push_str(&format!("&start_after={}", encode_path(after)));
        }
        let j = self
            .call("GET", &target, Bytes::new(), false)
            .await?
            .json()?;
        let items = j["items"]
            .as_array()
            .map(|a| a.iter().filter_map(encode::list_item).collect());
        Ok((
            items.unwrap_or_default(),
            j["more"].as_bool().unwrap_or(false),
        ))
    }

    /// `/v1/status` of one member (not forwarded, no retries).
    pub async fn status_of(&self, endpoint: &str) -> Result<Value, ClientError> {
        let a = self
            .transport
            .send_to(endpoint, "GET", "/v1/status", Bytes::new(), None)
            .await?;
        if a.status != 200 {
            return Err(a.error());
        }
        a.json()
    }

    /// The endpoints this client was given.
    pub fn endpoints(&self) -> &[String] {
        self.transport.endpoints()
    }

    /// `POST /v1/members`: add `address:port` (REST on `rest`) as a learner, or as a voter
    /// (`voter`: added as a learner, promoted once caught up). Returns the answer's JSON
    /// (`id`, `members`). Catching up may take a while: give the client a long
    /// `request_timeout`.
    pub async fn add_member(
        &self,
        address: &str,
        port: u16,
        rest: u16,
        voter: bool,
    ) -> Result<Value, ClientError> {
        let body =
            serde_json::json!({"address": address, "port": port, "rest": rest, "voter": voter});
        let a = self
            .call("POST", "/v1/members", Bytes::from(body.to_string()), true)
            .await?;
        a.json()
    }

    /// `DELETE /v1/members/{id}` (`id`: 16 hex digits). Returns the answer's JSON (`members`).
    pub async fn remove_member(&self, id: &str) -> Result<Value, ClientError> {
        let target = format!("/v1/members/{id}");
        self.call("DELETE", &target, Bytes::new(), true)
            .await?
            .json()
    }

    /// `POST /v1/leader/transfer?to=ID`. Returns the answer's JSON (`leader`).
    pub async fn transfer_leader(&self, to: &str) -> Result<Value, ClientError> {
        let target = format!("/v1/leader/transfer?to={to}");
        self.call("POST", &target, Bytes::new(), true).await?.json()
    }

    /// One call with leader discovery and retries (see the module doc).
    async fn call(
        &self,
        method: &str,
        target: &str,
        body: Bytes,
        is_write: bool,
    ) -> Result<Answer, ClientError> {
        let idempotency_key = is_write.then(http::new_idempotency_key);
        let mut backoff = self.policy.backoff_initial;
        let mut last = ClientError::Unavailable("no attempt made".into());
        for _ in 0..self.policy.attempts_max.max(1) {
            let sent = self
                .transport
                .send_to_leader(method, target, body.clone(), idempotency_key.as_deref())
                .await;
            match sent {
                Ok(a) if a.status < 300 => return Ok(a),
                Ok(a) if a.status == 503 => {
                    self.transport.forget_leader();
                    last = a.error();
                }
                Ok(a) if a.status == 504 && is_write => last = a.error(),
                Ok(a) => return Err(a.error()),
                Err(e @ (ClientError::Unavailable(_) | ClientError::Timeout)) => {
                    self.transport.forget_leader();
                    last = e;
                }
                Err(e) => return Err(e),
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(self.policy.backoff_max);
        }
        Err(last)
    }
}

fn with_if_revision(mut target: String, if_revision: Option<u64>) -> String {
    if let Some(r) = if_revision {
        target.push_str(&format!("?if_revision={r}"));
    }
    target
}
