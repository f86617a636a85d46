//! The YAML shape of a spec, as serde deserializes it; `mod.rs` turns these raw values into a
//! validated `ClusterSpec`. Checks that serde_yaml can locate (ranges, duplicates, empty lists)
//! happen inside visitors, because serde_yaml attaches the position of the value being visited
//! to errors raised there.

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;

use serde::Deserialize;
use serde::de::{self, DeserializeSeed, Deserializer, SeqAccess, Visitor};

use super::{Controller, Fsync, fnv1a_64};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRoot {
    pub(super) artifact: RawArtifact,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawArtifact {
    #[serde(rename = "cleanupOnFailure")]
    pub(super) cleanup_on_failure: Option<bool>,
    pub(super) cluster: RawCluster,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCluster {
    pub(super) name: Name,
    pub(super) controllers: Controllers,
    pub(super) data_dir: Option<PathBuf>,
    pub(super) election_timeout_ms: Option<Pair<1, 600_000>>,
    pub(super) heartbeat_ms: Option<Bounded<1, 60_000>>,
    pub(super) snapshot_threshold: Option<Bounded<1, 1_000_000_000>>,
    pub(super) wal_segment_bytes: Option<Bounded<65_536, { 4 * 1024 * 1024 * 1024 }>>,
    pub(super) max_value_bytes: Option<Bounded<1, { 64 * 1024 * 1024 }>>,
    pub(super) request_timeout_ms: Option<Bounded<1, 3_600_000>>,
    pub(super) idempotency_window_s: Option<Bounded<1, 604_800>>,
    pub(super) flow_ttl_s: Option<RawFlowTtl>,
    pub(super) fsync: Option<Fsync>,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFlowTtl {
    pub(super) tcp: Option<Bounded<1, 31_536_000>>,
    pub(super) udp: Option<Bounded<1, 31_536_000>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawController {
    pub(super) address: Name,
    pub(super) port: Bounded<1, 65_535>,
    pub(super) rest: Bounded<1, 65_535>,
    pub(super) metric: Option<String>,
    pub(super) wwwroot: Option<PathBuf>,
    pub(super) data_dir: Option<PathBuf>,
}

impl RawController {
    pub(super) fn into_controller(self) -> Controller {
        // Bounded<1, 65_535> guarantees the ports fit.
        Controller {
            address: self.address.0,
            port: u16::try_from(self.port.0).unwrap_or(u16::MAX),
            rest: u16::try_from(self.rest.0).unwrap_or(u16::MAX),
            metric: self.metric,
            wwwroot: self.wwwroot,
            data_dir: self.data_dir,
        }
    }
}

/// An integer in MIN..=MAX, checked while visiting so the error carries the value's line.
pub(super) struct Bounded<const MIN: u64, const MAX: u64>(pub(super) u64);

impl<'de, const MIN: u64, const MAX: u64> Deserialize<'de> for Bounded<MIN, MAX> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<const MIN: u64, const MAX: u64>;
        impl<const MIN: u64, const MAX: u64> Visitor<'_> for V<MIN, MAX> {
            type Value = Bounded<MIN, MAX>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "an integer in {MIN}..={MAX}")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                if (MIN..=MAX).contains(&v) {
                    Ok(Bounded(v))
                } else {
                    Err(E::custom(format!("{v} is out of range {MIN}..={MAX}")))
                }
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                Err(E::custom(format!("{v} is out of range {MIN}..={MAX}")))
            }
        }
        d.deserialize_u64(V::<MIN, MAX>)
    }
}

/// `[MIN, MAX]`: two integers, each in LO..=HI (their order is checked across fields).
pub(super) struct Pair<const LO: u64, const HI: u64> {
    pub(super) min: u64,
    pub(super) max: u64,
}

