// The @upstash/redis SDK (pinned in package.json) against webdis-rs's Upstash-compatible
// API. Run by tests/it/upstash_sdk.rs, which starts a Redis and a gateway and passes
// UPSTASH_URL, UPSTASH_TOKEN and UPSTASH_RO_TOKEN. Run alone with:
//   UPSTASH_URL=http://127.0.0.1:7379 UPSTASH_TOKEN=... UPSTASH_RO_TOKEN=... node --test tests/upstash/
import { test, describe, after } from "node:test";
import assert from "node:assert/strict";
import { Redis } from "@upstash/redis";

const url = process.env.UPSTASH_URL;
const token = process.env.UPSTASH_TOKEN;
const roToken = process.env.UPSTASH_RO_TOKEN;
assert.ok(url && token && roToken, "UPSTASH_URL, UPSTASH_TOKEN and UPSTASH_RO_TOKEN must be set");

// Every request the SDK makes, to check what it sent (paths) and got (sync tokens).
const seen = [];
const realFetch = globalThis.fetch;
globalThis.fetch = async (input, init) => {
  const res = await realFetch(input, init);
  seen.push({ path: new URL(String(input)).pathname, sync: res.headers.get("upstash-sync-token"), status: res.status });
  return res;
};

const opts = { url, token, enableTelemetry: true, retry: false };
const redis = new Redis({ ...opts, enableAutoPipelining: false });
const commandsRun = new Set();
// Names every command a test ran, to count them at the end.
const ran = (...names) => names.forEach((n) => commandsRun.add(n));

after(() => {
  // A part of the suite (UPSTASH_SUBSET, with --test-name-pattern) drives fewer.
  if (process.env.UPSTASH_SUBSET) return;
  assert.ok(commandsRun.size >= 80, `only ${commandsRun.size} commands driven: ${[...commandsRun].join(" ")}`);
  console.log(`# ${commandsRun.size} distinct SDK commands driven`);
});

describe("strings", () => {
  test("set, get, options, counters, ranges", async () => {
    assert.equal(await redis.set("s:a", "hello"), "OK");
    assert.equal(await redis.get("s:a"), "hello");
    assert.equal(await redis.set("s:ex", "v", { ex: 100 }), "OK");
    assert.equal(await redis.ttl("s:ex"), 100);
    assert.equal(await redis.set("s:a", "x", { nx: true }), null);
    assert.equal(await redis.set("s:a", "world", { get: true }), "hello");
    assert.equal(await redis.append("s:a", "!"), 6);
    assert.equal(await redis.strlen("s:a"), 6);
    assert.equal(await redis.getrange("s:a", 0, 2), "wor");
    assert.equal(await redis.setrange("s:a", 0, "W"), 6);
    assert.equal(await redis.getdel("s:a"), "World!");
    assert.equal(await redis.incr("s:n"), 1);
    assert.equal(await redis.incrby("s:n", 10), 11);
    assert.equal(await redis.decr("s:n"), 10);
    assert.equal(await redis.decrby("s:n", 5), 5);
    assert.equal(await redis.incrbyfloat("s:f", 1.5), 1.5);
    assert.equal(await redis.mset({ "s:m1": "a", "s:m2": "b" }), "OK");
    assert.deepEqual(await redis.mget("s:m1", "s:m2", "s:none"), ["a", "b", null]);
    assert.equal(await redis.msetnx({ "s:m1": "z", "s:m3": "c" }), 0);
    assert.equal(await redis.setex("s:sx", 50, "v"), "OK");
    assert.equal(await redis.psetex("s:px", 50000, "v"), "OK");
    assert.ok((await redis.pttl("s:px")) > 40000);
    assert.equal(await redis.setnx("s:nx", "v"), 1);
    assert.equal(await redis.getset("s:nx", "w"), "v");
    assert.equal(await redis.getex("s:nx", { ex: 30 }), "w");
    assert.equal(await redis.ttl("s:nx"), 30);
    ran("set", "get", "ttl", "append", "strlen", "getrange", "setrange", "getdel", "incr", "incrby", "decr",
      "decrby", "incrbyfloat", "mset", "mget", "msetnx", "setex", "psetex", "pttl", "setnx", "getset", "getex");
  });

  test("JSON values, binary-safe and non-ASCII strings", async () => {
    const obj = { name: "ana", tags: ["a", "b"], n: 3, nested: { ok: true } };
    await redis.set("j:obj", obj);
    assert.deepEqual(await redis.get("j:obj"), obj);
    const text = "héllo wörld ✓ 😀 \u0000 \"quoted\" \\ \n new line";
    await redis.set("j:text", text);
    assert.equal(await redis.get("j:text"), text);
    const raw = new Redis({ ...opts, automaticDeserialization: false });
    assert.equal(await raw.set("j:num", "0123"), "OK");
    assert.equal(await raw.get("j:num"), "0123");
    // Without base64 too.
    const plain = new Redis({ ...opts, responseEncoding: false });
    assert.equal(await plain.get("j:text"), text);
    assert.deepEqual(await plain.get("j:obj"), obj);
  });
});

