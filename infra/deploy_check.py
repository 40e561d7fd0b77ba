"""`make deploy-check`: the stack deploys and the zip runs as Lambda runs it, offline.

1. `make package` for every stage: the SAM template, its transform by aws-sam-translator,
   cfn-lint on both (infra/package.py).
2. `infra/deploy.sh`, unmodified, with the AWS CLI (v1, from PyPI) against moto's server
   on 127.0.0.1 (local/aws.py), every stage, then again: the rerun must change nothing.
   moto's gaps are covered by the shims in infra/emulator.py, each named there. Then the
   created resources are read back through the AWS APIs and compared with what the
   template and the code need: the table's keys and indexes, the function's settings and
   environment, the role's exact grants, every route of openapi.yaml on the API.
3. The code zip, taken from the emulated artifact bucket, unpacked read-only and run by
   AWS's runtime interface client (awslambdaric) as an unprivileged user, with only the
   environment Lambda gives and the oldest boto3 the python3.11 runtime shipped, fed
   API Gateway events through a stub of the Lambda Runtime API on 127.0.0.1, against
   moto and the sandbox panel.

Everything it installs comes from `make deploy-check`'s setup (infra/requirements-*.txt).
Step 1 is `make package`'s own work: the first time, chalice fetches the Lambda
platform's wheels from PyPI (then cached). Steps 2 and 3 reach nothing but 127.0.0.1,
and as root run in a network namespace with only the loopback interface to prove it.
"""

from __future__ import annotations

import argparse
import ast
import json
import logging
import os
import pwd
import queue
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
import warnings
import zipfile
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable

import yaml

from infra.package import STAGES, package

ROOT = Path(__file__).resolve().parent.parent
TOOLS = ROOT / ".venv"
AWS_CLI = TOOLS / "awscli" / "bin"  # infra/requirements-awscli.txt
LAMBDA_RUNTIME = TOOLS / "lambda-runtime"  # infra/requirements-lambda.txt, pip --target
REGION = "us-east-1"
HTTP_METHODS = {"get", "post", "put", "patch", "delete"}
INVOKE_TIMEOUT = 60.0  # seconds for one invocation; the function's own limit is 28 s
# The functions app.py makes (chalice's logical ids), their handlers and roles.
FUNCTIONS = {"APIHandler": ("app.app", "ApiHandlerRole"), "SyncStatuses": ("app.sync_statuses", "SyncStatusesRole"),
             "WebhookWorker": ("app.deliver_webhooks", "WebhookWorkerRole")}
# The stages deploy with an event bus: dev names one, prod none, so both forms of the
# template's condition are deployed and read back.
EVENT_BUS = {"dev": "smm-gateway-dev-events"}


class CheckFailed(AssertionError):
    pass


def check(condition: bool, message: str) -> None:
    if not condition:
        raise CheckFailed(message)


def boto3_floor() -> str:
    """The boto3 version the runtime layer is pinned to (infra/requirements-lambda.txt)."""
    text = (ROOT / "infra" / "requirements-lambda.txt").read_text()
    return re.search(r"^boto3==(\S+)", text, re.M)[1]  # type: ignore[index]


# -- 1. package ---------------------------------------------------------------------------


def package_all(build: Path, stages: tuple[str, ...]) -> dict[str, Path]:
    return {stage: package(stage, build / stage) for stage in stages}


# -- 2. deploy -----------------------------------------------------------------------------


def deploy(stage: str, build: Path, environ: dict[str, str]) -> str:
    """infra/deploy.sh as an operator runs it; its output."""
    env = {**environ, "PATH": f"{AWS_CLI}{os.pathsep}{os.environ['PATH']}"}
    if stage in EVENT_BUS:
        env["EVENT_BUS_NAME"] = EVENT_BUS[stage]
    done = subprocess.run(["bash", str(ROOT / "infra" / "deploy.sh"), stage, str(build / stage)], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=300, check=False)
    output = done.stdout + done.stderr
    check(done.returncode == 0, f"infra/deploy.sh {stage} failed ({done.returncode}):\n{output[-4000:]}")
    return output


def stack_resources(aws: Any, stage: str) -> dict[str, str]:
    found = aws.client("cloudformation").describe_stack_resources(StackName=f"smm-gateway-{stage}")
    # moto lists a resource it has no model for (the API's Stage) or no id for without ids
    return {r["LogicalResourceId"]: r["PhysicalResourceId"] for r in found["StackResources"]
            if r.get("PhysicalResourceId")}


