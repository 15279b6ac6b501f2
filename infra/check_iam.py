#!/usr/bin/env python3
"""Checks the functions' IAM roles in template.yaml against the AWS calls they made.

    python3 infra/check_iam.py RECORDING [--template template.yaml] [--calls]

RECORDING is moto's request log, one JSON line per request (scripts/with-moto writes it to
the file HOLUB_AWS_CALL_LOG names; scripts/test does so for the test run). In the Lambda
harness each function signs its calls with an access key id of its own, its binary name
(tests/src/lambda/deployment.rs), and the SQS event source polls with that key too, since
Lambda's event source mapping polls with the function's role. Calls signed with any other
key (the tests' own set-up, the contract suites) are not a function's and are left out.

Each call is mapped to the IAM actions and resources it needs (as AWS authorises them: a
transaction per item, SendMessageBatch as SendMessage, an index as its own resource) and
each resource to the template's logical id by the end of its name: the harness names
tables and queues <prefix>-messages, <prefix>-dispatch-dlq, ... where the template has
holub-${Stage}-messages, and secrets <prefix>/providers/... under HOLUB_SECRETS_PREFIX.

Findings, each a non-zero exit: a call its function's role does not grant; an action on a
resource a role grants that no call used (CloudWatch Logs aside, which Lambda itself writes,
and ALLOWED_UNUSED below); a function of the template that made no call (NOT_RUN aside).

Needs cfn-lint, whose decoder reads !Ref, !GetAtt and !Sub (scripts/test installs it).
"""
import argparse
import base64
import fnmatch
import json
import os
import re
import sys
from collections import Counter, defaultdict
from urllib.parse import parse_qs, urlparse

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")

# Grants no recorded call uses but the code needs: (function binary, action, resource) ->
# what needs it (shared/src/adapters/dynamo/messages.rs) and why the Lambda end-to-end
# suite does not get there. Each entry is a path the suite should drive one day; the report
# notes entries a run did use.
ALLOWED_UNUSED = {
    ("holub-api", "dynamodb:BatchGetItem", "IdempotencyTable"):
        "the parts of a stored reply over 300 KB (a batch of thousands with an Idempotency-Key); "
        "the run's batches are small",
    ("holub-api", "dynamodb:DeleteItem", "IdempotencyTable"):
        "releasing the claim of a request that died before storing its message (release_claim), "
        "two minutes after it died",
    ("holub-campaigns", "dynamodb:GetItem", "MessagesTable"):
        "a chunk of one message whose job comes again before its campaign moved on (the run "
        "died in between): its idempotency record names the message, which is looked for",
    ("holub-campaigns", "dynamodb:DeleteItem", "IdempotencyTable"):
        "releasing the claim of a one-message chunk whose run died before storing its message "
        "(release_claim), two minutes after it died",
    ("holub-campaigns", "dynamodb:UpdateItem", "MessagesTable"):
        "cancelling the scheduled messages of a campaign cancelled while one of its chunks was "
        "being expanded (Campaigns::expand, after the chunk is stored); the suite cancels a "
        "campaign before any of its chunks ran, so the campaign's job finds none scheduled",
    ("holub-dispatch", "dynamodb:UpdateItem", "IdempotencyTable"):
        "leasing a provider's rate slot and opening its breaker (ProviderLimits on DynamoDB): "
        "the suite's route table sets no messages_per_second and no provider fails there; "
        "tests/tests/provider_limits.rs and the contract suite drive both against moto",
    ("holub-campaigns", "sqs:ChangeMessageVisibility", "CampaignsQueue"):
        "a chunk's job put back with a backoff: a store or queue outage, or a job still ahead "
        "of its campaign after a short wait (a start whose change never landed); a chunk the "
        "rate refuses is queued again as a new job instead, so the suite meets neither",
}

# Functions the Lambda end-to-end suite does not run: binary -> why. Their grants cannot
# be checked as used; calls they do make are still checked as granted.
NOT_RUN = {}