describe("keys", () => {
  test("expiry, rename, type, scan", async () => {
    await redis.set("k:a", "1");
    assert.equal(await redis.exists("k:a", "k:none"), 1);
    assert.equal(await redis.expire("k:a", 100), 1);
    assert.equal(await redis.pexpire("k:a", 200000), 1);
    assert.equal(await redis.persist("k:a"), 1);
    assert.equal(await redis.expireat("k:a", Math.floor(Date.now() / 1000) + 100), 1);
    assert.equal(await redis.pexpireat("k:a", Date.now() + 100000), 1);
    assert.equal(await redis.type("k:a"), "string");
    assert.equal(await redis.rename("k:a", "k:b"), "OK");
    assert.equal(await redis.renamenx("k:b", "k:c"), 1);
    assert.equal(await redis.touch("k:c"), 1);
    assert.equal(await redis.copy("k:c", "k:d"), "COPIED");
    assert.deepEqual((await redis.keys("k:*")).sort(), ["k:c", "k:d"]);
    const [cursor, found] = await redis.scan(0, { match: "k:*", count: 100 });
    assert.equal(cursor, "0");
    assert.deepEqual(found.sort(), ["k:c", "k:d"]);
    assert.ok((await redis.dbsize()) > 0);
    assert.ok(typeof (await redis.randomkey()) === "string");
    assert.equal(await redis.unlink("k:d"), 1);
    assert.equal(await redis.del("k:c", "k:none"), 1);
    assert.equal(await redis.echo("hi"), "hi");
    assert.equal(await redis.ping(), "PONG");
    const [secs] = await redis.time();
    assert.ok(secs > 1_600_000_000);
    ran("exists", "expire", "pexpire", "persist", "expireat", "pexpireat", "type", "rename", "renamenx", "touch",
      "copy", "keys", "scan", "dbsize", "randomkey", "unlink", "del", "echo", "ping", "time");
  });
});

describe("hashes", () => {
  test("fields, counters, scans", async () => {
    assert.equal(await redis.hset("h:a", { f1: "v1", f2: 2 }), 2);
    assert.equal(await redis.hget("h:a", "f1"), "v1");
    assert.deepEqual(await redis.hgetall("h:a"), { f1: "v1", f2: 2 });
    assert.deepEqual(await redis.hmget("h:a", "f1", "none"), { f1: "v1", none: null });
    assert.equal(await redis.hexists("h:a", "f1"), 1);
    assert.equal(await redis.hincrby("h:a", "f2", 3), 5);
    assert.equal(await redis.hincrbyfloat("h:a", "f3", 0.5), 0.5);
    assert.deepEqual((await redis.hkeys("h:a")).sort(), ["f1", "f2", "f3"]);
    assert.equal((await redis.hvals("h:a")).length, 3);
    assert.equal(await redis.hlen("h:a"), 3);
    assert.equal(await redis.hsetnx("h:a", "f1", "x"), 0);
    assert.equal(await redis.hstrlen("h:a", "f1"), 2);
    assert.equal(await redis.hmset("h:b", { a: "1" }), "OK");
    assert.equal(typeof (await redis.hrandfield("h:a")), "string");
    const [cur, fields] = await redis.hscan("h:a", 0);
    assert.equal(cur, "0");
    assert.equal(fields.length, 6);
    assert.equal(await redis.hdel("h:a", "f1", "f3"), 2);
    assert.equal(await redis.hgetall("h:none"), null);
    ran("hset", "hget", "hgetall", "hmget", "hexists", "hincrby", "hincrbyfloat", "hkeys", "hvals", "hlen",
      "hsetnx", "hstrlen", "hmset", "hrandfield", "hscan", "hdel");
  });
});

