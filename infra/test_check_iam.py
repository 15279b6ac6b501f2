#!/usr/bin/env python3
"""Tests of infra/check_iam.py: that it reads the recorder's requests as AWS authorises
them, and that it fails when a grant is missing or unused.

    python3 infra/test_check_iam.py                   # on made-up requests
    HOLUB_AWS_CALL_LOG=<recording> python3 infra/test_check_iam.py RealRecording

RealRecording takes the recording of a test run (scripts/test passes it) and the real
template.yaml, and removes from a copy of the template, one at a time, each grant the
run used: every removal must be reported.
"""
import base64
import copy
import json
import os
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import check_iam  # noqa: E402

TEMPLATE = os.path.join(check_iam.ROOT, "template.yaml")
PREFIX = "ldelivered-4242-5f1e2d3c4b5a6-0"
QUEUES = f"http://127.0.0.1:5000/123456789012/{PREFIX}"


def entry(key, service, target, body):
    """One line of moto's recorder, as an SDK request is recorded."""
    return {
        "headers": {
            "Authorization": (
                f"AWS4-HMAC-SHA256 Credential={key}/20261201/eu-central-1/{service}/aws4_request, "
                "SignedHeaders=host;x-amz-date, Signature=00"
            ),
            "X-Amz-Target": target,
        },
        "method": "POST",
        "url": "http://127.0.0.1:5000/",
        "body": base64.b64encode(json.dumps(body).encode()).decode(),
        "body_encoded": True,
    }


def dynamo(key, operation, body):
    return entry(key, "dynamodb", f"DynamoDB_20120810.{operation}", body)


def sqs(key, operation, body):
    return entry(key, "sqs", f"AmazonSQS.{operation}", body)


def policy(template, role):
    return template["Resources"][role]["Properties"]["Policies"][0]["PolicyDocument"]


def statement(sid, actions, resources):
    return {"Sid": sid, "Effect": "Allow", "Action": actions, "Resource": resources}


def without(template, role, grant):
    """A copy of `template` whose `role` no longer grants `grant` (action, resource)."""
    changed = copy.deepcopy(template)
    for policy in changed["Resources"][role]["Properties"]["Policies"]:
        kept = []
        for s in check_iam.as_list(policy["PolicyDocument"]["Statement"]):
            for action in check_iam.as_list(s["Action"]):
                for resource in check_iam.as_list(s["Resource"]):
                    if (action, check_iam.grant_resource(resource)) != grant:
                        kept.append(dict(s, Action=action, Resource=resource))
        policy["PolicyDocument"]["Statement"] = kept
    return changed


