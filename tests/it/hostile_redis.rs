//! What Redis sends is checked like what a client sends: a scripted fake Redis serves
//! a `COMMAND` table with hostile key specs (a negative begin index, a key step of
//! i64::MAX: each used to make the next `GET /GET/public:x` panic and the gateway
//! exit). The gateway keeps serving, denies the commands whose keys it cannot tell to
//! rules with key patterns, and says so in its log. Real Redis's own table is trusted.

use crate::common::*;
use std::io::{BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;
use webdis_rs::fuzzing::CommandTable;

/// A fake Redis on a free port: answers `PING` with `+PONG`, `COMMAND` with `table`,
/// `GET` with `$1 v`, `MGET` with `[v]`, anything else with `+OK`.
struct FakeRedis {
    port: u16,
    stop: Arc<AtomicBool>,
}

impl FakeRedis {
    fn start(table: Vec<u8>) -> FakeRedis {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let table: Arc<[u8]> = table.into();
        thread::spawn(move || {
            while !stop2.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((sock, _)) => {
                        let table = table.clone();
                        thread::spawn(move || serve(sock, &table));
                    }
                    Err(_) => thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        FakeRedis { port, stop }
    }
}

impl Drop for FakeRedis {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn serve(mut sock: TcpStream, table: &[u8]) {
    sock.set_nonblocking(false).unwrap();
    let mut r = BufReader::new(sock.try_clone().unwrap());
    while let Ok(cmd) = read_resp(&mut r) {
        // `*N\r\n$len\r\nNAME\r\n...`: the name is the third line.
        let text = String::from_utf8_lossy(&cmd).into_owned();
        let name = text.split("\r\n").nth(2).unwrap_or("").to_ascii_uppercase();
        let reply: &[u8] = match name.as_str() {
            "PING" => b"+PONG\r\n",
            "COMMAND" => table,
            "GET" => b"$1\r\nv\r\n",
            "MGET" => b"*1\r\n$1\r\nv\r\n",
            _ => b"+OK\r\n",
        };
        if sock.write_all(reply).is_err() {
            return;
        }
    }
}

/// A Redis 7 `COMMAND` entry (ten elements) with one key spec: `begin_search` of type
/// index at `index`, then `find_keys` (its RESP).
fn entry(name: &str, index: i64, find_keys: &str) -> String {
    format!(
        "*10\r\n${}\r\n{name}\r\n:-2\r\n*0\r\n:1\r\n:1\r\n:1\r\n*0\r\n*0\r\n\
         *1\r\n*6\r\n$5\r\nflags\r\n*0\r\n\
         $12\r\nbegin_search\r\n*4\r\n$4\r\ntype\r\n$5\r\nindex\r\n$4\r\nspec\r\n\
         *2\r\n$5\r\nindex\r\n:{index}\r\n\
         $9\r\nfind_keys\r\n{find_keys}*0\r\n",
        name.len()
    )
}

fn range(lastkey: i64, keystep: i64) -> String {
    format!(
        "*4\r\n$4\r\ntype\r\n$5\r\nrange\r\n$4\r\nspec\r\n*6\r\n\
         $7\r\nlastkey\r\n:{lastkey}\r\n$7\r\nkeystep\r\n:{keystep}\r\n$5\r\nlimit\r\n:0\r\n"
    )
}

fn keynum(keynumidx: i64, firstkey: i64, keystep: i64) -> String {
    format!(
        "*4\r\n$4\r\ntype\r\n$6\r\nkeynum\r\n$4\r\nspec\r\n*6\r\n\
         $9\r\nkeynumidx\r\n:{keynumidx}\r\n$8\r\nfirstkey\r\n:{firstkey}\r\n\
         $7\r\nkeystep\r\n:{keystep}\r\n"
    )
}

/// A table where GET has `get` (its begin index and find_keys) and MGET is sane.
fn table(get_index: i64, get_find: &str) -> Vec<u8> {
    format!(
        "*3\r\n{}{}{}",
        entry("get", get_index, get_find),
        entry("mget", 1, &range(-1, 1)),
        entry("ping", 1, &range(0, 1)),
    )
    .into_bytes()
}

#[test]
fn hostile_key_specs_are_denied_and_the_gateway_keeps_serving() {
    let cases = [
        // The two crashes the issue reports: index out of bounds in Spec::positions,
        // and a wrapped addition then an index out of bounds in the ACL.
        ("negative begin index", table(-2, &keynum(0, 1, 1))),
        ("key step i64::MAX", table(1, &range(-1, i64::MAX))),
        ("begin index i64::MIN", table(i64::MIN, &range(0, 1))),
        ("lastkey i64::MAX", table(1, &range(i64::MAX, 1))),
        ("firstkey i64::MAX", table(1, &keynum(0, i64::MAX, 1))),
    ];
    for (what, table) in cases {
        let fake = FakeRedis::start(table);
        let gw = Gateway::start_on(
            fake.port,
            r#""threads":1,"pool_size":1,
               "acl":[{"enabled":["GET","MGET"],"keys":["public:*"]},
                      {"disabled":["SET"],"keys":["secret:*"]}]"#,
            &[],
        );
        gw.wait_for_log("ACL: key positions of 3 commands read from Redis");
        for _ in 0..3 {
            // GET's keys cannot be told: the rule with patterns denies it, as it does a
            // key outside the patterns; MGET's spec is sane and applies.
            assert_bytes(&gw.get("/GET/public:x"), &forbidden());
            assert_bytes(&gw.get("/GET/1/public:x"), &forbidden());
            assert_bytes(&gw.get("/MGET/public:x"), &ok_json(r#"{"MGET":["v"]}"#));
            assert_bytes(&gw.get("/MGET/secret"), &forbidden());
            // A command absent from the table: a disabled rule with patterns denies it.
            assert_bytes(&gw.get("/SET/k/v"), &forbidden());
            assert_bytes(&gw.get("/PING"), &ok_json(r#"{"PING":[true,"PONG"]}"#));
        }
        let log = gw.log();
        assert!(
            log.contains(
                " W ACL: Redis's key specs of 1 command(s) are not sane (GET): their keys are \
                 unknown, so rules with \"keys\" deny them"
            ),
            "{what}: {log}"
        );
        assert!(!log.contains("panicked"), "{what}: {log}");
    }
}

#[test]
fn the_command_table_of_real_redis_is_trusted() {
    let redis = Redis::start();
    let table = CommandTable::parse(&redis.cmd(&["COMMAND"])).unwrap();
    assert!(table.len() > 200, "{}", table.len());
    let names: Vec<String> = table
        .distrusted()
        .iter()
        .map(|n| String::from_utf8_lossy(n).into_owned())
        .collect();
    assert!(names.is_empty(), "{names:?}");
    let keys = |line: &str| {
        let argv: Vec<&[u8]> = line.split(' ').map(str::as_bytes).collect();
        table.keys(&argv).map(|p| p.to_vec())
    };
    assert_eq!(keys("MSET a 1 b 2"), Some(vec![1, 3]));
    assert_eq!(keys("EVAL s 2 a b c"), Some(vec![3, 4]));
    assert_eq!(keys("XREAD COUNT 1 STREAMS a b 0 0"), Some(vec![4, 5]));
}