describe("lists", () => {
  test("push, pop, ranges, moves", async () => {
    assert.equal(await redis.rpush("l:a", "a", "b", "c"), 3);
    assert.equal(await redis.lpush("l:a", "z"), 4);
    assert.deepEqual(await redis.lrange("l:a", 0, -1), ["z", "a", "b", "c"]);
    assert.equal(await redis.llen("l:a"), 4);
    assert.equal(await redis.lindex("l:a", 1), "a");
    assert.equal(await redis.lset("l:a", 1, "A"), "OK");
    assert.equal(await redis.linsert("l:a", "before", "b", "x"), 5);
    assert.equal(await redis.lrem("l:a", 1, "x"), 1);
    assert.equal(await redis.lpos("l:a", "b"), 2);
    assert.equal(await redis.ltrim("l:a", 0, 2), "OK");
    assert.equal(await redis.lpop("l:a"), "z");
    assert.equal(await redis.rpop("l:a"), "b");
    assert.equal(await redis.lmove("l:a", "l:b", "left", "right"), "A");
    assert.equal(await redis.rpush("l:c", "1", "2"), 2);
    assert.equal(await redis.lmove("l:c", "l:b", "right", "left"), 2);
    assert.equal(await redis.lpushx("l:none", "v"), 0);
    assert.equal(await redis.rpushx("l:b", "w"), 3);
    assert.deepEqual(await redis.lmpop(1, ["l:b"], "LEFT", 2), ["l:b", [2, "A"]]);
    ran("rpush", "lpush", "lrange", "llen", "lindex", "lset", "linsert", "lrem", "lpos", "ltrim", "lpop", "rpop",
      "lmove", "lpushx", "rpushx", "lmpop");
  });
});

describe("sets", () => {
  test("members and algebra", async () => {
    assert.equal(await redis.sadd("t:a", "1", "2", "3"), 3);
    assert.equal(await redis.sadd("t:b", "2", "3", "4"), 3);
    assert.equal(await redis.scard("t:a"), 3);
    assert.equal(await redis.sismember("t:a", "1"), 1);
    assert.deepEqual(await redis.smismember("t:a", ["1", "9"]), [1, 0]);
    assert.deepEqual((await redis.smembers("t:a")).sort(), [1, 2, 3]);
    assert.deepEqual(await redis.sdiff("t:a", "t:b"), [1]);
    assert.deepEqual((await redis.sinter("t:a", "t:b")).sort(), [2, 3]);
    assert.equal((await redis.sunion("t:a", "t:b")).length, 4);
    assert.equal(await redis.sdiffstore("t:d", "t:a", "t:b"), 1);
    assert.equal(await redis.sinterstore("t:i", "t:a", "t:b"), 2);
    assert.equal(await redis.sunionstore("t:u", "t:a", "t:b"), 4);
    assert.equal(await redis.smove("t:u", "t:d", "4"), 1);
    assert.ok([1, 2, 3].includes(await redis.srandmember("t:a")));
    const [cur, members] = await redis.sscan("t:a", 0);
    assert.equal(cur, "0");
    assert.equal(members.length, 3);
    assert.equal(await redis.srem("t:a", "1"), 1);
    assert.equal((await redis.spop("t:a", 2)).length, 2);
    ran("sadd", "scard", "sismember", "smismember", "smembers", "sdiff", "sinter", "sunion", "sdiffstore",
      "sinterstore", "sunionstore", "smove", "srandmember", "sscan", "srem", "spop");
  });
});

