#!/usr/bin/env bash
# Validates infra/template.yaml and samconfig.toml offline (no AWS account; the network
# only for the package index on the first run). Idempotent: the Python tools live in a
# venv outside the clone and are installed once.
#
#   scripts/validate-template.sh                      every check below, every environment
#                                                     (what scripts/test.sh runs)
#   scripts/validate-template.sh --deploy prod        the same, but first refuses prod while
#                                                     its parameters still hold placeholders:
#                                                     run it before `sam deploy --config-env prod`
#   scripts/validate-template.sh --deploy prod --placeholders-only
#                                                     only that refusal (seconds; no venv)
#
#   0. Placeholders. An environment that deploys Stage=prod must not keep the samconfig.toml
#      examples: a URL or e-mail address at an example host (any "example" label, as in
#      example.com, or the .test/.invalid/.localhost/.example TLDs: the example issuer, an
#      example alarm address) or an all-zero id (such as a secret version id). Each
#      offending parameter is named. With --deploy ENV, ENV is refused (exit 1); without
#      it, the shipped prod section's placeholders are only listed as a note, so the
#      test run stays green while prod stays an example to fill in. Other stages (dev)
#      may keep them.
#   1. `sam validate`: runs the SAM transform, which rejects bad Serverless properties
#      and event definitions.
#   2. cfn-lint on the SAM template itself.
#   3. The SAM transform again, through the samtranslator library (what CloudFormation
#      runs at deploy time) with a stub for the managed-policy lookup, writing the plain
#      CloudFormation to target/infra/template.cfn.json; cfn-lint on that, which checks
#      what SAM generated (roles, permissions, the event source mapping, the API)
#      against the CloudFormation resource schemas.
#   4. For each samconfig.toml environment (dev, prod): its deploy parameter overrides
#      must name template parameters, satisfy their constraints (type, allowed values,
#      pattern, range) and leave no required parameter unset; then cfn-lint again on the
#      transformed template with those values, so conditions and resolved values are
#      checked as that environment would deploy them (warnings fail here too).
#
# Exits non-zero on the first error. Steps 1-3 print warnings without failing.
#
# Environment: TM_CACHE (default ~/.cache/traffic-manager) holds the venv; TM_SAMCONFIG
# (default samconfig.toml at the root) is the settings file checked (the tests point it at
# a copy with placeholders). Step 0 needs python3 3.11 or later (tomllib).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TM_CACHE="${TM_CACHE:-$HOME/.cache/traffic-manager}"
VENV="$TM_CACHE/venv"
TEMPLATE="$ROOT/infra/template.yaml"
SAMCONFIG="${TM_SAMCONFIG:-$ROOT/samconfig.toml}"
OUT_DIR="$ROOT/target/infra"
TRANSFORMED="$OUT_DIR/template.cfn.json"
ENVS=(dev prod)

log() { echo "[validate-template] $*" >&2; }

usage() {
  echo "usage: scripts/validate-template.sh [--deploy ENV [--placeholders-only]]" >&2
  exit 2
}

DEPLOY_ENV=""
PLACEHOLDERS_ONLY=0
while [ $# -gt 0 ]; do
  case "$1" in
    --deploy)
      [ $# -ge 2 ] || usage
      DEPLOY_ENV="$2"
      shift 2
      ;;
    --placeholders-only)
      PLACEHOLDERS_ONLY=1
      shift
      ;;
    *) usage ;;
  esac
done
if [ "$PLACEHOLDERS_ONLY" = 1 ] && [ -z "$DEPLOY_ENV" ]; then
  usage
fi