# CloudWatch Logs grants are for the Lambda service, which writes the function's log.
EXEMPT_SERVICES = ("logs",)

# A secret's ARN ends in "-" and six random characters, which a grant has to allow for.
SECRET_SUFFIX = "-xxxxxx"

SECRETS_ARN = re.compile(
    r"^arn:\$\{AWS::Partition\}:secretsmanager:\$\{AWS::Region\}:\$\{AWS::AccountId\}:secret:"
)
CREDENTIAL = re.compile(r"Credential=([^/,\s]+)/[^/]+/[^/]+/([^/]+)/")

# DynamoDB Streams calls (signed for the service "dynamodb"), authorised on the stream's ARN:
# arn:aws:dynamodb:<region>:<account>:table/<name>/stream/<label>.
STREAM_OPERATIONS = ("DescribeStream", "GetShardIterator", "GetRecords", "ListStreams")
STREAM_ARN = re.compile(r"arn:[^:]+:dynamodb:[^:]*:[^:]*:table/([^/|]+)/stream/")

# AWS authorises these operations as another action (per item for transactions).
SQS_ACTION = {
    "SendMessageBatch": "SendMessage",
    "DeleteMessageBatch": "DeleteMessage",
    "ChangeMessageVisibilityBatch": "ChangeMessageVisibility",
}
TRANSACT_ACTION = {
    "Put": "PutItem",
    "Update": "UpdateItem",
    "Delete": "DeleteItem",
    "ConditionCheck": "ConditionCheckItem",
    "Get": "GetItem",
}


class CheckError(Exception):
    """The inputs cannot be read as this checker expects."""


# --- the template -------------------------------------------------------------------------


def load_template(path):
    from cfnlint.decode import decode

    template, matches = decode(path)
    if matches:
        raise CheckError(f"{path}: {'; '.join(str(m) for m in matches)}")
    return template


def sub_text(value):
    if isinstance(value, dict) and "Fn::Sub" in value:
        sub = value["Fn::Sub"]
        return sub[0] if isinstance(sub, list) else sub
    return value if isinstance(value, str) else None


def grant_resource(value):
    """A grant's resource as the checker names it: a table's or queue's logical id,
    `<table>/index/<name>`, `secret:<name pattern>` or `*`."""
    if isinstance(value, str) and value == "*":
        return value
    if isinstance(value, dict) and "Fn::GetAtt" in value:
        target = value["Fn::GetAtt"]
        target = target.split(".") if isinstance(target, str) else target
        if len(target) == 2 and target[1] == "Arn":
            return target[0]
        if len(target) == 2 and target[1] == "StreamArn":
            return f"{target[0]}/stream"
    text = sub_text(value) if isinstance(value, dict) else None
    if text is not None:
        text = re.sub(r"\$\{([A-Za-z0-9]+)\.Arn\}", r"\1", text)
        text = SECRETS_ARN.sub("secret:", text)
        if "arn:" not in text:
            return text
    raise CheckError(f"cannot read the grant resource {json.dumps(value)}")


def as_list(value):
    return value if isinstance(value, list) else [value]


class Function:
    def __init__(self, logical_id, binary, role, statements):
        self.logical_id = logical_id
        self.binary = binary
        self.role = role
        # (action pattern, resource pattern), lower-cased actions as IAM compares them.
        self.grants = []
        for statement in statements:
            if statement.get("Effect") != "Allow" or "NotAction" in statement:
                raise CheckError(f"{role}: only Allow statements with Action are read")
            if "NotResource" in statement or "Condition" in statement:
                raise CheckError(f"{role}: NotResource and Condition are not read")
            for action in as_list(statement["Action"]):
                for resource in as_list(statement["Resource"]):
                    grant = (str(action), grant_resource(resource))
                    if grant not in self.grants:
                        self.grants.append(grant)

    def __str__(self):
        return f"{self.binary} ({self.logical_id}, role {self.role})"