describe("sorted sets", () => {
  test("scores, ranks, ranges, stores", async () => {
    assert.equal(await redis.zadd("z:a", { score: 1, member: "one" }, { score: 2.5, member: "two" }), 2);
    assert.equal(await redis.zadd("z:b", { score: 3, member: "two" }), 1);
    assert.equal(await redis.zscore("z:a", "two"), 2.5);
    assert.deepEqual(await redis.zmscore("z:a", ["one", "two"]), [1, 2.5]);
    assert.equal(await redis.zcard("z:a"), 2);
    assert.equal(await redis.zcount("z:a", 0, 2), 1);
    assert.equal(await redis.zincrby("z:a", 1, "one"), 2);
    assert.equal(await redis.zrank("z:a", "one"), 0);
    assert.equal(await redis.zrevrank("z:a", "one"), 1);
    assert.deepEqual(await redis.zrange("z:a", 0, -1, { withScores: true }), ["one", 2, "two", 2.5]);
    assert.deepEqual(await redis.zrange("z:a", 2, 3, { byScore: true }), ["one", "two"]);
    assert.equal(await redis.zlexcount("z:a", "-", "+"), 2);
    assert.equal(await redis.zunionstore("z:u", 2, ["z:a", "z:b"]), 2);
    assert.equal(await redis.zinterstore("z:i", 2, ["z:a", "z:b"]), 1);
    assert.equal(await redis.zdiffstore("z:d", 2, "z:a", "z:b"), 1);
    const [cur, items] = await redis.zscan("z:a", 0);
    assert.equal(cur, "0");
    assert.equal(items.length, 4);
    assert.deepEqual(await redis.zpopmin("z:u"), ["one", 2]);
    assert.deepEqual(await redis.zpopmax("z:u"), ["two", 5.5]);
    assert.equal(await redis.zremrangebyrank("z:a", 0, 0), 1);
    assert.equal(await redis.zremrangebyscore("z:a", 0, 10), 1);
    assert.equal(await redis.zrem("z:b", "two"), 1);
    ran("zadd", "zscore", "zmscore", "zcard", "zcount", "zincrby", "zrank", "zrevrank", "zrange", "zlexcount",
      "zunionstore", "zinterstore", "zdiffstore", "zscan", "zpopmin", "zpopmax", "zremrangebyrank",
      "zremrangebyscore", "zrem");
  });
});

describe("streams", () => {
  test("add, read, groups", async () => {
    const id = await redis.xadd("x:a", "*", { field: "v1" });
    assert.match(id, /^\d+-\d+$/);
    await redis.xadd("x:a", "*", { field: "v2" });
    assert.equal(await redis.xlen("x:a"), 2);
    const range = await redis.xrange("x:a", "-", "+");
    assert.deepEqual(range[id], { field: "v1" });
    const rev = await redis.xrevrange("x:a", "+", "-", 1);
    assert.equal(Object.keys(rev).length, 1);
    assert.equal(await redis.xgroup("x:a", { type: "CREATE", group: "g", id: "0" }), "OK");
    const read = await redis.xreadgroup("g", "c", "x:a", ">", { count: 10 });
    assert.equal(read[0][0], "x:a");
    assert.equal(read[0][1].length, 2);
    assert.equal(await redis.xack("x:a", "g", id), 1);
    const pending = await redis.xpending("x:a", "g", "-", "+", 10);
    assert.equal(pending.length, 1);
    const plain = await redis.xread("x:a", "0");
    assert.equal(plain[0][1].length, 2);
    assert.equal(await redis.xdel("x:a", id), 1);
    assert.equal(await redis.xtrim("x:a", { strategy: "MAXLEN", threshold: 0 }), 1);
    ran("xadd", "xlen", "xrange", "xrevrange", "xgroup", "xreadgroup", "xack", "xpending", "xread", "xdel", "xtrim");
  });
});

describe("bitmaps, HyperLogLog, geo", () => {
  test("bits", async () => {
    assert.equal(await redis.setbit("b:a", 7, 1), 0);
    assert.equal(await redis.getbit("b:a", 7), 1);
    assert.equal(await redis.bitcount("b:a", 0, -1), 1);
    assert.equal(await redis.bitpos("b:a", 1), 7);
    assert.equal(await redis.bitop("or", "b:o", "b:a"), 1);
    assert.deepEqual(await redis.bitfield("b:f").set("u8", 0, 200).get("u8", 0).exec(), [0, 200]);
    ran("setbit", "getbit", "bitcount", "bitpos", "bitop", "bitfield");
  });
  test("hyperloglog", async () => {
    assert.equal(await redis.pfadd("p:a", "x", "y", "z"), 1);
    assert.equal(await redis.pfadd("p:b", "z", "w"), 1);
    assert.equal(await redis.pfcount("p:a"), 3);
    assert.equal(await redis.pfmerge("p:m", "p:a", "p:b"), "OK");
    assert.equal(await redis.pfcount("p:m"), 4);
    ran("pfadd", "pfcount", "pfmerge");
  });
  test("geo", async () => {
    assert.equal(
      await redis.geoadd("g:a", { longitude: 13.361389, latitude: 38.115556, member: "Palermo" },
        { longitude: 15.087269, latitude: 37.502669, member: "Catania" }),
      2,
    );
    const dist = await redis.geodist("g:a", "Palermo", "Catania", "KM");
    assert.ok(Math.abs(dist - 166.2742) < 0.01, String(dist));
    const [pos] = await redis.geopos("g:a", "Palermo");
    assert.ok(Math.abs(pos.lng - 13.361389) < 0.001);
    assert.deepEqual(await redis.geohash("g:a", "Palermo"), ["sqc8b49rny0"]);
    const near = await redis.geosearch("g:a", { type: "FROMLONLAT", coordinate: { lon: 15, lat: 37 } },
      { type: "BYRADIUS", radius: 200, radiusType: "KM" }, "ASC");
    assert.deepEqual(near.map((m) => m.member), ["Catania", "Palermo"]);
    ran("geoadd", "geodist", "geopos", "geohash", "geosearch");
  });
});

