//! Dates as the protocols and logs write them: HTTP's IMF-fixdate, the log line's local
//! time and the access log's CLF date. A leaf: it depends on nothing else in the crate.

/// Month abbreviations, as `%b` writes them in the C locale.
pub const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// The local time (and its offset from UTC) of `t`, seconds since the epoch.
#[allow(unsafe_code)] // localtime_r
pub fn local_tm(t: libc::time_t) -> libc::tm {
    // SAFETY: `tm` is plain data (integers, and on glibc a `tm_zone` pointer that may be
    // null), so all-zero bytes are a valid value; localtime_r fills it in; both pointers
    // are valid for the duration of the call and localtime_r is thread-safe.
    unsafe {
        let mut tm: libc::tm = std::mem::zeroed();
        libc::localtime_r(&t, &mut tm);
        tm
    }
}

/// `DD Mon HH:MM:SS` in local time, like webdis's `strftime("%d %b %H:%M:%S")`.
pub fn local_time() -> Vec<u8> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs()) as libc::time_t;
    let tm = local_tm(now);
    let month = MONTHS[tm.tm_mon.clamp(0, 11) as usize];
    format!(
        "{:02} {} {:02}:{:02}:{:02}",
        tm.tm_mday, month, tm.tm_hour, tm.tm_min, tm.tm_sec
    )
    .into_bytes()
}

/// IMF-fixdate, e.g. `Sun, 06 Nov 1994 08:49:37 GMT`.
pub fn http_date(secs: u64) -> [u8; 29] {
    const DAYS: [&[u8; 3]; 7] = [b"Thu", b"Fri", b"Sat", b"Sun", b"Mon", b"Tue", b"Wed"];
    let days = secs / 86400;
    let rem = secs % 86400;
    let (h, m, s) = (rem / 3600, rem % 3600 / 60, rem % 60);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);

    let mut out = [0u8; 29];
    out[..3].copy_from_slice(DAYS[(days % 7) as usize]);
    out[3..5].copy_from_slice(b", ");
    two(&mut out[5..7], day as u64);
    out[7] = b' ';
    out[8..11].copy_from_slice(MONTHS[(month - 1) as usize].as_bytes());
    out[11] = b' ';
    let y = year.clamp(0, 9999) as u64;
    two(&mut out[12..14], y / 100);
    two(&mut out[14..16], y % 100);
    out[16] = b' ';
    two(&mut out[17..19], h);
    out[19] = b':';
    two(&mut out[20..22], m);
    out[22] = b':';
    two(&mut out[23..25], s);
    out[25..].copy_from_slice(b" GMT");
    out
}

fn two(dst: &mut [u8], n: u64) {
    dst[0] = b'0' + (n / 10 % 10) as u8;
    dst[1] = b'0' + (n % 10) as u8;
}

/// `DD/Mon/YYYY:HH:MM:SS +ZZZZ` in local time, the Common Log Format date.
pub fn clf_date(t: libc::time_t, out: &mut [u8; 26]) {
    let tm = local_tm(t);
    let two = |out: &mut [u8], n: i64| {
        let n = n.clamp(0, 99) as u8;
        out[0] = b'0' + n / 10;
        out[1] = b'0' + n % 10;
    };
    let month = MONTHS[tm.tm_mon.clamp(0, 11) as usize];
    let year = i64::from(tm.tm_year) + 1900;
    let off = tm.tm_gmtoff / 60;
    two(&mut out[0..2], tm.tm_mday.into());
    out[2] = b'/';
    out[3..6].copy_from_slice(month.as_bytes());
    out[6] = b'/';
    two(&mut out[7..9], year / 100);
    two(&mut out[9..11], year % 100);
    out[11] = b':';
    two(&mut out[12..14], tm.tm_hour.into());
    out[14] = b':';
    two(&mut out[15..17], tm.tm_min.into());
    out[17] = b':';
    two(&mut out[18..20], tm.tm_sec.into());
    out[20] = b' ';
    out[21] = if off < 0 { b'-' } else { b'+' };
    two(&mut out[22..24], off.abs() / 60);
    two(&mut out[24..26], off.abs() % 60);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(&http_date(784111777), b"Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(&http_date(0), b"Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(&http_date(1795330139), b"Sun, 22 Nov 2026 06:48:59 GMT");
        assert_eq!(&http_date(951782400), b"Tue, 29 Feb 2000 00:00:00 GMT");
    }
}
