//! The `webdis-rs` command: reads the config, starts the workers, handles signals.

#![deny(unsafe_code)]

use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use webdis_rs::config::{Config, Loaded};
use webdis_rs::log::{self as wlog, Level};
use webdis_rs::{log, notify, process, server};

const USAGE: &str = "Usage: webdis-rs [CONFIG]

An HTTP gateway to Redis, compatible with webdis.

CONFIG is a webdis.json file. Without it, ./webdis.json is used if present,
else the built-in defaults.

Options:
  -h, --help       print this help
  -V, --version    print the version
";

fn main() {
    process::tune_allocator();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let path = match args.as_slice() {
        [] => None,
        [a] if a == "-h" || a == "--help" => {
            print!("{USAGE}");
            return;
        }
        [a] if a == "-V" || a == "--version" => {
            println!("webdis-rs {}", env!("CARGO_PKG_VERSION"));
            return;
        }
        [a] if a.starts_with('-') => fail(&format!("unknown option {a}\n\n{USAGE}")),
        [a] => Some(a.clone()),
        _ => fail(&format!("too many arguments\n\n{USAGE}")),
    };
    let path = path.or_else(|| {
        std::path::Path::new("webdis.json")
            .exists()
            .then(|| "webdis.json".into())
    });
    let Loaded { config, warnings } = match &path {
        Some(p) => Config::load(p).unwrap_or_else(|e| fail(&e.to_string())),
        None => Loaded {
            config: Config::default(),
            warnings: Vec::new(),
        },
    };
    wlog::init(
        config.verbosity,
        config.logfile.as_deref(),
        config.log_fsync,
    );
    for w in &warnings {
        log!(Level::Warning, "{w}");
    }
    if path.is_none() {
        log!(
            Level::Notice,
            "No config file given and no ./webdis.json: using defaults"
        );
    }
    // Every subscriber and WebSocket client is a file descriptor: use what is allowed.
    match process::raise_fd_limit() {
        Ok(n) => log!(Level::Debug, "file descriptor limit: {n}"),
        Err(e) => log!(
            Level::Warning,
            "cannot raise the file descriptor limit: {e}"
        ),
    }
    let (daemonize, pidfile) = (config.daemonize, config.pidfile.clone());
    let (user, group) = (config.user.clone(), config.group.clone());
    // Bind first, while errors still reach the terminal; then detach and drop root;
    // only then start the worker threads.
    let bound = server::bind(config).unwrap_or_else(|e| fatal(&e.to_string()));
    if daemonize {
        if let Err(e) = process::daemonize() {
            fail(&format!("cannot daemonize: {e}"));
        }
        if let Err(e) = process::write_pidfile(&pidfile) {
            fatal(&format!("cannot write the pidfile {pidfile}: {e}"));
        }
    }
    if user.is_some() || group.is_some() {
        if let Err(e) = process::drop_privileges(user.as_deref(), group.as_deref()) {
            fatal(&format!("cannot drop privileges: {e}"));
        }
        log!(
            Level::Info,
            "running as user {} group {}",
            user.as_deref().unwrap_or("(unchanged)"),
            group.as_deref().unwrap_or("(the user's)")
        );
    }
    let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT, SIGHUP])
        .unwrap_or_else(|e| fail(&format!("cannot install signal handlers: {e}")));
    let mut server = bound.start().unwrap_or_else(|e| fatal(&e.to_string()));
    log!(
        Level::Info,
        "webdis-rs {} up and running",
        env!("CARGO_PKG_VERSION")
    );
    // Every listener is bound and every worker runs: a `Type=notify` unit is started.
    let n = server.workers();
    sd_notify(&format!(
        "READY=1\nSTATUS=Listening on {} with {n} worker{}",
        server.local_addr,
        if n == 1 { "" } else { "s" }
    ));
    for sig in signals.forever() {
        match sig {
            SIGHUP => {
                sd_notify(&notify::reloading_message());
                wlog::reopen();
                log!(Level::Info, "Log file reopened");
                server.reopen_access_log();
                // Then the config file is read again (its errors are logged; the
                // running config stays).
                match &path {
                    Some(p) => {
                        let _ = server.reload(p);
                    }
                    None => log!(Level::Notice, "No config file: nothing to reload"),
                }
                sd_notify("READY=1");
            }
            _ => {
                log!(Level::Info, "webdis-rs terminating");
                sd_notify("STOPPING=1");
                server.stop();
                if daemonize {
                    let _ = std::fs::remove_file(&pidfile);
                }
                wlog::sync();
                std::process::exit(0);
            }
        }
    }
}

/// Tells systemd (`$NOTIFY_SOCKET`) about a state change; a failure is only logged.
fn sd_notify(state: &str) {
    if let Err(e) = notify::notify(state) {
        let what = state.lines().next().unwrap_or(state);
        log!(
            Level::Warning,
            "cannot tell the service manager {what} through NOTIFY_SOCKET: {e}"
        );
    }
}

/// A start-up error after logging began: in the log too (a daemon has no stderr).
fn fatal(msg: &str) -> ! {
    log!(Level::Error, "{msg}");
    wlog::sync();
    fail(msg);
}

fn fail(msg: &str) -> ! {
    eprintln!("webdis-rs: {msg}");
    std::process::exit(1);
}