describe("scripts", () => {
  test("eval, evalsha, script load and the NOSCRIPT fallback", async () => {
    assert.equal(await redis.eval("return ARGV[1]", [], ["hi"]), "hi");
    assert.deepEqual(await redis.eval("return {KEYS[1], 2}", ["k"], []), ["k", 2]);
    const sha = await redis.scriptLoad("return 'loaded'");
    assert.deepEqual(await redis.scriptExists(sha), [1]);
    assert.equal(await redis.evalsha(sha, [], []), "loaded");
    assert.equal(await redis.scriptFlush(), "OK");
    // Not loaded any more: the script object gets NOSCRIPT and falls back to EVAL.
    const script = redis.createScript("return ARGV[1] .. '!'");
    assert.equal(await script.exec([], ["again"]), "again!");
    assert.equal(await script.exec([], ["twice"]), "twice!");
    assert.equal(await redis.evalRo("return ARGV[1]", [], ["ro"]), "ro");
    await assert.rejects(redis.eval("return redis.call('NOPE')", [], []), /Unknown Redis command|unknown command/i);
    ran("eval", "scriptLoad", "scriptExists", "evalsha", "scriptFlush", "evalRo");
  });
});

describe("pipelines and transactions", () => {
  test("explicit pipeline", async () => {
    const p = redis.pipeline();
    p.set("pl:a", 1).incr("pl:a").get("pl:a").hset("pl:h", { f: "v" }).hgetall("pl:h");
    assert.deepEqual(await p.exec(), ["OK", 2, 2, 1, { f: "v" }]);
    assert.ok(seen.some((s) => s.path === "/pipeline"));
    // A failing command in a pipeline: the others still ran.
    const bad = redis.pipeline().set("pl:b", "x").incr("pl:b").get("pl:b");
    const kept = await bad.exec({ keepErrors: true });
    assert.equal(kept[0].result, "OK");
    assert.match(kept[1].error, /not an integer/);
    assert.equal(kept[2].result, "x");
    await assert.rejects(redis.pipeline().incr("pl:b").exec(), /not an integer/);
  });

  test("transactions, also concurrent ones", async () => {
    const tx = redis.multi();
    tx.set("tx:a", "1").incr("tx:a").get("tx:a");
    assert.deepEqual(await tx.exec(), ["OK", 2, 2]);
    assert.ok(seen.some((s) => s.path === "/multi-exec"));
    // Each transaction sees only its own writes between MULTI and EXEC.
    const all = await Promise.all(
      Array.from({ length: 40 }, (_, i) => redis.multi().set("tx:shared", `v${i}`).get("tx:shared").exec()),
    );
    all.forEach((r, i) => assert.deepEqual(r, ["OK", `v${i}`]));
    // Refused as a whole.
    await assert.rejects(redis.multi().set("tx:b", "1").lpush("tx:b", "x").exec(), /WRONGTYPE/);
  });

  test("auto-pipelining batches commands into /pipeline", async () => {
    const auto = new Redis({ ...opts, enableAutoPipelining: true });
    const before = seen.filter((s) => s.path === "/pipeline").length;
    // The SDK batches reads and writes apart (two requests that may run in either
    // order, against Upstash too): writes first, then reads.
    const writes = await Promise.all([auto.set("ap:a", "1"), auto.incr("ap:a"), auto.sadd("ap:s", "x")]);
    assert.deepEqual(writes, ["OK", 2, 1]);
    const reads = await Promise.all([auto.get("ap:a"), auto.scard("ap:s"), auto.exists("ap:a")]);
    assert.deepEqual(reads, [2, 1, 1]);
    // Batched: one request for each, to /pipeline.
    const batches = seen.filter((s) => s.path === "/pipeline").length - before;
    assert.equal(batches, 2);
    // 1,000 commands at once.
    const many = await Promise.all(Array.from({ length: 1000 }, (_, i) => auto.incrby("ap:n", i)));
    assert.equal(many.at(-1), (999 * 1000) / 2);
    assert.ok(auto.pipelineCounter >= 2);
  });
});

