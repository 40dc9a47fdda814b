//! The compaction picker: a pure function from a summary of the current version (files
//! per level with their sizes and key ranges), the configuration and the round-robin
//! compaction pointers to the level and input files of the next compaction.
//!
//! Pure so that every rule can be tested in a table without files or an executor;
//! `compaction` turns the pick into a job (adding overlapping files) and runs it.

use crate::config::{EngineConfig, NUM_LEVELS};

/// One table as the picker sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct FileSummary<'a> {
    pub(super) bytes: u64,
    /// Largest user key of the file.
    pub(super) largest: &'a [u8],
}

/// The next compaction: `level` and the indexes (in that level's order) of its inputs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Pick {
    pub(super) level: usize,
    pub(super) inputs: Vec<usize>,
}

/// Picks the level whose score is highest and at least 1 (L0: files over
/// `l0_compaction_trigger`; deeper levels: bytes over their target; the last level
/// never compacts), ties going to the shallower level. L0 compacts all its files (they
/// overlap); a deeper level compacts one file: the first whose largest user key is past
/// the level's pointer (the largest key it last compacted), wrapping to the first.
pub(super) fn pick(
    levels: &[Vec<FileSummary<'_>>],
    cfg: &EngineConfig,
    compact_pointer: &[Option<Vec<u8>>],
) -> Option<Pick> {
    assert_eq!(levels.len(), NUM_LEVELS, "one summary per level");
    let mut best: Option<(usize, f64)> = None;
    let l0_score = levels[0].len() as f64 / cfg.l0_compaction_trigger as f64;
    if l0_score >= 1.0 {
        best = Some((0, l0_score));
    }
    for (level, files) in levels.iter().enumerate().take(NUM_LEVELS - 1).skip(1) {
        let bytes: u64 = files.iter().map(|f| f.bytes).sum();
        let score = bytes as f64 / cfg.level_target_bytes(level) as f64;
        if score >= 1.0 && best.is_none_or(|(_, b)| score > b) {
            best = Some((level, score));
        }
    }
    let (level, _) = best?;
    let files = &levels[level];
    if level == 0 {
        return Some(Pick {
            level,
            inputs: (0..files.len()).collect(),
        });
    }
    let after = compact_pointer.get(level).and_then(|p| p.as_deref());
    let index = files
        .iter()
        .position(|f| after.is_none_or(|p| f.largest > p))
        .unwrap_or(0);
    Some(Pick {
        level,
        inputs: vec![index],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> EngineConfig {
        EngineConfig {
            l0_compaction_trigger: 4,
            level1_bytes: 100,
            level_multiplier: 10,
            ..EngineConfig::default()
        }
    }

    /// A level described as `(bytes, largest key)` per file.
    type Level = &'static [(u64, &'static str)];

    struct Case {
        name: &'static str,
        levels: [Level; NUM_LEVELS],
        pointers: [Option<&'static str>; NUM_LEVELS],
        want: Option<(usize, &'static [usize])>,
    }

    const E: Level = &[];
    const NO: [Option<&str>; NUM_LEVELS] = [None; NUM_LEVELS];

    const CASES: &[Case] = &[
        Case {
            name: "empty tree",
            levels: [E; NUM_LEVELS],
            pointers: NO,
            want: None,
        },
        Case {
            name: "L0 below its trigger",
            levels: [&[(1, "a"), (1, "b"), (1, "c")], E, E, E, E, E, E],
            pointers: NO,
            want: None,
        },
        Case {
            name: "L0 at its trigger takes every L0 file",
            levels: [&[(1, "a"), (1, "b"), (1, "c"), (1, "d")], E, E, E, E, E, E],
            pointers: NO,
            want: Some((0, &[0, 1, 2, 3])),
        },
        Case {
            name: "L1 exactly at its target",
            levels: [E, &[(60, "m"), (40, "z")], E, E, E, E, E],
            pointers: NO,
            want: Some((1, &[0])),
        },
        Case {
            name: "L1 below its target",
            levels: [E, &[(60, "m"), (39, "z")], E, E, E, E, E],
            pointers: NO,
            want: None,
        },
        Case {
            name: "pointer moves past the last compacted key",
            levels: [E, &[(60, "f"), (60, "m"), (60, "z")], E, E, E, E, E],
            pointers: [None, Some("f"), None, None, None, None, None],
            want: Some((1, &[1])),
        },
        Case {
            name: "pointer past every file wraps to the first",
            levels: [E, &[(60, "f"), (60, "m")], E, E, E, E, E],
            pointers: [None, Some("zz"), None, None, None, None, None],
            want: Some((1, &[0])),
        },
        Case {
            name: "highest score wins: L2 at 3x over L0 at 1x",
            levels: [
                &[(1, "a"), (1, "b"), (1, "c"), (1, "d")],
                E,
                &[(3000, "k")],
                E,
                E,
                E,
                E,
            ],
            pointers: NO,
            want: Some((2, &[0])),
        },
        Case {
            name: "equal scores go to the shallower level",
            levels: [&[(1, "a"); 8], &[(200, "k")], E, E, E, E, E],
            pointers: NO,
            want: Some((0, &[0, 1, 2, 3, 4, 5, 6, 7])),
        },
        Case {
            name: "the last level never compacts",
            levels: [E, E, E, E, E, E, &[(u64::MAX / 2, "z")]],
            pointers: NO,
            want: None,
        },
        Case {
            name: "L5 over its target",
            levels: [E, E, E, E, E, &[(5_000_000, "q"), (5_000_001, "r")], E],
            pointers: NO,
            want: Some((5, &[0])),
        },
    ];

    #[test]
    fn picks_by_table() {
        let cfg = cfg();
        for c in CASES {
            let levels: Vec<Vec<FileSummary<'_>>> = c
                .levels
                .iter()
                .map(|l| {
                    l.iter()
                        .map(|&(bytes, k)| FileSummary {
                            bytes,
                            largest: k.as_bytes(),
                        })
                        .collect()
                })
                .collect();
            let pointers: Vec<Option<Vec<u8>>> = c
                .pointers
                .iter()
                .map(|p| p.map(|s| s.as_bytes().to_vec()))
                .collect();
            let got = pick(&levels, &cfg, &pointers);
            let want = c.want.map(|(level, inputs)| Pick {
                level,
                inputs: inputs.to_vec(),
            });
            assert_eq!(got, want, "case: {}", c.name);
        }
    }
}
