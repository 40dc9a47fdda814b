//! Debian's `db_bench` as the second peer: the same plan split into db_bench
//! processes (a new one wherever its flags change), each run inside the suite's
//! cpuset (it inherits the suite's cgroup). Debian builds it with assertions on; every
//! row says so (`"assertions": true`).

use super::nextdb::engine_config;
use super::{Setup, Step};
use crate::dbbench;
use crate::report::Measured;

pub struct PeerRun {
    /// One result per step, in plan order.
    pub results: Vec<Measured>,
    pub version: Option<String>,
    pub assertions_enabled: bool,
    /// The db_bench command lines, for the record.
    pub commands: Vec<String>,
}

/// db_bench flags shared by every process: the same data and the same options as
/// NextDB's configuration.
fn common_flags(s: &Setup) -> Vec<String> {
    let a = &s.args;
    let cfg = engine_config(a);
    vec![
        format!("--num={}", s.num),
        format!("--reads={}", s.reads),
        format!("--key_size={}", a.key_size),
        format!("--value_size={}", a.value_size),
        "--compression_ratio=0.5".into(),
        "--histogram=1".into(),
        "--compression_type=lz4".into(),
        format!("--bloom_bits={}", nextdb_engine::config::BLOOM_BITS_PER_KEY),
        format!("--block_size={}", nextdb_engine::config::DATA_BLOCK_BYTES),
        format!("--cache_size={}", a.cache_bytes),
        format!("--write_buffer_size={}", cfg.memtable_bytes),
        format!(
            "--max_write_buffer_number={}",
            cfg.max_immutable_memtables + 1
        ),
        format!(
            "--level0_file_num_compaction_trigger={}",
            cfg.l0_compaction_trigger
        ),
        format!(
            "--level0_slowdown_writes_trigger={}",
            cfg.l0_slowdown_trigger
        ),
        format!("--level0_stop_writes_trigger={}", cfg.l0_stop_trigger),
        format!("--max_bytes_for_level_base={}", cfg.level1_bytes),
        format!("--max_bytes_for_level_multiplier={}", cfg.level_multiplier),
        format!("--target_file_size_base={}", cfg.target_file_bytes),
        "--use_direct_reads=1".into(),
        "--use_direct_io_for_flush_and_compaction=1".into(),
        "--seek_nexts=0".into(),
    ]
}

/// The plan cut where db_bench needs a new process.
fn processes(steps: &[Step]) -> Vec<&[Step]> {
    let mut groups = Vec::new();
    let mut start = 0;
    for i in 1..=steps.len() {
        if i == steps.len() || steps[i].new_process {
            groups.push(&steps[start..i]);
            start = i;
        }
    }
    groups
}

/// The flags of process `g` running `group`, and the reports it will print in order
/// (`None` for a warm-up's readtocache).
fn process_flags(
    s: &Setup,
    g: usize,
    group: &[Step],
    rep: u64,
) -> (Vec<String>, Vec<Option<&'static str>>) {
    let a = &s.args;
    let mut list = Vec::new();
    let mut expect = Vec::new();
    for st in group {
        if st.warmup {
            list.extend(["flush", "waitforcompaction", "readtocache"]);
            expect.push(None);
        }
        list.push(st.bench.name());
        expect.push(Some(st.bench.name()));
    }
    let mut flags = common_flags(s);
    // db_bench seeds the n-th thread of a process with seed + n: without a new base
    // per process, readrandom in a later process would replay fillrandom's keys.
    flags.push(format!(
        "--seed={}",
        a.seed.wrapping_add(1000 * g as u64 + 100_000 * rep)
    ));
    flags.push(format!("--benchmarks={}", list.join(",")));
    flags.push(format!(
        "--use_existing_db={}",
        u8::from(!group[0].bench.is_fill())
    ));
    if group[0].bench.synced() {
        flags.push("--sync=1".into());
        flags.push(format!("--threads={}", a.sync_writers));
        flags.push(format!("--writes={}", s.sync_per_writer));
    } else {
        flags.extend(["--sync=0".into(), "--threads=1".into()]);
    }
    (flags, expect)
}

pub fn run(s: &Setup, rep: u64) -> Result<PeerRun, String> {
    let a = &s.args;
    let dir = a.dir.join("rocksdb-db_bench");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut run = PeerRun {
        results: Vec::new(),
        version: None,
        assertions_enabled: false,
        commands: Vec::new(),
    };
    for (g, group) in processes(&s.steps).into_iter().enumerate() {
        let (flags, expect) = process_flags(s, g, group, rep);
        run.commands.push(format!(
            "db_bench --db={} {}",
            dir.display(),
            flags.join(" ")
        ));
        let cpu = crate::cpu::CpuMeter::start();
        let out = dbbench::run(&dir, &flags)?;
        let cpu = cpu.stop();
        run.version = run.version.or(out.version);
        run.assertions_enabled |= out.assertions_enabled;
        if out.reports.len() != expect.len() {
            return Err(format!(
                "db_bench reported {} benchmarks, expected {}",
                out.reports.len(),
                expect.len()
            ));
        }
        for (r, e) in out.reports.into_iter().zip(expect) {
            match e {
                None if r.name == "readtocache" => {}
                Some(name) if r.name == name => {
                    let mut m = r.measured;
                    m.curve_from_percentiles();
                    // One process covers several rows: its CPU use is the process's.
                    m.cpu = Some(cpu.clone());
                    super::report_line(name, &m);
                    run.results.push(m);
                }
                _ => {
                    return Err(format!(
                        "db_bench reported {:?} where {e:?} was expected",
                        r.name
                    ));
                }
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(run)
}