describe("read-your-writes", () => {
  const last = () => seen.at(-1).sync;
  test("the sync token changes after every kind of write", async () => {
    await redis.get("ryw:a");
    const t0 = last();
    assert.ok(t0);
    await redis.set("ryw:a", "1");
    const t1 = last();
    assert.notEqual(t1, t0);
    await redis.pipeline().set("ryw:b", 1).incr("ryw:b").exec();
    const t2 = last();
    assert.notEqual(t2, t1);
    await Promise.all([redis.incr("ryw:c"), redis.incr("ryw:c"), redis.incr("ryw:c")]);
    const tokens = seen.slice(-3).map((s) => s.sync);
    assert.equal(new Set([...tokens, t2]).size, 4);
    await redis.eval("return redis.call('SET', KEYS[1], 'x')", ["ryw:e"], []);
    assert.ok(!tokens.includes(last()) && last() !== t2);
    assert.equal(redis.readYourWritesSyncToken, last());
    assert.equal(await redis.get("ryw:e"), "x");
  });
});

describe("tokens", () => {
  test("read-only token reads, and its writes are refused", async () => {
    const ro = new Redis({ ...opts, token: roToken });
    await redis.set("ro:a", "v");
    assert.equal(await ro.get("ro:a"), "v");
    await assert.rejects(ro.set("ro:a", "w"), /NOPERM/);
    await assert.rejects(ro.keys("*"), /NOPERM/);
    assert.equal(await redis.get("ro:a"), "v");
  });
  test("a wrong token is refused", async () => {
    const wrong = new Redis({ ...opts, token: "wrong" });
    await assert.rejects(wrong.get("x"), /WRONGPASS/);
    assert.equal(seen.at(-1).status, 401);
  });
  test("refused commands say so", async () => {
    await assert.rejects(redis.exec(["BLPOP", "q", "1"]), /blocking command BLPOP/);
    await assert.rejects(redis.exec(["SELECT", "1"]), /SELECT is not supported/);
    assert.equal(await redis.clientSetinfo("LIB-NAME", "webdis-rs-test"), "OK");
    ran("exec", "clientSetinfo");
  });
});

describe("pub/sub", () => {
  test("subscribe, psubscribe, publish, unsubscribe", async () => {
    const sub = redis.subscribe(["news"]);
    const psub = redis.psubscribe(["ne*"]);
    const got = [];
    const gotP = [];
    sub.on("message", (m) => got.push(m));
    psub.on("pmessage", (m) => gotP.push(m));
    // Wait until both subscriptions are registered in Redis.
    for (let i = 0; i < 100; i++) {
      const subs = await redis.eval("return redis.call('PUBSUB','NUMSUB','news')[2] + redis.call('PUBSUB','NUMPAT')", [], []);
      if (subs === 2) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    assert.equal(await redis.publish("news", { hello: "world" }), 2);
    for (let i = 0; i < 100 && (got.length === 0 || gotP.length === 0); i++) {
      await new Promise((r) => setTimeout(r, 20));
    }
    assert.deepEqual(got, [{ channel: "news", message: { hello: "world" } }]);
    assert.deepEqual(gotP, [{ pattern: "ne*", channel: "news", message: { hello: "world" } }]);
    await sub.unsubscribe();
    await psub.unsubscribe();
    // Closing the streams unsubscribes: the gateway drops the topics.
    let left = -1;
    for (let i = 0; i < 100 && left !== 0; i++) {
      left = await redis.eval("return redis.call('PUBSUB','NUMSUB','news')[2] + redis.call('PUBSUB','NUMPAT')", [], []);
      if (left !== 0) await new Promise((r) => setTimeout(r, 50));
    }
    assert.equal(left, 0);
    ran("subscribe", "psubscribe", "publish");
  });
});
