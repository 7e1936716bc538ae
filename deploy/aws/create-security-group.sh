#!/usr/bin/env bash
# Creates the cluster's security group with exactly the rules of security-group-rules.json and
# prints its id, for `SecurityGroupIds` in cluster.yaml. The Ray launcher would otherwise create
# its own group, and that group always opens SSH (22) to 0.0.0.0/0.
#   deploy/aws/create-security-group.sh VPC_ID OPERATOR_CIDR LOAD_BALANCER_SG [REGION]
# e.g.  deploy/aws/create-security-group.sh vpc-0abc 203.0.113.0/24 sg-0lb123 us-west-2
set -euo pipefail
if [[ $# -lt 3 ]]; then
  sed -n '2,7p' "$0" >&2
  exit 2
fi
VPC_ID=$1 OPERATOR_CIDR=$2 LOAD_BALANCER_SG=$3 REGION=${4:-us-west-2}
case "$OPERATOR_CIDR" in
  0.0.0.0/0|::/0) echo "refusing to open SSH to the whole internet" >&2; exit 2 ;;
esac
here=$(dirname "$0")
group=$(aws ec2 create-security-group --region "$REGION" --vpc-id "$VPC_ID" \
  --group-name cs-assistant-ray --description "cs-assistant Ray cluster" \
  --query GroupId --output text)
# The rules file documents each rule in "_why"; AWS does not take that key.
rules=$(python3 - "$here/security-group-rules.json" "$group" "$LOAD_BALANCER_SG" "$OPERATOR_CIDR" <<'PY'
import json, sys
path, cluster, balancer, operators = sys.argv[1:]
text = open(path).read().replace("CLUSTER_SG", cluster).replace(
    "LOAD_BALANCER_SG", balancer).replace("OPERATOR_CIDR", operators)
print(json.dumps([{k: v for k, v in rule.items() if k != "_why"} for rule in json.loads(text)]))
PY
)
aws ec2 authorize-security-group-ingress --region "$REGION" --group-id "$group" \
  --ip-permissions "$rules" >/dev/null
echo "$group"
