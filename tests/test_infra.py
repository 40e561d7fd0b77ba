"""The deployment, checked offline: what `make package` writes and `make deploy` ships.

Both stages are packaged from a copy of the project (chalice caches its zip under the
project's .chalice/, which parallel runs must not share) and linted with cfn-lint.
The template must create every resource the code names, with the keys and TTL the
code relies on, and the function's role may do only what the code does.
"""

from __future__ import annotations

import fcntl
import fnmatch
import inspect
import logging
import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from infra.package import STAGES, PackageError, lint, package
from chalicelib.dynamo import WORK_INDEX
from chalicelib.orders.store import UNSETTLED_INDEX
from local.aws import SECRET_ID, TABLE, create_table

ROOT = Path(__file__).resolve().parent.parent
COPIED = ("app.py", "chalicelib", "requirements.txt", ".chalice/config.json", ".chalice/policy-dev.json",
          ".chalice/policy-prod.json", "infra/resources.json")
# What app.py reads that is not a resource name: tunables with defaults in app.py.
SETTINGS = {"SMM_TIMEOUT_SECONDS", "CATALOGUE_TTL_SECONDS", "SECRET_MAX_AGE_SECONDS",
            "IDEMPOTENCY_RETENTION_DAYS", "IDEMPOTENCY_KEY_REQUIRED", "MAX_ORDER_CHARGE", "DAILY_SPEND_LIMIT",
            "BALANCE_LOW_THRESHOLD", "EVENT_BUS_NAME", "WEBHOOK_RETRY_SECONDS", "WEBHOOK_ALLOW_PRIVATE_TARGETS"}
# What app.py reads that names a resource, and the type the template must create for it.
RESOURCES = {"GATEWAY_TABLE": "AWS::DynamoDB::Table", "GATEWAY_SECRET_ID": "AWS::SecretsManager::Secret",
             "WEBHOOK_QUEUE_URL": "AWS::SQS::Queue"}
TRANSACT_ACTIONS = {"Put": "dynamodb:PutItem", "Update": "dynamodb:UpdateItem", "Delete": "dynamodb:DeleteItem",
                    "ConditionCheck": "dynamodb:ConditionCheckItem"}
API_GATEWAY_LIMIT = 29.0  # seconds: REST API integration timeout
DYNAMODB_ALLOWANCE = 4.0  # seconds: the secret read and two transactions, with room for retries
BUS_ARN = "arn:${AWS::Partition}:events:${AWS::Region}:${AWS::AccountId}:event-bus/${EventBusName}"
MEASURED_PEAK_MB = 90  # `python -m infra.measure`: 66 MB (3 000 services) to 86 MB (20 000), + runtime


