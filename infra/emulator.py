"""Where moto falls short of AWS, for `make deploy-check` only.

`infra/deploy.sh` runs unmodified against moto's server (local/aws.py's EmbeddedAws)
and the stack it deploys is the one `make package` wrote; nothing in the product
changes for the emulator. Each shim below names the gap it covers, and covers only
that: what a shim stands in for is not checked by the emulator (see docs/deploy.md).
`install()` applies them to the moto running in this process (idempotent).
"""

from __future__ import annotations

import functools
import json
from typing import Any
from urllib.parse import urlparse

LOOPBACK = {"127.0.0.1", "localhost", "[::1]"}
_installed = False


def install() -> None:
    global _installed
    if _installed:
        return
    _template_url_on_loopback()
    _sam_transform()
    _rest_api_from_its_body()
    _secret_resource()
    _lambda_account_settings()
    _parameters_with_defaults()
    _no_value_in_lists()
    _installed = True


def _template_url_on_loopback() -> None:
    """Gap 1: `aws cloudformation deploy` uploads a template over 51 200 bytes to the
    artifact bucket and passes its URL, path-style on a custom endpoint
    (http://127.0.0.1:<port>/<bucket>/<key>). moto reads the bucket from the path only
    when the host is `localhost`, and otherwise takes the first label of the host name
    ("127") as the bucket: NoSuchBucket."""
    from moto.cloudformation import responses, utils

    original = utils.get_stack_from_s3_url

    @functools.wraps(original)
    def path_style_on_loopback(template_url: str, account_id: str, partition: str) -> str:
        parts = urlparse(template_url)
        if parts.hostname in LOOPBACK or parts.netloc.split(":")[0] in LOOPBACK:
            template_url = template_url.replace(parts.netloc, f"localhost:{parts.port or 80}", 1)
        return original(template_url, account_id=account_id, partition=partition)

    responses.get_stack_from_s3_url = path_style_on_loopback


def _sam_transform() -> None:
    """Gap 2: moto does not apply `Transform: AWS::Serverless-2016-10-31`; it would
    skip the AWS::Serverless::Function and ::Api resources. CloudFormation applies
    the transform with AWS's aws-sam-translator, which is what this calls (the same
    function `make package` lints the output of), on every template moto parses:
    stacks and change sets alike, so an unchanged template still compares equal."""
    import yaml
    from moto.cloudformation import models
    from moto.cloudformation.utils import yaml_tag_constructor

    from infra.package import translate

    def parse(template: str) -> dict[str, Any]:
        yaml.add_multi_constructor("", yaml_tag_constructor)
        try:
            document = yaml.load(template, Loader=yaml.Loader)
        except yaml.YAMLError:
            document = json.loads(template)
        if document.get("Transform") == "AWS::Serverless-2016-10-31":
            document = translate(document, {})
        return document

    def parse_change_set(self: Any) -> None:
        self.template_dict = parse(self.template)

    models.Stack.parse_template = staticmethod(parse)  # type: ignore[method-assign]
    models.ChangeSet._parse_template = parse_change_set  # type: ignore[method-assign]


def _rest_api_from_its_body() -> None:
    """Gap 3: moto's AWS::ApiGateway::RestApi requires `Name` (AWS takes it from the
    body's info.title) and ignores `Body` (AWS imports the routes from it). moto can
    import only OpenAPI 3 documents, but reads just `paths` with their methods and
    `x-amazon-apigateway-integration`, which Swagger 2 spells the same way; so the
    body is handed over under an OpenAPI 3 version number."""
    from moto.apigateway.models import RestAPI, apigateway_backends

    original = RestAPI.create_from_cloudformation_json.__func__  # type: ignore[attr-defined]

    def create(cls: Any, resource_name: str, cloudformation_json: dict[str, Any], account_id: str,
               region_name: str, **kwargs: Any) -> Any:
        properties = cloudformation_json["Properties"]
        body = properties.get("Body")
        if body and "Name" not in properties:
            properties["Name"] = body["info"]["title"]
        api = original(cls, resource_name, cloudformation_json, account_id, region_name, **kwargs)
        if body:
            document = {key: value for key, value in body.items() if key != "swagger"}
            apigateway_backends[account_id][region_name].put_rest_api(
                api.id, {**document, "openapi": "3.0.1"}, fail_on_warnings=False, mode="overwrite")
        return api

    RestAPI.create_from_cloudformation_json = classmethod(create)  # type: ignore[method-assign, assignment]


