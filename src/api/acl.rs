//! The ACL: which client may run which command (webdis's `acl` rules, without its
//! matching bugs: see below).
//! Free of I/O: the worker asks [`Acl::allows`] with the peer address, the request's
//! `Authorization` header and the command name.
//!
//! Rules are tried in file order and every rule that matches the client applies, so a
//! later rule wins over an earlier one; inside one rule `disabled` wins over `enabled`.
//! Command names match exactly, ignoring ASCII case (`GETSET` does not match `GET`);
//! `"*"` matches every command. A rule's `ip` is a host (`1.2.3.4`, `::1`) or a network
//! (`10.0.0.0/8`, `fe80::/10`, and `/0` really is everyone). Basic credentials are
//! compared in constant time.
//!
//! A rule may carry key patterns (`"keys"`): its `enabled` commands are then allowed
//! only when every key they name matches a pattern (a command that names no key, or
//! whose keys cannot be told, is denied by it), and its `disabled` commands are denied
//! when one of their keys matches (or their keys cannot be told). Key positions come
//! from Redis's command table ([`CommandTable`], read at start-up): until it is there,
//! keys cannot be told. An ACL without key patterns never looks at arguments.

use crate::proto::keyspec::{CommandTable, Pattern, Positions};
use base64::Engine;
use std::net::IpAddr;
use std::sync::OnceLock;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Acl {
    pub rules: Vec<Rule>,
    /// What a command no rule speaks of gets (`acl_default`; webdis: allow).
    pub default_allow: bool,
    /// Some rule has key patterns: decisions need the command's arguments.
    keyed: bool,
    /// Where the keys are in each command; set once, at start-up or a little later.
    pub commands: OnceLock<CommandTable>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Rule {
    pub net: Option<Net>,
    /// base64 of `user:password`, as it appears after `Basic ` in the header.
    pub basic: Option<Vec<u8>>,
    pub enabled: Names,
    pub disabled: Names,
    /// `"keys"`: the key patterns this rule is about.
    pub keys: Option<Vec<Pattern>>,
}

/// A list of command names, or everything.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Names {
    all: bool,
    names: Vec<Box<[u8]>>,
}

impl Names {
    pub fn new<S: AsRef<str>>(list: &[S]) -> Names {
        let mut n = Names::default();
        for s in list {
            let s = s.as_ref();
            if s == "*" {
                n.all = true;
            } else {
                n.names
                    .push(s.as_bytes().to_ascii_uppercase().into_boxed_slice());
            }
        }
        n
    }

    fn matches(&self, cmd: &[u8]) -> bool {
        self.all || self.names.iter().any(|n| n.eq_ignore_ascii_case(cmd))
    }
}

/// An address or a network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Net {
    V4 { addr: u32, mask: u32 },
    V6 { addr: u128, mask: u128 },
}

/// Why an `ip` value is not an address or network.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NetError {
    #[error("'{0}' is not an IP address or network")]
    NotAnAddress(String),
    #[error("'{net}': the prefix length must be 0 to {max}")]
    PrefixLength { net: String, max: u32 },
}

impl Net {
    /// `a.b.c.d`, `a.b.c.d/bits`, `v6addr`, `v6addr/bits`; no bits means one host.
    pub fn parse(s: &str) -> Result<Net, NetError> {
        let (addr, bits) = match s.split_once('/') {
            Some((a, b)) => (a, Some(b)),
            None => (s, None),
        };
        let ip: IpAddr = addr.parse().map_err(|_| NetError::NotAnAddress(s.into()))?;
        let max = if ip.is_ipv4() { 32 } else { 128 };
        let bits: u32 = match bits {
            None => max,
            Some(b) => b
                .parse()
                .ok()
                .filter(|&b| b <= max)
                .ok_or_else(|| NetError::PrefixLength { net: s.into(), max })?,
        };
        Ok(match ip {
            IpAddr::V4(v4) => {
                let mask = u32::MAX.checked_shl(32 - bits).unwrap_or(0);
                Net::V4 {
                    addr: u32::from(v4) & mask,
                    mask,
                }
            }
            IpAddr::V6(v6) => {
                let mask = u128::MAX.checked_shl(128 - bits).unwrap_or(0);
                Net::V6 {
                    addr: u128::from(v6) & mask,
                    mask,
                }
            }
        })
    }

