//! The settings an operator changes on a running node (`nextdb admin config`), by
//! name and value as text: parsed and range-checked once on the core that took the
//! request, then applied on every core by message (`ShardOp::Config`), each core to
//! what it owns (its `LiveSettings`, its engine's caches and background queue).
//!
//! Nothing is persisted: a restarted node starts again from its `serve` flags,
//! which are the defaults of every setting here.

use crate::config::{
    MAX_BACKGROUND_SHARES, MAX_BLOCK_CACHE_MB, MAX_ROW_CACHE_MB, MAX_SLOW_OP_MS,
    MIN_BACKGROUND_SHARES, MIN_BLOCK_CACHE_MB,
};
use crate::error::ShardError;
use crate::exec::ShardCore;
use nextdb_engine::fs::FileSystem;

/// One live setting. Names carry their unit; all sizes are per core.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Setting {
    /// Requests at least this slow are logged; 0 turns the log off.
    SlowOpMs,
    /// The slow-operation log shows a key's length and hash, not its bytes.
    SlowOpRedact,
    /// Each core's block cache budget, in MiB.
    BlockCacheMb,
    /// Each core's row cache budget, in MiB (0: keep no rows).
    RowCacheMb,
    /// Scheduler shares of each core's flush and compaction task queue (foreground
    /// queues have 1000).
    BackgroundShares,
}

/// Every setting, in the order a listing shows them.
pub const ALL: [Setting; 5] = [
    Setting::SlowOpMs,
    Setting::SlowOpRedact,
    Setting::BlockCacheMb,
    Setting::RowCacheMb,
    Setting::BackgroundShares,
];

/// A checked change: a setting and its value (a boolean as 0 or 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Change {
    pub setting: Setting,
    pub value: u64,
}

impl Setting {
    pub fn name(self) -> &'static str {
        match self {
            Setting::SlowOpMs => "slow_op_ms",
            Setting::SlowOpRedact => "slow_op_redact",
            Setting::BlockCacheMb => "block_cache_mb",
            Setting::RowCacheMb => "row_cache_mb",
            Setting::BackgroundShares => "background_shares",
        }
    }

    /// The setting called `name`; `UnknownSetting` lists the known ones.
    pub fn from_name(name: &str) -> Result<Setting, ShardError> {
        ALL.into_iter().find(|s| s.name() == name).ok_or_else(|| {
            let known: Vec<&str> = ALL.iter().map(|s| s.name()).collect();
            ShardError::UnknownSetting(format!("{name:?} (known: {})", known.join(", ")))
        })
    }

    /// The inclusive range of a numeric setting.
    fn range(self) -> (u64, u64) {
        match self {
            Setting::SlowOpMs => (0, MAX_SLOW_OP_MS),
            Setting::SlowOpRedact => (0, 1),
            Setting::BlockCacheMb => (MIN_BLOCK_CACHE_MB, MAX_BLOCK_CACHE_MB),
            Setting::RowCacheMb => (0, MAX_ROW_CACHE_MB),
            Setting::BackgroundShares => (MIN_BACKGROUND_SHARES, MAX_BACKGROUND_SHARES),
        }
    }

    /// Parses and range-checks `text` as this setting's value.
    pub fn parse(self, text: &str) -> Result<Change, ShardError> {
        let text = text.trim();
        let bad = |why: String| ShardError::InvalidArgument(format!("{}: {why}", self.name()));
        let value = if self == Setting::SlowOpRedact {
            match text {
                "true" => 1,
                "false" => 0,
                _ => return Err(bad(format!("{text:?} is not true or false"))),
            }
        } else {
            let v: u64 = text
                .parse()
                .map_err(|_| bad(format!("{text:?} is not a whole number")))?;
            let (lo, hi) = self.range();
            if !(lo..=hi).contains(&v) {
                return Err(bad(format!("{v} is outside {lo}..={hi}")));
            }
            v
        };
        Ok(Change {
            setting: self,
            value,
        })
    }
}

impl<F: FileSystem> ShardCore<F> {
    /// Applies a checked change to what this core owns.
    pub fn apply_setting(&self, c: Change) -> Result<(), ShardError> {
        match c.setting {
            Setting::SlowOpMs => self.live.set_slow_op_ms(c.value),
            Setting::SlowOpRedact => self.live.set_slow_op_redact(c.value != 0),
            Setting::BlockCacheMb => self.db.set_block_cache_bytes(mib(c.value)),
            Setting::RowCacheMb => self.db.set_row_cache_bytes(mib(c.value))?,
            Setting::BackgroundShares => self.db.set_background_shares(c.value as usize),
        }
        Ok(())
    }

