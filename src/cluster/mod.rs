//! Redis Cluster, the parts free of I/O: hash slots (`slot`: CRC16 and hash tags), the
//! slot map read from `CLUSTER SLOTS` and checked (`map`), where a command goes
//! (`route`: its keys' slot by the `COMMAND` table's key specs), what an error reply
//! asks for (`redirect`: `MOVED`, `ASK`, a retry), and the `redis_cluster` and
//! `redis_sentinel` config blocks (`config`). The nodes' connections are
//! `back::cluster`; following redirects is `worker::cluster`.

pub mod config;
pub mod map;
pub mod merge;
pub mod redirect;
pub mod route;
pub mod slot;

use crate::proto::keyspec::CommandTable;
use std::sync::OnceLock;

/// Redis's command table, read once from a node at start-up (or by a thread retrying
/// every second): where each command's keys are. Process-wide: every worker reads it,
/// nobody writes it after the first set.
static COMMANDS: OnceLock<CommandTable> = OnceLock::new();

/// The command table, once read.
pub fn commands() -> Option<&'static CommandTable> {
    COMMANDS.get()
}

/// Sets the command table (the first call wins).
pub fn set_commands(t: CommandTable) {
    let _ = COMMANDS.set(t);
}
