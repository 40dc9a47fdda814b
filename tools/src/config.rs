//! `nextdb admin config get [NAME]` and `nextdb admin config set NAME VALUE`: read or
//! change a running node's live settings (CONFIG in the native protocol). A set
//! reaches every core before it is answered and lasts until the node restarts: it is
//! not written anywhere, and a restart starts again from the `serve` flags.

use crate::kv::ConnArgs;
use clap::{Args, Subcommand};

#[derive(Subcommand, Debug)]
pub enum ConfigCmd {
    /// Prints every live setting, or the one named, as `name = value` lines.
    Get(GetArgs),
    /// Changes a live setting on every core (until the node restarts) and prints it.
    Set(SetArgs),
}

#[derive(Args, Debug)]
pub struct GetArgs {
    /// A setting's name (slow_op_ms, slow_op_redact, block_cache_mb, row_cache_mb,
    /// background_shares); none: all of them.
    pub name: Option<String>,
    #[command(flatten)]
    pub conn: ConnArgs,
}

#[derive(Args, Debug)]
pub struct SetArgs {
    pub name: String,
    pub value: String,
    #[command(flatten)]
    pub conn: ConnArgs,
}

pub fn run(cmd: &ConfigCmd) -> Result<(), String> {
    let settings = match cmd {
        ConfigCmd::Get(a) => a
            .conn
            .connect()?
            .config_get(a.name.as_deref())
            .map_err(|e| e.to_string())?,
        ConfigCmd::Set(a) => a
            .conn
            .connect()?
            .config_set(&a.name, &a.value)
            .map_err(|e| e.to_string())?,
    };
    for (name, value) in settings {
        println!("{name} = {value}");
    }
    Ok(())
}
