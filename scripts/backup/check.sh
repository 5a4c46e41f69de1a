#!/usr/bin/env bash
# `make check-ops`: everything the operations area (backups, restore,
# Uptime Kuma) must prove here, against the real tools, installing them
# pinned into .tools/ first:
#   1. shellcheck on every script; hadolint on the image; actionlint on the
#      drill workflow; the image pins the versions the checks run
#   2. Uptime Kuma: the declaration is complete (apply.py --check) and the
#      apply logic is idempotent (test_apply.py)
#   3. the palm-backup chart: helm lint --strict and render (Kubernetes 1.33)
#      for each ci scenario and environment, kubernetes-validate --strict,
#      the schema refuses what it must, the pods are hardened, and each
#      environment's PrometheusRule records its schedule's interval (the
#      stale-backup alert's threshold)
#   4. the S3 side against moto with the AWS CLI (tests/s3.sh)
#   5. the restore verification against the test database, seeded by the
#      real services through the API (tests/verify.sh)
# Not here: a real mongodump → mongorestore run. mongodump, mongorestore and
# mongod are not installable on these machines; the restore drill runs them
# in GitHub Actions (.github/workflows/restore-drill.yml, scripts/backup/drill.sh).
set -euo pipefail
cd "$(dirname "$0")/../.."
started=$SECONDS
step() { echo "ops: $* ($((SECONDS - started)) s)" >&2; }