# Step 0 (see the header). Usage: placeholders refuse|note ENV...
# refuse: exit 1 when a Stage=prod environment among ENV... keeps a placeholder, one
# "error:" line per offending parameter. note: the same findings as "note:" lines, exit 0.
placeholders() {
  python3 - "$SAMCONFIG" "$@" <<'PY'
import re
import sys

if sys.version_info < (3, 11):
    sys.exit("error: the placeholder check needs python3 3.11 or later (tomllib)")
import tomllib

samconfig_path, mode, *envs = sys.argv[1:]
with open(samconfig_path, "rb") as f:
    samconfig = tomllib.load(f)

# Top-level domains reserved by RFC 2606 / RFC 6761: nobody receives mail or issues tokens
# there (nor at example.com/.org/.net, caught by their "example" label).
RESERVED_TLDS = {"example", "invalid", "localhost", "test"}
# What to put instead, for the parameters samconfig.toml ships placeholders for.
HINTS = {
    "JwtIssuer": "set your IdP's issuer URL, exactly as the tokens' \"iss\"",
    "AlarmEmail": "set the address that must get the alarms (or leave it empty for no e-mail)",
}


def hosts(value):
    """The host names in a URL or e-mail address value (each item of a list)."""
    for item in value.split(","):
        item = item.strip()
        url = re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://(?:[^/?#@]*@)?([^/?#:]+)", item)
        mail = re.fullmatch(r"[^@\s/]+@([^@\s/]+)", item)
        if url:
            yield "URL", url.group(1).lower().rstrip(".")
        elif mail:
            yield "e-mail address", mail.group(1).lower().rstrip(".")


def is_example(host):
    labels = host.split(".")
    return "example" in labels or labels[-1] in RESERVED_TLDS


def findings(env, overrides):
    out = []
    for key, value in overrides:
        for kind, host in hosts(value):
            if is_example(host):
                hint = HINTS.get(key, f"set the real {kind}")
                out.append(f"[{env}] {key}={value}: an example {kind} (host {host}); {hint}")
                break
        digits = value.replace("-", "")
        if len(digits) >= 8 and set(digits) == {"0"}:
            hint = HINTS.get(key, "set the real id")
            out.append(f"[{env}] {key}={value}: an all-zero id, the placeholder; {hint}")
    return out


refused = False
for env in envs:
    overrides = samconfig.get(env, {}).get("deploy", {}).get("parameters", {}).get("parameter_overrides")
    if overrides is None:
        sys.exit(f"error: {samconfig_path} has no [{env}.deploy.parameters] parameter_overrides")
    if isinstance(overrides, str):
        overrides = overrides.split()
    pairs = [tuple(o.split("=", 1)) for o in overrides if "=" in o]
    stage = dict(pairs).get("Stage", "dev")
    if stage != "prod":
        if mode == "refuse":
            print(f"[{env}] Stage={stage}: placeholders are refused for Stage=prod only", file=sys.stderr)
        continue
    found = findings(env, pairs)
    for line in found:
        print(f"{'error' if mode == 'refuse' else 'note'}: {line}", file=sys.stderr)
    if found and mode == "refuse":
        refused = True
        print(
            f"error: [{env}] cannot be deployed: {len(found)} parameter(s) above still hold the "
            f"placeholders of samconfig.toml; fill them in (docs/deploy.md, 'Production settings')",
            file=sys.stderr,
        )
    elif found:
        print(
            f"note: [{env}] keeps the shipped placeholders above; "
            f"`scripts/validate-template.sh --deploy {env}` refuses it until they are filled in",
            file=sys.stderr,
        )
    elif mode == "refuse":
        print(f"[{env}] no placeholders left", file=sys.stderr)
sys.exit(1 if refused else 0)
PY
}

if [ -n "$DEPLOY_ENV" ]; then
  log "0/4 placeholders in the $DEPLOY_ENV settings (${SAMCONFIG#"$ROOT"/})"
  placeholders refuse "$DEPLOY_ENV"
  if [ "$PLACEHOLDERS_ONLY" = 1 ]; then
    log "ok: no placeholder refused in $DEPLOY_ENV (--placeholders-only: the other checks were not run)"
    exit 0
  fi
  # An environment of its own (say, staging) is checked by the steps below too.
  case " ${ENVS[*]} " in
    *" $DEPLOY_ENV "*) ;;
    *) ENVS+=("$DEPLOY_ENV") ;;
  esac
fi

if [ -x "$VENV/bin/sam" ] && [ -x "$VENV/bin/cfn-lint" ]; then
  log "venv: $VENV (already installed)"
else
  log "venv: installing aws-sam-cli and cfn-lint into $VENV (about a minute)"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --upgrade pip
  "$VENV/bin/pip" install --quiet aws-sam-cli cfn-lint
fi
log "$("$VENV/bin/sam" --version), cfn-lint $("$VENV/bin/cfn-lint" --version | awk '{print $2}')"

# Offline: a region and dummy credentials, so nothing looks for real ones; no telemetry.
export AWS_DEFAULT_REGION=us-east-1 AWS_REGION=us-east-1
export AWS_ACCESS_KEY_ID=offline-validation AWS_SECRET_ACCESS_KEY=offline-validation
unset AWS_SESSION_TOKEN AWS_PROFILE
export SAM_CLI_TELEMETRY=0

log "1/4 sam validate (SAM transform)"
"$VENV/bin/sam" validate --template "$TEMPLATE" --region us-east-1

log "2/4 cfn-lint on the SAM template"
"$VENV/bin/cfn-lint" --non-zero-exit-code error -- "$TEMPLATE"

log "3/4 SAM transform to CloudFormation, then cfn-lint on the result"
mkdir -p "$OUT_DIR"
"$VENV/bin/python" - "$TEMPLATE" "$SAMCONFIG" "$OUT_DIR" "${ENVS[@]}" <<'PY'
import json
import re
import sys
import tomllib

from samtranslator.translator.transform import transform
from samtranslator.yaml_helper import yaml_parse

template_path, samconfig_path, out_dir, *envs = sys.argv[1:]


def fail(msg):
    print(f"error: {msg}", file=sys.stderr)
    sys.exit(1)


