//! The `redis_cluster` and `redis_sentinel` blocks of the config file, checked: seed
//! nodes as `host:port`, flags as booleans, unknown keys refused (a misspelt option
//! would silently do nothing on a setup where mistakes are costly).

use serde_json::Value;

/// `"redis_cluster": {"nodes": [...], "read_from_replicas": false, "split_multi_key": false}`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterConfig {
    /// Seed nodes, `host:port`: any one of them is enough to find the others.
    pub nodes: Vec<(String, u16)>,
    pub read_from_replicas: bool,
    pub split_multi_key: bool,
    /// How often the slot map is read again when nothing else asks for it (seconds).
    pub refresh_sec: u64,
}

/// `"redis_sentinel": {"master": "mymaster", "nodes": [...], "auth": "..."}`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentinelConfig {
    pub master: String,
    pub nodes: Vec<(String, u16)>,
    /// The sentinels' own password, if they require one.
    pub auth: Option<String>,
    /// TLS to the sentinels: `None` (not said) follows the top-level `ssl` block,
    /// `false` is plain TCP even with one, `true` requires one.
    pub ssl: Option<bool>,
}

/// What is wrong with a `redis_cluster` or `redis_sentinel` block.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClusterError {
    #[error("'{0}' must be an object")]
    NotAnObject(&'static str),
    #[error("'{0}.nodes' must be a non-empty list of \"host:port\" strings")]
    Nodes(&'static str),
    #[error("'{block}.nodes': '{node}' is not \"host:port\" with a port from 1 to 65535")]
    Node { block: &'static str, node: String },
    #[error("'{block}.{key}' must be true or false")]
    NotABool { block: &'static str, key: String },
    #[error("'redis_cluster.refresh_sec' must be a number of seconds from 1 to 3600")]
    RefreshSec,
    #[error("'{0}.master' must be a non-empty string")]
    Master(&'static str),
    #[error("'{0}.auth' must be a string")]
    Auth(&'static str),
    #[error("unknown key '{key}' in '{block}'")]
    UnknownKey { block: &'static str, key: String },
    #[error("'redis_cluster' and 'redis_sentinel' cannot both be configured")]
    Both,
    #[error("'database' must be 0 with 'redis_cluster' (a cluster has one database)")]
    Database,
    #[error("'redis_sentinel.ssl' is true but there is no 'ssl' block (with \"enabled\": true) to take the certificates from")]
    SentinelSsl,
}

const CLUSTER: &str = "redis_cluster";
const SENTINEL: &str = "redis_sentinel";

/// Reads a `redis_cluster` block.
pub fn parse_cluster(v: &Value) -> Result<ClusterConfig, ClusterError> {
    let map = v.as_object().ok_or(ClusterError::NotAnObject(CLUSTER))?;
    let mut c = ClusterConfig {
        nodes: Vec::new(),
        read_from_replicas: false,
        split_multi_key: false,
        refresh_sec: 30,
    };
    let mut seen_nodes = false;
    for (k, v) in map {
        match k.as_str() {
            "nodes" => {
                c.nodes = nodes(CLUSTER, v)?;
                seen_nodes = true;
            }
            "read_from_replicas" => c.read_from_replicas = boolean(CLUSTER, k, v)?,
            "split_multi_key" => c.split_multi_key = boolean(CLUSTER, k, v)?,
            "refresh_sec" => {
                c.refresh_sec = v
                    .as_u64()
                    .filter(|n| (1..=3600).contains(n))
                    .ok_or(ClusterError::RefreshSec)?
            }
            _ => {
                return Err(ClusterError::UnknownKey {
                    block: CLUSTER,
                    key: k.clone(),
                })
            }
        }
    }
    if !seen_nodes {
        return Err(ClusterError::Nodes(CLUSTER));
    }
    Ok(c)
}

/// Reads a `redis_sentinel` block.
pub fn parse_sentinel(v: &Value) -> Result<SentinelConfig, ClusterError> {
    let map = v.as_object().ok_or(ClusterError::NotAnObject(SENTINEL))?;
    let mut master = None;
    let mut list = None;
    let mut auth = None;
    let mut ssl = None;
    for (k, v) in map {
        match k.as_str() {
            "master" => match v.as_str() {
                Some(s) if !s.is_empty() => master = Some(s.to_string()),
                _ => return Err(ClusterError::Master(SENTINEL)),
            },
            "nodes" => list = Some(nodes(SENTINEL, v)?),
            "auth" => match v {
                Value::String(s) => auth = Some(s.clone()),
                Value::Null => auth = None,
                _ => return Err(ClusterError::Auth(SENTINEL)),
            },
            "ssl" => ssl = Some(boolean(SENTINEL, k, v)?),
            _ => {
                return Err(ClusterError::UnknownKey {
                    block: SENTINEL,
                    key: k.clone(),
                })
            }
        }
    }
    Ok(SentinelConfig {
        master: master.ok_or(ClusterError::Master(SENTINEL))?,
        nodes: list.ok_or(ClusterError::Nodes(SENTINEL))?,
        auth,
        ssl,
    })
}

/// The checks across keys, once the whole file is read: `redis_cluster` with
/// `redis_sentinel` or with a `database` other than 0 is an error; `redis_host` and
/// `redis_port` are ignored with either (a warning each).
pub fn check(
    cluster: Option<&ClusterConfig>,
    sentinel: Option<&SentinelConfig>,
    database: u32,
    map: &serde_json::Map<String, Value>,
    warnings: &mut Vec<String>,
) -> Result<(), ClusterError> {
    let which = match (cluster, sentinel) {
        (Some(_), Some(_)) => return Err(ClusterError::Both),
        (Some(_), None) if database != 0 => return Err(ClusterError::Database),
        (Some(_), None) => CLUSTER,
        (None, Some(_)) => SENTINEL,
        (None, None) => return Ok(()),
    };
    for key in ["redis_host", "redis_port"] {
        if map.contains_key(key) {
            warnings.push(format!("'{key}' is ignored: '{which}' says where Redis is"));
        }
    }
    Ok(())
}

fn boolean(block: &'static str, key: &str, v: &Value) -> Result<bool, ClusterError> {
    v.as_bool().ok_or_else(|| ClusterError::NotABool {
        block,
        key: key.to_string(),
    })
}

fn nodes(block: &'static str, v: &Value) -> Result<Vec<(String, u16)>, ClusterError> {
    let list = v.as_array().filter(|l| !l.is_empty());
    let list = list.ok_or(ClusterError::Nodes(block))?;
    list.iter()
        .map(|n| {
            let s = n.as_str().ok_or(ClusterError::Nodes(block))?;
            host_port(s).ok_or_else(|| ClusterError::Node {
                block,
                node: s.to_string(),
            })
        })
        .collect()
}

/// `host:port`, `[v6]:port` or `v6:port` (the port after the last `:`).
pub fn host_port(s: &str) -> Option<(String, u16)> {
    let (host, port) = s.rsplit_once(':')?;
    let port: u16 = port.parse().ok().filter(|&p| p > 0)?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    (!host.is_empty() && !host.contains(char::is_whitespace)).then(|| (host.to_string(), port))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn cluster_block() {
        let c = parse_cluster(
            &json!({"nodes": ["10.0.0.1:6379", "[::1]:7000", "redis-2:7001"],
            "read_from_replicas": false, "split_multi_key": true}),
        )
        .unwrap();
        assert_eq!(
            c.nodes,
            [
                ("10.0.0.1".to_string(), 6379),
                ("::1".to_string(), 7000),
                ("redis-2".to_string(), 7001)
            ]
        );
        assert!(c.split_multi_key && !c.read_from_replicas);
        assert_eq!(c.refresh_sec, 30);
        let bad: &[(Value, &str)] = &[
            (json!([]), "'redis_cluster' must be an object"),
            (json!({}), "'redis_cluster.nodes' must be a non-empty list of \"host:port\" strings"),
            (json!({"nodes": []}), "'redis_cluster.nodes' must be a non-empty list of \"host:port\" strings"),
            (json!({"nodes": [6379]}), "'redis_cluster.nodes' must be a non-empty list of \"host:port\" strings"),
            (json!({"nodes": ["10.0.0.1"]}), "'redis_cluster.nodes': '10.0.0.1' is not \"host:port\" with a port from 1 to 65535"),
            (json!({"nodes": ["10.0.0.1:0"]}), "'redis_cluster.nodes': '10.0.0.1:0' is not \"host:port\" with a port from 1 to 65535"),
            (json!({"nodes": [":6379"]}), "'redis_cluster.nodes': ':6379' is not \"host:port\" with a port from 1 to 65535"),
            (json!({"nodes": ["a:1"], "split_multi_key": "yes"}), "'redis_cluster.split_multi_key' must be true or false"),
            (json!({"nodes": ["a:1"], "node": ["b:2"]}), "unknown key 'node' in 'redis_cluster'"),
            (json!({"nodes": ["a:1"], "refresh_sec": 0}), "'redis_cluster.refresh_sec' must be a number of seconds from 1 to 3600"),
            (json!({"nodes": ["a:1"], "refresh_sec": "5"}), "'redis_cluster.refresh_sec' must be a number of seconds from 1 to 3600"),
        ];
        for (v, msg) in bad {
            assert_eq!(parse_cluster(v).unwrap_err().to_string(), *msg, "{v}");
        }
    }

    #[test]
    fn sentinel_block() {
        let s = parse_sentinel(
            &json!({"master": "mymaster", "nodes": ["127.0.0.1:26379"], "auth": "pw"}),
        )
        .unwrap();
        assert_eq!(s.master, "mymaster");
        assert_eq!(s.nodes, [("127.0.0.1".to_string(), 26379)]);
        assert_eq!(s.auth.as_deref(), Some("pw"));
        let bad: &[(Value, &str)] = &[
            (
                json!({"nodes": ["a:1"]}),
                "'redis_sentinel.master' must be a non-empty string",
            ),
            (
                json!({"master": "", "nodes": ["a:1"]}),
                "'redis_sentinel.master' must be a non-empty string",
            ),
            (
                json!({"master": "m"}),
                "'redis_sentinel.nodes' must be a non-empty list of \"host:port\" strings",
            ),
            (
                json!({"master": "m", "nodes": ["a:1"], "auth": 5}),
                "'redis_sentinel.auth' must be a string",
            ),
            (
                json!({"master": "m", "nodes": ["a:1"], "x": 5}),
                "unknown key 'x' in 'redis_sentinel'",
            ),
        ];
        for (v, msg) in bad {
            assert_eq!(parse_sentinel(v).unwrap_err().to_string(), *msg, "{v}");
        }
    }
}
