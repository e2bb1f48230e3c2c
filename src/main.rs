//! The `webdis-rs` command: reads the config, starts the workers, handles signals.

use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use webdis_rs::config::{Config, Loaded};
use webdis_rs::log::{self as wlog, Level};
use webdis_rs::{log, process, server};

const USAGE: &str = "Usage: webdis-rs [CONFIG]

An HTTP gateway to Redis, compatible with webdis.

CONFIG is a webdis.json file. Without it, ./webdis.json is used if present,
else the built-in defaults.

Options:
  -h, --help       print this help
  -V, --version    print the version
";

fn main() {
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
    let default_exists = std::path::Path::new("webdis.json").exists();
    let (loaded, source) = match (&path, default_exists) {
        (Some(p), _) => (Config::load(p), p.clone()),
        (None, true) => (Config::load("webdis.json"), "webdis.json".to_string()),
        (None, false) => (
            Ok(Loaded {
                config: Config::default(),
                warnings: Vec::new(),
            }),
            String::new(),
        ),
    };
    let Loaded { config, warnings } = loaded.unwrap_or_else(|e| fail(&e.to_string()));
    wlog::init(
        config.verbosity,
        config.logfile.as_deref(),
        config.log_fsync,
    );
    for w in &warnings {
        log!(Level::Warning, "{w}");
    }
    if source.is_empty() {
        log!(
            Level::Notice,
            "No config file given and no ./webdis.json: using defaults"
        );
    }
    for (on, key) in [
        (config.websockets, "websockets"),
        (config.ssl.is_some(), "ssl"),
    ] {
        if on {
            log!(
                Level::Warning,
                "'{key}' is not supported by this version yet and is ignored"
            );
        }
    }
    let (daemonize, pidfile) = (config.daemonize, config.pidfile.clone());
    let (user, group) = (config.user.clone(), config.group.clone());
    // Bind first, while errors still reach the terminal; then detach and drop root;
    // only then start the worker threads.
    let bound = server::bind(config).unwrap_or_else(|e| {
        log!(Level::Error, "{e}");
        wlog::sync();
        fail(&e.to_string());
    });
    if daemonize {
        if let Err(e) = process::daemonize() {
            fail(&format!("cannot daemonize: {e}"));
        }
        if let Err(e) = process::write_pidfile(&pidfile) {
            log!(Level::Error, "cannot write the pidfile {pidfile}: {e}");
            std::process::exit(1);
        }
    }
    if user.is_some() || group.is_some() {
        if let Err(e) = process::drop_privileges(user.as_deref(), group.as_deref()) {
            log!(Level::Error, "cannot drop privileges: {e}");
            wlog::sync();
            fail(&format!("cannot drop privileges: {e}"));
        }
        log!(
            Level::Info,
            "running as user {} group {}",
            user.as_deref().unwrap_or("(unchanged)"),
            group.as_deref().unwrap_or("(the user's)")
        );
    }
    let signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT, SIGHUP])
        .unwrap_or_else(|e| fail(&format!("cannot install signal handlers: {e}")));
    let server = match bound.start() {
        Ok(s) => s,
        Err(e) => {
            log!(Level::Error, "{e}");
            wlog::sync();
            fail(&e.to_string());
        }
    };
    log!(
        Level::Info,
        "webdis-rs {} up and running",
        env!("CARGO_PKG_VERSION")
    );
    let mut signals = signals;
    for sig in signals.forever() {
        match sig {
            SIGHUP => {
                wlog::reopen();
                log!(Level::Info, "Log file reopened");
            }
            _ => {
                log!(Level::Info, "webdis-rs terminating");
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

fn fail(msg: &str) -> ! {
    eprintln!("webdis-rs: {msg}");
    std::process::exit(1);
}