@pytest.fixture(scope="session")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Both stages, packaged once per run: xdist workers share the folder, a lock orders them."""
    shared = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        shared = shared.parent
    project = shared / "infra-project"
    templates = {stage: project / "build" / stage / "sam.json" for stage in STAGES}
    with open(shared / "infra-project.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (project / "packaged").exists():
            shutil.rmtree(project, ignore_errors=True)
            for name in COPIED:
                source, target = ROOT / name, project / name
                target.parent.mkdir(parents=True, exist_ok=True)
                if source.is_dir():
                    shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__"))
                else:
                    shutil.copy2(source, target)
            for stage, template in templates.items():
                package(stage, template.parent, project, check=False)
            (project / "packaged").touch()
    return templates


@pytest.fixture(scope="module")
def templates(built: dict[str, Path]) -> dict[str, dict[str, Any]]:
    return {stage: json.loads(path.read_text()) for stage, path in built.items()}


def resources(template: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {name: r for name, r in template["Resources"].items() if r["Type"] == kind}


def one(template: dict[str, Any], kind: str) -> tuple[str, dict[str, Any]]:
    (found,) = resources(template, kind).items()
    return found


def substitute(value: Any, stage: str) -> str:
    """A `Fn::Sub` of the Stage parameter, as CloudFormation resolves it."""
    return str(value["Fn::Sub"]).replace("${Stage}", stage)


# chalice's logical ids of the functions app.py makes, and their handlers: the API, the schedule
# and the webhook worker (an SQS consumer)
FUNCTIONS = {"APIHandler": "app.app", "SyncStatuses": "app.sync_statuses", "WebhookWorker": "app.deliver_webhooks"}
EVENT_MAKERS = ("APIHandler", "SyncStatuses")  # the worker only delivers: it reads no balance, puts no event


def functions(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    found = resources(template, "AWS::Serverless::Function")
    assert set(found) == set(FUNCTIONS)
    return found


def policies(template: dict[str, Any], bus: bool = False) -> dict[str, dict[str, Any]]:
    """Each function's role's one policy document, as CloudFormation makes it with or
    without an EventBusName (its conditional statements resolved)."""
    found = {}
    for name, function in functions(template).items():
        (role,) = function["Properties"]["Role"]["Fn::GetAtt"][:1]
        (policy,) = template["Resources"][role]["Properties"]["Policies"]
        found[name] = {**policy["PolicyDocument"], "Statement": resolved(policy["PolicyDocument"]["Statement"], bus)}
    return found


def resolved(listed: list[dict[str, Any]], bus: bool) -> list[dict[str, Any]]:
    kept = []
    for statement in listed:
        if "Fn::If" in statement:
            condition, given, absent = statement["Fn::If"]
            assert condition == "HasEventBus" and absent == {"Ref": "AWS::NoValue"}
            statement = given if bus else None
        if statement is not None:
            kept.append(statement)
    return kept


def statements(policy: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {s["Sid"]: s for s in policy["Statement"]}


def actions(statement: dict[str, Any]) -> set[str]:
    found = statement["Action"]
    return {found} if isinstance(found, str) else set(found)


# -- the package ---------------------------------------------------------------------


def test_each_stage_packages_into_a_template_and_a_lambda_zip(built: dict[str, Path]) -> None:
    for path in built.values():
        names = zipfile.ZipFile(path.parent / "deployment.zip").namelist()
        assert {"app.py", "chalicelib/orders/store.py", "chalicelib/openapi.json", "requests/__init__.py"} <= set(names)
        # jsonschema's one compiled dependency, built for the Lambda runtime, not this machine
        assert any(re.fullmatch(r"rpds/rpds\.cpython-311-x86_64-linux-gnu\.so", n) for n in names)


def test_the_zip_carries_byte_code_so_cold_starts_do_not_compile(built: dict[str, Path]) -> None:
    # Lambda cannot write __pycache__ in /var/task: without these every cold start compiles
    for path in built.values():
        packed = zipfile.ZipFile(path.parent / "deployment.zip")
        names = set(packed.namelist())
        for module in ("__pycache__/app", "chalicelib/__pycache__/upstream", "requests/__pycache__/sessions"):
            assert f"{module}.cpython-311.pyc" in names
        # unchecked-hash byte code (flags 0b01): valid whatever the zip's timestamps
        header = packed.read("__pycache__/app.cpython-311.pyc")[:8]
        assert int.from_bytes(header[4:8], "little") == 0b01


def test_cfn_lint_reports_no_error_or_warning_for_either_stage_before_or_after_the_sam_transform(
        built: dict[str, Path]) -> None:
    transformed = [path.with_name("cfn.json") for path in built.values()]
    assert lint(*built.values(), *transformed).strip() == ""


def test_cfn_lint_would_catch_a_broken_template(templates: dict[str, dict[str, Any]], tmp_path: Path) -> None:
    broken = json.loads(json.dumps(templates["dev"]))
    broken["Resources"]["APIHandler"]["Properties"]["MemorySize"] = 1
    (tmp_path / "sam.json").write_text(json.dumps(broken))

    with pytest.raises(PackageError, match="E3034"):
        lint(tmp_path / "sam.json")


# -- what it creates ---------------------------------------------------------------------


def test_the_table_is_the_one_the_store_expects(templates: dict[str, dict[str, Any]]) -> None:
    expected = Recorder()
    create_table(expected)  # the table the tests and `make run` use (local/aws.py)
    created = expected.calls["create_table"]
    ttl = expected.calls["update_time_to_live"]["TimeToLiveSpecification"]

    for stage, template in templates.items():
        _, table = one(template, "AWS::DynamoDB::Table")
        props = table["Properties"]
        assert props["KeySchema"] == created["KeySchema"]
        assert props["AttributeDefinitions"] == created["AttributeDefinitions"]
        assert props["GlobalSecondaryIndexes"] == created["GlobalSecondaryIndexes"]
        assert [i["IndexName"] for i in props["GlobalSecondaryIndexes"]] == [UNSETTLED_INDEX, WORK_INDEX]
        assert props["BillingMode"] == "PAY_PER_REQUEST"
        assert props["TimeToLiveSpecification"] == ttl == {"Enabled": True, "AttributeName": "expires_at"}
        assert props["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
        assert table["DeletionPolicy"] == table["UpdateReplacePolicy"] == "Retain"  # the order ledger
        assert substitute(props["TableName"], stage) == f"smm-gateway-{stage}"


def test_every_resource_name_the_code_reads_is_wired_to_a_created_resource(
        templates: dict[str, dict[str, Any]]) -> None:
    source = (ROOT / "app.py").read_text()
    read = set(re.findall(r"""(?:env\(|environ\.get\(|environ\[)\s*["']([A-Z_]+)["']""", source))
    assert read - SETTINGS == set(RESOURCES), "a new variable in app.py: a setting or a resource name?"
    for module in (ROOT / "chalicelib").glob("*.py"):  # only app.py reads the environment
        assert not re.search(r"os\.environ|getenv\(", module.read_text()), module

    for template in templates.values():
        for function in functions(template).values():
            variables = function["Properties"]["Environment"]["Variables"]
            for name, kind in RESOURCES.items():
                (target,) = variables[name].values()  # {"Ref": ...}: the table's name, the secret's ARN
                assert template["Resources"][target]["Type"] == kind, name


def test_the_dev_stack_creates_the_names_the_local_run_emulates(templates: dict[str, dict[str, Any]]) -> None:
    config = json.loads((ROOT / ".chalice/config.json").read_text())
    dev = templates["dev"]

    assert substitute(one(dev, "AWS::DynamoDB::Table")[1]["Properties"]["TableName"], "dev") == TABLE
    assert substitute(one(dev, "AWS::SecretsManager::Secret")[1]["Properties"]["Name"], "dev") == SECRET_ID
    assert config["stages"]["dev"]["environment_variables"] == {"GATEWAY_TABLE": TABLE, "GATEWAY_SECRET_ID": SECRET_ID}


def test_the_secret_is_created_empty_so_no_key_lives_in_the_template(templates: dict[str, dict[str, Any]]) -> None:
    for template in templates.values():
        _, secret = one(template, "AWS::SecretsManager::Secret")
        assert not {"SecretString", "GenerateSecretString"} & set(secret["Properties"])


# -- least privilege ---------------------------------------------------------------------


def test_the_role_may_act_only_on_the_created_resources(templates: dict[str, dict[str, Any]]) -> None:
    for template in templates.values():
        roles = resources(template, "AWS::IAM::Role")
        assert {f["Properties"]["Role"]["Fn::GetAtt"][0] for f in functions(template).values()} == set(roles)
        assert all("ManagedPolicyArns" not in role["Properties"] for role in roles.values())
        for policy in policies(template, bus=True).values():
            for statement in policy["Statement"]:
                assert statement["Effect"] == "Allow" and "NotAction" not in statement and "NotResource" not in statement
                assert not any("*" in action for action in actions(statement)), statement["Sid"]
                (intrinsic, target), = statement["Resource"].items()  # a Ref, GetAtt or Sub, never a string
                if intrinsic == "Fn::Sub":  # an index of the table, or the bus the parameter names
                    assert target in {"${GatewayTable.Arn}/index/" + WORK_INDEX, BUS_ARN}, target
                    continue
                name = target[0] if intrinsic == "Fn::GetAtt" else target
                assert template["Resources"][name]["Type"] in {*RESOURCES.values(), "AWS::Logs::LogGroup"}


def test_the_role_grants_exactly_the_table_actions_the_stores_issue(templates: dict[str, dict[str, Any]]) -> None:
    # every store builds its items and makes its calls through chalicelib/dynamo.py
    sources = [path.read_text() for path in sorted((ROOT / "chalicelib").rglob("*.py"))]
    source = "\n".join(text for text in sources if "chalicelib.dynamo import" in text or "class Table:" in text)
    issued = {TRANSACT_ACTIONS[kind] for kind in re.findall(r'\{"(Put|Update|Delete|ConditionCheck)": \{', source)}
    issued |= {"dynamodb:" + op.title().replace("_", "") for op in re.findall(r'\.(?:call|conditional)\(\s*"(\w+)"', source)}
    assert "transact_write_items" in source and issued >= {"dynamodb:PutItem", "dynamodb:Query"}

    for template in templates.values():
        given = {name: statements(policy) for name, policy in policies(template, bus=True).items()}
        for granted in given.values():
            assert actions(granted["GatewayTableItems"]) == issued
            assert actions(granted["OwnLogGroup"]) == {"logs:CreateLogStream", "logs:PutLogEvents"}
        for name in ("APIHandler", "SyncStatuses"):  # both make events, so both publish them
            assert actions(given[name]["GatewayWorkIndex"]) == {"dynamodb:Query"}  # the sync and the outbox's sweep
            assert actions(given[name]["GatewaySecretRead"]) == {"secretsmanager:GetSecretValue"}
            assert actions(given[name]["EventBusPut"]) == {"events:PutEvents"}
            assert actions(given[name]["WebhookQueueSend"]) == {"sqs:SendMessage"}  # the outbox's webhook sink
        worker = given["WebhookWorker"]
        assert {"GatewaySecretRead", "GatewayWorkIndex", "EventBusPut"}.isdisjoint(worker)  # it only delivers
        # what Lambda's SQS event source needs of the function's role, and the worker's own next attempts
        assert actions(worker["WebhookQueueConsume"]) == {"sqs:ReceiveMessage", "sqs:DeleteMessage",
                                                          "sqs:GetQueueAttributes", "sqs:SendMessage"}


def test_the_role_covers_every_call_the_function_makes(client: Any, gateway: Any, panel: Any,
                                                       templates: dict[str, dict[str, Any]],
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    # given a spending cap (so the daily counter is written) and a recorder on the function's clients
    monkeypatch.setenv("DAILY_SPEND_LIMIT", "1000")
    made: set[str] = set()
    for service in ("dynamodb", "secretsmanager", "sqs"):
        gateway.boto_client(service).meta.events.register(
            f"before-parameter-build.{service}", lambda params, model, **_: made.update(iam_actions(model, params)))
    order = {"service": 1, "link": "https://www.instagram.com/p/iam/", "quantity": 100}

    # when every path that writes or reads the table runs
    assert client.post("/orders", json_body=order, headers={"Idempotency-Key": "a"}).status_code == 201
    assert client.post("/orders", json_body=order, headers={"Idempotency-Key": "a"}).status_code == 201
    panel.inject("add", "html_200")
    assert client.post("/orders", json_body={**order, "link": "https://www.instagram.com/p/iam2/"},
                       headers={"Idempotency-Key": "b"}).status_code == 502
    panel.inject("add", "error", text="Not enough funds on balance")
    assert client.post("/orders", json_body={**order, "link": "https://www.instagram.com/p/iam3/"},
                       headers={"Idempotency-Key": "c"}).status_code == 402
    assert client.get("/orders?limit=5").status_code == 200
    gateway.desk().resolve("alice", "b", None)  # the operator's path (ops orders resolve)
    webhook = json.loads(client.post("/webhooks", json_body={"url": "https://93.184.215.14/iam",
                                                             "events": ["*"]}).body)
    assert client.post(f"/webhooks/{webhook['id']}/test").status_code == 202  # a delivery and its message
    assert client.request("DELETE", f"/webhooks/{webhook['id']}").status_code == 204

    # then the role of either stage allows all of it
    for template in templates.values():
        policy = policies(template)["APIHandler"]
        assert made <= set().union(*map(actions, policy["Statement"]))
    assert made >= {"dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem", "dynamodb:Query",
                    "dynamodb:GetItem", "secretsmanager:GetSecretValue", "sqs:SendMessage"}


def test_the_workers_role_covers_every_call_the_worker_makes(client: Any, gateway: Any, resources: Any,
                                                             templates: dict[str, dict[str, Any]],
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    from local.run import WebhookPoller
    from tests.loopback import webhook_receiver

    # given a delivery waiting in the queue, to a receiver failing once (a retry) then gone (410)
    monkeypatch.setenv("WEBHOOK_ALLOW_PRIVATE_TARGETS", "true")
    monkeypatch.setenv("WEBHOOK_RETRY_SECONDS", "0")
    made: set[str] = set()
    with webhook_receiver([500, 410]) as (url, got):
        webhook = json.loads(client.post("/webhooks", json_body={"url": url, "events": ["*"]}).body)
        assert client.post(f"/webhooks/{webhook['id']}/test").status_code == 202
        for service in ("dynamodb", "sqs"):  # from here on, the worker's calls only
            gateway.boto_client(service).meta.events.register(
                f"before-parameter-build.{service}", lambda params, model, **_: made.update(iam_actions(model, params)))

        # when the worker (as deployed: app.deliver_webhooks) handles what comes
        poller = WebhookPoller(resources.new_client("sqs"), os.environ["WEBHOOK_QUEUE_URL"], gateway.deliver_webhooks,
                               wait_seconds=0)
        while poller.poll_once():
            pass

    # then its role allows all of it
    assert len(got) == 2
    assert made >= {"dynamodb:GetItem", "dynamodb:ConditionCheckItem", "dynamodb:UpdateItem", "sqs:SendMessage"}
    for template in templates.values():
        assert made <= set().union(*map(actions, policies(template)["WebhookWorker"]["Statement"]))


def test_the_committed_policies_name_only_their_own_stages_resources(
        templates: dict[str, dict[str, Any]]) -> None:
    for stage, template in templates.items():
        # chalice gives every function's role the stage's one policy file, so it holds what any
        # role has; the bus's statement exists only with an EventBusName, so the file (for
        # `chalice deploy`) leaves it out
        committed = statements(json.loads((ROOT / f".chalice/policy-{stage}.json").read_text()))
        given = [statements(policy) for policy in policies(template).values()]
        assert committed.keys() == set().union(*given)
        for sid, statement in committed.items():
            assert all(actions(statement) == actions(granted[sid]) for granted in given if sid in granted)
            assert statement["Resource"] != "*" and not any("*" in action for action in actions(statement))
        for other in STAGES:  # the ARNs the stack creates for `other`, in some account and region
            arns = created_arns(template, other)
            for sid, arn in arns.items():
                assert fnmatch.fnmatchcase(arn, committed[sid]["Resource"]) == (other == stage), (stage, sid, arn)


def test_the_operators_policy_queries_exactly_the_unsettled_index(templates: dict[str, dict[str, Any]]) -> None:
    # `ops orders unknown` reads the index; the function never does, so its role has no grant on it.
    # The table itself: resolve's read and writes, and backfill-unsettled's Query and marks.
    text = (ROOT / "docs/deploy.md").read_text()
    block = re.search(r"### Permissions for operators\s+```json\n(.*?)```", text, re.S)
    assert block is not None
    policy = json.loads(block[1])
    (index,) = [st for st in policy["Statement"] if st["Resource"].endswith("/index/" + UNSETTLED_INDEX)]
    table = substitute(templates["prod"]["Resources"]["GatewayTable"]["Properties"]["TableName"], "prod")
    (items,) = [st for st in policy["Statement"] if st["Resource"] == f"arn:aws:dynamodb:*:*:table/{table}"]

    assert index["Action"] == ["dynamodb:Query"]
    assert index["Resource"] == f"arn:aws:dynamodb:*:*:table/{table}/index/{UNSETTLED_INDEX}"
    assert items["Action"] == ["dynamodb:GetItem", "dynamodb:Query", "dynamodb:UpdateItem", "dynamodb:DeleteItem"]
    for template in templates.values():
        for policy in policies(template).values():
            assert statements(policy)["GatewayTableItems"]["Resource"] == {"Fn::GetAtt": ["GatewayTable", "Arn"]}


# -- the schedule and the event bus ------------------------------------------------------


def test_the_scheduled_function_runs_app_sync_statuses_every_minute(built: dict[str, Path]) -> None:
    for path in built.values():
        deployed = json.loads(path.with_name("cfn.json").read_text())  # after the SAM transform
        (rule,) = resources(deployed, "AWS::Events::Rule").values()
        assert rule["Properties"]["ScheduleExpression"] == "rate(1 minute)"
        (target,) = rule["Properties"]["Targets"]
        assert target["Arn"] == {"Fn::GetAtt": ["SyncStatuses", "Arn"]}
        assert deployed["Resources"]["SyncStatuses"]["Properties"]["Handler"] == FUNCTIONS["SyncStatuses"]
    import app

    assert callable(app.sync_statuses) and "sync_statuses" in app.app.handler_map


def test_the_scheduled_function_logs_where_the_alarms_look_and_a_failed_run_waits_for_the_next(
        templates: dict[str, dict[str, Any]]) -> None:
    for template in templates.values():
        props = functions(template)["SyncStatuses"]["Properties"]
        assert props["LoggingConfig"] == {"LogGroup": {"Ref": "ApiHandlerLogGroup"}}  # ErrorLines counts its errors
        # Lambda would retry a failed run twice more beside the next minute's: no retries, no stale runs
        assert props["EventInvokeConfig"] == {"MaximumEventAgeInSeconds": 60, "MaximumRetryAttempts": 0}
        assert props["Timeout"] < 60  # a run ends before the next one starts
        (alarm,) = [a for a in resources(template, "AWS::CloudWatch::Alarm").values()
                    if a["Properties"].get("Dimensions") == [{"Name": "FunctionName", "Value": {"Ref": "SyncStatuses"}}]]
        assert alarm["Properties"]["MetricName"] == "Errors" and alarm["Properties"]["DatapointsToAlarm"] == 3


def test_prod_runs_one_sync_at_a_time(templates: dict[str, dict[str, Any]]) -> None:
    reserved = {name: f["Properties"].get("ReservedConcurrentExecutions")
                for name, f in functions(templates["prod"]).items()}
    assert reserved == {"APIHandler": 10, "SyncStatuses": 1, "WebhookWorker": 10}
    assert all("ReservedConcurrentExecutions" not in f["Properties"] for f in functions(templates["dev"]).values())


def test_the_event_bus_is_optional_and_only_the_named_bus_may_be_put_to(templates: dict[str, dict[str, Any]]) -> None:
    for template in templates.values():
        parameter = template["Parameters"]["EventBusName"]
        assert parameter["Default"] == ""
        pattern = re.compile(parameter["AllowedPattern"])
        for allowed in ("", "default", "smm-gateway-events", "aws.partner/example.com/123/orders"):
            assert pattern.match(allowed), allowed
        for refused in ("*", "bus*", "two words", "arn:aws:events:us-east-1:1:event-bus/x"):
            assert not pattern.match(refused), refused
        assert template["Conditions"]["HasEventBus"] == {"Fn::Not": [{"Fn::Equals": [{"Ref": "EventBusName"}, ""]}]}
        for name in EVENT_MAKERS:
            variables = functions(template)[name]["Properties"]["Environment"]["Variables"]
            assert variables["EVENT_BUS_NAME"] == {"Ref": "EventBusName"}
            without, given = policies(template)[name], policies(template, bus=True)[name]
            assert "EventBusPut" not in statements(without)  # no bus: no permission at all
            assert statements(given)["EventBusPut"]["Resource"] == {"Fn::Sub": BUS_ARN}


# -- Lambda settings ---------------------------------------------------------------------


def test_the_function_runs_the_python_the_tests_run_on(templates: dict[str, dict[str, Any]]) -> None:
    for template in templates.values():
        for function in functions(template).values():
            runtime = function["Properties"]["Runtime"]
            assert runtime == f"python{sys.version_info.major}.{sys.version_info.minor}" == "python3.11"


def test_the_timeout_covers_an_order_and_ends_before_api_gateway_and_the_lease(
        templates: dict[str, dict[str, Any]]) -> None:
    from chalicelib.upstream import PanelClient

    connect = inspect.signature(PanelClient).parameters["connect_timeout"].default
    source = (ROOT / "app.py").read_text()
    for template in templates.values():
        props = functions(template)["APIHandler"]["Properties"]
        upstream = float(props["Environment"]["Variables"].get("SMM_TIMEOUT_SECONDS")
                         or re.search(r'env\("SMM_TIMEOUT_SECONDS", "([\d.]+)"\)', source)[1])  # type: ignore[index]
        lease = upstream * 2 + 30  # app.desk(): a claim another request may take over after this
        # one `add` (connect + read, never retried) plus the secret and the table
        assert connect + upstream + DYNAMODB_ALLOWANCE < props["Timeout"] < API_GATEWAY_LIMIT < lease


def test_memory_leaves_room_over_the_measured_peak(templates: dict[str, dict[str, Any]]) -> None:
    config = json.loads((ROOT / ".chalice/config.json").read_text())
    for stage, template in templates.items():
        for function in functions(template).values():
            memory = function["Properties"]["MemorySize"]
            assert memory == config["stages"][stage]["lambda_memory_size"] >= 2 * MEASURED_PEAK_MB


# -- make deploy ---------------------------------------------------------------------------


def test_deploy_ships_the_packaged_stage_to_its_own_stack(built: dict[str, Path], tmp_path: Path) -> None:
    calls = run_deploy("prod", built["prod"].parent, tmp_path, quota=1000)

    assert calls.returncode == 0, calls.stderr
    (packaged,) = [c for c in calls.aws if c[:2] == ["cloudformation", "package"]]
    (deployed,) = [c for c in calls.aws if c[:2] == ["cloudformation", "deploy"]]
    assert packaged[packaged.index("--template-file") + 1] == str(built["prod"])
    assert deployed[deployed.index("--stack-name") + 1] == "smm-gateway-prod"
    assert "Stage=prod" in deployed and "CAPABILITY_IAM" in deployed
    assert ["s3", "mb", "s3://smm-gateway-artifacts-123456789012-eu-west-1", "--region", "eu-west-1"] in calls.aws


def test_deploy_sets_alarm_email_and_balance_threshold_only_when_asked(built: dict[str, Path], tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ALARM_EMAIL", raising=False)
    monkeypatch.delenv("BALANCE_LOW_THRESHOLD", raising=False)
    runs = {name: run_deploy("dev", built["dev"].parent, tmp_path / name, quota=1000, env=env)
            for name, env in (("unset", {}), ("given", {"ALARM_EMAIL": "ops@example.com"}),
                              ("cleared", {"ALARM_EMAIL": ""}), ("threshold", {"BALANCE_LOW_THRESHOLD": "25"}),
                              ("threshold cleared", {"BALANCE_LOW_THRESHOLD": ""}))}

    overrides = {}
    for name, run in runs.items():
        (deployed,) = [c for c in run.aws if c[:2] == ["cloudformation", "deploy"]]
        start = deployed.index("--parameter-overrides") + 1
        overrides[name] = deployed[start:deployed.index("--capabilities")]
    # unset: the stack keeps its previous value (new stacks: the empty default)
    assert overrides == {"unset": ["Stage=dev"], "given": ["Stage=dev", "AlarmEmail=ops@example.com"],
                         "cleared": ["Stage=dev", "AlarmEmail="], "threshold": ["Stage=dev", "BalanceLowThreshold=25"],
                         "threshold cleared": ["Stage=dev", "BalanceLowThreshold="]}


def test_deploy_names_the_event_bus_only_when_asked(built: dict[str, Path], tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("ALARM_EMAIL", "BALANCE_LOW_THRESHOLD", "EVENT_BUS_NAME"):
        monkeypatch.delenv(name, raising=False)
    overrides = {}
    for name, env in (("unset", {}), ("given", {"EVENT_BUS_NAME": "orders-bus"}), ("cleared", {"EVENT_BUS_NAME": ""})):
        run = run_deploy("dev", built["dev"].parent, tmp_path / name, quota=1000, env=env)
        (deployed,) = [c for c in run.aws if c[:2] == ["cloudformation", "deploy"]]
        overrides[name] = deployed[deployed.index("--parameter-overrides") + 1:deployed.index("--capabilities")]

    assert overrides == {"unset": ["Stage=dev"], "given": ["Stage=dev", "EventBusName=orders-bus"],
                         "cleared": ["Stage=dev", "EventBusName="]}


def test_deploy_stops_before_anything_when_the_account_cannot_reserve_concurrency(
        built: dict[str, Path], tmp_path: Path) -> None:
    calls = run_deploy("prod", built["prod"].parent, tmp_path, quota=10)

    assert calls.returncode == 1 and "concurrency quota" in calls.stderr
    assert not [c for c in calls.aws if c[0] in {"cloudformation", "s3"}]


def test_deploy_counts_the_reservations_of_every_function(built: dict[str, Path], tmp_path: Path) -> None:
    # prod reserves 10 for the API, 1 for the schedule and 10 for the webhook worker: 31 with
    # the 10 AWS keeps unreserved
    reserved = json.loads(built["prod"].read_text())
    assert {name: f["Properties"].get("ReservedConcurrentExecutions") for name, f in functions(reserved).items()} == {
        "APIHandler": 10, "SyncStatuses": 1, "WebhookWorker": 10}

    short = run_deploy("prod", built["prod"].parent, tmp_path / "short", quota=30)
    enough = run_deploy("prod", built["prod"].parent, tmp_path / "enough", quota=31)

    assert short.returncode == 1 and "reserves 21 concurrent executions" in short.stderr
    assert enough.returncode == 0, enough.stderr


def test_make_wires_package_and_deploy_to_these_scripts() -> None:
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    dry = subprocess.run(["make", "-n", "deploy", "STAGE=prod"], cwd=ROOT,
                         capture_output=True, text=True, timeout=30, check=False)

    assert "-m infra.package --stage prod --out build/prod" in dry.stdout
    assert "infra/deploy.sh prod build/prod" in dry.stdout


# -- helpers -------------------------------------------------------------------------------


class Recorder:
    """Stands in for a boto3 client: keeps the parameters of each call."""

    def __init__(self) -> None:
        self.calls: dict[str, Any] = {}

    def __getattr__(self, operation: str) -> Any:
        return lambda **params: self.calls.__setitem__(operation, params)


def iam_actions(model: Any, params: dict[str, Any]) -> set[str]:
    prefix = model.service_model.signing_name
    if model.name == "TransactWriteItems":
        return {TRANSACT_ACTIONS[kind] for item in params["TransactItems"] for kind in item}
    return {f"{prefix}:{model.name}"}


def created_arns(template: dict[str, Any], stage: str) -> dict[str, str]:
    """The ARNs of what the stack creates for `stage`, keyed by the policy statement that covers them."""
    res = template["Resources"]
    where = "arn:aws:{}:eu-west-1:123456789012:"
    return {
        "GatewayTableItems": where.format("dynamodb") + "table/" + substitute(
            res["GatewayTable"]["Properties"]["TableName"], stage),
        "GatewayWorkIndex": where.format("dynamodb") + "table/" + substitute(
            res["GatewayTable"]["Properties"]["TableName"], stage) + "/index/" + WORK_INDEX,
        "GatewaySecretRead": where.format("secretsmanager") + "secret:" + substitute(
            res["GatewaySecret"]["Properties"]["Name"], stage) + "-Ab12Cd",
        "OwnLogGroup": where.format("logs") + "log-group:" + substitute(
            res["ApiHandlerLogGroup"]["Properties"]["LogGroupName"], stage) + ":log-stream:2026/11/27/x",
        "WebhookQueueSend": where.format("sqs") + substitute(res["WebhookQueue"]["Properties"]["QueueName"], stage),
        "WebhookQueueConsume": where.format("sqs") + substitute(res["WebhookQueue"]["Properties"]["QueueName"], stage),
    }


class DeployRun:
    def __init__(self, done: subprocess.CompletedProcess[str], log: Path) -> None:
        self.returncode, self.stderr = done.returncode, done.stderr
        self.aws = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def run_deploy(stage: str, build: Path, tmp_path: Path, *, quota: int, env: dict[str, str] | None = None) -> DeployRun:
    """infra/deploy.sh with a stand-in `aws` that records its arguments and answers like AWS."""
    bin_dir, log = tmp_path / "bin", tmp_path / "aws.log"
    bin_dir.mkdir(parents=True)
    fake = bin_dir / "aws"
    fake.write_text(f"""#!{sys.executable}
import json, sys
args = sys.argv[1:]
with open({str(log)!r}, "a") as out:
    out.write(json.dumps(args) + "\\n")
answers = {{("sts", "get-caller-identity"): "123456789012", ("lambda", "get-account-settings"): "{quota}",
            ("configure", "get"): ""}}
print(answers.get(tuple(args[:2]), ""))
sys.exit(1 if args[:2] in (["s3api", "head-bucket"], ["configure", "get"]) else 0)
""")
    fake.chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "AWS_REGION": "eu-west-1",
           **(env or {})}
    done = subprocess.run(["bash", str(ROOT / "infra/deploy.sh"), stage, str(build)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60, check=False)
    return DeployRun(done, log)


def test_api_gateways_own_answers_have_the_one_error_shape(templates: dict[str, dict[str, Any]]) -> None:
    # An unknown route never reaches the function: API Gateway answers it (403 "Missing
    # Authentication Token" by default), and a crashed function is its 502.
    for template in templates.values():
        answers = one(template, "AWS::Serverless::Api")[1]["Properties"]["GatewayResponses"]
        assert answers["MISSING_AUTHENTICATION_TOKEN"]["StatusCode"] == "404"
        assert answers["DEFAULT_5XX"]["StatusCode"] == "502"
        for answer in answers.values():
            body = json.loads(answer["ResponseTemplates"]["application/json"])
            assert set(body) == {"error", "request_id"} and set(body["error"]) == {"code", "message", "upstream"}
        assert json.loads(answers["MISSING_AUTHENTICATION_TOKEN"]["ResponseTemplates"]["application/json"])[
            "error"]["code"] == "not_found"


def test_api_gateways_own_answers_are_part_of_the_api_so_every_deployment_carries_them(
        built: dict[str, Path]) -> None:
    # Beside an API defined by its body, a GatewayResponse resource can be dropped by an
    # update that changes the API, and the first deployment does not wait for it (W3660).
    for path in built.values():
        deployed = json.loads(path.with_name("cfn.json").read_text())  # after the SAM transform
        assert not resources(deployed, "AWS::ApiGateway::GatewayResponse")
        _, api = one(deployed, "AWS::ApiGateway::RestApi")
        answers = api["Properties"]["Body"]["x-amazon-apigateway-gateway-responses"]
        assert answers["MISSING_AUTHENTICATION_TOKEN"]["statusCode"] == "404"
        assert set(answers) == {"MISSING_AUTHENTICATION_TOKEN", "DEFAULT_5XX"}


# -- alarms ----------------------------------------------------------------------------------

ALARM_FILTERS = {"Requests", "ServerErrors", "OutcomeUnknown", "UpstreamErrors", "ErrorLines", "BalanceLow"}


def metric_filters(template: dict[str, Any]) -> dict[str, str]:
    """Metric name -> filter pattern, for every metric filter on the function's log group."""
    found = {}
    for name, filt in resources(template, "AWS::Logs::MetricFilter").items():
        props = filt["Properties"]
        assert props["LogGroupName"] == {"Ref": "ApiHandlerLogGroup"}, name
        (metric,) = props["MetricTransformations"]
        assert metric["MetricValue"] == "1" and metric["MetricNamespace"] == {"Fn::Sub": "smm-gateway/${Stage}"}
        found[metric["MetricName"]] = props["FilterPattern"]
    return found


def test_the_filter_pattern_reader_follows_cloudwatchs_documented_examples() -> None:
    from tests.filter_pattern import matches

    event = json.dumps({"eventType": "UpdateTrail", "latency": 50, "user": {"id": 1}, "none": None})
    assert matches('{ $.eventType = "UpdateTrail" }', event)
    assert matches('{ $.eventType = "Update*" }', event) and not matches('{ $.eventType = "Delete*" }', event)
    assert matches('{ $.latency >= 50 && $.latency < 51 }', event) and not matches('{ $.latency > 50 }', event)
    assert matches('{ ($.latency = 1 || $.user.id = 1) && $.eventType != "x" }', event)
    assert matches('{ $.none IS NULL }', event) and matches('{ $.missing NOT EXISTS }', event)
    assert not matches('{ $.eventType >= 5 }', event) and not matches('{ $.latency = "50" }', event)
    assert not matches('{ $.missing != "x" }', event) and not matches('{ $.latency = 50 }', "not json")


def test_each_alarm_filter_counts_exactly_the_gateway_lines_it_is_named_for(
        templates: dict[str, dict[str, Any]], client: Any, gateway: Any, panel: Any, log_lines: Any,
        monkeypatch: pytest.MonkeyPatch) -> None:
    from chalice.test import Client

    from chalicelib import http
    from tests.conftest import CALLER_KEY
    from tests.filter_pattern import matches

    # given the lines the gateway prints for: an answer, a refusal, an upstream error, an
    # order whose outcome is lost, its replay, a crash, and a balance read under the threshold
    monkeypatch.setenv("BALANCE_LOW_THRESHOLD", "10")
    order = {"service": 1, "link": "https://www.instagram.com/p/alarms/", "quantity": 100}
    assert client.get("/health").status_code == 200
    assert client.get("/balance", key="sgw_nobody").status_code == 401
    panel.inject("balance", "html_200", times=5)
    upstream = client.get("/balance")
    panel.inject("add", "html_200")
    unknown = client.post("/orders", json_body=order, headers={"Idempotency-Key": "alarms-1"})
    replayed = client.post("/orders", json_body=order, headers={"Idempotency-Key": "alarms-1"})

    def broken(text: str, what: str = "id") -> int:
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(http, "parse_id", broken)
    with Client(gateway.app) as raw:  # a 500 is a bug, outside `client`'s contract check
        assert raw.http.get("/orders/42", headers={"x-api-key": CALLER_KEY}).status_code == 500
    panel.set_balance(Decimal("9.99"))
    assert client.get("/balance").status_code == 200
    codes = [json.loads(a.body)["error"]["code"] for a in (upstream, unknown, replayed)]
    assert codes[0].startswith("upstream_") and codes[1:] == ["outcome_unknown", "outcome_unknown"]
    lines = log_lines.text.splitlines()
    access = [json.loads(line) for line in lines if json.loads(line)["logger"] == "chalicelib.access"]
    assert [line["status"] for line in access] == [200, 401, upstream.status_code, unknown.status_code, 409, 500, 200]

    # then each filter counts its own lines and nothing else
    for template in templates.values():
        filters = metric_filters(template)
        assert set(filters) == ALARM_FILTERS

        def counted(metric: str) -> list[dict[str, Any]]:
            return [json.loads(line) for line in lines if matches(filters[metric], line)]

        assert counted("Requests") == access
        assert [line["status"] for line in counted("ServerErrors")] == [upstream.status_code, unknown.status_code, 500]
        assert [line["error"] for line in counted("UpstreamErrors")] == codes[:1]
        assert [line["error"] for line in counted("OutcomeUnknown")] == ["outcome_unknown"] * 2
        assert [(line["logger"], line["level"]) for line in counted("ErrorLines")] == [("chalicelib.crash", "error")]
        assert [(line["message"], Decimal(line["balance"])) for line in counted("BalanceLow")] == [
            ("balance low", Decimal("9.99"))]


def test_a_placed_but_unrecorded_order_counts_as_an_unknown_outcome(templates: dict[str, dict[str, Any]]) -> None:
    # chalicelib/orders/desk.py logs this when the panel took an order the table could not record
    from chalicelib import logs
    from tests.filter_pattern import matches

    formatter = logs.JsonFormatter()
    record = logging.LogRecord("chalicelib.orders.desk", logging.ERROR, __file__, 1, "order placed but not recorded",
                               None, None)
    record.fields = {"order_id": 7, "caller": "alice", "idempotency_key": "k", "ledger_sk": "x"}
    line = formatter.format(record)
    source = (ROOT / "chalicelib/orders/desk.py").read_text()
    assert '"order placed but not recorded", logging.ERROR' in source
    for template in templates.values():
        filters = metric_filters(template)
        assert matches(filters["OutcomeUnknown"], line) and matches(filters["ErrorLines"], line)


def test_every_alarm_notifies_the_one_topic_and_email_subscribes_only_when_given(
        templates: dict[str, dict[str, Any]]) -> None:
    for template in templates.values():
        (topic, _), = resources(template, "AWS::SNS::Topic").items()
        alarms = resources(template, "AWS::CloudWatch::Alarm")
        assert len(alarms) == 8
        for name, alarm in alarms.items():
            props = alarm["Properties"]
            assert props["AlarmActions"] == props["OKActions"] == [{"Ref": topic}], name
            assert props["TreatMissingData"] == "notBreaching", name
            metrics = {m["MetricStat"]["Metric"]["MetricName"] for m in props.get("Metrics", []) if "MetricStat" in m}
            used = metrics or {props["MetricName"]}
            if props.get("Namespace") not in ("AWS/Lambda", "AWS/SQS"):  # AWS's own metrics need no filter
                assert used <= set(metric_filters(template)), name
        (subscription,) = resources(template, "AWS::SNS::Subscription").values()
        assert subscription["Properties"]["Endpoint"] == {"Ref": "AlarmEmail"}
        condition = template["Conditions"][subscription["Condition"]]
        assert condition == {"Fn::Not": [{"Fn::Equals": [{"Ref": "AlarmEmail"}, ""]}]}
        assert template["Parameters"]["AlarmEmail"]["Default"] == ""
        pattern = re.compile(template["Parameters"]["AlarmEmail"]["AllowedPattern"])
        assert pattern.match("") and pattern.match("ops@example.com") and not pattern.match("ops")


def test_the_function_takes_its_balance_threshold_from_an_optional_parameter_it_can_read(
        templates: dict[str, dict[str, Any]]) -> None:
    from chalicelib.account import threshold

    for template in templates.values():
        for name in EVENT_MAKERS:
            variables = functions(template)[name]["Properties"]["Environment"]["Variables"]
            assert variables["BALANCE_LOW_THRESHOLD"] == {"Ref": "BalanceLowThreshold"}
        parameter = template["Parameters"]["BalanceLowThreshold"]
        assert parameter["Default"] == ""
        pattern = re.compile(parameter["AllowedPattern"])
        for allowed in ("", "0", "25", "0.5", "100.25"):
            assert pattern.match(allowed) and (threshold(allowed) is not None or allowed == ""), allowed
        for refused in ("abc", "-1", "1,5", "1e3", "NaN", " 5"):
            assert not pattern.match(refused), refused


def test_the_runbook_has_a_row_for_every_alarm(templates: dict[str, dict[str, Any]]) -> None:
    runbook = (ROOT / "docs/deploy.md").read_text()
    for template in templates.values():
        for alarm in resources(template, "AWS::CloudWatch::Alarm").values():
            suffix = alarm["Properties"]["AlarmName"]["Fn::Sub"].removeprefix("smm-gateway-${Stage}-")
            assert re.search(rf"^\| `{suffix}` \|", runbook, re.M), suffix


# -- webhooks --------------------------------------------------------------------------------------


def test_the_webhook_queue_is_the_one_the_local_run_creates_and_feeds_the_worker(
        templates: dict[str, dict[str, Any]]) -> None:
    from local.aws import MAX_RECEIVES, QUEUE, VISIBILITY_SECONDS, create_queue

    expected = Recorder()
    expected.create_queue = lambda **params: expected.calls.setdefault("queues", []).append(params) or {  # type: ignore[method-assign]
        "QueueUrl": params["QueueName"]}
    expected.get_queue_attributes = lambda **_: {"Attributes": {"QueueArn": "dlq-arn"}}  # type: ignore[method-assign]
    create_queue(expected)
    dead, main = expected.calls["queues"]
    for stage, template in templates.items():
        res = template["Resources"]
        queue = res["WebhookQueue"]["Properties"]
        assert substitute(queue["QueueName"], "dev") == QUEUE == main["QueueName"]
        assert substitute(res["WebhookDeadLetterQueue"]["Properties"]["QueueName"], "dev") == dead["QueueName"]
        assert queue["VisibilityTimeout"] == VISIBILITY_SECONDS == int(main["Attributes"]["VisibilityTimeout"])
        assert queue["RedrivePolicy"] == {"deadLetterTargetArn": {"Fn::GetAtt": ["WebhookDeadLetterQueue", "Arn"]},
                                          "maxReceiveCount": MAX_RECEIVES}
        assert json.loads(main["Attributes"]["RedrivePolicy"])["maxReceiveCount"] == MAX_RECEIVES
        # a message's visibility outlasts the worker's run and its claim on an attempt
        from chalicelib.webhooks.deliveries import LEASE_SECONDS
        worker = functions(template)["WebhookWorker"]["Properties"]
        assert worker["Timeout"] < LEASE_SECONDS < queue["VisibilityTimeout"]
        assert worker["Handler"] == "app.deliver_webhooks"
        (source,) = worker["Events"].values()
        assert source["Type"] == "SQS" and source["Properties"]["BatchSize"] == 1
        assert source["Properties"]["Queue"] == {"Fn::GetAtt": ["WebhookQueue", "Arn"]}
        assert worker["LoggingConfig"] == {"LogGroup": {"Ref": "ApiHandlerLogGroup"}}


def test_the_dead_letter_alarm_watches_the_dead_letter_queue(templates: dict[str, dict[str, Any]]) -> None:
    for template in templates.values():
        alarm = template["Resources"]["WebhookDeadLetterAlarm"]["Properties"]
        assert (alarm["Namespace"], alarm["MetricName"]) == ("AWS/SQS", "ApproximateNumberOfMessagesVisible")
        assert alarm["Dimensions"] == [{"Name": "QueueName",
                                        "Value": {"Fn::GetAtt": ["WebhookDeadLetterQueue", "QueueName"]}}]
        assert alarm["Threshold"] == 1 and alarm["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"


def test_no_deployed_function_allows_private_webhook_targets(templates: dict[str, dict[str, Any]]) -> None:
    config = json.loads((ROOT / ".chalice/config.json").read_text())
    for stage, template in templates.items():
        assert "WEBHOOK_ALLOW_PRIVATE_TARGETS" not in config["stages"][stage]["environment_variables"]
        for function in functions(template).values():
            variables = function["Properties"]["Environment"]["Variables"]
            assert "WEBHOOK_ALLOW_PRIVATE_TARGETS" not in variables  # app.py's default: false