def functions_of(template):
    resources = template["Resources"]
    functions = {}
    for logical_id, resource in resources.items():
        if resource.get("Type") != "AWS::Serverless::Function":
            continue
        binary = resource.get("Metadata", {}).get("BuildProperties", {}).get("Binary")
        role = resource["Properties"].get("Role")
        if not binary or not isinstance(role, dict) or "Fn::GetAtt" not in role:
            raise CheckError(
                f"{logical_id}: needs Metadata.BuildProperties.Binary and Role: !GetAtt <role>.Arn"
            )
        role_id = grant_resource(role)
        role_properties = resources[role_id]["Properties"]
        if role_properties.get("ManagedPolicyArns"):
            raise CheckError(f"{role_id}: managed policies are not read, only inline ones")
        statements = [
            s
            for policy in role_properties.get("Policies", [])
            for s in as_list(policy["PolicyDocument"]["Statement"])
        ]
        functions[binary] = Function(logical_id, binary, role_id, statements)
    return functions


def name_suffixes(template, resource_type, name_property):
    """(suffix, logical id) of each resource of a type, the longest suffix first: the part of
    its name after ${Stage} (holub-${Stage}-dispatch-dlq -> -dispatch-dlq)."""
    suffixes = []
    for logical_id, resource in template["Resources"].items():
        if resource.get("Type") != resource_type:
            continue
        name = sub_text(resource.get("Properties", {}).get(name_property))
        if not name or "${Stage}" not in name:
            raise CheckError(f"{logical_id}: {name_property} must be a !Sub with ${{Stage}}")
        suffixes.append((name.split("${Stage}", 1)[1], logical_id))
    return sorted(suffixes, key=lambda s: -len(s[0]))


def secrets_prefix(template):
    variables = template.get("Globals", {}).get("Function", {}).get("Environment", {})
    prefix = sub_text(variables.get("Variables", {}).get("HOLUB_SECRETS_PREFIX"))
    if not prefix:
        raise CheckError("Globals: no HOLUB_SECRETS_PREFIX")
    return prefix


class Names:
    """Maps the harness's physical names back to the template's resources."""

    def __init__(self, template):
        self.tables = name_suffixes(template, "AWS::DynamoDB::Table", "TableName")
        self.queues = name_suffixes(template, "AWS::SQS::Queue", "QueueName")
        self.secrets_prefix = secrets_prefix(template)
        keys = [i for i, r in template["Resources"].items() if r.get("Type") == "AWS::KMS::Key"]
        # The harness makes one KMS key per deployment, as the template declares one.
        self.kms_key = keys[0] if len(keys) == 1 else None

    @staticmethod
    def by_suffix(name, suffixes, kind):
        for suffix, logical_id in suffixes:
            if name.endswith(suffix):
                return logical_id
        return f"?{kind} {name}"

    def table(self, name):
        return self.by_suffix(name, self.tables, "table")

    def index(self, table, index):
        return f"{self.table(table)}/index/{index}"

    def stream(self, arn_or_iterator):
        """A stream by its ARN, or by a shard iterator that starts with it (moto's do; AWS's
        are opaque, and an event source mapping's calls are not recorded there anyway)."""
        found = STREAM_ARN.search(arn_or_iterator or "")
        if not found:
            return "*"
        return f"{self.table(found.group(1))}/stream"

    def queue(self, url_or_name):
        return self.by_suffix(url_or_name.rstrip("/").rsplit("/", 1)[-1], self.queues, "queue")

    def secret(self, secret_id):
        name = secret_id.split(":secret:", 1)[-1]
        # The harness's prefix is one path segment (<prefix>/); the template's is its own.
        _, sep, rest = name.partition("/")
        if not sep:
            return f"?secret {name}"
        return f"secret:{self.secrets_prefix}{rest}{SECRET_SUFFIX}"


# --- the recording ------------------------------------------------------------------------