    /// This core's value of every setting, as text, in `ALL` order.
    pub fn settings(&self) -> Vec<(Setting, String)> {
        ALL.into_iter().map(|s| (s, self.setting_text(s))).collect()
    }

    fn setting_text(&self, s: Setting) -> String {
        match s {
            Setting::SlowOpMs => self.live.slow_op_ms().to_string(),
            Setting::SlowOpRedact => self.live.slow_op_redact().to_string(),
            Setting::BlockCacheMb => (self.db.block_cache_bytes() >> 20).to_string(),
            Setting::RowCacheMb => match self.db.row_cache_bytes() {
                Some(b) => (b >> 20).to_string(),
                None => "off".to_string(),
            },
            Setting::BackgroundShares => self.db.background_shares().to_string(),
        }
    }
}

/// Bytes of `mb` MiB (the ranges keep it far below overflow).
fn mib(mb: u64) -> usize {
    (mb as usize) << 20
}

/// The node's view of every setting from each core's list (in shard order): a
/// setting's value where every core agrees, else each core's value, so a
/// disagreement is shown rather than hidden behind one core's answer.
pub fn merge(per_core: &[Vec<(Setting, String)>]) -> Vec<(String, String)> {
    ALL.into_iter()
        .map(|s| {
            let values: Vec<&str> = per_core
                .iter()
                .map(|core| {
                    core.iter()
                        .find(|(k, _)| *k == s)
                        .map_or("missing", |(_, v)| v.as_str())
                })
                .collect();
            let value = match values.split_first() {
                Some((first, rest)) if rest.iter().all(|v| v == first) => first.to_string(),
                _ => {
                    let each: Vec<String> = values
                        .iter()
                        .enumerate()
                        .map(|(core, v)| format!("core {core}: {v}"))
                        .collect();
                    format!("cores differ ({})", each.join(", "))
                }
            };
            (s.name().to_string(), value)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_names_are_refused() {
        for s in ALL {
            assert_eq!(Setting::from_name(s.name()), Ok(s));
        }
        assert!(matches!(
            Setting::from_name("block_cache"),
            Err(ShardError::UnknownSetting(_))
        ));
    }

    #[test]
    fn values_are_parsed_and_range_checked() {
        let ok = |s: Setting, t: &str| s.parse(t).map(|c| c.value);
        assert_eq!(ok(Setting::SlowOpMs, "0"), Ok(0));
        assert_eq!(ok(Setting::SlowOpMs, " 25 "), Ok(25));
        assert_eq!(ok(Setting::SlowOpRedact, "true"), Ok(1));
        assert_eq!(ok(Setting::SlowOpRedact, "false"), Ok(0));
        assert_eq!(ok(Setting::BlockCacheMb, "1"), Ok(1));
        for (s, t) in [
            (Setting::SlowOpMs, "-1"),
            (Setting::SlowOpMs, "ten"),
            (Setting::SlowOpRedact, "yes"),
            (Setting::BlockCacheMb, "0"),
            (Setting::BlockCacheMb, "99999999999"),
            (Setting::BackgroundShares, "0"),
            (Setting::BackgroundShares, "1001"),
            (Setting::SlowOpMs, &(MAX_SLOW_OP_MS + 1).to_string()),
        ] {
            assert!(
                matches!(s.parse(t), Err(ShardError::InvalidArgument(_))),
                "{s:?} {t}"
            );
        }
    }

    #[test]
    fn a_disagreement_between_cores_is_reported_not_hidden() {
        let core = |ms: &str| {
            ALL.into_iter()
                .map(|s| (s, if s == Setting::SlowOpMs { ms } else { "1" }.to_string()))
                .collect::<Vec<_>>()
        };
        let merged = merge(&[core("5"), core("5")]);
        assert_eq!(merged[0], ("slow_op_ms".to_string(), "5".to_string()));
        let merged = merge(&[core("5"), core("7")]);
        assert_eq!(merged[0].1, "cores differ (core 0: 5, core 1: 7)");
        assert_eq!(merged[1].1, "1");
    }
}
