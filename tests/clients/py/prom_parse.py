"""Parses a Prometheus text exposition from stdin with the official Python client's parser
(prometheus_client.parser) and prints it as JSON for the Rust tests:
{"families": {name: type}, "samples": [[sample name, {label: value}, value], ...]}.
A text the parser rejects exits non-zero with the parser's error on stderr."""

import json
import sys

from prometheus_client.parser import text_string_to_metric_families


def main():
    families = {}
    samples = []
    for family in text_string_to_metric_families(sys.stdin.read()):
        families[family.name] = family.type
        for s in family.samples:
            samples.append([s.name, dict(s.labels), s.value])
    json.dump({"families": families, "samples": samples}, sys.stdout)


if __name__ == "__main__":
    main()