step "shellcheck, hadolint, actionlint"
shellcheck="$(scripts/tools/shellcheck.sh)"
"$shellcheck" -x scripts/backup/*.sh scripts/backup/tests/*.sh \
  scripts/tools/pymongo.sh scripts/tools/moto.sh scripts/tools/awscli.sh scripts/tools/uptime-kuma-api.sh
"$(scripts/tools/hadolint.sh)" scripts/backup/Containerfile
"$(scripts/tools/actionlint.sh)" .github/workflows/restore-drill.yml >/dev/null
python3 - <<'PY'
import re, sys
image = open("scripts/backup/Containerfile").read()
pins = {}
for tool, var in [("pymongo", "PYMONGO_VERSION"), ("awscli", "AWSCLI_VERSION"),
                  ("uptime-kuma-api", "UPTIME_KUMA_API_VERSION"), ("uptime-kuma-api", "PYYAML_VERSION")]:
    m = re.search(rf"^{var}=(\S+)", open(f"scripts/tools/{tool}.sh").read(), re.M)
    pins[var] = m.group(1)
want = {"pymongo": pins["PYMONGO_VERSION"], "awscli": pins["AWSCLI_VERSION"],
        "uptime-kuma-api": pins["UPTIME_KUMA_API_VERSION"], "PyYAML": pins["PYYAML_VERSION"]}
bad = [f"{p}=={v}" for p, v in want.items() if f"{p}=={v}" not in image]
if bad:
    sys.exit(f"ops: scripts/backup/Containerfile does not pin {bad} like scripts/tools/")
print("ops: the image pins what the checks run: " + ", ".join(f"{p}=={v}" for p, v in want.items()), file=sys.stderr)
PY

step "Uptime Kuma declaration"
kuma="$(scripts/tools/uptime-kuma-api.sh)"
"$kuma" ops/uptime-kuma/apply.py --check
"$kuma" ops/uptime-kuma/test_apply.py

step "palm-backup chart"
helm="$(scripts/tools/helm.sh)"
kubernetes_validate="$(scripts/tools/kubernetes-validate.sh)"
out="$PWD/.tools/palm-backup-rendered"
rm -rf "$out" && mkdir -p "$out"
quiet_helm() { "$helm" "$@" 2> >(grep -v 'found symbolic link in path' >&2); }
rendered=()
for values in charts/palm-backup/ci/*.yaml helm-values/palm-backup/values-*.yaml; do
  name="$(basename "$values" .yaml)"
  quiet_helm lint --strict charts/palm-backup -f "$values" >/dev/null
  quiet_helm template palm-backup charts/palm-backup --namespace palm-ci --kube-version 1.33 -f "$values" >"$out/$name.yaml"
  rendered+=("$out/$name.yaml")
done
if ! "$kubernetes_validate" --strict -k 1.33 --quiet "${rendered[@]}" >"$out/validate.log" 2>&1; then
  grep -v "Couldn.t find schema for kind ExternalSecret" "$out/validate.log" >&2
  exit 1
fi
refused() { # message, then helm template arguments
  local want=$1; shift
  if quiet_helm template x charts/palm-backup "$@" >/dev/null 2>"$out/refused.log" || ! grep -q "$want" "$out/refused.log"; then
    echo "ops: expected helm template $* to be refused with '$want'" >&2; cat "$out/refused.log" >&2; exit 1
  fi
}
refused "minLength: got 0, want 3" # no bucket
refused "value must be one of" --set s3.bucket=b-ok --set s3.sse=none
refused "additional properties 'accessKeyId' not allowed" --set s3.bucket=b-ok --set s3.accessKeyId=AKIA
refused "additional properties 'keepp' not allowed" --set s3.bucket=b-ok --set backup.keepp=3
"$kuma" - "${rendered[@]}" <<'PY'
"""Every pod of every render is hardened and gets no static AWS key."""
import sys, yaml
problems, pods = [], 0
for path in sys.argv[1:]:
    for doc in yaml.safe_load_all(open(path)):
        if not doc or doc["kind"] not in ("CronJob", "Job"):
            continue
        spec = doc["spec"]["jobTemplate"]["spec"] if doc["kind"] == "CronJob" else doc["spec"]
        pod = spec["template"]["spec"]
        pods += 1
        where = f"{path.rsplit('/', 1)[-1]} {doc['kind']}/{doc['metadata']['name']}"
        if pod["securityContext"].get("seccompProfile", {}).get("type") != "RuntimeDefault":
            problems.append(f"{where}: pod seccomp")
        for c in pod.get("initContainers", []) + pod["containers"]:
            sc = c.get("securityContext", {})
            if not (sc.get("readOnlyRootFilesystem") and sc.get("runAsNonRoot") and sc.get("allowPrivilegeEscalation") is False
                    and sc.get("capabilities", {}).get("drop") == ["ALL"]):
                problems.append(f"{where}/{c['name']}: not hardened: {sc}")
            if not any(m["mountPath"] == "/tmp" for m in c.get("volumeMounts", [])):
                problems.append(f"{where}/{c['name']}: no writable /tmp")
            names = {e["name"] for e in c.get("env", [])}
            if names & {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}:
                problems.append(f"{where}/{c['name']}: static AWS keys")
            for e in c.get("env", []):
                if e["name"] in ("MONGO_URI", "KUMA_PASSWORD", "TELEGRAM_BOT_TOKEN") and "valueFrom" not in e:
                    problems.append(f"{where}/{c['name']}: {e['name']} not from the Secret")
        if doc["metadata"]["name"].endswith("restore-check"):
            sidecar = [c for c in pod.get("initContainers", []) if c.get("restartPolicy") == "Always"]
            if not sidecar or "--setParameter=ttlMonitorEnabled=false" not in sidecar[0]["command"]:
                problems.append(f"{where}: no throwaway mongod sidecar with TTL deletions off")
for p in problems:
    print(f"ops: {p}", file=sys.stderr)
if problems or not pods:
    sys.exit(1)
print(f"ops: {pods} Job/CronJob pods hardened across {len(sys.argv) - 1} renders", file=sys.stderr)
PY

refused "only the minute and hour fields" --set s3.bucket=b-ok --set-string "backup.schedule=0 3 * * 1" --skip-schema-validation
refused "does not match pattern" --set s3.bucket=b-ok --set-string "backup.schedule=0 3 * * 1"
"$kuma" - "$out" <<'PY'
"""The stale-backup alert's interval: each environment's rendered PrometheusRule
records the longest gap of its backup.schedule (recomputed here), under the
name observability/prometheus/rules/backup.rules.yml uses, and the runbook's
table says the same."""
import re, sys, yaml
out = sys.argv[1]
NAME = "palm:backup_schedule_interval_seconds"

def field(text, top):
    values = set()
    for item in text.split(","):
        rng, _, step = item.partition("/")
        lo, hi = (0, top) if rng == "*" else (int(rng.split("-")[0]), int(rng.split("-")[-1]))
        if step and rng != "*" and "-" not in rng:
            hi = top
        values.update(range(lo, hi + 1, int(step or 1)))
    return values

def longest_gap(schedule):
    minute, hour, *_ = schedule.split()
    times = sorted(h * 60 + m for h in field(hour, 23) for m in field(minute, 59))
    gaps = [b - a for a, b in zip(times, times[1:])] + [times[0] + 1440 - times[-1]]
    return max(gaps) * 60

rules = open("observability/prometheus/rules/backup.rules.yml").read()
runbook = open("docs/runbooks/PalmMongoBackupStale.md").read()
problems = []
if rules.count(NAME) < 2:
    problems.append(f"backup.rules.yml does not use {NAME}")
for env in ("dev", "stg", "prod"):
    schedule = yaml.safe_load(open(f"helm-values/palm-backup/values-{env}.yaml"))["backup"]["schedule"]
    docs = [d for d in yaml.safe_load_all(open(f"{out}/values-{env}.yaml")) if d]
    rule = next(r for d in docs if d["kind"] == "PrometheusRule" for g in d["spec"]["groups"] for r in g["rules"])
    got = int(re.fullmatch(r"vector\((\d+)\)", rule["expr"]).group(1))
    want = longest_gap(schedule)
    if rule["record"] != NAME or got != want:
        problems.append(f"{env}: {schedule!r} renders {rule['record']} = {got}, expected {NAME} = {want}")
    row = f"| {env} | `{schedule}` | {want // 3600} h | {want // 3600 + 2} h | {2 * want // 3600 + 2} h |"
    if row not in runbook:
        problems.append(f"docs/runbooks/PalmMongoBackupStale.md lacks the row {row}")
    print(f"ops: {env}: backup.schedule {schedule!r} -> {NAME} {got} s (stale after {got // 3600 + 2} h)", file=sys.stderr)
for p in problems:
    print(f"ops: {p}", file=sys.stderr)
sys.exit(1 if problems else 0)
PY

step "S3 side against moto"
scripts/backup/tests/s3.sh

step "restore verification against the test database"
scripts/backup/tests/verify.sh

step "passed (the real dump → restore drill runs in GitHub Actions: restore-drill.yml)"