impl<'de, const LO: u64, const HI: u64> Deserialize<'de> for Pair<LO, HI> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<const LO: u64, const HI: u64>;
        impl<'de, const LO: u64, const HI: u64> Visitor<'de> for V<LO, HI> {
            type Value = Pair<LO, HI>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a list of two integers [min, max]")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let min: Bounded<LO, HI> = seq
                    .next_element()?
                    .ok_or_else(|| de::Error::invalid_length(0, &self))?;
                let max: Bounded<LO, HI> = seq
                    .next_element()?
                    .ok_or_else(|| de::Error::invalid_length(1, &self))?;
                if seq.next_element::<de::IgnoredAny>()?.is_some() {
                    return Err(de::Error::invalid_length(3, &self));
                }
                if min.0 >= max.0 {
                    return Err(de::Error::custom(format!(
                        "min {} must be below max {}",
                        min.0, max.0
                    )));
                }
                Ok(Pair {
                    min: min.0,
                    max: max.0,
                })
            }
        }
        d.deserialize_seq(V::<LO, HI>)
    }
}

/// A non-empty string without whitespace (a cluster name, an address).
pub(super) struct Name(pub(super) String);

impl<'de> Deserialize<'de> for Name {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Name;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a non-empty string without whitespace")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Name, E> {
                if v.is_empty() || v.chars().any(char::is_whitespace) {
                    return Err(E::custom(format!(
                        "{v:?} must be non-empty, without whitespace"
                    )));
                }
                Ok(Name(v.to_string()))
            }
        }
        d.deserialize_str(V)
    }
}

/// The controller list: non-empty, and no endpoint (`address:port` or `address:rest`) or node
/// id used twice. Each element is checked inside its own visit so the error has its line.
pub(super) struct Controllers(pub(super) Vec<RawController>);

impl<'de> Deserialize<'de> for Controllers {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Controllers;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a non-empty list of controllers")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Controllers, A::Error> {
                let mut seen = Seen::default();
                let mut list = Vec::new();
                while let Some(c) = seq.next_element_seed(ControllerSeed {
                    seen: &mut seen,
                    index: list.len(),
                })? {
                    list.push(c);
                }
                if list.is_empty() {
                    return Err(de::Error::custom("the controller list is empty"));
                }
                Ok(Controllers(list))
            }
        }
        d.deserialize_seq(V)
    }
}

/// What earlier controllers used: endpoint -> (1-based controller number, what it was).
#[derive(Default)]
pub(super) struct Seen {
    pub(super) endpoints: HashMap<String, (usize, &'static str)>,
    pub(super) ids: HashMap<u64, usize>,
}

pub(super) struct ControllerSeed<'a> {
    pub(super) seen: &'a mut Seen,
    /// 0-based position in the list.
    pub(super) index: usize,
}

impl<'de> DeserializeSeed<'de> for ControllerSeed<'_> {
    type Value = RawController;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<RawController, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for ControllerSeed<'_> {
    type Value = RawController;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a controller {address, port, rest, metric?, wwwroot?, data_dir?}")
    }
    fn visit_map<A: de::MapAccess<'de>>(self, map: A) -> Result<RawController, A::Error> {
        let c = RawController::deserialize(de::value::MapAccessDeserializer::new(map))?;
        let number = self.index + 1;
        for (port, what) in [(c.port.0, "port"), (c.rest.0, "rest")] {
            let endpoint = format!("{}:{}", c.address.0, port);
            if let Some((other, other_what)) = self.seen.endpoints.get(&endpoint) {
                let whose = if *other == number {
                    "its own".to_string()
                } else {
                    format!("controller {other}'s")
                };
                return Err(de::Error::custom(format!(
                    "controller {number}: duplicate address:port {endpoint} ({what} is also {whose} {other_what})"
                )));
            }
            self.seen.endpoints.insert(endpoint, (number, what));
        }
        let id = fnv1a_64(format!("{}:{}", c.address.0, c.port.0).as_bytes());
        if id == 0 || self.seen.ids.contains_key(&id) {
            return Err(de::Error::custom(format!(
                "controller {number}: node id {id:016x} is not unique"
            )));
        }
        self.seen.ids.insert(id, number);
        Ok(c)
    }
}
