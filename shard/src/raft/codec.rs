//! The bytes of the Raft glue's log records (`docs/formats.md`, Raft records). The
//! engine's log frames each record with (group, index, term) and a checksum; this
//! module owns only the payloads:
//!
//! - an entry record (log group `entries_log_group(partition)`, index and term of the
//!   entry): `entry_type u8 | context (varint length, bytes) | data (the rest)`;
//! - a state record (log group `state_log_group(partition)`, index = a counter per
//!   group, term = the hard state's term): `version u8 (=1) | term | vote | commit |
//!   log_start_index | log_start_term | voters | learners | voters_outgoing |
//!   learners_next | auto_leave u8`, integers as varints, each list as a varint count
//!   then varint ids. The last durable state record of a group wins.

use super::error::RaftError;
use nextdb_engine::codec::{self, Decoder};
use raft::prelude::{ConfState, Entry, EntryType, HardState};

const STATE_VERSION: u8 = 1;

/// Encodes entry `e`'s type, context and data (its index and term are the log
/// record's own).
pub fn encode_entry(out: &mut Vec<u8>, e: &Entry) {
    out.clear();
    out.reserve(1 + 5 + e.context.len() + e.data.len());
    codec::put_u8(out, e.entry_type as u8);
    codec::put_bytes(out, &e.context);
    out.extend_from_slice(&e.data);
}

/// Rebuilds entry (`index`, `term`) from its record payload.
pub fn decode_entry(group: u64, index: u64, term: u64, payload: &[u8]) -> Result<Entry, RaftError> {
    let corrupt = |reason: String| RaftError::Corrupt { group, reason };
    let mut d = Decoder::new(payload);
    let kind = d.u8().map_err(|e| corrupt(format!("entry {index}: {e}")))?;
    let entry_type = match kind {
        0 => EntryType::EntryNormal,
        1 => EntryType::EntryConfChange,
        2 => EntryType::EntryConfChangeV2,
        k => return Err(corrupt(format!("entry {index}: unknown entry type {k}"))),
    };
    let context = d
        .bytes()
        .map_err(|e| corrupt(format!("entry {index}: {e}")))?;
    let data = &payload[d.position()..];
    Ok(Entry {
        entry_type,
        index,
        term,
        context: context.to_vec().into(),
        data: data.to_vec().into(),
        ..Default::default()
    })
}

/// What a state record holds: the hard state, the configuration, and where the
/// group's log starts (the entry before the first one kept, and its term).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PersistedState {
    pub hard_state: HardState,
    pub conf_state: ConfState,
    pub log_start: (u64, u64),
}

fn put_ids(out: &mut Vec<u8>, ids: &[u64]) {
    codec::put_varint(out, ids.len() as u64);
    for &id in ids {
        codec::put_varint(out, id);
    }
}

pub fn encode_state(out: &mut Vec<u8>, s: &PersistedState) {
    out.clear();
    codec::put_u8(out, STATE_VERSION);
    for v in [
        s.hard_state.term,
        s.hard_state.vote,
        s.hard_state.commit,
        s.log_start.0,
        s.log_start.1,
    ] {
        codec::put_varint(out, v);
    }
    let cs = &s.conf_state;
    for ids in [
        &cs.voters,
        &cs.learners,
        &cs.voters_outgoing,
        &cs.learners_next,
    ] {
        put_ids(out, ids);
    }
    codec::put_u8(out, u8::from(cs.auto_leave));
}

fn ids(d: &mut Decoder<'_>) -> Result<Vec<u64>, codec::DecodeError> {
    let n = d.varint()?;
    // Each id takes at least one byte: a count above what is left is corrupt.
    if n > d.remaining() as u64 {
        return Err(codec::DecodeError::BadVarint);
    }
    (0..n).map(|_| d.varint()).collect()
}

pub fn decode_state(group: u64, payload: &[u8]) -> Result<PersistedState, RaftError> {
    let corrupt = |reason: String| RaftError::Corrupt { group, reason };
    let mut d = Decoder::new(payload);
    let inner = |d: &mut Decoder<'_>| -> Result<PersistedState, codec::DecodeError> {
        let hard_state = HardState {
            term: d.varint()?,
            vote: d.varint()?,
            commit: d.varint()?,
            ..Default::default()
        };
        let log_start = (d.varint()?, d.varint()?);
        let conf_state = ConfState {
            voters: ids(d)?,
            learners: ids(d)?,
            voters_outgoing: ids(d)?,
            learners_next: ids(d)?,
            auto_leave: d.u8()? != 0,
            ..Default::default()
        };
        Ok(PersistedState {
            hard_state,
            conf_state,
            log_start,
        })
    };
    let version = d.u8().map_err(|e| corrupt(format!("state record: {e}")))?;
    if version != STATE_VERSION {
        return Err(corrupt(format!("state record version {version}")));
    }
    let s = inner(&mut d).map_err(|e| corrupt(format!("state record: {e}")))?;
    if !d.is_empty() {
        return Err(corrupt(format!(
            "state record: {} trailing bytes",
            d.remaining()
        )));
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_and_states_round_trip_and_truncations_are_refused() {
        let e = Entry {
            entry_type: EntryType::EntryConfChangeV2,
            index: 7,
            term: 3,
            context: b"ctx".to_vec().into(),
            data: b"some data".to_vec().into(),
            ..Default::default()
        };
        let mut buf = Vec::new();
        encode_entry(&mut buf, &e);
        assert_eq!(decode_entry(1, 7, 3, &buf).unwrap(), e);
        assert!(decode_entry(1, 7, 3, &[]).is_err());
        assert!(decode_entry(1, 7, 3, &[9, 0]).is_err());

        let s = PersistedState {
            hard_state: HardState {
                term: 5,
                vote: 2,
                commit: 99,
                ..Default::default()
            },
            conf_state: ConfState {
                voters: vec![1, 2, 3],
                learners: vec![4],
                ..Default::default()
            },
            log_start: (40, 4),
        };
        encode_state(&mut buf, &s);
        assert_eq!(decode_state(2, &buf).unwrap(), s);
        for cut in 0..buf.len() {
            assert!(
                decode_state(2, &buf[..cut]).is_err(),
                "prefix of {cut} bytes"
            );
        }
        buf.push(0);
        assert!(decode_state(2, &buf).is_err());
    }
}
