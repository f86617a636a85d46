//! `/metrics` in the Prometheus text format: API request counts and latencies by route and
//! status code, forwarded requests, and Raft gauges read from the node's status at scrape time.
//!
//! Cardinality is bounded: `route` is one of the fixed names in `router::route_label` and
//! `code` a status code, so no client input can create new series.

use std::time::Duration;

use hyper::header::{self, HeaderValue};
use hyper::{Response, StatusCode};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use super::error::{Body, full};
use super::info::role_name;
use crate::node::handle::Status;
use crate::raft::Role;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: &'static str,
    code: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RoleLabels {
    role: &'static str,
}

type LatencyFamily = Family<RouteLabels, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    // 100 µs .. ~3.3 s, doubling.
    Histogram::new(exponential_buckets(0.0001, 2.0, 16))
}

pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: LatencyFamily,
    pub forwarded: Counter,
    term: Gauge,
    commit_index: Gauge,
    applied_index: Gauge,
    last_log_index: Gauge,
    role: Family<RoleLabels, Gauge>,
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("rocinante");
        let requests = Family::<RequestLabels, Counter>::default();
        let latency = LatencyFamily::new_with_constructor(latency_histogram);
        let forwarded = Counter::default();
        let (term, commit_index, applied_index, last_log_index) = (
            Gauge::default(),
            Gauge::default(),
            Gauge::default(),
            Gauge::default(),
        );
        let role = Family::<RoleLabels, Gauge>::default();
        registry.register("api_requests", "HTTP requests answered", requests.clone());
        registry.register(
            "api_request_duration_seconds",
            "Time to answer an HTTP request",
            latency.clone(),
        );
        registry.register(
            "api_forwarded",
            "Requests proxied to the leader",
            forwarded.clone(),
        );
        registry.register("raft_term", "Current term", term.clone());
        registry.register(
            "raft_commit_index",
            "Highest index known committed",
            commit_index.clone(),
        );
        registry.register(
            "raft_applied_index",
            "Highest index applied",
            applied_index.clone(),
        );
        registry.register(
            "raft_last_log_index",
            "Last index in the log",
            last_log_index.clone(),
        );
        registry.register("raft_role", "1 for this node's current role", role.clone());
        Metrics {
            registry,
            requests,
            latency,
            forwarded,
            term,
            commit_index,
            applied_index,
            last_log_index,
            role,
        }
    }

    pub fn observe(&self, route: &'static str, code: u16, elapsed: Duration) {
        self.requests
            .get_or_create(&RequestLabels { route, code })
            .inc();
        self.latency
            .get_or_create(&RouteLabels { route })
            .observe(elapsed.as_secs_f64());
    }

    /// Refresh the Raft gauges from `status` and encode everything.
    pub fn render(&self, status: &Status) -> Response<Body> {
        let gauge = |g: &Gauge, v: u64| g.set(i64::try_from(v).unwrap_or(i64::MAX));
        gauge(&self.term, status.term.0);
        gauge(&self.commit_index, status.commit_index.0);
        gauge(&self.applied_index, status.applied_index.0);
        gauge(&self.last_log_index, status.last_log_index.0);
        for role in [Role::Leader, Role::Follower, Role::Candidate, Role::Learner] {
            let name = role_name(role);
            let on = role_name(status.role) == name;
            self.role
                .get_or_create(&RoleLabels { role: name })
                .set(i64::from(on));
        }
        let mut text = String::new();
        match prometheus_client::encoding::text::encode(&mut text, &self.registry) {
            Ok(()) => {
                let mut r = Response::new(full(text));
                r.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static(
                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    ),
                );
                r
            }
            Err(_) => {
                let mut r = Response::new(full("metrics encoding failed\n"));
                *r.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
                r
            }
        }
    }
}