    fn contains(&self, ip: IpAddr) -> bool {
        // An IPv4 client on a dual-stack listener shows up as ::ffff:a.b.c.d.
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        match (self, ip) {
            (Net::V4 { addr, mask }, IpAddr::V4(v4)) => u32::from(v4) & mask == *addr,
            (Net::V6 { addr, mask }, IpAddr::V6(v6)) => u128::from(v6) & mask == *addr,
            _ => false,
        }
    }
}

/// The header token for `user:password`.
pub fn basic_token(user_pass: &str) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .encode(user_pass)
        .into_bytes()
}

/// The base64 token of an `Authorization: Basic ...` header value (scheme in any case).
pub fn basic_credentials(authorization: &[u8]) -> Option<&[u8]> {
    let scheme = authorization.get(..6)?;
    scheme
        .eq_ignore_ascii_case(b"Basic ")
        .then(|| authorization[6..].trim_ascii())
}

/// Equality whose time does not depend on where the inputs differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = u8::from(a.len() != b.len());
    for i in 0..a.len().max(b.len()) {
        diff |= a.get(i).copied().unwrap_or(0) ^ b.get(i).copied().unwrap_or(0);
    }
    diff == 0
}

impl Rule {
    fn matches_client(&self, peer: IpAddr, authorization: Option<&[u8]>) -> bool {
        if let Some(net) = &self.net {
            if !net.contains(peer) {
                return false;
            }
        }
        if let Some(expected) = &self.basic {
            match authorization.and_then(basic_credentials) {
                Some(token) if constant_time_eq(token, expected) => {}
                _ => return false,
            }
        }
        true
    }
}

impl Acl {
    pub fn new(rules: Vec<Rule>, default_allow: bool) -> Acl {
        Acl {
            keyed: rules.iter().any(|r| r.keys.is_some()),
            rules,
            default_allow,
            commands: OnceLock::new(),
        }
    }

    /// Whether some rule has key patterns: then ask [`Acl::allows_argv`].
    pub fn keyed(&self) -> bool {
        self.keyed
    }

    /// Whether the client may run `cmd`. For an ACL with key patterns, the arguments
    /// are needed ([`Acl::allows_argv`]); without them the keys count as unknown.
    pub fn allows(&self, peer: IpAddr, authorization: Option<&[u8]>, cmd: &[u8]) -> bool {
        self.allows_argv(peer, authorization, &[cmd])
    }