class Mapping(unittest.TestCase):
    """Requests to the grants they need, on the real template's names."""

    @classmethod
    def setUpClass(cls):
        cls.template = check_iam.load_template(TEMPLATE)

    def needs(self, line):
        return check_iam.read_call(line, check_iam.Names(self.template)).needs

    def test_a_query_needs_its_index_or_its_table(self):
        on_index = dynamo("k", "Query", {"TableName": f"{PREFIX}-messages", "IndexName": "due"})
        on_table = dynamo("k", "Query", {"TableName": f"{PREFIX}-messages"})
        self.assertEqual(self.needs(on_index), [("dynamodb:Query", "MessagesTable/index/due")])
        self.assertEqual(self.needs(on_table), [("dynamodb:Query", "MessagesTable")])

    def test_batches_and_transactions_name_their_tables_inside(self):
        batch = dynamo("k", "BatchWriteItem", {"RequestItems": {f"{PREFIX}-messages": []}})
        transaction = dynamo(
            "k",
            "TransactWriteItems",
            {
                "TransactItems": [
                    {"Put": {"TableName": f"{PREFIX}-messages", "Item": {}}},
                    {"Delete": {"TableName": f"{PREFIX}-idempotency", "Key": {}}},
                    {"ConditionCheck": {"TableName": f"{PREFIX}-tenants", "Key": {}}},
                ]
            },
        )
        self.assertEqual(self.needs(batch), [("dynamodb:BatchWriteItem", "MessagesTable")])
        self.assertEqual(
            self.needs(transaction),
            [
                ("dynamodb:PutItem", "MessagesTable"),
                ("dynamodb:DeleteItem", "IdempotencyTable"),
                ("dynamodb:ConditionCheckItem", "TenantsTable"),
            ],
        )

    def test_stream_calls_need_the_tables_stream(self):
        arn = f"arn:aws:dynamodb:eu-central-1:123456789012:table/{PREFIX}-messages/stream/2026-12-02T10:33:12.701"
        describe = entry("k", "dynamodb", "DynamoDBStreams_20120810.DescribeStream", {"StreamArn": arn})
        records = entry(
            "k", "dynamodb", "DynamoDBStreams_20120810.GetRecords", {"ShardIterator": f"{arn}|1|abc"}
        )
        self.assertEqual(self.needs(describe), [("dynamodb:DescribeStream", "MessagesTable/stream")])
        self.assertEqual(self.needs(records), [("dynamodb:GetRecords", "MessagesTable/stream")])
        self.assertEqual(
            check_iam.grant_resource({"Fn::GetAtt": ["MessagesTable", "StreamArn"]}),
            "MessagesTable/stream",
        )

    def test_queue_batches_are_authorised_as_single_calls(self):
        send = sqs("k", "SendMessageBatch", {"QueueUrl": f"{QUEUES}-callbacks", "Entries": []})
        delete = sqs("k", "DeleteMessageBatch", {"QueueUrl": f"{QUEUES}-dispatch-dlq"})
        self.assertEqual(self.needs(send), [("sqs:SendMessage", "CallbacksQueue")])
        self.assertEqual(self.needs(delete), [("sqs:DeleteMessage", "DispatchDeadLetterQueue")])

    def test_a_secret_is_named_under_the_templates_prefix(self):
        get = entry(
            "k",
            "secretsmanager",
            "secretsmanager.GetSecretValue",
            {"SecretId": f"{PREFIX}/providers/alphasms"},
        )
        self.assertEqual(
            self.needs(get),
            [("secretsmanager:GetSecretValue", "secret:holub/${Stage}/providers/alphasms-xxxxxx")],
        )

    def test_an_unknown_table_is_named_as_such(self):
        get = dynamo("k", "GetItem", {"TableName": f"{PREFIX}-contacts"})
        self.assertEqual(self.needs(get), [("dynamodb:GetItem", f"?table {PREFIX}-contacts")])

    def test_two_requests_on_one_line_are_both_read(self):
        one = dynamo("k", "GetItem", {"TableName": f"{PREFIX}-tenants"})
        two = sqs("k", "SendMessage", {"QueueUrl": f"{QUEUES}-dispatch"})
        with tempfile.NamedTemporaryFile("w", suffix=".jsonl") as f:
            f.write(json.dumps(one) + json.dumps(two) + "\n\n")
            f.flush()
            calls = check_iam.read_recording(f.name, check_iam.Names(self.template))
        self.assertEqual(
            [c.needs for c in calls],
            [[("dynamodb:GetItem", "TenantsTable")], [("sqs:SendMessage", "DispatchQueue")]],
        )

    def test_unsigned_requests_are_nobodys(self):
        line = {"headers": {}, "method": "GET", "url": "http://127.0.0.1:5000/moto-api/"}
        self.assertIsNone(check_iam.read_call(line, check_iam.Names(self.template)))


