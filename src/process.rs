//! Process-level operations for running as a daemon: detaching (`daemonize`), the
//! pidfile, and dropping root privileges (`user`, `group`). They run once at start-up,
//! after the listeners are bound and before any thread exists.

use std::ffi::CString;
use std::io;

/// Detaches from the terminal: forks (the parent exits 0), starts a new session and
/// points stdin, stdout and stderr at /dev/null. Must run while the process has one
/// thread only.
pub fn daemonize() -> io::Result<()> {
    // SAFETY: called before any thread is spawned, so the child is a complete copy; the
    // parent only exits.
    match unsafe { libc::fork() } {
        -1 => return Err(io::Error::last_os_error()),
        0 => {}
        _ => std::process::exit(0),
    }
    // SAFETY: plain system calls on our own process and file descriptors.
    unsafe {
        if libc::setsid() == -1 {
            return Err(io::Error::last_os_error());
        }
        let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR);
        if null == -1 {
            return Err(io::Error::last_os_error());
        }
        for fd in 0..3 {
            libc::dup2(null, fd);
        }
        if null > 2 {
            libc::close(null);
        }
    }
    Ok(())
}

/// Writes `<pid>\n` to `path` (mode 0600, as webdis).
pub fn write_pidfile(path: &str) -> io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    writeln!(f, "{}", std::process::id())
}

/// Switches to `user` (and `group`, or the user's primary group). Fails if any step
/// fails: a server told to drop root must not keep it.
pub fn drop_privileges(user: Option<&str>, group: Option<&str>) -> Result<(), String> {
    let mut uid = None;
    let mut gid = None;
    if let Some(name) = user {
        let c = CString::new(name).map_err(|_| format!("bad user name {name:?}"))?;
        // SAFETY: getpwnam returns a pointer to static storage or null; we copy the two
        // fields we need at once, before any other call could overwrite it.
        let pw = unsafe { libc::getpwnam(c.as_ptr()) };
        if pw.is_null() {
            return Err(format!("no such user: {name}"));
        }
        // SAFETY: `pw` is non-null and points to a valid passwd record.
        unsafe {
            uid = Some((*pw).pw_uid);
            gid = Some((*pw).pw_gid);
        }
    }
    if let Some(name) = group {
        let c = CString::new(name).map_err(|_| format!("bad group name {name:?}"))?;
        // SAFETY: as for getpwnam.
        let gr = unsafe { libc::getgrnam(c.as_ptr()) };
        if gr.is_null() {
            return Err(format!("no such group: {name}"));
        }
        // SAFETY: `gr` is non-null and points to a valid group record.
        gid = Some(unsafe { (*gr).gr_gid });
    }
    let os_err = |what: &str| format!("{what}: {}", io::Error::last_os_error());
    if let Some(gid) = gid {
        // SAFETY: plain system calls; the group list is replaced by the one group.
        unsafe {
            if libc::setgroups(1, &gid) == -1 {
                return Err(os_err("setgroups"));
            }
            if libc::setgid(gid) == -1 {
                return Err(os_err("setgid"));
            }
        }
    }
    if let Some(uid) = uid {
        // SAFETY: a plain system call.
        if unsafe { libc::setuid(uid) } == -1 {
            return Err(os_err("setuid"));
        }
    }
    Ok(())
}

/// Raises the soft limit on open files to the hard limit; returns the new limit.
pub fn raise_fd_limit() -> io::Result<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(io::Error::last_os_error());
    }
    if lim.rlim_cur < lim.rlim_max {
        lim.rlim_cur = lim.rlim_max;
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) } != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(lim.rlim_cur)
}

/// The soft limit on open files.
pub fn fd_limit() -> io::Result<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes the struct passed.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(lim.rlim_cur)
}

/// Tunes glibc's allocator for large replies, before any thread starts. By default
/// glibc serves blocks of 128 KiB or more with `mmap`, raising that threshold to the
/// size of each such block freed (up to 32 MiB), and trims an arena's top once more
/// than twice the threshold is free there. With clients fetching 1 MiB values in a
/// loop, every reply's buffers were then faulted in afresh (page clearing and faults
/// took about 15 % of the worker, measured with perf). Fixed thresholds instead: blocks
/// up to 32 MiB come from the arenas and stay there while they are reused; larger ones
/// are mapped and unmapped at once. The memory an arena keeps is returned by the
/// worker's memory sweep (`malloc_trim`), a second after the last large buffer was in
/// use. Without glibc, nothing is done.
pub fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets allocator parameters; called before threads exist.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 * 1024 * 1024);
        libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD);
    }
}

/// glibc's trim threshold while serving (see [`tune_allocator`]).
pub const TRIM_THRESHOLD: libc::c_int = 64 * 1024 * 1024;