def _secret_resource() -> None:
    """Gap 4: moto has no CloudFormation model for AWS::SecretsManager::Secret (it
    would create nothing and `Ref` would give the logical id, not the ARN). This one
    creates the secret through moto's Secrets Manager backend, with its name and
    description and no value, as the template asks; `Ref` is its ARN, as on AWS."""
    from moto.cloudformation import parsing
    from moto.core.common_models import CloudFormationModel
    from moto.secretsmanager.models import secretsmanager_backends

    class Secret(CloudFormationModel):
        def __init__(self, arn: str) -> None:
            self.arn = arn

        @property
        def physical_resource_id(self) -> str:
            return self.arn

        @staticmethod
        def cloudformation_name_type() -> str:
            return "Name"

        @staticmethod
        def cloudformation_type() -> str:
            return "AWS::SecretsManager::Secret"

        @classmethod
        def create_from_cloudformation_json(cls, resource_name: str, cloudformation_json: dict[str, Any],
                                            account_id: str, region_name: str, **kwargs: Any) -> "Secret":
            properties = cloudformation_json["Properties"]
            backend = secretsmanager_backends[account_id][region_name]
            created = json.loads(backend.create_secret(
                name=properties.get("Name") or resource_name, secret_string=None, secret_binary=None,
                description=properties.get("Description"), tags=[], kms_key_id=None,
                client_request_token=None, replica_regions=[], force_overwrite=False))
            return cls(created["ARN"])

        @classmethod
        def update_from_cloudformation_json(cls, original_resource: Any, new_resource_name: str,
                                            cloudformation_json: dict[str, Any], account_id: str,
                                            region_name: str) -> "Secret":
            return original_resource

    parsing.get_model_list.cache_clear()
    parsing.get_model_map.cache_clear()
    parsing.get_name_type_map.cache_clear()


def _lambda_account_settings() -> None:
    """Gap 5: moto has no Lambda GetAccountSettings (404), which deploy.sh asks before a
    stage that reserves concurrency (prod). This answers with AWS's default quota of
    1 000 concurrent executions, so deploy.sh's own quota check runs and passes."""
    from moto.awslambda import urls
    from moto.awslambda.responses import LambdaResponse

    def get_account_settings(self: Any) -> tuple[int, dict[str, str], str]:
        return 200, {}, json.dumps({
            "AccountLimit": {"TotalCodeSize": 80530636800, "CodeSizeUnzipped": 262144000,
                             "CodeSizeZipped": 52428800, "ConcurrentExecutions": 1000,
                             "UnreservedConcurrentExecutions": 1000},
            "AccountUsage": {"TotalCodeSize": 0, "FunctionCount": 0}})

    LambdaResponse.get_account_settings = get_account_settings  # type: ignore[attr-defined]
    urls.url_paths[r"{0}/(?P<api_version>[^/]+)/account-settings/?$"] = LambdaResponse.dispatch


def _parameters_with_defaults() -> None:
    """Gap 6: a rerun of `aws cloudformation deploy` sends every parameter it does not
    override (AlarmEmail) as UsePreviousValue; moto then compares the previous values,
    defaults included, with the parameters the stack was created with, defaults not
    included, and sees a change where CloudFormation sees none ("No changes to
    deploy"). Both sides are compared with the template's defaults filled in."""
    from moto.cloudformation import models

    def has_parameters(self: Any, other_parameters: dict[str, Any]) -> bool:
        declared = self.template_dict.get("Parameters", {})

        def filled(values: dict[str, Any]) -> dict[str, Any]:
            return {name: values.get(name, spec.get("Default")) for name, spec in declared.items()}

        return filled(self.parameters) == filled(other_parameters)

    models.Stack.has_parameters = has_parameters  # type: ignore[method-assign]


def _no_value_in_lists() -> None:
    """Gap 8: `Ref: AWS::NoValue` removes the property or list element it stands for.
    moto resolves it to null and keeps it, so a policy statement left out by a condition
    (events:PutEvents when no EventBusName is given) becomes a null statement in the
    role's policy. A list element written as an intrinsic function that resolves to
    nothing is dropped, as CloudFormation drops it; literal values are kept."""
    from moto.cloudformation import parsing

    original = parsing.clean_json

    def clean_json(resource_json: Any, resources_map: Any) -> Any:
        if isinstance(resource_json, list):
            cleaned = [(value, clean_json(value, resources_map)) for value in resource_json]
            return [result for value, result in cleaned if not (isinstance(value, dict) and result is None)]
        return original(resource_json, resources_map)

    parsing.clean_json = clean_json


# Gap 7, in the function's own process (deploy-check writes this beside the runtime,
# outside the zip, and imports it before awslambdaric): the function must reach moto,
# not AWS. botocore before 1.31 ignores AWS_ENDPOINT_URL, and the runtime's oldest
# boto3 is older, so every client the function creates is pointed at
# EMULATOR_ENDPOINT_URL here instead. On Lambda nothing of the kind exists.
LAMBDA_ENDPOINT_SHIM = '''"""deploy-check: send the function's AWS clients to the emulator (infra/emulator.py, gap 7)."""
import os


def install():
    import botocore.session

    endpoint = os.environ["EMULATOR_ENDPOINT_URL"]
    original = botocore.session.Session.create_client

    def create_client(self, *args, **kwargs):
        if kwargs.get("endpoint_url") is None:
            kwargs["endpoint_url"] = endpoint
        return original(self, *args, **kwargs)

    botocore.session.Session.create_client = create_client
'''
