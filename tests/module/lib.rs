//! A small Redis module for webdis-rs's tests, loaded with `redis-server --loadmodule`:
//!
//! * `example.hgetset key field value`: the modules tutorial's command, HGET then HSET,
//!   replying with the old value;
//! * `example.types`: replies with one value of every RESP3 type (map, set, double,
//!   boolean, big number, verbatim string, null, nested array), in a map ordered by key.
//!   A RESP2 client gets Redis's RESP2 translation of the same reply.

use redis_module::{
    redis_module, redisvalue::RedisValueKey, Context, RedisError, RedisResult, RedisString,
    RedisValue,
};
use std::collections::{BTreeMap, BTreeSet};

fn hgetset(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    if args.len() != 4 {
        return Err(RedisError::WrongArity);
    }
    // `Context::call` hands a bulk reply back as a simple string: reply with a bulk
    // string, as HGET itself does.
    let old = match ctx.call("HGET", &[&args[1], &args[2]])? {
        RedisValue::SimpleString(s) => RedisValue::BulkString(s),
        other => other,
    };
    ctx.call("HSET", &[&args[1], &args[2], &args[3]])?;
    Ok(old)
}

fn types(_: &Context, _args: Vec<RedisString>) -> RedisResult {
    let key = |s: &str| RedisValueKey::String(s.to_string());
    let mut map = BTreeMap::new();
    map.insert(
        key("map"),
        RedisValue::OrderedMap(BTreeMap::from([(key("a"), RedisValue::Integer(1))])),
    );
    map.insert(
        key("set"),
        RedisValue::OrderedSet(BTreeSet::from([key("x")])),
    );
    map.insert(key("double"), RedisValue::Float(1.5));
    map.insert(key("bool"), RedisValue::Bool(true));
    map.insert(
        key("bignum"),
        RedisValue::BigNumber("1234567890123456789012345678901234567890".into()),
    );
    map.insert(
        key("verbatim"),
        RedisValue::VerbatimString(("txt".try_into()?, b"hello".to_vec())),
    );
    map.insert(key("null"), RedisValue::Null);
    map.insert(
        key("nested"),
        RedisValue::Array(vec![
            RedisValue::Integer(1),
            RedisValue::Array(vec![RedisValue::SimpleStringStatic("a")]),
        ]),
    );
    Ok(RedisValue::OrderedMap(map))
}

redis_module! {
    name: "example",
    version: 1,
    allocator: (redis_module::alloc::RedisAlloc, redis_module::alloc::RedisAlloc),
    data_types: [],
    commands: [
        ["example.hgetset", hgetset, "write fast deny-oom", 1, 1, 1, ""],
        ["example.types", types, "readonly", 0, 0, 0, ""],
    ],
}