    /// Whether the client may run the command line `argv` (argv\[0\] is the name; the
    /// arguments decoded as they will be sent to Redis).
    pub fn allows_argv(&self, peer: IpAddr, authorization: Option<&[u8]>, argv: &[&[u8]]) -> bool {
        let Some(&cmd) = argv.first() else {
            return false;
        };
        // Found once, when a rule with key patterns names the command.
        let mut keys: Option<Option<Positions>> = None;
        let mut allowed = self.default_allow;
        for rule in &self.rules {
            if !rule.matches_client(peer, authorization) {
                continue;
            }
            let (on, off) = (rule.enabled.matches(cmd), rule.disabled.matches(cmd));
            let Some(patterns) = &rule.keys else {
                allowed = (allowed || on) && !off;
                continue;
            };
            if !(on || off) {
                continue;
            }
            let keys = keys.get_or_insert_with(|| self.commands.get()?.keys(argv));
            // A position past argv (never given by `keys`) counts as a key outside
            // every pattern for `enabled`, inside one for `disabled`: denied both ways.
            let inside = |&i: &usize| {
                argv.get(i)
                    .map(|key| patterns.iter().any(|p| p.matches(key)))
            };
            if on {
                allowed = keys
                    .as_ref()
                    .is_some_and(|k| !k.is_empty() && k.iter().all(|i| inside(i) == Some(true)));
            }
            if off
                && keys
                    .as_ref()
                    .is_none_or(|k| k.iter().any(|i| inside(i) != Some(false)))
            {
                allowed = false;
            }
        }
        allowed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::keyspec::CommandTable;

    fn rule(ip: Option<&str>, basic: Option<&str>, enabled: &[&str], disabled: &[&str]) -> Rule {
        Rule {
            net: ip.map(|s| Net::parse(s).unwrap()),
            basic: basic.map(basic_token),
            enabled: Names::new(enabled),
            disabled: Names::new(disabled),
            keys: None,
        }
    }

    const AUTH: &[u8] = b"Basic dXNlcjpwYXNzd29yZA==";

    /// (Authorization header, command, allowed?)
    type Case = (Option<&'static [u8]>, &'static [u8], bool);

    #[test]
    fn webdis_sample_acl() {
        let acl = Acl::new(
            vec![
                rule(None, None, &[], &["DEBUG"]),
                rule(None, Some("user:password"), &["DEBUG"], &[]),
            ],
            true,
        );
        let local: IpAddr = "127.0.0.1".parse().unwrap();
        let cases: &[Case] = &[
            (None, b"DEBUG", false),
            (None, b"debug", false),
            // Exact names: a prefix of a listed name is not that name (webdis denied it).
            (None, b"DEB", true),
            (None, b"GET", true),
            (Some(AUTH), b"DEBUG", true),
            (Some(b"basic dXNlcjpwYXNzd29yZA=="), b"DEBUG", true),
            (Some(b"Basic dXNlcjpwYXNzd29yZA"), b"DEBUG", false),
            (Some(b"Bearer dXNlcjpwYXNzd29yZA=="), b"DEBUG", false),
        ];
        for (auth, cmd, want) in cases {
            assert_eq!(
                acl.allows(local, *auth, cmd),
                *want,
                "{:?} {:?}",
                auth.map(String::from_utf8_lossy),
                String::from_utf8_lossy(cmd)
            );
        }
    }

    #[test]
    fn exact_names_order_and_default() {
        let ip: IpAddr = "10.1.2.3".parse().unwrap();
        let acl = Acl::new(vec![rule(None, None, &[], &["GETSET"])], true);
        assert!(acl.allows(ip, None, b"GET"));
        assert!(!acl.allows(ip, None, b"getset"));
        // Default deny; a later matching rule wins; disabled beats enabled in one rule.
        let acl = Acl::new(
            vec![
                rule(Some("10.0.0.0/8"), None, &["*"], &[]),
                rule(Some("10.1.0.0/16"), None, &["GET"], &["SET", "GET"]),
                rule(Some("10.1.2.3"), None, &["SET"], &[]),
            ],
            false,
        );
        assert!(acl.allows(ip, None, b"INCR"));
        assert!(!acl.allows(ip, None, b"GET"));
        assert!(acl.allows(ip, None, b"SET"));
        assert!(!acl.allows("192.168.0.1".parse().unwrap(), None, b"INCR"));
    }

    #[test]
    fn key_patterns() {
        let keyed = |enabled: &[&str], disabled: &[&str], keys: &[&str]| Rule {
            keys: Some(keys.iter().map(|k| Pattern::parse(k).unwrap()).collect()),
            ..rule(None, None, enabled, disabled)
        };
        let acl = Acl::new(
            vec![
                rule(None, None, &["PING"], &[]),
                keyed(
                    &["GET", "DEL", "MSET", "EVAL"],
                    &[],
                    &["public:*", "user:?"],
                ),
                keyed(&[], &["GET"], &["public:secret*"]),
                rule(None, Some("user:password"), &["*"], &[]),
            ],
            false,
        );
        assert!(acl.keyed());
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let check = |auth: Option<&[u8]>, line: &str| {
            let argv: Vec<&[u8]> = line.split(' ').map(str::as_bytes).collect();
            acl.allows_argv(ip, auth, &argv)
        };
        // Before the command table is read, keys cannot be told: denied.
        assert!(!check(None, "GET public:x"));
        assert!(check(None, "PING"));
        acl.commands
            .set(
                CommandTable::parse(include_bytes!(
                    "../../tests/data/redis-7.0-command-info.resp"
                ))
                .unwrap(),
            )
            .unwrap();
        let cases: &[(Option<&[u8]>, &str, bool)] = &[
            (None, "GET public:x", true),
            (None, "get user:1", true),
            (None, "GET user:12", false),
            (None, "GET secret", false),
            (None, "GET public:secret1", false),
            (None, "DEL public:a public:b", true),
            (None, "DEL public:a secret", false),
            (None, "MSET public:a secret", true),
            (None, "MSET public:a 1 secret 2", false),
            (None, "EVAL s 1 public:a", true),
            (None, "EVAL s 1 secret", false),
            (None, "EVAL s 0", false),
            (None, "SET public:a 1", false),
            (None, "PING", true),
            (Some(AUTH), "GET secret", true),
            (Some(AUTH), "FLUSHALL", true),
        ];
        for (auth, line, want) in cases {
            assert_eq!(check(*auth, line), *want, "{line}");
        }
        // The name-only entry point counts the keys as unknown.
        assert!(!acl.allows(ip, None, b"GET"));
        assert!(acl.allows(ip, None, b"PING"));
        assert!(!Acl::new(vec![rule(None, None, &["GET"], &[])], true).keyed());
    }

    #[test]
    fn key_patterns_with_a_hostile_command_table() {
        // GET's key spec has a negative begin index, MGET's a key step of i64::MAX (the
        // two specs that crashed the gateway); DEL's is sane.
        let spec = |index: i64, find: &str| {
            format!(
                "*6\r\n$5\r\nflags\r\n*0\r\n$12\r\nbegin_search\r\n*4\r\n$4\r\ntype\r\n\
                 $5\r\nindex\r\n$4\r\nspec\r\n*2\r\n$5\r\nindex\r\n:{index}\r\n\
                 $9\r\nfind_keys\r\n{find}"
            )
        };
        let keynum = "*4\r\n$4\r\ntype\r\n$6\r\nkeynum\r\n$4\r\nspec\r\n*6\r\n\
                      $9\r\nkeynumidx\r\n:0\r\n$8\r\nfirstkey\r\n:1\r\n$7\r\nkeystep\r\n:1\r\n";
        let range = |step: i64| {
            format!(
                "*4\r\n$4\r\ntype\r\n$5\r\nrange\r\n$4\r\nspec\r\n*6\r\n\
                 $7\r\nlastkey\r\n:-1\r\n$7\r\nkeystep\r\n:{step}\r\n$5\r\nlimit\r\n:0\r\n"
            )
        };
        let entry = |name: &str, spec: String| {
            format!(
                "*10\r\n${}\r\n{name}\r\n:-2\r\n*0\r\n:1\r\n:1\r\n:1\r\n*0\r\n*0\r\n*1\r\n{spec}*0\r\n",
                name.len()
            )
        };
        let reply = format!(
            "*3\r\n{}{}{}",
            entry("get", spec(-2, keynum)),
            entry("mget", spec(1, &range(i64::MAX))),
            entry("del", spec(1, &range(1))),
        );
        let table = CommandTable::parse(reply.as_bytes()).unwrap();
        assert_eq!(table.distrusted().len(), 2);
        let keyed = |enabled: &[&str], disabled: &[&str]| Rule {
            keys: Some(vec![Pattern::parse("public:*").unwrap()]),
            ..rule(None, None, enabled, disabled)
        };
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let on = Acl::new(vec![keyed(&["GET", "MGET", "DEL"], &[])], false);
        let off = Acl::new(vec![keyed(&[], &["GET", "MGET", "DEL"])], true);
        for acl in [&on, &off] {
            acl.commands.set(table.clone()).unwrap();
        }
        let cases: &[(&str, bool, bool)] = &[
            // (line, allowed by `on`, allowed by `off`)
            ("GET public:x", false, false),
            ("GET 1 public:x", false, false),
            ("MGET public:x public:y", false, false),
            ("DEL public:x", true, false),
            ("DEL secret", false, true),
        ];
        for &(line, want_on, want_off) in cases {
            let argv: Vec<&[u8]> = line.split(' ').map(str::as_bytes).collect();
            assert_eq!(on.allows_argv(ip, None, &argv), want_on, "on: {line}");
            assert_eq!(off.allows_argv(ip, None, &argv), want_off, "off: {line}");
        }
    }

    #[test]
    fn networks() {
        let cases: &[(&str, &str, bool)] = &[
            ("0.0.0.0/0", "203.0.113.9", true),
            ("1.2.3.4/0", "203.0.113.9", true),
            ("127.0.0.1", "127.0.0.1", true),
            ("127.0.0.1", "127.0.0.2", false),
            ("127.0.0.1/32", "127.0.0.2", false),
            ("10.0.0.0/8", "10.255.0.1", true),
            ("10.0.0.0/8", "11.0.0.1", false),
            ("127.0.0.1", "::ffff:127.0.0.1", true),
            ("::1", "::1", true),
            ("::1", "127.0.0.1", false),
            ("::/0", "2001:db8::1", true),
            ("2001:db8::/32", "2001:db8:ffff::1", true),
            ("2001:db8::/32", "2001:db9::1", false),
        ];
        for (net, ip, want) in cases {
            let n = Net::parse(net).unwrap();
            assert_eq!(n.contains(ip.parse().unwrap()), *want, "{net} {ip}");
        }
        for bad in [
            "",
            "1.2.3",
            "1.2.3.4/33",
            "::/129",
            "1.2.3.4/x",
            "host.example",
        ] {
            assert!(Net::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn constant_time_comparison() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
        assert!(!constant_time_eq(b"", b"a"));
        assert!(constant_time_eq(b"", b""));
    }
}
