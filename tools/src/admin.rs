//! `nextdb admin`: node administration. `user add|remove|list` edit the users file of
//! a data directory (restart the node to apply); `stats`, `backup` and `config` ask a
//! running node; `restore` and `verify` work offline on directories (`backup.rs`).

use clap::{Args, Subcommand};
use nextdb_net::UserStore;
use nextdb_proto::limits::SCRAM_ITERATIONS;
use nextdb_proto::scram::Verifier;
use std::io::BufRead;
use std::path::PathBuf;

#[derive(Subcommand, Debug)]
pub enum AdminCmd {
    /// Manage the users a node authenticates (SCRAM-SHA-256 verifiers, no passwords).
    #[command(subcommand)]
    User(UserCmd),
    /// Per-shard counters and latency percentiles of a running node.
    Stats(crate::kv::ConnArgs),
    /// Online backup of a running node into a directory on the node's machine.
    Backup(crate::backup::BackupArgs),
    /// Rebuilds a data directory from a backup, optionally rolled forward through
    /// the log archive to a moment (offline).
    Restore(crate::backup::RestoreArgs),
    /// Checks every checksum of a data directory or a backup (exit code 1 on damage).
    Verify(crate::backup::VerifyArgs),
    /// Reads or changes a running node's live settings (a change lasts until the
    /// node restarts).
    #[command(subcommand)]
    Config(crate::config::ConfigCmd),
}

#[derive(Subcommand, Debug)]
pub enum UserCmd {
    /// Adds a user or replaces its password (from NEXTDB_PASSWORD or standard input).
    Add(UserArgs),
    /// Removes a user.
    Remove(UserArgs),
    /// Lists users.
    List {
        #[arg(long, env = "NEXTDB_DATA_DIR", default_value = crate::serve::DEFAULT_DATA_DIR)]
        data_dir: PathBuf,
    },
}

#[derive(Args, Debug)]
pub struct UserArgs {
    pub name: String,
    #[arg(long, env = "NEXTDB_DATA_DIR", default_value = crate::serve::DEFAULT_DATA_DIR)]
    pub data_dir: PathBuf,
}

fn read_password() -> Result<String, String> {
    if let Ok(p) = std::env::var("NEXTDB_PASSWORD") {
        return Ok(p);
    }
    eprint!("password: ");
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|e| format!("cannot read the password: {e}"))?;
    Ok(line.trim_end_matches(['\r', '\n']).to_string())
}

pub fn run(cmd: AdminCmd) -> i32 {
    let r = match cmd {
        AdminCmd::User(u) => user(u),
        AdminCmd::Stats(c) => crate::kv::stats(&c),
        AdminCmd::Backup(a) => crate::backup::backup(&a),
        AdminCmd::Restore(a) => crate::backup::restore(&a),
        AdminCmd::Verify(a) => crate::backup::verify(&a),
        AdminCmd::Config(c) => crate::config::run(&c),
    };
    match r {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("nextdb: {e}");
            1
        }
    }
}

fn user(cmd: UserCmd) -> Result<(), String> {
    match cmd {
        UserCmd::Add(a) => {
            let mut store = UserStore::load(&a.data_dir).map_err(|e| e.to_string())?;
            let pw = read_password()?;
            if pw.is_empty() {
                return Err("the password is empty".into());
            }
            store
                .set(&a.name, Verifier::generate(&pw, SCRAM_ITERATIONS))
                .map_err(|e| e.to_string())?;
            store.save(&a.data_dir).map_err(|e| e.to_string())?;
            println!(
                "user {} saved in {} (restart the node to apply)",
                a.name,
                UserStore::path(&a.data_dir).display()
            );
            Ok(())
        }
        UserCmd::Remove(a) => {
            let mut store = UserStore::load(&a.data_dir).map_err(|e| e.to_string())?;
            if !store.remove(&a.name) {
                return Err(format!("no user {}", a.name));
            }
            store.save(&a.data_dir).map_err(|e| e.to_string())?;
            println!("user {} removed (restart the node to apply)", a.name);
            Ok(())
        }
        UserCmd::List { data_dir } => {
            let store = UserStore::load(&data_dir).map_err(|e| e.to_string())?;
            for n in store.names() {
                println!("{n}");
            }
            Ok(())
        }
    }
}
