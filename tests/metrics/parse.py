"""Parses a Prometheus text exposition with Prometheus's own Python client library
(prometheus-client, pinned in tests/wsclient/requirements.txt) and prints its families
as JSON, for tests/it/metrics.rs. Usage: parse.py FILE. A text the parser refuses makes
it exit with an error."""

import json
import math
import sys

from prometheus_client.parser import text_string_to_metric_families


def value(v):
    # JSON has no infinity; none of the gateway's samples should be one.
    if math.isinf(v) or math.isnan(v):
        raise ValueError(f"sample value {v}")
    return v


with open(sys.argv[1], encoding="utf-8") as f:
    text = f.read()
families = [
    {
        "name": fam.name,
        "type": fam.type,
        "help": fam.documentation,
        "samples": [[s.name, s.labels, value(s.value)] for s in fam.samples],
    }
    for fam in text_string_to_metric_families(text)
]
json.dump(families, sys.stdout)