def spec_routes() -> set[tuple[str, str]]:
    """(path, METHOD) of every operation in openapi.yaml, path parameters unnamed."""
    spec = yaml.safe_load((ROOT / "openapi.yaml").read_text())
    return {(unnamed(path), method.upper()) for path, item in spec["paths"].items()
            for method in item if method in HTTP_METHODS}


def unnamed(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "{}", path)


def assert_stack(aws: Any, stage: str) -> dict[str, Any]:
    """The created resources, read back, against the template and the code; returns the
    function's configuration."""
    created = stack_resources(aws, stage)
    config = json.loads((ROOT / ".chalice" / "config.json").read_text())["stages"][stage]
    wanted = json.loads((ROOT / "infra" / "resources.json").read_text())["Resources"]

    # the table: keys and secondary indexes as infra/resources.json declares them
    table = aws.client("dynamodb").describe_table(TableName=created["GatewayTable"])["Table"]
    props = wanted["GatewayTable"]["Properties"]
    check(table["TableName"] == f"smm-gateway-{stage}", f"table name {table['TableName']}")
    check(table["KeySchema"] == props["KeySchema"], f"table keys {table['KeySchema']}")
    check(sorted(table["AttributeDefinitions"], key=str) == sorted(props["AttributeDefinitions"], key=str),
          f"table attributes {table['AttributeDefinitions']}")
    indexes = {i["IndexName"]: (i["KeySchema"], i["Projection"]) for i in table.get("GlobalSecondaryIndexes", [])}
    declared = {i["IndexName"]: (i["KeySchema"], i["Projection"]) for i in props.get("GlobalSecondaryIndexes", [])}
    check(indexes == declared, f"table indexes {indexes} != {declared}")

    # the secret: created empty, under the stage's name
    secret = aws.client("secretsmanager").describe_secret(SecretId=created["GatewaySecret"])
    check(secret["Name"] == f"smm-gateway/{stage}", f"secret name {secret['Name']}")

    log_group = aws.client("logs").describe_log_groups(logGroupNamePrefix=f"/aws/lambda/smm-gateway-{stage}")
    (group,) = log_group["logGroups"]
    check(group["logGroupName"] == f"/aws/lambda/smm-gateway-{stage}", f"log group {group}")
    queue_url = created["WebhookQueue"]  # an SQS queue's physical id is its URL
    queue_arn = aws.client("sqs").get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])[
        "Attributes"]["QueueArn"]
    # A log group's GetAtt Arn is "<group ARN>:*" on AWS (its streams), the bare group ARN in moto
    arns = {"GatewayTableItems": {table["TableArn"]}, "GatewayWorkIndex": {table["TableArn"] + "/index/work"},
            "GatewaySecretRead": {secret["ARN"]}, "OwnLogGroup": {group["arn"], group["logGroupArn"]},
            "WebhookQueueSend": {queue_arn}, "WebhookQueueConsume": {queue_arn}}
    bus = EVENT_BUS.get(stage, "")
    if bus:  # only a named bus, and only then
        arns["EventBusPut"] = {f"arn:aws:events:{REGION}:{table['TableArn'].split(':')[4]}:event-bus/{bus}"}

    # each function: handler, runtime, memory, timeout, environment, and its role
    configurations = {}
    for logical, (handler, role) in FUNCTIONS.items():
        function = aws.client("lambda").get_function(FunctionName=created[logical])
        conf = function["Configuration"]
        check(conf["Handler"] == handler and conf["Runtime"] == "python3.11", f"handler/runtime {conf}")
        check(conf["MemorySize"] == config["lambda_memory_size"], f"memory {conf['MemorySize']}")
        check(conf["Timeout"] == config["lambda_timeout"], f"timeout {conf['Timeout']}")
        expected_env = {**config["environment_variables"], "GATEWAY_TABLE": table["TableName"],
                        "GATEWAY_SECRET_ID": secret["ARN"], "WEBHOOK_QUEUE_URL": queue_url}
        if logical != "WebhookWorker":  # the worker only delivers: no balance, no bus
            expected_env |= {"BALANCE_LOW_THRESHOLD": "", "EVENT_BUS_NAME": bus}  # the threshold's default
        check(conf["Environment"]["Variables"] == expected_env, f"environment {conf['Environment']}")
        reserved = function.get("Concurrency", {}).get("ReservedConcurrentExecutions")
        expected = config.get("lambda_functions", {}).get(handler.removeprefix("app."), {}).get(
            "reserved_concurrency", config.get("reserved_concurrency"))
        check(reserved == expected, f"{logical}: reserved concurrency {reserved}, not {expected}")
        assert_role(aws, created[role], conf, wanted[role], arns)
        configurations[logical] = conf

    # the schedule: one rule, every minute, invoking the scheduled function
    rules = aws.client("events").list_rules()["Rules"]
    (rule,) = [r for r in rules if r["Name"] == created["SyncStatusesSyncStatusesEvent"]]
    check(rule.get("ScheduleExpression") == "rate(1 minute)" and rule.get("State") == "ENABLED", f"schedule {rule}")
    targets = aws.client("events").list_targets_by_rule(Rule=rule["Name"])["Targets"]
    check([t["Arn"] for t in targets] == [configurations["SyncStatuses"]["FunctionArn"]], f"schedule targets {targets}")
    conf = configurations["APIHandler"]

    # the alarms' topic, and no subscription when no AlarmEmail is given
    sns = aws.client("sns")
    topic = created["AlarmTopic"]
    check(topic.endswith(f":smm-gateway-{stage}-alarms"), f"alarm topic {topic}")
    check(not sns.list_subscriptions_by_topic(TopicArn=topic)["Subscriptions"], "a subscription without AlarmEmail")

    # the API: every operation of openapi.yaml is a route, proxied to the function
    apigw = aws.client("apigateway")
    (api,) = [a for a in apigw.get_rest_apis()["items"] if a["id"] == created["RestAPI"]]
    routes = {}
    for resource in apigw.get_resources(restApiId=api["id"])["items"]:
        for method in resource.get("resourceMethods", {}):
            routes[(unnamed(resource["path"]), method)] = resource["id"]
    check(set(routes) == spec_routes(), f"API routes differ from openapi.yaml: "
          f"missing {spec_routes() - set(routes)}, extra {set(routes) - spec_routes()}")
    for (path, method), resource_id in routes.items():
        integration = apigw.get_integration(restApiId=api["id"], resourceId=resource_id, httpMethod=method)
        check(integration["type"].upper() == "AWS_PROXY" and conf["FunctionArn"] in integration["uri"],
              f"{method} {path} is not proxied to the function: {integration}")
    return configurations


