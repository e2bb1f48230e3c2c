"""The upstash-redis SDK from PyPI (pinned in tests/upstash/requirements.txt) against
webdis-rs's Upstash-compatible API: a smaller set than the Node suite. Run by
tests/it/upstash_sdk.rs with UPSTASH_URL, UPSTASH_TOKEN and UPSTASH_RO_TOKEN set."""

import asyncio
import os
import unittest

from upstash_redis import Redis
from upstash_redis.asyncio import Redis as AsyncRedis
from upstash_redis.errors import UpstashError

URL = os.environ["UPSTASH_URL"]
TOKEN = os.environ["UPSTASH_TOKEN"]
RO_TOKEN = os.environ["UPSTASH_RO_TOKEN"]


def client(**kw):
    return Redis(url=URL, token=kw.pop("token", TOKEN), rest_retries=0, **kw)


class Commands(unittest.TestCase):
    def setUp(self):
        self.r = client()

    def test_strings(self):
        r = self.r
        self.assertTrue(r.set("py:s", "héllo ✓ 😀", ex=100))
        self.assertEqual(r.get("py:s"), "héllo ✓ 😀")
        self.assertEqual(r.ttl("py:s"), 100)
        self.assertEqual(r.incr("py:n"), 1)
        self.assertEqual(r.incrby("py:n", 41), 42)
        self.assertEqual(r.incrbyfloat("py:f", 1.5), 1.5)
        self.assertTrue(r.mset({"py:a": "1", "py:b": "2"}))
        self.assertEqual(r.mget("py:a", "py:b", "py:none"), ["1", "2", None])
        self.assertEqual(r.append("py:a", "x"), 2)
        self.assertEqual(r.getrange("py:a", 0, 0), "1")
        self.assertEqual(r.delete("py:a", "py:b"), 2)
        self.assertEqual(r.exists("py:a"), 0)
        self.assertEqual(r.get("py:none"), None)

    def test_hashes_lists_sets_zsets(self):
        r = self.r
        self.assertEqual(r.hset("py:h", values={"f1": "v1", "f2": "v2"}), 2)
        self.assertEqual(r.hget("py:h", "f1"), "v1")
        self.assertEqual(r.hgetall("py:h"), {"f1": "v1", "f2": "v2"})
        self.assertEqual(r.hincrby("py:h", "n", 5), 5)
        self.assertEqual(r.rpush("py:l", "a", "b", "c"), 3)
        self.assertEqual(r.lrange("py:l", 0, -1), ["a", "b", "c"])
        self.assertEqual(r.lpop("py:l"), "a")
        self.assertEqual(r.sadd("py:set", "x", "y"), 2)
        self.assertEqual(sorted(r.smembers("py:set")), ["x", "y"])
        self.assertEqual(r.sismember("py:set", "x"), True)
        self.assertEqual(r.zadd("py:z", {"one": 1, "two": 2.5}), 2)
        self.assertEqual(r.zscore("py:z", "two"), 2.5)
        self.assertEqual(r.zrange("py:z", 0, -1, withscores=True), [("one", 1.0), ("two", 2.5)])
        self.assertEqual(r.eval("return {KEYS[1], ARGV[1], 3}", ["k"], ["a"]), ["k", "a", 3])

    def test_errors(self):
        self.r.set("py:e", "text")
        with self.assertRaisesRegex(UpstashError, "not an integer"):
            self.r.incr("py:e")
        with self.assertRaisesRegex(UpstashError, "WRONGPASS"):
            client(token="wrong").get("py:e")
        ro = client(token=RO_TOKEN)
        self.assertEqual(ro.get("py:e"), "text")
        with self.assertRaisesRegex(UpstashError, "NOPERM"):
            ro.set("py:e", "other")

    def test_pipeline_and_transaction(self):
        p = self.r.pipeline()
        p.set("py:p", "1")
        p.incr("py:p")
        p.get("py:p")
        self.assertEqual(p.exec(), [True, 2, "2"])
        t = self.r.multi()
        t.incr("py:p")
        t.get("py:p")
        self.assertEqual(t.exec(), [3, "3"])

    def test_without_base64(self):
        r = client(rest_encoding=None)
        r.set("py:raw", "plain ✓")
        self.assertEqual(r.get("py:raw"), "plain ✓")

    def test_read_your_writes(self):
        r = self.r
        r.set("py:ryw", "1")
        first = r._sync_token
        self.assertTrue(first)
        r.incr("py:ryw")
        self.assertNotEqual(r._sync_token, first)

    def test_async_client(self):
        async def run():
            r = AsyncRedis(url=URL, token=TOKEN, rest_retries=0)
            try:
                await r.set("py:async", "v")
                return await r.get("py:async")
            finally:
                await r.close()

        self.assertEqual(asyncio.run(run()), "v")


if __name__ == "__main__":
    unittest.main()