class Call:
    """One recorded request: who made it, the operation, and the grants it needs."""

    def __init__(self, key, service, operation, needs):
        self.key = key
        self.service = service
        self.operation = operation
        self.needs = needs  # [(action, resource)]


def header(headers, name):
    for k, v in headers.items():
        if k.lower() == name:
            return v
    return None


def request_body(entry):
    body = entry.get("body") or ""
    if entry.get("body_encoded"):
        body = base64.b64decode(body).decode("utf-8", "replace")
    return body


def read_call(entry, names):
    headers = entry.get("headers", {})
    credential = CREDENTIAL.search(header(headers, "authorization") or "")
    if not credential:
        return None  # moto's own API, unsigned
    key, service = credential.groups()
    body = request_body(entry)
    target = header(headers, "x-amz-target")
    if target:
        operation = target.rsplit(".", 1)[-1]
        params = json.loads(body) if body.strip() else {}
    else:  # the query protocol: Action=...&QueueUrl=...
        form = {k: v[0] for k, v in parse_qs(body).items()}
        form.update({k: v[0] for k, v in parse_qs(urlparse(entry["url"]).query).items()})
        operation = form.pop("Action", None)
        if operation is None:
            raise CheckError(f"a {service} request with no operation: {entry['url']}")
        params = form
        if "QueueUrl" not in params and service == "sqs" and urlparse(entry["url"]).path.strip("/"):
            params["QueueUrl"] = entry["url"].split("?", 1)[0]
    return Call(key, service, operation, needs(service, operation, params, names))


def needs(service, operation, params, names):
    """The (action, resource) pairs AWS authorises `operation` by."""
    if service == "dynamodb":
        if operation in ("BatchWriteItem", "BatchGetItem"):
            return [(f"dynamodb:{operation}", names.table(t)) for t in params["RequestItems"]]
        if operation in ("TransactWriteItems", "TransactGetItems"):
            pairs = []
            for item in params["TransactItems"]:
                for kind, request in item.items():
                    action = f"dynamodb:{TRANSACT_ACTION[kind]}"
                    pairs.append((action, names.table(request["TableName"])))
            return pairs
        if operation in STREAM_OPERATIONS:
            stream = params.get("StreamArn") or params.get("ShardIterator")
            return [(f"dynamodb:{operation}", names.stream(stream))]
        if "TableName" not in params:
            return [(f"dynamodb:{operation}", "*")]
        if params.get("IndexName"):
            index = names.index(params["TableName"], params["IndexName"])
            return [(f"dynamodb:{operation}", index)]
        return [(f"dynamodb:{operation}", names.table(params["TableName"]))]
    if service == "sqs":
        action = f"sqs:{SQS_ACTION.get(operation, operation)}"
        queue = params.get("QueueUrl") or params.get("QueueName")
        return [(action, names.queue(queue) if queue else "*")]
    if service == "secretsmanager":
        secret = params.get("SecretId") or params.get("Name")
        return [(f"secretsmanager:{operation}", names.secret(secret) if secret else "*")]
    if service == "kms" and names.kms_key:
        return [(f"kms:{operation}", names.kms_key)]
    return [(f"{service}:{operation}", "*")]


def entries(line):
    """The requests of one line. The recorder writes a request and its newline in two
    writes, so under concurrent requests another whole request may come between them."""
    decoder = json.JSONDecoder()
    line = line.strip()
    while line:
        entry, end = decoder.raw_decode(line)
        yield entry
        line = line[end:].lstrip()


def read_recording(path, names):
    calls = []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            try:
                for entry in entries(line):
                    call = read_call(entry, names)
                    if call:
                        calls.append(call)
            except (ValueError, KeyError, CheckError) as e:
                raise CheckError(f"{path}:{number}: unreadable request: {e}") from e
    return calls


# --- the check ----------------------------------------------------------------------------


def granted(grant, need):
    action, resource = grant
    return fnmatch.fnmatchcase(need[0].lower(), action.lower()) and fnmatch.fnmatchcase(
        need[1], resource
    )