class Findings(unittest.TestCase):
    """The check on a small template of its own, so each finding is seen alone."""

    def setUp(self):
        self.template = check_iam.load_template(TEMPLATE)
        policy(self.template, "DispatchRole")["Statement"] = [
            statement("Logs", ["logs:PutLogEvents"], [{"Fn::GetAtt": ["DispatchLogGroup", "Arn"]}]),
            statement("Messages", ["dynamodb:GetItem"], [{"Fn::GetAtt": ["MessagesTable", "Arn"]}]),
            statement("Jobs", ["sqs:ReceiveMessage"], [{"Fn::GetAtt": ["DispatchQueue", "Arn"]}]),
        ]
        self.calls = self.read(
            dynamo("holub-dispatch", "GetItem", {"TableName": f"{PREFIX}-messages"}),
            sqs("holub-dispatch", "ReceiveMessage", {"QueueUrl": f"{QUEUES}-dispatch"}),
            # The tests' own set-up: not a function's.
            dynamo("testing", "DeleteTable", {"TableName": f"{PREFIX}-messages"}),
        )
        # Only the dispatch function is run here.
        self.not_run = {b: "not in this test" for b in check_iam.functions_of(self.template)}
        del self.not_run["holub-dispatch"]

    def read(self, *lines):
        names = check_iam.Names(self.template)
        return [check_iam.read_call(line, names) for line in lines]

    def check(self, template=None, calls=None, not_run=None):
        lines, findings = check_iam.check(
            template or self.template,
            self.calls if calls is None else calls,
            allowed_unused={},
            not_run=self.not_run if not_run is None else not_run,
        )
        return "\n".join(lines), findings

    def test_granted_and_used_passes(self):
        report, findings = self.check()
        self.assertEqual(findings, 0, report)

    def test_a_missing_grant_fails(self):
        template = without(self.template, "DispatchRole", ("dynamodb:GetItem", "MessagesTable"))
        report, findings = self.check(template)
        self.assertEqual(findings, 1, report)
        self.assertIn("missing grant: dynamodb:GetItem on MessagesTable (1 call(s)", report)

    def test_a_grant_on_the_table_does_not_cover_its_indexes(self):
        policy(self.template, "DispatchRole")["Statement"].append(
            statement("Own", ["dynamodb:Query"], [{"Fn::GetAtt": ["MessagesTable", "Arn"]}])
        )
        table = f"{PREFIX}-messages"
        calls = self.calls + self.read(
            dynamo("holub-dispatch", "Query", {"TableName": table}),
            dynamo("holub-dispatch", "Query", {"TableName": table, "IndexName": "due"}),
        )
        report, findings = self.check(calls=calls)
        self.assertEqual(findings, 1, report)
        self.assertIn("missing grant: dynamodb:Query on MessagesTable/index/due", report)

    def test_an_unused_grant_fails_but_logs_do_not(self):
        policy(self.template, "DispatchRole")["Statement"].append(
            statement("More", ["dynamodb:DeleteItem"], [{"Fn::GetAtt": ["MessagesTable", "Arn"]}])
        )
        report, findings = self.check()
        self.assertEqual(findings, 1, report)
        self.assertIn("unused grant: dynamodb:DeleteItem on MessagesTable", report)

    def test_a_function_that_made_no_call_fails(self):
        not_run = dict(self.not_run)
        del not_run["holub-api"]
        report, findings = self.check(not_run=not_run)
        self.assertEqual(findings, 1, report)
        self.assertIn("no call recorded", report)


@unittest.skipUnless(os.environ.get("HOLUB_AWS_CALL_LOG"), "HOLUB_AWS_CALL_LOG names no recording")
class RealRecording(unittest.TestCase):
    """The real template against a test run's recording, less one grant at a time."""

    @classmethod
    def setUpClass(cls):
        cls.recording = os.environ["HOLUB_AWS_CALL_LOG"]
        cls.template = check_iam.load_template(TEMPLATE)
        cls.calls = check_iam.read_recording(cls.recording, check_iam.Names(cls.template))
        cls.functions = check_iam.functions_of(cls.template)
        used = check_iam.used_by(cls.template, cls.calls)
        # Each grant of each role that some call of its function needed.
        cls.used_grants = [
            (function, grant)
            for binary, function in sorted(cls.functions.items())
            for grant in function.grants
            if any(check_iam.granted(grant, need) for need in used.get(binary, {}))
        ]

    def test_the_run_used_grants_of_every_function_it_ran(self):
        self.assertTrue(self.used_grants, "the recording holds no function's calls")

    def test_removing_any_used_grant_is_reported(self):
        for function, grant in self.used_grants:
            with self.subTest(function=function.binary, grant=grant):
                changed = without(self.template, function.role, grant)
                lines, findings = check_iam.check(changed, self.calls)
                report = "\n".join(lines)
                self.assertGreater(findings, 0, report)
                self.assertIn(f"missing grant: {grant[0]} on ", report)

    def test_the_command_fails_on_a_copy_of_the_template_without_a_grant(self):
        # The grant the run used most, removed from a copy of template.yaml.
        used = check_iam.used_by(self.template, self.calls)
        counts = {
            (function, grant): sum(
                n for need, n in used[function.binary].items() if check_iam.granted(grant, need)
            )
            for function, grant in self.used_grants
        }
        function, grant = max(counts, key=counts.get)
        with tempfile.TemporaryDirectory() as tmp:
            copy_path = os.path.join(tmp, "template.json")
            with open(copy_path, "w", encoding="utf-8") as f:
                json.dump(without(self.template, function.role, grant), f)
            run = subprocess.run(
                [sys.executable, check_iam.__file__, self.recording, "--template", copy_path],
                capture_output=True,
                text=True,
            )
        self.assertEqual(run.returncode, 1, run.stdout + run.stderr)
        self.assertIn(f"missing grant: {grant[0]} on {grant[1]}", run.stdout)
        removed = f"{grant[0]} on {grant[1]} removed from {function.role}"
        print(f"\n({removed}:)\n{run.stdout}", file=sys.stderr)


if __name__ == "__main__":
    unittest.main()
