//! The store's snapshot format: every key with its revisions, the idempotency table and the
//! applied revision, so a member restored from it continues exactly as if it had applied the
//! log up to that revision (§7).
//!
//! Format, version 1 (varints are canonical unsigned LEB128, see `codec`):
//!
//! ```text
//!   byte 0      version = 1
//!   varint      revision (last applied index)
//!   varint      clock_ms (the monotonic leader clock)
//!   varint      key_count
//!   key_count x varint key_len, key, varint value_len, value,
//!               varint create_revision, varint mod_revision      (keys strictly ascending)
//!   varint      record_count
//!   record_count x varint key_len (1..=128), key, 8 bytes fingerprint (u64 little-endian),
//!               varint stamp_ms, varint outcome_len, outcome (the `Outcome` format)
//!                                                               (stamps non-decreasing)
//!   end         no trailing bytes
//! ```
//!
//! The bytes are the same on every member that applied the same log. What this format does not
//! protect: it has no checksum (the snapshot file around it carries the CRC) and does not hold
//! the `StoreConfig` (every member takes it from the spec). `restore` checks the structure and
//! the revision invariants, so a snapshot that passes them is a consistent store.

use super::codec::{DecodeError, Reader, put_bytes, put_u64_le, put_varint};
use super::command::{IDEMPOTENCY_KEY_BYTES_MAX, Outcome};
use super::idempotency::{IdempotencyTable, Record};
use super::store::{Slot, Store, StoreConfig};

const SNAPSHOT_VERSION: u8 = 1;
/// The smallest encoding of one key (empty key and value, one-byte revisions): bounds the
/// key count a snapshot of a given size can claim.
const KEY_BYTES_MIN: usize = 4;
/// The smallest encoding of one idempotency record.
const RECORD_BYTES_MIN: usize = 13;

impl Store {
    /// The version-1 snapshot of the whole state (see the module docs).
    pub fn snapshot_bytes(&self) -> Vec<u8> {
        let raw: usize = self
            .keys
            .iter()
            .map(|(k, s)| k.len() + s.value.len() + 16)
            .sum();
        let mut out = Vec::with_capacity(32 + raw + self.idempotency.bytes() as usize);
        out.push(SNAPSHOT_VERSION);
        put_varint(&mut out, self.revision);
        put_varint(&mut out, self.clock_ms);
        put_varint(&mut out, self.keys.len() as u64);
        for (key, slot) in &self.keys {
            put_bytes(&mut out, key);
            put_bytes(&mut out, &slot.value);
            put_varint(&mut out, slot.create_revision);
            put_varint(&mut out, slot.mod_revision);
        }
        let records: Vec<_> = self.idempotency.iter_in_order().collect();
        put_varint(&mut out, records.len() as u64);
        for (key, record) in records {
            put_bytes(&mut out, key);
            put_u64_le(&mut out, record.fingerprint);
            put_varint(&mut out, record.stamp_ms);
            put_bytes(&mut out, &record.outcome);
        }
        out
    }

    /// A store from a snapshot, with the default `StoreConfig`.
    pub fn restore(data: &[u8]) -> Result<Store, DecodeError> {
        Store::restore_with(StoreConfig::default(), data)
    }

    /// A store from a snapshot (untrusted bytes: never panics), with the given config.
    pub fn restore_with(config: StoreConfig, data: &[u8]) -> Result<Store, DecodeError> {
        let mut r = Reader::new(data);
        let version = r.u8("snapshot version")?;
        if version != SNAPSHOT_VERSION {
            return Err(DecodeError::UnknownVersion {
                what: "snapshot",
                version,
            });
        }
        let mut store = Store::new(config);
        store.revision = r.varint("snapshot revision")?;
        store.clock_ms = r.varint("snapshot clock_ms")?;
        restore_keys(&mut store, &mut r)?;
        store.idempotency = restore_records(&mut r, store.clock_ms)?;
        r.finish()?;
        Ok(store)
    }
}

fn restore_keys(store: &mut Store, r: &mut Reader<'_>) -> Result<(), DecodeError> {
    let count = r.count("snapshot key count", KEY_BYTES_MIN)?;
    let mut last: Option<&[u8]> = None;
    for _ in 0..count {
        let key = r.bytes("snapshot key")?;
        if last.is_some_and(|l| l >= key) {
            return Err(DecodeError::Invalid("snapshot keys out of order"));
        }
        last = Some(key);
        let value = r.bytes("snapshot value")?;
        let create_revision = r.varint("create_revision")?;
        let mod_revision = r.varint("mod_revision")?;
        if create_revision == 0 || create_revision > mod_revision || mod_revision > store.revision {
            return Err(DecodeError::Invalid("snapshot key revisions"));
        }
        let slot = Slot {
            value: value.into(),
            create_revision,
            mod_revision,
        };
        store.keys.insert(key.into(), slot);
    }
    Ok(())
}

fn restore_records(r: &mut Reader<'_>, clock_ms: u64) -> Result<IdempotencyTable, DecodeError> {
    let count = r.count("snapshot record count", RECORD_BYTES_MIN)?;
    let mut table = IdempotencyTable::default();
    for _ in 0..count {
        let key = r.bytes("idempotency key")?;
        if key.is_empty() || key.len() > IDEMPOTENCY_KEY_BYTES_MAX {
            return Err(DecodeError::Invalid("idempotency key length"));
        }
        let fingerprint = r.u64_le("idempotency fingerprint")?;
        let stamp_ms = r.varint("idempotency stamp_ms")?;
        let outcome = r.bytes("idempotency outcome")?;
        Outcome::decode(outcome)?;
        if stamp_ms > clock_ms {
            return Err(DecodeError::Invalid("idempotency stamp after the clock"));
        }
        let record = Record {
            fingerprint,
            outcome: outcome.into(),
            stamp_ms,
        };
        if !table.push_restored(key, record) {
            return Err(DecodeError::Invalid(
                "idempotency records out of order or repeated",
            ));
        }
    }
    Ok(table)
}
