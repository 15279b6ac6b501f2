#!/usr/bin/env python3
"""Checks that template.yaml's DynamoDB tables are the ones that
shared/src/adapters/dynamo/schema.rs creates: key schemas, attribute definitions, every
global secondary index (name, keys, projection), the TTL attribute and the stream (its view
type: the callbacks function reads old and new images).

    python3 infra/check_template_schema.py

Needs PyYAML (the virtualenv of scripts/lambda-tools has it). Exit status 1 on a mismatch.
"""
import os
import re
import sys

import yaml

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")


class CfnLoader(yaml.SafeLoader):
    """Reads CloudFormation's short-form tags (!Ref, !Sub, ...) as plain values."""


def _any_tag(loader, _suffix, node):
    if isinstance(node, yaml.ScalarNode):
        return loader.construct_scalar(node)
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node)
    return loader.construct_mapping(node)


CfnLoader.add_multi_constructor("!", _any_tag)


def read(path):
    with open(os.path.join(ROOT, path), encoding="utf-8") as f:
        return f.read()


def between(text, start, end):
    i = text.index(start)
    return text[i : text.index(end, i)]


def constants(codec, module):
    """The attribute-name constants of one `mod <module> { ... }` of codec.rs."""
    body = between(codec, f"mod {module} {{", "}")
    return dict(re.findall(r'pub const (\w+): &str = "([^"]+)";', body))


def code_table(source, names):
    # Keys of the table itself, not of its indexes (built by `index_all`).
    source = re.sub(r"index_all\([^)]*\)", "", source)
    attributes = sorted(
        (names[a], kind) for a, kind in re.findall(r"attribute\(\w+::(\w+), (\w)\)", source)
    )
    keys = [
        (names[a], "HASH" if kind == "Hash" else "RANGE")
        for a, kind in re.findall(r"key\(\w+::(\w+), KeyType::(\w+)\)", source)
    ]
    return attributes, keys


def code_indexes(source, names, index_names):
    found = []
    pattern = r"index\(\s*(\w+),\s*msg::(\w+),\s*(None|Some\(msg::(\w+)\)),\s*&\[([^\]]*)\],?\s*\)"
    for m in re.finditer(pattern, source):
        include = [names[x.strip().split("::")[1]] for x in m.group(5).split(",") if x.strip()]
        found.append(
            (
                index_names[m.group(1)],
                names[m.group(2)],
                names[m.group(4)] if m.group(4) else None,
                "INCLUDE" if include else "KEYS_ONLY",
                include,
            )
        )
    for m in re.finditer(r"index_all\(\s*(\w+),\s*\w+::(\w+),\s*\w+::(\w+),?\s*\)", source):
        found.append((index_names[m.group(1)], names[m.group(2)], names[m.group(3)], "ALL", []))
    return found


def template_table(resource):
    attributes = sorted((a["AttributeName"], a["AttributeType"]) for a in resource["AttributeDefinitions"])
    keys = [(k["AttributeName"], k["KeyType"]) for k in resource["KeySchema"]]
    return attributes, keys


def template_indexes(resource):
    found = []
    for g in resource.get("GlobalSecondaryIndexes", []):
        keys = {k["KeyType"]: k["AttributeName"] for k in g["KeySchema"]}
        projection = g["Projection"]
        found.append(
            (
                g["IndexName"],
                keys["HASH"],
                keys.get("RANGE"),
                projection["ProjectionType"],
                projection.get("NonKeyAttributes", []),
            )
        )
    return found


def main():
    template = yaml.load(read("template.yaml"), Loader=CfnLoader)["Resources"]
    codec = read("shared/src/adapters/dynamo/codec.rs")
    stats = read("shared/src/adapters/dynamo/stats.rs")
    schema = read("shared/src/adapters/dynamo/schema.rs")
    index_names = dict(re.findall(r'pub\(super\) const (\w+): &str = "([^"]+)";', schema))
    tables = [
        ("MessagesTable", "msg", "messages", between(schema, "let messages", "let idempotency")),
        ("IdempotencyTable", "idem", "idempotency", between(schema, "let idempotency", "let tenants")),
        ("TenantsTable", "tenant", "tenants", between(schema, "let tenants", "let stats")),
        ("StatsTable", "stat", "stats", between(schema, "let stats", "for (request")),
    ]
    # The TTL attribute of each table, as the loop over the created tables sets it:
    # `(tenants, Some(tenant::TTL))`.
    ttls = dict(
        re.findall(r"\((\w+), Some\(\w+::(\w+)\)\)", between(schema, "for (request", "Ok(())"))
    )
    ok = True
    for resource, module, variable, source in tables:
        names = constants(stats if module == "stat" else codec, module)
        props = template[resource]["Properties"]
        want = code_table(source, names)
        have = template_table(props)
        want_indexes = code_indexes(source, names, index_names)
        have_indexes = template_indexes(props)
        want_ttl = names[ttls[variable]] if variable in ttls else None
        have_ttl = props.get("TimeToLiveSpecification", {}).get("AttributeName")
        view = re.search(r"stream_view_type\(StreamViewType::(\w+)\)", source)
        want_stream = re.sub(r"(?<!^)([A-Z])", r"_\1", view.group(1)).upper() if view else None
        have_stream = props.get("StreamSpecification", {}).get("StreamViewType")
        for what, w, h in [
            ("attributes and keys", want, have),
            ("indexes", want_indexes, have_indexes),
            ("TTL attribute", want_ttl, have_ttl),
            ("stream view type", want_stream, have_stream),
        ]:
            if w != h:
                ok = False
                print(f"{resource} {what}: schema.rs has {w}, template.yaml has {h}")
        if module == "msg":
            print(f"{resource} indexes: {have_indexes}")
    print("template.yaml matches schema.rs" if ok else "template.yaml DIFFERS from schema.rs")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