class OfflinePolicyLoader:
    """Stands in for the IAM ListPolicies call. The template names no managed policy
    itself; the ones SAM adds (basic execution, VPC access, X-Ray, MSK) are built from
    ARNs, so an empty map is enough."""

    def load(self):
        return {}


with open(template_path, encoding="utf-8") as f:
    sam = yaml_parse(f.read())
declared = sam.get("Parameters", {})

# What `sam package` does before CloudFormation runs the transform: local CodeUri
# folders become S3 objects. The bucket is a placeholder; nothing is uploaded.
for name, res in sam.get("Resources", {}).items():
    props = res.get("Properties") or {}
    code = props.get("CodeUri")
    if res.get("Type") == "AWS::Serverless::Function" and isinstance(code, str) and not code.startswith("s3://"):
        props["CodeUri"] = f"s3://offline-validation/{name}.zip"

# Values for the parameters without defaults; everything else uses its default.
try:
    cfn = transform(sam, {"JwtIssuer": "https://issuer.example.com/", "JwtAudience": "traffic-manager"}, OfflinePolicyLoader())
except Exception as e:  # InvalidDocumentException lists every error
    for cause in getattr(e, "causes", None) or [e]:
        print(f"SAM transform error: {getattr(cause, 'message', cause)}", file=sys.stderr)
    sys.exit(1)
with open(f"{out_dir}/template.cfn.json", "w", encoding="utf-8") as f:
    json.dump(cfn, f, indent=2, sort_keys=True)
kinds = {}
for r in cfn.get("Resources", {}).values():
    kinds[r["Type"]] = kinds.get(r["Type"], 0) + 1
print(f"transformed: {sum(kinds.values())} resources", file=sys.stderr)
for kind in sorted(kinds):
    print(f"  {kinds[kind]:3d} {kind}", file=sys.stderr)


def check_value(key, value, spec):
    """CloudFormation's own parameter checks, so a bad override fails here and not
    half-way through a deployment."""
    kind = spec.get("Type", "String")
    items = value.split(",") if kind == "CommaDelimitedList" else [value]
    for item in items:
        if kind == "Number":
            try:
                number = float(item)
            except ValueError:
                fail(f"{key}={value!r}: not a number")
            if "MinValue" in spec and number < float(spec["MinValue"]):
                fail(f"{key}={value!r}: below MinValue {spec['MinValue']}")
            if "MaxValue" in spec and number > float(spec["MaxValue"]):
                fail(f"{key}={value!r}: above MaxValue {spec['MaxValue']}")
        if "AllowedValues" in spec and item not in [str(v) for v in spec["AllowedValues"]]:
            fail(f"{key}={value!r}: not one of {spec['AllowedValues']}")
        if "AllowedPattern" in spec and not re.fullmatch(spec["AllowedPattern"], item):
            fail(f"{key}={value!r}: does not match {spec['AllowedPattern']}")


with open(samconfig_path, "rb") as f:
    samconfig = tomllib.load(f)
for env in envs:
    overrides = samconfig.get(env, {}).get("deploy", {}).get("parameters", {}).get("parameter_overrides")
    if overrides is None:
        fail(f"samconfig.toml has no [{env}.deploy.parameters] parameter_overrides")
    if isinstance(overrides, str):
        overrides = overrides.split()
    values = {}
    for pair in overrides:
        key, sep, value = pair.partition("=")
        if not sep:
            fail(f"[{env}] parameter override {pair!r} is not Key=Value")
        if key not in declared:
            fail(f"[{env}] {key} is not a parameter of {template_path}")
        if key in values:
            fail(f"[{env}] {key} is set twice")
        check_value(f"[{env}] {key}", value, declared[key])
        values[key] = value
    for key, spec in declared.items():
        if key not in values and "Default" not in spec:
            fail(f"[{env}] required parameter {key} is not set")
    params = [
        {"ParameterKey": k, "ParameterValue": v.split(",") if declared[k].get("Type") == "CommaDelimitedList" else v}
        for k, v in sorted(values.items())
    ]
    with open(f"{out_dir}/parameters-{env}.json", "w", encoding="utf-8") as f:
        json.dump(params, f, indent=2)
    print(f"[{env}] {len(values)} parameter overrides match the template", file=sys.stderr)
PY
log "transformed template: ${TRANSFORMED#"$ROOT"/}"
"$VENV/bin/cfn-lint" --non-zero-exit-code error -- "$TRANSFORMED"

for env in "${ENVS[@]}"; do
  log "4/4 cfn-lint on the transformed template with the $env parameters"
  "$VENV/bin/cfn-lint" --non-zero-exit-code warning --parameter-files "$OUT_DIR/parameters-$env.json" -- "$TRANSFORMED"
done

# Step 0 as a reminder only (with --deploy, the environment was refused or passed above).
placeholders note "${ENVS[@]}"

log "ok: template and samconfig.toml validate (sam validate, cfn-lint on SAM and transformed CloudFormation, ${ENVS[*]} parameters)"
