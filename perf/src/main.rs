//! `nextdb-perf` without the RocksDB crate (`nextdb-perf-rocksdb` adds it).

fn main() {
    nextdb_perf::main_with(None);
}