def check(template, calls, allowed_unused=None, not_run=None):
    """The report (lines) and the number of findings."""
    allowed_unused = ALLOWED_UNUSED if allowed_unused is None else allowed_unused
    not_run = NOT_RUN if not_run is None else not_run
    functions = functions_of(template)
    by_key = defaultdict(list)
    for call in calls:
        by_key[call.key].append(call)
    others = sum(len(c) for k, c in by_key.items() if k not in functions)
    ran = sum(1 for k in functions if by_key.get(k))
    lines = [
        f"{sum(len(by_key[k]) for k in functions)} calls by {ran} of {len(functions)} functions "
        f"({others} calls by other credentials left out)"
    ]
    findings = allowed = 0
    for key in sorted(by_key):
        if key not in functions and key.startswith("holub-"):
            lines.append(f"{key}: {len(by_key[key])} calls, but the template has no function {key}")
            findings += 1
    for binary, function in sorted(functions.items()):
        lines.append(str(function))
        needed = Counter()
        operations = defaultdict(set)
        for call in by_key.get(binary, []):
            for need in call.needs:
                needed[need] += 1
                operations[need].add(call.operation)
        if not needed:
            if binary in not_run:
                lines.append(f"  not run: {not_run[binary]}; its grants are not checked")
                continue
            lines.append("  no call recorded (is it run by the Lambda end-to-end suite?)")
            findings += 1
            continue
        if binary in not_run:
            lines.append(f"  note: NOT_RUN lists it, but it made {sum(needed.values())} calls")
        for need, count in sorted(needed.items()):
            if not any(granted(g, need) for g in function.grants):
                ops = ", ".join(sorted(operations[need]))
                lines.append(f"  missing grant: {need[0]} on {need[1]} ({count} call(s): {ops})")
                findings += 1
        for grant in function.grants:
            if grant[0].split(":", 1)[0] in EXEMPT_SERVICES:
                continue
            used = any(granted(grant, need) for need in needed)
            reason = allowed_unused.get((binary, *grant))
            if used and reason:
                lines.append(f"  note: ALLOWED_UNUSED lists {grant[0]} on {grant[1]}, now used")
            elif not used and reason:
                lines.append(f"  unused, allowed: {grant[0]} on {grant[1]}: {reason}")
                allowed += 1
            elif not used:
                lines.append(f"  unused grant: {grant[0]} on {grant[1]}")
                findings += 1
    skipped = sum(1 for b in functions if b in not_run and not by_key.get(b))
    lines.append(
        f"{allowed} unused grant(s) allowed (ALLOWED_UNUSED), "
        f"{skipped} function(s) not run (NOT_RUN)"
    )
    return lines, findings


def used_by(template, calls):
    """Each function's (action, resource) pairs and how often, for --calls."""
    functions = functions_of(template)
    used = defaultdict(Counter)
    for call in calls:
        if call.key in functions:
            for need in call.needs:
                used[call.key][need] += 1
    return used


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("recording", help="moto's request log (MOTO_RECORDER_FILEPATH)")
    parser.add_argument("--template", default=os.path.relpath(os.path.join(ROOT, "template.yaml")))
    parser.add_argument("--calls", action="store_true", help="also list each function's calls")
    args = parser.parse_args(argv)
    try:
        template = load_template(args.template)
        calls = read_recording(args.recording, Names(template))
        lines, findings = check(template, calls)
    except (CheckError, OSError) as e:
        print(f"check_iam: {e}", file=sys.stderr)
        return 2
    if args.calls:
        for binary, needs_ in sorted(used_by(template, calls).items()):
            print(f"{binary} called:")
            for (action, resource), count in sorted(needs_.items()):
                print(f"  {action} on {resource}: {count}")
    print(f"IAM check of {args.template} against {args.recording}:")
    print("\n".join(lines))
    if findings:
        print(f"{findings} finding(s): every call must be granted, every grant used")
        return 1
    print("no findings: every call is granted, every grant used or allowed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
