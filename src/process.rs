//! Process-level operations for running as a daemon: detaching (`daemonize`), the
//! pidfile, and dropping root privileges (`user`, `group`). They run once at start-up,
//! after the listeners are bound and before any thread exists.

use std::ffi::CString;
use std::io;

/// Detaches from the terminal: forks (the parent exits 0), starts a new session and
/// points stdin, stdout and stderr at /dev/null. Must run while the process has one
/// thread only.
#[allow(unsafe_code)] // fork, setsid, open, dup2, close
pub fn daemonize() -> io::Result<()> {
    // SAFETY: called before any thread is spawned, so the child is a complete copy (no
    // lock is held by a thread that the child lacks); the parent only exits.
    match unsafe { libc::fork() } {
        -1 => return Err(io::Error::last_os_error()),
        0 => {}
        _ => std::process::exit(0),
    }
    // SAFETY: plain system calls on our own process and file descriptors; the path is a
    // NUL-terminated literal; dup2 replaces descriptors 0 to 2 in place, so std's stdin,
    // stdout and stderr stay valid descriptors (now /dev/null).
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

/// Why the privileges could not be dropped.
#[derive(Debug, thiserror::Error)]
pub enum PrivilegeError {
    /// The name holds a NUL byte.
    #[error("bad user name {0:?}")]
    BadUserName(String),
    #[error("bad group name {0:?}")]
    BadGroupName(String),
    #[error("no such user: {0}")]
    NoSuchUser(String),
    #[error("no such group: {0}")]
    NoSuchGroup(String),
    /// `setgroups`, `setgid` or `setuid` failed.
    #[error("{call}: {error}")]
    Os {
        call: &'static str,
        error: io::Error,
    },
}

/// Switches to `user` (and `group`, or the user's primary group). Fails if any step
/// fails: a server told to drop root must not keep it.
#[allow(unsafe_code)] // getpwnam, getgrnam, setgroups, setgid, setuid
pub fn drop_privileges(user: Option<&str>, group: Option<&str>) -> Result<(), PrivilegeError> {
    let mut uid = None;
    let mut gid = None;
    if let Some(name) = user {
        let c = CString::new(name).map_err(|_| PrivilegeError::BadUserName(name.into()))?;
        // SAFETY: `c` is NUL-terminated and outlives the call. getpwnam returns null or a
        // pointer to static storage; we copy the two fields we need at once, and no other
        // thread exists yet that could call it and overwrite the record meanwhile.
        let pw = unsafe { libc::getpwnam(c.as_ptr()) };
        if pw.is_null() {
            return Err(PrivilegeError::NoSuchUser(name.into()));
        }
        // SAFETY: `pw` is non-null and points to a valid passwd record.
        unsafe {
            uid = Some((*pw).pw_uid);
            gid = Some((*pw).pw_gid);
        }
    }
    if let Some(name) = group {
        let c = CString::new(name).map_err(|_| PrivilegeError::BadGroupName(name.into()))?;
        // SAFETY: as for getpwnam: `c` is NUL-terminated, one thread, the record is read
        // at once.
        let gr = unsafe { libc::getgrnam(c.as_ptr()) };
        if gr.is_null() {
            return Err(PrivilegeError::NoSuchGroup(name.into()));
        }
        // SAFETY: `gr` is non-null and points to a valid group record.
        gid = Some(unsafe { (*gr).gr_gid });
    }
    let os_err = |call| PrivilegeError::Os {
        call,
        error: io::Error::last_os_error(),
    };
    if let Some(gid) = gid {
        // SAFETY: plain system calls; `&gid` points to one valid gid_t, matching the count
        // of 1, so the group list is replaced by the one group.
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
        // SAFETY: a plain system call, no pointer involved.
        if unsafe { libc::setuid(uid) } == -1 {
            return Err(os_err("setuid"));
        }
    }
    Ok(())
}

/// Raises the soft limit on open files to the hard limit; returns the new limit.
#[allow(unsafe_code)] // setrlimit
pub fn raise_fd_limit() -> io::Result<u64> {
    let mut lim = nofile_limit()?;
    if lim.rlim_cur < lim.rlim_max {
        lim.rlim_cur = lim.rlim_max;
        // SAFETY: setrlimit only reads the struct passed, a valid `rlimit`.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) } != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(lim.rlim_cur)
}

/// The soft limit on open files.
pub fn fd_limit() -> io::Result<u64> {
    Ok(nofile_limit()?.rlim_cur)
}

/// `RLIMIT_NOFILE`, soft and hard.
#[allow(unsafe_code)] // getrlimit
fn nofile_limit() -> io::Result<libc::rlimit> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes the struct passed, a valid, exclusive `rlimit`.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(lim)
}

/// The user and system CPU time the process used so far, in seconds (for the metrics).
#[allow(unsafe_code)] // getrusage
pub fn cpu_seconds() -> Option<f64> {
    // SAFETY: `rusage` is plain integers, for which all zeroes is a valid value.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage only writes the struct passed, a valid, exclusive `rusage`.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) } != 0 {
        return None;
    }
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    Some(secs(ru.ru_utime) + secs(ru.ru_stime))
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
#[allow(unsafe_code)] // mallopt
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
