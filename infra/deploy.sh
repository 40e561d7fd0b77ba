#!/usr/bin/env bash
# `make deploy STAGE=<stage>`: ship the template `make package` wrote to CloudFormation.
#
# CloudFormation rather than `chalice deploy`: chalice deploy creates the function,
# role and API but not the table, the secret or the log group, and it keeps its own
# state in .chalice/deployed/. One stack owns everything, updates it in place and
# deletes it in one call.
#
# Needs: the AWS CLI v2 with credentials and a region (AWS_REGION, AWS_DEFAULT_REGION
# or the profile's). DEPLOY_BUCKET names the S3 bucket for the code zip; by default
# smm-gateway-artifacts-<account>-<region>, created on first use. ALARM_EMAIL, when set,
# subscribes that address to the alarms' topic (set and empty: unsubscribes; unset: the
# stack keeps what it had). BALANCE_LOW_THRESHOLD, likewise, sets the function's threshold
# for the balance-low alarm (set and empty: off; unset: the stack keeps what it had).
# EVENT_BUS_NAME, likewise, names the EventBridge bus (in this account and region) the
# functions put every event on, and grants events:PutEvents on that bus only.
set -euo pipefail

stage=${1:?usage: infra/deploy.sh <stage> [build dir]}
build=${2:-build/$stage}
stack="smm-gateway-$stage"
template="$build/sam.json"
[[ -f "$template" ]] || { echo "no $template: run make package STAGE=$stage first" >&2; exit 1; }
command -v aws >/dev/null || { echo "make deploy needs the AWS CLI v2 on PATH" >&2; exit 1; }

region=${AWS_REGION:-${AWS_DEFAULT_REGION:-$(aws configure get region || true)}}
[[ -n "$region" ]] || { echo "no AWS region: set AWS_REGION (or AWS_DEFAULT_REGION)" >&2; exit 1; }
export AWS_REGION="$region" AWS_DEFAULT_REGION="$region"
account=$(aws sts get-caller-identity --query Account --output text)
bucket=${DEPLOY_BUCKET:-smm-gateway-artifacts-$account-$region}

# Reservations must leave 10 unreserved executions in the account; new accounts
# start with a quota of 10, where any reservation fails half-way through the stack.
# Every function's reservation counts (the API's, the schedule's and the webhook worker's).
reserved=$(sed -n 's/.*"ReservedConcurrentExecutions": *\([0-9]*\).*/\1/p' "$template" | awk '{s += $1} END {if (NR) print s}')
if [[ -n "$reserved" ]]; then
  quota=$(aws lambda get-account-settings --query AccountLimit.ConcurrentExecutions --output text)
  if (( quota < reserved + 10 )); then
    echo "stage $stage reserves $reserved concurrent executions but the account's quota is $quota;" \
         "ask for a higher Lambda concurrency quota or lower reserved_concurrency in .chalice/config.json" >&2
    exit 1
  fi
fi

if ! aws s3api head-bucket --bucket "$bucket" >/dev/null 2>&1; then
  echo "creating the artifact bucket s3://$bucket"
  aws s3 mb "s3://$bucket" --region "$region"
fi

echo "deploying $stack to $region (account $account)"
aws cloudformation package --template-file "$template" --s3-bucket "$bucket" --s3-prefix "$stack" \
  --output-template-file "$build/packaged.yaml"
aws cloudformation deploy --template-file "$build/packaged.yaml" --stack-name "$stack" \
  --s3-bucket "$bucket" --s3-prefix "$stack" --parameter-overrides "Stage=$stage" ${ALARM_EMAIL+"AlarmEmail=$ALARM_EMAIL"} \
  ${BALANCE_LOW_THRESHOLD+"BalanceLowThreshold=$BALANCE_LOW_THRESHOLD"} ${EVENT_BUS_NAME+"EventBusName=$EVENT_BUS_NAME"} \
  --capabilities CAPABILITY_IAM CAPABILITY_AUTO_EXPAND --no-fail-on-empty-changeset
aws cloudformation describe-stacks --stack-name "$stack" --query "Stacks[0].Outputs" --output table