def assert_role(aws: Any, role: str, conf: dict[str, Any], wanted: dict[str, Any], arns: dict[str, set[str]]) -> None:
    """The function's role: exactly the template's actions, on exactly the created resources' ARNs."""
    iam = aws.client("iam")
    check(conf["Role"] == iam.get_role(RoleName=role)["Role"]["Arn"], "the function runs under another role")
    check(not iam.list_attached_role_policies(RoleName=role)["AttachedPolicies"], "managed policies attached")
    (name,) = iam.list_role_policies(RoleName=role)["PolicyNames"]
    document = iam.get_role_policy(RoleName=role, PolicyName=name)["PolicyDocument"]
    if isinstance(document, str):  # moto keeps a policy CloudFormation gave it as Python's repr
        document = json.loads(document) if document.startswith('{"') else ast.literal_eval(document)
    declared_actions = {}
    for statement in wanted["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]:
        statement = statement["Fn::If"][1] if "Fn::If" in statement else statement  # the bus's, if named
        declared_actions[statement["Sid"]] = statement["Action"]
    unknown = set(declared_actions) - set(arns) - {"EventBusPut"}  # the bus's: only when named
    check(not unknown, f"{role}: no created resource is known for {sorted(unknown)}")
    expected = {sid: arns[sid] for sid in declared_actions if sid in arns}
    granted = {s["Sid"]: s for s in document["Statement"]}
    check(granted.keys() == expected.keys(), f"{role}: policy statements {sorted(granted)}, not {sorted(expected)}")
    for sid, statement in granted.items():
        check(statement["Effect"] == "Allow" and statement["Action"] == declared_actions[sid], f"{sid}: {statement}")
        check(statement["Resource"] in expected[sid], f"{sid} grants {statement['Resource']}, not {expected[sid]}")
        # the log group's own ARN ends in ':*' (its streams); nothing else may hold a wildcard
        check("*" not in str(statement["Resource"]).removesuffix(":*"), f"{sid}: wildcard resource")
        check(not any("*" in a for a in statement["Action"]), f"{sid}: wildcard action")


# -- 3. the zip under the Lambda runtime ------------------------------------------------


@dataclass
class Invocation:
    event: dict[str, Any]
    request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    done: threading.Event = field(default_factory=threading.Event)
    result: Any = None
    error: Any = None


class RuntimeApi:
    """A stub of the Lambda Runtime API (2018-06-01) on 127.0.0.1: hands out queued
    events on `next`, collects each `response` or `error`, records an init error."""

    def __init__(self, function_arn: str) -> None:
        self.function_arn = function_arn
        self.pending: queue.Queue[Invocation] = queue.Queue()
        self.by_id: dict[str, Invocation] = {}
        self.init_error: Any = None
        self.first_poll: float | None = None
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def answer(self, status: int, body: bytes = b"{}", headers: dict[str, str] | None = None) -> None:
                self.send_response(status)
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                if self.path != "/2018-06-01/runtime/invocation/next":
                    return self.answer(404)
                if stub.first_poll is None:
                    stub.first_poll = time.monotonic()
                invocation = stub.pending.get()
                deadline = int((time.time() + 28) * 1000)
                self.answer(200, json.dumps(invocation.event).encode(), {
                    "Lambda-Runtime-Aws-Request-Id": invocation.request_id,
                    "Lambda-Runtime-Deadline-Ms": str(deadline),
                    "Lambda-Runtime-Invoked-Function-Arn": stub.function_arn,
                    "Lambda-Runtime-Trace-Id": f"Root=1-{uuid.uuid4().hex[:8]}-{uuid.uuid4().hex[:24]};Sampled=0"})

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                parts = self.path.split("/")
                if self.path == "/2018-06-01/runtime/init/error":
                    stub.init_error = body.decode()
                    return self.answer(202)
                if len(parts) == 6 and parts[3] == "invocation" and parts[5] in {"response", "error"}:
                    invocation = stub.by_id[parts[4]]
                    if parts[5] == "response":
                        invocation.result = json.loads(body)
                    else:
                        invocation.error = body.decode()
                    invocation.done.set()
                    return self.answer(202)
                return self.answer(404)

        class Server(ThreadingHTTPServer):
            def handle_error(self, request: Any, client_address: Any) -> None:
                pass  # the runtime client hangs up on its pending `next` when the function stops

        self.server = Server(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.address = f"127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def invoke(self, event: dict[str, Any]) -> Any:
        invocation = Invocation(event)
        self.by_id[invocation.request_id] = invocation
        self.pending.put(invocation)
        what = f"{event['httpMethod']} {event['path']}" if "httpMethod" in event else event.get("detail-type")
        check(invocation.done.wait(INVOKE_TIMEOUT), f"no answer to {what}")
        check(invocation.error is None, f"the function failed: {invocation.error}")
        return invocation.result

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def api_event(method: str, resource: str, path: str, *, headers: dict[str, str] | None = None,
              body: Any = None, path_parameters: dict[str, str] | None = None) -> dict[str, Any]:
    """The REST API (v1) proxy event API Gateway sends for one request."""
    headers = {"Host": "abc123.execute-api.us-east-1.amazonaws.com", "User-Agent": "deploy-check",
               "X-Forwarded-Proto": "https", **(headers or {})}
    if body is not None:
        headers["Content-Type"] = "application/json"
    request_id = str(uuid.uuid4())
    return {
        "resource": resource, "path": path, "httpMethod": method, "headers": headers,
        "multiValueHeaders": {k: [v] for k, v in headers.items()},
        "queryStringParameters": None, "multiValueQueryStringParameters": None,
        "pathParameters": path_parameters, "stageVariables": None,
        "requestContext": {
            "resourcePath": resource, "httpMethod": method, "path": f"/api{path}", "stage": "api",
            "requestId": request_id, "extendedRequestId": request_id, "accountId": "123456789012",
            "apiId": "abc123", "domainName": headers["Host"], "protocol": "HTTP/1.1",
            "requestTimeEpoch": int(time.time() * 1000),
            "identity": {"sourceIp": "127.0.0.1", "userAgent": "deploy-check"},
        },
        "body": json.dumps(body) if body is not None else None, "isBase64Encoded": False,
    }


def unprivileged() -> list[str]:
    """The command prefix that drops root for the function, as Lambda runs it as a
    non-root user; empty (and said so) when not root or no setpriv is installed."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        print("deploy-check: no setpriv, so the function runs as root here", file=sys.stderr)
        return []
    return [setpriv, "--reuid=nobody", "--regid=nogroup", "--clear-groups", "--"]


def lambda_python(drop: list[str]) -> tuple[list[str], str]:
    """The privilege drop to use and a Python 3.11 the function's user can run: this
    one, or (as root, whose home may be private) the system's. Without one, the
    function runs as this user, and says so."""
    # As nobody, an interpreter under a private home may start but not find its own
    # standard library (it then borrows another's): only one whose home it can read.
    candidates = ["/usr/bin/python3.11", "/usr/local/bin/python3.11", sys.executable] if drop else [sys.executable]
    probe = ("import os, sys; assert sys.version_info[:2] == (3, 11); "
             "assert os.access(os.path.realpath(sys.executable), os.R_OK) and sys.base_prefix == sys.prefix; "
             "assert os.path.realpath(os.__file__).startswith(os.path.realpath(sys.base_prefix))")
    for candidate in candidates:
        if os.path.exists(candidate) and subprocess.run([*drop, candidate, "-S", "-c", probe], capture_output=True,
                                                         timeout=30, check=False).returncode == 0:
            return drop, candidate
    print("deploy-check: no Python 3.11 that nobody can run, so the function runs as this user", file=sys.stderr)
    return [], sys.executable


def readable_runtime(scratch: Path) -> Path:
    """The runtime layer (.venv/lambda-runtime) copied read-only where the function's
    user can read it: the project may sit under a private directory."""
    runtime = scratch / "runtime"
    if not runtime.exists():
        shutil.copytree(LAMBDA_RUNTIME, runtime, ignore=shutil.ignore_patterns("bin"))
        for path in [runtime, *runtime.rglob("*")]:
            path.chmod(0o555 if path.is_dir() else 0o444)
    return runtime


def unpack_read_only(aws: Any, code_uri: str, scratch: Path) -> Path:
    """The zip as the stack uploaded it, from the emulated bucket, unpacked read-only."""
    bucket, key = code_uri.removeprefix("s3://").split("/", 1)
    archive = scratch / "deployment.zip"
    aws.client("s3").download_file(bucket, key, str(archive))
    task = scratch / "task"
    with zipfile.ZipFile(archive) as packed:
        packed.extractall(task)
    for path in [task, *task.rglob("*")]:
        path.chmod(0o555 if path.is_dir() else 0o444)
    return task


def run_function(aws: Any, stage: str, conf: dict[str, Any], build: Path, scratch: Path,
                 drive: Callable[[RuntimeApi], dict[str, float]]) -> tuple[dict[str, float], list[dict[str, Any]]]:
    """One function of the stage's zip under awslambdaric, fed events by `drive` (which
    checks the answers); its timings and the JSON lines the function logged."""
    packaged = yaml.safe_load((build / stage / "packaged.yaml").read_text())
    code_uri = next(r["Properties"]["CodeUri"] for r in packaged["Resources"].values()
                    if r["Type"] == "AWS::Serverless::Function")
    task = unpack_read_only(aws, code_uri, scratch)
    layer = scratch / "emulator-layer"
    layer.mkdir()
    from infra.emulator import LAMBDA_ENDPOINT_SHIM

    (layer / "emulator_endpoint.py").write_text(LAMBDA_ENDPOINT_SHIM)
    for path in (scratch, layer, layer / "emulator_endpoint.py"):
        path.chmod(0o755 if path.is_dir() else 0o444)

    api = RuntimeApi(conf["FunctionArn"])
    drop, python = lambda_python(unprivileged())
    runtime = readable_runtime(scratch.parent)
    # What Lambda sets for a python3.11 function, and the function's own variables; plus
    # the emulator's endpoint (see emulator.LAMBDA_ENDPOINT_SHIM). Nothing else of ours.
    env = {
        "AWS_LAMBDA_RUNTIME_API": api.address, "_HANDLER": conf["Handler"], "LAMBDA_TASK_ROOT": str(task),
        "LAMBDA_RUNTIME_DIR": str(runtime), "AWS_EXECUTION_ENV": "AWS_Lambda_python3.11",
        "AWS_LAMBDA_FUNCTION_NAME": conf["FunctionName"], "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(conf["MemorySize"]),
        "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/smm-gateway-{stage}",
        "AWS_LAMBDA_LOG_STREAM_NAME": "2026/11/30/[$LATEST]deploycheck", "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
        "AWS_REGION": REGION, "AWS_DEFAULT_REGION": REGION, "AWS_ACCESS_KEY_ID": "ASIADEPLOYCHECK",
        "AWS_SECRET_ACCESS_KEY": "deploy-check", "AWS_SESSION_TOKEN": "deploy-check",
        "LANG": "en_US.UTF-8", "TZ": ":UTC", "PATH": "/usr/local/bin:/usr/bin:/bin",
        "PYTHONPATH": f"{runtime}{os.pathsep}{layer}",
        "EMULATOR_ENDPOINT_URL": aws.endpoint,
        **conf["Environment"]["Variables"],
    }
    # sys.path as on Lambda: the task root first (the zip's own requests and urllib3
    # win), then the runtime's boto3; no site-packages of this machine (-S).
    bootstrap = ("import emulator_endpoint, sys; emulator_endpoint.install(); "
                 "from awslambdaric.__main__ import main; main(['awslambdaric', sys.argv[1]])")
    started = time.monotonic()
    process = subprocess.Popen([*drop, python, "-S", "-c", bootstrap, conf["Handler"]], cwd=task, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(process.stdout or []), daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + INVOKE_TIMEOUT
        while api.first_poll is None and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        check(api.first_poll is not None, "the runtime never asked for an event")
        ready = (api.first_poll or started) - started  # interpreter, runtime client and the handler's module loaded
        user = pwd.getpwuid(Path(f"/proc/{process.pid}").stat().st_uid).pw_name
        if drop:
            check(user == "nobody", f"the function runs as {user}, not nobody")
        timings = {"ready_s": ready, **drive(api)}
        print(f"   the function: {python} -S as {user}, code read-only in {task}", flush=True)
        check(api.init_error is None, f"init error: {api.init_error}")
    except CheckFailed as failure:
        raise CheckFailed(f"{failure}\n-- function output --\n{''.join(lines)[-4000:]}") from None
    finally:
        process.terminate()
        process.wait(timeout=30)
        reader.join(timeout=30)
        api.stop()
    logged = [json.loads(line) for line in lines if line.startswith("{")]
    check(not any(line.get("level") == "error" for line in logged), f"error lines: {logged}")
    return timings, logged


def exercise_schedule(api: RuntimeApi, aws: Any, conf: dict[str, Any]) -> dict[str, float]:
    """The schedule rule's event to the scheduled function: it runs the outbox's sweep,
    which must publish an event its writer left unpublished (and, with a bus, put it there:
    a rule on the bus routes it to a queue read here)."""
    from chalicelib.dynamo import Table
    from chalicelib.events import model

    variables = conf["Environment"]["Variables"]
    table, bus = variables["GATEWAY_TABLE"], variables["EVENT_BUS_NAME"]
    queue = None
    if bus:
        events, sqs = aws.client("events"), aws.client("sqs")
        events.create_event_bus(Name=bus)
        queue = sqs.create_queue(QueueName=f"deploy-check-{uuid.uuid4().hex[:8]}")["QueueUrl"]
        queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        events.put_rule(Name="deploy-check", EventBusName=bus, EventPattern=json.dumps({"source": ["smm-gateway"]}))
        events.put_targets(Rule="deploy-check", EventBusName=bus, Targets=[{"Id": "queue", "Arn": queue_arn}])
    at = time.time() - 120  # older than the sweep's settle time
    event = model.Event(model.first_id_at(at), "order.completed", model.rfc3339(at), {"id": 1}, "checker")
    db = Table(aws.client("dynamodb"), table)
    db.transact([{"Put": {"TableName": table, "Item": db.item(model.to_item(event))}}])

    account = conf["FunctionArn"].split(":")[4]
    started = time.monotonic()
    api.invoke({"version": "0", "id": str(uuid.uuid4()), "detail-type": "Scheduled Event", "source": "aws.events",
                "account": account, "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "region": REGION, "resources": [f"arn:aws:events:{REGION}:{account}:rule/schedule"], "detail": {}})
    timings = {"schedule_s": time.monotonic() - started}
    item = aws.client("dynamodb").get_item(TableName=table, Key=db.item({"pk": model.pk("checker"), "sk": event.id}))
    check("work" not in item.get("Item", {"work": 1}), f"the scheduled run left the event in the outbox: {item}")
    if queue is not None:
        got = aws.client("sqs").receive_message(QueueUrl=queue, MaxNumberOfMessages=10, WaitTimeSeconds=5)
        details = [json.loads(m["Body"]).get("detail", {}) for m in got.get("Messages", [])]
        check([d.get("id") for d in details] == [event.id], f"the bus did not carry the event: {details}")
    return timings


def exercise(api: RuntimeApi, caller_key: str) -> dict[str, float]:
    """The requests of issue 14 through the function, as API Gateway sends them."""
    key = {"X-Api-Key": caller_key}
    timings: dict[str, float] = {}

    def call(name: str, event: dict[str, Any]) -> tuple[int, dict[str, str], Any]:
        started = time.monotonic()
        answer = api.invoke(event)
        timings[name] = time.monotonic() - started
        body = json.loads(answer["body"]) if answer.get("body") else None
        return answer["statusCode"], {k.lower(): v for k, v in (answer.get("headers") or {}).items()}, body

    status, _, body = call("health_s", api_event("GET", "/health", "/health"))
    check(status == 200 and body == {"status": "ok"}, f"/health: {status} {body}")
    status, _, body = call("balance_s", api_event("GET", "/balance", "/balance", headers=key))
    check(status == 200 and "balance" in body, f"/balance: {status} {body}")
    status, _, body = call("bad_key_s", api_event("GET", "/balance", "/balance", headers={"X-Api-Key": "wrong-key-123"}))
    check(status == 401 and body["error"]["code"] == "unauthorized", f"bad key: {status} {body}")
    order = {"service": 1, "link": f"https://www.instagram.com/p/dc-{uuid.uuid4().hex[:12]}/", "quantity": 100}
    headers = {**key, "Idempotency-Key": "deploy-check-" + uuid.uuid4().hex}
    status, _, placed = call("order_s", api_event("POST", "/orders", "/orders", headers=headers, body=order))
    check(status == 201 and isinstance(placed.get("id"), int), f"POST /orders: {status} {placed}")
    status, replay_headers, replay = call("replay_s", api_event("POST", "/orders", "/orders", headers=headers,
                                                                 body=order))
    check(status == 201 and replay["id"] == placed["id"] and replay_headers.get("idempotent-replayed") == "true",
          f"replay: {status} {replay_headers} {replay}")
    status, _, ledger = call("ledger_s", api_event("GET", "/orders", "/orders", headers=key))
    check(status == 200 and [o["id"] for o in ledger["orders"]] == [placed["id"]], f"ledger: {status} {ledger}")
    return timings


# -- the whole check ----------------------------------------------------------------------


def offline(argv: list[str]) -> int | None:
    """Run this check again inside a network namespace of its own, where only the
    loopback interface exists, so it cannot reach anything else even by mistake (needs
    root and util-linux's unshare); None where that is not possible."""
    if os.environ.get("DEPLOY_CHECK_NETNS") or os.geteuid() != 0 or not (shutil.which("unshare") and shutil.which("ip")):
        return None
    if subprocess.run(["unshare", "-n", "true"], capture_output=True, timeout=30, check=False).returncode != 0:
        return None
    command = ["unshare", "-n", "sh", "-c", 'ip link set lo up && exec "$@"', "sh",
               sys.executable, "-m", "infra.deploy_check", *argv]
    return subprocess.run(command, cwd=ROOT, env={**os.environ, "DEPLOY_CHECK_NETNS": "1"}, check=False).returncode


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m infra.deploy_check", description=__doc__.split("\n\n")[0])
    parser.add_argument("--stages", nargs="+", choices=STAGES, default=list(STAGES))
    parser.add_argument("--packaged", type=Path, help="use these packaged stages (skips step 1)")
    args = parser.parse_args(argv)
    stages = tuple(args.stages)
    started = time.monotonic()
    logging.getLogger("samtranslator").setLevel(logging.CRITICAL)  # "unpublished metrics" reminders

    for tool, hint in ((AWS_CLI / "aws", "infra/requirements-awscli.txt"),
                       (LAMBDA_RUNTIME / "awslambdaric", "infra/requirements-lambda.txt")):
        check(tool.exists(), f"{tool} is missing: `make deploy-check` installs it ({hint})")
    floor = boto3_floor()
    installed = (LAMBDA_RUNTIME / "boto3" / "__init__.py").read_text()
    check(f"__version__ = '{floor}'" in installed, f"the runtime layer's boto3 is not the floor {floor}")

    with tempfile.TemporaryDirectory(prefix="deploy-check-") as scratch_dir:
        scratch = Path(scratch_dir)
        scratch.chmod(0o755)  # the function's unprivileged user reads its code below
        build = args.packaged or scratch / "build"
        if args.packaged is None:
            # As `make package`: the first time, chalice fetches the Lambda platform's
            # wheels from PyPI (then cached in .chalice/deployments); so outside the namespace.
            package_all(build, stages)
            print(f"1. packaged and linted (SAM and transformed): {', '.join(stages)} "
                  f"[{time.monotonic() - started:.0f} s]", flush=True)
            isolated = offline(["--stages", *stages, "--packaged", str(build)])
            if isolated is not None:
                if isolated == 0:
                    print(f"deploy-check passed in {time.monotonic() - started:.0f} s")
                return isolated
            print("deploy-check: no network namespace here (needs root and unshare); steps 2 and 3 reach "
                  "only 127.0.0.1 by construction", file=sys.stderr)
        else:
            print("   steps 2 and 3 offline: in a network namespace of its own, with only the loopback interface"
                  if os.environ.get("DEPLOY_CHECK_NETNS") else "   steps 2 and 3 on the packaged stages given",
                  flush=True)
        deploy_and_run(build, stages, scratch, started, floor)
        if args.packaged is None:
            print(f"deploy-check passed in {time.monotonic() - started:.0f} s")
    return 0


def deploy_and_run(build: Path, stages: tuple[str, ...], scratch: Path, started: float, floor: str) -> None:
    """Steps 2 and 3, against moto's server and the sandbox panel on 127.0.0.1."""
    from chalicelib.callers import record_for
    from infra import emulator
    from local.aws import EmbeddedAws, write_secret
    from local.run import quiet_embedded_services
    from sandbox.panel import DEFAULT_KEY, SandboxPanel

    quiet_embedded_services()
    # moto names each resource type it has no model for (the gaps infra/emulator.py
    # lists); samtranslator reminds about its unpublished usage metrics.
    warnings.filterwarnings("ignore", module=r"moto\.")
    for noisy in ("moto", "samtranslator"):
        logging.getLogger(noisy).setLevel(logging.CRITICAL)

    emulator.install()
    aws = EmbeddedAws().start()
    panel = SandboxPanel(api_key=DEFAULT_KEY)
    panel_url = panel.start()
    try:
        environ = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        environ.update(aws.environ())
        configs = {}
        for stage in stages:
            deploy(stage, build, environ)
            again = deploy(stage, build, environ)
            check("No changes to deploy" in again, f"the rerun of {stage} changed something:\n{again[-2000:]}")
            configs[stage] = assert_stack(aws, stage)
        print(f"2. deployed into moto with infra/deploy.sh, rerun unchanged, resources as declared: "
              f"{', '.join(stages)} [{time.monotonic() - started:.0f} s]", flush=True)

        for stage in stages:
            api, schedule = configs[stage]["APIHandler"], configs[stage]["SyncStatuses"]
            caller_key = "deploy-check-caller-key-" + uuid.uuid4().hex
            write_secret(aws.client("secretsmanager"), panel_url, DEFAULT_KEY, [record_for("checker", caller_key)],
                         secret_id=api["Environment"]["Variables"]["GATEWAY_SECRET_ID"])
            (scratch / f"run-{stage}").mkdir()
            timings, logged = run_function(aws, stage, api, build, scratch / f"run-{stage}",
                                           lambda runtime: exercise(runtime, caller_key))
            check(any(line.get("logger") == "chalicelib.access" for line in logged), "no access log lines")
            (scratch / f"run-{stage}-schedule").mkdir()
            scheduled, _ = run_function(aws, stage, schedule, build, scratch / f"run-{stage}-schedule",
                                        lambda runtime: exercise_schedule(runtime, aws, schedule))
            timings.update({f"schedule {k}": v for k, v in scheduled.items() if k != "schedule_s"},
                           schedule_s=scheduled["schedule_s"])
            shown = ", ".join(f"{k.removesuffix('_s')} {v * 1000:.0f} ms" for k, v in timings.items())
            print(f"3. {stage}: the uploaded zip under awslambdaric, boto3 {floor}: {shown}", flush=True)
    finally:
        panel.stop()
        aws.stop()
        for path in scratch.rglob("*"):  # the unpacked code is read-only
            if path.is_dir():
                path.chmod(0o755)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except CheckFailed as failure:
        print(f"deploy-check FAILED: {failure}", file=sys.stderr)
        sys.exit(1)
